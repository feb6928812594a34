/*
 * The MDL routines under the verifier's low-resources simulation (mm/verifier.h): a driver's
 * two usual sequences, each failure handled the documented way —
 *
 *   A. IoAllocateMdl (NULL) -> MmProbeAndLockPages inside __try (raises
 *      STATUS_INSUFFICIENT_RESOURCES) -> MmGetSystemAddressForMdlSafe (NULL) -> use ->
 *      MmUnlockPages -> IoFreeMdl;
 *   B. MmAllocatePagesForMdlEx (NULL) -> MmMapLockedPagesSpecifyCache (NULL) -> use ->
 *      MmFreePagesFromMdl -> ExFreePool.
 *
 * Every failure injected must surface as exactly one documented failure at the site the
 * verifier counted it at, and nothing may leak: the framework compares free pages, system
 * PTEs, pool bytes and locked pages around each case; the cases also check the MDL layer's
 * own count of allocated pages.  The simulation is off again when a case ends, whatever
 * happened (the suite's exit).
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/verifier.h"

#define TAG 0x6C52644Du /* 'MdRl' */
#define BUF_PAGES 3

/* What one run of the sequences saw. */
struct outcome {
	uint64_t calls[VF_SITE_COUNT];    /* injectable calls made, per site */
	uint64_t failures[VF_SITE_COUNT]; /* documented failures seen, per site */
	uint64_t completed;               /* sequences that reached "use" and checked it */
};

static PHYSICAL_ADDRESS pa(uint64_t x)
{
	PHYSICAL_ADDRESS p;
	p.QuadPart = (LONGLONG)x;
	return p;
}

