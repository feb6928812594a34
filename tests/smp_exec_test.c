/*
 * W^X across mappings on two CPUs (mm/RULES.md decision 3, "Locks": the executable-mapping
 * lock and the frames' executable-mapping counts).  Each case holds one CPU inside a window
 * of one side (mdl_test_exec_window: between its check and its PTE write) while the other CPU
 * does the other side on the same frame:
 *
 *   - MmProtectMdlSystemAddress(PAGE_EXECUTE_READ) held past its checks, before its PTEs
 *     become executable, while the other CPU maps the frame writable — in system PTEs, in a
 *     reserved mapping, to ring 3 — or makes a user page of it writable: each is refused,
 *     since the counts were raised before the checks;
 *   - the same held while the other CPU ends another executable mapping of the frame: the end
 *     step waits for the lock, and the alias stays read-only;
 *   - an end step held after the frame's count reached 0, before its alias is writable again,
 *     while the other CPU makes a second mapping of the frame executable: that waits for the
 *     lock, and finds the alias read-only again after;
 *   - a writable system, reserved or user mapping held past its first check, while the other
 *     CPU makes the frame executable: its second look (the PTEs, a fence, the counts; for a
 *     user mapping the counts under the process's lock) refuses it.
 *
 * The verdict is the page tables' (tests/lib/pte.h, the W^X audit over the kernel's tables
 * and every user half): the frame is never executable in ring 0 while a mapping can write it,
 * and a real write through its direct-map alias faults.  The hold ends when the other CPU is
 * done or is seen spinning for the executable-mapping lock (kcpu.klock_waiting), never on
 * time (a bound of SMP_WAIT_MS only turns a hang into a failure).  On one CPU each case is
 * skipped.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/wait.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/seh.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/audit.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/mmproc.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"

#define TAG 0x78456D53u /* 'SmEx' */

/* One case's two sides: the window held on this CPU (where, for mdl or pfn when not 0), and
 * what the other CPU (cpu) does in it, attached to p when p is set. */
static struct {
	enum mdl_exec_window where;
	PMDL mdl;
	pfn_t pfn;
	unsigned cpu;
	PEPROCESS p;
	void (*other)(void);
	volatile uint32_t in_window, started, done;
	uint32_t entered;
	bool saw_spin;
	/* what the other side got */
	NTSTATUS st;
	PVOID kva, rva;
	uint64_t uva;
} h;

/* The frame both MDLs name: a's (MmAllocatePagesForMdl, mapped in system PTEs at sys), and
 * b's and c's, built by hand over the same frame as a driver may. */
static struct {
	PMDL a, b, c;
	uint8_t *sys;
	pfn_t pfn;
	PVOID res; /* a reservation of one page */
} f;

static bool other_started(void *unused) { (void)unused; return __atomic_load_n(&h.started, __ATOMIC_ACQUIRE) != 0; }
static bool other_held_or_done(void *unused)
{
	(void)unused;
	return kcpus[h.cpu].klock_waiting == mdl_test_exec_lock() || __atomic_load_n(&h.done, __ATOMIC_ACQUIRE);
}

/* The window, on this CPU: the other side runs now; it ends when that is done or spins for
 * the executable-mapping lock this side may hold. */
static void window(enum mdl_exec_window where, PMDL m, PFN_NUMBER pfn)
{
	if (where != h.where || smp_this_cpu() == h.cpu || (h.mdl && m != h.mdl) || (h.pfn && pfn != h.pfn))
		return;
	if (__atomic_exchange_n(&h.entered, 1, __ATOMIC_ACQ_REL))
		return; /* once */
	__atomic_store_n(&h.in_window, 1, __ATOMIC_RELEASE);
	if (!mmt_wait_until(other_started, NULL) || !mmt_wait_until(other_held_or_done, NULL))
		return;
	h.saw_spin = !__atomic_load_n(&h.done, __ATOMIC_ACQUIRE);
}

