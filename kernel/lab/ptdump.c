/*
 * ptdump: merged ranges of an address space's leaves (see ptdump.h).  One pt_for_each_leaf
 * walk; a run grows while the next leaf continues it exactly, and is printed when one does
 * not.
 */
#include "kernel/lab/ptdump.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/pat.h"

extern char __text_start[], __text_end[], __rodata_start[], __rodata_end[], __data_start[],
	__kernel_end[];

/* One PML4 slot: the extent of the never-mapped hole at KVA_UNMAPPED_HOLE. */
#define PML4_SLOT_SIZE (1ull << 39)

static bool within(uint64_t va, uint64_t lo, uint64_t end) { return va >= lo && va < end; }

const char *ptdump_region_name(uint64_t va)
{
	if (va < USER_VA_END)
		return "user";
	if (within(va, KVA_DIRECT_MAP_BASE, KVA_DIRECT_MAP_END))
		return "direct map";
	if (within(va, KVA_SYSPTE_BASE, KVA_SYSPTE_END))
		return "system PTEs";
	if (within(va, KVA_POOL_BASE, KVA_POOL_END))
		return "pool";
	if (within(va, KVA_STACKS_BASE, KVA_STACKS_END))
		return "stacks";
	if (within(va, KVA_TEST_BASE, KVA_TEST_END))
		return "test scratch";
	if (within(va, KVA_DEVICE_BASE, KVA_DEVICE_END))
		return "device registers";
	if (within(va, KVA_UNMAPPED_HOLE, KVA_UNMAPPED_HOLE + PML4_SLOT_SIZE))
		return "never-mapped hole!";
	if (within(va, (uint64_t)__text_start, (uint64_t)__text_end))
		return "kernel text";
	if (within(va, (uint64_t)__rodata_start, (uint64_t)__rodata_end))
		return "kernel rodata";
	if (within(va, (uint64_t)__data_start, ALIGN_UP((uint64_t)__kernel_end, PAGE_SIZE)))
		return "kernel data/bss";
	if (va >= KVA_KERNEL_IMAGE)
		return "kernel image slot";
	return "unassigned";
}

/* bytes in the largest unit it reaches: exact as an integer (124K, 512M, 3G), else with one
 * decimal, truncated so it never overstates (501.9M). */
static void format_size(uint64_t bytes, char *buf, unsigned n)
{
	static const char units[] = "KMGT";
	for (int u = 3; u >= 0; u--) {
		uint64_t unit = 1ull << (10 * (u + 1));
		if (bytes < unit)
			continue;
		if (bytes % unit == 0)
			ksnprintf(buf, n, "%lu%c", bytes / unit, units[u]);
		else
			ksnprintf(buf, n, "%lu.%lu%c", bytes / unit, (bytes % unit) * 10 / unit, units[u]);
		return;
	}
	ksnprintf(buf, n, "%luB", bytes);
}

/* The leaf sizes present in a run (bit `level` set per level seen): "4K", "4K+2M", ... */
void ptdump_format_levels(unsigned mask, char *buf, unsigned n)
{
	static const char *const names[] = { "", "4K", "2M", "1G" };
	unsigned len = 0;
	buf[0] = 0;
	for (int level = 1; level <= 3; level++)
		if (mask & (1u << level))
			len += ksnprintf(buf + len, n - len, "%s%s", len ? "+" : "", names[level]);
}

struct run {
	bool open;
	uint64_t first, last; /* inclusive: a run may end at the very top of the address space */
	unsigned levels;
	struct pt_attrs eff;
	const char *region;
};

struct dump_ctx {
	uint64_t lo, hi_incl;
	struct run run;
	uint64_t lines, mapped;
};

static void print_run(struct dump_ctx *c)
{
	const struct run *r = &c->run;
	char size[16], levels[16];
	if (!r->open)
		return;
	format_size(r->last - r->first + 1, size, sizeof size);
	ptdump_format_levels(r->levels, levels, sizeof levels);
	kprintf("0x%016lx-0x%016lx %7s  %-7s %-3s %-2s %-4s %s %-4s (%s)\n", r->first, r->last, size,
		levels, r->eff.user ? "U" : "S", r->eff.write ? "RW" : "R", r->eff.exec ? "X" : "NX",
		r->eff.global ? "G" : "-", memtype_name(r->eff.type), r->region);
	c->lines++;
	c->mapped += r->last - r->first + 1;
}

static void dump_leaf(const struct pt_leaf *l, void *arg)
{
	struct dump_ctx *c = arg;
	uint64_t first = MAX(l->va, c->lo), last = MIN(l->va + (l->size - 1), c->hi_incl);
	const char *region = ptdump_region_name(first);
	struct run *r = &c->run;
	if (r->open && r->last + 1 == first && pt_attrs_equal(r->eff, l->eff) && r->region == region) {
		r->last = last;
		r->levels |= 1u << l->level;
		return;
	}
	print_run(c);
	*r = (struct run){ .open = true, .first = first, .last = last, .levels = 1u << l->level,
			   .eff = l->eff, .region = region };
}

void ptdump(const struct pt_root *r, uint64_t lo, uint64_t hi)
{
	struct dump_ctx c = { .lo = lo, .hi_incl = hi ? hi - 1 : ~0ull };
	char total[16];
	kprintf("page tables at 0x%lx, va 0x%016lx-0x%016lx\n", r->pml4, c.lo, c.hi_incl);
	kprintf("%-18s %-18s %7s  %-7s U/S RW X/NX G type (region)\n", "start", "end", "size", "leaves");
	pt_for_each_leaf(r, lo, hi, dump_leaf, &c);
	print_run(&c);
	format_size(c.mapped, total, sizeof total);
	kprintf("%lu range%s, %s mapped\n", c.lines, c.lines == 1 ? "" : "s", c.mapped ? total : "nothing");
}
