/*
 * The helper routines around the MDL calls: MmMapLockedPagesWithReservedMapping's cousin
 * MmMapMdl (mm/RULES.md reserved-mapping rule R2), MmProbeAndLockProcessPages (user rule U12),
 * MmProbeAndLockSelectedPages (user rule U13), the old MmGetSystemAddressForMdl macro
 * (rule 20) and MmAdvanceMdl (helper rule H1).  Mappings are read from the real
 * tables while they exist and proven gone afterwards.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/mmproc.h"
#include "mm/pfn.h"
#include "mm/syspte.h"
#include "mm/uvm.h"
#include "mm/vad.h"
#include "mm/verifier.h"

#define TAG 0x706c6548u /* 'Help' */
#define P PAGE_SIZE

static PMDL locked_pool(struct ktest *t, uint8_t **buf, ULONG bytes)
{
	*buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, TAG);
	ASSERT_TRUE(t, *buf != NULL);
	PMDL m = IoAllocateMdl(*buf, bytes, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

static void release(PMDL m, uint8_t *buf)
{
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- MmMapMdl ----------------------------------------------------------------------- */

/* What the driver's routine saw: its address, and the mapping read from the tables then. */
struct seen {
	struct ktest *t;
	int calls;
	uint64_t va;
	struct mmt_rights rights;
	unsigned enc;
	uint8_t first;
	bool check_write_refused;
};

static VOID look(PVOID DriverContext, PVOID MappedVa)
{
	struct seen *s = DriverContext;
	s->calls++;
	s->va = (uint64_t)MappedVa;
	s->enc = mmt_encoding_at(s->va, &s->rights);
	s->first = *(volatile uint8_t *)MappedVa;
	if (s->check_write_refused)
		expect_write_refused(s->t, s->va);
}

static void map_mdl_maps_for_the_call_only(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, 2 * P);
	buf[0] = 0x5C;
	uint64_t free_before;
	struct syspte_stats st;
	syspte_get_stats(&st);
	free_before = st.free;
	struct seen s = { .t = t };
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READWRITE, look, &s), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, s.calls, 1);
	EXPECT_TRUE(t, syspte_contains(s.va));
	EXPECT_TRUE(t, s.rights.present && s.rights.write && s.rights.nx);
	EXPECT_EQ(t, s.enc, MMT_ENC_WB);
	EXPECT_EQ(t, s.first, 0x5C);
	EXPECT_TRUE(t, mmt_va_unmapped(s.va));           /* released when the routine returned */
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	syspte_get_stats(&st);
	EXPECT_EQ(t, st.free, free_before);

	/* PAGE_READONLY: the routine's writes fault. */
	struct seen ro = { .t = t, .check_write_refused = true };
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READONLY, look, &ro), (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, ro.rights.present && !ro.rights.write);
	release(m, buf);
}

/* A mapped MDL is used as it is, and stays mapped. */
static void map_mdl_uses_an_existing_mapping(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, P);
	PVOID sys = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	struct seen s = { .t = t };
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READWRITE, look, &s), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, s.va, (uint64_t)sys);
	EXPECT_TRUE(t, mmt_va_mapped((uint64_t)sys));
	release(m, buf); /* MmUnlockPages releases the mapping */
}

/* PAGE_NOCACHE gives an untyped frame its type (decision 1), and the type stays. */
static void map_mdl_takes_the_cache_modifier(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, hi, skip, P);
	ASSERT_TRUE(t, m != NULL);
	struct seen s = { .t = t };
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READWRITE | PAGE_NOCACHE, look, &s), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, s.enc, MMT_ENC_UC);
	EXPECT_EQ(t, mmt_alias_encoding(MmGetMdlPfnArray(m)[0], NULL), MMT_ENC_UC);
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

