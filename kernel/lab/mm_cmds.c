/*
 * Monitor commands for the memory manager: ptdump, pte, pfn, lockedpages, pat, mem, audit,
 * ws, trim, pagefile, and the printers behind them (kernel/lab/mm_cmds.h).  Everything about a translation is read
 * from the real page tables (pt_query, pt_for_each_leaf), the PAT from the MSR and frames
 * from the PFN database, never from bookkeeping.  Numbers are hex, as in WinDbg: with or
 * without 0x, with ` between digit groups (0xffffffff`80000000); a PID is decimal, as `ps`
 * prints it.
 */
#include "kernel/lab/mm_cmds.h"
#include "kernel/lib.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/audit.h"
#include "mm/layout.h"
#include "mm/mm.h"
#include "mm/pagefile.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "kernel/lab/ptdump.h"
#include "mm/tlb.h"
#include "mm/uvm.h"

#define LOCKED_FRAMES_SHOWN 64

static bool canonical(uint64_t va)
{
	uint64_t top = va >> 47; /* bits 63..47 must all equal bit 47 */
	return top == 0 || top == 0x1FFFF;
}

/* The address space an optional PID argument selects: the kernel's without one.  Returns
 * what monitor_parse_process does. */
static int space_of(int argc, char **argv, int at, const struct pt_root **root, PEPROCESS *p)
{
	*root = &kernel_root;
	*p = NULL;
	if (argc <= at)
		return 0;
	int r = monitor_parse_process(argv[at], p);
	if (r == 0)
		*root = &(*p)->mm.root;
	return r;
}

/* ---------------------------------------------------------------- ptdump */

static int cmd_ptdump(int argc, char **argv)
{
	uint64_t lo = 0, hi = 0;
	const struct pt_root *root;
	PEPROCESS p;
	if (argc > 4 || (argc >= 2 && !monitor_parse_hex(argv[1], &lo)) ||
	    (argc >= 3 && !monitor_parse_hex(argv[2], &hi)))
		return -1;
	if (hi && hi <= lo)
		return -1;
	int r = space_of(argc, argv, 3, &root, &p);
	if (r)
		return r;
	/* Whole pages only: a range line never starts or ends inside a page (issue 17). */
	if ((lo | hi) & (PAGE_SIZE - 1)) {
		uint64_t up = hi ? ALIGN_UP(hi, PAGE_SIZE) : 0;
		kprintf("[0x%lx, 0x%lx) widened to whole pages: [0x%lx, 0x%lx)\n", lo, hi, ALIGN_DOWN(lo, PAGE_SIZE), up);
		lo = ALIGN_DOWN(lo, PAGE_SIZE);
		hi = up;
	}
	if (p)
		kprintf("process %u (%s):\n", p->pid, p->name);
	ptdump(root, lo, hi);
	return 0;
}
MONITOR_COMMAND(ptdump, "ptdump [START [END [PID]]]",
		"page tables as merged ranges, [START, END) hex (END 0: the top); PID: that process's", cmd_ptdump);

/* ---------------------------------------------------------------- pte */

static const char *const entry_names[5] = { "", "PTE", "PDE", "PDPTE", "PML4E" };
static const char *const table_names[5] = { "", "PT", "PD", "PDPT", "PML4" };

static unsigned va_index(uint64_t va, int level) { return (va >> (12 + 9 * (level - 1))) & 511; }

static void print_leaf_details(struct mon_out *o, uint64_t va, const struct pt_query *q)
{
	uint64_t frame = q->pa - (va - q->leaf_va);
	unsigned enc = (pat_read_msr() >> (8 * q->pat_slot)) & 0xFF;
	enum memtype slot_type = pat_encoding_type(enc);
	const struct pfn_entry *e = pfn_entry(q->pa >> PAGE_SHIFT);
	mon_printf(o, "  leaf: %s page 0x%016lx-0x%016lx -> page at pa 0x%lx\n",
		   q->level == 1 ? "4K" : q->level == 2 ? "2M" : "1G", q->leaf_va, q->leaf_va + q->leaf_size - 1,
		   frame);
	mon_printf(o, "  PAT slot %d: IA32_PAT encoding 0x%02x = %s (per the MSR now)\n", q->pat_slot, enc,
		   slot_type == MT_NONE ? "reserved" : memtype_name(slot_type));
	mon_printf(o, "  effective: %s %s %s %s %s\n", q->eff.user ? "U" : "S", q->eff.write ? "RW" : "R",
		   q->eff.exec ? "X" : "NX", q->eff.global ? "G" : "-", memtype_name(q->eff.type));
	mon_printf(o, "  0x%016lx -> pa 0x%lx, PFN 0x%lx", va, q->pa, q->pa >> PAGE_SHIFT);
	if (e)
		mon_printf(o, " (%s, recorded type %s)\n", pfn_state_name((enum pfn_state)e->state),
			   memtype_name((enum memtype)e->memtype));
	else
		mon_printf(o, " (beyond the PFN database: MMIO)\n");
}

