/*
 * The driver verifier's MDL checks (mm/verifier.h; mm/RULES.md decision 7 and the 0xC4 list):
 *   - IRQL: each routine compares CR8 with its documented limit and stops
 *     with its own code above it — MmProbeAndLockPages 0x70, MmMapLockedPagesSpecifyCache
 *     (KernelMode) 0x76, MmMapLockedPages (KernelMode) 0x74, MmUnlockPages 0x78,
 *     MmUnmapLockedPages (kernel address) 0x79, MmAllocatePagesForMdl(Ex) and
 *     MmFreePagesFromMdl 0x7E, at HIGH_LEVEL and at DISPATCH_LEVEL + 1 — and each works at
 *     DISPATCH_LEVEL, the limit itself;
 *   - misuse: IoFreeMdl of a mapped MDL 0xB8, unmapping an unmapped MDL 0xB6, unmapping at
 *     a wrong address SYSTEM_PTE_MISUSE 0x03, MmBuildMdlForNonPagedPool over paged pool or a
 *     stack 0x7F, unlocking a nonpaged-pool MDL 0x7D or a partial one 0xB4;
 *   - VF_DEPRECATED (off by default, set at run time): any MmMapLockedPages 0x81,
 *     BugCheckOnFailure TRUE 0x82;
 *   - with the verifier off, unmapping an unmapped MDL is NT's own SYSTEM_PTE_MISUSE 0x06.
 * Death cases give the harness all four parameters they expect with ktest_expect_stop (a
 * "# death-expect:" line before the bug check; the STOP line must match it).
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/syspte.h"
#include "mm/verifier.h"

#define TAG 0x7653644Du /* 'MdSv' */

/* Pages for MDLs from anywhere in RAM (High: the largest positive PHYSICAL_ADDRESS). */
static const PHYSICAL_ADDRESS ANY_LOW = { .QuadPart = 0 };
static const PHYSICAL_ADDRESS ANY_HIGH = { .QuadPart = 0x7FFFFFFFFFFFFFFFll };
static const PHYSICAL_ADDRESS NO_SKIP = { .QuadPart = 0 };

static void expect_violation(struct ktest *t, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3,
			     ULONG_PTR p4)
{
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, p1, p2, p3, p4);
}

/* A probe-locked MDL over a fresh pool buffer (never freed by a death case). */
static PMDL locked_mdl(struct ktest *t, SIZE_T size, ULONG offset, ULONG len)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf + offset, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

static PVOID map(PMDL m)
{
	return MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* Each IRQL death case runs twice: at HIGH_LEVEL, and at DISPATCH_LEVEL + 1, the first level
 * above the limit (a limit set anywhere between the two would pass the first alone). */
static void raise_to(KIRQL level)
{
	KIRQL old;
	KeRaiseIrql(level, &old);
}

/* ---- IRQL: above the limit ---------------------------------------------------------------- */

static void probe_at(struct ktest *t, KIRQL level)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	expect_violation(t, 0x70, level, (ULONG_PTR)m, KernelMode);
	raise_to(level);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
}

static void map_specify_cache_at(struct ktest *t, KIRQL level)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	expect_violation(t, 0x76, level, (ULONG_PTR)m, KernelMode);
	raise_to(level);
	map(m);
}

static void map_locked_pages_at(struct ktest *t, KIRQL level)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	expect_violation(t, 0x74, level, (ULONG_PTR)m, KernelMode);
	raise_to(level);
	MmMapLockedPages(m, KernelMode);
}

static void unlock_at(struct ktest *t, KIRQL level)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	expect_violation(t, 0x78, level, (ULONG_PTR)m, 0);
	raise_to(level);
	MmUnlockPages(m);
}

static void unmap_at(struct ktest *t, KIRQL level)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0x10, 0x20);
	PVOID va = map(m);
	ASSERT_TRUE(t, va != NULL);
	expect_violation(t, 0x79, level, (ULONG_PTR)va, (ULONG_PTR)m);
	raise_to(level);
	MmUnmapLockedPages(va, m);
}

static void allocate_pages_at(struct ktest *t, KIRQL level)
{
	expect_violation(t, 0x7E, level, DISPATCH_LEVEL, 0);
	raise_to(level);
	MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE);
}

