/*
 * Processes: memory of their own (struct mm_process, mm/mmproc.h: a PML4 whose kernel half is
 * shared, a tree of address ranges), one thread that runs a program embedded in the kernel
 * to completion.
 *
 * PsRunProcess enters ring 3 from the calling kernel context and returns when the program
 * exits (SYS_EXIT) or faults: mdlab has no scheduler, a process runs while the kernel code
 * that started it waits.  Any CPU runs one: ps_start_on_cpu gives it to an AP, whose idle
 * loop calls PsRunProcess.  System calls and faults from ring 3 run on that CPU's kernel stack
 * below the PsRunProcess frame (its TSS.RSP0 and struct kcpu's SYSCALL stack), in the
 * process's context, which is that CPU's (mm_current, ps_current are per CPU).
 */
#ifndef KERNEL_PROCESS_H
#define KERNEL_PROCESS_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "include/mdlab/syscalls.h"
#include "mm/mmproc.h"

/* A user fault that ended a process. */
struct process_fault {
	bool happened;
	uint64_t address;       /* CR2 for #PF */
	uint64_t rip;
	uint64_t vector;
	uint64_t error_code;    /* the #PF error code */
	ULONG access;           /* EXCEPTION_READ_FAULT / WRITE / EXECUTE */
	uint32_t cpu;           /* the CPU that took it */
	uint64_t rflags;        /* the faulting code's, from the trap frame */
	uint64_t handler_rflags; /* the kernel's as it recorded the fault: AC clear (trap.asm's
				  * CLAC), whatever ring 3 set */
};

#define PROCESS_NAME_MAX 32
#define PROCESS_REPORTS 32

typedef struct _EPROCESS {
	uint32_t pid;
	char name[PROCESS_NAME_MAX];
	bool wow64;                 /* a 32-bit process (PROCESS_WOW64): mm.highest_user is
				     * MM_USER_TOP_WOW64 */
	bool compat32;              /* runs a 32-bit image in compatibility mode (CS 0x1B);
				     * implies wow64 */
	struct mm_process mm;       /* its memory: page tables, VADs, locked pages, MDL mappings */
	NTSTATUS exit_status;
	struct process_fault fault;
	/* SYS_REPORT values, for the kernel test that runs the program. */
	uint64_t report_key[PROCESS_REPORTS], report_value[PROCESS_REPORTS];
	uint32_t nreports;
	uint64_t entry, user_stack;
	volatile int32_t cpu;       /* the CPU its thread runs on now, -1 when it does not run */
	volatile int32_t attached;  /* KeStackAttachProcess calls to it not yet detached, on any CPU */
	uint32_t last_cpu;          /* the CPU it ran on, once it has ended */
	volatile bool started, ended;
	struct _EPROCESS *next;     /* the list of live processes (ps_next) */
} EPROCESS;

typedef struct _KAPC_STATE {
	PEPROCESS previous;         /* the process attached before, NULL for the kernel */
	PEPROCESS process;          /* the process this attach is to (its attach count) */
} KAPC_STATE, *PKAPC_STATE;

/* Flags for PsCreateProcess. */
#define PROCESS_WOW64 0x1

/* Create a process running the embedded program `program` ("agent", ...), with the given
 * arguments in its parameter page.  NULL when the program is unknown or memory ran out. */
PEPROCESS PsCreateProcess(const char *program, uint32_t flags, const uint64_t *args, uint32_t nargs);
/* Run it until it exits or faults; returns its exit status (STATUS_ACCESS_VIOLATION for an
 * unhandled #PF, with p->fault filled).  A process runs once. */
NTSTATUS PsRunProcess(PEPROCESS p);
/* Run p on CPU `cpu` (another online CPU, idle): its idle loop calls PsRunProcess.  False,
 * nothing done, when that CPU is this one, offline or busy, or p has run. */
bool ps_start_on_cpu(PEPROCESS p, unsigned cpu);
/* Wait until p (started on some CPU) has ended, at most `ms` milliseconds (0: no limit),
 * answering cross-calls meanwhile; whether it has ended.  p->exit_status is then set. */
bool ps_wait(PEPROCESS p, uint32_t ms);
/* PsRunProcess on CPU `cpu` (this one or another) and wait for it without limit: its exit
 * status, or STATUS_INVALID_PARAMETER when that CPU cannot take it. */
NTSTATUS ps_run_on_cpu(PEPROCESS p, unsigned cpu);

/* The console's lock for the lines processes print (kernel/process.c): raises to
 * DISPATCH_LEVEL and returns the IRQL found; nothing may be taken under it. */
KIRQL ps_console_lock(void);
void ps_console_unlock(KIRQL irql);
/* Tear down: the cleanup callbacks of the devices it opened, its MDL mappings, its address
 * space.  Pages still locked for it then are bug check PROCESS_HAS_LOCKED_PAGES (0, process,
 * count). */
void PsDestroyProcess(PEPROCESS p);

/* The live processes (made by PsCreateProcess, not yet destroyed), for tools:
 * ps_lookup finds one by PID (NULL: none); ps_next(NULL) is the first, ps_next(p) the one
 * after p (NULL at the end). */
PEPROCESS ps_lookup(uint32_t pid);
PEPROCESS ps_next(PEPROCESS p);

PEPROCESS PsGetCurrentProcess(void);
/* The process whose address space is loaded (running, or attached), NULL for the kernel. */
PEPROCESS ps_current(void);
void KeStackAttachProcess(PEPROCESS Process, PKAPC_STATE ApcState);
void KeUnstackDetachProcess(PKAPC_STATE ApcState);

/* The value of the program's SYS_REPORT for `key`; false when it reported none. */
bool ps_report(const PEPROCESS p, uint64_t key, uint64_t *value);

/* Called by trap.c for a fault in ring 3: record it and end the process. */
struct trap_frame;
__attribute__((noreturn)) void ps_user_fault(const struct trap_frame *f, NTSTATUS code);
/* End the running process with `status` (SYS_EXIT, a fatal fault). */
__attribute__((noreturn)) void ps_exit_current(NTSTATUS status);

/* Hooks run at process teardown before the address space goes (IRP_MJ_CLEANUP-like). */
typedef void (*ps_cleanup_fn)(PEPROCESS p);
void ps_register_cleanup(ps_cleanup_fn fn);

#endif