static void map_mdl_refusals_call_nothing(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, P);
	struct seen s = { .t = t };
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READWRITE, NULL, &s), (ULONG)STATUS_INVALID_PARAMETER_3);
	ULONG bad[] = { PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_NOACCESS, PAGE_WRITECOPY,
			PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++)
		EXPECT_EQ(t, (ULONG)MmMapMdl(m, bad[i], look, &s), (ULONG)STATUS_INVALID_PAGE_PROTECTION);
	verifier_set_lowres(1, 0, 1); /* the next mapping fails */
	EXPECT_EQ(t, (ULONG)MmMapMdl(m, PAGE_READWRITE, look, &s), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	verifier_set_lowres(0, 0, 1);
	EXPECT_EQ(t, s.calls, 0);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	release(m, buf);
}

/* ---- MmProbeAndLockProcessPages ----------------------------------------------------- */

/* A committed buffer in p, made attached. */
static uint64_t user_buffer(struct ktest *t, PEPROCESS p, SIZE_T size)
{
	KAPC_STATE apc;
	PVOID base = NULL;
	KeStackAttachProcess(p, &apc);
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT,
					      PAGE_READWRITE);
	KeUnstackDetachProcess(&apc);
	ASSERT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	return (uint64_t)base;
}

static void process_pages_are_probed_in_that_process(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t va = user_buffer(t, p, 2 * P);
	PMDL m = IoAllocateMdl((PVOID)va, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	ASSERT_TRUE(t, mm_current() == NULL);
	MmProbeAndLockProcessPages(m, p, UserMode, IoWriteAccess);
	EXPECT_TRUE(t, mm_current() == NULL); /* detached again */
	EXPECT_TRUE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_TRUE(t, m->Process == p);
	EXPECT_EQ(t, p->mm.locked_pages, 2u);
	for (int i = 0; i < 2; i++) {
		struct pt_query q;
		pt_query(&p->mm.root, va + i * P, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, MmGetMdlPfnArray(m)[i], q.pa >> PAGE_SHIFT);
	}
	/* MmAdvanceMdl past the first page: that page stops counting on the process. */
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, P), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, p->mm.locked_pages, 1u);
	MmUnlockPages(m);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	IoFreeMdl(m);
	m = IoAllocateMdl((PVOID)va, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);

	/* Attached already: used as it is, and still attached afterwards. */
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	MmProbeAndLockProcessPages(m, p, KernelMode, IoReadAccess);
	EXPECT_TRUE(t, mm_current() == &p->mm);
	MmUnlockPages(m);
	KeUnstackDetachProcess(&apc);
	IoFreeMdl(m);
	PsDestroyProcess(p);
}

/* A buffer the process has not committed: STATUS_ACCESS_VIOLATION at its address, raised to
 * the caller after the detach, and nothing locked. */
static void process_pages_refused_raise_after_the_detach(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t va = user_buffer(t, p, P) + 0x100000; /* well past the committed page */
	PMDL m = IoAllocateMdl((PVOID)va, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile ULONG_PTR kind = 0, addr = 0;
	__try {
		MmProbeAndLockProcessPages(m, p, UserMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		kind = GetExceptionRecord()->ExceptionInformation[0];
		addr = GetExceptionRecord()->ExceptionInformation[1];
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, kind, (ULONG_PTR)EXCEPTION_WRITE_FAULT);
	EXPECT_EQ(t, addr, va);
	EXPECT_TRUE(t, mm_current() == NULL);
	EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	IoFreeMdl(m);
	PsDestroyProcess(p);
}

/* ---- MmGetSystemAddressForMdl (the old macro) -------------------------------------- */

static void old_macro_maps_once_and_returns_the_mapping(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	buf[0x20] = 0x21;
	PMDL m = IoAllocateMdl(buf + 0x20, 0x100, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	uint8_t *v = MmGetSystemAddressForMdl(m);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(v), 0x20u);
	EXPECT_EQ(t, v[0], 0x21);
	EXPECT_TRUE(t, syspte_contains((uint64_t)v));
	EXPECT_TRUE(t, MmGetSystemAddressForMdl(m) == v);
	release(m, buf);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)v));

	/* A nonpaged-pool MDL: the pool address, no PTE. */
	uint8_t *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, TAG);
	ASSERT_TRUE(t, pool != NULL);
	PMDL np = IoAllocateMdl(pool, 64, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, np != NULL);
	MmBuildMdlForNonPagedPool(np);
	EXPECT_TRUE(t, MmGetSystemAddressForMdl(np) == pool);
	IoFreeMdl(np);
	ExFreePoolWithTag(pool, TAG);
}

