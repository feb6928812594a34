/*
 * A range allocator over `nslots` equal slots (the system-PTE region's PTEs, the pool's
 * pages): reserve and release N contiguous slots, adjacent free runs coalescing.
 *
 * Cost does not grow with fragmentation: free runs sit in 32 lists by size class
 * (class c holds runs of 2^c .. 2^(c+1)-1 slots) with a bitmap of non-empty classes.  A
 * request for n slots takes the head of the first non-empty class whose every run fits
 * (class >= ceil(log2 n)): one find-first-set, O(1).  Only when no such class has a run does
 * it search class floor(log2 n), whose runs may or may not fit — the case of a nearly full
 * space.  Boundary tags at both ends of every free run make release and coalescing O(1).
 * (ReactOS walks one sorted list of free clusters: O(number of free runs).)
 */
#ifndef MM_VRANGE_H
#define MM_VRANGE_H

#include <stdbool.h>
#include <stdint.h>

#define VRANGE_CLASSES 32
#define VRANGE_NONE 0xFFFFFFFFu

struct vrange {
	uint32_t nslots;
	uint32_t free_slots;
	uint32_t free_runs;
	uint32_t bitmap;                    /* bit c: class c has a run */
	uint32_t heads[VRANGE_CLASSES];
	/* Per-slot metadata, meaningful at run boundaries only. */
	uint8_t *state;                     /* enum vrange_slot */
	uint32_t *len;                      /* at a run's first slot: its length */
	uint32_t *head_of_tail;             /* at a free run's last slot: its first slot */
	uint32_t *next, *prev;              /* at a free run's first slot: class list links */
	uint8_t *user;                      /* at a reservation's first slot: the owner's byte */
	uint64_t meta_pfn, meta_pages;      /* where the metadata lives */
};

enum vrange_slot {
	VR_FREE_INNER = 0,  /* inside or last slot of a free run (0: never-touched slots too) */
	VR_FREE_HEAD,       /* first slot of a free run */
	VR_USED_HEAD,       /* first slot of a reservation */
	VR_USED_INNER,
};

/* Results of vrange_release. */
enum vrange_status {
	VR_OK = 0,
	VR_DOUBLE_FREE,     /* the slot is free (released already, or never reserved) */
	VR_WRONG_COUNT,     /* a reservation starts here, of another length */
	VR_NOT_RESERVED,    /* no reservation starts here (inside one, or out of range) */
};

/* Set up a space of nslots free slots; metadata from physical frames.  False when no frames. */
bool vrange_init(struct vrange *v, uint32_t nslots);
static inline bool vrange_slot_is_free(const struct vrange *v, uint32_t slot)
{
	return v->state[slot] == VR_FREE_HEAD || v->state[slot] == VR_FREE_INNER;
}

/* Give the metadata frames back. */
void vrange_destroy(struct vrange *v);
/* Reserve n contiguous slots; returns the first, or VRANGE_NONE when no run fits. */
uint32_t vrange_reserve(struct vrange *v, uint32_t n);
/* Release a reservation of n slots starting at first; nothing changes unless VR_OK. */
enum vrange_status vrange_release(struct vrange *v, uint32_t first, uint32_t n);
/* Whether a run of n could be reserved now (without reserving it). */
bool vrange_fits(const struct vrange *v, uint32_t n);
/* The largest free run (scans the top non-empty class: for counters, not hot paths). */
uint32_t vrange_largest_free(const struct vrange *v);
/* Length of the reservation starting at first, 0 if none starts there. */
uint32_t vrange_reserved_len(const struct vrange *v, uint32_t first);

#endif
