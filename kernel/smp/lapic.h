/*
 * The local APIC: xAPIC through its MMIO page, x2APIC through MSRs 0x800 + (offset >> 4)
 * where CPUID.1:ECX[21] says the CPU has it (SDM Vol. 3, 11.4 and 11.12).  Only this module
 * touches APIC registers.
 */
#ifndef KERNEL_SMP_LAPIC_H
#define KERNEL_SMP_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* The vector table.  An interrupt's priority class is vector >> 4 and CR8 = N holds off
 * every class <= N (SDM Vol. 3, 11.8.3), so each vector sits in the class equal to its NT
 * IRQL: the DPC interrupt in class 2 (DISPATCH_LEVEL), devices in 3-12 (DIRQL), the clock
 * in 13 (CLOCK_LEVEL), IPIs in 14 (IPI_LEVEL), the APIC's own in 15 (HIGH_LEVEL).  Vectors
 * 16-31 are reserved to exceptions and an APIC refuses 0-15 (11.5.2, "illegal vector"). */
#define VEC_DPC 0x2F           /* KeInsertQueueDpc's request (kernel/intr/dpc.c) */
#define VEC_DEVICE_FIRST 0x30  /* IO-APIC and MSI routes (kernel/intr/ioapic.c) */
#define VEC_DEVICE_LAST 0xCF
#define VEC_CLOCK 0xD1         /* the LAPIC timer (kernel/intr/clock.c) */
#define VEC_IPI_CALL 0xE1      /* cross-calls and TLB shootdowns (kernel/smp/smp.c) */
#define VEC_APIC_ERROR 0xFE    /* LVT error */
#define VEC_APIC_SPURIOUS 0xFF /* SVR: bits 3-0 all ones, as P6-family CPUs require */

/* ICR delivery modes and shorthands (SDM Vol. 3, 11.6.1). */
#define ICR_FIXED 0x000u
#define ICR_NMI 0x400u
#define ICR_INIT 0x500u
#define ICR_STARTUP 0x600u
#define ICR_ASSERT 0x4000u
#define ICR_SELF 0x40000u
#define ICR_ALL_EXCLUDING_SELF 0xC0000u

/* Map the xAPIC page (or enable x2APIC mode) and report which; the boot CPU, once. */
void lapic_init(uint64_t mmio_phys);
/* Enable this CPU's APIC: spurious vector, error vector, LVT timer and LINT0 masked, TPR 0
 * (CR8 is the IRQL); clears the error status. */
void lapic_init_this_cpu(void);
bool lapic_x2apic(void);
uint32_t lapic_id(void);
void lapic_eoi(void);
/* Send an IPI (ICR low word `low`: vector | delivery mode | flags) to APIC ID `dest`, or
 * with ICR_ALL_EXCLUDING_SELF in `low` to every other CPU; waits until the xAPIC has sent
 * it (delivery status idle; x2APIC has no such bit). */
void lapic_send_ipi(uint32_t dest, uint32_t low);
/* The error status register, after writing it (11.5.3: a write latches the errors). */
uint32_t lapic_read_esr(void);

/* The APIC timer (SDM Vol. 3, 11.5.4), divide by 16: `initial` counts of the APIC's clock,
 * then the LVT timer's `vector` (periodic: again every `initial` counts); `masked` counts
 * without interrupting (calibration).  initial 0 stops it. */
void lapic_timer_start(uint8_t vector, uint32_t initial, bool periodic, bool masked);
uint32_t lapic_timer_current(void);
/* Whether `vector` is pending (IRR) or in service (ISR) on this CPU's APIC (11.8.4). */
bool lapic_vector_pending(uint8_t vector);

#endif
