/* System calls from ring 3 against the boundary's rules (mm/RULES.md, "The ring-3 boundary"):
 * every output is probed before the call changes anything.  The state is read from the VADs
 * and the real page tables, and proven by ring-3 accesses. */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"

#define P PAGE_SIZE
/* A region the agent allocates or asks for, and a writable page for in/out values. */
#define REGION 0x30000000ul
#define SCRATCH 0x40000000ul

/* Whether va is mapped in p's tables, and writable there (RW at every level). */
static bool user_present(PEPROCESS p, uint64_t va, bool *write)
{
	struct pt_query q;
	pt_query(&p->mm.root, va, &q);
	bool w = true;
	for (int level = 4; level >= 1; level--) {
		uint64_t e = q.entry[level];
		if (!(e & MMT_PTE_P))
			return false;
		w &= (e & MMT_PTE_RW) != 0;
		if (level == 1 || (level < 4 && (e & MMT_PTE_PS)))
			break;
	}
	*write = w;
	return true;
}

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

/* SYS_FREE_VM with an unwritable RegionSize: the region stays. */
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
	PsDestroyProcess(p);
}

static struct ktest_case syscall_cases[] = {
	KTEST_CASE(allocate_with_unwritable_outputs_reserves_nothing),
	KTEST_CASE(protect_with_unwritable_old_protection_changes_nothing),
	KTEST_CASE(free_with_unwritable_outputs_frees_nothing),
	{ 0 }
};
KTEST_SUITE(syscall, syscall_cases);
