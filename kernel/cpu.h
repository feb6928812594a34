/* Small inline wrappers for privileged x86-64 instructions. */
#ifndef KERNEL_CPU_H
#define KERNEL_CPU_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

/* CR3 and CR4 are read here and written only by mm/tlb.c: loading CR3 or toggling CR4.PGE
 * changes what is translated, and the TLB module is the one place that does. */
#define DEFINE_READ_CR(n)                                                         \
	static inline uint64_t read_cr##n(void)                                   \
	{                                                                         \
		uint64_t v;                                                       \
		__asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));                 \
		return v;                                                         \
	}
#define DEFINE_WRITE_CR(n) \
	static inline void write_cr##n(uint64_t v) { __asm__ volatile("mov %0, %%cr" #n ::"r"(v) : "memory"); }
DEFINE_READ_CR(0)
DEFINE_READ_CR(2)
DEFINE_READ_CR(3)
DEFINE_READ_CR(4)
DEFINE_READ_CR(8)
DEFINE_WRITE_CR(0)
DEFINE_WRITE_CR(8)
#undef DEFINE_READ_CR
#undef DEFINE_WRITE_CR

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

static inline uint64_t read_rflags(void)
{
	uint64_t f;
	__asm__ volatile("pushfq; popq %0" : "=r"(f));
	return f;
}
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause"); }
__attribute__((noreturn)) static inline void cpu_halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

#define MSR_EFER 0xC0000080u
#define MSR_PAT 0x277u
#define MSR_GS_BASE 0xC0000101u
#define EFER_NXE (1ull << 11)
#define CR0_WP (1ull << 16)
#define CR4_PGE (1ull << 7)
#define CR4_PCIDE (1ull << 17)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define RFLAGS_IF (1ull << 9)

/* A bare spin lock held with interrupts off, for the short sections below the IRQL
 * machinery that no CPU holds while it waits for another (the DPC queues, the I/O APIC's
 * register window): take it, returning RFLAGS as they were; give it back, interrupts on
 * again if they were. */
static inline uint64_t raw_lock_irqsave(volatile uint32_t *lock)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory");
	while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	return flags;
}

static inline void raw_unlock_irqrestore(volatile uint32_t *lock, uint64_t flags)
{
	__atomic_store_n(lock, 0, __ATOMIC_RELEASE);
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
}
#define RFLAGS_AC (1ull << 18)

#endif
