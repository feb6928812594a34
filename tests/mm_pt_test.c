/*
 * The page-table module, checked on the real tables: large pages split into 512 identical
 * small ones and merge back, the direct-map alias follows a frame's memory type, emptied
 * tables are freed, and a failed map leaves nothing behind.  Entries are decoded by the
 * tests' own tests/lib/pte.h, the types looked up in IA32_PAT read by RDMSR.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "kernel/lib.h"
#include "mm/audit.h"
#include "mm/memtype.h"

/* The small page of the 2 MiB run the split cases change. */
#define CHANGED_PAGE 300u

static struct pt_attrs rw_global(enum memtype ty)
{
	return (struct pt_attrs){ .write = true, .global = true, .type = ty };
}

static uint64_t page_tables(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.page_tables;
}

/* Type (or untype) a run of frames; false at the first that fails. */
static bool set_run_type(pfn_t first, uint64_t n, enum memtype ty)
{
	for (uint64_t i = 0; i < n; i++)
		if (!memtype_set_frame(first + i, ty))
			return false;
	return true;
}

/* Check every 4 KiB leaf of the split 2 MiB page at va against the large leaf it came from:
 * frame, rights bits, memory type; page `changed` against its new rights and type. */
static void check_split_leaves(struct ktest *t, uint64_t va, pfn_t first, uint64_t big,
			       enum memtype changed_type, uint64_t *table_pa)
{
	uint64_t big_rights = big & MMT_PTE_RIGHTS;
	unsigned big_enc = mmt_leaf_encoding(big, 2);
	int big_slot = mmt_leaf_slot(big, 2);
	uint64_t bad = 0;
	struct pt_query q0;
	pt_query(&kernel_root, va, &q0);
	*table_pa = q0.entry[2] & MMT_PTE_ADDR;
	EXPECT_FALSE(t, mmt_has(q0.entry[2], MMT_PTE_PS)); /* a table now, not a leaf */
	for (uint64_t i = 0; i < 512; i++) {
		struct pt_query q;
		pt_query(&kernel_root, va + i * PAGE_SIZE, &q);
		uint64_t e = q.entry[1];
		bool ok = q.present && q.level == 1 && q.entry[2] == q0.entry[2] &&
			  mmt_leaf_pa(e, 1) == (first + i) << PAGE_SHIFT;
		if (i == CHANGED_PAGE)
			ok = ok && (e & MMT_PTE_RIGHTS) == (big_rights & ~MMT_PTE_RW) &&
			     mmt_leaf_encoding(e, 1) == mmt_type_encoding(changed_type);
		else
			ok = ok && (e & MMT_PTE_RIGHTS) == big_rights && mmt_leaf_encoding(e, 1) == big_enc &&
			     mmt_leaf_slot(e, 1) == big_slot;
		if (!ok && bad++ < 4)
			KTEST_FAIL(t, "page %lu after the split: level %d entry 0x%016lx (the 2 MiB leaf "
				   "was 0x%016lx)", i, q.level, e, big);
	}
	EXPECT_EQ(t, bad, 0);
}

/*
 * Map a 2 MiB run with one large leaf of type `big_type`, make its page CHANGED_PAGE
 * read-only with type `page_type`, check all 512 small leaves and the write fault, then
 * give the page its old attributes back and check the large leaf returns and the table
 * frame is freed.
 */
