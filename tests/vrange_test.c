/*
 * The range allocator behind the system-PTE space and the pool (mm/vrange.c), on a private
 * space of a few dozen slots: where reserve puts a run, how releases coalesce, what a bad
 * release returns (and that it changes nothing), the nearly-full search of class
 * floor(log2 n), and the edges of the size classes.  A random sequence is checked against a
 * plain bitmap model of the same space.
 *
 * Each case works on `space`; the suite's exit gives its metadata frames back, so a case
 * that ends early by ASSERT still leaves the free-page count as it found it.
 */
#include "kernel/ktest.h"
#include "kernel/lib.h"
#include "mm/vrange.h"

static struct vrange space;
static bool space_live;

static void close_space(void)
{
	if (space_live)
		vrange_destroy(&space);
	space_live = false;
}

/* A fresh space of nslots free slots (the previous one, if any, destroyed first). */
static void open_space(struct ktest *t, uint32_t nslots)
{
	close_space();
	ASSERT_TRUE(t, vrange_init(&space, nslots));
	space_live = true;
	ASSERT_EQ(t, space.free_slots, nslots);
	ASSERT_EQ(t, space.free_runs, 1);
}

static void vrange_suite_exit(struct ktest *t) { (void)t; close_space(); }

/* The three numbers that describe the free space's shape. */
#define EXPECT_SHAPE(t, free, runs, largest)                          \
	do {                                                          \
		EXPECT_EQ(t, space.free_slots, (free));               \
		EXPECT_EQ(t, space.free_runs, (runs));                \
		EXPECT_EQ(t, vrange_largest_free(&space), (largest)); \
	} while (0)

/* Reserve every slot one by one: slot i is reservation i (a fresh space hands them out in
 * address order).  The cases then free chosen slots to shape the free space exactly. */
static void reserve_all_singly(struct ktest *t)
{
	uint32_t n = space.nslots;
	for (uint32_t i = 0; i < n; i++)
		ASSERT_EQ(t, vrange_reserve(&space, 1), i);
	ASSERT_EQ(t, space.free_slots, 0);
	ASSERT_EQ(t, space.free_runs, 0);
}

/* Release singles [first, first + n) (each a 1-slot reservation), building one free run. */
static void release_singles(struct ktest *t, uint32_t first, uint32_t n)
{
	for (uint32_t i = first; i < first + n; i++)
		ASSERT_EQ(t, vrange_release(&space, i, 1), VR_OK);
}

static void reserve_takes_the_front_of_a_run(struct ktest *t)
{
	open_space(t, 64);
	EXPECT_EQ(t, vrange_reserve(&space, 0), VRANGE_NONE);
	EXPECT_EQ(t, vrange_reserve(&space, 65), VRANGE_NONE);
	EXPECT_SHAPE(t, 64, 1, 64);

	EXPECT_EQ(t, vrange_reserve(&space, 3), 0);
	EXPECT_EQ(t, vrange_reserve(&space, 5), 3);
	EXPECT_EQ(t, vrange_reserve(&space, 1), 8);
	EXPECT_SHAPE(t, 55, 1, 55);
	EXPECT_EQ(t, vrange_reserved_len(&space, 0), 3);
	EXPECT_EQ(t, vrange_reserved_len(&space, 3), 5);
	EXPECT_EQ(t, vrange_reserved_len(&space, 8), 1);
	EXPECT_EQ(t, vrange_reserved_len(&space, 1), 0);   /* inside a reservation */
	EXPECT_EQ(t, vrange_reserved_len(&space, 9), 0);   /* free */
	EXPECT_EQ(t, vrange_reserved_len(&space, 64), 0);  /* out of range */

	/* The rest in one piece, then nothing fits. */
	EXPECT_EQ(t, vrange_reserve(&space, 55), 9);
	EXPECT_SHAPE(t, 0, 0, 0);
	EXPECT_EQ(t, vrange_reserve(&space, 1), VRANGE_NONE);
	EXPECT_FALSE(t, vrange_fits(&space, 1));

	EXPECT_EQ(t, vrange_release(&space, 3, 5), VR_OK);
	EXPECT_SHAPE(t, 5, 1, 5);
	EXPECT_EQ(t, vrange_release(&space, 9, 55), VR_OK);
	EXPECT_SHAPE(t, 60, 2, 55);
	EXPECT_EQ(t, vrange_release(&space, 0, 3), VR_OK);
	EXPECT_SHAPE(t, 63, 2, 55);
	EXPECT_EQ(t, vrange_release(&space, 8, 1), VR_OK);
	EXPECT_SHAPE(t, 64, 1, 64);
	/* One run again: the whole space is one reservation. */
	EXPECT_EQ(t, vrange_reserve(&space, 64), 0);
	EXPECT_EQ(t, vrange_release(&space, 0, 64), VR_OK);
}

