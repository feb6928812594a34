/*
 * mdlab's self-test framework (KUnit-like; output is KTAP version 1).
 *
 *   static void fault_in_try(struct ktest *t) { ... EXPECT_EQ(t, a, b); ASSERT_TRUE(t, p); }
 *   static struct ktest_case seh_cases[] = {
 *       KTEST_CASE(fault_in_try),
 *       KTEST_DEATH_CASE(unhandled_fault, KMODE_EXCEPTION_NOT_HANDLED),
 *       {0}
 *   };
 *   KTEST_SUITE(seh, seh_cases);               // or KTEST_SUITE(seh, seh_cases, .init = f, .exit = g)
 *
 * EXPECT_* records a failure and continues; ASSERT_* records it and ends the case.
 * KTEST_SKIP(t, "reason") ends the case as skipped.  Suite `init` and `exit` run around
 * every case.  After `exit`, every registered resource counter (kernel/accounting.h) must
 * read as it did before `init`, the IRQL must be back at PASSIVE_LEVEL, and no __try frame
 * may be left registered — otherwise the case fails.  An unexpected exception or fault
 * inside a case fails it with the fault report, and the run goes on.
 *
 * A death case must end in the given bug check, with the parameters it gives; the harness
 * runs each one in a machine of its own (mode=death) and compares the STOP line with them:
 *
 *   KTEST_DEATH_CASE(fn, code)                          the code alone
 *   KTEST_DEATH_CASE_P1(fn, code, p1)                   the code and P1
 *   KTEST_DEATH_CASE_P(fn, code, KTEST_P1 | KTEST_P3, p1, p2, p3, p4)
 *                                                       the code and the parameters in the
 *                                                       mask (the others are not compared)
 *
 * Parameters known only at run time (pool addresses, MDLs) are given by the case itself,
 * before it triggers the bug check: ktest_expect_stop(t, code, p1, p2, p3, p4, mask) prints
 * a "# death-expect:" line that the harness requires the STOP line to match as well;
 * ktest_expect_panic(t, fmt, ...) the PANIC's own message, for a case that ends in one.
 */
#ifndef KERNEL_KTEST_H
#define KERNEL_KTEST_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bugcodes.h"
#include "include/mdlab/ntdef.h"
#include "kernel/bugcheck.h"
#include "kernel/seh.h"

struct ktest {
	const struct ktest_suite *suite;
	const struct ktest_case *kcase;
	int failures;
	bool skipped;
	const char *skip_reason;
	void *priv;                  /* for the suite's init/exit and the case */
	struct seh_jmpbuf abort_jb;  /* where ASSERT_* and KTEST_SKIP land */
};

struct ktest_case {
	const char *name;
	void (*run)(struct ktest *t);
	uint32_t death_code;         /* 0: an ordinary case */
	unsigned death_mask;         /* KTEST_P1..KTEST_P4: which of death_p are expected */
	uint64_t death_p[4];         /* the expected P1..P4 */
};

/* Which bug check parameters a death expectation gives. */
#define KTEST_P1 (1u << 0)
#define KTEST_P2 (1u << 1)
#define KTEST_P3 (1u << 2)
#define KTEST_P4 (1u << 3)
#define KTEST_P_ALL (KTEST_P1 | KTEST_P2 | KTEST_P3 | KTEST_P4)

struct ktest_suite {
	const char *name;
	struct ktest_case *cases;
	int (*init)(struct ktest *t); /* non-zero fails the case */
	void (*exit)(struct ktest *t);
	bool late;                    /* runs after every other suite, whatever the glob selects
				       * (the end-of-run audits) */
};

#define KTEST_CASE(fn) { .name = #fn, .run = fn }
#define KTEST_DEATH_CASE(fn, code) { .name = #fn, .run = fn, .death_code = (code) }
#define KTEST_DEATH_CASE_P(fn, code, mask, p1, p2, p3, p4)                               \
	{ .name = #fn, .run = fn, .death_code = (code), .death_mask = (mask),              \
	  .death_p = { (p1), (p2), (p3), (p4) } }
#define KTEST_DEATH_CASE_P1(fn, code, p1) KTEST_DEATH_CASE_P(fn, code, KTEST_P1, p1, 0, 0, 0)

#define KTEST_SUITE(id, case_array, ...)                                                \
	static const struct ktest_suite __ktest_suite_##id = { .name = #id,              \
							       .cases = case_array, \
							       __VA_ARGS__ };       \
	__attribute__((used, section(".ktest_suites"))) static const struct ktest_suite   \
		*const __ktest_suite_ptr_##id = &__ktest_suite_##id

/* A suite that runs after every KTEST_SUITE (its own linker section, placed last): the
 * checks of what the whole run left behind. */
#define KTEST_SUITE_LAST(id, case_array, ...)                                           \
	static const struct ktest_suite __ktest_suite_##id = { .name = #id,              \
							       .cases = case_array, \
							       __VA_ARGS__ };       \
	__attribute__((used, section(".ktest_suites_last"))) static const struct ktest_suite \
		*const __ktest_suite_ptr_##id = &__ktest_suite_##id

