#include "mm/tlb.h"
#include "kernel/cpu.h"
#include "mm/layout.h"

static struct tlb_stats stats;

void tlb_flush_page(uint64_t va)
{
	tlb_invlpg(va);
	stats.single_pages++;
}

void tlb_flush_all(void)
{
	/* Toggling CR4.PGE drops every translation, global ones included (SDM Vol. 3, 4.10.4.1);
	 * without PGE a CR3 reload does the same. */
	uint64_t cr4 = read_cr4();
	if (cr4 & CR4_PGE) {
		write_cr4(cr4 & ~CR4_PGE);
		write_cr4(cr4);
	} else {
		write_cr3(read_cr3());
	}
	stats.full_flushes++;
}

void tlb_flush_range(uint64_t va, uint64_t size)
{
	uint64_t start = va & ~(PAGE_SIZE - 1);
	uint64_t pages = (va + size - start + PAGE_SIZE - 1) / PAGE_SIZE;
	if (!size)
		return;
	if (pages > TLB_SINGLE_FLUSH_MAX) {
		tlb_flush_all();
		return;
	}
	for (uint64_t i = 0; i < pages; i++)
		tlb_flush_page(start + i * PAGE_SIZE);
}

void tlb_load_root(uint64_t pml4_pa) { write_cr3(pml4_pa); }

void tlb_get_stats(struct tlb_stats *out) { *out = stats; }
