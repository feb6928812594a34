/*
 * The page-table module: the only code that reads or writes page-table entry bits.
 *
 * A mapping is described by struct pt_attrs (rights and memory type); entries are made by
 * named constructors inside pt.c.  Intermediate tables are allocated on demand and freed when
 * they become empty; a 2 MiB or 1 GiB page is split when part of it changes (the other pages
 * keep identical frames, rights and type), and 512 uniform contiguous leaves are merged back
 * into the large page they came from.  Every change that can leave a stale translation is
 * followed, before the call returns, by a TLB flush of the range in the address space that
 * changed (mm/tlb.h).
 *
 * Levels: 1 = PT (4 KiB leaf), 2 = PD (2 MiB leaf), 3 = PDPT (1 GiB leaf), 4 = PML4.
 */
#ifndef MM_PT_H
#define MM_PT_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/pat.h"

struct pt_attrs {
	bool write;
	bool exec;
	bool user;
	bool global;
	enum memtype type;
};

/* Whether two attribute sets are the same mapping rights and type (every field compared). */
static inline bool pt_attrs_equal(struct pt_attrs x, struct pt_attrs y)
{
	return x.write == y.write && x.exec == y.exec && x.user == y.user && x.global == y.global &&
	       x.type == y.type;
}

/* An address space: the physical address of its PML4. */
struct klock;
struct pt_root {
	uint64_t pml4;
	/* The lock every walk and change of the user half holds: its process's address-space
	 * lock (mm/mmproc.h).  NULL for a root no other CPU walks (kernel_root, whose user half
	 * is empty; the APs' start-up root).  A change of a guarded user half, or a probe's
	 * walk (pt_translate_run), without its lock is a PANIC; pt_query and pt_for_each_leaf
	 * take it for their walk when the caller does not hold it (mm/RULES.md, "Locks"). */
	struct klock *guard;
};

extern struct pt_root kernel_root;

/* What one virtual address translates to, read from the real tables. */
struct pt_query {
	bool present;
	int level;            /* level of the leaf (1, 2 or 3), or where the walk stopped */
	uint64_t pa;          /* physical address of the queried byte */
	uint64_t leaf_va;     /* start of the leaf's page */
	uint64_t leaf_size;
	uint64_t entry[5];    /* entry[4] = PML4E ... entry[level] = the leaf; 0 below */
	uint64_t entry_pa[5]; /* physical address of each entry */
	struct pt_attrs eff;  /* effective rights across levels (RW, US ANDed; NX ORed) */
	int pat_slot;         /* the PAT slot the leaf selects */
};

/* Flags for pt_map. */
#define PT_MAP_LARGE 0x1  /* use 2 MiB / 1 GiB leaves where alignment and size allow */

/* Create an address space: a zeroed PML4 whose kernel half (slots 256-511) points at the
 * kernel's tables, with no guard (a process's sets its lock).  Returns false when no frame
 * is left. */
bool pt_root_create(struct pt_root *r);

/* Free an address space's PML4; its user half must be empty already. */
void pt_root_destroy(struct pt_root *r);

/* Map [va, va + size) to [pa, pa + size) with `a`; va, pa, size page-aligned; the range must
 * be unmapped.  Returns false (nothing left mapped, tables freed) when a table frame could
 * not be had; PANICs on an overlap (a caller bug). */
bool pt_map(struct pt_root *r, uint64_t va, uint64_t pa, uint64_t size, struct pt_attrs a,
	    unsigned flags);
/* Map the n pages from va (page-aligned, unmapped) to frames pfns[0..n) with 4 KiB leaves,
 * all with `a`: pt_map of each page, one walk per page table.  The same contract: false
 * (nothing left mapped, tables freed) when a table frame could not be had; PANICs on an
 * overlap. */
bool pt_map_frames(struct pt_root *r, uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a);
/* Unmap [va, va + size): large pages straddling an edge are split, empty tables freed, the
 * TLB flushed.  Unmapped holes in the range are fine. */
void pt_unmap(struct pt_root *r, uint64_t va, uint64_t size);
/* Give every mapped page in [va, va + size) the attributes `a` (frames unchanged): large
 * pages straddling an edge are split, uniform ones merged back, the TLB flushed.  Returns
 * false (nothing changed) when a table frame could not be had for a split. */
bool pt_protect(struct pt_root *r, uint64_t va, uint64_t size, struct pt_attrs a);
/* Whether va is canonical for 4-level paging: bits 63..47 all equal (SDM Vol. 3A, 4.5). */
static inline bool pt_is_canonical(uint64_t va)
{
	return (uint64_t)((int64_t)(va << 16) >> 16) == va;
}
/* Read the translation of va; a non-canonical va is not present (level 4, no entry read). */
void pt_query(const struct pt_root *r, uint64_t va, struct pt_query *out);
/* The 4 KiB PTE of va read with no lock taken, for a fault handler whose caller may hold the
 * lock a walk needs (or one ranked after it): 0 when a level above is not present or is a
 * large leaf.  Each table is read through the direct map, which never faults; a table freed
 * meanwhile by a prune held no entry for va, so a non-zero PTE read is one va had at the
 * fault, unless va's own PTE was being cleared (its memory freed) at the same time. */
