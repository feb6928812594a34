/* IRQL as on x64 NT: the current IRQL is CR8 (the task-priority register). */
#ifndef KERNEL_IRQL_H
#define KERNEL_IRQL_H

#include "include/mdlab/ntdef.h"
#include "kernel/cpu.h"
#include "kernel/smp/percpu.h"

static inline KIRQL KeGetCurrentIrql(void) { return (KIRQL)read_cr8(); }

/* Raise to NewIrql and return the previous IRQL.  NewIrql below the current IRQL or above
 * HIGH_LEVEL is bug check 0xC4 P1 0x30 (current, new, 0), Driver Verifier's answer. */
KIRQL KfRaiseIrql(KIRQL NewIrql);
/* Lower to NewIrql.  NewIrql above the current IRQL is bug check 0xC4 P1 0x31 (current,
 * new, 0: the new IRQL is bad). */
void KeLowerIrql(KIRQL NewIrql);
KIRQL KeRaiseIrqlToDpcLevel(void);
#define KeRaiseIrql(NewIrql, OldIrql) (*(OldIrql) = KfRaiseIrql(NewIrql))

/* kernel/intr/dpc.c: run this CPU's DPC queue before going below DISPATCH_LEVEL (and bug
 * check a lower inside a DeferredRoutine). */
void dpc_before_lower(KIRQL new_irql);

/* The part of a lower below DISPATCH_LEVEL that serves DPCs: one GS-relative load of this
 * CPU's DPC word (queue non-empty, or inside a routine), the call only when it is set.  As
 * NT's KeLowerIrql checks its per-processor pending software interrupts before it writes
 * CR8 (the free build's fast path is that test and the write). */
static inline void irql_lower_serving_dpcs(KIRQL NewIrql)
{
	if (NewIrql < DISPATCH_LEVEL) {
		uint16_t attention;
		KCPU_READ_GS(dpc_attention, attention);
		if (__builtin_expect(attention != 0, 0))
			dpc_before_lower(NewIrql);
	}
	write_cr8(NewIrql);
}
#endif