static void split_and_merge(struct ktest *t, uint64_t va, enum memtype big_type, enum memtype page_type)
{
	ASSERT_TRUE(t, mmt_va_unmapped(va));
	pfn_t first = pfn_alloc_run(0, pfn_limit() - 1, 512, 512, 0, PFN_OWNER_TEST);
	ASSERT_NE(t, first, PFN_INVALID);
	uint64_t cva = va + CHANGED_PAGE * PAGE_SIZE;
	pfn_t cpfn = first + CHANGED_PAGE;
	if (!set_run_type(first, 512, big_type) || !pt_map(&kernel_root, va, first << PAGE_SHIFT,
							  LARGE_PAGE_SIZE, rw_global(big_type), PT_MAP_LARGE)) {
		KTEST_FAIL(t, "could not type or map the 2 MiB run");
		mmt_free_typed_run(first, 512);
		return;
	}
	/* One level-2 leaf, of the right type; touch every page so the TLB holds it writable. */
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	uint64_t big = q.entry[2];
	EXPECT_TRUE(t, q.present && q.level == 2 && mmt_has(big, MMT_PTE_PS));
	EXPECT_EQ(t, mmt_leaf_pa(big, 2), first << PAGE_SHIFT);
	EXPECT_EQ(t, mmt_leaf_encoding(big, 2), mmt_type_encoding(big_type));
	for (uint64_t i = 0; i < 512; i++)
		*(volatile uint64_t *)(va + i * PAGE_SIZE) = 0x5157000000000000ull | i;

	/* Split: one page read-only, with its own type (its frame typed first). */
	uint64_t tables = page_tables();
	bool typed = memtype_set_frame(cpfn, page_type);
	EXPECT_TRUE(t, typed);
	struct pt_attrs ro = { .write = false, .global = true, .type = page_type };
	uint64_t before_protect = page_tables();
	EXPECT_TRUE(t, pt_protect(&kernel_root, cva, PAGE_SIZE, ro));
	EXPECT_EQ(t, page_tables(), before_protect + 1);

	uint64_t table_pa = 0;
	check_split_leaves(t, va, first, big, page_type, &table_pa);

	/* By hardware: the page refuses a write, its neighbours take one, all read back. */
	struct faultcap f;
	uint8_t v = 0;
	EXPECT_FALSE(t, faultcap_try_store8(cva + 8, 0xEE, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_WRITE_PROTECTION, cva + 8);
	EXPECT_TRUE(t, faultcap_try_load8(cva, &v, &f));
	EXPECT_EQ(t, v, CHANGED_PAGE & 0xFF);
	EXPECT_TRUE(t, faultcap_try_store8(cva - PAGE_SIZE + 8, 0xA1, &f));
	EXPECT_TRUE(t, faultcap_try_store8(cva + PAGE_SIZE + 8, 0xA2, &f));
	EXPECT_EQ(t, *(volatile uint8_t *)((uint64_t)pfn_to_virt(cpfn - 1) + 8), 0xA1);
	EXPECT_EQ(t, *(volatile uint8_t *)((uint64_t)pfn_to_virt(cpfn + 1) + 8), 0xA2);
	for (uint64_t i = 0; i < 512; i += 37)
		EXPECT_EQ(t, *(volatile uint64_t *)(va + i * PAGE_SIZE), 0x5157000000000000ull | i);

	/* Back to uniform: one large leaf again, the table frame freed. */
	EXPECT_TRUE(t, pt_protect(&kernel_root, cva, PAGE_SIZE, rw_global(big_type)));
	if (typed)
		EXPECT_TRUE(t, memtype_set_frame(cpfn, big_type));
	pt_query(&kernel_root, va + 0x4567, &q);
	EXPECT_TRUE(t, q.present);
	EXPECT_EQ(t, q.level, 2);
	EXPECT_EQ(t, q.entry[2] & ~MMT_PTE_AD, big & ~MMT_PTE_AD);
	EXPECT_EQ(t, page_tables(), tables);
	if (table_pa)
		EXPECT_TRUE(t, mmt_frame_is_free(table_pa >> PAGE_SHIFT));
	EXPECT_TRUE(t, faultcap_try_store8(cva + 8, 0xEF, &f));
	EXPECT_EQ(t, *(volatile uint8_t *)((uint64_t)pfn_to_virt(cpfn) + 8), 0xEF);

	pt_unmap(&kernel_root, va, LARGE_PAGE_SIZE);
	EXPECT_TRUE(t, mmt_va_unmapped(va));
	mmt_free_typed_run(first, 512);
}

static void split_2m_wb_leaf_keeps_511_neighbours(struct ktest *t)
{
	split_and_merge(t, scratch_kva(LARGE_PAGE_SIZE, LARGE_PAGE_SIZE), MT_WB, MT_UC);
}

/* WP lives in slot 6 (PAT and PCD set): the split must move the PAT bit from bit 12 of the
 * large leaf to bit 7 of every small one, and the merge back. */
static void split_2m_wp_leaf_moves_pat_bit(struct ktest *t)
{
	split_and_merge(t, scratch_kva(LARGE_PAGE_SIZE, LARGE_PAGE_SIZE), MT_WP, MT_WC);
}

static void direct_map_alias_follows_frame_type(struct ktest *t)
{
	pfn_t pfn = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	pfn_t nb = pfn_is_ram(pfn + 1) ? pfn + 1 : pfn - 1;
	struct mmt_rights before, r, rn;
	EXPECT_EQ(t, mmt_alias_encoding(pfn, &before), mmt_type_encoding(MT_WB));
	volatile uint64_t *alias = pfn_to_virt(pfn);
	alias[7] = 0xA11A5A11A5ull;

	EXPECT_TRUE(t, memtype_set_frame(pfn, MT_WC));
	EXPECT_EQ(t, mmt_alias_encoding(pfn, &r), mmt_type_encoding(MT_WC));
	EXPECT_EQ(t, r.level, 1); /* only this frame changes: a 4 KiB leaf */
	EXPECT_EQ(t, r.pa, pfn << PAGE_SHIFT);
	EXPECT_EQ(t, r.leaf & MMT_PTE_RIGHTS, before.leaf & MMT_PTE_RIGHTS);
	EXPECT_EQ(t, mmt_alias_encoding(nb, &rn), mmt_type_encoding(MT_WB));
	EXPECT_EQ(t, rn.pa, nb << PAGE_SHIFT);
	EXPECT_EQ(t, alias[7], 0xA11A5A11A5ull);
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);

	mmt_free_typed_run(pfn, 1);
	EXPECT_EQ(t, mmt_alias_encoding(pfn, &r), mmt_type_encoding(MT_WB));
	EXPECT_EQ(t, r.level, before.level); /* merged back into the large page it came from */
	EXPECT_EQ(t, r.leaf & ~MMT_PTE_AD, before.leaf & ~MMT_PTE_AD);
}