static void other_side(void *arg)
{
	(void)arg;
	KAPC_STATE apc;
	if (h.p)
		KeStackAttachProcess(h.p, &apc);
	if (smp_wait_flag(&h.in_window)) {
		__atomic_store_n(&h.started, 1, __ATOMIC_RELEASE);
		h.other();
		__atomic_store_n(&h.done, 1, __ATOMIC_RELEASE);
	}
	if (h.p)
		KeUnstackDetachProcess(&apc);
}

/* Run mine() on this CPU with the window armed and the other side started on the last CPU;
 * false when the other CPU could not be had or did not finish. */
static bool run_sides(struct ktest *t, enum mdl_exec_window where, PMDL m, pfn_t pfn, PEPROCESS p,
		      void (*other)(void), void (*mine)(void))
{
	memset(&h, 0, sizeof h);
	h.where = where;
	h.mdl = m;
	h.pfn = pfn;
	h.p = p;
	h.other = other;
	h.cpu = smp_cpus_online() - 1;
	mdl_test_exec_window = window;
	bool started = smp_work_start(h.cpu, other_side, NULL);
	if (started)
		mine();
	mdl_test_exec_window = NULL;
	bool ended = started && smp_work_wait(h.cpu);
	EXPECT_TRUE(t, started && ended);
	EXPECT_TRUE(t, h.entered);
	EXPECT_TRUE(t, h.done);
	return started && ended;
}

/* An MDL over f's frame built by hand, locked as a driver may mark it. */
static PMDL mdl_over_frame(void)
{
	PMDL m = IoAllocateMdl(NULL, PAGE_SIZE, FALSE, FALSE, NULL);
	if (m) {
		MmGetMdlPfnArray(m)[0] = f.pfn;
		m->MdlFlags |= MDL_PAGES_LOCKED;
	}
	return m;
}

static bool frame_setup(struct ktest *t)
{
	memset(&f, 0, sizeof f);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	f.a = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	f.sys = f.a ? MmGetSystemAddressForMdlSafe(f.a, NormalPagePriority) : NULL;
	if (f.sys) {
		f.pfn = MmGetMdlPfnArray(f.a)[0];
		f.b = mdl_over_frame();
		f.c = mdl_over_frame();
		f.res = MmAllocateMappingAddress(PAGE_SIZE, TAG);
	}
	bool ok = f.sys && f.b && f.c && f.res;
	EXPECT_TRUE(t, ok);
	return ok;
}

static void frame_teardown(void)
{
	for (PMDL *m = &f.b; m <= &f.c; m++)
		if (*m) {
			(*m)->MdlFlags &= ~MDL_PAGES_LOCKED; /* never really locked */
			IoFreeMdl(*m);
		}
	if (f.res)
		MmFreeMappingAddress(f.res, TAG);
	if (f.a) {
		MmFreePagesFromMdl(f.a); /* releases its mapping */
		ExFreePool(f.a);
	}
}

static uint64_t alias(void) { return (uint64_t)pfn_to_virt(f.pfn); }

/* The verdict from the page tables: the frame is executable in ring 0 at exec_va, its
 * direct-map alias is read-only (a real write faults P|W there), and the audit finds no
 * frame executable in ring 0 that any mapping, ring 0 or ring 3, can write. */
static void expect_executed_and_held(struct ktest *t, uint64_t exec_va)
{
	struct mmt_rights x = mmt_rights_of(exec_va), al = mmt_rights_of(alias());
	EXPECT_TRUE(t, x.present && !x.nx && !x.write);
	EXPECT_EQ(t, x.pa >> PAGE_SHIFT, f.pfn);
	EXPECT_TRUE(t, al.present && !al.write);
	expect_write_refused(t, alias() + 0x40);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
}

/* A UserMode mapping of m in the current process, or the exception's status. */
static NTSTATUS try_map_user(PMDL m, uint64_t *uva)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile uint64_t got = 0;
	__try {
		got = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*uva = got;
	return st;
}

static NTSTATUS exec_status; /* this CPU's MmProtectMdlSystemAddress */

