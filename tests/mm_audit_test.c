/*
 * The page-table audits (mm/audit.c).
 *
 * mm_audit (late: runs after every other suite, whatever the glob) checks that the kernel's
 * tables, after everything the other suites did, hold no W+X leaf, no user page in the
 * kernel half, no frame with two memory types, and PFN memory types that match the tables.
 *
 * mm_audit_proof shows that each audit can fail: it builds exactly one violation in the
 * test scratch region (or on one frame's direct-map alias), checks that the audit reports
 * exactly it, and takes it down again.  Not late: the late suite must find nothing.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/scratch.h"
#include "kernel/process.h"
#include "mm/audit.h"
#include "mm/layout.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/mmproc.h"
#include "mm/pt.h"

/* ---------------------------------------------------------------- end-of-run audits */

static void no_writable_executable_or_user_kernel_pages(struct ktest *t)
{
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
}

static void no_frame_with_two_memory_types(struct ktest *t)
{
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
}

static void pfn_memtypes_match_the_tables(struct ktest *t)
{
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
}

static void no_frame_breaks_wx_across_mappings_and_privilege_levels(struct ktest *t)
{
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
}

static struct ktest_case mm_audit_cases[] = {
	KTEST_CASE(no_writable_executable_or_user_kernel_pages),
	KTEST_CASE(no_frame_breaks_wx_across_mappings_and_privilege_levels),
	KTEST_CASE(no_frame_with_two_memory_types),
	KTEST_CASE(pfn_memtypes_match_the_tables),
	{ 0 }
};
KTEST_SUITE(mm_audit, mm_audit_cases, .late = true);

/* ---------------------------------------------------------------- each audit can fail */

/* Where the proof case maps: two fresh scratch pages of its own (tests/lib/scratch.h). */
static uint64_t scratch_va;

/* Every proof case maps at scratch_va: it must be free, or pt_map would PANIC. */
static int scratch_is_unmapped(struct ktest *t)
{
	scratch_va = scratch_kva(2 * PAGE_SIZE, 0);
	struct pt_query q;
	pt_query(&kernel_root, scratch_va, &q);
	if (q.present)
		KTEST_FAIL(t, "0x%lx is already mapped", scratch_va);
	return q.present;
}

/* A fresh frame mapped alone at scratch_va with `a`; PFN_INVALID when that failed. */
static pfn_t map_scratch_page(struct pt_attrs a)
{
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	if (pfn == PFN_INVALID)
		return PFN_INVALID;
	if (!pt_map(&kernel_root, scratch_va, pfn << PAGE_SHIFT, PAGE_SIZE, a, 0)) {
		pfn_free(pfn);
		return PFN_INVALID;
	}
	return pfn;
}

static void unmap_scratch_page(pfn_t pfn)
{
	pt_unmap(&kernel_root, scratch_va, PAGE_SIZE);
	pfn_free(pfn);
}

static void writable_executable_page_is_found(struct ktest *t)
{
	ASSERT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
	pfn_t pfn = map_scratch_page((struct pt_attrs){ .write = true, .exec = true, .type = MT_WB });
	ASSERT_NE(t, pfn, PFN_INVALID);
	struct pt_query q;
	pt_query(&kernel_root, scratch_va, &q);
	uint64_t first = 0, found = mm_audit_wx_first(&kernel_root, true, &first);
	unmap_scratch_page(pfn);

	EXPECT_TRUE(t, q.present && q.eff.write && q.eff.exec); /* the tables really say W+X */
	EXPECT_EQ(t, found, 1);
	EXPECT_EQ(t, first, scratch_va);
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
}

/*
 * pt_map, pt_protect and pt_set_ptes refuse user access in the kernel half (PANIC), and the
 * kernel half's upper levels never grant U/S, so the violation that could arise is a leaf
 * whose own U/S bit is set — made here with the page-table module's test hook.  The audit
 * must see it although the effective rights hide it.
 */
static void user_page_in_kernel_half_is_found(struct ktest *t)
{
	ASSERT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
	pfn_t pfn = map_scratch_page((struct pt_attrs){ .type = MT_WB });
	ASSERT_NE(t, pfn, PFN_INVALID);
	pt_test_set_leaf_user(&kernel_root, scratch_va, true);
	bool protected = true;
	struct pt_query q;
	pt_query(&kernel_root, scratch_va, &q);
	uint64_t first = 0, found = mm_audit_wx_first(&kernel_root, true, &first);
	unmap_scratch_page(pfn);

	ASSERT_TRUE(t, protected);
	EXPECT_TRUE(t, q.present);
	EXPECT_FALSE(t, q.eff.user); /* the PML4E has U/S clear: hidden, yet one bit away */
	EXPECT_EQ(t, found, 1);
	EXPECT_EQ(t, first, scratch_va);
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
}

