/*
 * Benchmarks for `make bench`: cases registered through a linker section, run by
 * `mode=bench`, each printing result lines the host script (scripts/bench.py) collects.
 *
 * The unit is the guest TSC.  `make bench` runs QEMU with `-icount shift=0`, where the
 * guest's TSC advances exactly one tick per guest instruction: the figures are instruction
 * counts, identical from run to run.  Under KVM they are TSC cycles.
 *
 *   static void bench_map(void) { ... bench_result("map_unmap", 512, ops, pages, ticks); }
 *   KBENCH(map_unmap, bench_map);
 */
#ifndef KERNEL_BENCH_H
#define KERNEL_BENCH_H

#include <stdint.h>
#include "kernel/cpu.h"

struct kbench {
	const char *name;
	void (*run)(void);
};

#define KBENCH(id, fn)                                                                   \
	static const struct kbench __kbench_##id = { #id, fn };                          \
	__attribute__((used, section(".kbench"))) static const struct kbench *const __kbench_ptr_##id = \
		&__kbench_##id

/* Serialised TSC read: the measured instructions retire before it. */
static inline uint64_t bench_now(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

/* Ticks of an empty measurement (two bench_now()), subtracted from every result. */
uint64_t bench_overhead(void);

/* Report `ticks` spent on `ops` operations of `size` (pages, PTEs, runs: the case says),
 * touching `pages` pages in all; `extra` is a free-form note (may be NULL). */
void bench_result(const char *case_name, uint64_t size, uint64_t ops, uint64_t pages, uint64_t ticks,
		  const char *extra);

/* mode=bench: run every registered case (or those matching glob), then print the end line. */
void bench_run_all(const char *glob);

#endif
