/*
 * Mappings of memory its caller could not write (mm/RULES.md decision 9): an MDL locked for
 * read over a page that its own mapping does not let the caller write (kernel .rodata, a
 * NoWrite view, a read-only user page) gets read-only mappings only, kernel and user, and
 * MmProtectMdlSystemAddress cannot make them writable.  A read lock of writable memory keeps
 * NT's writable system mapping.  A driver's write through such a mapping, with no __try, is
 * bug check 0xBE ATTEMPTED_WRITE_TO_READONLY_MEMORY (address, PTE, reserved, reserved).
 *
 * Rights are read from the real tables (tests/lib/pte.h), refusals proven by a real write
 * caught with its error code and CR2 (tests/lib/expect.h).
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/mdl.h"
#include "mm/pt.h"
#include "mm/uvm.h"

#define TAG 0x4F526D4Du /* 'MmRO' */

/* Two pages of kernel .rodata, page-aligned so the MDL covers nothing else. */
__attribute__((used, aligned(PAGE_SIZE))) static const uint8_t ro_table[2 * PAGE_SIZE] = { 0x5A, 0xA5 };

static PMDL read_locked(struct ktest *t, const void *va, ULONG len)
{
	PMDL m = IoAllocateMdl((PVOID)va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoReadAccess);
	return m;
}

static PVOID system_address(struct ktest *t, PMDL m)
{
	PVOID va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	return va;
}

/* Every page of [va, va + len) present, read-only, and a write to it refused with #PF 0x3. */
static void expect_read_only_mapping(struct ktest *t, uint64_t va, ULONG len)
{
	for (uint64_t p = ALIGN_DOWN(va, PAGE_SIZE); p < va + len; p += PAGE_SIZE) {
		struct mmt_rights r = mmt_rights_of(p);
		EXPECT_TRUE(t, r.present);
		EXPECT_FALSE(t, r.write);
		expect_write_refused(t, p < va ? va : p);
	}
}

static void read_lock_of_rodata_maps_read_only(struct ktest *t)
{
	ASSERT_FALSE(t, mmt_rights_of((uint64_t)ro_table).write); /* the source itself */
	PMDL m = read_locked(t, ro_table + 0x10, sizeof ro_table - 0x10);
	EXPECT_TRUE(t, m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	EXPECT_FALSE(t, m->MdlFlags & MDL_WRITE_OPERATION);
	uint8_t *va = system_address(t, m);
	EXPECT_EQ(t, va[0], 0);
	EXPECT_EQ(t, va[-0x10 + 1], 0xA5);
	expect_read_only_mapping(t, (uint64_t)va, m->ByteCount);
	EXPECT_EQ(t, ro_table[1], 0xA5);
	/* The mapping cannot be made writable again; other protections still work. */
	uint64_t pte = mmt_rights_of((uint64_t)va).leaf;
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READWRITE), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_EQ(t, mmt_rights_of((uint64_t)va).leaf, pte);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_NOACCESS), STATUS_SUCCESS);
	EXPECT_FALSE(t, mmt_rights_of((uint64_t)va).present); /* no access: not present */
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_READONLY), STATUS_SUCCESS);
	expect_read_only_mapping(t, (uint64_t)va, m->ByteCount);
	MmUnlockPages(m);
	EXPECT_FALSE(t, m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	IoFreeMdl(m);
}

