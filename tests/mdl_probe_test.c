/*
 * MmProbeAndLockPages and MmUnlockPages on kernel addresses (mm/RULES.md rule 12):
 * the PFN array is what the page tables say, the flags follow the operation, each frame
 * counts its locks and stays locked until the last unlock, a bad range raises
 * STATUS_ACCESS_VIOLATION naming the first bad address and leaves nothing locked, and
 * unlocking what is not locked stops the machine with NT's codes.
 *
 * Frames are compared with pt_query of each page (the real tables); lock counts are read
 * from the PFN database, the only place they live.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/verifier.h"

#define TAG 0x72506D4Du /* 'MmPr' */

/* Nonpaged kernel data of three pages and a constant table in .rodata. */
static uint8_t data_buffer[3 * PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
__attribute__((used)) static const uint8_t rodata_table[256] = { 0x11, 0x22, 0x33 };

/* Probe inside __try; returns the exception code (STATUS_SUCCESS when none) with the
 * access-violation parameters in info[0] (access kind) and info[1] (address). */
static NTSTATUS try_probe(PMDL m, LOCK_OPERATION op, ULONG_PTR info[2])
{
	return expect_try_probe(m, KernelMode, op, info, 2);
}

/* Lock [va, va + len), compare every PFN with the tables, unlock. */
static void check_pfns_of(struct ktest *t, uint8_t *va, ULONG len)
{
	PMDL m = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	ULONG n = ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, len);
	EXPECT_EQ(t, mdl_page_count(m), n);
	for (ULONG i = 0; i < n; i++) {
		pfn_t want = mmt_frame_of((uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE);
		EXPECT_NE(t, want, PFN_INVALID);
		EXPECT_EQ(t, MmGetMdlPfnArray(m)[i], want);
		EXPECT_GE(t, mmt_lock_count(want), 1);
	}
	EXPECT_TRUE(t, MmGetMdlVirtualAddress(m) == va);
	EXPECT_EQ(t, m->ByteCount, len);
	MmUnlockPages(m);
	IoFreeMdl(m);
}

static void pfn_array_matches_the_page_tables(struct ktest *t)
{
	/* Pool, the kernel's .data, the direct map: each at an odd offset over page edges. */
	uint8_t *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, pool != NULL);
	check_pfns_of(t, pool + 0x321, 3 * PAGE_SIZE);
	check_pfns_of(t, pool + 4 * PAGE_SIZE - 1, 1);
	check_pfns_of(t, data_buffer + 0xFFF, PAGE_SIZE + 2);
	pfn_t run = pfn_alloc_run(0x100, ~0ull, 2, 1, 0, PFN_OWNER_TEST);
	ASSERT_NE(t, run, PFN_INVALID);
	check_pfns_of(t, (uint8_t *)pfn_to_virt(run) + 0x800, PAGE_SIZE);
	pfn_free_run(run, 2);
	ExFreePoolWithTag(pool, TAG);
}

static void flags_follow_the_operation(struct ktest *t)
{
	static const struct {
		LOCK_OPERATION op;
		bool write;
	} ops[] = { { IoReadAccess, false }, { IoWriteAccess, true }, { IoModifyAccess, true } };
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	for (unsigned k = 0; k < ARRAY_SIZE(ops); k++) {
		PMDL m = IoAllocateMdl(buf + 0x10, PAGE_SIZE, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, m != NULL);
		EXPECT_EQ(t, (USHORT)m->MdlFlags, 0);
		MmProbeAndLockPages(m, KernelMode, ops[k].op);
		EXPECT_TRUE(t, m->MdlFlags & MDL_PAGES_LOCKED);
		EXPECT_EQ(t, !!(m->MdlFlags & MDL_WRITE_OPERATION), ops[k].write);
		EXPECT_FALSE(t, m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL | MDL_IO_SPACE));
		EXPECT_TRUE(t, m->Process == NULL); /* kernel addresses: no process */
		MmUnlockPages(m);
		EXPECT_FALSE(t, m->MdlFlags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION));
		IoFreeMdl(m);
	}
	ExFreePoolWithTag(buf, TAG);
}

/* Two MDLs sharing a page: 1 lock, 2 locks, then the page stays locked until the second
 * unlock.  The machine-wide count of locked frames moves only on 0 <-> 1. */
