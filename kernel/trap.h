/* Exceptions: the IDT, the saved register frame and the fault report. */
#ifndef KERNEL_TRAP_H
#define KERNEL_TRAP_H

#include <stdint.h>

/* Layout pushed by kernel/trap.asm; lowest address first. */
struct trap_frame {
	uint64_t cr2;
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error_code;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* #PF error-code bits (SDM Vol. 3, 4.7). */
#define PF_P (1u << 0)
#define PF_W (1u << 1)
#define PF_U (1u << 2)
#define PF_RSVD (1u << 3)
#define PF_ID (1u << 4)
#define PF_PK (1u << 5)
#define PF_SS (1u << 6)

#define VEC_PAGE_FAULT 14

void idt_init(void);
void trap_dispatch(struct trap_frame *f);
const char *trap_vector_name(uint64_t vector);
/* The readable report: vector, error code (decoded for #PF), CR2, RIP, registers, backtrace. */
void trap_print_report(const struct trap_frame *f);

#endif