uint64_t pt_leaf_unlocked(const struct pt_root *r, uint64_t va);

/* Software PTEs: what a user 4 KiB leaf holds while its page is not valid, in NT's x64
 * layouts so that `pte` decodes them as WinDbg's !pte does (mm/RULES.md, "Paging"):
 *     MMPTE_TRANSITION  Valid 0, Protection 5-9, Prototype 10 = 0, Transition 11 = 1,
 *                       PageFrameNumber 12-47: the frame still holds the page
 *     MMPTE_SOFTWARE    Valid 0, PageFileLow 1-4, Protection 5-9, Prototype 10 = 0,
 *                       Transition 11 = 0, PageFileHigh 32-63: the page is at that offset of
 *                       that pagefile (offset 0: demand zero)
 * Protection is NT's 5-bit MM_ value (MM_READONLY 1 ... MM_NOACCESS 0x18), not PAGE_*. */
enum pt_sw_kind { PT_SW_ZERO, PT_SW_VALID, PT_SW_TRANSITION, PT_SW_PAGEFILE, PT_SW_DEMAND_ZERO, PT_SW_PROTOTYPE };
struct pt_sw {
	enum pt_sw_kind kind;
	unsigned protection;  /* MM_ value (transition, pagefile, demand zero) */
	uint64_t pfn;         /* transition */
	unsigned pagefile;    /* PageFileLow */
	uint32_t offset;      /* PageFileHigh */
};
void pt_decode_software(uint64_t entry, struct pt_sw *out);
uint64_t pt_transition_pte(uint64_t pfn, unsigned protection);
uint64_t pt_pagefile_pte(unsigned pagefile, uint32_t offset, unsigned protection);
/* The trim of one page: the present 4 KiB leaf at va (a user page, or with kernel_root a
 * kernel one: paged pool) replaced by the not-present value sw in one atomic exchange, and flushed from every CPU that may cache it before the call
 * returns (so nothing writes the frame through an old translation once it is on a list).
 * Returns the leaf as it was.  Under the address-space lock; PANIC if va has no such leaf. */
uint64_t pt_trim_page(struct pt_root *r, uint64_t va, uint64_t sw);
/* The trim of n (<= PT_TRIM_BATCH) kernel pages at once (paged pool's trim): each present 4 KiB
 * leaf va[i] replaced by sw[i] in one atomic exchange, then one flush for the batch (this
 * CPU's entries, and every other CPU's in one tlb_purge round) before the call returns.
 * Under the kernel page-table lock; PANIC if a va has no such leaf. */
#define PT_TRIM_BATCH 32
void pt_trim_kernel_pages(const uint64_t *va, const uint64_t *sw, unsigned n);
/* The user trimmer's batch (mm/uvm.c): for each present 4 KiB leaf of the n user pages from
 * va (one walk a page table), pick(ctx, va, pfn, pte_pa) returns the not-present value to put
 * there, or 0 to leave the page valid; each is exchanged atomically and NOT flushed: the
 * caller flushes the range from every CPU (tlb_flush_range of r) before any of the frames goes
 * on a list.  Returns how many were exchanged.  Under the address-space lock. */
typedef uint64_t (*pt_trim_pick_fn)(void *ctx, uint64_t va, uint64_t pfn, uint64_t pte_pa);
uint64_t pt_trim_run_unflushed(struct pt_root *r, uint64_t va, uint64_t n, pt_trim_pick_fn pick, void *ctx);
/* Write the not-present value sw over the not-present 4 KiB leaf at va (a software PTE or 0;
 * a user page, or with kernel_root a kernel one);
 * sw 0 clears it, and the tables that became empty go (after a flush).  Under the
 * address-space lock; PANIC if va is present or (sw not 0) has no page table. */
void pt_set_software(struct pt_root *r, uint64_t va, uint64_t sw);
/* The one write of a user PTE without its address-space lock: the PFN lock's holder turns
 * the transition PTE at physical address pte_pa, which still names a standby frame the PFN
 * database says it names, into sw (a pagefile PTE) when the frame is repurposed.  One
 * compare-exchange; false when the PTE was not `expect` (a caller bug: the database and the
 * PTE disagree).  A not-present entry is never cached: no flush. */
bool pt_swap_software_at(uint64_t pte_pa, uint64_t expect, uint64_t sw);

/* Change the memory type of the kernel page at va (a direct-map alias) by the SDM's
 * procedure (Vol. 3A, 11.12.4): split its leaf to 4 KiB if needed, make it not present,
 * flush it from every CPU's TLB, write it again with type t (frame, rights, A and D kept),
 * merge back what became uniform.  Between the flush and the new entry an access to va
 * faults (not present).  False (nothing changed) when the split finds no frame.  The
 * caller flushes the page's cache lines afterwards (memtype.c). */
