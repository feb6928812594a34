/*
 * TLB invalidation, in one place: the only code that executes INVLPG or loads CR3.
 *
 * A range of at most TLB_SINGLE_FLUSH_MAX pages is flushed page by page with INVLPG; a larger
 * one by a full flush (CR4.PGE toggled, which drops global entries too).  32: an INVLPG costs
 * about as much as refilling a few TLB entries, and the TLBs of the CPUs mdlab runs on hold
 * 32-64 4 KiB entries per level-1 TLB, so past 32 pages a full flush throws away little that
 * would have survived and costs less than the loop (Linux's measured cut-off is 33).
 */
#ifndef MM_TLB_H
#define MM_TLB_H

#include <stdint.h>

#define TLB_SINGLE_FLUSH_MAX 32

struct tlb_stats {
	uint64_t single_pages;   /* INVLPG executed */
	uint64_t full_flushes;   /* full flushes (global entries included) */
};

/* The bare instruction, for tlb.c and the benchmark baseline only. */
static inline void tlb_invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

void tlb_flush_page(uint64_t va);
/* Flush [va, va + size): page by page up to the threshold, else everything. */
void tlb_flush_range(uint64_t va, uint64_t size);
void tlb_flush_all(void);
/* Switch to another PML4 (physical address); non-global translations go with it. */
void tlb_load_root(uint64_t pml4_pa);
void tlb_get_stats(struct tlb_stats *out);

#endif
