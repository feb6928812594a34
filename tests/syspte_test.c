/*
 * The system-PTE space (mm/syspte.c) on the real region and the real page tables:
 *   - the page priorities, at their exact boundaries, computed from syspte_total() and the
 *     SYSPTE_*_RESERVE macros: what a Low, a Normal and a High request may leave free;
 *   - fragmentation and coalescing, counted by syspte_get_stats;
 *   - the guard PTE: present or not is read from the tables, and an access to it faults;
 *   - release flushes: a read through a released address faults at once (TCG keeps a stale
 *     translation until INVLPG, so this proves the flush), and a range handed out again shows
 *     nothing of its old frames;
 *   - a one-page MDL mapping's slot kept by its CPU after the unmap: flushed (faults), counted
 *     free, not a reservation, handed to the next one-page mapping, given back by
 *     syspte_get_stats;
 *   - misuse of syspte_release is bug check SYSTEM_PTE_MISUSE (death cases).
 *
 * Every reservation a case makes is recorded in `held`; the suite's exit releases what a case
 * left behind (an ASSERT ends a case early), so the "free system PTEs" count always returns.
 */
#include "kernel/ktest.h"
#include "kernel/accounting.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"

/* MM_PAGE_PRIORITY values; the space's edges are SYSPTE_PRIORITY_NORMAL and _HIGH. */
#define PRIO_LOW LowPagePriority
#define PRIO_NORMAL NormalPagePriority
#define PRIO_HIGH HighPagePriority
_Static_assert(NormalPagePriority == SYSPTE_PRIORITY_NORMAL && HighPagePriority == SYSPTE_PRIORITY_HIGH,
	       "the NT priorities are the system-PTE space's edges");


static const struct pt_attrs SYSPTE_RW = { .write = true, .global = true, .type = MT_WB };

/* ---- reservations and frames a case holds -------------------------------------------- */

#define MAX_HELD 1024
static struct held {
	uint64_t va;
	uint32_t n;       /* what syspte_release is told: the mapped count, guard excluded */
} held[MAX_HELD];
static int nheld;

#define MAX_FRAMES 64
static pfn_t frames[MAX_FRAMES];
static int nframes;

/* Reserve and record; 0 when refused (nothing recorded). */
static uint64_t take(struct ktest *t, uint32_t n, uint32_t priority, bool guard)
{
	uint64_t va = syspte_reserve(n, priority, guard);
	if (!va)
		return 0;
	if (nheld == MAX_HELD) {
		syspte_release(va, n);
		KTEST_FAIL(t, "more than %d reservations held", MAX_HELD);
		ktest_abort(t);
	}
	held[nheld].va = va;
	held[nheld].n = n;
	nheld++;
	return va;
}

/* Release a recorded reservation. */
static void give_back(uint64_t va)
{
	for (int i = 0; i < nheld; i++) {
		if (held[i].va != va)
			continue;
		syspte_release(va, held[i].n);
		held[i] = held[--nheld];
		return;
	}
	PANIC("syspte_test: 0x%lx is not held by the test", va);
}

/* Reserve, check the request succeeded, release at once: a probe of what fits now. */
static bool try_reserve(uint32_t n, uint32_t priority, bool guard)
{
	uint64_t va = syspte_reserve(n, priority, guard);
	if (va)
		syspte_release(va, n);
	return va != 0;
}

static pfn_t frame(struct ktest *t, uint8_t fill)
{
	ASSERT_LT(t, nframes, MAX_FRAMES);
	pfn_t pfn = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	memset(pfn_to_virt(pfn), fill, PAGE_SIZE);
	frames[nframes++] = pfn;
	return pfn;
}

static void syspte_suite_exit(struct ktest *t)
{
	(void)t;
	while (nheld) {
		nheld--;
		syspte_release(held[nheld].va, held[nheld].n);
	}
	while (nframes)
		pfn_free(frames[--nframes]);
}

static struct syspte_stats stats_now(void)
{
	struct syspte_stats s;
	syspte_get_stats(&s);
	return s;
}

/* The cases that count runs need the space as boot leaves it: every PTE free, one run. */
static void require_untouched_space(struct ktest *t)
{
	struct syspte_stats s = stats_now();
	if (s.free != s.total || s.free_runs != 1 || s.largest_free != s.total)
		KTEST_FAIL(t, "system PTEs in use before the case: %lu free of %lu in %lu runs", s.free, s.total,
			   s.free_runs);
	ASSERT_EQ(t, s.total, syspte_total());
	ASSERT_EQ(t, s.free, s.total);
}

