/*
 * Reserved mappings (mm/reserved.c; mm/RULES.md reserved-mapping rule R1): PTEs reserved
 * ahead, an MDL mapped into them and unmapped again, the mapping that cannot fail when the
 * system-PTE space is exhausted, and every misuse with its SYSTEM_PTE_MISUSE parameters.
 * Mappings are read from the real tables; an access after the unmap is a caught #PF.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "mm/pfn.h"
#include "mm/syspte.h"

#define TAG 0x76736552u   /* the reservations' tag in these cases */
#define OTHER 0x72687441u /* another one */
#define BUF_TAG 0x66755252u
#define P PAGE_SIZE

/* Pool buffer of `bytes` (whole pages), and an MDL over [buf + off, + len) locked for write. */
static uint8_t *buffer(struct ktest *t, SIZE_T bytes)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, BUF_TAG);
	ASSERT_TRUE(t, b != NULL);
	return b;
}

static PMDL locked(struct ktest *t, void *va, ULONG len)
{
	PMDL m = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	return m;
}

static void release(PMDL m, uint8_t *buf)
{
	MmUnlockPages(m);
	IoFreeMdl(m);
	ExFreePoolWithTag(buf, BUF_TAG);
}

static void reservation_maps_unmaps_and_maps_again(struct ktest *t)
{
	uint64_t before = mmt_free_sysptes();
	uint8_t *r = MmAllocateMappingAddress(4 * P, TAG);
	ASSERT_TRUE(t, r != NULL);
	EXPECT_EQ(t, BYTE_OFFSET(r), 0u);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 4);
	for (int i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + i * P));

	uint8_t *buf = buffer(t, 3 * P);
	buf[0x10] = 0x42;
	buf[P + 0x10] = 0x43;
	PMDL m = locked(t, buf + 0x10, 2 * P); /* three pages, byte offset 0x10 */
	uint8_t *v = MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
	EXPECT_EQ(t, (uint64_t)v, (uint64_t)r + 0x10);
	EXPECT_EQ(t, (uint64_t)m->MappedSystemVa, (uint64_t)r); /* no byte offset: the page says so */
	EXPECT_TRUE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 4);            /* no PTE taken: they were reserved */
	for (int i = 0; i < 3; i++) {
		struct mmt_rights q;
		EXPECT_EQ(t, mmt_encoding_at((uint64_t)r + i * P, &q), MMT_ENC_WB);
		EXPECT_TRUE(t, q.present && q.write && q.nx && !q.user);
		EXPECT_EQ(t, mmt_frame_of((uint64_t)r + i * P), MmGetMdlPfnArray(m)[i]);
	}
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + 3 * P));
	EXPECT_EQ(t, v[0], 0x42);
	EXPECT_EQ(t, v[P], 0x43);
	MmUnmapReservedMapping(r, TAG, m);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_TRUE(t, m->MappedSystemVa == NULL);
	struct faultcap f;
	uint8_t x;
	EXPECT_FALSE(t, faultcap_try_load8((uint64_t)v, &x, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, (uint64_t)v);

	/* The same reservation takes another MDL. */
	PMDL one = locked(t, buf + 2 * P, P);
	EXPECT_EQ(t, (uint64_t)MmMapLockedPagesWithReservedMapping(r, TAG, one, MmCached), (uint64_t)r);
	EXPECT_EQ(t, mmt_frame_of((uint64_t)r), MmGetMdlPfnArray(one)[0]);
	MmUnmapReservedMapping(r, TAG, one);
	MmFreeMappingAddress(r, TAG);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	MmUnlockPages(one);
	IoFreeMdl(one);
	release(m, buf);
}

/* The point of the family: with every other system PTE taken, an ordinary mapping fails and
 * the reserved one does not. */
