/*
 * MmMapLockedPagesSpecifyCache, MmMapLockedPages, MmGetSystemAddressForMdlSafe and
 * MmUnmapLockedPages, kernel side (mm/RULES.md rules 1-9, 20, 21; the
 * section headings below name the rule):
 *   1. the returned address keeps the MDL's byte offset and is MappedSystemVa;
 *      MAPPED_TO_SYSTEM_VA comes and goes; the MDL's own description does not move;
 *   2. only locked MDLs map (probe-locked, allocated pages, partial MDLs of those);
 *   3. a KernelMode failure is NULL, or bug check NO_MORE_SYSTEM_PTES when the caller asks
 *      for one and the MDL lacks MAPPING_CAN_FAIL — failures made for real, by filling the
 *      system-PTE space or asking for more PTEs than it has;
 *   4. under scarcity Low fails before Normal before High, at the exact thresholds;
 *   5. MdlMappingNoWrite is read-only and every mapping is no-execute, proven by real faults;
 *   7. MmGetSystemAddressForMdlSafe returns the existing mapping (the pool address itself for
 *      a nonpaged-pool MDL) and one unmap releases it;
 *   9. a second system mapping, or one of a nonpaged-pool MDL, is verifier code 0xB2.
 * Page-table state is read from the real tables (raw entries decoded here); enforcement is
 * proven by the #PF the CPU raises (vector, error code, CR2).
 *
 * Death cases give the harness all four parameters they expect with ktest_expect_stop (a
 * "# death-expect:" line before the bug check; the STOP line must match it).
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/trap.h"
#include "mm/mdl.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define TAG 0x7453644Du /* 'MdSt' */

/* ---- page tables and faults ---------------------------------------------------------- */

/* The raw 4 KiB leaf mapping va, or 0 when nothing maps it (a system-PTE mapping is never a
 * large page: anything else is reported). */
static uint64_t sys_leaf(struct ktest *t, uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	if (!q.present)
		return 0;
	EXPECT_EQ(t, q.level, 1);
	return q.entry[q.level];
}

/* ---- MDLs ------------------------------------------------------------------------------ */

/* A pool buffer (whole pages, page-aligned) and a probe-locked MDL over [offset, offset+len). */
struct locked_buf {
	uint8_t *buf;
	PMDL mdl;
};

static void lock_buffer(struct ktest *t, struct locked_buf *lb, SIZE_T size, ULONG offset, ULONG len)
{
	lb->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG);
	ASSERT_TRUE(t, lb->buf != NULL);
	for (SIZE_T i = 0; i < size; i++)
		lb->buf[i] = (uint8_t)(i * 7 + 3);
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

/* Pages for MDLs from anywhere in RAM (High: the largest positive PHYSICAL_ADDRESS). */
static const PHYSICAL_ADDRESS ANY_LOW = { .QuadPart = 0 };
static const PHYSICAL_ADDRESS ANY_HIGH = { .QuadPart = 0x7FFFFFFFFFFFFFFFll };
static const PHYSICAL_ADDRESS NO_SKIP = { .QuadPart = 0 };

static PVOID map(PMDL m, ULONG priority)
{
	return MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, priority);
}

/* For a mapping of m that must fail: whether it did.  One made by mistake is undone, so that
 * the case goes on and reports everything. */
static bool map_fails(PMDL m, PVOID va)
{
	if (va)
		MmUnmapLockedPages(va, m);
	return va == NULL;
}

/* Every page of the mapping at va is a present leaf naming the MDL's frame. */
static void expect_maps_frames(struct ktest *t, PMDL m, PVOID va)
{
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++) {
		uint64_t e = sys_leaf(t, (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE);
		EXPECT_TRUE(t, e & MMT_PTE_P);
		EXPECT_EQ(t, (e & MMT_PTE_ADDR) >> PAGE_SHIFT, MmGetMdlPfnArray(m)[i]);
	}
}