/* ---- priorities ---------------------------------------------------------------------- */

/*
 * Fill the space with High reservations in two steps and probe each priority at its edge.
 * With T = syspte_total(): Low must leave SYSPTE_LOW_RESERVE(T) free, Normal
 * SYSPTE_NORMAL_RESERVE(T), High nothing — it fails only when no free run is long enough.
 * A guard PTE counts as one more PTE taken.
 */
static void priorities_fail_at_their_exact_reserve(struct ktest *t)
{
	require_untouched_space(t);
	const uint32_t T = syspte_total(), low_keep = SYSPTE_LOW_RESERVE(T), normal_keep = SYSPTE_NORMAL_RESERVE(T);
	/* How far above each reserve the probes start; small enough that, at Normal's edge, even
	 * one PTE more than Low's reserve is not free (a tiny syspte=N has little room). */
	const uint32_t slack = MIN(8, low_keep - normal_keep);
	ASSERT_GE(t, slack, 2);
	ASSERT_GE(t, normal_keep + slack, 6); /* step 3 splits what is left into 2 + 1 + at least 3 */
	struct syspte_stats s0 = stats_now();

	/* Step 1: free = low_keep + slack. */
	ASSERT_NE(t, take(t, T - low_keep - slack, PRIO_HIGH, false), 0);
	EXPECT_EQ(t, stats_now().free, low_keep + slack);
	EXPECT_FALSE(t, try_reserve(slack + 1, PRIO_LOW, false));   /* would leave low_keep - 1 */
	EXPECT_TRUE(t, try_reserve(slack, PRIO_LOW, false));        /* leaves exactly low_keep */
	EXPECT_FALSE(t, try_reserve(slack, PRIO_LOW, true));        /* the guard is the one too many */
	EXPECT_TRUE(t, try_reserve(slack - 1, PRIO_LOW, true));
	EXPECT_TRUE(t, try_reserve(slack + 1, PRIO_NORMAL, false)); /* Normal goes below Low's reserve */
	EXPECT_TRUE(t, try_reserve(slack + 1, PRIO_HIGH, false));
	/* Priority 15 is still Low: the edge is SYSPTE_PRIORITY_NORMAL itself. */
	EXPECT_FALSE(t, try_reserve(slack + 1, PRIO_NORMAL - 1, false));

	/* Step 2: free = normal_keep + slack. */
	ASSERT_NE(t, take(t, low_keep - normal_keep, PRIO_HIGH, false), 0);
	EXPECT_EQ(t, stats_now().free, normal_keep + slack);
	EXPECT_FALSE(t, try_reserve(1, PRIO_LOW, false));
	EXPECT_FALSE(t, try_reserve(slack + 1, PRIO_NORMAL, false)); /* would leave normal_keep - 1 */
	EXPECT_TRUE(t, try_reserve(slack, PRIO_NORMAL, false));      /* leaves exactly normal_keep */
	EXPECT_FALSE(t, try_reserve(slack, PRIO_NORMAL, true));
	EXPECT_TRUE(t, try_reserve(slack - 1, PRIO_NORMAL, true));
	EXPECT_FALSE(t, try_reserve(slack + 1, PRIO_HIGH - 1, false)); /* 31 is still Normal */
	EXPECT_TRUE(t, try_reserve(slack + 1, PRIO_HIGH, false));      /* High goes below both */
	EXPECT_TRUE(t, try_reserve(normal_keep + slack, PRIO_HIGH, false));

	/* Step 3: split what is left into runs of 2 and F - 3 around one held PTE, so that more
	 * PTEs are free than the largest run: High fails only when no run fits. */
	const uint32_t F = normal_keep + slack;
	uint64_t a = take(t, 2, PRIO_HIGH, false);
	uint64_t b = take(t, 1, PRIO_HIGH, false);
	uint64_t c = take(t, F - 3, PRIO_HIGH, false);
	ASSERT_TRUE(t, a && b && c);
	EXPECT_EQ(t, b, a + 2 * PAGE_SIZE);
	EXPECT_EQ(t, c, b + PAGE_SIZE);
	EXPECT_EQ(t, stats_now().free, 0);
	give_back(a);
	give_back(c);
	struct syspte_stats s = stats_now();
	const uint32_t k = F - 3;
	EXPECT_EQ(t, s.free, F - 1);
	EXPECT_EQ(t, s.free_runs, 2);
	EXPECT_EQ(t, s.largest_free, k);
	EXPECT_FALSE(t, try_reserve(k + 1, PRIO_HIGH, false));  /* F - 1 >= k + 1 are free, but apart */
	EXPECT_FALSE(t, try_reserve(k, PRIO_HIGH, true));       /* k + 1 with its guard */
	EXPECT_TRUE(t, try_reserve(k - 1, PRIO_HIGH, true));
	EXPECT_NE(t, take(t, k, PRIO_HIGH, false), 0);          /* exactly the largest run */
	EXPECT_EQ(t, stats_now().largest_free, 2);
	EXPECT_FALSE(t, try_reserve(3, PRIO_HIGH, false));
	EXPECT_NE(t, take(t, 2, PRIO_HIGH, false), 0);
	s = stats_now();
	EXPECT_EQ(t, s.free, 0);
	EXPECT_EQ(t, s.free_runs, 0);
	EXPECT_EQ(t, s.largest_free, 0);
	EXPECT_FALSE(t, try_reserve(1, PRIO_HIGH, false));

	/* Each refusal was counted under its priority. */
	s = stats_now();
	EXPECT_EQ(t, s.failures_low - s0.failures_low, 4);
	EXPECT_EQ(t, s.failures_normal - s0.failures_normal, 3);
	EXPECT_EQ(t, s.failures_high - s0.failures_high, 4);
	EXPECT_EQ(t, s.peak_in_use, T);

	syspte_suite_exit(t);
	s = stats_now();
	EXPECT_EQ(t, s.free, s0.free);
	EXPECT_EQ(t, s.largest_free, T);
	EXPECT_EQ(t, s.free_runs, 1);
	EXPECT_EQ(t, s.in_use, 0);
}