/* Four reservations of 4 fill a 16-slot space: a[0,4) b[4,8) c[8,12) d[12,16). */
static void four_quarters(struct ktest *t)
{
	open_space(t, 16);
	for (uint32_t q = 0; q < 4; q++)
		ASSERT_EQ(t, vrange_reserve(&space, 4), 4 * q);
	ASSERT_EQ(t, space.free_runs, 0);
}

static void release_coalesces_with_the_run_before(struct ktest *t)
{
	four_quarters(t);
	EXPECT_EQ(t, vrange_release(&space, 4, 4), VR_OK);
	EXPECT_SHAPE(t, 4, 1, 4);
	EXPECT_EQ(t, vrange_release(&space, 8, 4), VR_OK);   /* joins [4,8) from behind */
	EXPECT_SHAPE(t, 8, 1, 8);
	EXPECT_FALSE(t, vrange_fits(&space, 9));
	EXPECT_EQ(t, vrange_reserve(&space, 8), 4);          /* the merged run, whole */
	EXPECT_EQ(t, vrange_release(&space, 4, 8), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 12, 4), VR_OK);
	EXPECT_SHAPE(t, 16, 1, 16);
}

static void release_coalesces_with_the_run_after(struct ktest *t)
{
	four_quarters(t);
	EXPECT_EQ(t, vrange_release(&space, 8, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 4, 4), VR_OK);   /* joins [8,12) in front */
	EXPECT_SHAPE(t, 8, 1, 8);
	EXPECT_EQ(t, vrange_reserve(&space, 8), 4);
	EXPECT_EQ(t, vrange_release(&space, 4, 8), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 12, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_OK);
	EXPECT_SHAPE(t, 16, 1, 16);
}

static void release_coalesces_both_sides(struct ktest *t)
{
	four_quarters(t);
	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 8, 4), VR_OK);
	EXPECT_SHAPE(t, 8, 2, 4);
	EXPECT_FALSE(t, vrange_fits(&space, 5));
	EXPECT_EQ(t, vrange_release(&space, 4, 4), VR_OK);   /* bridges the two */
	EXPECT_SHAPE(t, 12, 1, 12);
	EXPECT_EQ(t, vrange_reserve(&space, 12), 0);
	EXPECT_EQ(t, vrange_release(&space, 0, 12), VR_OK);
	/* The last quarter bridges nothing: it joins the run before it, at the space's end. */
	EXPECT_EQ(t, vrange_release(&space, 12, 4), VR_OK);
	EXPECT_SHAPE(t, 16, 1, 16);
	EXPECT_EQ(t, vrange_reserve(&space, 16), 0);
	EXPECT_EQ(t, vrange_release(&space, 0, 16), VR_OK);
}

