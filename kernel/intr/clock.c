/* The clock (see clock.h). */
#include "kernel/intr/clock.h"
#include "kernel/cmdline.h"
#include "kernel/cpu.h"
#include "kernel/intr/dpc.h"
#include "kernel/printf.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"

#define CALIBRATE_US 10000u

static volatile uint64_t ticks[SMP_MAX_CPUS];
static uint32_t apic_counts_per_tick;
static bool running;

bool clock_running(void) { return running; }

uint64_t clock_ticks(unsigned cpu) { return cpu < SMP_MAX_CPUS ? ticks[cpu] : 0; }

void clock_interrupt(void)
{
	ticks[smp_this_cpu()]++;
	dpc_clock_tick();
}

static void start_this_cpu(void *arg)
{
	(void)arg;
	lapic_timer_start(VEC_CLOCK, apic_counts_per_tick, true, false);
}

static void stop_this_cpu(void *arg)
{
	(void)arg;
	lapic_timer_start(VEC_CLOCK, 0, false, true); /* masked; an initial count of 0 stops it */
}

void clock_test_hold(unsigned cpu, bool hold)
{
	if (running && cpu < smp_cpus_online())
		smp_call_mask(1ull << cpu, hold ? stop_this_cpu : start_this_cpu, NULL);
}

/* How many APIC-timer counts (divide by 16) pass in CALIBRATE_US of KeStallExecutionProcessor. */
static uint32_t calibrate(void)
{
	lapic_timer_start(VEC_CLOCK, 0xFFFFFFFFu, false, true);
	KeStallExecutionProcessor(CALIBRATE_US);
	uint32_t left = lapic_timer_current();
	lapic_timer_start(VEC_CLOCK, 0, false, true);
	return 0xFFFFFFFFu - left;
}

void clock_init(void)
{
	if (!cmdline_get_u64("clock", 1)) {
		kprintf("clock: off (clock=0): no timer interrupt on any CPU\n");
		return;
	}
	uint64_t per_tick = (uint64_t)calibrate() * (1000000u / CALIBRATE_US) / CLOCK_HZ;
	if (!per_tick || per_tick > 0xFFFFFFFFu) {
		kprintf("clock: the APIC timer did not count against the PIT; no clock\n");
		return;
	}
	apic_counts_per_tick = (uint32_t)per_tick;
	running = true;
	smp_call_mask(smp_others_mask() | 1ull << smp_this_cpu(), start_this_cpu, NULL);
	kprintf("clock: APIC timer at %u Hz on %u CPU%s (vector 0x%x, %u counts a tick)\n", CLOCK_HZ,
		smp_cpus_online(), smp_cpus_online() == 1 ? "" : "s", VEC_CLOCK, apic_counts_per_tick);
}

LARGE_INTEGER KeQueryPerformanceCounter(PLARGE_INTEGER PerformanceFrequency)
{
	if (PerformanceFrequency)
		PerformanceFrequency->QuadPart = (LONGLONG)(smp_tsc_per_ms() * 1000);
	LARGE_INTEGER now;
	now.QuadPart = (LONGLONG)rdtsc();
	return now;
}

VOID KeQueryTickCount(PLARGE_INTEGER CurrentCount) { CurrentCount->QuadPart = (LONGLONG)ticks[0]; }

ULONG KeQueryTimeIncrement(VOID) { return 10000000u / CLOCK_HZ; }