/* ---- fragmentation ------------------------------------------------------------------- */

/*
 * 2m + 1 one-PTE reservations side by side; releasing the odd ones leaves m one-PTE holes
 * between held PTEs (plus the rest of the space, one run); releasing the even ones then joins
 * every hole with both neighbours until one run is left.
 */
static void checkerboard_fragments_and_coalesces(struct ktest *t)
{
	require_untouched_space(t);
	const uint32_t T = syspte_total(), m = MIN(300, T / 4), cells = 2 * m + 1;
	ASSERT_LT(t, cells, MAX_HELD);
	uint64_t first = 0;
	for (uint32_t i = 0; i < cells; i++) {
		uint64_t va = take(t, 1, PRIO_HIGH, false);
		ASSERT_NE(t, va, 0);
		if (!i)
			first = va;
		ASSERT_EQ(t, va, first + (uint64_t)i * PAGE_SIZE);
	}
	EXPECT_EQ(t, first, syspte_base());
	struct syspte_stats s = stats_now();
	EXPECT_EQ(t, s.free_runs, 1);
	EXPECT_EQ(t, s.largest_free, T - cells);

	for (uint32_t i = 1; i < cells; i += 2) {
		give_back(first + (uint64_t)i * PAGE_SIZE);
		s = stats_now();
		if (s.free_runs != 1 + (i + 1) / 2) {
			KTEST_FAIL(t, "after releasing cell %u: %lu free runs, expected %u", i, s.free_runs,
				   1 + (i + 1) / 2);
			break;
		}
	}
	s = stats_now();
	EXPECT_EQ(t, s.free_runs, 1 + m);
	EXPECT_EQ(t, s.free, T - (m + 1));
	EXPECT_EQ(t, s.largest_free, T - cells);

	/* A one-PTE request now takes a hole (the smallest class with a run), not the big run. */
	uint64_t hole = syspte_reserve(1, PRIO_HIGH, false);
	uint64_t idx = (hole - first) / PAGE_SIZE;
	EXPECT_TRUE(t, hole >= first && idx < cells && (idx & 1));
	EXPECT_EQ(t, stats_now().free_runs, m);
	if (hole)
		syspte_release(hole, 1);
	EXPECT_EQ(t, stats_now().free_runs, 1 + m);

	/* Cell 0 joins hole 1 (nothing before it); every later even cell joins two runs. */
	give_back(first);
	EXPECT_EQ(t, stats_now().free_runs, 1 + m);
	for (uint32_t i = 2; i < cells; i += 2) {
		give_back(first + (uint64_t)i * PAGE_SIZE);
		s = stats_now();
		if (s.free_runs != 1 + m - i / 2) {
			KTEST_FAIL(t, "after releasing cell %u: %lu free runs, expected %u", i, s.free_runs,
				   1 + m - i / 2);
			break;
		}
	}
	s = stats_now();
	EXPECT_EQ(t, s.free_runs, 1);
	EXPECT_EQ(t, s.largest_free, T);
	EXPECT_EQ(t, s.free, T);
	EXPECT_EQ(t, nheld, 0);
}

