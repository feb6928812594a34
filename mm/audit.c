/*
 * Page-table audits (see audit.h for the rules).  Every audit is one pt_for_each_leaf walk
 * over the whole address space; the walk hands each leaf its effective rights and type.
 */
#include "mm/audit.h"
#include "kernel/bugcheck.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/mmproc.h"
#include "mm/pat.h"

/* Findings printed in full per audit; the rest are only counted. */
#define PRINT_MAX 32
/* The kernel half starts at the first canonical upper-half address, where the direct map
 * begins (mm/layout.h). */
#define KERNEL_HALF_BASE KVA_DIRECT_MAP_BASE

/* "4K", "2M" or "1G" for a leaf level. */
static const char *level_name(int level)
{
	static const char *const names[] = { "?", "4K", "2M", "1G" };
	return level >= 1 && level <= 3 ? names[level] : "?";
}

/* One line per offending leaf: its range, level, frame, raw entry and decoded bits. */
static void print_leaf(const char *what, const struct pt_leaf *l)
{
	char bits[80];
	pt_describe_entry(l->entry, l->level, bits, sizeof bits);
	kprintf("audit: %s: va 0x%016lx-0x%016lx level %d (%s) pa 0x%lx entry 0x%016lx [%s]\n", what,
		l->va, l->va + l->size - 1, l->level, level_name(l->level), l->pa, l->entry, bits);
}

/* After a list cut at PRINT_MAX items: say how many were left out. */
static void print_rest(uint64_t printed, const char *what)
{
	if (printed > PRINT_MAX)
		kprintf("audit: ... %lu more %s not shown\n", printed - PRINT_MAX, what);
}

/* Whether the leaf's own U/S bit is set (in the kernel half the upper levels never grant
 * U/S, which would hide it from the effective rights). */
static bool leaf_own_user(const struct pt_leaf *l) { return l->own.user; }

/* ---------------------------------------------------------------- W^X and user pages */

struct wx_ctx {
	bool print;
	uint64_t findings;
	uint64_t *first_va;
};

/* Count one finding on leaf l (the first one's va is handed back) and print it. */
static void wx_report(struct wx_ctx *c, const char *what, const struct pt_leaf *l)
{
	if (!c->findings && c->first_va)
		*c->first_va = l->va;
	c->findings++;
	if (c->print && c->findings <= PRINT_MAX)
		print_leaf(what, l);
}

/* pt_for_each_leaf callback: the two rules, on effective rights (and the leaf's own U/S). */
static void wx_leaf(const struct pt_leaf *l, void *arg)
{
	struct wx_ctx *c = arg;
	if (l->eff.write && l->eff.exec)
		wx_report(c, "writable and executable", l);
	if (l->va >= KERNEL_HALF_BASE && (l->eff.user || leaf_own_user(l)))
		wx_report(c, l->eff.user ? "user-accessible page in the kernel half"
					 : "U/S set on a kernel-half leaf",
			  l);
}

/* One finding per leaf and rule broken (a leaf can break both). */
uint64_t mm_audit_wx_first(const struct pt_root *r, bool print, uint64_t *first_va)
{
	struct wx_ctx c = { .print = print, .first_va = first_va };
	pt_for_each_leaf(r, 0, 0, wx_leaf, &c);
	if (print)
		print_rest(c.findings, "W^X findings");
	return c.findings;
}

uint64_t mm_audit_wx(const struct pt_root *r, bool print) { return mm_audit_wx_first(r, print, NULL); }

/* ---------------------------------------------------------------- memory types per frame */

/*
 * Scratch: one byte per frame below pfn_limit().  Its low four bits hold the code of the
 * first type the frame was seen mapped with (0: not mapped so far), or CODE_TWICE once the
 * frame has been reported; SEEN_WRITABLE and SEEN_EXECUTABLE gather the rights of every
 * mapping of it.  Frames at or above pfn_limit() are MMIO (no PFN entry): they are kept as
 * ranges in a small table, merged when contiguous with the same type; overlaps there are
 * counted per pair of mappings, not per frame, and a full table is one finding (the rest
 * went unchecked).
 */
