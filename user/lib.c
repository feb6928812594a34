#include "user/user.h"

void exit(long status)
{
	syscall6(SYS_EXIT, status, 0, 0, 0, 0, 0);
	for (;;)
		;
}

static size_t length(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

void print(const char *s) { syscall6(SYS_DEBUG_PRINT, (long)s, (long)length(s), 0, 0, 0, 0); }

void print_hex(const char *label, uint64_t v)
{
	char buf[64];
	size_t n = 0;
	while (*label && n < 40)
		buf[n++] = *label++;
	buf[n++] = '0';
	buf[n++] = 'x';
	for (int shift = 60; shift >= 0; shift -= 4)
		buf[n++] = "0123456789abcdef"[(v >> shift) & 0xF];
	buf[n++] = '\n';
	buf[n] = 0;
	print(buf);
}

const struct user_params *params(void) { return (const struct user_params *)USER_PARAMS_VA; }

long NtAllocateVirtualMemory(void **base, size_t *size, uint32_t type, uint32_t protect)
{
	return syscall6(SYS_ALLOCATE_VM, (long)base, (long)size, type, protect, 0, 0);
}
long NtFreeVirtualMemory(void **base, size_t *size, uint32_t type)
{
	return syscall6(SYS_FREE_VM, (long)base, (long)size, type, 0, 0, 0);
}
long NtProtectVirtualMemory(void **base, size_t *size, uint32_t protect, uint32_t *old)
{
	return syscall6(SYS_PROTECT_VM, (long)base, (long)size, protect, (long)old, 0, 0);
}
long NtUnmapViewOfSection(void *base) { return syscall6(SYS_UNMAP_VIEW, (long)base, 0, 0, 0, 0, 0); }
long NtOpenDevice(const char *name, uint64_t *handle)
{
	return syscall6(SYS_OPEN_DEVICE, (long)name, (long)handle, 0, 0, 0, 0);
}
long NtDeviceIoControlFile(uint64_t handle, uint32_t code, void *in, uint32_t in_len, void *out, uint32_t out_len,
			   uint64_t *bytes)
{
	return syscall6(SYS_DEVICE_IO_CONTROL, (long)handle, code, (long)in, (long)out,
			(long)((uint64_t)in_len | (uint64_t)out_len << 32), (long)bytes);
}
long NtReadFile(uint64_t handle, void *buf, uint32_t len, uint64_t *bytes, const int64_t *offset)
{
	return syscall6(SYS_READ_FILE, (long)handle, (long)buf, len, (long)bytes, (long)offset, 0);
}
long NtWriteFile(uint64_t handle, const void *buf, uint32_t len, uint64_t *bytes, const int64_t *offset)
{
	return syscall6(SYS_WRITE_FILE, (long)handle, (long)buf, len, (long)bytes, (long)offset, 0);
}
void report(uint64_t key, uint64_t value) { syscall6(SYS_REPORT, (long)key, (long)value, 0, 0, 0, 0); }

/* What the compiler may call for block moves. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}
