/*
 * The tour and the monitor's printers (kernel/lab/tour.c, kernel/lab/mm_cmds.c, kernel/lab/ps_cmds.c)
 * print what the hardware structures hold.  Their text is captured in a buffer (the same
 * printers, a struct mon_out over a buffer instead of the console) and compared with what
 * this file finds by itself: CR3 as loaded, each level's entry read through the direct map
 * by its own 4-level walk (not pt_query), the memory type from the leaf's PAT/PCD/PWT bits
 * looked up in IA32_PAT read by RDMSR (not pat.c), and the type each cache type must give
 * (mm/RULES.md decisions 1 and 2) from its own table.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/lab/ps_cmds.h"
#include "kernel/lab/tour.h"
#include "mm/layout.h"
#include "kernel/lab/mm_cmds.h"
#include "mm/uvm.h"

#define TAG 0x74727554u /* 'Turt' */
#define SECTION_MAX 4096

/* ---- the test's own page-table walk ----------------------------------------------------- */

struct walk {
	bool present;
	int level;                     /* of the leaf, or where the walk stopped */
	uint64_t entry[5], entry_pa[5];
	uint64_t pa;                   /* what va translates to */
	bool write, user, nx, global;  /* effective: RW and US ANDed, NX ORed (SDM 4.6) */
	int slot;                      /* PAT << 2 | PCD << 1 | PWT */
	unsigned encoding;             /* IA32_PAT's field for the slot */
	const char *type;
};

/* SDM Vol. 3, 13.12.2: the IA32_PAT encodings, named as the printers name types. */
static const char *encoding_name(unsigned enc)
{
	switch (enc) {
	case 0: return "UC";
	case 1: return "WC";
	case 4: return "WT";
	case 5: return "WP";
	case 6: return "WB";
	case 7: return "UC-";
	default: return "reserved";
	}
}

/* The translation of va in the address space CR3 holds now. */
static struct walk walk_now(uint64_t va)
{
	struct walk w = { .write = true, .user = true };
	uint64_t table = read_cr3() & MMT_PTE_ADDR;
	for (int level = 4; level >= 1; level--) {
		uint64_t pa = table + ((va >> (12 + 9 * (level - 1))) & 511) * 8;
		uint64_t e = *(const volatile uint64_t *)(KVA_DIRECT_MAP_BASE + pa);
		w.level = level;
		w.entry[level] = e;
		w.entry_pa[level] = pa;
		if (!mmt_has(e, MMT_PTE_P))
			return w;
		w.write &= mmt_has(e, MMT_PTE_RW);
		w.user &= mmt_has(e, MMT_PTE_US);
		w.nx |= mmt_has(e, MMT_PTE_NX);
		if (level == 1 || (level < 4 && mmt_has(e, MMT_PTE_PS))) {
			uint64_t size = mmt_level_size(level);
			uint64_t pat = level == 1 ? MMT_PTE_PAT_4K : MMT_PTE_PAT_LARGE;
			w.present = true;
			w.pa = (e & MMT_PTE_ADDR & ~(size - 1)) + (va & (size - 1));
			w.global = mmt_has(e, MMT_PTE_G);
			w.slot = mmt_has(e, pat) << 2 | mmt_has(e, MMT_PTE_PCD) << 1 | mmt_has(e, MMT_PTE_PWT);
			w.encoding = (unsigned)(rdmsr(MMT_MSR_PAT) >> (8 * w.slot)) & 0xFF;
			w.type = encoding_name(w.encoding);
			return w;
		}
		table = e & MMT_PTE_ADDR;
	}
	return w;
}

/* The same in process p's address space: attached, so that CR3 is p's. */
static struct walk walk_in(PEPROCESS p, uint64_t va)
{
	KAPC_STATE apc;
	if (!p)
		return walk_now(va);
	KeStackAttachProcess(p, &apc);
	struct walk w = walk_now(va);
	KeUnstackDetachProcess(&apc);
	return w;
}

