/*
 * Vectors by IRQL (kernel/intr/intr.h): a device vector runs its routine at the IRQL of its
 * priority class, with interrupts off; CR8 at that IRQL holds it pending in the APIC and one
 * level lower lets it in; a vector nothing claims is acknowledged and counted.  The
 * interrupts are self-IPIs, so each arrives for real through the APIC; waits are bounded.
 */
#include "kernel/ktest.h"
#include "kernel/cpu.h"
#include "kernel/intr/intr.h"
#include "kernel/irql.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"

#define TEST_VECTOR 0x5A /* class 5 */
#define UNCLAIMED_VECTOR 0x6B

static volatile uint32_t served;
static KIRQL served_irql;
static bool served_with_if;

static void note_irql(void *context)
{
	(void)context;
	served_irql = KeGetCurrentIrql();
	served_with_if = read_rflags() & RFLAGS_IF;
	__atomic_store_n(&served, 1, __ATOMIC_RELEASE);
}

static void self_ipi(uint8_t vector) { lapic_send_ipi(0, vector | ICR_FIXED | ICR_ASSERT | ICR_SELF); }

/* Vector 0x5A: held pending at IRQL 5 (its class), taken at IRQL 4, served at IRQL 5 with
 * IF clear, and the IRQL is back at 4 afterwards. */
static void a_vector_runs_at_its_class_irql(struct ktest *t)
{
	served = 0;
	ASSERT_TRUE(t, intr_connect(TEST_VECTOR, note_irql, NULL));
	KIRQL old;
	KeRaiseIrql(TEST_VECTOR >> 4, &old);
	self_ipi(TEST_VECTOR);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	bool pending = false;
	while (!(pending = lapic_vector_pending(TEST_VECTOR)) && rdtsc() < end)
		cpu_relax();
	uint32_t while_masked = served;
	KeLowerIrql((TEST_VECTOR >> 4) - 1);
	bool came = smp_wait_flag(&served);
	KIRQL after = KeGetCurrentIrql();
	KeLowerIrql(old);
	intr_disconnect(TEST_VECTOR);
	EXPECT_TRUE(t, pending);
	EXPECT_EQ(t, while_masked, 0u);
	EXPECT_TRUE(t, came);
	EXPECT_EQ(t, served_irql, TEST_VECTOR >> 4);
	EXPECT_FALSE(t, served_with_if);
	EXPECT_EQ(t, after, (TEST_VECTOR >> 4) - 1);
}

static void an_unclaimed_vector_is_counted(struct ktest *t)
{
	struct intr_cpu_counts before, after;
	intr_counts(smp_this_cpu(), &before);
	self_ipi(UNCLAIMED_VECTOR);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	do
		intr_counts(smp_this_cpu(), &after);
	while (after.unclaimed == before.unclaimed && rdtsc() < end);
	EXPECT_EQ(t, after.unclaimed, before.unclaimed + 1);
	EXPECT_FALSE(t, lapic_vector_pending(UNCLAIMED_VECTOR)); /* acknowledged: not in service */
}

/* The kernel runs at PASSIVE_LEVEL with interrupts on (the boot CPU too). */
static void passive_level_runs_with_interrupts_on(struct ktest *t)
{
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	EXPECT_TRUE(t, read_rflags() & RFLAGS_IF);
}

static struct ktest_case irql_vectors_cases[] = {
	KTEST_CASE(passive_level_runs_with_interrupts_on),
	KTEST_CASE(a_vector_runs_at_its_class_irql),
	KTEST_CASE(an_unclaimed_vector_is_counted),
	{ 0 }
};
KTEST_SUITE(irql_vectors, irql_vectors_cases);