/* NT's names of the 5-bit MM_ protections a software PTE carries (WinDbg's !pte words). */
static const char *mm_protection_name(unsigned p)
{
	static const char *const names[8] = { "NoAccess(0)", "ReadOnly",	  "Execute",	     "ExecuteRead",
					      "ReadWrite",   "WriteCopy",	  "ExecuteReadWrite", "ExecuteWriteCopy" };
	return p == 0x18 ? "NoAccess" : p < 8 ? names[p] : "other";
}

/* A not-present leaf that is not 0: decoded as WinDbg's !pte decodes NT's x64 software PTEs. */
static void print_software_pte(struct mon_out *o, uint64_t e)
{
	struct pt_sw sw;
	pt_decode_software(e, &sw);
	switch (sw.kind) {
	case PT_SW_TRANSITION: {
		const struct pfn_entry *pe = pfn_entry(sw.pfn);
		mon_printf(o, "  Transition: PFN 0x%lx, Protect: %x - %s (MMPTE_TRANSITION: Transition bit 11, Prototype 0)\n",
			   sw.pfn, sw.protection, mm_protection_name(sw.protection));
		if (pe)
			mon_printf(o, "  frame 0x%lx: %s%s\n", sw.pfn, pfn_state_name((enum pfn_state)pe->state),
				   (pe->flags & PFN_F_READING)   ? ", being read in"
				   : (pe->flags & PFN_F_WRITING) ? ", being written"
								 : "");
		break;
	}
	case PT_SW_PAGEFILE:
		mon_printf(o, "  PageFile: %u, Offset: %x, Protect: %x - %s (MMPTE_SOFTWARE: PageFileLow %u, PageFileHigh 0x%x)\n",
			   sw.pagefile, sw.offset, sw.protection, mm_protection_name(sw.protection), sw.pagefile, sw.offset);
		mon_printf(o, "  slot %u of the pagefile: disk byte 0x%lx (sector %lu)\n", sw.offset, pagefile_offset(sw.offset),
			   pagefile_offset(sw.offset) / 512);
		break;
	case PT_SW_DEMAND_ZERO:
		mon_printf(o, "  DemandZero, Protect: %x - %s\n", sw.protection, mm_protection_name(sw.protection));
		break;
	default:
		mon_printf(o, "  Prototype PTE (sections: mdlab has none)\n");
		break;
	}
}

void mm_print_pte(struct mon_out *o, const struct pt_root *root, uint64_t va)
{
	struct pt_query q;
	pt_query(root, va, &q);
	mon_printf(o, "va 0x%016lx: PML4 %u, PDPT %u, PD %u, PT %u, offset 0x%lx  (%s; tables at 0x%lx)\n", va,
		   va_index(va, 4), va_index(va, 3), va_index(va, 2), va_index(va, 1), va & (PAGE_SIZE - 1),
		   ptdump_region_name(va), root->pml4);
	for (int level = 4; level >= q.level; level--) {
		uint64_t e = q.entry[level];
		char bits[80];
		mon_printf(o, "  %-5s at pa 0x%010lx = 0x%016lx", entry_names[level], q.entry_pa[level], e);
		if (level == q.level && !q.present) {
			mon_printf(o, "  not present\n");
			break;
		}
		pt_describe_entry(e, level, bits, sizeof bits);
		if (level > q.level)
			mon_printf(o, " -> %s 0x%lx", table_names[level - 1], ALIGN_DOWN(q.entry_pa[level - 1], PAGE_SIZE));
		else
			mon_printf(o, " -> page at pa 0x%lx", q.pa - (va - q.leaf_va)); /* "frame" is a PFN */
		mon_printf(o, "  [%s]\n", bits);
	}
	if (!q.present) {
		mon_printf(o, "  not present at level %d (%s in the %s)\n", q.level, entry_names[q.level],
			   table_names[q.level]);
		if (q.level == 1 && q.entry[1])
			print_software_pte(o, q.entry[1]);
		return;
	}
	print_leaf_details(o, va, &q);
}

