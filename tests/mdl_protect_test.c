/*
 * MmProtectMdlSystemAddress (mm/RULES.md decision 3): each protection is
 * proven by real accesses through the MDL's system mapping — the fault's vector, exact #PF
 * error code and CR2 — and by the raw PTEs.  PAGE_EXECUTE_READWRITE and every other value
 * outside the five accepted ones are refused with the PTEs untouched; an MDL without a
 * system mapping gets STATUS_NOT_MAPPED_VIEW; each frame keeps its memory type.
 *
 * The frames made executable are MmAllocatePagesForMdl's: while one is executable its
 * direct-map alias is read-only (a real write there faults), and it is writable again once
 * the executable mapping ends; pool frames, written through their pool mapping, are refused.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/audit.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/tlb.h"
#include "mm/uvm.h"

#define TAG 0x74506D4Du /* 'MmPt' */

/* A locked MDL over two pages of pool at offset 0x80, mapped in system PTEs. */
struct mapped {
	uint8_t *buf;
	PMDL mdl;
	uint8_t *va;    /* MappedSystemVa */
	uint64_t base;  /* its page */
};

static void map_buffer(struct ktest *t, struct mapped *m)
{
	m->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, m->buf != NULL);
	m->mdl = IoAllocateMdl(m->buf + 0x80, 2 * PAGE_SIZE - 0x100, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m->mdl != NULL);
	MmProbeAndLockPages(m->mdl, KernelMode, IoWriteAccess);
	m->va = MmGetSystemAddressForMdlSafe(m->mdl, NormalPagePriority);
	ASSERT_TRUE(t, m->va != NULL);
	m->base = ALIGN_DOWN((uint64_t)m->va, PAGE_SIZE);
}

static void unmap_buffer(struct mapped *m)
{
	MmUnlockPages(m->mdl); /* releases the mapping */
	IoFreeMdl(m->mdl);
	ExFreePoolWithTag(m->buf, TAG);
}

/* Two pages MmAllocatePagesForMdl gave, mapped in system PTEs: frames whose only other
 * kernel alias is the direct map, so they may become executable (decision 3).  buf is the
 * mapping itself. */
static void map_pages(struct ktest *t, struct mapped *m)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	m->mdl = MmAllocatePagesForMdl(lo, hi, skip, 2 * PAGE_SIZE);
	ASSERT_TRUE(t, m->mdl != NULL);
	ASSERT_EQ(t, m->mdl->ByteCount, 2 * PAGE_SIZE);
	m->va = MmGetSystemAddressForMdlSafe(m->mdl, NormalPagePriority);
	ASSERT_TRUE(t, m->va != NULL);
	m->buf = m->va;
	m->base = (uint64_t)m->va;
}

static void unmap_pages(struct mapped *m)
{
	MmFreePagesFromMdl(m->mdl); /* releases the mapping */
	ExFreePool(m->mdl);
}

/* The direct-map alias of the MDL's page i. */
static uint64_t alias_of(const struct mapped *m, int i)
{
	return (uint64_t)pfn_to_virt(MmGetMdlPfnArray(m->mdl)[i]);
}

static NTSTATUS protect(struct mapped *m, ULONG prot) { return MmProtectMdlSystemAddress(m->mdl, prot); }

/* The raw leaf of each mapped page, without the accessed and dirty bits. */
static void snapshot(const struct mapped *m, uint64_t out[2])
{
	for (int i = 0; i < 2; i++) {
		struct pt_query q;
		pt_query(&kernel_root, m->base + i * PAGE_SIZE, &q);
		out[i] = q.entry[1] & ~MMT_PTE_AD;
	}
}

/* Both PTEs, raw: present or not; if present, the MDL's frame, RW and NX as given, the
 * frame's memory type `type`, and effective rights across the levels to match. */
static void expect_ptes(struct ktest *t, const struct mapped *m, bool present, bool write, bool exec,
			enum memtype type)
{
	for (int i = 0; i < 2; i++) {
		uint64_t va = m->base + i * PAGE_SIZE;
		struct pt_query q;
		pt_query(&kernel_root, va, &q);
		if (!present) {
			EXPECT_FALSE(t, q.present);
			EXPECT_EQ(t, q.level, 1);
			EXPECT_FALSE(t, mmt_has(q.entry[1], MMT_PTE_P));
			continue;
		}
		ASSERT_TRUE(t, q.present);
		ASSERT_EQ(t, q.level, 1);
		uint64_t e = q.entry[1];
		EXPECT_EQ(t, mmt_leaf_pa(e, 1) >> PAGE_SHIFT, MmGetMdlPfnArray(m->mdl)[i]);
		EXPECT_EQ(t, mmt_has(e, MMT_PTE_RW), write);
		EXPECT_EQ(t, mmt_has(e, MMT_PTE_NX), !exec);
		EXPECT_FALSE(t, mmt_has(e, MMT_PTE_US));
		EXPECT_EQ(t, mmt_leaf_encoding(e, 1), mmt_type_encoding(type));
		struct mmt_rights r = mmt_rights_of(va);
		EXPECT_EQ(t, r.write, write);
		EXPECT_EQ(t, r.nx, !exec);
	}
}

static void expect_write_faults(struct ktest *t, uint64_t va, uint64_t code)
{
	struct faultcap f;
	EXPECT_FALSE(t, faultcap_try_store8(va, 0x99, &f));
	EXPECT_PAGE_FAULT(t, &f, code, va);
	EXPECT_EQ(t, f.status, STATUS_ACCESS_VIOLATION);
}

static void expect_read_faults(struct ktest *t, uint64_t va, uint64_t code)
{
	struct faultcap f;
	uint8_t v;
	EXPECT_FALSE(t, faultcap_try_load8(va, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, code, va);
}

/* A write through the mapping that reaches the pool buffer, and a read back. */
static void expect_write_works(struct ktest *t, const struct mapped *m, uint64_t off, uint8_t v)
{
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_store8(m->base + off, v, &f));
	EXPECT_EQ(t, m->buf[off], v);
}

