/*
 * cachebench: what each memory type costs, timed on buffers whose PTEs really carry it.
 *
 * For each type the PAT layout offers (WB, WT, UC-, UC, WC, WP) the command takes a
 * BUFFER_BYTES buffer from MmAllocatePagesForMdlEx with the caching type that names it (the
 * frames record the type and their direct-map alias takes it too, mm/RULES.md decision 1),
 * maps it with MmMapLockedPagesSpecifyCache asking the same type, checks in the real page
 * tables that every page of the mapping selects that type, and times three loops over it:
 *
 *   read     an 8-byte load of every word
 *   write    an 8-byte store to every word
 *   stream   a non-temporal store (MOVNTI) to every word, then SFENCE
 *
 * Each loop runs once untimed (first touch, TLB fill), then REPEATS times timed with RDTSC;
 * the best pass is printed in TSC ticks per 64-byte line.  The TSC ticks at a constant rate,
 * not at the core clock, so only the ratios between rows mean much.  The buffer is warm: a
 * cacheable type is timed out of the caches it fits in.
 *
 * Under QEMU's TCG emulator memory types are stored but not emulated: every row is really
 * WB and the figures measure the emulator.  The command says so plainly when it detects
 * TCG (the hypervisor CPUID leaf's vendor, or the brand string QEMU gives its TCG CPUs).
 * Under KVM the guest's PAT takes effect on AMD hosts (NPT combines it with the host's);
 * on Intel hosts KVM normally makes EPT ignore it (memory forced WB) unless the VM has
 * non-coherent DMA, so equal rows there are KVM's doing: the command says that too.
 *
 * Everything is released before the command returns; it checks that every resource
 * counter (kernel/accounting.h) reads as before and says so.
 */
#include "include/wdm.h"
#include "kernel/accounting.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/lib.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/memtype.h"
#include "mm/pat.h"
#include "mm/pt.h"

#define BUFFER_BYTES (256ul << 10)
#define CACHE_LINE 64ul
#define WORDS_PER_LINE (CACHE_LINE / sizeof(uint64_t))
#define REPEATS 5

static const struct {
	MEMORY_CACHING_TYPE caching_type;
	enum memtype type;
} rows[] = {
	{ MmCached, MT_WB },
	{ MmMdlabWriteThrough, MT_WT },
	{ MmNonCachedUnordered, MT_UCMINUS },
	{ MmNonCached, MT_UC },
	{ MmWriteCombined, MT_WC },
	{ MmMdlabWriteProtected, MT_WP },
};

enum op { OP_READ, OP_WRITE, OP_STREAM, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "read", "write", "stream" };

/* ---- the environment ------------------------------------------------------------------- */

/* The hypervisor's CPUID vendor (leaf 0x40000000) into vendor[13], "" on bare metal. */
static void hypervisor_vendor(char vendor[13])
{
	uint32_t a, b, c, d;
	vendor[0] = 0;
	if (!cpu_features.hypervisor)
		return;
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &c, 4);
	memcpy(vendor + 8, &d, 4);
	vendor[12] = 0;
}

static bool contains(const char *s, const char *word)
{
	size_t n = strlen(word);
	for (; *s; s++)
		if (!strncmp(s, word, n))
			return true;
	return false;
}

/* QEMU's TCG emulator: its hypervisor vendor "TCGTCGTCGTCG", or failing that the brand
 * string QEMU gives its TCG CPU models ("QEMU TCG CPU version ..."). */
static bool under_tcg(const char *vendor)
{
	return !strcmp(vendor, "TCGTCGTCGTCG") || contains(cpu_features.brand, "TCG");
}

/* ---- the loops ------------------------------------------------------------------------- */

static inline uint64_t tsc_start(void)
{
	__asm__ volatile("lfence" ::: "memory");
	return rdtsc();
}

/* After the loop: every store has left the store buffer (and the WC buffers) first. */
static inline uint64_t tsc_stop(void)
{
	__asm__ volatile("mfence; lfence" ::: "memory");
	return rdtsc();
}

static uint64_t run_op(enum op op, volatile uint64_t *p, uint64_t words)
{
	uint64_t sum = 0;
	uint64_t t0 = tsc_start();
	switch (op) {
	case OP_READ:
		for (uint64_t i = 0; i < words; i++)
			sum += p[i];
		break;
	case OP_WRITE:
		for (uint64_t i = 0; i < words; i++)
			p[i] = i;
		break;
	case OP_STREAM:
		for (uint64_t i = 0; i < words; i++)
			__asm__ volatile("movnti %1, %0" : "=m"(p[i]) : "r"(i));
		__asm__ volatile("sfence" ::: "memory");
		break;
	default:
		break;
	}
	uint64_t t1 = tsc_stop();
	__asm__ volatile("" ::"r"(sum)); /* the loads must happen */
	return t1 - t0;
}

/* The best of REPEATS timed passes after one untimed, with interrupts off. */
static uint64_t best_ticks(enum op op, volatile uint64_t *p, uint64_t words)
{
	uint64_t flags = read_rflags(), best = ~0ull;
	__asm__ volatile("cli");
	run_op(op, p, words);
	for (int r = 0; r < REPEATS; r++)
		best = MIN(best, run_op(op, p, words));
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti");
	return best;
}

/* ---- one buffer ------------------------------------------------------------------------ */

