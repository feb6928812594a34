/*
 * The pool behind ExAllocatePool2 and friends (include/wdm.h), and what the MDL code needs
 * to know about pool memory.
 *
 * Pool lives in its own virtual region (KVA_POOL_BASE), RW and NX.  A request of at least
 * POOL_SMALL_MAX bytes gets whole pages, page-aligned, followed by an unmapped guard page;
 * smaller ones come from slab pages of fixed slot sizes, each slot a 16-byte header, the
 * caller's bytes and at least 8 guard bytes.  Guard bytes are checked on free.  A slab page
 * whose slots are all free goes back to the page allocator at once.  Each CPU keeps the small
 * block it freed last of each class for its next allocation of that class (mm/RULES.md pool
 * rule P3; counted as freed, drained by pool_trim and pool_get_stats).
 *
 * Misuse is a bug check with NT's codes:
 *   BAD_POOL_CALLER (0xC2)  0x00 zero bytes; 0x07 double free (0, header, address);
 *                           0x08/0x09 allocate/free above the allowed IRQL;
 *                           0x0A wrong tag (address, allocator's tag, tag used);
 *                           0x40 a user address; 0x42 an address outside any pool;
 *                           0x46 a pool address that is not an allocation; 0x9B tag 0
 *   DRIVER_CORRUPTED_EXPOOL (0xC5)  guard bytes overwritten, found at free or a kept block's reuse:
 *                           (first bad byte, IRQL, 1 = write, allocation address)
 *   DRIVER_VERIFIER_DETECTED_VIOLATION (0xC4) 0x2003 (mdlab's code): freeing pool that is
 *                           still mapped into a user address space (address, pages mapped)
 */
#ifndef MM_POOL_H
#define MM_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "mm/layout.h"
#include "mm/verifier.h"

#define POOL_DEFAULT_PAGES 32768u
#define POOL_SMALL_MAX 2024u       /* requests of this size or more get whole pages */
#define POOL_UNINIT_PATTERN 0xBA   /* what POOL_FLAG_UNINITIALIZED memory holds */
#define POOL_GUARD_PATTERN 0x5A

void pool_init(void);

/* What an address inside pool belongs to. */
struct pool_info {
	uint64_t base;      /* start of the allocation */
	uint64_t size;      /* bytes the caller asked for */
	uint32_t tag;
	bool paged;         /* allocated as paged pool */
	bool whole_pages;   /* a page-granular allocation (>= POOL_SMALL_MAX) */
	bool uninitialized; /* POOL_FLAG_UNINITIALIZED */
};
/* False when va is not inside a live pool allocation.  A small paged allocation whose page
 * is out is brought back first below DISPATCH_LEVEL; at or above it, false (its header is
 * out with the page). */
bool pool_query(uint64_t va, struct pool_info *out);
/* Count a user mapping of the pages under [va, va + size) (delta +1 or -1). */
void pool_note_user_mapping(uint64_t va, uint64_t size, int delta);

struct pool_stats {
	uint64_t bytes_in_use;   /* bytes callers asked for, live */
	uint64_t pages_in_use;   /* physical pages the pool holds */
	uint64_t allocations;    /* live */
	uint64_t slab_pages, large_pages;
	uint32_t va_pages, va_pages_free; /* the pool's virtual range, in pages */
};
void pool_get_stats(struct pool_stats *out);

/* Give back the empty slab pages the pool keeps (one per class at most, see pool.c):
 * unmapped, their frames free.  accounting_snapshot calls it (so ktest's per-case check and
 * every other snapshot see them given back), and so do the tests and the tour before they
 * count frames or pool pages: no figure depends on which classes kept a spare page. */
void pool_trim(void);

/* Paged pool (mm/RULES.md, "Paging"): the pages of POOL_FLAG_PAGED / PagedPool allocations
 * are pageable, whole-page ones' and slab pages (whose free slots are bits of the page's
 * record, not words in the page).  pool_trim_paged: every such page whose frame no lock holds gets its
 * transition PTE and its frame goes to the modified list (the tests, the monitor, and the
 * verifier's force-IRQL checking call it); returns how many.  pool_resolve_fault: a kernel
 * #PF at va in the pool: STATUS_SUCCESS (resolved, soft or hard: retry), STATUS_ACCESS_VIOLATION
 * (not a trimmed paged page), UVM_STATUS_PAGEABLE_AT_DISPATCH (a trimmed page where
 * `may_page` is false, the access at DISPATCH_LEVEL or above or with interrupts off: 0x0A),
 * STATUS_IN_PAGE_ERROR (the read failed; *io_status the device's status of this fault's
 * read).  pool_make_resident: each pageable page of
 * [va, va + len) touched (faulted in); whether there was one. */
