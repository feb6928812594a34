/*
 * Executive spin locks (kernel/smp/spinlock.h): the IRQL each routine leaves, exclusion
 * between two CPUs shown without timing (KeTryToAcquireSpinLockAtDpcLevel fails while the
 * other CPU holds the lock, succeeds once it has let go), a counter both CPUs increment under
 * the lock, the in-stack queued lock under every CPU at once, and the misuse bug checks with
 * every parameter their pages define.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "kernel/irql.h"
#include "kernel/smp/smp.h"
#include "kernel/smp/spinlock.h"
#include "mm/verifier.h"

static void need_two(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU (make test SMP=2 or more)");
}

/* KeAcquireSpinLock raises to DISPATCH_LEVEL and returns the IRQL it found; the release
 * lowers to it; the AtDpcLevel pair changes no IRQL.  The lock word says who holds it. */
static void acquire_raises_release_restores(struct ktest *t)
{
	KSPIN_LOCK l;
	KeInitializeSpinLock(&l);
	EXPECT_EQ(t, l, 0u);
	KIRQL old;
	KeAcquireSpinLock(&l, &old);
	EXPECT_EQ(t, old, PASSIVE_LEVEL);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	EXPECT_NE(t, l, 0u);
	KeReleaseSpinLock(&l, old);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	EXPECT_EQ(t, l, 0u);

	KIRQL was = KeRaiseIrqlToDpcLevel();
	KeAcquireSpinLockAtDpcLevel(&l);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	KeReleaseSpinLockFromDpcLevel(&l);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	KeLowerIrql(was);
}

struct holder {
	KSPIN_LOCK lock;
	volatile uint32_t held, let_go, timed_out;
	volatile uint64_t counter;
	unsigned rounds;
};

static void hold_on_ap(void *arg)
{
	struct holder *h = arg;
	KIRQL old;
	KeAcquireSpinLock(&h->lock, &old);
	__atomic_store_n(&h->held, 1, __ATOMIC_SEQ_CST);
	if (!smp_wait_flag(&h->let_go))
		h->timed_out = 1;
	KeReleaseSpinLock(&h->lock, old);
}

/* While CPU 1 holds the lock, this CPU cannot take it; after CPU 1 releases, it can. */
static void a_held_lock_excludes_the_other_cpu(struct ktest *t)
{
	need_two(t);
	struct holder h = { 0 };
	KeInitializeSpinLock(&h.lock);
	ASSERT_TRUE(t, smp_work_start(1, hold_on_ap, &h));
	bool held = smp_wait_flag(&h.held);
	KIRQL was = KeRaiseIrqlToDpcLevel();
	BOOLEAN while_held = held ? KeTryToAcquireSpinLockAtDpcLevel(&h.lock) : TRUE;
	__atomic_store_n(&h.let_go, 1, __ATOMIC_SEQ_CST);
	KeLowerIrql(was);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, held);
	EXPECT_FALSE(t, h.timed_out);
	EXPECT_FALSE(t, while_held);
	was = KeRaiseIrqlToDpcLevel();
	EXPECT_TRUE(t, KeTryToAcquireSpinLockAtDpcLevel(&h.lock));
	KeReleaseSpinLockFromDpcLevel(&h.lock);
	KeLowerIrql(was);
}

/* A read-modify-write in two steps under the lock: with the lock no increment is lost. */
static void add_rounds(struct holder *h)
{
	for (unsigned i = 0; i < h->rounds; i++) {
		KIRQL old;
		KeAcquireSpinLock(&h->lock, &old);
		uint64_t v = h->counter;
		cpu_relax();
		h->counter = v + 1;
		KeReleaseSpinLock(&h->lock, old);
	}
}

static void add_on_ap(void *arg) { add_rounds(arg); }

static void two_cpus_count_under_the_lock(struct ktest *t)
{
	need_two(t);
	struct holder h = { .rounds = 20000 };
	KeInitializeSpinLock(&h.lock);
	ASSERT_TRUE(t, smp_work_start(1, add_on_ap, &h));
	add_rounds(&h);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_EQ(t, h.counter, 2ull * h.rounds);
	EXPECT_EQ(t, h.lock, 0u);
}

/* ---- in-stack queued spin locks ------------------------------------------------------------ */

/* KeAcquireInStackQueuedSpinLock raises to DISPATCH_LEVEL and keeps the old IRQL in the
 * handle; while held the lock word is the handle's queue entry (the last in the queue); the
 * release lowers and frees it. */
