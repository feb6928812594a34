/*
 * Monitor commands for the memory manager: ptdump, pte, pfn, pat, mem, audit.  Everything
 * about a translation is read from the real page tables (pt_query, pt_for_each_leaf) and
 * the PAT from the MSR, never from bookkeeping.  Numbers are hex, as in WinDbg: with or
 * without 0x, with ` between digit groups (0xffffffff`80000000).
 */
#include "kernel/lib.h"
#include "kernel/monitor.h"
#include "kernel/printf.h"
#include "mm/audit.h"
#include "mm/layout.h"
#include "mm/mm.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/ptdump.h"
#include "mm/tlb.h"

/* A hex number, 0x optional.  False on junk (the caller prints its usage). */
static bool parse_hex(const char *s, uint64_t *out)
{
	char buf[48];
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		return parse_u64(s, out);
	if (ksnprintf(buf, sizeof buf, "0x%s", s) >= (int)sizeof buf)
		return false;
	return parse_u64(buf, out);
}

static bool canonical(uint64_t va)
{
	uint64_t top = va >> 47; /* bits 63..47 must all equal bit 47 */
	return top == 0 || top == 0x1FFFF;
}

/* ---------------------------------------------------------------- ptdump */

static int cmd_ptdump(int argc, char **argv)
{
	uint64_t lo = 0, hi = 0;
	if (argc > 3 || (argc >= 2 && !parse_hex(argv[1], &lo)) || (argc == 3 && !parse_hex(argv[2], &hi)))
		return -1;
	if (hi && hi <= lo)
		return -1;
	ptdump(&kernel_root, lo, hi);
	return 0;
}
MONITOR_COMMAND(ptdump, "ptdump [START [END]]",
		"kernel page tables as merged ranges, [START, END) in hex (END 0: to the top)", cmd_ptdump);

/* ---------------------------------------------------------------- pte */

static const char *const entry_names[5] = { "", "PTE", "PDE", "PDPTE", "PML4E" };
static const char *const table_names[5] = { "", "PT", "PD", "PDPT", "PML4" };

static unsigned va_index(uint64_t va, int level) { return (va >> (12 + 9 * (level - 1))) & 511; }

static void print_leaf_details(uint64_t va, const struct pt_query *q)
{
	uint64_t frame = q->pa - (va - q->leaf_va);
	unsigned enc = (pat_read_msr() >> (8 * q->pat_slot)) & 0xFF;
	enum memtype slot_type = pat_encoding_type(enc);
	const struct pfn_entry *e = pfn_entry(q->pa >> PAGE_SHIFT);
	kprintf("  leaf: %s page 0x%016lx-0x%016lx -> frame 0x%lx\n",
		q->level == 1 ? "4K" : q->level == 2 ? "2M" : "1G", q->leaf_va, q->leaf_va + q->leaf_size - 1,
		frame);
	kprintf("  PAT slot %d: IA32_PAT encoding 0x%02x = %s (per the MSR now)\n", q->pat_slot, enc,
		slot_type == MT_NONE ? "reserved" : memtype_name(slot_type));
	kprintf("  effective: %s %s %s %s %s\n", q->eff.user ? "U" : "S", q->eff.write ? "RW" : "R",
		q->eff.exec ? "X" : "NX", q->eff.global ? "G" : "-", memtype_name(q->eff.type));
	kprintf("  0x%016lx -> pa 0x%lx, PFN 0x%lx (%s)\n", va, q->pa, q->pa >> PAGE_SHIFT,
		e ? pfn_state_name((enum pfn_state)e->state) : "beyond the PFN database: MMIO");
}

static int cmd_pte(int argc, char **argv)
{
	uint64_t va;
	if (argc != 2 || !parse_hex(argv[1], &va))
		return -1;
	if (!canonical(va)) {
		kprintf("0x%lx is not a canonical address\n", va);
		return -1;
	}
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	kprintf("va 0x%016lx: PML4 %u, PDPT %u, PD %u, PT %u, offset 0x%lx  (%s)\n", va, va_index(va, 4),
		va_index(va, 3), va_index(va, 2), va_index(va, 1), va & (PAGE_SIZE - 1),
		ptdump_region_name(va));
	for (int level = 4; level >= q.level; level--) {
		uint64_t e = q.entry[level];
		char bits[80];
		kprintf("  %-5s at pa 0x%010lx = 0x%016lx", entry_names[level], q.entry_pa[level], e);
		if (level == q.level && !q.present) {
			kprintf("  not present\n");
			break;
		}
		pt_describe_entry(e, level, bits, sizeof bits);
		if (level > q.level)
			kprintf(" -> %s 0x%lx", table_names[level - 1], ALIGN_DOWN(q.entry_pa[level - 1], PAGE_SIZE));
		else
			kprintf(" -> frame 0x%lx", q.pa - (va - q.leaf_va));
		kprintf("  [%s]\n", bits);
	}
	if (!q.present) {
		kprintf("  not present at level %d (%s in the %s)\n", q.level, entry_names[q.level],
			table_names[q.level]);
		return 0;
	}
	print_leaf_details(va, &q);
	return 0;
}
MONITOR_COMMAND(pte, "pte VA", "every level's entry for VA (hex), its bits, PAT slot, translation",
		cmd_pte);

