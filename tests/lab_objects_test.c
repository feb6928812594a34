/*
 * The monitor's live objects (kernel/lab/objects.c), driven by command lines through
 * monitor_execute exactly as a user types them.  What each command did is checked in the
 * real page tables with this file's own decoding of the raw entries (tests/lib/pte.h), in
 * the memory the mappings reach, and in the PFN database; the text is read only to check
 * that an order error names the bug check the routine would raise.  Every case releases
 * what it made (the framework compares every resource counter).
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/lab/monitor.h"
#include "kernel/lab/objects.h"
#include "kernel/lab/tour.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/pfn.h"
#include "mm/syspte.h"

static char said[8192];
static struct mon_out said_out;

/* Run one command line with its text captured in `said`; returns what the monitor does. */
static int run(const char *line)
{
	char buf[160];
	strlcpy(buf, line, sizeof buf);
	said_out = mon_buffer(said, sizeof said);
	lab_objects_set_output(&said_out);
	int r = monitor_execute(buf);
	lab_objects_set_output(MON_CONSOLE);
	return r;
}

#define RUN_OK(t, line)                                                                \
	do {                                                                           \
		int r_ = run(line);                                                    \
		if (r_ != 0)                                                           \
			KTEST_FAIL(t, "'%s' returned %d: %s", (line), r_, said);       \
	} while (0)

static bool says(const char *needle)
{
	size_t n = strlen(needle);
	for (const char *p = said; *p; p++)
		if (!strncmp(p, needle, n))
			return true;
	return false;
}

static uint64_t va_of(const char *name)
{
	struct lab_object_info info;
	return lab_object_find(name, &info) ? info.va : 0;
}

static PMDL mdl_of(const char *name)
{
	struct lab_object_info info;
	return lab_object_find(name, &info) ? info.mdl : NULL;
}

/* The leaf mapping va in process p's tables, decoded here: raw entries from pt_query. */
static struct mmt_rights rights_in(PEPROCESS p, uint64_t va)
{
	struct pt_query q;
	struct mmt_rights r = { .write = true, .user = true };
	pt_query(&p->mm.root, va, &q);
	for (int level = 4; level >= q.level && level >= 1; level--) {
		uint64_t e = q.entry[level];
		r.level = level;
		if (!mmt_has(e, MMT_PTE_P))
			return r;
		r.write &= mmt_has(e, MMT_PTE_RW);
		r.user &= mmt_has(e, MMT_PTE_US);
		r.nx |= mmt_has(e, MMT_PTE_NX);
		if (level == 1 || mmt_has(e, MMT_PTE_PS)) {
			r.present = true;
			r.leaf = e;
			r.pa = mmt_leaf_pa(e, level) + (va & (mmt_level_size(level) - 1));
			return r;
		}
	}
	return r;
}

/* A pool buffer, an MDL over it, locked and mapped NoWrite into system space: the PTEs
 * appear with the rights asked, then go on unmap; a pages MDL of WC frames maps WC. */
