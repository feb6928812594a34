/*
 * Kernel memory that is not pool, mapped to a user through an MDL (mm/RULES.md user rule U4,
 * issue 13's A1): whole pages of a system-PTE mapping of frames a driver allocated zeroed and
 * nonpaged (a mapped MmAllocatePagesForMdlEx buffer, MmAllocateNonCachedMemory,
 * MmAllocateContiguousMemorySpecifyCache) map to a user; the kernel image, stacks, page
 * tables, the PFN database and pool reached through a system-PTE alias stay refused with
 * 0xC4/0x2004 (MDL, address, 3), and a partial page with reason 1.
 *
 * Each success case builds the chain of the repro — the memory mapped in system
 * space, an MDL over that system address probed KernelMode for write, then
 * MmMapLockedPagesSpecifyCache(UserMode) attached to a process — and proves the result on the
 * process's real page tables (frame, U/S, NX, the frame's memory type from IA32_PAT) and by
 * reading through the user address what the kernel wrote.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/mdl_user.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"

#define TAG 0x6B556D4Du /* 'MmUk' */
#define P PAGE_SIZE

static PEPROCESS idle(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	return p;
}

/* An MDL over [va, va + bytes) of system space, locked by a KernelMode write probe. */
static PMDL lock_system_range(struct ktest *t, void *va, ULONG bytes)
{
	PMDL m = IoAllocateMdl(va, bytes, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

/* The user leaf at va in p: present, user, no-execute, writable, mapping `pfn` with the
 * memory type whose IA32_PAT encoding is `enc`. */
static void expect_user_leaf(struct ktest *t, PEPROCESS p, uint64_t va, pfn_t pfn, unsigned enc)
{
	struct pt_query q;
	pt_query(&p->mm.root, va, &q);
	ASSERT_TRUE(t, q.present && q.level == 1);
	EXPECT_TRUE(t, mmt_has(q.entry[1], MMT_PTE_US) && mmt_has(q.entry[1], MMT_PTE_NX));
	EXPECT_TRUE(t, mmt_has(q.entry[1], MMT_PTE_RW));
	EXPECT_EQ(t, q.entry[1] & MMT_PTE_ADDR, (uint64_t)pfn << PAGE_SHIFT);
	EXPECT_EQ(t, mmt_leaf_encoding(q.entry[1], 1), enc);
}

/*
 * Map the locked MDL m (over system memory holding `pages` pages) into a fresh process with
 * `ct`, check every page's user leaf against the kernel's frames and `enc`, read back the
 * word the caller wrote at the start of each page, then unmap and end the process.
 */
static void map_check_unmap(struct ktest *t, PMDL m, ULONG pages, MEMORY_CACHING_TYPE ct, unsigned enc)
{
	KAPC_STATE apc;
	PEPROCESS p = idle(t);
	KeStackAttachProcess(p, &apc);
	volatile uint64_t uva = 0;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		uva = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, ct, NULL, FALSE, NormalPagePriority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, uva != 0);
	if (uva) {
		EXPECT_TRUE(t, uva < USER_VA_END);
		for (ULONG i = 0; i < pages; i++) {
			uint64_t v = 0, k = *(volatile uint64_t *)((uint64_t)m->StartVa + i * P);
			expect_user_leaf(t, p, uva + i * P, MmGetMdlPfnArray(m)[i], enc);
			EXPECT_EQ(t, (ULONG)copy_from_user(&v, uva + i * P, 8), (ULONG)STATUS_SUCCESS);
			EXPECT_EQ(t, v, k);
		}
		MmUnmapLockedPages((PVOID)uva, m);
		bool w;
		for (ULONG i = 0; i < pages; i++)
			EXPECT_FALSE(t, mmt_present_in(&p->mm.root, uva + i * P, &w)); /* unmapped for real */
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/* Write a recognisable word at the start of each page (the rest stays zero). */
static void mark_pages(uint8_t *va, ULONG pages)
{
	for (ULONG i = 0; i < pages; i++)
		*(volatile uint64_t *)(va + i * P) = 0xA1A1000000000000ul | i;
}

/* The repro, exactly: MmAllocatePagesForMdlEx(1 page, MmNonCached), mapped to kernel
 * space and zeroed; attached, an MDL over the system address, probed KernelMode for write,
 * mapped UserMode MmNonCached: a user address, no stop, the frame UC in both spaces. */
static void mapped_allocate_pages_ex_buffer_maps_to_user(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL alloc = MmAllocatePagesForMdlEx(lo, hi, skip, P, MmNonCached, MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, alloc != NULL);
	uint8_t *k = MmMapLockedPagesSpecifyCache(alloc, KernelMode, MmNonCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	memset(k, 0, P);
	mark_pages(k, 1);
	PMDL m = lock_system_range(t, k, P);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], MmGetMdlPfnArray(alloc)[0]);
	map_check_unmap(t, m, 1, MmNonCached, MMT_ENC_UC);
	MmUnlockPages(m);
	IoFreeMdl(m);
	MmUnmapLockedPages(k, alloc);
	MmFreePagesFromMdl(alloc);
	ExFreePool(alloc);
}

/* MmAllocateNonCachedMemory: whole zeroed pages, UC; a user mapping asking MmCached gets the
 * frames' own UC (mm/RULES.md decision 1). */
static void noncached_memory_maps_to_user(struct ktest *t)
{
	uint8_t *k = MmAllocateNonCachedMemory(3 * P);
	ASSERT_TRUE(t, k != NULL);
	mark_pages(k, 3);
	PMDL m = lock_system_range(t, k, 3 * P);
	map_check_unmap(t, m, 3, MmCached, MMT_ENC_UC);
	MmUnlockPages(m);
	IoFreeMdl(m);
	MmFreeNonCachedMemory(k, 3 * P);
}

/* The way real drivers share such memory: MmBuildMdlForNonPagedPool over it (its frames
 * from the tables, no lock needed), mapped UserMode. */
static void contiguous_memory_through_a_nonpaged_mdl_maps_to_user(struct ktest *t)
{
	PHYSICAL_ADDRESS hi = { .QuadPart = -1 };
	uint8_t *k = MmAllocateContiguousMemory(2 * P, hi);
	ASSERT_TRUE(t, k != NULL);
	mark_pages(k, 2);
	PMDL m = IoAllocateMdl(k, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	EXPECT_TRUE(t, m->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL);
	EXPECT_EQ(t, (uint64_t)m->MappedSystemVa, (uint64_t)k);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], mmt_frame_of((uint64_t)k));
	map_check_unmap(t, m, 2, MmCached, MMT_ENC_WB);
	IoFreeMdl(m);
	MmFreeContiguousMemory(k);
}

/* MmAllocateContiguousMemorySpecifyCache(MmWriteCombined): WC in the process too. */
static void contiguous_memory_maps_to_user(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, none = { .QuadPart = 0 };
	uint8_t *k = MmAllocateContiguousMemorySpecifyCache(2 * P, lo, hi, none, MmWriteCombined);
	ASSERT_TRUE(t, k != NULL);
	mark_pages(k, 2);
	PMDL m = lock_system_range(t, k, 2 * P);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[1], MmGetMdlPfnArray(m)[0] + 1);
	map_check_unmap(t, m, 2, MmWriteCombined, MMT_ENC_WC);
	MmUnlockPages(m);
	IoFreeMdl(m);
	MmFreeContiguousMemorySpecifyCache(k, 2 * P, MmWriteCombined);
}

