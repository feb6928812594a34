/* The framework's own rules, proven on purpose-built failing cases run through the same
 * runner: EXPECT continues, ASSERT ends the case, a fault fails only its case, a leaked
 * resource or a raised IRQL fails the case, skip is reported.  Plus the kernel's library
 * pieces the framework stands on (glob, printf, symbols, command line). */
#include "kernel/ktest.h"
#include "tests/lib/scratch.h"
#include "kernel/accounting.h"
#include "kernel/cmdline.h"
#include "kernel/irql.h"
#include "kernel/ksym.h"
#include "kernel/lib.h"
#include "kernel/printf.h"

/* A resource that only these tests use: the accounting hook must notice a change in it. */
static uint64_t selftest_resource;
static uint64_t read_selftest_resource(void) { return selftest_resource; }
ACCOUNTING_COUNTER(selftest, "ktest self-test resource", read_selftest_resource);

static volatile int reached;

static void inner_expect(struct ktest *t)
{
	EXPECT_EQ(t, 1, 2);
	reached = 1;
}
static void inner_assert(struct ktest *t)
{
	ASSERT_EQ(t, 1, 2);
	reached = 1;
}
static void inner_fault(struct ktest *t)
{
	(void)t;
	*(volatile uint64_t *)(scratch_unmapped_kva(PAGE_SIZE) + 0x40) = 1;
	reached = 1;
}
static void inner_leak(struct ktest *t) { (void)t; selftest_resource++; }
static void inner_irql(struct ktest *t)
{
	(void)t;
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
}
static void inner_skip(struct ktest *t)
{
	KTEST_SKIP(t, "on purpose");
	reached = 1;
}
static void inner_pass(struct ktest *t) { EXPECT_EQ(t, 2, 2); }

static struct ktest_case inner_cases[] = {
	KTEST_CASE(inner_expect), KTEST_CASE(inner_assert), KTEST_CASE(inner_fault),
	KTEST_CASE(inner_leak),   KTEST_CASE(inner_irql),   KTEST_CASE(inner_skip),
	KTEST_CASE(inner_pass),   { 0 },
};
static const struct ktest_suite inner_suite = { .name = "inner", .cases = inner_cases };

static enum ktest_outcome run_inner(int i)
{
	reached = 0;
	kprintf("(running the purpose-built case inner.%s; its failure messages are expected)\n",
		inner_cases[i].name);
	return ktest_run_case(&inner_suite, &inner_cases[i]);
}

static void expect_failure_continues_the_case(struct ktest *t)
{
	EXPECT_EQ(t, run_inner(0), KTEST_FAIL);
	EXPECT_TRUE(t, reached);
}

static void assert_failure_ends_the_case(struct ktest *t)
{
	EXPECT_EQ(t, run_inner(1), KTEST_FAIL);
	EXPECT_FALSE(t, reached);
}

static void unexpected_fault_fails_only_its_case(struct ktest *t)
{
	EXPECT_EQ(t, run_inner(2), KTEST_FAIL);
	EXPECT_FALSE(t, reached);
	EXPECT_EQ(t, run_inner(6), KTEST_PASS); /* and the next case runs normally */
}

static void accounting_catches_a_leak(struct ktest *t)
{
	uint64_t before = selftest_resource;
	EXPECT_EQ(t, run_inner(3), KTEST_FAIL);
	EXPECT_EQ(t, selftest_resource, before + 1);
	selftest_resource = before; /* give it back, or this case fails too */
}

static void irql_left_raised_fails_and_is_restored(struct ktest *t)
{
	EXPECT_EQ(t, run_inner(4), KTEST_FAIL);
	EXPECT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
}

static void skip_is_reported(struct ktest *t)
{
	EXPECT_EQ(t, run_inner(5), KTEST_SKIPPED);
	EXPECT_FALSE(t, reached);
}

static void glob_selects_cases(struct ktest *t)
{
	EXPECT_TRUE(t, glob_match("*", "seh.nested"));
	EXPECT_TRUE(t, glob_match("seh.*", "seh.nested"));
	EXPECT_TRUE(t, glob_match("seh.n?sted", "seh.nested"));
	EXPECT_TRUE(t, glob_match("*.nest*", "seh.nested_inner"));
	EXPECT_FALSE(t, glob_match("seh.*", "irql.raise"));
	EXPECT_FALSE(t, glob_match("seh", "seh.nested"));
	EXPECT_FALSE(t, glob_match("*x", "seh.nested"));
}

static void printf_formats(struct ktest *t)
{
	char buf[64];
	ksnprintf(buf, sizeof buf, "%d|%5u|%-4x|%08lx|%s|%c|%%", -42, 7u, 0xabu, 0xbeeful, "ok", 'z');
	EXPECT_EQ(t, strcmp(buf, "-42|    7|ab  |0000beef|ok|z|%"), 0);
	ksnprintf(buf, sizeof buf, "%.3s|%p", "abcdef", (void *)0x10);
	EXPECT_EQ(t, strcmp(buf, "abc|0x0000000000000010"), 0);
	EXPECT_EQ(t, ksnprintf(buf, 4, "%s", "truncated"), 9);
	EXPECT_EQ(t, strcmp(buf, "tru"), 0);
}

static void symbols_resolve_kernel_functions(struct ktest *t)
{
	uint64_t off = ~0ull;
	const char *name = ksym_lookup((uint64_t)printf_formats + 3, &off);
	ASSERT_TRUE(t, name != NULL);
	EXPECT_EQ(t, strcmp(name, "printf_formats"), 0);
	EXPECT_EQ(t, off, 3);
	extern void kmain(uint64_t);
	EXPECT_EQ(t, ksym_address("kmain"), (uint64_t)kmain);
}

