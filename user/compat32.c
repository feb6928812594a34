/* The 32-bit test program: built with -m32 as a static ELF32, run by the kernel in IA-32e
 * compatibility mode (CS 0x1B, a 32-bit stack, an address space below 2 GiB).  What it does
 * is its parameter page's command (include/mdlab/compat32.h); the kernel tests in
 * tests/compat32_test.c check the results and the faults. */
#include <stdint.h>
#include "include/mdlab/compat32.h"
#include "include/mdlab/syscalls.h"

uint32_t syscall32(uint32_t n, uint32_t a, uint32_t b, uint32_t c, uint32_t d);
uint32_t syscall32_ioctl(uint32_t handle, uint32_t code, uint32_t in, uint32_t out, const uint32_t *rest);
void c32_sysenter(void);
void c32_int80(void);
void c32_int2e(void);
void c32_syscall64(void);
void c32_high_bits(uint32_t key, uint32_t value);
int main(void);

static void report(uint32_t key, uint32_t value) { syscall32(SYS_REPORT, key, value, 0, 0); }

static uint8_t in_buf[C32_BUF_MAX], out_buf[C32_BUF_MAX];
static struct {
	uint32_t handle, canary1, bytes, canary2;
} io_out;

static void ioctl(const volatile struct user_params *up, uint32_t code, uint32_t in_len, uint32_t out_len)
{
	struct c32_sum_input32 sum;
	uint32_t rest[3];
	const void *in = in_buf;
	for (uint32_t i = 0; i < C32_BUF_MAX; i++) {
		in_buf[i] = (uint8_t)(i + 1);
		out_buf[i] = (uint8_t)(3 * i + 7);
	}
	if (up->args[4] == 1) {
		sum.buffer = (uint32_t)in_buf;
		sum.length = (uint32_t)up->args[5];
		in = &sum;
	}
	io_out.canary1 = io_out.canary2 = C32_CANARY;
	uint32_t st = syscall32(SYS_OPEN_DEVICE, (uint32_t)&up->args[8], (uint32_t)&io_out.handle, 0, 0);
	report(C32_KEY_OPEN, st);
	if (st)
		return;
	rest[0] = in_len;
	rest[1] = out_len;
	rest[2] = (uint32_t)&io_out.bytes;
	st = syscall32_ioctl(io_out.handle, code, (uint32_t)in, (uint32_t)out_buf, rest);
	report(C32_KEY_STATUS, st);
	report(C32_KEY_BYTES, io_out.bytes);
	report(C32_KEY_OUT, *(uint32_t *)out_buf);
	report(C32_KEY_CANARY, io_out.canary1 & io_out.canary2);
	if (st == 0 && up->args[6] == 1)
		report(C32_KEY_READ, **(volatile uint32_t **)out_buf);
	syscall32(SYS_CLOSE, io_out.handle, 0, 0, 0);
}

static struct {
	uint32_t base, canary1, size, canary2, old, canary3;
} vm;

/* Allocate, write, protect and free with 32-bit BaseAddress and RegionSize (C32_VM). */
static void vm_calls(const volatile struct user_params *up, uint32_t base, uint32_t size)
{
	uint32_t pbase = up->args[4] ? (uint32_t)up->args[4] : (uint32_t)&vm.base;
	uint32_t psize = up->args[5] ? (uint32_t)up->args[5] : (uint32_t)&vm.size;
	uint32_t pold = up->args[6] == 1 ? 0 : up->args[6] ? (uint32_t)up->args[6] : (uint32_t)&vm.old;
	vm.canary1 = vm.canary2 = vm.canary3 = C32_CANARY;
	vm.base = base;
	vm.size = size;
	vm.old = 0;
	uint32_t st = syscall32(SYS_ALLOCATE_VM, pbase, psize, 0x3000 /* MEM_COMMIT | MEM_RESERVE */, 0x04);
	report(C32_KEY_STATUS, st);
	report(C32_KEY_VM_BASE, vm.base);
	report(C32_KEY_VM_SIZE, vm.size);
	report(C32_KEY_CANARY, vm.canary1 & vm.canary2);
	if (st)
		return;
	*(volatile uint32_t *)vm.base = C32_VM_WRITTEN;
	st = syscall32(SYS_PROTECT_VM, (uint32_t)&vm.base, (uint32_t)&vm.size, 0x02 /* PAGE_READONLY */, pold);
	report(C32_KEY_PROTECT, st);
	report(C32_KEY_OLD, vm.old);
	report(C32_KEY_CANARY, vm.canary1 & vm.canary2 & vm.canary3);
	if (up->args[3] & 1) {
		vm.size = 0;
		report(C32_KEY_FREE, syscall32(SYS_FREE_VM, (uint32_t)&vm.base, (uint32_t)&vm.size, 0x8000 /* MEM_RELEASE */, 0));
	}
}

int main(void)
{
	const volatile struct user_params *up = (const void *)USER_PARAMS_VA;
	uint32_t cmd = (uint32_t)up->args[0], addr = (uint32_t)up->args[1], value = (uint32_t)up->args[2];
	uint32_t cs, esp;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	__asm__ volatile("mov %%esp, %0" : "=r"(esp));
	report(C32_KEY_CS, cs);
	report(C32_KEY_ESP, esp);
	switch (cmd) {
	case C32_READ:
		report(C32_KEY_READ, *(volatile uint32_t *)addr);
		return 0;
	case C32_WRITE:
		*(volatile uint32_t *)addr = value;
		report(C32_KEY_READ, *(volatile uint32_t *)addr);
		return 0;
	case C32_EXEC:
		((void (*)(void))addr)();
		return C32_EXIT_CAME_BACK;
	case C32_SYSENTER:
		c32_sysenter();
		return C32_EXIT_CAME_BACK;
	case C32_INT80:
		c32_int80();
		return C32_EXIT_CAME_BACK;
	case C32_INT2E:
		c32_int2e();
		return C32_EXIT_CAME_BACK;
	case C32_SYSCALL64:
		c32_syscall64();
		return C32_EXIT_CAME_BACK;
	case C32_HIGH_BITS:
		c32_high_bits(value, addr);
		return 0;
	case C32_IOCTL:
		ioctl(up, addr, value, (uint32_t)up->args[3]);
		return 0;
	case C32_CALL:
		report(C32_KEY_STATUS, syscall32(value, addr, (uint32_t)up->args[3], 0, 0));
		return 0;
	case C32_VM:
		vm_calls(up, addr, value);
		return 0;
	default:
		return 0;
	}
}