static void expect_unmapped(struct ktest *t, PVOID va, ULONG pages)
{
	for (ULONG i = 0; i < pages; i++)
		EXPECT_FALSE(t, mmt_va_mapped((uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE));
}

/* ---- filling the system-PTE space ------------------------------------------------------ */

/*
 * High-priority reservations (they leave nothing free on purpose) until exactly `leave`
 * PTEs are free; the space only shrinks, so a case can step down from one threshold to the
 * next.  The suite's exit gives everything back, also after an ASSERT ended a case early.
 */
#define MAX_FILL 32
static struct {
	int n;
	uint64_t va[MAX_FILL];
	uint32_t len[MAX_FILL];
} fill;

static bool fill_until(uint64_t leave)
{
	struct syspte_stats s;
	for (syspte_get_stats(&s); s.free > leave; syspte_get_stats(&s)) {
		uint64_t n = s.free - leave < s.largest_free ? s.free - leave : s.largest_free;
		uint64_t va = fill.n < MAX_FILL ? syspte_reserve((uint32_t)n, SYSPTE_PRIORITY_HIGH, false) : 0;
		if (!va)
			return false;
		fill.va[fill.n] = va;
		fill.len[fill.n++] = (uint32_t)n;
	}
	return s.free == leave;
}

static void fill_release(void)
{
	while (fill.n > 0) {
		fill.n--;
		syspte_release(fill.va[fill.n], fill.len[fill.n]);
	}
}

static void suite_exit(struct ktest *t) { (void)t; fill_release(); }

/* ---- rule 1: the address, MappedSystemVa, the flag, the description ------------------- */

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
	/* The PTEs, read from the tables: the MDL's frames, NX, writable. */
	for (ULONG i = 0; i < 3; i++) {
		uint64_t e = sys_leaf(t, (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE);
		ASSERT_TRUE(t, e & MMT_PTE_P);
		EXPECT_EQ(t, (e & MMT_PTE_ADDR) >> PAGE_SHIFT, MmGetMdlPfnArray(m)[i]);
		EXPECT_TRUE(t, e & MMT_PTE_NX);
		EXPECT_TRUE(t, e & MMT_PTE_RW);
	}
	/* The same bytes through both addresses. */
	((volatile uint8_t *)va)[5] = 0x77;
	EXPECT_EQ(t, lb.buf[0x123 + 5], 0x77);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == va);
	MmUnmapLockedPages(va, m);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, m->ByteCount, 2 * PAGE_SIZE);
	expect_unmapped(t, va, 3);
	release_buffer(&lb);
}

/* What of an MDL mapping and unmapping must not touch. */
struct mdl_desc {
	PMDL next;
	CSHORT size;
	PEPROCESS process;
	PVOID start_va;
	ULONG byte_count, byte_offset;
	PFN_NUMBER pfn[4];
};

static void describe(PMDL m, struct mdl_desc *d)
{
	memset(d, 0, sizeof *d);
	d->next = m->Next;
	d->size = m->Size;
	d->process = m->Process;
	d->start_va = m->StartVa;
	d->byte_count = m->ByteCount;
	d->byte_offset = m->ByteOffset;
	for (ULONG i = 0; i < mdl_page_count(m) && i < ARRAY_SIZE(d->pfn); i++)
		d->pfn[i] = MmGetMdlPfnArray(m)[i];
}

static void expect_same_description(struct ktest *t, PMDL m, const struct mdl_desc *before)
{
	struct mdl_desc now;
	describe(m, &now);
	EXPECT_TRUE(t, now.next == before->next);
	EXPECT_EQ(t, now.size, before->size);
	EXPECT_TRUE(t, now.process == before->process);
	EXPECT_TRUE(t, now.start_va == before->start_va);
	EXPECT_EQ(t, now.byte_count, before->byte_count);
	EXPECT_EQ(t, now.byte_offset, before->byte_offset);
	EXPECT_EQ(t, memcmp(now.pfn, before->pfn, sizeof now.pfn), 0);
}

/* Offsets at both ends of a page and lengths from one byte to three pages: the mapping
 * starts at the MDL's offset, reaches its first and last bytes, and map/unmap change only
 * MAPPED_TO_SYSTEM_VA and MappedSystemVa. */
static void offset_and_description_survive_map_and_unmap(struct ktest *t)
{
	static const struct { ULONG offset, len; } shapes[] = {
		{ 0, PAGE_SIZE }, { 1, 1 }, { 0xFFF, 2 }, { 0x7FF, 2 * PAGE_SIZE }, { 0x800, 3 * PAGE_SIZE - 0x800 },
	};
	for (unsigned k = 0; k < ARRAY_SIZE(shapes); k++) {
		struct locked_buf lb;
		ULONG off = shapes[k].offset, len = shapes[k].len;
		lock_buffer(t, &lb, 4 * PAGE_SIZE, off, len);
		PMDL m = lb.mdl;
		struct mdl_desc d;
		describe(m, &d);
		USHORT flags = (USHORT)m->MdlFlags;
		EXPECT_FALSE(t, flags & MDL_MAPPED_TO_SYSTEM_VA);

		uint8_t *va = map(m, NormalPagePriority);
		ASSERT_TRUE(t, va != NULL);
		EXPECT_EQ(t, BYTE_OFFSET(va), off);
		EXPECT_TRUE(t, m->MappedSystemVa == va);
		EXPECT_EQ(t, (USHORT)m->MdlFlags, flags | MDL_MAPPED_TO_SYSTEM_VA);
		expect_same_description(t, m, &d);
		expect_maps_frames(t, m, va);
		EXPECT_EQ(t, va[0], lb.buf[off]);
		EXPECT_EQ(t, va[len - 1], lb.buf[off + len - 1]);

		MmUnmapLockedPages(va, m);
		EXPECT_EQ(t, (USHORT)m->MdlFlags, flags);
		expect_same_description(t, m, &d);
		expect_unmapped(t, va, ADDRESS_AND_SIZE_TO_SPAN_PAGES(off, len));
		release_buffer(&lb);
	}
}

