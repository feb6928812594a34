/* System calls from ring 3 against the boundary's rules (mm/RULES.md, "The ring-3 boundary"):
 * every output is probed before the call changes anything, and what a process prints is
 * marked as its own.  The state is read from the VADs
 * and the real page tables, and proven by ring-3 accesses. */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/syscall.h"
#include "mm/layout.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"

#define P PAGE_SIZE
/* A region the agent allocates or asks for, and a writable page for in/out values. */
#define REGION 0x30000000ul
#define SCRATCH 0x40000000ul

/* Whether va is mapped in p's tables, and writable there (RW at every level). */
static bool user_present(PEPROCESS p, uint64_t va, bool *write) { return mmt_present_in(&p->mm.root, va, write); }

/* SYS_ALLOCATE_VM whose BaseAddress and RegionSize live in the read-only parameter page: the
 * probe refuses them, and no range is reserved at the address asked for. */
static void allocate_with_unwritable_outputs_reserves_nothing(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	uint32_t call = agent_syscall(&s, SYS_ALLOCATE_VM, 0, 0, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_exit(&s, 0);
	uint32_t data = agent_report(&s, REGION, 0x10000); /* a: BaseAddress, b: RegionSize */
	s.args[1 + call * AGENT_OP_SLOTS + 2] = agent_slot_va(data, 1);
	s.args[1 + call * AGENT_OP_SLOTS + 3] = agent_slot_va(data, 2);
	uint64_t vads = 0;
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)(uint32_t)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, vad_find(&p->mm, REGION) == NULL);
	bool w;
	EXPECT_FALSE(t, user_present(p, REGION, &w));
	vads = vad_count(&p->mm);
	PsDestroyProcess(p);

	/* The same with a writable BaseAddress and only RegionSize read-only; and the control:
	 * both writable, the region appears (one VAD more). */
	for (int control = 0; control < 2; control++) {
		agent_begin(&s);
		agent_alloc(&s, SCRATCH, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		agent_write64(&s, SCRATCH, REGION);
		agent_write64(&s, SCRATCH + 8, 0x10000);
		call = agent_syscall(&s, SYS_ALLOCATE_VM, SCRATCH, 0, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		uint32_t rb = agent_read64(&s, SCRATCH);
		agent_exit(&s, 0);
		data = agent_report(&s, 0, 0x10000);
		s.args[1 + call * AGENT_OP_SLOTS + 3] = control ? SCRATCH + 8 : agent_slot_va(data, 2);
		p = agent_run_clean(t, &s);
		ASSERT_TRUE(t, p != NULL);
		if (control) {
			EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)STATUS_SUCCESS);
			EXPECT_EQ(t, agent_result(t, p, rb, 0), REGION);
			EXPECT_TRUE(t, vad_find(&p->mm, REGION) != NULL);
			EXPECT_EQ(t, vad_count(&p->mm), vads + 2); /* SCRATCH and REGION */
		} else {
			EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)(uint32_t)STATUS_ACCESS_VIOLATION);
			EXPECT_TRUE(t, vad_find(&p->mm, REGION) == NULL);
			EXPECT_EQ(t, vad_count(&p->mm), vads + 1); /* SCRATCH alone */
		}
		PsDestroyProcess(p);
	}
}

/* SYS_PROTECT_VM with an unwritable OldProtect (the parameter page, a kernel address): the
 * protection stays read-write in the real PTE, and the agent's write after it works. */
static void protect_with_unwritable_old_protection_changes_nothing(struct ktest *t)
{
	const uint64_t bad_old[] = { 0, (uint64_t)&kernel_root, USER_VA_END - 8 };
	for (size_t i = 0; i < ARRAY_SIZE(bad_old); i++) {
		struct agent_script s;
		agent_begin(&s);
		agent_alloc(&s, REGION, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		agent_write64(&s, REGION, 1); /* resident and writable */
		agent_alloc(&s, SCRATCH, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		agent_write64(&s, SCRATCH, REGION);
		agent_write64(&s, SCRATCH + 8, P);
		uint32_t call = agent_syscall(&s, SYS_PROTECT_VM, SCRATCH, SCRATCH + 8, PAGE_READONLY, 0);
		agent_write64(&s, REGION, 2); /* faults if the protection changed */
		agent_exit(&s, 0);
		uint32_t data = agent_report(&s, 0, 0);
		s.args[1 + call * AGENT_OP_SLOTS + 5] = bad_old[i] ? bad_old[i] : agent_slot_va(data, 1);
		PEPROCESS p = agent_run_clean(t, &s);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)(uint32_t)STATUS_ACCESS_VIOLATION);
		bool w = false;
		EXPECT_TRUE(t, user_present(p, REGION, &w));
		EXPECT_TRUE(t, w);
		PsDestroyProcess(p);
	}
}

