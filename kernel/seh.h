/*
 * Structured exception handling for C (GCC has no __try).  Two ways to write it:
 *
 * 1. Driver code (files the Makefile passes through scripts/seh_rewrite.py: the *_driver.c
 *    sources and EXTRA_TESTS) is written as for MSVC: try/__try, except/__except,
 *    finally/__finally, __leave, AbnormalTermination(), GetExceptionCode(),
 *    GetExceptionInformation(), with MSVC's semantics (README, "Structured exception
 *    handling").  The rewriter turns each construct into plain C over the routines below.
 *
 * 2. The machine's own code uses the macros at the end of this file:
 *
 *     __try {
 *         ... code that may fault or call ExRaiseStatus ...
 *     } __except (EXCEPTION_EXECUTE_HANDLER) {
 *         NTSTATUS st = GetExceptionCode();
 *     }
 *
 *    Rules of the macros (the rewriter lifts the last three):
 *      - `return` and `goto` out of a __try block are safe (a cleanup attribute unregisters it);
 *      - `break`/`continue` inside a __try block leave the __try block (as __leave does), they
 *        do not reach an enclosing loop;
 *      - locals changed inside __try and read in __except must be `volatile` (setjmp rules);
 *      - no __finally (it names an undeclared identifier: a build error).
 *
 * Both kinds of frame share one chain and one dispatcher, which works in NT's two phases
 * (the "Exception dispatching" pages): first every filter is evaluated, innermost first, in
 * its own function (the dispatcher saves the stack between itself and the filter's frame,
 * lets the filter run over it, and puts it back, so the frames below are intact again; a
 * filter reads the exception through GetExceptionInformation(), whose record and context
 * are copies in its own frame, never through pointers into deeper frames); then the stack
 * is unwound to the frame whose filter said EXCEPTION_EXECUTE_HANDLER, running every
 * __finally on the way, innermost first, and the handler runs.
 *   - EXCEPTION_CONTINUE_SEARCH passes the exception to the next enclosing frame;
 *     EXCEPTION_CONTINUE_EXECUTION is not supported (bug check 0x1E with
 *     STATUS_NONCONTINUABLE_EXCEPTION);
 *   - an exception raised while a filter runs is bug check 0x1E with its status (NT would
 *     dispatch it as a nested exception);
 *   - a CPU fault in kernel mode (#PF, #GP, #DE, #UD, ...) becomes an exception whose record
 *     tells the status, the faulting RIP and, for #PF, the access kind and address;
 *   - an exception with no handler is bug check 0x1E KMODE_EXCEPTION_NOT_HANDLED
 *     (status, address, info[0], info[1]);
 *   - the IRQL is not restored (as on NT); RFLAGS.IF and AC are restored to their values at
 *     the __try, so a fault inside a STAC window closes the window;
 *   - a driver frame (SEH_F_USER_WINDOW) opens the SMAP window when the code inside it touches
 *     user memory, and closes it when the __try is left (mm/RULES.md decision 8).
 */
#ifndef KERNEL_SEH_H
#define KERNEL_SEH_H

#include "include/mdlab/ntdef.h"
#include "kernel/trap.h"

#define EXCEPTION_EXECUTE_HANDLER 1
#define EXCEPTION_CONTINUE_SEARCH 0
#define EXCEPTION_CONTINUE_EXECUTION (-1)

#define EXCEPTION_MAXIMUM_PARAMETERS 15

/* Access kinds in ExceptionInformation[0] of STATUS_ACCESS_VIOLATION, as on NT. */
#define EXCEPTION_READ_FAULT 0
#define EXCEPTION_WRITE_FAULT 1
#define EXCEPTION_EXECUTE_FAULT 8

typedef struct _EXCEPTION_RECORD {
	NTSTATUS ExceptionCode;
	ULONG ExceptionFlags;
	struct _EXCEPTION_RECORD *ExceptionRecord;
	PVOID ExceptionAddress;
	ULONG NumberParameters;
	ULONG_PTR ExceptionInformation[EXCEPTION_MAXIMUM_PARAMETERS];
} EXCEPTION_RECORD, *PEXCEPTION_RECORD;

/* The registers of the faulting context, with NT's CONTEXT names (the integer part). */
typedef struct _CONTEXT {
	ULONG64 Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi;
	ULONG64 R8, R9, R10, R11, R12, R13, R14, R15;
	ULONG64 Rip;
	ULONG EFlags;
	USHORT SegCs, SegSs;
} CONTEXT, *PCONTEXT;

typedef struct _EXCEPTION_POINTERS {
	PEXCEPTION_RECORD ExceptionRecord;
	PCONTEXT ContextRecord;
} EXCEPTION_POINTERS, *PEXCEPTION_POINTERS;

struct seh_jmpbuf {
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags;
};

/* What seh_setjmp returns when a frame is resumed. */
#define SEH_RESUME_HANDLER 1        /* unwound to this frame: run the handler */
#define SEH_RESUME_FILTER 2         /* phase 1: evaluate the filter, then seh_filter_done */
#define SEH_RESUME_FINALLY 3        /* unwinding through: run the __finally, then seh_unwind_resume */

/* Frame kinds and flags. */
#define SEH_EXCEPT 0
#define SEH_FINALLY 1
#define SEH_F_USER_WINDOW 0x1       /* a SMAP fault on a user address opens the window */
#define SEH_F_WINDOW_OPEN 0x2       /* the window was opened inside this frame */

