/*
 * MDLs and user address spaces (mm/mdl_user.c): probing and locking user buffers,
 * mapping MDLs into processes, what ring 3 can and cannot do with such a mapping, and what
 * is left when a process ends.
 *
 * Every case works on agent processes (user/agent.c) made here: memory is made by the
 * agent (AGENT_ALLOC) or by ZwAllocateVirtualMemory while attached, mappings are made
 * attached (KeStackAttachProcess) before the agent runs, at an address chosen beforehand and
 * passed in its arguments.  State is read from the real page tables (pt_query's raw
 * entries, decoded here), faults are the ones the CPU reported to ps_user_fault, and memory
 * types are decoded from the leaves' PAT/PCD/PWT bits against IA32_PAT read by RDMSR.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/mm.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/uvm.h"
#include "mm/vad.h"
#include "mm/verifier.h"

#define TAG 0x74556D4Du /* 'MmUt' */
#define P PAGE_SIZE
#define MM_USER_PROBE_LIMIT 0x7FFFFFFF0000ul

/* ---- fixture: processes made by a case go when it ends, whatever happened ---------- */

#define MAX_PROCS 4
#define MAX_LOCKED 4
static PEPROCESS procs[MAX_PROCS];
static PMDL locked_mdls[MAX_LOCKED];
static KAPC_STATE apc;
static bool attached;
/* Where the case puts user mappings and buffers: scratch ranges of its own (free in a fresh
 * agent process), map_va 1 MiB into its range so that the 64 KiB below it are free too. */
static uint64_t map_va, buf_va;

static int mu_init(struct ktest *t)
{
	(void)t;
	memset(procs, 0, sizeof procs);
	memset(locked_mdls, 0, sizeof locked_mdls);
	attached = false;
	map_va = scratch_uva(P, 0) + 0x100000;
	buf_va = scratch_uva(P, 0);
	return 0;
}

static void attach(PEPROCESS p)
{
	KeStackAttachProcess(p, &apc);
	attached = true;
}

static void detach(void)
{
	KeUnstackDetachProcess(&apc);
	attached = false;
}

static void destroy(PEPROCESS p)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i] == p)
			procs[i] = NULL;
	PsDestroyProcess(p);
}

/* A case that ended early may leave an MDL locked: unlock it so its process can end. */
static void mu_exit(struct ktest *t)
{
	(void)t;
	if (KeGetCurrentIrql() != PASSIVE_LEVEL)
		KeLowerIrql(PASSIVE_LEVEL);
	if (attached)
		detach();
	verifier_set_lowres(0, 0, 1);
	/* User mappings first (an MDL can't be unlocked while mapped), then the locks. */
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i]) {
			attach(procs[i]);
			mdl_user_process_exit(&procs[i]->mm);
			detach();
		}
	for (int i = 0; i < MAX_LOCKED; i++)
		if (locked_mdls[i] && (locked_mdls[i]->MdlFlags & MDL_PAGES_LOCKED))
			MmUnlockPages(locked_mdls[i]);
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i])
			destroy(procs[i]);
}

static void track_locked(PMDL m)
{
	for (int i = 0; i < MAX_LOCKED; i++)
		if (!locked_mdls[i] || locked_mdls[i] == m) {
			locked_mdls[i] = m;
			return;
		}
}

/* IoFreeMdl of an MDL the fixture may know about. */
static void free_mdl(PMDL m)
{
	for (int i = 0; i < MAX_LOCKED; i++)
		if (locked_mdls[i] == m)
			locked_mdls[i] = NULL;
	IoFreeMdl(m);
}

/* A process made by the case, destroyed by the fixture whatever happens. */
static PEPROCESS tracked(struct ktest *t, PEPROCESS p)
{
	ASSERT_TRUE(t, p != NULL);
	for (int i = 0; i < MAX_PROCS; i++)
		if (!procs[i]) {
			procs[i] = p;
			return p;
		}
	PsDestroyProcess(p);
	KTEST_FAIL(t, "more than %d processes in one case", MAX_PROCS);
	ktest_abort(t);
}

/* An agent process with this script, not yet run. */
static PEPROCESS agent(struct ktest *t, uint32_t flags, const struct agent_script *s)
{
	return tracked(t, agent_create(s, flags));
}

/* An agent that only exits. */
static PEPROCESS idle_agent(struct ktest *t, uint32_t flags) { return tracked(t, agent_create_idle(flags)); }

/* ---- calls made inside __try ------------------------------------------------------- */

struct raised {
	NTSTATUS status;
	ULONG_PTR info[2]; /* access kind, address (STATUS_ACCESS_VIOLATION) */
};

static struct raised try_probe(PMDL m, KPROCESSOR_MODE mode, LOCK_OPERATION op)
{
	struct raised r;
	r.status = expect_try_probe(m, mode, op, r.info, 2);
	return r;
}

/* MmMapLockedPagesSpecifyCache(UserMode, ...): the exception's status, or STATUS_SUCCESS
 * with the address in *va. */
static NTSTATUS try_map(PMDL m, MEMORY_CACHING_TYPE ct, uint64_t requested, ULONG priority, uint64_t *va)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile uint64_t got = 0;
	__try {
		got = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, ct, (PVOID)requested, FALSE, priority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*va = got;
	return st;
}

/* A mapping that must succeed. */
static uint64_t map_user(struct ktest *t, PMDL m, MEMORY_CACHING_TYPE ct, uint64_t requested, ULONG priority)
{
	uint64_t va;
	NTSTATUS st = try_map(m, ct, requested, priority, &va);
	if (st != STATUS_SUCCESS) {
		KTEST_FAIL(t, "user mapping at 0x%lx raised 0x%x", requested, (ULONG)st);
		ktest_abort(t);
	}
	return va;
}

/* ---- reading the real tables ------------------------------------------------------- */

static struct pt_query query(PEPROCESS p, uint64_t va)
{
	struct pt_query q;
	pt_query(&p->mm.root, va, &q);
	return q;
}

/* The 4 KiB leaf mapping va in p (0 when there is none). */
static uint64_t user_leaf(PEPROCESS p, uint64_t va)
{
	struct pt_query q = query(p, va);
	return q.present && q.level == 1 ? q.entry[1] : 0;
}

/* A user leaf for pfn with exactly these rights, read from the raw entries: present, U/S,
 * NX at the leaf and effective, RW as asked, not global. */