/* Failure recording (used by the macros). */
void ktest_fail_at(struct ktest *t, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
__attribute__((noreturn)) void ktest_abort(struct ktest *t);
__attribute__((noreturn)) void ktest_skip(struct ktest *t, const char *reason);

#define __KT_CHECK(t, cond, on_fail, what)                                         \
	do {                                                                      \
		if (!(cond)) {                                                    \
			ktest_fail_at((t), __FILE__, __LINE__, "%s", what);       \
			on_fail;                                             \
		}                                                            \
	} while (0)

#define __KT_CMP(t, a, op, b, on_fail, kind)                                                       \
	do {                                                                                       \
		uint64_t __a = (uint64_t)(a), __b = (uint64_t)(b);                                 \
		if (!(__a op __b)) {                                                               \
			ktest_fail_at((t), __FILE__, __LINE__, "%s failed: %s %s %s (0x%lx vs 0x%lx)", \
				      kind, #a, #op, #b, __a, __b);                                \
			on_fail;                                                           \
		}                                                                                  \
	} while (0)

#define EXPECT_TRUE(t, c) __KT_CHECK(t, c, (void)0, "EXPECT_TRUE failed: " #c)
#define EXPECT_FALSE(t, c) __KT_CHECK(t, !(c), (void)0, "EXPECT_FALSE failed: " #c)
#define EXPECT_EQ(t, a, b) __KT_CMP(t, a, ==, b, (void)0, "EXPECT_EQ")
#define EXPECT_NE(t, a, b) __KT_CMP(t, a, !=, b, (void)0, "EXPECT_NE")
#define EXPECT_LT(t, a, b) __KT_CMP(t, a, <, b, (void)0, "EXPECT_LT")
#define EXPECT_LE(t, a, b) __KT_CMP(t, a, <=, b, (void)0, "EXPECT_LE")
#define EXPECT_GT(t, a, b) __KT_CMP(t, a, >, b, (void)0, "EXPECT_GT")
#define EXPECT_GE(t, a, b) __KT_CMP(t, a, >=, b, (void)0, "EXPECT_GE")
#define ASSERT_TRUE(t, c) __KT_CHECK(t, c, ktest_abort(t), "ASSERT_TRUE failed: " #c)
#define ASSERT_FALSE(t, c) __KT_CHECK(t, !(c), ktest_abort(t), "ASSERT_FALSE failed: " #c)
#define ASSERT_EQ(t, a, b) __KT_CMP(t, a, ==, b, ktest_abort(t), "ASSERT_EQ")
#define ASSERT_NE(t, a, b) __KT_CMP(t, a, !=, b, ktest_abort(t), "ASSERT_NE")
#define ASSERT_LT(t, a, b) __KT_CMP(t, a, <, b, ktest_abort(t), "ASSERT_LT")
#define ASSERT_LE(t, a, b) __KT_CMP(t, a, <=, b, ktest_abort(t), "ASSERT_LE")
#define ASSERT_GT(t, a, b) __KT_CMP(t, a, >, b, ktest_abort(t), "ASSERT_GT")
#define ASSERT_GE(t, a, b) __KT_CMP(t, a, >=, b, ktest_abort(t), "ASSERT_GE")
/* In a death case, before the bug check: the STOP line must carry `code` and the parameters
 * `mask` names (KTEST_P1..KTEST_P4), checked by the harness along with the case's declared
 * ones.  Prints "# death-expect: code=0x... p1=0x..." (only the masked parameters). */
void ktest_expect_stop(struct ktest *t, uint32_t code, uint64_t p1, uint64_t p2, uint64_t p3,
		       uint64_t p4, unsigned mask);
/* In a death case that ends in a PANIC (MDLAB_INTERNAL_ERROR, P1 the site): the line the
 * PANIC prints just before the STOP line must be this message, printf-formatted ("function:
 * reason"), so the case stops at that PANIC and no other.  Prints "# death-expect:
 * code=0x4D440001 panic=MESSAGE". */
__attribute__((format(printf, 2, 3))) void ktest_expect_panic(struct ktest *t, const char *fmt, ...);

#define KTEST_FAIL(t, ...) ktest_fail_at((t), __FILE__, __LINE__, __VA_ARGS__)
#define KTEST_SKIP(t, reason) ktest_skip((t), (reason))

/* Runners. */
enum ktest_outcome { KTEST_PASS, KTEST_FAIL, KTEST_SKIPPED };

/* mode=test: every ordinary case matching `glob` ("suite.case"), as KTAP; the death cases
 * are listed as "# death-test:" lines for the harness.  Returns the number of failures. */
int ktest_run_all(const char *glob);
/* How many cases `glob` selects by name (death cases included; a late suite's case counts
 * only when its name matches, although every run ends with it): 0 means the selection is
 * empty, which is an error. */
int ktest_count_selected(const char *glob);
/* mode=death: run the death case named "suite.case"; returns only if it did not bug check. */
void ktest_run_death(const char *name);
/* Run one case as the framework does, printing its diagnostics (used by the framework's own
 * tests on purpose-built failing cases). */
enum ktest_outcome ktest_run_case(const struct ktest_suite *s, const struct ktest_case *c);

#endif