static void expect_read_works(struct ktest *t, const struct mapped *m, uint64_t off)
{
	struct faultcap f;
	uint8_t v = 0;
	m->buf[off] = (uint8_t)(off ^ 0x5A);
	EXPECT_TRUE(t, faultcap_try_load8(m->base + off, &v, &f));
	EXPECT_EQ(t, v, (uint8_t)(off ^ 0x5A));
}

/* ---- the accepted protections --------------------------------------------------------- */

static void readonly_makes_writes_fault(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	expect_ptes(t, &m, true, true, false, MT_WB);
	EXPECT_EQ(t, protect(&m, PAGE_READONLY), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, false, MT_WB);
	expect_write_faults(t, m.base + 0x90, PF_WRITE_PROTECTION);
	expect_write_faults(t, m.base + PAGE_SIZE + 0x18, PF_WRITE_PROTECTION);
	EXPECT_NE(t, m.buf[0x90], 0x99);
	expect_read_works(t, &m, 0x90);
	expect_read_works(t, &m, PAGE_SIZE + 0x18);
	EXPECT_TRUE(t, m.mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	unmap_buffer(&m);
}

static void readwrite_makes_writes_work(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	EXPECT_EQ(t, protect(&m, PAGE_READONLY), STATUS_SUCCESS);
	expect_write_faults(t, m.base + 0x100, PF_WRITE_PROTECTION);
	EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, true, false, MT_WB);
	expect_write_works(t, &m, 0x100, 0x42);
	expect_write_works(t, &m, PAGE_SIZE + 0xF00, 0x43);
	unmap_buffer(&m);
}

static void noaccess_makes_reads_fault_not_present(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	EXPECT_EQ(t, protect(&m, PAGE_NOACCESS), STATUS_SUCCESS);
	expect_ptes(t, &m, false, false, false, MT_WB);
	expect_read_faults(t, m.base + 0x20, PF_READ_NOT_PRESENT);
	expect_read_faults(t, m.base + PAGE_SIZE + 0x7FF, PF_READ_NOT_PRESENT);
	expect_write_faults(t, m.base + 0x21, PF_WRITE_NOT_PRESENT);
	EXPECT_TRUE(t, m.mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA); /* still the MDL's mapping */
	/* Access comes back on the same frames. */
	EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, true, false, MT_WB);
	expect_read_works(t, &m, 0x20);
	expect_write_works(t, &m, PAGE_SIZE + 0x7FF, 0x17);
	/* Unmapped while inaccessible: the release must cope. */
	EXPECT_EQ(t, protect(&m, PAGE_NOACCESS), STATUS_SUCCESS);
	unmap_buffer(&m);
}

/* PAGE_EXECUTE_READ: a `ret` placed in the buffer is called through the mapping and
 * returns; writes fault; back to PAGE_READWRITE the same call faults as a fetch from NX. */
static void execute_read_runs_code_and_refuses_writes(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	m.buf[0x40] = FAULTCAP_RET_OPCODE;
	m.buf[PAGE_SIZE + 0x200] = FAULTCAP_RET_OPCODE;
	m.buf[0x300] = 0x5A;
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, true, MT_WB);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_TRUE(t, faultcap_try_call(m.base + PAGE_SIZE + 0x200, &f));
	expect_write_faults(t, m.base + 0x41, PF_WRITE_PROTECTION);
	uint8_t v = 0;
	EXPECT_TRUE(t, faultcap_try_load8(m.base + 0x300, &v, &f));
	EXPECT_EQ(t, v, 0x5A);

	EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, true, false, MT_WB);
	EXPECT_FALSE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, m.base + 0x40);
	unmap_pages(&m);
}

static void execute_runs_code(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	m.buf[PAGE_SIZE + 0x10] = FAULTCAP_RET_OPCODE;
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, true, MT_WB);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_call(m.base + PAGE_SIZE + 0x10, &f));
	expect_write_faults(t, m.base + PAGE_SIZE + 0x10, PF_WRITE_PROTECTION);
	EXPECT_EQ(t, m.buf[PAGE_SIZE + 0x10], FAULTCAP_RET_OPCODE);
	/* Unmapped while executable: nothing of it survives. */
	uint64_t base = m.base;
	unmap_pages(&m);
	EXPECT_TRUE(t, mmt_va_unmapped(base) && mmt_va_unmapped(base + PAGE_SIZE));
}

/* ---- ring-0 aliases (decision 3) ------------------------------------------------------- */

/* Whether the direct-map alias of the MDL's page i is present and writable (the real tables). */
static bool alias_writable(const struct mapped *m, int i)
{
	struct mmt_rights r = mmt_rights_of(alias_of(m, i));
	return r.present && r.write;
}

static void expect_alias_write_faults(struct ktest *t, const struct mapped *m)
{
	for (int i = 0; i < 2; i++) {
		EXPECT_FALSE(t, alias_writable(m, i));
		expect_write_faults(t, alias_of(m, i) + 0x123, PF_WRITE_PROTECTION);
	}
}

static void expect_alias_write_works(struct ktest *t, const struct mapped *m, uint8_t v)
{
	for (int i = 0; i < 2; i++) {
		struct faultcap f;
		EXPECT_TRUE(t, alias_writable(m, i));
		EXPECT_TRUE(t, faultcap_try_store8(alias_of(m, i) + 0x123, v, &f));
		EXPECT_EQ(t, m->buf[i * PAGE_SIZE + 0x123], v);
	}
}

/* No frame is executable in ring 0 while a ring-0 alias can write it: PAGE_EXECUTE(_READ)
 * makes each frame's direct-map alias read-only (a real write faults P|W at the alias, and
 * the W^X alias audit passes with the mapping alive); re-protection to PAGE_READWRITE and
 * the unmap each make it writable again. */