/* A WC mapping made without memtype_set_frame: the frame's direct-map alias stays WB. */
static void frame_with_two_memory_types_is_found(struct ktest *t)
{
	ASSERT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
	pfn_t pfn = map_scratch_page((struct pt_attrs){ .write = true, .type = MT_WC });
	ASSERT_NE(t, pfn, PFN_INVALID);
	struct pt_query scratch, alias;
	pt_query(&kernel_root, scratch_va, &scratch);
	pt_query(&kernel_root, (uint64_t)pfn_to_virt(pfn), &alias);
	pfn_t first = PFN_INVALID;
	uint64_t found = mm_audit_memtypes_first(&kernel_root, true, &first);
	unmap_scratch_page(pfn);

	EXPECT_TRUE(t, scratch.present && scratch.eff.type == MT_WC);
	EXPECT_TRUE(t, alias.present && alias.eff.type == MT_WB);
	EXPECT_EQ(t, found, 1);
	EXPECT_EQ(t, first, pfn);
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
}

/* The same MMIO frame (beyond the PFN database) mapped UC and WC: the audit's MMIO table
 * must catch it.  Nothing touches the frame; only the tables are read. */
static void mmio_frame_with_two_memory_types_is_found(struct ktest *t)
{
	ASSERT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
	pfn_t mmio = pfn_limit();
	struct pt_attrs uc = { .write = true, .type = MT_UC }, wc = { .write = true, .type = MT_WC };
	ASSERT_TRUE(t, pt_map(&kernel_root, scratch_va, mmio << PAGE_SHIFT, PAGE_SIZE, uc, 0));
	bool second = pt_map(&kernel_root, scratch_va + PAGE_SIZE, mmio << PAGE_SHIFT, PAGE_SIZE, wc, 0);
	pfn_t first = PFN_INVALID;
	uint64_t found = mm_audit_memtypes_first(&kernel_root, true, &first);
	pt_unmap(&kernel_root, scratch_va, 2 * PAGE_SIZE);

	ASSERT_TRUE(t, second);
	EXPECT_EQ(t, found, 1);
	EXPECT_EQ(t, first, mmio);
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
}

/* The frame's only mapping (its direct-map alias) turned WC behind the PFN database's back:
 * one type in the tables, so no two-types finding, but the record (WB) disagrees. */
static void pfn_record_disagreeing_with_tables_is_found(struct ktest *t)
{
	const struct pt_attrs direct = { .write = true, .global = true, .type = MT_WB };
	struct pt_attrs wc = direct;
	wc.type = MT_WC;
	ASSERT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
	pfn_t pfn = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	uint64_t alias_va = (uint64_t)pfn_to_virt(pfn);
	if (!pt_protect(&kernel_root, alias_va, PAGE_SIZE, wc)) {
		pfn_free(pfn);
		KTEST_SKIP(t, "no frame to split the direct map");
	}
	struct pt_query alias;
	pt_query(&kernel_root, alias_va, &alias);
	pfn_t first = PFN_INVALID;
	uint64_t found = mm_audit_pfn_memtypes_first(&kernel_root, true, &first);
	uint64_t two_types = mm_audit_memtypes(&kernel_root, true);
	uint8_t recorded = pfn_entry(pfn)->memtype;
	bool restored = pt_protect(&kernel_root, alias_va, PAGE_SIZE, direct);
	pfn_free(pfn);

	ASSERT_TRUE(t, restored);
	EXPECT_TRUE(t, alias.present && alias.eff.type == MT_WC);
	EXPECT_EQ(t, recorded, MT_WB);
	EXPECT_EQ(t, found, 1);
	EXPECT_EQ(t, first, pfn);
	EXPECT_EQ(t, two_types, 0);
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
}

/* The W^X alias audit: a fresh frame mapped R+X while its direct-map alias stays RW is one
 * more finding. */
static void writable_alias_of_executable_page_is_found(struct ktest *t)
{
	uint64_t before = mm_audit_wx_aliases(&kernel_root, false);
	pfn_t pfn = map_scratch_page((struct pt_attrs){ .exec = true, .type = MT_WB });
	ASSERT_NE(t, pfn, PFN_INVALID);
	struct pt_query alias;
	pt_query(&kernel_root, (uint64_t)pfn_to_virt(pfn), &alias);
	uint64_t during = mm_audit_wx_aliases(&kernel_root, false);
	unmap_scratch_page(pfn);

	EXPECT_TRUE(t, alias.present && alias.eff.write);
	EXPECT_EQ(t, during, before + 1);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, false), before);
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0); /* no single leaf is W+X */
}

/* ---------------------------------------------------------------- W^X across privilege levels */

/* The W^X audit across mappings passes with processes alive, also walking from a process's
 * own tables: user code is writable through the direct map only, which ring 3 cannot use
 * (before the rule took privilege levels into account, every process broke it). */