/* mm/RULES.md, decision 2, and decision 1 for pool frames: the type a mapping must have. */
static const char *type_for(MEMORY_CACHING_TYPE ct, bool pool)
{
	if (pool)
		return "WB";
	switch ((int)ct) {
	case MmNonCached: return "UC";
	case MmCached: return "WB";
	case MmWriteCombined: return "WC";
	case MmHardwareCoherentCached: return "WB";
	case MmNonCachedUnordered: return "UC-";
	case MmUSWCCached: return "WC";
	case MmMdlabWriteThrough: return "WT";
	case MmMdlabWriteProtected: return "WP";
	default: return "?";
	}
}

/* ---- reading what was printed ---------------------------------------------------------- */

static const char *find(const char *text, const char *needle)
{
	size_t n = strlen(needle);
	for (; *text; text++)
		if (!strncmp(text, needle, n))
			return text;
	return NULL;
}

/* The part of `text` that `pte` printed for va: from its "va 0x...: " line to the next
 * such line or the end, copied into out. */
static bool pte_section(const char *text, uint64_t va, char *out, size_t size)
{
	char head[40];
	ksnprintf(head, sizeof head, "va 0x%016lx: ", va);
	const char *from = find(text, head);
	if (!from)
		return false;
	const char *end = find(from + 1, "\nva 0x");
	size_t n = end ? (size_t)(end - from) : strlen(from);
	if (n >= size)
		n = size - 1;
	memcpy(out, from, n);
	out[n] = 0;
	return true;
}

__attribute__((format(printf, 4, 5))) static void expect_text(struct ktest *t, int line, const char *text,
							     const char *fmt, ...)
{
	char want[160];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(want, sizeof want, fmt, ap);
	va_end(ap);
	if (find(text, want))
		return;
	size_t n = strlen(want);
	if (n && want[n - 1] == '\n')
		want[n - 1] = 0; /* the message is one line */
	KTEST_FAIL(t, "(line %d) not printed: '%s'", line, want);
}
#define EXPECT_TEXT(t, text, ...) expect_text(t, __LINE__, text, __VA_ARGS__)

/* What the pte printer showed for va (somewhere in `text`) is what the walk found. */
static void expect_pte_printed(struct ktest *t, const char *text, uint64_t va, const struct walk *w)
{
	static const char *const names[5] = { "", "PTE", "PDE", "PDPTE", "PML4E" };
	static char section[SECTION_MAX];
	if (!pte_section(text, va, section, sizeof section)) {
		KTEST_FAIL(t, "no walk printed for va 0x%lx", va);
		return;
	}
	/* A brief walk names the upper levels' page table instead of repeating them. */
	bool brief = find(section, "  PML4E, PDPTE, PDE: as in the walk above") != NULL;
	if (brief)
		EXPECT_TEXT(t, section, "(the same page table, at pa 0x%lx)\n", ALIGN_DOWN(w->entry_pa[1], PAGE_SIZE));
	for (int level = brief ? 1 : 4; level >= w->level; level--)
		EXPECT_TEXT(t, section, "  %-5s at pa 0x%010lx = 0x%016lx ", names[level], w->entry_pa[level],
			    w->entry[level]);
	if (!w->present) {
		EXPECT_TEXT(t, section, "not present at level %d", w->level);
		return;
	}
	EXPECT_TEXT(t, section, "  PAT slot %d: IA32_PAT encoding 0x%02x = %s (per the MSR now)\n", w->slot,
		    w->encoding, w->type);
	EXPECT_TEXT(t, section, "  effective: %s %s %s %s %s\n", w->user ? "U" : "S", w->write ? "RW" : "R",
		    w->nx ? "NX" : "X", w->global ? "G" : "-", w->type);
	EXPECT_TEXT(t, section, "0x%016lx -> pa 0x%lx, PFN 0x%lx", va, w->pa, w->pa >> PAGE_SHIFT);
}

/* ---- the whole tour, checked at each mapping while it is in place ----------------------- */

struct tour_check {
	struct ktest *t;
	unsigned kernel_mappings, user_mappings;
	unsigned types_seen;           /* bit per IA32_PAT encoding */
	unsigned brief_walks;          /* repeated steps printed as only what differs */
};

