/*
 * The clock: each CPU's local APIC timer, periodic at CLOCK_HZ on VEC_CLOCK (class 13 =
 * CLOCK_LEVEL), calibrated once on the boot CPU by KeStallExecutionProcessor (the TSC, itself
 * measured against the PIT);
 * every APIC runs from the same bus clock, so one count serves all.  The boot command line's
 * clock=0 leaves every timer off (make bench does: its instruction counts under -icount
 * must not depend on when a tick lands).
 *
 * 100 Hz: a 10 ms tick, KeQueryTimeIncrement 100000 (100 ns units) exactly, and few enough
 * interrupts that four TCG vCPUs on two host cores spend next to nothing on them (NT's
 * default is 64 Hz, 15.625 ms; nothing here needs a finer tick).
 */
#ifndef KERNEL_INTR_CLOCK_H
#define KERNEL_INTR_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/ntdef.h"

#define CLOCK_HZ 100u

/* Calibrate and start the timer on every online CPU (after smp_init), unless the command
 * line says clock=0.  Prints the boot line "clock: ...". */
void clock_init(void);
bool clock_running(void);
/* The ticks CPU `cpu`'s clock interrupt has counted. */
uint64_t clock_ticks(unsigned cpu);
/* For tests only: stop (hold true) or restart CPU cpu's timer, by a cross-call (none when
 * the clock is off), so an idle CPU stays in HLT until an IPI wakes it.  Every hold is
 * undone before the case ends. */
void clock_test_hold(unsigned cpu, bool hold);
/* From intr_dispatch at CLOCK_LEVEL. */
void clock_interrupt(void);

/* NT's time queries, as their Microsoft pages define them. */
/* The TSC (constant rate on every CPU mdlab runs on: QEMU's is derived from its virtual
 * clock); *PerformanceFrequency, when given, its counts per second. */
LARGE_INTEGER KeQueryPerformanceCounter(PLARGE_INTEGER PerformanceFrequency);
/* The clock ticks since the clock started (the boot CPU's count: NT's tick count is one for
 * the system). */
VOID KeQueryTickCount(PLARGE_INTEGER CurrentCount);
/* 100 ns units per tick. */
ULONG KeQueryTimeIncrement(VOID);

#endif
