#include "kernel/irql.h"
#include "kernel/bugcheck.h"

KIRQL KfRaiseIrql(KIRQL NewIrql)
{
	KIRQL old = KeGetCurrentIrql();
	if (NewIrql < old || NewIrql > HIGH_LEVEL)
		KeBugCheckEx(IRQL_NOT_GREATER_OR_EQUAL, old, NewIrql, 0, 0);
	write_cr8(NewIrql);
	return old;
}

void KeLowerIrql(KIRQL NewIrql)
{
	KIRQL old = KeGetCurrentIrql();
	if (NewIrql > old)
		KeBugCheckEx(IRQL_NOT_LESS_OR_EQUAL, NewIrql, old, 0, 9);
	write_cr8(NewIrql);
}

KIRQL KeRaiseIrqlToDpcLevel(void) { return KfRaiseIrql(DISPATCH_LEVEL); }
