/*
 * The Win32-flavoured runtime of mdlab's user programs: the calls of <windows.h> on mdlab's
 * system calls (user/user.h), printf to the console, and the program's start, which gives
 * main its command line.
 *
 * The command line comes in the parameter page: args[0] is its length in bytes, the bytes
 * follow from args[1] (the monitor's `run NAME [args]` and the tests fill it); it is split at
 * spaces into argv, argv[0] the program's name.  main's return value is the exit status.
 */
#include <stdbool.h>
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include "user/user.h"

int main(int argc, char **argv);

/* ---- errors: NTSTATUS to Win32 (as RtlNtStatusToDosError for the statuses mdlab has) ---- */

static DWORD last_error;

DWORD WINAPI GetLastError(void) { return last_error; }
void WINAPI SetLastError(DWORD dwErrCode) { last_error = dwErrCode; }

static DWORD dos_error(long status)
{
	switch ((uint32_t)status) {
	case 0x00000000: return ERROR_SUCCESS;
	case 0x80000005: return ERROR_MORE_DATA;          /* STATUS_BUFFER_OVERFLOW */
	case 0x80000011: return ERROR_BUSY;               /* STATUS_DEVICE_BUSY */
	case 0xC0000002: return ERROR_INVALID_FUNCTION;   /* STATUS_NOT_IMPLEMENTED */
	case 0xC0000005: return ERROR_NOACCESS;           /* STATUS_ACCESS_VIOLATION */
	case 0xC0000008: return ERROR_INVALID_HANDLE;
	case 0xC000000D: return ERROR_INVALID_PARAMETER;
	case 0xC000000E: return ERROR_FILE_NOT_FOUND;     /* STATUS_NO_SUCH_DEVICE */
	case 0xC0000010: return ERROR_INVALID_FUNCTION;   /* STATUS_INVALID_DEVICE_REQUEST */
	case 0xC0000011: return ERROR_HANDLE_EOF;         /* STATUS_END_OF_FILE */
	case 0xC0000017: return ERROR_NOT_ENOUGH_MEMORY;  /* STATUS_NO_MEMORY */
	case 0xC0000018: return ERROR_INVALID_ADDRESS;    /* STATUS_CONFLICTING_ADDRESSES */
	case 0xC0000022: return ERROR_ACCESS_DENIED;
	case 0xC0000023: return ERROR_INSUFFICIENT_BUFFER; /* STATUS_BUFFER_TOO_SMALL */
	case 0xC000002D: return ERROR_INVALID_ADDRESS;    /* STATUS_NOT_COMMITTED */
	case 0xC0000033: return ERROR_INVALID_NAME;       /* STATUS_OBJECT_NAME_INVALID */
	case 0xC0000034: return ERROR_FILE_NOT_FOUND;     /* STATUS_OBJECT_NAME_NOT_FOUND */
	case 0xC0000045: return ERROR_INVALID_PARAMETER;  /* STATUS_INVALID_PAGE_PROTECTION */
	case 0xC0000056: return ERROR_ACCESS_DENIED;      /* STATUS_DELETE_PENDING */
	case 0xC000009A: return ERROR_NO_SYSTEM_RESOURCES; /* STATUS_INSUFFICIENT_RESOURCES */
	case 0xC000009F: return ERROR_INVALID_ADDRESS;    /* STATUS_FREE_VM_NOT_AT_BASE */
	case 0xC00000A0: return ERROR_INVALID_ADDRESS;    /* STATUS_MEMORY_NOT_ALLOCATED */
	case 0xC0000141: return ERROR_INVALID_ADDRESS;    /* STATUS_INVALID_ADDRESS */
	default: return ERROR_MR_MID_NOT_FOUND;           /* NT's answer for a status it has no error for */
	}
}

/* A failed call: the error for GetLastError, FALSE. */
static BOOL fail(long status)
{
	last_error = dos_error(status);
	return FALSE;
}

/* ---- devices -------------------------------------------------------------------------- */