static void bad_release_returns_a_status_and_changes_nothing(struct ktest *t)
{
	open_space(t, 16);
	ASSERT_EQ(t, vrange_reserve(&space, 4), 0);
	ASSERT_EQ(t, vrange_reserve(&space, 4), 4);

	EXPECT_EQ(t, vrange_release(&space, 0, 3), VR_WRONG_COUNT);
	EXPECT_EQ(t, vrange_release(&space, 0, 5), VR_WRONG_COUNT);
	EXPECT_EQ(t, vrange_release(&space, 0, 8), VR_WRONG_COUNT);  /* two reservations as one */
	EXPECT_EQ(t, vrange_release(&space, 1, 3), VR_NOT_RESERVED); /* inside a */
	EXPECT_EQ(t, vrange_release(&space, 7, 1), VR_NOT_RESERVED); /* last slot of b */
	EXPECT_EQ(t, vrange_release(&space, 16, 1), VR_NOT_RESERVED);
	EXPECT_EQ(t, vrange_release(&space, 0xFFFFFFF0u, 4), VR_NOT_RESERVED);
	EXPECT_SHAPE(t, 8, 1, 8);
	EXPECT_EQ(t, vrange_reserved_len(&space, 0), 4);
	EXPECT_EQ(t, vrange_reserved_len(&space, 4), 4);

	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_DOUBLE_FREE);
	EXPECT_EQ(t, vrange_release(&space, 2, 1), VR_DOUBLE_FREE);  /* inside the freed run */
	EXPECT_EQ(t, vrange_release(&space, 3, 1), VR_DOUBLE_FREE);  /* its last slot */
	EXPECT_SHAPE(t, 12, 2, 8);
	EXPECT_EQ(t, vrange_release(&space, 4, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 4, 4), VR_DOUBLE_FREE);  /* now inside one big run */
	EXPECT_SHAPE(t, 16, 1, 16);
}

/* The header: VR_DOUBLE_FREE when "the slot is free (released already, or never
 * reserved)" — whatever the slot's history, a free slot reads as free. */
static void never_reserved_slot_reads_as_free(struct ktest *t)
{
	open_space(t, 16);
	ASSERT_EQ(t, vrange_reserve(&space, 4), 0);
	/* The free run [4,16): its first slot, one inside it, its last. */
	EXPECT_EQ(t, vrange_release(&space, 4, 1), VR_DOUBLE_FREE);
	EXPECT_EQ(t, vrange_release(&space, 9, 1), VR_DOUBLE_FREE);
	EXPECT_EQ(t, vrange_release(&space, 15, 1), VR_DOUBLE_FREE);
	EXPECT_SHAPE(t, 12, 1, 12);
	EXPECT_EQ(t, vrange_release(&space, 0, 4), VR_OK);
}

/*
 * No class above floor(log2 n) has a run, but class floor(log2 n) holds a run of exactly n
 * behind runs that are too short: the search must walk past them to it.  Class 2 (runs of
 * 4..7) holds, in list order, runs of 4, 4 and 5.
 */
static void nearly_full_search_finds_the_exact_run(struct ktest *t)
{
	open_space(t, 64);
	reserve_all_singly(t);
	release_singles(t, 20, 5);
	release_singles(t, 10, 4);
	release_singles(t, 30, 4);
	EXPECT_SHAPE(t, 13, 3, 5);
	EXPECT_TRUE(t, vrange_fits(&space, 5));
	EXPECT_FALSE(t, vrange_fits(&space, 6));   /* 13 slots free, none 6 long */
	EXPECT_EQ(t, vrange_reserve(&space, 6), VRANGE_NONE);
	EXPECT_EQ(t, vrange_reserve(&space, 5), 20);
	EXPECT_SHAPE(t, 8, 2, 4);
	EXPECT_EQ(t, vrange_reserve(&space, 5), VRANGE_NONE);

	uint32_t a = vrange_reserve(&space, 4), b = vrange_reserve(&space, 4);
	EXPECT_TRUE(t, (a == 10 && b == 30) || (a == 30 && b == 10));
	EXPECT_SHAPE(t, 0, 0, 0);

	EXPECT_EQ(t, vrange_release(&space, 20, 5), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 10, 4), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 30, 4), VR_OK);
	for (uint32_t i = 0; i < 64; i++)
		if (!(i >= 10 && i < 14) && !(i >= 20 && i < 25) && !(i >= 30 && i < 34))
			EXPECT_EQ(t, vrange_release(&space, i, 1), VR_OK);
	EXPECT_SHAPE(t, 64, 1, 64);
}

