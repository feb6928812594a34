/*
 * A test process's committed memory, as the pager suites use it (tests/pager_test.c,
 * tests/pager_edge_test.c): a private read-write range committed in its address space, and
 * a page of it written by the kernel with the data pattern of tests/lib/pattern.h (a real
 * copy into the process, attached, so a demand-zero or trimmed page takes its fault).
 */
#ifndef TESTS_LIB_UPROC_H
#define TESTS_LIB_UPROC_H

#include <stdint.h>
#include "include/wdm.h"
#include "kernel/ktest.h"
#include "kernel/process.h"

/* `pages` pages of MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE in p's space (uvm_allocate); the
 * case fails and stops when that is refused. */
uint64_t uproc_commit(struct ktest *t, PEPROCESS p, uint64_t pages);
/* Page i of the range at base gets the pattern of seed + i, copied in by the kernel with p
 * attached (apc: the caller's attach state); the copy's status. */
NTSTATUS uproc_write_page(PEPROCESS p, KAPC_STATE *apc, uint64_t base, unsigned i, uint32_t seed);

#endif