static void allocate_pages_ex_at(struct ktest *t, KIRQL level)
{
	expect_violation(t, 0x7E, level, DISPATCH_LEVEL, 0);
	raise_to(level);
	MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE, MmCached, 0);
}

static void free_pages_at(struct ktest *t, KIRQL level)
{
	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE);
	ASSERT_TRUE(t, a != NULL);
	expect_violation(t, 0x7E, level, DISPATCH_LEVEL, 0);
	raise_to(level);
	MmFreePagesFromMdl(a);
}

#define IRQL_DEATH_PAIR(name)                                                              \
	static void name##_above_dispatch(struct ktest *t) { name##_at(t, HIGH_LEVEL); }    \
	static void name##_just_above_dispatch(struct ktest *t) { name##_at(t, DISPATCH_LEVEL + 1); }
IRQL_DEATH_PAIR(probe)
IRQL_DEATH_PAIR(map_specify_cache)
IRQL_DEATH_PAIR(map_locked_pages)
IRQL_DEATH_PAIR(unlock)
IRQL_DEATH_PAIR(unmap)
IRQL_DEATH_PAIR(allocate_pages)
IRQL_DEATH_PAIR(allocate_pages_ex)
IRQL_DEATH_PAIR(free_pages)

/* ---- IRQL: at the limit --------------------------------------------------------------------- */

/* Every routine above, and the others a driver calls with them, at DISPATCH_LEVEL: nothing
 * stops, and everything taken is given back (the framework's accounting checks that). */
static void everything_works_at_dispatch_level(struct ktest *t)
{
	KIRQL old;
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	bool ok[8] = { false };
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	KIRQL at = KeGetCurrentIrql();

	PMDL m = IoAllocateMdl(buf + 0x40, PAGE_SIZE, FALSE, FALSE, NULL);
	if (m) {
		MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
		uint8_t *va = map(m);
		ok[0] = va != NULL && MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == va;
		if (va)
			MmUnmapLockedPages(va, m);
		va = MmMapLockedPages(m, KernelMode);
		ok[1] = va != NULL;
		if (va)
			MmUnmapLockedPages(va, m);
		PMDL part = IoAllocateMdl(buf + 0x80, 16, FALSE, FALSE, NULL);
		if (part) {
			IoBuildPartialMdl(m, part, buf + 0x80, 16);
			ok[2] = MmGetSystemAddressForMdlSafe(part, NormalPagePriority) != NULL;
			MmPrepareMdlForReuse(part);
			IoFreeMdl(part);
		}
		ok[3] = MmGetSystemAddressForMdlSafe(m, NormalPagePriority) != NULL;
		MmUnlockPages(m); /* releases that mapping */
		MmBuildMdlForNonPagedPool(m);
		ok[4] = MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == buf + 0x40;
		IoFreeMdl(m);
	}
	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE);
	PMDL b = MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE, MmNonCached, 0);
	if (a) {
		PVOID va = map(a);
		ok[5] = va != NULL;
		if (va)
			MmUnmapLockedPages(va, a);
		MmFreePagesFromMdl(a);
		ExFreePool(a);
	}
	if (b) {
		ok[6] = MmGetSystemAddressForMdlSafe(b, NormalPagePriority) != NULL;
		MmFreePagesFromMdl(b); /* releases that mapping */
		ExFreePool(b);
	}
	ok[7] = a && b;
	KeLowerIrql(old);

	EXPECT_EQ(t, at, DISPATCH_LEVEL);
	EXPECT_TRUE(t, m != NULL);
	for (unsigned i = 0; i < ARRAY_SIZE(ok); i++)
		if (!ok[i])
			KTEST_FAIL(t, "step %u failed at DISPATCH_LEVEL", i);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- misuse ------------------------------------------------------------------------------ */