static void map_and_unmap_change_the_real_ptes(struct ktest *t)
{
	RUN_OK(t, "alloc pool buf 2000");
	RUN_OK(t, "build m buf");
	RUN_OK(t, "lock m");
	PMDL m = mdl_of("m");
	EXPECT_TRUE(t, m && (m->MdlFlags & MDL_PAGES_LOCKED));
	EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(m)[0])->lock_count, 1);
	RUN_OK(t, "map x m system wc nowrite");
	uint64_t x = va_of("x");
	EXPECT_TRUE(t, syspte_contains(x));
	for (uint64_t page = 0; page < 2; page++) {
		struct mmt_rights r;
		unsigned enc = mmt_encoding_at(x + page * PAGE_SIZE, &r);
		EXPECT_TRUE(t, r.present && !r.write && !r.user && r.nx);
		EXPECT_EQ(t, enc, MMT_ENC_WB); /* pool frames stay WB (mm/RULES.md decision 1) */
		EXPECT_EQ(t, r.pa >> PAGE_SHIFT, MmGetMdlPfnArray(m)[page]);
	}
	EXPECT_TRUE(t, says("PTE   at pa"));
	EXPECT_TRUE(t, says("TLB: "));

	RUN_OK(t, "alloc pages w 3000 wc");
	RUN_OK(t, "map y w");
	uint64_t y = va_of("y");
	struct mmt_rights r;
	EXPECT_EQ(t, mmt_encoding_at(y + 2 * PAGE_SIZE, &r), MMT_ENC_WC);
	EXPECT_TRUE(t, r.present && r.write);

	RUN_OK(t, "unmap x");
	EXPECT_TRUE(t, says("not present"));
	EXPECT_EQ(t, mmt_encoding_at(x, &r), MMT_ENC_UNMAPPED);
	EXPECT_EQ(t, mmt_encoding_at(x + PAGE_SIZE, &r), MMT_ENC_UNMAPPED);
	EXPECT_FALSE(t, m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA);
	RUN_OK(t, "unmap y");
	EXPECT_EQ(t, mmt_encoding_at(y, &r), MMT_ENC_UNMAPPED);
	RUN_OK(t, "unlock m");
	EXPECT_FALSE(t, m->MdlFlags & MDL_PAGES_LOCKED);
	RUN_OK(t, "free m");
	RUN_OK(t, "free buf");
	RUN_OK(t, "free w");
	EXPECT_EQ(t, lab_object_count(), 0);
}

/* A process that stays alive: `ps` has it, a UserMode mapping lands in its own tables as a
 * user page, and writes through eb reach the frame only where the mapping allows them. */
static void map_into_a_live_process_and_write_through_it(struct ktest *t)
{
	RUN_OK(t, "spawn p");
	struct lab_object_info pi;
	EXPECT_TRUE(t, lab_object_find("p", &pi) && pi.process && ps_lookup(pi.process->pid) == pi.process);
	RUN_OK(t, "alloc pool buf 1000");
	RUN_OK(t, "build m buf");
	RUN_OK(t, "lock m");
	RUN_OK(t, "map u m p");
	RUN_OK(t, "map r m p nowrite");
	uint64_t u = va_of("u"), ro = va_of("r"), buf = va_of("buf");
	EXPECT_TRUE(t, u && u < USER_VA_END && ro && ro != u);
	struct mmt_rights ru = rights_in(pi.process, u), rr = rights_in(pi.process, ro);
	EXPECT_TRUE(t, ru.present && ru.user && ru.write && ru.nx);
	EXPECT_TRUE(t, rr.present && rr.user && !rr.write);
	EXPECT_EQ(t, ru.pa >> PAGE_SHIFT, MmGetMdlPfnArray(mdl_of("m"))[0]);
	/* Not in the kernel's tables: the mapping is the process's alone. */
	struct mmt_rights k;
	EXPECT_EQ(t, mmt_encoding_at(u, &k), MMT_ENC_UNMAPPED);

	RUN_OK(t, "eq u+8 5a5a5a5a12345678");
	EXPECT_EQ(t, ((volatile uint64_t *)buf)[1], 0x5a5a5a5a12345678ull);
	EXPECT_EQ(t, run("eb r+10 77"), 1); /* read-only: refused, nothing written */
	EXPECT_TRUE(t, says("read-only"));
	EXPECT_EQ(t, ((volatile uint8_t *)buf)[0x10], 0);
	RUN_OK(t, "dq r 2");
	EXPECT_TRUE(t, says(" 5a5a5a5a12345678"));
	/* Physical: the MDL's frame, written by address, read through the process's mapping. */
	char line[64];
	uint64_t pa = (uint64_t)MmGetMdlPfnArray(mdl_of("m"))[0] << PAGE_SHIFT;
	ksnprintf(line, sizeof line, "eq -p %lx 0x600dcafe", pa + 0x20);
	RUN_OK(t, line);
	RUN_OK(t, "dq r+20 1");
	EXPECT_TRUE(t, says(" 00000000600dcafe"));
	EXPECT_EQ(t, ((volatile uint64_t *)buf)[4], 0x600dcafe);

	EXPECT_EQ(t, run("unlock m"), 1); /* still mapped into p: 0x2005 */
	EXPECT_TRUE(t, says("0x2005"));
	EXPECT_TRUE(t, mdl_of("m")->MdlFlags & MDL_PAGES_LOCKED);
	RUN_OK(t, "unmap u");
	EXPECT_FALSE(t, rights_in(pi.process, u).present);
	EXPECT_TRUE(t, rights_in(pi.process, ro).present);
	/* The process's end tears down the mapping a driver left (user rule U9). */
	RUN_OK(t, "free p");
	EXPECT_FALSE(t, lab_object_find("r", &pi));
	RUN_OK(t, "unlock m");
	RUN_OK(t, "free m");
	RUN_OK(t, "free buf");
	EXPECT_EQ(t, lab_object_count(), 0);
}