/* Through MmMapLockedPages: a failure is bug check 0x3F (0, pages, free PTEs, total PTEs),
 * not NULL.  The injected failure comes before any reservation, so P3 is what is free now. */
static void old_macro_failure_bug_checks(struct ktest *t)
{
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, 2 * P);
	struct syspte_stats s;
	syspte_get_stats(&s);
	verifier_set_lowres(1, 0, 1);
	expect_stop(t, NO_MORE_SYSTEM_PTES, 0, 2, s.free, syspte_total());
	MmGetSystemAddressForMdl(m);
}


/* ---- MmAdvanceMdl (helper rule H1) -------------------------------------------------- */

/* Within the first page: only the description and the system address move. */
static void advance_within_the_first_page(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	buf[0x300] = 0x33;
	PMDL m = IoAllocateMdl(buf + 0x100, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	uint8_t *v = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, v != NULL);
	pfn_t first = MmGetMdlPfnArray(m)[0];
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, 0x200), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, m->ByteOffset, 0x300u);
	EXPECT_EQ(t, m->ByteCount, 2 * P - 0x200);
	EXPECT_EQ(t, (uint64_t)m->StartVa, (uint64_t)PAGE_ALIGN(buf));
	EXPECT_EQ(t, (uint64_t)m->MappedSystemVa, (uint64_t)v + 0x200);
	EXPECT_EQ(t, *(uint8_t *)m->MappedSystemVa, 0x33);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], first);
	EXPECT_EQ(t, mmt_lock_count(first), 1u);
	release(m, buf);
}

/* Past pages of an unmapped MDL: they are unlocked and leave the PFN array. */
static void advance_past_pages_unlocks_them(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, 4 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	pfn_t f[4];
	for (int i = 0; i < 4; i++)
		f[i] = MmGetMdlPfnArray(m)[i];
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, 2 * P + 8), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, mmt_lock_count(f[0]), 0u);
	EXPECT_EQ(t, mmt_lock_count(f[1]), 0u);
	EXPECT_EQ(t, mmt_lock_count(f[2]), 1u);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], f[2]);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[1], f[3]);
	EXPECT_EQ(t, (uint64_t)MmGetMdlVirtualAddress(m), (uint64_t)buf + 2 * P + 8);
	EXPECT_EQ(t, m->ByteCount, 2 * P - 8);
	/* What is left maps as the MDL now says. */
	buf[2 * P + 8] = 0x28;
	uint8_t *v = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, v[0], 0x28);
	EXPECT_EQ(t, mmt_frame_of((uint64_t)v), f[2]);
	release(m, buf);
	EXPECT_EQ(t, mmt_lock_count(f[3]), 0u);
}

/* Past pages of a mapped MDL: the mapping moves to the remaining frames, the old one goes. */
static void advance_moves_a_system_mapping(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	buf[P + 0x800] = 0x18;
	PMDL m = IoAllocateMdl(buf, 3 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	uint8_t *v = MmGetSystemAddressForMdlSafe(m, NormalPagePriority | MdlMappingNoWrite);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, P + 0x800), (ULONG)STATUS_SUCCESS);
	uint8_t *w = m->MappedSystemVa;
	EXPECT_EQ(t, BYTE_OFFSET(w), 0x800u);
	EXPECT_EQ(t, *w, 0x18);
	EXPECT_EQ(t, mmt_frame_of((uint64_t)w), MmGetMdlPfnArray(m)[0]);
	struct mmt_rights r;
	mmt_encoding_at((uint64_t)w, &r);
	EXPECT_TRUE(t, r.present && !r.write && r.nx);  /* the rights came along */
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)v));
	release(m, buf);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)w));
}

