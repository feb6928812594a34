/*
 * User virtual memory (mm/uvm.c) on an address space made here: a zeroed EPROCESS with its
 * own PML4, driven through the process-explicit helpers (uvm_allocate, ...) and, attached
 * with KeStackAttachProcess, through the Zw forms and the copies.
 *
 * What is proven and how:
 *   - reservations round as NT does (64 KiB down, pages up) and take no frame; committed
 *     pages are demand-zero: no PTE until a fault, then a zeroed frame with exactly the
 *     rights of the page's protection (read from the real tables);
 *   - the fault rule: the access must be allowed by the protection, a protection fault on a
 *     present page is never "resolved", and real CPU faults in the SMAP window are resolved
 *     by the #PF handler (or refused, with the hardware's error code and CR2);
 *   - protection changes rewrite resident PTEs, PAGE_NOACCESS keeps the contents;
 *   - decommit, release and teardown give every owned frame and every page table back, and
 *     never free an MDL's frames;
 *   - each refusal returns the status the module documents.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/scratch.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "include/wdm.h"
#include "mm/audit.h"
#include "mm/layout.h"
#include "mm/mm.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"

#define P PAGE_SIZE
#define U PF_U

static EPROCESS proc;
static KAPC_STATE apc;
static bool attached;

static int uvm_init(struct ktest *t)
{
	(void)t;
	memset(&proc, 0, sizeof proc);
	attached = false;
	return mm_process_init(&proc.mm, &proc, false) ? 0 : 1;
}

static void uvm_exit(struct ktest *t)
{
	(void)t;
	if (attached)
		KeUnstackDetachProcess(&apc);
	attached = false;
	uvm_destroy(&proc.mm);
	mm_process_destroy(&proc.mm);
}

static void attach(void)
{
	KeStackAttachProcess(&proc, &apc);
	attached = true;
}

static void detach(void)
{
	KeUnstackDetachProcess(&apc);
	attached = false;
}

static struct pt_query query(uint64_t va)
{
	struct pt_query q;
	pt_query(&proc.mm.root, va, &q);
	return q;
}

/* A user 4 KiB leaf with exactly these rights (effective across levels), or not. */
#define EXPECT_USER_PAGE(t, va, w, x)                                            \
	do {                                                                     \
		struct pt_query __q = query(va);                                 \
		EXPECT_TRUE(t, __q.present && __q.level == 1 && __q.eff.user);   \
		EXPECT_EQ(t, __q.eff.write, (w));                                \
		EXPECT_EQ(t, __q.eff.exec, (x));                                 \
		EXPECT_EQ(t, __q.eff.type, MT_WB);                               \
	} while (0)
#define EXPECT_NOT_RESIDENT(t, va) EXPECT_FALSE(t, query(va).present)

/* uvm_allocate that must succeed; returns the base. */
static uint64_t alloc(struct ktest *t, uint64_t base, uint64_t size, ULONG type, ULONG protect)
{
	uint64_t b = base, s = size;
	NTSTATUS st = uvm_allocate(&proc.mm, &b, &s, type, protect);
	if (st != STATUS_SUCCESS) {
		KTEST_FAIL(t, "uvm_allocate(0x%lx, 0x%lx, 0x%x, 0x%x) = 0x%x", base, size, type, protect, (ULONG)st);
		ktest_abort(t);
	}
	return b;
}

static NTSTATUS allocate(uint64_t base, uint64_t size, ULONG type, ULONG protect)
{
	return uvm_allocate(&proc.mm, &base, &size, type, protect);
}

static NTSTATUS vfree(uint64_t base, uint64_t size, ULONG type)
{
	return uvm_free(&proc.mm, &base, &size, type);
}

static NTSTATUS protect(uint64_t base, uint64_t size, ULONG prot, ULONG *old)
{
	ULONG o = 0;
	return uvm_protect(&proc.mm, &base, &size, prot, old ? old : &o);
}

/* Whether no table hangs under any user slot of the process's PML4: every table a range
 * needed went with its last page (pt_unmap prunes bottom up). */
static bool user_half_empty(void)
{
	for (uint64_t slot = 0; slot < 256; slot++)
		if (query(slot << 39).entry[4])
			return false;
	return true;
}

