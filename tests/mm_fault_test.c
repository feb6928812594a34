/*
 * The protections of the kernel address space, proven by real faults: every access that
 * must be refused is made inside __try, and the case checks the vector, the exact #PF
 * error code (x86-paging.md: P 0, W 1, U 2, I/D 4) and CR2 — RIP too where the faulting
 * instruction is known.  Where a rule is carried by a table bit, the raw entry is read as
 * well, and a positive control shows the same access succeeding once the bit allows it.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/faultcap.h"
#include "kernel/intr/intr.h"
#include "kernel/irql.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"
#include "mm/mm.h"
#include "mm/tlb.h"

#define POOL_TAG 0x746C664Du /* "Mflt" */

extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[], __data_start[],
	__kernel_end[];

/* A constant table the linker places in .rodata. */
__attribute__((used)) static const uint8_t rodata_table[64] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
/* `ret` in initialised data (.data) and in zero-initialised data (.bss). */
__attribute__((used)) static uint8_t data_code[16] = { FAULTCAP_RET_OPCODE };
__attribute__((used)) static uint8_t bss_code[16];

static const struct pt_attrs KERNEL_RW = { .write = true, .type = MT_WB };
static const struct pt_attrs USER_RW = { .write = true, .user = true, .type = MT_WB };

static void write_to_kernel_text_faults(struct ktest *t)
{
	uint64_t va = (uint64_t)pt_query;
	ASSERT_TRUE(t, va >= (uint64_t)__text_start && va < (uint64_t)__text_end);
	struct mmt_rights r = mmt_rights_of(va);
	EXPECT_TRUE(t, r.present);
	EXPECT_FALSE(t, r.write);
	EXPECT_FALSE(t, r.nx);
	expect_write_refused(t, va);
	/* The last byte of text too: the whole section, not just where a function sits. */
	expect_write_refused(t, (uint64_t)__text_end - 1);
}

static void write_to_rodata_faults(struct ktest *t)
{
	uint64_t va = (uint64_t)&rodata_table[5];
	ASSERT_TRUE(t, va >= (uint64_t)__rodata_start && va < (uint64_t)__rodata_end);
	struct mmt_rights r = mmt_rights_of(va);
	EXPECT_TRUE(t, r.present);
	EXPECT_FALSE(t, r.write);
	EXPECT_TRUE(t, r.nx);
	expect_write_refused(t, va);
	EXPECT_EQ(t, *(volatile const uint8_t *)va, 6);
}

/* The image's text and rodata frames are read-only through their direct-map alias as well:
 * no frame is writable through one mapping and executable through another. */
static void write_to_image_through_direct_map_faults(struct ktest *t)
{
	uint64_t text = (uint64_t)phys_to_virt(kernel_image_phys((uint64_t)pt_query));
	uint64_t ro = (uint64_t)phys_to_virt(kernel_image_phys((uint64_t)&rodata_table[9]));
	struct faultcap f;
	uint8_t v = 0;
	/* The alias is the same memory: it reads what the image mapping reads. */
	EXPECT_TRUE(t, faultcap_try_load8(text, &v, &f));
	EXPECT_EQ(t, v, *(volatile uint8_t *)pt_query);
	EXPECT_TRUE(t, faultcap_try_load8(ro, &v, &f));
	EXPECT_EQ(t, v, *(volatile const uint8_t *)&rodata_table[9]);
	EXPECT_FALSE(t, mmt_rights_of(text).write);
	EXPECT_FALSE(t, mmt_rights_of(ro).write);
	expect_write_refused(t, text);
	expect_write_refused(t, ro);
}

static void execute_from_data_faults(struct ktest *t)
{
	uint64_t d = (uint64_t)data_code, b = (uint64_t)bss_code;
	ASSERT_TRUE(t, d >= (uint64_t)__data_start && d < (uint64_t)__kernel_end);
	ASSERT_TRUE(t, b >= (uint64_t)__data_start && b < (uint64_t)__kernel_end);
	bss_code[0] = FAULTCAP_RET_OPCODE;
	EXPECT_TRUE(t, mmt_rights_of(d).nx);
	EXPECT_TRUE(t, mmt_rights_of(b).nx);
	expect_fetch_refused(t, d);
	expect_fetch_refused(t, b);
	bss_code[0] = 0;
}