/* ---- the guard PTE ------------------------------------------------------------------- */

static void guard_pte_is_reserved_and_unmapped(struct ktest *t)
{
	require_untouched_space(t);
	const uint32_t n = 3;
	uint64_t free0 = stats_now().free;
	uint64_t va = take(t, n, PRIO_HIGH, true);
	ASSERT_NE(t, va, 0);
	EXPECT_EQ(t, free0 - stats_now().free, n + 1);
	EXPECT_TRUE(t, syspte_contains(va) && syspte_contains(va + n * PAGE_SIZE));

	uint64_t pfns[3];
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = frame(t, (uint8_t)(0x10 + i));
	syspte_map(va, pfns, n, SYSPTE_RW);

	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = va + i * PAGE_SIZE;
		struct pt_query q;
		pt_query(&kernel_root, p + 0x80, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.level, 1);
		EXPECT_EQ(t, q.pa, (pfns[i] << PAGE_SHIFT) + 0x80);
		EXPECT_TRUE(t, q.eff.write);
		EXPECT_FALSE(t, q.eff.exec);
		/* The mapping reaches the frame, both ways. */
		struct faultcap f;
		uint8_t v = 0;
		EXPECT_TRUE(t, faultcap_try_load8(p + 0x80, &v, &f));
		EXPECT_EQ(t, v, 0x10 + i);
		EXPECT_TRUE(t, faultcap_try_store8(p + 0x81, 0xE0, &f));
		EXPECT_EQ(t, ((uint8_t *)pfn_to_virt(pfns[i]))[0x81], 0xE0);
	}

	uint64_t guard = va + n * PAGE_SIZE;
	EXPECT_FALSE(t, mmt_va_mapped(guard));
	struct faultcap f;
	uint8_t v;
	EXPECT_FALSE(t, faultcap_try_load8(guard, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, guard);
	EXPECT_FALSE(t, faultcap_try_store8(guard + 0x7FF, 1, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_WRITE_NOT_PRESENT, guard + 0x7FF);
	EXPECT_EQ(t, f.rip, (uint64_t)faultcap_store8);

	/* The guard is not free: the next reservation starts after it. */
	uint64_t next = take(t, 1, PRIO_HIGH, false);
	EXPECT_EQ(t, next, guard + PAGE_SIZE);
	give_back(next);

	uint64_t before = stats_now().free;
	give_back(va);
	EXPECT_EQ(t, stats_now().free - before, n + 1);
	EXPECT_EQ(t, stats_now().free, free0);
	for (uint32_t i = 0; i <= n; i++)
		EXPECT_FALSE(t, mmt_va_mapped(va + i * PAGE_SIZE));
}

/* ---- release flushes ----------------------------------------------------------------- */

/* Map n frames at a fresh reservation, read and write each page through it (the TLB now holds
 * the translations), release, and check every page faults not-present at once.  Returns the
 * released address. */
static uint64_t map_touch_release(struct ktest *t, uint32_t n, pfn_t *pfns, uint8_t fill)
{
	uint64_t va = take(t, n, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = frame(t, (uint8_t)(fill + i));
	syspte_map(va, pfns, n, SYSPTE_RW);
	struct faultcap f;
	uint8_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = va + i * PAGE_SIZE + 0x123;
		EXPECT_TRUE(t, faultcap_try_store8(p + 1, 0xA5, &f));
		EXPECT_TRUE(t, faultcap_try_load8(p, &v, &f));
		EXPECT_EQ(t, v, (uint8_t)(fill + i));
		EXPECT_EQ(t, ((uint8_t *)pfn_to_virt(pfns[i]))[0x124], 0xA5);
	}

	give_back(va);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = va + i * PAGE_SIZE + 0x123;
		if (faultcap_try_load8(p, &v, &f)) {
			KTEST_FAIL(t, "page %u of a released %u-PTE range is still readable", i, n);
		} else {
			EXPECT_EQ(t, (ULONG)f.status, (ULONG)STATUS_ACCESS_VIOLATION);
			EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, p);
		}
		EXPECT_FALSE(t, mmt_va_mapped(p));
	}
	return va;
}

