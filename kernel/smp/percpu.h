/*
 * Per-CPU data, reached through GS.  Each CPU's IA32_GS_BASE points at its own struct kcpu
 * while it runs kernel code; the entries from ring 3 (SYSCALL, a trap or interrupt with a
 * user CS) execute SWAPGS first and the returns to ring 3 SWAPGS back, so whatever a user
 * program loads into GS never reaches the kernel (SDM Vol. 2B, SWAPGS; AMD APM Vol. 3).
 * The first word is the structure's own address, so one GS-relative load finds it.
 *
 * The NMI, #DF and #MC can arrive anywhere, also between a SYSCALL and its SWAPGS or between
 * the SWAPGS and the SYSRET or IRETQ of a return, where CS says ring 0 and GS is the user's.
 * Their entries (kernel/trap.asm) do not guess from CS: each finds its CPU's struct kcpu in
 * the word at the top of its own IST stack (gdt.c puts it there), saves IA32_GS_BASE, points
 * it at that kcpu for the handler, and puts the saved value back before IRETQ.
 */
#ifndef KERNEL_SMP_PERCPU_H
#define KERNEL_SMP_PERCPU_H

#include <stdbool.h>
#include <stdint.h>

#define SMP_MAX_CPUS 16
#define KCPU_POOL_CLASSES 7 /* mm/pool.c's slab classes (checked there) */

struct seh_frame;
struct seh_jmpbuf;
struct pt_root;
struct mm_process;
struct _EPROCESS;

/* The byte offsets kernel/syscall.asm reaches through GS (checked below). */
#define KCPU_SYSCALL_KERNEL_RSP 8
#define KCPU_SYSCALL_USER_RSP 16
#define KCPU_PARANOID_GS_BASE 24 /* kernel/trap.asm */

