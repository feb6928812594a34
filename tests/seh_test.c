/* The kernel's try/except: real CPU faults and ExRaiseStatus land in the handler with the
 * right status and details, nesting and the ways out of a __try behave, and an exception
 * with no handler is bug check 0x1E. */
#include "kernel/ktest.h"
#include "kernel/faultcap.h"
#include "kernel/trap.h"
#include "tests/lib/expect.h"
#include "tests/lib/scratch.h"
#include "kernel/cpu.h"

/* A kernel address no page table maps, fresh for each case (in the never-mapped hole). */
static uint64_t unmapped_kva;

static int seh_init(struct ktest *t)
{
	(void)t;
	unmapped_kva = scratch_unmapped_kva(PAGE_SIZE) + 0x238;
	return 0;
}
#define NONCANONICAL 0x0000800000000000ull
#define CUSTOM_STATUS ((NTSTATUS)0xE0001234)

__attribute__((noinline)) static void write_u64(volatile uint64_t *p, uint64_t v) { *p = v; }
__attribute__((noinline)) static uint64_t read_u64(volatile uint64_t *p) { return *p; }
__attribute__((noinline)) static void fault_deep(int depth)
{
	if (depth)
		fault_deep(depth - 1);
	else
		write_u64((volatile uint64_t *)unmapped_kva, 1);
	__asm__ volatile("" ::: "memory"); /* keep the recursion a real call chain */
}

