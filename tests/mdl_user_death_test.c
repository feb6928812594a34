/*
 * MDLs and user address spaces: the misuses that stop the machine (mm/mdl_user.c's header
 * lists the codes).  Each case boots on its own (mode=death) and must end in its bug check.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/expect.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/pool.h"
#include "mm/uvm.h"
#include "mm/verifier.h"

#define TAG 0x44556D4Du /* 'MmUD' */
#define P PAGE_SIZE

static PEPROCESS idle_agent(void)
{
	PEPROCESS p = agent_create_idle(0);
	if (!p)
		PANIC("mdl_user_death: no agent process");
	return p;
}

/* A page of zeroed nonpaged pool described by a nonpaged-pool MDL. */
static PMDL pool_mdl(ULONG bytes, POOL_FLAGS extra, ULONG mdl_bytes)
{
	void *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED | extra, bytes, TAG);
	PMDL m = buf ? IoAllocateMdl(buf, mdl_bytes, FALSE, FALSE, NULL) : NULL;
	if (!m)
		PANIC("mdl_user_death: out of pool");
	MmBuildMdlForNonPagedPool(m);
	return m;
}

static PMDL user_pages_mdl(void)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, hi, skip, P);
	if (!m)
		PANIC("mdl_user_death: no pages");
	return m;
}

/* A committed user buffer in p, locked by a UserMode probe (p attached). */
static PMDL locked_user_buffer(void)
{
	PVOID base = NULL;
	SIZE_T size = 2 * P;
	if (ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE))
		PANIC("mdl_user_death: no user memory");
	PMDL m = IoAllocateMdl(base, 2 * P, FALSE, FALSE, NULL);
	MmProbeAndLockPages(m, UserMode, IoWriteAccess);
	return m;
}

/* ---- locked pages --------------------------------------------------------------------- */

/* User rule U2 (mm/RULES.md): the process ends with pages a driver locked for it: 0x76 (0, process, 2). */
static void process_ends_with_locked_pages(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(false);
	KeStackAttachProcess(p, &apc);
	locked_user_buffer();
	KeUnstackDetachProcess(&apc);
	ktest_expect_stop(t, PROCESS_HAS_LOCKED_PAGES, 0, (ULONG_PTR)p, 2, 0, KTEST_P_ALL);
	PsDestroyProcess(p);
}

/* An unlock that would take more pages off the process than it holds: 0x76 (1, MDL, the
 * process's count, 0).  A second MDL claims the first one's pages for the same process,
 * marked locked by hand; its unlock takes the process's count to 0 first. */
static void unlock_of_more_pages_than_the_process_holds(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(false);
	KeStackAttachProcess(p, &apc);
	PMDL a = locked_user_buffer();
	PMDL b = IoAllocateMdl(MmGetMdlVirtualAddress(a), a->ByteCount, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, b != NULL);
	memcpy(MmGetMdlPfnArray(b), MmGetMdlPfnArray(a), mdl_page_count(a) * sizeof(PFN_NUMBER));
	b->MdlFlags |= MDL_PAGES_LOCKED;
	b->Process = a->Process;
	MmUnlockPages(b);
	expect_stop(t, PROCESS_HAS_LOCKED_PAGES, 1, (ULONG_PTR)a, 0, 0);
	MmUnlockPages(a);
}

/* The same with locked-page tracking on: 0xCB (the lock-tracking record, 0, MDL, 2). */
static void process_ends_with_tracked_locked_pages(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(true);
	KeStackAttachProcess(p, &apc);
	PMDL m = locked_user_buffer();
	KeUnstackDetachProcess(&apc);
	ASSERT_NE(t, mdl_user_tracking_record(m), 0);
	expect_stop(t, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS, mdl_user_tracking_record(m), 0, (ULONG_PTR)m, 2);
	PsDestroyProcess(p);
}

/* Tracking on, one lock released and one left: the record left is the one named. */
static void tracked_unlock_forgets_its_record(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(true);
	KeStackAttachProcess(p, &apc);
	PMDL released = locked_user_buffer(), left = locked_user_buffer();
	MmUnlockPages(released);
	KeUnstackDetachProcess(&apc);
	EXPECT_EQ(t, mdl_user_tracking_record(released), 0);
	ASSERT_NE(t, mdl_user_tracking_record(left), 0);
	expect_stop(t, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS, mdl_user_tracking_record(left), 0, (ULONG_PTR)left, 2);
	PsDestroyProcess(p);
}

/* Without the verifier, IoFreeMdl of a locked user buffer's MDL leaves the lock charged to the
 * process (mm/RULES.md rule 17): it surfaces when the process ends, 0x76 (0, process, 2). */
static void freed_locked_mdl_surfaces_at_process_end(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(false);
	KeStackAttachProcess(p, &apc);
	PMDL m = locked_user_buffer();
	verifier_set_flags(0);
	IoFreeMdl(m);
	KeUnstackDetachProcess(&apc);
	ktest_expect_stop(t, PROCESS_HAS_LOCKED_PAGES, 0, (ULONG_PTR)p, 2, 0, KTEST_P_ALL);
	PsDestroyProcess(p);
}

