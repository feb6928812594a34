/*
 * The pool behind ExAllocatePool2 (mm/pool.c, include/wdm.h): contents on allocation,
 * placement (slab slots that never overlap; whole pages followed by an unmapped guard page),
 * rights read from the real page tables and enforced by real faults (RW, NX; W^X refuses
 * executable pool), failure reporting, the counters, and the bug checks of misuse (death
 * cases, with the P1 values of mm/pool.h's comment).
 *
 * A case records what it allocates in `live`; the suite's exit frees what a case left behind
 * (an ASSERT ends a case early), so the "pool bytes in use" count always returns.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"

#define MAKE_TAG(a, b, c, d) ((ULONG)(a) | (ULONG)(b) << 8 | (ULONG)(c) << 16 | (ULONG)(d) << 24)
#define TAG_TEST MAKE_TAG('T', 'p', 'o', 'l')
#define TAG_OTHER MAKE_TAG('T', 'o', 't', 'h')


/* ---- what a case holds ------------------------------------------------------------- */

#define MAX_LIVE 512
static struct live {
	uint8_t *p;
	SIZE_T size;
	ULONG tag;
} live[MAX_LIVE];
static int nlive;

static void *keep(struct ktest *t, void *p, SIZE_T size, ULONG tag)
{
	ASSERT_TRUE(t, p != NULL);
	ASSERT_LT(t, nlive, MAX_LIVE);
	live[nlive].p = p;
	live[nlive].size = size;
	live[nlive].tag = tag;
	nlive++;
	return p;
}

/* Nonpaged, zeroed, recorded; the case ends (ASSERT) when the pool says no. */
static uint8_t *alloc(struct ktest *t, SIZE_T size)
{
	return keep(t, ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG_TEST), size, TAG_TEST);
}

/* Drop p from the record (the case frees it itself). */
static void forget(void *p)
{
	for (int i = 0; i < nlive; i++) {
		if (live[i].p == p) {
			live[i] = live[--nlive];
			return;
		}
	}
	PANIC("pool_test: %p is not held by the test", p);
}

/* ExFreePoolWithTag with the tag it was allocated with. */
static void release(void *p)
{
	for (int i = 0; i < nlive; i++) {
		if (live[i].p == p) {
			ExFreePoolWithTag(p, live[i].tag);
			live[i] = live[--nlive];
			return;
		}
	}
	PANIC("pool_test: %p is not held by the test", p);
}

static void pool_suite_exit(struct ktest *t)
{
	(void)t;
	while (nlive)
		ExFreePool(live[--nlive].p);
}

static bool all_bytes(const uint8_t *p, SIZE_T n, uint8_t v)
{
	for (SIZE_T i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static struct pool_stats pool_now(void)
{
	pool_trim();
	struct pool_stats s;
	pool_get_stats(&s);
	return s;
}

static uint64_t pages_for(SIZE_T size) { return ALIGN_UP(size, PAGE_SIZE) / PAGE_SIZE; }

/* ---- contents ------------------------------------------------------------------------ */

static const SIZE_T some_sizes[] = { 1, 8, 24, 100, 1000, POOL_SMALL_MAX - 1, POOL_SMALL_MAX, 4096, 5000,
				     3 * 4096 };

/* Dirty an allocation, free it, allocate the same size again: zero.  For small sizes a second
 * allocation keeps the slab page alive, so the same slot comes back and the zeroing is proven
 * on the very bytes that were dirtied. */
static void nonpaged_allocation_is_zeroed(struct ktest *t)
{
	for (unsigned i = 0; i < ARRAY_SIZE(some_sizes); i++) {
		SIZE_T size = some_sizes[i];
		uint8_t *keeper = alloc(t, size);
		uint8_t *p = alloc(t, size);
		EXPECT_TRUE(t, all_bytes(p, size, 0));
		memset(p, 0xEE, size);
		release(p);
		uint8_t *q = alloc(t, size);
		if (size < POOL_SMALL_MAX)
			EXPECT_EQ(t, (uint64_t)q, (uint64_t)p);
		if (!all_bytes(q, size, 0))
			KTEST_FAIL(t, "a reallocation of %lu bytes is not zeroed", size);
		release(q);
		release(keeper);
	}
}

static void uninitialized_flag_gives_the_pattern(struct ktest *t)
{
	for (unsigned i = 0; i < ARRAY_SIZE(some_sizes); i++) {
		SIZE_T size = some_sizes[i];
		uint8_t *p = keep(t, ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, size, TAG_TEST),
				  size, TAG_TEST);
		if (!all_bytes(p, size, POOL_UNINIT_PATTERN))
			KTEST_FAIL(t, "%lu uninitialized bytes do not all hold 0x%x", size, POOL_UNINIT_PATTERN);
		struct pool_info info;
		EXPECT_TRUE(t, pool_query((uint64_t)p, &info) && info.uninitialized);
		release(p);
	}
}

/* The slot a small allocation of `size` bytes gets: the smallest power of two from 32 that
 * holds the 16-byte header, the bytes and 8 guard bytes (mm/RULES.md, "Pool"). */
static uint32_t slot_bytes_for(SIZE_T size)
{
	uint32_t slot = 32;
	while (slot < 16 + size + 8)
		slot *= 2;
	return slot;
}

/* A slot is filled by words (mm/pool.c fill_slot): for sizes that end inside a word, on a
 * word boundary, and with an odd or even number of guard words, the data reads as asked (0,
 * or the uninitialized pattern) and every byte from its end to the slot's end holds the
 * guard pattern, bytes a word store could get wrong if its mask or count were off. */
static void slot_bytes_after_the_data_are_guard(struct ktest *t)
{
	static const SIZE_T sizes[] = { 1, 7, 8, 9, 15, 16, 17, 56, 57, 63, 64, 100, 104, 111, 1000, 2023 };
	for (int uninit = 0; uninit < 2; uninit++)
		for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
			SIZE_T size = sizes[i];
			POOL_FLAGS flags = POOL_FLAG_NON_PAGED | (uninit ? POOL_FLAG_UNINITIALIZED : 0);
			uint8_t *p = keep(t, ExAllocatePool2(flags, size, TAG_TEST), size, TAG_TEST);
			uint32_t after = slot_bytes_for(size) - 16 - (uint32_t)size;
			if (!all_bytes(p, size, uninit ? POOL_UNINIT_PATTERN : 0))
				KTEST_FAIL(t, "%lu bytes (uninitialized %d): the data is not 0x%x", size, uninit,
					   uninit ? POOL_UNINIT_PATTERN : 0);
			if (!all_bytes(p + size, after, POOL_GUARD_PATTERN))
				KTEST_FAIL(t, "%lu bytes: the %u bytes after them are not all the guard 0x%x", size, after,
					   POOL_GUARD_PATTERN);
			release(p);
		}
}