static void free_of_a_mapped_mdl(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	ASSERT_TRUE(t, map(m) != NULL);
	expect_violation(t, 0xB8, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	IoFreeMdl(m);
}

static void unmap_of_an_unmapped_mdl(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	PVOID va = map(m);
	ASSERT_TRUE(t, va != NULL);
	MmUnmapLockedPages(va, m);
	/* 0xB6: the MDL, its flags, the flag missing (MDL_MAPPED_TO_SYSTEM_VA). */
	expect_violation(t, 0xB6, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_MAPPED_TO_SYSTEM_VA);
	MmUnmapLockedPages(va, m);
}

/* An address inside the mapping that is not the one returned: SYSTEM_PTE_MISUSE 0x03 (the
 * mapping's tracking record, the address expected, the address asked for). */
static void unmap_at_a_wrong_address(struct ktest *t)
{
	PMDL m = locked_mdl(t, 3 * PAGE_SIZE, 0x10, 2 * PAGE_SIZE);
	uint8_t *va = map(m);
	ASSERT_TRUE(t, va != NULL);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x03, syspte_tracking_record((uint64_t)va), (ULONG_PTR)va,
		    (ULONG_PTR)(va + PAGE_SIZE));
	MmUnmapLockedPages(va + PAGE_SIZE, m);
}

static void nonpaged_mdl_over_paged_pool(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	expect_violation(t, 0x7F, PASSIVE_LEVEL, (ULONG_PTR)m, (USHORT)m->MdlFlags);
	MmBuildMdlForNonPagedPool(m);
}