/* The access, sharing and disposition are accepted as given: every device handle is opened
 * for read and write, and a device exists or does not (OPEN_EXISTING is what devices take). */
HANDLE WINAPI CreateFileA(LPCSTR lpFileName, DWORD dwDesiredAccess, DWORD dwShareMode,
			  LPSECURITY_ATTRIBUTES lpSecurityAttributes, DWORD dwCreationDisposition,
			  DWORD dwFlagsAndAttributes, HANDLE hTemplateFile)
{
	(void)dwDesiredAccess, (void)dwShareMode, (void)lpSecurityAttributes, (void)dwFlagsAndAttributes;
	(void)hTemplateFile;
	if (!lpFileName || (dwCreationDisposition != OPEN_EXISTING && dwCreationDisposition != OPEN_ALWAYS)) {
		last_error = ERROR_INVALID_PARAMETER;
		return INVALID_HANDLE_VALUE;
	}
	uint64_t h = 0;
	long st = NtOpenDevice(lpFileName, &h);
	if (st) {
		fail(st);
		return INVALID_HANDLE_VALUE;
	}
	return (HANDLE)h;
}

BOOL WINAPI CloseHandle(HANDLE hObject)
{
	long st = syscall6(SYS_CLOSE, (long)hObject, 0, 0, 0, 0, 0);
	return st ? fail(st) : TRUE;
}

/* DeviceIoControl page: success TRUE with the bytes returned; a warning (the output did not
 * fit) FALSE with the bytes that did; an error FALSE, no bytes.  Synchronous only. */
BOOL WINAPI DeviceIoControl(HANDLE hDevice, DWORD dwIoControlCode, LPVOID lpInBuffer, DWORD nInBufferSize,
			    LPVOID lpOutBuffer, DWORD nOutBufferSize, LPDWORD lpBytesReturned,
			    LPOVERLAPPED lpOverlapped)
{
	if (lpOverlapped) {
		last_error = ERROR_NOT_SUPPORTED;
		return FALSE;
	}
	uint64_t info = 0;
	long st = syscall6(SYS_DEVICE_IO_CONTROL, (long)hDevice, dwIoControlCode, (long)lpInBuffer, (long)lpOutBuffer,
			   (long)((uint64_t)nInBufferSize | (uint64_t)nOutBufferSize << 32), (long)&info);
	if (lpBytesReturned)
		*lpBytesReturned = (DWORD)info;
	if ((uint32_t)st >> 30 == 0 || (uint32_t)st >> 30 == 1)
		return TRUE;
	return fail(st);
}

/* ReadFile / WriteFile pages: with lpOverlapped on a synchronous handle the transfer is at
 * Offset/OffsetHigh (NtReadFile's ByteOffset) and its status and bytes go to Internal and
 * InternalHigh; without, at the handle's current position. */
static BOOL read_write(long nr, HANDLE h, const void *buf, DWORD n, LPDWORD done, LPOVERLAPPED ov)
{
	uint64_t info = 0;
	int64_t at = ov ? (int64_t)((uint64_t)ov->OffsetHigh << 32 | ov->Offset) : 0;
	long st = syscall6(nr, (long)h, (long)buf, n, (long)&info, ov ? (long)&at : 0, 0);
	if (ov) {
		ov->Internal = (ULONG_PTR)(uint32_t)st;
		ov->InternalHigh = info;
	}
	if (done)
		*done = (DWORD)info;
	/* ReadFile page: the end of a file is success with 0 bytes for a synchronous handle. */
	if ((uint32_t)st == 0xC0000011u)
		return TRUE;
	return (uint32_t)st >> 30 <= 1 ? TRUE : fail(st);
}

BOOL WINAPI ReadFile(HANDLE hFile, LPVOID lpBuffer, DWORD nNumberOfBytesToRead, LPDWORD lpNumberOfBytesRead,
		     LPOVERLAPPED lpOverlapped)
{
	return read_write(SYS_READ_FILE, hFile, lpBuffer, nNumberOfBytesToRead, lpNumberOfBytesRead, lpOverlapped);
}