/* MmMapLockedPages and MmGetSystemAddressForMdlSafe keep the offset too; an allocated-pages
 * MDL (StartVa 0, offset 0) maps page-aligned and keeps its ByteCount. */
static void every_map_routine_keeps_the_offset(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 2 * PAGE_SIZE, 0x456, 0x900);
	PMDL m = lb.mdl;

	uint8_t *va = MmMapLockedPages(m, KernelMode);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(va), 0x456);
	EXPECT_TRUE(t, m->MappedSystemVa == va);
	EXPECT_EQ(t, va[0x10], lb.buf[0x456 + 0x10]);
	MmUnmapLockedPages(va, m);

	va = MmGetSystemAddressForMdlSafe(m, HighPagePriority | MdlMappingNoWrite);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(va), 0x456);
	EXPECT_TRUE(t, m->MappedSystemVa == va);
	EXPECT_TRUE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, va[0x8FF], lb.buf[0x456 + 0x8FF]);
	MmUnmapLockedPages(va, m);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	release_buffer(&lb);

	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE + 100);
	ASSERT_TRUE(t, a != NULL);
	EXPECT_EQ(t, a->ByteCount, 2 * PAGE_SIZE + 100);
	struct mdl_desc d;
	describe(a, &d);
	va = map(a, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		EXPECT_EQ(t, BYTE_OFFSET(va), 0);
		EXPECT_TRUE(t, a->MappedSystemVa == va);
		expect_same_description(t, a, &d);
		expect_maps_frames(t, a, va);
		MmUnmapLockedPages(va, a);
	}
	expect_same_description(t, a, &d);
	MmFreePagesFromMdl(a);
	ExFreePool(a);
}

/* ---- rule 2: only locked MDLs map ------------------------------------------------------ */

/* Probe-locked, allocated, a partial MDL of a locked one and of an allocated one: each maps
 * its own frames.  A partial MDL has no PAGES_LOCKED of its own; its source's lock counts. */
static void locked_mdls_of_every_kind_map(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0x10, 3 * PAGE_SIZE - 0x10);
	EXPECT_TRUE(t, lb.mdl->MdlFlags & MDL_PAGES_LOCKED);

	PMDL part = IoAllocateMdl(lb.buf + PAGE_SIZE + 0x234, 100, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(lb.mdl, part, lb.buf + PAGE_SIZE + 0x234, 100);
	EXPECT_FALSE(t, part->MdlFlags & MDL_PAGES_LOCKED);
	uint8_t *va = MmGetSystemAddressForMdlSafe(part, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(va), 0x234);
	EXPECT_TRUE(t, part->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED);
	expect_maps_frames(t, part, va);
	EXPECT_EQ(t, va[99], lb.buf[PAGE_SIZE + 0x234 + 99]);
	MmPrepareMdlForReuse(part);
	IoFreeMdl(part);

	va = map(lb.mdl, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	expect_maps_frames(t, lb.mdl, va);
	MmUnmapLockedPages(va, lb.mdl);
	release_buffer(&lb);

	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE);
	ASSERT_TRUE(t, a != NULL);
	EXPECT_TRUE(t, a->MdlFlags & MDL_PAGES_LOCKED);
	part = IoAllocateMdl((uint8_t *)MmGetMdlVirtualAddress(a) + PAGE_SIZE, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, part != NULL);
	IoBuildPartialMdl(a, part, (uint8_t *)MmGetMdlVirtualAddress(a) + PAGE_SIZE, PAGE_SIZE);
	va = map(part, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		EXPECT_EQ(t, MmGetMdlPfnArray(part)[0], MmGetMdlPfnArray(a)[1]);
		expect_maps_frames(t, part, va);
		MmPrepareMdlForReuse(part);
	}
	IoFreeMdl(part);
	va = map(a, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, a);
	MmFreePagesFromMdl(a);
	ExFreePool(a);
}

/* The verifier stops a mapping of pages nobody locked: 0xC4 / 0xB3 (MDL, flags, the flag
 * that is missing). */
static void map_of_unlocked_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_PAGES_LOCKED);
	map(m, NormalPagePriority);
}

/* Unlocked again after a lock: no longer mappable, through the safe macro too. */
static void map_after_unlock(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, PAGE_SIZE, 0, PAGE_SIZE);
	MmUnlockPages(lb.mdl);
	ASSERT_FALSE(t, lb.mdl->MdlFlags & MDL_PAGES_LOCKED);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3, (ULONG_PTR)lb.mdl, (USHORT)lb.mdl->MdlFlags,
		    MDL_PAGES_LOCKED);
	MmGetSystemAddressForMdlSafe(lb.mdl, NormalPagePriority);
}

