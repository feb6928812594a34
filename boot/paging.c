/*
 * The page tables the kernel is entered with (see include/mdlab/bootinfo.h):
 *   identity   [0, phys_top)                          RW, executable
 *   direct map [MDLAB_DIRECT_MAP_BASE, +phys_top)     RW, NX when the CPU has NX
 *   kernel     each PT_LOAD at its ELF address        RW, executable, 4 KiB pages
 *
 * Four-level x86-64 paging.  A virtual address splits into
 *   [47:39] PML4 index  [38:30] PDPT index  [29:21] PD index  [20:12] PT index  [11:0] offset
 * and a PDPT entry may map 1 GiB (pdpe1gb), a PD entry 2 MiB.  Every table is one
 * EfiLoaderData page; the loader runs identity-mapped under the firmware's tables, so a
 * table's physical address is also the pointer used to fill it.
 *
 * Only this file knows PTE bits, and pt_enter_kernel is the only CR3 load.
 */
#include "loader.h"

#include <cpuid.h>

#define PTE_PRESENT (1ull << 0)
#define PTE_WRITABLE (1ull << 1)
#define PTE_LARGE (1ull << 7)           /* PS: 1 GiB in a PDPT entry, 2 MiB in a PD entry */
#define PTE_NX (1ull << 63)
#define PTE_ADDR_MASK 0x000FFFFFFFFFF000ull

#define LEVEL_PT 1
#define LEVEL_PD 2
#define LEVEL_PDPT 3
#define LEVEL_PML4 4

#define SIZE_2M (1ull << 21)
#define SIZE_1G (1ull << 30)

#define CPUID_EXT_FEATURES 0x80000001
#define CPUID_EDX_NX (1u << 20)
#define CPUID_EDX_PDPE1GB (1u << 26)

#define MSR_EFER 0xC0000080
#define EFER_NXE (1ull << 11)
#define CR4_LA57 (1ull << 12)

/* What an entry grants; every field is named at each use. */
struct pte_bits {
	bool writable;
	bool no_exec;
	bool large;
};

static uint64_t pte_make(uint64_t pa, struct pte_bits b)
{
	return (pa & PTE_ADDR_MASK) | PTE_PRESENT | (b.writable ? PTE_WRITABLE : 0) |
	       (b.large ? PTE_LARGE : 0) | (b.no_exec ? PTE_NX : 0);
}

static unsigned pt_index(uint64_t va, int level)
{
	return (va >> (12 + 9 * (level - 1))) & 511;
}

/* One zeroed page for a table. */
static EFI_STATUS table_alloc(struct page_tables *pt, uint64_t **table)
{
	EFI_PHYSICAL_ADDRESS phys;
	EFI_STATUS st;

	st = boot_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &phys);
	if (EFI_ERROR(st))
		return boot_error(st, "cannot allocate a page-table page (%u so far): %s",
				  pt->table_pages, efi_status_name(st));
	memset((void *)phys, 0, PAGE_SIZE);
	pt->table_pages++;
	*table = (uint64_t *)phys;
	return EFI_SUCCESS;
}

/*
 * Find the entry for `va` in the table at `level`, creating the tables above it.
 * Intermediate entries are writable and executable: rights are decided at the leaf.
 * Walking through a large page means two mappings collide, a loader bug: reported.
 */
static EFI_STATUS walk(struct page_tables *pt, uint64_t va, int level, uint64_t **entry)
{
	uint64_t *table = pt->pml4;
	EFI_STATUS st;

	for (int l = LEVEL_PML4; l > level; l--) {
		uint64_t *e = &table[pt_index(va, l)];

		if (!(*e & PTE_PRESENT)) {
			uint64_t *next;

			st = table_alloc(pt, &next);
			if (EFI_ERROR(st))
				return st;
			*e = pte_make((uint64_t)next, (struct pte_bits){ .writable = true });
		} else if (*e & PTE_LARGE) {
			return boot_error(EFI_LOAD_ERROR, "walk: 0x%lx already mapped by a large page",
					  va);
		}
		table = (uint64_t *)(*e & PTE_ADDR_MASK);
	}
	*entry = &table[pt_index(va, level)];
	return EFI_SUCCESS;
}

/* Install one leaf.  Installing the same leaf twice is harmless (two kernel segments may
 * share a page); a present leaf with another target or other rights is a loader bug. */
