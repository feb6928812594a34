/*
 * The memory type of MDL system mappings (mm/RULES.md decisions 1 and 2):
 *   - pool and probe-locked RAM are WB and stay WB whatever CacheType asks, and the request
 *     not honoured is counted (mdl_get_stats().cache_overrides);
 *   - MmAllocatePagesForMdlEx records its CacheType on its frames at allocation: every
 *     mapping of them has that type, and so does each frame's direct-map alias;
 *   - MmAllocatePagesForMdl's frames are untyped until the first mapping fixes the type;
 *   - each MEMORY_CACHING_TYPE (and the two mdlab extensions) selects an IA32_PAT slot
 *     holding the SDM encoding mm/RULES.md decision 2 names: UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7.
 * Verdicts come from the real tables: each leaf's PAT/PCD/PWT bits are decoded by the
 * tests' own tests/lib/pte.h and looked up in IA32_PAT read with RDMSR (mm/pat.c is the code under test, not a reference).
 * TCG does not emulate memory types (x86-paging.md): the encoding is what can be proven.
 * Every case ends with the memory-type audit of the kernel's tables: no frame reachable
 * with two types.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "mm/audit.h"
#include "mm/mdl.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x6353644Du /* 'MdSc' */

/* mm/RULES.md, decision 2, and the two mdlab extensions. */
static const struct caching {
	MEMORY_CACHING_TYPE type;
	unsigned enc;
	const char *name;
} cachings[] = {
	{ MmNonCached, MMT_ENC_UC, "MmNonCached" },
	{ MmCached, MMT_ENC_WB, "MmCached" },
	{ MmWriteCombined, MMT_ENC_WC, "MmWriteCombined" },
	{ MmHardwareCoherentCached, MMT_ENC_WB, "MmHardwareCoherentCached" },
	{ MmNonCachedUnordered, MMT_ENC_UCMINUS, "MmNonCachedUnordered" },
	{ MmUSWCCached, MMT_ENC_WC, "MmUSWCCached" },
	{ MmMdlabWriteThrough, MMT_ENC_WT, "MmMdlabWriteThrough" },
	{ MmMdlabWriteProtected, MMT_ENC_WP, "MmMdlabWriteProtected" },
};

/* Pages for MDLs from anywhere in RAM (High: the largest positive PHYSICAL_ADDRESS). */
static const PHYSICAL_ADDRESS ANY_LOW = { .QuadPart = 0 };
static const PHYSICAL_ADDRESS ANY_HIGH = { .QuadPart = 0x7FFFFFFFFFFFFFFFll };
static const PHYSICAL_ADDRESS NO_SKIP = { .QuadPart = 0 };

/* Every page of the mapping at va, and every frame's direct-map alias, has encoding `enc`. */
static void expect_type(struct ktest *t, PMDL m, PVOID va, unsigned enc, const char *what)
{
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++) {
		struct mmt_rights r;
		unsigned got = mmt_encoding_at((uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE, &r);
		if (got != enc || r.level != 1)
			KTEST_FAIL(t, "%s: page %u of the mapping has encoding %u at level %d, want %u at level 1",
				   what, i, got, r.level, enc);
		pfn_t pfn = MmGetMdlPfnArray(m)[i];
		if (mmt_alias_encoding(pfn, NULL) != enc)
			KTEST_FAIL(t, "%s: the direct-map alias of frame 0x%lx has encoding %u, want %u", what, pfn,
				   mmt_alias_encoding(pfn, NULL), enc);
	}
}

static void expect_aliases(struct ktest *t, PMDL m, unsigned enc, const char *what)
{
	for (ULONG i = 0; i < mdl_page_count(m); i++) {
		pfn_t pfn = MmGetMdlPfnArray(m)[i];
		if (mmt_alias_encoding(pfn, NULL) != enc)
			KTEST_FAIL(t, "%s: the direct-map alias of frame 0x%lx has encoding %u, want %u", what, pfn,
				   mmt_alias_encoding(pfn, NULL), enc);
	}
}