static void execute_from_stack_faults(struct ktest *t)
{
	volatile uint8_t code[16] = { FAULTCAP_RET_OPCODE };
	uint64_t va = (uint64_t)&code[0];
	ASSERT_TRUE(t, va >= KVA_STACKS_BASE && va < KVA_STACKS_END);
	EXPECT_TRUE(t, mmt_rights_of(va).nx);
	expect_fetch_refused(t, va);
	EXPECT_EQ(t, code[0], FAULTCAP_RET_OPCODE);
}

static void execute_from_direct_map_faults(struct ktest *t)
{
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	uint8_t *p = pfn_to_virt(pfn);
	p[0] = FAULTCAP_RET_OPCODE;
	p[100] = FAULTCAP_RET_OPCODE;
	EXPECT_TRUE(t, mmt_rights_of((uint64_t)p).nx);
	expect_fetch_refused(t, (uint64_t)p);
	expect_fetch_refused(t, (uint64_t)p + 100);
	pfn_free(pfn);
}

/* Nonpaged pool is NX (POOL_FLAG_NON_PAGED, not ..._EXECUTE): a slab slot and a
 * whole-page allocation. */
static void execute_from_pool_faults(struct ktest *t)
{
	uint8_t *small = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, POOL_TAG);
	uint8_t *large = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, POOL_TAG);
	if (small) {
		EXPECT_TRUE(t, (uint64_t)small >= KVA_POOL_BASE && (uint64_t)small < KVA_POOL_END);
		small[0] = FAULTCAP_RET_OPCODE;
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)small).nx);
		expect_fetch_refused(t, (uint64_t)small);
		ExFreePoolWithTag(small, POOL_TAG);
	}
	if (large) {
		large[PAGE_SIZE + 16] = FAULTCAP_RET_OPCODE;
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)large + PAGE_SIZE).nx);
		expect_fetch_refused(t, (uint64_t)large + PAGE_SIZE + 16);
		ExFreePoolWithTag(large, POOL_TAG);
	}
	EXPECT_TRUE(t, small && large);
}

/* The control for the NX cases: the same frame, mapped executable, runs; mapped without
 * exec at a second address, faults.  So the fetch faults are the NX bit's doing. */
static void execute_needs_nx_clear(struct ktest *t)
{
	uint64_t x = scratch_kva(2 * PAGE_SIZE, 0), nx = x + PAGE_SIZE;
	ASSERT_TRUE(t, mmt_va_unmapped(x) && mmt_va_unmapped(nx));
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	*(uint8_t *)pfn_to_virt(pfn) = FAULTCAP_RET_OPCODE;
	struct pt_attrs exec = { .exec = true, .type = MT_WB }, noexec = { .type = MT_WB };
	EXPECT_TRUE(t, pt_map(&kernel_root, x, pfn << PAGE_SHIFT, PAGE_SIZE, exec, 0));
	EXPECT_TRUE(t, pt_map(&kernel_root, nx, pfn << PAGE_SHIFT, PAGE_SIZE, noexec, 0));

	struct mmt_rights rx = mmt_rights_of(x), rnx = mmt_rights_of(nx);
	EXPECT_TRUE(t, rx.present && !rx.nx && !rx.write);
	EXPECT_TRUE(t, rnx.present && rnx.nx && !rnx.write);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_call(x, &f));
	expect_fetch_refused(t, nx);

	pt_unmap(&kernel_root, x, 2 * PAGE_SIZE);
	pfn_free(pfn);
}

/* One user page in the user half of the kernel's tables, for the SMAP and SMEP cases. */
static bool map_user_page(struct ktest *t, uint64_t va, pfn_t *pfn, struct pt_attrs a, uint8_t first)
{
	if (!scratch_map_page(t, va, pfn, a, first))
		return false;
	struct mmt_rights r = mmt_rights_of(va);
	EXPECT_TRUE(t, r.present && r.user);
	return true;
}

