/*
 * The address-space lock (mm/mmproc.h, mm/RULES.md "Locks") seen doing its work: one CPU
 * inside a locked step of a process's memory holds another CPU's step on the same process
 * off until it is done, and a change of a user half without the lock stops the machine.
 *
 * The hold-off: the boot CPU frees (MEM_DECOMMIT) a resident page of a process while an AP,
 * attached to that process, probes and locks the same page.  uvm_free stops in its window
 * (uvm_test_free_window): the range was found free of locked pages and its frame is not
 * freed yet.  There it waits until the AP, having announced its probe, is seen spinning for
 * the process's lock (kcpu.klock_waiting, set by the klock slow path), or has finished the
 * probe.  With the lock the AP can only spin: the probe then walks the tables after the
 * free and raises STATUS_ACCESS_VIOLATION at the page, nothing locked, the frame free.
 * Without it the AP would lock a frame the free is about to release.  The verdict never
 * depends on timing: each wait ends on what it waits for (a bound of SMP_WAIT_MS only turns a
 * hang into a failure).  On one CPU the case is skipped.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/wait.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/process.h"
#include "kernel/seh.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/mmproc.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"


static struct {
	PEPROCESS p;
	uint64_t va;
	unsigned cpu;
	volatile uint32_t in_window, probing, probed;
	NTSTATUS status;
	ULONG_PTR av_address;
	bool saw_spin, saw_done, window_entered;
} h;

/* The waits serve cross-calls (tests/lib/wait.h): the free shoots down the AP, which has the
 * process loaded. */
static bool prober_announced(void *unused) { (void)unused; return __atomic_load_n(&h.probing, __ATOMIC_ACQUIRE) != 0; }
static bool prober_held_or_done(void *unused)
{
	(void)unused;
	return kcpus[h.cpu].klock_waiting == &h.p->mm.lock || __atomic_load_n(&h.probed, __ATOMIC_ACQUIRE);
}

/* uvm_free's window, on the boot CPU, with the process's lock held. */
static void free_window(struct mm_process *mm, uint64_t start, uint64_t end)
{
	(void)end;
	if (mm != &h.p->mm || start != h.va)
		return;
	h.window_entered = true;
	__atomic_store_n(&h.in_window, 1, __ATOMIC_RELEASE);
	if (!mmt_wait_until(prober_announced, NULL) || !mmt_wait_until(prober_held_or_done, NULL))
		return;
	h.saw_done = __atomic_load_n(&h.probed, __ATOMIC_ACQUIRE) != 0;
	h.saw_spin = !h.saw_done;
}

/* On the AP: attached to the process, a probe-and-lock of the page once the free is in its
 * window. */
static void prober(void *arg)
{
	(void)arg;
	KAPC_STATE apc;
	KeStackAttachProcess(h.p, &apc);
	PMDL m = IoAllocateMdl((PVOID)h.va, PAGE_SIZE, FALSE, FALSE, NULL);
	volatile NTSTATUS st = STATUS_UNSUCCESSFUL;
	volatile ULONG_PTR at = 0;
	if (m && smp_wait_flag(&h.in_window)) {
		__atomic_store_n(&h.probing, 1, __ATOMIC_RELEASE);
		st = STATUS_SUCCESS;
		__try {
			MmProbeAndLockPages(m, UserMode, IoWriteAccess);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
			if (GetExceptionRecord()->NumberParameters >= 2)
				at = GetExceptionRecord()->ExceptionInformation[1];
		}
		__atomic_store_n(&h.probed, 1, __ATOMIC_RELEASE);
		if (st == STATUS_SUCCESS)
			MmUnlockPages(m);
	}
	if (m)
		IoFreeMdl(m);
	KeUnstackDetachProcess(&apc);
	h.status = st;
	h.av_address = at;
}

static void a_free_holds_a_probe_on_another_cpu_off_until_it_is_done(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	memset(&h, 0, sizeof h);
	h.cpu = smp_cpus_online() - 1;
	h.p = agent_create_idle(0);
	ASSERT_TRUE(t, h.p != NULL);
	uint64_t base = 0, size = PAGE_SIZE;
	EXPECT_EQ(t, uvm_allocate(&h.p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	struct uvm_resident_stop stop;
	EXPECT_EQ(t, uvm_make_resident_pages_status(&h.p->mm, base, 1, true, &stop), 1);
	EXPECT_EQ(t, stop.status, STATUS_SUCCESS);
	struct pt_query q;
	pt_query(&h.p->mm.root, base, &q);
	EXPECT_TRUE(t, q.present);
	pfn_t pfn = q.pa >> PAGE_SHIFT;
	h.va = base;

	uvm_test_free_window = free_window;
	bool started = smp_work_start(h.cpu, prober, NULL);
	uint64_t b = base, s = PAGE_SIZE;
	NTSTATUS freed = started ? uvm_free(&h.p->mm, &b, &s, MEM_DECOMMIT) : STATUS_UNSUCCESSFUL;
	uvm_test_free_window = NULL;
	bool ended = started && smp_work_wait(h.cpu);

	EXPECT_TRUE(t, started && ended);
	EXPECT_EQ(t, freed, STATUS_SUCCESS);
	EXPECT_TRUE(t, h.window_entered);
	EXPECT_TRUE(t, h.saw_spin);  /* the AP was spinning for the process's lock ... */
	EXPECT_FALSE(t, h.saw_done); /* ... and had not locked the page meanwhile */
	EXPECT_EQ(t, h.status, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, h.av_address, base);
	EXPECT_TRUE(t, mmt_frame_is_free(pfn));
	EXPECT_EQ(t, mmt_lock_count(pfn), 0);
	EXPECT_TRUE(t, kcpus[h.cpu].klock_waiting == NULL);
	PsDestroyProcess(h.p);
}

/* A PTE of a process's user half written without its address-space lock (mm/pt.h): the
 * machine stops there, before another CPU could read a half-made table. */
static void changing_a_user_half_without_its_lock_stops(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	pt_unmap(&p->mm.root, 0x10000000ul, PAGE_SIZE);
}

static struct ktest_case space_lock_cases[] = {
	KTEST_CASE(a_free_holds_a_probe_on_another_cpu_off_until_it_is_done),
	KTEST_DEATH_CASE(changing_a_user_half_without_its_lock_stops, MDLAB_INTERNAL_ERROR),
	{ 0 },
};
KTEST_SUITE(smp_space_lock, space_lock_cases);
