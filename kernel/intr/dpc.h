/*
 * Deferred procedure calls, as wdm.h and their Microsoft pages define them (KeInitializeDpc,
 * KeInsertQueueDpc, KeRemoveQueueDpc, KeSetTargetProcessorDpc, KeSetImportanceDpc).
 *
 * Each CPU has one queue.  KeInsertQueueDpc puts a DPC on the queue of its target CPU (the
 * inserting CPU unless KeSetTargetProcessorDpc chose one) and requests the DPC interrupt
 * there: VEC_DPC, class 2, as a self-IPI or an IPI to the target.  The queue is drained at
 * DISPATCH_LEVEL, with interrupts on, by the DPC interrupt (delivered once that CPU's CR8
 * drops below DISPATCH_LEVEL with RFLAGS.IF set) and by KeLowerIrql going below
 * DISPATCH_LEVEL (which also covers a CPU running with IF clear).  Each DeferredRoutine runs
 * on the target CPU, at DISPATCH_LEVEL, in queue order; HighImportance goes to the head of
 * the queue, the other importances to the tail.  As KeSetImportanceDpc's page says, the
 * insert begins processing (requests the DPC interrupt) for HighImportance and
 * MediumHighImportance always, for MediumImportance (the default) only on the inserting
 * CPU's own queue, for LowImportance never; a queue left waiting is begun by its CPU's next
 * clock tick or KeLowerIrql below DISPATCH_LEVEL.
 *
 * A routine must return at DISPATCH_LEVEL: otherwise bug check 0xC4 P1 0x2010 (mdlab's: the
 * routine, the IRQL it returned at, the DPC); Microsoft's pages name no code for it.  Lowering
 * below DISPATCH_LEVEL inside a routine is 0xC4 P1 0x31 with P4 = 1 ("the new IRQL is invalid
 * inside a DPC routine", the 0xC4 page).  A target that is not an online processor is
 * 0xC7 TIMER_OR_DPC_INVALID P1 3 (the DPC, the processor number, the processor count).
 */
#ifndef KERNEL_INTR_DPC_H
#define KERNEL_INTR_DPC_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/ntdef.h"

typedef struct _SINGLE_LIST_ENTRY {
	struct _SINGLE_LIST_ENTRY *Next;
} SINGLE_LIST_ENTRY, *PSINGLE_LIST_ENTRY;

struct _KDPC;
typedef VOID KDEFERRED_ROUTINE(struct _KDPC *Dpc, PVOID DeferredContext, PVOID SystemArgument1,
			       PVOID SystemArgument2);
typedef KDEFERRED_ROUTINE *PKDEFERRED_ROUTINE;

typedef enum _KDPC_IMPORTANCE {
	LowImportance,
	MediumImportance,
	HighImportance,
	MediumHighImportance
} KDPC_IMPORTANCE;

#define DpcObject 0x13 /* KOBJECTS: the Type of a KDPC */

/* wdm.h's x64 layout, 0x40 bytes.  Number: mdlab keeps the target CPU + 1 there, 0 for "the
 * CPU that inserts it".  DpcData: the queue the DPC is on, NULL when it is on none. */
typedef struct _KDPC {
	union {
		ULONG TargetInfoAsUlong;
		struct {
			UCHAR Type;
			UCHAR Importance;
			volatile USHORT Number;
		};
	};
	SINGLE_LIST_ENTRY DpcListEntry;
	ULONG_PTR ProcessorHistory; /* KAFFINITY: the CPUs it has run on */
	PKDEFERRED_ROUTINE DeferredRoutine;
	PVOID DeferredContext;
	PVOID SystemArgument1;
	PVOID SystemArgument2;
	PVOID volatile DpcData;
} KDPC, *PKDPC, *PRKDPC;

VOID KeInitializeDpc(PRKDPC Dpc, PKDEFERRED_ROUTINE DeferredRoutine, PVOID DeferredContext);
/* TRUE when queued; FALSE (nothing changed) when the DPC is already in a queue. */
BOOLEAN KeInsertQueueDpc(PRKDPC Dpc, PVOID SystemArgument1, PVOID SystemArgument2);
/* TRUE when the DPC was queued and is not any more; FALSE when it was in no queue. */
BOOLEAN KeRemoveQueueDpc(PRKDPC Dpc);
VOID KeSetTargetProcessorDpc(PRKDPC Dpc, CCHAR Number);
VOID KeSetImportanceDpc(PRKDPC Dpc, KDPC_IMPORTANCE Importance);

/* mdlab's side. */
/* The DPC interrupt (VEC_DPC), from intr_dispatch at DISPATCH_LEVEL after the EOI. */
void dpc_interrupt(void);
/* KeLowerIrql below DISPATCH_LEVEL: run this CPU's queue first (at DISPATCH_LEVEL). */
void dpc_before_lower(KIRQL new_irql);
/* The clock tick (CLOCK_LEVEL): begin this CPU's queue if DPCs wait in it. */
void dpc_clock_tick(void);
/* Whether this CPU is inside a DeferredRoutine. */
bool dpc_in_routine(void);
struct dpc_cpu_counts {
	uint64_t depth; /* DPCs in the queue now */
	uint64_t run;   /* DeferredRoutines this CPU has run */
	uint64_t interrupts; /* DPC interrupts taken */
};
void dpc_counts(unsigned cpu, struct dpc_cpu_counts *out);

#endif