/* ---- each CPU's kept blocks (mm/RULES.md, pool rule P3) ------------------------------- */

/* The class index of a small allocation, as the pool picks it (slot_bytes_for's power). */
static unsigned class_for(SIZE_T size) { return (unsigned)__builtin_ctz(slot_bytes_for(size)) - 5; }

/* What TAG_TEST holds now in the tag counts (0, 0 when it has no entry). */
static struct pool_tag_usage tag_usage(ULONG tag)
{
	struct pool_tag_usage all[64];
	unsigned n = pool_get_tags(all, 64);
	for (unsigned i = 0; i < n; i++)
		if (all[i].tag == tag)
			return all[i];
	return (struct pool_tag_usage){ .tag = tag };
}

static void *volatile *kept_here(bool paged, SIZE_T size)
{
	return (void *volatile *)&this_cpu()->pool_kept[paged][class_for(size)];
}

/* A small block freed is kept by this CPU, counted as freed at once (bytes, allocations, its
 * tag), and this CPU's next allocation of the class (another size of it too) takes it back,
 * zeroed and guarded as a fresh slot; pool_get_stats first puts kept blocks back on their
 * chains.  (A freed slot also heads its page's chain, so the address alone would not show
 * which path gave it: the CPU's word is looked at.) */
static void freed_block_is_kept_and_given_back_on_this_cpu(struct ktest *t)
{
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql); /* stay on this CPU, no DPC in between */
	struct pool_stats s0, s1;
	pool_get_stats(&s0); /* nothing kept from here on (it drains) */
	struct pool_tag_usage u0 = tag_usage(TAG_TEST);
	uint8_t *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 56, TAG_TEST);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, tag_usage(TAG_TEST).allocs, u0.allocs + 1);
	EXPECT_EQ(t, tag_usage(TAG_TEST).bytes, u0.bytes + 56);
	memset(p, 0xEE, 56);
	ExFreePool(p);
	EXPECT_EQ(t, (uint64_t)*kept_here(false, 56), (uint64_t)p);
	EXPECT_EQ(t, tag_usage(TAG_TEST).allocs, u0.allocs);
	EXPECT_EQ(t, tag_usage(TAG_TEST).bytes, u0.bytes);
	struct pool_info info;
	EXPECT_FALSE(t, pool_query((uint64_t)p, &info)); /* kept is not live */
	/* 60 bytes: the same class (16 + 60 + 8 <= 128) */
	uint8_t *q = ExAllocatePool2(POOL_FLAG_NON_PAGED, 60, TAG_TEST);
	EXPECT_EQ(t, (uint64_t)q, (uint64_t)p);
	EXPECT_EQ(t, (uint64_t)*kept_here(false, 56), 0);
	EXPECT_TRUE(t, all_bytes(q, 60, 0));
	EXPECT_TRUE(t, all_bytes(q + 60, slot_bytes_for(60) - 16 - 60, POOL_GUARD_PATTERN));
	EXPECT_TRUE(t, pool_query((uint64_t)q, &info) && info.size == 60 && info.tag == TAG_TEST);
	EXPECT_EQ(t, tag_usage(TAG_TEST).allocs, u0.allocs + 1);
	EXPECT_EQ(t, tag_usage(TAG_TEST).bytes, u0.bytes + 60);
	ExFreePoolWithTag(q, TAG_TEST);
	EXPECT_EQ(t, (uint64_t)*kept_here(false, 56), (uint64_t)q);
	/* The largest and the smallest of the class in turn: a block given out smaller than it
	 * was has the guard from its new end, over the old data. */
	uint8_t *big = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, 104, TAG_TEST);
	EXPECT_EQ(t, (uint64_t)big, (uint64_t)p);
	ExFreePoolWithTag(big, TAG_TEST);
	uint8_t *small = ExAllocatePool2(POOL_FLAG_NON_PAGED, 41, TAG_TEST);
	EXPECT_EQ(t, (uint64_t)small, (uint64_t)p);
	EXPECT_TRUE(t, all_bytes(small, 41, 0));
	EXPECT_TRUE(t, all_bytes(small + 41, slot_bytes_for(41) - 16 - 41, POOL_GUARD_PATTERN));
	ExFreePoolWithTag(small, TAG_TEST);
	pool_get_stats(&s1);
	EXPECT_EQ(t, (uint64_t)*kept_here(false, 56), 0); /* back on its chain */
	EXPECT_EQ(t, s1.bytes_in_use, s0.bytes_in_use);
	EXPECT_EQ(t, s1.allocations, s0.allocations);
	KeLowerIrql(irql);
}

struct other_cpu_free {
	void *p;
	void *kept_there; /* what that CPU keeps of the class after the free */
	unsigned cls;
};

