#include "kernel/kstack.h"
#include "kernel/bugcheck.h"

#include "kernel/smp/percpu.h"

/* The boot stack and the boot CPU's three static IST stacks, the four mm_init makes, and each
 * AP's start stack and three IST stacks. */
#define MAX_STACKS (8 + 4 * SMP_MAX_CPUS)

static struct {
	uint64_t base, size;
} stacks[MAX_STACKS];
static int nstacks;

void kstack_register(uint64_t base, uint64_t size)
{
	if (nstacks == MAX_STACKS)
		PANIC("kstack_register: more than %d stacks", MAX_STACKS);
	stacks[nstacks].base = base;
	stacks[nstacks].size = size;
	nstacks++;
}

int kstack_contains(uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;
	if (end < addr)
		return 0;
	for (int i = 0; i < nstacks; i++)
		if (addr >= stacks[i].base && end <= stacks[i].base + stacks[i].size)
			return 1;
	return 0;
}