bool mm_print_pte_brief(struct mon_out *o, const struct pt_root *root, uint64_t va, uint64_t *last_table)
{
	struct pt_query q;
	pt_query(root, va, &q);
	uint64_t table = ALIGN_DOWN(q.entry_pa[1], PAGE_SIZE);
	if (!q.present || q.level != 1 || table != *last_table) {
		mm_print_pte(o, root, va);
		*last_table = q.present && q.level == 1 ? table : 0;
		return false;
	}
	char bits[80];
	mon_printf(o, "va 0x%016lx: PML4 %u, PDPT %u, PD %u, PT %u, offset 0x%lx  (%s; tables at 0x%lx)\n", va,
		   va_index(va, 4), va_index(va, 3), va_index(va, 2), va_index(va, 1), va & (PAGE_SIZE - 1),
		   ptdump_region_name(va), root->pml4);
	mon_printf(o, "  PML4E, PDPTE, PDE: as in the walk above (the same page table, at pa 0x%lx)\n", table);
	pt_describe_entry(q.entry[1], 1, bits, sizeof bits);
	mon_printf(o, "  %-5s at pa 0x%010lx = 0x%016lx -> page at pa 0x%lx  [%s]\n", entry_names[1], q.entry_pa[1],
		   q.entry[1], q.pa - (va - q.leaf_va), bits);
	print_leaf_details(o, va, &q);
	return true;
}

static int cmd_pte(int argc, char **argv)
{
	uint64_t va;
	const struct pt_root *root;
	PEPROCESS p;
	if (argc < 2 || argc > 3 || !monitor_parse_hex(argv[1], &va))
		return -1;
	if (!canonical(va)) {
		kprintf("0x%lx is not a canonical address\n", va);
		return -1;
	}
	int r = space_of(argc, argv, 2, &root, &p);
	if (r)
		return r;
	if (p)
		kprintf("process %u (%s):\n", p->pid, p->name);
	mm_print_pte(MON_CONSOLE, root, va);
	return 0;
}
MONITOR_COMMAND(pte, "pte VA [PID]",
		"every level's entry for VA (hex), bits, PAT slot, translation; PID: in that process", cmd_pte);

/* ---------------------------------------------------------------- pfn */

void mm_print_pfn(struct mon_out *o, pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e) {
		mon_printf(o, "PFN 0x%lx (pa 0x%lx): beyond the PFN database (limit 0x%lx): not RAM\n", pfn,
			   pfn << PAGE_SHIFT, pfn_limit());
		return;
	}
	mon_printf(o, "PFN 0x%lx (pa 0x%lx): state %s, %s\n", pfn, pfn << PAGE_SHIFT,
		   pfn_state_name((enum pfn_state)e->state), pfn_is_ram(pfn) ? "RAM" : "no RAM here");
	mon_printf(o, "  memtype %s, owner %s 0x%lx, lock count %u", memtype_name((enum memtype)e->memtype),
		   pfn_owner_name((enum pfn_owner)e->owner_kind), e->owner, e->lock_count);
	if (e->state == PFN_FREE || e->state == PFN_ZEROED)
		mon_printf(o, ", free-list links next 0x%x prev 0x%x", e->next, e->prev);
	mon_printf(o, "\n");
	uint64_t dva = (uint64_t)pfn_to_virt(pfn);
	struct pt_query q;
	pt_query(&kernel_root, dva, &q);
	if (q.present)
		mon_printf(o, "  direct map 0x%016lx: mapped %s, %s %s, %s page (tables read now)\n", dva,
			   memtype_name(q.eff.type), q.eff.write ? "RW" : "R", q.eff.exec ? "X" : "NX",
			   q.level == 1 ? "4K" : q.level == 2 ? "2M" : "1G");
	else
		mon_printf(o, "  direct map 0x%016lx: not mapped (stops at level %d)\n", dva, q.level);
}

