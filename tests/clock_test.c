/*
 * The clock (kernel/intr/clock.h): the LAPIC timer interrupts every CPU (each CPU's own tick
 * count advances), CR8 masks it by priority class (at CLOCK_LEVEL the tick waits in the
 * APIC's IRR and arrives the moment the IRQL drops; at DISPATCH_LEVEL it still arrives), and
 * NT's time queries.  No verdict depends on timing: every wait is for an event, bounded by
 * SMP_WAIT_MS.
 */
#include "kernel/ktest.h"
#include "kernel/cpu.h"
#include "kernel/intr/clock.h"
#include "kernel/printf.h"
#include "kernel/intr/intr.h"
#include "kernel/irql.h"
#include "kernel/lab/monitor.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"

static void need_clock(struct ktest *t)
{
	if (!clock_running())
		KTEST_SKIP(t, "the clock is off (clock=0)");
}

/* A bounded spin until CPU `cpu`'s tick count passes `than`. */
static bool ticks_pass(unsigned cpu, uint64_t than)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (clock_ticks(cpu) <= than)
		if (rdtsc() > end)
			return false;
	return true;
}

/* Every online CPU's count advances twice: each one's own timer interrupts it. */
static void every_cpu_takes_the_clock(struct ktest *t)
{
	need_clock(t);
	uint64_t start[SMP_MAX_CPUS];
	unsigned n = smp_cpus_online();
	for (unsigned i = 0; i < n; i++)
		start[i] = clock_ticks(i);
	for (unsigned i = 0; i < n; i++) {
		EXPECT_TRUE(t, ticks_pass(i, start[i] + 1));
		kprintf("    # CPU %u: %lu ticks\n", i, clock_ticks(i));
	}
}

/* At CLOCK_LEVEL the tick is held off: it becomes pending in the APIC and the count does not
 * move; lowering to PASSIVE_LEVEL takes it at once.  Then at DISPATCH_LEVEL (class 2 masked,
 * class 13 not) ticks keep arriving. */
static void clock_level_holds_the_tick_off(struct ktest *t)
{
	need_clock(t);
	unsigned me = smp_this_cpu();
	KIRQL old;
	KeRaiseIrql(CLOCK_LEVEL, &old);
	uint64_t held = clock_ticks(me);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	bool pending = false;
	while (!(pending = lapic_vector_pending(VEC_CLOCK)) && rdtsc() < end)
		cpu_relax();
	uint64_t while_raised = clock_ticks(me);
	KeLowerIrql(PASSIVE_LEVEL);
	EXPECT_TRUE(t, ticks_pass(me, held));
	EXPECT_TRUE(t, pending);
	EXPECT_EQ(t, while_raised, held);

	KeRaiseIrql(DISPATCH_LEVEL, &old);
	uint64_t at_dispatch = clock_ticks(me);
	bool advanced = ticks_pass(me, at_dispatch);
	KeLowerIrql(old);
	EXPECT_TRUE(t, advanced);
}

/* KeQueryPerformanceCounter: a frequency when asked (the TSC's, from its calibration), none
 * needed; the counter never goes back.  KeQueryTimeIncrement: 10 ms in 100 ns units.
 * KeQueryTickCount: the boot CPU's count, advancing. */
static void time_queries(struct ktest *t)
{
	LARGE_INTEGER f = { .QuadPart = 0 };
	LARGE_INTEGER a = KeQueryPerformanceCounter(&f);
	LARGE_INTEGER b = KeQueryPerformanceCounter(NULL);
	EXPECT_EQ(t, (uint64_t)f.QuadPart, smp_tsc_per_ms() * 1000);
	EXPECT_GT(t, (uint64_t)f.QuadPart, 0u);
	EXPECT_GE(t, b.QuadPart, a.QuadPart);
	EXPECT_EQ(t, KeQueryTimeIncrement(), 100000u);
	need_clock(t);
	LARGE_INTEGER c;
	KeQueryTickCount(&c);
	EXPECT_TRUE(t, ticks_pass(0, (uint64_t)c.QuadPart));
	LARGE_INTEGER d;
	KeQueryTickCount(&d);
	EXPECT_GT(t, d.QuadPart, c.QuadPart);
}

/* What the cpus command shows as another CPU's IRQL: the IRQL its cross-call interrupted.
 * CPU 1 waits at DISPATCH_LEVEL (class 14 still reaches it); the read says DISPATCH_LEVEL. */
struct at_dispatch {
	volatile uint32_t raised, let_go;
};

static void wait_at_dispatch(void *arg)
{
	struct at_dispatch *a = arg;
	KIRQL old = KeRaiseIrqlToDpcLevel();
	__atomic_store_n(&a->raised, 1, __ATOMIC_RELEASE);
	smp_wait_flag(&a->let_go);
	KeLowerIrql(old);
}

static void read_interrupted(void *arg) { ((KIRQL *)arg)[smp_this_cpu()] = intr_interrupted_irql(); }

static void cpus_sees_another_cpus_irql(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	struct at_dispatch a = { 0 };
	KIRQL irql[SMP_MAX_CPUS] = { 0 };
	ASSERT_TRUE(t, smp_work_start(1, wait_at_dispatch, &a));
	bool raised = smp_wait_flag(&a.raised);
	smp_call_mask(1ull << 1, read_interrupted, irql);
	__atomic_store_n(&a.let_go, 1, __ATOMIC_RELEASE);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, raised);
	EXPECT_EQ(t, irql[1], DISPATCH_LEVEL);
	char line[] = "cpus";
	EXPECT_EQ(t, monitor_execute(line), 0);
}

/* KeStallExecutionProcessor on two CPUs at once (the TSC, not the one PIT, whose shared
 * count would end one of them early): each stall of 30 ms lasts its 30 ms of TSC on its own
 * CPU.  How many ticks a CPU counts meanwhile is not checked: under TCG the timer that raises
 * them runs on QEMU's own thread, which a loaded host may keep off the CPU for the whole 30 ms
 * (seen: 0 ticks at a load of 7 on 2 cores), so that count depends on timing; the ticks
 * themselves are every_cpu_takes_the_clock's. */
struct stall {
	uint64_t tsc;
};

static void stall_30ms(void *arg)
{
	struct stall *s = arg;
	uint64_t c0 = rdtsc();
	KeStallExecutionProcessor(30000);
	s->tsc = rdtsc() - c0;
}

static void stall_on_two_cpus_at_once(struct ktest *t)
{
	need_clock(t);
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	struct stall ap = { 0 }, here = { 0 };
	ASSERT_TRUE(t, smp_work_start(1, stall_30ms, &ap));
	stall_30ms(&here);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_GE(t, ap.tsc, 30 * smp_tsc_per_ms());
	EXPECT_GE(t, here.tsc, 30 * smp_tsc_per_ms());
}

static struct ktest_case clock_cases[] = {
	KTEST_CASE(every_cpu_takes_the_clock),
	KTEST_CASE(clock_level_holds_the_tick_off),
	KTEST_CASE(time_queries),
	KTEST_CASE(cpus_sees_another_cpus_irql),
	KTEST_CASE(stall_on_two_cpus_at_once),
	{ 0 }
};
KTEST_SUITE(clock, clock_cases);