uint64_t pool_trim_paged(void);
NTSTATUS pool_resolve_fault(uint64_t va, bool may_page, NTSTATUS *io_status);
bool pool_make_resident(uint64_t va, uint64_t len);
/* Whether any page of [va, va + len) is a page of paged pool, from the page records alone
 * (pool_pageable_map: bit i for pool page i, set while it is a paged page in use): no block
 * header is read, so nothing is faulted in.  Read without the pool lock: a live
 * allocation's pages keep their records, so the answer for a caller's own buffer is exact
 * (pool_lock_pages then walks again under the lock).  Inline for a range inside one word of
 * the map (64 pages): every kernel probe asks, and a nonpaged buffer's answer is a load. */
extern uint64_t *pool_pageable_map;
extern uint32_t pool_va_pages;
bool pool_range_pageable_words(uint64_t va, uint64_t len);
/* The same for the n pages from the page-aligned va (n >= 1): a probe's MDL pages. */
static inline bool pool_pages_pageable(uint64_t va, uint64_t n)
{
	uint64_t first = (va - KVA_POOL_BASE) / PAGE_SIZE, last = first + n - 1;
	if (__builtin_expect(first / 64 != last / 64 || last >= pool_va_pages, 0))
		return pool_range_pageable_words(va, n * PAGE_SIZE);
	uint64_t bits = __atomic_load_n(&pool_pageable_map[first / 64], __ATOMIC_RELAXED) >> (first % 64);
	return bits & ((2ull << (last - first)) - 1); /* bits first..last (2 << 63 is 0: all 64) */
}
static inline bool pool_range_pageable(uint64_t va, uint64_t len)
{
	return len && pool_pages_pageable(va & ~(PAGE_SIZE - 1), ((va & (PAGE_SIZE - 1)) + len + PAGE_SIZE - 1) / PAGE_SIZE);
}
/* A kernel probe's walk and lock of the n pages from va (page-aligned; MmProbeAndLockPages
 * of a range with a paged-pool page, mm/RULES.md "Paging", "Paged pool"): under the pool
 * lock the PTEs are walked (pt_translate_run, the kernel's) and, when every page is present
 * with the access, every frame's lock count raised (pfn_lock_frames) in the same hold, so
 * pool_trim_paged (which skips locked frames, under the same lock) comes either first or
 * after the lock.  A page the walk stops at is faulted in without the lock and the step
 * made again, `passes` at most.  Returns the pages the last walk found (n: every frame
 * locked, *pfns filled, *io whether one was I/O space, *read_only as pt_translate_run). */
uint64_t pool_lock_pages(uint64_t va, uint64_t n, bool write, uint64_t *pfns, bool *read_only, bool *io,
			 unsigned passes);
/* The pool trimmer held off: pageable pool pages stay as they are (valid ones valid, their
 * frames' lock counts as pool_trim_paged would read them) until the release.  It is the pool
 * lock (mm/RULES.md "Locks": after an address-space lock, before the kernel page tables and
 * PFN), so nothing in the hold may touch pageable memory or allocate pool.
 * MmProbeAndLockSelectedPages' walk and lock of a segment array with a paged-pool page
 * (mm/RULES.md "Paging", "Paged pool"). */
KIRQL pool_hold_trimmer(void);
void pool_release_trimmer(KIRQL old);
/* Tests only (tests/pager_test.c): called by pool_lock_pages after it faulted pages in,
 * before it takes the pool lock again for the walk and lock (the window a trim can take a
 * page back in); NULL otherwise. */
extern void (*pool_test_lock_window)(uint64_t va, uint64_t n);
/* Tests only (tests/pager_test.c): called by pool_trim_paged just before it takes the pool
 * lock, with whether the lock is held then (by another CPU: what a trim must wait for);
 * NULL otherwise. */
extern void (*pool_test_trim_entry)(bool lock_busy);
struct pool_paging_stats {
	uint64_t trimmed, soft_faults, hard_faults, collided_faults, inpage_errors;
};
void pool_get_paging_stats(struct pool_paging_stats *out);

/* ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag) for the kernel's own callers; with
 * may_relieve false it never relieves memory pressure: a new pool page that finds no frame is
 * NULL at once, no trim, no wait for the pagefile writer (MmAllocatePagesForMdl(Ex)'s MDL,
 * false under MM_ALLOCATE_NO_WAIT; mm/RULES.md "Paging", memory pressure). */
void *pool_alloc_nonpaged(SIZE_T size, ULONG tag, bool may_relieve);

/* What one pool tag holds now. */
struct pool_tag_usage {
	uint32_t tag;
	uint64_t allocs, bytes;   /* live allocations and the bytes they asked for */
};
/* The tags with live allocations, at most `max` of them into out[]; returns how many. */
unsigned pool_get_tags(struct pool_tag_usage *out, unsigned max);

#endif
