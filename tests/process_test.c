/* Processes: ring 3 entered and left for real, system calls, user faults recorded with the
 * hardware's error code, and every frame given back at teardown. */
#include "kernel/ktest.h"
#include "kernel/process.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/pt.h"

#define OP(i) (1 + (i) * AGENT_OP_SLOTS)

/* Run the agent with `nops` operations from ops[] (AGENT_OP_SLOTS values each). */
static PEPROCESS run_agent(uint32_t flags, const uint64_t *ops, uint32_t nops, NTSTATUS *st)
{
	uint64_t args[USER_PARAMS_ARGS] = { nops };
	memcpy(&args[1], ops, nops * AGENT_OP_SLOTS * sizeof(uint64_t));
	PEPROCESS p = PsCreateProcess("agent", flags, args, 1 + nops * AGENT_OP_SLOTS);
	if (!p)
		return NULL;
	*st = PsRunProcess(p);
	return p;
}

static void exit_status_comes_back(struct ktest *t)
{
	uint64_t ops[] = { AGENT_REPORT, 7, 0x1234, 0, 0, 0, AGENT_EXIT, 42, 0, 0, 0, 0 };
	NTSTATUS st;
	PEPROCESS p = run_agent(0, ops, 2, &st);
	ASSERT_TRUE(t, p != NULL);
	uint64_t v = 0;
	EXPECT_EQ(t, (ULONG)st, 42);
	EXPECT_TRUE(t, ps_report(p, 7, &v));
	EXPECT_EQ(t, v, 0x1234);
	EXPECT_FALSE(t, p->fault.happened);
	PsDestroyProcess(p);
}

static void user_read_of_kernel_address_faults_0x5(struct ktest *t)
{
	uint64_t target = (uint64_t)&kernel_root;
	uint64_t ops[] = { AGENT_READ64, target, 0, 0, 0, 0 };
	NTSTATUS st;
	PEPROCESS p = run_agent(0, ops, 1, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_U); /* 0x5: user read of a supervisor page */
	EXPECT_EQ(t, p->fault.address, target);
	PsDestroyProcess(p);
}

static void user_write_to_its_read_only_params_faults_0x7(struct ktest *t)
{
	uint64_t ops[] = { AGENT_WRITE64, USER_PARAMS_VA + 8, 1, 0, 0, 0 };
	NTSTATUS st;
	PEPROCESS p = run_agent(0, ops, 1, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_W | PF_U);
	EXPECT_EQ(t, p->fault.address, USER_PARAMS_VA + 8);
	PsDestroyProcess(p);
}

static void user_fetch_from_its_stack_faults_0x15(struct ktest *t)
{
	/* The parameter page is readable and NX: a call into it is an instruction fetch. */
	uint64_t ops[] = { AGENT_EXEC, USER_PARAMS_VA, 0, 0, 0, 0 };
	NTSTATUS st;
	PEPROCESS p = run_agent(0, ops, 1, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_U | PF_ID);
	EXPECT_EQ(t, p->fault.address, USER_PARAMS_VA);
	PsDestroyProcess(p);
}

static void two_processes_have_separate_spaces(struct ktest *t)
{
	uint64_t ops[] = { AGENT_EXIT, 1, 0, 0, 0, 0 };
	uint64_t args[1 + AGENT_OP_SLOTS] = { 1 };
	memcpy(&args[1], ops, sizeof ops);
	PEPROCESS a = PsCreateProcess("agent", 0, args, 1 + AGENT_OP_SLOTS);
	PEPROCESS b = PsCreateProcess("agent", PROCESS_WOW64, args, 1 + AGENT_OP_SLOTS);
	ASSERT_TRUE(t, a && b);
	EXPECT_NE(t, a->root.pml4, b->root.pml4);
	/* The same user address, different frames; the same kernel half. */
	struct pt_query qa, qb;
	pt_query(&a->root, USER_PARAMS_VA, &qa);
	pt_query(&b->root, USER_PARAMS_VA, &qb);
	EXPECT_TRUE(t, qa.present && qb.present);
	EXPECT_NE(t, qa.pa, qb.pa);
	EXPECT_EQ(t, qa.entry[4] != 0, 1);
	pt_query(&a->root, (uint64_t)&kernel_root, &qa);
	pt_query(&b->root, (uint64_t)&kernel_root, &qb);
	EXPECT_EQ(t, qa.pa, qb.pa);
	EXPECT_TRUE(t, b->highest_user <= 0x7FFEFFFF);
	EXPECT_EQ(t, (ULONG)PsRunProcess(a), 1);
	EXPECT_EQ(t, (ULONG)PsRunProcess(b), 1);
	PsDestroyProcess(a);
	PsDestroyProcess(b);
}

static struct ktest_case process_cases[] = {
	KTEST_CASE(exit_status_comes_back),
	KTEST_CASE(user_read_of_kernel_address_faults_0x5),
	KTEST_CASE(user_write_to_its_read_only_params_faults_0x7),
	KTEST_CASE(user_fetch_from_its_stack_faults_0x15),
	KTEST_CASE(two_processes_have_separate_spaces),
	{ 0 }
};
KTEST_SUITE(process, process_cases);