static int cmd_pfn(int argc, char **argv)
{
	uint64_t pfn;
	if (argc != 2 || !monitor_parse_hex(argv[1], &pfn) || pfn > (~0ull >> PAGE_SHIFT))
		return -1;
	mm_print_pfn(MON_CONSOLE, pfn);
	return 0;
}
MONITOR_COMMAND(pfn, "pfn PFN", "the PFN database entry of frame PFN (hex) and its direct-map alias",
		cmd_pfn);

/* ---------------------------------------------------------------- lockedpages */

struct locked_walk {
	struct mon_out *o;
	uint64_t frames, shown;
};

/* A user leaf of the process: list its frames that carry a lock count. */
static void locked_leaf(const struct pt_leaf *l, void *arg)
{
	struct locked_walk *w = arg;
	for (uint64_t off = 0; off < l->size; off += PAGE_SIZE) {
		const struct pfn_entry *e = pfn_entry((l->pa + off) >> PAGE_SHIFT);
		if (!e || !e->lock_count)
			continue;
		if (w->shown++ < LOCKED_FRAMES_SHOWN)
			mon_printf(w->o, "    va 0x%016lx -> PFN 0x%lx, lock count %u\n", l->va + off,
				   (l->pa + off) >> PAGE_SHIFT, e->lock_count);
		w->frames++;
	}
}

void mm_print_locked_pages(struct mon_out *o, PEPROCESS only)
{
	struct pfn_stats s;
	uint64_t frames = 0, locks = 0;
	pfn_get_stats(&s);
	if (!only) {
		mon_printf(o, "frames with a lock count (PFN database):\n");
		for (pfn_t pfn = 0; pfn < pfn_limit(); pfn++) {
			const struct pfn_entry *e = pfn_entry(pfn);
			if (!e->lock_count)
				continue;
			if (frames < LOCKED_FRAMES_SHOWN)
				mon_printf(o, "  PFN 0x%lx  lock count %u, %s, owner %s, type %s\n", pfn, e->lock_count,
					   pfn_state_name((enum pfn_state)e->state),
					   pfn_owner_name((enum pfn_owner)e->owner_kind),
					   memtype_name((enum memtype)e->memtype));
			frames++;
			locks += e->lock_count;
		}
		if (frames > LOCKED_FRAMES_SHOWN)
			mon_printf(o, "  ... %lu more\n", frames - LOCKED_FRAMES_SHOWN);
		mon_printf(o, "total: %lu frame(s) locked, %lu lock(s); the PFN counters say %lu locked%s\n", frames,
			   locks, s.locked, frames == s.locked ? "" : " (DISAGREE)");
	}
	mon_printf(o, "per process (pages MmProbeAndLockPages charged to it):\n");
	unsigned n = 0;
	for (PEPROCESS p = ps_next(NULL); p; p = ps_next(p)) {
		if (only && p != only)
			continue;
		mon_printf(o, "  %4u %-16s %lu page(s) locked\n", p->pid, p->name, p->mm.locked_pages);
		n++;
	}
	if (!n)
		mon_printf(o, "  (no process)\n");
	if (only) {
		struct locked_walk w = { .o = o };
		mon_printf(o, "  locked frames its user half maps (locked by anyone):\n");
		pt_for_each_leaf(&only->mm.root, 0, USER_VA_END, locked_leaf, &w);
		if (w.shown > LOCKED_FRAMES_SHOWN)
			mon_printf(o, "    ... %lu more\n", w.shown - LOCKED_FRAMES_SHOWN);
		mon_printf(o, "    %lu frame(s)\n", w.frames);
	}
}

static int cmd_lockedpages(int argc, char **argv)
{
	PEPROCESS p = NULL;
	if (argc > 2)
		return -1;
	if (argc == 2) {
		int r = monitor_parse_process(argv[1], &p);
		if (r)
			return r;
	}
	mm_print_locked_pages(MON_CONSOLE, p);
	return 0;
}
MONITOR_COMMAND(lockedpages, "lockedpages [PID]",
		"pages locked by MmProbeAndLockPages: frames with lock counts, per-process counts", cmd_lockedpages);

/* ---------------------------------------------------------------- pat */

/* The PTE bits that select `slot`, found through pat.h rather than by knowing its formula. */
static struct pat_bits bits_of_slot(int slot)
{
	for (int i = 0; i < 8; i++) {
		struct pat_bits b = { .pat = i & 4, .pcd = i & 2, .pwt = i & 1 };
		if (pat_slot(b) == slot)
			return b;
	}
	return (struct pat_bits){ 0 };
}