static bool page_is_zero(uint64_t pa)
{
	const uint64_t *w = phys_to_virt(pa & ~(P - 1));
	for (unsigned i = 0; i < P / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* One frame mapped as an MDL would be (VAD_MDL), owned by the test. */
static pfn_t map_mdl_frame(struct ktest *t, uint64_t va, bool write)
{
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, pfn, PFN_INVALID);
	uint64_t pfns[1] = { pfn };
	if (!uvm_map_frames(&proc.mm, va, pfns, 1, VAD_MDL, write, false)) {
		pfn_free(pfn);
		KTEST_FAIL(t, "uvm_map_frames(VAD_MDL) failed");
		ktest_abort(t);
	}
	return pfn;
}

/* ---- reserve and commit -------------------------------------------------------------- */

static void reserve_rounds_and_takes_no_frame(struct ktest *t)
{
	uint64_t b = 0x12345678, s = 0x1000;
	ASSERT_EQ(t, uvm_allocate(&proc.mm, &b, &s, MEM_RESERVE, PAGE_READWRITE), STATUS_SUCCESS);
	EXPECT_EQ(t, b, 0x12340000);              /* down to 64 KiB */
	EXPECT_EQ(t, s, 0x12347000 - 0x12340000); /* up to the page holding the last byte */
	struct vad *v = vad_find(&proc.mm, 0x12346FFF);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, v->start, 0x12340000);
	EXPECT_EQ(t, v->end, 0x12347000);
	EXPECT_EQ(t, v->kind, VAD_PRIVATE);
	EXPECT_EQ(t, v->protect, PAGE_READWRITE);
	/* Nothing was mapped: not even a table under the PML4 slot. */
	EXPECT_EQ(t, query(0x12340000).entry[4], 0);

	/* No address: the lowest free 64 KiB-aligned range above the first 64 KiB. */
	EXPECT_EQ(t, alloc(t, 0, 1, MEM_RESERVE, PAGE_NOACCESS), 0x10000);
	EXPECT_EQ(t, alloc(t, 0, 0x10001, MEM_RESERVE, PAGE_READONLY), 0x20000);
	/* A commit with no address reserves too. */
	b = 0;
	s = 3 * P;
	ASSERT_EQ(t, uvm_allocate(&proc.mm, &b, &s, MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	EXPECT_EQ(t, b, 0x40000);
	EXPECT_EQ(t, s, 3 * P);
	EXPECT_EQ(t, query(b).entry[4], 0);
	EXPECT_TRUE(t, vad_check(&proc.mm));

	/* The top of the range is usable to the last page. */
	EXPECT_EQ(t, alloc(t, MM_USER_TOP_64 + 1 - MM_ALLOCATION_GRANULARITY, MM_ALLOCATION_GRANULARITY,
			   MEM_RESERVE | MEM_COMMIT, PAGE_READONLY),
		  MM_USER_TOP_64 + 1 - MM_ALLOCATION_GRANULARITY);
}

static void allocate_refuses_bad_requests(struct ktest *t)
{
	uint64_t base = alloc(t, 0x12340000, 0x10000, MEM_RESERVE, PAGE_READWRITE);
	uint64_t mdl_va = scratch_uva(P, 0), nothing = scratch_uva(P, 0);
	pfn_t mdl = map_mdl_frame(t, mdl_va, true);
	uint64_t vads = vad_count(&proc.mm);

	/* Overlaps, MDL mappings included (mm/RULES.md decision 4). */
	EXPECT_EQ(t, allocate(base + 0x6000, P, MEM_RESERVE, PAGE_READWRITE), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, allocate(base - P, 2 * P, MEM_RESERVE, PAGE_READWRITE), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, allocate(mdl_va, P, MEM_RESERVE, PAGE_READWRITE), STATUS_CONFLICTING_ADDRESSES);
	/* A commit needs a private reservation covering the whole range. */
	EXPECT_EQ(t, allocate(nothing, P, MEM_COMMIT, PAGE_READWRITE), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, allocate(base + 0xF000, 2 * P, MEM_COMMIT, PAGE_READWRITE), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, allocate(mdl_va, P, MEM_COMMIT, PAGE_READONLY), STATUS_CONFLICTING_ADDRESSES);
	/* Outside the process's range, or wrapping. */
	EXPECT_EQ(t, allocate(MM_USER_TOP_64 + 1, P, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(MM_USER_TOP_64 + 1 - P, 2 * P, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0x7FFF00000000, ~0ul - 0x1000, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0xFFFF800000000000, P, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0x1000, P, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0, MM_USER_TOP_64 + 1, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0, 0, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	/* Types. */
	static const ULONG bad_types[] = { 0, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE | 0x100000, MEM_COMMIT | MEM_RELEASE };
	for (unsigned i = 0; i < ARRAY_SIZE(bad_types); i++)
		EXPECT_EQ(t, allocate(0, P, bad_types[i], PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	/* Protections: W^X, and everything that is not one plain protection. */
	static const ULONG bad_protections[] = { PAGE_EXECUTE_READWRITE, 0, PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY,
						 PAGE_READWRITE | PAGE_GUARD, PAGE_READONLY | PAGE_NOCACHE,
						 PAGE_READWRITE | PAGE_READONLY, 0x1000 };
	for (unsigned i = 0; i < ARRAY_SIZE(bad_protections); i++) {
		EXPECT_EQ(t, allocate(0, P, MEM_RESERVE | MEM_COMMIT, bad_protections[i]), STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, allocate(base, P, MEM_COMMIT, bad_protections[i]), STATUS_INVALID_PAGE_PROTECTION);
	}
	proc.mm.terminating = true;
	EXPECT_EQ(t, allocate(0, P, MEM_RESERVE, PAGE_READWRITE), STATUS_PROCESS_IS_TERMINATING);
	proc.mm.terminating = false;

	EXPECT_EQ(t, vad_count(&proc.mm), vads);
	EXPECT_TRUE(t, vad_check(&proc.mm));
	uvm_destroy(&proc.mm);
	EXPECT_TRUE(t, !mmt_frame_is_free(mdl)); /* an MDL's frame is never the process's to free */
	pfn_free(mdl);
}

/* mm/RULES.md, decision 5's address space: nothing above 0x7FFEFFFF. */
static void wow64_allocations_stay_below_2g(struct ktest *t)
{
	proc.wow64 = true;
	proc.mm.highest_user = MM_USER_TOP_WOW64;
	EXPECT_EQ(t, allocate(0x7FFF0000, P, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, allocate(0, 0x80000000, MEM_RESERVE, PAGE_READWRITE), STATUS_INVALID_PARAMETER);
	/* The whole range in one reservation, then nothing is left. */
	uint64_t b = 0, s = MM_USER_TOP_WOW64 + 1 - 0x10000;
	ASSERT_EQ(t, uvm_allocate(&proc.mm, &b, &s, MEM_RESERVE, PAGE_READWRITE), STATUS_SUCCESS);
	EXPECT_EQ(t, b, 0x10000);
	EXPECT_EQ(t, b + s - 1, MM_USER_TOP_WOW64);
	EXPECT_EQ(t, allocate(0, P, MEM_RESERVE, PAGE_READWRITE), STATUS_NO_MEMORY);
	EXPECT_EQ(t, vfree(b, 0, MEM_RELEASE), STATUS_SUCCESS);
	EXPECT_EQ(t, alloc(t, 0, P, MEM_RESERVE, PAGE_READWRITE), 0x10000);
}

/* ---- demand-zero faults ------------------------------------------------------------- */

/* uvm_resolve_fault_status's answer for a fault that reads no pagefile (its device status
 * stays STATUS_SUCCESS). */
static NTSTATUS fault(struct mm_process *mm, uint64_t va, uint64_t err)
{
	NTSTATUS io = STATUS_DEVICE_DATA_ERROR;
	NTSTATUS st = uvm_resolve_fault_status(mm, va, err, true, &io);
	return io == STATUS_SUCCESS ? st : STATUS_IN_PAGE_ERROR;
}

static void committed_pages_are_demand_zero(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 4 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	uint64_t free0 = mmt_free_frames(), tables0 = pt_table_frames();
	for (int i = 0; i < 4; i++)
		EXPECT_NOT_RESIDENT(t, base + i * P);

	/* A user write to page 1: a zeroed frame, RW, NX, user. */
	EXPECT_EQ(t, fault(&proc.mm, base + P + 0x234, PF_W | U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, base + P, true, false);
	EXPECT_TRUE(t, page_is_zero(query(base + P).pa));
	uint64_t tables_made = pt_table_frames() - tables0;
	EXPECT_EQ(t, tables_made, 3); /* a PDPT, a PD and a PT under an empty PML4 slot */
	EXPECT_EQ(t, free0 - mmt_free_frames(), 1 + tables_made);
	/* Resident now.  A not-present fault there is one that another CPU's fault resolved
	 * first (the x86 TLB caches no not-present entry): retried, nothing taken, when the
	 * PTE allows the access and this CPU translates through the process's tables (attached);
	 * refused from another address space (it would fault again for ever), and when the PTE
	 * does not allow it (an execute of the NX page); and a protection fault (P set) is not
	 * the module's to resolve. */
	uint64_t free1 = mmt_free_frames();
	KeStackAttachProcess(&proc, &apc);
	EXPECT_EQ(t, fault(&proc.mm, base + P, PF_W | U), STATUS_SUCCESS);
	KeUnstackDetachProcess(&apc);
	EXPECT_EQ(t, fault(&proc.mm, base + P, PF_W | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, mmt_free_frames(), free1);
	EXPECT_EQ(t, fault(&proc.mm, base + P, PF_ID | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, base + P, PF_P | PF_W | U), STATUS_ACCESS_VIOLATION);
	/* A read fault maps with the page's rights, not the access's. */
	EXPECT_EQ(t, fault(&proc.mm, base + 2 * P, U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, base + 2 * P, true, false);
	EXPECT_NE(t, query(base + P).pa, query(base + 2 * P).pa);
	EXPECT_NOT_RESIDENT(t, base);
	EXPECT_NOT_RESIDENT(t, base + 3 * P);
	EXPECT_EQ(t, free0 - mmt_free_frames(), 2 + tables_made);
	EXPECT_EQ(t, mm_audit_wx(&proc.mm.root, true), 0);
}

static void fault_rights_follow_the_page_protection(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 8 * P, MEM_RESERVE, PAGE_NOACCESS);
	uint64_t ro = base, rw = base + P, x = base + 2 * P, xr = base + 3 * P, na = base + 4 * P, rsv = base + 5 * P;
	alloc(t, ro, P, MEM_COMMIT, PAGE_READONLY);
	alloc(t, rw, P, MEM_COMMIT, PAGE_READWRITE);
	alloc(t, x, P, MEM_COMMIT, PAGE_EXECUTE);
	alloc(t, xr, P, MEM_COMMIT, PAGE_EXECUTE_READ);
	alloc(t, na, P, MEM_COMMIT, PAGE_NOACCESS);

	EXPECT_EQ(t, fault(&proc.mm, ro, PF_W | U), STATUS_ACCESS_VIOLATION);
	EXPECT_NOT_RESIDENT(t, ro);
	EXPECT_EQ(t, fault(&proc.mm, ro, PF_ID | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, ro + 8, U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, ro, false, false);
	/* Now present: the write fault it will take is a protection fault, and stays one. */
	EXPECT_EQ(t, fault(&proc.mm, ro, PF_P | PF_W | U), STATUS_ACCESS_VIOLATION);

	EXPECT_EQ(t, fault(&proc.mm, rw, PF_ID | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, rw, PF_W | U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, rw, true, false);

	EXPECT_EQ(t, fault(&proc.mm, x, PF_W | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, x, U), STATUS_SUCCESS); /* PAGE_EXECUTE reads on x86 */
	EXPECT_USER_PAGE(t, x, false, true);

	EXPECT_EQ(t, fault(&proc.mm, xr, PF_ID), STATUS_ACCESS_VIOLATION); /* the kernel never runs user code */
	EXPECT_NOT_RESIDENT(t, xr);
	EXPECT_EQ(t, fault(&proc.mm, xr, PF_ID | U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, xr, false, true);

	EXPECT_EQ(t, fault(&proc.mm, na, U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, na, PF_W), STATUS_ACCESS_VIOLATION);
	EXPECT_NOT_RESIDENT(t, na);
	EXPECT_EQ(t, fault(&proc.mm, rsv, U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, base + 8 * P, U), STATUS_ACCESS_VIOLATION); /* past the reservation */
	EXPECT_EQ(t, fault(&proc.mm, MM_USER_TOP_64 + 1, U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, scratch_unmapped_kva(PAGE_SIZE), 0), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(&proc.mm, rsv, PF_RSVD | U), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, fault(NULL, rw, U), STATUS_ACCESS_VIOLATION);
	EXPECT_NOT_RESIDENT(t, rsv);
	EXPECT_EQ(t, mm_audit_wx(&proc.mm.root, true), 0);
}

/* Real CPU faults, the process's tables loaded: the #PF handler hands a kernel access in
 * the SMAP window to uvm_resolve_fault_status and retries it, or raises what the CPU reported. */
static void cpu_faults_in_the_smap_window_are_resolved_or_raised(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 8 * P, MEM_RESERVE, PAGE_READWRITE);
	uint64_t rw = base, ro = base + P, ro2 = base + 2 * P, na = base + 3 * P, rsv = base + 4 * P;
	alloc(t, rw, P, MEM_COMMIT, PAGE_READWRITE);
	alloc(t, ro, 2 * P, MEM_COMMIT, PAGE_READONLY);
	alloc(t, na, P, MEM_COMMIT, PAGE_NOACCESS);
	struct faultcap f_rw, f_ro, f_ro_w, f_ro2, f_na, f_rsv;
	uint8_t v_ro = 0xFF, v_na, v_rsv;
	bool ok_rw, ok_ro, ok_ro_w, ok_ro2, ok_na, ok_rsv;

	attach();
	user_access_begin();
	ok_rw = faultcap_try_store8(rw + 0x10, 0x5A, &f_rw);
	ok_ro = faultcap_try_load8(ro + 0x20, &v_ro, &f_ro);
	ok_ro_w = faultcap_try_store8(ro + 0x20, 1, &f_ro_w);
	ok_ro2 = faultcap_try_store8(ro2, 1, &f_ro2);
	ok_na = faultcap_try_load8(na, &v_na, &f_na);
	ok_rsv = faultcap_try_load8(rsv + 0x30, &v_rsv, &f_rsv);
	user_access_end();
	detach();

	EXPECT_TRUE(t, ok_rw);
	EXPECT_USER_PAGE(t, rw, true, false);
	EXPECT_EQ(t, ((uint8_t *)phys_to_virt(query(rw).pa))[0x10], 0x5A);
	EXPECT_TRUE(t, ok_ro);
	EXPECT_EQ(t, v_ro, 0);
	EXPECT_USER_PAGE(t, ro, false, false);
	/* The store to the now-present read-only page: a protection fault, P|W. */
	EXPECT_FALSE(t, ok_ro_w);
	EXPECT_PAGE_FAULT(t, &f_ro_w, PF_P | PF_W, ro + 0x20);
	EXPECT_EQ(t, f_ro_w.status, STATUS_ACCESS_VIOLATION);
	/* A store to a read-only page never touched: not present, W, and it stays so. */
	EXPECT_FALSE(t, ok_ro2);
	EXPECT_PAGE_FAULT(t, &f_ro2, PF_W, ro2);
	EXPECT_NOT_RESIDENT(t, ro2);
	EXPECT_FALSE(t, ok_na);
	EXPECT_PAGE_FAULT(t, &f_na, 0, na);
	EXPECT_FALSE(t, ok_rsv);
	EXPECT_PAGE_FAULT(t, &f_rsv, 0, rsv + 0x30);
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC);
}

/* ---- copies -------------------------------------------------------------------------- */

static void copies_validate_and_fault_in_demand_zero_pages(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 4 * P, MEM_RESERVE, PAGE_READWRITE);
	alloc(t, base, 2 * P, MEM_COMMIT, PAGE_READWRITE);
	uint8_t out[16], back[16] = { 0 };
	for (int i = 0; i < 16; i++)
		out[i] = (uint8_t)(0xA0 + i);

	/* Unattached there is no user address space to copy from. */
	EXPECT_EQ(t, copy_from_user(back, base, 8), STATUS_ACCESS_VIOLATION);

	attach();
	/* Across the boundary of two demand-zero pages: both are faulted in on the way. */
	NTSTATUS to = copy_to_user(base + P - 8, out, 16);
	NTSTATUS from = copy_from_user(back, base + P - 8, 16);
	/* Into the reserved page, and across into it from a committed one. */
	NTSTATUS to_rsv = copy_to_user(base + 2 * P, out, 1);
	NTSTATUS to_across = copy_to_user(base + 2 * P - 8, out, 16);
	/* Validated before any access. */
	NTSTATUS past_top = copy_from_user(back, MM_USER_TOP_64 - 3, 8);
	NTSTATUS wraps = copy_from_user(back, ~0ul - 3, 8);
	NTSTATUS kernel = copy_from_user(back, (uint64_t)&kernel_root, 8);
	NTSTATUS kernel_dst = copy_to_user((uint64_t)&kernel_root, out, 8);
	NTSTATUS empty = copy_to_user(0xDEAD0000DEAD0000ul, out, 0);
	detach();

	EXPECT_EQ(t, to, STATUS_SUCCESS);
	EXPECT_EQ(t, from, STATUS_SUCCESS);
	EXPECT_EQ(t, memcmp(out, back, 16), 0);
	EXPECT_USER_PAGE(t, base, true, false);
	EXPECT_USER_PAGE(t, base + P, true, false);
	EXPECT_EQ(t, memcmp((uint8_t *)phys_to_virt(query(base).pa) + P - 8, out, 8), 0);
	EXPECT_EQ(t, memcmp(phys_to_virt(query(base + P).pa), out + 8, 8), 0);
	EXPECT_EQ(t, to_rsv, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, to_across, STATUS_ACCESS_VIOLATION);
	EXPECT_NOT_RESIDENT(t, base + 2 * P);
	EXPECT_EQ(t, past_top, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, wraps, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, kernel, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, kernel_dst, STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, empty, STATUS_SUCCESS);
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC); /* the window is closed after a fault too */
}

/* ---- protection ---------------------------------------------------------------------- */

static void protect_rewrites_resident_ptes_and_keeps_contents(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 4 * P, MEM_RESERVE, PAGE_READWRITE);
	alloc(t, base, 3 * P, MEM_COMMIT, PAGE_READWRITE);
	ASSERT_EQ(t, fault(&proc.mm, base, PF_W | U), STATUS_SUCCESS);
	uint64_t pa = query(base).pa;
	memset(phys_to_virt(pa), 0x6B, P);
	ULONG old = 0;

	ASSERT_EQ(t, protect(base, 3 * P, PAGE_READONLY, &old), STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_READWRITE);
	EXPECT_USER_PAGE(t, base, false, false);
	EXPECT_EQ(t, query(base).pa, pa);
	EXPECT_NOT_RESIDENT(t, base + P);
	EXPECT_EQ(t, fault(&proc.mm, base + P, PF_W | U), STATUS_ACCESS_VIOLATION); /* demand-zero, new rights */
	EXPECT_EQ(t, fault(&proc.mm, base + P, U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, base + P, false, false);

	ASSERT_EQ(t, protect(base + 0x10, 1, PAGE_EXECUTE_READ, &old), STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_READONLY);
	EXPECT_USER_PAGE(t, base, false, true);
	EXPECT_USER_PAGE(t, base + P, false, false);

	/* NOACCESS: unmapped, the frame kept for later. */
	uint64_t free0 = mmt_free_frames(), tables0 = pt_table_frames();
	ASSERT_EQ(t, protect(base, 2 * P, PAGE_NOACCESS, &old), STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_EXECUTE_READ);
	EXPECT_NOT_RESIDENT(t, base);
	EXPECT_NOT_RESIDENT(t, base + P);
	EXPECT_FALSE(t, mmt_frame_is_free(pa >> PAGE_SHIFT));
	EXPECT_EQ(t, mmt_free_frames() - free0, tables0 - pt_table_frames()); /* only emptied tables went */
	EXPECT_EQ(t, fault(&proc.mm, base, U), STATUS_ACCESS_VIOLATION);

	/* And back: the same frame, the same contents, at the next touch. */
	ASSERT_EQ(t, protect(base, P, PAGE_READWRITE, &old), STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_NOACCESS);
	EXPECT_NOT_RESIDENT(t, base);
	EXPECT_EQ(t, fault(&proc.mm, base + 0x800, PF_W | U), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, base, true, false);
	EXPECT_EQ(t, query(base).pa, pa);
	EXPECT_EQ(t, ((uint8_t *)phys_to_virt(pa))[0x800], 0x6B);

	/* Refusals change nothing. */
	EXPECT_EQ(t, protect(base, P, PAGE_EXECUTE_READWRITE, &old), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, protect(base, P, PAGE_READWRITE | PAGE_GUARD, &old), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, protect(base, 4 * P, PAGE_READONLY, &old), STATUS_NOT_COMMITTED);
	EXPECT_EQ(t, protect(base, 5 * P, PAGE_READONLY, &old), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, protect(scratch_uva(P, 0), P, PAGE_READONLY, &old), STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, protect(base, 0, PAGE_READONLY, &old), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, protect(MM_USER_TOP_64 + 1, P, PAGE_READONLY, &old), STATUS_INVALID_PARAMETER);
	EXPECT_USER_PAGE(t, base, true, false);
	EXPECT_EQ(t, mm_audit_wx(&proc.mm.root, true), 0);
}

/* mm/RULES.md, decision 4: a user mapping of an MDL can't be re-protected, freed, decommitted or unmapped
 * as a view; nor can the image (a view in NT's terms) or the kernel-managed stack and
 * parameter page be freed. */
static void mdl_and_image_ranges_refuse_user_changes(struct ktest *t)
{
	uint64_t mdl_va = scratch_uva(P, 0), img_va = 0x400000, stk_va = scratch_uva(P, 0), prm_va = 0x10000;
	pfn_t mdl = map_mdl_frame(t, mdl_va, false);
	uint64_t own[3];
	for (int i = 0; i < 3; i++) {
		own[i] = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
		ASSERT_NE(t, own[i], PFN_INVALID);
	}
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, img_va, &own[0], 1, VAD_IMAGE, false, true));
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, stk_va, &own[1], 1, VAD_STACK, true, false));
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, prm_va, &own[2], 1, VAD_PARAMS, false, false));
	ULONG old = 0;

	EXPECT_EQ(t, protect(mdl_va, P, PAGE_READWRITE, &old), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, protect(mdl_va, P, PAGE_READONLY, &old), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, vfree(mdl_va, 0, MEM_RELEASE), STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, vfree(mdl_va, P, MEM_DECOMMIT), STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, uvm_unmap_view(&proc.mm, mdl_va), STATUS_NOT_MAPPED_VIEW);
	EXPECT_EQ(t, vfree(img_va, 0, MEM_RELEASE), STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, vfree(img_va, P, MEM_DECOMMIT), STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, uvm_unmap_view(&proc.mm, img_va), STATUS_NOT_MAPPED_VIEW);
	EXPECT_EQ(t, vfree(stk_va, 0, MEM_RELEASE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vfree(prm_va, P, MEM_DECOMMIT), STATUS_INVALID_PARAMETER);
	EXPECT_USER_PAGE(t, mdl_va, false, false);
	EXPECT_USER_PAGE(t, img_va, false, true);
	EXPECT_USER_PAGE(t, stk_va, true, false);
	EXPECT_USER_PAGE(t, prm_va, false, false);
	EXPECT_EQ(t, query(mdl_va).pa, mdl << PAGE_SHIFT);
	EXPECT_EQ(t, query(img_va).pa, own[0] << PAGE_SHIFT);

	/* The process's own ranges can be re-protected (never to W+X). */
	EXPECT_EQ(t, protect(img_va, P, PAGE_READONLY, &old), STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_EXECUTE_READ);
	EXPECT_USER_PAGE(t, img_va, false, false);
	EXPECT_EQ(t, protect(stk_va, P, PAGE_EXECUTE_READWRITE, &old), STATUS_INVALID_PAGE_PROTECTION);

	uvm_destroy(&proc.mm);
	for (int i = 0; i < 3; i++)
		EXPECT_TRUE(t, mmt_frame_is_free(own[i]));
	EXPECT_FALSE(t, mmt_frame_is_free(mdl));
	EXPECT_TRUE(t, user_half_empty());
	pfn_free(mdl);
}

/* ---- decommit, release, teardown --------------------------------------------------- */

static void decommit_and_release_give_frames_back(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 8 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	ASSERT_EQ(t, uvm_make_resident_status(&proc.mm, base, 8 * P, true, NULL), STATUS_SUCCESS);
	pfn_t pfn[8];
	for (int i = 0; i < 8; i++) {
		EXPECT_USER_PAGE(t, base + i * P, true, false);
		pfn[i] = query(base + i * P).pa >> PAGE_SHIFT;
		memset(pfn_to_virt(pfn[i]), 0x11 * (i + 1), P);
	}

	/* Pages 2-5 (the range touches them: rounding outwards). */
	uint64_t b = base + 2 * P + 0x10, s = 4 * P - 0x20;
	ASSERT_EQ(t, uvm_free(&proc.mm, &b, &s, MEM_DECOMMIT), STATUS_SUCCESS);
	EXPECT_EQ(t, b, base + 2 * P);
	EXPECT_EQ(t, s, 4 * P);
	for (int i = 0; i < 8; i++) {
		bool gone = i >= 2 && i <= 5;
		EXPECT_EQ(t, query(base + i * P).present, !gone);
		EXPECT_EQ(t, mmt_frame_is_free(pfn[i]), gone);
	}
	/* Reserved again: no fault resolves there until a new commit, which is zero-filled. */
	EXPECT_EQ(t, fault(&proc.mm, base + 3 * P, U), STATUS_ACCESS_VIOLATION);
	alloc(t, base + 3 * P, P, MEM_COMMIT, PAGE_READWRITE);
	EXPECT_EQ(t, fault(&proc.mm, base + 3 * P, U), STATUS_SUCCESS);
	EXPECT_TRUE(t, page_is_zero(query(base + 3 * P).pa));
	/* A committed page committed again keeps its contents. */
	alloc(t, base, P, MEM_COMMIT, PAGE_READWRITE);
	EXPECT_EQ(t, query(base).pa, pfn[0] << PAGE_SHIFT);
	EXPECT_EQ(t, *(uint8_t *)pfn_to_virt(pfn[0]), 0x11);

	/* Size 0: from the address to the end of the reservation. */
	b = base + 6 * P;
	s = 0;
	ASSERT_EQ(t, uvm_free(&proc.mm, &b, &s, MEM_DECOMMIT), STATUS_SUCCESS);
	EXPECT_EQ(t, s, 2 * P);
	EXPECT_TRUE(t, mmt_frame_is_free(pfn[6]) && mmt_frame_is_free(pfn[7]));

	/* Release: every frame and every table goes. */
	ASSERT_EQ(t, vfree(base, 0, MEM_RELEASE), STATUS_SUCCESS);
	EXPECT_TRUE(t, mmt_frame_is_free(pfn[0]) && mmt_frame_is_free(pfn[1]));
	EXPECT_TRUE(t, proc.mm.vad_root == NULL);
	EXPECT_TRUE(t, user_half_empty());
	EXPECT_EQ(t, vfree(base, 0, MEM_RELEASE), STATUS_MEMORY_NOT_ALLOCATED);
}

static void free_refuses_bad_requests(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 4 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	uint64_t next = alloc(t, base + MM_ALLOCATION_GRANULARITY + 0x100, P, MEM_RESERVE, PAGE_READWRITE);
	ASSERT_EQ(t, next, base + MM_ALLOCATION_GRANULARITY); /* rounded down to 64 KiB */
	ASSERT_EQ(t, uvm_make_resident_status(&proc.mm, base, P, true, NULL), STATUS_SUCCESS);

	EXPECT_EQ(t, vfree(scratch_uva(P, 0), 0, MEM_RELEASE), STATUS_MEMORY_NOT_ALLOCATED);
	EXPECT_EQ(t, vfree(base + 4 * P, P, MEM_DECOMMIT), STATUS_MEMORY_NOT_ALLOCATED); /* the gap */
	EXPECT_EQ(t, vfree(base, 0, 0), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vfree(base, 0, MEM_RELEASE | MEM_DECOMMIT), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vfree(base, 0, MEM_COMMIT), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vfree(base + P, 0, MEM_RELEASE), STATUS_FREE_VM_NOT_AT_BASE);
	EXPECT_EQ(t, vfree(base, 2 * P, MEM_RELEASE), STATUS_INVALID_PARAMETER); /* part of it */
	EXPECT_EQ(t, vfree(base, 5 * P, MEM_RELEASE), STATUS_UNABLE_TO_FREE_VM);
	EXPECT_EQ(t, vfree(base + 2 * P, 3 * P, MEM_DECOMMIT), STATUS_UNABLE_TO_FREE_VM);
	EXPECT_EQ(t, vfree(MM_USER_TOP_64 + 1, 0, MEM_RELEASE), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vfree(base, ~0ul, MEM_DECOMMIT), STATUS_INVALID_PARAMETER);
	EXPECT_USER_PAGE(t, base, true, false);
	EXPECT_EQ(t, vad_count(&proc.mm), 2);

	/* The whole size given explicitly is a release too. */
	EXPECT_EQ(t, vfree(base, 4 * P, MEM_RELEASE), STATUS_SUCCESS);
	EXPECT_EQ(t, vad_count(&proc.mm), 1);
}

/* A page locked by MmProbeAndLockPages must outlive a decommit (NT frees it at the unlock);
 * mdlab refuses the free instead of freeing a locked frame. */
static void free_refuses_a_range_with_locked_pages(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 4 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	ASSERT_EQ(t, uvm_make_resident_status(&proc.mm, base, 4 * P, true, NULL), STATUS_SUCCESS);
	PMDL mdl = IoAllocateMdl((PVOID)(base + 2 * P), P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	volatile NTSTATUS probe = STATUS_SUCCESS;
	attach();
	__try {
		MmProbeAndLockPages(mdl, UserMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		probe = GetExceptionCode();
	}
	detach();
	if (probe != STATUS_SUCCESS) {
		IoFreeMdl(mdl);
		KTEST_FAIL(t, "MmProbeAndLockPages raised 0x%x", (ULONG)probe);
		return;
	}
	pfn_t locked = MmGetMdlPfnArray(mdl)[0];
	EXPECT_EQ(t, vfree(base + 2 * P, P, MEM_DECOMMIT), STATUS_UNABLE_TO_FREE_VM);
	EXPECT_EQ(t, vfree(base, 0, MEM_RELEASE), STATUS_UNABLE_TO_FREE_VM);
	EXPECT_USER_PAGE(t, base + 2 * P, true, false);
	/* Pages around it are free to go; a NOACCESS protection keeps the frame anyway. */
	EXPECT_EQ(t, vfree(base, 2 * P, MEM_DECOMMIT), STATUS_SUCCESS);
	EXPECT_EQ(t, protect(base + 2 * P, P, PAGE_NOACCESS, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, vfree(base + 2 * P, P, MEM_DECOMMIT), STATUS_UNABLE_TO_FREE_VM);
	EXPECT_FALSE(t, mmt_frame_is_free(locked));
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	EXPECT_EQ(t, vfree(base, 0, MEM_RELEASE), STATUS_SUCCESS);
	EXPECT_TRUE(t, mmt_frame_is_free(locked));
}

static void make_resident_checks_every_page(struct ktest *t)
{
	uint64_t base = alloc(t, 0, 6 * P, MEM_RESERVE, PAGE_READWRITE);
	alloc(t, base, 4 * P, MEM_COMMIT, PAGE_READWRITE);
	alloc(t, base + 4 * P, P, MEM_COMMIT, PAGE_READONLY);
	uint64_t mdl_va = scratch_uva(P, 0);
	pfn_t mdl = map_mdl_frame(t, mdl_va, false);

	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base + 0x10, 4 * P - 0x20, true, NULL), STATUS_SUCCESS);
	for (int i = 0; i < 4; i++)
		EXPECT_USER_PAGE(t, base + i * P, true, false);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base + 4 * P + 5, 1, true, NULL), STATUS_ACCESS_VIOLATION);
	EXPECT_NOT_RESIDENT(t, base + 4 * P);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base + 4 * P + 5, 1, false, NULL), STATUS_SUCCESS);
	EXPECT_USER_PAGE(t, base + 4 * P, false, false);
	/* Page 5 is reserved, page 4 read-only. */
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base + 3 * P, 3 * P, false, NULL), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base + 3 * P, 2 * P, true, NULL), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, 0xDEAD0000, 0, true, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, MM_USER_TOP_64 - 7, 16, false, NULL), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, ~0ul - 7, 16, false, NULL), STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, uvm_make_resident_status(NULL, base, P, false, NULL), STATUS_ACCESS_VIOLATION);
	/* A read-only MDL mapping: readable, not writable. */
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, mdl_va, P, false, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, mdl_va, P, true, NULL), STATUS_ACCESS_VIOLATION);
	/* A page made NOACCESS while resident. */
	EXPECT_EQ(t, protect(base, P, PAGE_NOACCESS, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, uvm_make_resident_status(&proc.mm, base, 1, false, NULL), STATUS_ACCESS_VIOLATION);

	uvm_destroy(&proc.mm);
	pfn_free(mdl);
}