/* Map one page where no table exists yet, then unmap it: every table the map made is freed
 * and the entry above them cleared. `top` is the level whose entry was empty. */
static void check_tables_freed(struct ktest *t, uint64_t va, int top)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	ASSERT_TRUE(t, !q.present && q.level == top && q.entry[top] == 0);
	pfn_t pfn = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	uint64_t tables = page_tables();
	if (!pt_map(&kernel_root, va, pfn << PAGE_SHIFT, PAGE_SIZE, rw_global(MT_WB), 0)) {
		KTEST_FAIL(t, "pt_map failed");
		pfn_free(pfn);
		return;
	}
	pt_query(&kernel_root, va, &q);
	EXPECT_TRUE(t, q.present && q.level == 1);
	EXPECT_EQ(t, page_tables(), tables + top - 1);
	uint64_t made[5] = { 0 };
	for (int l = top; l > 1; l--) {
		EXPECT_TRUE(t, mmt_has(q.entry[l], MMT_PTE_P) && !mmt_has(q.entry[l], MMT_PTE_PS));
		made[l] = q.entry[l] & MMT_PTE_ADDR;
	}
	*(volatile uint64_t *)va = 1;

	pt_unmap(&kernel_root, va, PAGE_SIZE);
	pt_query(&kernel_root, va, &q);
	EXPECT_FALSE(t, q.present);
	EXPECT_EQ(t, q.level, top);
	EXPECT_EQ(t, q.entry[top], 0);
	EXPECT_EQ(t, page_tables(), tables);
	for (int l = top; l > 1; l--)
		if (made[l])
			EXPECT_TRUE(t, mmt_frame_is_free(made[l] >> PAGE_SHIFT));
	pfn_free(pfn);
}

/* In the kernel half the PDPTs are permanent: a page directory and a page table are made
 * and freed (a scratch range has no page directory yet). */
static void unmap_frees_empty_kernel_tables(struct ktest *t)
{
	check_tables_freed(t, scratch_kva(PAGE_SIZE, 0) + 0x3000, 3);
}

/* In the user half the PDPT goes too, and the PML4 entry is cleared (a scratch range of a
 * whole PML4 slot has no PDPT yet). */