static void free_on_that_cpu(void *arg)
{
	struct other_cpu_free *o = arg;
	ExFreePoolWithTag(o->p, TAG_TEST);
	o->kept_there = this_cpu()->pool_kept[0][o->cls];
}

/* A block allocated here and freed on another CPU is that CPU's to keep: this CPU does not
 * get it back, the counts drop at the free, and pool_trim puts it back on its chain so the
 * slab pages count as without it. */
static void block_freed_on_another_cpu_is_kept_there(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	unsigned other = smp_this_cpu() == 0 ? 1 : 0;
	struct pool_stats s0 = pool_now();
	struct pool_tag_usage u0 = tag_usage(TAG_TEST);
	struct other_cpu_free o = { .p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, TAG_TEST), .cls = class_for(200) };
	ASSERT_TRUE(t, o.p != NULL);
	ASSERT_TRUE(t, smp_work_start(other, free_on_that_cpu, &o));
	ASSERT_TRUE(t, smp_work_wait(other));
	EXPECT_EQ(t, (uint64_t)o.kept_there, (uint64_t)o.p);
	EXPECT_EQ(t, tag_usage(TAG_TEST).allocs, u0.allocs);
	EXPECT_EQ(t, tag_usage(TAG_TEST).bytes, u0.bytes);
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql);
	void *here = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, TAG_TEST);
	KeLowerIrql(irql);
	ASSERT_TRUE(t, here != NULL);
	EXPECT_TRUE(t, here != o.p);
	ExFreePoolWithTag(here, TAG_TEST);
	struct pool_stats s1 = pool_now(); /* pool_trim: every CPU's kept blocks back */
	EXPECT_EQ(t, (uint64_t)__atomic_load_n(&kcpus[other].pool_kept[0][o.cls], __ATOMIC_RELAXED), 0);
	EXPECT_EQ(t, s1.bytes_in_use, s0.bytes_in_use);
	EXPECT_EQ(t, s1.slab_pages, s0.slab_pages);
	EXPECT_EQ(t, s1.pages_in_use, s0.pages_in_use);
}

/* ---- placement ----------------------------------------------------------------------- */

static void large_allocation_is_page_aligned_before_a_guard_page(struct ktest *t)
{
	static const SIZE_T sizes[] = { POOL_SMALL_MAX, 4095, 4096, 4097, 5000, 3 * 4096, 5 * 4096 + 1 };
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		SIZE_T size = sizes[i];
		uint8_t *p = alloc(t, size);
		uint64_t va = (uint64_t)p, n = pages_for(size);
		EXPECT_EQ(t, va & (PAGE_SIZE - 1), 0);
		for (uint64_t k = 0; k < n; k++) {
			struct pt_query q;
			pt_query(&kernel_root, va + k * PAGE_SIZE, &q);
			EXPECT_TRUE(t, q.present);
		}
		/* The whole last page is usable memory, beyond the size asked too. */
		struct faultcap f;
		uint8_t v;
		EXPECT_TRUE(t, faultcap_try_load8(va + n * PAGE_SIZE - 1, &v, &f));

		uint64_t guard = va + n * PAGE_SIZE;
		struct pt_query q;
		pt_query(&kernel_root, guard, &q);
		EXPECT_FALSE(t, q.present);
		EXPECT_FALSE(t, faultcap_try_store8(guard, 0x11, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_WRITE_NOT_PRESENT, guard);
		EXPECT_EQ(t, f.rip, (uint64_t)faultcap_store8);
		EXPECT_FALSE(t, faultcap_try_load8(guard + 0x10, &v, &f));
		EXPECT_PAGE_FAULT(t, &f, PF_READ_NOT_PRESENT, guard + 0x10);
		release(p);
	}
	/* One byte less than POOL_SMALL_MAX is a slab slot, not a page. */
	uint8_t *s = alloc(t, POOL_SMALL_MAX - 1);
	EXPECT_NE(t, (uint64_t)s & (PAGE_SIZE - 1), 0);
	release(s);
}

/* Every size from 1 to 64, then across every slot class with both sides of each class edge
 * (a class of S bytes holds up to S - 16 - 8; below POOL_SMALL_MAX only), twice each: the buffers are 16-byte aligned,
 * their ranges are disjoint, and each still holds its own fill after all were written. */
static void small_allocations_never_overlap(struct ktest *t)
{
	static SIZE_T sizes[MAX_LIVE];
	unsigned n = 0;
	for (SIZE_T s = 1; s <= 64; s++)
		sizes[n++] = s;
	static const uint32_t slot[] = { 32, 64, 128, 256, 512, 1024, 2048 };
	for (unsigned c = 0; c < ARRAY_SIZE(slot); c++) {
		for (uint32_t s = slot[c] - 24; s <= slot[c] - 23; s++)
			if (s < POOL_SMALL_MAX)
				sizes[n++] = s;
	}
	for (SIZE_T s = 65; s < POOL_SMALL_MAX; s += 37)
		sizes[n++] = s;
	unsigned distinct = n;
	for (unsigned i = 0; i < distinct; i++)
		sizes[n++] = sizes[i];
	ASSERT_LE(t, n, MAX_LIVE);

	static uint8_t *p[MAX_LIVE];
	for (unsigned i = 0; i < n; i++) {
		p[i] = alloc(t, sizes[i]);
		EXPECT_EQ(t, (uint64_t)p[i] & 15, 0);
		memset(p[i], (uint8_t)(i * 37 + 1), sizes[i]);
	}
	for (unsigned i = 0; i < n; i++) {
		if (!all_bytes(p[i], sizes[i], (uint8_t)(i * 37 + 1)))
			KTEST_FAIL(t, "allocation %u (%lu bytes at %p) was overwritten", i, sizes[i], p[i]);
		for (unsigned j = i + 1; j < n; j++) {
			uint64_t a = (uint64_t)p[i], b = (uint64_t)p[j];
			if (a == b || (a < b + sizes[j] && b < a + sizes[i]))
				KTEST_FAIL(t, "%lu bytes at %p and %lu bytes at %p overlap", sizes[i], p[i], sizes[j], p[j]);
		}
		struct pool_info info = { 0 };
		bool found = pool_query((uint64_t)p[i] + sizes[i] - 1, &info);
		if (!found || info.base != (uint64_t)p[i] || info.size != sizes[i] || info.whole_pages)
			KTEST_FAIL(t, "pool_query(last byte of %lu bytes at %p): %s, base 0x%lx size %lu", sizes[i], p[i],
				   found ? "found" : "not found", info.base, info.size);
	}
	for (unsigned i = 0; i < n; i++)
		release(p[i]);
}

