/*
 * The system-call interface between user programs and the kernel: numbers and the layout of
 * the parameter page.  SYSCALL with the number in RAX, arguments in RDI, RSI, RDX, R10, R8,
 * R9 (the Linux x86-64 convention, since RCX and R11 are taken by SYSCALL); the NTSTATUS or
 * result comes back in RAX.
 */
#ifndef MDLAB_SYSCALLS_H
#define MDLAB_SYSCALLS_H

#include <stdint.h>

enum {
	SYS_EXIT = 0,                 /* (status) — does not return */
	SYS_DEBUG_PRINT = 1,          /* (const char *s, size_t len) */
	SYS_ALLOCATE_VM = 2,          /* (void **base, size_t *size, uint32_t type, uint32_t protect) */
	SYS_FREE_VM = 3,              /* (void **base, size_t *size, uint32_t type) */
	SYS_PROTECT_VM = 4,           /* (void **base, size_t *size, uint32_t protect, uint32_t *old) */
	SYS_OPEN_DEVICE = 5,          /* (const char *name, uint64_t *handle) */
	SYS_DEVICE_IO_CONTROL = 6,    /* (handle, code, in, out, in_len | out_len << 32, ULONG_PTR *bytes) */
	SYS_UNMAP_VIEW = 7,           /* (void *base) */
	SYS_REPORT = 8,               /* (uint64_t key, uint64_t value): a value for the kernel test */
	SYS_CLOSE = 9,                /* (handle) */
	SYS_READ_FILE = 10,           /* (handle, buf, len, ULONG_PTR *bytes, LARGE_INTEGER *offset) */
	SYS_WRITE_FILE = 11,          /* (handle, buf, len, ULONG_PTR *bytes, LARGE_INTEGER *offset) */
	SYS_COUNT,
};
/* SYS_READ_FILE / SYS_WRITE_FILE are NtReadFile / NtWriteFile on a synchronous handle: offset
 * NULL (or pointing at HighPart -1, LowPart 0xFFFFFFFE, FILE_USE_FILE_POINTER_POSITION) is the
 * handle's current position; after a transfer the position is where it ended.  An offset
 * pointer that cannot be read is STATUS_ACCESS_VIOLATION before any I/O. */

/* The parameter page: mapped read-only at USER_PARAMS_VA in every process; the kernel test
 * that starts a program fills args[], the program reads them. */
#define USER_PARAMS_VA 0x10000ul
#define USER_PARAMS_ARGS 256
struct user_params {
	uint64_t magic;          /* USER_PARAMS_MAGIC */
	uint64_t nargs;
	uint64_t args[USER_PARAMS_ARGS];
};
#define USER_PARAMS_MAGIC 0x534D524150444D75ull /* "uMDPARMS" */

/* The fuzzer (user/fuzz.c): random system calls and IOCTLs with hostile pointers and
 * lengths.  Its parameters are args[FUZZ_*]; it ends with the number of calls it made as its
 * exit status, or, with FUZZ_COMPAT_END, by a SYSCALL from compatibility mode. */
enum fuzz_arg {
	FUZZ_SEED,          /* the random generator's seed (xorshift64*; 0 is made 1) */
	FUZZ_CALLS,         /* how many calls */
	FUZZ_FLAGS,         /* FUZZ_COMPAT_END */
	FUZZ_HIGHEST_USER,  /* the process's highest user address */
	FUZZ_POOL,          /* a kernel pool page (the test's canary) */
	FUZZ_KIMAGE,        /* an address in the kernel image */
	FUZZ_VIEW,          /* a NoWrite view of a kernel page, FUZZ_VIEW_SIZE bytes */
	FUZZ_VIEW_SIZE,
	FUZZ_DEVICE,        /* the device to open: up to 8 characters, packed little-endian */
	FUZZ_IOCTL0,        /* FUZZ_IOCTLS of its I/O control codes */
	FUZZ_NARGS = FUZZ_IOCTL0 + 4,
};
#define FUZZ_IOCTLS 4
#define FUZZ_COMPAT_END 0x1
/* Where the fuzzer keeps its memory: the pointers' cells (read-write), a read-only page, a
 * reserved-only page, and the region its VM calls may change. */