/* A NoWrite system mapping of a writable pool buffer is itself a read-only source. */
static void read_lock_of_a_no_write_view_maps_read_only(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL a = read_locked(t, buf, 2 * PAGE_SIZE);
	EXPECT_FALSE(t, a->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	uint8_t *view = MmGetSystemAddressForMdlSafe(a, NormalPagePriority | MdlMappingNoWrite);
	ASSERT_TRUE(t, view != NULL);
	PMDL b = read_locked(t, view + 0x20, 0x1000);
	EXPECT_TRUE(t, b->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	uint8_t *va = system_address(t, b);
	expect_read_only_mapping(t, (uint64_t)va, b->ByteCount);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(b, PAGE_READWRITE), STATUS_INVALID_PAGE_PROTECTION);
	/* A partial MDL of it maps on its own, read-only too. */
	PMDL p = IoAllocateMdl(view + 0x20, 0x1000, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, p != NULL);
	MmUnmapLockedPages(va, b); /* so that the partial MDL makes a mapping of its own */
	IoBuildPartialMdl(b, p, view + 0x30, 0x40);
	EXPECT_TRUE(t, p->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	uint8_t *pva = system_address(t, p);
	expect_read_only_mapping(t, (uint64_t)pva, p->ByteCount);
	IoFreeMdl(p);
	MmUnlockPages(b);
	IoFreeMdl(b);
	MmUnlockPages(a);
	IoFreeMdl(a);
	ExFreePoolWithTag(buf, TAG);
}

/* NT's behaviour where the caller could write: a read lock of writable pool maps writable. */
static void read_lock_of_writable_memory_maps_writable(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = read_locked(t, buf + 8, 16);
	EXPECT_FALSE(t, m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	uint8_t *va = system_address(t, m);
	EXPECT_TRUE(t, mmt_rights_of((uint64_t)va).write);
	struct faultcap f;
	EXPECT_TRUE(t, faultcap_try_store8((uint64_t)va, 0x77, &f));
	EXPECT_EQ(t, buf[8], 0x77);
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, TAG);
}

/* A read-only user page locked for read by a UserMode probe: its system mapping and a user
 * mapping of the MDL are both read-only (in the process's own tables for the latter). */
static void read_lock_of_a_read_only_user_page_maps_read_only(struct ktest *t)
{
	KAPC_STATE apc;
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KeStackAttachProcess(p, &apc);
	PVOID base = NULL;
	SIZE_T size = 2 * PAGE_SIZE;
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY);
	PMDL m = st ? NULL : IoAllocateMdl(base, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	volatile NTSTATUS probe = STATUS_INVALID_PARAMETER, map = STATUS_INVALID_PARAMETER;
	volatile uint64_t uva = 0;
	if (m) {
		__try {
			MmProbeAndLockPages(m, UserMode, IoReadAccess);
			probe = STATUS_SUCCESS;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			probe = GetExceptionCode();
		}
	}
	if (probe == STATUS_SUCCESS) {
		EXPECT_TRUE(t, m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
		uint8_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
		EXPECT_TRUE(t, va != NULL);
		if (va)
			expect_read_only_mapping(t, (uint64_t)va, m->ByteCount);
		__try {
			uva = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
			map = STATUS_SUCCESS;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			map = GetExceptionCode();
		}
		EXPECT_EQ(t, map, STATUS_SUCCESS);
		for (uint64_t i = 0; map == STATUS_SUCCESS && i < 2; i++) {
			struct pt_query q;
			pt_query(&p->mm.root, uva + i * PAGE_SIZE, &q);
			EXPECT_TRUE(t, q.present && q.eff.user);
			EXPECT_FALSE(t, q.eff.write);
		}
		if (map == STATUS_SUCCESS)
			MmUnmapLockedPages((PVOID)uva, m);
		MmUnlockPages(m);
	}
	EXPECT_EQ(t, probe, STATUS_SUCCESS);
	if (m)
		IoFreeMdl(m);
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}

/* A driver writing through the read-only system mapping, with no __try: 0xBE with the
 * address written and its PTE; P3 and P4 (reserved) are 0. */
static void driver_write_through_a_read_only_mapping_is_0xbe(struct ktest *t)
{
	PMDL m = read_locked(t, ro_table, PAGE_SIZE);
	volatile uint8_t *va = system_address(t, m);
	ktest_expect_stop(t, ATTEMPTED_WRITE_TO_READONLY_MEMORY, (ULONG_PTR)(va + 0x40),
			  mmt_rights_of((uint64_t)va).leaf, 0, 0, KTEST_P_ALL);
	va[0x40] = 1;
}

static struct ktest_case mdl_readonly_cases[] = {
	KTEST_CASE(read_lock_of_rodata_maps_read_only),
	KTEST_CASE(read_lock_of_a_no_write_view_maps_read_only),
	KTEST_CASE(read_lock_of_writable_memory_maps_writable),
	KTEST_CASE(read_lock_of_a_read_only_user_page_maps_read_only),
	KTEST_DEATH_CASE(driver_write_through_a_read_only_mapping_is_0xbe, ATTEMPTED_WRITE_TO_READONLY_MEMORY),
	{ 0 }
};
KTEST_SUITE(mdl_readonly, mdl_readonly_cases);
