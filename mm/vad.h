/*
 * Virtual address descriptors: a process's user address ranges, in an AVL tree ordered by
 * address.  Every user range a process has — its image, stack, parameter page, what
 * NtAllocateVirtualMemory reserved, MDL mappings made into it — is one VAD.
 */
#ifndef MM_VAD_H
#define MM_VAD_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/mmproc.h"

enum vad_kind {
	VAD_PRIVATE,   /* NtAllocateVirtualMemory: reserve/commit/decommit/release by the user */
	VAD_IMAGE,     /* the program's segments */
	VAD_STACK,
	VAD_PARAMS,    /* the read-only parameter page */
	VAD_MDL,       /* an MDL mapped by a driver: the user can't free, decommit or re-protect it */
};

struct vad {
	uint64_t start, end;      /* [start, end), page-aligned */
	uint8_t kind;             /* enum vad_kind */
	uint32_t protect;         /* PAGE_* the range was created with (VAD_PRIVATE: reserve-time) */
	void *owner;              /* VAD_MDL: the struct user_mapping */
	struct vad *left, *right, *parent;
	int height;
};

/* Each function works on the VAD tree of one process's memory, mm->vad_root. */

/* The VAD containing va, or NULL. */
struct vad *vad_find(struct mm_process *mm, uint64_t va);
/* The first VAD overlapping [start, end), or NULL. */
struct vad *vad_find_overlap(struct mm_process *mm, uint64_t start, uint64_t end);
/* Insert a new range; NULL if it overlaps one or no memory for the node. */
struct vad *vad_insert(struct mm_process *mm, uint64_t start, uint64_t end, enum vad_kind kind, uint32_t protect);
/* Move a range's start up to `start` (page-aligned, below its end): the tree keeps its order,
 * as no other range lies inside the old one.  PANIC otherwise. */
void vad_raise_start(struct vad *v, uint64_t start);
/* Remove and free the node (the pages are the caller's business). */
void vad_remove(struct mm_process *mm, struct vad *v);
/* The lowest free range of `size` bytes aligned to `align` within [lo, hi), or 0. */
uint64_t vad_find_free(struct mm_process *mm, uint64_t size, uint64_t align, uint64_t lo, uint64_t hi);
/* In-order walk. */
void vad_for_each(struct mm_process *mm, void (*fn)(struct vad *v, void *ctx), void *ctx);
/* How many VADs the process has. */
uint64_t vad_count(const struct mm_process *mm);
/* Check the AVL invariants (heights, balance, order, parent links); false on a violation. */
bool vad_check(struct mm_process *mm);

#endif