/* A mapping made with MdlMappingWithGuardPtes keeps its guard PTE when it moves: the PTE
 * after the new run's last page is that reservation's, unmapped, and an access to it faults
 * not-present. */
static void advance_keeps_the_guard_pte(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, 3 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	uint64_t before = mmt_free_sysptes();
	uint8_t *v = MmGetSystemAddressForMdlSafe(m, NormalPagePriority | MdlMappingWithGuardPtes);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 4);
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, P), (ULONG)STATUS_SUCCESS);
	uint64_t w = (uint64_t)m->MappedSystemVa, guard = w + 2 * P;
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3); /* two pages and the guard */
	EXPECT_TRUE(t, syspte_guarded(w));
	EXPECT_EQ(t, syspte_reservation_of(guard), w);
	EXPECT_EQ(t, mmt_frame_of(w + P), MmGetMdlPfnArray(m)[1]);
	EXPECT_TRUE(t, mmt_va_unmapped(guard));
	struct faultcap f;
	EXPECT_FALSE(t, faultcap_try_store8(guard, 1, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_WRITE_NOT_PRESENT, guard);
	release(m, buf);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
}

/* A user mapping moves with the start too (the page: the user address is "adjusted"): the
 * passed pages leave the process's page table and its VAD, the rest stay mapped where they
 * were, and MmUnmapLockedPages takes the advanced address. */
static void advance_moves_a_user_mapping(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL a = MmAllocatePagesForMdl(lo, hi, skip, 3 * P);
	ASSERT_TRUE(t, a != NULL);
	pfn_t f0 = MmGetMdlPfnArray(a)[0], f1 = MmGetMdlPfnArray(a)[1], f2 = MmGetMdlPfnArray(a)[2];
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	volatile uint64_t u = 0;
	__try {
		u = (uint64_t)MmMapLockedPagesSpecifyCache(a, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		u = 0;
	}
	KeUnstackDetachProcess(&apc);
	ASSERT_TRUE(t, u != 0);
	struct pt_query q;
	pt_query(&p->mm.root, u, &q);
	EXPECT_TRUE(t, q.present && q.eff.user && q.pa >> PAGE_SHIFT == f0);

	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(a, P + 0x20), (ULONG)STATUS_SUCCESS);
	pt_query(&p->mm.root, u, &q);
	EXPECT_FALSE(t, q.present);
	EXPECT_TRUE(t, vad_find(&p->mm, u) == NULL);
	struct vad *v = vad_find(&p->mm, u + P);
	EXPECT_TRUE(t, v && v->start == u + P && v->end == u + 3 * P);
	for (int i = 1; i < 3; i++) {
		pt_query(&p->mm.root, u + i * P, &q);
		EXPECT_TRUE(t, q.present && q.eff.user && q.pa >> PAGE_SHIFT == (i == 1 ? f1 : f2));
	}
	EXPECT_EQ(t, pfn_entry(f0)->state, PFN_FREE); /* allocated by the MDL: freed when passed */

	KeStackAttachProcess(p, &apc);
	MmUnmapLockedPages((PVOID)(u + P + 0x20), a);
	KeUnstackDetachProcess(&apc);
	for (int i = 0; i < 3; i++) {
		pt_query(&p->mm.root, u + i * P, &q);
		EXPECT_FALSE(t, q.present);
	}
	EXPECT_TRUE(t, vad_find(&p->mm, u + P) == NULL);
	MmFreePagesFromMdl(a);
	ExFreePool(a);
	PsDestroyProcess(p);
}