static void reserved_mapping_works_with_the_space_exhausted(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(2 * P, TAG, 0);
	ASSERT_TRUE(t, r != NULL);
	uint8_t *buf = buffer(t, 2 * P);
	PMDL m = locked(t, buf, 2 * P);
	uint64_t taken[64];
	int n = 0;
	struct syspte_stats s;
	syspte_get_stats(&s);
	while (n < 64 && s.largest_free) {
		taken[n] = syspte_reserve((uint32_t)s.largest_free, HighPagePriority, false);
		if (!taken[n])
			break;
		taken[n + 1] = s.largest_free;
		n += 2;
		syspte_get_stats(&s);
	}
	EXPECT_TRUE(t, MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, HighPagePriority) == NULL);
	uint8_t *v = MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
	for (int i = 0; i < n; i += 2)
		syspte_release(taken[i], (uint32_t)taken[i + 1]);
	EXPECT_EQ(t, (uint64_t)v, (uint64_t)r);
	if (v)
		MmUnmapReservedMapping(r, TAG, m);
	MmFreeMappingAddress(r, TAG);
	release(m, buf);
}

/* NULL only for a bad argument: an MDL larger than the reservation, a CacheType that names
 * no type; the MDL is left as it was. */
static void bad_arguments_return_null(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddress(2 * P, TAG);
	ASSERT_TRUE(t, r != NULL);
	uint8_t *buf = buffer(t, 3 * P);
	PMDL m = locked(t, buf, 3 * P);
	USHORT flags = m->MdlFlags;
	EXPECT_TRUE(t, MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached) == NULL);
	EXPECT_TRUE(t, MmMapLockedPagesWithReservedMapping(r, TAG, m, MmMaximumCacheType) == NULL);
	EXPECT_EQ(t, m->MdlFlags, flags);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r));
	EXPECT_TRUE(t, MmAllocateMappingAddressEx(P, TAG, 2) == NULL); /* a flag mdlab does not know */
	/* More bytes than there are system PTEs, up to the top: NULL, not the 0-byte bug check. */
	EXPECT_TRUE(t, MmAllocateMappingAddress((SIZE_T)-1, TAG) == NULL);
	EXPECT_TRUE(t, MmAllocateMappingAddressEx((SIZE_T)-1 - P + 2, TAG, MM_MAPPING_ADDRESS_DIVISIBLE) == NULL);
	MmFreeMappingAddress(r, TAG);
	release(m, buf);
}

/* Frames that have a type keep it (mm/RULES.md decision 1): CacheType is used only for
 * frames with none, as Microsoft's page says. */
static void typed_frames_keep_their_type(struct ktest *t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL wc = MmAllocatePagesForMdlEx(lo, hi, skip, P, MmWriteCombined, MM_ALLOCATE_FULLY_REQUIRED);
	PMDL untyped = MmAllocatePagesForMdl(lo, hi, skip, P);
	ASSERT_TRUE(t, wc && untyped);
	uint8_t *r = MmAllocateMappingAddress(P, TAG);
	ASSERT_TRUE(t, r != NULL);
	MmMapLockedPagesWithReservedMapping(r, TAG, wc, MmCached);
	EXPECT_EQ(t, mmt_encoding_at((uint64_t)r, NULL), MMT_ENC_WC);
	MmUnmapReservedMapping(r, TAG, wc);
	MmMapLockedPagesWithReservedMapping(r, TAG, untyped, MmNonCached);
	EXPECT_EQ(t, mmt_encoding_at((uint64_t)r, NULL), MMT_ENC_UC);
	EXPECT_EQ(t, mmt_alias_encoding(MmGetMdlPfnArray(untyped)[0], NULL), MMT_ENC_UC);
	MmUnmapReservedMapping(r, TAG, untyped);
	MmFreeMappingAddress(r, TAG);
	MmFreePagesFromMdl(wc);
	ExFreePool(wc);
	MmFreePagesFromMdl(untyped);
	ExFreePool(untyped);
}

/* ---- divisible reservations (mm/RULES.md rule R3) ------------------------------------- */

static PMDL mapped_then_other(struct ktest *t, void *r, ULONG mapped, ULONG other);

