/*
 * DPCs (kernel/intr/dpc.h): a DPC queued at DISPATCH_LEVEL waits until the IRQL drops, then
 * runs at DISPATCH_LEVEL on this CPU with its arguments; a second insert of a queued DPC is
 * FALSE; the queue is FIFO, HighImportance at its head; a DPC targeted at another CPU runs
 * there (and only there) at DISPATCH_LEVEL; and the misuse bug checks.  Waits are for
 * events, bounded by SMP_WAIT_MS.
 */
#include "kernel/ktest.h"
#include "kernel/cpu.h"
#include "kernel/intr/dpc.h"
#include "kernel/irql.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"
#include "include/wdm.h"
#include "mm/verifier.h"

#define MAX_RUNS 8

struct record {
	volatile uint32_t runs;
	uint32_t order[MAX_RUNS]; /* the DeferredContext of each run, in order */
	unsigned cpu[MAX_RUNS];
	KIRQL irql[MAX_RUNS];
	PVOID arg1[MAX_RUNS], arg2[MAX_RUNS];
	PKDPC dpc[MAX_RUNS];
};

static struct record rec;

static VOID note(PKDPC Dpc, PVOID DeferredContext, PVOID SystemArgument1, PVOID SystemArgument2)
{
	uint32_t i = rec.runs;
	if (i < MAX_RUNS) {
		rec.order[i] = (uint32_t)(ULONG_PTR)DeferredContext;
		rec.cpu[i] = smp_this_cpu();
		rec.irql[i] = KeGetCurrentIrql();
		rec.arg1[i] = SystemArgument1;
		rec.arg2[i] = SystemArgument2;
		rec.dpc[i] = Dpc;
	}
	__atomic_store_n(&rec.runs, i + 1, __ATOMIC_RELEASE);
}

static int dpc_init(struct ktest *t)
{
	(void)t;
	rec = (struct record){ 0 };
	return 0;
}

/* KeInitializeDpc: wdm.h's fields (the layout is 0x40 bytes on x64). */
static void initialize_sets_the_fields(struct ktest *t)
{
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)7);
	EXPECT_EQ(t, sizeof(KDPC), 0x40u);
	EXPECT_EQ(t, d.Type, DpcObject);
	EXPECT_EQ(t, d.Importance, MediumImportance);
	EXPECT_EQ(t, d.Number, 0u);
	EXPECT_TRUE(t, d.DeferredRoutine == note);
	EXPECT_EQ(t, (ULONG_PTR)d.DeferredContext, 7u);
	EXPECT_TRUE(t, d.DpcData == NULL);
}

/* Queued at DISPATCH_LEVEL: nothing runs (the DPC interrupt is pending in the APIC, held off
 * by CR8) until KeLowerIrql goes below DISPATCH_LEVEL; then the routine runs once, here, at
 * DISPATCH_LEVEL, with the DPC and both arguments. */
static void queued_at_dispatch_runs_when_the_irql_drops(struct ktest *t)
{
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)1);
	KIRQL old = KeRaiseIrqlToDpcLevel();
	EXPECT_TRUE(t, KeInsertQueueDpc(&d, (PVOID)0xA1, (PVOID)0xA2));
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	bool pending = false;
	while (!(pending = lapic_vector_pending(VEC_DPC)) && rdtsc() < end)
		cpu_relax();
	uint32_t while_raised = rec.runs;
	bool queued = d.DpcData != NULL;
	KeLowerIrql(old);
	EXPECT_TRUE(t, pending);
	EXPECT_TRUE(t, queued);
	EXPECT_EQ(t, while_raised, 0u);
	ASSERT_EQ(t, rec.runs, 1u);
	EXPECT_EQ(t, rec.cpu[0], smp_this_cpu());
	EXPECT_EQ(t, rec.irql[0], DISPATCH_LEVEL);
	EXPECT_TRUE(t, rec.dpc[0] == &d);
	EXPECT_EQ(t, (ULONG_PTR)rec.arg1[0], 0xA1u);
	EXPECT_EQ(t, (ULONG_PTR)rec.arg2[0], 0xA2u);
	EXPECT_TRUE(t, d.DpcData == NULL);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
}

/* With interrupts off (code that turned them off: CLI) the DPC interrupt cannot come: KeLowerIrql's
 * own drain runs the DPC, at DISPATCH_LEVEL, before the IRQL goes below it. */
