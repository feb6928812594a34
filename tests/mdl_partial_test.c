/*
 * IoBuildPartialMdl and MmPrepareMdlForReuse (mm/RULES.md rule 11, and rule 8's
 * page's release table): a partial MDL describes a sub-range of its source — the right
 * slice of the source's PFN array — shares the source's system mapping when there is one,
 * maps on its own otherwise, and gives that mapping back on MmPrepareMdlForReuse or
 * IoFreeMdl.  Ranges it cannot describe are bug checks.
 *
 * The source is a locked MDL over 5 pages of pool at an odd offset.  Frames are checked
 * against pt_query of the buffer's own pages, mappings by reading their PTEs and by bytes
 * written through one address and read through another.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x74506D4Du /* 'MmPt' */
#define SRC_PAGES 5
#define SRC_OFFSET 0x234u
#define SRC_LENGTH (4 * PAGE_SIZE + 0x100) /* 0x234 + 0x4100 spans all 5 pages */

struct source {
	uint8_t *buf;  /* SRC_PAGES pages of pool */
	uint8_t *va;   /* buf + SRC_OFFSET: what the source MDL describes */
	PMDL mdl;
};

static void source_lock(struct ktest *t, struct source *s)
{
	s->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, SRC_PAGES * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, s->buf != NULL);
	for (uint64_t i = 0; i < SRC_PAGES * PAGE_SIZE; i++)
		s->buf[i] = (uint8_t)(i * 7 + 3);
	s->va = s->buf + SRC_OFFSET;
	s->mdl = IoAllocateMdl(s->va, SRC_LENGTH, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, s->mdl != NULL);
	MmProbeAndLockPages(s->mdl, KernelMode, IoWriteAccess);
	ASSERT_EQ(t, mdl_page_count(s->mdl), SRC_PAGES);
}

static void source_release(struct source *s)
{
	MmUnlockPages(s->mdl);
	IoFreeMdl(s->mdl);
	ExFreePoolWithTag(s->buf, TAG);
}

/* The partial MDL's header and PFN array describe [va, va + len) of the source: its PFNs
 * are the source's slice starting at va's page, and the frames the buffer's own pages map. */
static void expect_describes(struct ktest *t, const struct source *s, PMDL p, uint8_t *va, ULONG len)
{
	EXPECT_TRUE(t, p->StartVa == PAGE_ALIGN(va));
	EXPECT_EQ(t, p->ByteOffset, BYTE_OFFSET(va));
	EXPECT_EQ(t, p->ByteCount, len);
	EXPECT_TRUE(t, MmGetMdlVirtualAddress(p) == va);
	EXPECT_TRUE(t, p->MdlFlags & MDL_PARTIAL);
	EXPECT_EQ(t, p->MdlFlags & MDL_WRITE_OPERATION, s->mdl->MdlFlags & MDL_WRITE_OPERATION);
	EXPECT_FALSE(t, p->MdlFlags & MDL_PAGES_LOCKED); /* the source holds the locks */
	EXPECT_TRUE(t, p->Process == s->mdl->Process);
	ULONG n = ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, len);
	EXPECT_EQ(t, mdl_page_count(p), n);
	uint64_t first = ((uint64_t)PAGE_ALIGN(va) - (uint64_t)s->mdl->StartVa) / PAGE_SIZE;
	for (ULONG i = 0; i < n; i++) {
		EXPECT_EQ(t, MmGetMdlPfnArray(p)[i], MmGetMdlPfnArray(s->mdl)[first + i]);
		EXPECT_EQ(t, MmGetMdlPfnArray(p)[i], mmt_frame_of((uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE));
	}
}

/* The PTEs under a mapping of p: present, the right frames, NX. */
static void expect_mapping_of(struct ktest *t, PMDL p, uint64_t va)
{
	for (ULONG i = 0; i < mdl_page_count(p); i++) {
		struct pt_query q;
		pt_query(&kernel_root, ALIGN_DOWN(va, PAGE_SIZE) + i * PAGE_SIZE, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.pa >> PAGE_SHIFT, MmGetMdlPfnArray(p)[i]);
		EXPECT_FALSE(t, q.eff.exec);
	}
}