static void expect_mapped(struct ktest *t, uint64_t va, PMDL m, ULONG pages)
{
	for (ULONG i = 0; i < pages; i++) {
		struct mmt_rights q;
		EXPECT_EQ(t, mmt_encoding_at(va + i * P, &q), MMT_ENC_WB);
		EXPECT_TRUE(t, q.present && q.write && q.nx && !q.user);
		EXPECT_EQ(t, mmt_frame_of(va + i * P), MmGetMdlPfnArray(m)[i]);
	}
}

/* Three MDLs at once in one divisible reservation, each at its own page, each unmapped on its
 * own: the others stay mapped, the page unmapped faults, and it takes another MDL. */
static void divisible_reservation_maps_several_mdls(struct ktest *t)
{
	uint64_t before = mmt_free_sysptes();
	uint8_t *r = MmAllocateMappingAddressEx(6 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	ASSERT_TRUE(t, r != NULL);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 6);
	uint8_t *buf = buffer(t, 5 * P);
	buf[3 * P + 0x20] = 0x5A;
	PMDL a = locked(t, buf, 2 * P), b = locked(t, buf + 3 * P + 0x20, 0x40), c = locked(t, buf + 2 * P, 2 * P);
	EXPECT_EQ(t, (uint64_t)MmMapLockedPagesWithReservedMapping(r, TAG, a, MmCached), (uint64_t)r);
	uint8_t *vb = MmMapLockedPagesWithReservedMapping(r + 3 * P, TAG, b, MmCached);
	EXPECT_EQ(t, (uint64_t)vb, (uint64_t)r + 3 * P + 0x20);
	EXPECT_EQ(t, (uint64_t)b->MappedSystemVa, (uint64_t)r + 3 * P); /* without the byte offset */
	EXPECT_EQ(t, (uint64_t)MmMapLockedPagesWithReservedMapping(r + 4 * P, TAG, c, MmCached), (uint64_t)r + 4 * P);
	EXPECT_EQ(t, mmt_free_sysptes(), before - 6); /* no PTE taken */
	expect_mapped(t, (uint64_t)r, a, 2);
	expect_mapped(t, (uint64_t)r + 3 * P, b, 1);
	expect_mapped(t, (uint64_t)r + 4 * P, c, 2);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + 2 * P));
	EXPECT_EQ(t, vb[0], 0x5A);

	MmUnmapReservedMapping(r + 3 * P, TAG, b);
	EXPECT_FALSE(t, b->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	EXPECT_TRUE(t, b->MappedSystemVa == NULL);
	struct faultcap f;
	uint8_t x;
	EXPECT_FALSE(t, faultcap_try_load8((uint64_t)vb, &x, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, (uint64_t)vb);
	expect_mapped(t, (uint64_t)r, a, 2);
	expect_mapped(t, (uint64_t)r + 4 * P, c, 2);
	EXPECT_TRUE(t, a->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);

	/* b again, at the page before the one it had: any free page takes a mapping. */
	EXPECT_EQ(t, (uint64_t)MmMapLockedPagesWithReservedMapping(r + 2 * P, TAG, b, MmCached),
		  (uint64_t)r + 2 * P + 0x20);
	expect_mapped(t, (uint64_t)r + 2 * P, b, 1);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + 3 * P));
	MmUnmapReservedMapping(r, TAG, a);
	MmUnmapReservedMapping(r + 4 * P, TAG, c);
	MmUnmapReservedMapping(r + 2 * P, TAG, b);
	for (int i = 0; i < 6; i++)
		EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + i * P));
	MmFreeMappingAddress(r, TAG);
	EXPECT_EQ(t, mmt_free_sysptes(), before);
	MmUnlockPages(a);
	IoFreeMdl(a);
	MmUnlockPages(c);
	IoFreeMdl(c);
	release(b, buf);
}

/* NULL for an MDL with more pages than remain from the address to the reservation's end,
 * nothing written. */