static void wx_across_mappings_passes_with_processes_alive(struct ktest *t)
{
	PEPROCESS a = agent_create_idle(0), b = agent_create_idle(PROCESS_WOW64);
	ASSERT_TRUE(t, a && b);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_wx_aliases(&a->mm.root, true), 0);
	EXPECT_EQ(t, mm_audit_wx(&a->mm.root, true), 0);
	PsDestroyProcess(b);
	PsDestroyProcess(a);
}

/* PTEs of a process's user half written directly, under its address-space lock as every
 * change of a user half is (mm/pt.h). */
static bool user_pt_map(PEPROCESS p, uint64_t uva, pfn_t pfn, struct pt_attrs a)
{
	KIRQL irql = mm_space_lock(&p->mm);
	bool ok = pt_map(&p->mm.root, uva, pfn << PAGE_SHIFT, PAGE_SIZE, a, 0);
	mm_space_unlock(&p->mm, irql);
	return ok;
}

static void user_pt_unmap(PEPROCESS p, uint64_t uva, uint64_t size)
{
	KIRQL irql = mm_space_lock(&p->mm);
	pt_unmap(&p->mm.root, uva, size);
	mm_space_unlock(&p->mm, irql);
}

/* One fresh frame mapped twice in a process's user half by writing its PTEs directly
 * (pt_map): read-write and read-execute, both ring 3.  One finding, found from the kernel's
 * tables too (the audit walks every live process), none once it is gone. */
static void frame_executable_and_writable_in_ring_3_is_found(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t uva = scratch_uva(2 * PAGE_SIZE, 0);
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	bool rw = user_pt_map(p, uva, pfn, (struct pt_attrs){ .write = true, .user = true, .type = MT_WB });
	bool rx = rw && user_pt_map(p, uva + PAGE_SIZE, pfn, (struct pt_attrs){ .exec = true, .user = true, .type = MT_WB });
	uint64_t during = mm_audit_wx_aliases(&kernel_root, true);
	uint64_t single = mm_audit_wx(&p->mm.root, false);
	user_pt_unmap(p, uva, 2 * PAGE_SIZE);
	pfn_free(pfn);
	EXPECT_TRUE(t, rw && rx);
	EXPECT_EQ(t, during, 1);
	EXPECT_EQ(t, single, 0); /* no one leaf is W+X */
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	PsDestroyProcess(p);
}

/* A frame ring 0 can execute (a supervisor R+X leaf at scratch_va) that a process can write:
 * one finding, and still one with the direct-map alias made read-only, so the process's
 * mapping alone is what the audit reports. */
static void frame_executable_in_ring_0_and_writable_in_ring_3_is_found(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t uva = scratch_uva(PAGE_SIZE, 0);
	pfn_t pfn = map_scratch_page((struct pt_attrs){ .exec = true, .type = MT_WB });
	ASSERT_NE(t, pfn, PFN_INVALID);
	uint64_t alias = (uint64_t)pfn_to_virt(pfn);
	/* As the direct map's own attributes (mm/kspace.c), less write. */
	bool ro_alias = pt_protect(&kernel_root, alias, PAGE_SIZE, (struct pt_attrs){ .global = true, .type = MT_WB });
	uint64_t kernel_only = mm_audit_wx_aliases(&kernel_root, true);
	bool rw = user_pt_map(p, uva, pfn, (struct pt_attrs){ .write = true, .user = true, .type = MT_WB });
	uint64_t during = mm_audit_wx_aliases(&kernel_root, true);
	if (rw)
		user_pt_unmap(p, uva, PAGE_SIZE);
	bool restored = pt_protect(&kernel_root, alias, PAGE_SIZE,
				   (struct pt_attrs){ .write = true, .global = true, .type = MT_WB });
	unmap_scratch_page(pfn);
	EXPECT_TRUE(t, ro_alias && rw && restored);
	EXPECT_EQ(t, kernel_only, 0);
	EXPECT_EQ(t, during, 1);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	PsDestroyProcess(p);
}

static struct ktest_case mm_audit_proof_cases[] = {
	KTEST_CASE(writable_executable_page_is_found),
	KTEST_CASE(user_page_in_kernel_half_is_found),
	KTEST_CASE(frame_with_two_memory_types_is_found),
	KTEST_CASE(mmio_frame_with_two_memory_types_is_found),
	KTEST_CASE(pfn_record_disagreeing_with_tables_is_found),
	KTEST_CASE(writable_alias_of_executable_page_is_found),
	KTEST_CASE(wx_across_mappings_passes_with_processes_alive),
	KTEST_CASE(frame_executable_and_writable_in_ring_3_is_found),
	KTEST_CASE(frame_executable_in_ring_0_and_writable_in_ring_3_is_found),
	{ 0 }
};
KTEST_SUITE(mm_audit_proof, mm_audit_proof_cases, .init = scratch_is_unmapped);