#define CODE_MASK 0x0F
#define CODE_TWICE 0x0F
#define CODE_BAD_TYPE 0x0E /* a slot holding a reserved encoding: a type of its own */
#define SEEN_USER_WRITABLE 0x10   /* ring 3 can write it */
#define SEEN_USER_EXECUTABLE 0x20 /* ring 3 can execute it */
#define SEEN_WRITABLE 0x40        /* some mapping, ring 0 or ring 3, can write it */
#define SEEN_EXECUTABLE 0x80      /* ring 0 can execute it (a supervisor leaf: SMEP keeps ring 0
				   * from user pages) */
#define MMIO_RANGES 128
#define SAMPLES 4          /* conflicting frames whose every mapping is listed */

struct mmio_range {
	pfn_t first;
	uint64_t count;
	uint8_t code;
};

struct frame_scan {
	uint8_t *seen;
	pfn_t scratch, scratch_pages, limit;
	bool print;
	uint64_t conflicts, lines;
	pfn_t *first_conflict;
	bool have_first;
	pfn_t samples[SAMPLES];
	unsigned nsamples;
	unsigned nmmio;
	bool mmio_full;
};

static struct mmio_range mmio[MMIO_RANGES];

/* A type's code in the scratch byte (1..MT_COUNT; 0 stays "not mapped"), and back. */
static uint8_t type_code(enum memtype t) { return t < MT_COUNT ? (uint8_t)(t + 1) : CODE_BAD_TYPE; }

static const char *code_name(uint8_t code)
{
	return code && code < CODE_BAD_TYPE ? memtype_name((enum memtype)(code - 1)) : "reserved";
}

/* Note `n` newly conflicting frames from `first` to `last`, mapped by leaf l; `earlier` is
 * the type code of a mapping seen before. */
static void conflict(struct frame_scan *s, const struct pt_leaf *l, pfn_t first, pfn_t last, uint64_t n,
		     uint8_t earlier)
{
	if (!s->have_first && s->first_conflict)
		*s->first_conflict = first;
	s->have_first = true;
	if (s->print && s->lines++ < PRINT_MAX)
		kprintf("audit: two memory types: frames 0x%lx-0x%lx (%lu) mapped %s at va 0x%016lx "
			"(level %d), already mapped %s elsewhere\n", first, last, n, memtype_name(l->eff.type),
			l->va + ((first << PAGE_SHIFT) - l->pa), l->level, code_name(earlier));
	if (s->nsamples < SAMPLES)
		s->samples[s->nsamples++] = first;
	s->conflicts += n;
}

/* The part of leaf l over frames [f0, f1), all below the PFN limit. */
static void scan_ram(struct frame_scan *s, const struct pt_leaf *l, pfn_t f0, pfn_t f1, uint8_t code)
{
	uint8_t rights = (l->eff.write ? SEEN_WRITABLE : 0) | (l->eff.exec && !l->eff.user ? SEEN_EXECUTABLE : 0) |
			 (l->eff.user && l->eff.write ? SEEN_USER_WRITABLE : 0) |
			 (l->eff.user && l->eff.exec ? SEEN_USER_EXECUTABLE : 0);
	pfn_t first = PFN_INVALID, last = 0;
	uint64_t n = 0;
	uint8_t earlier = 0;
	for (pfn_t f = f0; f < f1; f++) {
		uint8_t was = s->seen[f], was_code = was & CODE_MASK, now = was_code ? was_code : code;
		if (was_code && was_code != code && was_code != CODE_TWICE) {
			if (!n) {
				first = f;
				earlier = was_code;
			}
			last = f;
			n++;
			now = CODE_TWICE;
		}
		s->seen[f] = now | (was & ~CODE_MASK) | rights;
	}
	if (n)
		conflict(s, l, first, last, n, earlier);
}