static void lower_runs_the_queue_with_interrupts_off(struct ktest *t)
{
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)1);
	__asm__ volatile("cli" ::: "memory");
	KIRQL old = KeRaiseIrqlToDpcLevel();
	BOOLEAN queued = KeInsertQueueDpc(&d, NULL, NULL);
	KeLowerIrql(old);
	uint32_t runs = rec.runs;
	bool if_still_clear = !(read_rflags() & RFLAGS_IF);
	__asm__ volatile("sti" ::: "memory");
	EXPECT_TRUE(t, queued);
	EXPECT_TRUE(t, if_still_clear);
	ASSERT_EQ(t, runs, 1u);
	EXPECT_EQ(t, rec.irql[0], DISPATCH_LEVEL);
}

/* Queued at PASSIVE_LEVEL with interrupts on: the DPC interrupt runs it at once. */
static void queued_at_passive_runs_through_the_dpc_interrupt(struct ktest *t)
{
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)1);
	struct dpc_cpu_counts before, after;
	dpc_counts(smp_this_cpu(), &before);
	EXPECT_TRUE(t, KeInsertQueueDpc(&d, NULL, NULL));
	EXPECT_TRUE(t, smp_wait_flag(&rec.runs));
	KeRemoveQueueDpc(&d);
	dpc_counts(smp_this_cpu(), &after);
	EXPECT_EQ(t, rec.irql[0], DISPATCH_LEVEL);
	EXPECT_EQ(t, after.interrupts, before.interrupts + 1);
	EXPECT_EQ(t, after.run, before.run + 1);
}

/* LowImportance does not begin the queue: no DPC interrupt is requested and nothing runs,
 * with interrupts on at PASSIVE_LEVEL; the CPU's next clock tick begins it. */
static void low_importance_waits_for_the_tick(struct ktest *t)
{
	if (!clock_running())
		KTEST_SKIP(t, "the clock is off (clock=0)");
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)1);
	KeSetImportanceDpc(&d, LowImportance);
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory"); /* no tick between the insert and the look */
	BOOLEAN queued = KeInsertQueueDpc(&d, NULL, NULL);
	bool requested = lapic_vector_pending(VEC_DPC);
	uint32_t runs = rec.runs;
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
	bool ran = smp_wait_flag(&rec.runs);
	KeRemoveQueueDpc(&d);
	EXPECT_TRUE(t, queued);
	EXPECT_FALSE(t, requested);
	EXPECT_EQ(t, runs, 0u);
	EXPECT_TRUE(t, ran);
	EXPECT_EQ(t, rec.irql[0], DISPATCH_LEVEL);
}

/* A queued DPC inserted again: FALSE, and it still runs once.  KeRemoveQueueDpc takes a queued
 * one out (TRUE: it never runs) and answers FALSE for one in no queue. */
static void insert_twice_is_false_and_remove_dequeues(struct ktest *t)
{
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)1);
	KIRQL old = KeRaiseIrqlToDpcLevel();
	BOOLEAN first = KeInsertQueueDpc(&d, NULL, NULL);
	BOOLEAN second = KeInsertQueueDpc(&d, NULL, NULL);
	struct dpc_cpu_counts c;
	dpc_counts(smp_this_cpu(), &c);
	BOOLEAN removed = KeRemoveQueueDpc(&d);
	BOOLEAN removed_again = KeRemoveQueueDpc(&d);
	BOOLEAN third = KeInsertQueueDpc(&d, NULL, NULL);
	KeLowerIrql(old);
	EXPECT_TRUE(t, first);
	EXPECT_FALSE(t, second);
	EXPECT_EQ(t, c.depth, 1u);
	EXPECT_TRUE(t, removed);
	EXPECT_FALSE(t, removed_again);
	EXPECT_TRUE(t, third);
	EXPECT_EQ(t, rec.runs, 1u);
}

/* Three DPCs queued at DISPATCH_LEVEL run in the order queued; a HighImportance one queued
 * after them runs first. */