#define EXPECT_USER_LEAF(t, p, va, pfn, writable)                                             \
	do {                                                                                  \
		struct pt_query __q = query(p, va);                                           \
		EXPECT_TRUE(t, __q.present && __q.level == 1);                                \
		uint64_t __e = __q.entry[1];                                                  \
		EXPECT_TRUE(t, mmt_has(__e, MMT_PTE_US) && mmt_has(__e, MMT_PTE_NX));           \
		EXPECT_FALSE(t, mmt_has(__e, MMT_PTE_G));                                     \
		EXPECT_EQ(t, mmt_has(__e, MMT_PTE_RW), (writable));                           \
		EXPECT_EQ(t, __e & MMT_PTE_ADDR, (uint64_t)(pfn) << PAGE_SHIFT);              \
		EXPECT_TRUE(t, __q.eff.user && !__q.eff.exec && __q.eff.write == (writable)); \
	} while (0)

static uint32_t mappings_of(PEPROCESS p)
{
	uint32_t n = 0;
	for (struct user_mapping *um = p->mm.mappings; um; um = um->next)
		n++;
	return n;
}

/* ---- buffers ----------------------------------------------------------------------- */

/* Committed read-write pages made attached with ZwAllocateVirtualMemory at `base`. */
static uint64_t zw_alloc(struct ktest *t, uint64_t base, uint64_t size, ULONG type, ULONG protect)
{
	PVOID b = (PVOID)base;
	SIZE_T s = size;
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 0, &s, type, protect);
	if (st != STATUS_SUCCESS) {
		KTEST_FAIL(t, "ZwAllocateVirtualMemory(0x%lx, 0x%lx) = 0x%x", base, size, (ULONG)st);
		ktest_abort(t);
	}
	return (uint64_t)b;
}

static PMDL pages_for_mdl(struct ktest *t, SIZE_T bytes, bool typed, MEMORY_CACHING_TYPE ct)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = typed ? MmAllocatePagesForMdlEx(lo, hi, skip, bytes, ct, MM_ALLOCATE_FULLY_REQUIRED)
		       : MmAllocatePagesForMdl(lo, hi, skip, bytes);
	ASSERT_TRUE(t, m != NULL);
	ASSERT_EQ(t, m->ByteCount, bytes);
	return m;
}