static void write_fault_lands_in_except(struct ktest *t)
{
	volatile int reached_after = 0, handled = 0;
	__try {
		write_u64((volatile uint64_t *)unmapped_kva, 0x1234);
		reached_after = 1;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		const EXCEPTION_RECORD *r = GetExceptionRecord();
		const struct trap_frame *f = GetExceptionTrapFrame();
		handled = 1;
		EXPECT_EQ(t, (ULONG)GetExceptionCode(), (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, r->NumberParameters, 2);
		EXPECT_EQ(t, r->ExceptionInformation[0], EXCEPTION_WRITE_FAULT);
		EXPECT_EQ(t, r->ExceptionInformation[1], unmapped_kva);
		ASSERT_TRUE(t, f != NULL);
		EXPECT_EQ(t, f->vector, VEC_PAGE_FAULT);
		EXPECT_EQ(t, f->error_code, PF_W);           /* not present, write, supervisor */
		EXPECT_EQ(t, f->cr2, unmapped_kva);
		EXPECT_EQ(t, (uint64_t)r->ExceptionAddress, f->rip);
	}
	EXPECT_TRUE(t, handled);
	EXPECT_FALSE(t, reached_after);
}

static void read_fault_reports_read_access(struct ktest *t)
{
	volatile int handled = 0;
	__try {
		read_u64((volatile uint64_t *)unmapped_kva);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		handled = 1;
		EXPECT_EQ(t, GetExceptionRecord()->ExceptionInformation[0], EXCEPTION_READ_FAULT);
		EXPECT_EQ(t, GetExceptionTrapFrame()->error_code, 0);
		EXPECT_EQ(t, GetExceptionTrapFrame()->cr2, unmapped_kva);
	}
	EXPECT_TRUE(t, handled);
}

static void fault_in_callee_unwinds_to_caller(struct ktest *t)
{
	volatile int handled = 0;
	uint64_t canary = 0x5EED5EED5EED5EEDull ^ (uint64_t)t; /* lives in a callee-saved register */
	__try {
		fault_deep(5);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		handled = 1;
		EXPECT_EQ(t, GetExceptionTrapFrame()->cr2, unmapped_kva);
	}
	EXPECT_TRUE(t, handled);
	EXPECT_EQ(t, canary, 0x5EED5EED5EED5EEDull ^ (uint64_t)t);
}

static void raise_status_custom(struct ktest *t)
{
	volatile int handled = 0;
	__try {
		ExRaiseStatus(CUSTOM_STATUS);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		handled = 1;
		EXPECT_EQ(t, (ULONG)GetExceptionCode(), (ULONG)CUSTOM_STATUS);
		EXPECT_EQ(t, GetExceptionRecord()->NumberParameters, 0);
		EXPECT_TRUE(t, GetExceptionTrapFrame() == NULL);
	}
	EXPECT_TRUE(t, handled);
}

static void nested_inner_handles_first(struct ktest *t)
{
	volatile int inner = 0, outer = 0, after_inner = 0;
	__try {
		__try {
			ExRaiseStatus(CUSTOM_STATUS);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			inner = 1;
		}
		after_inner = 1;
		/* An exception inside the outer block, after the inner one ended, goes outward. */
		read_u64((volatile uint64_t *)unmapped_kva);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		outer = 1;
		EXPECT_EQ(t, (ULONG)GetExceptionCode(), (ULONG)STATUS_ACCESS_VIOLATION);
	}
	EXPECT_TRUE(t, inner);
	EXPECT_TRUE(t, after_inner);
	EXPECT_TRUE(t, outer);
}

static void nested_continue_search_and_rethrow(struct ktest *t)
{
	volatile int inner_filter_seen = 0, outer = 0, from_handler = 0;
	__try {
		__try {
			ExRaiseStatus(CUSTOM_STATUS);
		} __except (inner_filter_seen = 1, EXCEPTION_CONTINUE_SEARCH) {
			KTEST_FAIL(t, "inner handler ran despite EXCEPTION_CONTINUE_SEARCH");
		}
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		outer = 1;
		EXPECT_EQ(t, (ULONG)GetExceptionCode(), (ULONG)CUSTOM_STATUS);
	}
	/* A fault inside a handler goes to the next enclosing __try. */
	__try {
		__try {
			ExRaiseStatus(CUSTOM_STATUS);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			write_u64((volatile uint64_t *)unmapped_kva, 2);
		}
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		from_handler = GetExceptionCode() == STATUS_ACCESS_VIOLATION;
	}
	EXPECT_TRUE(t, inner_filter_seen);
	EXPECT_TRUE(t, outer);
	EXPECT_TRUE(t, from_handler);
}

static int return_from_try(void)
{
	__try {
		return 7;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		return -1;
	}
	return 0;
}

static void leaving_try_unregisters_it(struct ktest *t)
{
	struct seh_frame *top = seh_top();
	EXPECT_EQ(t, return_from_try(), 7);
	EXPECT_TRUE(t, seh_top() == top);
	volatile int after_leave = 0;
	__try {
		__leave;
		after_leave = 1;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
	}
	EXPECT_FALSE(t, after_leave);
	EXPECT_TRUE(t, seh_top() == top);
	/* And an exception now, outside every __try of this case, still reaches the case's. */
	volatile int caught = 0;
	__try {
		ExRaiseStatus(CUSTOM_STATUS);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		caught = 1;
	}
	EXPECT_TRUE(t, caught);
}

static void other_cpu_faults_map_to_nt_status(struct ktest *t)
{
	volatile NTSTATUS st = 0;
	volatile uint64_t vec = 0;
	__try {
		read_u64((volatile uint64_t *)NONCANONICAL);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		vec = GetExceptionTrapFrame()->vector;
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, vec, 13); /* #GP */

	__try {
		__asm__ volatile("ud2");
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		vec = GetExceptionTrapFrame()->vector;
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ILLEGAL_INSTRUCTION);
	EXPECT_EQ(t, vec, 6);

	__try {
		uint64_t q, r;
		__asm__ volatile("divq %[d]" : "=a"(q), "=d"(r) : "a"(1ul), "d"(0ul), [d] "c"(0ul));
		(void)q, (void)r;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		vec = GetExceptionTrapFrame()->vector;
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_INTEGER_DIVIDE_BY_ZERO);
	EXPECT_EQ(t, vec, 0);
}

/* Death cases: what happens with no handler. */
/* 0x1E: exception code, the address of the faulting instruction (faultcap_store64's first
 * byte), the exception's parameters 0 (1: a write) and 1 (the address written). */
static void unhandled_fault_is_0x1e(struct ktest *t)
{
	expect_stop(t, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_ACCESS_VIOLATION, (ULONG_PTR)faultcap_store64,
		    EXCEPTION_WRITE_FAULT, unmapped_kva);
	faultcap_store64(unmapped_kva, 3);
}

/* One raise site, so a raise caught first tells where the uncaught one comes from. */
__attribute__((noinline)) static void raise_custom(void)
{
	ExRaiseStatus(CUSTOM_STATUS);
	__asm__ volatile("" ::: "memory"); /* a call, not a tail jump */
}

static ULONG_PTR raise_custom_address(struct ktest *t)
{
	volatile ULONG_PTR at = 0;
	__try {
		raise_custom();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		at = (ULONG_PTR)GetExceptionRecord()->ExceptionAddress;
	}
	EXPECT_NE(t, at, 0);
	return at;
}

/* A raise has no parameters: (code, address, 0, 0). */
static void unhandled_raise_is_0x1e(struct ktest *t)
{
	expect_stop(t, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)CUSTOM_STATUS, raise_custom_address(t), 0, 0);
	raise_custom();
}

