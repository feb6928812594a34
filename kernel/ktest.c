#include <stdarg.h>
#include "kernel/ktest.h"
#include "include/mdlab/protocol.h"
#include "kernel/accounting.h"
#include "kernel/bootmode.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/serial.h"

extern const struct ktest_suite *const __ktest_suites_start[], *const __ktest_suites_end[];
#define for_each_suite(s) \
	for (const struct ktest_suite *const *s = __ktest_suites_start; s < __ktest_suites_end; s++)


/* mode=test suites=A,B: only the named suites (and the late ones) run; empty: every suite. */
static char suites_filter[256];

static bool suite_selected(const char *name)
{
	if (!suites_filter[0])
		return true;
	size_t len = strlen(name);
	for (const char *p = suites_filter; *p;) {
		const char *end = p;
		while (*end && *end != ',')
			end++;
		if ((size_t)(end - p) == len && !memcmp(p, name, len))
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static bool case_matches(const struct ktest_suite *s, const struct ktest_case *c, const char *glob)
{
	char full[MDLAB_CASE_NAME_SIZE];
	if (s->late && !c->death_code)
		return true;
	if (!suite_selected(s->name))
		return false;
	ksnprintf(full, sizeof full, "%s.%s", s->name, c->name);
	return glob_match(glob, full);
}

void ktest_fail_at(struct ktest *t, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	t->failures++;
	kprintf("%s:%d: ", file, line);
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
}

/* " p1=0x... p3=0x..." for the parameters `mask` names, as the harness reads them. */
static void print_params(unsigned mask, const uint64_t p[4])
{
	for (int i = 0; i < 4; i++)
		if (mask & (1u << i))
			kprintf(" p%d=0x%016lX", i + 1, p[i]);
}

void ktest_expect_stop(struct ktest *t, uint32_t code, uint64_t p1, uint64_t p2, uint64_t p3,
		       uint64_t p4, unsigned mask)
{
	const uint64_t p[4] = { p1, p2, p3, p4 };
	if (!t->kcase->death_code)
		KTEST_FAIL(t, "ktest_expect_stop in %s, which is not a death case", t->kcase->name);
	kprintf(MDLAB_DEATH_EXPECT " code=0x%08X", code);
	print_params(mask, p);
	kprintf("\n");
}

void ktest_expect_panic(struct ktest *t, const char *fmt, ...)
{
	if (!t->kcase->death_code)
		KTEST_FAIL(t, "ktest_expect_panic in %s, which is not a death case", t->kcase->name);
	va_list ap;
	kprintf(MDLAB_DEATH_EXPECT " code=0x%08X panic=", (uint32_t)MDLAB_INTERNAL_ERROR);
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
}

void ktest_abort(struct ktest *t) { seh_longjmp(&t->abort_jb); }

void ktest_skip(struct ktest *t, const char *reason)
{
	t->skipped = true;
	t->skip_reason = reason;
	seh_longjmp(&t->abort_jb);
}

/* Run init, the case body and exit, each under a __try so that an unexpected exception
 * fails the case instead of the run.  ASSERT_* and KTEST_SKIP land back here through
 * abort_jb, abandoning any __try frames the case had registered. */
static void run_protected(struct ktest *t, void (*fn)(struct ktest *), const char *what)
{
	struct seh_frame *chain = seh_top();
	if (seh_setjmp(&t->abort_jb) != 0) {
		seh_set_top(chain);
		return;
	}
	__try {
		fn(t);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		const EXCEPTION_RECORD *r = GetExceptionRecord();
		t->failures++;
		kprintf("unexpected exception 0x%08X at %p in %s", (ULONG)r->ExceptionCode,
			r->ExceptionAddress, what);
		if (r->NumberParameters >= 2)
			kprintf(" (access %lu, address 0x%lx)", r->ExceptionInformation[0],
				r->ExceptionInformation[1]);
		kprintf("\n");
		if (GetExceptionTrapFrame())
			trap_print_report(GetExceptionTrapFrame());
	}
}

static const struct ktest_suite *cur_suite;
static const char *last_skip_reason = "";
static void call_init(struct ktest *t)
{
	if (cur_suite->init && cur_suite->init(t) != 0) {
		t->failures++;
		kprintf("suite init failed\n");
	}
}
static void call_case(struct ktest *t) { t->kcase->run(t); }
static void call_exit(struct ktest *t)
{
	if (cur_suite->exit)
		cur_suite->exit(t);
}

enum ktest_outcome ktest_run_case(const struct ktest_suite *s, const struct ktest_case *c)
{
	struct accounting_snapshot before;
	accounting_snapshot(&before);

	struct ktest t = { .suite = s, .kcase = c };
	const struct ktest_suite *outer = cur_suite;
	struct seh_frame *chain = seh_top();
	cur_suite = s;
	run_protected(&t, call_init, "init");
	if (!t.failures && !t.skipped)
		run_protected(&t, call_case, "the case");
	bool skipped = t.skipped;
	run_protected(&t, call_exit, "exit");
	t.skipped = skipped;
	cur_suite = outer;

	/* The case must leave the machine as it found it. */
	KIRQL irql = KeGetCurrentIrql();
	if (irql != PASSIVE_LEVEL) {
		t.failures++;
		kprintf("case left IRQL at %u (restored to PASSIVE_LEVEL)\n", irql);
		write_cr8(PASSIVE_LEVEL);
	}
	if (seh_top() != chain) {
		t.failures++;
		kprintf("case left a __try frame registered\n");
		seh_set_top(chain);
	}
	t.failures += accounting_report_changes(&before, "resource accounting");
	last_skip_reason = t.skip_reason ? t.skip_reason : "";
	if (t.failures)
		return KTEST_FAIL;
	return t.skipped ? KTEST_SKIPPED : KTEST_PASS;
}

int ktest_count_selected(const char *glob)
{
	int n = 0;
	for_each_suite(s) {
		for (const struct ktest_case *c = (*s)->cases; c->name; c++) {
			char full[MDLAB_CASE_NAME_SIZE];
			ksnprintf(full, sizeof full, "%s.%s", (*s)->name, c->name);
			n += glob_match(glob, full); /* by name: a late suite runs anyway, unselected */
		}
	}
	return n;
}

int ktest_run_all(const char *glob)
{
	int nsuites = 0, total_pass = 0, total_fail = 0, total_skip = 0;

	kprintf(MDLAB_KTAP_HEADER "\n");
	for_each_suite(s) {
		bool any = false;
		for (const struct ktest_case *c = (*s)->cases; c->name; c++) {
			if (!case_matches(*s, c, glob))
				continue;
			if (c->death_code) {
				kprintf(MDLAB_DEATH_TEST " %s.%s code=0x%08X", (*s)->name, c->name, c->death_code);
				print_params(c->death_mask, c->death_p);
				kprintf("\n");
			} else {
				any = true;
			}
		}
		nsuites += any;
	}
	kprintf("1..%d\n", nsuites);

	int suite_no = 0;
	for (int late = 0; late < 2; late++)
	for_each_suite(s) {
		if ((*s)->late != (late == 1))
			continue;
		int ncases = 0;
		for (const struct ktest_case *c = (*s)->cases; c->name; c++)
			ncases += !c->death_code && case_matches(*s, c, glob);
		if (!ncases)
			continue;
		kprintf("    " MDLAB_KTAP_HEADER "\n    " MDLAB_KTAP_SUBTEST " %s\n    1..%d\n", (*s)->name, ncases);
		int pass = 0, fail = 0, skip = 0, no = 0;
		for (const struct ktest_case *c = (*s)->cases; c->name; c++) {
			if (c->death_code || !case_matches(*s, c, glob))
				continue;
			console_set_line_prefix("    # ");
			enum ktest_outcome o = ktest_run_case(*s, c);
			console_set_line_prefix(NULL);
			no++;
			if (o == KTEST_PASS) {
				pass++;
				kprintf("    ok %d %s\n", no, c->name);
			} else if (o == KTEST_SKIPPED) {
				skip++;
				kprintf("    ok %d %s # " MDLAB_KTAP_SKIP " %s\n", no, c->name, last_skip_reason);
			} else {
				fail++;
				kprintf("    not ok %d %s\n", no, c->name);
			}
		}
		suite_no++;
		kprintf("# %s: pass:%d fail:%d skip:%d total:%d\n", (*s)->name, pass, fail, skip, no);
		kprintf("%s %d %s\n", fail ? "not ok" : "ok", suite_no, (*s)->name);
		total_pass += pass, total_fail += fail, total_skip += skip;
	}
	kprintf("# Totals: pass:%d fail:%d skip:%d total:%d\n", total_pass, total_fail, total_skip,
		total_pass + total_fail + total_skip);
	return total_fail;
}

/* A death case runs with no __try around it: it may be about what happens without one. */
__attribute__((noinline)) static void run_bare(const struct ktest_suite *s, const struct ktest_case *c)
{
	struct ktest t = { .suite = s, .kcase = c };
	if (seh_setjmp(&t.abort_jb) == 0) {
		if (!s->init || s->init(&t) == 0)
			c->run(&t);
	}
}

void ktest_run_death(const char *name)
{
	for_each_suite(s) {
		for (const struct ktest_case *c = (*s)->cases; c->name; c++) {
			if (!c->death_code || !case_matches(*s, c, name))
				continue;
			kprintf(MDLAB_DEATH " running %s.%s, expecting bug check 0x%08X\n", (*s)->name, c->name,
				c->death_code);
			run_bare(*s, c);
			kprintf(MDLAB_DEATH " %s.%s " MDLAB_DEATH_RETURNED "\n", (*s)->name, c->name);
			return;
		}
	}
	kprintf(MDLAB_DEATH " no death case named '%s'\n", name);
}

/* ---- boot modes ----------------------------------------------------------------------------
 * mode=test tests=GLOB [suites=A,B]: every ordinary case matching GLOB (of the suites named,
 * when suites= is given; the late suites always), then the closing marker.
 * mode=death case=SUITE.CASE: one death case, booted for it.
 * mode=death-server: booted and waiting; the harness saves this machine once and restores a
 * copy per death case, sending the case's name on COM1. */
static void mode_test(void)
{
	char glob[128] = "*";
	cmdline_get("tests", glob, sizeof glob);
	cmdline_get("suites", suites_filter, sizeof suites_filter);
	ktest_run_all(glob);
	kprintf(MDLAB_TESTS_DONE "\n");
}
BOOT_MODE(test, MDLAB_MODE_TEST, mode_test);

static void mode_death(void)
{
	char name[MDLAB_CASE_NAME_SIZE] = "";
	cmdline_get("case", name, sizeof name);
	ktest_run_death(name);
}
BOOT_MODE(death, MDLAB_MODE_DEATH, mode_death);

static void mode_death_server(void)
{
	char name[MDLAB_CASE_NAME_SIZE];
	kprintf(MDLAB_DEATH_SERVER_READY "\n");
	serial_read_line(name, sizeof name);
	ktest_run_death(name);
}
BOOT_MODE(death_server, MDLAB_MODE_DEATH_SERVER, mode_death_server);