static void pool_query_reports_the_allocation(struct ktest *t)
{
	struct pool_info info;
	uint8_t *s = alloc(t, 100);
	ASSERT_TRUE(t, pool_query((uint64_t)s + 50, &info));
	EXPECT_EQ(t, info.base, (uint64_t)s);
	EXPECT_EQ(t, info.size, 100);
	EXPECT_EQ(t, info.tag, TAG_TEST);
	EXPECT_FALSE(t, info.whole_pages);
	EXPECT_FALSE(t, info.paged);
	EXPECT_FALSE(t, info.uninitialized);
	EXPECT_TRUE(t, pool_query((uint64_t)s, &info) && info.base == (uint64_t)s);
	EXPECT_FALSE(t, pool_query((uint64_t)s + 100, &info)); /* the guard bytes */
	EXPECT_FALSE(t, pool_query((uint64_t)s - 1, &info));   /* the header */

	uint8_t *l = alloc(t, 5000);
	ASSERT_TRUE(t, pool_query((uint64_t)l + 4500, &info));  /* on the second page */
	EXPECT_EQ(t, info.base, (uint64_t)l);
	EXPECT_EQ(t, info.size, 5000);
	EXPECT_EQ(t, info.tag, TAG_TEST);
	EXPECT_TRUE(t, info.whole_pages);
	EXPECT_FALSE(t, pool_query((uint64_t)l + 5000, &info));
	EXPECT_FALSE(t, pool_query((uint64_t)l + 2 * PAGE_SIZE, &info)); /* the guard page */

	uint8_t *g = keep(t, ExAllocatePool2(POOL_FLAG_PAGED, 300, TAG_OTHER), 300, TAG_OTHER);
	EXPECT_TRUE(t, pool_query((uint64_t)g, &info) && info.paged && info.tag == TAG_OTHER);
	release(g);

	EXPECT_FALSE(t, pool_query((uint64_t)&info, &info));   /* the stack */
	release(s);
	release(l);
	EXPECT_FALSE(t, pool_query((uint64_t)l, &info));
}

/* ---- rights -------------------------------------------------------------------------- */

static void expect_rw_nx(struct ktest *t, uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	EXPECT_TRUE(t, q.present);
	EXPECT_TRUE(t, q.eff.write);
	EXPECT_FALSE(t, q.eff.exec);
	EXPECT_FALSE(t, q.eff.user);
	/* And in the raw entries, decoded independently of pt.c. */
	struct mmt_rights r = mmt_rights_of(va);
	EXPECT_TRUE(t, r.present && r.write && r.nx && !r.user);
}

static void pool_pages_are_rw_and_nx(struct ktest *t)
{
	uint8_t *s = alloc(t, 64), *l = alloc(t, 3 * PAGE_SIZE);
	expect_rw_nx(t, (uint64_t)s);
	for (int k = 0; k < 3; k++)
		expect_rw_nx(t, (uint64_t)l + k * PAGE_SIZE);
	release(s);
	release(l);
}

static void executing_from_pool_faults(struct ktest *t)
{
	uint8_t *s = alloc(t, 64), *l = alloc(t, 2 * PAGE_SIZE);
	s[0] = FAULTCAP_RET_OPCODE;
	l[PAGE_SIZE + 8] = FAULTCAP_RET_OPCODE;
	expect_fetch_refused(t, (uint64_t)s);
	expect_fetch_refused(t, (uint64_t)l + PAGE_SIZE + 8);
	EXPECT_EQ(t, s[0], FAULTCAP_RET_OPCODE);
	release(s);
	release(l);
}

/* No pool page is writable and executable: executable pool is refused, as is a request that
 * names no pool type or two. */
static void executable_pool_is_refused(struct ktest *t)
{
	struct pool_stats s0 = pool_now();
	EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, 64, TAG_TEST) == NULL);
	EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, 3 * PAGE_SIZE, TAG_TEST) == NULL);
	EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE, 64, TAG_TEST) == NULL);
	EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED, 64, TAG_TEST) == NULL);
	EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_UNINITIALIZED, 64, TAG_TEST) == NULL);
	EXPECT_EQ(t, pool_now().allocations, s0.allocations);
	/* And with RAISE_ON_FAILURE the refusal is raised. */
	volatile NTSTATUS st = 0;
	__try {
		ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_RAISE_ON_FAILURE, 64, TAG_TEST);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_INSUFFICIENT_RESOURCES);
}

/* ---- failure ------------------------------------------------------------------------- */