/* The part of leaf l over frames [f0, f0 + count), at or above the PFN limit. */
static void scan_mmio(struct frame_scan *s, const struct pt_leaf *l, pfn_t f0, uint64_t count, uint8_t code)
{
	for (unsigned i = 0; i < s->nmmio; i++) {
		pfn_t lo = MAX(mmio[i].first, f0), hi = MIN(mmio[i].first + mmio[i].count, f0 + count);
		if (lo < hi && mmio[i].code != code)
			conflict(s, l, lo, hi - 1, hi - lo, mmio[i].code);
	}
	struct mmio_range *last = s->nmmio ? &mmio[s->nmmio - 1] : NULL;
	if (last && last->code == code && last->first + last->count == f0) {
		last->count += count;
	} else if (s->nmmio < MMIO_RANGES) {
		mmio[s->nmmio++] = (struct mmio_range){ .first = f0, .count = count, .code = code };
	} else if (!s->mmio_full) {
		s->mmio_full = true;
		s->conflicts++;
		if (s->print)
			kprintf("audit: more than %d separate MMIO ranges mapped; frames from 0x%lx on not "
				"checked\n", MMIO_RANGES, f0);
	}
}

/* pt_for_each_leaf callback: split the leaf's frames at the PFN limit. */
static void scan_leaf(const struct pt_leaf *l, void *arg)
{
	struct frame_scan *s = arg;
	pfn_t f0 = l->pa >> PAGE_SHIFT, fend = f0 + (l->size >> PAGE_SHIFT);
	uint8_t code = type_code(l->eff.type);
	if (f0 < s->limit)
		scan_ram(s, l, f0, MIN(fend, s->limit), code);
	if (fend > s->limit) {
		pfn_t m0 = MAX(f0, s->limit);
		scan_mmio(s, l, m0, fend - m0, code);
	}
}

/* Second walk, for the printout only: every mapping of the sampled conflicting frames. */
static void list_sample_leaf(const struct pt_leaf *l, void *arg)
{
	const struct frame_scan *s = arg;
	for (unsigned i = 0; i < s->nsamples; i++) {
		uint64_t pa = s->samples[i] << PAGE_SHIFT;
		if (pa >= l->pa && pa - l->pa < l->size)
			kprintf("audit:   frame 0x%lx is mapped %s at va 0x%016lx (level %d, PAT slot %d)\n",
				s->samples[i], memtype_name(l->eff.type), l->va + (pa - l->pa), l->level,
				l->pat_slot);
	}
}

/* The frame audits' scratch, a byte per frame: taken at the first audit (the boot audit) and
 * kept, so an audit still runs when a process has used every free frame, which is when it
 * is wanted most (the fuzzer's batches do that). */
/* mm_for_each_space callback: the user half of one address space other than the audited
 * root's, under its lock. */
struct other_spaces {
	uint64_t skip_pml4;
	struct frame_scan *scan;
};

static bool scan_other_space(struct mm_process *mm, void *arg)
{
	struct other_spaces *o = arg;
	if (mm->root.pml4 != o->skip_pml4)
		pt_for_each_leaf(&mm->root, 0, USER_VA_END, scan_leaf, o->scan);
	return true;
}

static pfn_t scan_scratch = PFN_INVALID, scan_scratch_pages;

/* Walk every leaf of r (and, with all_spaces, the user half of every live address space)
 * into the zeroed scratch, printing two-type conflicts when `print`.  False when the scratch
 * could not be had (only before the first audit). */
