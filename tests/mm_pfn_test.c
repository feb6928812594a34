/*
 * The physical page allocator: constrained requests honour their window, runs their
 * alignment, PFN_ALLOC_ZERO frames read as zero through the direct map, running out is a
 * failure and not a crash, the counters move by exactly what was taken, and a double free
 * is bug check PFN_LIST_CORRUPT.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "kernel/lib.h"
#include "mm/mm.h"
#include "mm/pfn.h"

extern char __text_start[], __kernel_end[];

#define DIRTY_BYTE 0xA5

/* A frame allocated to the tests, as its PFN entry says. */
static bool is_test_frame(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && e->state == PFN_ACTIVE && e->owner_kind == PFN_OWNER_TEST;
}

/* Whether [low, high] holds a free frame (the database's view, to know what to expect). */
static bool window_has_free(pfn_t low, pfn_t high)
{
	for (pfn_t p = low; p <= high && p < pfn_limit(); p++)
		if (mmt_frame_is_free(p))
			return true;
	return false;
}

static void alloc_in_stays_in_window(struct ktest *t)
{
	pfn_t lim = pfn_limit();
	const pfn_t windows[][2] = {
		{ 0x100, 0x1FF }, { 0x1000, 0x100F }, { 0, 0xFFF },
		{ lim / 2, lim / 2 + 3 }, { lim / 3, lim / 3 }, { lim - 16, lim - 1 },
	};
	pfn_t got[ARRAY_SIZE(windows)];
	unsigned tried = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(windows); i++) {
		pfn_t lo = windows[i][0], hi = windows[i][1];
		got[i] = PFN_INVALID;
		if (!window_has_free(lo, hi))
			continue;
		tried++;
		got[i] = pfn_alloc_in(lo, hi, 0, PFN_OWNER_TEST);
		if (got[i] == PFN_INVALID || got[i] < lo || got[i] > hi || !is_test_frame(got[i]))
			KTEST_FAIL(t, "pfn_alloc_in(0x%lx, 0x%lx) gave 0x%lx", lo, hi, got[i]);
	}
	EXPECT_GE(t, tried, 3);
	/* A one-frame window names the frame exactly. */
	pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, p, PFN_INVALID);
	pfn_free(p);
	pfn_t again = pfn_alloc_in(p, p, 0, PFN_OWNER_TEST);
	EXPECT_EQ(t, again, p);
	if (again != PFN_INVALID)
		pfn_free(again);
	for (unsigned i = 0; i < ARRAY_SIZE(windows); i++)
		if (got[i] != PFN_INVALID)
			pfn_free(got[i]);
}

static void alloc_in_window_without_free_ram_fails(struct ktest *t)
{
	pfn_t lim = pfn_limit();
	/* Beyond the database: no RAM at all. */
	EXPECT_EQ(t, pfn_alloc_in(lim, lim + 1000, 0, PFN_OWNER_TEST), PFN_INVALID);
	/* Frame 0 is never handed out. */
	EXPECT_EQ(t, pfn_alloc_in(0, 0, 0, PFN_OWNER_TEST), PFN_INVALID);
	/* The kernel image: RAM, all of it in use. */
	pfn_t k0 = kernel_image_phys((uint64_t)__text_start) >> PAGE_SHIFT;
	pfn_t k1 = kernel_image_phys((uint64_t)__kernel_end - 1) >> PAGE_SHIFT;
	EXPECT_EQ(t, pfn_alloc_in(k0, k1, 0, PFN_OWNER_TEST), PFN_INVALID);
	/* An empty window. */
	EXPECT_EQ(t, pfn_alloc_in(0x2000, 0x1FFF, 0, PFN_OWNER_TEST), PFN_INVALID);
	/* A hole inside the database (no RAM descriptor covers it), when the map has one. */
	pfn_t hole = PFN_INVALID, hole_end = 0;
	for (pfn_t q = 1; q < lim && hole == PFN_INVALID; q++)
		if (!pfn_is_ram(q))
			hole = q;
	if (hole != PFN_INVALID) {
		for (hole_end = hole; hole_end + 1 < lim && !pfn_is_ram(hole_end + 1); hole_end++)
			;
		EXPECT_EQ(t, pfn_alloc_in(hole, hole_end, 0, PFN_OWNER_TEST), PFN_INVALID);
	}
}

/* Allocate a run and check it: aligned, inside the window, and every one of its `count`
 * consecutive frames handed to us (frame numbers are physical addresses: consecutive
 * numbers are physically contiguous). */
