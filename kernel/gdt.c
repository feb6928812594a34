#include "kernel/gdt.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

static struct tss tss;
static uint64_t gdt[8];

/* The boot stack (entry.asm switches to it) and one stack per IST slot, in .bss: what the
 * kernel runs on until mm_init gives it stacks with guard pages. */
extern uint8_t boot_stack[];
__attribute__((aligned(16))) static uint8_t ist_stacks[3][KSTACK_SIZE];

/* Code/data descriptor: base 0, limit max; `access` is the access byte, `flags` the high
 * nibble (L for 64-bit code, D/B and G for 32-bit). */
static uint64_t seg(uint8_t access, uint8_t flags)
{
	return 0xFFFFull | (0xFull << 48) | ((uint64_t)access << 40) | ((uint64_t)flags << 52);
}

void gdt_init(void)
{
	gdt[0] = 0;
	gdt[SEL_KCODE / 8] = seg(0x9A, 0x2);   /* present, ring 0, code, readable; L */
	gdt[SEL_KDATA / 8] = seg(0x92, 0xC);   /* present, ring 0, data, writable */
	gdt[SEL_UCODE32 / 8] = seg(0xFA, 0xC); /* ring 3 32-bit code: D, G */
	gdt[SEL_UDATA / 8] = seg(0xF2, 0xC);   /* ring 3 data */
	gdt[SEL_UCODE64 / 8] = seg(0xFA, 0x2); /* ring 3 64-bit code: L */

	memset(&tss, 0, sizeof tss);
	for (int i = 0; i < 3; i++) {
		tss.ist[i] = (uint64_t)(ist_stacks[i] + KSTACK_SIZE);
		kstack_register((uint64_t)ist_stacks[i], KSTACK_SIZE);
	}
	kstack_register((uint64_t)boot_stack, KSTACK_SIZE);
	tss.iomap_base = sizeof tss; /* no I/O permission bitmap */
	uint64_t base = (uint64_t)&tss, limit = sizeof tss - 1;
	gdt[SEL_TSS / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
			   (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
	gdt[SEL_TSS / 8 + 1] = base >> 32;

	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr = { sizeof gdt - 1, (uint64_t)gdt };

	/* Load the GDT, reload CS through a far return, the data segments, then the TSS. */
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

void gdt_set_ist(int slot, uint64_t top) { tss.ist[slot - 1] = top; }
void gdt_set_rsp0(uint64_t top) { tss.rsp[0] = top; }
