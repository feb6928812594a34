/*
 * The lazy TLB shootdown policy (`tlb=lazy`; mm/RULES.md, "TLB shootdown"), on a machine
 * booted with it and two CPUs or more (make test's "lazy" machine): a released system-PTE
 * range is flushed at once only on the CPU that released it, so another CPU that cached the
 * translation still reads through it, with no IPI sent; the range is not handed out again
 * before a purge has flushed it on every CPU, after which the other CPU's access faults
 * (vector 14, error code, CR2) and the new mapping of the address shows the new frame there.
 * One purge round serves many releases.  Under the default strict policy, or on one CPU, the
 * cases are skipped (tests/smp_test.c proves the strict shootdown).
 *
 * Every wait for the other CPU is bounded (SMP_WAIT_MS); no verdict depends on timing.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "include/wdm.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"

static const struct pt_attrs RW = { .write = true, .global = true, .type = MT_WB };

static void need_lazy_and_two(struct ktest *t)
{
	if (!tlb_policy_lazy())
		KTEST_SKIP(t, "needs tlb=lazy on the kernel command line (make test's lazy machine)");
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
}

/* CPU 1 reads va once per step, when told, each read's fault captured there. */
#define STEPS 4
struct stepper {
	uint64_t va;
	volatile uint32_t go[STEPS], done[STEPS], timed_out;
	bool ok[STEPS];
	uint8_t val[STEPS];
	struct faultcap c[STEPS];
};

static void stepper_on_ap(void *arg)
{
	struct stepper *s = arg;
	for (unsigned i = 0; i < STEPS; i++) {
		if (!smp_wait_flag(&s->go[i])) {
			s->timed_out = 1;
			return;
		}
		s->ok[i] = faultcap_try_load8(s->va, &s->val[i], &s->c[i]);
		__atomic_store_n(&s->done[i], 1, __ATOMIC_SEQ_CST);
	}
}

/* Step i on CPU 1; false when it did not answer in time. */
static bool step(struct stepper *s, unsigned i)
{
	__atomic_store_n(&s->go[i], 1, __ATOMIC_SEQ_CST);
	return smp_wait_flag(&s->done[i]);
}

#define MAX_HOLD 4096
static uint64_t hold[MAX_HOLD];

/*
 * CPU 1 caches the translation of a one-page system mapping; CPU 0 releases it.  Lazy: no
 * shootdown, no IPI, CPU 1's read still reaches the old frame, and CPU 0's own faults.
 * Reserving and releasing one-PTE ranges until the allocator would reuse the address: it
 * is never returned before a purge, the purge reaches CPU 1 (its counters), after which
 * CPU 1's read is a not-present #PF at the address; mapped again to another frame, the
 * address shows the new frame on CPU 1.
 */
