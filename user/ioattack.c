/*
 * ioattack: the I/O system calls given what an attacker gives them, raw (user/user.h), on a
 * handle to \\.\MdlSample.  Each must fail with its documented status and write nothing:
 *
 *   ioattack ADDR        ADDR a kernel address the kernel test watches (a canary)
 *
 * Exit status: the number of calls that did not fail as they must.
 */
#include <windows.h>
#include <winioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include "user/user.h"
#include "../drivers/mdlsample_ioctl.h"

#define STATUS_ACCESS_VIOLATION 0xC0000005u
#define STATUS_INVALID_HANDLE 0xC0000008u

static int failures;

static void expect(long got, uint32_t want, const char *what)
{
	int ok = (uint32_t)got == want;
	printf("%s %s: 0x%x\n", ok ? "ok" : "FAILED", what, (uint32_t)got);
	failures += !ok;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 100;
	uint64_t kernel = strtoul(argv[1], NULL, 16);
	HANDLE h = CreateFileA(MDLSAMPLE_WIN32_NAME, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
	if (h == INVALID_HANDLE_VALUE)
		return 101;
	long hv = (long)h;
	uint64_t info = 0x1111;
	char buf[16] = "attack";
	DWORD n;
	if (!WriteFile(h, "abcdefgh", 8, &n, NULL))
		return 102;

	expect(syscall6(SYS_READ_FILE, hv, (long)kernel, 8, (long)&info, 0, 0), STATUS_ACCESS_VIOLATION,
	       "read into a kernel address");
	expect(syscall6(SYS_WRITE_FILE, hv, (long)kernel, 8, (long)&info, 0, 0), STATUS_ACCESS_VIOLATION,
	       "write from a kernel address");
	expect(syscall6(SYS_READ_FILE, hv, 0, 8, (long)&info, 0, 0), STATUS_ACCESS_VIOLATION, "read into NULL");
	expect(syscall6(SYS_READ_FILE, hv, (long)buf, 0x7FFFFFFF, (long)&info, 0, 0), STATUS_ACCESS_VIOLATION,
	       "read of 2 GiB into a 16-byte buffer");
	expect(info, 0x1111, "no bytes reported for those");
	/* An output that cannot be returned: refused before the request is made. */
	MDLSAMPLE_STATS before, after;
	DWORD got;
	DeviceIoControl(h, IOCTL_MDLSAMPLE_GET_STATS, NULL, 0, &before, sizeof before, &got, NULL);
	expect(syscall6(SYS_WRITE_FILE, hv, (long)buf, 4, (long)kernel, 0, 0), STATUS_ACCESS_VIOLATION,
	       "bytes returned to a kernel address (write)");
	expect(syscall6(SYS_READ_FILE, hv, (long)buf, 4, (long)USER_PARAMS_VA, 0, 0), STATUS_ACCESS_VIOLATION,
	       "bytes returned to a read-only page (read)");
	expect(syscall6(SYS_DEVICE_IO_CONTROL, hv, IOCTL_MDLSAMPLE_BUFFERED, (long)buf, (long)buf,
			(long)(6ull | 16ull << 32), (long)kernel),
	       STATUS_ACCESS_VIOLATION, "bytes returned to a kernel address (IOCTL)");
	expect(syscall6(SYS_DEVICE_IO_CONTROL, hv, IOCTL_MDLSAMPLE_BUFFERED, (long)kernel, (long)buf,
			(long)(6ull | 16ull << 32), (long)&info),
	       STATUS_ACCESS_VIOLATION, "IOCTL input from a kernel address");
	expect(syscall6(SYS_DEVICE_IO_CONTROL, hv, IOCTL_MDLSAMPLE_OUT_DIRECT, 0, (long)kernel,
			(long)(0ull | 16ull << 32), (long)&info),
	       STATUS_ACCESS_VIOLATION, "direct output to a kernel address");
	DeviceIoControl(h, IOCTL_MDLSAMPLE_GET_STATS, NULL, 0, &after, sizeof after, &got, NULL);
	expect(after.Reads - before.Reads, 0, "the driver saw none of those reads");
	expect(after.Writes - before.Writes, 0, "nor writes");
	expect(after.Ioctls - before.Ioctls, 1, "and only the second GET_STATS of the IOCTLs");
	expect(syscall6(SYS_CLOSE, 0x12345, 0, 0, 0, 0, 0), STATUS_INVALID_HANDLE, "close of no handle");
	expect(syscall6(SYS_READ_FILE, 0x12344, (long)buf, 4, 0, 0, 0), STATUS_INVALID_HANDLE, "read on no handle");
	expect(syscall6(SYS_OPEN_DEVICE, (long)kernel, (long)&info, 0, 0, 0, 0), STATUS_ACCESS_VIOLATION,
	       "open with the name at a kernel address");
	expect(syscall6(SYS_OPEN_DEVICE, (long)"\\\\.\\MdlSample", (long)kernel, 0, 0, 0, 0), STATUS_ACCESS_VIOLATION,
	       "open with the handle to a kernel address");
	expect(syscall6(SYS_CLOSE, hv, 0, 0, 0, 0, 0), 0, "close");
	expect(syscall6(SYS_CLOSE, hv, 0, 0, 0, 0, 0), STATUS_INVALID_HANDLE, "close again");
	printf("ioattack: %d failed\n", failures);
	return failures;
}
