/*
 * MmAllocatePagesForMdl(Ex) and MmFreePagesFromMdl (mm/RULES.md rule 10): the
 * physical window [Low, High] and its Skip steps, contiguous chunks, all-or-nothing,
 * partial results, zeroing, refused flags, the fields of the MDL handed back, and the
 * frames' memory type coming and going with the allocation.
 *
 * Frame numbers are checked one by one against the window; memory types are read from the
 * real tables (the direct-map alias and the MDL's mapping, decoded through IA32_PAT read by
 * RDMSR); contents are read through a real mapping of the MDL.
 *
 * Exact windows: prepare_window() finds a run of free frames, fills them with a pattern,
 * and frees them with a cushion of other free frames freed after them, so that the pool
 * page or table page an MDL needs comes off the free list from the cushion, and a request
 * confined to the window sees exactly the frames the test dirtied.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define DIRT 0xA5
#define CUSHION 16
#define SEARCH_FROM_PFN 0x100u  /* windows sit above the first MiB */
#define SKIP_64K (64 * 1024)
#define PAGES(n) ((SIZE_T)(n) * PAGE_SIZE)

static PHYSICAL_ADDRESS pa(uint64_t x)
{
	PHYSICAL_ADDRESS p;
	p.QuadPart = (LONGLONG)x;
	return p;
}

static PHYSICAL_ADDRESS frame_start(pfn_t pfn) { return pa(pfn << PAGE_SHIFT); }
/* The last byte of frame pfn: High is an inclusive address. */
static PHYSICAL_ADDRESS frame_end(pfn_t pfn) { return pa((pfn << PAGE_SHIFT) + PAGE_SIZE - 1); }

static const PHYSICAL_ADDRESS NO_SKIP = { .QuadPart = 0 };

static PMDL alloc_anywhere(SIZE_T bytes, MEMORY_CACHING_TYPE type, ULONG flags)
{
	return MmAllocatePagesForMdlEx(pa(0), pa(~0ull), NO_SKIP, bytes, type, flags);
}

static void free_mdl(PMDL m)
{
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

/* `n` contiguous free frames, each filled with `fill`, freed again with CUSHION other
 * frames freed after them (see the file comment).  Returns the first frame of the run. */
static pfn_t prepare_window(struct ktest *t, uint64_t n, uint8_t fill)
{
	pfn_t first = pfn_alloc_run(SEARCH_FROM_PFN, ~0ull, n, 1, 0, PFN_OWNER_TEST);
	ASSERT_NE(t, first, PFN_INVALID);
	for (uint64_t i = 0; i < n; i++)
		memset(pfn_to_virt(first + i), fill, PAGE_SIZE);
	pfn_t cushion[CUSHION];
	uint64_t c = 0;
	while (c < CUSHION && (cushion[c] = pfn_alloc(0, PFN_OWNER_TEST)) != PFN_INVALID)
		c++;
	for (uint64_t i = 0; i < n; i++)
		pfn_free(first + i);
	while (c)
		pfn_free(cushion[--c]);
	return first;
}

/* Every frame of the MDL lies in [lo, hi] and none appears twice. */
static void expect_pfns_within(struct ktest *t, PMDL m, pfn_t lo, pfn_t hi)
{
	PPFN_NUMBER p = MmGetMdlPfnArray(m);
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++) {
		if (p[i] < lo || p[i] > hi)
			KTEST_FAIL(t, "PFN[%u] = 0x%lx is outside [0x%lx, 0x%lx]", i, p[i], lo, hi);
		for (ULONG j = 0; j < i; j++)
			if (p[j] == p[i])
				KTEST_FAIL(t, "PFN 0x%lx appears at [%u] and [%u]", p[i], j, i);
	}
}

/* ---- the window ------------------------------------------------------------------- */

static void every_pfn_lies_within_low_and_high(struct ktest *t)
{
	/* A 16 MiB window in the middle of RAM, through both entry points. */
	pfn_t lo = 0x4000, hi = 0x4FFF;
	PMDL m = MmAllocatePagesForMdlEx(frame_start(lo), frame_end(hi), NO_SKIP, PAGES(200), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(200));
	expect_pfns_within(t, m, lo, hi);
	free_mdl(m);

	m = MmAllocatePagesForMdl(frame_start(lo), frame_end(hi), NO_SKIP, PAGES(33));
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(33));
	expect_pfns_within(t, m, lo, hi);
	free_mdl(m);

	/* A window of exactly four free frames gives exactly those four. */
	pfn_t w = prepare_window(t, 4, DIRT);
	m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), NO_SKIP, PAGES(4), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(4));
	expect_pfns_within(t, m, w, w + 3);
	free_mdl(m);
}

