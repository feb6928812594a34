/*
 * Memory types as the hardware sees them: IA32_PAT read with RDMSR, and the PAT/PCD/PWT
 * bits of real leaf entries decoded here (bit 7 in a 4 KiB leaf, bit 12 in a 2 MiB or
 * 1 GiB leaf), looked up in that MSR value.  pat_type_of / pat_slot_type are the code under
 * test and are not used for any verdict.
 *
 * TCG does not emulate memory types (x86-paging.md), so what can be proven is the
 * encoding: the entry bits and the MSR.
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "tests/lib/counters.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/lib.h"
#include "mm/memtype.h"

/* The layout pat.h documents, slot 0 to 7: WB WT UC- UC WB WC WP UC, as SDM encodings. */
static const unsigned documented_layout[8] = { 6, 4, 7, 0, 6, 1, 5, 0 };

static void pat_msr_holds_documented_layout(struct ktest *t)
{
	uint64_t msr = rdmsr(MMT_MSR_PAT), want = 0;
	for (int slot = 0; slot < 8; slot++) {
		EXPECT_EQ(t, mmt_pat_field(msr, slot), documented_layout[slot]);
		want |= (uint64_t)documented_layout[slot] << (8 * slot);
	}
	EXPECT_EQ(t, msr, want);
	EXPECT_EQ(t, msr, pat_mdlab_value());
}

static void every_memory_type_has_a_slot(struct ktest *t)
{
	uint64_t msr = rdmsr(MMT_MSR_PAT);
	for (enum memtype ty = MT_WB; ty < MT_COUNT; ty++) {
		int found = -1;
		for (int slot = 0; slot < 8 && found < 0; slot++)
			if (mmt_pat_field(msr, slot) == mmt_type_encoding(ty))
				found = slot;
		if (found < 0)
			KTEST_FAIL(t, "no IA32_PAT slot holds %s (MSR 0x%016lx)", mmt_type_name(ty), msr);
	}
}

static void type_encoding_4k_leaves(struct ktest *t)
{
	uint64_t base = scratch_kva(MT_COUNT * PAGE_SIZE, 0);
	for (enum memtype ty = MT_WB; ty < MT_COUNT; ty++) {
		uint64_t va = base + ty * PAGE_SIZE;
		ASSERT_TRUE(t, mmt_va_unmapped(va));
		pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
		ASSERT_NE(t, pfn, PFN_INVALID);
		uint64_t alias = (uint64_t)pfn_to_virt(pfn);
		if (!memtype_set_frame(pfn, ty) ||
		    !pt_map(&kernel_root, va, pfn << PAGE_SHIFT, PAGE_SIZE,
			    (struct pt_attrs){ .write = true, .type = ty }, 0)) {
			KTEST_FAIL(t, "could not type or map a frame as %s", mmt_type_name(ty));
			mmt_free_typed_run(pfn, 1);
			continue;
		}
		struct pt_query q;
		pt_query(&kernel_root, va, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.level, 1);
		EXPECT_EQ(t, mmt_leaf_pa(q.entry[1], 1), pfn << PAGE_SHIFT);
		unsigned enc = mmt_leaf_encoding(q.entry[1], 1);
		if (enc != mmt_type_encoding(ty))
			KTEST_FAIL(t, "%s 4 KiB leaf 0x%016lx selects slot %d = encoding %u, want %u",
				   mmt_type_name(ty), q.entry[1], mmt_leaf_slot(q.entry[1], 1), enc,
				   mmt_type_encoding(ty));
		/* The frame's direct-map alias carries the same type (one type per frame). */
		EXPECT_EQ(t, mmt_alias_encoding(pfn, NULL), mmt_type_encoding(ty));
		/* The mapping reaches the frame. */
		*(volatile uint32_t *)va = 0xC0DE0000u + ty;
		EXPECT_EQ(t, *(volatile uint32_t *)alias, 0xC0DE0000u + ty);

		pt_unmap(&kernel_root, va, PAGE_SIZE);
		mmt_free_typed_run(pfn, 1);
		EXPECT_EQ(t, mmt_alias_encoding(pfn, NULL), mmt_type_encoding(MT_WB));
	}
}

