/*
 * The pager's edges (mm/RULES.md, "Paging"): where it must do nothing, refuse, or stop with
 * the right bug check.
 *
 *   - memory pressure with no pagefile: relief trims nothing (a trimmed page could only go
 *     to the modified list), so the allocation fails with every user page's PTE still valid,
 *     its frame the same, and the trim and relief counts unchanged;
 *   - a not-present fault on a page the process's tables map, taken by a CPU whose CR3 holds
 *     another root: refused (the #PF's vector, error code and CR2 caught), not retried for
 *     ever;
 *   - death cases: a trimmed page of paged pool or of a process touched at DISPATCH_LEVEL, or
 *     with interrupts off, by code holding a lock ranked after the pool's and the address
 *     space's (a device lock: a leaf taken at any rank) is 0x0A with all four parameters,
 *     not the lock-order bug check 0xC4 0x2009 the resolver's own locks would raise.
 *
 * Every case but the death cases ends with frames, pool and slots where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "tests/lib/uproc.h"
#include "include/wdm.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/smp/klock.h"
#include "kernel/trap.h"
#include "mm/mm.h"
#include "mm/pagefile.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/tlb.h"
#include "mm/uvm.h"

#define P PAGE_SIZE
#define EDGE_TAG 0x65676445u /* 'Edge' */
#define EDGE_SEED 0x45440001u

static EPROCESS proc;
static KAPC_STATE apc;
static bool live;
/* A device's own lock: KLOCK_DEVICE, a leaf taken at any rank, ranked after every lock the
 * fault resolvers take. */
static struct klock device_lock = KLOCK_INIT(KLOCK_DEVICE);

static uint64_t raw(uint64_t va) { return mmt_raw_pte_in(&proc.mm.root, va); }
static uint64_t kraw(uint64_t va) { return mmt_raw_pte_in(&kernel_root, va); }

static uint64_t commit(struct ktest *t, uint64_t pages) { return uproc_commit(t, &proc, pages); }

/* Page i of [base, base + pages) gets the pattern of seed + i (its demand-zero fault taken). */
static NTSTATUS write_page(uint64_t base, unsigned i, uint32_t seed)
{
	return uproc_write_page(&proc, &apc, base, i, seed);
}

static struct uvm_paging_stats stats(void)
{
	struct uvm_paging_stats s;
	uvm_get_paging_stats(&s);
	return s;
}

static struct pfn_stats pfn_now(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s;
}

/* Every free and standby frame taken, linked through the frames themselves. */
static pfn_t hoard;
static void hoard_all_frames(void)
{
	hoard = PFN_INVALID;
	for (struct pfn_stats s = pfn_now(); s.free || s.standby; s = pfn_now()) {
		pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
		if (f == PFN_INVALID)
			break;
		*(pfn_t *)pfn_to_virt(f) = hoard;
		hoard = f;
	}
}

static void release_hoard(void)
{
	while (hoard != PFN_INVALID) {
		pfn_t next = *(pfn_t *)pfn_to_virt(hoard);
		pfn_free(hoard);
		hoard = next;
	}
}

/* ---- cases ---- */

#define RELIEF_PAGES 4u
/* No pagefile: a relief would trim every working set and paged pool to the modified list,
 * with its shootdowns, for nothing (no write can make standby of it), and every page would
 * fault back.  It trims nothing: a nonpaged-pool page and a demand-zero fault with no frame
 * fail, the process's pages keep their valid PTEs and frames, no trim or relief is counted,
 * the modified list is unchanged.  Before, all of them were trimmed. */
static void relief_with_no_pagefile_trims_nothing(struct ktest *t)
{
	struct pagefile_stats ps;
	pagefile_get_stats(&ps);
	ASSERT_FALSE(t, ps.attached);
	ASSERT_FALSE(t, pagefile_can_write());
	uint64_t base = commit(t, RELIEF_PAGES + 1); /* the last page stays demand zero */
	pfn_t frames[RELIEF_PAGES];
	for (unsigned i = 0; i < RELIEF_PAGES; i++) {
		ASSERT_EQ(t, write_page(base, i, EDGE_SEED), STATUS_SUCCESS);
		frames[i] = mmt_frame_in(&proc.mm.root, base + i * P);
	}
	struct uvm_paging_stats s0 = stats();
	hoard_all_frames();
	struct pfn_stats p0 = pfn_now();
	void *np = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, EDGE_TAG);
	NTSTATUS st = write_page(base, RELIEF_PAGES, EDGE_SEED);
	struct uvm_paging_stats s1 = stats();
	struct pfn_stats p1 = pfn_now();
	uint64_t pte[RELIEF_PAGES];
	pfn_t now[RELIEF_PAGES];
	for (unsigned i = 0; i < RELIEF_PAGES; i++) {
		pte[i] = raw(base + i * P);
		now[i] = mmt_frame_in(&proc.mm.root, base + i * P);
	}
	release_hoard();
	if (np)
		ExFreePoolWithTag(np, EDGE_TAG);
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_TRUE(t, np == NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, s1.trimmed, s0.trimmed);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	EXPECT_EQ(t, p1.modified, p0.modified);
	for (unsigned i = 0; i < RELIEF_PAGES; i++) {
		EXPECT_TRUE(t, mmt_has(pte[i], MMT_PTE_P));
		EXPECT_EQ(t, now[i], frames[i]);
	}
	EXPECT_EQ(t, raw(base + RELIEF_PAGES * P), 0u);
}