/* A High of all ones (0xFFFFFFFFFFFFFFFF, what drivers pass for "no limit") is the top of
 * the physical space, not a negative number below Low. */
static void all_ones_high_address_means_no_limit(struct ktest *t)
{
	PMDL m = MmAllocatePagesForMdlEx(pa(0), pa(0xFFFFFFFFFFFFFFFFull), NO_SKIP, PAGES(3), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(3));
	free_mdl(m);
	m = MmAllocatePagesForMdl(pa(0x100000), pa(0xFFFFFFFFFFFFFFFFull), NO_SKIP, PAGES(2));
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(2));
	expect_pfns_within(t, m, 0x100, ~0ull);
	free_mdl(m);
}

/* Skip moves the window: [Low, High], then [Low + Skip, High + Skip], ...  With a 4-frame
 * window and a 16-frame Skip, 12 pages come 4 from each of the first three windows and
 * none from the frames between them (which are free too). */
static void skip_moves_the_window(struct ktest *t)
{
	pfn_t w = prepare_window(t, 48, DIRT);
	PMDL m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), pa(PAGES(16)), PAGES(12), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(12));
	unsigned per_window[3] = { 0 };
	PPFN_NUMBER p = MmGetMdlPfnArray(m);
	for (ULONG i = 0; i < mdl_page_count(m); i++) {
		uint64_t off = p[i] - w;
		if (p[i] < w || off >= 48 || off % 16 >= 4)
			KTEST_FAIL(t, "PFN[%u] = 0x%lx is not in a window (first frame 0x%lx)", i, p[i], w);
		else
			per_window[off / 16]++;
	}
	for (int k = 0; k < 3; k++)
		EXPECT_EQ(t, per_window[k], 4);
	expect_pfns_within(t, m, w, w + 47);
	free_mdl(m);

	/* Without Skip the same request stays in the first window: 4 pages, reported. */
	w = prepare_window(t, 48, DIRT);
	m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), NO_SKIP, PAGES(12), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(4));
	expect_pfns_within(t, m, w, w + 3);
	free_mdl(m);
}

/* ---- contiguous chunks ---------------------------------------------------------------- */

static void contiguous_chunks_without_skip_are_one_block(struct ktest *t)
{
	PMDL m = alloc_anywhere(PAGES(64), MmCached, MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(64));
	PPFN_NUMBER p = MmGetMdlPfnArray(m);
	for (ULONG i = 1; i < 64; i++)
		if (p[i] != p[0] + i)
			KTEST_FAIL(t, "PFN[%u] = 0x%lx, expected 0x%lx (one block from 0x%lx)", i, p[i], p[0] + i,
				   p[0]);
	free_mdl(m);

	/* A window of 8 free frames with a busy one in the middle has no block of 8: NULL
	 * (nothing taken); without the flag the 7 free frames come back. */
	pfn_t w = prepare_window(t, 8, DIRT);
	pfn_t hole = pfn_alloc_in(w + 4, w + 4, 0, PFN_OWNER_TEST);
	ASSERT_EQ(t, hole, w + 4);
	uint64_t before = mmt_free_frames();
	m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 7), NO_SKIP, PAGES(8), MmCached,
				    MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS);
	EXPECT_TRUE(t, m == NULL);
	EXPECT_EQ(t, mmt_free_frames(), before);
	for (pfn_t f = w; f < w + 8; f++)
		EXPECT_EQ(t, mmt_frame_is_free(f), f != hole);
	if (m)
		free_mdl(m);
	m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 7), NO_SKIP, PAGES(8), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(7));
	expect_pfns_within(t, m, w, w + 7);
	free_mdl(m);
	pfn_free(hole);
}