static void access_after_release_faults_and_reuse_shows_new_frames(struct ktest *t)
{
	const uint32_t n = 2;
	pfn_t old[2], new[2];
	uint64_t va = map_touch_release(t, n, old, 0x30);

	/* The same size again (the allocator may well return the same address): nothing is
	 * present until mapped, and once mapped to new frames, the new frames show. */
	uint64_t again = take(t, n, PRIO_HIGH, false);
	ASSERT_NE(t, again, 0);
	if (again != va)
		kprintf("note: the second reservation is at 0x%lx, the first was at 0x%lx\n", again, va);
	struct faultcap f;
	uint8_t v;
	for (uint32_t i = 0; i < n; i++) {
		EXPECT_FALSE(t, mmt_va_mapped(again + i * PAGE_SIZE));
		EXPECT_FALSE(t, faultcap_try_load8(again + i * PAGE_SIZE + 0x40, &v, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, again + i * PAGE_SIZE + 0x40);
	}
	for (uint32_t i = 0; i < n; i++) {
		new[i] = frame(t, (uint8_t)(0x70 + i));
		EXPECT_NE(t, new[i], old[0]);
		EXPECT_NE(t, new[i], old[1]);
	}
	syspte_map(again, new, n, SYSPTE_RW);
	for (uint32_t i = 0; i < n; i++) {
		struct pt_query q;
		pt_query(&kernel_root, again + i * PAGE_SIZE, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.pa, new[i] << PAGE_SHIFT);
		EXPECT_TRUE(t, faultcap_try_load8(again + i * PAGE_SIZE + 0x123, &v, &f));
		EXPECT_EQ(t, v, (uint8_t)(0x70 + i));
		EXPECT_TRUE(t, faultcap_try_load8(again + i * PAGE_SIZE + 0x124, &v, &f));
		EXPECT_EQ(t, v, (uint8_t)(0x70 + i)); /* not the 0xA5 written through the old mapping */
	}
	give_back(again);
}

/* Above TLB_SINGLE_FLUSH_MAX pages release flushes the whole TLB instead of page by page. */
static void access_after_large_release_faults(struct ktest *t)
{
	pfn_t pfns[TLB_SINGLE_FLUSH_MAX + 8];
	struct tlb_stats before, after;
	tlb_get_stats(&before);
	map_touch_release(t, TLB_SINGLE_FLUSH_MAX + 8, pfns, 0x01);
	tlb_get_stats(&after);
	EXPECT_GT(t, after.full_flushes, before.full_flushes);
}

/* ---- misuse (death cases) ------------------------------------------------------------ */

/* Bug check 0xDA with Microsoft's parameters; mdlab's lock-tracking record of a run is the
 * allocator's entry for its first PTE (syspte_tracking_record). */

/* P1 1: (record, MDL: none, the space is not told, the duplicate record: the same one). */
static void double_release_is_0xda_1(struct ktest *t)
{
	uint64_t va = syspte_reserve(2, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	syspte_release(va, 2);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x01, syspte_tracking_record(va), 0, syspte_tracking_record(va));
	syspte_release(va, 2);
}


/* ---- the CPU's kept slot (mm/syspte.c, "Each CPU's slot") ----------------------------- */

/* The "free system PTEs" accounting counter, read as the end-of-case check reads it (no
 * drain: syspte_get_stats would give the kept slot back). */
static uint64_t free_counter(void)
{
	accounting_for_each(c)
		if (!strcmp((*c)->name, "free system PTEs"))
			return (*c)->read();
	PANIC("syspte_test: no \"free system PTEs\" counter");
}

/* A one-page MDL over a pool page, locked; NULL (nothing held) when memory ran out. */
static PMDL one_page_mdl(uint8_t **buf)
{
	*buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, 0x74707353u /* 'Sspt' */);
	PMDL m = *buf ? IoAllocateMdl(*buf, PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	if (!m) {
		if (*buf)
			ExFreePoolWithTag(*buf, 0x74707353u);
		return NULL;
	}
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

static void free_one_page_mdl(PMDL m, uint8_t *buf)
{
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, 0x74707353u);
}

/* Unmapped under the strict policy, a one-page mapping's PTE is cleared and flushed at once
 * (a read through it faults not-present), the slot is no reservation any more and counts as
 * free, and this CPU keeps it: its next one-page mapping gets it back, without the lock.
 * syspte_get_stats gives it back to the allocator. */
static void one_page_unmap_keeps_its_slot_for_the_next_map(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = one_page_mdl(&buf);
	ASSERT_NE(t, m, NULL);
	buf[0x40] = 0x5A;
	struct syspte_stats s0 = stats_now(); /* gives back any slot kept before */
	EXPECT_EQ(t, syspte_kept_slots(), 0u);
	uint64_t free0 = free_counter();
	EXPECT_EQ(t, free0, s0.free);

	uint8_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_NE(t, va, NULL);
	uint64_t page = ALIGN_DOWN((uint64_t)va, PAGE_SIZE);
	struct faultcap f;
	uint8_t v = 0;
	EXPECT_TRUE(t, faultcap_try_load8((uint64_t)va + 0x40, &v, &f)); /* in the TLB now */
	EXPECT_EQ(t, v, 0x5A);
	EXPECT_EQ(t, free_counter(), free0 - 1);
	MmUnmapLockedPages(va, m);

	bool keeps = !tlb_policy_lazy();
	EXPECT_EQ(t, syspte_kept_slots(), keeps ? 1u : 0u);
	EXPECT_EQ(t, free_counter(), free0);
	EXPECT_EQ(t, syspte_reservation_of(page), 0);
	EXPECT_FALSE(t, mmt_va_mapped(page));
	if (faultcap_try_load8((uint64_t)va + 0x40, &v, &f)) {
		KTEST_FAIL(t, "a kept slot's page is still readable");
	} else {
		EXPECT_EQ(t, (ULONG)f.status, (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, (uint64_t)va + 0x40);
	}

	/* The next one-page mapping takes the kept slot (a reservation again, mapped). */
	uint8_t *again = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_NE(t, again, NULL);
	if (keeps)
		EXPECT_EQ(t, (uint64_t)again, (uint64_t)va);
	EXPECT_EQ(t, syspte_kept_slots(), 0u);
	EXPECT_EQ(t, syspte_reservation_of(ALIGN_DOWN((uint64_t)again, PAGE_SIZE)), ALIGN_DOWN((uint64_t)again, PAGE_SIZE));
	EXPECT_TRUE(t, faultcap_try_load8((uint64_t)again + 0x40, &v, &f));
	EXPECT_EQ(t, v, 0x5A);
	MmUnmapLockedPages(again, m);

	/* Given back whole by the statistics: the allocator's figures are as before. */
	struct syspte_stats s1 = stats_now();
	EXPECT_EQ(t, syspte_kept_slots(), 0u);
	EXPECT_EQ(t, s1.free, s0.free);
	EXPECT_EQ(t, s1.free_runs, s0.free_runs);
	EXPECT_EQ(t, s1.reservations - s0.reservations, 2u);
	EXPECT_EQ(t, s1.releases - s0.releases, 2u);
	free_one_page_mdl(m, buf);
}

/* A one-PTE run waits in syspte's pending slot after release: released again, the same. */
static void double_release_of_one_pte_is_0xda_1(struct ktest *t)
{
	uint64_t va = syspte_reserve(1, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	syspte_release(va, 1);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x01, syspte_tracking_record(va), 0, syspte_tracking_record(va));
	syspte_release(va, 1);
}

/* P1 2: (record, the count expected, the count asked for). */
/* A one-page mapping's slot kept by its CPU after the unmap, released again: the same. */
static void release_of_a_kept_slot_is_0xda_1(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = one_page_mdl(&buf);
	ASSERT_NE(t, m, NULL);
	stats_now();
	uint8_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_NE(t, va, NULL);
	uint64_t page = ALIGN_DOWN((uint64_t)va, PAGE_SIZE);
	MmUnmapLockedPages(va, m);
	ASSERT_EQ(t, syspte_kept_slots(), 1u);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x01, syspte_tracking_record(page), 0, syspte_tracking_record(page));
	syspte_release(page, 1);
}

static void wrong_count_is_0xda_2(struct ktest *t)
{
	uint64_t va = syspte_reserve(4, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x02, syspte_tracking_record(va), 4, 3);
	syspte_release(va, 3);
}

/* With a guard, the count is the mapped PTEs: counting the guard too is a wrong count. */
static void guard_counted_in_release_is_0xda_2(struct ktest *t)
{
	uint64_t va = syspte_reserve(4, PRIO_HIGH, true);
	ASSERT_NE(t, va, 0);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x02, syspte_tracking_record(va), 4, 5);
	syspte_release(va, 5);
}