static void command_line_parses(struct ktest *t)
{
	char saved[256], v[32];
	strlcpy(saved, cmdline_raw(), sizeof saved);
	cmdline_init("mode=test  tests=seh.* verbose n=0x10");
	EXPECT_TRUE(t, cmdline_get("tests", v, sizeof v));
	EXPECT_EQ(t, strcmp(v, "seh.*"), 0);
	EXPECT_TRUE(t, cmdline_get("verbose", v, sizeof v));
	EXPECT_EQ(t, v[0], 0);
	EXPECT_FALSE(t, cmdline_get("mod", v, sizeof v));
	EXPECT_EQ(t, cmdline_get_u64("n", 0), 16);
	EXPECT_EQ(t, cmdline_get_u64("missing", 5), 5);
	cmdline_init(saved);
}

/* parse_number (kernel/lib.h), the one parser of the command line and the monitor: every
 * number must have digits, only digits of its base, and fit in 64 bits. */
static void number_parser_refuses_empty_junk_and_overflow(struct ktest *t)
{
	static const struct {
		const char *text;
		unsigned base;
		bool ok;
		uint64_t value;
	} cases[] = {
		{ "0", 10, true, 0 }, { "42", 10, true, 42 }, { "0x1F", 10, true, 0x1F },
		{ "1f", 16, true, 0x1F }, { "ffffffff`80000000", 16, true, 0xFFFFFFFF80000000ull },
		{ "0xffffffff`80000000", 10, true, 0xFFFFFFFF80000000ull },
		{ "18446744073709551615", 10, true, UINT64_MAX },
		{ "0xFFFFFFFFFFFFFFFF", 10, true, UINT64_MAX },
		{ "", 10, false, 0 }, { "", 16, false, 0 }, { "0x", 10, false, 0 }, { "0X", 16, false, 0 },
		{ "-", 10, false, 0 }, { "-1", 10, false, 0 }, { "+1", 10, false, 0 }, { "`", 16, false, 0 },
		{ "0x`", 10, false, 0 }, { "`1", 16, false, 0 }, { "1`", 16, false, 0 }, { "1``2", 16, false, 0 },
		{ "1`2", 10, false, 0 }, { "12z", 10, false, 0 }, { "1f", 10, false, 0 }, { "0x1g", 10, false, 0 },
		{ "10 ", 10, false, 0 }, { " 10", 10, false, 0 }, { "0xx1", 10, false, 0 },
		{ "18446744073709551616", 10, false, 0 }, { "0x10000000000000000", 10, false, 0 },
		{ "99999999999999999999", 10, false, 0 },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t v = 0x5A5A5A5A;
		const char *why = parse_number(cases[i].text, cases[i].base, &v);
		if (cases[i].ok && (why || v != cases[i].value))
			KTEST_FAIL(t, "'%s' (base %u): %s, 0x%lx", cases[i].text, cases[i].base, why ? why : "ok", v);
		if (!cases[i].ok && (!why || v != 0x5A5A5A5A))
			KTEST_FAIL(t, "'%s' (base %u) was taken as 0x%lx", cases[i].text, cases[i].base, v);
		if (cases[i].base == 10)
			EXPECT_EQ(t, parse_u64(cases[i].text, &v), !why);
	}
}

/* A command-line number that is not one gets a message and the default, never a stop. */
static void command_line_refuses_bad_numbers(struct ktest *t)
{
	char saved[256];
	strlcpy(saved, cmdline_raw(), sizeof saved);
	cmdline_init("a=0x b= c=- d=12z e=18446744073709551616 f=0x` "
		     "g=000000000000000000000000000000000000000000000000000000000000001 h=7");
	static const char *const keys[] = { "a", "b", "c", "d", "e", "f", "g" };
	for (unsigned i = 0; i < ARRAY_SIZE(keys); i++)
		EXPECT_EQ(t, cmdline_get_u64(keys[i], 99), 99);
	EXPECT_EQ(t, cmdline_get_u64("h", 99), 7);
	cmdline_init(saved);
}

/* For the harness: a death case whose STOP code and P1 it must check. */
static void manual_bugcheck_reaches_the_harness(struct ktest *t)
{
	(void)t;
	KeBugCheckEx(MANUALLY_INITIATED_CRASH, 0x1234, 0x5678, 0x9ABC, 0xDEF0);
}

static struct ktest_case ktest_cases[] = {
	KTEST_CASE(expect_failure_continues_the_case),
	KTEST_CASE(assert_failure_ends_the_case),
	KTEST_CASE(unexpected_fault_fails_only_its_case),
	KTEST_CASE(accounting_catches_a_leak),
	KTEST_CASE(irql_left_raised_fails_and_is_restored),
	KTEST_CASE(skip_is_reported),
	KTEST_CASE(glob_selects_cases),
	KTEST_CASE(printf_formats),
	KTEST_CASE(symbols_resolve_kernel_functions),
	KTEST_CASE(command_line_parses),
	KTEST_CASE(number_parser_refuses_empty_junk_and_overflow),
	KTEST_CASE(command_line_refuses_bad_numbers),
	KTEST_DEATH_CASE_P(manual_bugcheck_reaches_the_harness, MANUALLY_INITIATED_CRASH, KTEST_P_ALL,
			   0x1234, 0x5678, 0x9ABC, 0xDEF0),
	{ 0 }
};
KTEST_SUITE(ktest, ktest_cases);