static bool scan_frames(struct frame_scan *s, const struct pt_root *r, bool print, pfn_t *first_conflict,
			bool all_spaces)
{
	memset(s, 0, sizeof *s);
	s->limit = pfn_limit();
	s->print = print;
	s->first_conflict = first_conflict;
	s->scratch_pages = ALIGN_UP(s->limit, PAGE_SIZE) / PAGE_SIZE;
	if (scan_scratch == PFN_INVALID) {
		scan_scratch = pfn_alloc_run(0, ~0ull, s->scratch_pages, 1, PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
		if (scan_scratch == PFN_INVALID) {
			kprintf("audit: no %lu contiguous free pages for the frame audit's scratch: audit not run\n",
				s->scratch_pages);
			return false;
		}
		scan_scratch_pages = s->scratch_pages;
	}
	s->scratch = scan_scratch;
	s->seen = pfn_to_virt(s->scratch);
	memset(s->seen, 0, scan_scratch_pages * PAGE_SIZE);
	pt_for_each_leaf(r, 0, 0, scan_leaf, s);
	/* The user half of every other live address space (the kernel half is shared), each
	 * under its lock. */
	if (all_spaces) {
		struct other_spaces o = { .skip_pml4 = r->pml4, .scan = s };
		mm_for_each_space(scan_other_space, &o);
	}
	if (print) {
		print_rest(s->lines, "runs of frames with two memory types");
		if (s->nsamples)
			pt_for_each_leaf(r, 0, 0, list_sample_leaf, s);
	}
	return true;
}

/* The end of a scan (scan_frames succeeded): the scratch stays for the next. */
static void scan_release(struct frame_scan *s) { (void)s; }

uint64_t mm_audit_memtypes_first(const struct pt_root *r, bool print, pfn_t *first_pfn)
{
	struct frame_scan s;
	if (!scan_frames(&s, r, print, first_pfn, false))
		return 1;
	scan_release(&s);
	return s.conflicts;
}

uint64_t mm_audit_memtypes(const struct pt_root *r, bool print)
{
	return mm_audit_memtypes_first(r, print, NULL);
}

/* ---------------------------------------------------------------- per-frame findings in runs */

/* Consecutive frames with the same key are printed as one line by `emit`. */
struct run_printer {
	bool print, open;
	pfn_t first, last;
	uint32_t key;
	uint64_t runs;
	void (*emit)(pfn_t first, pfn_t last, uint32_t key);
};

/* Print the open run (while under PRINT_MAX runs) and close it. */
static void runs_flush(struct run_printer *p)
{
	if (!p->open)
		return;
	if (p->print && p->runs < PRINT_MAX)
		p->emit(p->first, p->last, p->key);
	p->runs++;
	p->open = false;
}

/* Frame f is a finding with `key`: extend the open run or start a new one. */
static void runs_add(struct run_printer *p, pfn_t f, uint32_t key)
{
	if (p->open && f == p->last + 1 && key == p->key) {
		p->last = f;
		return;
	}
	runs_flush(p);
	*p = (struct run_printer){ .print = p->print, .open = true, .first = f, .last = f, .key = key,
				   .runs = p->runs, .emit = p->emit };
}

/* The last run, then how many were left out. */
static void runs_end(struct run_printer *p, const char *what)
{
	runs_flush(p);
	if (p->print)
		print_rest(p->runs, what);
}

/* ---------------------------------------------------------------- PFN records */

/*
 * The type the tables should show for frame f according to its PFN entry, or MT_NONE when
 * the record makes no claim.  An untyped RAM frame (MT_NONE) is mapped WB, as
 * memtype_set_frame maps its alias; a frame that is not RAM has a record only once
 * someone gave it a type.
 */
static enum memtype recorded_type(pfn_t f)
{
	const struct pfn_entry *e = pfn_entry(f);
	if (e->memtype != MT_NONE)
		return (enum memtype)e->memtype;
	return e->state == PFN_NOT_RAM ? MT_NONE : MT_WB;
}

/* key: table type code << 8 | recorded type. */
static void emit_record_run(pfn_t first, pfn_t last, uint32_t key)
{
	kprintf("audit: PFN record disagrees: frames 0x%lx-0x%lx (%lu) are mapped %s, recorded %s\n",
		first, last, last - first + 1, code_name(key >> 8), memtype_name((enum memtype)(key & 0xFF)));
}

uint64_t mm_audit_pfn_memtypes_first(const struct pt_root *r, bool print, pfn_t *first_pfn)
{
	struct frame_scan s;
	if (!scan_frames(&s, r, false, NULL, false))
		return 1;
	struct run_printer p = { .print = print, .emit = emit_record_run };
	uint64_t findings = 0;
	for (pfn_t f = 0; f < s.limit; f++) {
		uint8_t code = s.seen[f] & CODE_MASK;
		if (!code || code == CODE_TWICE)
			continue; /* not mapped, or already a two-types finding */
		enum memtype rec = recorded_type(f);
		if (rec == MT_NONE || type_code(rec) == code)
			continue;
		if (!findings && first_pfn)
			*first_pfn = f;
		findings++;
		runs_add(&p, f, (uint32_t)code << 8 | rec);
	}
	runs_end(&p, "runs of disagreeing PFN records");
	scan_release(&s);
	return findings;
}

uint64_t mm_audit_pfn_memtypes(const struct pt_root *r, bool print)
{
	return mm_audit_pfn_memtypes_first(r, print, NULL);
}

/* ---------------------------------------------------------------- W^X across mappings */

/* key 1: executable in ring 0, writable somewhere; key 2: executable and writable in ring 3. */
static void emit_alias_run(pfn_t first, pfn_t last, uint32_t key)
{
	kprintf("audit: W^X across mappings: frames 0x%lx-0x%lx (%lu) are %s\n", first, last, last - first + 1,
		key == 1 ? "executable in ring 0 and writable through a mapping"
			 : "executable in ring 3 and writable through a ring-3 mapping");
}

/*
 * The rule (mm/RULES.md decision 3): no frame is executable in ring 0 while any mapping,
 * ring 0 or ring 3, can write it; no frame is executable in ring 3 while a ring-3 mapping
 * can write it.  A user page the kernel can also write through the direct map is not a
 * finding: ring 3 cannot use that mapping, and the direct map itself is never executable.
 */
uint64_t mm_audit_wx_aliases(const struct pt_root *r, bool print)
{
	struct frame_scan s;
	if (!scan_frames(&s, r, false, NULL, true))
		return 1;
	struct run_printer p = { .print = print, .emit = emit_alias_run };
	uint64_t findings = 0;
	for (pfn_t f = 0; f < s.limit; f++) {
		uint8_t seen = s.seen[f];
		uint32_t key = 0;
		if ((seen & SEEN_EXECUTABLE) && (seen & SEEN_WRITABLE))
			key = 1;
		else if ((seen & SEEN_USER_EXECUTABLE) && (seen & SEEN_USER_WRITABLE))
			key = 2;
		if (!key)
			continue;
		findings++;
		runs_add(&p, f, key);
	}
	runs_end(&p, "runs of W^X findings across mappings");
	scan_release(&s);
	return findings;
}

/* ---------------------------------------------------------------- end of boot */

void mm_audit_boot(void)
{
	uint64_t wx = mm_audit_wx(&kernel_root, true);
	uint64_t types = mm_audit_memtypes(&kernel_root, true);
	uint64_t records = mm_audit_pfn_memtypes(&kernel_root, true);
	uint64_t aliases = mm_audit_wx_aliases(&kernel_root, true);
	if (wx || types || records || aliases)
		PANIC("mm_audit_boot: %lu W^X finding(s), %lu frame(s) with two memory types, %lu PFN "
		      "record(s) disagreeing with the tables, %lu W^X alias finding(s)", wx, types, records,
		      aliases);
	kprintf("mm: audit: no W+X leaf, no frame executable in ring 0 and writable, none executable and writable in ring 3, no "
		"user page in the kernel half, no frame with two memory types, PFN memory types match "
		"the tables\n");
}