static void map_frames_and_destroy_account_for_every_frame(struct ktest *t)
{
	pfn_t img[2], stk[3];
	for (int i = 0; i < 2; i++)
		ASSERT_NE(t, img[i] = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL), PFN_INVALID);
	for (int i = 0; i < 3; i++)
		ASSERT_NE(t, stk[i] = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL), PFN_INVALID);
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, 0x400000, img, 2, VAD_IMAGE, false, true));
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, 0x7FFFFFFD0000, stk, 3, VAD_STACK, true, false));
	uint64_t mdl_va = scratch_uva(P, 0);
	pfn_t mdl = map_mdl_frame(t, mdl_va, true);
	for (int i = 0; i < 2; i++) {
		EXPECT_USER_PAGE(t, 0x400000 + i * P, false, true);
		EXPECT_EQ(t, query(0x400000 + i * P).pa, img[i] << PAGE_SHIFT);
	}
	for (int i = 0; i < 3; i++) {
		EXPECT_USER_PAGE(t, 0x7FFFFFFD0000 + i * P, true, false);
		EXPECT_EQ(t, query(0x7FFFFFFD0000 + i * P).pa, stk[i] << PAGE_SHIFT);
	}
	EXPECT_USER_PAGE(t, mdl_va, true, false);
	/* An overlapping map fails and leaves everything as it was. */
	uint64_t vads = vad_count(&proc.mm);
	EXPECT_FALSE(t, uvm_map_frames(&proc.mm, 0x401000, stk, 2, VAD_IMAGE, false, false));
	EXPECT_EQ(t, vad_count(&proc.mm), vads);
	EXPECT_EQ(t, query(0x401000).pa, img[1] << PAGE_SHIFT);

	/* Private memory: resident, parked (NOACCESS while resident), demand-zero. */
	uint64_t base = alloc(t, 0, 3 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	ASSERT_EQ(t, uvm_make_resident_status(&proc.mm, base, 2 * P, true, NULL), STATUS_SUCCESS);
	pfn_t priv0 = query(base).pa >> PAGE_SHIFT, priv1 = query(base + P).pa >> PAGE_SHIFT;
	EXPECT_EQ(t, protect(base + P, P, PAGE_NOACCESS, NULL), STATUS_SUCCESS);
	EXPECT_FALSE(t, mmt_frame_is_free(priv1));
	EXPECT_EQ(t, mm_audit_wx(&proc.mm.root, true), 0);

	uvm_destroy(&proc.mm);
	EXPECT_TRUE(t, proc.mm.vad_root == NULL);
	for (int i = 0; i < 2; i++)
		EXPECT_TRUE(t, mmt_frame_is_free(img[i]));
	for (int i = 0; i < 3; i++)
		EXPECT_TRUE(t, mmt_frame_is_free(stk[i]));
	EXPECT_TRUE(t, mmt_frame_is_free(priv0));
	EXPECT_TRUE(t, mmt_frame_is_free(priv1));
	EXPECT_FALSE(t, mmt_frame_is_free(mdl));
	EXPECT_TRUE(t, user_half_empty());
	pfn_free(mdl);
}