static void partial_describes_the_right_slice(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	static const struct {
		ULONG offset, length; /* into the source's buffer; length 0: to its end */
	} ranges[] = {
		{ 0, 1 },
		{ 0x10, 0x20 },
		{ 0xDC0, 0x480 },                           /* straddles the first page boundary */
		{ 2 * PAGE_SIZE - SRC_OFFSET + 7, 5000 },   /* from inside page 2 into page 3 */
		{ 0x1234, 0 },                              /* to the end */
		{ 0, 0 },                                   /* the whole source */
		{ SRC_LENGTH - 1, 1 },                      /* its last byte */
		{ 0x5, SRC_LENGTH - 0x5 },
		{ 3 * PAGE_SIZE - SRC_OFFSET, PAGE_SIZE },  /* exactly page 3 */
	};
	for (unsigned k = 0; k < ARRAY_SIZE(ranges); k++) {
		uint8_t *va = s.va + ranges[k].offset;
		ULONG len = ranges[k].length ? ranges[k].length : SRC_LENGTH - ranges[k].offset;
		PMDL p = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, p != NULL);
		IoBuildPartialMdl(s.mdl, p, va, ranges[k].length);
		expect_describes(t, &s, p, va, len);
		/* The source is not mapped: neither is the partial MDL. */
		EXPECT_FALSE(t, p->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PARENT_MAPPED_SYSTEM_VA));
		EXPECT_TRUE(t, p->MappedSystemVa == NULL);
		IoFreeMdl(p);
	}
	source_release(&s);
}

/* A mapped source: the partial MDL's system address lies inside the source's mapping
 * (MappedSystemVa = the source's + offset) and no system PTE is taken for it. */
static void partial_shares_a_mapped_source(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	uint8_t *sva = MmGetSystemAddressForMdlSafe(s.mdl, NormalPagePriority);
	ASSERT_TRUE(t, sva != NULL);
	struct syspte_stats before, after;
	syspte_get_stats(&before);

	ULONG off = 0x1800, len = 0x2000;
	PMDL p = IoAllocateMdl(s.va + off, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	IoBuildPartialMdl(s.mdl, p, s.va + off, len);
	expect_describes(t, &s, p, s.va + off, len);
	EXPECT_TRUE(t, p->MappedSystemVa == sva + off);
	EXPECT_TRUE(t, p->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_TRUE(t, p->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA);
	EXPECT_FALSE(t, p->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED);
	uint8_t *pva = MmGetSystemAddressForMdlSafe(p, NormalPagePriority);
	EXPECT_TRUE(t, pva == sva + off);
	syspte_get_stats(&after);
	EXPECT_EQ(t, after.free, before.free);
	EXPECT_EQ(t, after.reservations, before.reservations);
	expect_mapping_of(t, p, (uint64_t)pva);

	/* One set of bytes: through the partial's address, the source's, and the pool's. */
	pva[0] = 0xE1;
	pva[len - 1] = 0xE2;
	EXPECT_EQ(t, ((volatile uint8_t *)sva)[off], 0xE1);
	EXPECT_EQ(t, s.va[off], 0xE1);
	EXPECT_EQ(t, s.va[off + len - 1], 0xE2);

	/* Freeing the partial MDL leaves the source's mapping alone. */
	IoFreeMdl(p);
	EXPECT_FALSE(t, mmt_va_unmapped((uint64_t)sva + off));
	EXPECT_TRUE(t, s.mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	source_release(&s); /* MmUnlockPages releases the source's mapping */
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)sva));
}

/* A nonpaged-pool source (MmBuildMdlForNonPagedPool) is "mapped" at the pool address: the
 * partial MDL's address is the pool address + offset, with no mapping made. */