static void protect_a_execute(void) { exec_status = MmProtectMdlSystemAddress(f.a, PAGE_EXECUTE_READ); }
static void protect_b_execute(void) { exec_status = MmProtectMdlSystemAddress(f.b, PAGE_EXECUTE_READ); }
static void other_protects_a_execute(void) { h.st = MmProtectMdlSystemAddress(f.a, PAGE_EXECUTE_READ); }
static void other_protects_b_execute(void) { h.st = MmProtectMdlSystemAddress(f.b, PAGE_EXECUTE_READ); }

/* ---- an execute held past its checks ------------------------------------------------ */

static void other_maps_writable_in_ring_0(void)
{
	h.kva = MmMapLockedPagesSpecifyCache(f.b, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	h.rva = MmMapLockedPagesWithReservedMapping(f.res, TAG, f.c, MmCached);
}

/* The counts are raised before the checks: a writable system mapping and a writable reserved
 * mapping made while the execute is past its checks see them, and are refused (NULL). */
static void writable_ring_0_mappings_during_an_execute_are_refused(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	uint64_t sysptes = mmt_free_sysptes();
	if (frame_setup(t) && run_sides(t, MDL_EXEC_WINDOW_BEGIN, f.a, 0, NULL, other_maps_writable_in_ring_0,
					protect_a_execute)) {
		EXPECT_EQ(t, exec_status, STATUS_SUCCESS);
		EXPECT_TRUE(t, h.kva == NULL);
		EXPECT_TRUE(t, h.rva == NULL);
		EXPECT_FALSE(t, f.b->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)f.res));
		expect_executed_and_held(t, (uint64_t)f.sys);
	}
	if (h.kva)
		MmUnmapLockedPages(h.kva, f.b);
	if (h.rva)
		MmUnmapReservedMapping(f.res, TAG, f.c);
	frame_teardown();
	EXPECT_EQ(t, mmt_free_sysptes(), sysptes);
}

static void other_maps_writable_to_ring_3(void) { h.st = try_map_user(f.b, &h.uva); }

/* A writable UserMode mapping made then: STATUS_INVALID_PAGE_PROTECTION, nothing mapped. */
static void a_writable_user_mapping_during_an_execute_is_refused(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	if (frame_setup(t) && run_sides(t, MDL_EXEC_WINDOW_BEGIN, f.a, 0, p, other_maps_writable_to_ring_3,
					protect_a_execute)) {
		EXPECT_EQ(t, exec_status, STATUS_SUCCESS);
		EXPECT_EQ(t, h.st, STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mdl_user_mapping_count(f.b), 0);
		expect_executed_and_held(t, (uint64_t)f.sys);
	}
	if (h.uva) {
		KAPC_STATE apc;
		KeStackAttachProcess(p, &apc);
		MmUnmapLockedPages((PVOID)h.uva, f.b);
		KeUnstackDetachProcess(&apc);
	}
	frame_teardown();
	PsDestroyProcess(p);
}

static const uint64_t user_buf = 0x30000000ul;

static PMDL user_mdl;

static void other_makes_the_user_page_writable(void)
{
	PVOID b = (PVOID)user_buf;
	SIZE_T size = PAGE_SIZE;
	ULONG old = 0;
	h.st = ZwProtectVirtualMemory(NtCurrentProcess(), &b, &size, PAGE_READWRITE, &old);
}

static void protect_user_mdl_execute(void) { exec_status = MmProtectMdlSystemAddress(user_mdl, PAGE_EXECUTE_READ); }

/* A locked read-only user page whose system mapping is becoming executable, made
 * PAGE_READWRITE by its process then: STATUS_INVALID_PAGE_PROTECTION, the user PTE stays
 * read-only. */
