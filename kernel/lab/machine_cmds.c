/*
 * Monitor commands that show the machine's own state: cpu, cpus, memmap, pool and sysptes.
 * Each reads the owning module through its public header (kernel/cpufeat.h,
 * kernel/smp/smp.h, kernel/intr/, kernel/bootinfo.h, mm/pool.h, mm/syspte.h); none of
 * them keeps state of its own.
 */
#include "kernel/bootinfo.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/dpc.h"
#include "kernel/intr/intr.h"
#include "kernel/irql.h"
#include "kernel/lab/monitor.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/pool.h"
#include "mm/syspte.h"

static int cmd_cpu(void)
{
	cpufeat_print();
	kprintf("CR0 %016lx CR4 %016lx EFER %016lx\n", read_cr0(), read_cr4(), rdmsr(MSR_EFER));
	return 0;
}
MONITOR_COMMAND_BARE(cpu, "CPU identification, features and control registers", cmd_cpu);

/* Each CPU's IRQL as it was when the cross-call's IPI came (this CPU's: now). */
static void read_irql(void *arg)
{
	KIRQL *irql = arg;
	irql[smp_this_cpu()] = intr_interrupted_irql();
}

static int cmd_cpus(void)
{
	KIRQL irql[SMP_MAX_CPUS] = { 0 };
	smp_call_mask(smp_others_mask(), read_irql, irql);
	irql[smp_this_cpu()] = KeGetCurrentIrql();
	kprintf("clock %s; IRQL: the CPU's when the cross-call reached it (this CPU's: now)\n",
		clock_running() ? "100 Hz" : "off (clock=0)");
	kprintf("  %-3s %-4s %-4s %10s %9s %9s %10s %10s %10s %8s %8s\n", "cpu", "apic", "irql", "ticks",
		"dpc queue", "dpcs run", "tlb flush", "at wake", "ipis", "spurious", "apic err");
	for (unsigned i = 0; i < smp_cpus_online(); i++) {
		struct dpc_cpu_counts d;
		struct intr_cpu_counts n;
		dpc_counts(i, &d);
		intr_counts(i, &n);
		kprintf("  %-3u %-4u %-4u %10lu %9lu %9lu %10lu %10lu %10lu %8lu %8lu\n", i, kcpus[i].apic_id,
			irql[i], clock_ticks(i), d.depth, d.run, kcpus[i].tlb_flush_requests,
			kcpus[i].tlb_flushes_deferred, kcpus[i].ipis_received, n.spurious, n.apic_errors);
	}
	return 0;
}
MONITOR_COMMAND_BARE(cpus, "each CPU: APIC ID, IRQL, clock ticks, DPCs, TLB flushes (by IPI, left for its wake) and IPIs served", cmd_cpus);

static int cmd_memmap(void)
{
	const struct mdlab_efi_memdesc *d;
	kprintf("  %-18s %-18s %10s  %s\n", "start", "end", "pages", "type");
	for (uint64_t i = 0; (d = bootinfo_memdesc(i)); i++)
		kprintf("  0x%016lx 0x%016lx %10lu  %s\n", d->phys_start,
			d->phys_start + d->pages * 4096 - 1, d->pages, efi_memory_type_name(d->type));
	return 0;
}
MONITOR_COMMAND_BARE(memmap, "the UEFI memory map the loader handed over", cmd_memmap);

static int cmd_pool(void)
{
	struct pool_stats s;
	struct pool_tag_usage tags[64];
	pool_get_stats(&s);
	unsigned n = pool_get_tags(tags, sizeof tags / sizeof tags[0]);
	kprintf("pool at 0x%lx: %lu bytes in %lu allocations; %lu pages (%lu slab, %lu large), %u of %u VA pages free\n",
		KVA_POOL_BASE, s.bytes_in_use, s.allocations, s.pages_in_use, s.slab_pages,
		s.large_pages, s.va_pages_free, s.va_pages);
	kprintf("  %-6s %10s %12s\n", "tag", "allocs", "bytes");
	for (unsigned i = 0; i < n; i++) {
		char t[5];
		memcpy(t, &tags[i].tag, 4);
		t[4] = 0;
		for (int k = 0; k < 4; k++)
			if (t[k] < 0x20 || t[k] > 0x7E)
				t[k] = '.';
		kprintf("  %-6s %10lu %12lu\n", t, tags[i].allocs, tags[i].bytes);
	}
	return 0;
}
MONITOR_COMMAND_BARE(pool, "pool usage, by tag", cmd_pool);

static int cmd_sysptes(void)
{
	struct syspte_stats s;
	syspte_get_stats(&s);
	kprintf("system PTEs at 0x%lx: %lu total, %lu free in %lu runs (largest %lu), %lu in use, peak %lu\n",
		KVA_SYSPTE_BASE, s.total, s.free, s.free_runs, s.largest_free, s.in_use, s.peak_in_use);
	kprintf("priorities: Low keeps %lu free, Normal keeps %lu, High takes the last run\n",
		(uint64_t)SYSPTE_LOW_RESERVE(s.total), (uint64_t)SYSPTE_NORMAL_RESERVE(s.total));
	kprintf("reservations %lu, releases %lu (each flushed), failures: low %lu normal %lu high %lu\n",
		s.reservations, s.releases, s.failures_low, s.failures_normal, s.failures_high);
	return 0;
}
MONITOR_COMMAND_BARE(sysptes, "the system-PTE space: free runs, priorities, counters", cmd_sysptes);