void mm_print_pat(struct mon_out *o)
{
	uint64_t msr = pat_read_msr();
	mon_printf(o, "IA32_PAT = 0x%016lx (%s mdlab's layout 0x%016lx)\n", msr,
		   msr == pat_mdlab_value() ? "matches" : "DIFFERS FROM", pat_mdlab_value());
	mon_printf(o, "  slot  enc   type  PAT PCD PWT  canonical for\n");
	for (int slot = 0; slot < 8; slot++) {
		unsigned enc = (msr >> (8 * slot)) & 0xFF;
		enum memtype t = pat_encoding_type(enc);
		struct pat_bits b = bits_of_slot(slot);
		char users[32] = "-";
		unsigned len = 0;
		for (int u = 0; u < MT_COUNT; u++)
			if (pat_slot(pat_bits_for((enum memtype)u)) == slot)
				len += ksnprintf(users + len, sizeof users - len, "%s%s", len ? " " : "",
						 memtype_name((enum memtype)u));
		mon_printf(o, "  %4d  0x%02x  %-4s  %3d %3d %3d  %s\n", slot, enc, t == MT_NONE ? "rsvd" : memtype_name(t),
			   b.pat, b.pcd, b.pwt, users);
	}
}

static int cmd_pat(void)
{
	mm_print_pat(MON_CONSOLE);
	return 0;
}
MONITOR_COMMAND_BARE(pat, "IA32_PAT slot by slot: encoding, type, selecting bits, canonical users", cmd_pat);

/* ---------------------------------------------------------------- mem */

static void print_pages(const char *what, uint64_t pages)
{
	/* MiB with one decimal: 256 pages a MiB. */
	kprintf("  %-12s %9lu pages %6lu.%lu MiB\n", what, pages, pages / 256, (pages % 256) * 10 / 256);
}

static int cmd_mem(void)
{
	struct pfn_stats s;
	struct tlb_stats t;
	struct mm_cpu_state c;
	pfn_get_stats(&s);
	tlb_get_stats(&t);
	mm_cpu_state(&c);
	kprintf("physical memory (PFN database: 0x%lx frames):\n", pfn_limit());
	print_pages("RAM", s.ram);
	print_pages("free", s.free);
	print_pages("  zeroed", s.zeroed);
	print_pages("active", s.active);
	print_pages("locked", s.locked);
	print_pages("page tables", s.page_tables);
	print_pages("kernel", s.kernel);
	print_pages("firmware", s.firmware);
	print_pages("reclaimed", s.reclaimed);
	kprintf("TLB: %lu single-page flushes (INVLPG), %lu full flushes\n", t.single_pages, t.full_flushes);
	kprintf("CPU: EFER.NXE %d CR0.WP %d CR4.PGE %d CR4.SMEP %d CR4.SMAP %d; IA32_PAT 0x%016lx\n", c.nx,
		c.wp, c.pge, c.smep, c.smap, pat_read_msr());
	return 0;
}
MONITOR_COMMAND_BARE(mem, "page counters, TLB flush counts and the paging-related CPU state", cmd_mem);

/* ---------------------------------------------------------------- audit */

static int cmd_audit(void)
{
	uint64_t wx = mm_audit_wx(&kernel_root, true);
	uint64_t types = mm_audit_memtypes(&kernel_root, true);
	uint64_t records = mm_audit_pfn_memtypes(&kernel_root, true);
	uint64_t aliases = mm_audit_wx_aliases(&kernel_root, true);
	kprintf("audit: %lu W^X finding(s), %lu frame(s) with two memory types, %lu PFN record(s) "
		"disagreeing with the tables\n", wx, types, records);
	kprintf("audit: %lu frame(s) executable in ring 0 and writable through any mapping, or executable "
		"and writable in ring 3 (every live process walked)\n", aliases);
	return 0;
}
MONITOR_COMMAND_BARE(audit, "run the page-table audits (W^X, memory types, PFN records, aliases)", cmd_audit);

/* ---------------------------------------------------------------- ws, trim, pagefile */

static void print_ws(struct mon_out *o, PEPROCESS p)
{
	struct uvm_ws_counts ws;
	uvm_working_set(&p->mm, &ws);
	mon_printf(o, "process %u (%s): working set %lu pages valid (image, stack, private); trimmed: %lu in transition, %lu in the pagefile\n",
		   p->pid, p->name, ws.valid, ws.transition, ws.pagefile);
}