static void queued_acquire_raises_release_restores(struct ktest *t)
{
	KSPIN_LOCK l;
	KeInitializeSpinLock(&l);
	KLOCK_QUEUE_HANDLE h;
	KeAcquireInStackQueuedSpinLock(&l, &h);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	EXPECT_EQ(t, h.OldIrql, PASSIVE_LEVEL);
	EXPECT_EQ(t, l, (ULONG_PTR)&h.LockQueue);
	KeReleaseInStackQueuedSpinLock(&h);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	EXPECT_EQ(t, l, 0u);
}

static void add_rounds_queued(struct holder *h)
{
	for (unsigned i = 0; i < h->rounds; i++) {
		KLOCK_QUEUE_HANDLE q;
		KeAcquireInStackQueuedSpinLock(&h->lock, &q);
		uint64_t v = h->counter;
		cpu_relax();
		h->counter = v + 1;
		KeReleaseInStackQueuedSpinLock(&q);
	}
}

static void add_queued_on_ap(void *arg) { add_rounds_queued(arg); }

/* Every CPU at once increments under one queued lock: no increment is lost, the lock ends
 * free. */
static void every_cpu_counts_under_the_queued_lock(struct ktest *t)
{
	need_two(t);
	struct holder h = { .rounds = 2000 }; /* a FIFO hand-off per round: bounded time with 4 vCPUs on 2 busy cores */
	KeInitializeSpinLock(&h.lock);
	unsigned n = smp_cpus_online(), started = 1;
	for (unsigned c = 1; c < n; c++)
		started += smp_work_start(c, add_queued_on_ap, &h);
	add_rounds_queued(&h);
	bool all_back = true;
	for (unsigned c = 1; c < n; c++)
		all_back &= smp_work_wait(c);
	ASSERT_TRUE(t, all_back);
	EXPECT_EQ(t, started, n);
	EXPECT_EQ(t, h.counter, (uint64_t)n * h.rounds);
	EXPECT_EQ(t, h.lock, 0u);
}

/* ---- misuse ----------------------------------------------------------------------------- */

static KSPIN_LOCK death_lock;

/* Released twice: the second release runs at PASSIVE_LEVEL: 0xC4/0x32 (IRQL 0, the lock). */
static void release_twice(struct ktest *t)
{
	KeInitializeSpinLock(&death_lock);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_RELEASE_SPIN_LOCK_IRQL, PASSIVE_LEVEL,
		    (ULONG_PTR)&death_lock, 0);
	KIRQL old;
	KeAcquireSpinLock(&death_lock, &old);
	KeReleaseSpinLock(&death_lock, old);
	KeReleaseSpinLock(&death_lock, old);
}

/* Acquiring a lock this CPU holds would spin for ever: 0xF, no parameters. */
static void recursive_acquire(struct ktest *t)
{
	(void)t; /* the case declares its stop */
	KeInitializeSpinLock(&death_lock);
	KIRQL old;
	KeAcquireSpinLock(&death_lock, &old);
	KeAcquireSpinLockAtDpcLevel(&death_lock);
}

/* Releasing at DISPATCH_LEVEL a lock nobody holds: 0x10, no parameters. */
static void release_of_a_free_lock(struct ktest *t)
{
	(void)t; /* the case declares its stop */
	KeInitializeSpinLock(&death_lock);
	KeRaiseIrqlToDpcLevel();
	KeReleaseSpinLockFromDpcLevel(&death_lock);
}

static struct ktest_case spinlock_cases[] = {
	KTEST_CASE(acquire_raises_release_restores),
	KTEST_CASE(a_held_lock_excludes_the_other_cpu),
	KTEST_CASE(two_cpus_count_under_the_lock),
	KTEST_CASE(queued_acquire_raises_release_restores),
	KTEST_CASE(every_cpu_counts_under_the_queued_lock),
	KTEST_DEATH_CASE(release_twice, DRIVER_VERIFIER_DETECTED_VIOLATION),
	KTEST_DEATH_CASE_P(recursive_acquire, SPIN_LOCK_ALREADY_OWNED, KTEST_P_ALL, 0, 0, 0, 0),
	KTEST_DEATH_CASE_P(release_of_a_free_lock, SPIN_LOCK_NOT_OWNED, KTEST_P_ALL, 0, 0, 0, 0),
	{ 0 }
};
KTEST_SUITE(smp_spinlock, spinlock_cases);
