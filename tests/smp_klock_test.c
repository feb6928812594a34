/*
 * The kernel's ranked spin locks (kernel/smp/klock.h; mm/RULES.md, "Locks"): nesting in the
 * order raises once and restores the IRQL at the last release; with the verifier on, a lock
 * taken out of the order is bug check 0xC4 P1 0x2009 (the lock, its rank, the ranks held) —
 * between two locks of a test's own, and for the pool's own lock taken by ExAllocatePool2
 * while a lock of the PFN rank is held, and for a process's address-space lock taken by
 * ZwAllocateVirtualMemory in that process under the PFN rank; with the verifier off the same nesting goes through;
 * a recursive acquire is 0xF as for any spin lock.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/process.h"
#include "kernel/smp/klock.h"
#include "mm/uvm.h"
#include "mm/verifier.h"
#include "tests/lib/agent.h"

static struct klock outer = KLOCK_INIT(KLOCK_POOL), inner = KLOCK_INIT(KLOCK_PFN);

/* Pool then PFN: the order.  The first acquire raises to DISPATCH_LEVEL, the second finds it
 * there; each release leaves the other lock held and the IRQL where its acquire found it. */
static void nesting_in_order_raises_once(struct ktest *t)
{
	KIRQL a = klock_acquire(&outer);
	KIRQL b = klock_acquire(&inner);
	EXPECT_EQ(t, a, PASSIVE_LEVEL);
	EXPECT_EQ(t, b, DISPATCH_LEVEL);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	EXPECT_TRUE(t, klock_held_here(&outer) && klock_held_here(&inner));
	klock_release(&inner, b);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	EXPECT_FALSE(t, klock_held_here(&inner));
	klock_release(&outer, a);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	EXPECT_EQ(t, outer.word, 0u);
}

/* Without VF_CHECKS the order is not checked (as NT's free build): the nesting goes through
 * and both locks end free. */
static void out_of_order_passes_with_the_verifier_off(struct ktest *t)
{
	uint32_t flags = verifier_get_flags();
	verifier_set_flags(flags & ~VF_CHECKS);
	KIRQL a = klock_acquire(&inner);
	KIRQL b = klock_acquire(&outer);
	klock_release(&outer, b);
	klock_release(&inner, a);
	verifier_set_flags(flags);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	EXPECT_EQ(t, inner.word, 0u);
	EXPECT_EQ(t, outer.word, 0u);
}

/* PFN then pool: 0xC4/0x2009 with the pool-rank lock, its rank, and the PFN rank's bit. */
static void out_of_order_is_0xc4_2009(struct ktest *t)
{
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_LOCK_ORDER, (ULONG_PTR)&outer, KLOCK_POOL,
		    1u << KLOCK_PFN);
	klock_acquire(&inner);
	klock_acquire(&outer);
}

/* A module's own lock checks the same: ExAllocatePool2 takes the pool lock, which ranks
 * before the PFN lock held here. */
static void pool_allocation_under_the_pfn_rank(struct ktest *t)
{
	(void)t; /* the case declares its stop; P2 is the pool's own lock */
	klock_acquire(&inner);
	ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 'kcoL');
}

/* A process's address-space lock (KLOCK_PROCESS) ranks before the PFN lock: the process's
 * ZwAllocateVirtualMemory (uvm_allocate takes it) under a lock of the PFN rank is 0xC4/0x2009
 * naming that process's lock, its rank and the PFN rank's bit. */
static void process_lock_under_the_pfn_rank(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_LOCK_ORDER, (ULONG_PTR)&p->mm.lock, KLOCK_PROCESS,
		    1u << KLOCK_PFN);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID base = NULL;
	SIZE_T size = PAGE_SIZE;
	klock_acquire(&inner);
	ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

/* A lock this CPU holds: 0xF before any order check. */
static void recursive_acquire_is_0xf(struct ktest *t)
{
	(void)t; /* the case declares its stop */
	klock_acquire(&outer);
	klock_acquire(&outer);
}

static struct ktest_case klock_cases[] = {
	KTEST_CASE(nesting_in_order_raises_once),
	KTEST_CASE(out_of_order_passes_with_the_verifier_off),
	KTEST_DEATH_CASE_P1(out_of_order_is_0xc4_2009, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_LOCK_ORDER),
	KTEST_DEATH_CASE_P(pool_allocation_under_the_pfn_rank, DRIVER_VERIFIER_DETECTED_VIOLATION,
			   KTEST_P1 | KTEST_P3 | KTEST_P4, VERIFIER_LOCK_ORDER, 0, KLOCK_POOL, 1u << KLOCK_PFN),
	KTEST_DEATH_CASE_P1(process_lock_under_the_pfn_rank, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_LOCK_ORDER),
	KTEST_DEATH_CASE(recursive_acquire_is_0xf, SPIN_LOCK_ALREADY_OWNED),
	{ 0 },
};
KTEST_SUITE(smp_klock, klock_cases);
