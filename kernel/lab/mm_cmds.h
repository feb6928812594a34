/*
 * The memory manager's printers (kernel/lab/mm_cmds.c), shared by its monitor commands (pte, pfn,
 * lockedpages), the tour (kernel/lab/tour.c) and the tests that check what they print.  Each
 * writes to a struct mon_out (kernel/lab/monitor.h: the console or a caller's buffer) and reads
 * everything from the real structures when it runs: the page tables (pt_query), the PFN
 * database, IA32_PAT by RDMSR.
 */
#ifndef LAB_MM_CMDS_H
#define LAB_MM_CMDS_H

#include <stdint.h>
#include "kernel/lab/monitor.h"
#include "mm/pfn.h"
#include "mm/pt.h"

struct _EPROCESS;

/* Every level's entry for va in the address space `root` — where it sits, its raw value,
 * its bits decoded, the next table or the frame — then the leaf's page, PAT slot, the
 * slot's type per the MSR, the effective rights and the frame's PFN state and recorded
 * type.  The lines, for the tests that parse them:
 *     "  PML4E at pa 0x%010lx = 0x%016lx ..." (PML4E, PDPTE, PDE, PTE: %-5s)
 *     "  PAT slot %d: IA32_PAT encoding 0x%02x = %s (per the MSR now)"
 *     "  effective: S|U RW|R X|NX G|- TYPE" */
void mm_print_pte(struct mon_out *o, const struct pt_root *root, uint64_t va);
/* The same walk, shortened to the PTE when it sits in the page table *last_table (the one the
 * previous walk ended in): the upper levels are then named, not repeated.  *last_table is set
 * to this walk's page table.  True when it printed the short form. */
bool mm_print_pte_brief(struct mon_out *o, const struct pt_root *root, uint64_t va, uint64_t *last_table);

/* IA32_PAT read by RDMSR, slot by slot: encoding, type, the PTE bits that select the slot,
 * the types whose canonical slot it is. */
void mm_print_pat(struct mon_out *o);

/* Frame pfn's PFN database entry and its direct-map alias's translation. */
void mm_print_pfn(struct mon_out *o, pfn_t pfn);

/* Pages locked by MmProbeAndLockPages: every frame the PFN database shows with a lock
 * count (listed with it, up to a limit), the total checked against the PFN counters, and
 * each live process's locked_pages.  With a process: its count, and the locked frames its
 * user half maps. */
void mm_print_locked_pages(struct mon_out *o, struct _EPROCESS *only);

#endif