static void locks_are_counted_per_frame(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	pfn_t f0 = mmt_frame_of((uint64_t)buf), f1 = mmt_frame_of((uint64_t)buf + PAGE_SIZE),
	      f2 = mmt_frame_of((uint64_t)buf + 2 * PAGE_SIZE);
	ASSERT_EQ(t, mmt_lock_count(f0), 0);
	ASSERT_EQ(t, mmt_lock_count(f1), 0);
	ASSERT_EQ(t, mmt_lock_count(f2), 0);
	uint64_t locked0 = mmt_locked_frames();

	PMDL a = IoAllocateMdl(buf + 0x100, PAGE_SIZE, FALSE, FALSE, NULL);             /* f0, f1 */
	PMDL b = IoAllocateMdl(buf + PAGE_SIZE + 0x80, PAGE_SIZE, FALSE, FALSE, NULL); /* f1, f2 */
	ASSERT_TRUE(t, a != NULL && b != NULL);
	MmProbeAndLockPages(a, KernelMode, IoReadAccess);
	EXPECT_EQ(t, mmt_lock_count(f0), 1);
	EXPECT_EQ(t, mmt_lock_count(f1), 1);
	EXPECT_EQ(t, mmt_lock_count(f2), 0);
	EXPECT_EQ(t, mmt_locked_frames(), locked0 + 2);
	MmProbeAndLockPages(b, KernelMode, IoWriteAccess);
	EXPECT_EQ(t, mmt_lock_count(f1), 2);
	EXPECT_EQ(t, mmt_lock_count(f2), 1);
	EXPECT_EQ(t, mmt_locked_frames(), locked0 + 3);

	MmUnlockPages(a);
	EXPECT_EQ(t, mmt_lock_count(f0), 0);
	EXPECT_EQ(t, mmt_lock_count(f1), 1); /* still locked by b */
	EXPECT_EQ(t, mmt_locked_frames(), locked0 + 2);
	MmUnlockPages(b);
	EXPECT_EQ(t, mmt_lock_count(f1), 0);
	EXPECT_EQ(t, mmt_lock_count(f2), 0);
	EXPECT_EQ(t, mmt_locked_frames(), locked0);
	IoFreeMdl(a);
	IoFreeMdl(b);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- bad ranges ------------------------------------------------------------------------ */

static void unmapped_address_raises_and_locks_nothing(struct ktest *t)
{
	uint8_t *va = (uint8_t *)scratch_unmapped_kva(4 * PAGE_SIZE) + 0x123;
	ASSERT_TRUE(t, mmt_va_unmapped((uint64_t)va));
	uint64_t locked0 = mmt_locked_frames();
	static const struct {
		LOCK_OPERATION op;
		ULONG access;
	} ops[] = { { IoReadAccess, EXCEPTION_READ_FAULT }, { IoWriteAccess, EXCEPTION_WRITE_FAULT } };
	for (unsigned k = 0; k < ARRAY_SIZE(ops); k++) {
		PMDL m = IoAllocateMdl(va, 3 * PAGE_SIZE, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, m != NULL);
		ULONG_PTR info[2];
		EXPECT_EQ(t, try_probe(m, ops[k].op, info), STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, info[0], ops[k].access);
		EXPECT_EQ(t, info[1], (ULONG_PTR)va); /* the first bad address: the buffer's own */
		EXPECT_FALSE(t, m->MdlFlags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION));
		EXPECT_EQ(t, mmt_locked_frames(), locked0);
		IoFreeMdl(m);
	}
}

/* A range whose first page is mapped and whose second is not: the exception names the
 * start of the second page, and the first page's frame is back at its lock count (here
 * 1: another MDL holds it, and must keep holding it). */
static void unmapped_second_page_raises_and_unlocks_the_first(struct ktest *t)
{
	uint64_t va = scratch_kva(2 * PAGE_SIZE, 0);
	ASSERT_TRUE(t, mmt_va_unmapped(va) && mmt_va_unmapped(va + PAGE_SIZE));
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	struct pt_attrs rw = { .write = true, .global = true, .type = MT_WB };
	ASSERT_TRUE(t, pt_map(&kernel_root, va, pfn << PAGE_SHIFT, PAGE_SIZE, rw, 0));
	ASSERT_EQ(t, mmt_frame_of(va), pfn);

	PMDL holder = IoAllocateMdl((PVOID)va, 16, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, holder != NULL);
	MmProbeAndLockPages(holder, KernelMode, IoReadAccess);
	ASSERT_EQ(t, mmt_lock_count(pfn), 1);
	uint64_t locked0 = mmt_locked_frames();

	static const LOCK_OPERATION ops[] = { IoReadAccess, IoModifyAccess };
	for (unsigned k = 0; k < ARRAY_SIZE(ops); k++) {
		PMDL m = IoAllocateMdl((PVOID)(va + 0x800), PAGE_SIZE, FALSE, FALSE, NULL); /* 2 pages */
		ASSERT_TRUE(t, m != NULL);
		ULONG_PTR info[2];
		EXPECT_EQ(t, try_probe(m, ops[k], info), STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, info[0], ops[k] == IoReadAccess ? EXCEPTION_READ_FAULT : EXCEPTION_WRITE_FAULT);
		EXPECT_EQ(t, info[1], va + PAGE_SIZE);
		EXPECT_EQ(t, mmt_lock_count(pfn), 1);
		EXPECT_EQ(t, mmt_locked_frames(), locked0);
		EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
		IoFreeMdl(m);
	}

	MmUnlockPages(holder);
	IoFreeMdl(holder);
	EXPECT_EQ(t, mmt_lock_count(pfn), 0);
	pt_unmap(&kernel_root, va, PAGE_SIZE);
	pfn_free(pfn);
}

