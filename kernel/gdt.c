#include "kernel/gdt.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"
#include "kernel/smp/percpu.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* One GDT and TSS per CPU: the TSS holds each CPU's own RSP0 and IST stacks, and loading a
 * TSS marks its descriptor busy, so no two CPUs can share one (SDM Vol. 3, 7.2.2). */
static struct tss tss_of[SMP_MAX_CPUS];
static uint64_t gdt_of[SMP_MAX_CPUS][8];

/* The boot stack (entry.asm switches to it) and one stack per IST slot, in .bss: what the
 * kernel runs on until mm_init gives it stacks with guard pages. */
extern uint8_t boot_stack[];
__attribute__((aligned(16))) static uint8_t ist_stacks[3][KSTACK_SIZE];

/* An IST stack's top as the TSS gets it: 16 bytes below the real top, whose first word names
 * CPU n's struct kcpu for the NMI, #DF and #MC entries (kernel/trap.asm, paranoid_common),
 * which cannot trust the GS base they find.  The CPU pushes its frame below the IST pointer
 * (16-byte aligned), so the word stays as written. */
static uint64_t ist_top(unsigned n, uint64_t top)
{
	uint64_t *slot = (uint64_t *)(top - 16);
	slot[0] = (uint64_t)&kcpus[n];
	slot[1] = 0;
	return top - 16;
}

/* Code/data descriptor: base 0, limit max; `access` is the access byte, `flags` the high
 * nibble (L for 64-bit code, D/B and G for 32-bit). */
static uint64_t seg(uint8_t access, uint8_t flags)
{
	return 0xFFFFull | (0xFull << 48) | ((uint64_t)access << 40) | ((uint64_t)flags << 52);
}

/* Fill CPU n's GDT and its TSS descriptor; the TSS's stacks are set by the caller. */
static void gdt_build(unsigned n)
{
	uint64_t *gdt = gdt_of[n];
	gdt[0] = 0;
	gdt[SEL_KCODE / 8] = seg(0x9A, 0x2);   /* present, ring 0, code, readable; L */
	gdt[SEL_KDATA / 8] = seg(0x92, 0xC);   /* present, ring 0, data, writable */
	gdt[SEL_UCODE32 / 8] = seg(0xFA, 0xC); /* ring 3 32-bit code: D, G */
	gdt[SEL_UDATA / 8] = seg(0xF2, 0xC);   /* ring 3 data */
	gdt[SEL_UCODE64 / 8] = seg(0xFA, 0x2); /* ring 3 64-bit code: L */
	struct tss *tss = &tss_of[n];
	tss->iomap_base = sizeof *tss; /* no I/O permission bitmap */
	uint64_t base = (uint64_t)tss, limit = sizeof *tss - 1;
	gdt[SEL_TSS / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
			   (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
	gdt[SEL_TSS / 8 + 1] = base >> 32;
}

/* Load CPU n's GDT, reload CS through a far return, the data segments, then the TSS. */
static void gdt_load(unsigned n)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr = { sizeof gdt_of[n] - 1, (uint64_t)gdt_of[n] };

	__asm__ volatile("lgdt %0\n\t"
			 "pushq %1\n\t"
			 "leaq 1f(%%rip), %%rax\n\t"
			 "pushq %%rax\n\t"
			 "lretq\n"
			 "1:\n\t"
			 "movw %w2, %%ds\n\t"
			 "movw %w2, %%es\n\t"
			 "movw %w2, %%ss\n\t"
			 "xorl %%eax, %%eax\n\t"
			 "movw %%ax, %%fs\n\t"
			 "movw %%ax, %%gs\n\t"
			 "ltr %w3"
			 :
			 : "m"(gdtr), "i"(SEL_KCODE), "r"(SEL_KDATA), "r"(SEL_TSS)
			 : "rax", "memory");
}

void gdt_init(void)
{
	memset(&tss_of[0], 0, sizeof tss_of[0]);
	for (int i = 0; i < 3; i++) {
		tss_of[0].ist[i] = ist_top(0, (uint64_t)(ist_stacks[i] + KSTACK_SIZE));
		kstack_register((uint64_t)ist_stacks[i], KSTACK_SIZE);
	}
	kstack_register((uint64_t)boot_stack, KSTACK_SIZE);
	gdt_build(0);
	gdt_load(0);
}

void gdt_prepare_cpu(unsigned n, const uint64_t ist_tops[3])
{
	memset(&tss_of[n], 0, sizeof tss_of[n]);
	for (int i = 0; i < 3; i++)
		tss_of[n].ist[i] = ist_top(n, ist_tops[i]);
	gdt_build(n);
}

void gdt_init_cpu(unsigned n) { gdt_load(n); }

/* The boot CPU's, before any other runs (mm_init). */
void gdt_set_ist(int slot, uint64_t top) { tss_of[0].ist[slot - 1] = ist_top(0, top); }
void gdt_set_rsp0(uint64_t top) { tss_of[this_cpu()->number].rsp[0] = top; }