static void fifo_with_high_importance_at_the_head(struct ktest *t)
{
	KDPC d[4];
	for (unsigned i = 0; i < 4; i++)
		KeInitializeDpc(&d[i], note, (PVOID)(ULONG_PTR)(i + 1));
	KeSetImportanceDpc(&d[3], HighImportance);
	EXPECT_EQ(t, d[3].Importance, HighImportance);
	KIRQL old = KeRaiseIrqlToDpcLevel();
	for (unsigned i = 0; i < 4; i++)
		KeInsertQueueDpc(&d[i], NULL, NULL);
	KeLowerIrql(old);
	ASSERT_EQ(t, rec.runs, 4u);
	EXPECT_EQ(t, rec.order[0], 4u);
	EXPECT_EQ(t, rec.order[1], 1u);
	EXPECT_EQ(t, rec.order[2], 2u);
	EXPECT_EQ(t, rec.order[3], 3u);
}

/* A DPC targeted at CPU 2 (the last CPU on a smaller machine) runs there, at DISPATCH_LEVEL,
 * with its context and arguments, and on no other CPU (ProcessorHistory has that one bit). */
static void targeted_dpc_runs_on_its_cpu(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	unsigned target = smp_cpus_online() > 2 ? 2 : 1;
	KDPC d;
	KeInitializeDpc(&d, note, (PVOID)9);
	KeSetTargetProcessorDpc(&d, (CCHAR)target);
	KeSetImportanceDpc(&d, MediumHighImportance); /* begins the target's queue at once */
	struct dpc_cpu_counts before, after;
	dpc_counts(target, &before);
	EXPECT_TRUE(t, KeInsertQueueDpc(&d, (PVOID)0xB1, (PVOID)0xB2));
	bool ran = smp_wait_flag(&rec.runs);
	KeRemoveQueueDpc(&d); /* the KDPC is on this stack: never leave it queued */
	ASSERT_TRUE(t, ran);
	dpc_counts(target, &after);
	EXPECT_EQ(t, rec.runs, 1u);
	EXPECT_EQ(t, rec.cpu[0], target);
	EXPECT_EQ(t, rec.irql[0], DISPATCH_LEVEL);
	EXPECT_EQ(t, rec.order[0], 9u);
	EXPECT_EQ(t, (ULONG_PTR)rec.arg1[0], 0xB1u);
	EXPECT_EQ(t, (ULONG_PTR)rec.arg2[0], 0xB2u);
	EXPECT_EQ(t, d.ProcessorHistory, 1ull << target);
	EXPECT_EQ(t, after.run, before.run + 1);
}

/* Every CPU runs a DPC targeted at it. */
static void a_dpc_runs_on_every_cpu(struct ktest *t)
{
	unsigned n = smp_cpus_online();
	KDPC d[SMP_MAX_CPUS];
	for (unsigned i = 0; i < n; i++) {
		KeInitializeDpc(&d[i], note, (PVOID)(ULONG_PTR)i);
		KeSetTargetProcessorDpc(&d[i], (CCHAR)i);
		KeSetImportanceDpc(&d[i], MediumHighImportance);
		EXPECT_TRUE(t, KeInsertQueueDpc(&d[i], NULL, NULL));
	}
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (__atomic_load_n(&rec.runs, __ATOMIC_ACQUIRE) < n && rdtsc() < end)
		cpu_relax();
	for (unsigned i = 0; i < n; i++) {
		EXPECT_FALSE(t, KeRemoveQueueDpc(&d[i])); /* run, so in no queue (and never left on one) */
		EXPECT_EQ(t, d[i].ProcessorHistory, 1ull << i);
	}
}

/* Death: a routine that returns at HIGH_LEVEL. */
static KDPC death_dpc;

static VOID return_raised(PKDPC Dpc, PVOID DeferredContext, PVOID SystemArgument1, PVOID SystemArgument2)
{
	(void)Dpc, (void)DeferredContext, (void)SystemArgument1, (void)SystemArgument2;
	KIRQL old;
	KeRaiseIrql(HIGH_LEVEL, &old);
}

static void routine_that_returns_raised(struct ktest *t)
{
	(void)t;
	KeInitializeDpc(&death_dpc, return_raised, NULL);
	KIRQL old = KeRaiseIrqlToDpcLevel();
	KeInsertQueueDpc(&death_dpc, NULL, NULL);
	KeLowerIrql(old); /* 0xC4 P1 0x2010: the routine, HIGH_LEVEL, the DPC */
}