/* Skip = 64 KiB: blocks of 16 frames, each contiguous and starting on a 64 KiB boundary. */
static void contiguous_chunks_with_skip_are_aligned_blocks(struct ktest *t)
{
	PMDL m = MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(SKIP_64K), 4 * SKIP_64K, MmCached,
				    MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, 4 * SKIP_64K);
	PPFN_NUMBER p = MmGetMdlPfnArray(m);
	const ULONG chunk = SKIP_64K / PAGE_SIZE;
	for (ULONG c = 0; c < 4; c++) {
		pfn_t first = p[c * chunk];
		if ((first << PAGE_SHIFT) % SKIP_64K)
			KTEST_FAIL(t, "block %u starts at 0x%lx, not 64 KiB-aligned", c, first << PAGE_SHIFT);
		for (ULONG i = 1; i < chunk; i++)
			if (p[c * chunk + i] != first + i)
				KTEST_FAIL(t, "block %u, page %u: PFN 0x%lx, expected 0x%lx", c, i, p[c * chunk + i],
					   first + i);
	}
	expect_pfns_within(t, m, 0, ~0ull);
	free_mdl(m);

	/* Skip must be a power of two of at least a page, and TotalBytes a multiple of it. */
	uint64_t before = mmt_free_frames();
	EXPECT_TRUE(t, MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(PAGES(3)), PAGES(12), MmCached,
					       MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) == NULL);
	EXPECT_TRUE(t, MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(2048), PAGES(4), MmCached,
					       MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) == NULL);
	EXPECT_TRUE(t, MmAllocatePagesForMdlEx(pa(0), pa(~0ull), pa(SKIP_64K), SKIP_64K + PAGE_SIZE, MmCached,
					       MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) == NULL);
	EXPECT_EQ(t, mmt_free_frames(), before);
}

/* ---- how much ------------------------------------------------------------------------- */

static void fully_required_is_all_or_nothing(struct ktest *t)
{
	pfn_t w = prepare_window(t, 4, DIRT);
	uint64_t before = mmt_free_frames();
	struct pool_stats ps0, ps1;
	pool_get_stats(&ps0);
	PMDL m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), NO_SKIP, PAGES(8), MmCached,
					 MM_ALLOCATE_FULLY_REQUIRED);
	EXPECT_TRUE(t, m == NULL);
	pool_get_stats(&ps1);
	EXPECT_EQ(t, mmt_free_frames(), before);
	EXPECT_EQ(t, ps1.bytes_in_use, ps0.bytes_in_use);
	for (pfn_t f = w; f < w + 4; f++)
		EXPECT_TRUE(t, mmt_frame_is_free(f));
	if (m)
		free_mdl(m);

	/* What the window holds, it gives in full. */
	m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), NO_SKIP, PAGES(4), MmCached,
				    MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(4));
	expect_pfns_within(t, m, w, w + 3);
	free_mdl(m);
}

/* Without MM_ALLOCATE_FULLY_REQUIRED a window too small gives what it has, and says so in
 * ByteCount (the caller must check it); the PFN array and Size follow. */
static void too_small_window_reports_fewer_bytes(struct ktest *t)
{
	pfn_t w = prepare_window(t, 4, DIRT);
	PMDL m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 3), NO_SKIP, PAGES(10) + 100, MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, MmGetMdlByteCount(m), PAGES(4));
	EXPECT_EQ(t, mdl_page_count(m), 4);
	EXPECT_EQ(t, (USHORT)m->Size, sizeof(MDL) + 4 * sizeof(PFN_NUMBER));
	expect_pfns_within(t, m, w, w + 3);
	for (pfn_t f = w; f < w + 4; f++)
		EXPECT_FALSE(t, mmt_frame_is_free(f));
	free_mdl(m);
	for (pfn_t f = w; f < w + 4; f++)
		EXPECT_TRUE(t, mmt_frame_is_free(f));
}

/* ---- contents --------------------------------------------------------------------------- */

/* MM_DONT_ZERO_ALLOCATION over frames known to be dirty: the dirt may show (nothing
 * requires it), the allocation itself must be whole and in the window. */
static void dont_zero_takes_dirty_frames_as_they_are(struct ktest *t)
{
	pfn_t w = prepare_window(t, 8, DIRT);
	PMDL m = MmAllocatePagesForMdlEx(frame_start(w), frame_end(w + 7), NO_SKIP, PAGES(8), MmCached,
					 MM_DONT_ZERO_ALLOCATION);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(8));
	expect_pfns_within(t, m, w, w + 7);
	unsigned dirty = 0;
	for (ULONG i = 0; i < 8; i++)
		dirty += *(volatile uint8_t *)pfn_to_virt(MmGetMdlPfnArray(m)[i]) == DIRT;
	kprintf("MM_DONT_ZERO_ALLOCATION: %u of 8 frames still held the dirt\n", dirty);
	free_mdl(m);
}