static void free_pages_mdl(PMDL m)
{
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

/* A user buffer of the attached process described by a new MDL (not locked). */
static PMDL user_mdl(struct ktest *t, uint64_t va, ULONG len)
{
	PMDL m = IoAllocateMdl((PVOID)va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	return m;
}

/* ================================================================================== */
/* User rule U1 (mm/RULES.md): MmProbeAndLockPages of user buffers                                         */
/* ================================================================================== */

/* Committed demand-zero pages get frames, the PFN array is what the process's tables say,
 * each frame is locked once, Mdl->Process is the process and its locked_pages counts the
 * pages; MmUnlockPages takes all of it back. */
static void probe_makes_user_pages_resident_and_counts_them(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	attach(p);
	uint64_t buf = zw_alloc(t, buf_va, 3 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	for (int i = 0; i < 3; i++)
		EXPECT_FALSE(t, query(p, buf + i * P).present); /* demand-zero: no frame yet */
	uint64_t locked0 = mmt_locked_frames();
	PMDL m = user_mdl(t, buf + 0x100, 2 * P + 0x10); /* three pages */
	track_locked(m);
	struct raised r = try_probe(m, UserMode, IoWriteAccess);
	ASSERT_EQ(t, (ULONG)r.status, (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, m->Process == p);
	EXPECT_EQ(t, p->mm.locked_pages, 3);
	EXPECT_TRUE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_TRUE(t, m->MdlFlags & MDL_WRITE_OPERATION);
	EXPECT_EQ(t, mmt_locked_frames(), locked0 + 3);
	for (int i = 0; i < 3; i++) {
		struct pt_query q = query(p, buf + i * P);
		EXPECT_TRUE(t, q.present && q.eff.user && q.eff.write);
		EXPECT_EQ(t, MmGetMdlPfnArray(m)[i], q.pa >> PAGE_SHIFT);
		EXPECT_EQ(t, mmt_lock_count(MmGetMdlPfnArray(m)[i]), 1);
	}
	MmUnlockPages(m);
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	EXPECT_EQ(t, mmt_locked_frames(), locked0);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(t, mmt_lock_count(MmGetMdlPfnArray(m)[i]), 0);
	free_mdl(m);
	detach();
	destroy(p);
}

/* Memory the agent allocated and wrote from ring 3: after the run, attached, a read probe
 * locks the frame the agent wrote (its data visible through the kernel's mapping of the
 * MDL) and the page it never touched gets a zeroed frame. */
static void probe_locks_memory_the_agent_made(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, buf_va, 2 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_write64(&s, buf_va + 8, 0x0123456789ABCDEFul);
	PEPROCESS p = agent(t, 0, &s);
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, 0, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, 0, 1), buf_va);
	EXPECT_FALSE(t, query(p, buf_va + P).present);
	attach(p);
	PMDL m = user_mdl(t, buf_va, 2 * P);
	track_locked(m);
	ASSERT_EQ(t, (ULONG)try_probe(m, UserMode, IoReadAccess).status, (ULONG)STATUS_SUCCESS);
	EXPECT_FALSE(t, m->MdlFlags & MDL_WRITE_OPERATION);
	EXPECT_EQ(t, p->mm.locked_pages, 2);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[0], query(p, buf_va).pa >> PAGE_SHIFT);
	EXPECT_EQ(t, MmGetMdlPfnArray(m)[1], query(p, buf_va + P).pa >> PAGE_SHIFT);
	uint64_t *sys = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	EXPECT_EQ(t, sys[1], 0x0123456789ABCDEFul);
	EXPECT_EQ(t, sys[P / 8], 0);
	MmUnlockPages(m); /* releases the system mapping too */
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	free_mdl(m);
	detach();
	destroy(p);
}

/* A KernelMode probe of a user buffer charges the process the same way (a driver probing
 * a METHOD_NEITHER buffer): the pages are the process's. */
static void kernel_mode_probe_of_user_buffer_charges_the_process(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	attach(p);
	uint64_t buf = zw_alloc(t, buf_va, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PMDL m = user_mdl(t, buf, P);
	track_locked(m);
	ASSERT_EQ(t, (ULONG)try_probe(m, KernelMode, IoReadAccess).status, (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, m->Process == p);
	EXPECT_EQ(t, p->mm.locked_pages, 1);
	MmUnlockPages(m);
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	free_mdl(m);
	detach();
	destroy(p);
}

/* A refused probe: STATUS_ACCESS_VIOLATION naming `bad`, nothing locked, nothing charged. */
static void expect_refused(struct ktest *t, PEPROCESS p, uint64_t va, ULONG len, LOCK_OPERATION op, uint64_t bad)
{
	uint8_t storage[sizeof(MDL) + 4 * sizeof(PFN_NUMBER)] __attribute__((aligned(8)));
	PMDL m = (PMDL)storage;
	MmInitializeMdl(m, va, len);
	uint64_t locked0 = mmt_locked_frames();
	struct raised r = try_probe(m, UserMode, op);
	EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, r.info[0], op == IoReadAccess ? EXCEPTION_READ_FAULT : EXCEPTION_WRITE_FAULT);
	EXPECT_EQ(t, r.info[1], bad);
	EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, mmt_locked_frames(), locked0);
	EXPECT_EQ(t, p ? p->mm.locked_pages : 0, 0);
}

static void probe_refusals_raise_and_leave_nothing_locked(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	attach(p);
	uint64_t rw = zw_alloc(t, buf_va, 2 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	uint64_t ro = zw_alloc(t, buf_va + 0x100000, P, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY);
	uint64_t na = zw_alloc(t, buf_va + 0x200000, P, MEM_RESERVE | MEM_COMMIT, PAGE_NOACCESS);
	uint64_t res = zw_alloc(t, buf_va + 0x300000, 3 * P, MEM_RESERVE, PAGE_READWRITE);
	zw_alloc(t, res, 2 * P, MEM_COMMIT, PAGE_READWRITE); /* the third page stays reserved */

	/* At or past the user probe limit, and a range that wraps. */
	expect_refused(t, p, MM_USER_PROBE_LIMIT - P, 2 * P, IoReadAccess, MM_USER_PROBE_LIMIT);
	expect_refused(t, p, MM_USER_PROBE_LIMIT, 1, IoReadAccess, MM_USER_PROBE_LIMIT);
	expect_refused(t, p, (uint64_t)&kernel_root, 8, IoReadAccess, MM_USER_PROBE_LIMIT);
	expect_refused(t, p, 0xFFFFFFFFFFFFF000ul, 2 * P, IoReadAccess, 0xFFFFFFFFFFFFF000ul);
	/* Nothing there; reserved only; no access; read-only for a write. */
	uint64_t nothing = scratch_uva(P, 0);
	expect_refused(t, p, nothing, 16, IoReadAccess, nothing);
	expect_refused(t, p, res + 2 * P + 8, 16, IoReadAccess, res + 2 * P + 8);
	expect_refused(t, p, na, P, IoReadAccess, na);
	expect_refused(t, p, ro + 0x10, 8, IoWriteAccess, ro + 0x10);
	expect_refused(t, p, ro, P, IoModifyAccess, ro);
	/* The bad page last: the first two became resident, yet nothing stays locked. */
	expect_refused(t, p, res + 0x800, 2 * P, IoReadAccess, res + 2 * P);
	EXPECT_TRUE(t, query(p, res).present && query(p, res + P).present);
	EXPECT_EQ(t, mmt_lock_count(query(p, res).pa >> PAGE_SHIFT), 0);
	expect_refused(t, p, rw + P, P + 1, IoReadAccess, rw + 2 * P);

	/* What the refusals spared is fine: the same pages read, and the read-write ones written. */
	PMDL m = user_mdl(t, ro, P);
	track_locked(m);
	ASSERT_EQ(t, (ULONG)try_probe(m, UserMode, IoReadAccess).status, (ULONG)STATUS_SUCCESS);
	MmUnlockPages(m);
	free_mdl(m);
	detach();

	/* With no process, there is no user address space to probe. */
	expect_refused(t, NULL, rw, 8, IoReadAccess, rw);
	destroy(p);
}

/* ================================================================================== */
/* User rule U3 (mm/RULES.md): MmMapLockedPagesSpecifyCache(UserMode)                                       */
/* ================================================================================== */

/* A locked user buffer mapped back into its process at a kernel-chosen address: the byte
 * offset kept, 64 KiB granularity, user + NX + RW leaves of the MDL's frames, a VAD_MDL that
 * points at the recorded mapping; unmapping takes all of it away. */
static void user_mapping_keeps_offset_and_is_user_no_execute(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	attach(p);
	uint64_t buf = zw_alloc(t, buf_va, 3 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PMDL m = user_mdl(t, buf + 0x123, 2 * P);
	track_locked(m);
	ASSERT_EQ(t, (ULONG)try_probe(m, UserMode, IoWriteAccess).status, (ULONG)STATUS_SUCCESS);
	uint64_t vads0 = vad_count(&p->mm);

	uint64_t va = map_user(t, m, MmCached, 0, NormalPagePriority);
	uint64_t base = va - 0x123;
	EXPECT_EQ(t, va & (P - 1), 0x123);
	EXPECT_EQ(t, base & (MM_ALLOCATION_GRANULARITY - 1), 0);
	EXPECT_TRUE(t, base >= 0x10000 && base + 3 * P - 1 <= p->mm.highest_user);
	for (int i = 0; i < 3; i++) {
		EXPECT_USER_LEAF(t, p, base + i * P, MmGetMdlPfnArray(m)[i], true);
		EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, base + i * P), 1), MMT_ENC_WB);
	}
	struct vad *v = vad_find(&p->mm, base);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, v->kind, VAD_MDL);
	EXPECT_EQ(t, v->start, base);
	EXPECT_EQ(t, v->end, base + 3 * P);
	struct user_mapping *um = v->owner;
	ASSERT_TRUE(t, um != NULL && p->mm.mappings == um);
	EXPECT_TRUE(t, um->mm == &p->mm && um->mdl == m && um->vad == v);
	EXPECT_EQ(t, um->va, base);
	EXPECT_EQ(t, um->pages, 3);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 1);
	EXPECT_EQ(t, vad_count(&p->mm), vads0 + 1);

	/* Both addresses reach the same bytes. */
	uint64_t x = 0xFEEDFACE;
	EXPECT_EQ(t, (ULONG)copy_to_user(buf + 0x123 + 0x1000, &x, 8), (ULONG)STATUS_SUCCESS);
	uint64_t y = 0;
	EXPECT_EQ(t, (ULONG)copy_from_user(&y, va + 0x1000, 8), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, y, 0xFEEDFACE);

	MmUnmapLockedPages((PVOID)va, m);
	for (int i = 0; i < 3; i++)
		EXPECT_FALSE(t, query(p, base + i * P).present);
	EXPECT_TRUE(t, vad_find(&p->mm, base) == NULL);
	EXPECT_TRUE(t, p->mm.mappings == NULL);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 0);
	EXPECT_EQ(t, vad_count(&p->mm), vads0);
	MmUnlockPages(m);
	free_mdl(m);
	detach();
	destroy(p);
}

