/* TLB invalidation and address-space switches (see tlb.h for the contract). */
#include "mm/tlb.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "mm/layout.h"
#include "mm/pt.h"

/* The control-register writes that change what is translated: here and nowhere else. */
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" ::"r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

static struct tlb_stats stats;

/* The address space this CPU has loaded (one per CPU once there are more); NULL while the
 * loader's tables are still in CR3. */
static const struct pt_root *loaded;

/* Whether root's translations of va may be cached on this CPU (tlb.h: kernel_root's
 * everywhere; a process's only where it is loaded). */
static inline bool cached_here(const struct pt_root *root, uint64_t va)
{
	return root == &kernel_root || root == loaded || va >= USER_VA_END;
}

/* Everything, global entries included: toggling CR4.PGE drops every translation and every
 * paging-structure cache entry (SDM Vol. 3, 4.10.4.1); without PGE nothing is global and a
 * CR3 reload does the same. */
static void flush_everything(void)
{
	uint64_t cr4 = read_cr4();
	if (cr4 & CR4_PGE) {
		write_cr4(cr4 & ~CR4_PGE);
		write_cr4(cr4);
	} else {
		write_cr3(read_cr3());
	}
	stats.full_flushes++;
}

/* Every non-global translation: a CR3 reload. */
static void flush_non_global(void)
{
	write_cr3(read_cr3());
	stats.full_flushes++;
}

void tlb_flush_page(const struct pt_root *root, uint64_t va)
{
	if (!cached_here(root, va))
		return;
	invlpg(va);
	stats.single_pages++;
}

void tlb_flush_all(const struct pt_root *root)
{
	if (root == &kernel_root)
		flush_everything();
	else if (root == loaded)
		flush_non_global(); /* a process's translations are all non-global */
}

void tlb_flush_range(const struct pt_root *root, uint64_t va, uint64_t size)
{
	uint64_t start = va & ~(PAGE_SIZE - 1), last = va + size - 1;
	uint64_t pages = (va + size - start + PAGE_SIZE - 1) / PAGE_SIZE;
	if (!size || !cached_here(root, last))
		return;
	if (pages > TLB_SINGLE_FLUSH_MAX) {
		if (root == &kernel_root || last >= USER_VA_END)
			flush_everything();
		else
			flush_non_global();
		return;
	}
	for (uint64_t i = 0; i < pages; i++) {
		invlpg(start + i * PAGE_SIZE);
		stats.single_pages++;
	}
}

void tlb_switch_to(const struct pt_root *root)
{
	loaded = root;
	write_cr3(root->pml4);
}

void tlb_enable_cr4(uint64_t bits)
{
	if (bits & ~(CR4_PGE | CR4_SMEP | CR4_SMAP))
		PANIC("tlb_enable_cr4: 0x%lx holds bits other than PGE, SMEP and SMAP", bits);
	write_cr4(read_cr4() | bits);
}

void tlb_get_stats(struct tlb_stats *out) { *out = stats; }