/* Ring 3 itself: the agent reads what the kernel wrote into non-cached memory through the
 * user mapping and writes back, and the kernel sees the write through its own address. */
static void ring3_reads_and_writes_noncached_memory(struct ktest *t)
{
	uint64_t *k = MmAllocateNonCachedMemory(P);
	ASSERT_TRUE(t, k != NULL);
	k[3] = 0xA1A1B2B2C3C3D4D4ul;
	PMDL m = lock_system_range(t, k, P);
	uint64_t uva = scratch_uva(P, 0);
	struct agent_script s;
	agent_begin(&s);
	uint32_t rd = agent_read64(&s, uva + 24);
	agent_write64(&s, uva + 32, 0x1234567890ABCDEFul);
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	uint64_t got = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, MmNonCached, (PVOID)uva, FALSE,
							      NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	EXPECT_EQ(t, got, uva);
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, rd, 0), 0xA1A1B2B2C3C3D4D4ul);
	EXPECT_EQ(t, k[4], 0x1234567890ABCDEFul);
	KeStackAttachProcess(p, &apc);
	MmUnmapLockedPages((PVOID)uva, m);
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
	MmUnlockPages(m);
	IoFreeMdl(m);
	MmFreeNonCachedMemory(k, P);
}

/* ---- what stays refused ------------------------------------------------------------ */