struct kcpu {
	struct kcpu *self;                /* GS:0 */
	/* kernel/syscall.asm: the kernel stack a SYSCALL switches to (the running process's,
	 * set by PsRunProcess on this CPU) and the user RSP saved while it is found. */
	uint64_t syscall_kernel_rsp;      /* GS:8 */
	uint64_t syscall_user_rsp;        /* GS:16 */
	/* kernel/trap.asm: IA32_GS_BASE as the last NMI, #DF or #MC found it on entry (the
	 * user's inside a SWAPGS window), before it was pointed here for the handler. */
	uint64_t paranoid_gs_base;        /* GS:24 */
	uint32_t number;                  /* 0 = the boot CPU, then in MADT order */
	uint32_t apic_id;
	/* kernel/smp/klock.h: the lock ranks this CPU holds, bit r for rank r. */
	uint32_t klock_held;
	/* kernel/smp/klock.c: the klock this CPU spins for (NULL when none), for the tests that
	 * show one CPU held off by another's lock. */
	const struct klock *volatile klock_waiting;
	/* kernel/intr/dpc.c: whether this CPU's DPC queue is non-empty (written under the
	 * queue's lock, by whichever CPU links or unlinks) and whether this CPU runs a
	 * DeferredRoutine (written by this CPU only).  KeLowerIrql's fast path reads both as
	 * one GS-relative 16-bit load and calls into dpc.c only when either is set. */
	union {
		struct {
			volatile uint8_t dpc_queued;
			volatile uint8_t dpc_in_routine;
		};
		volatile uint16_t dpc_attention;
	};
	volatile bool online;             /* running kernel code, taking IPIs */
	struct seh_frame *seh_chain;      /* kernel/seh.c: this CPU's registered __try frames */
	int trap_reporting;               /* kernel/trap.c: a fault report is being printed */
	const struct pt_root *tlb_loaded; /* mm/tlb.c: the address space in this CPU's CR3 */
	struct mm_process *mm_loaded;     /* mm/mmproc.c: mm_current(), whose root tlb_loaded is
					   * (NULL with kernel_root) */
	/* kernel/process.c: the process whose ring-3 code this CPU runs (PsRunProcess), where
	 * PsRunProcess resumes when it ends, and with what status. */
	struct _EPROCESS *running;
	struct seh_jmpbuf *running_resume;
	int32_t running_status;
	int8_t previous_mode;             /* kernel/io/io.c: ExGetPreviousMode of this CPU's thread */
	void *seh_filter;                 /* kernel/seh.c: the dispatcher's filter state */
	/* kernel/trap.c: NMIs a test announced (trap_expect_nmi) and how many were taken. */
	volatile uint32_t nmi_expected;
	volatile uint64_t nmis_taken;
	volatile uint64_t nmi_saw_gs_base; /* IA32_GS_BASE when the last expected NMI arrived */
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
	volatile uint64_t tlb_purges_served;    /* mm/tlb.c: lazy-policy purge rounds it served */
	/* mm/syspte.c: the one-PTE reservation this CPU released last and keeps for its next
	 * one-page mapping (slot + 1; 0: none), taken and given only by atomic exchanges. */
	uint32_t syspte_slot;
	/* mm/pool.c: the small pool block this CPU freed last of each [paged][class], kept for
	 * its next allocation of that class (its data address; NULL: none), taken and given only
	 * by atomic exchanges. */
	void *pool_kept[2][KCPU_POOL_CLASSES];
	/* mm/tlb.c (mm/RULES.md, "Idle CPUs take their flush when they wake"): KCPU_RUNNING, or
	 * KCPU_IDLE, stored by this CPU with interrupts off in the instruction before its
	 * STI; HLT, or KCPU_IDLE_FLUSH_PENDING, put there from IDLE by another CPU's flush with
	 * a compare-exchange.  This CPU's wake (the first thing trap_dispatch does, and after
	 * HLT) exchanges it back to RUNNING and, if a flush was pending, flushes everything
	 * before anything else.  Only atomic stores, exchanges and compare-exchanges change it. */
	volatile uint32_t idle_state;
	volatile uint64_t tlb_flushes_deferred; /* flushes other CPUs left for this CPU's wake */
	volatile uint64_t tlb_wake_flushes;     /* full flushes this CPU did waking with one pending */
	/* mm/uvm.c (mm/RULES.md, "Paging", memory pressure): this CPU runs the relief routine,
	 * whose own allocations (the writer's IRP, a pool page for it) must not relieve again.
	 * Written by this CPU only. */
	bool mm_relieving;
};

enum { KCPU_RUNNING = 0, KCPU_IDLE = 1, KCPU_IDLE_FLUSH_PENDING = 2 };

extern struct kcpu kcpus[SMP_MAX_CPUS];

_Static_assert(__builtin_offsetof(struct kcpu, syscall_kernel_rsp) == KCPU_SYSCALL_KERNEL_RSP,
	       "kernel/syscall.asm's offset of syscall_kernel_rsp");
_Static_assert(__builtin_offsetof(struct kcpu, syscall_user_rsp) == KCPU_SYSCALL_USER_RSP,
	       "kernel/syscall.asm's offset of syscall_user_rsp");
_Static_assert(__builtin_offsetof(struct kcpu, paranoid_gs_base) == KCPU_PARANOID_GS_BASE,
	       "kernel/trap.asm's offset of paranoid_gs_base");

static inline struct kcpu *this_cpu(void)
{
	struct kcpu *c;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(c));
	return c;
}

/* A field of this CPU's struct kcpu read with one GS-relative load (no GS:0 first); a
 * compiler barrier, so it is not moved above the stores before it. */
#define KCPU_READ_GS(field, out)                                                              \
	__asm__ volatile("mov %%gs:%c1, %0"                                                   \
			 : "=r"(out)                                                          \
			 : "i"(__builtin_offsetof(struct kcpu, field))                        \
			 : "memory")

/* Point this CPU's GS base at kcpus[n] (and clear the user's GS base in
 * IA32_KERNEL_GS_BASE).  Run once per CPU, after its GDT is loaded (loading a null GS
 * selector may clear the base). */
void percpu_init_this_cpu(unsigned n);

#endif
