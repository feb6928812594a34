/* Executive spin locks (see spinlock.h). */
#include "kernel/smp/spinlock.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/smp/smp.h"
#include "mm/verifier.h"

static inline ULONG_PTR me(void) { return (ULONG_PTR)smp_this_cpu() + 1; }

VOID KeInitializeSpinLock(PKSPIN_LOCK SpinLock) { *SpinLock = 0; }

static bool try_take(PKSPIN_LOCK l, ULONG_PTR owner)
{
	ULONG_PTR free = 0;
	return __atomic_compare_exchange_n(l, &free, owner, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)
{
	ULONG_PTR owner = me();
	if (__atomic_load_n(SpinLock, __ATOMIC_RELAXED) == owner)
		KeBugCheck(SPIN_LOCK_ALREADY_OWNED);
	while (!try_take(SpinLock, owner))
		while (__atomic_load_n(SpinLock, __ATOMIC_RELAXED)) {
			smp_serve_mailbox();
			cpu_relax();
		}
}

BOOLEAN KeTryToAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)
{
	ULONG_PTR owner = me();
	if (__atomic_load_n(SpinLock, __ATOMIC_RELAXED) == owner)
		KeBugCheck(SPIN_LOCK_ALREADY_OWNED);
	return try_take(SpinLock, owner) ? TRUE : FALSE;
}

VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock)
{
	if (__atomic_load_n(SpinLock, __ATOMIC_RELAXED) != me())
		KeBugCheck(SPIN_LOCK_NOT_OWNED);
	__atomic_store_n(SpinLock, 0, __ATOMIC_RELEASE);
}

KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock)
{
	KIRQL old = KfRaiseIrql(DISPATCH_LEVEL);
	KeAcquireSpinLockAtDpcLevel(SpinLock);
	return old;
}

VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql)
{
	if (KeGetCurrentIrql() != DISPATCH_LEVEL && verifier_on(VF_CHECKS))
		verifier_violation(VERIFIER_RELEASE_SPIN_LOCK_IRQL, KeGetCurrentIrql(), (ULONG_PTR)SpinLock, 0);
	KeReleaseSpinLockFromDpcLevel(SpinLock);
	KeLowerIrql(NewIrql);
}

/* ---- in-stack queued spin locks (MCS) ------------------------------------------------------ */

#define LOCK_QUEUE_WAIT 1ull

VOID KeAcquireInStackQueuedSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle)
{
	PKSPIN_LOCK_QUEUE q = &LockHandle->LockQueue;
	q->Next = NULL;
	q->Lock = (PKSPIN_LOCK)((ULONG_PTR)SpinLock | LOCK_QUEUE_WAIT);
	PKSPIN_LOCK_QUEUE prev =
		(PKSPIN_LOCK_QUEUE)__atomic_exchange_n(SpinLock, (ULONG_PTR)q, __ATOMIC_ACQ_REL);
	if (!prev) {
		q->Lock = SpinLock; /* free: ours at once */
		return;
	}
	__atomic_store_n(&prev->Next, q, __ATOMIC_RELEASE);
	while ((ULONG_PTR)__atomic_load_n(&q->Lock, __ATOMIC_ACQUIRE) & LOCK_QUEUE_WAIT) {
		smp_serve_mailbox();
		cpu_relax();
	}
}

VOID KeReleaseInStackQueuedSpinLockFromDpcLevel(PKLOCK_QUEUE_HANDLE LockHandle)
{
	PKSPIN_LOCK_QUEUE q = &LockHandle->LockQueue;
	PKSPIN_LOCK lock = (PKSPIN_LOCK)((ULONG_PTR)q->Lock & ~LOCK_QUEUE_WAIT);
	if (!__atomic_load_n(&q->Next, __ATOMIC_ACQUIRE)) {
		ULONG_PTR me_entry = (ULONG_PTR)q;
		if (__atomic_compare_exchange_n(lock, &me_entry, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return; /* nobody waits */
		/* A waiter has swapped itself in but not linked yet: wait for the link. */
		while (!__atomic_load_n(&q->Next, __ATOMIC_ACQUIRE))
			cpu_relax();
	}
	PKSPIN_LOCK_QUEUE next = q->Next;
	__atomic_store_n(&next->Lock, lock, __ATOMIC_RELEASE); /* its WAIT bit off: the lock is its */
}

VOID KeAcquireInStackQueuedSpinLock(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle)
{
	LockHandle->OldIrql = KfRaiseIrql(DISPATCH_LEVEL);
	KeAcquireInStackQueuedSpinLockAtDpcLevel(SpinLock, LockHandle);
}

VOID KeReleaseInStackQueuedSpinLock(PKLOCK_QUEUE_HANDLE LockHandle)
{
	KeReleaseInStackQueuedSpinLockFromDpcLevel(LockHandle);
	KeLowerIrql(LockHandle->OldIrql);
}
