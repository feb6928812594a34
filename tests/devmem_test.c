/*
 * Device memory (mm/devmem.c; mm/RULES.md device-memory rules D1-D4): non-cached and contiguous
 * allocations, I/O-space mappings, the physical-address queries, and their misuse.
 *
 * Every mapping is proven on the kernel's real tables with the tests' own decoding
 * (tests/lib/pte.h): present, writable or not, supervisor, NX, the frame, the memory type
 * from the leaf's PAT/PCD/PWT bits looked up in IA32_PAT read by RDMSR, the direct-map
 * alias's type, the guard PTE; a use after free is a real #PF, caught.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "mm/pfn.h"
#include "mm/verifier.h"

#define TAG 0x76654454u /* 'TDev' */
#define P PAGE_SIZE

static const PHYSICAL_ADDRESS no_limit = { .QuadPart = -1 }, zero = { .QuadPart = 0 };

/* Every page of [va, va + pages) is mapped supervisor, no-execute, writable as asked, with
 * the encoding `enc`, its direct-map alias too when it is RAM; returns the first frame. */
static pfn_t expect_system_pages(struct ktest *t, uint64_t va, uint64_t pages, bool write, unsigned enc)
{
	for (uint64_t i = 0; i < pages; i++) {
		struct mmt_rights r;
		EXPECT_EQ(t, mmt_encoding_at(va + i * P, &r), enc);
		EXPECT_TRUE(t, r.present && !r.user && r.nx && r.level == 1);
		EXPECT_EQ(t, r.write, write);
		pfn_t pfn = mmt_frame_of(va + i * P);
		if (pfn_is_ram(pfn))
			EXPECT_EQ(t, mmt_alias_encoding(pfn, NULL), enc);
	}
	return mmt_frame_of(va);
}

/* A read of va faults not-present, CR2 va: nothing maps it any more. */
static void expect_gone(struct ktest *t, uint64_t va)
{
	struct faultcap f;
	uint8_t v;
	EXPECT_FALSE(t, faultcap_try_load8(va, &v, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, va);
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- device-memory rule D1: MmAllocateNonCachedMemory ------------------------------- */

static void noncached_memory_is_zeroed_uncached_and_guarded(struct ktest *t)
{
	uint64_t bytes = 3 * P - 100;
	uint8_t *k = MmAllocateNonCachedMemory(bytes);
	ASSERT_TRUE(t, k != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(k), 0u);
	EXPECT_TRUE(t, all_zero(k, 3 * P));
	pfn_t frames[3];
	expect_system_pages(t, (uint64_t)k, 3, true, MMT_ENC_UC);
	for (int i = 0; i < 3; i++) {
		frames[i] = mmt_frame_of((uint64_t)k + i * P);
		EXPECT_EQ(t, pfn_entry(frames[i])->owner_kind, PFN_OWNER_DEVMEM);
	}
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)k + 3 * P)); /* the guard PTE */
	k[bytes - 1] = 0x5A;
	MmFreeNonCachedMemory(k, bytes);
	expect_gone(t, (uint64_t)k);
	for (int i = 0; i < 3; i++) {
		EXPECT_TRUE(t, mmt_frame_is_free(frames[i]));
		EXPECT_EQ(t, mmt_alias_encoding(frames[i], NULL), MMT_ENC_WB);
	}
}

static void noncached_memory_of_zero_bytes_is_null(struct ktest *t)
{
	EXPECT_TRUE(t, MmAllocateNonCachedMemory(0) == NULL);
}

/* No frame left: NULL, and everything taken so far goes back (the framework's counters). */
static void noncached_memory_without_frames_is_null(struct ktest *t)
{
	uint64_t taken;
	pfn_t hog = mmt_hog_frames(2, &taken);
	PVOID k = MmAllocateNonCachedMemory(8 * P);
	mmt_release_frames(hog);
	EXPECT_TRUE(t, k == NULL);
}

/* The low-resources simulation (rule 16) fails the allocations and I/O-space mappings with
 * NULL, nothing taken (the framework's counters). */
static void low_resources_fail_with_null(struct ktest *t)
{
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)((pfn_limit() + 0x2000) << PAGE_SHIFT) };
	verifier_set_lowres(1, 0, 1);
	EXPECT_TRUE(t, MmAllocateNonCachedMemory(P) == NULL);
	verifier_set_lowres(1, 0, 1);
	EXPECT_TRUE(t, MmAllocateContiguousMemory(P, no_limit) == NULL);
	verifier_set_lowres(1, 0, 1);
	EXPECT_TRUE(t, MmMapIoSpace(pa, P, MmNonCached) == NULL);
	verifier_set_lowres(0, 0, 1);
	void *k = MmAllocateNonCachedMemory(P); /* and back to normal */
	EXPECT_TRUE(t, k != NULL);
	if (k)
		MmFreeNonCachedMemory(k, P);
}

