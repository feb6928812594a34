/*
 * Who releases a system mapping: the release table of mm/RULES.md rule 8 (from Microsoft's
 * MmGetSystemAddressForMdlSafe page),
 * one case per row.
 *
 *   MDL built by               released by
 *   MmProbeAndLockPages        MmUnlockPages
 *   MmBuildMdlForNonPagedPool  nothing (the pool address is reused)
 *   IoBuildPartialMdl          MmPrepareMdlForReuse or IoFreeMdl
 *   MmAllocatePagesForMdl(Ex)  MmUnmapLockedPages, or MmFreePagesFromMdl
 *
 * A release is proven three ways: the free system-PTE count is back where it was, every page
 * of the old mapping is not present in the real tables, and a read through it (made after
 * the mapping was used, so a stale TLB entry would show) faults not-present: #PF error code 0
 * with CR2 the address read.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/trap.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x7253644Du /* 'MdSr' */

/* Pages for MDLs from anywhere in RAM (High: the largest positive PHYSICAL_ADDRESS). */
static const PHYSICAL_ADDRESS ANY_LOW = { .QuadPart = 0 };
static const PHYSICAL_ADDRESS ANY_HIGH = { .QuadPart = 0x7FFFFFFFFFFFFFFFll };
static const PHYSICAL_ADDRESS NO_SKIP = { .QuadPart = 0 };