static void partial_of_nonpaged_pool_uses_the_pool_address(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL src = IoAllocateMdl(buf + 0x40, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, src != NULL);
	MmBuildMdlForNonPagedPool(src);
	uint64_t ptes = mmt_free_sysptes();
	PMDL p = IoAllocateMdl(buf + 0xFF0, 0x30, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	IoBuildPartialMdl(src, p, buf + 0xFF0, 0x30);
	EXPECT_TRUE(t, p->MappedSystemVa == buf + 0xFF0);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(p, NormalPagePriority) == buf + 0xFF0);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	EXPECT_EQ(t, MmGetMdlPfnArray(p)[0], mmt_frame_of((uint64_t)buf));
	EXPECT_EQ(t, MmGetMdlPfnArray(p)[1], mmt_frame_of((uint64_t)buf + PAGE_SIZE));
	IoFreeMdl(p);
	IoFreeMdl(src);
	ExFreePoolWithTag(buf, TAG);
}

/* An unmapped source: MmGetSystemAddressForMdlSafe maps the partial MDL on its own, in
 * its own system PTEs (PARTIAL_HAS_BEEN_MAPPED); MmPrepareMdlForReuse gives them back, and
 * so does IoFreeMdl. */
static void partial_maps_on_its_own_when_the_source_is_not_mapped(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	ULONG off = 0x1800, len = 0x2000; /* page 1 at 0xA34 to page 3: 3 pages */
	uint8_t *va = s.va + off;
	PMDL p = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	IoBuildPartialMdl(s.mdl, p, va, len);
	ASSERT_EQ(t, mdl_page_count(p), 3);
	EXPECT_TRUE(t, p->MappedSystemVa == NULL);

	uint64_t ptes = mmt_free_sysptes();
	uint8_t *pva = MmGetSystemAddressForMdlSafe(p, NormalPagePriority);
	ASSERT_TRUE(t, pva != NULL);
	EXPECT_TRUE(t, syspte_contains((uint64_t)pva));
	EXPECT_EQ(t, BYTE_OFFSET(pva), BYTE_OFFSET(va));
	EXPECT_TRUE(t, p->MappedSystemVa == pva);
	EXPECT_EQ(t, p->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED),
		  MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED);
	EXPECT_FALSE(t, p->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes - 3);
	EXPECT_FALSE(t, s.mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA); /* the source stays unmapped */
	expect_mapping_of(t, p, (uint64_t)pva);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(p, NormalPagePriority) == pva);
	pva[0] = 0xD1;
	pva[len - 1] = 0xD2;
	EXPECT_EQ(t, s.va[off], 0xD1);
	EXPECT_EQ(t, s.va[off + len - 1], 0xD2);

	MmPrepareMdlForReuse(p);
	EXPECT_FALSE(t, p->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED));
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	for (ULONG i = 0; i < 3; i++)
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)PAGE_ALIGN(pva) + i * PAGE_SIZE));

	/* Mapped again and freed while mapped: IoFreeMdl releases the mapping. */
	pva = MmGetSystemAddressForMdlSafe(p, NormalPagePriority);
	ASSERT_TRUE(t, pva != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes - 3);
	IoFreeMdl(p);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)pva));
	source_release(&s);
}

/* One target MDL rebuilt 200 times over changing sub-ranges, each time mapped, used and
 * prepared for reuse: no system PTE stays behind, ever. */