static uint64_t overrides(void)
{
	struct mdl_stats s;
	mdl_get_stats(&s);
	return s.cache_overrides;
}

static PVOID map_as(PMDL m, MEMORY_CACHING_TYPE type)
{
	return MmMapLockedPagesSpecifyCache(m, KernelMode, type, NULL, FALSE, NormalPagePriority);
}

/* Free an MmAllocatePagesForMdl(Ex) MDL; afterwards its frames' aliases are WB again. */
static void free_pages_expect_wb(struct ktest *t, PMDL a, const char *what)
{
	pfn_t pfns[8];
	ULONG n = mdl_page_count(a);
	for (ULONG i = 0; i < n && i < ARRAY_SIZE(pfns); i++)
		pfns[i] = MmGetMdlPfnArray(a)[i];
	MmFreePagesFromMdl(a);
	ExFreePool(a);
	for (ULONG i = 0; i < n && i < ARRAY_SIZE(pfns); i++)
		if (mmt_alias_encoding(pfns[i], NULL) != MMT_ENC_WB)
			KTEST_FAIL(t, "%s: frame 0x%lx freed, its alias still has encoding %u", what, pfns[i],
				   mmt_alias_encoding(pfns[i], NULL));
}

static void expect_one_type_per_frame(struct ktest *t)
{
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
}

/* ---- the cases -------------------------------------------------------------------------- */

/* Untyped frames take the requested type: each caching type's leaf selects a slot holding
 * its encoding, and the alias follows; nothing is overridden.  The type stays with the
 * frames after the unmap; freeing them gives the aliases back WB. */
static void each_caching_type_selects_its_pat_slot(struct ktest *t)
{
	for (unsigned k = 0; k < ARRAY_SIZE(cachings); k++) {
		const struct caching *c = &cachings[k];
		PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE);
		ASSERT_TRUE(t, a != NULL);
		ASSERT_EQ(t, mdl_page_count(a), 2);
		expect_aliases(t, a, MMT_ENC_WB, c->name);
		uint64_t o = overrides();
		volatile uint32_t *va = map_as(a, c->type);
		ASSERT_TRUE(t, va != NULL);
		expect_type(t, a, (PVOID)va, c->enc, c->name);
		EXPECT_EQ(t, overrides(), o);
		/* The mapping reaches the frame. */
		va[3] = 0xCAC00000u + k;
		EXPECT_EQ(t, ((volatile uint32_t *)pfn_to_virt(MmGetMdlPfnArray(a)[0]))[3], 0xCAC00000u + k);
		expect_one_type_per_frame(t);
		MmUnmapLockedPages((PVOID)va, a);
		expect_aliases(t, a, c->enc, c->name);
		free_pages_expect_wb(t, a, c->name);
	}
	expect_one_type_per_frame(t);
}

/* MmAllocatePagesForMdlEx types its frames at allocation (aliases first); a mapping asking
 * for another type gets the recorded one (counted as an override), MmGetSystemAddressForMdlSafe
 * (MmCached) too. */
static void allocate_pages_ex_records_its_type(struct ktest *t)
{
	for (unsigned k = 0; k < ARRAY_SIZE(cachings); k++) {
		const struct caching *c = &cachings[k];
		PMDL a = MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE, c->type, 0);
		ASSERT_TRUE(t, a != NULL);
		expect_aliases(t, a, c->enc, c->name);
		MEMORY_CACHING_TYPE other = c->enc == MMT_ENC_WB ? MmNonCached : MmCached;
		uint64_t o = overrides();
		PVOID va = map_as(a, other);
		ASSERT_TRUE(t, va != NULL);
		expect_type(t, a, va, c->enc, c->name);
		EXPECT_EQ(t, overrides(), o + 1);
		MmUnmapLockedPages(va, a);
		va = MmGetSystemAddressForMdlSafe(a, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		expect_type(t, a, va, c->enc, c->name);
		expect_one_type_per_frame(t);
		MmUnmapLockedPages(va, a);
		free_pages_expect_wb(t, a, c->name);
	}
	expect_one_type_per_frame(t);
}

