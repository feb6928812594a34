/* Processes: ring 3 entered and left for real, system calls, user faults recorded with the
 * hardware's error code, and every frame given back at teardown. */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "tests/lib/pte.h"
#include "kernel/process.h"
#include "kernel/lib.h"
#include "mm/mmproc.h"
#include "mm/layout.h"
#include "mm/pt.h"

/* Run the agent with script s: it must end on a fault (STATUS_ACCESS_VIOLATION). */
static PEPROCESS run_to_fault(struct ktest *t, const struct agent_script *s)
{
	NTSTATUS st;
	PEPROCESS p = agent_run(s, 0, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	return p;
}

static void exit_status_comes_back(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_report(&s, 7, 0x1234);
	agent_exit(&s, 42);
	NTSTATUS st;
	PEPROCESS p = agent_run(&s, 0, &st);
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
	struct agent_script s;
	agent_begin(&s);
	agent_read64(&s, target);
	PEPROCESS p = run_to_fault(t, &s);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_U); /* 0x5: user read of a supervisor page */
	EXPECT_EQ(t, p->fault.address, target);
	PsDestroyProcess(p);
}

static void user_write_to_its_read_only_params_faults_0x7(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_write64(&s, USER_PARAMS_VA + 8, 1);
	PEPROCESS p = run_to_fault(t, &s);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_W | PF_U);
	EXPECT_EQ(t, p->fault.address, USER_PARAMS_VA + 8);
	PsDestroyProcess(p);
}

static void user_fetch_from_its_stack_faults_0x15(struct ktest *t)
{
	/* The parameter page is readable and NX: a call into it is an instruction fetch. */
	struct agent_script s;
	agent_begin(&s);
	agent_exec(&s, USER_PARAMS_VA);
	PEPROCESS p = run_to_fault(t, &s);
	EXPECT_EQ(t, p->fault.error_code, PF_P | PF_U | PF_ID);
	EXPECT_EQ(t, p->fault.address, USER_PARAMS_VA);
	PsDestroyProcess(p);
}

static void two_processes_have_separate_spaces(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_exit(&s, 1);
	PEPROCESS a = agent_create(&s, 0);
	PEPROCESS b = agent_create(&s, PROCESS_WOW64);
	ASSERT_TRUE(t, a && b);
	EXPECT_NE(t, a->mm.root.pml4, b->mm.root.pml4);
	/* The same user address, different frames; the same kernel half. */
	struct pt_query qa, qb;
	pt_query(&a->mm.root, USER_PARAMS_VA, &qa);
	pt_query(&b->mm.root, USER_PARAMS_VA, &qb);
	EXPECT_TRUE(t, qa.present && qb.present);
	EXPECT_NE(t, qa.pa, qb.pa);
	EXPECT_EQ(t, qa.entry[4] != 0, 1);
	pt_query(&a->mm.root, (uint64_t)&kernel_root, &qa);
	pt_query(&b->mm.root, (uint64_t)&kernel_root, &qb);
	EXPECT_EQ(t, qa.pa, qb.pa);
	EXPECT_TRUE(t, b->mm.highest_user <= 0x7FFEFFFF);
	EXPECT_EQ(t, (ULONG)PsRunProcess(a), 1);
	EXPECT_EQ(t, (ULONG)PsRunProcess(b), 1);
	PsDestroyProcess(a);
	PsDestroyProcess(b);
}

/* An ended process, for the attach cases. */
static PEPROCESS ended_process(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	agent_exit(&s, 0);
	NTSTATUS st;
	PEPROCESS p = agent_run(&s, 0, &st);
	ASSERT_TRUE(t, p != NULL);
	return p;
}

static void attaches_are_counted_and_nest(struct ktest *t)
{
	PEPROCESS p = ended_process(t);
	KAPC_STATE outer, inner;
	struct mm_process *before = mm_current();
	uint64_t cr3_before = read_cr3() & MMT_PTE_ADDR;
	EXPECT_EQ(t, p->attached, 0);
	KeStackAttachProcess(p, &outer);
	KeStackAttachProcess(p, &inner);
	EXPECT_EQ(t, p->attached, 2);
	EXPECT_TRUE(t, mm_current() == &p->mm);
	EXPECT_EQ(t, read_cr3() & MMT_PTE_ADDR, p->mm.root.pml4); /* the CPU really runs in it */
	KeUnstackDetachProcess(&inner);
	EXPECT_EQ(t, p->attached, 1);
	EXPECT_EQ(t, read_cr3() & MMT_PTE_ADDR, p->mm.root.pml4);
	KeUnstackDetachProcess(&outer);
	EXPECT_EQ(t, p->attached, 0);
	EXPECT_TRUE(t, mm_current() == before);
	EXPECT_EQ(t, read_cr3() & MMT_PTE_ADDR, cr3_before);
	PsDestroyProcess(p);
}

/* Destroying a process a CPU is still attached to would leave that CPU on a freed root:
 * refused (the check reads the process's count, so an attach on another CPU is refused the
 * same way).  The same process, not attached, is destroyed cleanly by the case above, so the
 * attach is what stops this one. */
static void destroying_a_process_still_attached_stops(struct ktest *t)
{
	PEPROCESS p = ended_process(t);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	/* That refusal and no other PANIC (a process not live, or running, is refused too). */
	ktest_expect_panic(t, "PsDestroyProcess: %s (pid %u) has 1 attaches not detached", p->name, p->pid);
	PsDestroyProcess(p);
	KTEST_FAIL(t, "PsDestroyProcess returned with an attach outstanding");
}

static struct ktest_case process_cases[] = {
	KTEST_CASE(attaches_are_counted_and_nest),
	KTEST_DEATH_CASE(destroying_a_process_still_attached_stops, MDLAB_INTERNAL_ERROR),
	KTEST_CASE(exit_status_comes_back),
	KTEST_CASE(user_read_of_kernel_address_faults_0x5),
	KTEST_CASE(user_write_to_its_read_only_params_faults_0x7),
	KTEST_CASE(user_fetch_from_its_stack_faults_0x15),
	KTEST_CASE(two_processes_have_separate_spaces),
	{ 0 }
};
KTEST_SUITE(process, process_cases);
