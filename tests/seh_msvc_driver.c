/*
 * Structured exception handling as MSVC compiles it, in driver code (this file goes through
 * scripts/seh_rewrite.py): try/except/finally and the underscored forms, __leave,
 * AbnormalTermination(), GetExceptionCode(), GetExceptionInformation(); break and continue out
 * of each kind of block reaching the enclosing loop or switch; __finally on every way out and
 * during an unwind, innermost first; filters before any __finally, innermost first; locals
 * changed inside __try read in __except without volatile, at -O2 (the kernel's flags).  Real
 * faults and ExRaiseStatus raise the exceptions.
 *
 * And user pointers inside __try (mm/RULES.md decision 8): a driver's __try opens the SMAP
 * window at its first access to a present user page and closes it on every way out; outside
 * a driver __try SMAP is enforced as before (a machine probe sees the fault, and driver code
 * with no __try around it stops the machine with 0x1E).  ProbeForRead and ProbeForWrite raise
 * what their pages say.
 */
#include "kernel/ktest.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pt.h"

#define STATUS_ONE ((NTSTATUS)0xE0000001)
#define STATUS_TWO ((NTSTATUS)0xE0000002)

static uint64_t bad_kva;

static int seh_msvc_init(struct ktest *t)
{
	(void)t;
	bad_kva = scratch_unmapped_kva(PAGE_SIZE) + 0x40;
	return 0;
}

/* What ran, in order: one letter per event. */
static char trail[64];
static int ntrail;
static void note(char c)
{
	if (ntrail < (int)sizeof trail - 1)
		trail[ntrail++] = c;
	trail[ntrail] = 0;
}
static void trail_reset(void) { ntrail = 0, trail[0] = 0; }
#define EXPECT_TRAIL(t, s)                                                                       \
	do {                                                                                     \
		if (strcmp(trail, (s)) != 0)                                                     \
			KTEST_FAIL((t), "trail '%s', expected '%s'", trail, (s));               \
	} while (0)

__attribute__((noinline)) static void touch(uint64_t va) { *(volatile uint64_t *)va = 1; }
static int raise_calls;
__attribute__((noinline)) static void raise_in(int depth, NTSTATUS st)
{
	raise_calls++;
	if (depth > 0)
		raise_in(depth - 1, st);
	if (depth == 0)
		ExRaiseStatus(st);
	__asm__ volatile("" ::: "memory");
}

/* ---- __finally on every way out --------------------------------------------------------- */

static void finally_runs_on_normal_exit_and_leave(struct ktest *t)
{
	int abnormal = -1, after = 0;
	trail_reset();
	__try {
		note('b');
	} __finally {
		abnormal = AbnormalTermination();
		note('f');
	}
	EXPECT_EQ(t, abnormal, 0);
	try {
		note('b');
		if (ntrail)
			__leave;
		after = 1;
	} finally {
		abnormal = _abnormal_termination();
		note('f');
	}
	EXPECT_EQ(t, abnormal, 0); /* __leave is a normal termination */
	EXPECT_EQ(t, after, 0);
	EXPECT_TRAIL(t, "bfbf");
}

static int finally_abnormal;
__attribute__((noinline)) static int returns_from_try(int v)
{
	__try {
		note('b');
		if (v > 0)
			return v * 2;
		note('x');
	} __finally {
		finally_abnormal = AbnormalTermination();
		note('f');
	}
	return -1;
}

__attribute__((noinline)) static PVOID returns_pointer_from_try(PVOID p)
{
	__try {
		return p;
	} __finally {
		note('f');
	}
	return NULL;
}

static void finally_runs_on_return(struct ktest *t)
{
	trail_reset();
	EXPECT_EQ(t, returns_from_try(21), 42);
	EXPECT_EQ(t, finally_abnormal, 1);
	EXPECT_EQ(t, returns_from_try(0), -1);
	EXPECT_EQ(t, finally_abnormal, 0);
	EXPECT_TRUE(t, returns_pointer_from_try(&trail) == &trail);
	EXPECT_TRAIL(t, "bfbxff");
}

static void finally_runs_on_goto_out(struct ktest *t)
{
	int abnormal = -1, after = 0;
	trail_reset();
	__try {
		note('b');
		goto out;
	} __finally {
		abnormal = AbnormalTermination();
		note('f');
	}
	after = 1;
out:
	note('o');
	EXPECT_EQ(t, abnormal, 1);
	EXPECT_EQ(t, after, 0);
	EXPECT_TRAIL(t, "bfo");
}