/* With no frame left for a page table, uvm_map_frames fails with nothing left behind: no
 * VAD, no table, the caller's frames still the caller's. */
static void map_frames_failure_leaves_nothing(struct ktest *t)
{
	pfn_t frames[2];
	for (int i = 0; i < 2; i++)
		ASSERT_NE(t, frames[i] = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL), PFN_INVALID);
	/* A first range, so that pool has slab room for the next VAD node and page array. */
	ASSERT_TRUE(t, uvm_map_frames(&proc.mm, 0x400000, &frames[0], 1, VAD_IMAGE, false, false));
	/* Another 512 GiB slot: it needs three new tables. */
	uint64_t slot = scratch_uva(SCRATCH_PML4_SLOT, SCRATCH_PML4_SLOT);
	uint64_t tables = pt_table_frames(), taken, vads = vad_count(&proc.mm);
	pfn_t hog = mmt_hog_frames(0, &taken);
	bool mapped = uvm_map_frames(&proc.mm, slot, &frames[1], 1, VAD_STACK, true, false);
	uint64_t vads_after = vad_count(&proc.mm), tables_after = pt_table_frames();
	mmt_release_frames(hog);

	EXPECT_FALSE(t, mapped);
	EXPECT_EQ(t, vads_after, vads);
	EXPECT_EQ(t, tables_after, tables);
	EXPECT_TRUE(t, vad_find(&proc.mm, slot) == NULL);
	EXPECT_FALSE(t, mmt_frame_is_free(frames[1]));
	pfn_free(frames[1]);
}

