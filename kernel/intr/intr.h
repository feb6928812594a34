/*
 * Interrupt dispatch: every vector 32-255 comes here from trap_dispatch (kernel/trap.c).  The
 * vector table is in kernel/smp/lapic.h: each vector's priority class is the IRQL it runs at.
 *
 * While an interrupt is served the CPU runs at its vector's IRQL (CR8 = vector >> 4), as an
 * NT interrupt service routine runs at its DIRQL, with RFLAGS.IF clear (interrupt gates); the
 * EOI goes to the local APIC after the handler, then CR8 returns to the interrupted IRQL.
 * The spurious vector takes no EOI (SDM Vol. 3, 11.9).  Spurious, APIC-error and unclaimed
 * vectors are counted per CPU.
 */
#ifndef KERNEL_INTR_INTR_H
#define KERNEL_INTR_INTR_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/ntdef.h"
#include "kernel/smp/lapic.h"

/* A device vector's service routine: runs at the vector's IRQL, interrupts off, before the
 * EOI. */
typedef void (*intr_service_fn)(void *context);

/* Claim device vector `vector` (VEC_DEVICE_FIRST..VEC_DEVICE_LAST) for fn(context); false
 * when it is outside that range or already claimed. */
bool intr_connect(unsigned vector, intr_service_fn fn, void *context);
void intr_disconnect(unsigned vector);

/* From trap_dispatch, for vectors 32-255. */
void intr_dispatch(uint64_t vector);

/* Per-CPU counts the cpus command and the tests read. */
struct intr_cpu_counts {
	uint64_t spurious;    /* VEC_APIC_SPURIOUS */
	uint64_t apic_errors; /* VEC_APIC_ERROR */
	uint64_t unclaimed;   /* a vector nothing handles (EOI sent, nothing else) */
	uint64_t device;      /* device vectors served */
};
void intr_counts(unsigned cpu, struct intr_cpu_counts *out);
/* Inside a handler (a cross-call too): the IRQL this CPU ran at when the interrupt came. */
KIRQL intr_interrupted_irql(void);
/* A cross-call run from a CPU's wait loop, not from its IPI: the IRQL it was at stands in
 * for the interrupted one while the request runs (kernel/smp/smp.c).  Returns the previous
 * record, for the caller to put back. */
KIRQL intr_swap_interrupted_irql(KIRQL irql);

#endif