static void finally_runs_on_break_and_continue(struct ktest *t)
{
	int i, abnormal_sum = 0;
	trail_reset();
	for (i = 0; i < 10; i++) {
		__try {
			if (i == 1)
				continue;
			if (i == 3)
				break;
			note('0' + (char)i);
		} __finally {
			abnormal_sum += AbnormalTermination();
			note('f');
		}
		note('.');
	}
	EXPECT_EQ(t, i, 3);           /* break left the for loop, not only the __try */
	EXPECT_EQ(t, abnormal_sum, 2);
	/* i=0: body, finally, '.'; i=1: continue skipped the '.'; i=2 as 0; i=3: break */
	EXPECT_TRAIL(t, "0f.f2f.f");
}

/* ---- break and continue out of each kind of block ---------------------------------------- */

/* The case: break inside __except, in a switch case, leaves the switch. */
static void break_in_except_leaves_the_switch(struct ktest *t)
{
	int rounds = 0, after_try = 0, after_switch = 0;
	for (int i = 0; i < 3; i++) {
		rounds++;
		switch (i) {
		case 1:
			__try {
				touch(bad_kva);
			} __except (EXCEPTION_EXECUTE_HANDLER) {
				note('h');
				break;
			}
			after_try++; /* must not run: the break left the switch */
			break;
		default:
			break;
		}
		after_switch++;
	}
	EXPECT_EQ(t, rounds, 3);
	EXPECT_EQ(t, after_try, 0);
	EXPECT_EQ(t, after_switch, 3);
}

static void break_and_continue_in_try_reach_loop_and_switch(struct ktest *t)
{
	int n = 0, after = 0, sw_after = 0;
	/* continue in __try inside a switch inside a loop: the loop's next round */
	for (int i = 0; i < 4; i++) {
		switch (i & 1) {
		case 1:
			__try {
				if (i == 3)
					continue;
				n += 10;
			} __except (EXCEPTION_EXECUTE_HANDLER) {
				KTEST_FAIL(t, "no exception was raised");
			}
			break;
		default:
			__try {
				n++;
				break;  /* leaves the switch */
			} __except (EXCEPTION_EXECUTE_HANDLER) {
			}
			sw_after++;
		}
		after++;
	}
	EXPECT_EQ(t, n, 1 + 10 + 1);
	EXPECT_EQ(t, after, 3);
	EXPECT_EQ(t, sw_after, 0);
	/* while and do loops, break and continue from __try */
	int w = 0, k = 0;
	while (1) {
		try {
			if (++w == 5)
				break;
			if (w & 1)
				continue;
			k++;
		} except (EXCEPTION_EXECUTE_HANDLER) {
		}
	}
	EXPECT_EQ(t, w, 5);
	EXPECT_EQ(t, k, 2);
	int d = 0;
	do {
		__try {
			d++;
			continue;   /* to the condition, as in a plain do loop */
		} __except (EXCEPTION_EXECUTE_HANDLER) {
		}
		d += 100;
	} while (d < 3);
	EXPECT_EQ(t, d, 3);
}

static void continue_in_except_and_break_in_finally(struct ktest *t)
{
	int handled = 0, after = 0;
	for (int i = 0; i < 3; i++) {
		__try {
			raise_in(1, STATUS_ONE);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			handled++;
			continue;
		}
		after++;
	}
	EXPECT_EQ(t, handled, 3);
	EXPECT_EQ(t, after, 0);

	/* break in __except leaves a loop; continue in __except inside a switch reaches it */
	int rounds_b = 0, conts = 0, tail = 0;
	for (int i = 0; i < 5; i++) {
		rounds_b++;
		__try {
			raise_in(0, STATUS_ONE);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			break;
		}
		tail++;
	}
	for (int i = 0; i < 4; i++) {
		switch (i) {
		default:
			__try {
				touch(bad_kva);
			} __except (EXCEPTION_EXECUTE_HANDLER) {
				conts++;
				continue;
			}
		}
		tail++;
	}
	EXPECT_EQ(t, rounds_b, 1);
	EXPECT_EQ(t, conts, 4);
	EXPECT_EQ(t, tail, 0);

	int rounds = 0, after_finally = 0;
	for (int i = 0; i < 5; i++) {
		rounds++;
		__try {
			note('b');
		} __finally {
			if (i == 2)
				break;
			if (i == 0)
				continue;
		}
		after_finally++;
	}
	EXPECT_EQ(t, rounds, 3);
	EXPECT_EQ(t, after_finally, 1);

	/* break in __finally inside a switch leaves the switch */
	int sw = 0;
	switch (sw) {
	case 0:
		__try {
			sw = 1;
		} __finally {
			break;
		}
		sw = 2;
	}
	EXPECT_EQ(t, sw, 1);
}