/* MdlMappingNoWrite: read-only leaves; MdlMappingNoExecute changes nothing (always NX). */
static void no_write_makes_the_user_mapping_read_only(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	PMDL m = pages_for_mdl(t, 2 * P, false, MmCached);
	attach(p);
	uint64_t ro = map_user(t, m, MmCached, map_va, NormalPagePriority | MdlMappingNoWrite);
	uint64_t rw = map_user(t, m, MmCached, map_va + 0x10000, NormalPagePriority | MdlMappingNoExecute);
	EXPECT_EQ(t, ro, map_va);
	EXPECT_EQ(t, rw, map_va + 0x10000);
	for (int i = 0; i < 2; i++) {
		EXPECT_USER_LEAF(t, p, ro + i * P, MmGetMdlPfnArray(m)[i], false);
		EXPECT_USER_LEAF(t, p, rw + i * P, MmGetMdlPfnArray(m)[i], true);
	}
	EXPECT_EQ(t, vad_find(&p->mm, ro)->protect, PAGE_READONLY);
	EXPECT_EQ(t, mappings_of(p), 2);
	MmUnmapLockedPages((PVOID)ro, m);
	MmUnmapLockedPages((PVOID)rw, m);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* mm/RULES.md, decision 4: RequestedAddress exact when page-aligned; misaligned, below 64 KiB or past the
 * highest user address less 16 pages is STATUS_INVALID_ADDRESS; an overlap with any VAD is
 * STATUS_CONFLICTING_ADDRESSES; none of them leaves anything behind. */
static void requested_address_rules(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	attach(p);
	uint64_t reserved = zw_alloc(t, buf_va, 0x10000, MEM_RESERVE, PAGE_READWRITE);
	uint64_t vads0 = vad_count(&p->mm), va;
	/* The top of the stack VAD is 64 KiB under the highest address; the guard is 16 pages. */
	uint64_t limit = p->mm.highest_user - 16 * P;
	struct vad *stack = vad_find(&p->mm, limit - P + 1);
	ASSERT_TRUE(t, stack != NULL && stack->kind == VAD_STACK);
	const struct {
		uint64_t va;
		NTSTATUS st;
	} cases[] = {
		{ map_va + 0x10, STATUS_INVALID_ADDRESS },
		{ map_va + P - 1, STATUS_INVALID_ADDRESS },
		{ 0x1000, STATUS_INVALID_ADDRESS },
		{ USER_PARAMS_VA, STATUS_CONFLICTING_ADDRESSES },   /* the parameter page */
		{ 0x400000, STATUS_CONFLICTING_ADDRESSES },         /* the image */
		{ buf_va + 0xF000, STATUS_CONFLICTING_ADDRESSES },  /* a reservation, no commit */
		{ 0x7FFFFFFDF000, STATUS_CONFLICTING_ADDRESSES },   /* last page under the guard: the stack */
		{ 0x7FFFFFFE0000, STATUS_INVALID_ADDRESS },         /* first page of the guard */
		{ 0x7FFFFFFEF000, STATUS_INVALID_ADDRESS },
		{ 0x7FFFFFFF0000, STATUS_INVALID_ADDRESS },
		{ 0x800000000000, STATUS_INVALID_ADDRESS },
		{ 0xFFFFFFFFFFFFF000, STATUS_INVALID_ADDRESS },
	};
	EXPECT_EQ(t, limit, 0x7FFFFFFDFFFFul);
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		NTSTATUS st = try_map(m, MmCached, cases[i].va, NormalPagePriority, &va);
		if (st != cases[i].st)
			KTEST_FAIL(t, "RequestedAddress 0x%lx raised 0x%x, expected 0x%x", cases[i].va, (ULONG)st,
				   (ULONG)cases[i].st);
	}
	EXPECT_EQ(t, vad_count(&p->mm), vads0);
	EXPECT_TRUE(t, p->mm.mappings == NULL);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 0);

	/* Exact: right above a reservation, right under the stack, anywhere free. */
	EXPECT_EQ(t, map_user(t, m, MmCached, reserved + 0x10000, NormalPagePriority), reserved + 0x10000);
	EXPECT_EQ(t, map_user(t, m, MmCached, 0x7FFFFFFCF000, NormalPagePriority), 0x7FFFFFFCF000);
	uint64_t anywhere = scratch_uva(P, 0) + 0x345000;
	EXPECT_EQ(t, map_user(t, m, MmCached, anywhere, NormalPagePriority), anywhere);
	/* A mapping is a VAD like any other: a second one over it conflicts. */
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, anywhere, NormalPagePriority, &va),
		  (ULONG)STATUS_CONFLICTING_ADDRESSES);
	MmUnmapLockedPages((PVOID)(reserved + 0x10000), m);
	MmUnmapLockedPages((PVOID)0x7FFFFFFCF000, m);
	MmUnmapLockedPages((PVOID)anywhere, m);
	EXPECT_EQ(t, vad_count(&p->mm), vads0);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* NULL: the lowest free range on 64 KiB granularity — twice gives two distinct ranges. */
