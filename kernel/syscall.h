/* System calls from ring 3 (SYSCALL/SYSRET); the numbers are in include/mdlab/syscalls.h. */
#ifndef KERNEL_SYSCALL_H
#define KERNEL_SYSCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct syscall_frame {
	uint64_t nr, rdi, rsi, rdx, r10, r8, r9;
	uint64_t rip, rflags, rsp;   /* the user's, restored by SYSRET */
};

/* Program STAR, LSTAR and FMASK and enable EFER.SCE. */
void syscall_init(void);
/* The kernel stack top a system call from the running process starts on. */
void syscall_set_kernel_stack(uint64_t top);
uint64_t syscall_dispatch(struct syscall_frame *f);
/* SYSCALL from compatibility mode (IA32_CSTAR): the services of the 32-bit convention
 * (include/mdlab/compat32.h) for a process running a 32-bit image; any other process is
 * ended with STATUS_INVALID_SYSTEM_SERVICE (mm/RULES.md, "CPU entry points"). */
uint64_t syscall_compat_dispatch(struct syscall_frame *f);
/* Whether SYSRET may return to rip: below USER_VA_END, hence canonical (SYSRET with a
 * non-canonical RCX faults in ring 0 on Intel CPUs, on the user's stack). */
bool syscall_return_rip_ok(uint64_t rip);
/* SYS_DEBUG_PRINT's escaping of n user bytes into out (4 * n + 1 bytes): printable ASCII but
 * the backslash as it is, every other byte (CR, LF, ESC, NUL, ...) as \xHH; NUL-terminated.
 * Returns the length written. */
size_t syscall_escape_user_text(char *out, const char *s, size_t n);

#endif
