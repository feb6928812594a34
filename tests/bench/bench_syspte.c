/*
 * Micro-benchmark: what one syspte_reserve + syspte_release costs as the system-PTE space
 * fragments (the performance target: at 100 000 free runs, within 3x of the cost at 10).
 *
 * For each point the space is cut into exactly R free runs by a checkerboard of one-PTE
 * reservations (2R - 1 of them from the start of an untouched space, the odd ones released
 * again: R - 1 one-PTE holes, plus the rest of the space), then a reserve+release of a 1-PTE
 * and of an 8-PTE run is repeated BENCH_REPS times and averaged.  The release includes its
 * TLB flush (INVLPG of 1 or 8 pages), as every release does.  Each figure is the best of
 * BENCH_ROUNDS rounds, so that a one-off cost (TCG translating the code the first time, an
 * interrupt) does not count.
 *
 * Units: TSC ticks from RDTSC — under QEMU TCG without -icount that is host wall time, not
 * guest cycles, and noisy on a busy host; with `-icount shift=0` the guest's TSC advances one
 * tick per guest instruction, so the same column counts instructions, exactly and
 * repeatably — and instructions retired from the architectural PMU's fixed counter 0 when the
 * CPU has one (CPUID leaf 0AH; TCG reports none, KVM usually does), else "n/a".
 *
 * Run it from the monitor: `bench-syspte`.  100 000 free runs need syspte >= 200 001 PTEs
 * (boot with syspte=262144); with fewer, that point is reported as skipped.
 */
#include <stdbool.h>
#include <stdint.h>
#include "kernel/bench.h"
#include "kernel/cpu.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "kernel/seh.h"
#include "mm/layout.h"
#include "mm/syspte.h"

/* The entry point `make bench` will call (its header comes with that target). */
void bench_syspte_reserve_release(void);

#define BENCH_REPS 1000
#define BENCH_ROUNDS 5
#define BENCH_PRIORITY SYSPTE_PRIORITY_HIGH

/* Architectural PMU (SDM Vol. 3B, 20.2.2): fixed counter 0 counts instructions retired. */
#define MSR_FIXED_CTR0 0x309
#define MSR_FIXED_CTR_CTRL 0x38D
#define MSR_PERF_GLOBAL_CTRL 0x38F
#define FIXED_CTR0_OS_USR 0x3ull          /* count in rings 0 and 3 */
#define GLOBAL_CTRL_FIXED0 (1ull << 32)

static bool have_inst_counter;

/* Start fixed counter 0 if CPUID says it exists and the MSR writes are accepted. */
static void inst_counter_setup(void)
{
	uint32_t a, b, c, d;
	have_inst_counter = false;
	cpuid(0, 0, &a, &b, &c, &d);
	if (a < 0xA)
		return;
	cpuid(0xA, 0, &a, &b, &c, &d);
	unsigned version = a & 0xFF, fixed = d & 0x1F;
	if (version < 2 || fixed < 1)
		return;
	__try {
		wrmsr(MSR_FIXED_CTR_CTRL, rdmsr(MSR_FIXED_CTR_CTRL) | FIXED_CTR0_OS_USR);
		wrmsr(MSR_PERF_GLOBAL_CTRL, rdmsr(MSR_PERF_GLOBAL_CTRL) | GLOBAL_CTRL_FIXED0);
		(void)rdmsr(MSR_FIXED_CTR0);
		have_inst_counter = true;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		have_inst_counter = false;
	}
}

static uint64_t inst_count(void) { return have_inst_counter ? rdmsr(MSR_FIXED_CTR0) : 0; }

static bool from_monitor; /* the monitor's bench-syspte: the table only, no "# bench:" lines */

struct cost {
	uint64_t tsc;    /* per reserve+release, best round */
	uint64_t inst;   /* likewise; 0 when not counted */
	bool failed;     /* a reserve returned 0 */
};

/* BENCH_ROUNDS rounds of BENCH_REPS reserve+release pairs of n PTEs. */
static struct cost measure(uint32_t n)
{
	struct cost best = { .tsc = ~0ull, .inst = ~0ull };
	for (int r = 0; r < BENCH_ROUNDS; r++) {
		uint64_t i0 = inst_count(), t0 = rdtsc();
		for (int k = 0; k < BENCH_REPS; k++) {
			uint64_t va = syspte_reserve(n, BENCH_PRIORITY, false);
			if (!va) {
				best.failed = true;
				return best;
			}
			syspte_release(va, n);
		}
		uint64_t t1 = rdtsc(), i1 = inst_count();
		if ((t1 - t0) / BENCH_REPS < best.tsc)
			best.tsc = (t1 - t0) / BENCH_REPS;
		if ((i1 - i0) / BENCH_REPS < best.inst)
			best.inst = (i1 - i0) / BENCH_REPS;
	}
	if (!have_inst_counter)
		best.inst = 0;
	return best;
}

/*
 * Cut an untouched space into `runs` free runs: 2 * runs - 1 one-PTE reservations from its
 * start, then the odd ones released.  Returns the number of one-PTE reservations still held
 * (the even cells, from syspte_base()), or -1 when the space did not hand them out side by
 * side (then nothing is left held).
 */