static void advance_refusals_change_nothing(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, 2 * P), (ULONG)STATUS_INVALID_PARAMETER_2);
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(m, 3 * P), (ULONG)STATUS_INVALID_PARAMETER_2);
	EXPECT_EQ(t, m->ByteCount, 2 * P);
	EXPECT_EQ(t, mmt_lock_count(MmGetMdlPfnArray(m)[0]), 1u);
	release(m, buf);
}

/* Frames the MDL allocated itself (MmAllocatePagesForMdl) are held by nothing else: passing
 * them unlocks them, which frees them (the page: "the pages passed are unlocked"), after the
 * system mapping moved off them; MmFreePagesFromMdl then frees the rest.  The accounting after
 * the case proves nothing was lost. */
static void advance_frees_the_frames_it_allocated(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL a = MmAllocatePagesForMdl(lo, hi, skip, 3 * P);
	ASSERT_TRUE(t, a != NULL);
	uint8_t *v = MmGetSystemAddressForMdlSafe(a, NormalPagePriority);
	ASSERT_TRUE(t, v != NULL);
	v[2 * P + 0x10] = 0x77;
	pfn_t f0 = MmGetMdlPfnArray(a)[0], f1 = MmGetMdlPfnArray(a)[1], f2 = MmGetMdlPfnArray(a)[2];
	EXPECT_EQ(t, (ULONG)MmAdvanceMdl(a, 2 * P + 0x10), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, pfn_entry(f0)->state, PFN_FREE);
	EXPECT_EQ(t, pfn_entry(f1)->state, PFN_FREE);
	EXPECT_EQ(t, MmGetMdlPfnArray(a)[0], f2);
	uint8_t *w = a->MappedSystemVa;
	EXPECT_EQ(t, *w, 0x77);
	EXPECT_EQ(t, mmt_frame_of((uint64_t)w), f2);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)v));
	MmFreePagesFromMdl(a);
	EXPECT_EQ(t, pfn_entry(f2)->state, PFN_FREE);
	ExFreePool(a);
}

/* ---- MmProbeAndLockSelectedPages (user rule U13) ------------------------------------ */

/* Two committed pages with an uncommitted one between them, probed as one two-page MDL. */
static void selected_pages_lock_each_segment(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID base = NULL;
	SIZE_T size = 3 * P;
	ASSERT_EQ(t, (ULONG)ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE, PAGE_READWRITE),
		  (ULONG)STATUS_SUCCESS);
	uint64_t a = (uint64_t)base, c = a + 2 * P;
	PVOID pa = (PVOID)a, pc = (PVOID)c;
	SIZE_T one = P;
	ZwAllocateVirtualMemory(NtCurrentProcess(), &pa, 0, &one, MEM_COMMIT, PAGE_READWRITE);
	one = P;
	ZwAllocateVirtualMemory(NtCurrentProcess(), &pc, 0, &one, MEM_COMMIT, PAGE_READWRITE);
	FILE_SEGMENT_ELEMENT seg[2] = { { .Buffer = (PVOID64)a }, { .Buffer = (PVOID64)c } };
	PMDL m = IoAllocateMdl((PVOID)a, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockSelectedPages(m, seg, UserMode, IoWriteAccess);
	EXPECT_TRUE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, p->mm.locked_pages, 2u);
	for (int i = 0; i < 2; i++) {
		struct pt_query q;
		pt_query(&p->mm.root, (uint64_t)seg[i].Buffer, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, MmGetMdlPfnArray(m)[i], q.pa >> PAGE_SHIFT);
		EXPECT_EQ(t, mmt_lock_count(q.pa >> PAGE_SHIFT), 1u);
	}
	MmUnlockPages(m);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);

	/* The uncommitted page in the middle: an access violation at it, nothing locked. */
	seg[1].Buffer = (PVOID64)(a + P);
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile ULONG_PTR where = 0;
	__try {
		MmProbeAndLockSelectedPages(m, seg, UserMode, IoReadAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		where = GetExceptionRecord()->ExceptionInformation[1];
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, where, a + P);
	EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, mmt_lock_count(MmGetMdlPfnArray(m)[0]), 0u);

	/* A segment that is not page-aligned. */
	seg[1].Buffer = (PVOID64)(c + 8);
	st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockSelectedPages(m, seg, UserMode, IoReadAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_DATATYPE_MISALIGNMENT);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	KeUnstackDetachProcess(&apc);
	IoFreeMdl(m);
	PsDestroyProcess(p);
}