static void impossible_size_fails_or_raises(struct ktest *t)
{
	static const SIZE_T impossible[] = { (SIZE_T)1 << 40, ~(SIZE_T)0, 0xFFFFF000ul,
					     (SIZE_T)(KVA_POOL_END - KVA_POOL_BASE) / 2 };
	struct pool_stats s0 = pool_now();
	for (unsigned i = 0; i < ARRAY_SIZE(impossible); i++) {
		SIZE_T size = impossible[i];
		EXPECT_TRUE(t, ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG_TEST) == NULL);
		volatile int raised = 0, returned = 0;
		__try {
			ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, size, TAG_TEST);
			returned = 1;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			raised = 1;
			EXPECT_EQ(t, (ULONG)GetExceptionCode(), (ULONG)STATUS_INSUFFICIENT_RESOURCES);
			EXPECT_TRUE(t, GetExceptionTrapFrame() == NULL); /* raised, not a fault */
		}
		if (!raised || returned)
			KTEST_FAIL(t, "ExAllocatePool2(RAISE_ON_FAILURE, 0x%lx) did not raise", size);
	}
	struct pool_stats s = pool_now();
	EXPECT_EQ(t, s.allocations, s0.allocations);
	EXPECT_EQ(t, s.pages_in_use, s0.pages_in_use);
}

/* ---- the legacy routine -------------------------------------------------------------- */

static void allocate_pool_with_tag_works(struct ktest *t)
{
	struct pool_info info;
	uint8_t *p = keep(t, ExAllocatePoolWithTag(NonPagedPool, 200, TAG_OTHER), 200, TAG_OTHER);
	EXPECT_TRUE(t, pool_query((uint64_t)p, &info) && info.tag == TAG_OTHER && info.size == 200 && !info.paged);
	/* The legacy routine does not zero (mm/pool.c fills the uninitialized pattern). */
	EXPECT_TRUE(t, all_bytes(p, 200, POOL_UNINIT_PATTERN));
	memset(p, 0x42, 200);
	expect_rw_nx(t, (uint64_t)p);
	release(p);

	uint8_t *l = keep(t, ExAllocatePoolWithTag(NonPagedPoolNx, 3 * PAGE_SIZE, TAG_OTHER), 3 * PAGE_SIZE, TAG_OTHER);
	EXPECT_EQ(t, (uint64_t)l & (PAGE_SIZE - 1), 0);
	expect_rw_nx(t, (uint64_t)l); /* NonPagedPool is NonPagedPoolExecute by name, never executable here */
	forget(l);
	ExFreePool(l); /* the untagged free */

	uint8_t *g = keep(t, ExAllocatePoolWithTag(PagedPool, 64, TAG_OTHER), 64, TAG_OTHER);
	EXPECT_TRUE(t, pool_query((uint64_t)g, &info) && info.paged);
	forget(g);
	ExFreePool(g);

	EXPECT_TRUE(t, ExAllocatePoolWithTag((POOL_TYPE)2, 64, TAG_OTHER) == NULL);
}

/* ---- counters ------------------------------------------------------------------------ */

#define SLOTS_128 (PAGE_SIZE / 128)

/* bytes_in_use and pages_in_use follow allocations and return exactly; of the slab pages
 * whose last slot is freed the class keeps one, and pool_trim (in pool_now) gives it back
 * (unmapped, its frame free). */
static void counters_return_and_empty_slab_pages_go_back(struct ktest *t)
{
	struct pool_stats s0 = pool_now(), s;
	const unsigned n = 3 * SLOTS_128 + 1; /* 100 bytes: the 128-byte class */
	uint8_t *p[3 * SLOTS_128 + 1];
	for (unsigned i = 0; i < n; i++)
		p[i] = alloc(t, 100);
	s = pool_now();
	EXPECT_EQ(t, s.bytes_in_use - s0.bytes_in_use, n * 100);
	EXPECT_EQ(t, s.allocations - s0.allocations, n);
	EXPECT_GE(t, s.pages_in_use - s0.pages_in_use, 3);
	EXPECT_LE(t, s.pages_in_use - s0.pages_in_use, 4);
	EXPECT_EQ(t, s.slab_pages - s0.slab_pages, s.pages_in_use - s0.pages_in_use);

	/* A large allocation's pages are its own: unmapped the moment it is freed. */
	uint8_t *l = alloc(t, 2 * PAGE_SIZE + 10);
	s = pool_now();
	EXPECT_EQ(t, s.large_pages - s0.large_pages, 3);
	EXPECT_GE(t, s.pages_in_use - s0.pages_in_use, 3 + 3);
	release(l);
	EXPECT_EQ(t, pool_now().large_pages, s0.large_pages);
	for (int k = 0; k < 3; k++) {
		struct pt_query q;
		pt_query(&kernel_root, (uint64_t)l + k * PAGE_SIZE, &q);
		EXPECT_FALSE(t, q.present);
	}

	/* The pages this case's slabs used; with no other pool user, each was fresh. */
	bool pool_was_empty = s0.allocations == 0;
	uint64_t pages[8];
	unsigned npages = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t pg = ALIGN_DOWN((uint64_t)p[i], PAGE_SIZE);
		bool seen = false;
		for (unsigned k = 0; k < npages; k++)
			seen |= pages[k] == pg;
		if (!seen && npages < ARRAY_SIZE(pages))
			pages[npages++] = pg;
	}
	for (unsigned i = 0; i < n; i++)
		release(p[i]);
	/* The class keeps one empty page mapped (mm/pool.c's spare) until pool_trim. */
	pool_get_stats(&s);
	EXPECT_LE(t, s.slab_pages - s0.slab_pages, 1);
	if (pool_was_empty)
		EXPECT_EQ(t, s.slab_pages - s0.slab_pages, 1);
	s = pool_now();
	EXPECT_EQ(t, s.bytes_in_use, s0.bytes_in_use);
	EXPECT_EQ(t, s.allocations, s0.allocations);
	EXPECT_EQ(t, s.pages_in_use, s0.pages_in_use);
	EXPECT_EQ(t, s.slab_pages, s0.slab_pages);
	if (pool_was_empty) {
		for (unsigned k = 0; k < npages; k++) {
			struct pt_query q;
			pt_query(&kernel_root, pages[k], &q);
			EXPECT_FALSE(t, q.present);
		}
	}
}

/* ---- misuse (death cases) ------------------------------------------------------------ */