/* Bad handles and order errors: a message naming the documented answer, and nothing
 * changes — no stop, no PTE taken, no flag moved. */
static void order_errors_get_a_message_and_change_nothing(struct ktest *t)
{
	static const struct {
		const char *line, *said;
	} cases[] = {
		{ "map x m", "0xC4 P1 0xB3" },          /* not locked (rule 2) */
		{ "unlock m", "0xC4 P1 0x7C" },         /* not locked (rule 12) */
		{ "unmap m", "0xC4 P1 0xB6" },          /* an MDL with no mapping (rule 21) */
		{ "free buf", "the MDL 'm' describes it" },
		{ "unmap nosuch", "no object named 'nosuch'" },
		{ "lock buf", "'buf' is a pool buffer, not an MDL" },
		{ "build n nosuch", "no object named 'nosuch'" },
		{ "build m buf", "exists already" },
		{ "build 9x buf", "cannot name an object" },
		{ "build n buf 2000", "not inside 'buf'" },
		{ "map x m nosuch", "no cache type, priority, flag or process object" },
		{ "protect m readonly", "STATUS_NOT_MAPPED_VIEW" },
		{ "db 1000", "user address" },
		{ "db -p 0xfee00000", "not RAM" },
		/* Writes reach pool and MDL frames only: never the kernel's own (its text here). */
		{ "eb -p 0 1", "not pool or an MDL's" },
		{ "eq ffffffff80000000 0", "read-only" },
	};
	RUN_OK(t, "alloc pool buf 2000");
	RUN_OK(t, "build m buf");
	struct syspte_stats before, after;
	syspte_get_stats(&before);
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = run(cases[i].line);
		if (r == 0 || !says(cases[i].said))
			KTEST_FAIL(t, "'%s' returned %d and said '%s'", cases[i].line, r, said);
	}
	syspte_get_stats(&after);
	EXPECT_EQ(t, after.in_use, before.in_use);
	EXPECT_EQ(t, mdl_of("m")->MdlFlags, 0);
	EXPECT_EQ(t, lab_object_count(), 2);

	RUN_OK(t, "lock m");
	EXPECT_EQ(t, run("lock m"), 1);
	EXPECT_TRUE(t, says("0xC4 P1 0xB0"));
	RUN_OK(t, "map x m");
	EXPECT_EQ(t, run("map y m"), 1);
	EXPECT_TRUE(t, says("0xC4 P1 0xB2"));
	EXPECT_EQ(t, run("free m"), 1);
	EXPECT_TRUE(t, says("unlock"));
	RUN_OK(t, "protect m readonly");
	struct mmt_rights r;
	mmt_encoding_at(va_of("x"), &r);
	EXPECT_TRUE(t, r.present && !r.write);
	EXPECT_EQ(t, run("eb x 1"), 1);
	/* MmUnlockPages releases the system mapping first (rule 8): the object goes with it. */
	RUN_OK(t, "unlock m");
	EXPECT_FALSE(t, lab_object_find("x", &(struct lab_object_info){ 0 }));
	RUN_OK(t, "free m");
	RUN_OK(t, "free buf");
	EXPECT_EQ(t, lab_object_count(), 0);
}

