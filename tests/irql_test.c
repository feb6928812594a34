/* IRQL lives in CR8: raise and lower move the register itself, and going the wrong way is
 * Driver Verifier's bug check 0xC4 P1 0x30 / 0x31 with all of Microsoft's parameters. */
#include "kernel/ktest.h"
#include "kernel/irql.h"

static uint64_t cr8_now(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr8, %0" : "=r"(v));
	return v;
}

static void raise_lower_round_trip_through_cr8(struct ktest *t)
{
	ASSERT_EQ(t, cr8_now(), PASSIVE_LEVEL);
	KIRQL old;
	KeRaiseIrql(APC_LEVEL, &old);
	EXPECT_EQ(t, old, PASSIVE_LEVEL);
	EXPECT_EQ(t, cr8_now(), APC_LEVEL);
	KIRQL old2 = KeRaiseIrqlToDpcLevel();
	EXPECT_EQ(t, old2, APC_LEVEL);
	EXPECT_EQ(t, cr8_now(), DISPATCH_LEVEL);
	EXPECT_EQ(t, KeGetCurrentIrql(), DISPATCH_LEVEL);
	KIRQL old3;
	KeRaiseIrql(HIGH_LEVEL, &old3);
	EXPECT_EQ(t, old3, DISPATCH_LEVEL);
	EXPECT_EQ(t, cr8_now(), HIGH_LEVEL);
	KeLowerIrql(old3);
	EXPECT_EQ(t, cr8_now(), DISPATCH_LEVEL);
	KeLowerIrql(old2);
	EXPECT_EQ(t, cr8_now(), APC_LEVEL);
	KeLowerIrql(old);
	EXPECT_EQ(t, cr8_now(), PASSIVE_LEVEL);
}

static void raise_to_same_level_is_allowed(struct ktest *t)
{
	KIRQL old = KfRaiseIrql(PASSIVE_LEVEL);
	EXPECT_EQ(t, old, PASSIVE_LEVEL);
	EXPECT_EQ(t, cr8_now(), PASSIVE_LEVEL);
}

static void raise_below_current_bugchecks(struct ktest *t)
{
	(void)t;
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	KeRaiseIrql(APC_LEVEL, &old); /* 0xC4 P1 0x30: current 2, requested 1, 0 */
}

static void lower_above_current_bugchecks(struct ktest *t)
{
	(void)t;
	KeLowerIrql(DISPATCH_LEVEL); /* 0xC4 P1 0x31: current 0, requested 2, 0 (the new IRQL is bad) */
}

static void raise_above_high_level_bugchecks(struct ktest *t)
{
	(void)t;
	KIRQL old;
	KeRaiseIrql(HIGH_LEVEL + 1, &old); /* 0xC4 P1 0x30: current 0, requested 16, 0 */
}

static struct ktest_case irql_cases[] = {
	KTEST_CASE(raise_lower_round_trip_through_cr8),
	KTEST_CASE(raise_to_same_level_is_allowed),
	KTEST_DEATH_CASE_P(raise_below_current_bugchecks, DRIVER_VERIFIER_DETECTED_VIOLATION, KTEST_P_ALL,
			   0x30, DISPATCH_LEVEL, APC_LEVEL, 0),
	KTEST_DEATH_CASE_P(raise_above_high_level_bugchecks, DRIVER_VERIFIER_DETECTED_VIOLATION, KTEST_P_ALL,
			   0x30, PASSIVE_LEVEL, HIGH_LEVEL + 1, 0),
	KTEST_DEATH_CASE_P(lower_above_current_bugchecks, DRIVER_VERIFIER_DETECTED_VIOLATION, KTEST_P_ALL,
			   0x31, PASSIVE_LEVEL, DISPATCH_LEVEL, 0),
	{ 0 }
};
KTEST_SUITE(irql, irql_cases);
