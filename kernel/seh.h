/*
 * Structured exception handling for C (GCC has no __try).
 *
 *     __try {
 *         ... code that may fault or call ExRaiseStatus ...
 *     } __except (EXCEPTION_EXECUTE_HANDLER) {
 *         NTSTATUS st = GetExceptionCode();
 *     }
 *
 * The filter is evaluated after the stack is unwound to the __try (NT evaluates it before;
 * only side effects could tell).  EXCEPTION_EXECUTE_HANDLER runs the handler,
 * EXCEPTION_CONTINUE_SEARCH passes the exception to the next enclosing __try, and
 * EXCEPTION_CONTINUE_EXECUTION is not supported (bug check 0x1E with
 * STATUS_NONCONTINUABLE_EXCEPTION).  Nesting works, in the same function or across calls.
 *
 * Rules of this implementation:
 *   - `return` and `goto` out of a __try block are safe (a cleanup attribute unregisters it);
 *   - `break`/`continue` inside a __try block leave the __try block (as __leave does), they
 *     do not reach an enclosing loop;
 *   - locals changed inside __try and read in __except must be `volatile` (setjmp rules);
 *   - a CPU fault in kernel mode (#PF, #GP, #DE, #UD, ...) becomes an exception whose record
 *     tells the status, the faulting RIP and, for #PF, the access kind and address; the
 *     registers and stack are those of the __try statement when the handler runs;
 *   - an exception with no handler is bug check 0x1E KMODE_EXCEPTION_NOT_HANDLED
 *     (status, address, info[0], info[1]);
 *   - the IRQL is not restored (as on NT); RFLAGS.IF and AC are restored to their values at
 *     the __try, so a fault inside a STAC window closes the window.
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

struct seh_jmpbuf {
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags;
};

struct seh_frame {
	struct seh_jmpbuf jb;
	struct seh_frame *prev;
	int registered;
	EXCEPTION_RECORD record;
	int from_cpu;               /* 1: raised by a CPU fault; `trap` is valid */
	struct trap_frame trap;
};

int seh_setjmp(struct seh_jmpbuf *jb) __attribute__((returns_twice));
__attribute__((noreturn)) void seh_longjmp(const struct seh_jmpbuf *jb);

void seh_push(struct seh_frame *f);
void seh_pop(struct seh_frame *f);
void seh_cleanup(struct seh_frame *f);
int seh_filter(struct seh_frame *f, int filter);

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

#define __seh_cat2(a, b) a##b
#define __seh_cat(a, b) __seh_cat2(a, b)

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

#endif
