/* The IOCTL sample driver of tests/ioctl_sample_driver.c, for the suites that drive it from
 * ring 3 besides its own (the fuzzer): its device, its four I/O control codes, loading and
 * unloading it. */
#ifndef TESTS_IOCTL_SAMPLE_DRIVER_H
#define TESTS_IOCTL_SAMPLE_DRIVER_H

#include "include/wdm.h"

#define SIOCTL_DEVICE "SIOCTL"
#define SIOCTL_TYPE 40000
#define IOCTL_SIOCTL_METHOD_IN_DIRECT CTL_CODE(SIOCTL_TYPE, 0x900, METHOD_IN_DIRECT, FILE_ANY_ACCESS)
#define IOCTL_SIOCTL_METHOD_OUT_DIRECT CTL_CODE(SIOCTL_TYPE, 0x901, METHOD_OUT_DIRECT, FILE_ANY_ACCESS)
#define IOCTL_SIOCTL_METHOD_BUFFERED CTL_CODE(SIOCTL_TYPE, 0x902, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define IOCTL_SIOCTL_METHOD_NEITHER CTL_CODE(SIOCTL_TYPE, 0x903, METHOD_NEITHER, FILE_ANY_ACCESS)

/* DriverEntry: create the device (and clear what the driver noted). */
NTSTATUS sioctl_load(void);
/* Delete the device, if it exists. */
void sioctl_unload(void);

#endif