static void nonpaged_mdl_over_a_stack_buffer(struct ktest *t)
{
	volatile uint8_t local[64];
	local[0] = 0;
	PMDL m = IoAllocateMdl((PVOID)local, sizeof local, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	expect_violation(t, 0x7F, PASSIVE_LEVEL, (ULONG_PTR)m, (USHORT)m->MdlFlags);
	MmBuildMdlForNonPagedPool(m);
}

static void unlock_of_a_nonpaged_pool_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	expect_violation(t, 0x7D, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	MmUnlockPages(m);
}

static void unlock_of_a_partial_mdl(struct ktest *t)
{
	PMDL source = locked_mdl(t, 2 * PAGE_SIZE, 0, 2 * PAGE_SIZE);
	uint8_t *sub = (uint8_t *)MmGetMdlVirtualAddress(source) + PAGE_SIZE;
	PMDL part = IoAllocateMdl(sub, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(source, part, sub, PAGE_SIZE);
	expect_violation(t, 0xB4, (ULONG_PTR)part, (USHORT)part->MdlFlags, MDL_PARTIAL);
	MmUnlockPages(part);
}

/* 0xB0: probing an MDL that cannot be probed (MDL, flags, the offending flags). */
static void probe_of_a_locked_mdl(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	expect_violation(t, 0xB0, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_PAGES_LOCKED);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
}

static void probe_of_a_nonpaged_pool_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	expect_violation(t, 0xB0, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_SOURCE_IS_NONPAGED_POOL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
}

static void probe_of_a_partial_mdl(struct ktest *t)
{
	PMDL source = locked_mdl(t, 2 * PAGE_SIZE, 0, 2 * PAGE_SIZE);
	uint8_t *sub = (uint8_t *)MmGetMdlVirtualAddress(source) + PAGE_SIZE;
	PMDL part = IoAllocateMdl(sub, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(source, part, sub, PAGE_SIZE);
	expect_violation(t, 0xB0, (ULONG_PTR)part, (USHORT)part->MdlFlags, MDL_PARTIAL);
	MmProbeAndLockPages(part, KernelMode, IoReadAccess);
}

/* 0xB5: a partial MDL of a mapped source shares its mapping and may not unmap it (MDL,
 * flags, the partial flag). */
static void unmap_of_a_partial_mdls_parent_mapping(struct ktest *t)
{
	PMDL source = locked_mdl(t, 2 * PAGE_SIZE, 0, 2 * PAGE_SIZE);
	ASSERT_TRUE(t, map(source) != NULL);
	uint8_t *sub = (uint8_t *)MmGetMdlVirtualAddress(source) + PAGE_SIZE;
	PMDL part = IoAllocateMdl(sub, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(source, part, sub, PAGE_SIZE);
	ASSERT_TRUE(t, part->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA);
	expect_violation(t, 0xB5, (ULONG_PTR)part, (USHORT)part->MdlFlags, MDL_PARTIAL);
	MmUnmapLockedPages(part->MappedSystemVa, part);
}

/* 0xB3 from IoBuildPartialMdl: its source must be locked (source, flags, MDL_PAGES_LOCKED). */
static void partial_of_an_unlocked_source(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL source = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL), part = IoAllocateMdl(buf, 0x10, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, source && part);
	expect_violation(t, 0xB3, (ULONG_PTR)source, (USHORT)source->MdlFlags, MDL_PAGES_LOCKED);
	IoBuildPartialMdl(source, part, buf, 0x10);
}

/* 0xB2 from IoBuildPartialMdl: a target that still owns a mapping would lose it (target,
 * flags, MDL_PARTIAL_HAS_BEEN_MAPPED). */
static void partial_rebuilt_while_mapped(struct ktest *t)
{
	PMDL source = locked_mdl(t, 2 * PAGE_SIZE, 0, 2 * PAGE_SIZE);
	uint8_t *va = MmGetMdlVirtualAddress(source);
	PMDL part = IoAllocateMdl(va, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(source, part, va, PAGE_SIZE);
	ASSERT_TRUE(t, map(part) != NULL);
	ASSERT_TRUE(t, part->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED);
	expect_violation(t, 0xB2, (ULONG_PTR)part, (USHORT)part->MdlFlags, MDL_PARTIAL_HAS_BEEN_MAPPED);
	IoBuildPartialMdl(source, part, va + PAGE_SIZE, PAGE_SIZE);
}

/* An MDL of two pool pages marked locked by hand (a driver may set MDL_PAGES_LOCKED on an
 * MDL it filled); the caller puts a frame it does not hold in its second PFN entry. */
static PMDL hand_filled_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	m->MdlFlags = (m->MdlFlags & ~MDL_SOURCE_IS_NONPAGED_POOL) | MDL_PAGES_LOCKED;
	m->MappedSystemVa = NULL;
	return m;
}

/* 0x85: a free frame is not pinned (MDL, pages to map, the frame). */
static void map_of_a_frame_not_locked(struct ktest *t)
{
	PMDL m = hand_filled_mdl(t);
	pfn_t free_frame = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, free_frame, PFN_INVALID);
	pfn_free(free_frame);
	ASSERT_FALSE(t, pfn_frame_is_pinned(free_frame));
	MmGetMdlPfnArray(m)[1] = free_frame;
	expect_violation(t, 0x85, (ULONG_PTR)m, 2, free_frame);
	map(m);
}

/* 0x89: a frame outside RAM without MDL_IO_SPACE (MDL, its PFN array entry, the frame). */
static void map_of_a_non_ram_frame_without_io_space(struct ktest *t)
{
	const pfn_t beyond = (512ull << 30) >> PAGE_SHIFT; /* 512 GiB: no RAM there */
	ASSERT_FALSE(t, pfn_is_ram(beyond));
	PMDL m = hand_filled_mdl(t);
	MmGetMdlPfnArray(m)[1] = beyond;
	expect_violation(t, 0x89, (ULONG_PTR)m, (ULONG_PTR)&MmGetMdlPfnArray(m)[1], beyond);
	map(m);
}

/* 0x1A P1 0x1236: MmFreePagesFromMdl of a frame the MDL's allocation did not give (MDL, the
 * PFN array entry, the frame). */
static void free_pages_of_a_frame_not_the_mdls(struct ktest *t)
{
	PMDL m = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE);
	ASSERT_TRUE(t, m != NULL && mdl_page_count(m) == 2);
	pfn_t other = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, other, PFN_INVALID);
	MmGetMdlPfnArray(m)[1] = other;
	expect_stop(t, MEMORY_MANAGEMENT, 0x1236, (ULONG_PTR)m, (ULONG_PTR)&MmGetMdlPfnArray(m)[1], other);
	MmFreePagesFromMdl(m);
}

/* 0xE5: a kernel routine called above its IRQL (IRQL, reserved 0, reserved 0). */
static void allocate_mdl_above_dispatch(struct ktest *t)
{
	expect_violation(t, 0xE5, HIGH_LEVEL, 0, 0);
	raise_to(HIGH_LEVEL);
	IoAllocateMdl((PVOID)KVA_POOL_BASE, PAGE_SIZE, FALSE, FALSE, NULL);
}

static void protect_above_dispatch(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	ASSERT_TRUE(t, map(m) != NULL);
	expect_violation(t, 0xE5, DISPATCH_LEVEL + 1, 0, 0);
	raise_to(DISPATCH_LEVEL + 1);
	MmProtectMdlSystemAddress(m, PAGE_READONLY);
}