static void unmap_user_page(uint64_t va, pfn_t pfn) { scratch_unmap_page(va, pfn); }

static void smap_blocks_kernel_access_outside_window(struct ktest *t)
{
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP");
	ASSERT_TRUE(t, read_cr4() & CR4_SMAP); /* mm_init turns it on when the CPU has it */
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x3000;
	pfn_t pfn;
	struct faultcap f;
	uint8_t v = 0;
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, USER_RW, 0x77));
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC);

	EXPECT_FALSE(t, faultcap_try_load8(va, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_PROTECTION, va);
	EXPECT_EQ(t, f.rip, (uint64_t)faultcap_load8);
	EXPECT_FALSE(t, faultcap_try_store8(va, 0x77, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_WRITE_PROTECTION, va);
	EXPECT_EQ(t, f.rip, (uint64_t)faultcap_store8);

	/* Inside the window both work, on the frame the mapping names. */
	user_access_begin();
	bool read_ok = faultcap_try_load8(va, &v, &f);
	bool write_ok = faultcap_try_store8(va + 1, 0x99, &f);
	user_access_end();
	EXPECT_TRUE(t, read_ok);
	EXPECT_EQ(t, v, 0x77);
	EXPECT_TRUE(t, write_ok);
	EXPECT_EQ(t, ((uint8_t *)pfn_to_virt(pfn))[1], 0x99);

	/* And the window closes again. */
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC);
	EXPECT_FALSE(t, faultcap_try_load8(va, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_PROTECTION, va);

	unmap_user_page(va, pfn);
}

/* The SEH restores RFLAGS.AC to its value at the __try: a fault inside a window opened
 * within the __try leaves it closed, and SMAP is enforced again. */
static void fault_inside_user_window_closes_it(struct ktest *t)
{
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP");
	ASSERT_TRUE(t, read_cr4() & CR4_SMAP);
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x5000, hole = scratch_unmapped_kva(PAGE_SIZE) + 0x40;
	pfn_t pfn;
	struct faultcap f;
	uint8_t v;
	volatile int handled = 0;
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, USER_RW, 0x31));
	__try {
		user_access_begin();
		faultcap_load8(hole);
		user_access_end();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		handled = 1;
	}
	EXPECT_TRUE(t, handled);
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC);
	EXPECT_FALSE(t, faultcap_try_load8(va, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_PROTECTION, va);
	unmap_user_page(va, pfn);
}

/* An interrupt taken inside a kernel STAC window (a copy from user memory, say) runs its
 * handler with AC clear, SMAP enforced: the entry stub's CLAC (kernel/trap.asm).  The handler
 * of a self-IPI reads RFLAGS and makes the machine's own probe of the user page: SMAP's fault,
 * P=1, read, supervisor, CR2 the page.  IRETQ gives the window its AC back: after the
 * interrupt the page reads.  Without the CLAC the handler read the page with SMAP off. */
#define STAC_TEST_VECTOR 0x5B
static struct stac_irq {
	uint64_t va;
	volatile uint32_t served;
	bool ac;
	bool read_ok;
	struct faultcap f;
} stac_irq;

static void probe_in_interrupt(void *context)
{
	struct stac_irq *s = context;
	uint8_t v;
	s->ac = read_rflags() & RFLAGS_AC;
	s->read_ok = faultcap_try_load8(s->va, &v, &s->f);
	__atomic_store_n(&s->served, 1, __ATOMIC_RELEASE);
}