/* The same with tracking: 0xCB (the lock-tracking record, 0, the freed MDL's address, 2). */
static void freed_locked_mdl_surfaces_as_tracked_lock(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	mdl_user_track_locked_pages(true);
	KeStackAttachProcess(p, &apc);
	PMDL m = locked_user_buffer();
	ULONG_PTR record = mdl_user_tracking_record(m);
	ASSERT_NE(t, record, 0);
	verifier_set_flags(0);
	IoFreeMdl(m);
	KeUnstackDetachProcess(&apc);
	ktest_expect_stop(t, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS, record, 0, (ULONG_PTR)m, 2, KTEST_P_ALL);
	PsDestroyProcess(p);
}

/* User memory is pageable: a UserMode probe above APC_LEVEL is 0xC4/0x70. */
static void user_probe_above_apc_level(struct ktest *t)
{
	KAPC_STATE apc;
	KIRQL old;
	PEPROCESS p = idle_agent();
	KeStackAttachProcess(p, &apc);
	PVOID base = NULL;
	SIZE_T size = P;
	ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PMDL m = IoAllocateMdl(base, P, FALSE, FALSE, NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70, DISPATCH_LEVEL, (ULONG_PTR)m,
			  UserMode, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmProbeAndLockPages(m, UserMode, IoReadAccess);
}

/* MmUnlockPages of an MDL still mapped into a user space: 0xC4/0x2005. */
static void unlock_of_user_mapped_mdl(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = idle_agent();
	KeStackAttachProcess(p, &apc);
	PMDL m = locked_user_buffer();
	PVOID va = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005, (ULONG_PTR)m, (ULONG_PTR)va, (ULONG_PTR)p,
			  KTEST_P_ALL);
	MmUnlockPages(m);
}

/* The free routines release no user mapping either: 0xC4/0x2005 (MDL, 0, 0). */
static void free_mdl_of_user_mapped_mdl(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = pool_mdl(P, 0, P);
	KeStackAttachProcess(idle_agent(), &apc);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE, NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005, (ULONG_PTR)m, 0, 0);
	IoFreeMdl(m);
}

static void free_pages_of_user_mapped_mdl(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = user_pages_mdl();
	KeStackAttachProcess(idle_agent(), &apc);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE, NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005, (ULONG_PTR)m, 0, 0);
	MmFreePagesFromMdl(m);
}

/* ---- mapping -------------------------------------------------------------------------- */