static long checkerboard(uint32_t runs)
{
	uint64_t base = syspte_base();
	uint32_t cells = 2 * runs - 1;
	for (uint32_t i = 0; i < cells; i++) {
		uint64_t va = syspte_reserve(1, BENCH_PRIORITY, false);
		if (va != base + (uint64_t)i * PAGE_SIZE) {
			if (va)
				syspte_release(va, 1);
			while (i--)
				syspte_release(base + (uint64_t)i * PAGE_SIZE, 1);
			return -1;
		}
	}
	for (uint32_t i = 1; i < cells; i += 2)
		syspte_release(base + (uint64_t)i * PAGE_SIZE, 1);
	return runs;
}

static void undo_checkerboard(uint32_t runs)
{
	for (uint32_t i = 0; i < 2 * runs - 1; i += 2)
		syspte_release(syspte_base() + (uint64_t)i * PAGE_SIZE, 1);
}

static void print_inst(uint64_t inst)
{
	if (have_inst_counter)
		kprintf(" %12lu", inst);
	else
		kprintf(" %12s", "n/a");
}

void bench_syspte_reserve_release(void)
{
	static const uint32_t points[] = { 10, 1000, 100000 };
	struct cost one[3] = { 0 }, eight[3] = { 0 };
	bool done[3] = { false };

	inst_counter_setup();
	struct syspte_stats s;
	syspte_get_stats(&s);
	kprintf("bench-syspte: one syspte_reserve + syspte_release (High priority, no guard, release flushes)\n");
	kprintf("  %lu system PTEs; average of %d pairs, best of %d rounds; tsc = TSC ticks (wall time under TCG),"
		" inst = instructions retired%s\n",
		s.total, BENCH_REPS, BENCH_ROUNDS, have_inst_counter ? "" : " (no architectural PMU: n/a)");
	if (s.free != s.total || s.free_runs != 1) {
		kprintf("  skipped: the space is in use (%lu of %lu free in %lu runs); run on an idle system\n", s.free,
			s.total, s.free_runs);
		return;
	}
	kprintf("  %10s %10s %12s %12s %12s %12s\n", "free runs", "largest", "1-PTE tsc", "1-PTE inst", "8-PTE tsc",
		"8-PTE inst");
	for (int p = 0; p < 3; p++) {
		uint32_t runs = points[p];
		/* The holes and the cells between them, plus room for the 8-PTE runs after them. */
		if ((uint64_t)2 * runs - 1 + 16 > syspte_total()) {
			kprintf("  %10u skipped: boot with syspte=262144 (make run BOOT=syspte=262144)\n", runs);
			continue;
		}
		if (checkerboard(runs) < 0) {
			kprintf("  %10u error: the space did not hand out one-PTE runs side by side\n", runs);
			continue;
		}
		syspte_get_stats(&s);
		one[p] = measure(1);
		eight[p] = measure(8);
		done[p] = !one[p].failed && !eight[p].failed;
		kprintf("  %10lu %10lu", s.free_runs, s.largest_free);
		if (done[p]) {
			kprintf(" %12lu", one[p].tsc);
			print_inst(one[p].inst);
			kprintf(" %12lu", eight[p].tsc);
			print_inst(eight[p].inst);
			kprintf("\n");
			/* The result lines for make bench after the row, never spliced into it, and
			 * not in the monitor's table at all (issue 17). */
			if (!from_monitor) {
				bench_result("syspte_reserve_release_1", runs, 1, 1, one[p].tsc, NULL);
				bench_result("syspte_reserve_release_8", runs, 1, 8, eight[p].tsc, NULL);
			}
		} else {
			kprintf(" a reservation failed\n");
		}
		undo_checkerboard(runs);
	}

	/* The target: the most fragmented point against the least, per size. */
	if (done[0] && done[2] && one[0].tsc && eight[0].tsc) {
		kprintf("  100000 vs 10 free runs: 1-PTE x%lu.%02lu, 8-PTE x%lu.%02lu (tsc; target: within x3)",
			one[2].tsc / one[0].tsc, one[2].tsc * 100 / one[0].tsc % 100, eight[2].tsc / eight[0].tsc,
			eight[2].tsc * 100 / eight[0].tsc % 100);
		if (have_inst_counter && one[0].inst && eight[0].inst)
			kprintf("; inst 1-PTE x%lu.%02lu, 8-PTE x%lu.%02lu", one[2].inst / one[0].inst,
				one[2].inst * 100 / one[0].inst % 100, eight[2].inst / eight[0].inst,
				eight[2].inst * 100 / eight[0].inst % 100);
		kprintf("\n");
	}
	syspte_get_stats(&s);
	if (s.free != s.total || s.free_runs != 1)
		kprintf("  warning: the space did not come back whole (%lu of %lu free in %lu runs)\n", s.free, s.total,
			s.free_runs);
}

static int cmd_bench_syspte(void)
{
	from_monitor = true;
	bench_syspte_reserve_release();
	from_monitor = false;
	return 0;
}

KBENCH(syspte_reserve_release, bench_syspte_reserve_release);

MONITOR_COMMAND_BARE_NAMED(bench_syspte, "bench-syspte",
			   "micro-benchmark: syspte reserve+release vs. fragmentation", cmd_bench_syspte);
