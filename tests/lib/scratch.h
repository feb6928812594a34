/*
 * Scratch virtual addresses: where a test maps, probes or reserves when any free address
 * would do.  Every range comes from one allocator, so two tests never share an address or
 * a page table by accident, and none is handed out while something maps it.
 *
 *   kernel  KVA_TEST_BASE .. KVA_TEST_END (mm/layout.h), the self-tests' own PML4 slot;
 *   user    PML4 slots 128-254 of the user half: the kernel's tables map nothing in the user
 *           half but what a test puts there, and a fresh 64-bit process nothing there
 *           either (its image is at 4 MiB, its parameters at 64 KiB, its stack in slot 255,
 *           and NULL-address allocations are placed bottom up) — not for WOW64 processes;
 *   hole    KVA_UNMAPPED_HOLE, which nothing ever maps: for an access that must fault.
 *
 * Kernel and user ranges are whole GiB: each starts a page directory of its own, and is
 * empty in the kernel's tables when handed out (no PDPT entry, or no PML4 entry, over any
 * of it).  The allocator moves forward through a region and wraps at its end, so a range
 * comes back only after a whole region's worth of others, and only once it is empty again.
 * It PANICs when a region has no such range left.
 */
#ifndef TESTS_LIB_SCRATCH_H
#define TESTS_LIB_SCRATCH_H

#include <stdbool.h>
#include <stdint.h>
#include "kernel/ktest.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pt.h"

#define SCRATCH_USER_BASE 0x0000400000000000ul  /* PML4 slot 128 */
#define SCRATCH_USER_END 0x00007F8000000000ul   /* PML4 slot 255, the stack's */
/* Size and alignment of a range that has a PML4 entry of its own. */
#define SCRATCH_PML4_SLOT (1ul << 39)

/* A range of at least `size` bytes (rounded up to whole GiB) at an address aligned to
 * `align` (a power of two; below 1 GiB, or 0, means 1 GiB). */
uint64_t scratch_kva(uint64_t size, uint64_t align);
uint64_t scratch_uva(uint64_t size, uint64_t align);
/* A page-aligned range of `size` bytes that no page table maps, different pages each call
 * (so a CR2 a case checks cannot be one an earlier case left). */
uint64_t scratch_unmapped_kva(uint64_t size);

/* One page of a fresh zeroed frame (*pfn) whose first byte is `first`, mapped at va (which
 * nothing maps yet) in the kernel's tables with attributes a: a user page in the user half,
 * with no process, for the SMAP/SMEP cases.  False, with the case failed and nothing held,
 * when it cannot be made.  scratch_unmap_page undoes it. */
bool scratch_map_page(struct ktest *t, uint64_t va, pfn_t *pfn, struct pt_attrs a, uint8_t first);
void scratch_unmap_page(uint64_t va, pfn_t pfn);

#endif