static void map_user_above_apc_level(struct ktest *t)
{
	KAPC_STATE apc;
	KIRQL old;
	PMDL m = user_pages_mdl();
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x77, DISPATCH_LEVEL, (ULONG_PTR)m,
			  UserMode, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

static void map_locked_pages_user_above_apc_level(struct ktest *t)
{
	KAPC_STATE apc;
	KIRQL old;
	PMDL m = user_pages_mdl();
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x75, DISPATCH_LEVEL, (ULONG_PTR)m,
			  UserMode, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmMapLockedPages(m, UserMode);
}

/* An MDL whose pages are not locked cannot be mapped: 0xC4/0xB3. */
static void map_user_of_unlocked_mdl(struct ktest *t)
{
	KAPC_STATE apc;
	static uint8_t buf[P] __attribute__((aligned(P)));
	PMDL m = IoAllocateMdl(buf, P, FALSE, FALSE, NULL);
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_PAGES_LOCKED,
			  KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* ---- pool mapped to a user (user rule U4, mm/RULES.md) ------------------------------------------------------ */

/* Freeing pool still mapped into a user space: 0xC4/0x2003 (mm/pool.c). */
static void pool_freed_while_user_mapped(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = pool_mdl(P, 0, P);
	KeStackAttachProcess(idle_agent(), &apc);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE, NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	/* mdlab's 0x2003: the address freed, the mappings of its first page, 0. */
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_POOL_FREED_WHILE_USER_MAPPED,
		    (ULONG_PTR)m->MappedSystemVa, 1, 0);
	ExFreePoolWithTag(m->MappedSystemVa, TAG);
}

/* A small allocation shares its page with others: 0xC4/0x2004, reason 1. */
static void small_pool_allocation_mapped_to_user(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = pool_mdl(64, 0, 64);
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004, (ULONG_PTR)m, (ULONG_PTR)MmGetMdlVirtualAddress(m), 1,
			  KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* Part of a page of a whole-page allocation: 0xC4/0x2004, reason 1. */
static void partial_pool_page_mapped_to_user(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = pool_mdl(2 * P, 0, P + 100);
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004, (ULONG_PTR)m, (ULONG_PTR)MmGetMdlVirtualAddress(m), 1,
			  KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* Uninitialized pool would show the user old kernel data: 0xC4/0x2004, reason 2. */
static void uninitialized_pool_mapped_to_user(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = pool_mdl(P, POOL_FLAG_UNINITIALIZED, P);
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004, (ULONG_PTR)m, (ULONG_PTR)m->StartVa, 2,
			  KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* Nonpaged memory that is not pool (the kernel's .data): 0xC4/0x2004, reason 3. */
static void kernel_image_memory_mapped_to_user(struct ktest *t)
{
	KAPC_STATE apc;
	static uint8_t data[P] __attribute__((aligned(P)));
	PMDL m = IoAllocateMdl(data, P, FALSE, FALSE, NULL);
	MmBuildMdlForNonPagedPool(m);
	KeStackAttachProcess(idle_agent(), &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004, (ULONG_PTR)m, (ULONG_PTR)MmGetMdlVirtualAddress(m), 3,
			  KTEST_P_ALL);
	MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
}

/* ---- unmapping (user rule U7, mm/RULES.md) ----------------------------------------------------------------- */

static void unmap_user_above_apc_level(struct ktest *t)
{
	KAPC_STATE apc;
	KIRQL old;
	PMDL m = user_pages_mdl();
	KeStackAttachProcess(idle_agent(), &apc);
	PVOID va = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7A, DISPATCH_LEVEL, (ULONG_PTR)va, (ULONG_PTR)m,
			  KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmUnmapLockedPages(va, m);
}

/* The mapping is A's; B (attached) names an address that means nothing there: 0xB9. */
static void unmap_user_from_another_process(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = user_pages_mdl();
	PEPROCESS a = idle_agent(), b = idle_agent();
	KeStackAttachProcess(a, &apc);
	PVOID va = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE,
						NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	KeStackAttachProcess(b, &apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9, (ULONG_PTR)va, (ULONG_PTR)m, 0, KTEST_P_ALL);
	MmUnmapLockedPages(va, m);
}

/* Unattached there is no user address space at all: 0xB9. */
static void unmap_user_with_no_process(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = user_pages_mdl();
	KeStackAttachProcess(idle_agent(), &apc);
	PVOID va = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE,
						NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9, (ULONG_PTR)va, (ULONG_PTR)m, 0, KTEST_P_ALL);
	MmUnmapLockedPages(va, m);
}

/* In the right process, an address inside the mapping but not the one returned: 0xB9. */
static void unmap_user_at_the_wrong_address(struct ktest *t)
{
	KAPC_STATE apc;
	PMDL m = user_pages_mdl();
	PEPROCESS p = idle_agent();
	KeStackAttachProcess(p, &apc);
	PVOID va = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)scratch_uva(P, 0), FALSE,
						NormalPagePriority);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9, (ULONG_PTR)va + 8, (ULONG_PTR)m, 0, KTEST_P_ALL);
	MmUnmapLockedPages((PCHAR)va + 8, m);
}

static struct ktest_case mdl_user_death_cases[] = {
	KTEST_DEATH_CASE_P1(process_ends_with_locked_pages, PROCESS_HAS_LOCKED_PAGES, 0),
	KTEST_DEATH_CASE_P1(unlock_of_more_pages_than_the_process_holds, PROCESS_HAS_LOCKED_PAGES, 1),
	KTEST_DEATH_CASE(process_ends_with_tracked_locked_pages, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS),
	KTEST_DEATH_CASE(tracked_unlock_forgets_its_record, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS),
	KTEST_DEATH_CASE_P1(freed_locked_mdl_surfaces_at_process_end, PROCESS_HAS_LOCKED_PAGES, 0),
	KTEST_DEATH_CASE(freed_locked_mdl_surfaces_as_tracked_lock, DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS),
	KTEST_DEATH_CASE_P1(user_probe_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70),
	KTEST_DEATH_CASE_P1(unlock_of_user_mapped_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005),
	KTEST_DEATH_CASE_P1(free_mdl_of_user_mapped_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005),
	KTEST_DEATH_CASE_P1(free_pages_of_user_mapped_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2005),
	KTEST_DEATH_CASE_P1(map_user_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x77),
	KTEST_DEATH_CASE_P1(map_locked_pages_user_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x75),
	KTEST_DEATH_CASE_P1(map_user_of_unlocked_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	KTEST_DEATH_CASE_P1(pool_freed_while_user_mapped, DRIVER_VERIFIER_DETECTED_VIOLATION,
			    VERIFIER_POOL_FREED_WHILE_USER_MAPPED),
	KTEST_DEATH_CASE_P1(small_pool_allocation_mapped_to_user, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(partial_pool_page_mapped_to_user, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(uninitialized_pool_mapped_to_user, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(kernel_image_memory_mapped_to_user, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2004),
	KTEST_DEATH_CASE_P1(unmap_user_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x7A),
	KTEST_DEATH_CASE_P1(unmap_user_from_another_process, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9),
	KTEST_DEATH_CASE_P1(unmap_user_with_no_process, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9),
	KTEST_DEATH_CASE_P1(unmap_user_at_the_wrong_address, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB9),
	{ 0 }
};
KTEST_SUITE(mdl_user_death, mdl_user_death_cases);