/* Kernel rodata is mapped read-only: a write (or modify) probe raises, a read probe
 * locks the very frame the table maps. */
static void write_probe_of_read_only_kernel_page_raises(struct ktest *t)
{
	uint8_t *va = (uint8_t *)&rodata_table[3];
	struct mmt_rights r = mmt_rights_of((uint64_t)va);
	ASSERT_TRUE(t, r.present);
	ASSERT_FALSE(t, r.write); /* the precondition, from the raw entries */
	pfn_t pfn = mmt_frame_of((uint64_t)va);
	uint32_t locks0 = mmt_lock_count(pfn);

	static const LOCK_OPERATION ops[] = { IoWriteAccess, IoModifyAccess };
	for (unsigned k = 0; k < ARRAY_SIZE(ops); k++) {
		PMDL m = IoAllocateMdl(va, 100, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, m != NULL);
		ULONG_PTR info[2];
		EXPECT_EQ(t, try_probe(m, ops[k], info), STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, info[0], EXCEPTION_WRITE_FAULT);
		EXPECT_EQ(t, info[1], (ULONG_PTR)va);
		EXPECT_FALSE(t, m->MdlFlags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION));
		EXPECT_EQ(t, mmt_lock_count(pfn), locks0);
		IoFreeMdl(m);
	}

	PMDL m = IoAllocateMdl(va, 100, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	ULONG_PTR info[2];
	EXPECT_EQ(t, try_probe(m, IoReadAccess, info), STATUS_SUCCESS);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], pfn);
	EXPECT_EQ(t, mmt_lock_count(pfn), locks0 + 1);
	MmUnlockPages(m);
	EXPECT_EQ(t, mmt_lock_count(pfn), locks0);
	IoFreeMdl(m);
}

/* ---- death ----------------------------------------------------------------------------- */

static PMDL locked_pool_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf + 0x40, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	return m;
}

static void unlock_twice_with_verifier_bug_checks(struct ktest *t)
{
	verifier_set_flags(VF_CHECKS);
	PMDL m = locked_pool_mdl(t);
	MmUnlockPages(m);
	/* 0xC4, P1 0x7C: unlock of an MDL that is not locked (MDL, flags, 0) */
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7C, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	MmUnlockPages(m);
}

static void unlock_twice_without_verifier_bug_checks(struct ktest *t)
{
	verifier_set_flags(0);
	PMDL m = locked_pool_mdl(t);
	MmUnlockPages(m);
	/* 0x76, P1 1: unlocking pages that were not locked (MDL, the process's locked pages: a
	 * kernel buffer has no process, 0; no driver stacks: 0) */
	expect_stop(t, PROCESS_HAS_LOCKED_PAGES, 1, (ULONG_PTR)m, 0, 0);
	MmUnlockPages(m);
}

/* A second MDL claiming the first one's frame as locked: after the real unlock, its own
 * unlock takes the frame's count below zero. */
static void frame_unlocked_more_than_locked_bug_checks(struct ktest *t)
{
	PMDL a = locked_pool_mdl(t);
	PMDL b = IoAllocateMdl(MmGetMdlVirtualAddress(a), a->ByteCount, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, b != NULL);
	memcpy(MmGetMdlPfnArray(b), MmGetMdlPfnArray(a), mdl_page_count(a) * sizeof(PFN_NUMBER));
	b->MdlFlags |= MDL_PAGES_LOCKED;
	MmUnlockPages(a);
	/* 0x4E, P1 7: the frame, its share count (mdlab's lock count: 0 now), 0 */
	expect_stop(t, PFN_LIST_CORRUPT, 0x07, MmGetMdlPfnArray(b)[0], 0, 0);
	MmUnlockPages(b);
}

/*
 * Addresses in the canonical hole (SDM Vol. 3A, 4.5: bits 63..47 must all be equal) name no
 * page: a KernelMode probe raises STATUS_ACCESS_VIOLATION at the buffer's start and locks
 * nothing, also for ranges that straddle a page or the hole's edge.  Before the fix the
 * truncated index bits found a real entry: 0x0000800000001000 locked PFN 1 through the
 * direct map's first PML4 slot, 0xFFFF7FFFFFFFF000 the last user slot.  A range that wraps
 * past the top of the address space is refused the same way.
 */
