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
