/*
 * Idle CPUs take their flush when they wake (mm/RULES.md, "Idle CPUs take their flush when
 * they wake"): a leaf flush (an unmap or a protection downgrade of system PTEs, a lazy purge)
 * sends no IPI to a CPU idle in HLT, only marks it; the CPU flushes everything on its wake,
 * before it runs anything else.  Proven the only way it can be: CPU 1 caches a system-PTE
 * translation by reading through it and goes idle; the boot CPU unmaps (or write-protects)
 * it: CPU 1 received no IPI and served no shootdown, and is marked; then the boot CPU wakes
 * it with work that makes the same access, which faults (vector, error code, CR2).  With
 * the wake flush switched off (tlb_test_set_wake_flush) the access succeeds through the
 * stale entry, which proves the case sees the mechanism.  A flush that is not a leaf flush
 * (page tables freed, a memory type changed) still sends the IPI to an idle CPU.
 *
 * No verdict depends on timing: CPU 1's clock is held for the case (clock_test_hold), so
 * nothing but the boot CPU's IPIs ends its HLT, and the case waits (bounded, SMP_WAIT_MS)
 * until CPU 1 has marked itself idle before it changes anything.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "include/wdm.h"
#include "kernel/faultcap.h"
#include "kernel/intr/clock.h"
#include "kernel/lib.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"

#define TAG 0x6C644954u /* 'TIdl' */
#define PATTERN 0x3C

/* One access through va on CPU 1 (work run from its idle loop), its fault captured there. */
struct access {
	uint64_t va;
	bool write, ok;
	uint8_t val;
	struct faultcap c;
};

static void access_on_ap(void *arg)
{
	struct access *a = arg;
	if (a->write)
		a->ok = faultcap_try_store8(a->va, PATTERN, &a->c);
	else
		a->ok = faultcap_try_load8(a->va, &a->val, &a->c);
}

/* Run the access on CPU 1 and wait for it (the IPI smp_work_start sends ends its HLT). */
static bool access_from_cpu1(uint64_t va, bool write, struct access *a)
{
	memset(a, 0, sizeof *a);
	a->va = va;
	a->write = write;
	return smp_work_start(1, access_on_ap, a) && smp_work_wait(1);
}

/* CPU 1 back in ap_idle with KCPU_IDLE stored, which it does only right before its HLT. */
static bool cpu1_idle(void)
{
	return smp_wait_flag(&kcpus[1].idle_state) &&
	       __atomic_load_n(&kcpus[1].idle_state, __ATOMIC_SEQ_CST) == KCPU_IDLE;
}

/* CPU 1's counters and the initiator's, before and after the change. */
struct seen {
	uint64_t ipis, served, deferred, wake_flushes;
	struct tlb_stats s;
};

static void seen_now(struct seen *x)
{
	x->ipis = kcpus[1].ipis_received;
	x->served = kcpus[1].tlb_flush_requests;
	x->deferred = kcpus[1].tlb_flushes_deferred;
	x->wake_flushes = kcpus[1].tlb_wake_flushes;
	tlb_get_stats(&x->s);
}

enum change { UNMAP, PROTECT };

/*
 * A pool page locked by an MDL and mapped in system PTEs; CPU 1 accesses it (its TLB holds
 * the translation) and goes idle; the boot CPU unmaps it or makes it read-only; then CPU 1
 * is woken with the same access.  wake_flush: whether the wake flush is on.
 */
static void idle_case(struct ktest *t, enum change what, bool wake_flush)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU (make test SMP=2 or more)");
	if (what == UNMAP && tlb_policy_lazy())
		KTEST_SKIP(t, "tlb=lazy releases send no shootdown (tests/smp_lazy_test.c)");
	bool write = what == PROTECT;
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	memset(buf, PATTERN, PAGE_SIZE);
	PMDL mdl = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess);
	uint8_t *va = MmMapLockedPagesSpecifyCache(mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	uint64_t at = (uint64_t)va + 0x123;

	clock_test_hold(1, true);
	struct access first, second;
	bool ran1 = access_from_cpu1(at, write, &first);
	bool idle = ran1 && cpu1_idle();
	struct seen b, a;
	seen_now(&b);
	NTSTATUS st = STATUS_SUCCESS;
	tlb_test_set_wake_flush(wake_flush);
	if (what == UNMAP)
		MmUnmapLockedPages(va, mdl);
	else
		st = MmProtectMdlSystemAddress(mdl, PAGE_READONLY);
	seen_now(&a);
	uint32_t marked = __atomic_load_n(&kcpus[1].idle_state, __ATOMIC_SEQ_CST);
	bool ran2 = idle && access_from_cpu1(at, write, &second);
	tlb_test_set_wake_flush(true);
	uint64_t wake_flushes = kcpus[1].tlb_wake_flushes;
	if (!wake_flush)
		tlb_flush_all(&kernel_root); /* the stale entry goes before the frame is used again */
	clock_test_hold(1, false);
	if (what == PROTECT)
		MmUnmapLockedPages(va, mdl);
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	ExFreePoolWithTag(buf, TAG);

	ASSERT_TRUE(t, ran1);
	EXPECT_TRUE(t, first.ok);
	ASSERT_TRUE(t, idle);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	/* The change: no IPI to CPU 1, no shootdown served there; a flush left pending. */
	EXPECT_EQ(t, a.ipis, b.ipis);
	EXPECT_EQ(t, a.served, b.served);
	EXPECT_EQ(t, a.deferred, b.deferred + 1);
	EXPECT_EQ(t, a.wake_flushes, b.wake_flushes);
	EXPECT_EQ(t, marked, KCPU_IDLE_FLUSH_PENDING);
	EXPECT_GE(t, a.s.deferred, b.s.deferred + 1);
	ASSERT_TRUE(t, ran2);
	if (wake_flush) {
		/* Woken: its first access after the wake faults at once. */
		EXPECT_EQ(t, wake_flushes, b.wake_flushes + 1);
		EXPECT_FALSE(t, second.ok);
		if (what == UNMAP)
			EXPECT_PAGE_FAULT(t, &second.c, PF_READ_NOT_PRESENT, at);
		else
			EXPECT_PAGE_FAULT(t, &second.c, PF_WRITE_PROTECTION, at);
	} else {
		/* Without the wake flush the stale entry survives the HLT and the wake. */
		EXPECT_EQ(t, wake_flushes, b.wake_flushes);
		EXPECT_TRUE(t, second.ok);
		if (what == UNMAP)
			EXPECT_EQ(t, second.val, PATTERN);
	}
}