/* Read one byte through each page of a live mapping (fills the TLB; checks the content). */
static void touch(struct ktest *t, const uint8_t *va, ULONG pages, const uint8_t *expect)
{
	for (ULONG i = 0; i < pages; i++) {
		uint64_t page = (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE;
		EXPECT_TRUE(t, mmt_va_mapped(page));
		(void)*(volatile const uint8_t *)page;
	}
	if (expect)
		EXPECT_EQ(t, *(volatile const uint8_t *)va, *expect);
}

/* Every page of the old mapping is gone from the tables and a read of it faults not-present. */
static void expect_released(struct ktest *t, const void *va, ULONG pages)
{
	for (ULONG i = 0; i < pages; i++) {
		uint64_t a = (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE + 0x18;
		EXPECT_FALSE(t, mmt_va_mapped(a));
		struct faultcap f;
		uint8_t v;
		EXPECT_FALSE(t, faultcap_try_load8(a, &v, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, a);
	}
}

/* A page-aligned pool buffer with a byte pattern, and an MDL over part of it. */
static uint8_t *pattern_buffer(struct ktest *t, SIZE_T size)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG);
	ASSERT_TRUE(t, buf != NULL);
	for (SIZE_T i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	return buf;
}

static PMDL locked_mdl(struct ktest *t, uint8_t *va, ULONG len)
{
	PMDL m = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

/* ---- MmProbeAndLockPages: MmUnlockPages ------------------------------------------------ */

static void unlock_releases_a_probe_locked_mapping(struct ktest *t)
{
	for (int how = 0; how < 2; how++) {
		uint8_t *buf = pattern_buffer(t, 3 * PAGE_SIZE);
		uint64_t before = mmt_free_sysptes();
		PMDL m = locked_mdl(t, buf + 0x70, 2 * PAGE_SIZE); /* three pages */
		uint8_t *va = how == 0 ? MmGetSystemAddressForMdlSafe(m, NormalPagePriority)
				       : MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE,
								      HighPagePriority | MdlMappingNoWrite);
		ASSERT_TRUE(t, va != NULL);
		EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
		touch(t, va, 3, buf + 0x70);

		MmUnlockPages(m);
		EXPECT_EQ(t, mmt_free_sysptes(), before);
		EXPECT_FALSE(t, m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PAGES_LOCKED));
		expect_released(t, va, 3);
		/* The pool's own mapping is not the MDL's to release. */
		EXPECT_TRUE(t, mmt_va_mapped((uint64_t)buf + 0x70));
		EXPECT_EQ(t, buf[0x70], (uint8_t)(0x70 * 13 + 1));
		IoFreeMdl(m);
		ExFreePoolWithTag(buf, TAG);
	}
}

/* ---- MmBuildMdlForNonPagedPool: nothing ------------------------------------------------ */

static void nonpaged_pool_mdl_needs_no_release(struct ktest *t)
{
	uint8_t *buf = pattern_buffer(t, 2 * PAGE_SIZE);
	struct syspte_stats s0, s1;
	struct pfn_stats p0, p1;
	syspte_get_stats(&s0);
	pfn_get_stats(&p0);
	PMDL m = IoAllocateMdl(buf + 0x30, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	uint8_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	EXPECT_TRUE(t, va == buf + 0x30);
	EXPECT_FALSE(t, m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PAGES_LOCKED));
	/* No unlock, no unmap: the MDL goes, nothing was taken and nothing is left behind. */
	IoFreeMdl(m);
	syspte_get_stats(&s1);
	pfn_get_stats(&p1);
	EXPECT_EQ(t, s1.free, s0.free);
	EXPECT_EQ(t, s1.reservations, s0.reservations);
	EXPECT_EQ(t, s1.releases, s0.releases);
	EXPECT_EQ(t, p1.locked, p0.locked);
	EXPECT_TRUE(t, mmt_va_mapped((uint64_t)va) && mmt_va_mapped((uint64_t)va + PAGE_SIZE));
	EXPECT_EQ(t, *va, (uint8_t)(0x30 * 13 + 1));
	ExFreePoolWithTag(buf, TAG);
}

/* ---- IoBuildPartialMdl: MmPrepareMdlForReuse or IoFreeMdl ------------------------------ */

/* A locked, unmapped source over four pages and a partial MDL over two of them, mapped by
 * MmGetSystemAddressForMdlSafe on its own (PARTIAL_HAS_BEEN_MAPPED). */
struct partial_setup {
	uint8_t *buf;
	PMDL source, partial;
	uint8_t *va;
	uint64_t before;
};

static void map_partial(struct ktest *t, struct partial_setup *p)
{
	p->buf = pattern_buffer(t, 4 * PAGE_SIZE);
	p->before = mmt_free_sysptes();
	p->source = locked_mdl(t, p->buf, 4 * PAGE_SIZE);
	uint8_t *sub = p->buf + PAGE_SIZE + 0x30;
	p->partial = IoAllocateMdl(sub, PAGE_SIZE, FALSE, FALSE, NULL); /* two pages */
	ASSERT_TRUE(t, p->partial != NULL);
	IoBuildPartialMdl(p->source, p->partial, sub, PAGE_SIZE);
	p->va = MmGetSystemAddressForMdlSafe(p->partial, NormalPagePriority);
	ASSERT_TRUE(t, p->va != NULL);
	EXPECT_TRUE(t, p->partial->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED);
	EXPECT_TRUE(t, p->partial->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_FALSE(t, p->source->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, mmt_free_sysptes(), p->before - 2);
	touch(t, p->va, 2, sub);
}

static void release_source(struct partial_setup *p)
{
	MmUnlockPages(p->source);
	IoFreeMdl(p->source);
	ExFreePoolWithTag(p->buf, TAG);
}

static void prepare_for_reuse_releases_a_partial_mapping(struct ktest *t)
{
	struct partial_setup p;
	map_partial(t, &p);
	MmPrepareMdlForReuse(p.partial);
	EXPECT_EQ(t, mmt_free_sysptes(), p.before);
	EXPECT_FALSE(t, p.partial->MdlFlags & (MDL_PARTIAL_HAS_BEEN_MAPPED | MDL_MAPPED_TO_SYSTEM_VA));
	expect_released(t, p.va, 2);

	/* Reusable now: rebuilt over another range, it maps and releases again. */
	uint8_t *sub = p.buf + 3 * PAGE_SIZE + 0x800;
	IoBuildPartialMdl(p.source, p.partial, sub, 0x10);
	uint8_t *va = MmGetSystemAddressForMdlSafe(p.partial, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), p.before - 1);
	touch(t, va, 1, sub);
	MmPrepareMdlForReuse(p.partial);
	EXPECT_EQ(t, mmt_free_sysptes(), p.before);
	expect_released(t, va, 1);

	IoFreeMdl(p.partial);
	release_source(&p);
}

static void free_mdl_releases_a_partial_mapping(struct ktest *t)
{
	struct partial_setup p;
	map_partial(t, &p);
	IoFreeMdl(p.partial);
	EXPECT_EQ(t, mmt_free_sysptes(), p.before);
	expect_released(t, p.va, 2);
	release_source(&p);
}

/* The other side of the row: a partial MDL of a mapped source shares that mapping and owns
 * nothing — MmPrepareMdlForReuse and IoFreeMdl release nothing; MmUnlockPages of the source
 * releases the one mapping. */
static void partial_of_a_mapped_source_owns_nothing(struct ktest *t)
{
	uint8_t *buf = pattern_buffer(t, 3 * PAGE_SIZE);
	uint64_t before = mmt_free_sysptes();
	PMDL source = locked_mdl(t, buf, 3 * PAGE_SIZE);
	uint8_t *sva = MmGetSystemAddressForMdlSafe(source, NormalPagePriority);
	ASSERT_TRUE(t, sva != NULL);
	PMDL partial = IoAllocateMdl(buf + PAGE_SIZE + 4, 8, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, partial != NULL);
	IoBuildPartialMdl(source, partial, buf + PAGE_SIZE + 4, 8);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(partial, NormalPagePriority) == sva + PAGE_SIZE + 4);
	EXPECT_FALSE(t, partial->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
	MmPrepareMdlForReuse(partial);
	IoFreeMdl(partial);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
	touch(t, sva, 3, buf);
	MmUnlockPages(source);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	expect_released(t, sva, 3);
	IoFreeMdl(source);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- MmAllocatePagesForMdl(Ex): MmUnmapLockedPages or MmFreePagesFromMdl --------------- */

static PMDL allocate(int ex, SIZE_T bytes)
{
	return ex ? MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, bytes, MmCached, 0)
		  : MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, bytes);
}