/* ---- rule 3: failure --------------------------------------------------------------------- */

/* With two PTEs left, a three-page mapping fails: NULL, nothing consumed, the MDL unchanged;
 * MAPPING_CAN_FAIL makes BugCheckOnFailure TRUE and MmMapLockedPages return NULL as well.
 * Controls: two pages fit, and once the space is back the three pages map. */
static void kernel_mapping_failure_returns_null(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0, 3 * PAGE_SIZE);
	PMDL m = lb.mdl, two = IoAllocateMdl(lb.buf, 2 * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, two != NULL);
	MmProbeAndLockPages(two, KernelMode, IoReadAccess);
	USHORT flags = (USHORT)m->MdlFlags;

	ASSERT_TRUE(t, fill_until(2));
	EXPECT_TRUE(t, map_fails(m, map(m, HighPagePriority)));
	EXPECT_TRUE(t, map_fails(m, MmGetSystemAddressForMdlSafe(m, HighPagePriority)));
	EXPECT_EQ(t, (USHORT)m->MdlFlags, flags);
	EXPECT_TRUE(t, m->MappedSystemVa == NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), 2);

	m->MdlFlags |= MDL_MAPPING_CAN_FAIL;
	EXPECT_TRUE(t, map_fails(m, MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, TRUE,
								 HighPagePriority)));
	EXPECT_TRUE(t, map_fails(m, MmMapLockedPages(m, KernelMode)));
	m->MdlFlags &= ~MDL_MAPPING_CAN_FAIL;
	EXPECT_EQ(t, (USHORT)m->MdlFlags, flags);
	EXPECT_EQ(t, mmt_free_sysptes(), 2);

	PVOID va = map(two, HighPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, two);
	fill_release();
	va = map(m, HighPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, m);
	MmUnlockPages(two);
	IoFreeMdl(two);
	release_buffer(&lb);
}

/* An MDL of one page more than the whole system-PTE space, built by hand the way a driver
 * may (the PFN array filled, PAGES_LOCKED set by the driver): every frame is the one locked
 * frame of `locked`. */
static PMDL oversized_mdl(PMDL locked, ULONG pages)
{
	PMDL m = IoAllocateMdl(NULL, pages * PAGE_SIZE, FALSE, FALSE, NULL);
	if (!m)
		return NULL;
	for (ULONG i = 0; i < pages; i++)
		MmGetMdlPfnArray(m)[i] = MmGetMdlPfnArray(locked)[0];
	m->MdlFlags |= MDL_PAGES_LOCKED;
	return m;
}

static void mapping_larger_than_the_space_returns_null(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, PAGE_SIZE, 0, PAGE_SIZE);
	ULONG pages = syspte_total() + 1;
	PMDL m = oversized_mdl(lb.mdl, pages);
	ASSERT_TRUE(t, m != NULL);
	ASSERT_EQ(t, mdl_page_count(m), pages);
	uint64_t before = mmt_free_sysptes();
	EXPECT_TRUE(t, map_fails(m, map(m, HighPagePriority)));
	EXPECT_TRUE(t, map_fails(m, MmGetSystemAddressForMdlSafe(m, HighPagePriority)));
	m->MdlFlags |= MDL_MAPPING_CAN_FAIL;
	EXPECT_TRUE(t, map_fails(m, MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, TRUE,
								 HighPagePriority)));
	EXPECT_TRUE(t, map_fails(m, MmMapLockedPages(m, KernelMode)));
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	m->MdlFlags &= ~(MDL_PAGES_LOCKED | MDL_MAPPING_CAN_FAIL);
	IoFreeMdl(m);
	release_buffer(&lb);
}

/* BugCheckOnFailure TRUE without MAPPING_CAN_FAIL: NO_MORE_SYSTEM_PTES (0, pages, free PTEs,
 * total PTEs). */
static void map_failure_bug_checks_when_asked(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0, 3 * PAGE_SIZE);
	ASSERT_TRUE(t, fill_until(2));
	expect_stop(t, NO_MORE_SYSTEM_PTES, 0, 3, 2, syspte_total());
	MmMapLockedPagesSpecifyCache(lb.mdl, KernelMode, MmCached, NULL, TRUE, HighPagePriority);
}

/* MmMapLockedPages (mm/RULES.md rule 20) bug checks on a KernelMode failure. */
static void map_locked_pages_failure_bug_checks(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0x200, 2 * PAGE_SIZE);
	ASSERT_TRUE(t, fill_until(2));
	expect_stop(t, NO_MORE_SYSTEM_PTES, 0, 3, 2, syspte_total());
	MmMapLockedPages(lb.mdl, KernelMode);
}

