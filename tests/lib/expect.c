/* Checks the suites share (see expect.h). */
#include "tests/lib/expect.h"
#include "kernel/seh.h"

void expect_write_refused(struct ktest *t, uint64_t va)
{
	struct faultcap f;
	uint8_t old = 0;
	EXPECT_TRUE(t, faultcap_try_load8(va, &old, &f));
	EXPECT_FALSE(t, faultcap_try_store8(va, old, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_WRITE_PROTECTION, va);
	EXPECT_EQ(t, f.rip, (uint64_t)faultcap_store8);
}

void expect_fetch_refused(struct ktest *t, uint64_t va)
{
	struct faultcap f;
	EXPECT_FALSE(t, faultcap_try_call(va, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_FETCH_PROTECTION, va);
	EXPECT_EQ(t, f.rip, va);
}

void expect_stop(struct ktest *t, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
	ktest_expect_stop(t, code, p1, p2, p3, p4, KTEST_P_ALL);
}

NTSTATUS expect_try_probe(PMDL m, KPROCESSOR_MODE mode, LOCK_OPERATION op, ULONG_PTR *info, unsigned n)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	for (unsigned i = 0; i < n; i++)
		info[i] = ~0ul;
	__try {
		MmProbeAndLockPages(m, mode, op);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		for (unsigned i = 0; i < n && i < GetExceptionRecord()->NumberParameters; i++)
			info[i] = GetExceptionRecord()->ExceptionInformation[i];
	}
	return st;
}