static pfn_t check_run(struct ktest *t, pfn_t low, pfn_t high, uint64_t count, uint64_t align)
{
	pfn_t first = pfn_alloc_run(low, high, count, align, 0, PFN_OWNER_TEST);
	if (first == PFN_INVALID) {
		KTEST_FAIL(t, "no run of %lu aligned %lu in [0x%lx, 0x%lx]", count, align, low, high);
		return first;
	}
	EXPECT_EQ(t, first % align, 0);
	EXPECT_GE(t, first, low);
	EXPECT_LE(t, first + count - 1, high);
	uint64_t bad = 0;
	for (uint64_t i = 0; i < count; i++)
		bad += !is_test_frame(first + i);
	EXPECT_EQ(t, bad, 0);
	return first;
}

static void run_honours_alignment_and_contiguity(struct ktest *t)
{
	pfn_t top = pfn_limit() - 1, lim = pfn_limit();
	pfn_t a = check_run(t, 0, top, 16, 16);
	pfn_t b = check_run(t, 0, top, 16, 16);
	pfn_t c = check_run(t, 0, top, 512, 512);
	pfn_t d = check_run(t, lim / 2, lim / 2 + 255, 5, 64);
	pfn_t e = check_run(t, lim / 4 + 1, top, 7, 1);
	/* Two runs never share a frame. */
	if (a != PFN_INVALID && b != PFN_INVALID)
		EXPECT_TRUE(t, a + 16 <= b || b + 16 <= a);
	if (a != PFN_INVALID && c != PFN_INVALID)
		EXPECT_TRUE(t, a + 16 <= c || c + 512 <= a);
	/* Requests that cannot be met. */
	EXPECT_EQ(t, pfn_alloc_run(0, top, 16, 3, 0, PFN_OWNER_TEST), PFN_INVALID);  /* not a power of 2 */
	EXPECT_EQ(t, pfn_alloc_run(0, top, 0, 1, 0, PFN_OWNER_TEST), PFN_INVALID);   /* nothing */
	EXPECT_EQ(t, pfn_alloc_run(lim / 2, lim / 2 + 14, 16, 1, 0, PFN_OWNER_TEST), PFN_INVALID);
	EXPECT_EQ(t, pfn_alloc_run(lim / 2 + 1, lim / 2 + 16, 16, 16, 0, PFN_OWNER_TEST), PFN_INVALID);
	if (a != PFN_INVALID)
		pfn_free_run(a, 16);
	if (b != PFN_INVALID)
		pfn_free_run(b, 16);
	if (c != PFN_INVALID)
		pfn_free_run(c, 512);
	if (d != PFN_INVALID)
		pfn_free_run(d, 5);
	if (e != PFN_INVALID)
		pfn_free_run(e, 7);
}

static uint64_t nonzero_bytes(pfn_t pfn)
{
	const volatile uint8_t *p = pfn_to_virt(pfn);
	uint64_t n = 0;
	for (uint64_t i = 0; i < PAGE_SIZE; i++)
		n += p[i] != 0;
	return n;
}

/* A frame taken, filled with DIRTY_BYTE through the direct map, and freed. */
static pfn_t dirty_and_free(pfn_t pfn)
{
	memset(pfn_to_virt(pfn), DIRTY_BYTE, PAGE_SIZE);
	pfn_free(pfn);
	return pfn;
}

static void zero_flag_gives_zeroed_frames(struct ktest *t)
{
	/* The exact dirty frame, asked for by window. */
	pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, p, PFN_INVALID);
	dirty_and_free(p);
	pfn_t q = pfn_alloc_in(p, p, PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_EQ(t, q, p);
	EXPECT_EQ(t, nonzero_bytes(q), 0);

	/* The plain path: whatever frame comes back reads as zero (the dirty one is the most
	 * recently freed, so it is at the head of the dirty list). */
	dirty_and_free(q);
	pfn_t r = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	ASSERT_NE(t, r, PFN_INVALID);
	EXPECT_EQ(t, nonzero_bytes(r), 0);

	/* A run: every frame of it. */
	pfn_t run = pfn_alloc_run(0, pfn_limit() - 1, 4, 4, 0, PFN_OWNER_TEST);
	if (run != PFN_INVALID) {
		for (uint64_t i = 0; i < 4; i++)
			dirty_and_free(run + i);
		pfn_t again = pfn_alloc_run(run, run + 3, 4, 4, PFN_ALLOC_ZERO, PFN_OWNER_TEST);
		EXPECT_EQ(t, again, run);
		if (again != PFN_INVALID) {
			for (uint64_t i = 0; i < 4; i++)
				EXPECT_EQ(t, nonzero_bytes(again + i), 0);
			pfn_free_run(again, 4);
		}
	} else {
		KTEST_FAIL(t, "no run of 4");
	}
	pfn_free(r);
}