/* ---------------------------------------------------------------- pfn */

static int cmd_pfn(int argc, char **argv)
{
	uint64_t pfn;
	if (argc != 2 || !parse_hex(argv[1], &pfn) || pfn > (~0ull >> PAGE_SHIFT))
		return -1;
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e) {
		kprintf("PFN 0x%lx (pa 0x%lx): beyond the PFN database (limit 0x%lx): not RAM\n", pfn,
			pfn << PAGE_SHIFT, pfn_limit());
		return 0;
	}
	kprintf("PFN 0x%lx (pa 0x%lx): state %s, %s\n", pfn, pfn << PAGE_SHIFT,
		pfn_state_name((enum pfn_state)e->state), pfn_is_ram(pfn) ? "RAM" : "no RAM here");
	kprintf("  memtype %s, owner %s 0x%lx, lock count %u", memtype_name((enum memtype)e->memtype),
		pfn_owner_name((enum pfn_owner)e->owner_kind), e->owner, e->lock_count);
	if (e->state == PFN_FREE || e->state == PFN_ZEROED)
		kprintf(", free-list links next 0x%x prev 0x%x", e->next, e->prev);
	kprintf("\n");
	uint64_t dva = (uint64_t)pfn_to_virt(pfn);
	struct pt_query q;
	pt_query(&kernel_root, dva, &q);
	if (q.present)
		kprintf("  direct map 0x%016lx: mapped %s, %s %s, %s page (tables read now)\n", dva,
			memtype_name(q.eff.type), q.eff.write ? "RW" : "R", q.eff.exec ? "X" : "NX",
			q.level == 1 ? "4K" : q.level == 2 ? "2M" : "1G");
	else
		kprintf("  direct map 0x%016lx: not mapped (stops at level %d)\n", dva, q.level);
	return 0;
}
MONITOR_COMMAND(pfn, "pfn PFN", "the PFN database entry of frame PFN (hex) and its direct-map alias",
		cmd_pfn);

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

static int cmd_pat(int argc, char **argv)
{
	if (argc != 1)
		return -1;
	uint64_t msr = pat_read_msr();
	kprintf("IA32_PAT = 0x%016lx (%s mdlab's layout 0x%016lx)\n", msr,
		msr == pat_mdlab_value() ? "matches" : "DIFFERS FROM", pat_mdlab_value());
	kprintf("  slot  enc   type  PAT PCD PWT  canonical for\n");
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
		kprintf("  %4d  0x%02x  %-4s  %3d %3d %3d  %s\n", slot, enc, t == MT_NONE ? "rsvd" : memtype_name(t),
			b.pat, b.pcd, b.pwt, users);
	}
	return 0;
}
MONITOR_COMMAND(pat, "pat", "IA32_PAT slot by slot: encoding, type, selecting bits, canonical users",
		cmd_pat);

/* ---------------------------------------------------------------- mem */

static void print_pages(const char *what, uint64_t pages)
{
	/* MiB with one decimal: 256 pages a MiB. */
	kprintf("  %-12s %9lu pages %6lu.%lu MiB\n", what, pages, pages / 256, (pages % 256) * 10 / 256);
}

static int cmd_mem(int argc, char **argv)
{
	if (argc != 1)
		return -1;
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
MONITOR_COMMAND(mem, "mem", "page counters, TLB flush counts and the paging-related CPU state", cmd_mem);

/* ---------------------------------------------------------------- audit */

static int cmd_audit(int argc, char **argv)
{
	if (argc != 1)
		return -1;
	uint64_t wx = mm_audit_wx(&kernel_root, true);
	uint64_t types = mm_audit_memtypes(&kernel_root, true);
	uint64_t records = mm_audit_pfn_memtypes(&kernel_root, true);
	uint64_t aliases = mm_audit_wx_aliases(&kernel_root, true);
	kprintf("audit: %lu W^X finding(s), %lu frame(s) with two memory types, %lu PFN record(s) "
		"disagreeing with the tables\n", wx, types, records);
	kprintf("audit: (not enforced) %lu frame(s) writable through one mapping and executable "
		"through another\n", aliases);
	return 0;
}
MONITOR_COMMAND(audit, "audit", "run the page-table audits (W^X, memory types, PFN records, aliases)",
		cmd_audit);
