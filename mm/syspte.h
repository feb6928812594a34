/*
 * The system-PTE space: the kernel virtual region where MDLs are mapped (mm/layout.h,
 * KVA_SYSPTE_BASE), handed out as runs of contiguous PTEs.
 *
 * Size: boot option syspte=N (PTEs), default SYSPTE_DEFAULT_COUNT.  Its page tables are made
 * at boot and kept, so mapping into a reservation never allocates.
 *
 * Page priorities (mm/RULES.md decision 6) — fixed shares of the region:
 *   Low    (priority < 16) fails when fewer than total/8 PTEs would stay free;
 *   Normal (priority < 32) fails when fewer than total/32 would stay free;
 *   High   fails only when no free run is long enough.
 *
 * Release drops this CPU's translations of the range before it returns (INVLPG up to
 * TLB_SINGLE_FLUSH_MAX pages, a full flush above), so an access through a released address
 * faults at once.  With one CPU nothing more is needed; when more CPUs arrive, the range must
 * not be handed out again before every CPU has flushed — that part, and only that part, may be
 * deferred and batched.
 */
#ifndef MM_SYSPTE_H
#define MM_SYSPTE_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/pt.h"

#define SYSPTE_DEFAULT_COUNT 65536u
#define SYSPTE_PRIORITY_NORMAL 16
#define SYSPTE_PRIORITY_HIGH 32
#define SYSPTE_LOW_RESERVE(total) ((total) / 8)
#define SYSPTE_NORMAL_RESERVE(total) ((total) / 32)

struct syspte_stats {
	uint64_t total, free, in_use, largest_free, free_runs, peak_in_use;
	uint64_t reservations, releases, failures_low, failures_normal, failures_high;
	uint64_t flushes;        /* releases that flushed (every release does, on its own CPU) */
	uint64_t deferred;       /* releases whose other CPUs' flush was deferred (tlb=lazy) */
	uint64_t purges;         /* purge rounds that flushed the deferred ranges everywhere */
};

void syspte_init(void);
/* Reserve n PTEs (plus one unmapped guard PTE after them when `guard`); returns the
 * virtual address of the first, or 0 when the priority's threshold or the space says no.
 * `priority` is an MM_PAGE_PRIORITY value without the MdlMapping* flags. */
uint64_t syspte_reserve(uint32_t n, uint32_t priority, bool guard);
/* Map frames into a reservation: n 4 KiB PTEs from pfns[]. */
void syspte_map(uint64_t va, const uint64_t *pfns, uint32_t n, struct pt_attrs a);
/* PANIC unless [va, va + n pages) lies in the reservation that starts at va (its guard PTE
 * excluded): for callers that write the PTEs themselves (pt_set_ptes_run). */
void syspte_check_range(uint64_t va, uint32_t n);
/* The one-page MDL mapping's pair (mm/syspte.c, "Each CPU's slot"): syspte_reserve(1,
 * priority, false) and syspte_release(va, 1), the same answers and bug checks, but the last
 * one-PTE run this CPU released under the strict policy is kept for its next one, without
 * the lock. */
uint64_t syspte_reserve_one(uint32_t priority);
void syspte_release_one(uint64_t va);
/* How many CPUs keep a released one-PTE slot now (tests; syspte_get_stats gives them back). */
uint32_t syspte_kept_slots(void);
/* Clear the PTEs, flush them, and give the run back.  A bad call is bug check
 * SYSTEM_PTE_MISUSE with Microsoft's parameters (mm/RULES.md, 0xDA): P1 1 double release
 * (record, 0, record), 2 wrong count (record, expected count, n), 3 not a reservation's
 * address (record of the reservation holding va or 0, its start or 0, va). */
void syspte_release(uint64_t va, uint32_t n);
/* mdlab's lock-tracking record of the system PTE at va, which bug check 0xDA names: the
 * allocator's entry for that PTE (a reservation's record is its first PTE's); 0 outside
 * the region. */
uint64_t syspte_tracking_record(uint64_t va);
/* The first VA of the reservation holding va, 0 when none does. */
uint64_t syspte_reservation_of(uint64_t va);
bool syspte_contains(uint64_t va);
/* Whether the reservation that starts at va has a guard PTE after it (false: none starts there). */
bool syspte_guarded(uint64_t va);
void syspte_get_stats(struct syspte_stats *out);
/* The first VA of the region and its size in PTEs (tests compute thresholds from it). */
uint64_t syspte_base(void);
uint32_t syspte_total(void);
/* Under tlb=lazy: at most this many released ranges wait for a purge (mm/syspte.c). */
#define SYSPTE_DEFER_MAX_RANGES 32
/* Under tlb=lazy: the released ranges (and their pages) waiting for the next purge. */
void syspte_deferred(unsigned *ranges, uint32_t *pages);

#endif
