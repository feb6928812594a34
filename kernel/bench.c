#include "kernel/bench.h"
#include "include/mdlab/protocol.h"
#include "kernel/bootmode.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"

extern const struct kbench *const __kbench_start[], *const __kbench_end[];

static uint64_t overhead;

uint64_t bench_overhead(void) { return overhead; }

static void measure_overhead(void)
{
	uint64_t best = ~0ull;
	for (int i = 0; i < 16; i++) {
		uint64_t t0 = bench_now(), t1 = bench_now();
		if (t1 - t0 < best)
			best = t1 - t0;
	}
	overhead = best;
}

void bench_result(const char *case_name, uint64_t size, uint64_t ops, uint64_t pages, uint64_t ticks,
		  const char *extra)
{
	/* One line a result: key=value, read by scripts/bench.py. */
	kprintf(MDLAB_BENCH " case=%s size=%lu ops=%lu pages=%lu ticks=%lu%s%s\n", case_name, size, ops, pages, ticks,
		extra ? " note=" : "", extra ? extra : "");
}

void bench_run_all(const char *glob)
{
	measure_overhead();
	kprintf(MDLAB_BENCH " overhead=%lu\n", overhead);
	for (const struct kbench *const *b = __kbench_start; b < __kbench_end; b++) {
		if (!glob_match(glob, (*b)->name))
			continue;
		kprintf(MDLAB_BENCH " running %s\n", (*b)->name);
		(*b)->run();
	}
	kprintf(MDLAB_BENCH_DONE "\n");
}

/* mode=bench bench=GLOB: the benchmark cases matching GLOB (make bench boots it under -icount). */
static void mode_bench(void)
{
	char glob[64] = "*";
	cmdline_get("bench", glob, sizeof glob);
	bench_run_all(glob);
}
BOOT_MODE(bench, MDLAB_MODE_BENCH, mode_bench);