static void a_user_page_made_writable_during_an_execute_is_refused(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	user_mdl = agent_lock_user_page(t, user_buf, PAGE_READONLY, IoReadAccess);
	uint8_t *sys = user_mdl ? MmGetSystemAddressForMdlSafe(user_mdl, NormalPagePriority) : NULL;
	KeUnstackDetachProcess(&apc);
	EXPECT_TRUE(t, sys != NULL);
	if (sys && run_sides(t, MDL_EXEC_WINDOW_BEGIN, user_mdl, 0, p, other_makes_the_user_page_writable,
			     protect_user_mdl_execute)) {
		f.pfn = MmGetMdlPfnArray(user_mdl)[0];
		EXPECT_EQ(t, exec_status, STATUS_SUCCESS);
		EXPECT_EQ(t, h.st, STATUS_INVALID_PAGE_PROTECTION);
		struct mmt_rights u = mmt_rights_in(&p->mm.root, user_buf);
		EXPECT_TRUE(t, u.present && u.user && !u.write);
		EXPECT_EQ(t, u.pa >> PAGE_SHIFT, f.pfn);
		struct mmt_rights x = mmt_rights_of((uint64_t)sys);
		EXPECT_TRUE(t, x.present && !x.nx);
		EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);
	}
	KeStackAttachProcess(p, &apc);
	if (user_mdl) {
		MmUnlockPages(user_mdl); /* releases the system mapping first */
		IoFreeMdl(user_mdl);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

static uint8_t *sys_b;

static void other_unmaps_a(void) { MmUnmapLockedPages(f.sys, f.a); }

/* Two executable mappings of the frame: the end of the first (an unmap on the other CPU)
 * while the second is past its checks waits for the lock, and the alias stays read-only. */
static void an_unmap_during_an_execute_keeps_the_alias_read_only(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	if (frame_setup(t)) {
		EXPECT_EQ(t, MmProtectMdlSystemAddress(f.a, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		sys_b = MmMapLockedPagesSpecifyCache(f.b, KernelMode, MmCached, NULL, FALSE,
						     NormalPagePriority | MdlMappingNoWrite);
		EXPECT_TRUE(t, sys_b != NULL);
		if (sys_b && run_sides(t, MDL_EXEC_WINDOW_BEGIN, f.b, 0, NULL, other_unmaps_a, protect_b_execute)) {
			EXPECT_EQ(t, exec_status, STATUS_SUCCESS);
			EXPECT_TRUE(t, h.saw_spin); /* the unmap waited for the lock */
			EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)f.sys));
			expect_executed_and_held(t, (uint64_t)sys_b);
		}
		if (sys_b)
			MmUnmapLockedPages(sys_b, f.b);
		EXPECT_TRUE(t, mmt_rights_of(alias()).write); /* the last one ended */
		if (f.a->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
			MmUnmapLockedPages(f.sys, f.a);
	}
	frame_teardown();
}

/* ---- an end step held before the alias is writable again ---------------------------- */

static void unmap_a(void) { MmUnmapLockedPages(f.sys, f.a); }

/* The frame's one executable mapping ends on this CPU: its count is 0, its alias about to be
 * writable again, when the other CPU makes a second mapping of it executable.  That waits for
 * the lock, so it finds the alias writable and makes it read-only again. */
static void an_execute_during_an_end_step_keeps_the_alias_read_only(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	if (frame_setup(t)) {
		EXPECT_EQ(t, MmProtectMdlSystemAddress(f.a, PAGE_EXECUTE_READ), STATUS_SUCCESS);
		sys_b = MmMapLockedPagesSpecifyCache(f.b, KernelMode, MmCached, NULL, FALSE,
						     NormalPagePriority | MdlMappingNoWrite);
		EXPECT_TRUE(t, sys_b != NULL);
		if (sys_b && run_sides(t, MDL_EXEC_WINDOW_END, NULL, f.pfn, NULL, other_protects_b_execute, unmap_a)) {
			EXPECT_EQ(t, h.st, STATUS_SUCCESS);
			EXPECT_TRUE(t, h.saw_spin); /* the execute waited for the lock */
			EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)f.sys));
			expect_executed_and_held(t, (uint64_t)sys_b);
		}
		if (sys_b)
			MmUnmapLockedPages(sys_b, f.b);
		EXPECT_TRUE(t, mmt_rights_of(alias()).write);
		if (f.a->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
			MmUnmapLockedPages(f.sys, f.a);
	}
	frame_teardown();
}

/* ---- a writable mapping held past its first check ----------------------------------- */