static void *alloc_bare(SIZE_T size) { return ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TAG_TEST); }

/* The slab path: the slot's header says free. */
static void double_free_small_is_0xc2_7(struct ktest *t)
{
	void *other = alloc_bare(100), *p = alloc_bare(100);
	ASSERT_TRUE(t, other && p);
	ExFreePoolWithTag(p, TAG_TEST);
	/* 0xC2 P1 7: reserved (0), the first 8 bytes of the slot's 16-byte header, the address
	 * (the page stays in use for `other`, so the header can be read). */
	expect_stop(t, BAD_POOL_CALLER, 0x07, 0, *(volatile uint64_t *)((uint8_t *)p - 16), (ULONG_PTR)p);
	ExFreePoolWithTag(p, TAG_TEST);
}

/* A kept block (this CPU's, after its free): the second free is 0x07 with the header as it
 * was, the kept block untouched. */
static void double_free_of_a_kept_block_is_0xc2_7(struct ktest *t)
{
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql);
	void *p = alloc_bare(100);
	ASSERT_TRUE(t, p != NULL);
	ExFreePoolWithTag(p, TAG_TEST);
	ASSERT_EQ(t, (uint64_t)*kept_here(false, 100), (uint64_t)p);
	expect_stop(t, BAD_POOL_CALLER, 0x07, 0, *(volatile uint64_t *)((uint8_t *)p - 16), (ULONG_PTR)p);
	ExFreePoolWithTag(p, TAG_TEST);
}

/* The page path: the allocation's pages went back. */
static void double_free_large_is_0xc2_7(struct ktest *t)
{
	void *p = alloc_bare(2 * PAGE_SIZE);
	ASSERT_TRUE(t, p != NULL);
	ExFreePool(p);
	/* Whole pages have no header: its contents are 0. */
	expect_stop(t, BAD_POOL_CALLER, 0x07, 0, 0, (ULONG_PTR)p);
	ExFreePool(p);
}

static void wrong_tag_is_0xc2_a(struct ktest *t)
{
	void *p = alloc_bare(100);
	ASSERT_TRUE(t, p != NULL);
	ktest_expect_stop(t, BAD_POOL_CALLER, 0x0A, (ULONG_PTR)p, TAG_TEST, TAG_OTHER, KTEST_P_ALL);
	ExFreePoolWithTag(p, TAG_OTHER);
}

static void free_stack_address_is_0xc2_42(struct ktest *t)
{
	uint64_t on_stack[4] = { 0 };
	ktest_expect_stop(t, BAD_POOL_CALLER, 0x42, (ULONG_PTR)on_stack, 0, 0, KTEST_P_ALL);
	ExFreePool(on_stack);
}

static void free_inside_a_small_allocation_is_0xc2_46(struct ktest *t)
{
	uint8_t *p = alloc_bare(100);
	ASSERT_TRUE(t, p != NULL);
	ktest_expect_stop(t, BAD_POOL_CALLER, 0x46, (ULONG_PTR)(p + 8), 0, 0, KTEST_P_ALL);
	ExFreePool(p + 8);
}

static void free_inside_a_large_allocation_is_0xc2_46(struct ktest *t)
{
	uint8_t *p = alloc_bare(3 * PAGE_SIZE);
	ASSERT_TRUE(t, p != NULL);
	ktest_expect_stop(t, BAD_POOL_CALLER, 0x46, (ULONG_PTR)(p + PAGE_SIZE), 0, 0, KTEST_P_ALL);
	ExFreePool(p + PAGE_SIZE);
}

static void free_user_address_is_0xc2_40(struct ktest *t) { (void)t; ExFreePool((void *)0x10000); }

/* 0xC2 P1 8: allocation above the pool type's IRQL (IRQL, pool type, size). */
static void nonpaged_allocation_above_dispatch_is_0xc2_8(struct ktest *t)
{
	(void)t;
	KIRQL old;
	KeRaiseIrql(HIGH_LEVEL, &old);
	ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, TAG_TEST);
}

static void paged_allocation_at_dispatch_is_0xc2_8(struct ktest *t)
{
	(void)t;
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG_TEST);
}

/* 0xC2 P1 9: a free above DISPATCH_LEVEL (IRQL, the allocation's pool type, address). */
static void nonpaged_free_above_dispatch_is_0xc2_9(struct ktest *t)
{
	void *p = alloc_bare(64);
	ASSERT_TRUE(t, p != NULL);
	expect_stop(t, BAD_POOL_CALLER, 0x09, HIGH_LEVEL, NonPagedPoolNx, (ULONG_PTR)p);
	KIRQL old;
	KeRaiseIrql(HIGH_LEVEL, &old);
	ExFreePool(p);
}

static void paged_free_above_dispatch_is_0xc2_9(struct ktest *t)
{
	uint8_t *p = ExAllocatePool2(POOL_FLAG_PAGED, 3 * PAGE_SIZE, TAG_TEST);
	ASSERT_TRUE(t, p != NULL);
	/* An address inside a large allocation still names its pool type. */
	expect_stop(t, BAD_POOL_CALLER, 0x09, DISPATCH_LEVEL + 1, PagedPool, (ULONG_PTR)(p + PAGE_SIZE));
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL + 1, &old);
	ExFreePool(p + PAGE_SIZE);
}

/* Paged pool is freed at APC_LEVEL or below: ExFreePool of a small paged block at
 * DISPATCH_LEVEL is 0xC2/0x09 (the IRQL, PagedPool, the address), with the block's page
 * trimmed first, so the pool type comes from the page's record: a read of the block's header
 * would fault there and stop with 0x0A instead.  Before, the free was let through at
 * DISPATCH_LEVEL and faulted the page in: 0x0A. */