static void null_address_picks_a_free_64k_range(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	PMDL m = pages_for_mdl(t, 17 * P, false, MmCached); /* more than 64 KiB */
	attach(p);
	uint64_t a = map_user(t, m, MmCached, 0, NormalPagePriority);
	uint64_t b = map_user(t, m, MmCached, 0, NormalPagePriority);
	EXPECT_EQ(t, a & 0xFFFF, 0);
	EXPECT_EQ(t, b & 0xFFFF, 0);
	EXPECT_TRUE(t, b >= a + 0x20000 || a >= b + 0x20000);
	EXPECT_EQ(t, vad_find(&p->mm, a)->end, a + 17 * P);
	MmUnmapLockedPages((PVOID)a, m);
	/* The first range is the lowest free one again. */
	EXPECT_EQ(t, map_user(t, m, MmCached, 0, NormalPagePriority), a);
	MmUnmapLockedPages((PVOID)a, m);
	MmUnmapLockedPages((PVOID)b, m);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* mm/RULES.md, decision 5: a 32-bit process gets mappings at or below 0x7FFEFFFF.  With every 64 KiB
 * below its top reserved, a NULL request raises rather than going higher; a requested
 * address above 2 GiB is invalid there and fine in a 64-bit process. */
static void wow64_process_gets_mappings_below_2g(struct ktest *t)
{
	PEPROCESS w = idle_agent(t, PROCESS_WOW64), q = idle_agent(t, 0);
	PMDL m = pages_for_mdl(t, 16 * P, false, MmCached);
	uint64_t va;
	attach(w);
	EXPECT_EQ(t, w->mm.highest_user, 0x7FFEFFFF);
	va = map_user(t, m, MmCached, 0, NormalPagePriority);
	EXPECT_LE(t, va + 16 * P - 1, 0x7FFEFFFF);
	MmUnmapLockedPages((PVOID)va, m);
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, 0x100000000ul, NormalPagePriority, &va), (ULONG)STATUS_INVALID_ADDRESS);
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, 0x7FFD1000ul, NormalPagePriority, &va), (ULONG)STATUS_INVALID_ADDRESS);
	/* Fill: reservations of halving sizes until not even 64 KiB is left. */
	int reservations = 0;
	for (uint64_t size = 0x40000000; size >= MM_ALLOCATION_GRANULARITY && reservations < 4096;) {
		uint64_t base = 0, s = size;
		if (uvm_allocate(&w->mm, &base, &s, MEM_RESERVE, PAGE_READWRITE) == STATUS_SUCCESS)
			reservations++;
		else
			size /= 2;
	}
	EXPECT_LT(t, reservations, 4096);
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, 0, NormalPagePriority, &va), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	EXPECT_TRUE(t, w->mm.mappings == NULL);
	detach();
	attach(q);
	EXPECT_EQ(t, map_user(t, m, MmCached, 0x100000000ul, NormalPagePriority), 0x100000000ul);
	MmUnmapLockedPages((PVOID)0x100000000ul, m);
	detach();
	free_pages_mdl(m);
	destroy(w);
	destroy(q);
}

/* Every failure raises, with nothing left behind: no process, a terminating one, a bad
 * CacheType, the low-resources simulation (SpecifyCache and the old MmMapLockedPages), and
 * no frame for the page tables. */
static void failures_raise_and_leave_nothing(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	uint64_t va;
	struct mdl_user_stats s0, s1;
	mdl_user_get_stats(&s0);
	/* Unattached: the kernel has no user address space. */
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, map_va, NormalPagePriority, &va), (ULONG)STATUS_INVALID_ADDRESS);
	attach(p);
	uint64_t vads0 = vad_count(&p->mm), free0 = mmt_free_frames();
	EXPECT_EQ(t, (ULONG)try_map(m, (MEMORY_CACHING_TYPE)77, map_va, NormalPagePriority, &va),
		  (ULONG)STATUS_INVALID_PARAMETER);

	verifier_set_lowres(1, 0, 1);
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, map_va, NormalPagePriority, &va), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	verifier_set_lowres(1, 0, 1);
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmMapLockedPages(m, UserMode);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	verifier_set_lowres(0, 0, 1);

	/* No frame for the three page tables a new 512 GiB slot needs. */
	uint64_t taken, slot = scratch_uva(SCRATCH_PML4_SLOT, SCRATCH_PML4_SLOT);
	pfn_t hog = mmt_hog_frames(0, &taken);
	NTSTATUS oom = try_map(m, MmCached, slot, NormalPagePriority, &va);
	mmt_release_frames(hog);
	EXPECT_EQ(t, (ULONG)oom, (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	EXPECT_FALSE(t, query(p, slot).present);

	p->mm.terminating = true;
	EXPECT_EQ(t, (ULONG)try_map(m, MmCached, map_va, NormalPagePriority, &va), (ULONG)STATUS_PROCESS_IS_TERMINATING);
	p->mm.terminating = false;

	EXPECT_EQ(t, vad_count(&p->mm), vads0);
	EXPECT_TRUE(t, p->mm.mappings == NULL);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 0);
	EXPECT_EQ(t, mmt_free_frames(), free0);
	mdl_user_get_stats(&s1);
	EXPECT_EQ(t, s1.failures - s0.failures, 6);
	EXPECT_EQ(t, s1.live, s0.live);
	/* MmMapLockedPages(UserMode) works when nothing fails. */
	va = (uint64_t)MmMapLockedPages(m, UserMode);
	EXPECT_EQ(t, va & 0xFFFF, 0);
	EXPECT_USER_LEAF(t, p, va, MmGetMdlPfnArray(m)[0], true);
	MmUnmapLockedPages((PVOID)va, m);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* mm/RULES.md, decision 1 on the user side: an untyped frame takes CacheType for good (and the kernel
 * mapping of it then gets that type too); a typed frame keeps its type whatever is asked;
 * probe-locked RAM stays WB. */
static void each_frame_keeps_one_memory_type(struct ktest *t)
{
	PEPROCESS p = idle_agent(t, 0);
	PMDL untyped = pages_for_mdl(t, P, false, MmCached);
	PMDL wc = pages_for_mdl(t, P, true, MmWriteCombined);
	attach(p);
	uint64_t buf = zw_alloc(t, buf_va, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PMDL ram = user_mdl(t, buf, P);
	track_locked(ram);
	ASSERT_EQ(t, (ULONG)try_probe(ram, UserMode, IoWriteAccess).status, (ULONG)STATUS_SUCCESS);

	uint64_t a = map_user(t, untyped, MmNonCached, map_va, NormalPagePriority);
	EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, a), 1), MMT_ENC_UC);
	EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(untyped)[0])->memtype, MT_UC);
	uint64_t k = (uint64_t)MmGetSystemAddressForMdlSafe(untyped, NormalPagePriority);
	ASSERT_TRUE(t, k != 0);
	struct pt_query kq;
	pt_query(&kernel_root, k, &kq);
	EXPECT_EQ(t, mmt_leaf_encoding(kq.entry[1], 1), MMT_ENC_UC);

	uint64_t b = map_user(t, wc, MmCached, map_va + 0x10000, NormalPagePriority);
	EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, b), 1), MMT_ENC_WC);
	uint64_t c = map_user(t, ram, MmNonCached, map_va + 0x20000, NormalPagePriority);
	EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, c), 1), MMT_ENC_WB);
	EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, buf), 1), MMT_ENC_WB);

	MmUnmapLockedPages((PVOID)a, untyped);
	MmUnmapLockedPages((PVOID)b, wc);
	MmUnmapLockedPages((PVOID)c, ram);
	MmUnlockPages(ram);
	free_mdl(ram);
	detach();
	free_pages_mdl(untyped);
	free_pages_mdl(wc);
	destroy(p);
}

