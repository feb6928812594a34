/* KeBugCheckEx: the STOP screen on serial, then the end of the QEMU run. */
#ifndef KERNEL_BUGCHECK_H
#define KERNEL_BUGCHECK_H

#include "include/mdlab/ntdef.h"
#include "include/mdlab/bugcodes.h"
#include "include/mdlab/protocol.h" /* QEMU_EXIT_*, the STOP line */

__attribute__((noreturn)) void KeBugCheckEx(ULONG BugCheckCode, ULONG_PTR P1, ULONG_PTR P2,
					    ULONG_PTR P3, ULONG_PTR P4);
__attribute__((noreturn)) void KeBugCheck(ULONG BugCheckCode);

/* The symbolic name of a bug check code, or "UNKNOWN_BUGCHECK". */
const char *bugcheck_name(ULONG code);

/* What a bug check means, as WinDbg's !analyze says it, from Microsoft's bug-check pages:
 * bugcheck_explain(code, p1, 0) is the cause (for a code whose P1 names a cause, that cause),
 * bugcheck_explain(code, p1, N) what parameter N (1-4) holds.  NULL when the table has no
 * text.  The STOP screen prints them under the name. */
const char *bugcheck_explain(ULONG code, ULONG_PTR p1, unsigned what);

/* End the QEMU run with isa-debug-exit (halts forever on a machine without it). */
__attribute__((noreturn)) void qemu_exit(uint8_t value);

/* Invariant violation inside mdlab itself: "function: reason", then a bug check. */
#define PANIC(...) kpanic(__func__, __VA_ARGS__)
__attribute__((noreturn, format(printf, 2, 3))) void kpanic(const char *fn, const char *fmt, ...);

#endif