static void non_canonical_addresses_raise_and_lock_nothing(struct ktest *t)
{
	static const struct {
		uint64_t va;
		ULONG len;
	} cases[] = {
		{ 0x0000800000001000ul, 0x10 },
		{ 0x0000800000000FF0ul, 0x20 },          /* straddles two non-canonical pages */
		{ 0x0000800000000000ul, 3 * PAGE_SIZE },
		{ 0xFFFF7FFFFFFFF000ul, 2 * PAGE_SIZE }, /* the second page is the direct map's first */
		{ 0xFFFF7FFFFFFFFF00ul, 0x200 },
		{ 0x1234567800000000ul, PAGE_SIZE },
		{ 0x8000000000000000ul, PAGE_SIZE + 1 },
		{ 0xFFFFFFFFFFFFF800ul, PAGE_SIZE },      /* wraps past the top */
	};
	struct pt_query q;
	pt_query(&kernel_root, 0x0000800000001000ul, &q);
	EXPECT_FALSE(t, q.present); /* the walker itself refuses the hole */
	uint64_t locked0 = mmt_locked_frames();
	uint32_t pfn1_locks = mmt_lock_count(1);
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		for (int op = IoReadAccess; op <= IoWriteAccess; op++) {
			PMDL m = IoAllocateMdl((PVOID)cases[i].va, cases[i].len, FALSE, FALSE, NULL);
			ASSERT_TRUE(t, m != NULL); /* an MDL only describes (mm/RULES.md rule 18) */
			ULONG_PTR info[2];
			EXPECT_EQ(t, try_probe(m, (LOCK_OPERATION)op, info), STATUS_ACCESS_VIOLATION);
			EXPECT_EQ(t, info[0], op == IoReadAccess ? EXCEPTION_READ_FAULT : EXCEPTION_WRITE_FAULT);
			EXPECT_EQ(t, info[1], cases[i].va);
			EXPECT_FALSE(t, m->MdlFlags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION));
			EXPECT_EQ(t, mmt_locked_frames(), locked0);
			EXPECT_EQ(t, mmt_lock_count(1), pfn1_locks);
			IoFreeMdl(m);
		}
	}
}

/* A UserMode range across the hole passes the user probe limit: the limit is raised. */
static void user_probe_across_the_canonical_hole_raises_the_limit(struct ktest *t)
{
	uint64_t locked0 = mmt_locked_frames();
	PMDL m = IoAllocateMdl((PVOID)0x00007FFFFFFFF800ul, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile ULONG_PTR where = 0;
	__try {
		MmProbeAndLockPages(m, UserMode, IoReadAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		where = GetExceptionRecord()->ExceptionInformation[1];
	}
	EXPECT_EQ(t, st, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, where, MM_USER_PROBE_ADDRESS);
	EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, mmt_locked_frames(), locked0);
	IoFreeMdl(m);
}

/* MmBuildMdlForNonPagedPool over the hole's upper edge: not nonpaged memory, 0xC4/0x7F
 * (IRQL, MDL, flags), never a PFN array read from truncated indexes. */
static void nonpaged_mdl_across_the_canonical_hole(struct ktest *t)
{
	PMDL m = IoAllocateMdl((PVOID)0xFFFF7FFFFFFFF000ul, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F, PASSIVE_LEVEL, (ULONG_PTR)m, 0, KTEST_P_ALL);
	MmBuildMdlForNonPagedPool(m);
}

static struct ktest_case mdl_probe_cases[] = {
	KTEST_CASE(pfn_array_matches_the_page_tables),
	KTEST_CASE(flags_follow_the_operation),
	KTEST_CASE(locks_are_counted_per_frame),
	KTEST_CASE(unmapped_address_raises_and_locks_nothing),
	KTEST_CASE(unmapped_second_page_raises_and_unlocks_the_first),
	KTEST_CASE(write_probe_of_read_only_kernel_page_raises),
	KTEST_CASE(non_canonical_addresses_raise_and_lock_nothing),
	KTEST_CASE(user_probe_across_the_canonical_hole_raises_the_limit),
	KTEST_DEATH_CASE_P1(nonpaged_mdl_across_the_canonical_hole, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F),
	KTEST_DEATH_CASE_P1(unlock_twice_with_verifier_bug_checks, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7C),
	KTEST_DEATH_CASE_P1(unlock_twice_without_verifier_bug_checks, PROCESS_HAS_LOCKED_PAGES, 1),
	KTEST_DEATH_CASE_P1(frame_unlocked_more_than_locked_bug_checks, PFN_LIST_CORRUPT, 0x07),
	{ 0 }
};
KTEST_SUITE(mdl_probe, mdl_probe_cases);
