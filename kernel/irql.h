/* IRQL as on x64 NT: the current IRQL is CR8 (the task-priority register). */
#ifndef KERNEL_IRQL_H
#define KERNEL_IRQL_H

#include "include/mdlab/ntdef.h"
#include "kernel/cpu.h"

static inline KIRQL KeGetCurrentIrql(void) { return (KIRQL)read_cr8(); }

/* Raise to NewIrql and return the previous IRQL.  NewIrql below the current IRQL is bug
 * check IRQL_NOT_GREATER_OR_EQUAL (current, new). */
KIRQL KfRaiseIrql(KIRQL NewIrql);
/* Lower to NewIrql.  NewIrql above the current IRQL is bug check IRQL_NOT_LESS_OR_EQUAL
 * (new, current, 0, 9), as NT's checked HAL does. */
void KeLowerIrql(KIRQL NewIrql);
KIRQL KeRaiseIrqlToDpcLevel(void);
#define KeRaiseIrql(NewIrql, OldIrql) (*(OldIrql) = KfRaiseIrql(NewIrql))

#endif
