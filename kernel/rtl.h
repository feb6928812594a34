/* What the kernel keeps of the run-time routines of wdm.h (kernel/rtl.c) beyond the DDI. */
#ifndef KERNEL_RTL_H
#define KERNEL_RTL_H

#include "include/wdm.h"

/* The last message DbgPrint or DbgPrintEx printed, as a kernel debugger's buffer holds it
 * (NUL-terminated, at most 511 characters), and how many were printed or filtered out. */
extern char dbgprint_last[512];
extern ULONG dbgprint_printed, dbgprint_filtered;
/* The INT3 of DbgBreakPoint (where ASSERT and PAGED_CODE stop), for tests and backtraces. */
extern const char dbg_break_instruction[];

#endif