static void print_paging(struct mon_out *o)
{
	struct uvm_paging_stats s;
	uvm_get_paging_stats(&s);
	struct pfn_stats f;
	pfn_get_stats(&f);
	mon_printf(o, "since boot: %lu pages trimmed, %lu soft faults, %lu hard faults (%lu collided), %lu in-page errors\n",
		   s.trimmed, s.soft_faults, s.hard_faults, s.collided_faults, s.inpage_errors);
	mon_printf(o, "frames: %lu free, %lu standby, %lu modified, %lu standby frames repurposed since boot\n", f.free,
		   f.standby, f.modified, f.repurposed);
	struct pool_paging_stats pp;
	pool_get_paging_stats(&pp);
	mon_printf(o, "paged pool: %lu pages trimmed, %lu soft faults, %lu hard faults (%lu collided), %lu in-page errors\n",
		   pp.trimmed, pp.soft_faults, pp.hard_faults, pp.collided_faults, pp.inpage_errors);
}

static int cmd_ws(int argc, char **argv)
{
	PEPROCESS p;
	if (argc != 2)
		return -1;
	int r = monitor_parse_process(argv[1], &p);
	if (r)
		return r;
	print_ws(MON_CONSOLE, p);
	print_paging(MON_CONSOLE);
	return 0;
}
MONITOR_COMMAND(ws, "ws PID",
		"a process's working set: its private pages valid, in transition and in the pagefile (PTEs read now)",
		cmd_ws);

static int cmd_trim(int argc, char **argv)
{
	if (argc > 2)
		return -1;
	struct uvm_trim_result r;
	if (argc == 2 && !strcmp(argv[1], "pool")) {
		kprintf("paged pool: %lu pages trimmed (whole-page paged allocations and paged slab pages, those no lock "
			"holds)\n", pool_trim_paged());
	} else if (argc == 2) {
		PEPROCESS p;
		int e = monitor_parse_process(argv[1], &p);
		if (e)
			return e;
		uvm_trim(&p->mm, &r);
		kprintf("process %u (%s): %lu pages trimmed, %lu locked pages left valid\n", p->pid, p->name, r.trimmed,
			r.kept_locked);
		print_ws(MON_CONSOLE, p);
	} else {
		uint64_t standby = uvm_relieve_pressure();
		kprintf("memory-pressure relief (every process, paged pool, then the modified page writer; nothing when "
			"no page could be written): %lu pages on the standby list\n", standby);
	}
	print_paging(MON_CONSOLE);
	return 0;
}
MONITOR_COMMAND(trim, "trim [PID|pool]",
		"trim a process's working set (its unlocked private pages to transition, frames to the modified list); "
		"pool: paged pool's pageable pages (whole-page paged allocations and paged slab pages); nothing: "
		"memory-pressure relief, every process and paged pool trimmed, then the modified page writer "
		"(nothing trimmed when no page could be written: no pagefile, or a full one)",
		cmd_trim);

static int cmd_pagefile(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "write")))
		return -1;
	if (argc == 2)
		kprintf("modified page writer: %lu pages written\n", pagefile_write_modified());
	struct pagefile_stats s;
	pagefile_get_stats(&s);
	kprintf("pagefile 0: %s, disk bytes 0x%lx-0x%lx (slots 1-%u of 4 KiB; slot s at 0x%lx + s * 0x1000)\n",
		s.attached ? "on the virtio disk" : pagefile_permitted() ? "no disk attached" : "off (no pagefile=1 on the command line)", pagefile_offset(1), pagefile_offset(s.limit) - 1,
		s.limit - 1, pagefile_offset(0));
	kprintf("slots in use %lu; %lu writes of %lu pages (%lu failed, %lu times full), %lu reads (%lu failed, %lu on the "
		"reserve IRP)\n", s.in_use, s.writes, s.pages_written, s.write_errors, s.full, s.reads, s.read_errors,
		s.reserve_reads);
	print_paging(MON_CONSOLE);
	return 0;
}
MONITOR_COMMAND(pagefile, "pagefile [write]",
		"the pagefile: its disk region, slots in use, the writer's and the in-page reads' counts; write: run the "
		"modified page writer now",
		cmd_pagefile);