/* SYS_FREE_VM with an unwritable RegionSize: the region stays, in the VADs and the PTEs. */
static void free_with_unwritable_outputs_frees_nothing(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, REGION, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_alloc(&s, SCRATCH, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_write64(&s, SCRATCH, REGION);
	uint32_t call = agent_syscall(&s, SYS_FREE_VM, SCRATCH, 0, MEM_RELEASE, 0);
	agent_write64(&s, REGION, 2); /* faults if it was freed */
	agent_exit(&s, 0);
	uint32_t data = agent_report(&s, 0, 0);
	s.args[1 + call * AGENT_OP_SLOTS + 3] = agent_slot_va(data, 1);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)(uint32_t)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, vad_find(&p->mm, REGION) != NULL);
	bool w = false;
	EXPECT_TRUE(t, user_present(p, REGION, &w)); /* still in the real tables, writable */
	EXPECT_TRUE(t, w);
	PsDestroyProcess(p);
}

/* A number no service has, the upper half of RAX included, is STATUS_INVALID_SYSTEM_SERVICE
 * and does nothing (a RAX of 2^32 + SYS_ALLOCATE_VM reserves nothing). */
static void unknown_numbers_are_invalid_system_services(struct ktest *t)
{
	const uint64_t numbers[] = { SYS_COUNT, SYS_COUNT + 1, 0x7FFFFFFF, 0xFFFFFFFF, 1ull << 32 | SYS_ALLOCATE_VM,
				     1ull << 63 | SYS_DEBUG_PRINT, ~0ull };
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, SCRATCH, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_write64(&s, SCRATCH, REGION);
	agent_write64(&s, SCRATCH + 8, 0x10000);
	uint32_t first = 0;
	for (size_t i = 0; i < ARRAY_SIZE(numbers); i++) {
		uint32_t op = agent_syscall(&s, numbers[i], SCRATCH, SCRATCH + 8, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		if (!i)
			first = op;
	}
	agent_exit(&s, 0);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	for (size_t i = 0; i < ARRAY_SIZE(numbers); i++)
		EXPECT_EQ(t, agent_result(t, p, first + (uint32_t)i, 0), (uint64_t)(uint32_t)STATUS_INVALID_SYSTEM_SERVICE);
	EXPECT_TRUE(t, vad_find(&p->mm, REGION) == NULL);
	PsDestroyProcess(p);
}

/* The escaping SYS_DEBUG_PRINT applies: nothing but printable ASCII leaves it as it is. */
static void user_text_is_escaped(struct ktest *t)
{
	static const char in[] = "ok\r\n\x1b[2K\\ \x7f\x00~";
	char out[4 * sizeof in + 1];
	size_t n = syscall_escape_user_text(out, in, sizeof in - 1);
	EXPECT_EQ(t, n, strlen(out));
	EXPECT_TRUE(t, strcmp(out, "ok\\x0d\\x0a\\x1b[2K\\x5c \\x7f\\x00~") == 0);
	for (size_t i = 0; i < n; i++)
		EXPECT_TRUE(t, out[i] >= 0x20 && out[i] < 0x7F);
}

/* A process prints every marker the harness reads (a STOP screen, KTAP results, a death
 * announcement and expectation, the done marker), with CRs and escapes to hide the line's
 * start, in the middle of a kernel line.  The kernel prints them as user lines, and this
 * case and the whole run keep their verdict: if the harness believed one line, make test
 * would report a bug check, a failed or unknown case, or a death test that never ran. */
static const char forged[] =
	"\r\x1b[2K*** STOP: 0x000000D1 (0x0000000000000000,0x0000000000000002,0x0000000000000000,"
	"0x0000000000000000)\n"
	"\rnot ok 1 forged\n"
	"# death-test: syscall.forged code=0x000000D1\n"
	"# death-expect: code=0x000000D1\n"
	"# mdlab: tests done";

static void user_output_cannot_forge_kernel_lines(struct ktest *t)
{
	/* One AGENT_WRITE64 per 8 bytes: each reports, and a process keeps PROCESS_REPORTS. */
	_Static_assert((sizeof forged + 7) / 8 + 2 <= PROCESS_REPORTS, "the forged text is too long");
	struct agent_script s;
	agent_begin(&s);
	agent_alloc(&s, SCRATCH, P, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	for (size_t i = 0; i < sizeof forged - 1; i += 8) {
		uint64_t w = 0;
		memcpy(&w, forged + i, MIN(8, sizeof forged - 1 - i));
		agent_write64(&s, SCRATCH + i, w);
	}
	uint32_t call = agent_syscall(&s, SYS_DEBUG_PRINT, SCRATCH, sizeof forged - 1, 0, 0);
	agent_exit(&s, 0);
	kprintf("a kernel line the process prints into: ");
	PEPROCESS p = agent_run_clean(t, &s);
	kprintf("(continued)\n");
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), (uint64_t)STATUS_SUCCESS);
	PsDestroyProcess(p);
}

static struct ktest_case syscall_cases[] = {
	KTEST_CASE(allocate_with_unwritable_outputs_reserves_nothing),
	KTEST_CASE(protect_with_unwritable_old_protection_changes_nothing),
	KTEST_CASE(free_with_unwritable_outputs_frees_nothing),
	KTEST_CASE(unknown_numbers_are_invalid_system_services),
	KTEST_CASE(user_text_is_escaped),
	KTEST_CASE(user_output_cannot_forge_kernel_lines),
	{ 0 }
};
KTEST_SUITE(ring3_syscall, syscall_cases);
