/* The kernel address space: the layout of mm/layout.h built on the kernel's own tables. */
#include "mm/mm.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/gdt.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"
#include "mm/uvm.h"
#include "mm/verifier.h"

extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[], __data_start[],
	__kernel_end[];

static const struct mdlab_bootinfo *boot;
static uint64_t next_stack_va = KVA_STACKS_BASE;

uint64_t kernel_image_phys(uint64_t va) { return boot->kernel_phys_base + (va - boot->kernel_virt_base); }

static const struct pt_attrs DIRECT = { .write = true, .exec = false, .global = true, .type = MT_WB };

/* Map every run of RAM descriptors at KVA_DIRECT_MAP_BASE + pa.  Adjacent descriptors are
 * merged first so a large page is used wherever a whole aligned large page is RAM. */
static void map_direct(void)
{
	uint64_t n = boot->memmap_size / boot->memmap_desc_size, run_start = 0, run_end = 0;
	for (uint64_t i = 0; i <= n; i++) {
		const struct mdlab_efi_memdesc *d =
			i < n ? phys_to_virt(boot->memmap + i * boot->memmap_desc_size) : NULL;
		if (d && !efi_type_is_ram(d->type))
			continue;
		uint64_t s = d ? d->phys_start : 0, e = d ? s + d->pages * PAGE_SIZE : 0;
		if (d && s == run_end && run_end) {
			run_end = e;
			continue;
		}
		if (run_end > run_start &&
		    !pt_map(&kernel_root, KVA_DIRECT_MAP_BASE + run_start, run_start, run_end - run_start,
			    DIRECT, PT_MAP_LARGE))
			PANIC("map_direct: out of frames mapping 0x%lx-0x%lx", run_start, run_end);
		run_start = s;
		run_end = e;
	}
}

static void map_image_range(char *start, char *end, struct pt_attrs a)
{
	uint64_t va = (uint64_t)start, size = ALIGN_UP((uint64_t)end, PAGE_SIZE) - va;
	if (!pt_map(&kernel_root, va, kernel_image_phys(va), size, a, 0))
		PANIC("map_image_range: out of frames");
}

uint64_t kstack_create(uint64_t pages)
{
	uint64_t base = next_stack_va + PAGE_SIZE; /* the page below stays unmapped: the guard */
	for (uint64_t i = 0; i < pages; i++) {
		pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_STACK);
		struct pt_attrs a = { .write = true, .exec = false, .global = true, .type = MT_WB };
		if (pfn == PFN_INVALID || !pt_map(&kernel_root, base + i * PAGE_SIZE, pfn << PAGE_SHIFT, PAGE_SIZE, a, 0))
			PANIC("kstack_create: out of frames");
	}
	next_stack_va = base + pages * PAGE_SIZE;
	kstack_register(base, pages * PAGE_SIZE);
	return base + pages * PAGE_SIZE;
}

void mm_cpu_state(struct mm_cpu_state *out)
{
	uint64_t cr4 = read_cr4();
	out->nx = rdmsr(MSR_EFER) & EFER_NXE;
	out->wp = read_cr0() & CR0_WP;
	out->pge = cr4 & CR4_PGE;
	out->smep = cr4 & CR4_SMEP;
	out->smap = cr4 & CR4_SMAP;
}

void mm_init(const struct mdlab_bootinfo *bi, void (*next)(void *), void *arg)
{
	boot = bi;
	if (!cpu_features.nx)
		PANIC("mm_init: the CPU has no NX; mdlab's mappings rely on it");
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE); /* before any entry uses bit 63 */

	pfn_init(bi);
	pat_init();
	if (!pt_kernel_root_init())
		PANIC("mm_init: out of frames for the kernel PML4");
	map_direct();
	map_image_range(__text_start, __text_end, (struct pt_attrs){ .exec = true, .global = true });
	map_image_range(__rodata_start, __rodata_end, (struct pt_attrs){ .global = true });
	map_image_range(__data_start, __kernel_end, (struct pt_attrs){ .write = true, .global = true });
	/* The image's text and rodata are read-only through their direct-map alias too, so no
	 * frame is writable through one mapping and executable through another. */
	uint64_t ro = (uint64_t)phys_to_virt(kernel_image_phys((uint64_t)__text_start));
	if (!pt_protect(&kernel_root, ro, (uint64_t)__rodata_end - (uint64_t)__text_start,
			(struct pt_attrs){ .global = true, .type = MT_WB }))
		PANIC("mm_init: out of frames splitting the image's direct-map alias");

	/* Guarded stacks for the rest of boot and for the IST slots. */
	uint64_t top = kstack_create(KSTACK_PAGES);
	uint64_t ist_df = kstack_create(KSTACK_PAGES), ist_nmi = kstack_create(KSTACK_PAGES),
		 ist_mc = kstack_create(KSTACK_PAGES);

	tlb_switch_to(&kernel_root);
	/* In the new tables, which map the new stacks: gdt_set_ist writes the top word of each. */
	gdt_set_ist(IST_DOUBLE_FAULT, ist_df);
	gdt_set_ist(IST_NMI, ist_nmi);
	gdt_set_ist(IST_MACHINE_CHECK, ist_mc);
	write_cr0(read_cr0() | CR0_WP);
	tlb_enable_cr4((cpu_features.pge ? CR4_PGE : 0) | (cpu_features.smep ? CR4_SMEP : 0) |
		       (cpu_features.smap ? CR4_SMAP : 0));
	tlb_flush_all(&kernel_root);

	/* Nothing of the loader's survives in the translation; its memory comes back. */
	pfn_reclaim_boot_memory(bi);
	syspte_init();
	pool_init();
	verifier_init();
	/* The frame allocator asks the trimmer and the writer before it fails (pfn.h). */
	pfn_set_pressure_relief(uvm_relieve_pressure);
	kstack_switch_and_call(next, arg, top);
}

void mm_print_summary(void)
{
	struct pfn_stats s;
	struct mm_cpu_state c;
	pfn_get_stats(&s);
	mm_cpu_state(&c);
	kprintf("mm: own page tables at 0x%lx; %lu MiB RAM, %lu MiB free, %lu KiB reclaimed from boot, "
		"%lu page-table pages\n", kernel_root.pml4, s.ram >> 8, s.free >> 8, s.reclaimed * 4,
		s.page_tables);
	kprintf("mm: IA32_PAT 0x%016lx; EFER.NXE %d CR0.WP %d CR4.PGE %d CR4.SMEP %d CR4.SMAP %d\n",
		pat_read_msr(), c.nx, c.wp, c.pge, c.smep, c.smap);
}