/*
 * A free run of exactly n, next to a run of n - 1 (the same class, or the one below when n is
 * a power of two): n fits, n + 1 does not, and reserve(n) takes the run of n.  n = 2^k is
 * found in its own class directly; n = 2^k + 1 (class k, needing k + 1) by the search.
 */
static void check_exact_run(struct ktest *t, uint32_t n)
{
	const uint32_t nslots = 128, s = 7;
	open_space(t, nslots);
	reserve_all_singly(t);
	release_singles(t, s, n);
	if (n > 1)
		release_singles(t, s + n + 3, n - 1);
	uint32_t runs = n > 1 ? 2 : 1, free = 2 * n - 1;
	EXPECT_SHAPE(t, free, runs, n);
	EXPECT_TRUE(t, vrange_fits(&space, n));
	EXPECT_FALSE(t, vrange_fits(&space, n + 1));
	EXPECT_EQ(t, vrange_reserve(&space, n + 1), VRANGE_NONE);
	uint32_t got = vrange_reserve(&space, n);
	if (got != s)
		KTEST_FAIL(t, "n=%u: reserve took slot %u, the run of exactly n is at %u", n, got, s);
	EXPECT_SHAPE(t, n - 1, runs - 1, n - 1);
	EXPECT_EQ(t, vrange_reserved_len(&space, s), n);
	EXPECT_EQ(t, vrange_release(&space, s, n), VR_OK);
	EXPECT_SHAPE(t, free, runs, n);
	close_space();
}

static void class_boundaries(struct ktest *t)
{
	static const uint32_t sizes[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33 };
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		check_exact_run(t, sizes[i]);
}

/* A run in a higher class is taken at once, even when a lower class holds one that fits too:
 * the fast path looks only at classes whose every run fits. */
static void fast_path_takes_a_class_that_surely_fits(struct ktest *t)
{
	open_space(t, 64);
	reserve_all_singly(t);
	release_singles(t, 4, 5);     /* class 2: fits 5, but only by searching */
	release_singles(t, 20, 8);    /* class 3: every run fits 5 */
	EXPECT_EQ(t, vrange_reserve(&space, 5), 20);
	EXPECT_SHAPE(t, 8, 2, 5);
	EXPECT_EQ(t, vrange_reserve(&space, 5), 4);  /* now only by the search */
	EXPECT_SHAPE(t, 3, 1, 3);
	EXPECT_EQ(t, vrange_release(&space, 20, 5), VR_OK);
	EXPECT_EQ(t, vrange_release(&space, 4, 5), VR_OK);
	for (uint32_t i = 0; i < 64; i++)
		if (!(i >= 4 && i < 9) && !(i >= 20 && i < 28))
			EXPECT_EQ(t, vrange_release(&space, i, 1), VR_OK);
	EXPECT_SHAPE(t, 64, 1, 64);
}

/* ---- a random sequence against a bitmap model ---------------------------------------- */

#define MODEL_SLOTS 256
#define MODEL_MAX_LIVE 48

struct model {
	uint8_t used[MODEL_SLOTS];
	struct { uint32_t first, n; } live[MODEL_MAX_LIVE];
	int nlive;
	uint64_t seed;
};

static uint32_t model_rand(struct model *m, uint32_t bound)
{
	m->seed = m->seed * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(m->seed >> 33) % bound;
}