static void exhaustion_fails_cleanly(struct ktest *t)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	uint64_t free_before = s.free, taken;
	pfn_t hog = mmt_hog_frames(0, &taken);

	pfn_get_stats(&s);
	uint64_t free_now = s.free;
	pfn_t one = pfn_alloc(0, PFN_OWNER_TEST);
	pfn_t zero = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	pfn_t in = pfn_alloc_in(0, pfn_limit() - 1, 0, PFN_OWNER_TEST);
	pfn_t run = pfn_alloc_run(0, pfn_limit() - 1, 2, 1, 0, PFN_OWNER_TEST);
	uint64_t released = mmt_release_frames(hog);

	EXPECT_EQ(t, free_now, 0);
	EXPECT_EQ(t, taken, free_before);
	EXPECT_EQ(t, released, taken);
	EXPECT_EQ(t, one, PFN_INVALID);
	EXPECT_EQ(t, zero, PFN_INVALID);
	EXPECT_EQ(t, in, PFN_INVALID);
	EXPECT_EQ(t, run, PFN_INVALID);
	/* In case one of them did hand a frame out. */
	pfn_t extra[] = { one, zero, in };
	for (unsigned i = 0; i < ARRAY_SIZE(extra); i++)
		if (extra[i] != PFN_INVALID)
			pfn_free(extra[i]);
	if (run != PFN_INVALID)
		pfn_free_run(run, 2);
	pfn_get_stats(&s);
	EXPECT_EQ(t, s.free, free_before);
}

static void counters_follow_one_frame(struct ktest *t)
{
	struct pfn_stats s0, s1, s2;
	pfn_get_stats(&s0);
	pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
	ASSERT_NE(t, p, PFN_INVALID);
	pfn_get_stats(&s1);
	const struct pfn_entry *e = pfn_entry(p);
	EXPECT_EQ(t, s1.free, s0.free - 1);
	EXPECT_EQ(t, s1.active, s0.active + 1);
	EXPECT_EQ(t, s1.ram, s0.ram);
	EXPECT_EQ(t, e->state, PFN_ACTIVE);
	EXPECT_EQ(t, e->owner_kind, PFN_OWNER_TEST);
	EXPECT_EQ(t, e->lock_count, 0);
	pfn_free(p);
	pfn_get_stats(&s2);
	EXPECT_EQ(t, s2.free, s0.free);
	EXPECT_EQ(t, s2.active, s0.active);
	EXPECT_EQ(t, e->state, PFN_FREE);
	EXPECT_EQ(t, e->owner_kind, PFN_OWNER_NONE);
}

/* Death cases: pfn_free of a frame that is not allocated. */
/* 0x4E P1 0x99: the frame, its state (mdlab's PFN state), 0. */
static void double_free_is_pfn_list_corrupt(struct ktest *t)
{
	pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
	pfn_free(p);
	expect_stop(t, PFN_LIST_CORRUPT, 0x99, p, pfn_entry(p)->state, 0);
	pfn_free(p);
}

static void free_of_kernel_frame_is_pfn_list_corrupt(struct ktest *t)
{
	pfn_t p = kernel_image_phys((uint64_t)__text_start) >> PAGE_SHIFT;
	expect_stop(t, PFN_LIST_CORRUPT, 0x99, p, pfn_entry(p)->state, 0);
	pfn_free(p);
}

/* 0x4E P1 0x9A: a frame freed while still locked: the frame, its state, its lock count. */
static void free_of_a_locked_frame_is_pfn_list_corrupt(struct ktest *t)
{
	pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
	pfn_lock_frame(p);
	pfn_lock_frame(p);
	expect_stop(t, PFN_LIST_CORRUPT, 0x9A, p, PFN_ACTIVE, 2);
	pfn_free(p);
}

static struct ktest_case mm_pfn_cases[] = {
	KTEST_CASE(alloc_in_stays_in_window),
	KTEST_CASE(alloc_in_window_without_free_ram_fails),
	KTEST_CASE(run_honours_alignment_and_contiguity),
	KTEST_CASE(zero_flag_gives_zeroed_frames),
	KTEST_CASE(exhaustion_fails_cleanly),
	KTEST_CASE(counters_follow_one_frame),
	KTEST_DEATH_CASE_P1(double_free_is_pfn_list_corrupt, PFN_LIST_CORRUPT, 0x99),
	KTEST_DEATH_CASE_P1(free_of_kernel_frame_is_pfn_list_corrupt, PFN_LIST_CORRUPT, 0x99),
	KTEST_DEATH_CASE_P1(free_of_a_locked_frame_is_pfn_list_corrupt, PFN_LIST_CORRUPT, 0x9A),
	{ 0 }
};
KTEST_SUITE(mm_pfn, mm_pfn_cases);
