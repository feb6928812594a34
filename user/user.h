/* The user runtime: system-call stubs and a little printing, for mdlab's user programs. */
#ifndef USER_USER_H
#define USER_USER_H

#include <stddef.h>
#include <stdint.h>
#include "include/mdlab/syscalls.h"

long syscall6(long n, long a, long b, long c, long d, long e, long f);

static inline long sys0(long n) { return syscall6(n, 0, 0, 0, 0, 0, 0); }

__attribute__((noreturn)) void exit(long status);
void print(const char *s);
void print_hex(const char *label, uint64_t v);
const struct user_params *params(void);

/* NT-style calls on the current process. */
#define MEM_COMMIT 0x1000
#define MEM_RESERVE 0x2000
#define MEM_DECOMMIT 0x4000
#define MEM_RELEASE 0x8000
long NtAllocateVirtualMemory(void **base, size_t *size, uint32_t type, uint32_t protect);
long NtFreeVirtualMemory(void **base, size_t *size, uint32_t type);
long NtProtectVirtualMemory(void **base, size_t *size, uint32_t protect, uint32_t *old);
long NtUnmapViewOfSection(void *base);
long NtOpenDevice(const char *name, uint64_t *handle);
/* *bytes (when not NULL) gets IoStatus.Information unless the status is an error. */
long NtDeviceIoControlFile(uint64_t handle, uint32_t code, void *in, uint32_t in_len, void *out,
			   uint32_t out_len, uint64_t *bytes);
/* NtReadFile / NtWriteFile on a synchronous handle: offset NULL for the current position. */
long NtReadFile(uint64_t handle, void *buf, uint32_t len, uint64_t *bytes, const int64_t *offset);
long NtWriteFile(uint64_t handle, const void *buf, uint32_t len, uint64_t *bytes, const int64_t *offset);
void report(uint64_t key, uint64_t value);

#endif