#define FUZZ_CELLS_VA 0x10000000ul
#define FUZZ_RO_VA 0x10010000ul
#define FUZZ_RESERVED_VA 0x10020000ul
#define FUZZ_VICTIM_VA 0x10100000ul
#define FUZZ_VICTIM_SIZE 0x100000ul
/* Before it ends, the fuzzer reports how many calls of each number returned
 * STATUS_SUCCESS, under FUZZ_KEY_OK + the number; its own random SYS_REPORTs stop at
 * FUZZ_RANDOM_REPORTS, so these fit the process's reports. */
#define FUZZ_KEY_OK 0xF0220100ul
#define FUZZ_RANDOM_REPORTS 16
/* Exit statuses of a fuzzer whose setup failed: FUZZ_SETUP_FAILED + the step. */
#define FUZZ_SETUP_FAILED 0xF0220000ul

#endif

/* The agent program (user/agent.c) runs a list of operations from its parameters:
 * args[0] = number of operations, then AGENT_OP_SLOTS values per operation:
 * { op, a, b, c, d, e }.  Operation i reports its result with SYS_REPORT under the key
 * AGENT_KEY(i, 0) (status or value read) and AGENT_KEY(i, 1) (a second value). */
#define AGENT_OP_SLOTS 6
#define AGENT_KEY(i, k) ((uint64_t)(i) * 4 + (k))
enum agent_op {
	AGENT_END = 0,
	AGENT_EXIT,       /* a = status */
	AGENT_READ8,      /* a = address; reports the byte */
	AGENT_READ64,     /* a = address; reports the value */
	AGENT_WRITE8,     /* a = address, b = value */
	AGENT_WRITE64,    /* a = address, b = value */
	AGENT_EXEC,       /* a = address: call it */
	AGENT_ALLOC,      /* a = base, b = size, c = type, d = protect; reports status, base */
	AGENT_FREE,       /* a = base, b = size, c = type; reports status */
	AGENT_PROTECT,    /* a = base, b = size, c = protect; reports status, old protection */
	AGENT_UNMAP_VIEW, /* a = base; reports status */
	AGENT_OPEN,       /* a-e = device name (up to 39 characters packed little-endian, a first,
	                   * NUL-padded); reports status */
	AGENT_IOCTL,      /* a = code, b = in, c = in length, d = out, e = out length; reports status,
	                   * and the bytes returned (IoStatus.Information) when not 0 */
	AGENT_REPORT,     /* a = key, b = value: report them as they are */
	AGENT_SYSCALL,    /* a = number, b-e = RDI, RSI, RDX, R10 as given (R8 = R9 = 0); reports RAX */
	AGENT_ADD64,      /* a = address, b = value: LOCK XADD; reports the old value */
	AGENT_SPIN64,     /* a = address, b = value: read until the quadword is b, in ring 3, no
	                   * system call; reports how many reads did not see it */
	AGENT_FILL64,     /* a = address, b = pages, c = seed: write seed ^ page number at the
	                   * start and end of each page, in order; reports 0 */
	AGENT_CHECK64,    /* a = address, b = pages, c = seed: read them back; reports how many
	                   * differed, and the first page that did (or b) */
	AGENT_READ_FILE,  /* a = buffer, b = length, c = byte offset (AGENT_CURRENT_POSITION: none
	                   * given), d = when not 0, the ByteOffset pointer itself (c unused):
	                   * NtReadFile on the handle of the last AGENT_OPEN; reports the status,
	                   * and the bytes (IoStatus.Information) */
	AGENT_WRITE_FILE, /* the same, NtWriteFile */
	AGENT_PATTERN32,  /* a = address, b = bytes, c = seed: the disk tests' pattern
	                   * (tests/lib/pattern.h, a 32-bit xorshift); reports 0 */
};
#define AGENT_CURRENT_POSITION (~0ull) /* AGENT_READ_FILE / AGENT_WRITE_FILE: ByteOffset NULL */
