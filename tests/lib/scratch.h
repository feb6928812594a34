/*
 * Scratch virtual addresses, one 1 GiB slot of the test region per use so that no two
 * tests share a page table by accident.  Slot n starts at KVA_TEST_BASE + n GiB.
 *   16-31 mm_fault, 32-47 mm_pat, 48-63 mm_pt, 64-79 mm_pfn.
 * User-half addresses (SMAP/SMEP, table pruning) use MMT_USER_VA(n), n GiB into PML4
 * slot 200 of the user half, which nothing else maps in the kernel's tables.
 */
#ifndef TESTS_LIB_SCRATCH_H
#define TESTS_LIB_SCRATCH_H

#include <stdint.h>
#include "mm/layout.h"

#define MMT_TEST_VA(n) (KVA_TEST_BASE + (uint64_t)(n) * HUGE_PAGE_SIZE)
#define MMT_USER_VA(n) (200ull * (512ull << 30) + (uint64_t)(n) * HUGE_PAGE_SIZE)

#endif
