/* MmMapLockedPagesSpecifyCache / MmGetSystemAddressForMdlSafe / MmUnmapLockedPages, kernel
 * side: the mapping's address, flags and PTEs, read from the real tables. */
#include "tests/ktest.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x7453644Du /* 'MdSt' */

/* A locked MDL over a fresh pool buffer at an odd offset. */
struct locked_buf {
	uint8_t *buf;
	PMDL mdl;
};

static void lock_buffer(struct ktest *t, struct locked_buf *lb, SIZE_T size, ULONG offset, ULONG len)
{
	lb->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG);
	ASSERT_TRUE(t, lb->buf != NULL);
	lb->mdl = IoAllocateMdl(lb->buf + offset, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, lb->mdl != NULL);
	MmProbeAndLockPages(lb->mdl, KernelMode, IoWriteAccess);
}

static void release_buffer(struct locked_buf *lb)
{
	MmUnlockPages(lb->mdl);
	IoFreeMdl(lb->mdl);
	ExFreePoolWithTag(lb->buf, TAG);
}

static void mapping_keeps_byte_offset_and_sets_flags(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0x123, 2 * PAGE_SIZE);
	PMDL m = lb.mdl;
	PVOID va = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(va), 0x123);
	EXPECT_TRUE(t, va == m->MappedSystemVa);
	EXPECT_TRUE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, m->ByteCount, 2 * PAGE_SIZE);
	EXPECT_TRUE(t, MmGetMdlVirtualAddress(m) == lb.buf + 0x123);
	EXPECT_TRUE(t, syspte_contains((uint64_t)va));
	/* The PTEs, read from the tables: the MDL's frames, NX, writable, WB. */
	for (ULONG i = 0; i < 3; i++) {
		struct pt_query q;
		pt_query(&kernel_root, (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE, &q);
		ASSERT_TRUE(t, q.present);
		EXPECT_EQ(t, q.pa >> PAGE_SHIFT, MmGetMdlPfnArray(m)[i]);
		EXPECT_FALSE(t, q.eff.exec);
		EXPECT_TRUE(t, q.eff.write);
		EXPECT_EQ(t, q.eff.type, MT_WB);
	}
	/* The same bytes through both addresses. */
	((volatile uint8_t *)va)[5] = 0x77;
	EXPECT_EQ(t, lb.buf[0x123 + 5], 0x77);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == va);
	MmUnmapLockedPages(va, m);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, m->ByteCount, 2 * PAGE_SIZE);
	struct pt_query q;
	pt_query(&kernel_root, (uint64_t)va, &q);
	EXPECT_FALSE(t, q.present);
	release_buffer(&lb);
}

static void unlock_releases_the_mapping(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, PAGE_SIZE, 8, 100);
	PVOID va = MmGetSystemAddressForMdlSafe(lb.mdl, NormalPagePriority | MdlMappingNoExecute);
	ASSERT_TRUE(t, va != NULL);
	release_buffer(&lb); /* MmUnlockPages releases it; the accounting proves the PTEs came back */
	struct pt_query q;
	pt_query(&kernel_root, (uint64_t)va, &q);
	EXPECT_FALSE(t, q.present);
}

static struct ktest_case mdl_map_cases[] = {
	KTEST_CASE(mapping_keeps_byte_offset_and_sets_flags),
	KTEST_CASE(unlock_releases_the_mapping),
	{ 0 }
};
KTEST_SUITE(mdl_map, mdl_map_cases);