/* MmAllocatePagesForMdl: the first mapping fixes the type for good (map WC, unmap, map UC:
 * still WC). */
static void allocate_pages_takes_the_first_mapping_type(struct ktest *t)
{
	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, 3 * PAGE_SIZE);
	ASSERT_TRUE(t, a != NULL);
	uint64_t o = overrides();
	PVOID va = map_as(a, MmWriteCombined);
	ASSERT_TRUE(t, va != NULL);
	expect_type(t, a, va, MMT_ENC_WC, "first mapping, WC");
	EXPECT_EQ(t, overrides(), o);
	MmUnmapLockedPages(va, a);
	expect_aliases(t, a, MMT_ENC_WC, "after the unmap");

	va = map_as(a, MmNonCached);
	ASSERT_TRUE(t, va != NULL);
	expect_type(t, a, va, MMT_ENC_WC, "second mapping, UC asked");
	EXPECT_EQ(t, overrides(), o + 1);
	MmUnmapLockedPages(va, a);
	va = MmGetSystemAddressForMdlSafe(a, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	expect_type(t, a, va, MMT_ENC_WC, "third mapping, MmCached asked");
	expect_one_type_per_frame(t);
	MmUnmapLockedPages(va, a);
	free_pages_expect_wb(t, a, "freed");
	expect_one_type_per_frame(t);
}

/* Pool pages are WB whatever is asked; a request for another type is an override.  The pool's
 * own mapping stays WB too. */
static void pool_pages_stay_write_back(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf + 0x80, PAGE_SIZE, FALSE, FALSE, NULL); /* two pages */
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	for (unsigned k = 0; k < ARRAY_SIZE(cachings); k++) {
		const struct caching *c = &cachings[k];
		uint64_t o = overrides();
		PVOID va = map_as(m, c->type);
		ASSERT_TRUE(t, va != NULL);
		expect_type(t, m, va, MMT_ENC_WB, c->name);
		EXPECT_EQ(t, mmt_encoding_at((uint64_t)buf, NULL), MMT_ENC_WB);
		EXPECT_EQ(t, mmt_encoding_at((uint64_t)buf + PAGE_SIZE, NULL), MMT_ENC_WB);
		EXPECT_EQ(t, overrides(), o + (c->enc != MMT_ENC_WB));
		MmUnmapLockedPages(va, m);
	}
	expect_one_type_per_frame(t);
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

/* Probe-locked RAM that is not pool: a frame through its direct-map address, and a buffer on
 * this kernel stack.  WB whatever is asked. */
static void probe_locked_ram_stays_write_back(struct ktest *t)
{
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	volatile uint8_t stack_buf[256];
	stack_buf[0] = 1;
	PMDL direct = IoAllocateMdl((uint8_t *)pfn_to_virt(pfn) + 0x10, 0x100, FALSE, FALSE, NULL);
	PMDL stack = IoAllocateMdl((PVOID)stack_buf, sizeof stack_buf, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, direct != NULL && stack != NULL);
	MmProbeAndLockPages(direct, KernelMode, IoWriteAccess);
	MmProbeAndLockPages(stack, KernelMode, IoWriteAccess);
	PMDL both[] = { direct, stack };
	for (unsigned i = 0; i < ARRAY_SIZE(both); i++) {
		for (unsigned k = 0; k < ARRAY_SIZE(cachings); k++) {
			PVOID va = map_as(both[i], cachings[k].type);
			ASSERT_TRUE(t, va != NULL);
			expect_type(t, both[i], va, MMT_ENC_WB, cachings[k].name);
			MmUnmapLockedPages(va, both[i]);
		}
	}
	expect_one_type_per_frame(t);
	MmUnlockPages(stack);
	MmUnlockPages(direct);
	IoFreeMdl(stack);
	IoFreeMdl(direct);
	pfn_free(pfn);
}