static EFI_STATUS map_one(struct page_tables *pt, uint64_t va, uint64_t pa, int level,
			  struct pte_bits bits)
{
	uint64_t *e = NULL, want = pte_make(pa, bits);
	EFI_STATUS st;

	st = walk(pt, va, level, &e);
	if (EFI_ERROR(st))
		return st;
	if ((*e & PTE_PRESENT) && *e != want)
		return boot_error(EFI_LOAD_ERROR, "map_one: 0x%lx mapped twice", va);
	*e = want;
	return EFI_SUCCESS;
}

EFI_STATUS pt_init(struct page_tables *pt)
{
	unsigned a, b, c, d;
	uint64_t cr4;

	/* Our tables are four-level; a firmware running with LA57 would read them as five. */
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	if (cr4 & CR4_LA57)
		return boot_error(EFI_UNSUPPORTED,
				  "firmware runs with 5-level paging (CR4.LA57), not supported");

	pt->nx = false;
	pt->gbpages = false;
	if (__get_cpuid(CPUID_EXT_FEATURES, &a, &b, &c, &d)) {
		pt->nx = (d & CPUID_EDX_NX) != 0;
		pt->gbpages = (d & CPUID_EDX_PDPE1GB) != 0;
	}
	pt->table_pages = 0;
	return table_alloc(pt, &pt->pml4);
}

EFI_STATUS pt_map_huge(struct page_tables *pt, uint64_t va, uint64_t pa, uint64_t len, bool nx)
{
	struct pte_bits bits = { .writable = true, .no_exec = nx && pt->nx, .large = true };
	EFI_STATUS st;

	if ((va | pa | len) & (SIZE_1G - 1))
		return boot_error(EFI_INVALID_PARAMETER, "pt_map_huge: unaligned range 0x%lx",
				  va);
	for (uint64_t off = 0; off < len; off += SIZE_1G) {
		if (pt->gbpages) {
			st = map_one(pt, va + off, pa + off, LEVEL_PDPT, bits);
			if (EFI_ERROR(st))
				return st;
			continue;
		}
		for (uint64_t o2 = off; o2 < off + SIZE_1G; o2 += SIZE_2M) {
			st = map_one(pt, va + o2, pa + o2, LEVEL_PD, bits);
			if (EFI_ERROR(st))
				return st;
		}
	}
	return EFI_SUCCESS;
}

EFI_STATUS pt_map_small(struct page_tables *pt, uint64_t va, uint64_t pa, uint64_t len)
{
	struct pte_bits bits = { .writable = true, .no_exec = false, .large = false };
	EFI_STATUS st;

	if ((va | pa | len) & (PAGE_SIZE - 1))
		return boot_error(EFI_INVALID_PARAMETER, "pt_map_small: unaligned range 0x%lx",
				  va);
	for (uint64_t off = 0; off < len; off += PAGE_SIZE) {
		st = map_one(pt, va + off, pa + off, LEVEL_PT, bits);
		if (EFI_ERROR(st))
			return st;
	}
	return EFI_SUCCESS;
}

void pt_enter_kernel(const struct page_tables *pt, uint64_t entry, uint64_t arg,
		     uint64_t stack_top)
{
	/* The direct map's NX bits are reserved bits unless EFER.NXE is on. */
	if (pt->nx) {
		uint32_t lo, hi;

		__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_EFER));
		if (!(lo & EFER_NXE))
			__asm__ volatile("wrmsr" : : "a"(lo | (uint32_t)EFER_NXE), "d"(hi),
					 "c"(MSR_EFER));
	}

	/*
	 * One asm block from the CR3 load to the jump, so the compiler cannot touch the old
	 * stack in between.  The code here keeps running after the switch because the new
	 * tables identity-map all of [0, phys_top).  Fixed registers keep RBP (cleared for
	 * the kernel's backtraces) free of operands.  The pushed zero stands for a return
	 * address, so the kernel sees RSP = 8 (mod 16) as after a call.
	 */
	__asm__ volatile(
		"cli\n\t"
		"cld\n\t"
		"mov %%rax, %%cr3\n\t"
		"mov %%rsi, %%rsp\n\t"
		"xor %%ebp, %%ebp\n\t"
		"push %%rbp\n\t"
		"jmp *%%rcx\n\t"
		:
		: "a"((uint64_t)pt->pml4), "S"(stack_top), "c"(entry), "D"(arg)
		: "memory");
	__builtin_unreachable();
}