/* ---- VF_DEPRECATED ------------------------------------------------------------------------- */

/* Off by default: the calls the flag reports are ordinary.  On: the calls it does not report
 * still are. */
static void deprecated_checks_are_opt_in(struct ktest *t)
{
	uint32_t saved = verifier_get_flags();
	if (saved != VF_CHECKS)
		KTEST_SKIP(t, "booted with a verifier= option: not the default flags");
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);

	PVOID va = MmMapLockedPages(m, KernelMode);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, m);
	va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, TRUE, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, m);

	verifier_set_flags(VF_CHECKS | VF_DEPRECATED);
	va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, m);
	va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	verifier_set_flags(saved);

	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

static void deprecated_map_locked_pages(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	verifier_set_flags(VF_CHECKS | VF_DEPRECATED);
	expect_violation(t, 0x81, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	MmMapLockedPages(m, KernelMode);
}

static void deprecated_bug_check_on_failure(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	verifier_set_flags(VF_CHECKS | VF_DEPRECATED);
	expect_violation(t, 0x82, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, TRUE, NormalPagePriority);
}

/* ---- the verifier off -------------------------------------------------------------------- */

/* NT's own answer without the verifier: SYSTEM_PTE_MISUSE 0x06 (MDL, address, pages). */
static void verifier_off_unmap_of_an_unmapped_mdl(struct ktest *t)
{
	PMDL m = locked_mdl(t, PAGE_SIZE, 0, PAGE_SIZE);
	PVOID va = map(m);
	ASSERT_TRUE(t, va != NULL);
	MmUnmapLockedPages(va, m);
	verifier_set_flags(0);
	expect_stop(t, SYSTEM_PTE_MISUSE, 0x06, (ULONG_PTR)m, (ULONG_PTR)va, mdl_page_count(m));
	MmUnmapLockedPages(va, m);
}

/* IoFreeMdl of an MDL whose pages are still locked: mdlab's 0xC4/0x2007 (MDL, flags, pages). */
static void free_of_a_locked_mdl(struct ktest *t)
{
	PMDL m = locked_mdl(t, 3 * PAGE_SIZE, 0x10, 2 * PAGE_SIZE);
	expect_violation(t, 0x2007, (ULONG_PTR)m, (USHORT)m->MdlFlags, 3); /* 0x10 + 2 pages span 3 */
	IoFreeMdl(m);
}

/* Without the verifier IoFreeMdl frees the MDL and, as in NT, leaves its frames locked: they
 * are still locked afterwards, and only an unlock through another MDL naming them (here built
 * by hand, MDL_PAGES_LOCKED set by the driver as it may) gives them back. */
static void verifier_off_free_of_a_locked_mdl_leaves_the_frames_locked(struct ktest *t)
{
	uint32_t saved = verifier_get_flags();
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	pfn_t pfns[2] = { MmGetMdlPfnArray(m)[0], MmGetMdlPfnArray(m)[1] };
	uint32_t before[2] = { mmt_lock_count(pfns[0]), mmt_lock_count(pfns[1]) };
	verifier_set_flags(0);
	IoFreeMdl(m);
	verifier_set_flags(saved);
	EXPECT_EQ(t, mmt_lock_count(pfns[0]), before[0]);
	EXPECT_EQ(t, mmt_lock_count(pfns[1]), before[1]);
	EXPECT_GE(t, before[0], 1);
	PMDL again = IoAllocateMdl(buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, again != NULL);
	MmGetMdlPfnArray(again)[0] = pfns[0];
	MmGetMdlPfnArray(again)[1] = pfns[1];
	again->MdlFlags |= MDL_PAGES_LOCKED;
	MmUnlockPages(again);
	EXPECT_EQ(t, mmt_lock_count(pfns[0]), before[0] - 1);
	IoFreeMdl(again);
	ExFreePoolWithTag(buf, TAG);
}

/* An MDL a driver filled by hand and marked MDL_PAGES_LOCKED holds no lock count: IoFreeMdl
 * frees it, verifier on, without a stop; a probe-locked one unlocked first, too. */
static void free_of_a_hand_made_or_unlocked_mdl_is_fine(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	EXPECT_TRUE(t, m->MdlabFlags & MDLAB_MDL_PROBE_LOCKED);
	PMDL hand = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, hand != NULL);
	MmGetMdlPfnArray(hand)[0] = MmGetMdlPfnArray(m)[0];
	hand->MdlFlags |= MDL_PAGES_LOCKED;
	EXPECT_FALSE(t, hand->MdlabFlags & MDLAB_MDL_PROBE_LOCKED);
	IoFreeMdl(hand);
	MmUnlockPages(m);
	EXPECT_FALSE(t, m->MdlabFlags & MDLAB_MDL_PROBE_LOCKED);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

static struct ktest_case mdl_verifier_cases[] = {
	/* IRQL */
	KTEST_DEATH_CASE_P1(probe_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70),
	KTEST_DEATH_CASE_P1(probe_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70),
	KTEST_DEATH_CASE_P1(map_specify_cache_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76),
	KTEST_DEATH_CASE_P1(map_specify_cache_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76),
	KTEST_DEATH_CASE_P1(map_locked_pages_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x74),
	KTEST_DEATH_CASE_P1(map_locked_pages_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x74),
	KTEST_DEATH_CASE_P1(unlock_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x78),
	KTEST_DEATH_CASE_P1(unlock_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x78),
	KTEST_DEATH_CASE_P1(unmap_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x79),
	KTEST_DEATH_CASE_P1(unmap_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x79),
	KTEST_DEATH_CASE_P1(allocate_pages_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_DEATH_CASE_P1(allocate_pages_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_DEATH_CASE_P1(allocate_pages_ex_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_DEATH_CASE_P1(allocate_pages_ex_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_DEATH_CASE_P1(free_pages_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_DEATH_CASE_P1(free_pages_just_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7E),
	KTEST_CASE(everything_works_at_dispatch_level),
	/* misuse */
	KTEST_DEATH_CASE_P1(free_of_a_mapped_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB8),
	KTEST_DEATH_CASE_P1(free_of_a_locked_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2007),
	KTEST_CASE(verifier_off_free_of_a_locked_mdl_leaves_the_frames_locked),
	KTEST_CASE(free_of_a_hand_made_or_unlocked_mdl_is_fine),
	KTEST_DEATH_CASE_P1(unmap_of_an_unmapped_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB6),
	KTEST_DEATH_CASE_P1(unmap_at_a_wrong_address, SYSTEM_PTE_MISUSE, 0x03),
	KTEST_DEATH_CASE_P1(nonpaged_mdl_over_paged_pool, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F),
	KTEST_DEATH_CASE_P1(nonpaged_mdl_over_a_stack_buffer, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7F),
	KTEST_DEATH_CASE_P1(unlock_of_a_nonpaged_pool_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7D),
	KTEST_DEATH_CASE_P1(unlock_of_a_partial_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB4),
	KTEST_DEATH_CASE_P1(probe_of_a_locked_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB0),
	KTEST_DEATH_CASE_P1(probe_of_a_nonpaged_pool_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB0),
	KTEST_DEATH_CASE_P1(probe_of_a_partial_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB0),
	KTEST_DEATH_CASE_P1(unmap_of_a_partial_mdls_parent_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB5),
	KTEST_DEATH_CASE_P1(partial_of_an_unlocked_source, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	KTEST_DEATH_CASE_P1(partial_rebuilt_while_mapped, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB2),
	KTEST_DEATH_CASE_P1(map_of_a_frame_not_locked, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x85),
	KTEST_DEATH_CASE_P1(map_of_a_non_ram_frame_without_io_space, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x89),
	KTEST_DEATH_CASE_P1(free_pages_of_a_frame_not_the_mdls, MEMORY_MANAGEMENT, 0x1236),
	KTEST_DEATH_CASE_P1(allocate_mdl_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	KTEST_DEATH_CASE_P1(protect_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	/* VF_DEPRECATED */
	KTEST_CASE(deprecated_checks_are_opt_in),
	KTEST_DEATH_CASE_P1(deprecated_map_locked_pages, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x81),
	KTEST_DEATH_CASE_P1(deprecated_bug_check_on_failure, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x82),
	/* verifier off */
	KTEST_DEATH_CASE_P1(verifier_off_unmap_of_an_unmapped_mdl, SYSTEM_PTE_MISUSE, 0x06),
	{ 0 }
};
KTEST_SUITE(mdl_verifier, mdl_verifier_cases);