/* A jump out of a __finally that an unwind is running ends the unwind there (NT's rule for a
 * termination handler left by a jump): the code after the jump runs, the handler does not. */
static void jump_out_of_finally_ends_the_unwind(struct ktest *t)
{
	int handled = 0, after = 0, rounds = 0, abnormal = -1;
	__try {
		for (int i = 0; i < 3; i++) {
			rounds++;
			__try {
				raise_in(0, STATUS_ONE);
			} __finally {
				abnormal = AbnormalTermination();
				break;
			}
		}
		after = 1;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		handled = 1;
	}
	EXPECT_EQ(t, rounds, 1);
	EXPECT_EQ(t, abnormal, 1);
	EXPECT_EQ(t, after, 1);
	EXPECT_EQ(t, handled, 0);
	/* The frames are as they were: a later exception finds this handler. */
	NTSTATUS st = 0;
	__try {
		raise_in(2, STATUS_TWO);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_TWO);
}

/* ---- the unwind: filters first, then every __finally innermost first ------------------------ */

static struct ktest *current;

__attribute__((noinline)) static void level2(void)
{
	__try {
		note('2');
		raise_in(3, STATUS_TWO);
		note('x');
	} __finally {
		EXPECT_EQ(current, AbnormalTermination(), 1);
		note('b');
	}
}

__attribute__((noinline)) static void level1(void)
{
	__try {
		note('1');
		__try {
			level2();
		} __except (note('i'), GetExceptionCode() == STATUS_ONE ? EXCEPTION_EXECUTE_HANDLER
									  : EXCEPTION_CONTINUE_SEARCH) {
			note('X');
		}
	} __finally {
		note('a');
	}
}

static void nested_unwind_runs_filters_then_every_finally_in_order(struct ktest *t)
{
	NTSTATUS st = 0;
	trail_reset();
	current = t;
	__try {
		level1();
	} __except (note('o'), GetExceptionCode() == STATUS_TWO ? EXCEPTION_EXECUTE_HANDLER
								  : EXCEPTION_CONTINUE_SEARCH) {
		st = GetExceptionCode();
		note('H');
	}
	/* inner filter (continue search), outer filter, then level2's and level1's __finally
	 * (innermost first), then the handler */
	EXPECT_TRAIL(t, "12iobaH");
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_TWO);
	EXPECT_TRUE(t, seh_top() != NULL); /* the framework's own frame, and only it */
}

/* The filters run over the stack below their frame, which is saved first and put back: a
 * __finally below them still finds its own memory as it was when it runs in the unwind. */
__attribute__((noinline)) static int stack_hungry_filter(int depth)
{
	volatile char buf[512];
	memset((char *)buf, 0xAA, sizeof buf);
	return depth > 0 ? stack_hungry_filter(depth - 1) + buf[depth] - (char)0xAA : EXCEPTION_EXECUTE_HANDLER;
}

__attribute__((noinline)) static void inner_with_finally(uint64_t *seen)
{
	uint64_t mine[8];
	for (int i = 0; i < 8; i++)
		mine[i] = 0xC0FFEE00 + (uint64_t)i;
	__asm__ volatile("" : : "r"(mine) : "memory");
	__try {
		touch(bad_kva);
	} __finally {
		uint64_t s = 0;
		for (int i = 0; i < 8; i++)
			s += mine[i];
		*seen = s;
	}
}

static void finally_after_the_filters_finds_its_frame_intact(struct ktest *t)
{
	uint64_t sum = 0;
	int handled = 0;
	__try {
		inner_with_finally(&sum);
	} __except (stack_hungry_filter(6)) {
		handled = 1;
	}
	EXPECT_EQ(t, handled, 1);
	EXPECT_EQ(t, sum, 8 * 0xC0FFEE00ull + 28);
}

