/*
 * The processors: the APs started from ACPI's MADT, cross-calls between CPUs, passive work
 * for tests, the CR/PAT audit across CPUs, and the freeze a bug check sends (README,
 * "Processors").
 *
 * Interrupts: every CPU, the boot CPU included, runs kernel code with RFLAGS.IF set (CR8 is
 * the IRQL and masks by priority class), and ring 3 too, so each takes a cross-call's IPI at
 * once unless it is above IPI_LEVEL, in an interrupt handler or in code that turned them off;
 * there it serves its mailbox while it spins (smp_call_mask, spin locks, the driver load lock, smp_work_wait, ps_wait)
 * (mm/RULES.md, "Interrupts and IRQL").
 */
#ifndef KERNEL_SMP_SMP_H
#define KERNEL_SMP_SMP_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"
#include "include/mdlab/ntdef.h"
#include "kernel/smp/percpu.h"

/* The boot CPU's per-CPU data and GS base: kmain, right after gdt_init. */
void smp_init_boot_cpu(void);
/* Read the MADT, enable the boot CPU's local APIC, start every other enabled processor
 * through the trampoline, and audit them (smp_audit); after mm_init and syscall_init.
 * `max_cpus` (0: no limit) caps how many run (the command line's smp=N). */
void smp_init(const struct mdlab_bootinfo *bi, unsigned max_cpus);

/* How many CPUs run (read on the TLB's hot path, hence a variable). */
extern unsigned smp_online_count;
static inline unsigned smp_cpus_online(void) { return smp_online_count; }
/* The number of the CPU this runs on (0 = the boot CPU). */
static inline unsigned smp_this_cpu(void) { return this_cpu()->number; }

/* A bounded wait: how long a cross-call or a test's handshake waits before it fails;
 * generous, since up to four vCPUs share two busy host cores and a vCPU thread may not run
 * for a while.  No verdict depends on it, only a hang becomes a failure. */
#define SMP_WAIT_MS 10000u

/* Run fn(arg) on every CPU in `mask` (bit n = CPU n; this CPU's bit runs it here, first)
 * in each CPU's IPI handler, at IPI_LEVEL with interrupts off, and wait until every one has
 * returned.  A CPU that does not answer within SMP_WAIT_MS stops the machine with bug check
 * 0x101 CLOCK_WATCHDOG_TIMEOUT (the interval in clock ticks, 0, its struct kcpu, its number):
 * its pending request would run later on a stack frame that is gone.  True otherwise.  fn
 * must not wait for another CPU. */
bool smp_call_mask(uint64_t mask, void (*fn)(void *), void *arg);
/* For the death test only: smp_call_mask's wait, in ms, instead of SMP_WAIT_MS. */
void smp_test_set_call_wait_ms(uint32_t ms);
/* How many PAUSEs smp_call_mask's callers have spun waiting for answers, since boot (make
 * bench's SMP suite: the cost of the wait, tests/bench/bench_smp.c). */
uint64_t smp_call_wait_spins(void);
/* Run a cross-call waiting in this CPU's mailbox, if any: what a CPU does while it spins
 * with interrupts off (smp_call_mask, spin locks). */
void smp_serve_mailbox(void);
/* Every online CPU but this one. */
uint64_t smp_others_mask(void);

/* Passive work for tests: CPU `cpu` (not this one) runs fn(arg) in its idle loop at
 * PASSIVE_LEVEL with interrupts on, so it takes IPIs while fn runs.  smp_work_wait waits
 * until it has returned, serving this CPU's cross-call mailbox meanwhile (fn may run a
 * process whose teardown shoots down the kernel half); false after SMP_WAIT_MS (fn may
 * still be running). */
bool smp_work_start(unsigned cpu, void (*fn)(void *), void *arg);
bool smp_work_wait(unsigned cpu);

/* A bounded spin: until *flag != 0 or SMP_WAIT_MS passed; returns whether it was set. */
bool smp_wait_flag(const volatile uint32_t *flag);

/* The registers the SDM wants equal on every CPU (IA32_PAT: Vol. 3, 13.12.4) and the
 * controls mdlab's protections rely on, read on each CPU. */
struct smp_cpu_regs {
	uint64_t pat, cr0, cr4, efer;
	bool answered;
};
/* Read them on every online CPU into regs[0..n) (by CPU number) and compare each CPU's
 * with the boot CPU's; prints one line per difference, returns how many CPUs differ or
 * did not answer. */
unsigned smp_audit(struct smp_cpu_regs *regs, unsigned n);

/* The TSC's counts per millisecond, measured against the PIT's channel 2 at boot: the clock of
 * KeStallExecutionProcessor, the bounded waits and KeQueryPerformanceCounter. */
uint64_t smp_tsc_per_ms(void);

/* Bug check on SMP: the stopping CPU sends an NMI to every other CPU, each of which halts
 * with interrupts off (smp_frozen_halt) and prints nothing. */
void smp_freeze_others(void);
bool smp_freezing(void);
__attribute__((noreturn)) void smp_frozen_halt(void);
/* The CPU number without trusting GS (a bug check may come before smp_init_boot_cpu). */
unsigned smp_cpu_number_safe(void);

/* The cross-call IPI (VEC_IPI_CALL), from intr_dispatch. */
void smp_interrupt(uint64_t vector);

/* NT's processor queries and stall, as their Microsoft pages define them. */
typedef struct _PROCESSOR_NUMBER {
	USHORT Group;
	UCHAR Number;
	UCHAR Reserved;
} PROCESSOR_NUMBER, *PPROCESSOR_NUMBER;
typedef ULONG_PTR KAFFINITY, *PKAFFINITY;
ULONG KeGetCurrentProcessorNumberEx(PPROCESSOR_NUMBER ProcNumber);
ULONG KeQueryActiveProcessorCount(PKAFFINITY ActiveProcessors);
VOID KeStallExecutionProcessor(ULONG MicroSeconds);

#endif
