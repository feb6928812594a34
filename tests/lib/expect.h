/*
 * Checks the suites share: a fault as the CPU reported it (kernel/faultcap.h captures it),
 * an access the page tables must refuse, and the bug check a death case must end in.
 */
#ifndef TESTS_LIB_EXPECT_H
#define TESTS_LIB_EXPECT_H

#include <stdint.h>
#include "kernel/faultcap.h"
#include "kernel/ktest.h"
#include "kernel/trap.h"
#include "include/wdm.h"

/* #PF error codes of a kernel access (SDM Vol. 3, 4.7; x86-paging.md: P 0, W 1, I/D 4). */
#define PF_READ_NOT_PRESENT 0x0u
#define PF_WRITE_NOT_PRESENT PF_W
#define PF_READ_PROTECTION PF_P
#define PF_WRITE_PROTECTION (PF_P | PF_W)
#define PF_FETCH_PROTECTION (PF_P | PF_ID)

/* EXPECT a #PF with this exact error code and CR2 (a macro, so failures name the caller's
 * line). */
#define EXPECT_PAGE_FAULT(t, f, code, addr)                                 \
	do {                                                                \
		EXPECT_TRUE(t, (f)->faulted && (f)->from_cpu);              \
		EXPECT_EQ(t, (f)->vector, VEC_PAGE_FAULT);                  \
		EXPECT_EQ(t, (f)->error_code, (code));                      \
		EXPECT_EQ(t, (f)->cr2, (addr));                             \
	} while (0)

/* The byte at va reads, and a kernel write of the byte already there (so nothing changes
 * if the protection were missing) faults as a write to a read-only page, at the store. */
void expect_write_refused(struct ktest *t, uint64_t va);
/* A kernel call to va (a RET there) faults as a fetch from a no-execute page, RIP va. */
void expect_fetch_refused(struct ktest *t, uint64_t va);

/* A death case's run-time expectation of all four parameters (ktest_expect_stop with
 * KTEST_P_ALL). */
void expect_stop(struct ktest *t, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4);

/* MmProbeAndLockPages(m, mode, op) inside __try, in whatever address space and at whatever
 * IRQL the caller is: the exception's code (STATUS_SUCCESS when none), and its first `n`
 * ExceptionInformation words in info[] (~0 where it has fewer: an access violation gives
 * the access and the address, an in-page error also the device's status). */
NTSTATUS expect_try_probe(PMDL m, KPROCESSOR_MODE mode, LOCK_OPERATION op, ULONG_PTR *info, unsigned n);

#endif