static void paged_free_at_dispatch_is_0xc2_9(struct ktest *t)
{
	uint8_t *p = ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG_TEST);
	ASSERT_TRUE(t, p != NULL);
	pool_trim_paged();
	ASSERT_FALSE(t, mmt_has(mmt_raw_pte_in(&kernel_root, (uint64_t)p), MMT_PTE_P));
	expect_stop(t, BAD_POOL_CALLER, 0x09, DISPATCH_LEVEL, PagedPool, (ULONG_PTR)p);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	ExFreePool(p);
}

/* 0xC5 as mdlab raises it (mm/RULES.md, known differences): the first guard byte found
 * overwritten, the IRQL, 1 (a write did it), the allocation. */
static void small_overrun_is_0xc5(struct ktest *t)
{
	uint8_t *p = alloc_bare(100);
	ASSERT_TRUE(t, p != NULL);
	p[100] = 0;
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 100), PASSIVE_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(p);
}

/* The caller at DISPATCH_LEVEL (on this CPU, no DPC in between): a 56-byte block freed and
 * kept by this CPU, its guard intact, then written over by its old owner after the free (its
 * sixth guard byte). */
static uint8_t *overrun_after_the_free_of_a_kept_block(struct ktest *t)
{
	struct pool_stats s0;
	pool_get_stats(&s0); /* nothing kept from here on (it drains) */
	uint8_t *p = alloc_bare(56);
	ASSERT_TRUE(t, p != NULL);
	ExFreePool(p);
	ASSERT_EQ(t, (uint64_t)*kept_here(false, 56), (uint64_t)p);
	p[56 + 5] = 0x11;
	return p;
}

/* A block kept by this CPU (freed, guard intact) whose guard its old owner writes over after
 * the free, where the next allocation of the class (larger: 64 bytes, the same 128-byte slot)
 * would write its data: found before it is written away, 0xC5 as at a free (the byte, the
 * IRQL of the allocation, 1, the block).  Without the check the allocation returned. */
static void overrun_into_a_kept_block_is_0xc5_at_its_reuse(struct ktest *t)
{
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql); /* stay on this CPU, no DPC in between */
	uint8_t *p = overrun_after_the_free_of_a_kept_block(t);
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 56 + 5), DISPATCH_LEVEL, 1, (ULONG_PTR)p);
	uint8_t *q = alloc_bare(64);
	KeLowerIrql(irql);
	KTEST_FAIL(t, "the allocation returned %p", q);
}

/* The same overrun after the free with the block given out again at its old size: nothing
 * writes the guard bytes, so they are found at the next free, 0xC5 as always. */
static void overrun_into_a_kept_block_reused_at_its_size_is_0xc5_at_the_next_free(struct ktest *t)
{
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql);
	uint8_t *p = overrun_after_the_free_of_a_kept_block(t);
	uint8_t *q = alloc_bare(56);
	ASSERT_EQ(t, (uint64_t)q, (uint64_t)p);
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 56 + 5), DISPATCH_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(q);
	KeLowerIrql(irql);
}

/* 56 bytes in a 128-byte slot: 56 guard bytes, checked sixteen at a time; a byte deep in the
 * third step (not its first word) is the one named. */
static void overrun_deep_in_the_guard_is_0xc5(struct ktest *t)
{
	uint8_t *p = alloc_bare(56);
	ASSERT_TRUE(t, p != NULL);
	p[56 + 32 + 11] = 0x77;
	p[56 + 32 + 13] = 0x77;
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 56 + 32 + 11), PASSIVE_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(p);
}

/* 100 bytes in a 128-byte slot: the guard ends with one word after the word the data ends
 * in; its last byte, the slot's last, is checked too. */
static void overrun_at_the_slots_last_byte_is_0xc5(struct ktest *t)
{
	uint8_t *p = alloc_bare(100);
	ASSERT_TRUE(t, p != NULL);
	p[111] = 0;
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 111), PASSIVE_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(p);
}

/* 9 bytes in a 32-byte slot: the guard is the last 7 bytes of the data's second word; the
 * byte right after the data, in that word, is named. */
static void overrun_in_the_datas_last_word_is_0xc5(struct ktest *t)
{
	uint8_t *p = alloc_bare(9);
	ASSERT_TRUE(t, p != NULL);
	p[9] = 0x11;
	p[12] = 0x11;
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 9), PASSIVE_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(p);
}

/* 5000 bytes: the second page's bytes past 5000 are guard bytes. */
static void large_tail_overrun_is_0xc5(struct ktest *t)
{
	uint8_t *p = alloc_bare(5000);
	ASSERT_TRUE(t, p != NULL);
	p[5002] = 0;
	expect_stop(t, DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)(p + 5002), PASSIVE_LEVEL, 1, (ULONG_PTR)p);
	ExFreePool(p);
}

/* The user mapping the user-mode issue will make, simulated by its bookkeeping call. */
static void free_while_user_mapped_is_0xc4_2003(struct ktest *t)
{
	uint8_t *p = alloc_bare(2 * PAGE_SIZE);
	ASSERT_TRUE(t, p != NULL);
	pool_note_user_mapping((uint64_t)p + PAGE_SIZE, 16, +1);
	/* mdlab's 0xC4/0x2003: the address freed, the user mappings of its page, 0. */
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_POOL_FREED_WHILE_USER_MAPPED, (ULONG_PTR)p, 1, 0);
	ExFreePool(p);
}

static void free_small_while_user_mapped_is_0xc4_2003(struct ktest *t)
{
	uint8_t *p = alloc_bare(200);
	ASSERT_TRUE(t, p != NULL);
	pool_note_user_mapping((uint64_t)p, 200, +1);
	expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_POOL_FREED_WHILE_USER_MAPPED, (ULONG_PTR)p, 1, 0);
	ExFreePool(p);
}

/* ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 0), called from a known place: 0xC2/0x9B's P4 is
 * the caller's address, where the call returns to. */