/* More pages than the space has, nothing else in short supply. */
static void oversized_map_bug_checks_when_asked(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, PAGE_SIZE, 0, PAGE_SIZE);
	ULONG pages = syspte_total() + 1;
	PMDL m = oversized_mdl(lb.mdl, pages);
	ASSERT_TRUE(t, m != NULL);
	expect_stop(t, NO_MORE_SYSTEM_PTES, 0, pages, mmt_free_sysptes(), syspte_total());
	MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, TRUE, HighPagePriority);
}

/* ---- rule 4: priorities ------------------------------------------------------------------ */

/* Locked MDLs of one, two and three pages over one pool buffer. */
struct sized_mdls {
	uint8_t *buf;
	PMDL m[4];
};

static void sized_mdls_make(struct ktest *t, struct sized_mdls *s)
{
	memset(s, 0, sizeof *s);
	s->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * PAGE_SIZE, TAG);
	ASSERT_TRUE(t, s->buf != NULL);
	for (ULONG n = 1; n <= 3; n++) {
		s->m[n] = IoAllocateMdl(s->buf, n * PAGE_SIZE, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, s->m[n] != NULL);
		MmProbeAndLockPages(s->m[n], KernelMode, IoReadAccess);
	}
}

static void sized_mdls_free(struct sized_mdls *s)
{
	for (ULONG n = 1; n <= 3; n++) {
		MmUnlockPages(s->m[n]);
		IoFreeMdl(s->m[n]);
	}
	ExFreePoolWithTag(s->buf, TAG);
}

/* Map and unmap at once; whether the mapping was made.  Either way the free count is back
 * where it was (a refused request consumes nothing). */
static bool maps(struct ktest *t, PMDL m, ULONG priority)
{
	uint64_t before = mmt_free_sysptes();
	PVOID va = map(m, priority);
	if (va)
		MmUnmapLockedPages(va, m);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	return va != NULL;
}

/* Low may not leave fewer than SYSPTE_LOW_RESERVE free: at that boundary it fails while
 * Normal and High succeed. */
static void low_priority_fails_first(struct ktest *t)
{
	uint64_t low = SYSPTE_LOW_RESERVE(syspte_total());
	struct sized_mdls s;
	sized_mdls_make(t, &s);
	ASSERT_TRUE(t, fill_until(low + 2));
	EXPECT_TRUE(t, maps(t, s.m[2], LowPagePriority));   /* leaves exactly `low` */
	EXPECT_FALSE(t, maps(t, s.m[3], LowPagePriority));  /* would leave one less */
	EXPECT_TRUE(t, maps(t, s.m[3], NormalPagePriority));
	ASSERT_TRUE(t, fill_until(low + 1));
	EXPECT_TRUE(t, maps(t, s.m[1], LowPagePriority));
	ASSERT_TRUE(t, fill_until(low));
	EXPECT_FALSE(t, maps(t, s.m[1], LowPagePriority));
	EXPECT_TRUE(t, map_fails(s.m[1], MmGetSystemAddressForMdlSafe(s.m[1], LowPagePriority)));
	EXPECT_TRUE(t, maps(t, s.m[1], NormalPagePriority));
	EXPECT_TRUE(t, maps(t, s.m[3], HighPagePriority));
	fill_release();
	sized_mdls_free(&s);
}

/* Normal may not leave fewer than SYSPTE_NORMAL_RESERVE free; High still maps there, and so
 * does MmMapLockedPages (HighPagePriority, mm/RULES.md rule 20). */
static void normal_priority_fails_before_high(struct ktest *t)
{
	uint64_t normal = SYSPTE_NORMAL_RESERVE(syspte_total());
	struct sized_mdls s;
	sized_mdls_make(t, &s);
	ASSERT_TRUE(t, fill_until(normal + 2));
	EXPECT_FALSE(t, maps(t, s.m[1], LowPagePriority));
	EXPECT_TRUE(t, maps(t, s.m[2], NormalPagePriority));
	EXPECT_FALSE(t, maps(t, s.m[3], NormalPagePriority));
	ASSERT_TRUE(t, fill_until(normal + 1));
	EXPECT_TRUE(t, maps(t, s.m[1], NormalPagePriority));
	ASSERT_TRUE(t, fill_until(normal));
	EXPECT_FALSE(t, maps(t, s.m[1], NormalPagePriority));
	EXPECT_TRUE(t, map_fails(s.m[1], MmGetSystemAddressForMdlSafe(s.m[1], NormalPagePriority)));
	EXPECT_TRUE(t, maps(t, s.m[3], HighPagePriority));
	PVOID va = MmMapLockedPages(s.m[3], KernelMode);
	EXPECT_TRUE(t, va != NULL);
	if (va)
		MmUnmapLockedPages(va, s.m[3]);
	fill_release();
	sized_mdls_free(&s);
}