static void unmap_frees_empty_user_tables(struct ktest *t)
{
	check_tables_freed(t, scratch_uva(SCRATCH_PML4_SLOT, SCRATCH_PML4_SLOT) + 0x7000, 4);
}

/*
 * pt_map's contract: when a table frame cannot be had it returns false with nothing left
 * mapped and the tables it made freed.  The frames run out for real: all but `leave` are
 * taken first.
 */
static void check_map_failure(struct ktest *t, uint64_t va, uint64_t size, uint64_t leave)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	ASSERT_TRUE(t, !q.present && q.level == 3 && q.entry[3] == 0);
	pt_query(&kernel_root, va + size - 1, &q);
	ASSERT_TRUE(t, !q.present && q.level == 3 && q.entry[3] == 0);
	uint64_t tables = page_tables(), taken;
	pfn_t frame = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, frame, PFN_INVALID);
	pfn_t hog = mmt_hog_frames(leave, &taken);

	struct pfn_stats s;
	pfn_get_stats(&s);
	uint64_t free_before = s.free;
	struct pt_attrs rw = { .write = true, .type = MT_WB };
	bool mapped = pt_map(&kernel_root, va, frame << PAGE_SHIFT, size, rw, 0);
	pfn_get_stats(&s);
	uint64_t free_after = s.free;
	struct pt_query q_lo, q_hi;
	pt_query(&kernel_root, va, &q_lo);
	pt_query(&kernel_root, va + size - 1, &q_hi);
	mmt_release_frames(hog);

	EXPECT_EQ(t, free_before, leave);
	EXPECT_FALSE(t, mapped);
	EXPECT_EQ(t, free_after, free_before);
	EXPECT_EQ(t, q_lo.entry[3], 0);
	EXPECT_EQ(t, q_hi.entry[3], 0);
	EXPECT_EQ(t, page_tables(), tables);

	/* Whatever was left behind, remove it through the API so later cases start clean: a
	 * page mapped and unmapped in each region prunes the tables above it. */
	if (mapped) {
		pt_unmap(&kernel_root, va, size);
	} else {
		uint64_t ends[2] = { va, va + size - PAGE_SIZE };
		for (int i = 0; i < 2; i++) {
			pt_query(&kernel_root, ends[i], &q);
			if (q.entry[3] && pt_map(&kernel_root, ends[i], frame << PAGE_SHIFT, PAGE_SIZE, rw, 0))
				pt_unmap(&kernel_root, ends[i], PAGE_SIZE);
		}
	}
	pfn_free(frame);
}

/* The first table is had, the second is not: the first must be given back. */
static void map_failure_frees_tables_it_made(struct ktest *t)
{
	check_map_failure(t, scratch_kva(PAGE_SIZE, 0) + 0x1000, PAGE_SIZE, 1);
}

/* A map that fails after mapping its first page (the second needs tables of its own): the
 * two pages straddle the boundary of two scratch GiB. */
static void map_failure_unmaps_pages_it_made(struct ktest *t)
{
	check_map_failure(t, scratch_kva(2 * HUGE_PAGE_SIZE, 0) + HUGE_PAGE_SIZE - PAGE_SIZE, 2 * PAGE_SIZE, 2);
}

/*
 * pt_translate_run (one walk per page table) against pt_query (one walk per page) on the real
 * tables: a 2 MiB leaf followed by 4 KiB leaves in the next page table, a read-only page, a
 * hole, supervisor pages asked for user access, a non-canonical address, and the direct map.
 * Each run stops exactly at the first page that lacks what was asked.
 */
