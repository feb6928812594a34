/*
 * `make bench`'s SMP suite (README "Performance"): what a kernel map+unmap costs when other
 * CPUs are online, each idle in HLT with interrupts on, as they always are between tests.
 * scripts/bench.py runs it on the one-CPU machine with the other suites and again on
 * machines of 2 and 4 vCPUs (its SMP_MACHINES table, where a row's kernel arguments pick
 * the shootdown policy), and names each row by its machine (smp_map_unmap_cpu4).
 *
 * The other CPUs stay in HLT through the whole suite (clock=0, nothing else for them to do),
 * so a kernel unmap's shootdown sends them no IPI: each is marked to flush when it wakes
 * (smp_flushes_deferred), and the strict figures come near the one-CPU ones.  The events
 * counted per 1000 unmaps say which happened.
 *
 * Under -icount several vCPUs run round-robin on one host thread and the guest TSC is the
 * one virtual clock they share: it advances with every instruction any vCPU retires.  So a
 * figure here is the instructions of the whole machine for the operation: the initiator's
 * path, the other CPUs' IPI handlers (entry, the INVLPGs, EOI, IRET, back to HLT), and the
 * initiator's wait for their answers.  That wait is a PAUSE loop (smp_call_mask), which is
 * what is right on hardware; QEMU's PAUSE ends the vCPU's turn, so under TCG the wait is a
 * few PAUSEs however long a real IPI takes.  smp_wait_spins counts them, and
 * smp_cross_call_empty is the round trip of a cross-call that does nothing: the price of
 * asking the others at all, which no shootdown policy that asks synchronously avoids.
 */
#include "kernel/bench.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/tlb.h"
#include "include/wdm.h"

#define REPS 16       /* per timing: under -icount the count is exact, no need for more */
#define COUNT_OPS 1000 /* the one-page map+unmaps the event counts are given per */
#define TAG 0x70536E42u /* 'BnSp' */

static const uint32_t sizes[] = { 1, 8, 64, 512 };

/* One warm-up call (first-use costs: a page table, TCG's translation), then ticks per call
 * over REPS calls. */
static uint64_t time_op(void (*fn)(void *), void *ctx)
{
	fn(ctx);
	uint64_t t0 = bench_now();
	for (int i = 0; i < REPS; i++)
		fn(ctx);
	return (bench_now() - t0 - bench_overhead()) / REPS;
}

struct mdl_ctx {
	PMDL mdl;
};

static void map_unmap_op(void *c)
{
	struct mdl_ctx *m = c;
	PVOID va = MmMapLockedPagesSpecifyCache(m->mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	MmUnmapLockedPages(va, m->mdl);
}

static void nothing(void *arg) { (void)arg; }

static void cross_call_op(void *c)
{
	(void)c;
	smp_call_mask(smp_others_mask(), nothing, NULL);
}

/* What the other CPUs have received and served (a shootdown's INVLPGs or a lazy purge's), summed. */
static void others_counts(uint64_t *ipis, uint64_t *flushes)
{
	*ipis = *flushes = 0;
	for (unsigned i = 0; i < smp_cpus_online(); i++) {
		if (i == smp_this_cpu())
			continue;
		*ipis += kcpus[i].ipis_received;
		*flushes += kcpus[i].tlb_flush_requests + kcpus[i].tlb_purges_served;
	}
}

static void count(const char *name, uint64_t n) { bench_result(name, 1, COUNT_OPS, 0, n, "per_1000_unmaps"); }

static void bench_smp(void)
{
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		uint32_t n = sizes[s];
		uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, (SIZE_T)n * PAGE_SIZE, TAG);
		PMDL mdl = buf ? IoAllocateMdl(buf, n * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
		if (!mdl) {
			if (buf)
				ExFreePoolWithTag(buf, TAG);
			kprintf("# bench: smp_map_unmap %u pages: no memory\n", n);
			continue;
		}
		MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess);
		struct mdl_ctx m = { mdl };
		bench_result("smp_map_unmap", n, 1, n, time_op(map_unmap_op, &m), NULL);
		if (n == 1) {
			/* The events of COUNT_OPS one-page map+unmaps. */
			struct tlb_stats t0, t1;
			uint64_t ipis0, flushes0, ipis1, flushes1, spins0 = smp_call_wait_spins();
			tlb_get_stats(&t0);
			others_counts(&ipis0, &flushes0);
			for (int i = 0; i < COUNT_OPS; i++)
				map_unmap_op(&m);
			tlb_get_stats(&t1);
			others_counts(&ipis1, &flushes1);
			/* Under tlb=lazy the unmaps send none; the purges of the released ranges do. */
			count("smp_ipis_sent", t1.shootdown_ipis - t0.shootdown_ipis + t1.purge_ipis - t0.purge_ipis);
			count("smp_ipis_received", ipis1 - ipis0);
			count("smp_invlpg_initiator", t1.single_pages - t0.single_pages);
			count("smp_full_flushes_initiator", t1.full_flushes - t0.full_flushes);
			count("smp_flush_requests_served", flushes1 - flushes0);
			/* The flushes left for an idle CPU's wake instead of an IPI (mm/RULES.md, "Idle
			 * CPUs take their flush when they wake"): the other CPUs idle in HLT. */
			count("smp_flushes_deferred", t1.deferred - t0.deferred);
			count("smp_wait_spins", smp_call_wait_spins() - spins0);
		}
		MmUnlockPages(mdl);
		IoFreeMdl(mdl);
		ExFreePoolWithTag(buf, TAG);
	}
	if (smp_cpus_online() > 1)
		bench_result("smp_cross_call_empty", smp_cpus_online() - 1, 1, 0, time_op(cross_call_op, NULL),
			     "to_every_other_cpu");
}
KBENCH(smp, bench_smp);