static void execute_makes_the_direct_map_alias_read_only(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	expect_alias_write_works(t, &m, 0x11);
	uint64_t audit_before = mm_audit_wx_aliases(&kernel_root, true);
	EXPECT_EQ(t, audit_before, 0);

	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, true, MT_WB);
	expect_alias_write_faults(t, &m);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	EXPECT_EQ(t, m.buf[0x123], 0x11); /* the faulting writes changed nothing */

	EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
	expect_alias_write_works(t, &m, 0x22);

	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE), STATUS_SUCCESS);
	expect_alias_write_faults(t, &m);
	EXPECT_EQ(t, protect(&m, PAGE_READONLY), STATUS_SUCCESS);
	expect_alias_write_works(t, &m, 0x33);

	/* Unmapped while executable: the aliases come back writable. */
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
	expect_alias_write_faults(t, &m);
	MmUnmapLockedPages(m.va, m.mdl);
	for (int i = 0; i < 2; i++) {
		struct faultcap f;
		EXPECT_TRUE(t, alias_writable(&m, i));
		EXPECT_TRUE(t, faultcap_try_store8(alias_of(&m, i) + 0x10, 0x44, &f));
	}
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	unmap_pages(&m);
}

/* A frame written only through a read-only alias of its WC type keeps WC: the alias that
 * PAGE_EXECUTE_READ makes read-only, and the one given back, select the frame's type. */
static void alias_keeps_the_frames_type(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL md = MmAllocatePagesForMdlEx(lo, hi, skip, PAGE_SIZE, MmWriteCombined, 0);
	ASSERT_TRUE(t, md != NULL);
	pfn_t pfn = MmGetMdlPfnArray(md)[0];
	uint8_t *va = MmMapLockedPagesSpecifyCache(md, KernelMode, MmWriteCombined, NULL, FALSE, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		unsigned wc = mmt_type_encoding(MT_WC);
		EXPECT_EQ(t, mmt_alias_encoding(pfn, NULL), wc);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(md, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		struct mmt_rights r;
		EXPECT_EQ(t, mmt_alias_encoding(pfn, &r), wc);
		EXPECT_TRUE(t, r.present && !r.write && r.nx);
		MmUnmapLockedPages(va, md);
		EXPECT_EQ(t, mmt_alias_encoding(pfn, &r), wc);
		EXPECT_TRUE(t, r.present && r.write && r.nx);
	}
	MmFreePagesFromMdl(md);
	ExFreePool(md);
}

/* Two MDLs naming the same frames: a writable system mapping of them is a ring-0 alias that
 * cannot be made read-only, so the other mapping cannot become executable, nor can a new
 * writable one be made while one executes; with both executable, the direct-map alias stays
 * read-only until the last one ends. */
static void alias_stays_read_only_while_another_mapping_executes(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	PMDL b = IoAllocateMdl(NULL, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, b != NULL);
	memcpy(MmGetMdlPfnArray(b), MmGetMdlPfnArray(m.mdl), 2 * sizeof(PFN_NUMBER));
	b->MdlFlags |= MDL_PAGES_LOCKED; /* built by hand, as a driver may */
	uint8_t *bva = MmGetSystemAddressForMdlSafe(b, NormalPagePriority);
	if (bva) {
		uint64_t pte = mmt_rights_of(m.base).leaf;
		EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mmt_rights_of(m.base).leaf, pte);
		EXPECT_TRUE(t, alias_writable(&m, 0) && alias_writable(&m, 1));
		EXPECT_EQ(t, MmProtectMdlSystemAddress(b, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);

		EXPECT_EQ(t, protect(&m, PAGE_READONLY), STATUS_SUCCESS);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(b, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		expect_alias_write_faults(t, &m);
		MmUnmapLockedPages(bva, b);
		expect_alias_write_faults(t, &m); /* m's mapping still executes the frames */

		/* The reverse order: a new writable ring-0 mapping of an executed frame is refused
		 * (NULL, no PTE taken), a read-only one is not; a reserved mapping likewise. */
		uint64_t free_before = mmt_free_sysptes();
		EXPECT_TRUE(t, MmMapLockedPagesSpecifyCache(b, KernelMode, MmCached, NULL, FALSE,
							    NormalPagePriority) == NULL);
		EXPECT_EQ(t, mmt_free_sysptes(), free_before);
		EXPECT_FALSE(t, b->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
		PVOID res = MmAllocateMappingAddress(2 * PAGE_SIZE, TAG);
		EXPECT_TRUE(t, res != NULL);
		if (res) {
			EXPECT_TRUE(t, MmMapLockedPagesWithReservedMapping(res, TAG, b, MmCached) == NULL);
			EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)res));
			MmFreeMappingAddress(res, TAG);
		}
		uint8_t *ro = MmMapLockedPagesSpecifyCache(b, KernelMode, MmCached, NULL, FALSE,
							   NormalPagePriority | MdlMappingNoWrite);
		EXPECT_TRUE(t, ro != NULL);
		if (ro) {
			EXPECT_FALSE(t, mmt_rights_of((uint64_t)ro).write);
			MmUnmapLockedPages(ro, b);
		}
		expect_alias_write_faults(t, &m); /* m's mapping still executes the frames */
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
		EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
		expect_alias_write_works(t, &m, 0x55);
	} else {
		KTEST_FAIL(t, "the second MDL could not be mapped");
	}
	b->MdlFlags &= ~MDL_PAGES_LOCKED; /* never really locked */
	IoFreeMdl(b);
	unmap_pages(&m);
}

/* A reserved mapping made executable: MmUnmapReservedMapping ends it, and the direct-map
 * aliases come back writable. */
static void reserved_mapping_unmap_gives_the_aliases_back(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	MmUnmapLockedPages(m.va, m.mdl);
	PVOID res = MmAllocateMappingAddress(2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, res != NULL);
	uint8_t *va = MmMapLockedPagesWithReservedMapping(res, TAG, m.mdl, MmCached);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		EXPECT_FALSE(t, mmt_rights_of((uint64_t)va).nx);
		expect_alias_write_faults(t, &m);
		MmUnmapReservedMapping(res, TAG, m.mdl);
		for (int i = 0; i < 2; i++)
			EXPECT_TRUE(t, alias_writable(&m, i));
	}
	MmFreeMappingAddress(res, TAG);
	unmap_pages(&m);
}

/* MmAdvanceMdl moves an executable mapping to a copy that is never executable: the alias
 * of the page passed, and of the page kept, are writable again. */