/* ---- device-memory rule D2: contiguous memory --------------------------------------- */

static void contiguous_memory_lies_in_its_window_with_its_type(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 16ul << 20 }, hi = { .QuadPart = (64ul << 20) - 1 };
	uint8_t *k = MmAllocateContiguousMemorySpecifyCache(5 * P, lo, hi, zero, MmWriteCombined);
	ASSERT_TRUE(t, k != NULL);
	pfn_t first = expect_system_pages(t, (uint64_t)k, 5, true, MMT_ENC_WC);
	for (uint64_t i = 0; i < 5; i++)
		EXPECT_EQ(t, mmt_frame_of((uint64_t)k + i * P), first + i);
	EXPECT_GE(t, first << PAGE_SHIFT, 16ul << 20);
	EXPECT_LE(t, ((first + 5) << PAGE_SHIFT) - 1, (64ul << 20) - 1);
	EXPECT_TRUE(t, all_zero(k, 5 * P));
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)k + 5 * P));
	MmFreeContiguousMemorySpecifyCache(k, 5 * P, MmWriteCombined);
	expect_gone(t, (uint64_t)k);
	EXPECT_EQ(t, mmt_alias_encoding(first, NULL), MMT_ENC_WB);
}

/* The window's low end sits two pages below a 64 KiB multiple: without the boundary the
 * block would start there and cross it. */
static void contiguous_memory_crosses_no_boundary(struct ktest *t)
{
	uint64_t b = 64ul << 10;
	PHYSICAL_ADDRESS lo = { .QuadPart = (long)((32ul << 20) + b - 2 * P) }, bound = { .QuadPart = (long)b };
	uint8_t *k = MmAllocateContiguousMemorySpecifyCache(4 * P, lo, no_limit, bound, MmCached);
	ASSERT_TRUE(t, k != NULL);
	uint64_t start = mmt_frame_of((uint64_t)k) << PAGE_SHIFT;
	EXPECT_EQ(t, start / b, (start + 4 * P - 1) / b);
	EXPECT_GE(t, start, (uint64_t)lo.QuadPart);
	expect_system_pages(t, (uint64_t)k, 4, true, MMT_ENC_WB);
	MmFreeContiguousMemory(k);
}

static void contiguous_memory_defaults_to_cached(struct ktest *t)
{
	PHYSICAL_ADDRESS hi = { .QuadPart = (long)((pfn_limit() << PAGE_SHIFT) - 1) };
	uint8_t *k = MmAllocateContiguousMemory(P + 1, hi);
	ASSERT_TRUE(t, k != NULL);
	expect_system_pages(t, (uint64_t)k, 2, true, MMT_ENC_WB);
	MmFreeContiguousMemory(k);
}

static void contiguous_bad_requests_return_null(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 32ul << 20 }, hi = { .QuadPart = (32ul << 20) + P - 1 };
	PHYSICAL_ADDRESS odd = { .QuadPart = 3 * P }, small = { .QuadPart = 2 * P };
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(0, zero, no_limit, zero, MmCached) == NULL);
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(P, hi, lo, zero, MmCached) == NULL);   /* upside down */
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(2 * P, lo, hi, zero, MmCached) == NULL); /* too small */
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(P, zero, no_limit, odd, MmCached) == NULL);
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(3 * P, zero, no_limit, small, MmCached) == NULL);
	EXPECT_TRUE(t, MmAllocateContiguousMemorySpecifyCache(P, zero, no_limit, zero, MmMaximumCacheType) == NULL);
	/* A window of exactly one page holds exactly one page. */
	uint8_t *k = MmAllocateContiguousMemorySpecifyCache(P, lo, hi, zero, MmCached);
	if (k) {
		EXPECT_EQ(t, mmt_frame_of((uint64_t)k) << PAGE_SHIFT, (uint64_t)lo.QuadPart);
		MmFreeContiguousMemory(k);
	}
}

