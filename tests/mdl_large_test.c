/*
 * Large MDLs: a 512-page MDL from MmAllocatePagesForMdlEx and a 4 MiB
 * (1024-page) MDL over pool map and unmap page for page — every PTE names the right frame
 * (read from the tables), a byte written through each page of the mapping reads back
 * through the direct map of that frame — and a request larger than the whole system-PTE
 * region fails with NULL and leaves the region and the MDL as they were.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x674C644Du /* 'MdLg' */
#define MAX_MDL_BYTES (0x100000000ul - PAGE_SIZE)

static PHYSICAL_ADDRESS pa(uint64_t x)
{
	PHYSICAL_ADDRESS p;
	p.QuadPart = (LONGLONG)x;
	return p;
}

/* Every page of the mapping at va: present, 4 KiB, the MDL's frame, RW, NX; then a byte
 * per page written through the mapping is read through the direct map of the frame, and
 * one written through the direct map is read through the mapping. */
static void check_mapping(struct ktest *t, PMDL m, uint8_t *va)
{
	ULONG n = mdl_page_count(m);
	uint64_t base = ALIGN_DOWN((uint64_t)va, PAGE_SIZE);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	unsigned bad = 0;
	for (ULONG i = 0; i < n && bad < 8; i++) {
		struct pt_query q;
		pt_query(&kernel_root, base + (uint64_t)i * PAGE_SIZE, &q);
		uint64_t e = q.entry[1];
		if (!q.present || q.level != 1 || mmt_leaf_pa(e, 1) >> PAGE_SHIFT != pfns[i] ||
		    !mmt_has(e, MMT_PTE_RW) || !mmt_has(e, MMT_PTE_NX)) {
			KTEST_FAIL(t, "page %u: PTE 0x%lx (level %d), expected frame 0x%lx RW NX", i, e, q.level,
				   pfns[i]);
			bad++;
			continue;
		}
		uint64_t off = (i * 0x58u) % PAGE_SIZE;
		volatile uint8_t *mapped = (volatile uint8_t *)(base + (uint64_t)i * PAGE_SIZE + off);
		volatile uint8_t *direct = (volatile uint8_t *)pfn_to_virt(pfns[i]) + off;
		*mapped = (uint8_t)(i * 13 + 1);
		if (*direct != (uint8_t)(i * 13 + 1)) {
			KTEST_FAIL(t, "page %u: byte written through the mapping not seen in frame 0x%lx", i, pfns[i]);
			bad++;
		}
		*direct = (uint8_t)~(i * 13 + 1);
		if (*mapped != (uint8_t)~(i * 13 + 1)) {
			KTEST_FAIL(t, "page %u: byte written in frame 0x%lx not seen through the mapping", i, pfns[i]);
			bad++;
		}
	}
}

static void expect_unmapped(struct ktest *t, uint64_t base, ULONG n)
{
	unsigned bad = 0;
	for (ULONG i = 0; i < n && bad < 8; i++)
		if (!mmt_va_unmapped(base + (uint64_t)i * PAGE_SIZE)) {
			KTEST_FAIL(t, "page %u at 0x%lx is still mapped", i, base + (uint64_t)i * PAGE_SIZE);
			bad++;
		}
}

/* Room for an n-page Normal-priority mapping (boot option syspte=N can shrink the region). */
static void need_sysptes(struct ktest *t, uint64_t n)
{
	if (mmt_free_sysptes() < n + SYSPTE_NORMAL_RESERVE((uint64_t)syspte_total()))
		KTEST_SKIP(t, "the system-PTE region is too small for this mapping");
}

static void map_512_pages_from_allocate_pages(struct ktest *t)
{
	need_sysptes(t, 512);
	PMDL m = MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(0), 512 * PAGE_SIZE, MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	ASSERT_EQ(t, m->ByteCount, 512 * PAGE_SIZE);
	uint64_t ptes = mmt_free_sysptes();
	uint8_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes - 512);
	EXPECT_TRUE(t, syspte_contains((uint64_t)va) && syspte_contains((uint64_t)va + 511 * PAGE_SIZE));
	check_mapping(t, m, va);
	MmUnmapLockedPages(va, m);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	expect_unmapped(t, (uint64_t)va, 512);
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

static void map_4mib_of_pool(struct ktest *t)
{
	const ULONG n = 1024;
	need_sysptes(t, n);
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, n * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, n * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	ASSERT_EQ(t, mdl_page_count(m), n);
	uint64_t ptes = mmt_free_sysptes();
	uint8_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes - n);
	check_mapping(t, m, va);
	/* The last byte, through both addresses. */
	va[n * PAGE_SIZE - 1] = 0x6D;
	EXPECT_EQ(t, buf[n * PAGE_SIZE - 1], 0x6D);
	MmUnlockPages(m); /* releases the mapping */
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	expect_unmapped(t, (uint64_t)va, n);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

/* The failed mapping changed nothing: flags, address, and the system-PTE space (free, in
 * use, reservations); the failure was counted as High's (it could not be placed at all). */