static void advance_gives_the_aliases_back(struct ktest *t)
{
	pfn_t first = pfn_alloc_run(0x100, ~0ull, 2, 1, 0, PFN_OWNER_TEST);
	ASSERT_NE(t, first, PFN_INVALID);
	struct mapped m = { .buf = pfn_to_virt(first) };
	m.mdl = IoAllocateMdl(m.buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	if (!m.mdl) {
		pfn_free_run(first, 2);
		KTEST_FAIL(t, "no MDL");
		return;
	}
	MmProbeAndLockPages(m.mdl, KernelMode, IoWriteAccess);
	m.va = MmGetSystemAddressForMdlSafe(m.mdl, NormalPagePriority);
	EXPECT_TRUE(t, m.va != NULL);
	if (m.va) {
		m.base = (uint64_t)m.va;
		EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		expect_alias_write_faults(t, &m);
		EXPECT_EQ(t, MmAdvanceMdl(m.mdl, PAGE_SIZE), STATUS_SUCCESS);
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)m.mdl->MappedSystemVa).nx);
		for (pfn_t i = 0; i < 2; i++) {
			struct mmt_rights r = mmt_rights_of((uint64_t)pfn_to_virt(first + i));
			EXPECT_TRUE(t, r.present && r.write);
		}
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	}
	MmUnlockPages(m.mdl);
	IoFreeMdl(m.mdl);
	pfn_free_run(first, 2);
}

/* Pool frames stay writable through their pool mapping, which mdlab cannot make read-only
 * (other allocations share the page): PAGE_EXECUTE(_READ) of an MDL over pool is
 * STATUS_INVALID_PAGE_PROTECTION, the PTEs untouched and still no-execute. */
static void execute_of_pool_frames_is_refused(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	m.buf[0x40] = FAULTCAP_RET_OPCODE;
	uint64_t before[2], after[2];
	snapshot(&m, before);
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE), STATUS_INVALID_PAGE_PROTECTION);
	snapshot(&m, after);
	EXPECT_EQ(t, after[0], before[0]);
	EXPECT_EQ(t, after[1], before[1]);
	struct faultcap f;
	EXPECT_FALSE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, m.base + 0x40);
	expect_write_works(t, &m, 0x41, 0x66);
	unmap_buffer(&m);
}

/* The audit proves the rule from the tables: an executable mapping's direct-map alias made
 * writable again behind mm's back (its PTE written directly) is a finding. */
static void audit_finds_a_direct_map_alias_made_writable(struct ktest *t)
{
	struct mapped m;
	map_pages(t, &m);
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
	uint64_t clean = mm_audit_wx_aliases(&kernel_root, false);
	EXPECT_EQ(t, clean, 0);
	uint64_t alias = alias_of(&m, 0);
	struct pt_query q;
	pt_query(&kernel_root, alias, &q);
	ASSERT_TRUE(t, q.present && q.level == 1 && !q.eff.write);
	volatile uint64_t *pte = phys_to_virt(q.entry_pa[1]);
	*pte |= MMT_PTE_RW;
	tlb_flush_page(&kernel_root, alias);
	uint64_t found = mm_audit_wx_aliases(&kernel_root, false);
	*pte &= ~MMT_PTE_RW;
	tlb_flush_page(&kernel_root, alias);
	EXPECT_NE(t, found, 0);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, false), 0);
	unmap_pages(&m);
}

/* ---- refused ---------------------------------------------------------------------------- */

/* W^X (mm/RULES.md decision 3): never writable and executable, whatever the caller asks. */
static void execute_readwrite_is_refused_and_changes_nothing(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	static const ULONG prots[] = { PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY };
	for (unsigned k = 0; k < ARRAY_SIZE(prots); k++) {
		/* From read-write and from read-only: neither changes. */
		for (int ro = 0; ro < 2; ro++) {
			EXPECT_EQ(t, protect(&m, ro ? PAGE_READONLY : PAGE_READWRITE), STATUS_SUCCESS);
			uint64_t before[2], after[2];
			snapshot(&m, before);
			EXPECT_EQ(t, protect(&m, prots[k]), STATUS_INVALID_PAGE_PROTECTION);
			snapshot(&m, after);
			EXPECT_EQ(t, after[0], before[0]);
			EXPECT_EQ(t, after[1], before[1]);
			expect_ptes(t, &m, true, !ro, false, MT_WB);
		}
	}
	m.buf[0x40] = FAULTCAP_RET_OPCODE;
	struct faultcap f;
	EXPECT_FALSE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, m.base + 0x40);
	unmap_buffer(&m);
}

static void bad_values_are_refused_and_change_nothing(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	static const ULONG bad[] = {
		0, 0x3, PAGE_READWRITE | PAGE_NOCACHE, PAGE_READONLY | PAGE_GUARD,
		PAGE_READWRITE | PAGE_WRITECOMBINE, PAGE_READONLY | PAGE_READWRITE, 0x80000004u,
		PAGE_NOACCESS | PAGE_NOCACHE,
	};
	uint64_t before[2], after[2];
	snapshot(&m, before);
	for (unsigned k = 0; k < ARRAY_SIZE(bad); k++) {
		NTSTATUS st = protect(&m, bad[k]);
		if (st != STATUS_INVALID_PAGE_PROTECTION)
			KTEST_FAIL(t, "protection 0x%x: status 0x%x", bad[k], (ULONG)st);
	}
	snapshot(&m, after);
	EXPECT_EQ(t, after[0], before[0]);
	EXPECT_EQ(t, after[1], before[1]);
	expect_ptes(t, &m, true, true, false, MT_WB);
	expect_write_works(t, &m, 0x123, 0x66);
	unmap_buffer(&m);
}

/* No system mapping to protect: locked but never mapped, unmapped again, and nonpaged
 * pool (whose "mapping" is the pool's own, which must stay RW). */