static VOID lower_inside(PKDPC Dpc, PVOID DeferredContext, PVOID SystemArgument1, PVOID SystemArgument2)
{
	(void)Dpc, (void)DeferredContext, (void)SystemArgument1, (void)SystemArgument2;
	KeLowerIrql(PASSIVE_LEVEL); /* 0xC4 P1 0x31: DISPATCH_LEVEL, PASSIVE_LEVEL, 1 */
}

static void routine_that_lowers_below_dispatch(struct ktest *t)
{
	(void)t;
	KeInitializeDpc(&death_dpc, lower_inside, NULL);
	KIRQL old = KeRaiseIrqlToDpcLevel();
	KeInsertQueueDpc(&death_dpc, NULL, NULL);
	KeLowerIrql(old);
}

static void target_that_is_no_cpu(struct ktest *t)
{
	(void)t;
	KeInitializeDpc(&death_dpc, note, NULL);
	KeSetTargetProcessorDpc(&death_dpc, SMP_MAX_CPUS - 1);
	KeInsertQueueDpc(&death_dpc, NULL, NULL); /* 0xC7 P1 3: the DPC, 15, the CPU count */
}

/* A wait with a non-zero timeout at DISPATCH_LEVEL: 0xA (the event, the IRQL, 0, the caller). */
static KEVENT death_event;

static void wait_at_dispatch_level(struct ktest *t)
{
	(void)t;
	KeInitializeEvent(&death_event, NotificationEvent, TRUE);
	LARGE_INTEGER timeout = { .QuadPart = -10000 };
	KIRQL old = KeRaiseIrqlToDpcLevel();
	KeWaitForSingleObject(&death_event, Executive, KernelMode, FALSE, &timeout);
	KeLowerIrql(old);
}

/* A zero timeout is a poll, allowed at DISPATCH_LEVEL (the page's exception). */
static void poll_at_dispatch_level_is_allowed(struct ktest *t)
{
	KEVENT e;
	KeInitializeEvent(&e, NotificationEvent, FALSE);
	LARGE_INTEGER zero = { .QuadPart = 0 };
	KIRQL old = KeRaiseIrqlToDpcLevel();
	NTSTATUS st = KeWaitForSingleObject(&e, Executive, KernelMode, FALSE, &zero);
	KeLowerIrql(old);
	EXPECT_EQ(t, st, STATUS_TIMEOUT);
}

static struct ktest_case dpc_cases[] = {
	KTEST_CASE(initialize_sets_the_fields),
	KTEST_CASE(queued_at_dispatch_runs_when_the_irql_drops),
	KTEST_CASE(lower_runs_the_queue_with_interrupts_off),
	KTEST_CASE(queued_at_passive_runs_through_the_dpc_interrupt),
	KTEST_CASE(low_importance_waits_for_the_tick),
	KTEST_CASE(insert_twice_is_false_and_remove_dequeues),
	KTEST_CASE(fifo_with_high_importance_at_the_head),
	KTEST_CASE(targeted_dpc_runs_on_its_cpu),
	KTEST_CASE(a_dpc_runs_on_every_cpu),
	KTEST_CASE(poll_at_dispatch_level_is_allowed),
	KTEST_DEATH_CASE_P(routine_that_returns_raised, DRIVER_VERIFIER_DETECTED_VIOLATION, KTEST_P_ALL,
			   VERIFIER_DPC_RETURNED_AT_WRONG_IRQL, (uint64_t)(ULONG_PTR)return_raised, HIGH_LEVEL,
			   (uint64_t)(ULONG_PTR)&death_dpc),
	KTEST_DEATH_CASE_P(routine_that_lowers_below_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, KTEST_P_ALL,
			   VERIFIER_LOWER_IRQL_INVALID, DISPATCH_LEVEL, PASSIVE_LEVEL, 1),
	KTEST_DEATH_CASE_P(target_that_is_no_cpu, TIMER_OR_DPC_INVALID, KTEST_P1 | KTEST_P2 | KTEST_P3, 3,
			   (uint64_t)(ULONG_PTR)&death_dpc, SMP_MAX_CPUS - 1, 0),
	KTEST_DEATH_CASE_P(wait_at_dispatch_level, IRQL_NOT_LESS_OR_EQUAL, KTEST_P1 | KTEST_P2 | KTEST_P3,
			   (uint64_t)(ULONG_PTR)&death_event, DISPATCH_LEVEL, 0, 0),
	{ 0 }
};
KTEST_SUITE(dpc, dpc_cases, .init = dpc_init);