/* ---- the Zw forms -------------------------------------------------------------------- */

static void zw_forms_act_on_the_current_process_only(struct ktest *t)
{
	HANDLE other = (HANDLE)(uintptr_t)0x1234;
	PVOID b = NULL;
	SIZE_T s = P;
	ULONG old = 0;

	/* Unattached: NtCurrentProcess() names no user address space. */
	EXPECT_EQ(t, ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 0, &s, MEM_COMMIT, PAGE_READWRITE),
		  STATUS_INVALID_HANDLE);
	attach();
	NTSTATUS bad[4] = {
		ZwAllocateVirtualMemory(other, &b, 0, &s, MEM_COMMIT, PAGE_READWRITE),
		ZwFreeVirtualMemory(other, &b, &s, MEM_RELEASE),
		ZwProtectVirtualMemory(other, &b, &s, PAGE_READONLY, &old),
		ZwUnmapViewOfSection(other, b),
	};
	NTSTATUS zero_bits = ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 1, &s, MEM_COMMIT, PAGE_READWRITE);
	NTSTATUS alloc_st = ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 0, &s, MEM_COMMIT, PAGE_READWRITE);
	PVOID got = b;
	SIZE_T got_size = s;
	s = 1;
	NTSTATUS prot_st = ZwProtectVirtualMemory(NtCurrentProcess(), &b, &s, PAGE_READONLY, &old);
	NTSTATUS unmap_st = ZwUnmapViewOfSection(NtCurrentProcess(), b);
	s = 0;
	NTSTATUS free_st = ZwFreeVirtualMemory(NtCurrentProcess(), &b, &s, MEM_RELEASE);
	detach();

	for (int i = 0; i < 4; i++)
		EXPECT_EQ(t, bad[i], STATUS_INVALID_HANDLE);
	EXPECT_EQ(t, zero_bits, STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, alloc_st, STATUS_SUCCESS);
	EXPECT_EQ(t, (uint64_t)got, 0x10000);
	EXPECT_EQ(t, got_size, P);
	EXPECT_EQ(t, prot_st, STATUS_SUCCESS);
	EXPECT_EQ(t, old, PAGE_READWRITE);
	EXPECT_EQ(t, unmap_st, STATUS_NOT_MAPPED_VIEW);
	EXPECT_EQ(t, free_st, STATUS_SUCCESS);
	EXPECT_EQ(t, (uint64_t)b, 0x10000);
	EXPECT_EQ(t, s, P);
	EXPECT_TRUE(t, proc.mm.vad_root == NULL);
}

