/* Exceptions: the IDT, the saved register frame and the fault report. */
#ifndef KERNEL_TRAP_H
#define KERNEL_TRAP_H

#include <stdint.h>
#include "include/mdlab/ntdef.h"

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

/* Exception vectors (SDM Vol. 3, 6.3.1). */
#define VEC_DIVIDE_ERROR 0          /* #DE */
#define VEC_DEBUG 1                 /* #DB */
#define VEC_NMI 2
#define VEC_BREAKPOINT 3            /* #BP */
#define VEC_OVERFLOW 4              /* #OF */
#define VEC_BOUND_RANGE 5           /* #BR */
#define VEC_INVALID_OPCODE 6        /* #UD */
#define VEC_DEVICE_NOT_AVAILABLE 7  /* #NM */
#define VEC_DOUBLE_FAULT 8          /* #DF */
#define VEC_COPROCESSOR_OVERRUN 9
#define VEC_INVALID_TSS 10          /* #TS */
#define VEC_SEGMENT_NOT_PRESENT 11  /* #NP */
#define VEC_STACK_FAULT 12          /* #SS */
#define VEC_GENERAL_PROTECTION 13   /* #GP */
#define VEC_PAGE_FAULT 14           /* #PF */
#define VEC_X87_FP 16               /* #MF */
#define VEC_ALIGNMENT_CHECK 17      /* #AC */
#define VEC_MACHINE_CHECK 18        /* #MC */
#define VEC_SIMD_FP 19              /* #XM */
#define VEC_EXCEPTIONS 32           /* vectors 0-31 are the CPU's */

void idt_init(void);
/* Load the IDT (the one table every CPU shares) on this CPU: idt_init does it on the boot
 * CPU, each AP does it as it starts. */
void idt_load(void);
void trap_dispatch(struct trap_frame *f);
/* For tests: the next NMI CPU `cpu` takes (when no bug check freezes it) is counted in its
 * struct kcpu (nmis_taken, nmi_saw_gs_base: the GS base the entry found) and resumed, instead
 * of stopping the machine with NMI_HARDWARE_FAILURE. */
void trap_expect_nmi(unsigned cpu);
const char *trap_vector_name(uint64_t vector);
/* The NTSTATUS an exception is raised with, as NT's trap handlers choose it: from the vector,
 * and for a user #GP from the instruction (STATUS_PRIVILEGED_INSTRUCTION for one only ring 0
 * may run), for #MF and #XM from the pending floating-point exception.  ps_user_fault ends a
 * process with it; trap_dispatch raises it in the kernel. */
NTSTATUS trap_exception_code(const struct trap_frame *f);
/* The readable report: vector, error code (decoded for #PF), CR2, RIP, registers, backtrace. */
void trap_print_report(const struct trap_frame *f);

/* mdlab's MCA_EXCEPTION: what the machine-check banks held when a #MC stopped the machine
 * (bug check 0x9C: bank, this record, MCi_STATUS high and low). */
struct trap_mca_exception {
	uint64_t bank, status, addr;
};
const struct trap_mca_exception *trap_mca_exception(void);

#endif