/* A fault on a page the process's tables map, by a CPU that translates through another root
 * (CR3 the kernel's, mm_current() still the process): the handler finds the PTE present, and
 * a retry would fault again on the same address for ever.  It is refused: the kernel's
 * probe, in its SMAP window, gets the #PF (not present, read, supervisor) at the page.  Back
 * in the process's tables the same load reads the page. */
static void a_fault_through_another_root_is_refused_not_retried(struct ktest *t)
{
	uint64_t base = commit(t, 1);
	ASSERT_EQ(t, write_page(base, 0, EDGE_SEED + 0x10), STATUS_SUCCESS);
	ASSERT_TRUE(t, mmt_has(raw(base), MMT_PTE_P));
	uint8_t want[P], v = 0, w = 0;
	pattern_fill(want, P, EDGE_SEED + 0x10);
	struct faultcap f, g;
	KeStackAttachProcess(&proc, &apc);
	tlb_switch_to(&kernel_root);
	user_access_begin();
	bool elsewhere = faultcap_try_load8(base + 0x30, &v, &f);
	user_access_end();
	tlb_switch_to(&proc.mm.root);
	user_access_begin();
	bool home = faultcap_try_load8(base + 0x30, &w, &g);
	user_access_end();
	KeUnstackDetachProcess(&apc);
	EXPECT_FALSE(t, elsewhere);
	EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, base + 0x30);
	EXPECT_EQ(t, f.rip, (uint64_t)faultcap_load8);
	EXPECT_TRUE(t, home);
	EXPECT_EQ(t, w, want[0x30]);
}

/* A whole-page paged-pool buffer, trimmed: its PTE in transition. */
static uint8_t *trimmed_paged_page(struct ktest *t)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, P, EDGE_TAG);
	ASSERT_TRUE(t, b != NULL);
	memset(b, 0x5E, P);
	ASSERT_GE(t, pool_trim_paged(), 1u);
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b)));
	return b;
}

/* Death: code holding a device lock (at DISPATCH_LEVEL) touches trimmed paged pool: 0x0A
 * (the address, DISPATCH_LEVEL, 0 for a read, the RIP of the load).  Before, the pool's
 * resolver took its own lock out of order: 0xC4 0x2009. */
static void trimmed_paged_pool_under_a_device_lock_is_0x0a(struct ktest *t)
{
	uint8_t *b = trimmed_paged_page(t);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, (uint64_t)b + 8, DISPATCH_LEVEL, 0, (uint64_t)faultcap_load8,
			  KTEST_P_ALL);
	KIRQL old = klock_acquire(&device_lock);
	faultcap_load8((uint64_t)b + 8);
	klock_release(&device_lock, old);
	KTEST_FAIL(t, "the load under the device lock returned");
}

/* Death: the same with interrupts off too: 0x0A with 0xFF as the IRQL.  Before, the #PF
 * handler's walk for the interrupts-off case took the kernel page-table lock out of order:
 * 0xC4 0x2009. */
static void trimmed_paged_pool_under_a_device_lock_with_interrupts_off_is_0x0a(struct ktest *t)
{
	uint8_t *b = trimmed_paged_page(t);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, (uint64_t)b + 8, UVM_IRQL_INTERRUPTS_OFF, 0,
			  (uint64_t)faultcap_load8, KTEST_P_ALL);
	KIRQL old = klock_acquire(&device_lock);
	__asm__ volatile("cli" ::: "memory");
	faultcap_load8((uint64_t)b + 8);
	__asm__ volatile("sti" ::: "memory");
	klock_release(&device_lock, old);
	KTEST_FAIL(t, "the load under the device lock with interrupts off returned");
}

/* Death: a process's trimmed page touched in the SMAP window under the device lock: 0x0A
 * (the address, DISPATCH_LEVEL, 0, the RIP of the load).  Before, the resolver took the
 * address-space lock out of order: 0xC4 0x2009. */
static void a_trimmed_user_page_under_a_device_lock_is_0x0a(struct ktest *t)
{
	uint64_t base = commit(t, 1);
	ASSERT_EQ(t, write_page(base, 0, EDGE_SEED + 0x20), STATUS_SUCCESS);
	struct uvm_trim_result r;
	uvm_trim(&proc.mm, &r);
	ASSERT_EQ(t, r.trimmed, 1u);
	ASSERT_TRUE(t, mmt_sw_is_transition(raw(base)));
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, base + 0x40, DISPATCH_LEVEL, 0, (uint64_t)faultcap_load8,
			  KTEST_P_ALL);
	KeStackAttachProcess(&proc, &apc);
	KIRQL old = klock_acquire(&device_lock);
	user_access_begin();
	faultcap_load8(base + 0x40);
	user_access_end();
	klock_release(&device_lock, old);
	KeUnstackDetachProcess(&apc);
	KTEST_FAIL(t, "the load under the device lock returned");
}

static int edge_init(struct ktest *t)
{
	(void)t;
	memset(&proc, 0, sizeof proc);
	live = mm_process_init(&proc.mm, &proc, false);
	return live ? 0 : 1;
}

static void edge_exit(struct ktest *t)
{
	(void)t;
	if (live) {
		uvm_destroy(&proc.mm);
		mm_process_destroy(&proc.mm);
	}
	live = false;
}

static struct ktest_case edge_cases[] = {
	KTEST_CASE(relief_with_no_pagefile_trims_nothing),
	KTEST_CASE(a_fault_through_another_root_is_refused_not_retried),
	KTEST_DEATH_CASE(trimmed_paged_pool_under_a_device_lock_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(trimmed_paged_pool_under_a_device_lock_with_interrupts_off_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(a_trimmed_user_page_under_a_device_lock_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	{ 0 }
};
KTEST_SUITE(pager_edge, edge_cases, .init = edge_init, .exit = edge_exit);
