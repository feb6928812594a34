/* DPCs (see dpc.h). */
#include "kernel/intr/dpc.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"
#include "mm/verifier.h"

/* One CPU's queue: a singly linked FIFO through DpcListEntry, under `lock`, which is taken
 * with interrupts off (an interrupt handler on the same CPU may insert). */
struct dpc_queue {
	volatile uint32_t lock;
	PSINGLE_LIST_ENTRY head, tail;
	uint64_t depth, run, interrupts;
};

static struct dpc_queue queues[SMP_MAX_CPUS];

/* After the head of q changed, under its lock: the queue's CPU's kcpu.dpc_queued, which
 * KeLowerIrql's fast path tests (kernel/irql.h). */
static void note_head(struct dpc_queue *q)
{
	kcpus[q - queues].dpc_queued = q->head != NULL;
}

static uint64_t queue_lock(struct dpc_queue *q) { return raw_lock_irqsave(&q->lock); }
static void queue_unlock(struct dpc_queue *q, uint64_t flags) { raw_unlock_irqrestore(&q->lock, flags); }

VOID KeInitializeDpc(PRKDPC Dpc, PKDEFERRED_ROUTINE DeferredRoutine, PVOID DeferredContext)
{
	*Dpc = (KDPC){ 0 };
	Dpc->Type = DpcObject;
	Dpc->Importance = MediumImportance;
	Dpc->DeferredRoutine = DeferredRoutine;
	Dpc->DeferredContext = DeferredContext;
}

VOID KeSetTargetProcessorDpc(PRKDPC Dpc, CCHAR Number) { Dpc->Number = (USHORT)((UCHAR)Number + 1); }

VOID KeSetImportanceDpc(PRKDPC Dpc, KDPC_IMPORTANCE Importance) { Dpc->Importance = (UCHAR)Importance; }

/* The DPC interrupt on CPU `target`, from CPU `me`. */
static void request(unsigned target, unsigned me)
{
	if (target == me)
		lapic_send_ipi(0, VEC_DPC | ICR_FIXED | ICR_ASSERT | ICR_SELF);
	else
		lapic_send_ipi(kcpus[target].apic_id, VEC_DPC | ICR_FIXED | ICR_ASSERT);
}

BOOLEAN KeInsertQueueDpc(PRKDPC Dpc, PVOID SystemArgument1, PVOID SystemArgument2)
{
	unsigned me = smp_this_cpu();
	unsigned target = Dpc->Number ? Dpc->Number - 1u : me;
	if (target >= smp_cpus_online() || !kcpus[target].online)
		KeBugCheckEx(TIMER_OR_DPC_INVALID, 3, (ULONG_PTR)Dpc, target, smp_cpus_online());
	struct dpc_queue *q = &queues[target];
	uint64_t flags = queue_lock(q);
	/* DpcData changes only under the lock of the queue it names, so a DPC whose DpcData is
	 * set is linked in that queue. */
	PVOID none = NULL;
	if (!__atomic_compare_exchange_n(&Dpc->DpcData, &none, (PVOID)q, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED)) {
		queue_unlock(q, flags);
		return FALSE;
	}
	Dpc->SystemArgument1 = SystemArgument1;
	Dpc->SystemArgument2 = SystemArgument2;
	PSINGLE_LIST_ENTRY e = &Dpc->DpcListEntry;
	if (Dpc->Importance == HighImportance) {
		e->Next = q->head;
		q->head = e;
		if (!q->tail)
			q->tail = e;
	} else {
		e->Next = NULL;
		if (q->tail)
			q->tail->Next = e;
		else
			q->head = e;
		q->tail = e;
	}
	q->depth++;
	note_head(q);
	UCHAR importance = Dpc->Importance;
	queue_unlock(q, flags);
	/* KeSetImportanceDpc's page: Low does not begin processing the queue, Medium only when
	 * the queue is this CPU's, MediumHigh and High always.  Beginning is the DPC interrupt on
	 * the target, pending in its APIC until its IRQL drops below DISPATCH_LEVEL with
	 * interrupts on.  A queue left waiting is begun by that CPU's next clock tick (or its
	 * next KeLowerIrql below DISPATCH_LEVEL). */
	bool begin = importance == HighImportance || importance == MediumHighImportance ||
		     (importance == MediumImportance && target == me);
	if (begin)
		request(target, me);
	return TRUE;
}