/* Without the flag every byte reads zero, read through a mapping of the MDL, for frames the
 * test dirtied just before — for each memory type the frames can be given. */
static void without_dont_zero_every_byte_reads_zero(struct ktest *t)
{
	static const MEMORY_CACHING_TYPE types[] = { MmCached, MmNonCached, MmWriteCombined };
	for (unsigned k = 0; k <= ARRAY_SIZE(types); k++) {
		pfn_t w = prepare_window(t, 8, DIRT);
		/* The last round uses MmAllocatePagesForMdl (untyped frames). */
		PHYSICAL_ADDRESS lo = frame_start(w), hi = frame_end(w + 7);
		PMDL m = k < ARRAY_SIZE(types) ? MmAllocatePagesForMdlEx(lo, hi, NO_SKIP, PAGES(8), types[k], 0)
					       : MmAllocatePagesForMdl(lo, hi, NO_SKIP, PAGES(8));
		ASSERT_TRUE(t, m != NULL);
		EXPECT_EQ(t, m->ByteCount, PAGES(8));
		expect_pfns_within(t, m, w, w + 7);
		const volatile uint64_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		uint64_t nonzero = 0;
		for (uint64_t i = 0; i < PAGES(8) / sizeof(uint64_t); i++)
			nonzero += va[i] != 0;
		if (nonzero)
			KTEST_FAIL(t, "round %u: %lu of %lu words read non-zero", k, nonzero, PAGES(8) / 8);
		free_mdl(m); /* releases the mapping too */
	}
}

/* ---- refused requests ---------------------------------------------------------------- */

static void bad_requests_return_null_and_take_nothing(struct ktest *t)
{
	uint64_t before = mmt_free_frames();
	struct mdl_stats ms0, ms1;
	mdl_get_stats(&ms0);
	/* Flags mdlab does not know. */
	EXPECT_TRUE(t, alloc_anywhere(PAGES(2), MmCached, 0x80) == NULL);
	EXPECT_TRUE(t, alloc_anywhere(PAGES(2), MmCached, 0x100 | MM_ALLOCATE_FULLY_REQUIRED) == NULL);
	EXPECT_TRUE(t, alloc_anywhere(PAGES(2), MmCached, 0x80000000u) == NULL);
	/* Cache types that name no type. */
	EXPECT_TRUE(t, alloc_anywhere(PAGES(2), MmMaximumCacheType, 0) == NULL);
	EXPECT_TRUE(t, alloc_anywhere(PAGES(2), MmNotMapped, 0) == NULL);
	/* No bytes; a window upside down. */
	EXPECT_TRUE(t, alloc_anywhere(0, MmCached, 0) == NULL);
	EXPECT_TRUE(t, MmAllocatePagesForMdlEx(pa(0x8000000), pa(0x4000000), NO_SKIP, PAGES(1), MmCached, 0) == NULL);
	/* A window with no RAM at all (above the PFN database): NULL, not an empty MDL. */
	uint64_t top = pfn_limit() << PAGE_SHIFT;
	EXPECT_TRUE(t, MmAllocatePagesForMdlEx(pa(top + PAGES(16)), pa(top + PAGES(32) - 1), NO_SKIP, PAGES(1),
					       MmCached, 0) == NULL);
	mdl_get_stats(&ms1);
	EXPECT_EQ(t, mmt_free_frames(), before);
	EXPECT_EQ(t, ms1.allocated_pages, ms0.allocated_pages);
}

/* ---- the MDL handed back, and its end ---------------------------------------------- */

static void new_mdl_is_locked_unmapped_at_address_zero(struct ktest *t)
{
	uint64_t ptes = mmt_free_sysptes();
	PMDL m = alloc_anywhere(PAGES(5), MmCached, 0);
	ASSERT_TRUE(t, m != NULL);
	EXPECT_TRUE(t, m->StartVa == NULL);
	EXPECT_EQ(t, m->ByteOffset, 0);
	EXPECT_TRUE(t, MmGetMdlVirtualAddress(m) == NULL);
	EXPECT_EQ(t, m->ByteCount, PAGES(5));
	EXPECT_EQ(t, (USHORT)m->MdlFlags, MDL_PAGES_LOCKED);
	EXPECT_TRUE(t, m->MappedSystemVa == NULL);
	EXPECT_TRUE(t, m->Next == NULL);
	EXPECT_TRUE(t, m->Process == NULL);
	EXPECT_EQ(t, (USHORT)m->Size, sizeof(MDL) + 5 * sizeof(PFN_NUMBER));
	EXPECT_EQ(t, mmt_free_sysptes(), ptes); /* not mapped: no system PTE taken */
	free_mdl(m);
}