static void type_encoding_2m_leaves(struct ktest *t)
{
	uint64_t va = scratch_kva(LARGE_PAGE_SIZE, LARGE_PAGE_SIZE);
	ASSERT_TRUE(t, mmt_va_unmapped(va));
	for (enum memtype ty = MT_WB; ty < MT_COUNT; ty++) {
		pfn_t first = pfn_alloc_run(0, pfn_limit() - 1, 512, 512, 0, PFN_OWNER_TEST);
		ASSERT_NE(t, first, PFN_INVALID);
		uint64_t pa = first << PAGE_SHIFT;
		bool typed = true;
		for (uint64_t i = 0; i < 512 && typed; i++)
			typed = memtype_set_frame(first + i, ty);
		if (!typed || !pt_map(&kernel_root, va, pa, LARGE_PAGE_SIZE,
				      (struct pt_attrs){ .write = true, .type = ty }, PT_MAP_LARGE)) {
			KTEST_FAIL(t, "could not type or map a 2 MiB run as %s", mmt_type_name(ty));
			mmt_free_typed_run(first, 512);
			continue;
		}
		struct pt_query q;
		pt_query(&kernel_root, va + 0x1234, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.level, 2);
		EXPECT_TRUE(t, mmt_has(q.entry[2], MMT_PTE_PS));
		EXPECT_EQ(t, mmt_leaf_pa(q.entry[2], 2), pa);
		unsigned enc = mmt_leaf_encoding(q.entry[2], 2);
		if (enc != mmt_type_encoding(ty))
			KTEST_FAIL(t, "%s 2 MiB leaf 0x%016lx selects slot %d = encoding %u, want %u",
				   mmt_type_name(ty), q.entry[2], mmt_leaf_slot(q.entry[2], 2), enc,
				   mmt_type_encoding(ty));
		/* Aliases of the first and last frames agree. */
		EXPECT_EQ(t, mmt_alias_encoding(first, NULL), mmt_type_encoding(ty));
		EXPECT_EQ(t, mmt_alias_encoding(first + 511, NULL), mmt_type_encoding(ty));
		volatile uint32_t *last = pfn_to_virt(first + 511);
		*(volatile uint32_t *)(va + 511 * PAGE_SIZE + 8) = 0xB16B0000u + ty;
		EXPECT_EQ(t, last[2], 0xB16B0000u + ty);

		pt_unmap(&kernel_root, va, LARGE_PAGE_SIZE);
		EXPECT_TRUE(t, mmt_va_unmapped(va));
		mmt_free_typed_run(first, 512);
		EXPECT_EQ(t, mmt_alias_encoding(first, NULL), mmt_type_encoding(MT_WB));
		EXPECT_EQ(t, mmt_alias_encoding(first + 511, NULL), mmt_type_encoding(MT_WB));
	}
}

/*
 * 1 GiB leaves: a 1 GiB-aligned run of free RAM is rare in a small guest, so the leaf maps
 * a 1 GiB range of physical address space above every RAM frame the PFN database knows:
 * no frame there has a direct-map alias to agree with, and nothing accesses the mapping —
 * only its entry is read.
 */
static void type_encoding_1g_leaves(struct ktest *t)
{
	if (!cpu_features.page1g)
		KTEST_SKIP(t, "the CPU has no 1 GiB pages");
	uint64_t pa = ALIGN_UP(pfn_limit() << PAGE_SHIFT, HUGE_PAGE_SIZE);
	if (pa + HUGE_PAGE_SIZE > (1ull << cpu_features.phys_bits))
		KTEST_SKIP(t, "no 1 GiB of physical address space above RAM");
	uint64_t va = scratch_kva(HUGE_PAGE_SIZE, HUGE_PAGE_SIZE);
	ASSERT_TRUE(t, mmt_va_unmapped(va));
	for (enum memtype ty = MT_WB; ty < MT_COUNT; ty++) {
		/* Read-only, not executable: the mapping is never used. */
		ASSERT_TRUE(t, pt_map(&kernel_root, va, pa, HUGE_PAGE_SIZE, (struct pt_attrs){ .type = ty },
				      PT_MAP_LARGE));
		struct pt_query q;
		pt_query(&kernel_root, va + 0x12345678, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.level, 3);
		EXPECT_TRUE(t, mmt_has(q.entry[3], MMT_PTE_PS));
		EXPECT_EQ(t, mmt_leaf_pa(q.entry[3], 3), pa);
		unsigned enc = mmt_leaf_encoding(q.entry[3], 3);
		if (enc != mmt_type_encoding(ty))
			KTEST_FAIL(t, "%s 1 GiB leaf 0x%016lx selects slot %d = encoding %u, want %u",
				   mmt_type_name(ty), q.entry[3], mmt_leaf_slot(q.entry[3], 3), enc,
				   mmt_type_encoding(ty));
		pt_unmap(&kernel_root, va, HUGE_PAGE_SIZE);
		EXPECT_TRUE(t, mmt_va_unmapped(va));
	}
}