/* High fails only when the request cannot be placed at all. */
static void high_priority_fails_only_when_out(struct ktest *t)
{
	struct sized_mdls s;
	sized_mdls_make(t, &s);
	ASSERT_TRUE(t, fill_until(3));
	EXPECT_FALSE(t, maps(t, s.m[1], NormalPagePriority));
	EXPECT_TRUE(t, maps(t, s.m[3], HighPagePriority));
	ASSERT_TRUE(t, fill_until(1));
	EXPECT_TRUE(t, maps(t, s.m[1], HighPagePriority));
	EXPECT_FALSE(t, maps(t, s.m[2], HighPagePriority));
	ASSERT_TRUE(t, fill_until(0));
	EXPECT_FALSE(t, maps(t, s.m[1], HighPagePriority));
	EXPECT_TRUE(t, map_fails(s.m[1], MmGetSystemAddressForMdlSafe(s.m[1], HighPagePriority)));
	fill_release();
	sized_mdls_free(&s);
}

/* MdlMappingNoWrite / NoExecute are OR-ed into Priority; they must not read as a higher
 * priority (NoWrite is bit 31: taken as a number it would outrank High). */
static void mapping_flags_do_not_change_the_priority(struct ktest *t)
{
	static const ULONG flag_sets[] = { MdlMappingNoWrite, MdlMappingNoExecute,
					   MdlMappingNoWrite | MdlMappingNoExecute };
	uint64_t total = syspte_total();
	struct sized_mdls s;
	sized_mdls_make(t, &s);
	ASSERT_TRUE(t, fill_until(SYSPTE_LOW_RESERVE(total)));
	for (unsigned i = 0; i < ARRAY_SIZE(flag_sets); i++) {
		EXPECT_FALSE(t, maps(t, s.m[1], LowPagePriority | flag_sets[i]));
		EXPECT_TRUE(t, maps(t, s.m[1], NormalPagePriority | flag_sets[i]));
	}
	ASSERT_TRUE(t, fill_until(SYSPTE_NORMAL_RESERVE(total)));
	for (unsigned i = 0; i < ARRAY_SIZE(flag_sets); i++) {
		EXPECT_FALSE(t, maps(t, s.m[1], NormalPagePriority | flag_sets[i]));
		EXPECT_TRUE(t, maps(t, s.m[1], HighPagePriority | flag_sets[i]));
	}
	fill_release();
	sized_mdls_free(&s);
}

/* ---- rule 5: read-only and no-execute ------------------------------------------------- */

/* MdlMappingNoWrite: every leaf read-only (and NX), reads work, a kernel write faults with
 * 0x3 at the address written and changes nothing.  Control: without the flag the same write
 * goes through. */
