#include "kernel/irql.h"
#include "kernel/bugcheck.h"
#include "kernel/intr/dpc.h"
#include "mm/pool.h"
#include "mm/verifier.h"

/*
 * A raise below the current IRQL (or above HIGH_LEVEL) and a lower above it are Driver
 * Verifier's 0xC4 P1 0x30 and 0x31 (current IRQL, requested IRQL, 0), raised whatever
 * verifier= says: NT's free build has no code of its own for them and CR8 would be left
 * wrong (mm/RULES.md decision 7).
 */

KIRQL KfRaiseIrql(KIRQL NewIrql)
{
	KIRQL old = KeGetCurrentIrql();
	if (NewIrql < old || NewIrql > HIGH_LEVEL)
		verifier_violation(VERIFIER_RAISE_IRQL_INVALID, old, NewIrql, 0);
	/* Force IRQL checking (VF_FORCE_IRQL): pageable memory leaves before the raise, so a
	 * touch of it at the new IRQL stops with 0x0A every time (mm/RULES.md, "Paging"). */
	if (NewIrql >= DISPATCH_LEVEL && old < DISPATCH_LEVEL && verifier_on(VF_FORCE_IRQL))
		pool_trim_paged();
	write_cr8(NewIrql);
	return old;
}

/* Going below DISPATCH_LEVEL runs this CPU's DPC queue first, at DISPATCH_LEVEL (as NT's
 * KeLowerIrql serves a pending DISPATCH software interrupt), whether or not interrupts are
 * on; below DISPATCH_LEVEL inside a DPC routine is 0xC4 P1 0x31 with P4 1.  dpc.c keeps a
 * per-CPU word that is set while either could apply, so the usual lower is a test of it. */
void KeLowerIrql(KIRQL NewIrql)
{
	KIRQL old = KeGetCurrentIrql();
	if (NewIrql > old)
		verifier_violation(VERIFIER_LOWER_IRQL_INVALID, old, NewIrql, 0);
	irql_lower_serving_dpcs(NewIrql);
}

KIRQL KeRaiseIrqlToDpcLevel(void) { return KfRaiseIrql(DISPATCH_LEVEL); }