static void mdl_without_system_mapping_is_not_mapped_view(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READONLY), STATUS_NOT_MAPPED_VIEW);
	PVOID va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	MmUnmapLockedPages(va, m);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READONLY), STATUS_NOT_MAPPED_VIEW);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)va));
	MmUnlockPages(m);
	IoFreeMdl(m);

	m = IoAllocateMdl(buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READONLY), STATUS_NOT_MAPPED_VIEW);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_NOT_MAPPED_VIEW);
	struct mmt_rights r = mmt_rights_of((uint64_t)buf);
	EXPECT_TRUE(t, r.present && r.write && r.nx);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_store8((uint64_t)buf + PAGE_SIZE + 1, 0x12, &f));
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- memory types ----------------------------------------------------------------------- */

/* Frames typed WC at allocation stay WC through every protection change (mm/RULES.md decision 1). */
static void protection_changes_keep_the_frames_type(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	struct mapped m = { 0 };
	m.mdl = MmAllocatePagesForMdlEx(lo, hi, skip, 2 * PAGE_SIZE, MmWriteCombined, 0);
	ASSERT_TRUE(t, m.mdl != NULL);
	ASSERT_EQ(t, m.mdl->ByteCount, 2 * PAGE_SIZE);
	m.va = MmMapLockedPagesSpecifyCache(m.mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, m.va != NULL);
	m.base = (uint64_t)m.va;
	expect_ptes(t, &m, true, true, false, MT_WC);
	static const struct {
		ULONG prot;
		bool present, write, exec;
	} steps[] = {
		{ PAGE_READONLY, true, false, false },   { PAGE_NOACCESS, false, false, false },
		{ PAGE_READWRITE, true, true, false },   { PAGE_EXECUTE_READ, true, false, true },
		{ PAGE_READWRITE, true, true, false },
	};
	for (unsigned k = 0; k < ARRAY_SIZE(steps); k++) {
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m.mdl, steps[k].prot), STATUS_SUCCESS);
		expect_ptes(t, &m, steps[k].present, steps[k].write, steps[k].exec, MT_WC);
	}
	MmFreePagesFromMdl(m.mdl); /* releases the mapping */
	ExFreePool(m.mdl);
}

/* An MDL over I/O space (frames beyond RAM, MDL_IO_SPACE from the probe) mapped
 * MmNonCached: the PTEs are UC, and stay UC through protection changes — there is no PFN
 * record to take the type from, so it must come from the mapping. */
static void protection_changes_keep_an_io_space_type(struct ktest *t)
{
	uint64_t va = scratch_kva(2 * PAGE_SIZE, 0);
	ASSERT_TRUE(t, mmt_va_unmapped(va) && mmt_va_unmapped(va + PAGE_SIZE));
	/* Two frames past the end of the PFN database: no RAM, nothing is accessed there. */
	uint64_t io_pa = (pfn_limit() + 0x1000) << PAGE_SHIFT;
	struct pt_attrs uc = { .write = true, .global = true, .type = MT_UC };
	ASSERT_TRUE(t, pt_map(&kernel_root, va, io_pa, 2 * PAGE_SIZE, uc, 0));
	struct mapped m = { 0 };
	m.mdl = IoAllocateMdl((PVOID)va, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m.mdl != NULL);
	MmProbeAndLockPages(m.mdl, KernelMode, IoWriteAccess);
	EXPECT_TRUE(t, m.mdl->MdlFlags & MDL_IO_SPACE);
	EXPECT_EQ(t, MmGetMdlPfnArray(m.mdl)[0], io_pa >> PAGE_SHIFT);
	m.va = MmMapLockedPagesSpecifyCache(m.mdl, KernelMode, MmNonCached, NULL, FALSE, NormalPagePriority);
	if (m.va) {
		m.base = (uint64_t)m.va;
		expect_ptes(t, &m, true, true, false, MT_UC);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m.mdl, PAGE_READONLY), STATUS_SUCCESS);
		expect_ptes(t, &m, true, false, false, MT_UC);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m.mdl, PAGE_NOACCESS), STATUS_SUCCESS);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m.mdl, PAGE_READWRITE), STATUS_SUCCESS);
		expect_ptes(t, &m, true, true, false, MT_UC);
	} else {
		KTEST_FAIL(t, "the I/O-space MDL could not be mapped");
	}
	MmUnlockPages(m.mdl);
	IoFreeMdl(m.mdl);
	pt_unmap(&kernel_root, va, 2 * PAGE_SIZE);
}

/* Decision 3 holds a frame to W^X by its count of executable system mappings, kept in the
 * PFN database: a frame beyond it (I/O space) has none, so PAGE_EXECUTE(_READ) of an MDL
 * naming one is STATUS_INVALID_PAGE_PROTECTION with the PTEs left no-execute. */
static void execute_of_an_io_space_frame_is_refused(struct ktest *t)
{
	uint64_t va = scratch_kva(PAGE_SIZE, 0);
	ASSERT_TRUE(t, mmt_va_unmapped(va));
	uint64_t io_pa = (pfn_limit() + 0x1000) << PAGE_SHIFT;
	struct pt_attrs uc = { .write = true, .global = true, .type = MT_UC };
	ASSERT_TRUE(t, pt_map(&kernel_root, va, io_pa, PAGE_SIZE, uc, 0));
	PMDL m = IoAllocateMdl((PVOID)va, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	uint8_t *sys = MmMapLockedPagesSpecifyCache(m, KernelMode, MmNonCached, NULL, FALSE,
						    NormalPagePriority | MdlMappingNoWrite);
	EXPECT_TRUE(t, sys != NULL);
	if (sys) {
		uint64_t pte = mmt_rights_of((uint64_t)sys).leaf;
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mmt_rights_of((uint64_t)sys).leaf, pte);
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)sys).nx);
	}
	MmUnlockPages(m); /* releases the mapping */
	IoFreeMdl(m);
	pt_unmap(&kernel_root, va, PAGE_SIZE);
}

/* A frame takes at most PFN_EXEC_MAPS_MAX executable system mappings at once: 255 read-only
 * mappings of one frame (MDLs built over it by hand) become executable, the next is
 * STATUS_INSUFFICIENT_RESOURCES with its PTE still no-execute, and so is a two-page mapping
 * whose second frame is that one, its first frame's count and alias as before; when they all
 * end the alias is writable again and nothing counts as executable. */
