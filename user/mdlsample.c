/*
 * The MdlSample driver's application, as a Win32 console program: opens \\.\MdlSample and
 * drives every request the driver handles, printing what comes back.
 *
 *   mdlsample            every step once; exit status 0 when each gave what it should
 *   mdlsample bad        hand METHOD_NEITHER a kernel address: the driver's probe refuses it
 *   mdlsample hold       open the device and exit without closing it (teardown closes it)
 */
#include <windows.h>
#include <winioctl.h>
#include <stdio.h>
#include <string.h>
#include "../drivers/mdlsample_ioctl.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok" : "FAILED", what);
	if (!ok)
		failures++;
}

int main(int argc, char **argv)
{
	char in[32] = "hello, mdl sample";
	char out[64];
	DWORD bytes = 0;
	HANDLE h = CreateFile(MDLSAMPLE_WIN32_NAME, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
			       FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE) {
		printf("CreateFile %s failed: error %u\n", MDLSAMPLE_WIN32_NAME, GetLastError());
		return 1;
	}

	if (argc > 1 && !strcmp(argv[1], "hold")) {
		printf("holding a handle to %s until the process is torn down\n", MDLSAMPLE_WIN32_NAME);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "bad")) {
		BOOL r = DeviceIoControl(h, IOCTL_MDLSAMPLE_NEITHER, (LPVOID)0xFFFF800000001000ull, 8, out, 8, &bytes,
					 NULL);
		printf("METHOD_NEITHER with a kernel address: %s, error %u, %u bytes\n", r ? "TRUE" : "FALSE",
		       GetLastError(), bytes);
		CloseHandle(h);
		return r || GetLastError() != ERROR_NOACCESS;
	}

	/* METHOD_BUFFERED: upper-cased in the system buffer. */
	memset(out, 0, sizeof out);
	memcpy(out, in, sizeof in);
	BOOL r = DeviceIoControl(h, IOCTL_MDLSAMPLE_BUFFERED, out, (DWORD)strlen(in), out, sizeof out, &bytes, NULL);
	printf("METHOD_BUFFERED: '%s', %u bytes\n", out, bytes);
	check(r && bytes == strlen(in) && !strcmp(out, "HELLO, MDL SAMPLE"), "METHOD_BUFFERED");

	/* A too-small output: the driver's STATUS_BUFFER_TOO_SMALL, no bytes. */
	bytes = 99;
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_BUFFERED, in, 16, out, 4, &bytes, NULL);
	check(!r && GetLastError() == ERROR_INSUFFICIENT_BUFFER && bytes == 0, "METHOD_BUFFERED, output too small");

	/* METHOD_IN_DIRECT: the buffer becomes the device's data. */
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_IN_DIRECT, NULL, 0, in, 10, &bytes, NULL);
	check(r && bytes == 10, "METHOD_IN_DIRECT");

	/* METHOD_OUT_DIRECT: the data back through the MDL. */
	memset(out, 0, sizeof out);
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_OUT_DIRECT, NULL, 0, out, sizeof out, &bytes, NULL);
	printf("METHOD_OUT_DIRECT: '%s', %u bytes\n", out, bytes);
	check(r && bytes == 10 && !memcmp(out, "hello, mdl", 10), "METHOD_OUT_DIRECT");

	/* METHOD_NEITHER: reversed, the driver probing both raw pointers. */
	memset(out, 0, sizeof out);
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_NEITHER, in, 5, out, 5, &bytes, NULL);
	printf("METHOD_NEITHER: '%s', %u bytes\n", out, bytes);
	check(r && bytes == 5 && !strcmp(out, "olleh"), "METHOD_NEITHER");

	/* WriteFile / ReadFile: the data store at the file offset. */
	DWORD n = 0;
	r = WriteFile(h, "0123456789", 10, &n, NULL);
	check(r && n == 10, "WriteFile");
	HANDLE h2 = CreateFileA(MDLSAMPLE_WIN32_NAME, GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
	memset(out, 0, sizeof out);
	r = ReadFile(h2, out, 4, &n, NULL);
	check(r && n == 4 && !memcmp(out, "0123", 4), "ReadFile from a second handle");
	r = ReadFile(h2, out, sizeof out, &n, NULL);
	check(r && n == 6 && !memcmp(out, "456789", 6), "ReadFile continues at the offset");
	r = ReadFile(h2, out, sizeof out, &n, NULL);
	check(r && n == 0, "ReadFile at the end: TRUE, 0 bytes");
	check(CloseHandle(h2), "CloseHandle");
	check(!CloseHandle(h2) && GetLastError() == ERROR_INVALID_HANDLE, "CloseHandle twice: ERROR_INVALID_HANDLE");

	MDLSAMPLE_STATS stats;
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_GET_STATS, NULL, 0, &stats, sizeof stats, &bytes, NULL);
	printf("stats: %u opens, %u closes, %u reads, %u writes, %u ioctls, %u bytes of data\n", stats.Opens,
	       stats.Closes, stats.Reads, stats.Writes, stats.Ioctls, stats.DataLength);
	check(r && bytes == sizeof stats && stats.Opens == 2 && stats.Closes == 1 && stats.Reads == 3 &&
		      stats.Writes == 1,
	      "stats");

	/* Room for two of the six counters: FALSE, ERROR_MORE_DATA, and the 8 bytes that fit. */
	unsigned int part[3] = { 0, 0, 0xFEEDu };
	r = DeviceIoControl(h, IOCTL_MDLSAMPLE_GET_STATS, NULL, 0, part, 8, &bytes, NULL);
	check(!r && GetLastError() == ERROR_MORE_DATA && bytes == 8 && part[0] == 2 && part[1] == 1 &&
		      part[2] == 0xFEEDu,
	      "a warning status: FALSE, ERROR_MORE_DATA, the bytes that fit");

	r = DeviceIoControl(h, CTL_CODE(MDLSAMPLE_TYPE, 0x9FF, METHOD_BUFFERED, FILE_ANY_ACCESS), NULL, 0, NULL, 0,
			    &bytes, NULL);
	check(!r && GetLastError() == ERROR_INVALID_FUNCTION, "an unknown code: ERROR_INVALID_FUNCTION");
	check(CreateFileA("\\\\.\\NoSuchDevice", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL) ==
			      INVALID_HANDLE_VALUE &&
		      GetLastError() == ERROR_FILE_NOT_FOUND,
	      "CreateFile of no device: ERROR_FILE_NOT_FOUND");
	CloseHandle(h);
	printf("mdlsample: %d failed\n", failures);
	return failures;
}