/* One MDL over frames of different kinds (built by hand, as a driver may: PFN array filled,
 * PAGES_LOCKED set by the driver): a UC frame and a WC frame from MmAllocatePagesForMdlEx, a
 * pool frame, an untyped frame.  Mapped as UC-: each frame keeps its own type and the untyped
 * one takes UC-; one mapping, one override counted. */
static void each_frame_keeps_its_own_type(struct ktest *t)
{
	PMDL uc = MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE, MmNonCached, 0);
	PMDL wc = MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE, MmWriteCombined, 0);
	PMDL untyped = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE);
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, uc && wc && untyped && buf);
	PMDL pool = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	PMDL m = IoAllocateMdl(NULL, 4 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, pool && m);
	MmProbeAndLockPages(pool, KernelMode, IoWriteAccess);
	PPFN_NUMBER p = MmGetMdlPfnArray(m);
	p[0] = MmGetMdlPfnArray(uc)[0];
	p[1] = MmGetMdlPfnArray(pool)[0];
	p[2] = MmGetMdlPfnArray(wc)[0];
	p[3] = MmGetMdlPfnArray(untyped)[0];
	m->MdlFlags |= MDL_PAGES_LOCKED;

	static const unsigned want[4] = { MMT_ENC_UC, MMT_ENC_WB, MMT_ENC_WC, MMT_ENC_UCMINUS };
	uint64_t o = overrides();
	PVOID va = map_as(m, MmNonCachedUnordered);
	ASSERT_TRUE(t, va != NULL);
	for (ULONG i = 0; i < 4; i++) {
		struct mmt_rights r;
		EXPECT_EQ(t, mmt_encoding_at((uint64_t)va + i * PAGE_SIZE, &r), want[i]);
		EXPECT_EQ(t, r.level, 1);
		EXPECT_EQ(t, mmt_alias_encoding(p[i], NULL), want[i]);
	}
	EXPECT_EQ(t, overrides(), o + 1);
	expect_one_type_per_frame(t);
	MmUnmapLockedPages(va, m);

	m->MdlFlags &= ~MDL_PAGES_LOCKED;
	IoFreeMdl(m);
	MmUnlockPages(pool);
	IoFreeMdl(pool);
	ExFreePoolWithTag(buf, TAG);
	free_pages_expect_wb(t, uc, "UC frame");
	free_pages_expect_wb(t, wc, "WC frame");
	free_pages_expect_wb(t, untyped, "UC- frame");
	expect_one_type_per_frame(t);
}

/* A value that names no caching type: MmAllocatePagesForMdlEx returns NULL, and a KernelMode
 * mapping fails the documented way (NULL, nothing consumed, the MDL unmapped). */
static void unknown_caching_type_is_refused(struct ktest *t)
{
	static const int bad[] = { MmMaximumCacheType, MmNotMapped, 0x102 };
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	uint64_t ptes = mmt_free_sysptes();
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		MEMORY_CACHING_TYPE type = (MEMORY_CACHING_TYPE)bad[i];
		EXPECT_TRUE(t, MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE, type, 0) == NULL);
		EXPECT_TRUE(t, map_as(m, type) == NULL);
		EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	}
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
	expect_one_type_per_frame(t);
}

static struct ktest_case mdl_cache_cases[] = {
	KTEST_CASE(each_caching_type_selects_its_pat_slot),
	KTEST_CASE(allocate_pages_ex_records_its_type),
	KTEST_CASE(allocate_pages_takes_the_first_mapping_type),
	KTEST_CASE(pool_pages_stay_write_back),
	KTEST_CASE(probe_locked_ram_stays_write_back),
	KTEST_CASE(each_frame_keeps_its_own_type),
	KTEST_CASE(unknown_caching_type_is_refused),
	{ 0 }
};
KTEST_SUITE(mdl_cache, mdl_cache_cases);