#define EXEC_MAPPINGS (PFN_EXEC_MAPS_MAX + 1)
static void a_frame_takes_at_most_255_executable_mappings(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL a = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, a != NULL);
	pfn_t pfn = MmGetMdlPfnArray(a)[0];
	static PMDL m[EXEC_MAPPINGS];
	static uint8_t *va[EXEC_MAPPINGS];
	unsigned made = 0;
	for (; made < EXEC_MAPPINGS; made++) {
		m[made] = IoAllocateMdl(NULL, PAGE_SIZE, FALSE, FALSE, NULL);
		if (!m[made])
			break;
		MmGetMdlPfnArray(m[made])[0] = pfn;
		m[made]->MdlFlags |= MDL_PAGES_LOCKED; /* built by hand, as a driver may */
		va[made] = MmMapLockedPagesSpecifyCache(m[made], KernelMode, MmCached, NULL, FALSE,
							NormalPagePriority | MdlMappingNoWrite);
		if (!va[made]) {
			m[made]->MdlFlags &= ~MDL_PAGES_LOCKED;
			IoFreeMdl(m[made]);
			break;
		}
	}
	EXPECT_EQ(t, made, EXEC_MAPPINGS);
	if (made == EXEC_MAPPINGS) {
		unsigned ok = 0;
		for (unsigned i = 0; i < PFN_EXEC_MAPS_MAX; i++)
			ok += MmProtectMdlSystemAddress(m[i], PAGE_EXECUTE_READ) == STATUS_SUCCESS;
		EXPECT_EQ(t, ok, PFN_EXEC_MAPS_MAX);
		EXPECT_FALSE(t, mmt_rights_of((uint64_t)va[PFN_EXEC_MAPS_MAX - 1]).nx);
		uint64_t pte = mmt_rights_of((uint64_t)va[PFN_EXEC_MAPS_MAX]).leaf;
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m[PFN_EXEC_MAPS_MAX], PAGE_EXECUTE_READ),
			  STATUS_INSUFFICIENT_RESOURCES);
		EXPECT_EQ(t, mmt_rights_of((uint64_t)va[PFN_EXEC_MAPS_MAX]).leaf, pte);
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)va[PFN_EXEC_MAPS_MAX]).nx);
		EXPECT_EQ(t, pfn_entry(pfn)->exec_maps, PFN_EXEC_MAPS_MAX);
		EXPECT_FALSE(t, mmt_rights_of((uint64_t)pfn_to_virt(pfn)).write);
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);

		PMDL other = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
		PMDL two = IoAllocateMdl(NULL, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
		uint8_t *tva = NULL;
		if (other && two) {
			pfn_t first = MmGetMdlPfnArray(other)[0];
			MmGetMdlPfnArray(two)[0] = first;
			MmGetMdlPfnArray(two)[1] = pfn;
			two->MdlFlags |= MDL_PAGES_LOCKED;
			tva = MmMapLockedPagesSpecifyCache(two, KernelMode, MmCached, NULL, FALSE,
							   NormalPagePriority | MdlMappingNoWrite);
			EXPECT_TRUE(t, tva != NULL);
			if (tva) {
				EXPECT_EQ(t, MmProtectMdlSystemAddress(two, PAGE_EXECUTE_READ), STATUS_INSUFFICIENT_RESOURCES);
				EXPECT_TRUE(t, mmt_rights_of((uint64_t)tva).nx && mmt_rights_of((uint64_t)tva + PAGE_SIZE).nx);
				EXPECT_EQ(t, pfn_entry(first)->exec_maps, 0);
				EXPECT_TRUE(t, mmt_rights_of((uint64_t)pfn_to_virt(first)).write);
				MmUnmapLockedPages(tva, two);
			}
			two->MdlFlags &= ~MDL_PAGES_LOCKED; /* never really locked */
		} else {
			KTEST_FAIL(t, "no MDL for the two-page mapping");
		}
		if (two)
			IoFreeMdl(two);
		if (other) {
			MmFreePagesFromMdl(other);
			ExFreePool(other);
		}
	}
	for (unsigned i = 0; i < made; i++) {
		MmUnmapLockedPages(va[i], m[i]);
		m[i]->MdlFlags &= ~MDL_PAGES_LOCKED; /* never really locked */
		IoFreeMdl(m[i]);
	}
	EXPECT_EQ(t, pfn_entry(pfn)->exec_maps, 0);
	EXPECT_TRUE(t, mmt_rights_of((uint64_t)pfn_to_virt(pfn)).write);
	EXPECT_FALSE(t, mdl_ring_0_executes_any_frame()); /* the total is back at 0 */
	MmFreePagesFromMdl(a);
	ExFreePool(a);
}

/* A UserMode mapping of m in the current process, or the exception's status. */
static NTSTATUS try_map_user(PMDL m, ULONG priority, uint64_t *uva)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile uint64_t got = 0;
	__try {
		got = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, priority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*uva = got;
	return st;
}

/*
 * W^X across privilege levels (mm/RULES.md decision 3): the exploit, a process
 * writing a RET through its read-write mapping of an MDL whose system mapping ring 0 then
 * executes.  PAGE_EXECUTE(_READ) is refused while a ring-3 mapping can write a frame, with
 * the PTEs left NX (a ring-0 fetch still faults 0x11); once the user mapping is gone it is
 * accepted; then a writable user mapping is refused (raised), a NoWrite one allowed.
 */