/* Pageable memory: above APC_LEVEL is 0xC4/0x70 (IRQL, MDL, access mode), as for a probe. */
static void selected_pages_above_apc_level(struct ktest *t)
{
	KIRQL old;
	FILE_SEGMENT_ELEMENT seg[1] = { { .Buffer = (PVOID64)0x10000 } };
	PMDL m = IoAllocateMdl((PVOID)0x10000, P, FALSE, FALSE, NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70, DISPATCH_LEVEL, (ULONG_PTR)m, UserMode,
			  KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmProbeAndLockSelectedPages(m, seg, UserMode, IoReadAccess);
}

/* Above DISPATCH_LEVEL: MmAdvanceMdl 0xC4/0xE5 (IRQL, 0, 0); MmMapMdl through its mapping,
 * 0xC4/0x76 (IRQL, MDL, KernelMode). */
static void advance_above_dispatch_level(struct ktest *t)
{
	KIRQL old;
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, 2 * P);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5, DISPATCH_LEVEL + 1, 0, 0, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmAdvanceMdl(m, P);
}

static void map_mdl_above_dispatch_level(struct ktest *t)
{
	KIRQL old;
	uint8_t *buf;
	PMDL m = locked_pool(t, &buf, P);
	struct seen s = { .t = t };
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76, DISPATCH_LEVEL + 1, (ULONG_PTR)m, KernelMode,
			  KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmMapMdl(m, PAGE_READWRITE, look, &s);
}

/* A NULL process names no address space (user rule U12): mdlab's 0xC4/0x2008 (MDL, 0, the
 * access mode), also when the current context could take a kernel buffer. */
static void process_pages_with_no_process(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, 0x6c656848u);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2008, (ULONG_PTR)m, 0, KernelMode, KTEST_P_ALL);
	MmProbeAndLockProcessPages(m, NULL, KernelMode, IoReadAccess);
}

static struct ktest_case mdl_helpers_cases[] = {
	KTEST_CASE(map_mdl_maps_for_the_call_only),
	KTEST_CASE(map_mdl_uses_an_existing_mapping),
	KTEST_CASE(map_mdl_takes_the_cache_modifier),
	KTEST_CASE(map_mdl_refusals_call_nothing),
	KTEST_CASE(process_pages_are_probed_in_that_process),
	KTEST_CASE(process_pages_refused_raise_after_the_detach),
	KTEST_CASE(old_macro_maps_once_and_returns_the_mapping),
	KTEST_CASE(advance_within_the_first_page),
	KTEST_CASE(advance_past_pages_unlocks_them),
	KTEST_CASE(advance_moves_a_system_mapping),
	KTEST_CASE(advance_keeps_the_guard_pte),
	KTEST_CASE(advance_refusals_change_nothing),
	KTEST_CASE(advance_frees_the_frames_it_allocated),
	KTEST_CASE(advance_moves_a_user_mapping),
	KTEST_CASE(selected_pages_lock_each_segment),
	KTEST_DEATH_CASE_P1(process_pages_with_no_process, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2008),
	KTEST_DEATH_CASE_P1(selected_pages_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70),
	KTEST_DEATH_CASE_P1(advance_above_dispatch_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	KTEST_DEATH_CASE_P1(map_mdl_above_dispatch_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76),
	KTEST_DEATH_CASE_P(old_macro_failure_bug_checks, NO_MORE_SYSTEM_PTES, KTEST_P1 | KTEST_P2, 0, 2, 0, 0),
	{ 0 }
};
KTEST_SUITE(mdl_helpers, mdl_helpers_cases);