static void reuse_in_a_loop_keeps_no_ptes(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	PMDL p = IoAllocateMdl(s.va, SRC_LENGTH, FALSE, FALSE, NULL); /* room for any sub-range */
	ASSERT_TRUE(t, p != NULL);
	uint64_t ptes = mmt_free_sysptes();
	for (ULONG i = 0; i < 200; i++) {
		ULONG off = (i * 0x9E5u) % (SRC_LENGTH - 1);
		ULONG len = 1 + (i * 0x3C7u) % (SRC_LENGTH - off);
		IoBuildPartialMdl(s.mdl, p, s.va + off, len);
		uint8_t *pva = MmGetSystemAddressForMdlSafe(p, NormalPagePriority);
		if (!pva) {
			KTEST_FAIL(t, "iteration %u: no mapping for [0x%x, +0x%x)", i, off, len);
			break;
		}
		pva[len - 1] = (uint8_t)i;
		if (s.va[off + len - 1] != (uint8_t)i)
			KTEST_FAIL(t, "iteration %u: the byte written at +0x%x did not reach the buffer", i, len - 1);
		MmPrepareMdlForReuse(p);
		if (mmt_free_sysptes() != ptes) {
			KTEST_FAIL(t, "iteration %u: %lu system PTEs free, %lu before", i, mmt_free_sysptes(), ptes);
			break;
		}
	}
	EXPECT_EQ(t, mmt_free_sysptes(), ptes);
	IoFreeMdl(p);
	source_release(&s);
}

/* ---- death ----------------------------------------------------------------------------- */