static void check_mapping(void *ctx, struct mon_out *o, const struct tour_mapping *m)
{
	struct tour_check *c = ctx;
	struct ktest *t = c->t;
	const char *step = o->buf + m->text_from;
	for (ULONG i = 0; i < m->pages; i++) {
		uint64_t va = m->va + (uint64_t)i * PAGE_SIZE;
		struct walk w = walk_in(m->process, va);
		EXPECT_TRUE(t, w.present && w.level == 1);
		expect_pte_printed(t, step, va, &w);
		/* The rules themselves, on the walked entries. */
		if (w.present && strcmp(w.type, type_for(m->requested, m->pool_frames)))
			KTEST_FAIL(t, "mapping at 0x%lx is %s; CacheType %d on %s frames gives %s", va, w.type,
				   (int)m->requested, m->pool_frames ? "pool" : "typed", type_for(m->requested, m->pool_frames));
		EXPECT_TRUE(t, w.nx);
		EXPECT_EQ(t, w.write, m->writable);
		EXPECT_EQ(t, w.user, m->process != NULL);
		c->types_seen |= 1u << w.encoding;
	}
	if (m->brief && find(step, "  PML4E, PDPTE, PDE: as in the walk above"))
		c->brief_walks++;
	if (m->process)
		c->user_mappings++;
	else
		c->kernel_mappings++;
}

static char tour_text[256 * 1024];

static void tour_prints_the_tables_it_maps_every_type(struct ktest *t)
{
	struct tour_check c = { .t = t };
	struct tour_hooks hooks = { .mapped = check_mapping, .ctx = &c };
	struct mon_out o = mon_buffer(tour_text, sizeof tour_text);
	EXPECT_TRUE(t, tour_run(&o, &hooks));
	ASSERT_FALSE(t, o.overflow);
	/* Six pool mappings, eight typed ones, NoWrite, NX; two user mappings. */
	EXPECT_EQ(t, c.kernel_mappings, 16);
	EXPECT_EQ(t, c.user_mappings, 2);
	/* The five repeated WB steps of the pool buffer show only what differs (issue: one shown,
	 * then the differences), each still checked against the tables above. */
	EXPECT_GT(t, c.brief_walks, 0);
	/* Every type of mdlab's PAT layout: UC WC WT WP WB UC-. */
	EXPECT_EQ(t, c.types_seen, (1u << 0) | (1u << 1) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7));
	/* The four faults, from the trap frame and p->fault. */
	EXPECT_TEXT(t, tour_text, "error code 0x3 = P: the page is present (a protection violation) | W: a write | "
		    "from ring 0\n");
	EXPECT_TEXT(t, tour_text, "error code 0x11 = P: the page is present (a protection violation) | I/D: an "
		    "instruction fetch | from ring 0\n");
	EXPECT_TEXT(t, tour_text, "error code 0x7 = P: the page is present (a protection violation) | W: a write | "
		    "U: from ring 3\n");
	EXPECT_TEXT(t, tour_text, "error code 0x15 = P: the page is present (a protection violation) | I/D: an "
		    "instruction fetch | U: from ring 3\n");
	EXPECT_TEXT(t, tour_text, "uvm_trim (MmTrimProcess-style): 1 page trimmed, 1 locked page left valid.");
	EXPECT_TEXT(t, tour_text, "MmUnlockPages, then uvm_trim again: 2 pages trimmed, 0 locked: both leave\n");
	EXPECT_TEXT(t, tour_text, "Transition: PFN 0x");
	EXPECT_TEXT(t, tour_text, "tour: 4 of 4 faults caught as the rules say; counters all back; all well\n");
	EXPECT_TRUE(t, find(tour_text, "UNEXPECTED") == NULL && find(tour_text, "FAILED") == NULL);
}

/* ---- pte ------------------------------------------------------------------------------- */

static const MEMORY_CACHING_TYPE every_type[] = {
	MmNonCached, MmCached, MmWriteCombined, MmHardwareCoherentCached, MmNonCachedUnordered, MmUSWCCached,
	MmMdlabWriteThrough, MmMdlabWriteProtected,
};

static char pte_text[8192];

/* Print va's walk with `pte`'s printer into pte_text; compare it with the walk here. */
static struct walk pte_matches_walk(struct ktest *t, PEPROCESS p, uint64_t va)
{
	struct mon_out o = mon_buffer(pte_text, sizeof pte_text);
	mm_print_pte(&o, p ? &p->mm.root : &kernel_root, va);
	struct walk w = walk_in(p, va);
	EXPECT_FALSE(t, o.overflow);
	expect_pte_printed(t, pte_text, va, &w);
	return w;
}