static void no_write_mapping_is_read_only(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 2 * PAGE_SIZE, 0x40, PAGE_SIZE + 0x100);
	PMDL m = lb.mdl;
	uint8_t *va = map(m, NormalPagePriority | MdlMappingNoWrite);
	ASSERT_TRUE(t, va != NULL);
	for (ULONG i = 0; i < 2; i++) {
		uint64_t e = sys_leaf(t, (uint64_t)PAGE_ALIGN(va) + i * PAGE_SIZE);
		EXPECT_TRUE(t, e & MMT_PTE_P);
		EXPECT_FALSE(t, e & MMT_PTE_RW);
		EXPECT_TRUE(t, e & MMT_PTE_NX);
	}
	struct faultcap f;
	uint8_t v = 0;
	EXPECT_TRUE(t, faultcap_try_load8((uint64_t)va, &v, &f));
	EXPECT_EQ(t, v, lb.buf[0x40]);
	const ULONG offsets[] = { 0, PAGE_SIZE + 0x80 }; /* both pages */
	for (unsigned i = 0; i < ARRAY_SIZE(offsets); i++) {
		uint64_t a = (uint64_t)va + offsets[i];
		uint8_t old = lb.buf[0x40 + offsets[i]];
		EXPECT_FALSE(t, faultcap_try_store8(a, (uint8_t)~old, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_WRITE_PROTECTION, a);
		EXPECT_EQ(t, lb.buf[0x40 + offsets[i]], old);
	}
	MmUnmapLockedPages(va, m);

	va = map(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_TRUE(t, sys_leaf(t, (uint64_t)va) & MMT_PTE_RW);
	EXPECT_TRUE(t, faultcap_try_store8((uint64_t)va + PAGE_SIZE + 0x80, 0x5A, &f));
	EXPECT_EQ(t, lb.buf[0x40 + PAGE_SIZE + 0x80], 0x5A);
	MmUnmapLockedPages(va, m);
	release_buffer(&lb);

	/* The same through MmGetSystemAddressForMdlSafe, on allocated pages. */
	PMDL a = MmAllocatePagesForMdl(ANY_LOW, ANY_HIGH, NO_SKIP, PAGE_SIZE);
	ASSERT_TRUE(t, a != NULL);
	va = MmGetSystemAddressForMdlSafe(a, HighPagePriority | MdlMappingNoWrite);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		EXPECT_FALSE(t, sys_leaf(t, (uint64_t)va) & MMT_PTE_RW);
		EXPECT_FALSE(t, faultcap_try_store8((uint64_t)va + 0x123, 1, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_WRITE_PROTECTION, (uint64_t)va + 0x123);
		MmUnmapLockedPages(va, a);
	}
	MmFreePagesFromMdl(a);
	ExFreePool(a);
}

/* A fetch through any system mapping faults 0x11 at the address called (RIP there too),
 * with and without MdlMappingNoExecute, with NoWrite, from every map routine.  Each page's
 * leaf has NX.  Control: the same mapping made executable by MmProtectMdlSystemAddress runs
 * the byte, so the faults are the NX bit's doing. */
static void expect_fetch_faults(struct ktest *t, uint8_t *va, ULONG second_page_offset)
{
	struct faultcap f;
	EXPECT_EQ(t, va[0], FAULTCAP_RET_OPCODE);
	EXPECT_TRUE(t, sys_leaf(t, (uint64_t)va) & MMT_PTE_NX);
	EXPECT_FALSE(t, faultcap_try_call((uint64_t)va, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, (uint64_t)va);
	EXPECT_EQ(t, f.rip, (uint64_t)va);
	if (second_page_offset) {
		uint64_t a = (uint64_t)PAGE_ALIGN(va) + PAGE_SIZE + second_page_offset;
		EXPECT_TRUE(t, sys_leaf(t, a) & MMT_PTE_NX);
		EXPECT_FALSE(t, faultcap_try_call(a, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, a);
	}
}

static void system_mappings_are_no_execute(struct ktest *t)
{
	static const ULONG priorities[] = {
		NormalPagePriority,
		NormalPagePriority | MdlMappingNoExecute,
		NormalPagePriority | MdlMappingNoWrite,
		HighPagePriority | MdlMappingNoWrite | MdlMappingNoExecute,
		LowPagePriority,
	};
	struct locked_buf lb;
	lock_buffer(t, &lb, 2 * PAGE_SIZE, 0x20, PAGE_SIZE);
	PMDL m = lb.mdl;
	lb.buf[0x20] = FAULTCAP_RET_OPCODE;
	lb.buf[PAGE_SIZE + 0x8] = FAULTCAP_RET_OPCODE;
	for (unsigned i = 0; i < ARRAY_SIZE(priorities); i++) {
		uint8_t *va = map(m, priorities[i]);
		ASSERT_TRUE(t, va != NULL);
		expect_fetch_faults(t, va, 0x8);
		MmUnmapLockedPages(va, m);
	}
	uint8_t *va = MmMapLockedPages(m, KernelMode);
	ASSERT_TRUE(t, va != NULL);
	expect_fetch_faults(t, va, 0x8);
	MmUnmapLockedPages(va, m);
	va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	expect_fetch_faults(t, va, 0x8);

	/* Pool frames stay writable through their pool mapping, so this MDL's mapping cannot
	 * become executable either (decision 3; mdl_protect shows an executable one). */
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m, PAGE_EXECUTE_READ), STATUS_INVALID_PAGE_PROTECTION);
	EXPECT_TRUE(t, sys_leaf(t, (uint64_t)va) & MMT_PTE_NX);
	expect_fetch_faults(t, va, 0x8);
	MmUnmapLockedPages(va, m);
	release_buffer(&lb);
}

/* ---- rule 7: MmGetSystemAddressForMdlSafe reuses what exists --------------------------- */

static void get_system_address_returns_the_existing_mapping(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, 3 * PAGE_SIZE, 0x321, 2 * PAGE_SIZE); /* three pages spanned */
	PMDL m = lb.mdl;
	uint64_t before = mmt_free_sysptes();

	uint8_t *va = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, LowPagePriority) == va);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, HighPagePriority | MdlMappingNoWrite) == va);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
	EXPECT_TRUE(t, sys_leaf(t, (uint64_t)va) & MMT_PTE_RW); /* still the first mapping's PTEs */
	MmUnmapLockedPages(va, m); /* one unmap releases it */
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	expect_unmapped(t, va, 3);

	/* A mapping made by MmMapLockedPagesSpecifyCache is the one returned. */
	va = map(m, NormalPagePriority | MdlMappingNoWrite);
	ASSERT_TRUE(t, va != NULL);
	EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == va);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 3);
	MmUnmapLockedPages(va, m);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	release_buffer(&lb);

	/* Allocated pages: the same. */
	PMDL a = MmAllocatePagesForMdlEx(ANY_LOW, ANY_HIGH, NO_SKIP, 2 * PAGE_SIZE, MmCached, 0);
	ASSERT_TRUE(t, a != NULL);
	va = MmGetSystemAddressForMdlSafe(a, NormalPagePriority);
	EXPECT_TRUE(t, va != NULL);
	if (va) {
		EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(a, NormalPagePriority) == va);
		EXPECT_EQ(t, mmt_free_sysptes(), before - 2);
		MmUnmapLockedPages(va, a);
		EXPECT_EQ(t, mmt_free_sysptes(), before);
	}
	MmFreePagesFromMdl(a);
	ExFreePool(a);
}