bool pt_retype_page(uint64_t va, enum memtype t);
/* Tests only: called in that window, with the kernel page-table lock held; NULL otherwise. */
extern void (*pt_test_retype_window)(uint64_t va);

/* Translate the n pages from va (page-aligned) as pt_query would, one walk per page table
 * rather than per page: pfns[i] (when pfns is not NULL) gets page i's frame, for as long as
 * each page is present and, where asked, writable and user-accessible (effective rights).
 * *read_only (when not NULL) is set when a page that passed is not writable (effective
 * rights; mm/RULES.md decision 9).  Returns how many pages from va passed: n, or the index
 * of the first that did not (a non-canonical address does not). */
uint64_t pt_translate_run(const struct pt_root *r, uint64_t va, uint64_t n, bool write, bool user, uint64_t *pfns,
			  bool *read_only);

/* Call fn for every present leaf overlapping [lo, hi), in address order. */
struct pt_leaf {
	uint64_t va, size, pa;
	int level;
	uint64_t entry;
	struct pt_attrs eff;  /* effective across levels */
	struct pt_attrs own;  /* the leaf entry's own bits (its U/S, RW, NX, G, type) */
	int pat_slot;
};
typedef void (*pt_leaf_fn)(const struct pt_leaf *leaf, void *ctx);
void pt_for_each_leaf(const struct pt_root *r, uint64_t lo, uint64_t hi, pt_leaf_fn fn, void *ctx);

/* Create the kernel's PML4 and every kernel-half PDPT (shared by all address spaces). */
bool pt_kernel_root_init(void);

/* Make every table down to level 1 for [va, va + size) (2 MiB-aligned, in the kernel half) in
 * the kernel's tables now and keep them for good: the range is never pruned or merged, so
 * pt_set_ptes / pt_clear_ptes never allocate or walk (its level-1 tables are one contiguous
 * array).  The kernel half is shared by every address space, so the functions below take no
 * root, and flush as kernel_root.  False when out of frames. */
bool pt_prepopulate(uint64_t va, uint64_t size);
/* Write n 4 KiB leaves at va (a prepopulated, unmapped range) for frames pfns[0..n). */
void pt_set_ptes(uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a);
/* The same without the already-mapped check, for a reservation known to be empty: n 4 KiB
 * leaves at va, every one with the attributes `a` (one memory type).  The MDL mapping writes
 * each run of frames of one type with one call; the caller decides the types (memtype.h). */
void pt_set_ptes_run(uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a);
/* pt_set_ptes_run of one page: the 4 KiB leaf at va for frame pfn. */
void pt_set_pte(uint64_t va, uint64_t pfn, struct pt_attrs a);
/* Change the rights of n mapped 4 KiB leaves at va (prepopulated) in place, frame and
 * memory-type bits kept; present = false clears only P, so a later call can make the same
 * frame and type present again.  Flushes before returning. */
void pt_reprotect_ptes(uint64_t va, uint64_t n, bool present, bool write, bool exec);
/* Clear n 4 KiB leaves at va (prepopulated) and flush them from the TLB before returning.
 * Both flush as leaves (tlb_flush_leaf_range): a CPU idle in HLT takes it when it wakes. */
void pt_clear_ptes(uint64_t va, uint64_t n);
/* The same, flushed on this CPU only: the lazy policy's release (mm/syspte.c), whose other
 * CPUs flush in a later tlb_purge. */
void pt_clear_ptes_local(uint64_t va, uint64_t n);

/* The PWT/PCD/PAT bits a leaf at `level` carries for memory type t (the PAT bit is bit 7 at
 * level 1, bit 12 at levels 2 and 3); PT_CACHE_BITS_INVALID for MT_NONE or any value that is
 * no type.  And the inverse for tools: the memory type a leaf entry selects. */
#define PT_CACHE_BITS_INVALID (~0ull)
uint64_t pt_cache_bits(enum memtype t, int level);
enum memtype pt_entry_memtype(uint64_t entry, int level);

/* Benchmark baseline (make bench): write n PTEs at va (prepopulated, within one page table)
 * from pfns[], clear them, INVLPG each.  No checks: for measuring only. */
void pt_bench_baseline(uint64_t va, const uint64_t *pfns, uint64_t n);

/* Test hook for the audit's proof case: flip the U/S bit of the leaf mapping va. */
void pt_test_set_leaf_user(struct pt_root *r, uint64_t va, bool user);

/* Number of page-table frames the kernel's tables use (for mem, tests). */
uint64_t pt_table_frames(void);

/* Decode an entry's bits for tools: "P RW US PWT PCD A D PS/PAT G NX". */
void pt_describe_entry(uint64_t entry, int level, char *buf, unsigned size);

#endif