static bool owned_by(pfn_t pfn, PMDL m)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && e->state == PFN_ACTIVE && e->owner_kind == PFN_OWNER_MDL && e->owner == (uint64_t)m;
}

/* One MmUnmapLockedPages releases the mapping, however many MmGetSystemAddressForMdlSafe
 * calls returned it; the pages stay the MDL's. */
static void unmap_releases_an_allocated_pages_mapping(struct ktest *t)
{
	for (int ex = 0; ex < 2; ex++) {
		uint64_t before = mmt_free_sysptes();
		PMDL a = allocate(ex, 2 * PAGE_SIZE);
		ASSERT_TRUE(t, a != NULL);
		uint8_t *va = MmGetSystemAddressForMdlSafe(a, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(a, NormalPagePriority) == va);
		EXPECT_EQ(t, mmt_free_sysptes(), before - 2);
		touch(t, va, 2, NULL);
		MmUnmapLockedPages(va, a);
		EXPECT_EQ(t, mmt_free_sysptes(), before);
		EXPECT_FALSE(t, a->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
		expect_released(t, va, 2);
		EXPECT_TRUE(t, owned_by(MmGetMdlPfnArray(a)[0], a) && owned_by(MmGetMdlPfnArray(a)[1], a));
		MmFreePagesFromMdl(a);
		ExFreePool(a);
	}
}

/* Windows 7 and later: MmFreePagesFromMdl releases a mapping left in place, then the pages. */
static void free_pages_releases_an_allocated_pages_mapping(struct ktest *t)
{
	for (int ex = 0; ex < 2; ex++) {
		uint64_t before = mmt_free_sysptes();
		PMDL a = allocate(ex, 3 * PAGE_SIZE);
		ASSERT_TRUE(t, a != NULL);
		pfn_t first = MmGetMdlPfnArray(a)[0], last = MmGetMdlPfnArray(a)[2];
		uint8_t *va = MmMapLockedPagesSpecifyCache(a, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
		touch(t, va, 3, NULL);
		MmFreePagesFromMdl(a);
		EXPECT_EQ(t, mmt_free_sysptes(), before);
		EXPECT_FALSE(t, a->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
		expect_released(t, va, 3);
		EXPECT_TRUE(t, mmt_frame_is_free(first) && mmt_frame_is_free(last));
		ExFreePool(a);
	}
}

static struct ktest_case mdl_release_cases[] = {
	KTEST_CASE(unlock_releases_a_probe_locked_mapping),
	KTEST_CASE(nonpaged_pool_mdl_needs_no_release),
	KTEST_CASE(prepare_for_reuse_releases_a_partial_mapping),
	KTEST_CASE(free_mdl_releases_a_partial_mapping),
	KTEST_CASE(partial_of_a_mapped_source_owns_nothing),
	KTEST_CASE(unmap_releases_an_allocated_pages_mapping),
	KTEST_CASE(free_pages_releases_an_allocated_pages_mapping),
	{ 0 }
};
KTEST_SUITE(mdl_release, mdl_release_cases);
