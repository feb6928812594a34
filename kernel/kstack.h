/* Kernel stacks: where they are, for backtraces and fault reports. */
#ifndef KERNEL_KSTACK_H
#define KERNEL_KSTACK_H

#include <stdint.h>

#define KSTACK_PAGES 8

/* Note [base, base + size) as a kernel stack. */
void kstack_register(uint64_t base, uint64_t size);
/* Whether [addr, addr + len) lies inside one registered stack. */
int kstack_contains(uint64_t addr, uint64_t len);

/* Switch RSP to `top` and call fn(arg) there; fn must not return. */
__attribute__((noreturn)) void kstack_switch_and_call(void (*fn)(void *), void *arg, uint64_t top);

#endif
