/* GDT, TSS and the interrupt stacks.
 * Selector layout is fixed by SYSCALL/SYSRET (STAR): kernel code, kernel data, then user
 * 32-bit code, user data, user 64-bit code, so SYSRET finds its selectors at +8/+16. */
#ifndef KERNEL_GDT_H
#define KERNEL_GDT_H

#include <stdint.h>

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE32 0x18
#define SEL_UDATA 0x20
#define SEL_UCODE64 0x28
#define SEL_TSS 0x30

/* IST slots (1-based, as the IDT gate encodes them). */
#define IST_DOUBLE_FAULT 1
#define IST_NMI 2
#define IST_MACHINE_CHECK 3

#define KSTACK_SIZE 16384

/* The boot CPU's GDT and TSS, loaded. */
void gdt_init(void);
/* Another CPU's: build CPU n's GDT and TSS with these IST stack tops (the boot CPU, before
 * it starts CPU n), then load them (CPU n itself, first thing). */
void gdt_prepare_cpu(unsigned n, const uint64_t ist_tops[3]);
void gdt_init_cpu(unsigned n);

/* Point one of the boot CPU's IST slots (1-3) at a new stack top. */
void gdt_set_ist(int slot, uint64_t top);
/* The stack this CPU switches to on an interrupt or fault from ring 3. */
void gdt_set_rsp0(uint64_t top);

#endif