/* ---- GetExceptionCode and GetExceptionInformation ---------------------------------------- */

static ULONG_PTR info_access, info_address, info_params;
static ULONG64 info_rip;
static PVOID info_ex_address;

static int record_info(PEXCEPTION_POINTERS ep)
{
	info_params = ep->ExceptionRecord->NumberParameters;
	info_access = ep->ExceptionRecord->ExceptionInformation[0];
	info_address = ep->ExceptionRecord->ExceptionInformation[1];
	info_rip = ep->ContextRecord->Rip;
	info_ex_address = ep->ExceptionRecord->ExceptionAddress;
	return ep->ExceptionRecord->ExceptionCode == STATUS_ACCESS_VIOLATION ? EXCEPTION_EXECUTE_HANDLER
									     : EXCEPTION_CONTINUE_SEARCH;
}

static void exception_code_and_information(struct ktest *t)
{
	NTSTATUS st = 0;
	__try {
		touch(bad_kva);
	} __except (record_info(GetExceptionInformation())) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, info_params, 2);
	EXPECT_EQ(t, info_access, EXCEPTION_WRITE_FAULT);
	EXPECT_EQ(t, info_address, bad_kva);
	EXPECT_EQ(t, info_rip, (ULONG64)info_ex_address);
	EXPECT_TRUE(t, info_rip >= (ULONG64)touch && info_rip < (ULONG64)touch + 64);
	/* A software raise: the code in the handler, and the raise's address in the record. */
	__try {
		ExRaiseStatus(STATUS_ONE);
	} __except (GetExceptionCode() == STATUS_ONE) {
		st = GetExceptionCode();
	}
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ONE);
}

/* ---- locals without volatile ------------------------------------------------------------ */

__attribute__((noinline)) static uint64_t work(uint64_t x) { return x * 3 + 1; }

static void locals_changed_in_try_are_read_in_except(struct ktest *t)
{
	int count = 0;
	uint64_t acc = 7, mixed = 0;
	PVOID ptr = NULL;
	char *cursor = (char *)trail;
	int a = 1, b = 2;
	__try {
		for (int i = 0; i < 5; i++) {
			count++;
			acc = work(acc);
		}
		ptr = &count;
		cursor += 3;
		b = 20;
		mixed = acc ^ 0x55;
		touch(bad_kva);      /* in a callee */
		count = 1000;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		EXPECT_EQ(t, count, 5);
		EXPECT_EQ(t, acc, 7ull * 243 + 121);
		EXPECT_TRUE(t, ptr == &count);
		EXPECT_TRUE(t, cursor == trail + 3);
		EXPECT_EQ(t, a + b, 21);
		EXPECT_EQ(t, mixed, acc ^ 0x55);
	}
	/* An aggregate assigned by member and element, and a scalar whose address is taken:
	 * kept in memory, not volatile (their types stay as the code uses them). */
	struct {
		int a;
		uint64_t b;
	} agg = { 0, 0 };
	ULONG arr[4] = { 0 };
	ULONG seen = 0;
	PULONG seen_p = &seen;
	__try {
		agg.a = 5;
		agg.b = work(3);
		arr[2] = 0x77;
		seen = 9;
		touch(bad_kva);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		EXPECT_EQ(t, agg.a, 5);
		EXPECT_EQ(t, agg.b, 10);
		EXPECT_EQ(t, arr[2], 0x77);
		EXPECT_EQ(t, *seen_p, 9);
	}
	/* A fault in the __try's own code, not a callee. */
	uint64_t v = 1;
	__try {
		v = 99;
		*(volatile uint64_t *)bad_kva = v;
		v = 5;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		EXPECT_EQ(t, v, 99);
		v = 100;
	}
	EXPECT_EQ(t, v, 100);
}

/* ---- user pointers inside __try --------------------------------------------------------- */

static const struct pt_attrs USER_RW = { .write = true, .user = true, .type = MT_WB };
static const struct pt_attrs USER_RO = { .user = true, .type = MT_WB };

/* One user page in the user half of the kernel's tables (no process needed). */
static bool map_user_page(struct ktest *t, uint64_t va, pfn_t *pfn, struct pt_attrs a, uint8_t first)
{
	return scratch_map_page(t, va, pfn, a, first);
}

static void unmap_user_page(uint64_t va, pfn_t pfn) { scratch_unmap_page(va, pfn); }