static void an_interrupt_in_a_stac_window_runs_with_smap_on(struct ktest *t)
{
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP");
	ASSERT_TRUE(t, read_cr4() & CR4_SMAP);
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x6000;
	pfn_t pfn;
	uint8_t v = 0;
	struct faultcap after;
	ASSERT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, USER_RW, 0x5C));
	memset(&stac_irq, 0, sizeof stac_irq);
	stac_irq.va = va;
	if (!intr_connect(STAC_TEST_VECTOR, probe_in_interrupt, &stac_irq)) {
		unmap_user_page(va, pfn);
		KTEST_FAIL(t, "intr_connect(0x%x) refused", STAC_TEST_VECTOR);
		ktest_abort(t);
	}
	user_access_begin();
	lapic_send_ipi(0, STAC_TEST_VECTOR | ICR_FIXED | ICR_ASSERT | ICR_SELF);
	bool came = smp_wait_flag(&stac_irq.served);
	bool ac_after = read_rflags() & RFLAGS_AC;
	bool read_after = faultcap_try_load8(va, &v, &after);
	user_access_end();
	intr_disconnect(STAC_TEST_VECTOR);
	unmap_user_page(va, pfn);
	ASSERT_TRUE(t, came);
	EXPECT_FALSE(t, stac_irq.ac);
	EXPECT_FALSE(t, stac_irq.read_ok);
	EXPECT_PAGE_FAULT(t, &stac_irq.f, PF_READ_PROTECTION, va);
	EXPECT_EQ(t, stac_irq.f.rip, (uint64_t)faultcap_load8);
	EXPECT_TRUE(t, ac_after);
	EXPECT_TRUE(t, read_after);
	EXPECT_EQ(t, v, 0x5C);
}

static void smep_blocks_kernel_execution_of_user_page(struct ktest *t)
{
	if (!cpu_features.smep)
		KTEST_SKIP(t, "the CPU has no SMEP");
	ASSERT_TRUE(t, read_cr4() & CR4_SMEP); /* mm_init turns it on when the CPU has it */
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x7000, kva = scratch_kva(PAGE_SIZE, 0);
	pfn_t pfn;
	struct faultcap f;
	ASSERT_TRUE(t, mmt_va_unmapped(kva));
	struct pt_attrs user_rx = { .exec = true, .user = true, .type = MT_WB };
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, user_rx, FAULTCAP_RET_OPCODE));
	struct mmt_rights r = mmt_rights_of(va);
	EXPECT_FALSE(t, r.nx); /* executable by its bits: only SMEP stands in the way */

	expect_fetch_refused(t, va);

	/* Control: the same frame as a supervisor page with the same rights runs. */
	EXPECT_TRUE(t, pt_map(&kernel_root, kva, pfn << PAGE_SHIFT, PAGE_SIZE,
			      (struct pt_attrs){ .exec = true, .type = MT_WB }, 0));
	EXPECT_TRUE(t, faultcap_try_call(kva, &f));
	pt_unmap(&kernel_root, kva, PAGE_SIZE);
	unmap_user_page(va, pfn);
}

/* The stack this case runs on: its lowest mapped page, found by walking the real tables
 * down from RSP's page, and its number of pages (walking up). */
static uint64_t current_stack_base(uint64_t *pages)
{
	uint64_t rsp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	uint64_t base = rsp & ~(PAGE_SIZE - 1), top = base + PAGE_SIZE;
	for (int i = 0; i < 1024 && !mmt_va_unmapped(base - PAGE_SIZE); i++)
		base -= PAGE_SIZE;
	for (int i = 0; i < 1024 && !mmt_va_unmapped(top); i++)
		top += PAGE_SIZE;
	*pages = (top - base) / PAGE_SIZE;
	return base;
}

static void write_below_stack_hits_guard_page(struct ktest *t)
{
	uint64_t pages, base = current_stack_base(&pages);
	ASSERT_TRUE(t, base >= KVA_STACKS_BASE && base < KVA_STACKS_END);
	/* The unmapped page below is inside the stack region (a guard kstack_create left), not
	 * the region's lower edge. */
	EXPECT_GE(t, base - PAGE_SIZE, KVA_STACKS_BASE);
	EXPECT_TRUE(t, kstack_contains(base, pages * PAGE_SIZE));
	EXPECT_EQ(t, pages, KSTACK_PAGES);

	uint64_t va = base - 8;
	struct faultcap rf, wf;
	uint8_t old = 0;
	bool readable = faultcap_try_load8(va, &old, &rf);
	EXPECT_FALSE(t, readable);
	EXPECT_PAGE_FAULT(t, &rf, PF_READ_NOT_PRESENT, va);
	EXPECT_FALSE(t, faultcap_try_store8(va, old, &wf));
	EXPECT_PAGE_FAULT(t, &wf, PF_WRITE_NOT_PRESENT, va);
	EXPECT_EQ(t, wf.rip, (uint64_t)faultcap_store8);
	/* The lowest byte of the stack itself is writable. */
	EXPECT_TRUE(t, faultcap_try_load8(base, &old, &rf));
	EXPECT_TRUE(t, faultcap_try_store8(base, old, &wf));
}

