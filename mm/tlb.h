/*
 * TLB invalidation and address-space switches, in one place: mm/tlb.c is the only code that
 * executes INVLPG, loads CR3 or writes CR4 (whose PGE bit, toggled, is a full flush); the one
 * exception is the benchmark baseline's bare INVLPG at the end of this header.
 *
 * Every flush names the address space it is for, by its struct pt_root (mm/pt.h).  That is
 * what decides which CPUs must flush (the shape of an SMP shootdown):
 *   - kernel_root: the kernel half is shared by every address space and its leaves are
 *     global, so its translations may be cached on every CPU, whatever CR3 each has loaded;
 *   - a process's root: its user half is cached only on the CPUs that have that root
 *     loaded, since without PCIDs a CR3 load drops every non-global translation and every
 *     paging-structure cache entry.
 * Each flush is done here first, then on every other CPU that may hold the entries, through
 * an IPI, and returns only when they have all done it (the strict policy of mm/RULES.md,
 * "TLB shootdown").  A change to the kernel half made through a process's root (the PML4
 * slots are shared) is flushed as the kernel's.  The AP trampoline (kernel/smp/
 * trampoline.asm) writes CR3 and CR4 before there is a kernel on its CPU; nothing else does.
 *
 * A range of at most TLB_SINGLE_FLUSH_MAX pages is flushed page by page with INVLPG; a larger
 * one by a full flush.  32: an INVLPG costs about as much as refilling a few TLB entries, and
 * the TLBs of the CPUs mdlab runs on hold 32-64 4 KiB entries per level-1 TLB, so past 32
 * pages a full flush throws away little that would have survived and costs less than the
 * loop (Linux's measured cut-off is 33).
 */
#ifndef MM_TLB_H
#define MM_TLB_H

#include <stdbool.h>
#include <stdint.h>
#include "kernel/smp/percpu.h"

struct pt_root;

#define TLB_SINGLE_FLUSH_MAX 32

struct tlb_stats {
	uint64_t single_pages;   /* INVLPG executed (by the CPU that asked) */
	uint64_t full_flushes;   /* full flushes (CR4.PGE toggles and CR3 reloads) */
	uint64_t shootdowns;     /* flushes that had to reach other CPUs */
	uint64_t shootdown_ipis; /* the IPIs they sent */
	uint64_t purges;         /* tlb_purge rounds (the lazy policy's deferred flushes) */
	uint64_t purge_ipis;     /* the IPIs those rounds sent */
	uint64_t purged_ranges;  /* the ranges they flushed */
	uint64_t deferred;       /* flushes (shootdowns and purges) left for an idle CPU's wake
				  * instead of an IPI to it, one per CPU */
};

/*
 * The shootdown policy, chosen at boot by `tlb=strict` (the default) or `tlb=lazy` on the
 * kernel command line (mm/RULES.md, "TLB shootdown"): under lazy a released system-PTE range
 * is flushed at once only on the CPU that released it; the other CPUs flush it in one
 * tlb_purge round that serves many releases, always before the range is handed out again
 * (mm/syspte.c).  Everything else is strict under both policies.
 */
void tlb_policy_init(void);
extern bool tlb_lazy_policy; /* set once, by tlb_policy_init; read through tlb_policy_lazy */
static inline bool tlb_policy_lazy(void) { return __builtin_expect(tlb_lazy_policy, 0); }

/* A range of the kernel half for tlb_purge. */
struct tlb_range {
	uint64_t va;
	uint32_t pages;
};
/* The lazy policy's deferred flush: one IPI round in which every other CPU drops kernel_root's
 * translations of the n ranges (page by page, or all of them when more than
 * TLB_SINGLE_FLUSH_MAX pages in total), returning when all have.  This CPU flushed them when
 * it cleared them (tlb_flush_range_local). */
void tlb_purge(const struct tlb_range *r, unsigned n);
/* root's translations of [va, va + size) on this CPU only: the lazy release's own flush. */
void tlb_flush_range_local(const struct pt_root *root, uint64_t va, uint64_t size);

/* Drop root's translation of the page holding va. */
void tlb_flush_page(const struct pt_root *root, uint64_t va);
/* Drop root's translations of [va, va + size): page by page up to the threshold, else all. */
void tlb_flush_range(const struct pt_root *root, uint64_t va, uint64_t size);
/* The same after clearing or downgrading leaves only, with no page-table frame freed and no
 * memory type changed (pt_clear_ptes, pt_reprotect_ptes): a CPU idle in HLT is not sent an
 * IPI but marked to flush everything when it wakes, before it executes anything that could
 * use the entries (mm/RULES.md, "Idle CPUs take their flush when they wake").  When this
 * returns no CPU can reach the old frame or use the old rights, as with the two above. */
void tlb_flush_leaf_page(const struct pt_root *root, uint64_t va);
void tlb_flush_leaf_range(const struct pt_root *root, uint64_t va, uint64_t size);
/* Drop every translation of root.  For kernel_root that is everything, global entries
 * included, on every CPU: what a change of memory types needs (pat_write_msr). */
void tlb_flush_all(const struct pt_root *root);

/* Load root's PML4 into CR3: this CPU now runs in that address space, and the previous
 * space's non-global translations are gone. */
void tlb_switch_to(const struct pt_root *root);
/* The boot's CR4 paging controls: set the CR4 bits in `bits` (CR4_PGE, CR4_SMEP, CR4_SMAP of
 * kernel/cpu.h; nothing else), once, after the switch to the kernel's tables.  Turning PGE on
 * makes the kernel's global leaves outlive later CR3 loads. */
void tlb_enable_cr4(uint64_t bits);
/* An AP's start (kernel/smp/smp.c): CR4 = the boot CPU's value, whole, then a full flush. */
void tlb_load_cr4_ap(uint64_t value);
/* This CPU's TLB, everything, and no other CPU's: for pat_init_ap, while an AP starts. */
void tlb_flush_all_local(void);
/* For tests only: false stops telling the other CPUs (the shootdown proof shows the stale
 * entry that survives then); true again at once after. */
void tlb_test_set_shootdown(bool on);
/* For tests only: false makes a waking CPU skip the flush left pending for it (the proof
 * that the wake flush is what drops the stale entry); true again at once after. */
void tlb_test_set_wake_flush(bool on);

/* An idle CPU's wake (mm/RULES.md, "Idle CPUs take their flush when they wake"): the first
 * thing kernel/trap.c's trap_dispatch does for every vector, and ap_idle after HLT.  Only
 * this CPU leaves KCPU_RUNNING (the others change IDLE into FLUSH_PENDING), so one
 * GS-relative load that reads RUNNING is the whole of the common case. */
void tlb_idle_wake_slow(void);
static inline void tlb_idle_wake(void)
{
	uint32_t s;
	KCPU_READ_GS(idle_state, s);
	if (__builtin_expect(s != KCPU_RUNNING, 0))
		tlb_idle_wake_slow();
}

void tlb_get_stats(struct tlb_stats *out);

/* The benchmark's door, for pt_bench_baseline (make bench) and nothing else: the bare
 * INVLPG, with no address space and no count, inline — the least a flush can cost, which is
 * what the baseline measures the real path against. */
static inline void tlb_bench_invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

#endif