static void translate_run_matches_page_walk(struct ktest *t)
{
	enum { SMALL = 8, RO = 6 };
	uint64_t va = scratch_kva(2 * LARGE_PAGE_SIZE, LARGE_PAGE_SIZE), small_va = va + LARGE_PAGE_SIZE;
	pfn_t big = pfn_alloc_run(0, pfn_limit() - 1, 512, 512, 0, PFN_OWNER_TEST);
	ASSERT_NE(t, big, PFN_INVALID);
	pfn_t small[SMALL];
	int have = 0;
	for (; have < SMALL; have++)
		if ((small[have] = pfn_alloc(0, PFN_OWNER_TEST)) == PFN_INVALID)
			break;
	bool mapped_big = have == SMALL && pt_map(&kernel_root, va, big << PAGE_SHIFT, LARGE_PAGE_SIZE,
						  rw_global(MT_WB), PT_MAP_LARGE);
	int mapped = 0;
	for (; mapped_big && mapped < SMALL - 1; mapped++) {
		/* Page SMALL - 1 stays a hole; page RO is read-only. */
		struct pt_attrs a = rw_global(MT_WB);
		a.write = mapped != RO;
		if (!pt_map(&kernel_root, small_va + mapped * PAGE_SIZE, small[mapped] << PAGE_SHIFT, PAGE_SIZE, a, 0))
			break;
	}
	EXPECT_TRUE(t, mapped_big);
	EXPECT_EQ(t, mapped, SMALL - 1);
	if (mapped == SMALL - 1) {
		struct pt_query q;
		pt_query(&kernel_root, va, &q);
		EXPECT_TRUE(t, q.present && q.level == 2); /* the run starts in a large leaf */
		uint64_t pfns[4 + SMALL], from = small_va - 4 * PAGE_SIZE;
		memset(pfns, 0, sizeof pfns);
		/* Four pages of the large leaf, then the writable small pages before RO. */
		bool ro = false;
		EXPECT_EQ(t, pt_translate_run(&kernel_root, from, 4 + SMALL, true, false, pfns, &ro), 4 + RO);
		EXPECT_FALSE(t, ro); /* every page that passed a write check is writable */
		for (int i = 0; i < 4 + RO; i++) {
			pt_query(&kernel_root, from + i * PAGE_SIZE, &q);
			EXPECT_EQ(t, pfns[i], q.pa >> PAGE_SHIFT);
			EXPECT_EQ(t, pfns[i], i < 4 ? big + 508 + i : small[i - 4]);
		}
		/* Read access passes RO, telling it is read-only, and stops at the hole; user access
		 * stops at once. */
		EXPECT_EQ(t, pt_translate_run(&kernel_root, from, 4 + SMALL, false, false, pfns, &ro), 4 + SMALL - 1);
		EXPECT_TRUE(t, ro);
		ro = false;
		EXPECT_EQ(t, pt_translate_run(&kernel_root, from, 4 + RO, false, false, NULL, &ro), 4 + RO);
		EXPECT_FALSE(t, ro); /* the run before RO: all writable */
		EXPECT_EQ(t, pfns[4 + RO], small[RO]);
		EXPECT_EQ(t, pt_translate_run(&kernel_root, from, 4 + SMALL, false, true, NULL, NULL), 0);
		EXPECT_EQ(t, pt_translate_run(&kernel_root, small_va + RO * PAGE_SIZE, 1, true, false, NULL, NULL), 0);
	}
	if (mapped)
		pt_unmap(&kernel_root, small_va, mapped * PAGE_SIZE);
	if (mapped_big)
		pt_unmap(&kernel_root, va, LARGE_PAGE_SIZE);
	for (int i = 0; i < have; i++)
		pfn_free(small[i]);
	pfn_free_run(big, 512);

	/* The first non-canonical address translates to nothing. */
	EXPECT_EQ(t, pt_translate_run(&kernel_root, 0x0000800000000000ull, 1, false, false, NULL, NULL), 0);
	/* The direct map, across a 2 MiB boundary, page for page as pt_query reads it. */
	uint64_t dm = ALIGN_UP((uint64_t)pfn_to_virt(big), LARGE_PAGE_SIZE) - 3 * PAGE_SIZE, dpfns[6];
	EXPECT_EQ(t, pt_translate_run(&kernel_root, dm, 6, true, false, dpfns, NULL), 6);
	for (int i = 0; i < 6; i++) {
		struct pt_query q;
		pt_query(&kernel_root, dm + i * PAGE_SIZE, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, dpfns[i], q.pa >> PAGE_SHIFT);
	}
}

/*
 * pt_map_frames (one walk per page table) across a page-table boundary: every page maps its
 * own frame with the rights asked, read back by pt_query and by a store through it; then
 * pt_unmap of the range with a hole in it clears every PTE and frees both page tables and
 * the page directory (the batched clear prunes as the per-page one did).  And when the second
 * table cannot be had, nothing is left mapped and no table is kept.
 */