/* P1 3: (the record of the reservation found, the address expected: its start, the address
 * asked for). */
static void release_inside_a_reservation_is_0xda_3(struct ktest *t)
{
	uint64_t va = syspte_reserve(4, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x03, syspte_tracking_record(va), va, va + 3 * PAGE_SIZE);
	syspte_release(va + 3 * PAGE_SIZE, 1);
}

/* Not page-aligned, in the reservation's first page: the same reservation is found. */
static void release_of_an_unaligned_address_is_0xda_3(struct ktest *t)
{
	uint64_t va = syspte_reserve(2, PRIO_HIGH, false);
	ASSERT_NE(t, va, 0);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x03, syspte_tracking_record(va), va, va + 0x10);
	syspte_release(va + 0x10, 2);
}

/* No reservation holds the address: no record, no address expected. */
static void release_outside_the_region_is_0xda_3(struct ktest *t)
{
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x03, 0, 0, KVA_POOL_BASE);
	syspte_release(KVA_POOL_BASE, 1);
}

/* Mapping onto the guard PTE is a caller bug the space refuses (PANIC). */
static void map_over_the_guard_is_refused(struct ktest *t)
{
	uint64_t va = syspte_reserve(1, PRIO_HIGH, true);
	ASSERT_NE(t, va, 0);
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	uint64_t pfns[2] = { pfn, pfn };
	syspte_map(va, pfns, 2, SYSPTE_RW);
}