static void divisible_mdl_past_the_end_is_null(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(3 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	ASSERT_TRUE(t, r != NULL);
	uint8_t *buf = buffer(t, 2 * P);
	PMDL m = locked(t, buf, 2 * P);
	USHORT flags = m->MdlFlags;
	EXPECT_TRUE(t, MmMapLockedPagesWithReservedMapping(r + 2 * P, TAG, m, MmCached) == NULL);
	EXPECT_EQ(t, m->MdlFlags, flags);
	EXPECT_TRUE(t, mmt_va_unmapped((uint64_t)r + 2 * P));
	EXPECT_EQ(t, (uint64_t)MmMapLockedPagesWithReservedMapping(r + P, TAG, m, MmCached), (uint64_t)r + P);
	MmUnmapReservedMapping(r + P, TAG, m);
	MmFreeMappingAddress(r, TAG);
	release(m, buf);
}

/* A reservation that is not divisible takes a mapping only at its start: 0x105. */
static void map_inside_a_reservation_not_divisible(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddress(2 * P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x105, (ULONG_PTR)(r + P), TAG, 0, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r + P, TAG, m, MmCached);
}

static void divisible_map_at_an_unaligned_address(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(2 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x105, (ULONG_PTR)(r + 0x10), TAG, 0, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r + 0x10, TAG, m, MmCached);
}

/* A mapping over pages r+1..r+2 that r+2..r+4's mapping holds in part: 0x107 (address, the
 * first page mapped already, the last page of the mapping holding it). */
static void divisible_map_over_a_mapping(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(5 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, 3 * P);
	MmMapLockedPagesWithReservedMapping(r + 2 * P, TAG, locked(t, buf, 3 * P), MmCached);
	PMDL two = locked(t, buf, 2 * P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x107, (ULONG_PTR)(r + P), (ULONG_PTR)(r + 2 * P),
			  (ULONG_PTR)(r + 4 * P), KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r + P, TAG, two, MmCached);
}

static void divisible_map_with_another_tag(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(2 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x104, (ULONG_PTR)(r + P), OTHER, TAG, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r + P, OTHER, m, MmCached);
}

/* Unmapping at a page inside a mapping, not its start: part of it, 0x10C. */
static void divisible_unmap_inside_a_mapping(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(3 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	PMDL one = mapped_then_other(t, r, 2, 1);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10C, (ULONG_PTR)(r + P), TAG, 1, KTEST_P_ALL);
	MmUnmapReservedMapping(r + P, TAG, one);
}

static void divisible_unmap_where_nothing_is_mapped(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(3 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	PMDL one = mapped_then_other(t, r, 1, 1);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x109, (ULONG_PTR)(r + 2 * P), TAG, 0, KTEST_P_ALL);
	MmUnmapReservedMapping(r + 2 * P, TAG, one);
}

/* More pages than remain from the address to the end: 0x10A (address, pages from there, the
 * MDL's pages). */
static void divisible_unmap_past_the_end(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(3 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, 2 * P);
	MmMapLockedPagesWithReservedMapping(r + 2 * P, TAG, locked(t, buf, P), MmCached);
	PMDL two = locked(t, buf, 2 * P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10A, (ULONG_PTR)(r + 2 * P), 1, 2, KTEST_P_ALL);
	MmUnmapReservedMapping(r + 2 * P, TAG, two);
}

/* An unmap of more pages than the mapping at that address has (the next one is another
 * mapping's): 0x10B. */
static void divisible_unmap_more_than_the_mapping(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(3 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, 2 * P);
	MmMapLockedPagesWithReservedMapping(r, TAG, locked(t, buf, P), MmCached);
	MmMapLockedPagesWithReservedMapping(r + P, TAG, locked(t, buf + P, P), MmCached);
	PMDL two = locked(t, buf, 2 * P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10B, (ULONG_PTR)r, TAG, 2, KTEST_P_ALL);
	MmUnmapReservedMapping(r, TAG, two);
}

/* Freeing while any mapping is in it: 0x103 with every page mapped counted. */
static void divisible_free_while_mapped(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddressEx(4 * P, TAG, MM_MAPPING_ADDRESS_DIVISIBLE);
	uint8_t *buf = buffer(t, 3 * P);
	MmMapLockedPagesWithReservedMapping(r, TAG, locked(t, buf, P), MmCached);
	MmMapLockedPagesWithReservedMapping(r + 2 * P, TAG, locked(t, buf + P, 2 * P), MmCached);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x103, (ULONG_PTR)r, TAG, 3, KTEST_P_ALL);
	MmFreeMappingAddress(r, TAG);
}