static void execute_is_refused_while_ring_3_can_write_the_frames(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KeStackAttachProcess(p, &apc);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	uint8_t *sys = m ? MmGetSystemAddressForMdlSafe(m, NormalPagePriority) : NULL;
	uint64_t uva = 0;
	EXPECT_TRUE(t, sys != NULL);
	if (sys && try_map_user(m, NormalPagePriority, &uva) == STATUS_SUCCESS) {
		struct pt_query q;
		pt_query(&p->mm.root, uva, &q);
		EXPECT_TRUE(t, q.present && q.eff.user && q.eff.write); /* ring 3 can write it */
		sys[0x40] = FAULTCAP_RET_OPCODE;
		uint64_t pte = mmt_rights_of((uint64_t)sys).leaf;
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mmt_rights_of((uint64_t)sys).leaf, pte);
		expect_fetch_refused(t, (uint64_t)sys + 0x40);
		MmUnmapLockedPages((PVOID)uva, m);

		/* No ring-3 writer left: ring 0 may execute it. */
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		struct faultcap f;
		EXPECT_TRUE(t, faultcap_try_call((uint64_t)sys + 0x40, &f));
		/* The reverse order: a writable user mapping is refused, a read-only one is not. */
		EXPECT_EQ(t, try_map_user(m, NormalPagePriority, &uva), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mdl_user_mapping_count(m), 0);
		EXPECT_EQ(t, try_map_user(m, NormalPagePriority | MdlMappingNoWrite, &uva), STATUS_SUCCESS);
		pt_query(&p->mm.root, uva, &q);
		EXPECT_TRUE(t, q.present && q.eff.user && !q.eff.write);
		MmUnmapLockedPages((PVOID)uva, m);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READWRITE), STATUS_SUCCESS);
	} else {
		KTEST_FAIL(t, "the user mapping failed");
	}
	if (m) {
		MmFreePagesFromMdl(m); /* releases the system mapping too */
		ExFreePool(m);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/* The frames of a locked user buffer stay writable by ring 3 through the process's own
 * page (not an MDL mapping): PAGE_EXECUTE(_READ) of its system mapping is refused, the
 * PTEs untouched. */
static void execute_of_a_user_buffer_ring_3_can_write_is_refused(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KeStackAttachProcess(p, &apc);
	PMDL m = agent_lock_user_page(t, 0, PAGE_READWRITE, IoWriteAccess);
	uint8_t *sys = m ? MmGetSystemAddressForMdlSafe(m, NormalPagePriority) : NULL;
	if (sys) {
		struct pt_query q;
		pt_query(&p->mm.root, (uint64_t)MmGetMdlVirtualAddress(m), &q);
		EXPECT_TRUE(t, q.present && q.eff.user && q.eff.write); /* ring 3 can write it */
		EXPECT_EQ(t, mdl_user_mapping_count(m), 0);
		uint64_t pte = mmt_rights_of((uint64_t)sys).leaf;
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mmt_rights_of((uint64_t)sys).leaf, pte);
		EXPECT_TRUE(t, mmt_rights_of((uint64_t)pfn_to_virt(MmGetMdlPfnArray(m)[0])).write);
	} else {
		KTEST_FAIL(t, "no locked, mapped user buffer");
	}
	if (m) {
		MmUnlockPages(m);
		IoFreeMdl(m);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/* The reverse order across MDLs: a frame executable in ring 0 through MDL a's system mapping
 * cannot be mapped writable to ring 3 through another MDL b naming it (built by hand, as a
 * driver may).  Once a's mapping is read-write again, it can. */
static void writable_user_mapping_of_a_frame_ring_0_executes_is_refused(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KeStackAttachProcess(p, &apc);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL a = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	PMDL b = IoAllocateMdl(NULL, PAGE_SIZE, FALSE, FALSE, NULL);
	uint8_t *sys = a ? MmGetSystemAddressForMdlSafe(a, NormalPagePriority) : NULL;
	if (sys && b) {
		MmGetMdlPfnArray(b)[0] = MmGetMdlPfnArray(a)[0];
		b->MdlFlags |= MDL_PAGES_LOCKED;
		EXPECT_EQ(t, MmProtectMdlSystemAddress(a, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		EXPECT_FALSE(t, mmt_rights_of((uint64_t)sys).nx);
		uint64_t uva = 0;
		EXPECT_EQ(t, try_map_user(b, NormalPagePriority, &uva), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mdl_user_mapping_count(b), 0);
		EXPECT_EQ(t, MmProtectMdlSystemAddress(a, PAGE_READWRITE), STATUS_SUCCESS);
		EXPECT_EQ(t, try_map_user(b, NormalPagePriority, &uva), STATUS_SUCCESS);
		if (uva)
			MmUnmapLockedPages((PVOID)uva, b);
		b->MdlFlags &= ~MDL_PAGES_LOCKED; /* never really locked */
	} else {
		KTEST_FAIL(t, "no MDL or no mapping");
	}
	if (b)
		IoFreeMdl(b);
	if (a) {
		MmFreePagesFromMdl(a);
		ExFreePool(a);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/* The end of those cases: the lock released in the process (with the executable system
 * mapping: MmUnlockPages releases it first), the MDL freed, the process gone. */
static void release_locked_page(PEPROCESS p, PMDL m)
{
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	if (m) {
		MmUnlockPages(m);
		IoFreeMdl(m);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/*
 * W^X across privilege levels, the process's side (mm/RULES.md decision 3): the agent's
 * read-only page is locked and its system mapping made executable; then, from ring 3, the
 * agent tries to make the page writable: SYS_PROTECT_VM and a MEM_COMMIT re-commit to
 * PAGE_READWRITE are STATUS_INVALID_PAGE_PROTECTION; PAGE_NOACCESS (the frame parked) and
 * PAGE_READWRITE again is refused too, so the page's re-fault maps it read-only, and the
 * agent's write faults (#PF, P|W|U, CR2 the page).  The user PTE, read from the process's
 * tables, stays read-only; the audit passes throughout.
 */
static void user_page_ring_0_executes_cannot_be_made_writable_by_ring_3(struct ktest *t)
{
	const uint64_t buf = 0x30000000ul;
	struct agent_script s;
	agent_begin(&s);
	uint32_t rw = agent_protect(&s, buf, PAGE_SIZE, PAGE_READWRITE);
	uint32_t recommit = agent_alloc(&s, buf, PAGE_SIZE, MEM_COMMIT, PAGE_READWRITE);
	uint32_t read1 = agent_read64(&s, buf);
	uint32_t noaccess = agent_protect(&s, buf, PAGE_SIZE, PAGE_NOACCESS);
	uint32_t rw_parked = agent_protect(&s, buf, PAGE_SIZE, PAGE_READWRITE);
	uint32_t ro = agent_protect(&s, buf, PAGE_SIZE, PAGE_READONLY);
	uint32_t read2 = agent_read64(&s, buf); /* the re-fault */
	agent_write64(&s, buf, 0xC3);            /* must fault */
	agent_exit(&s, 0);
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);

	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PMDL m = agent_lock_user_page(t, buf, PAGE_READONLY, IoReadAccess);
	uint8_t *sys = m ? MmGetSystemAddressForMdlSafe(m, NormalPagePriority) : NULL;
	bool exec = sys && MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ) == STATUS_SUCCESS;
	EXPECT_TRUE(t, exec);
	KeUnstackDetachProcess(&apc);
	if (exec) {
		EXPECT_FALSE(t, mmt_rights_of((uint64_t)sys).nx); /* ring 0 can execute the frame */
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
		EXPECT_EQ(t, PsRunProcess(p), STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, agent_result(t, p, rw, 0), (uint64_t)(uint32_t)STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, agent_result(t, p, recommit, 0), (uint64_t)(uint32_t)STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, agent_result(t, p, read1, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, noaccess, 0), (uint64_t)STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p, rw_parked, 0), (uint64_t)(uint32_t)STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, agent_result(t, p, ro, 0), (uint64_t)STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p, ro, 1), PAGE_NOACCESS);
		EXPECT_EQ(t, agent_result(t, p, read2, 0), 0);
		EXPECT_TRUE(t, p->fault.happened);
		EXPECT_EQ(t, p->fault.vector, 14);
		EXPECT_EQ(t, p->fault.error_code, PF_P | PF_W | PF_U);
		EXPECT_EQ(t, p->fault.address, buf);
		struct pt_query q;
		pt_query(&p->mm.root, buf, &q);
		EXPECT_TRUE(t, q.present && q.eff.user && !q.eff.write);
		EXPECT_EQ(t, q.pa >> PAGE_SHIFT, MmGetMdlPfnArray(m)[0]); /* the same frame, re-mapped */
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	}
	release_locked_page(p, m);
}

/*
 * The fault path's half (mm/RULES.md decision 3): a locked, read-only page is parked
 * (PAGE_NOACCESS) and given PAGE_READWRITE before its system mapping becomes executable,
 * which the execute path allows (no ring-3 PTE can write the frame then).  The agent's next
 * touch would map the frame writable: it is an access violation instead (#PF, U, CR2 the
 * page), and the page stays unmapped in the process's tables.
 */
static void parked_read_write_page_ring_0_executes_faults_for_ring_3(struct ktest *t)
{
	const uint64_t buf = 0x30000000ul;
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, buf); /* must fault */
	agent_exit(&s, 0);
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);

	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID b = (PVOID)buf;
	SIZE_T size = PAGE_SIZE;
	ULONG old = 0;
	PMDL m = agent_lock_user_page(t, buf, PAGE_READONLY, IoReadAccess);
	bool exec = false;
	if (m) {
		EXPECT_EQ(t, ZwProtectVirtualMemory(NtCurrentProcess(), &b, &size, PAGE_NOACCESS, &old), STATUS_SUCCESS);
		EXPECT_EQ(t, ZwProtectVirtualMemory(NtCurrentProcess(), &b, &size, PAGE_READWRITE, &old), STATUS_SUCCESS);
		uint8_t *sys = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
		exec = sys && MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ) == STATUS_SUCCESS;
		EXPECT_TRUE(t, exec && !mmt_rights_of((uint64_t)sys).nx);
	}
	KeUnstackDetachProcess(&apc);
	if (exec) {
		EXPECT_EQ(t, PsRunProcess(p), STATUS_ACCESS_VIOLATION);
		EXPECT_TRUE(t, p->fault.happened);
		EXPECT_EQ(t, p->fault.vector, 14);
		EXPECT_EQ(t, p->fault.error_code, PF_U);
		EXPECT_EQ(t, p->fault.address, buf);
		struct pt_query q;
		pt_query(&p->mm.root, buf, &q);
		EXPECT_FALSE(t, q.present);
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	}
	release_locked_page(p, m);
}

static struct ktest_case mdl_protect_cases[] = {
	KTEST_CASE(readonly_makes_writes_fault),
	KTEST_CASE(readwrite_makes_writes_work),
	KTEST_CASE(noaccess_makes_reads_fault_not_present),
	KTEST_CASE(execute_read_runs_code_and_refuses_writes),
	KTEST_CASE(execute_runs_code),
	KTEST_CASE(execute_is_refused_while_ring_3_can_write_the_frames),
	KTEST_CASE(writable_user_mapping_of_a_frame_ring_0_executes_is_refused),
	KTEST_CASE(execute_of_a_user_buffer_ring_3_can_write_is_refused),
	KTEST_CASE(user_page_ring_0_executes_cannot_be_made_writable_by_ring_3),
	KTEST_CASE(parked_read_write_page_ring_0_executes_faults_for_ring_3),
	KTEST_CASE(execute_makes_the_direct_map_alias_read_only),
	KTEST_CASE(alias_keeps_the_frames_type),
	KTEST_CASE(alias_stays_read_only_while_another_mapping_executes),
	KTEST_CASE(reserved_mapping_unmap_gives_the_aliases_back),
	KTEST_CASE(advance_gives_the_aliases_back),
	KTEST_CASE(execute_of_pool_frames_is_refused),
	KTEST_CASE(audit_finds_a_direct_map_alias_made_writable),
	KTEST_CASE(execute_readwrite_is_refused_and_changes_nothing),
	KTEST_CASE(bad_values_are_refused_and_change_nothing),
	KTEST_CASE(mdl_without_system_mapping_is_not_mapped_view),
	KTEST_CASE(protection_changes_keep_the_frames_type),
	KTEST_CASE(protection_changes_keep_an_io_space_type),
	KTEST_CASE(execute_of_an_io_space_frame_is_refused),
	KTEST_CASE(a_frame_takes_at_most_255_executable_mappings),
	{ 0 }
};
KTEST_SUITE(mdl_protect, mdl_protect_cases);