/* TCG accepts a reserved encoding silently (hardware raises #GP), so pat_write_msr must
 * refuse it before WRMSR: the MSR, read back, is unchanged. */
static void reserved_encodings_refused(struct ktest *t)
{
	static const unsigned bad[] = { 2, 3, 8, 0x0F, 0x16, 0xFF };
	uint64_t before = rdmsr(MMT_MSR_PAT);
	for (int slot = 0; slot < 8; slot++) {
		for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
			uint64_t v = (before & ~(0xFFull << (8 * slot))) | ((uint64_t)bad[i] << (8 * slot));
			EXPECT_FALSE(t, pat_write_msr(v));
			uint64_t now = rdmsr(MMT_MSR_PAT);
			if (now != before) {
				KTEST_FAIL(t, "slot %d = 0x%x: IA32_PAT became 0x%016lx", slot, bad[i], now);
				pat_write_msr(before);
			}
		}
	}
	/* Control: a valid value (the current one) is accepted. */
	EXPECT_TRUE(t, pat_write_msr(before));
	EXPECT_EQ(t, rdmsr(MMT_MSR_PAT), before);
}

/*
 * memtype_from_caching_type then pt_cache_bits: MEMORY_CACHING_TYPE (the six NT values and the
 * WT/WP extensions, mm/RULES.md decision 2) to the PWT/PCD/PAT bits of a leaf at each level, decoded here
 * against the MSR; and its inverse pt_entry_memtype.  Values that name no type are refused.
 */
static void memory_caching_type_mapping(struct ktest *t)
{
	static const struct {
		MEMORY_CACHING_TYPE ct;
		enum memtype want;
	} table[] = {
		{ MmNonCached, MT_UC },          { MmCached, MT_WB },
		{ MmWriteCombined, MT_WC },      { MmHardwareCoherentCached, MT_WB },
		{ MmNonCachedUnordered, MT_UCMINUS }, { MmUSWCCached, MT_WC },
		{ MmMdlabWriteThrough, MT_WT },  { MmMdlabWriteProtected, MT_WP },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(table); i++) {
		for (int level = 1; level <= 3; level++) {
			uint64_t bits = pt_cache_bits(memtype_from_caching_type(table[i].ct), level);
			ASSERT_NE(t, bits, PT_CACHE_BITS_INVALID);
			/* Only PWT, PCD and the level's PAT bit may be set. */
			uint64_t pat = level == 1 ? MMT_PTE_PAT_4K : (1ull << 12);
			EXPECT_EQ(t, bits & ~(MMT_PTE_PWT | MMT_PTE_PCD | pat), 0);
			uint64_t entry = bits | MMT_PTE_P | (level > 1 ? MMT_PTE_PS : 0);
			EXPECT_EQ(t, mmt_leaf_encoding(entry, level), mmt_type_encoding(table[i].want));
			EXPECT_EQ(t, pt_entry_memtype(entry, level), table[i].want);
		}
	}
	EXPECT_EQ(t, pt_cache_bits(memtype_from_caching_type(MmMaximumCacheType), 1), PT_CACHE_BITS_INVALID);
	EXPECT_EQ(t, pt_cache_bits(memtype_from_caching_type(MmNotMapped), 1), PT_CACHE_BITS_INVALID);
	EXPECT_EQ(t, pt_cache_bits(memtype_from_caching_type(0x102), 2), PT_CACHE_BITS_INVALID);
}

static struct ktest_case mm_pat_cases[] = {
	KTEST_CASE(pat_msr_holds_documented_layout),
	KTEST_CASE(every_memory_type_has_a_slot),
	KTEST_CASE(type_encoding_4k_leaves),
	KTEST_CASE(type_encoding_2m_leaves),
	KTEST_CASE(type_encoding_1g_leaves),
	KTEST_CASE(reserved_encodings_refused),
	KTEST_CASE(memory_caching_type_mapping),
	{ 0 }
};
KTEST_SUITE(mm_pat, mm_pat_cases);