struct seh_frame {
	struct seh_jmpbuf jb;
	struct seh_frame *prev;
	int registered;
	int kind;                   /* SEH_EXCEPT or SEH_FINALLY */
	int flags;
	int filtering;              /* resumed with SEH_RESUME_FILTER */
	int abnormal;               /* __finally: AbnormalTermination() */
	struct seh_frame *unwind_target; /* __finally resumed by an unwind: where it goes on */
	EXCEPTION_RECORD record;
	int from_cpu;               /* 1: raised by a CPU fault; `trap` is valid */
	struct trap_frame trap;
	CONTEXT context;
	EXCEPTION_POINTERS pointers;
};

int seh_setjmp(struct seh_jmpbuf *jb) __attribute__((returns_twice));
__attribute__((noreturn)) void seh_longjmp(const struct seh_jmpbuf *jb);
/* seh_longjmp with seh_setjmp returning `value`. */
__attribute__((noreturn)) void seh_longjmp_value(const struct seh_jmpbuf *jb, int value);
/* With interrupts off: copy len bytes from src to dst (which may hold the caller's own stack),
 * then seh_longjmp_value(jb, 1).  Uses no stack until RSP is jb's. */
__attribute__((noreturn)) void seh_restore_stack_and_jump(void *dst, const void *src, uint64_t len,
							 const struct seh_jmpbuf *jb);

/* CPU n's dispatcher state, with `save` (KSTACK_PAGES pages) for the stack a filter runs
 * over: smp.c, before CPU n starts (the boot CPU's is built in). */
void seh_prepare_cpu(unsigned n, uint8_t *save);
void seh_push(struct seh_frame *f);
void seh_pop(struct seh_frame *f);
void seh_cleanup(struct seh_frame *f);
int seh_filter(struct seh_frame *f, int filter);

/* What the rewriter's expansion calls (scripts/seh_rewrite.py). */
void seh_enter(struct seh_frame *f, int kind);      /* registered, SEH_F_USER_WINDOW */
void seh_leave(struct seh_frame *f);                /* the __try block is left, any way */
void seh_leave_finally(struct seh_frame *f, int abnormal);
__attribute__((noreturn)) void seh_filter_done(struct seh_frame *f, int filter);
__attribute__((noreturn)) void seh_unwind_resume(struct seh_frame *f);

/* A kernel #PF that SMAP raised on a user address inside a driver frame: open the window
 * (RFLAGS.AC in `f`) for the rest of that frame and retry.  True when it did. */
bool seh_open_user_window(struct trap_frame *f);

/* The innermost registered frame (the test framework saves and restores it). */
struct seh_frame *seh_top(void);
void seh_set_top(struct seh_frame *f);

/* Deliver an exception to the innermost handler; bug check 0x1E when there is none.
 * `trap` is the CPU's frame for a fault, NULL for a software raise. */
__attribute__((noreturn)) void seh_dispatch(const EXCEPTION_RECORD *rec, const struct trap_frame *trap);

/* Raise a software exception with `status` and no parameters (NT's ExRaiseStatus). */
__attribute__((noreturn)) void ExRaiseStatus(NTSTATUS status);
/* Raise STATUS_ACCESS_VIOLATION for `address` (ExRaiseAccessViolation with the details). */
__attribute__((noreturn)) void seh_raise_access_violation(uint64_t address, ULONG access);
/* Raise STATUS_IN_PAGE_ERROR for `address` with the user fault path's three parameters (the
 * access, the address, the device's status of the failed read): what a probe raises for a
 * page the pagefile could not give back (mm/RULES.md "Paging"). */
__attribute__((noreturn)) void seh_raise_in_page_error(uint64_t address, ULONG access, NTSTATUS io);

#define __seh_cat2(a, b) a##b
#define __seh_cat(a, b) __seh_cat2(a, b)

/* Under the rewriter (MDLAB_SEH_REWRITER, set by the Makefile for driver sources) the
 * keywords reach scripts/seh_rewrite.py as they are. */
#ifndef MDLAB_SEH_REWRITER
#define __try                                                                                  \
	_Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wshadow\"")          \
	for (struct seh_frame __seh_fr __attribute__((cleanup(seh_cleanup))),                  \
	     *__seh_done = (__seh_fr.registered = 0, (struct seh_frame *)0);                      \
	     !__seh_done; __seh_done = &__seh_fr)                                                 \
		if (seh_setjmp(&__seh_fr.jb) == 0 ? (seh_push(&__seh_fr), 1) : 0)             \
			for (int __seh_once = 1; __seh_once; __seh_once = 0, seh_pop(&__seh_fr)) \
				_Pragma("GCC diagnostic pop")

#define __except(...) else if (seh_filter(&__seh_fr, (__VA_ARGS__)))

#define __leave break

#define GetExceptionCode() (__seh_fr.record.ExceptionCode)
#define GetExceptionRecord() ((const EXCEPTION_RECORD *)&__seh_fr.record)
/* The CPU's register frame of a fault, or NULL for a software raise (mdlab extension). */
#define GetExceptionTrapFrame() (__seh_fr.from_cpu ? (const struct trap_frame *)&__seh_fr.trap : NULL)
#define GetExceptionInformation() ((PEXCEPTION_POINTERS)&__seh_fr.pointers)

/* Only the rewriter knows these; in the machine's code they are build errors. */
#define __finally __finally_needs_the_SEH_rewriter_see_kernel_seh_h
#define AbnormalTermination() AbnormalTermination_needs_the_SEH_rewriter_see_kernel_seh_h
#endif

#endif
