/*
 * MmProtectMdlSystemAddress (mm/RULES.md decision 3): each protection is
 * proven by real accesses through the MDL's system mapping — the fault's vector, exact #PF
 * error code and CR2 — and by the raw PTEs.  PAGE_EXECUTE_READWRITE and every other value
 * outside the five accepted ones are refused with the PTEs untouched; an MDL without a
 * system mapping gets STATUS_NOT_MAPPED_VIEW; each frame keeps its memory type.
 *
 * Every case that makes a page executable makes it read-write again (or unmaps it) before
 * it ends: the frame stays writable through the pool and the direct map, and the late W^X
 * alias audit would see it.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/pfn.h"
#include "mm/pt.h"

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
	map_buffer(t, &m);
	m.buf[0x40] = FAULTCAP_RET_OPCODE;
	m.buf[PAGE_SIZE + 0x200] = FAULTCAP_RET_OPCODE;
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE_READ), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, true, MT_WB);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_TRUE(t, faultcap_try_call(m.base + PAGE_SIZE + 0x200, &f));
	expect_write_faults(t, m.base + 0x41, PF_WRITE_PROTECTION);
	expect_read_works(t, &m, 0x300);

	EXPECT_EQ(t, protect(&m, PAGE_READWRITE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, true, false, MT_WB);
	EXPECT_FALSE(t, faultcap_try_call(m.base + 0x40, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, m.base + 0x40);
	unmap_buffer(&m);
}

static void execute_runs_code(struct ktest *t)
{
	struct mapped m;
	map_buffer(t, &m);
	m.buf[PAGE_SIZE + 0x10] = FAULTCAP_RET_OPCODE;
	EXPECT_EQ(t, protect(&m, PAGE_EXECUTE), STATUS_SUCCESS);
	expect_ptes(t, &m, true, false, true, MT_WB);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_call(m.base + PAGE_SIZE + 0x10, &f));
	expect_write_faults(t, m.base + PAGE_SIZE + 0x10, PF_WRITE_PROTECTION);
	EXPECT_EQ(t, m.buf[PAGE_SIZE + 0x10], FAULTCAP_RET_OPCODE);
	/* Unmapped while executable: nothing of it survives. */
	uint64_t base = m.base;
	unmap_buffer(&m);
	EXPECT_TRUE(t, mmt_va_unmapped(base) && mmt_va_unmapped(base + PAGE_SIZE));
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

static struct ktest_case mdl_protect_cases[] = {
	KTEST_CASE(readonly_makes_writes_fault),
	KTEST_CASE(readwrite_makes_writes_work),
	KTEST_CASE(noaccess_makes_reads_fault_not_present),
	KTEST_CASE(execute_read_runs_code_and_refuses_writes),
	KTEST_CASE(execute_runs_code),
	KTEST_CASE(execute_is_refused_while_ring_3_can_write_the_frames),
	KTEST_CASE(writable_user_mapping_of_a_frame_ring_0_executes_is_refused),
	KTEST_CASE(execute_readwrite_is_refused_and_changes_nothing),
	KTEST_CASE(bad_values_are_refused_and_change_nothing),
	KTEST_CASE(mdl_without_system_mapping_is_not_mapped_view),
	KTEST_CASE(protection_changes_keep_the_frames_type),
	KTEST_CASE(protection_changes_keep_an_io_space_type),
	{ 0 }
};
KTEST_SUITE(mdl_protect, mdl_protect_cases);