static void node_memory_takes_page_protections(struct ktest *t)
{
	uint8_t *uc = MmAllocateContiguousNodeMemory(P, zero, no_limit, zero, PAGE_READWRITE | PAGE_NOCACHE, 0);
	uint8_t *wc = MmAllocateContiguousNodeMemory(P, zero, no_limit, zero, PAGE_READWRITE | PAGE_WRITECOMBINE,
						     MM_ANY_NODE_OK);
	uint8_t *wb = MmAllocateContiguousNodeMemory(P, zero, no_limit, zero, PAGE_READWRITE, 0);
	ASSERT_TRUE(t, uc && wc && wb);
	expect_system_pages(t, (uint64_t)uc, 1, true, MMT_ENC_UC);
	expect_system_pages(t, (uint64_t)wc, 1, true, MMT_ENC_WC);
	expect_system_pages(t, (uint64_t)wb, 1, true, MMT_ENC_WB);
	MmFreeContiguousMemorySpecifyCache(uc, P, MmNonCached);
	MmFreeContiguousMemorySpecifyCache(wc, P, MmWriteCombined);
	MmFreeContiguousMemory(wb);
	ULONG refused[] = { PAGE_READONLY, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_READ, PAGE_NOACCESS,
			    PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE, PAGE_READWRITE | PAGE_GUARD };
	for (unsigned i = 0; i < sizeof refused / sizeof refused[0]; i++)
		EXPECT_TRUE(t, MmAllocateContiguousNodeMemory(P, zero, no_limit, zero, refused[i], 0) == NULL);
	EXPECT_TRUE(t, MmAllocateContiguousNodeMemory(P, zero, no_limit, zero, PAGE_READWRITE, 1) == NULL);
}

/* ---- device-memory rule D3: I/O space ----------------------------------------------- */

/* A physical address beyond RAM and the PFN database: device memory for the tests. */
static uint64_t device_pa(void) { return (pfn_limit() + 0x2000) << PAGE_SHIFT; }

static void io_space_maps_device_memory_with_its_type(struct ktest *t)
{
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)(device_pa() + 0x123) };
	uint8_t *v = MmMapIoSpace(pa, P, MmNonCached); /* two pages: the range crosses one */
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(v), 0x123u);
	pfn_t f = expect_system_pages(t, (uint64_t)PAGE_ALIGN(v), 2, true, MMT_ENC_UC);
	EXPECT_EQ(t, f, device_pa() >> PAGE_SHIFT);
	EXPECT_EQ(t, mmt_frame_of((uint64_t)PAGE_ALIGN(v) + P), f + 1);
	/* A second mapping asking WC gets the frames' type, UC (mm/RULES.md decision 1). */
	uint8_t *w = MmMapIoSpace(pa, 8, MmWriteCombined);
	ASSERT_TRUE(t, w != NULL);
	expect_system_pages(t, (uint64_t)PAGE_ALIGN(w), 1, true, MMT_ENC_UC);
	MmUnmapIoSpace(w, 8);
	MmUnmapIoSpace(v, P);
	expect_gone(t, (uint64_t)PAGE_ALIGN(v));
	/* Once none maps them, the next mapping's type is theirs. */
	w = MmMapIoSpace(pa, 8, MmWriteCombined);
	ASSERT_TRUE(t, w != NULL);
	expect_system_pages(t, (uint64_t)PAGE_ALIGN(w), 1, true, MMT_ENC_WC);
	MmUnmapIoSpace(w, 8);
}

/* A hole the PFN database lists as not RAM (below 1 MiB on a PC: the legacy VGA window) is
 * typed by its first mapping for good (decision 1's untyped frame): a later mapping asking
 * another type gets the same one, also once the first is gone. */
static void io_space_hole_frames_keep_one_type(struct ktest *t)
{
	pfn_t hole = PFN_INVALID;
	for (pfn_t p = 1; p < pfn_limit() && hole == PFN_INVALID; p++)
		if (pfn_entry(p)->state == PFN_NOT_RAM)
			hole = p;
	if (hole == PFN_INVALID)
		KTEST_SKIP(t, "the PFN database has no hole");
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)(hole << PAGE_SHIFT) };
	uint8_t *a = MmMapIoSpace(pa, P, MmWriteCombined);
	ASSERT_TRUE(t, a != NULL);
	unsigned first = mmt_encoding_at((uint64_t)a, NULL);
	uint8_t *b = MmMapIoSpace(pa, P, first == MMT_ENC_UC ? MmWriteCombined : MmNonCached);
	ASSERT_TRUE(t, b != NULL);
	EXPECT_EQ(t, mmt_encoding_at((uint64_t)b, NULL), first);
	MmUnmapIoSpace(b, P);
	MmUnmapIoSpace(a, P);
	uint8_t *c = MmMapIoSpace(pa, P, first == MMT_ENC_UC ? MmWriteCombined : MmNonCached);
	ASSERT_TRUE(t, c != NULL);
	EXPECT_EQ(t, mmt_encoding_at((uint64_t)c, NULL), first);
	MmUnmapIoSpace(c, P);
}