/* The PAT slot every page of [va, va + pages) selects, or -1 when a page is missing or
 * selects another type than `want` (read from the page tables, not from the MDL code). */
static int checked_slot(uint64_t va, uint64_t pages, enum memtype want)
{
	int slot = -1;
	for (uint64_t i = 0; i < pages; i++) {
		struct pt_query q;
		pt_query(&kernel_root, va + i * PAGE_SIZE, &q);
		if (!q.present || q.eff.type != want || (slot >= 0 && q.pat_slot != slot))
			return -1;
		slot = q.pat_slot;
	}
	return slot;
}

/* Ticks per line, with one decimal, right-aligned in `width` columns. */
static void print_per_line(uint64_t ticks, uint64_t lines, int width)
{
	char buf[24];
	uint64_t tenths = (ticks * 10 + lines / 2) / lines;
	ksnprintf(buf, sizeof buf, "%lu.%lu", tenths / 10, tenths % 10);
	kprintf("%*s", width, buf);
}

/* Allocate, map, check, time, release one row; false when it could not be set up. */
static bool bench_row(unsigned k)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	const char *name = memtype_name(rows[k].type);
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, BUFFER_BYTES, rows[k].caching_type,
					 MM_ALLOCATE_FULLY_REQUIRED | MM_DONT_ZERO_ALLOCATION);
	if (!m) {
		kprintf("  %-4s  MmAllocatePagesForMdlEx(%luK, %s) failed\n", name, BUFFER_BYTES >> 10,
			caching_type_name_for(rows[k].type));
		return false;
	}
	volatile uint64_t *p = MmMapLockedPagesSpecifyCache(m, KernelMode, rows[k].caching_type, NULL, FALSE,
							    NormalPagePriority);
	if (!p) {
		kprintf("  %-4s  MmMapLockedPagesSpecifyCache failed\n", name);
		MmFreePagesFromMdl(m);
		ExFreePool(m);
		return false;
	}
	uint64_t pages = BUFFER_BYTES / PAGE_SIZE, words = BUFFER_BYTES / sizeof(uint64_t);
	int slot = checked_slot((uint64_t)p, pages, rows[k].type);
	kprintf("  %-4s  %-22s 0x%016lx", name, caching_type_name_for(rows[k].type), (uint64_t)p);
	if (slot < 0)
		kprintf("   ?  a PTE does not select %s: not timed\n", name);
	else {
		kprintf("%4d", slot);
		for (int op = 0; op < OP_COUNT; op++)
			print_per_line(best_ticks((enum op)op, p, words), BUFFER_BYTES / CACHE_LINE, 9);
		kprintf("\n");
	}
	MmUnmapLockedPages((PVOID)p, m);
	MmFreePagesFromMdl(m); /* the frames and their direct-map aliases go back to WB */
	ExFreePool(m);
	return true;
}

/* ---- the command ----------------------------------------------------------------------- */

/* Say whether every counter is back where it was; name the ones that are not. */
static void report_cleanup(const struct accounting_snapshot *before)
{
	if (!accounting_report_changes(before, "cachebench: LEAK"))
		kprintf("cleaned up: all %u resource counters (free pages, system PTEs, pool, locked pages, "
			"...) read as before\n", before->n);
}

static int cmd_cachebench(void)
{
	char vendor[13];
	hypervisor_vendor(vendor);
	const char *brand = cpu_features.brand;
	while (*brand == ' ')
		brand++;
	kprintf("CPU: %s %s; %s%s\n", cpu_features.vendor, brand,
		cpu_features.hypervisor ? "hypervisor " : "no hypervisor", vendor);
	if (under_tcg(vendor))
		kprintf("*** QEMU TCG: memory types are NOT emulated here. The PTEs below carry each type, "
			"but every\n*** access behaves as WB, so these figures measure the emulator and are "
			"meaningless.\n*** Run under KVM on real hardware (make run KVM=1) to see the types "
			"differ.\n");
	else if (!strcmp(vendor, "KVMKVMKVM") && !strcmp(cpu_features.vendor, "GenuineIntel"))
		kprintf("*** KVM on an Intel host: KVM normally has EPT ignore the guest's PAT (memory forced "
			"to WB)\n*** unless the VM has non-coherent DMA; if every row reads alike, that is why. "
			"AMD hosts honour it.\n");
	struct accounting_snapshot before;
	accounting_snapshot(&before);
	kprintf("%luK per buffer from MmAllocatePagesForMdlEx, mapped by MmMapLockedPagesSpecifyCache; "
		"best of %d warm passes,\nTSC ticks per 64-byte line (read/write: 8-byte MOVs; stream: MOVNTI "
		"+ SFENCE)\n", BUFFER_BYTES >> 10, REPEATS);
	kprintf("  %-4s  %-22s %-18s%4s%9s%9s%9s\n", "type", "caching type", "mapped at", "PAT", op_names[OP_READ],
		op_names[OP_WRITE], op_names[OP_STREAM]);
	for (unsigned k = 0; k < ARRAY_SIZE(rows); k++)
		bench_row(k);
	report_cleanup(&before);
	return 0;
}
MONITOR_COMMAND_BARE(cachebench,
		     "time reads, writes and streaming writes on WB/WT/UC-/UC/WC/WP buffers (meaningless under TCG)",
		     cmd_cachebench);