BOOL WINAPI WriteFile(HANDLE hFile, LPCVOID lpBuffer, DWORD nNumberOfBytesToWrite, LPDWORD lpNumberOfBytesWritten,
		      LPOVERLAPPED lpOverlapped)
{
	return read_write(SYS_WRITE_FILE, hFile, lpBuffer, nNumberOfBytesToWrite, lpNumberOfBytesWritten,
			  lpOverlapped);
}

/* ---- memory --------------------------------------------------------------------------- */

LPVOID WINAPI VirtualAlloc(LPVOID lpAddress, SIZE_T dwSize, DWORD flAllocationType, DWORD flProtect)
{
	void *base = lpAddress;
	size_t size = dwSize;
	long st = NtAllocateVirtualMemory(&base, &size, flAllocationType, flProtect);
	if (st) {
		fail(st);
		return NULL;
	}
	return base;
}

/* VirtualFree page: MEM_RELEASE takes the whole region, so dwSize must be 0. */
BOOL WINAPI VirtualFree(LPVOID lpAddress, SIZE_T dwSize, DWORD dwFreeType)
{
	if ((dwFreeType & MEM_RELEASE) && dwSize) {
		last_error = ERROR_INVALID_PARAMETER;
		return FALSE;
	}
	void *base = lpAddress;
	size_t size = dwSize;
	long st = NtFreeVirtualMemory(&base, &size, dwFreeType);
	return st ? fail(st) : TRUE;
}

/* VirtualProtect page: lpflOldProtect must point to a variable, else the call fails. */
BOOL WINAPI VirtualProtect(LPVOID lpAddress, SIZE_T dwSize, DWORD flNewProtect, PDWORD lpflOldProtect)
{
	if (!lpflOldProtect) {
		last_error = ERROR_NOACCESS;
		return FALSE;
	}
	void *base = lpAddress;
	size_t size = dwSize;
	uint32_t old = 0;
	long st = NtProtectVirtualMemory(&base, &size, flNewProtect, &old);
	if (st)
		return fail(st);
	*lpflOldProtect = old;
	return TRUE;
}

/* ---- console output ------------------------------------------------------------------- */

/* stdout, line-buffered: one console line per SYS_DEBUG_PRINT. */
static char line[200];
static size_t line_len;

int fflush(void *stream)
{
	(void)stream;
	if (line_len) {
		syscall6(SYS_DEBUG_PRINT, (long)line, (long)line_len, 0, 0, 0, 0);
		line_len = 0;
	}
	return 0;
}

int putchar(int c)
{
	line[line_len++] = (char)c;
	if (c == '\n' || line_len == sizeof line)
		fflush(stdout);
	return (unsigned char)c;
}

struct sink {
	char *buf;   /* NULL: stdout */
	size_t size, len;
};

static void emit(struct sink *s, char c)
{
	if (!s->buf)
		putchar(c);
	else if (s->len + 1 < s->size)
		s->buf[s->len] = c;
	s->len++;
}

static void emit_number(struct sink *s, uint64_t v, unsigned base, bool upper, bool neg, int width, bool zero,
			bool left)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (upper ? "0123456789ABCDEF" : "0123456789abcdef")[v % base];
		v /= base;
	} while (v);
	int len = n + neg;
	if (!left && !zero)
		for (; len < width; width--)
			emit(s, ' ');
	if (neg)
		emit(s, '-');
	if (!left && zero)
		for (; len < width; width--)
			emit(s, '0');
	while (n)
		emit(s, tmp[--n]);
	for (; left && len < width; width--)
		emit(s, ' ');
}