/* ---- misuse: SYSTEM_PTE_MISUSE with Microsoft's parameters ----------------------------- */

/* P4 is the return address into this case, which C cannot name: not compared. */
static void reserve_zero_bytes(struct ktest *t)
{
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x100, 0, TAG, 0, KTEST_P1 | KTEST_P2 | KTEST_P3);
	MmAllocateMappingAddress(0, TAG);
}

static void free_with_another_tag(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x101, (ULONG_PTR)r, OTHER, TAG, KTEST_P_ALL);
	MmFreeMappingAddress(r, OTHER);
}

static void free_what_is_no_reservation(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddress(2 * P, TAG);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x102, (ULONG_PTR)(r + P), TAG, 0, KTEST_P_ALL);
	MmFreeMappingAddress(r + P, TAG);
}

static void free_while_mapped(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(3 * P, TAG);
	uint8_t *buf = buffer(t, 2 * P);
	MmMapLockedPagesWithReservedMapping(r, TAG, locked(t, buf, 2 * P), MmCached);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x103, (ULONG_PTR)r, TAG, 2, KTEST_P_ALL);
	MmFreeMappingAddress(r, TAG);
}

static void map_with_another_tag(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x104, (ULONG_PTR)r, OTHER, TAG, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r, OTHER, m, MmCached);
}

static void map_at_no_reservation(struct ktest *t)
{
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x105, (ULONG_PTR)buf, TAG, 0, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(buf, TAG, m, MmCached);
}

static void map_twice(struct ktest *t)
{
	uint8_t *r = MmAllocateMappingAddress(4 * P, TAG);
	uint8_t *buf = buffer(t, 3 * P);
	MmMapLockedPagesWithReservedMapping(r, TAG, locked(t, buf, 3 * P), MmCached);
	PMDL again = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x107, (ULONG_PTR)r, (ULONG_PTR)r, (ULONG_PTR)(r + 2 * P),
			  KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r, TAG, again, MmCached);
}

/* The MDL itself is checked as for any system mapping: not locked is 0xC4/0xB3. */
static void map_an_unlocked_mdl(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = IoAllocateMdl(buf, P, FALSE, FALSE, NULL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3, (ULONG_PTR)m, 0, MDL_PAGES_LOCKED, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
}

/* Map r (pages PTEs) with an MDL of `mapped` pages of a fresh buffer; returns a locked MDL of
 * `other` pages for the unmap. */
static PMDL mapped_then_other(struct ktest *t, void *r, ULONG mapped, ULONG other)
{
	uint8_t *buf = buffer(t, 4 * P);
	MmMapLockedPagesWithReservedMapping(r, TAG, locked(t, buf, mapped * P), MmCached);
	return locked(t, buf, other * P);
}

static void unmap_with_another_tag(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	PMDL m = mapped_then_other(t, r, 1, 1);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x108, (ULONG_PTR)r, OTHER, TAG, KTEST_P_ALL);
	MmUnmapReservedMapping(r, OTHER, m);
}

static void unmap_what_is_not_mapped(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x109, (ULONG_PTR)r, TAG, 0, KTEST_P_ALL);
	MmUnmapReservedMapping(r, TAG, m);
}

static void unmap_more_than_the_reservation(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(2 * P, TAG);
	PMDL m = mapped_then_other(t, r, 1, 3);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10A, (ULONG_PTR)r, 2, 3, KTEST_P_ALL);
	MmUnmapReservedMapping(r, TAG, m);
}

