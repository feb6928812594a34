/*
 * The MdlSample driver's public interface, shared by the driver (drivers/mdlsample.c) and
 * its application (user/mdlsample.c): the device's names and its I/O control codes, one per
 * transfer method.  Needs CTL_CODE: <wdm.h> in the driver, <winioctl.h> in the application.
 */
#ifndef MDLSAMPLE_IOCTL_H
#define MDLSAMPLE_IOCTL_H

#define MDLSAMPLE_NT_DEVICE_NAME L"\\Device\\MdlSample"
#define MDLSAMPLE_DOS_DEVICE_NAME L"\\DosDevices\\MdlSample"
#define MDLSAMPLE_WIN32_NAME "\\\\.\\MdlSample"

#define MDLSAMPLE_TYPE 40001
/* Upper-cases the input into the output (the system buffer, in place). */
#define IOCTL_MDLSAMPLE_BUFFERED CTL_CODE(MDLSAMPLE_TYPE, 0x900, METHOD_BUFFERED, FILE_ANY_ACCESS)
/* The "output" buffer is data for the device: it becomes the device's contents. */
#define IOCTL_MDLSAMPLE_IN_DIRECT CTL_CODE(MDLSAMPLE_TYPE, 0x901, METHOD_IN_DIRECT, FILE_WRITE_ACCESS)
/* The device's contents into the output buffer, through the MDL. */
#define IOCTL_MDLSAMPLE_OUT_DIRECT CTL_CODE(MDLSAMPLE_TYPE, 0x902, METHOD_OUT_DIRECT, FILE_READ_ACCESS)
/* The input reversed into the output, both raw user pointers the driver probes itself. */
#define IOCTL_MDLSAMPLE_NEITHER CTL_CODE(MDLSAMPLE_TYPE, 0x903, METHOD_NEITHER, FILE_ANY_ACCESS)
/* The counters below. */
#define IOCTL_MDLSAMPLE_GET_STATS CTL_CODE(MDLSAMPLE_TYPE, 0x904, METHOD_BUFFERED, FILE_ANY_ACCESS)

#define MDLSAMPLE_DATA_SIZE 256

typedef struct _MDLSAMPLE_STATS {
	unsigned int Opens;
	unsigned int Closes;
	unsigned int Reads;
	unsigned int Writes;
	unsigned int Ioctls;
	unsigned int DataLength;
} MDLSAMPLE_STATS;

#endif