static int ac_now(void) { return (read_rflags() & RFLAGS_AC) != 0; }

/* SMAP enforced outside: the machine's probe (a frame with no window) sees SMAP's fault. */
static void expect_smap_enforced(struct ktest *t, uint64_t va)
{
	struct faultcap f;
	uint8_t b;
	EXPECT_FALSE(t, ac_now());
	EXPECT_FALSE(t, faultcap_try_load8(va, &b, &f));
	EXPECT_PAGE_FAULT(t, &f, PF_READ_PROTECTION, va);
}

static void user_access_in_try_opens_the_window_until_the_try_ends(struct ktest *t)
{
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP");
	ASSERT_TRUE(t, read_cr4() & CR4_SMAP);
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x2000;
	PUCHAR u = (PUCHAR)va;
	pfn_t pfn;
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, USER_RW, 0x77));
	expect_smap_enforced(t, va);

	/* Normal exit: read and write the user page, the window open after the first access. */
	int before = -1, inside = -1;
	UCHAR v = 0;
	__try {
		before = ac_now();
		v = u[0];
		inside = ac_now();
		u[1] = 0x99;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		KTEST_FAIL(t, "user access inside __try raised 0x%08x", (ULONG)GetExceptionCode());
	}
	EXPECT_EQ(t, before, 0);
	EXPECT_EQ(t, inside, 1);
	EXPECT_EQ(t, v, 0x77);
	EXPECT_EQ(t, ((uint8_t *)pfn_to_virt(pfn))[1], 0x99);
	expect_smap_enforced(t, va);

	/* Closed by an exception: the handler runs with the window shut. */
	int in_handler = -1;
	__try {
		v = u[0];
		touch(bad_kva);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		in_handler = ac_now();
	}
	EXPECT_EQ(t, in_handler, 0);
	expect_smap_enforced(t, va);

	/* Closed by break and by return out of the __try, and by a __finally's end. */
	for (int i = 0; i < 2; i++) {
		__try {
			v = u[2];
			break;
		} __finally {
			EXPECT_EQ(t, ac_now(), 0);
		}
	}
	expect_smap_enforced(t, va);

	/* An inner __try's window closes at the inner one's end, the outer's stays as it was. */
	int outer_after_inner = -1;
	__try {
		__try {
			v = u[3];
		} __except (EXCEPTION_EXECUTE_HANDLER) {
		}
		outer_after_inner = ac_now();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
	}
	EXPECT_EQ(t, outer_after_inner, 0);
	expect_smap_enforced(t, va);
	unmap_user_page(va, pfn);
}

/* The window lets through what SMAP alone refused, nothing else: a write to a read-only user
 * page inside __try is still an access violation, with the second fault's details. */
static void read_only_user_page_still_refuses_a_write(struct ktest *t)
{
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP");
	uint64_t va = scratch_uva(PAGE_SIZE, 0) + 0x1000;
	pfn_t pfn;
	ASSERT_TRUE(t, map_user_page(t, va, &pfn, USER_RO, 0x42));
	NTSTATUS st = 0;
	UCHAR v = 0;
	uint64_t err = 0, access = 9, address = 0;
	__try {
		v = *(volatile UCHAR *)va;
		*(volatile UCHAR *)(va + 8) = 1;
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		const struct trap_frame *f = GetExceptionTrapFrame();
		err = f ? f->error_code : 0;
		access = GetExceptionRecord()->ExceptionInformation[0];
		address = GetExceptionRecord()->ExceptionInformation[1];
	}
	EXPECT_EQ(t, v, 0x42);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, err, PF_WRITE_PROTECTION);
	EXPECT_EQ(t, access, EXCEPTION_WRITE_FAULT);
	EXPECT_EQ(t, address, va + 8);
	EXPECT_EQ(t, *(uint8_t *)pfn_to_virt(pfn), 0x42);
	expect_smap_enforced(t, va);
	unmap_user_page(va, pfn);
}

/* Driver code touching user memory with no __try around it: SMAP's fault, no handler, bug
 * check 0x1E (STATUS_ACCESS_VIOLATION, the RIP, a read, the address).  The read is
 * faultcap_load8's first instruction, so the RIP is known. */