static void unmap_pages_that_are_not_mapped(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(3 * P, TAG);
	PMDL m = mapped_then_other(t, r, 1, 2);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10B, (ULONG_PTR)r, TAG, 2, KTEST_P_ALL);
	MmUnmapReservedMapping(r, TAG, m);
}

static void unmap_part_of_the_mapping(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(3 * P, TAG);
	PMDL m = mapped_then_other(t, r, 2, 1);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x10C, (ULONG_PTR)r, TAG, 1, KTEST_P_ALL);
	MmUnmapReservedMapping(r, TAG, m);
}

/* MmUnlockPages releases an MDL's system mapping first (rule 8): a reserved one is not its
 * to release, and MmUnmapLockedPages says so with 0x108 (reservation, no tag, its tag). */
static void unlock_of_a_reserved_mapped_mdl(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
	ktest_expect_stop(t, SYSTEM_PTE_MISUSE, 0x108, (ULONG_PTR)r, 0, TAG, KTEST_P_ALL);
	MmUnlockPages(m);
}

/* An MDL a driver filled by hand (MDL_PAGES_LOCKED is the one flag it may set itself) is
 * checked frame by frame as every map routine does (rule 2). */
static PMDL hand_made_mdl(struct ktest *t, pfn_t pfn)
{
	PMDL m = IoAllocateMdl((PVOID)0, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmGetMdlPfnArray(m)[0] = pfn;
	m->MdlFlags |= MDL_PAGES_LOCKED;
	return m;
}

/* A frame beyond RAM without MDL_IO_SPACE: 0xC4/0x89 (MDL, address of its PFN entry, PFN). */
static void map_a_device_frame_without_io_space(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	pfn_t dev = pfn_limit() + 0x2000;
	PMDL m = hand_made_mdl(t, dev);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x89, (ULONG_PTR)m, (ULONG_PTR)MmGetMdlPfnArray(m),
			  dev, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmNonCached);
}

/* A free frame, which nothing pins: 0xC4/0x85 (MDL, pages, PFN). */
static void map_a_free_frame(struct ktest *t)
{
	void *r = MmAllocateMappingAddress(P, TAG);
	PMDL m = hand_made_mdl(t, 0);
	/* Freed last, so that no allocation takes it again before the map. */
	pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, f, PFN_INVALID);
	pfn_free(f);
	MmGetMdlPfnArray(m)[0] = f;
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x85, (ULONG_PTR)m, 1, f, KTEST_P_ALL);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
}

/* IRQL limits: reserving at most APC_LEVEL (0xC4/0xE5: IRQL, 0, 0), mapping and unmapping at
 * most DISPATCH_LEVEL (0x76: IRQL, MDL, KernelMode; 0x79: IRQL, address, MDL). */
static void reserve_above_apc_level(struct ktest *t)
{
	KIRQL old;
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5, DISPATCH_LEVEL, 0, 0, KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	MmAllocateMappingAddress(P, TAG);
}

static void map_above_dispatch_level(struct ktest *t)
{
	KIRQL old;
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76, DISPATCH_LEVEL + 1, (ULONG_PTR)m, KernelMode,
			  KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
}

static void unmap_above_dispatch_level(struct ktest *t)
{
	KIRQL old;
	void *r = MmAllocateMappingAddress(P, TAG);
	uint8_t *buf = buffer(t, P);
	PMDL m = locked(t, buf, P);
	MmMapLockedPagesWithReservedMapping(r, TAG, m, MmCached);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x79, DISPATCH_LEVEL + 1, (ULONG_PTR)r, (ULONG_PTR)m,
			  KTEST_P_ALL);
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	MmUnmapReservedMapping(r, TAG, m);
}