/* Lock the page holding `va` (any kernel memory), map it into system PTEs, and return an MDL
 * over that system mapping, locked: the path that must still be refused.  *first is the MDL
 * of the first lock (left as it is: the case ends in a bug check). */
static PMDL through_a_system_mapping(struct ktest *t, void *va)
{
	PMDL first = lock_system_range(t, PAGE_ALIGN(va), P);
	void *sys = MmMapLockedPagesSpecifyCache(first, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	return lock_system_range(t, sys, P);
}

/* Map m to a user attached to a fresh process, expecting 0xC4/0x2004 (m, its address, why). */
static void expect_refused(struct ktest *t, PMDL m, ULONG_PTR reason)
{
	KAPC_STATE apc;
	KeStackAttachProcess(idle(t), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004, (ULONG_PTR)m,
			  (ULONG_PTR)MmGetMdlVirtualAddress(m), reason, KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

static uint8_t image_page[P] __attribute__((aligned(P)));

static void kernel_image_through_a_system_mapping(struct ktest *t)
{
	expect_refused(t, through_a_system_mapping(t, image_page), 3);
}

static void kernel_stack_through_a_system_mapping(struct ktest *t)
{
	volatile uint64_t local = 1;
	expect_refused(t, through_a_system_mapping(t, (void *)&local), 3);
}

static void page_table_through_a_system_mapping(struct ktest *t)
{
	expect_refused(t, through_a_system_mapping(t, phys_to_virt(kernel_root.pml4)), 3);
}

static void pfn_database_through_a_system_mapping(struct ktest *t)
{
	expect_refused(t, through_a_system_mapping(t, (void *)pfn_entry(pfn_limit() / 2)), 3);
}

/* Whole zeroed pool pages map through their pool address only. */
static void pool_through_a_system_mapping(struct ktest *t)
{
	void *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	expect_refused(t, through_a_system_mapping(t, buf), 3);
}

/* Allocated frames, but not whole pages of them: reason 1. */
static void partial_page_of_allocated_memory(struct ktest *t)
{
	uint8_t *k = MmAllocateNonCachedMemory(P);
	ASSERT_TRUE(t, k != NULL);
	expect_refused(t, lock_system_range(t, k, P / 2), 1);
}

/* Rule 19: system PTEs count as nonpaged only over allocated frames; a system mapping of
 * probe-locked pool is not memory MmBuildMdlForNonPagedPool may describe: 0xC4/0x7F. */
static void nonpaged_mdl_over_a_mapping_of_locked_pages(struct ktest *t)
{
	void *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL first = lock_system_range(t, buf, P);
	void *sys = MmMapLockedPagesSpecifyCache(first, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	PMDL m = IoAllocateMdl(sys, P, FALSE, FALSE, NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F, PASSIVE_LEVEL, (ULONG_PTR)m, 0, KTEST_P_ALL);
	MmBuildMdlForNonPagedPool(m);
}

static struct ktest_case mdl_user_kmem_cases[] = {
	KTEST_CASE(mapped_allocate_pages_ex_buffer_maps_to_user),
	KTEST_CASE(noncached_memory_maps_to_user),
	KTEST_CASE(contiguous_memory_maps_to_user),
	KTEST_CASE(contiguous_memory_through_a_nonpaged_mdl_maps_to_user),
	KTEST_CASE(ring3_reads_and_writes_noncached_memory),
	KTEST_DEATH_CASE_P1(kernel_image_through_a_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(kernel_stack_through_a_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(page_table_through_a_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(pfn_database_through_a_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(pool_through_a_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(partial_page_of_allocated_memory, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(nonpaged_mdl_over_a_mapping_of_locked_pages, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F),
	{ 0 }
};
KTEST_SUITE(mdl_user_kmem, mdl_user_kmem_cases);
