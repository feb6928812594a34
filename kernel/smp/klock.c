/* The kernel's ranked spin locks (see klock.h). */
#include "kernel/smp/klock.h"
#include "kernel/bugcheck.h"
#include "mm/verifier.h"

void klock_out_of_order(struct klock *l, uint32_t held)
{
	/* Recursion first: it would spin for ever whatever the verifier says. */
	if (klock_held_here(l))
		KeBugCheck(SPIN_LOCK_ALREADY_OWNED);
	if (verifier_on(VF_CHECKS))
		verifier_violation(VERIFIER_LOCK_ORDER, (ULONG_PTR)l, l->rank, held);
}

void klock_spin(struct klock *l)
{
	/* The owner word's format is the executive spin lock's: its acquire spins, serving this
	 * CPU's mailbox, and bug checks a recursive acquire. */
	struct kcpu *c = this_cpu();
	c->klock_waiting = l;
	KeAcquireSpinLockAtDpcLevel(&l->word);
	c->klock_waiting = NULL;
}

void klock_not_owned(struct klock *l)
{
	(void)l;
	KeBugCheck(SPIN_LOCK_NOT_OWNED);
}