_Static_assert(POOL_FLAG_NON_PAGED == 0x40, "the call below passes 0x40");
void pool_test_alloc_tag_zero(void);
extern const char pool_test_tag_zero_return[];
__asm__(".pushsection .text\n"
	".globl pool_test_alloc_tag_zero\n"
	"pool_test_alloc_tag_zero:\n"
	"	sub $8, %rsp\n"
	"	mov $0x40, %edi\n"
	"	mov $64, %esi\n"
	"	xor %edx, %edx\n"
	"	call ExAllocatePool2\n"
	".globl pool_test_tag_zero_return\n"
	"pool_test_tag_zero_return:\n"
	"	add $8, %rsp\n"
	"	ret\n"
	".popsection");

static void tag_zero_is_0xc2_9b(struct ktest *t)
{
	expect_stop(t, BAD_POOL_CALLER, 0x9B, NonPagedPoolNx, 64, (ULONG_PTR)pool_test_tag_zero_return);
	pool_test_alloc_tag_zero();
}

static void zero_bytes_is_0xc2_0(struct ktest *t) { (void)t; ExAllocatePool2(POOL_FLAG_NON_PAGED, 0, TAG_TEST); }

static struct ktest_case pool_cases[] = {
	KTEST_CASE(nonpaged_allocation_is_zeroed),
	KTEST_CASE(uninitialized_flag_gives_the_pattern),
	KTEST_CASE(slot_bytes_after_the_data_are_guard),
	KTEST_CASE(freed_block_is_kept_and_given_back_on_this_cpu),
	KTEST_CASE(block_freed_on_another_cpu_is_kept_there),
	KTEST_CASE(large_allocation_is_page_aligned_before_a_guard_page),
	KTEST_CASE(small_allocations_never_overlap),
	KTEST_CASE(pool_query_reports_the_allocation),
	KTEST_CASE(pool_pages_are_rw_and_nx),
	KTEST_CASE(executing_from_pool_faults),
	KTEST_CASE(executable_pool_is_refused),
	KTEST_CASE(impossible_size_fails_or_raises),
	KTEST_CASE(allocate_pool_with_tag_works),
	KTEST_CASE(counters_return_and_empty_slab_pages_go_back),
	KTEST_DEATH_CASE_P1(double_free_small_is_0xc2_7, BAD_POOL_CALLER, 0x07),
	KTEST_DEATH_CASE(overrun_into_a_kept_block_is_0xc5_at_its_reuse, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE(overrun_into_a_kept_block_reused_at_its_size_is_0xc5_at_the_next_free, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE_P1(double_free_of_a_kept_block_is_0xc2_7, BAD_POOL_CALLER, 0x07),
	KTEST_DEATH_CASE_P1(double_free_large_is_0xc2_7, BAD_POOL_CALLER, 0x07),
	KTEST_DEATH_CASE_P1(wrong_tag_is_0xc2_a, BAD_POOL_CALLER, 0x0A),
	KTEST_DEATH_CASE_P1(free_stack_address_is_0xc2_42, BAD_POOL_CALLER, 0x42),
	KTEST_DEATH_CASE_P1(free_inside_a_small_allocation_is_0xc2_46, BAD_POOL_CALLER, 0x46),
	KTEST_DEATH_CASE_P1(free_inside_a_large_allocation_is_0xc2_46, BAD_POOL_CALLER, 0x46),
	KTEST_DEATH_CASE_P(free_user_address_is_0xc2_40, BAD_POOL_CALLER, KTEST_P_ALL, 0x40, 0x10000,
			   SYSTEM_VA_START, 0),
	KTEST_DEATH_CASE_P(nonpaged_allocation_above_dispatch_is_0xc2_8, BAD_POOL_CALLER, KTEST_P_ALL, 0x08,
			   HIGH_LEVEL, NonPagedPoolNx, 64),
	KTEST_DEATH_CASE_P(paged_allocation_at_dispatch_is_0xc2_8, BAD_POOL_CALLER, KTEST_P_ALL, 0x08,
			   DISPATCH_LEVEL, PagedPool, 64),
	KTEST_DEATH_CASE_P1(nonpaged_free_above_dispatch_is_0xc2_9, BAD_POOL_CALLER, 0x09),
	KTEST_DEATH_CASE_P1(paged_free_above_dispatch_is_0xc2_9, BAD_POOL_CALLER, 0x09),
	KTEST_DEATH_CASE(small_overrun_is_0xc5, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE(large_tail_overrun_is_0xc5, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE(overrun_deep_in_the_guard_is_0xc5, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE(overrun_at_the_slots_last_byte_is_0xc5, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE(overrun_in_the_datas_last_word_is_0xc5, DRIVER_CORRUPTED_EXPOOL),
	KTEST_DEATH_CASE_P1(free_while_user_mapped_is_0xc4_2003, DRIVER_VERIFIER_DETECTED_VIOLATION,
			    VERIFIER_POOL_FREED_WHILE_USER_MAPPED),
	KTEST_DEATH_CASE_P1(free_small_while_user_mapped_is_0xc4_2003, DRIVER_VERIFIER_DETECTED_VIOLATION,
			    VERIFIER_POOL_FREED_WHILE_USER_MAPPED),
	KTEST_DEATH_CASE_P1(tag_zero_is_0xc2_9b, BAD_POOL_CALLER, 0x9B),
	KTEST_DEATH_CASE_P(zero_bytes_is_0xc2_0, BAD_POOL_CALLER, KTEST_P_ALL, 0x00, 0, NonPagedPoolNx,
			   TAG_TEST),
	KTEST_DEATH_CASE_P1(paged_free_at_dispatch_is_0xc2_9, BAD_POOL_CALLER, 0x09),
	{ 0 }
};
KTEST_SUITE(pool, pool_cases, .exit = pool_suite_exit);
