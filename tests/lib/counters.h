/*
 * What the tests count, read where it lives (the PFN database, the system-PTE space), and
 * how they take frames away to make an allocation fail for real.
 */
#ifndef TESTS_LIB_COUNTERS_H
#define TESTS_LIB_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/pfn.h"

/* Frames on the free lists, and frames locked by MmProbeAndLockPages (pfn_get_stats). */
uint64_t mmt_free_frames(void);
uint64_t mmt_locked_frames(void);
/* A frame's lock count in the PFN database, the only place it lives. */
uint32_t mmt_lock_count(pfn_t pfn);
/* Whether a frame is on a free list. */
bool mmt_frame_is_free(pfn_t pfn);

/* Free frames [first, first + n) that a test may have typed (memtype_set_frame): each type is
 * released first, as the owner of a typed frame must (mm/memtype.h), then the frame. */
void mmt_free_typed_run(pfn_t first, uint64_t n);

/* Free PTEs of the system-PTE space (syspte_get_stats). */
uint64_t mmt_free_sysptes(void);

/*
 * Take free frames until only `leave` are free, chaining them through their own first
 * eight bytes (each holds the previous frame number).  Returns the chain's head
 * (PFN_INVALID when nothing was taken) and the count in *taken.  mmt_release_frames gives
 * the whole chain back and returns how many frames it held.
 */
pfn_t mmt_hog_frames(uint64_t leave, uint64_t *taken);
uint64_t mmt_release_frames(pfn_t head);

#endif
