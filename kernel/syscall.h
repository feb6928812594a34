/* System calls from ring 3 (SYSCALL/SYSRET); the numbers are in include/mdlab/syscalls.h. */
#ifndef KERNEL_SYSCALL_H
#define KERNEL_SYSCALL_H

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

#endif