/* Map `pages` pages of one frame, touch each through its mapping (so the TLB holds them),
 * unmap, and read each: every one faults not-present at once.  TCG keeps a stale
 * translation until INVLPG or a full flush, so this proves the flush. */
static void check_access_after_unmap(struct ktest *t, uint64_t va, uint64_t pages)
{
	ASSERT_TRUE(t, mmt_va_unmapped(va) && mmt_va_unmapped(va + (pages - 1) * PAGE_SIZE));
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	volatile uint8_t *direct = pfn_to_virt(pfn);
	for (uint64_t i = 0; i < pages; i++)
		EXPECT_TRUE(t, pt_map(&kernel_root, va + i * PAGE_SIZE, pfn << PAGE_SHIFT, PAGE_SIZE,
				      KERNEL_RW, 0));

	struct faultcap f;
	uint8_t v = 0;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t off = (i * 8) % PAGE_SIZE;
		EXPECT_TRUE(t, faultcap_try_store8(va + i * PAGE_SIZE + off, (uint8_t)(0x40 + i), &f));
		EXPECT_EQ(t, direct[off], (uint8_t)(0x40 + i));
		direct[off] = (uint8_t)(0x80 + i);
		EXPECT_TRUE(t, faultcap_try_load8(va + i * PAGE_SIZE + off, &v, &f));
		EXPECT_EQ(t, v, (uint8_t)(0x80 + i));
	}

	pt_unmap(&kernel_root, va, pages * PAGE_SIZE);
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t a = va + i * PAGE_SIZE + 0x10;
		EXPECT_TRUE(t, mmt_va_unmapped(a));
		EXPECT_FALSE(t, faultcap_try_load8(a, &v, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, a);
		EXPECT_EQ(t, f.rip, (uint64_t)faultcap_load8);
	}
	pfn_free(pfn);
}

static void read_after_unmap_faults(struct ktest *t)
{
	check_access_after_unmap(t, scratch_kva(PAGE_SIZE, 0) + 0x5000, 1);
}

/* Above TLB_SINGLE_FLUSH_MAX pages the unmap flushes everything instead of page by page. */
static void read_after_large_unmap_faults(struct ktest *t)
{
	uint64_t pages = 2 * TLB_SINGLE_FLUSH_MAX + 3;
	check_access_after_unmap(t, scratch_kva(pages * PAGE_SIZE, 0), pages);
}

static struct ktest_case mm_fault_cases[] = {
	KTEST_CASE(write_to_kernel_text_faults),
	KTEST_CASE(write_to_rodata_faults),
	KTEST_CASE(write_to_image_through_direct_map_faults),
	KTEST_CASE(execute_from_data_faults),
	KTEST_CASE(execute_from_stack_faults),
	KTEST_CASE(execute_from_direct_map_faults),
	KTEST_CASE(execute_from_pool_faults),
	KTEST_CASE(execute_needs_nx_clear),
	KTEST_CASE(smap_blocks_kernel_access_outside_window),
	KTEST_CASE(fault_inside_user_window_closes_it),
	KTEST_CASE(smep_blocks_kernel_execution_of_user_page),
	KTEST_CASE(write_below_stack_hits_guard_page),
	KTEST_CASE(read_after_unmap_faults),
	KTEST_CASE(read_after_large_unmap_faults),
	KTEST_CASE(an_interrupt_in_a_stac_window_runs_with_smap_on),
	{ 0 }
};
KTEST_SUITE(mm_fault, mm_fault_cases);
