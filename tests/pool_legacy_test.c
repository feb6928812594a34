/*
 * The older pool interface (mm/RULES.md pool rule P1): ExAllocatePoolZero, ExAllocatePoolUninitialized,
 * ExAllocatePool and ExAllocatePoolWithQuotaTag, each on small (slab) and large (page)
 * allocations: contents, tag, pool type, and the failure each page documents.
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "mm/pool.h"

#define TAG 0x6C67654Cu /* 'Legl' */
#define P PAGE_SIZE

static const SIZE_T sizes[] = { 24, 1000, POOL_SMALL_MAX, 3 * P + 5 };

static bool all_bytes(const uint8_t *p, SIZE_T n, uint8_t v)
{
	for (SIZE_T i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* What pool_query says of an allocation: its tag, size, pool and initialisation. */
static void expect_allocation(struct ktest *t, void *p, SIZE_T size, ULONG tag, bool paged, bool uninit)
{
	struct pool_info pi;
	ASSERT_TRUE(t, p != NULL && pool_query((uint64_t)p, &pi));
	EXPECT_EQ(t, pi.base, (uint64_t)p);
	EXPECT_EQ(t, pi.size, size);
	EXPECT_EQ(t, pi.tag, tag);
	EXPECT_EQ(t, pi.paged, paged);
	EXPECT_EQ(t, pi.uninitialized, uninit);
}

/* A freed allocation is dirtied first, so a fresh one that reads zero was zeroed for it. */
static void zero_allocations_read_zero(struct ktest *t)
{
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint8_t *d = ExAllocatePoolUninitialized(NonPagedPoolNx, sizes[i], TAG);
		ASSERT_TRUE(t, d != NULL);
		ExFreePoolWithTag(d, TAG);
		uint8_t *p = ExAllocatePoolZero(NonPagedPoolNx, sizes[i], TAG);
		expect_allocation(t, p, sizes[i], TAG, false, false);
		EXPECT_TRUE(t, all_bytes(p, sizes[i], 0));
		ExFreePoolWithTag(p, TAG);
		p = ExAllocatePoolZero(PagedPool, sizes[i], TAG);
		expect_allocation(t, p, sizes[i], TAG, true, false);
		EXPECT_TRUE(t, all_bytes(p, sizes[i], 0));
		ExFreePoolWithTag(p, TAG);
	}
}

/* Not zeroed: mdlab fills it with the uninitialized pattern, and records it as such (so it
 * can never be mapped to a user, mm/RULES.md user rule U4). */
static void uninitialized_allocations_hold_the_pattern(struct ktest *t)
{
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint8_t *p = ExAllocatePoolUninitialized(NonPagedPool, sizes[i], TAG);
		expect_allocation(t, p, sizes[i], TAG, false, true);
		EXPECT_TRUE(t, all_bytes(p, sizes[i], POOL_UNINIT_PATTERN));
		ExFreePoolWithTag(p, TAG);
	}
}

/* ExAllocatePool tags 'None': freeing with that tag is accepted (another would be 0xC2/0x0A). */
static void untagged_allocation_is_tagged_none(struct ktest *t)
{
	void *p = ExAllocatePool(NonPagedPool, 64);
	expect_allocation(t, p, 64, POOL_TAG_NONE, false, true);
	ExFreePoolWithTag(p, POOL_TAG_NONE);
	p = ExAllocatePool(PagedPool, 2 * P);
	expect_allocation(t, p, 2 * P, POOL_TAG_NONE, true, true);
	ExFreePool(p);
}

static NTSTATUS try_quota(POOL_TYPE type, SIZE_T size, void **out)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	void *volatile p = NULL;
	__try {
		p = ExAllocatePoolWithQuotaTag(type, size, TAG);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*out = p;
	return st;
}

/* Success is an ordinary allocation; failure raises STATUS_INSUFFICIENT_RESOURCES, or
 * returns NULL with POOL_QUOTA_FAIL_INSTEAD_OF_RAISE; an unknown pool type fails the same way. */
static void quota_allocation_raises_on_failure(struct ktest *t)
{
	void *p;
	EXPECT_EQ(t, (ULONG)try_quota(NonPagedPoolNx, 300, &p), (ULONG)STATUS_SUCCESS);
	expect_allocation(t, p, 300, TAG, false, true);
	ExFreePoolWithTag(p, TAG);
	EXPECT_EQ(t, (ULONG)try_quota((POOL_TYPE)(PagedPool | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE), 300, &p),
		  (ULONG)STATUS_SUCCESS);
	expect_allocation(t, p, 300, TAG, true, true);
	ExFreePoolWithTag(p, TAG);
	EXPECT_EQ(t, (ULONG)try_quota((POOL_TYPE)(NonPagedPoolNx | POOL_COLD_ALLOCATION), 64, &p), (ULONG)STATUS_SUCCESS);
	expect_allocation(t, p, 64, TAG, false, true);
	ExFreePoolWithTag(p, TAG);

	SIZE_T huge = 1ul << 40;
	EXPECT_EQ(t, (ULONG)try_quota(NonPagedPool, huge, &p), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
	EXPECT_TRUE(t, p == NULL);
	EXPECT_EQ(t, (ULONG)try_quota((POOL_TYPE)(NonPagedPool | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE), huge, &p),
		  (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, p == NULL);
	EXPECT_EQ(t, (ULONG)try_quota((POOL_TYPE)3, 300, &p), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
}

static void unknown_pool_types_and_sizes_get_null(struct ktest *t)
{
	EXPECT_TRUE(t, ExAllocatePoolZero((POOL_TYPE)77, 64, TAG) == NULL);
	EXPECT_TRUE(t, ExAllocatePoolUninitialized((POOL_TYPE)77, 64, TAG) == NULL);
	EXPECT_TRUE(t, ExAllocatePool((POOL_TYPE)77, 64) == NULL);
	EXPECT_TRUE(t, ExAllocatePoolZero(NonPagedPool, 1ul << 40, TAG) == NULL);
}

/* Zero bytes is BAD_POOL_CALLER 0x00 (0, pool type, tag), as for every pool routine. */
static void zero_bytes_is_0xc2_0(struct ktest *t)
{
	ktest_expect_stop(t, BAD_POOL_CALLER, 0x00, 0, NonPagedPoolNx, TAG, KTEST_P_ALL);
	ExAllocatePoolZero(NonPagedPoolNx, 0, TAG);
}

static struct ktest_case pool_legacy_cases[] = {
	KTEST_CASE(zero_allocations_read_zero),
	KTEST_CASE(uninitialized_allocations_hold_the_pattern),
	KTEST_CASE(untagged_allocation_is_tagged_none),
	KTEST_CASE(quota_allocation_raises_on_failure),
	KTEST_CASE(unknown_pool_types_and_sizes_get_null),
	KTEST_DEATH_CASE_P1(zero_bytes_is_0xc2_0, BAD_POOL_CALLER, 0x00),
	{ 0 }
};
KTEST_SUITE(pool_legacy, pool_legacy_cases);