static void release_is_stale_until_the_purge_and_never_reused_before(struct ktest *t)
{
	need_lazy_and_two(t);
	struct syspte_stats ss;
	syspte_get_stats(&ss); /* purges what earlier cases left: the list starts empty */
	pfn_t fa = pfn_alloc(0, PFN_OWNER_TEST), fb = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_TRUE(t, fa != PFN_INVALID && fb != PFN_INVALID);
	memset(pfn_to_virt(fa), 0x11, PAGE_SIZE);
	memset(pfn_to_virt(fb), 0x22, PAGE_SIZE);
	uint64_t va = syspte_reserve(1, HighPagePriority, false);
	ASSERT_NE(t, va, 0);
	syspte_map(va, &fa, 1, RW);

	struct stepper s;
	memset(&s, 0, sizeof s);
	s.va = va + 0x80;
	bool started = smp_work_start(1, stepper_on_ap, &s);
	bool s0 = started && step(&s, 0); /* CPU 1 caches the translation */

	struct tlb_stats t0, t1, t2;
	uint64_t ipis0 = kcpus[1].ipis_received, served0 = kcpus[1].tlb_purges_served;
	tlb_get_stats(&t0);
	syspte_release(va, 1);
	tlb_get_stats(&t1);
	uint64_t ipis1 = kcpus[1].ipis_received;
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	struct faultcap here;
	uint8_t v;
	bool here_ok = faultcap_try_load8(va + 0x80, &v, &here);
	bool s1 = s0 && step(&s, 1); /* the stale read */

	/* Reserve and release one PTE at a time until a purge has happened; the address must
	 * not come back before it. */
	bool early_reuse = false;
	unsigned rounds = 0;
	for (; rounds < 4 * SYSPTE_DEFER_MAX_RANGES; rounds++) {
		struct tlb_stats now;
		tlb_get_stats(&now);
		if (now.purges != t1.purges)
			break;
		uint64_t r = syspte_reserve(1, HighPagePriority, false);
		if (!r)
			break;
		early_reuse |= r == va;
		syspte_release(r, 1);
	}
	tlb_get_stats(&t2);
	uint64_t served2 = kcpus[1].tlb_purges_served;
	bool s2 = s1 && step(&s, 2); /* after the purge: faults */

	/* Hold one-PTE reservations until the allocator hands the address out again. */
	unsigned nhold = 0;
	bool found = false;
	while (nhold < MAX_HOLD) {
		uint64_t r = syspte_reserve(1, HighPagePriority, false);
		if (!r)
			break;
		if (r == va) {
			found = true;
			break;
		}
		hold[nhold++] = r;
	}
	bool s3 = false;
	if (found) {
		syspte_map(va, &fb, 1, RW);
		s3 = s2 && step(&s, 3); /* the new frame */
	} else if (s2) {
		step(&s, 3);
	}
	bool back = started && smp_work_wait(1);
	if (found)
		syspte_release(va, 1);
	while (nhold)
		syspte_release(hold[--nhold], 1);
	syspte_get_stats(&ss);
	pfn_free(fa);
	pfn_free(fb);

	ASSERT_TRUE(t, started && s0 && s1 && s2 && back);
	EXPECT_FALSE(t, s.timed_out);
	EXPECT_TRUE(t, s.ok[0]);
	EXPECT_EQ(t, s.val[0], 0x11);
	/* The release: cleared and flushed here, nobody else told. */
	EXPECT_FALSE(t, q.present);
	EXPECT_FALSE(t, here_ok);
	EXPECT_PAGE_FAULT(t, &here, PF_READ_NOT_PRESENT, va + 0x80);
	EXPECT_EQ(t, t1.shootdowns, t0.shootdowns);
	EXPECT_EQ(t, t1.purges, t0.purges);
	EXPECT_EQ(t, ipis1, ipis0);
	EXPECT_TRUE(t, s.ok[1]); /* lazy: the stale translation still reads the old frame */
	EXPECT_EQ(t, s.val[1], 0x11);
	/* The purge came before any reuse, and reached CPU 1. */
	EXPECT_FALSE(t, early_reuse);
	EXPECT_LE(t, rounds, SYSPTE_DEFER_MAX_RANGES);
	EXPECT_EQ(t, t2.purges, t1.purges + 1);
	EXPECT_EQ(t, served2, served0 + 1);
	EXPECT_FALSE(t, s.ok[2]);
	EXPECT_PAGE_FAULT(t, &s.c[2], PF_READ_NOT_PRESENT, va + 0x80);
	/* Handed out again, mapped to another frame: CPU 1 reads the new one. */
	ASSERT_TRUE(t, found);
	EXPECT_TRUE(t, s3);
	EXPECT_TRUE(t, s.ok[3]);
	EXPECT_EQ(t, s.val[3], 0x22);
}

/* SYSPTE_DEFER_MAX_RANGES releases send nothing; the next look at the space purges them all
 * in one round, which reaches each other CPU once: by an IPI (its purge and IPI counts up by
 * one) or, when it is idle in HLT, as a flush left for its wake (its deferred count up by
 * one, no IPI; mm/RULES.md, "Idle CPUs take their flush when they wake").  Which of the two
 * a CPU gets depends on whether its clock tick has it awake at that moment, so the verdict
 * is the sum, which does not. */