/* What `quit` does before it ends the run: every live object released, in an order the
 * routines accept, each named. */
static void release_all_names_and_releases_everything(struct ktest *t)
{
	RUN_OK(t, "spawn p");
	RUN_OK(t, "alloc pool buf 2000");
	RUN_OK(t, "build m buf");
	RUN_OK(t, "lock m");
	RUN_OK(t, "map x m uc");
	RUN_OK(t, "map u m p");
	RUN_OK(t, "alloc pages w 1000 uc");
	RUN_OK(t, "map y w");
	uint64_t x = va_of("x"), y = va_of("y");
	pfn_t wpfn = MmGetMdlPfnArray(mdl_of("w"))[0];
	EXPECT_EQ(t, lab_object_count(), 7);
	said_out = mon_buffer(said, sizeof said);
	lab_objects_release_all(&said_out);
	EXPECT_EQ(t, lab_object_count(), 0);
	EXPECT_TRUE(t, says("u: MmUnmapLockedPages"));
	EXPECT_TRUE(t, says("m: MmUnlockPages"));
	EXPECT_TRUE(t, says("p: PsDestroyProcess"));
	struct mmt_rights r;
	EXPECT_EQ(t, mmt_encoding_at(x, &r), MMT_ENC_UNMAPPED);
	EXPECT_EQ(t, mmt_encoding_at(y, &r), MMT_ENC_UNMAPPED);
	EXPECT_EQ(t, mmt_alias_encoding(wpfn, &r), MMT_ENC_WB); /* the freed frame's alias is WB again */
}

/* --bugcheck: the lab's refusal is skipped and the routine itself stops the machine with
 * its documented parameters: mapping an MDL whose pages are not locked, 0xC4 P1 0xB3
 * (MDL, flags, MDL_PAGES_LOCKED) (mm/RULES.md rule 2). */
static void bugcheck_variant_makes_the_real_call(struct ktest *t)
{
	RUN_OK(t, "alloc pool buf 1000");
	RUN_OK(t, "build m buf");
	PMDL m = mdl_of("m");
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3, (ULONG_PTR)m, (USHORT)m->MdlFlags,
			  MDL_PAGES_LOCKED, KTEST_P_ALL);
	run("map x m --bugcheck");
	KTEST_FAIL(t, "the map of an unlocked MDL returned: %s", said);
}

/* An empty test selection is an error (issue 17): the count the monitor's `tests` checks, and
 * its non-zero result (a scripted `make run` then exits non-zero). */
static void empty_test_selection_is_an_error(struct ktest *t)
{
	EXPECT_EQ(t, ktest_count_selected("nosuch.*"), 0);
	EXPECT_TRUE(t, ktest_count_selected("mm_audit.*") > 0); /* a late suite, named: selected */
	EXPECT_EQ(t, ktest_count_selected("lab_objects.empty_test_selection_is_an_error"), 1);
	EXPECT_EQ(t, ktest_count_selected("lab_objects.*"), 10);
	char line[] = "tests nosuch.*";
	EXPECT_EQ(t, monitor_execute(line), 1);
}

/* `help CMD` gives one command's usage (0); an unknown name gets the usage line (-1). */
static void help_takes_a_command(struct ktest *t)
{
	char a[] = "help map", b[] = "help nosuch", c[] = "help", d[] = "help map x";
	EXPECT_EQ(t, monitor_execute(a), 0);
	EXPECT_EQ(t, monitor_execute(b), -1);
	EXPECT_EQ(t, monitor_execute(c), 0);
	EXPECT_EQ(t, monitor_execute(d), -1);
}

/* The STOP screen names every code the project raises and says what each parameter holds, as
 * !analyze does (kernel/bugcheck.c's table): a code added to bugcodes.h without its text
 * fails here. */
