/*
 * The 32-bit test program (user/compat32.c), run in IA-32e compatibility mode, and its
 * system-call convention (mm/RULES.md, "The ring-3 boundary", 32-bit processes).
 *
 * A 32-bit process calls the kernel with SYSCALL from compatibility mode (through
 * IA32_CSTAR): the number in EAX, arguments in EDI, ESI, EDX, EBX, EBP (ECX and R11 are
 * taken by SYSCALL, R8-R15 do not exist in compatibility mode); the kernel uses only the low
 * 32 bits of each, zero-extended, and returns the NTSTATUS in EAX.  The services are those of
 * include/mdlab/syscalls.h whose arguments fit: SYS_EXIT, SYS_DEBUG_PRINT, SYS_UNMAP_VIEW,
 * SYS_REPORT, SYS_CLOSE, SYS_OPEN_DEVICE, SYS_READ_FILE, SYS_WRITE_FILE (EBP the address of
 * the LARGE_INTEGER ByteOffset, 0 for the current position),
 * SYS_DEVICE_IO_CONTROL as (EDI handle, ESI code, EDX in, EBX out, EBP the address of
 * { ULONG in_len, out_len, bytes }), and SYS_ALLOCATE_VM, SYS_FREE_VM, SYS_PROTECT_VM with
 * the arguments of include/mdlab/syscalls.h where BaseAddress and RegionSize are 32-bit
 * values behind 32-bit pointers; handles and ULONG_PTR outputs are 4 bytes.
 *
 * Its parameter page (the low 32 bits of each argument): args[0] a command, args[1] an address,
 * args[2] a value, args[3] a second argument.  Every run first reports its CS and ESP.
 */
#ifndef MDLAB_COMPAT32_H
#define MDLAB_COMPAT32_H

#include <stdint.h>

enum compat32_cmd {
	C32_NOTHING,        /* exit(0) */
	C32_READ,           /* report(C32_KEY_READ, *(uint32_t *)addr) */
	C32_WRITE,          /* *(uint32_t *)addr = value, then report(C32_KEY_READ, what reads back) */
	C32_EXEC,           /* call addr; it must not come back */
	C32_SYSENTER,       /* SYSENTER */
	C32_INT80,          /* INT 0x80 (Linux's 32-bit gate) */
	C32_INT2E,          /* INT 0x2E (NT's old gate) */
	C32_SYSCALL64,      /* far jump to the 64-bit user CS, SYSCALL(SYS_REPORT, C32_KEY_64) there */
	C32_HIGH_BITS,      /* in 64-bit mode set RDI = value | 0xFFFF8000 << 32, RSI = addr |
			     * 0xDEAD << 32, back to compatibility mode and SYSCALL(SYS_REPORT)
			     * with EDI and ESI left as they are */
	C32_IOCTL,          /* open the device named at args[8..], DeviceIoControl(code = addr,
			     * in_len = value, out_len = args[3]), close: the in buffer is
			     * bytes i + 1 (with args[4] = 1: a C32_SUM_INPUT for those bytes,
			     * args[5] of them), the out buffer bytes 3i + 7; with
			     * args[6] = 1 the out buffer's first ULONG is then an
			     * address: report(C32_KEY_READ, what it holds) */
	C32_CALL,           /* system call number `value` (addr, args[3]): report(C32_KEY_STATUS, its result) */
	C32_VM,             /* SYS_ALLOCATE_VM(MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) with
			     * BaseAddress = addr, RegionSize = value: report(C32_KEY_STATUS,
			     * C32_KEY_VM_BASE, C32_KEY_VM_SIZE, C32_KEY_CANARY); on success store
			     * C32_VM_WRITTEN at the base, SYS_PROTECT_VM(PAGE_READONLY):
			     * report(C32_KEY_PROTECT, C32_KEY_OLD), and with args[3] bit 0
			     * SYS_FREE_VM(MEM_RELEASE): report(C32_KEY_FREE).  args[4] and args[5],
			     * when not 0, replace the addresses of BaseAddress and RegionSize,
			     * args[6] that of OldProtect (1: NULL) */
};

#define C32_KEY_CS 0x100
#define C32_KEY_ESP 0x101
#define C32_KEY_READ 0x102
#define C32_KEY_STATUS 0x103
#define C32_KEY_64 0x164
#define C32_KEY_OPEN 0x104      /* SYS_OPEN_DEVICE's status */
#define C32_KEY_BYTES 0x105     /* BytesReturned */
#define C32_KEY_OUT 0x106       /* the out buffer's first ULONG */
#define C32_KEY_CANARY 0x107    /* the ULONGs after the handle and after BytesReturned, ANDed */
#define C32_KEY_VM_BASE 0x108  /* BaseAddress after SYS_ALLOCATE_VM */
#define C32_KEY_VM_SIZE 0x109  /* RegionSize after it */
#define C32_KEY_PROTECT 0x10A  /* SYS_PROTECT_VM's status */
#define C32_KEY_OLD 0x10B      /* its OldProtect */
#define C32_KEY_FREE 0x10C     /* SYS_FREE_VM's status */
#define C32_CANARY 0xC0FFEE11u
#define C32_VM_WRITTEN 0x32A110C8u
#define C32_EXIT_CAME_BACK 0x600D
#define C32_BUF_MAX 256

/* The thunking test driver's pointer-carrying request (METHOD_BUFFERED): a buffer the driver
 * reads, as a 32-bit process lays it out. */
struct c32_sum_input32 {
	uint32_t buffer;    /* const void * */
	uint32_t length;
};

#endif