/* The handler's EXCEPTION_CONTINUE_EXECUTION cannot be honoured: the new exception
 * STATUS_NONCONTINUABLE_EXCEPTION at the same address, which has no parameters. */
static void continue_execution_is_refused(struct ktest *t)
{
	expect_stop(t, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_NONCONTINUABLE_EXCEPTION,
		    raise_custom_address(t), 0, 0);
	__try {
		raise_custom();
	} __except (EXCEPTION_CONTINUE_EXECUTION) {
	}
}

/* ---- vectors that are never exceptions: their bug checks ---------------------------------- */

/* #NM (the FPU is always on, so only INT 7 raises it) is 0x7F with the trap number, the only
 * parameter Microsoft defines. */
static void device_not_available_is_0x7f(struct ktest *t)
{
	(void)t;
	__asm__ volatile("int $7");
}

/* An NMI is 0x80, for which Microsoft defines no parameters. */
static void nmi_is_0x80(struct ktest *t)
{
	(void)t;
	__asm__ volatile("int $2");
}

/* A #MC (here INT 18) is 0x9C with the x64 parameters: the first bank whose MCi_STATUS is
 * valid (else bank 0), the record of it, MCi_STATUS high and low. */
static void machine_check_is_0x9c(struct ktest *t)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	uint64_t banks = (d & (1u << 14)) ? (rdmsr(0x179) & 0xFF) : 0, bank = 0, status = 0;
	for (uint64_t i = 0; i < banks; i++) {
		uint64_t s = rdmsr(0x401 + 4 * (uint32_t)i);
		if (i == 0 || (s & (1ull << 63))) {
			bank = i;
			status = s;
		}
		if (s & (1ull << 63))
			break;
	}
	expect_stop(t, MACHINE_CHECK_EXCEPTION, bank, (ULONG_PTR)trap_mca_exception(), status >> 32,
		    status & 0xFFFFFFFF);
	__asm__ volatile("int $18");
}

static struct ktest_case seh_cases[] = {
	KTEST_CASE(write_fault_lands_in_except),
	KTEST_CASE(read_fault_reports_read_access),
	KTEST_CASE(fault_in_callee_unwinds_to_caller),
	KTEST_CASE(raise_status_custom),
	KTEST_CASE(nested_inner_handles_first),
	KTEST_CASE(nested_continue_search_and_rethrow),
	KTEST_CASE(leaving_try_unregisters_it),
	KTEST_CASE(other_cpu_faults_map_to_nt_status),
	KTEST_DEATH_CASE_P1(unhandled_fault_is_0x1e, KMODE_EXCEPTION_NOT_HANDLED, 0xC0000005),
	KTEST_DEATH_CASE_P1(unhandled_raise_is_0x1e, KMODE_EXCEPTION_NOT_HANDLED, 0xE0001234),
	KTEST_DEATH_CASE_P1(continue_execution_is_refused, KMODE_EXCEPTION_NOT_HANDLED, 0xC0000025),
	KTEST_DEATH_CASE_P1(device_not_available_is_0x7f, UNEXPECTED_KERNEL_MODE_TRAP, 7),
	KTEST_DEATH_CASE(nmi_is_0x80, NMI_HARDWARE_FAILURE),
	KTEST_DEATH_CASE(machine_check_is_0x9c, MACHINE_CHECK_EXCEPTION),
	{ 0 }
};
KTEST_SUITE(seh, seh_cases, .init = seh_init);