static PMDL typed_pages(struct ktest *t, MEMORY_CACHING_TYPE ct)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, PAGE_SIZE, ct, MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, m != NULL);
	return m;
}

static void free_typed_pages(PMDL m)
{
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

/* A system mapping of every cache type, and the frame's direct-map alias beside it. */
static void pte_prints_system_mappings_of_every_type(struct ktest *t)
{
	for (unsigned i = 0; i < ARRAY_SIZE(every_type); i++) {
		PMDL m = typed_pages(t, every_type[i]);
		uint64_t va = (uint64_t)MmMapLockedPagesSpecifyCache(m, KernelMode, every_type[i], NULL, FALSE,
								     NormalPagePriority);
		if (!va) {
			free_typed_pages(m);
			KTEST_FAIL(t, "mapping of cache type %d failed", (int)every_type[i]);
			continue;
		}
		struct walk w = pte_matches_walk(t, NULL, va);
		struct walk alias = pte_matches_walk(t, NULL, (uint64_t)pfn_to_virt(MmGetMdlPfnArray(m)[0]));
		if (w.present && alias.present) {
			EXPECT_EQ(t, w.pa, alias.pa);
			/* mm/RULES.md, decision 1: one type per frame, the alias included. */
			EXPECT_TRUE(t, !strcmp(w.type, type_for(every_type[i], false)));
			EXPECT_TRUE(t, !strcmp(alias.type, w.type));
		}
		MmUnmapLockedPages((PVOID)va, m);
		pte_matches_walk(t, NULL, va); /* not present now */
		free_typed_pages(m);
	}
}

/* Large leaves (the PAT bit at bit 12) and the kernel's own text (executable, read-only). */
static void pte_prints_large_pages_and_kernel_text(struct ktest *t)
{
	struct walk w = pte_matches_walk(t, NULL, KVA_DIRECT_MAP_BASE + (read_cr3() & MMT_PTE_ADDR));
	EXPECT_TRUE(t, w.present);
	w = pte_matches_walk(t, NULL, (uint64_t)&walk_now);
	EXPECT_TRUE(t, w.present && !w.nx && !w.write);
	w = pte_matches_walk(t, NULL, scratch_unmapped_kva(PAGE_SIZE));
	EXPECT_FALSE(t, w.present);
}

/* `pte VA PID`: a user mapping of every cache type, in the process's tables. */
static void pte_prints_user_mappings_in_a_process(struct ktest *t)
{
	const uint64_t user_va = scratch_uva(PAGE_SIZE, 0);
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	for (unsigned i = 0; i < ARRAY_SIZE(every_type); i++) {
		PMDL m = typed_pages(t, every_type[i]);
		KAPC_STATE apc;
		volatile NTSTATUS st = STATUS_SUCCESS;
		KeStackAttachProcess(p, &apc);
		__try {
			MmMapLockedPagesSpecifyCache(m, UserMode, every_type[i], (PVOID)user_va, FALSE, NormalPagePriority);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
		}
		KeUnstackDetachProcess(&apc);
		if (st == STATUS_SUCCESS) {
			struct walk w = pte_matches_walk(t, p, user_va);
			EXPECT_TRUE(t, w.present && w.user && w.nx);
			EXPECT_TRUE(t, w.present && !strcmp(w.type, type_for(every_type[i], false)));
			KeStackAttachProcess(p, &apc);
			MmUnmapLockedPages((PVOID)user_va, m);
			KeUnstackDetachProcess(&apc);
		} else {
			KTEST_FAIL(t, "user mapping of cache type %d raised 0x%x", (int)every_type[i], (ULONG)st);
		}
		free_typed_pages(m);
	}
	PsDestroyProcess(p);
}

/* ---- ps, lockedpages, arguments ---------------------------------------------------------- */

static char small_text[4096];

static void ps_lists_live_processes_only(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(PROCESS_WOW64);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_TRUE(t, ps_lookup(p->pid) == p);
	struct mon_out o = mon_buffer(small_text, sizeof small_text);
	ps_print_process(&o, p);
	/* PID, name, bits, WOW64, PML4, locked, mappings: none; VADs: image, stack, parameters at
	 * least.  A WOW64-flagged 64-bit program is 64-bit with a 32-bit address space. */
	EXPECT_TEXT(t, small_text, "%5u %-16s %-4s %-5s 0x%010lx %7lu %8u ", p->pid, "agent", "64", "yes", p->mm.root.pml4,
		    0ul, 0u);
	uint32_t pid = p->pid;
	PsDestroyProcess(p);
	EXPECT_TRUE(t, ps_lookup(pid) == NULL);
}

/* ps tells a 32-bit process (an ELF32 image, run in compatibility mode) from a 64-bit one:
 * bits 32, WOW64 yes. */
static void ps_shows_32_bit_processes(struct ktest *t)
{
	static const uint64_t args[] = { 0 };
	PEPROCESS p = PsCreateProcess("compat32", 0, args, 1);
	ASSERT_TRUE(t, p != NULL);
	struct mon_out o = mon_buffer(small_text, sizeof small_text);
	ps_print_process(&o, p);
	EXPECT_TEXT(t, small_text, "%5u %-16s %-4s %-5s 0x%010lx ", p->pid, "compat32", "32", "yes", p->mm.root.pml4);
	o = mon_buffer(small_text, sizeof small_text);
	ps_print_header(&o);
	EXPECT_TEXT(t, small_text, "%5s %-16s %-4s %-5s ", "PID", "name", "bits", "WOW64");
	PsDestroyProcess(p);
}

/* lockedpages: a user buffer locked by a UserMode probe counts on its process and shows as
 * locked frames of that process's user half, with the lock counts the PFN database holds. */
static void lockedpages_shows_frames_and_process_counts(struct ktest *t)
{
	const uint64_t user_va = scratch_uva(2 * PAGE_SIZE, 0);
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID base = (PVOID)user_va;
	SIZE_T size = 2 * PAGE_SIZE;
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	PMDL m = st == STATUS_SUCCESS ? IoAllocateMdl(base, 2 * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	volatile NTSTATUS probe = STATUS_SUCCESS;
	volatile bool locked = false;
	if (m) {
		__try {
			MmProbeAndLockPages(m, UserMode, IoWriteAccess);
			locked = true;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			probe = GetExceptionCode();
		}
	}
	KeUnstackDetachProcess(&apc);
	if (locked) {
		struct mon_out o = mon_buffer(small_text, sizeof small_text);
		mm_print_locked_pages(&o, p);
		EXPECT_FALSE(t, o.overflow);
		EXPECT_TEXT(t, small_text, "%4u %-16s %lu page(s) locked\n", p->pid, p->name, 2ul);
		for (int i = 0; i < 2; i++) {
			struct walk w = walk_in(p, user_va + i * PAGE_SIZE);
			EXPECT_TEXT(t, small_text, "va 0x%016lx -> PFN 0x%lx, lock count 1\n", user_va + i * PAGE_SIZE,
				    w.pa >> PAGE_SHIFT);
		}
		EXPECT_TEXT(t, small_text, "    2 frame(s)\n");
		/* The whole machine's view lists the same frames. */
		static char all_text[16384];
		o = mon_buffer(all_text, sizeof all_text);
		mm_print_locked_pages(&o, NULL);
		EXPECT_TEXT(t, all_text, "PFN 0x%lx  lock count 1,", MmGetMdlPfnArray(m)[0]);
		EXPECT_TRUE(t, find(all_text, "DISAGREE") == NULL);
		MmUnlockPages(m);
	} else {
		KTEST_FAIL(t, "allocate 0x%x, probe 0x%x", (ULONG)st, (ULONG)probe);
	}
	if (m)
		IoFreeMdl(m);
	PsDestroyProcess(p);
}

/* Bad arguments give a usage line (-1) or a message (an unknown PID: 1), never a crash. */
static void monitor_bad_arguments_get_usage(struct ktest *t)
{
	static const struct {
		const char *line;
		int result;
	} cases[] = {
		{ "pte", -1 }, { "pte zz", -1 }, { "pte 1000 4 9", -1 }, { "pte 0x800000000000", -1 },
		{ "pte ffffc000`00000000 4000000000", 1 }, { "pte 1000 x", -1 },
		{ "ptdump 2000 1000", -1 }, { "ptdump 0 0 77777", 1 }, { "ptdump q", -1 },
		{ "ptdump 0 1000 4 5", -1 }, { "pfn", -1 }, { "pfn g", -1 }, { "pfn ffffffffffffffff", -1 },
		{ "lockedpages 77777", 1 }, { "lockedpages x", -1 }, { "lockedpages 1 2", -1 },
		{ "mdl", -1 }, { "mdl zz", -1 }, { "mdl 0", 0 }, { "mdl ffffe000`00000000", 0 },
		{ "ps x", -1 }, { "pat 1", -1 }, { "mem 1", -1 }, { "pool 1", -1 }, { "sysptes 1", -1 },
		{ "audit 1", -1 }, { "tour 1", -1 }, { "quit now", -1 }, { "help me", -1 },
		{ "tests a b", -1 }, { "a b c d e f g h i j", -2 }, { "pte 1 2 3 4 5 6 7 8 9", -1 },
		/* An empty number is no number (issue 12, finding 10): never address or code 0. */
		{ "pte 0x", -1 }, { "pte `", -1 }, { "pte 0x`", -1 }, { "pte -", -1 }, { "pte 1000 0x", -1 },
		{ "ptdump 0x", -1 }, { "pfn 0x", -1 }, { "pfn 1`", -1 }, { "mdl 0x", -1 },
		{ "lockedpages 0x", -1 }, { "pte 10000000000000000", -1 },
		{ "bugcheck 0x", -1 }, { "bugcheck 0x`", -1 }, { "bugcheck -", -1 }, { "bugcheck 12z", -1 },
		{ "bugcheck 0x100000000", -1 }, { "bugcheck 99999999999999999999", -1 },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		char line[64];
		strlcpy(line, cases[i].line, sizeof line);
		int r = monitor_execute(line);
		if (r != cases[i].result)
			KTEST_FAIL(t, "'%s' returned %d, expected %d", cases[i].line, r, cases[i].result);
	}
}

/* The message a refused number gets, as the monitor prints it before the usage line. */
static void monitor_says_why_a_number_is_refused(struct ktest *t)
{
	static const struct {
		const char *arg, *said;
	} cases[] = {
		{ "0x", "'0x' is refused: no digits\n" },
		{ "", "'' is refused: no digits\n" },
		{ "`", "'`' is refused: not a number\n" },
		{ "-", "'-' is refused: not a number\n" },
		{ "12z", "'12z' is refused: junk after the digits\n" },
		{ "10000000000000000", "'10000000000000000' is refused: more than 64 bits\n" },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[96];
		struct mon_out o = mon_buffer(buf, sizeof buf);
		uint64_t v = 7;
		EXPECT_FALSE(t, monitor_parse_number_to(&o, cases[i].arg, 16, &v));
		EXPECT_EQ(t, v, 7);
		if (strcmp(buf, cases[i].said))
			KTEST_FAIL(t, "'%s': said '%s'", cases[i].arg, buf);
	}
	char buf[16];
	struct mon_out o = mon_buffer(buf, sizeof buf);
	uint64_t v = 0;
	EXPECT_TRUE(t, monitor_parse_number_to(&o, "ffff`0000", 16, &v));
	EXPECT_EQ(t, v, 0xFFFF0000);
	EXPECT_EQ(t, buf[0], 0);
}

static struct ktest_case tour_cases[] = {
	KTEST_CASE(tour_prints_the_tables_it_maps_every_type),
	KTEST_CASE(pte_prints_system_mappings_of_every_type),
	KTEST_CASE(pte_prints_large_pages_and_kernel_text),
	KTEST_CASE(pte_prints_user_mappings_in_a_process),
	KTEST_CASE(ps_lists_live_processes_only),
	KTEST_CASE(ps_shows_32_bit_processes),
	KTEST_CASE(lockedpages_shows_frames_and_process_counts),
	KTEST_CASE(monitor_bad_arguments_get_usage),
	KTEST_CASE(monitor_says_why_a_number_is_refused),
	{ 0 }
};
KTEST_SUITE(tour, tour_cases);