static struct ktest_case mdl_reserved_cases[] = {
	KTEST_CASE(reservation_maps_unmaps_and_maps_again),
	KTEST_CASE(reserved_mapping_works_with_the_space_exhausted),
	KTEST_CASE(bad_arguments_return_null),
	KTEST_CASE(typed_frames_keep_their_type),
	KTEST_CASE(divisible_reservation_maps_several_mdls),
	KTEST_CASE(divisible_mdl_past_the_end_is_null),
	KTEST_DEATH_CASE_P1(map_inside_a_reservation_not_divisible, SYSTEM_PTE_MISUSE, 0x105),
	KTEST_DEATH_CASE_P1(divisible_map_at_an_unaligned_address, SYSTEM_PTE_MISUSE, 0x105),
	KTEST_DEATH_CASE_P1(divisible_map_over_a_mapping, SYSTEM_PTE_MISUSE, 0x107),
	KTEST_DEATH_CASE_P1(divisible_map_with_another_tag, SYSTEM_PTE_MISUSE, 0x104),
	KTEST_DEATH_CASE_P1(divisible_unmap_inside_a_mapping, SYSTEM_PTE_MISUSE, 0x10C),
	KTEST_DEATH_CASE_P1(divisible_unmap_where_nothing_is_mapped, SYSTEM_PTE_MISUSE, 0x109),
	KTEST_DEATH_CASE_P1(divisible_unmap_past_the_end, SYSTEM_PTE_MISUSE, 0x10A),
	KTEST_DEATH_CASE_P1(divisible_unmap_more_than_the_mapping, SYSTEM_PTE_MISUSE, 0x10B),
	KTEST_DEATH_CASE_P1(divisible_free_while_mapped, SYSTEM_PTE_MISUSE, 0x103),
	KTEST_DEATH_CASE_P1(reserve_zero_bytes, SYSTEM_PTE_MISUSE, 0x100),
	KTEST_DEATH_CASE_P1(free_with_another_tag, SYSTEM_PTE_MISUSE, 0x101),
	KTEST_DEATH_CASE_P1(free_what_is_no_reservation, SYSTEM_PTE_MISUSE, 0x102),
	KTEST_DEATH_CASE_P1(free_while_mapped, SYSTEM_PTE_MISUSE, 0x103),
	KTEST_DEATH_CASE_P1(map_with_another_tag, SYSTEM_PTE_MISUSE, 0x104),
	KTEST_DEATH_CASE_P1(map_at_no_reservation, SYSTEM_PTE_MISUSE, 0x105),
	KTEST_DEATH_CASE_P1(map_twice, SYSTEM_PTE_MISUSE, 0x107),
	KTEST_DEATH_CASE_P1(map_an_unlocked_mdl, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	KTEST_DEATH_CASE_P1(unmap_with_another_tag, SYSTEM_PTE_MISUSE, 0x108),
	KTEST_DEATH_CASE_P1(unmap_what_is_not_mapped, SYSTEM_PTE_MISUSE, 0x109),
	KTEST_DEATH_CASE_P1(unmap_more_than_the_reservation, SYSTEM_PTE_MISUSE, 0x10A),
	KTEST_DEATH_CASE_P1(unmap_pages_that_are_not_mapped, SYSTEM_PTE_MISUSE, 0x10B),
	KTEST_DEATH_CASE_P1(unmap_part_of_the_mapping, SYSTEM_PTE_MISUSE, 0x10C),
	KTEST_DEATH_CASE_P1(unlock_of_a_reserved_mapped_mdl, SYSTEM_PTE_MISUSE, 0x108),
	KTEST_DEATH_CASE_P1(map_a_device_frame_without_io_space, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x89),
	KTEST_DEATH_CASE_P1(map_a_free_frame, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x85),
	KTEST_DEATH_CASE_P1(reserve_above_apc_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xE5),
	KTEST_DEATH_CASE_P1(map_above_dispatch_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x76),
	KTEST_DEATH_CASE_P1(unmap_above_dispatch_level, DRIVER_VERIFIER_DETECTED_VIOLATION, 0x79),
	{ 0 }
};
KTEST_SUITE(mdl_reserved, mdl_reserved_cases);