BOOLEAN KeRemoveQueueDpc(PRKDPC Dpc)
{
	struct dpc_queue *q = __atomic_load_n(&Dpc->DpcData, __ATOMIC_ACQUIRE);
	if (!q)
		return FALSE;
	uint64_t flags = queue_lock(q);
	BOOLEAN removed = FALSE;
	if (Dpc->DpcData == q) {
		PSINGLE_LIST_ENTRY prev = NULL, e = q->head;
		while (e && e != &Dpc->DpcListEntry)
			prev = e, e = e->Next;
		if (!e)
			PANIC("KeRemoveQueueDpc: DPC %p names a queue it is not in", Dpc);
		if (prev)
			prev->Next = e->Next;
		else
			q->head = e->Next;
		if (q->tail == e)
			q->tail = prev;
		q->depth--;
		note_head(q);
		__atomic_store_n(&Dpc->DpcData, NULL, __ATOMIC_RELEASE);
		removed = TRUE;
	}
	queue_unlock(q, flags);
	return removed;
}

/* Run this CPU's queue until it is empty; at DISPATCH_LEVEL.  Each DPC leaves the queue
 * (DpcData NULL) before its routine runs, so the routine may queue it again. */
static void drain(void)
{
	unsigned me = smp_this_cpu();
	struct dpc_queue *q = &queues[me];
	for (;;) {
		uint64_t flags = queue_lock(q);
		PSINGLE_LIST_ENTRY e = q->head;
		if (!e) {
			queue_unlock(q, flags);
			return;
		}
		q->head = e->Next;
		if (!q->head)
			q->tail = NULL;
		q->depth--;
		note_head(q);
		PKDPC dpc = (PKDPC)((char *)e - __builtin_offsetof(KDPC, DpcListEntry));
		PKDEFERRED_ROUTINE routine = dpc->DeferredRoutine;
		PVOID context = dpc->DeferredContext, a1 = dpc->SystemArgument1, a2 = dpc->SystemArgument2;
		dpc->ProcessorHistory |= 1ull << me;
		__atomic_store_n(&dpc->DpcData, NULL, __ATOMIC_RELEASE);
		queue_unlock(q, flags);

		struct kcpu *c = this_cpu();
		c->dpc_in_routine = true;
		routine(dpc, context, a1, a2);
		c->dpc_in_routine = false;
		q->run++;
		KIRQL now = KeGetCurrentIrql();
		if (now != DISPATCH_LEVEL)
			verifier_violation(VERIFIER_DPC_RETURNED_AT_WRONG_IRQL, (ULONG_PTR)routine, now,
					   (ULONG_PTR)dpc);
	}
}

void dpc_interrupt(void)
{
	queues[smp_this_cpu()].interrupts++;
	uint64_t flags = read_rflags();
	__asm__ volatile("sti" ::: "memory");
	drain();
	if (!(flags & RFLAGS_IF))
		__asm__ volatile("cli" ::: "memory");
}

void dpc_before_lower(KIRQL new_irql)
{
	struct kcpu *c = this_cpu();
	struct dpc_queue *q = &queues[c->number];
	if (c->dpc_in_routine) /* the 0xC4 page's 0x31, P4 1: invalid inside a DPC routine */
		verifier_violation(VERIFIER_LOWER_IRQL_INVALID, KeGetCurrentIrql(), new_irql, 1);
	if (!__atomic_load_n(&q->head, __ATOMIC_RELAXED))
		return;
	write_cr8(DISPATCH_LEVEL);
	drain();
}

void dpc_clock_tick(void)
{
	unsigned me = smp_this_cpu();
	if (__atomic_load_n(&queues[me].head, __ATOMIC_RELAXED))
		request(me, me);
}

bool dpc_in_routine(void) { return this_cpu()->dpc_in_routine; }

void dpc_counts(unsigned cpu, struct dpc_cpu_counts *out)
{
	if (cpu >= SMP_MAX_CPUS) {
		*out = (struct dpc_cpu_counts){ 0 };
		return;
	}
	const struct dpc_queue *q = &queues[cpu];
	*out = (struct dpc_cpu_counts){ .depth = q->depth, .run = q->run, .interrupts = q->interrupts };
}

/* A case must not end with a DPC still queued on any CPU (its KDPC may be on its stack). */
static uint64_t dpcs_queued(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < SMP_MAX_CPUS; i++)
		n += __atomic_load_n(&queues[i].depth, __ATOMIC_RELAXED);
	return n;
}
ACCOUNTING_COUNTER(dpcs_queued, "DPCs queued", dpcs_queued);