static void stop_screen_explains_every_code(struct ktest *t)
{
#define CHECK_EXPLAINED(name, value)                                                            \
	if (!strcmp(bugcheck_name(value), "UNKNOWN_BUGCHECK") || !bugcheck_explain(value, 0, 0))     \
		KTEST_FAIL(t, "0x%x (%s) has no name or no explanation", (unsigned)(value), #name);
	MDLAB_BUGCODES(CHECK_EXPLAINED)
#undef CHECK_EXPLAINED
	EXPECT_TRUE(t, !strcmp(bugcheck_explain(0xC4, 0xB3, 0), "mapping an MDL whose pages are not locked"));
	EXPECT_TRUE(t, !strcmp(bugcheck_explain(0xC4, 0xB3, 2), "the MDL"));
	EXPECT_TRUE(t, !strcmp(bugcheck_name(0x44), "MULTIPLE_IRP_COMPLETE_REQUESTS"));
	EXPECT_TRUE(t, bugcheck_explain(0xC4, 0x12345, 0) != NULL); /* an unknown violation: the general text */
	EXPECT_TRUE(t, bugcheck_explain(0x12345678, 0, 0) == NULL);
}

/* The tour teaches what it used to skip (issue 17): the PAT slot formula, a legend for the
 * flag brackets, the TLB invalidations each unmap and type change did (read from the TLB
 * counters: two INVLPGs for the two-page buffer), and the direct-map split and merge, which it
 * reads from the tables (a 4K alias leaf while typed, a large one after the free). */
static char tour_text[256 * 1024];

static void tour_teaches_tlb_flushes_splits_and_the_pat_slot(struct ktest *t)
{
	struct mon_out o = mon_buffer(tour_text, sizeof tour_text);
	EXPECT_TRUE(t, tour_run(&o, NULL));
	EXPECT_FALSE(t, o.overflow);
	static const char *const taught[] = {
		"The PAT slot of a leaf is PAT*4 + PCD*2 + PWT, with PAT at bit 7 of a 4 KiB PTE and at bit\n12 of a 2 MiB",
		"Legend of an entry's flag bracket",
		"  A  accessed",
		"TLB: MmUnmapLockedPages did 2 INVLPG and 0 full flushes",
		"TLB: MmUnmapLockedPages did 1 INVLPG",
		"TLB: MmFreePagesFromMdl did ",
		"the alias is a 4K leaf: the direct map's large page holding the frame was split",
		" leaf again: its 512 PTEs were uniform once more, so they were merged back",
		"the MDL is as in the first of these steps",
	};
	const char *text = tour_text;
	for (unsigned i = 0; i < ARRAY_SIZE(taught); i++) {
		size_t n = strlen(taught[i]);
		bool found = false;
		for (const char *p = text; *p && !found; p++)
			found = !strncmp(p, taught[i], n);
		if (!found)
			KTEST_FAIL(t, "the tour does not say '%s'", taught[i]);
	}
}

/* `bugcheck` reads hex like every monitor command, with optional P1-P4: `bugcheck 3f a b`
 * is 0x3F (0xA, 0xB, 3, 4), not a usage line or code 63. */
static void bugcheck_command_takes_hex_and_parameters(struct ktest *t)
{
	(void)t;
	char line[] = "bugcheck 3f a b";
	monitor_execute(line);
}

static struct ktest_case lab_objects_cases[] = {
	KTEST_CASE(map_and_unmap_change_the_real_ptes),
	KTEST_CASE(map_into_a_live_process_and_write_through_it),
	KTEST_CASE(order_errors_get_a_message_and_change_nothing),
	KTEST_CASE(release_all_names_and_releases_everything),
	KTEST_CASE(empty_test_selection_is_an_error),
	KTEST_CASE(help_takes_a_command),
	KTEST_CASE(stop_screen_explains_every_code),
	KTEST_CASE(tour_teaches_tlb_flushes_splits_and_the_pat_slot),
	KTEST_DEATH_CASE_P1(bugcheck_variant_makes_the_real_call, DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB3),
	KTEST_DEATH_CASE_P(bugcheck_command_takes_hex_and_parameters, NO_MORE_SYSTEM_PTES, KTEST_P_ALL, 0xA, 0xB, 3, 4),
	{ 0 }
};
KTEST_SUITE(lab_objects, lab_objects_cases);