/* ================================================================================== */
/* User rule U4 (mm/RULES.md): nonpaged pool mapped to a user                                               */
/* ================================================================================== */

/* Whole zeroed pool pages map; each mapping counts on the pool pages until unmapped, and
 * freeing the pool afterwards is fine. */
static void whole_zeroed_pool_pages_map_and_count(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	struct pool_info pi;
	ASSERT_TRUE(t, pool_query((uint64_t)buf, &pi) && pi.whole_pages && !pi.uninitialized);
	PMDL m = IoAllocateMdl(buf, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	PEPROCESS p = idle_agent(t, 0), q = idle_agent(t, 0);
	buf[5] = 0x55;
	attach(p);
	uint64_t va = map_user(t, m, MmNonCached, map_va, NormalPagePriority);
	EXPECT_EQ(t, va, map_va);
	EXPECT_USER_LEAF(t, p, va, MmGetMdlPfnArray(m)[0], true);
	EXPECT_EQ(t, mmt_leaf_encoding(user_leaf(p, va), 1), MMT_ENC_WB); /* pool stays WB */
	EXPECT_TRUE(t, p->mm.mappings->pool);
	uint8_t v = 0;
	EXPECT_EQ(t, (ULONG)copy_from_user(&v, va + 5, 1), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, v, 0x55);
	detach();
	attach(q);
	uint64_t vq = map_user(t, m, MmCached, 0, NormalPagePriority | MdlMappingNoWrite);
	detach();
	EXPECT_EQ(t, mdl_user_mapping_count(m), 2);
	attach(p);
	MmUnmapLockedPages((PVOID)va, m);
	detach();
	attach(q);
	MmUnmapLockedPages((PVOID)vq, m);
	detach();
	free_mdl(m);
	ExFreePoolWithTag(buf, TAG); /* no longer mapped: no bug check */
	destroy(p);
	destroy(q);
}

/* ================================================================================== */
/* User rule U5 (mm/RULES.md): ring 3 and the mapping                                                       */
/* ================================================================================== */

/* The agent reads what the kernel wrote, and what it writes the kernel sees through its own
 * mapping of the same MDL (MmGetSystemAddressForMdlSafe). */
static void user_and_kernel_see_each_others_writes(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, 2 * P, false, MmCached);
	uint64_t *k = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	k[1] = 0x1111222233334444ul;
	k[P / 8 + 3] = 0x5555666677778888ul;
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, map_va + 8);
	agent_read64(&s, map_va + P + 24);
	agent_write64(&s, map_va + P + 32, 0xABCDEF0123456789ul);
	agent_write8(&s, map_va + 7, 0x77);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	EXPECT_EQ(t, map_user(t, m, MmCached, map_va, NormalPagePriority), map_va);
	detach();
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_EQ(t, agent_result(t, p, 0, 0), 0x1111222233334444ul);
	EXPECT_EQ(t, agent_result(t, p, 1, 0), 0x5555666677778888ul);
	EXPECT_EQ(t, k[P / 8 + 4], 0xABCDEF0123456789ul);
	EXPECT_EQ(t, ((uint8_t *)k)[7], 0x77);
	attach(p);
	MmUnmapLockedPages((PVOID)map_va, m);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* Run an agent whose last operation faults; check the #PF the CPU reported. */
static void expect_agent_fault(struct ktest *t, PEPROCESS p, uint64_t code, uint64_t address)
{
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, p->fault.error_code, code);
	EXPECT_EQ(t, p->fault.address, address);
}

/* A NoWrite mapping reads and refuses writes: 0x7 (present, write, user). */
static void user_write_to_no_write_mapping_faults_0x7(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	uint64_t *k = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	k[2] = 42;
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, map_va + 16);
	agent_write64(&s, map_va + 16, 43);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	map_user(t, m, MmCached, map_va, NormalPagePriority | MdlMappingNoWrite);
	detach();
	expect_agent_fault(t, p, PF_P | PF_W | PF_U, map_va + 16);
	EXPECT_EQ(t, agent_result(t, p, 0, 0), 42);
	EXPECT_EQ(t, k[2], 42);
	destroy(p); /* the mapping goes with the process */
	EXPECT_EQ(t, mdl_user_mapping_count(m), 0);
	free_pages_mdl(m);
}

/* Executing from an MDL user mapping faults 0x15 (present, user, instruction fetch), even
 * with a RET the kernel put there and MdlMappingNoExecute not asked for. */
static void user_fetch_from_mapping_faults_0x15(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	uint8_t *k = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	k[0x40] = 0xC3; /* ret */
	struct agent_script s;
	agent_begin(&s);
	agent_exec(&s, map_va + 0x40);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	map_user(t, m, MmCached, map_va, NormalPagePriority);
	detach();
	expect_agent_fault(t, p, PF_P | PF_U | PF_ID, map_va + 0x40);
	destroy(p);
	free_pages_mdl(m);
}

/* The kernel's own mapping of the same MDL is not the user's: reading it faults 0x5. */
static void user_read_of_the_kernel_mapping_faults_0x5(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	uint64_t k = (uint64_t)MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != 0);
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, map_va);
	agent_read64(&s, k + 8);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	map_user(t, m, MmCached, map_va, NormalPagePriority);
	detach();
	expect_agent_fault(t, p, PF_P | PF_U, k + 8);
	EXPECT_EQ(t, agent_result(t, p, 0, 0), 0);
	destroy(p);
	free_pages_mdl(m);
}

/* ================================================================================== */
/* User rule U6 (mm/RULES.md): the user cannot touch the mapping's range                                     */
/* ================================================================================== */

