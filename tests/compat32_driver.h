/* The thunking test driver (tests/compat32_driver.c): a 64-bit driver serving 32-bit and
 * 64-bit callers, as tests/compat32_test.c drives it from the 32-bit program. */
#ifndef TESTS_COMPAT32_DRIVER_H
#define TESTS_COMPAT32_DRIVER_H

#include "include/wdm.h"

#define C32_DEVICE "C32DRV"
#define C32_TYPE 40001
#define IOCTL_C32_WHO CTL_CODE(C32_TYPE, 0x900, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define IOCTL_C32_SUM CTL_CODE(C32_TYPE, 0x901, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define IOCTL_C32_IN_DIRECT CTL_CODE(C32_TYPE, 0x902, METHOD_IN_DIRECT, FILE_ANY_ACCESS)
#define IOCTL_C32_OUT_DIRECT CTL_CODE(C32_TYPE, 0x903, METHOD_OUT_DIRECT, FILE_ANY_ACCESS)
#define IOCTL_C32_NEITHER CTL_CODE(C32_TYPE, 0x904, METHOD_NEITHER, FILE_ANY_ACCESS)
/* Map a page of the driver's into the caller (MmMapLockedPagesSpecifyCache, UserMode) and
 * return its address: a ULONG for a 32-bit caller, a ULONG64 otherwise.  The page holds
 * C32DRV_MAP_PATTERN; it is freed at unload, after the caller's end took the view down. */
#define IOCTL_C32_MAP CTL_CODE(C32_TYPE, 0x905, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define C32DRV_MAP_PATTERN 0x32BEEF32u

/* What the driver saw in its last request. */
struct c32drv_log {
	BOOLEAN is32_irp, is32_null; /* IoIs32bitProcess(Irp), IoIs32bitProcess(NULL) */
	ULONG sum;                   /* IOCTL_C32_SUM's or IOCTL_C32_IN_DIRECT's byte sum */
	ULONG calls;
	uint64_t map_va;             /* IOCTL_C32_MAP's view */
	/* The dispatch routine's RFLAGS.IF and IRQL: a 32-bit system call runs at PASSIVE_LEVEL
	 * with interrupts on, as NT's does (mm/RULES.md, "Interrupts and IRQL"). */
	BOOLEAN interrupts_on;
	KIRQL irql;
};
extern struct c32drv_log c32_log;

/* DriverEntry and unload, as far as mdlab has them: the device C32_DEVICE. */
NTSTATUS c32drv_load(void);
void c32drv_unload(void);

#endif