static struct ktest_case uvm_vm_cases[] = {
	KTEST_CASE(reserve_rounds_and_takes_no_frame),
	KTEST_CASE(allocate_refuses_bad_requests),
	KTEST_CASE(wow64_allocations_stay_below_2g),
	KTEST_CASE(committed_pages_are_demand_zero),
	KTEST_CASE(fault_rights_follow_the_page_protection),
	KTEST_CASE(cpu_faults_in_the_smap_window_are_resolved_or_raised),
	KTEST_CASE(copies_validate_and_fault_in_demand_zero_pages),
	KTEST_CASE(protect_rewrites_resident_ptes_and_keeps_contents),
	KTEST_CASE(mdl_and_image_ranges_refuse_user_changes),
	KTEST_CASE(decommit_and_release_give_frames_back),
	KTEST_CASE(free_refuses_bad_requests),
	KTEST_CASE(free_refuses_a_range_with_locked_pages),
	KTEST_CASE(make_resident_checks_every_page),
	KTEST_CASE(map_frames_and_destroy_account_for_every_frame),
	KTEST_CASE(map_frames_failure_leaves_nothing),
	KTEST_CASE(zw_forms_act_on_the_current_process_only),
	{ 0 }
};
KTEST_SUITE(uvm_vm, uvm_vm_cases, .init = uvm_init, .exit = uvm_exit);
