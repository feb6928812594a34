/* KeBugCheckEx: the STOP screen on serial, then the end of the QEMU run. */
#ifndef KERNEL_BUGCHECK_H
#define KERNEL_BUGCHECK_H

#include "include/mdlab/ntdef.h"
#include "include/mdlab/bugcodes.h"

/* isa-debug-exit: writing V to port 0xf4 ends QEMU with status (V << 1) | 1. */
#define QEMU_EXIT_PORT 0xf4
#define QEMU_EXIT_DONE 0x10      /* normal end: QEMU exits 33 */
#define QEMU_EXIT_BUGCHECK 0x11  /* bug check: QEMU exits 35 */

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