static void map_frames_spans_tables_and_unmaps_clean(struct ktest *t)
{
	enum { N = 8 };
	uint64_t va = scratch_kva(PAGE_SIZE, 0) + LARGE_PAGE_SIZE - 4 * PAGE_SIZE;
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	ASSERT_TRUE(t, !q.present && q.level == 3 && q.entry[3] == 0);
	pfn_t pfns[N];
	int have = 0;
	for (; have < N; have++)
		if ((pfns[have] = pfn_alloc(0, PFN_OWNER_TEST)) == PFN_INVALID)
			break;
	uint64_t tables = page_tables();
	struct pt_attrs rw = { .write = true, .type = MT_WB };
	bool mapped = have == N && pt_map_frames(&kernel_root, va, pfns, N, rw);
	EXPECT_TRUE(t, mapped);
	if (mapped) {
		EXPECT_EQ(t, page_tables(), tables + 3); /* a page directory and two page tables */
		struct faultcap f;
		for (int i = 0; i < N; i++) {
			pt_query(&kernel_root, va + i * PAGE_SIZE, &q);
			EXPECT_TRUE(t, q.present && q.level == 1 && q.eff.write && !q.eff.user && !q.eff.exec);
			EXPECT_EQ(t, q.pa, pfns[i] << PAGE_SHIFT);
			EXPECT_TRUE(t, faultcap_try_store8(va + i * PAGE_SIZE + 3, (uint8_t)(0x40 + i), &f));
			EXPECT_EQ(t, *(volatile uint8_t *)((uint64_t)pfn_to_virt(pfns[i]) + 3), 0x40 + i);
		}
		/* A hole on each side of the boundary, then the whole range unmapped at once. */
		pt_unmap(&kernel_root, va + 2 * PAGE_SIZE, PAGE_SIZE);
		pt_unmap(&kernel_root, va + 5 * PAGE_SIZE, PAGE_SIZE);
		pt_unmap(&kernel_root, va, N * PAGE_SIZE);
		for (int i = 0; i < N; i++) {
			pt_query(&kernel_root, va + i * PAGE_SIZE, &q);
			EXPECT_FALSE(t, q.present);
		}
		EXPECT_EQ(t, q.level, 3);
		EXPECT_EQ(t, page_tables(), tables);
		struct faultcap g;
		EXPECT_FALSE(t, faultcap_try_store8(va + 7 * PAGE_SIZE, 1, &g));
		EXPECT_PAGE_FAULT(t, &g, PF_WRITE_NOT_PRESENT, va + 7 * PAGE_SIZE);
	}
	if (have == N) {
		/* Frames for the page directory and the first table only. */
		uint64_t taken;
		pfn_t hog = mmt_hog_frames(2, &taken);
		bool ok = pt_map_frames(&kernel_root, va, pfns, N, rw);
		pt_query(&kernel_root, va, &q);
		mmt_release_frames(hog);
		EXPECT_FALSE(t, ok);
		EXPECT_FALSE(t, q.present);
		EXPECT_EQ(t, q.entry[3], 0);
		EXPECT_EQ(t, page_tables(), tables);
	}
	for (int i = 0; i < have; i++)
		pfn_free(pfns[i]);
}

static struct ktest_case mm_pt_cases[] = {
	KTEST_CASE(split_2m_wb_leaf_keeps_511_neighbours),
	KTEST_CASE(split_2m_wp_leaf_moves_pat_bit),
	KTEST_CASE(direct_map_alias_follows_frame_type),
	KTEST_CASE(unmap_frees_empty_kernel_tables),
	KTEST_CASE(unmap_frees_empty_user_tables),
	KTEST_CASE(map_failure_frees_tables_it_made),
	KTEST_CASE(map_failure_unmaps_pages_it_made),
	KTEST_CASE(translate_run_matches_page_walk),
	KTEST_CASE(map_frames_spans_tables_and_unmaps_clean),
	{ 0 }
};
KTEST_SUITE(mm_pt, mm_pt_cases);