/* Free slots, maximal free runs and the longest, counted from the model's bitmap. */
static void model_shape(const struct model *m, uint32_t *free, uint32_t *runs, uint32_t *largest)
{
	uint32_t cur = 0;
	*free = *runs = *largest = 0;
	for (uint32_t i = 0; i < MODEL_SLOTS; i++) {
		if (m->used[i]) {
			cur = 0;
			continue;
		}
		(*free)++;
		if (!cur++)
			(*runs)++;
		if (cur > *largest)
			*largest = cur;
	}
}

static void random_sequence_matches_a_bitmap_model(struct ktest *t)
{
	static struct model m;
	memset(&m, 0, sizeof m);
	m.seed = 0x6D646C6162ull;
	open_space(t, MODEL_SLOTS);
	int reserves = 0, refusals = 0;
	for (int step = 0; step < 4000; step++) {
		uint32_t free, runs, largest;
		model_shape(&m, &free, &runs, &largest);
		bool release = m.nlive == MODEL_MAX_LIVE || (m.nlive && model_rand(&m, 100) < 45);
		if (release) {
			int k = (int)model_rand(&m, (uint32_t)m.nlive);
			uint32_t first = m.live[k].first, n = m.live[k].n;
			ASSERT_EQ(t, vrange_release(&space, first, n), VR_OK);
			for (uint32_t i = 0; i < n; i++)
				m.used[first + i] = 0;
			m.live[k] = m.live[--m.nlive];
		} else {
			/* Mostly small requests, some up to the whole space. */
			uint32_t n = model_rand(&m, 8) ? 1 + model_rand(&m, 12) : 1 + model_rand(&m, MODEL_SLOTS);
			uint32_t first = vrange_reserve(&space, n);
			if (first == VRANGE_NONE) {
				/* Refused exactly when no free run of n exists. */
				refusals++;
				if (largest >= n)
					KTEST_FAIL(t, "step %d: reserve(%u) refused with a free run of %u", step, n, largest);
			} else {
				reserves++;
				ASSERT_LE(t, first + n, MODEL_SLOTS);
				for (uint32_t i = 0; i < n; i++) {
					if (m.used[first + i])
						KTEST_FAIL(t, "step %d: reserve(%u) at %u overlaps slot %u", step, n, first,
							   first + i);
					m.used[first + i] = 1;
				}
				m.live[m.nlive].first = first;
				m.live[m.nlive].n = n;
				m.nlive++;
			}
		}
		model_shape(&m, &free, &runs, &largest);
		if (space.free_slots != free || space.free_runs != runs || vrange_largest_free(&space) != largest) {
			KTEST_FAIL(t, "step %d: allocator says free %u runs %u largest %u, the bitmap %u %u %u", step,
				   space.free_slots, space.free_runs, vrange_largest_free(&space), free, runs, largest);
			break;
		}
	}
	EXPECT_GT(t, reserves, 1000);
	EXPECT_GT(t, refusals, 10);
	while (m.nlive) {
		m.nlive--;
		EXPECT_EQ(t, vrange_release(&space, m.live[m.nlive].first, m.live[m.nlive].n), VR_OK);
	}
	EXPECT_SHAPE(t, MODEL_SLOTS, 1, MODEL_SLOTS);
}

static struct ktest_case vrange_cases[] = {
	KTEST_CASE(reserve_takes_the_front_of_a_run),
	KTEST_CASE(release_coalesces_with_the_run_before),
	KTEST_CASE(release_coalesces_with_the_run_after),
	KTEST_CASE(release_coalesces_both_sides),
	KTEST_CASE(bad_release_returns_a_status_and_changes_nothing),
	KTEST_CASE(never_reserved_slot_reads_as_free),
	KTEST_CASE(nearly_full_search_finds_the_exact_run),
	KTEST_CASE(class_boundaries),
	KTEST_CASE(fast_path_takes_a_class_that_surely_fits),
	KTEST_CASE(random_sequence_matches_a_bitmap_model),
	{ 0 }
};
KTEST_SUITE(vrange, vrange_cases, .exit = vrange_suite_exit);