/* Sequence A over buf[off, off + len). */
static void sequence_a(struct ktest *t, uint8_t *buf, ULONG off, ULONG len, uint8_t stamp, struct outcome *o)
{
	o->calls[VF_SITE_ALLOCATE_MDL]++;
	PMDL m = IoAllocateMdl(buf + off, len, FALSE, FALSE, NULL);
	if (!m) {
		o->failures[VF_SITE_ALLOCATE_MDL]++;
		return;
	}
	volatile NTSTATUS st = STATUS_SUCCESS;
	o->calls[VF_SITE_PROBE_AND_LOCK]++;
	__try {
		MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	if (st != STATUS_SUCCESS) {
		if (st != STATUS_INSUFFICIENT_RESOURCES)
			KTEST_FAIL(t, "probe raised 0x%x, not STATUS_INSUFFICIENT_RESOURCES", (ULONG)st);
		if (m->MdlFlags & MDL_PAGES_LOCKED)
			KTEST_FAIL(t, "a failed probe left the MDL locked (flags 0x%x)", (USHORT)m->MdlFlags);
		o->failures[VF_SITE_PROBE_AND_LOCK]++;
		IoFreeMdl(m);
		return;
	}
	o->calls[VF_SITE_MAP]++;
	uint8_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	if (!va) {
		if (m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
			KTEST_FAIL(t, "a failed mapping left MDL_MAPPED_TO_SYSTEM_VA set");
		o->failures[VF_SITE_MAP]++;
	} else {
		uint8_t last = (uint8_t)(stamp ^ 0xFF);
		va[0] = stamp;
		va[len - 1] = last;
		if (buf[off] != stamp || buf[off + len - 1] != last)
			KTEST_FAIL(t, "bytes written through the mapping did not reach the buffer");
		else
			o->completed++;
	}
	MmUnlockPages(m);
	IoFreeMdl(m);
}

/* Sequence B: `pages` pages anywhere, mapped with `type`. */
static void sequence_b(struct ktest *t, ULONG pages, MEMORY_CACHING_TYPE type, uint8_t stamp, struct outcome *o)
{
	o->calls[VF_SITE_ALLOCATE_PAGES]++;
	PMDL m = MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(0), (SIZE_T)pages * PAGE_SIZE, type, 0);
	if (!m) {
		o->failures[VF_SITE_ALLOCATE_PAGES]++;
		return;
	}
	o->calls[VF_SITE_MAP]++;
	volatile uint8_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	if (!va) {
		if (m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
			KTEST_FAIL(t, "a failed mapping left MDL_MAPPED_TO_SYSTEM_VA set");
		o->failures[VF_SITE_MAP]++;
	} else {
		uint64_t last = (uint64_t)pages * PAGE_SIZE - 1;
		if (va[0] != 0 || va[last] != 0)
			KTEST_FAIL(t, "pages for the MDL were not zeroed");
		va[last] = stamp;
		if (*((volatile uint8_t *)pfn_to_virt(MmGetMdlPfnArray(m)[pages - 1]) + PAGE_SIZE - 1) != stamp)
			KTEST_FAIL(t, "a byte written through the mapping is not in the last frame");
		else
			o->completed++;
	}
	MmFreePagesFromMdl(m); /* releases a mapping too */
	ExFreePool(m);
}

static void run_sequences(struct ktest *t, uint8_t *buf, unsigned i, struct outcome *o)
{
	static const MEMORY_CACHING_TYPE types[] = { MmCached, MmWriteCombined, MmNonCached };
	ULONG off = (i * 0x2D1u) % PAGE_SIZE;
	ULONG len = 1 + (i * 0x7A3u) % ((BUF_PAGES - 1) * PAGE_SIZE);
	sequence_a(t, buf, off, len, (uint8_t)(i + 1), o);
	sequence_b(t, 1 + i % 4, types[i % ARRAY_SIZE(types)], (uint8_t)(i + 7), o);
}

/* Calls and injections the verifier counted since `before`. */
static void verifier_delta(const struct verifier_stats *before, uint64_t calls[VF_SITE_COUNT],
			   uint64_t injected[VF_SITE_COUNT])
{
	struct verifier_stats now;
	verifier_get_stats(&now);
	for (int s = 0; s < VF_SITE_COUNT; s++) {
		calls[s] = now.calls[s] - before->calls[s];
		injected[s] = now.injected[s] - before->injected[s];
	}
}

static const char *const site_names[VF_SITE_COUNT] = {
	[VF_SITE_ALLOCATE_MDL] = "IoAllocateMdl",
	[VF_SITE_PROBE_AND_LOCK] = "MmProbeAndLockPages",
	[VF_SITE_MAP] = "map",
	[VF_SITE_ALLOCATE_PAGES] = "MmAllocatePagesForMdlEx",
};

/* Each seed: 40 rounds of both sequences with 30% of injectable calls failing.  The
 * failures seen per site equal the injections the verifier counted, every site failed at
 * least once over the seeds, and some sequences still completed. */
static void random_failures_are_handled_and_leave_nothing(struct ktest *t)
{
	static const uint64_t seeds[] = { 1, 42, 0x9E3779B97F4A7C15ull, 2024 };
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, BUF_PAGES * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	struct mdl_stats ms0, ms1;
	mdl_get_stats(&ms0);
	uint64_t total_injected[VF_SITE_COUNT] = { 0 }, completed = 0;

	for (unsigned k = 0; k < ARRAY_SIZE(seeds); k++) {
		struct outcome o = { 0 };
		struct verifier_stats before;
		verifier_get_stats(&before);
		verifier_set_lowres(0, 30, seeds[k]);
		for (unsigned i = 0; i < 40; i++)
			run_sequences(t, buf, i + k * 40, &o);
		verifier_set_lowres(0, 0, 0);

		uint64_t calls[VF_SITE_COUNT], injected[VF_SITE_COUNT];
		verifier_delta(&before, calls, injected);
		for (int s = 0; s < VF_SITE_COUNT; s++) {
			if (calls[s] != o.calls[s] || injected[s] != o.failures[s])
				KTEST_FAIL(t, "seed 0x%lx, %s: %lu calls and %lu injections counted, %lu calls and %lu "
					   "failures seen", seeds[k], site_names[s], calls[s], injected[s], o.calls[s],
					   o.failures[s]);
			total_injected[s] += injected[s];
		}
		completed += o.completed;
	}
	for (int s = 0; s < VF_SITE_COUNT; s++)
		if (!total_injected[s])
			KTEST_FAIL(t, "no failure was ever injected at %s", site_names[s]);
	EXPECT_GT(t, completed, 0);
	kprintf("injected: IoAllocateMdl %lu, probe %lu, map %lu, pages %lu; %lu sequences completed\n",
		total_injected[VF_SITE_ALLOCATE_MDL], total_injected[VF_SITE_PROBE_AND_LOCK],
		total_injected[VF_SITE_MAP], total_injected[VF_SITE_ALLOCATE_PAGES], completed);
	mdl_get_stats(&ms1);
	EXPECT_EQ(t, ms1.allocated_pages, ms0.allocated_pages);
	ExFreePoolWithTag(buf, TAG);
}

/* Each failure point in turn (lowres = k: the k-th injectable call from now fails): one
 * round of A then B makes the calls IoAllocateMdl, probe, map, allocate pages, map.  For
 * k = 1..5 exactly call k fails, at its site, and the rest of the round goes on; k = 6
 * reaches no call and injects nothing. */
static void each_failure_point_is_handled(struct ktest *t)
{
	static const enum vf_site order[] = { VF_SITE_ALLOCATE_MDL, VF_SITE_PROBE_AND_LOCK, VF_SITE_MAP,
					      VF_SITE_ALLOCATE_PAGES, VF_SITE_MAP };
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, BUF_PAGES * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	for (unsigned k = 1; k <= ARRAY_SIZE(order) + 1; k++) {
		struct outcome o = { 0 };
		struct verifier_stats before;
		verifier_get_stats(&before);
		verifier_set_lowres(k, 0, 0);
		sequence_a(t, buf, 0x123, PAGE_SIZE, (uint8_t)k, &o);
		sequence_b(t, 2, MmCached, (uint8_t)k, &o);
		verifier_set_lowres(0, 0, 0);

		uint64_t calls[VF_SITE_COUNT], injected[VF_SITE_COUNT], want[VF_SITE_COUNT] = { 0 };
		verifier_delta(&before, calls, injected);
		if (k <= ARRAY_SIZE(order))
			want[order[k - 1]] = 1;
		for (int s = 0; s < VF_SITE_COUNT; s++) {
			if (injected[s] != want[s] || o.failures[s] != want[s] || calls[s] != o.calls[s])
				KTEST_FAIL(t, "lowres=%u, %s: %lu injected, %lu failures seen, %lu expected", k,
					   site_names[s], injected[s], o.failures[s], want[s]);
		}
		/* The sequence hit by the failure stops; the other completes. */
		EXPECT_EQ(t, o.completed, k <= ARRAY_SIZE(order) ? 1 : 2);
	}
	ExFreePoolWithTag(buf, TAG);
}

static void reliability_exit(struct ktest *t) { (void)t; verifier_set_lowres(0, 0, 0); }

static struct ktest_case mdl_reliability_cases[] = {
	KTEST_CASE(random_failures_are_handled_and_leave_nothing),
	KTEST_CASE(each_failure_point_is_handled),
	{ 0 }
};
KTEST_SUITE(mdl_reliability, mdl_reliability_cases, .exit = reliability_exit);