static void unmap_faults_on_the_idle_cpu_when_it_wakes(struct ktest *t) { idle_case(t, UNMAP, true); }
static void unmap_leaves_a_stale_entry_without_the_wake_flush(struct ktest *t) { idle_case(t, UNMAP, false); }
static void protect_faults_on_the_idle_cpu_when_it_wakes(struct ktest *t) { idle_case(t, PROTECT, true); }
static void protect_leaves_a_stale_entry_without_the_wake_flush(struct ktest *t)
{
	idle_case(t, PROTECT, false);
}

/* A flush that is no leaf flush (tlb_flush_range: what pt_unmap does before it frees the
 * emptied tables, what a memory-type change does) reaches an idle CPU by its IPI at once:
 * CPU 1 serves it and nothing is left pending. */
static void other_flushes_still_send_the_ipi_to_an_idle_cpu(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU (make test SMP=2 or more)");
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	clock_test_hold(1, true);
	struct access first;
	bool ran = access_from_cpu1((uint64_t)buf, false, &first);
	bool idle = ran && cpu1_idle();
	struct seen b, a;
	seen_now(&b);
	tlb_flush_range(&kernel_root, (uint64_t)buf, PAGE_SIZE);
	seen_now(&a);
	clock_test_hold(1, false);
	ExFreePoolWithTag(buf, TAG);
	ASSERT_TRUE(t, idle);
	EXPECT_TRUE(t, first.ok);
	EXPECT_EQ(t, a.ipis, b.ipis + 1);
	EXPECT_EQ(t, a.served, b.served + 1);
	EXPECT_EQ(t, a.deferred, b.deferred);
	EXPECT_EQ(t, a.s.shootdowns, b.s.shootdowns + 1);
}

/* Under tlb=lazy the purge is a leaf flush too: CPU 1 caches a system-PTE translation and
 * goes idle, the boot CPU releases the range (flushed here only) and purges the deferred
 * list; CPU 1 gets no IPI, the purge is left for its wake, and its first read after the
 * wake faults not-present at the address. */
static void lazy_purge_faults_on_the_idle_cpu_when_it_wakes(struct ktest *t)
{
	if (!tlb_policy_lazy())
		KTEST_SKIP(t, "needs tlb=lazy on the kernel command line (make test's lazy machine)");
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	struct syspte_stats ss;
	syspte_get_stats(&ss); /* purges what earlier cases left */
	pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_TRUE(t, f != PFN_INVALID);
	memset(pfn_to_virt(f), PATTERN, PAGE_SIZE);
	uint64_t va = syspte_reserve(1, HighPagePriority, false);
	if (!va)
		pfn_free(f);
	ASSERT_NE(t, va, 0);
	syspte_map(va, &f, 1, (struct pt_attrs){ .write = true, .global = true, .type = MT_WB });

	clock_test_hold(1, true);
	struct access first, second;
	bool ran1 = access_from_cpu1(va + 8, false, &first);
	bool idle = ran1 && cpu1_idle();
	struct seen b, a;
	seen_now(&b);
	uint64_t purges_served = kcpus[1].tlb_purges_served;
	syspte_release(va, 1);
	syspte_get_stats(&ss); /* the purge */
	seen_now(&a);
	bool ran2 = idle && access_from_cpu1(va + 8, false, &second);
	clock_test_hold(1, false);
	pfn_free(f);

	ASSERT_TRUE(t, ran1 && idle && ran2);
	EXPECT_TRUE(t, first.ok);
	EXPECT_EQ(t, first.val, PATTERN);
	EXPECT_EQ(t, a.s.purges, b.s.purges + 1);
	EXPECT_EQ(t, a.ipis, b.ipis);
	EXPECT_EQ(t, kcpus[1].tlb_purges_served, purges_served);
	EXPECT_EQ(t, a.deferred, b.deferred + 1);
	EXPECT_EQ(t, kcpus[1].tlb_wake_flushes, b.wake_flushes + 1);
	EXPECT_FALSE(t, second.ok);
	EXPECT_PAGE_FAULT(t, &second.c, PF_READ_NOT_PRESENT, va + 8);
}

static struct ktest_case smp_idle_cases[] = {
	KTEST_CASE(unmap_faults_on_the_idle_cpu_when_it_wakes),
	KTEST_CASE(unmap_leaves_a_stale_entry_without_the_wake_flush),
	KTEST_CASE(protect_faults_on_the_idle_cpu_when_it_wakes),
	KTEST_CASE(protect_leaves_a_stale_entry_without_the_wake_flush),
	KTEST_CASE(other_flushes_still_send_the_ipi_to_an_idle_cpu),
	KTEST_CASE(lazy_purge_faults_on_the_idle_cpu_when_it_wakes),
	{0}
};
KTEST_SUITE(smp_idle, smp_idle_cases);
