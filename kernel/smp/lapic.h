/*
 * The local APIC: xAPIC through its MMIO page, x2APIC through MSRs 0x800 + (offset >> 4)
 * where CPUID.1:ECX[21] says the CPU has it (SDM Vol. 3, 11.4 and 11.12).  Only this module
 * touches APIC registers.
 */
#ifndef KERNEL_SMP_LAPIC_H
#define KERNEL_SMP_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* Vectors.  An interrupt's priority class is vector >> 4 and CR8 = N holds off every class
 * <= N (SDM Vol. 3, 11.8.3), so NT's IPI_LEVEL 14 puts the IPIs in 0xE0-0xEF. */
#define VEC_IPI_CALL 0xE1     /* cross-calls and TLB shootdowns (kernel/smp/smp.c) */
#define VEC_APIC_ERROR 0xFE   /* LVT error */
#define VEC_APIC_SPURIOUS 0xFF /* SVR: bits 3-0 all ones, as P6-family CPUs require */

/* ICR delivery modes and shorthands (SDM Vol. 3, 11.6.1). */
#define ICR_FIXED 0x000u
#define ICR_NMI 0x400u
#define ICR_INIT 0x500u
#define ICR_STARTUP 0x600u
#define ICR_ASSERT 0x4000u
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

#endif