static PVOID mine_kva;

static void map_b_writable(void)
{
	mine_kva = MmMapLockedPagesSpecifyCache(f.b, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* A writable system mapping past its check (no count raised yet) while the other CPU makes
 * the frame executable: the PTE write, the fence, the counts — NULL, no PTE kept. */
static void a_writable_mapping_held_in_its_window_sees_the_execute(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	mine_kva = NULL;
	uint64_t sysptes = 0;
	if (frame_setup(t)) {
		sysptes = mmt_free_sysptes();
		if (run_sides(t, MDL_EXEC_WINDOW_MAP, f.b, 0, NULL, other_protects_a_execute, map_b_writable)) {
			EXPECT_EQ(t, h.st, STATUS_SUCCESS);
			EXPECT_TRUE(t, mine_kva == NULL);
			EXPECT_FALSE(t, f.b->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
			EXPECT_EQ(t, mmt_free_sysptes(), sysptes);
			expect_executed_and_held(t, (uint64_t)f.sys);
		}
		if (mine_kva)
			MmUnmapLockedPages(mine_kva, f.b);
	}
	frame_teardown();
}

static void map_c_reserved(void) { mine_kva = MmMapLockedPagesWithReservedMapping(f.res, TAG, f.c, MmCached); }

/* The same for a reserved mapping, held under the reservations' lock. */
static void a_reserved_mapping_held_in_its_window_sees_the_execute(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	mine_kva = NULL;
	if (frame_setup(t) && run_sides(t, MDL_EXEC_WINDOW_MAP, f.c, 0, NULL, other_protects_a_execute, map_c_reserved)) {
		EXPECT_EQ(t, h.st, STATUS_SUCCESS);
		EXPECT_TRUE(t, mine_kva == NULL);
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)f.res));
		expect_executed_and_held(t, (uint64_t)f.sys);
	}
	if (mine_kva)
		MmUnmapReservedMapping(f.res, TAG, f.c);
	frame_teardown();
}

static NTSTATUS mine_status;
static uint64_t mine_uva;

static void map_b_to_ring_3(void) { mine_status = try_map_user(f.b, &mine_uva); }

/* A writable UserMode mapping past its first check, before the process's lock, while the
 * other CPU makes the frame executable: the check under the lock raises
 * STATUS_INVALID_PAGE_PROTECTION, nothing mapped. */
static void a_user_mapping_held_in_its_window_sees_the_execute(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs two CPUs");
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	mine_uva = 0;
	mine_status = STATUS_UNSUCCESSFUL;
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	if (frame_setup(t) && run_sides(t, MDL_EXEC_WINDOW_USER_MAP, f.b, 0, NULL, other_protects_a_execute,
					map_b_to_ring_3)) {
		EXPECT_EQ(t, h.st, STATUS_SUCCESS);
		EXPECT_EQ(t, mine_status, STATUS_INVALID_PAGE_PROTECTION);
		EXPECT_EQ(t, mdl_user_mapping_count(f.b), 0);
		expect_executed_and_held(t, (uint64_t)f.sys);
	}
	if (mine_uva)
		MmUnmapLockedPages((PVOID)mine_uva, f.b);
	frame_teardown();
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

static struct ktest_case smp_exec_cases[] = {
	KTEST_CASE(writable_ring_0_mappings_during_an_execute_are_refused),
	KTEST_CASE(a_writable_user_mapping_during_an_execute_is_refused),
	KTEST_CASE(a_user_page_made_writable_during_an_execute_is_refused),
	KTEST_CASE(an_unmap_during_an_execute_keeps_the_alias_read_only),
	KTEST_CASE(an_execute_during_an_end_step_keeps_the_alias_read_only),
	KTEST_CASE(a_writable_mapping_held_in_its_window_sees_the_execute),
	KTEST_CASE(a_reserved_mapping_held_in_its_window_sees_the_execute),
	KTEST_CASE(a_user_mapping_held_in_its_window_sees_the_execute),
	{ 0 },
};

KTEST_SUITE(smp_exec, smp_exec_cases);