static void io_space_ex_takes_page_protections(struct ktest *t)
{
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)device_pa() + 16 * P };
	uint8_t *ro = MmMapIoSpaceEx(pa, P, PAGE_READONLY | PAGE_NOCACHE);
	ASSERT_TRUE(t, ro != NULL);
	expect_system_pages(t, (uint64_t)ro, 1, false, MMT_ENC_UC);
	expect_write_refused(t, (uint64_t)ro);
	MmUnmapIoSpace(ro, P);
	PHYSICAL_ADDRESS pb = { .QuadPart = (long)device_pa() + 32 * P };
	uint8_t *wc = MmMapIoSpaceEx(pb, 2 * P, PAGE_READWRITE | PAGE_WRITECOMBINE);
	ASSERT_TRUE(t, wc != NULL);
	expect_system_pages(t, (uint64_t)wc, 2, true, MMT_ENC_WC);
	MmUnmapIoSpace(wc, 2 * P);
	ULONG refused[] = { PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_NOACCESS, PAGE_WRITECOPY,
			    PAGE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE };
	for (unsigned i = 0; i < sizeof refused / sizeof refused[0]; i++)
		EXPECT_TRUE(t, MmMapIoSpaceEx(pa, P, refused[i]) == NULL);
	EXPECT_TRUE(t, MmMapIoSpaceEx(pa, 0, PAGE_READWRITE) == NULL);
	EXPECT_TRUE(t, MmMapIoSpace(pa, 0, MmNonCached) == NULL);
	EXPECT_TRUE(t, MmMapIoSpace(pa, P, MmMaximumCacheType) == NULL);
}

/* RAM only when it is locked down or owned (MmMapIoSpace's page): a free frame is refused; a
 * pool frame maps, keeping its own type (WB) whatever is asked. */
static void io_space_of_ram_needs_locked_down_frames(struct ktest *t)
{
	pfn_t free_frame = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, free_frame, PFN_INVALID);
	pfn_free(free_frame);
	PHYSICAL_ADDRESS fpa = { .QuadPart = (long)(free_frame << PAGE_SHIFT) };
	EXPECT_TRUE(t, MmMapIoSpace(fpa, P, MmNonCached) == NULL);

	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ASSERT_TRUE(t, buf != NULL);
	buf[7] = 0x77;
	PHYSICAL_ADDRESS bpa = MmGetPhysicalAddress(buf);
	uint8_t *v = MmMapIoSpace(bpa, P, MmNonCached);
	ASSERT_TRUE(t, v != NULL);
	EXPECT_EQ(t, expect_system_pages(t, (uint64_t)v, 1, true, MMT_ENC_WB), mmt_frame_of((uint64_t)buf));
	EXPECT_EQ(t, v[7], 0x77);
	MmUnmapIoSpace(v, P);
	ExFreePoolWithTag(buf, TAG);
}

/* ---- device-memory rule D4: addresses ----------------------------------------------- */

static void physical_address_queries_read_the_tables(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG);
	ASSERT_TRUE(t, buf != NULL);
	uint64_t pa = (uint64_t)MmGetPhysicalAddress(buf + 9).QuadPart;
	EXPECT_EQ(t, pa, (mmt_frame_of((uint64_t)buf) << PAGE_SHIFT) + BYTE_OFFSET(buf + 9));
	EXPECT_TRUE(t, MmIsAddressValid(buf));
	buf[9] = 0x99;
	PHYSICAL_ADDRESS ppa = { .QuadPart = (long)pa };
	uint8_t *alias = MmGetVirtualForPhysical(ppa);
	ASSERT_TRUE(t, alias != NULL);
	EXPECT_EQ(t, (uint64_t)alias, KVA_DIRECT_MAP_BASE + pa);
	EXPECT_EQ(t, *alias, 0x99);
	ExFreePoolWithTag(buf, TAG);

	uint64_t hole = scratch_unmapped_kva(P);
	EXPECT_FALSE(t, MmIsAddressValid((PVOID)hole));
	EXPECT_EQ(t, MmGetPhysicalAddress((PVOID)hole).QuadPart, 0);
	PHYSICAL_ADDRESS dev = { .QuadPart = (long)device_pa() };
	EXPECT_TRUE(t, MmGetVirtualForPhysical(dev) == NULL);
	/* KeFlushIoBuffers has nothing to do on x64, and compiles as drivers write it. */
	KeFlushIoBuffers((PMDL)NULL, TRUE, FALSE);
}