#define DEATH_USER_VA (SCRATCH_USER_BASE + 0x7000)
static void user_access_outside_try_is_0x1e(struct ktest *t)
{
	pfn_t pfn;
	if (!cpu_features.smap || !map_user_page(t, DEATH_USER_VA, &pfn, USER_RW, 1))
		KeBugCheckEx(0xDEAD, 0, 0, 0, 0); /* not the expected stop: the case fails */
	faultcap_load8(DEATH_USER_VA);
}

static NTSTATUS probe_status(int which, uint64_t va, SIZE_T len, ULONG align, ULONG_PTR *info)
{
	NTSTATUS st = STATUS_SUCCESS;
	info[0] = info[1] = ~0ull;
	__try {
		if (which)
			ProbeForWrite((PVOID)va, len, align);
		else
			ProbeForRead((PVOID)va, len, align);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		info[0] = GetExceptionRecord()->ExceptionInformation[0];
		info[1] = GetExceptionRecord()->ExceptionInformation[1];
	}
	return st;
}

static void probe_for_read_and_write_raise_as_documented(struct ktest *t)
{
	ULONG_PTR info[2];
	const uint64_t kva = (uint64_t)&trail;
	for (int w = 0; w < 2; w++) {
		/* Length 0: nothing checked, whatever the address and alignment. */
		EXPECT_EQ(t, (ULONG)probe_status(w, kva + 1, 0, 8, info), (ULONG)STATUS_SUCCESS);
		/* Misaligned: the alignment is checked first. */
		EXPECT_EQ(t, (ULONG)probe_status(w, 0x10001, 4, 4, info), (ULONG)STATUS_DATATYPE_MISALIGNMENT);
		/* Not in the user part: NT's write to MM_USER_PROBE_ADDRESS. */
		EXPECT_EQ(t, (ULONG)probe_status(w, kva, 16, 1, info), (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, info[0], EXCEPTION_WRITE_FAULT);
		EXPECT_EQ(t, info[1], MM_USER_PROBE_ADDRESS);
		EXPECT_EQ(t, (ULONG)probe_status(w, MM_USER_PROBE_ADDRESS - 8, 16, 1, info),
			  (ULONG)STATUS_ACCESS_VIOLATION);
		/* Wrapping: NT's inline probe writes to MM_USER_PROBE_ADDRESS for this too. */
		EXPECT_EQ(t, (ULONG)probe_status(w, ~0ull - 7, 16, 1, info), (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, info[1], MM_USER_PROBE_ADDRESS);
	}
	/* In range: ProbeForRead checks nothing more; ProbeForWrite needs writable memory of the
	 * current process (none here). */
	EXPECT_EQ(t, (ULONG)probe_status(0, 0x10000, 16, 8, info), (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, (ULONG)probe_status(1, 0x10000, 16, 8, info), (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_EQ(t, info[1], 0x10000);
}

static struct ktest_case seh_msvc_cases[] = {
	KTEST_CASE(finally_runs_on_normal_exit_and_leave),
	KTEST_CASE(finally_runs_on_return),
	KTEST_CASE(finally_runs_on_goto_out),
	KTEST_CASE(finally_runs_on_break_and_continue),
	KTEST_CASE(break_in_except_leaves_the_switch),
	KTEST_CASE(break_and_continue_in_try_reach_loop_and_switch),
	KTEST_CASE(continue_in_except_and_break_in_finally),
	KTEST_CASE(jump_out_of_finally_ends_the_unwind),
	KTEST_CASE(nested_unwind_runs_filters_then_every_finally_in_order),
	KTEST_CASE(finally_after_the_filters_finds_its_frame_intact),
	KTEST_CASE(exception_code_and_information),
	KTEST_CASE(locals_changed_in_try_are_read_in_except),
	KTEST_CASE(user_access_in_try_opens_the_window_until_the_try_ends),
	KTEST_CASE(read_only_user_page_still_refuses_a_write),
	KTEST_DEATH_CASE_P(user_access_outside_try_is_0x1e, KMODE_EXCEPTION_NOT_HANDLED,
			   KTEST_P1 | KTEST_P2 | KTEST_P3 | KTEST_P4, 0xC0000005, (uint64_t)faultcap_load8,
			   EXCEPTION_READ_FAULT, DEATH_USER_VA),
	KTEST_CASE(probe_for_read_and_write_raise_as_documented),
	{ 0 }
};
KTEST_SUITE(seh_msvc, seh_msvc_cases, .init = seh_msvc_init);