static void user_cannot_free_protect_unmap_or_overlap_the_mapping(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, 2 * P, false, MmCached);
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, map_va, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_alloc(&s, map_va, P, MEM_COMMIT, PAGE_READWRITE);
	agent_alloc(&s, map_va - 0x10000, 0x20000, MEM_RESERVE, PAGE_READWRITE);
	agent_free(&s, map_va, P, MEM_DECOMMIT);
	agent_free(&s, map_va, 0, MEM_RELEASE);
	agent_unmap_view(&s, map_va);
	agent_protect(&s, map_va, P, PAGE_READONLY);
	agent_protect(&s, map_va + P, P, PAGE_EXECUTE_READ);
	agent_protect(&s, map_va, 2 * P, PAGE_NOACCESS);
	agent_read64(&s, map_va + P);
	PEPROCESS p = agent(t, 0, &s);
	uint64_t *k = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	k[P / 8] = 0x600DF00D;
	attach(p);
	map_user(t, m, MmCached, map_va, NormalPagePriority);
	detach();
	/* The leaves before, without the accessed and dirty bits the CPU may set. */
	uint64_t before0 = user_leaf(p, map_va) & ~MMT_PTE_AD, before1 = user_leaf(p, map_va + P) & ~MMT_PTE_AD;
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 0, 0), (ULONG)STATUS_CONFLICTING_ADDRESSES);
	EXPECT_NE(t, (ULONG)agent_result(t, p, 1, 0), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 2, 0), (ULONG)STATUS_CONFLICTING_ADDRESSES);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 3, 0), (ULONG)STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 4, 0), (ULONG)STATUS_UNABLE_TO_DELETE_SECTION);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 5, 0), (ULONG)STATUS_NOT_MAPPED_VIEW);
	for (uint32_t i = 6; i <= 8; i++)
		EXPECT_FALSE(t, NT_SUCCESS((NTSTATUS)agent_result(t, p, i, 0)));
	EXPECT_EQ(t, agent_result(t, p, 9, 0), 0x600DF00D);
	EXPECT_EQ(t, user_leaf(p, map_va) & ~MMT_PTE_AD, before0);
	EXPECT_EQ(t, user_leaf(p, map_va + P) & ~MMT_PTE_AD, before1);
	struct vad *v = vad_find(&p->mm, map_va);
	EXPECT_TRUE(t, v && v->kind == VAD_MDL && v->start == map_va && v->end == map_va + 2 * P);
	EXPECT_EQ(t, mappings_of(p), 1);
	attach(p);
	MmUnmapLockedPages((PVOID)map_va, m);
	detach();
	free_pages_mdl(m);
	destroy(p);
}

/* ================================================================================== */
/* User rule U7 (mm/RULES.md): unmapping                                                                    */
/* ================================================================================== */

/* Unmapping frees the range at once: the same address can be requested again exactly, and
 * the user's own allocation can take it. */
static void unmapped_range_can_be_requested_again(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, 3 * P, false, MmCached);
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, map_va, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	for (int i = 0; i < 3; i++) {
		EXPECT_EQ(t, map_user(t, m, MmCached, map_va, NormalPagePriority), map_va);
		MmUnmapLockedPages((PVOID)map_va, m);
		EXPECT_FALSE(t, query(p, map_va).present);
	}
	detach();
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, (ULONG)agent_result(t, p, 0, 0), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, 0, 1), map_va);
	free_pages_mdl(m);
	destroy(p);
}

/* ================================================================================== */
/* User rule U8 (mm/RULES.md): two processes                                                                */
/* ================================================================================== */

static void two_processes_get_independent_mappings(struct ktest *t)
{
	PMDL m = pages_for_mdl(t, P, false, MmCached);
	uint64_t *k = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, k != NULL);
	k[0] = 0xB0B0;
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, map_va);
	agent_write64(&s, map_va + 8, 0xC0C0);
	PEPROCESS a = agent(t, 0, &s), b = agent(t, 0, &s);
	attach(a);
	EXPECT_EQ(t, map_user(t, m, MmCached, map_va, NormalPagePriority), map_va);
	detach();
	/* B never sees A's mapping: nothing at that address in B's tables, no VAD there. */
	EXPECT_FALSE(t, query(b, map_va).present);
	EXPECT_TRUE(t, vad_find(&b->mm, map_va) == NULL);
	/* The same MDL in B at another address: two mappings of one frame. */
	attach(b);
	EXPECT_EQ(t, map_user(t, m, MmCached, map_va + 0x100000, NormalPagePriority | MdlMappingNoWrite),
		  map_va + 0x100000);
	EXPECT_FALSE(t, query(b, map_va).present);
	detach();
	EXPECT_FALSE(t, query(a, map_va + 0x100000).present);
	EXPECT_EQ(t, query(a, map_va).pa, query(b, map_va + 0x100000).pa);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 2);
	EXPECT_EQ(t, mappings_of(a), 1);
	EXPECT_EQ(t, mappings_of(b), 1);

	/* A runs (reads and writes through its mapping) and ends: only its mapping goes. */
	EXPECT_EQ(t, (ULONG)PsRunProcess(a), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, a, 0, 0), 0xB0B0);
	EXPECT_EQ(t, k[1], 0xC0C0);
	destroy(a);
	EXPECT_EQ(t, mdl_user_mapping_count(m), 1);
	EXPECT_USER_LEAF(t, b, map_va + 0x100000, MmGetMdlPfnArray(m)[0], false);
	EXPECT_TRUE(t, b->mm.mappings && b->mm.mappings->va == map_va + 0x100000);
	attach(b);
	MmUnmapLockedPages((PVOID)(map_va + 0x100000), m);
	detach();
	free_pages_mdl(m);
	destroy(b);
}

/* ================================================================================== */
/* User rule U9 (mm/RULES.md): a process that ends with a driver's mapping still there                      */
/* ================================================================================== */

struct counters {
	uint64_t free_pages, locked, syspte_free, pool_bytes, live;
};

static struct counters counters_now(void)
{
	struct pfn_stats ps;
	struct pool_stats pl;
	struct mdl_user_stats us;
	pool_trim(); /* the pool's spare slab pages are not the case's */
	pfn_get_stats(&ps);
	pool_get_stats(&pl);
	mdl_user_get_stats(&us);
	return (struct counters){ ps.free, ps.locked, mmt_free_sysptes(), pl.bytes_in_use, us.live };
}