/* A nonpaged-pool MDL is mapped already, by the pool: the macro returns the buffer's own
 * address, every time, without a PTE — even with none left. */
static void get_system_address_of_nonpaged_pool_mdl_is_the_pool_address(struct ktest *t)
{
	static const struct { SIZE_T size; ULONG offset, len; } shapes[] = {
		{ 2 * PAGE_SIZE, 0x99, PAGE_SIZE + 5 }, /* whole pool pages */
		{ 100, 0, 100 },                        /* a small slab allocation */
	};
	for (unsigned k = 0; k < ARRAY_SIZE(shapes); k++) {
		uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, shapes[k].size, TAG);
		ASSERT_TRUE(t, buf != NULL);
		uint8_t *want = buf + shapes[k].offset;
		PMDL m = IoAllocateMdl(want, shapes[k].len, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, m != NULL);
		MmBuildMdlForNonPagedPool(m);
		EXPECT_TRUE(t, m->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL);
		EXPECT_FALSE(t, m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_PAGES_LOCKED));
		struct syspte_stats s0, s1;
		syspte_get_stats(&s0);
		EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, NormalPagePriority) == want);
		EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, HighPagePriority) == want);
		syspte_get_stats(&s1);
		EXPECT_EQ(t, s1.free, s0.free);
		EXPECT_EQ(t, s1.reservations, s0.reservations);
		ASSERT_TRUE(t, fill_until(0));
		EXPECT_TRUE(t, MmGetSystemAddressForMdlSafe(m, LowPagePriority) == want);
		fill_release();
		IoFreeMdl(m);
		ExFreePoolWithTag(buf, TAG);
	}
}

/* ---- rule 9: one system mapping per MDL ----------------------------------------------- */

static void second_system_mapping(struct ktest *t)
{
	struct locked_buf lb;
	lock_buffer(t, &lb, PAGE_SIZE, 0, PAGE_SIZE);
	ASSERT_TRUE(t, map(lb.mdl, NormalPagePriority) != NULL);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB2, (ULONG_PTR)lb.mdl, (USHORT)lb.mdl->MdlFlags,
		    MDL_MAPPED_TO_SYSTEM_VA);
	map(lb.mdl, NormalPagePriority);
}

static void system_mapping_of_nonpaged_pool_mdl(struct ktest *t)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, buf != NULL);
	PMDL m = IoAllocateMdl(buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB2, (ULONG_PTR)m, (USHORT)m->MdlFlags,
		    MDL_SOURCE_IS_NONPAGED_POOL);
	map(m, NormalPagePriority);
}

static struct ktest_case mdl_map_cases[] = {
	/* rule 1 */
	KTEST_CASE(mapping_keeps_byte_offset_and_sets_flags),
	KTEST_CASE(offset_and_description_survive_map_and_unmap),
	KTEST_CASE(every_map_routine_keeps_the_offset),
	/* rule 2 */
	KTEST_CASE(locked_mdls_of_every_kind_map),
	KTEST_DEATH_CASE_P1(map_of_unlocked_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	KTEST_DEATH_CASE_P1(map_after_unlock, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	/* rule 3 */
	KTEST_CASE(kernel_mapping_failure_returns_null),
	KTEST_CASE(mapping_larger_than_the_space_returns_null),
	KTEST_DEATH_CASE_P1(map_failure_bug_checks_when_asked, NO_MORE_SYSTEM_PTES, 0),
	KTEST_DEATH_CASE_P1(map_locked_pages_failure_bug_checks, NO_MORE_SYSTEM_PTES, 0),
	KTEST_DEATH_CASE_P1(oversized_map_bug_checks_when_asked, NO_MORE_SYSTEM_PTES, 0),
	/* rule 4 */
	KTEST_CASE(low_priority_fails_first),
	KTEST_CASE(normal_priority_fails_before_high),
	KTEST_CASE(high_priority_fails_only_when_out),
	KTEST_CASE(mapping_flags_do_not_change_the_priority),
	/* rule 5 */
	KTEST_CASE(no_write_mapping_is_read_only),
	KTEST_CASE(system_mappings_are_no_execute),
	/* rule 7 */
	KTEST_CASE(get_system_address_returns_the_existing_mapping),
	KTEST_CASE(get_system_address_of_nonpaged_pool_mdl_is_the_pool_address),
	/* rule 9 */
	KTEST_DEATH_CASE_P1(second_system_mapping, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB2),
	KTEST_DEATH_CASE_P1(system_mapping_of_nonpaged_pool_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB2),
	{ 0 }
};
KTEST_SUITE(mdl_map, mdl_map_cases, .exit = suite_exit);