static struct ktest_case syspte_cases[] = {
	KTEST_CASE(priorities_fail_at_their_exact_reserve),
	KTEST_CASE(checkerboard_fragments_and_coalesces),
	KTEST_CASE(guard_pte_is_reserved_and_unmapped),
	KTEST_CASE(access_after_release_faults_and_reuse_shows_new_frames),
	KTEST_CASE(access_after_large_release_faults),
	KTEST_CASE(one_page_unmap_keeps_its_slot_for_the_next_map),
	KTEST_DEATH_CASE_P1(double_release_is_0xda_1, SYSTEM_PTE_MISUSE, 0x01),
	KTEST_DEATH_CASE_P1(double_release_of_one_pte_is_0xda_1, SYSTEM_PTE_MISUSE, 0x01),
	KTEST_DEATH_CASE_P1(release_of_a_kept_slot_is_0xda_1, SYSTEM_PTE_MISUSE, 0x01),
	KTEST_DEATH_CASE_P1(wrong_count_is_0xda_2, SYSTEM_PTE_MISUSE, 0x02),
	KTEST_DEATH_CASE_P1(guard_counted_in_release_is_0xda_2, SYSTEM_PTE_MISUSE, 0x02),
	KTEST_DEATH_CASE_P1(release_inside_a_reservation_is_0xda_3, SYSTEM_PTE_MISUSE, 0x03),
	KTEST_DEATH_CASE_P1(release_of_an_unaligned_address_is_0xda_3, SYSTEM_PTE_MISUSE, 0x03),
	KTEST_DEATH_CASE_P1(release_outside_the_region_is_0xda_3, SYSTEM_PTE_MISUSE, 0x03),
	KTEST_DEATH_CASE(map_over_the_guard_is_refused, MDLAB_INTERNAL_ERROR),
	{ 0 }
};
KTEST_SUITE(syspte, syspte_cases, .exit = syspte_suite_exit);
