/* mdlab's <winioctl.h>: I/O control codes, as the SDK's. */
#ifndef MDLAB_USER_WINIOCTL_H
#define MDLAB_USER_WINIOCTL_H

#define CTL_CODE(DeviceType, Function, Method, Access) \
	(((DWORD)(DeviceType) << 16) | ((DWORD)(Access) << 14) | ((DWORD)(Function) << 2) | (DWORD)(Method))
#define METHOD_BUFFERED 0
#define METHOD_IN_DIRECT 1
#define METHOD_OUT_DIRECT 2
#define METHOD_NEITHER 3
#define FILE_ANY_ACCESS 0
#define FILE_READ_ACCESS 0x0001
#define FILE_WRITE_ACCESS 0x0002
#define FILE_READ_DATA FILE_READ_ACCESS
#define FILE_WRITE_DATA FILE_WRITE_ACCESS
#define FILE_DEVICE_UNKNOWN 0x00000022

#endif