static void one_purge_serves_many_releases(struct ktest *t)
{
	need_lazy_and_two(t);
	struct syspte_stats ss;
	syspte_get_stats(&ss);
	const unsigned n = SYSPTE_DEFER_MAX_RANGES, cpus = smp_cpus_online();
	uint64_t va[SYSPTE_DEFER_MAX_RANGES];
	for (unsigned i = 0; i < n; i++) {
		va[i] = syspte_reserve(1 + (i & 1), HighPagePriority, false);
		ASSERT_NE(t, va[i], 0);
	}
	uint64_t served0[SMP_MAX_CPUS], ipis0[SMP_MAX_CPUS], deferred0[SMP_MAX_CPUS];
	for (unsigned c = 0; c < cpus; c++)
		served0[c] = kcpus[c].tlb_purges_served, ipis0[c] = kcpus[c].ipis_received,
		deferred0[c] = kcpus[c].tlb_flushes_deferred;
	struct tlb_stats t0, t1, t2;
	tlb_get_stats(&t0);
	for (unsigned i = 0; i < n; i++)
		syspte_release(va[i], 1 + (i & 1));
	tlb_get_stats(&t1);
	unsigned ranges;
	uint32_t pages;
	syspte_deferred(&ranges, &pages);
	uint64_t ipis1 = kcpus[1].ipis_received;
	syspte_get_stats(&ss); /* purges */
	tlb_get_stats(&t2);
	unsigned after_ranges;
	uint32_t after_pages;
	syspte_deferred(&after_ranges, &after_pages);

	EXPECT_EQ(t, t1.shootdowns, t0.shootdowns);
	EXPECT_EQ(t, t1.purges, t0.purges);
	EXPECT_EQ(t, ipis1, ipis0[1]);
	EXPECT_EQ(t, ranges, n);
	EXPECT_EQ(t, pages, n + n / 2);
	EXPECT_EQ(t, t2.purges, t1.purges + 1);
	EXPECT_EQ(t, t2.purged_ranges, t1.purged_ranges + n);
	EXPECT_EQ(t, t2.purge_ipis - t1.purge_ipis + t2.deferred - t1.deferred, cpus - 1);
	EXPECT_EQ(t, t2.shootdowns, t1.shootdowns);
	EXPECT_EQ(t, after_ranges, 0u);
	EXPECT_EQ(t, after_pages, 0u);
	EXPECT_EQ(t, kcpus[0].tlb_purges_served, served0[0]);
	EXPECT_EQ(t, kcpus[0].tlb_flushes_deferred, deferred0[0]);
	for (unsigned c = 1; c < cpus; c++) {
		uint64_t served = kcpus[c].tlb_purges_served - served0[c];
		uint64_t deferred = kcpus[c].tlb_flushes_deferred - deferred0[c];
		EXPECT_EQ(t, served + deferred, 1u);
		EXPECT_EQ(t, kcpus[c].ipis_received - ipis0[c], served); /* an IPI only with a purge */
	}
}

/* What stays strict under lazy: a protection downgrade reaches the other CPUs at once, no
 * purge, as tests/smp_test.c proves under strict: each other CPU by an IPI or, idle in HLT,
 * as a flush left for its wake (whichever its clock tick made it, so the verdict is the
 * sum; tests/smp_idle_test.c proves the wake's flush). */
static void protect_stays_strict(struct ktest *t)
{
	need_lazy_and_two(t);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, m != NULL && m->ByteCount == PAGE_SIZE);
	uint8_t *p = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	struct tlb_stats t0, t1;
	tlb_get_stats(&t0);
	NTSTATUS st = p ? MmProtectMdlSystemAddress(m, PAGE_READONLY) : STATUS_INVALID_PARAMETER;
	tlb_get_stats(&t1);
	if (p)
		MmUnmapLockedPages(p, m);
	MmFreePagesFromMdl(m);
	ExFreePool(m);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_GE(t, t1.shootdown_ipis - t0.shootdown_ipis + t1.deferred - t0.deferred,
		  (uint64_t)smp_cpus_online() - 1);
	EXPECT_EQ(t, t1.purges, t0.purges);
}

static struct ktest_case smp_lazy_cases[] = {
	KTEST_CASE(release_is_stale_until_the_purge_and_never_reused_before),
	KTEST_CASE(one_purge_serves_many_releases),
	KTEST_CASE(protect_stays_strict),
	{ 0 }
};
KTEST_SUITE(smp_lazy, smp_lazy_cases);