/* A target with room for one PFN, asked to describe three pages. */
static void target_too_small_bug_checks(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	PMDL p = IoAllocateMdl(s.va + 0x100, 0x10, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	IoBuildPartialMdl(s.mdl, p, s.va + 0x100, 2 * PAGE_SIZE);
}

static void range_past_the_source_end_bug_checks(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	PMDL p = IoAllocateMdl(s.va, SRC_LENGTH, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	/* Microsoft's 0x12E: SourceMdl, TargetMdl, VirtualAddress, Length. */
	expect_stop(t, INVALID_MDL_RANGE, (ULONG_PTR)s.mdl, (ULONG_PTR)p, (ULONG_PTR)(s.va + SRC_LENGTH - 0x10), 0x11);
	IoBuildPartialMdl(s.mdl, p, s.va + SRC_LENGTH - 0x10, 0x11);
}

static void range_before_the_source_start_bug_checks(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	PMDL p = IoAllocateMdl(s.va - 1, SRC_LENGTH, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	expect_stop(t, INVALID_MDL_RANGE, (ULONG_PTR)s.mdl, (ULONG_PTR)p, (ULONG_PTR)(s.va - 1), 0x10);
	IoBuildPartialMdl(s.mdl, p, s.va - 1, 0x10);
}

/*
 * MDLs over 8185 pages: Size (a CSHORT, 0x30 + 8 x pages) wraps, and IoBuildPartialMdl must
 * compare the slice with the target's real capacity (mm/RULES.md rule 11).  The source is the
 * direct map described by MmBuildMdlForNonPagedPool: nothing is locked, no frame is taken.
 */
#define BIG_MAX_PAGES 65636u /* Size wraps to 0x210 */

static PMDL big_source(struct ktest *t, ULONG pages)
{
	PVOID va = (PVOID)(KVA_DIRECT_MAP_BASE + 0x100000 + 0x80);
	PMDL m = IoAllocateMdl(va, pages * PAGE_SIZE - 0x100, FALSE, FALSE, NULL);
	if (!m)
		return NULL;
	MmBuildMdlForNonPagedPool(m);
	if (mdl_page_count(m) != pages)
		KTEST_FAIL(t, "the source spans %u pages, not %u", mdl_page_count(m), pages);
	return m;
}

static void big_targets_take_slices_of_their_real_capacity(struct ktest *t)
{
	static const ULONG sizes[] = { 8185, 8186, 8192, BIG_MAX_PAGES };
	for (unsigned k = 0; k < ARRAY_SIZE(sizes); k++) {
		ULONG pages = sizes[k];
		PMDL src = big_source(t, pages);
		ASSERT_TRUE(t, src != NULL);
		/* The target is allocated for exactly the source's span: its Size is the low 16 bits. */
		PVOID va = MmGetMdlVirtualAddress(src);
		PMDL p = IoAllocateMdl(va, src->ByteCount, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, (USHORT)p->Size, (USHORT)(sizeof(MDL) + pages * sizeof(PFN_NUMBER)));
		IoBuildPartialMdl(src, p, va, 0); /* the whole source */
		EXPECT_EQ(t, mdl_page_count(p), pages);
		EXPECT_EQ(t, MmGetMdlPfnArray(p)[pages - 1], MmGetMdlPfnArray(src)[pages - 1]);
		EXPECT_TRUE(t, p->MappedSystemVa == va);
		/* A slice one page shorter, starting a page in, fits too. */
		IoBuildPartialMdl(src, p, (PCHAR)va + PAGE_SIZE, src->ByteCount - PAGE_SIZE);
		EXPECT_EQ(t, mdl_page_count(p), pages - 1);
		EXPECT_EQ(t, MmGetMdlPfnArray(p)[0], MmGetMdlPfnArray(src)[1]);
		IoFreeMdl(p);
		IoFreeMdl(src);
	}
}

/* A target one page short of a slice over 8185 pages is still too small: 0x40 with
 * (source, target, pages needed, the target's capacity in bytes). */
static void big_target_one_page_short_bug_checks(struct ktest *t)
{
	PMDL src = big_source(t, 8187);
	ASSERT_TRUE(t, src != NULL);
	PVOID va = MmGetMdlVirtualAddress(src);
	PMDL p = IoAllocateMdl(va, src->ByteCount - PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	ASSERT_EQ(t, mdl_page_count(p), 8186);
	ktest_expect_stop(t, TARGET_MDL_TOO_SMALL, (ULONG_PTR)src, (ULONG_PTR)p, 8187,
			  sizeof(MDL) + 8186 * sizeof(PFN_NUMBER), KTEST_P_ALL);
	IoBuildPartialMdl(src, p, va, src->ByteCount);
}

/* Length 0 means "to the end of the source"; the bug check still names the 0 asked for. */
static void zero_length_before_the_source_start_bug_checks(struct ktest *t)
{
	struct source s;
	source_lock(t, &s);
	PMDL p = IoAllocateMdl(s.va - PAGE_SIZE, SRC_LENGTH, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	expect_stop(t, INVALID_MDL_RANGE, (ULONG_PTR)s.mdl, (ULONG_PTR)p, (ULONG_PTR)(s.va - PAGE_SIZE), 0);
	IoBuildPartialMdl(s.mdl, p, s.va - PAGE_SIZE, 0);
}

static struct ktest_case mdl_partial_cases[] = {
	KTEST_CASE(partial_describes_the_right_slice),
	KTEST_CASE(partial_shares_a_mapped_source),
	KTEST_CASE(partial_of_nonpaged_pool_uses_the_pool_address),
	KTEST_CASE(partial_maps_on_its_own_when_the_source_is_not_mapped),
	KTEST_CASE(reuse_in_a_loop_keeps_no_ptes),
	/* Microsoft documents no parameters for 0x40: only the code is compared. */
	KTEST_DEATH_CASE(target_too_small_bug_checks, TARGET_MDL_TOO_SMALL),
	KTEST_CASE(big_targets_take_slices_of_their_real_capacity),
	KTEST_DEATH_CASE(big_target_one_page_short_bug_checks, TARGET_MDL_TOO_SMALL),
	/* The MDLs are pool addresses: the cases give all four parameters at run time. */
	KTEST_DEATH_CASE(range_past_the_source_end_bug_checks, INVALID_MDL_RANGE),
	KTEST_DEATH_CASE(range_before_the_source_start_bug_checks, INVALID_MDL_RANGE),
	KTEST_DEATH_CASE(zero_length_before_the_source_start_bug_checks, INVALID_MDL_RANGE),
	{ 0 }
};
KTEST_SUITE(mdl_partial, mdl_partial_cases);