/* Frames allocated with a non-WB type carry it in their direct-map alias and in every
 * mapping (whatever CacheType the mapping asks for); MmFreePagesFromMdl releases a mapping
 * left in place, frees every frame and gives each alias back its WB type. */
static void free_returns_frames_and_restores_wb(struct ktest *t)
{
	static const struct {
		MEMORY_CACHING_TYPE caching;
		enum memtype type;
	} cases[] = {
		{ MmNonCached, MT_UC },
		{ MmWriteCombined, MT_WC },
		{ MmNonCachedUnordered, MT_UCMINUS },
		{ MmUSWCCached, MT_WC },
	};
	for (unsigned k = 0; k < ARRAY_SIZE(cases); k++) {
		unsigned want = mmt_type_encoding(cases[k].type), wb = mmt_type_encoding(MT_WB);
		uint64_t frames0 = mmt_free_frames();
		uint64_t ptes0 = mmt_free_sysptes();
		PMDL m = alloc_anywhere(PAGES(4), cases[k].caching, 0);
		ASSERT_TRUE(t, m != NULL);
		ASSERT_EQ(t, m->ByteCount, PAGES(4));
		pfn_t pfns[4];
		memcpy(pfns, MmGetMdlPfnArray(m), sizeof pfns);
		for (int i = 0; i < 4; i++)
			EXPECT_EQ(t, mmt_alias_encoding(pfns[i], NULL), want);

		/* Mapped asking for MmCached: the frames' own type wins (mm/RULES.md decision 1). */
		uint8_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		for (int i = 0; i < 4; i++) {
			struct pt_query q;
			pt_query(&kernel_root, (uint64_t)va + i * PAGE_SIZE, &q);
			EXPECT_TRUE(t, q.present && q.level == 1);
			EXPECT_EQ(t, q.pa >> PAGE_SHIFT, pfns[i]);
			EXPECT_EQ(t, mmt_leaf_encoding(q.entry[1], 1), want);
		}
		va[PAGE_SIZE + 7] = 0x3C;
		EXPECT_EQ(t, *((volatile uint8_t *)pfn_to_virt(pfns[1]) + 7), 0x3C);

		MmFreePagesFromMdl(m); /* the mapping is still there: this releases it */
		EXPECT_EQ(t, mmt_free_sysptes(), ptes0);
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)va));
		EXPECT_FALSE(t, m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PAGES_LOCKED));
		for (int i = 0; i < 4; i++) {
			EXPECT_TRUE(t, mmt_frame_is_free(pfns[i]));
			EXPECT_EQ(t, mmt_alias_encoding(pfns[i], NULL), wb);
		}
		ExFreePool(m);
		EXPECT_EQ(t, mmt_free_frames(), frames0);
	}
}

static struct ktest_case mdl_alloc_cases[] = {
	KTEST_CASE(every_pfn_lies_within_low_and_high),
	KTEST_CASE(all_ones_high_address_means_no_limit),
	KTEST_CASE(skip_moves_the_window),
	KTEST_CASE(contiguous_chunks_without_skip_are_one_block),
	KTEST_CASE(contiguous_chunks_with_skip_are_aligned_blocks),
	KTEST_CASE(fully_required_is_all_or_nothing),
	KTEST_CASE(too_small_window_reports_fewer_bytes),
	KTEST_CASE(dont_zero_takes_dirty_frames_as_they_are),
	KTEST_CASE(without_dont_zero_every_byte_reads_zero),
	KTEST_CASE(bad_requests_return_null_and_take_nothing),
	KTEST_CASE(new_mdl_is_locked_unmapped_at_address_zero),
	KTEST_CASE(free_returns_frames_and_restores_wb),
	{ 0 }
};
KTEST_SUITE(mdl_alloc, mdl_alloc_cases);
