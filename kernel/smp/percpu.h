/*
 * Per-CPU data, reached through GS.  Each CPU's IA32_GS_BASE points at its own struct kcpu
 * while it runs kernel code; the entries from ring 3 (SYSCALL, a trap or interrupt with a
 * user CS) execute SWAPGS first and the returns to ring 3 SWAPGS back, so whatever a user
 * program loads into GS never reaches the kernel (SDM Vol. 2B, SWAPGS; AMD APM Vol. 3).
 * The first word is the structure's own address, so one GS-relative load finds it.
 */
#ifndef KERNEL_SMP_PERCPU_H
#define KERNEL_SMP_PERCPU_H

#include <stdbool.h>
#include <stdint.h>

#define SMP_MAX_CPUS 16

struct seh_frame;
struct pt_root;

struct kcpu {
	struct kcpu *self;                /* GS:0 */
	uint32_t number;                  /* 0 = the boot CPU, then in MADT order */
	uint32_t apic_id;
	volatile bool online;             /* running kernel code, taking IPIs */
	struct seh_frame *seh_chain;      /* kernel/seh.c: this CPU's registered __try frames */
	int trap_reporting;               /* kernel/trap.c: a fault report is being printed */
	const struct pt_root *tlb_loaded; /* mm/tlb.c: the address space in this CPU's CR3 */
	/* The cross-call mailbox (kernel/smp/smp.c): the sender writes fn/arg, then req. */
	void (*call_fn)(void *);
	void *call_arg;
	volatile uint64_t call_req, call_ack;
	/* Passive work (smp_run_on): runs in this AP's idle loop with interrupts on. */
	void (*work_fn)(void *);
	void *work_arg;
	volatile uint64_t work_req, work_done;
	/* Counters the cpus command and the tests read. */
	volatile uint64_t ipis_received;
	volatile uint64_t tlb_flush_requests;   /* shootdown requests this CPU served */
};

extern struct kcpu kcpus[SMP_MAX_CPUS];

static inline struct kcpu *this_cpu(void)
{
	struct kcpu *c;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(c));
	return c;
}

/* Point this CPU's GS base at kcpus[n] (and clear the user's GS base in
 * IA32_KERNEL_GS_BASE).  Run once per CPU, after its GDT is loaded (loading a null GS
 * selector may clear the base). */
void percpu_init_this_cpu(unsigned n);

#endif
