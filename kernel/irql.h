/* IRQL as on x64 NT: the current IRQL is CR8 (the task-priority register). */
#ifndef KERNEL_IRQL_H
#define KERNEL_IRQL_H

#include "include/mdlab/ntdef.h"
#include "kernel/cpu.h"

static inline KIRQL KeGetCurrentIrql(void) { return (KIRQL)read_cr8(); }

/* Raise to NewIrql and return the previous IRQL.  NewIrql below the current IRQL or above
 * HIGH_LEVEL is bug check 0xC4 P1 0x30 (current, new, 0), Driver Verifier's answer. */
KIRQL KfRaiseIrql(KIRQL NewIrql);
/* Lower to NewIrql.  NewIrql above the current IRQL is bug check 0xC4 P1 0x31 (current,
 * new, 0: the new IRQL is bad). */
void KeLowerIrql(KIRQL NewIrql);
KIRQL KeRaiseIrqlToDpcLevel(void);
#define KeRaiseIrql(NewIrql, OldIrql) (*(OldIrql) = KfRaiseIrql(NewIrql))

#endif
