/*
 * NT's executive spin locks (their Microsoft pages: KeAcquireSpinLock, KeReleaseSpinLock,
 * KeAcquireSpinLockAtDpcLevel, KeReleaseSpinLockFromDpcLevel,
 * KeTryToAcquireSpinLockAtDpcLevel).  A KSPIN_LOCK is 0 when free and its owner's CPU
 * number + 1 while held, so a recursive acquire and a release by a CPU that does not hold it
 * are caught:
 *   - acquiring a lock this CPU holds: bug check 0xF SPIN_LOCK_ALREADY_OWNED (no parameters);
 *   - KeReleaseSpinLock not at DISPATCH_LEVEL (a double release comes here): with the
 *     verifier 0xC4 P1 0x32 (current IRQL, the lock's address, 0);
 *   - releasing a lock this CPU does not hold: 0x10 SPIN_LOCK_NOT_OWNED (no parameters).
 * While it spins a CPU serves its cross-call mailbox, so a holder that waits for a cross-call
 * to the spinning CPU cannot deadlock with it.
 *
 * In-stack queued spin locks (KeAcquireInStackQueuedSpinLock's page) are a queue of waiters
 * (an MCS lock): the KSPIN_LOCK holds the last waiter's KSPIN_LOCK_QUEUE, each waiter spins on
 * its own entry, and the lock passes in arrival order.  A lock is used either as a queued lock
 * or as an ordinary one, never both (the pages pair each acquire with its own release).
 */
#ifndef KERNEL_SMP_SPINLOCK_H
#define KERNEL_SMP_SPINLOCK_H

#include "include/mdlab/ntdef.h"

typedef ULONG_PTR KSPIN_LOCK, *PKSPIN_LOCK;

VOID KeInitializeSpinLock(PKSPIN_LOCK SpinLock);
/* Raise to DISPATCH_LEVEL (from at most DISPATCH_LEVEL: KfRaiseIrql's check), take the
 * lock, return the previous IRQL. */
KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock);
#define KeAcquireSpinLock(SpinLock, OldIrql) (*(OldIrql) = KeAcquireSpinLockRaiseToDpc(SpinLock))
/* Release and lower to NewIrql (the OldIrql of the acquire). */
VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql);
/* The same at DISPATCH_LEVEL or above, with no IRQL change. */
VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock);
VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock);
/* TRUE with the lock taken, FALSE (nothing changed) when another CPU holds it. */
BOOLEAN KeTryToAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock);

typedef struct _KSPIN_LOCK_QUEUE {
	struct _KSPIN_LOCK_QUEUE *volatile Next;
	PKSPIN_LOCK volatile Lock; /* the lock, with LOCK_QUEUE_WAIT while this entry waits */
} KSPIN_LOCK_QUEUE, *PKSPIN_LOCK_QUEUE;

typedef struct _KLOCK_QUEUE_HANDLE {
	KSPIN_LOCK_QUEUE LockQueue;
	KIRQL OldIrql;
} KLOCK_QUEUE_HANDLE, *PKLOCK_QUEUE_HANDLE;

/* Raise to DISPATCH_LEVEL and take the lock in arrival order; LockHandle (on the caller's
 * stack) holds the queue entry and the previous IRQL until the release. */
VOID KeAcquireInStackQueuedSpinLock(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle);
/* Release, and lower to the IRQL the acquire found. */
VOID KeReleaseInStackQueuedSpinLock(PKLOCK_QUEUE_HANDLE LockHandle);
/* The same at DISPATCH_LEVEL or above, with no IRQL change. */
VOID KeAcquireInStackQueuedSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle);
VOID KeReleaseInStackQueuedSpinLockFromDpcLevel(PKLOCK_QUEUE_HANDLE LockHandle);

#endif