static void process_exit_tears_down_mappings_and_counters_return(struct ktest *t)
{
	struct counters c0 = counters_now();
	struct mdl_user_stats s0, s1;
	mdl_user_get_stats(&s0);
	uint8_t *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ASSERT_TRUE(t, pool != NULL);
	PMDL pm = IoAllocateMdl(pool, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, pm != NULL);
	MmBuildMdlForNonPagedPool(pm);
	PMDL am = pages_for_mdl(t, 4 * P, true, MmWriteCombined);
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, buf_va, 2 * P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_write64(&s, buf_va, 1);
	agent_read64(&s, map_va);
	PEPROCESS p = agent(t, 0, &s);
	attach(p);
	map_user(t, pm, MmCached, map_va, NormalPagePriority);
	map_user(t, am, MmCached, 0, NormalPagePriority);
	map_user(t, am, MmCached, 0, NormalPagePriority | MdlMappingNoWrite);
	detach();
	EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
	/* A probe-locked buffer of the process, mapped into it and unlocked before it ends. */
	attach(p);
	PMDL um = user_mdl(t, buf_va, 2 * P);
	track_locked(um);
	ASSERT_EQ(t, (ULONG)try_probe(um, UserMode, IoWriteAccess).status, (ULONG)STATUS_SUCCESS);
	uint64_t uva = map_user(t, um, MmCached, 0, NormalPagePriority);
	MmUnmapLockedPages((PVOID)uva, um);
	MmUnlockPages(um);
	free_mdl(um);
	detach();
	EXPECT_EQ(t, mappings_of(p), 3);

	destroy(p);
	mdl_user_get_stats(&s1);
	EXPECT_EQ(t, s1.teardowns - s0.teardowns, 3);
	EXPECT_EQ(t, mdl_user_mapping_count(pm), 0);
	EXPECT_EQ(t, mdl_user_mapping_count(am), 0);
	IoFreeMdl(pm);
	ExFreePoolWithTag(pool, TAG); /* the pool page no longer counts as user-mapped */
	free_pages_mdl(am);
	struct counters c1 = counters_now();
	EXPECT_EQ(t, c1.free_pages, c0.free_pages);
	EXPECT_EQ(t, c1.locked, c0.locked);
	EXPECT_EQ(t, c1.syspte_free, c0.syspte_free);
	EXPECT_EQ(t, c1.pool_bytes, c0.pool_bytes);
	EXPECT_EQ(t, c1.live, c0.live);
}

/* ================================================================================== */
/* User rule U11 (mm/RULES.md): a driver's typed pages in the process and in the kernel                     */
/* ================================================================================== */

static void typed_pages_have_one_type_in_both_mappings(struct ktest *t)
{
	static const struct {
		MEMORY_CACHING_TYPE ct;
		unsigned enc;
	} kinds[] = { { MmWriteCombined, MMT_ENC_WC }, { MmNonCached, MMT_ENC_UC } };
	for (unsigned i = 0; i < ARRAY_SIZE(kinds); i++) {
		PMDL m = pages_for_mdl(t, 2 * P, true, kinds[i].ct);
		struct agent_script s;
		agent_begin(&s);
		agent_read64(&s, map_va + 0x18);
		agent_read64(&s, map_va + P + 0x20);
		PEPROCESS p = agent(t, 0, &s);
		attach(p);
		/* As a driver would: into the calling process (asking for MmCached, which the
		 * frames' own type overrides), and into the kernel. */
		uint64_t u = map_user(t, m, MmCached, map_va, NormalPagePriority);
		uint64_t *k = MmMapLockedPagesSpecifyCache(m, KernelMode, kinds[i].ct, NULL, FALSE, NormalPagePriority);
		detach();
		ASSERT_TRUE(t, k != NULL);
		k[3] = 0xAA00 + i;
		k[P / 8 + 4] = 0xBB00 + i;
		for (int pg = 0; pg < 2; pg++) {
			struct pt_query kq;
			pt_query(&kernel_root, (uint64_t)k + pg * P, &kq);
			ASSERT_TRUE(t, kq.present && kq.level == 1);
			uint64_t ul = user_leaf(p, u + pg * P);
			EXPECT_EQ(t, mmt_leaf_encoding(ul, 1), kinds[i].enc);
			EXPECT_EQ(t, mmt_leaf_encoding(kq.entry[1], 1), kinds[i].enc);
			EXPECT_EQ(t, ul & MMT_PTE_ADDR, kq.entry[1] & MMT_PTE_ADDR);
		}
		EXPECT_EQ(t, (ULONG)PsRunProcess(p), (ULONG)STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p, 0, 0), 0xAA00 + i);
		EXPECT_EQ(t, agent_result(t, p, 1, 0), 0xBB00 + i);
		attach(p);
		MmUnmapLockedPages((PVOID)u, m);
		detach();
		MmUnmapLockedPages(k, m);
		free_pages_mdl(m);
		destroy(p);
	}
}

static struct ktest_case mdl_user_cases[] = {
	KTEST_CASE(probe_makes_user_pages_resident_and_counts_them),
	KTEST_CASE(probe_locks_memory_the_agent_made),
	KTEST_CASE(kernel_mode_probe_of_user_buffer_charges_the_process),
	KTEST_CASE(probe_refusals_raise_and_leave_nothing_locked),
	KTEST_CASE(user_mapping_keeps_offset_and_is_user_no_execute),
	KTEST_CASE(no_write_makes_the_user_mapping_read_only),
	KTEST_CASE(requested_address_rules),
	KTEST_CASE(null_address_picks_a_free_64k_range),
	KTEST_CASE(wow64_process_gets_mappings_below_2g),
	KTEST_CASE(failures_raise_and_leave_nothing),
	KTEST_CASE(each_frame_keeps_one_memory_type),
	KTEST_CASE(whole_zeroed_pool_pages_map_and_count),
	KTEST_CASE(user_and_kernel_see_each_others_writes),
	KTEST_CASE(user_write_to_no_write_mapping_faults_0x7),
	KTEST_CASE(user_fetch_from_mapping_faults_0x15),
	KTEST_CASE(user_read_of_the_kernel_mapping_faults_0x5),
	KTEST_CASE(user_cannot_free_protect_unmap_or_overlap_the_mapping),
	KTEST_CASE(unmapped_range_can_be_requested_again),
	KTEST_CASE(two_processes_get_independent_mappings),
	KTEST_CASE(process_exit_tears_down_mappings_and_counters_return),
	KTEST_CASE(typed_pages_have_one_type_in_both_mappings),
	{ 0 }
};
KTEST_SUITE(mdl_user, mdl_user_cases, .init = mu_init, .exit = mu_exit);