static void expect_map_refused(struct ktest *t, PMDL m)
{
	USHORT flags = m->MdlFlags;
	struct syspte_stats s0, s1;
	struct mdl_stats m0, m1;
	syspte_get_stats(&s0);
	mdl_get_stats(&m0);
	EXPECT_TRUE(t, MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, HighPagePriority) == NULL);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, HighPagePriority) == NULL);
	syspte_get_stats(&s1);
	mdl_get_stats(&m1);
	EXPECT_EQ(t, (USHORT)m->MdlFlags, flags);
	EXPECT_TRUE(t, m->MappedSystemVa == NULL);
	EXPECT_EQ(t, s1.free, s0.free);
	EXPECT_EQ(t, s1.in_use, s0.in_use);
	EXPECT_EQ(t, s1.reservations, s0.reservations);
	EXPECT_EQ(t, s1.failures_high, s0.failures_high + 2);
	EXPECT_EQ(t, m1.map_failures, m0.map_failures + 2);
	EXPECT_EQ(t, m1.maps, m0.maps);
}

/* An MDL of syspte_total() + 1 pages, built by hand: every PFN the one frame a real probe
 * has locked, PAGES_LOCKED set.  Nothing is ever mapped from it. */
struct huge_mdl {
	uint8_t *buf;
	PMDL anchor;  /* the real lock on the frame */
	PMDL mdl;
};

static void build_huge_mdl(struct ktest *t, struct huge_mdl *h, uint64_t pages)
{
	h->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, h->buf != NULL);
	h->anchor = IoAllocateMdl(h->buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, h->anchor != NULL);
	MmProbeAndLockPages(h->anchor, KernelMode, IoWriteAccess);
	h->mdl = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof(MDL) + pages * sizeof(PFN_NUMBER), TAG);
	ASSERT_TRUE(t, h->mdl != NULL);
	MmInitializeMdl(h->mdl, h->buf, pages * PAGE_SIZE);
	for (uint64_t i = 0; i < pages; i++)
		MmGetMdlPfnArray(h->mdl)[i] = MmGetMdlPfnArray(h->anchor)[0];
	h->mdl->MdlFlags = MDL_PAGES_LOCKED;
	ASSERT_EQ(t, mdl_page_count(h->mdl), pages);
}

static void free_huge_mdl(struct huge_mdl *h)
{
	ExFreePoolWithTag(h->mdl, TAG); /* never really locked: nothing to unlock */
	MmUnlockPages(h->anchor);
	IoFreeMdl(h->anchor);
	ExFreePoolWithTag(h->buf, TAG);
}

static void larger_than_the_syspte_region_fails_cleanly(struct ktest *t)
{
	uint64_t pages = (uint64_t)syspte_total() + 1;
	if (pages * PAGE_SIZE > MAX_MDL_BYTES)
		KTEST_SKIP(t, "the system-PTE region is larger than an MDL can describe");
	struct huge_mdl h;
	build_huge_mdl(t, &h, pages);
	pfn_t frame = MmGetMdlPfnArray(h.anchor)[0];
	EXPECT_EQ(t, pfn_entry(frame)->lock_count, 1);
	expect_map_refused(t, h.mdl);
	EXPECT_EQ(t, pfn_entry(frame)->lock_count, 1);
	free_huge_mdl(&h);
}

/* The same with real frames, when RAM has room for them (MM_DONT_ZERO_ALLOCATION: the
 * frames are never read, and zeroing hundreds of MiB would only slow the run). */
static void larger_than_the_syspte_region_with_real_frames(struct ktest *t)
{
	uint64_t pages = (uint64_t)syspte_total() + 1;
	struct pfn_stats ps;
	pfn_get_stats(&ps);
	if (pages * PAGE_SIZE > MAX_MDL_BYTES || ps.free < pages + 8192)
		KTEST_SKIP(t, "not enough free RAM for an MDL larger than the system-PTE region");
	PMDL m = MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(0), pages * PAGE_SIZE, MmCached,
					 MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, m != NULL);
	ASSERT_EQ(t, mdl_page_count(m), pages);
	expect_map_refused(t, m);
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

/* Death: the same request with BugCheckOnFailure TRUE is NO_MORE_SYSTEM_PTES (0x3F) with
 * P1 0 (system PTEs), P2 the pages asked for, P3 the free PTEs, P4 all of them. */
static void larger_than_the_syspte_region_bug_checks_when_asked(struct ktest *t)
{
	struct huge_mdl h;
	build_huge_mdl(t, &h, (uint64_t)syspte_total() + 1);
	struct syspte_stats s;
	syspte_get_stats(&s);
	expect_stop(t, NO_MORE_SYSTEM_PTES, 0, syspte_total() + 1, s.free, syspte_total());
	MmMapLockedPagesSpecifyCache(h.mdl, KernelMode, MmCached, NULL, TRUE, HighPagePriority);
}

static struct ktest_case mdl_large_cases[] = {
	KTEST_CASE(map_512_pages_from_allocate_pages),
	KTEST_CASE(map_4mib_of_pool),
	KTEST_CASE(larger_than_the_syspte_region_fails_cleanly),
	KTEST_CASE(larger_than_the_syspte_region_with_real_frames),
	KTEST_DEATH_CASE_P1(larger_than_the_syspte_region_bug_checks_when_asked, NO_MORE_SYSTEM_PTES, 0),
	{ 0 }
};
KTEST_SUITE(mdl_large, mdl_large_cases);
