/* CPU features that matter to mdlab, read once from CPUID. */
#ifndef KERNEL_CPUFEAT_H
#define KERNEL_CPUFEAT_H

#include <stdbool.h>

struct cpu_features {
	char vendor[13];
	char brand[49];
	bool nx, smep, smap, pat, pge, page1g, pcid, invpcid, pku, mtrr, hypervisor;
	unsigned phys_bits, virt_bits;
};

extern struct cpu_features cpu_features;
void cpufeat_init(void);
void cpufeat_print(void);

#endif
