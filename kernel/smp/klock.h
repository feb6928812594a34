/*
 * The kernel's own spin locks, each with its place in one lock order (mm/RULES.md, "Locks").
 *
 * A struct klock is an executive spin lock (kernel/smp/spinlock.h: the word holds its owner's
 * CPU number + 1) plus a rank.  Locks are taken in rising rank: a CPU holding a lock of rank r
 * takes only locks of a higher rank, so two CPUs can never wait for each other.  Each CPU
 * keeps the set of ranks it holds; with the verifier on (VF_CHECKS), taking a lock whose rank
 * is not above every rank held is bug check 0xC4 P1 0x2009 (the lock, its rank, the ranks
 * held as a bit mask), a lock the CPU holds already is 0xF SPIN_LOCK_ALREADY_OWNED as for any
 * spin lock, and a release by a CPU that does not hold it 0x10 SPIN_LOCK_NOT_OWNED.
 *
 * klock_acquire raises to DISPATCH_LEVEL (a caller at or above it stays where it is) and
 * returns the IRQL it found; klock_release lowers back to it.  The uncontended path is inline:
 * one CR8 write, one GS load, one LOCK CMPXCHG; to release one GS load, one store, and below
 * DISPATCH_LEVEL a test of the CPU's DPC word before the CR8 write.  A CPU that spins for a lock serves
 * its cross-call mailbox (KeAcquireSpinLockAtDpcLevel), so a holder may send a shootdown.
 *
 * Each module owns its locks and takes them only inside its own functions.
 */
#ifndef KERNEL_SMP_KLOCK_H
#define KERNEL_SMP_KLOCK_H

#include <stdint.h>
#include "kernel/irql.h"
#include "kernel/smp/smp.h"
#include "kernel/smp/spinlock.h"

/* The order, outermost first.  Every rank but KLOCK_PROCESS is one lock. */
enum klock_rank {
	KLOCK_IO = 1,       /* kernel/io: driver, device, link and handle tables, IRP accounting */
	KLOCK_MDL_EXEC,     /* mm/mdl.c: the begin and end steps of an executable system mapping
			     * (decision 3) with the frames' executable-mapping counts */
	KLOCK_MDL_USER,     /* mm/mdl_user.c: the user-mapping records, locked-page records
			     * and charges */
	KLOCK_PROCESS,      /* mm/mmproc.h: each process's address space (one lock a process):
			     * its VADs and user page tables */
	KLOCK_RESERVED,     /* mm/reserved.c: the reservation records */
	KLOCK_DEVMEM,       /* mm/devmem.c: device-memory blocks and I/O-space mappings */
	KLOCK_POOL,         /* mm/pool.c: the pool's VA, page records, slabs, tags, counters */
	KLOCK_SYSPTE,       /* mm/syspte.c: the system-PTE space and its counters */
	KLOCK_MEMTYPE,      /* mm/memtype.c: a frame's recorded type with its direct-map alias */
	KLOCK_KERNEL_PT,    /* mm/pt.c: kernel_root's tables (allocation, split, merge, free) */
	KLOCK_PFN,          /* mm/pfn.c: the PFN database, free lists and counters */
	KLOCK_VERIFIER,     /* mm/verifier.c: the low-resources countdown and generator */
	KLOCK_DEVICE,       /* a device's own request state (kernel/virtio: the virtqueue); a
			     * leaf, taken at any rank, nothing taken under it */
	KLOCK_RANK_COUNT,
};

struct klock {
	KSPIN_LOCK word;
	uint32_t rank;
};

#define KLOCK_INIT(r) { .word = 0, .rank = (r) }

/* The slow paths, out of line: a rank not above those held, and a lock another CPU has. */
void klock_out_of_order(struct klock *l, uint32_t held);
void klock_spin(struct klock *l);
void klock_not_owned(struct klock *l);

/* One GS load finds this CPU's struct kcpu: its number (the owner word) and the ranks it
 * holds (kcpu.klock_held) are read through it. */
static inline KIRQL klock_acquire(struct klock *l)
{
	KIRQL old = KeGetCurrentIrql();
	if (old < DISPATCH_LEVEL)
		write_cr8(DISPATCH_LEVEL); /* a raise: nothing to check or run */
	struct kcpu *c = this_cpu();
	uint32_t held = c->klock_held, bit = 1u << l->rank;
	if (__builtin_expect(held >= bit, 0))
		klock_out_of_order(l, held);
	ULONG_PTR free = 0;
	if (__builtin_expect(!__atomic_compare_exchange_n(&l->word, &free, (ULONG_PTR)c->number + 1, false,
							  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
		klock_spin(l);
	c->klock_held = held | bit;
	return old;
}

/* Back to the IRQL klock_acquire found: below DISPATCH_LEVEL the DPC word of the same kcpu
 * is tested, and dpc.c called only when DPCs wait (irql_lower_serving_dpcs). */
static inline void klock_release(struct klock *l, KIRQL old)
{
	struct kcpu *c = this_cpu();
	if (__builtin_expect(l->word != (ULONG_PTR)c->number + 1, 0))
		klock_not_owned(l);
	c->klock_held &= ~(1u << l->rank);
	__atomic_store_n(&l->word, 0, __ATOMIC_RELEASE);
	if (old < DISPATCH_LEVEL) {
		if (__builtin_expect(c->dpc_attention != 0, 0))
			dpc_before_lower(old);
		write_cr8(old);
	}
}

/* Whether this CPU holds a lock of `rank` or a later one: then a lock of that rank cannot be
 * taken in order here (a fault handler decides without it, mm/RULES.md "Paging"). */
static inline bool klock_holds_rank_from(uint32_t rank)
{
	return this_cpu()->klock_held >> rank != 0;
}

/* Whether this CPU holds l (for assertions of a module's internal helpers). */
static inline bool klock_held_here(const struct klock *l)
{
	return __atomic_load_n(&l->word, __ATOMIC_RELAXED) == (ULONG_PTR)smp_this_cpu() + 1;
}

#endif
