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

/* End the QEMU run with isa-debug-exit (halts forever on a machine without it). */
__attribute__((noreturn)) void qemu_exit(uint8_t value);

/* Invariant violation inside mdlab itself: "function: reason", then a bug check. */
#define PANIC(...) kpanic(__func__, __VA_ARGS__)
__attribute__((noreturn, format(printf, 2, 3))) void kpanic(const char *fn, const char *fmt, ...);

#endif