/* ---- misuse ------------------------------------------------------------------------ */

static void free_noncached_with_the_wrong_size(struct ktest *t)
{
	uint8_t *k = MmAllocateNonCachedMemory(2 * P);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006, (ULONG_PTR)k, P, 2 * P, KTEST_P_ALL);
	MmFreeNonCachedMemory(k, P);
}

/* Pool is not contiguous memory: no block starts there. */
static void free_contiguous_of_pool(struct ktest *t)
{
	void *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, TAG);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006, (ULONG_PTR)buf, 0, 0, KTEST_P_ALL);
	MmFreeContiguousMemory(buf);
}

/* Non-cached memory is not contiguous memory, even at its own address. */
static void free_contiguous_of_noncached_memory(struct ktest *t)
{
	void *k = MmAllocateNonCachedMemory(P);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006, (ULONG_PTR)k, 0, 0, KTEST_P_ALL);
	MmFreeContiguousMemory(k);
}

static void free_contiguous_with_another_cache_type(struct ktest *t)
{
	void *k = MmAllocateContiguousMemorySpecifyCache(P, zero, no_limit, zero, MmNonCached);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006, (ULONG_PTR)k, P, P, KTEST_P_ALL);
	MmFreeContiguousMemorySpecifyCache(k, P, MmCached);
}

static void unmap_io_space_with_the_wrong_size(struct ktest *t)
{
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)device_pa() };
	void *v = MmMapIoSpace(pa, 3 * P, MmNonCached);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x400, (ULONG_PTR)v, 1, 0, KTEST_P_ALL);
	MmUnmapIoSpace(v, P);
}

/* An MDL's system mapping is not I/O space: its PTEs are not MmUnmapIoSpace's to release. */
static void unmap_io_space_of_an_mdl_mapping(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, no_limit, skip, P);
	void *v = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x400, (ULONG_PTR)v, 1, 0, KTEST_P_ALL);
	MmUnmapIoSpace(v, P);
}

/* IRQL above DISPATCH_LEVEL: 0xC4/0xE5 (IRQL, 0, 0). */
static void allocate_contiguous_above_dispatch(struct ktest *t)
{
	KIRQL old;
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5, DISPATCH_LEVEL + 1, 0, 0, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmAllocateContiguousMemory(P, no_limit);
}

static void map_io_space_above_dispatch(struct ktest *t)
{
	KIRQL old;
	PHYSICAL_ADDRESS pa = { .QuadPart = (long)device_pa() };
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5, DISPATCH_LEVEL + 1, 0, 0, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmMapIoSpace(pa, P, MmNonCached);
}

static struct ktest_case devmem_cases[] = {
	KTEST_CASE(noncached_memory_is_zeroed_uncached_and_guarded),
	KTEST_CASE(noncached_memory_of_zero_bytes_is_null),
	KTEST_CASE(noncached_memory_without_frames_is_null),
	KTEST_CASE(low_resources_fail_with_null),
	KTEST_CASE(contiguous_memory_lies_in_its_window_with_its_type),
	KTEST_CASE(contiguous_memory_crosses_no_boundary),
	KTEST_CASE(contiguous_memory_defaults_to_cached),
	KTEST_CASE(contiguous_bad_requests_return_null),
	KTEST_CASE(node_memory_takes_page_protections),
	KTEST_CASE(io_space_maps_device_memory_with_its_type),
	KTEST_CASE(io_space_hole_frames_keep_one_type),
	KTEST_CASE(io_space_ex_takes_page_protections),
	KTEST_CASE(io_space_of_ram_needs_locked_down_frames),
	KTEST_CASE(physical_address_queries_read_the_tables),
	KTEST_DEATH_CASE_P1(free_noncached_with_the_wrong_size, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006),
	KTEST_DEATH_CASE_P1(free_contiguous_of_pool, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006),
	KTEST_DEATH_CASE_P1(free_contiguous_of_noncached_memory, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006),
	KTEST_DEATH_CASE_P1(free_contiguous_with_another_cache_type, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2006),
	KTEST_DEATH_CASE_P1(unmap_io_space_with_the_wrong_size, SYSTEM_PTE_MISUSE, 0x400),
	KTEST_DEATH_CASE_P1(unmap_io_space_of_an_mdl_mapping, SYSTEM_PTE_MISUSE, 0x400),
	KTEST_DEATH_CASE_P1(allocate_contiguous_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	KTEST_DEATH_CASE_P1(map_io_space_above_dispatch, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	{ 0 }
};
KTEST_SUITE(devmem, devmem_cases);
