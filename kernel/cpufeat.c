#include "kernel/cpufeat.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/printf.h"

struct cpu_features cpu_features;

void cpufeat_init(void)
{
	struct cpu_features *f = &cpu_features;
	uint32_t a, b, c, d, max, maxext;

	cpuid(0, 0, &max, &b, &c, &d);
	memcpy(f->vendor, &b, 4);
	memcpy(f->vendor + 4, &d, 4);
	memcpy(f->vendor + 8, &c, 4);
	f->vendor[12] = 0;

	cpuid(1, 0, &a, &b, &c, &d);
	f->pge = d & (1u << 13);
	f->pat = d & (1u << 16);
	f->mtrr = d & (1u << 12);
	f->pcid = c & (1u << 17);
	f->hypervisor = c & (1u << 31);
	if (max >= 7) {
		cpuid(7, 0, &a, &b, &c, &d);
		f->smep = b & (1u << 7);
		f->smap = b & (1u << 20);
		f->invpcid = b & (1u << 10);
		f->pku = c & (1u << 3);
	}
	cpuid(0x80000000, 0, &maxext, &b, &c, &d);
	if (maxext >= 0x80000001) {
		cpuid(0x80000001, 0, &a, &b, &c, &d);
		f->nx = d & (1u << 20);
		f->page1g = d & (1u << 26);
	}
	if (maxext >= 0x80000004) {
		uint32_t *w = (uint32_t *)f->brand;
		for (uint32_t leaf = 0; leaf < 3; leaf++)
			cpuid(0x80000002 + leaf, 0, &w[leaf * 4], &w[leaf * 4 + 1], &w[leaf * 4 + 2],
			      &w[leaf * 4 + 3]);
		f->brand[48] = 0;
	}
	f->phys_bits = 36;
	f->virt_bits = 48;
	if (maxext >= 0x80000008) {
		cpuid(0x80000008, 0, &a, &b, &c, &d);
		f->phys_bits = a & 0xFF;
		f->virt_bits = (a >> 8) & 0xFF;
	}
}

void cpufeat_print(void)
{
	const struct cpu_features *f = &cpu_features;
	const char *brand = f->brand;
	while (*brand == ' ')
		brand++;
	kprintf("CPU: %s %s, %u-bit physical / %u-bit virtual addresses%s\n", f->vendor, brand,
		f->phys_bits, f->virt_bits, f->hypervisor ? ", under a hypervisor" : "");
	kprintf("CPU features: NX %s  SMEP %s  SMAP %s  PAT %s  PGE %s  1GiB-pages %s  PCID %s  "
		"INVPCID %s  PKU %s\n",
		f->nx ? "yes" : "no", f->smep ? "yes" : "no", f->smap ? "yes" : "no", f->pat ? "yes" : "no",
		f->pge ? "yes" : "no", f->page1g ? "yes" : "no", f->pcid ? "yes" : "no",
		f->invpcid ? "yes" : "no", f->pku ? "yes" : "no");
}