static int format(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			emit(s, *fmt);
			continue;
		}
		bool left = false, zero = false;
		for (fmt++; *fmt == '-' || *fmt == '0'; fmt++)
			*fmt == '-' ? (left = true) : (zero = true);
		int width = 0, prec = -1, lng = 0;
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + *fmt++ - '0';
		if (*fmt == '.')
			for (prec = 0, fmt++; *fmt >= '0' && *fmt <= '9'; fmt++)
				prec = prec * 10 + *fmt - '0';
		while (*fmt == 'l' || *fmt == 'z' || *fmt == 'h')
			lng += *fmt++ != 'h';
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			emit_number(s, v < 0 ? (uint64_t)-v : (uint64_t)v, 10, false, v < 0, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			emit_number(s, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, zero, left);
			break;
		}
		case 'p':
			emit(s, '0');
			emit(s, 'x');
			emit_number(s, (uint64_t)va_arg(ap, void *), 16, false, false, width, zero, left);
			break;
		case 'c':
			emit(s, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			int n = 0;
			while (str[n] && (prec < 0 || n < prec))
				n++;
			for (int pad = n; !left && pad < width; pad++)
				emit(s, ' ');
			for (int i = 0; i < n; i++)
				emit(s, str[i]);
			for (int pad = n; left && pad < width; pad++)
				emit(s, ' ');
			break;
		}
		case '%':
			emit(s, '%');
			break;
		default:
			emit(s, '%');
			if (*fmt)
				emit(s, *fmt);
			else
				fmt--;
		}
	}
	if (s->buf && s->size)
		s->buf[s->len < s->size ? s->len : s->size - 1] = 0;
	return (int)s->len;
}

int vprintf(const char *fmt, va_list ap)
{
	struct sink s = { NULL, 0, 0 };
	return format(&s, fmt, ap);
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
	struct sink s = { buf, n, 0 };
	return format(&s, fmt, ap);
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

int puts(const char *s)
{
	while (*s)
		putchar(*s++);
	putchar('\n');
	return 0;
}

/* ---- the C library's rest ------------------------------------------------------------- */

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (unsigned char)*a - (unsigned char)*b;
}

unsigned long strtoul(const char *s, char **end, int base)
{
	unsigned long v = 0;
	if ((base == 0 || base == 16) && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2, base = 16;
	else if (base == 0)
		base = 10;
	for (;; s++) {
		int d = *s >= '0' && *s <= '9' ? *s - '0'
			: *s >= 'a' && *s <= 'z' ? *s - 'a' + 10
			: *s >= 'A' && *s <= 'Z' ? *s - 'A' + 10 : 99;
		if (d >= base)
			break;
		v = v * (unsigned long)base + (unsigned long)d;
	}
	if (end)
		*end = (char *)s;
	return v;
}

int atoi(const char *s)
{
	int neg = *s == '-';
	return (int)(neg ? -(long)strtoul(s + 1, NULL, 10) : (long)strtoul(s, NULL, 10));
}

/* ---- start and end -------------------------------------------------------------------- */

void WINAPI ExitProcess(UINT uExitCode)
{
	fflush(stdout);
	exit(uExitCode);
}

#define MAX_ARGS 16
static char cmdline[USER_PARAMS_ARGS * 8];
static char *argv_table[MAX_ARGS + 1];

/* The entry point (the Makefile links Win32 programs with -e win32_start). */
__attribute__((noreturn, force_align_arg_pointer, used)) void win32_start(void);
void win32_start(void)
{
	const struct user_params *p = params();
	int argc = 0;
	uint64_t len = 0;
	if (p->magic == USER_PARAMS_MAGIC && p->nargs >= 1)
		len = p->args[0];
	if (len > (p->nargs - 1) * 8)
		len = p->nargs >= 1 ? (p->nargs - 1) * 8 : 0;
	if (len >= sizeof cmdline)
		len = sizeof cmdline - 1;
	memcpy(cmdline, &p->args[1], len);
	cmdline[len] = 0;
	for (char *c = cmdline; *c && argc < MAX_ARGS;) {
		while (*c == ' ')
			*c++ = 0;
		if (!*c)
			break;
		argv_table[argc++] = c;
		while (*c && *c != ' ')
			c++;
	}
	argv_table[argc] = NULL;
	ExitProcess((UINT)main(argc, argv_table));
}
