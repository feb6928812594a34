/* The ring-3 fuzzer (user/fuzz.c) in batches with fixed seeds: random system calls (every
 * number and out-of-range ones) and IOCTLs against the sample driver (all four methods, and
 * codes it does not know) with hostile pointers and lengths, from 64-bit and 32-bit
 * processes, some batches ending in a SYSCALL from compatibility mode, and from the 32-bit
 * fuzzer (user/fuzz32.c) in compatibility mode.  After each batch:
 * the process ended as it must, a kernel pool canary and a NoWrite view's page are unchanged,
 * the view is still read-only in the real page tables, the audits pass, and every accounting
 * counter is back where it was (mm/RULES.md, "The ring-3 boundary").
 *
 * Each batch prints its seed; `fuzz_seed=S` on the kernel command line (make test
 * KERNEL_ARGS=fuzz_seed=S) runs every batch with seed S instead, to replay one. */
#include "kernel/ktest.h"
#include "tests/ioctl_sample_driver.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/accounting.h"
#include "kernel/cmdline.h"
#include "kernel/cpufeat.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/audit.h"
#include "mm/layout.h"
#include "mm/pt.h"
#include "mm/vad.h"

#define FUZZ_TAG 0x7A7A7546u /* 'Fuzz' */
#define P PAGE_SIZE
#define VIEW_VA 0x20000000ul
#define VIEW_PAGES 2
#define CANARY 0xC5
#define VIEW_BYTE(i) ((uint8_t)(0x3C ^ (i)))
#define CALLS 700

/* The calls that succeeded, by number, over a case's batches. */
static uint64_t succeeded[SYS_COUNT];

struct batch {
	uint64_t seed;
	uint32_t flags;  /* PsCreateProcess: PROCESS_WOW64 */
	uint32_t fuzz;   /* FUZZ_COMPAT_END */
	uint32_t calls;
	const char *prog; /* NULL: "fuzz"; "fuzz32": the 32-bit fuzzer (user/fuzz32.c) */
};

/* Whether va is mapped in p's tables, and writable there (RW at every level). */
static bool user_present(PEPROCESS p, uint64_t va, bool *write) { return mmt_present_in(&p->mm.root, va, write); }

static NTSTATUS map_view(PMDL m, uint64_t *va)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile uint64_t got = 0;
	__try {
		got = (uint64_t)MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)VIEW_VA, FALSE,
							     NormalPagePriority | MdlMappingNoWrite);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*va = got;
	return st;
}

/* What a batch must end with: the number of calls, or the compatibility-mode SYSCALL's
 * status (#UD on Intel: mm/RULES.md, "CPU entry points"). */
static NTSTATUS expected_status(const struct batch *b)
{
	if (!(b->fuzz & FUZZ_COMPAT_END))
		return (NTSTATUS)b->calls;
	return strcmp(cpu_features.vendor, "GenuineIntel") ? STATUS_INVALID_SYSTEM_SERVICE : STATUS_ILLEGAL_INSTRUCTION;
}

static void run_batch(struct ktest *t, const struct batch *b)
{
	uint64_t seed = cmdline_get_u64("fuzz_seed", b->seed);
	const char *prog = b->prog ? b->prog : "fuzz";
	bool image32 = b->prog != NULL; /* an ELF32 image: a 32-bit process whatever the flags */
	kprintf("fuzz: seed 0x%lx, %u calls, %s process%s\n", seed, b->calls,
		image32 ? "32-bit image, compatibility-mode" : b->flags & PROCESS_WOW64 ? "32-bit" : "64-bit",
		b->fuzz & FUZZ_COMPAT_END ? ", compat-mode SYSCALL last" : "");
	struct accounting_snapshot before;
	accounting_snapshot(&before);

	uint8_t *canary = ExAllocatePool2(POOL_FLAG_NON_PAGED, P, FUZZ_TAG);
	uint8_t *src = ExAllocatePool2(POOL_FLAG_NON_PAGED, VIEW_PAGES * P, FUZZ_TAG);
	ASSERT_TRUE(t, canary && src);
	memset(canary, CANARY, P);
	for (size_t i = 0; i < VIEW_PAGES * P; i++)
		src[i] = VIEW_BYTE(i);
	PMDL m = IoAllocateMdl(src, VIEW_PAGES * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);

	uint64_t args[FUZZ_NARGS] = { 0 };
	args[FUZZ_SEED] = seed;
	args[FUZZ_CALLS] = b->calls;
	args[FUZZ_FLAGS] = b->fuzz;
	args[FUZZ_HIGHEST_USER] = image32 || (b->flags & PROCESS_WOW64) ? MM_USER_TOP_WOW64 : MM_USER_TOP_64;
	args[FUZZ_POOL] = (uint64_t)canary;
	args[FUZZ_KIMAGE] = (uint64_t)&kernel_root;
	args[FUZZ_VIEW] = VIEW_VA;
	args[FUZZ_VIEW_SIZE] = VIEW_PAGES * P;
	memcpy(&args[FUZZ_DEVICE], SIOCTL_DEVICE, MIN(sizeof SIOCTL_DEVICE, 8));
	args[FUZZ_IOCTL0 + METHOD_BUFFERED] = IOCTL_SIOCTL_METHOD_BUFFERED;
	args[FUZZ_IOCTL0 + METHOD_IN_DIRECT] = IOCTL_SIOCTL_METHOD_IN_DIRECT;
	args[FUZZ_IOCTL0 + METHOD_OUT_DIRECT] = IOCTL_SIOCTL_METHOD_OUT_DIRECT;
	args[FUZZ_IOCTL0 + METHOD_NEITHER] = IOCTL_SIOCTL_METHOD_NEITHER;
	PEPROCESS p = PsCreateProcess(prog, b->flags, args, FUZZ_NARGS);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, p->compat32, image32);
	EXPECT_EQ(t, p->mm.highest_user, args[FUZZ_HIGHEST_USER]);

	KAPC_STATE apc;
	uint64_t view = 0;
	KeStackAttachProcess(p, &apc);
	NTSTATUS st = map_view(m, &view);
	KeUnstackDetachProcess(&apc);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, view, VIEW_VA);

	st = PsRunProcess(p);
	EXPECT_EQ(t, (ULONG)st, (ULONG)expected_status(b));
	if ((b->fuzz & FUZZ_COMPAT_END) && st == STATUS_ILLEGAL_INSTRUCTION)
		p->fault.happened = false; /* Intel's #UD is the expected end */
	if (p->fault.happened)
		KTEST_FAIL(t, "the fuzzer faulted: vector %lu at rip 0x%lx, address 0x%lx, error code 0x%lx",
			   p->fault.vector, p->fault.rip, p->fault.address, p->fault.error_code);

	kprintf("fuzz: succeeded:");
	for (unsigned nr = 1; nr < SYS_COUNT; nr++) {
		uint64_t n = 0;
		EXPECT_TRUE(t, ps_report(p, FUZZ_KEY_OK + nr, &n));
		succeeded[nr] += n;
		kprintf(" %u:%lu", nr, n);
	}
	kprintf("\n");

	size_t bad = 0;
	for (size_t i = 0; i < P; i++)
		bad += canary[i] != CANARY;
	EXPECT_EQ(t, bad, 0);
	bad = 0;
	for (size_t i = 0; i < VIEW_PAGES * P; i++)
		bad += src[i] != VIEW_BYTE(i);
	EXPECT_EQ(t, bad, 0);
	struct vad *v = vad_find(&p->mm, VIEW_VA);
	bool still_mapped = v && v->kind == VAD_MDL && v->start == VIEW_VA;
	EXPECT_TRUE(t, still_mapped);
	for (unsigned i = 0; i < VIEW_PAGES; i++) {
		bool w = true;
		EXPECT_TRUE(t, user_present(p, VIEW_VA + i * P, &w));
		EXPECT_FALSE(t, w);
	}
	/* The audits, over the kernel's tables and the process's.  The frame-alias audit runs
	 * on the kernel's: through the direct map every process's image breaks it (issue 12,
	 * finding 3, fixed elsewhere). */
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_wx(&p->mm.root, true), 0);
	EXPECT_EQ(t, mm_audit_memtypes(&p->mm.root, true), 0);
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_wx_aliases(&kernel_root, true), 0);

	if (still_mapped) {
		KeStackAttachProcess(p, &apc);
		MmUnmapLockedPages((PVOID)VIEW_VA, m);
		KeUnstackDetachProcess(&apc);
	}
	PsDestroyProcess(p);
	IoFreeMdl(m);
	ExFreePoolWithTag(src, FUZZ_TAG);
	ExFreePoolWithTag(canary, FUZZ_TAG);
	EXPECT_EQ(t, accounting_report_changes(&before, "fuzz batch"), 0);
	if (t->failures)
		KTEST_FAIL(t, "replay: make test T='ring3_fuzz.*' KERNEL_ARGS=fuzz_seed=0x%lx", seed);
}

/* The batches, and proof the fuzzer got past the probes: over them, every call that can
 * succeed (a print, an allocation, a free, a protect, an open, an IOCTL) did at least once.
 * A fuzzer whose every call fails at the first check would test nothing. */
static void run_batches(struct ktest *t, const struct batch *b, size_t n)
{
	memset(succeeded, 0, sizeof succeeded);
	for (size_t i = 0; i < n && !t->failures; i++)
		run_batch(t, &b[i]);
	static const unsigned must[] = { SYS_DEBUG_PRINT, SYS_ALLOCATE_VM, SYS_FREE_VM, SYS_PROTECT_VM,
					 SYS_OPEN_DEVICE, SYS_DEVICE_IO_CONTROL };
	for (size_t i = 0; i < ARRAY_SIZE(must); i++)
		if (!succeeded[must[i]])
			KTEST_FAIL(t, "no call %u succeeded in these batches", must[i]);
}

static void fuzz_64_bit_processes(struct ktest *t)
{
	static const struct batch b[] = {
		{ 0x6D646C6162000001ull, 0, 0, CALLS, NULL },
		{ 0x0123456789ABCDEFull, 0, 0, CALLS, NULL },
		{ 0x00000000DEADBEEFull, 0, 0, CALLS, NULL },
	};
	run_batches(t, b, ARRAY_SIZE(b));
}

static void fuzz_32_bit_processes(struct ktest *t)
{
	static const struct batch b[] = {
		{ 0x6D646C6162000002ull, PROCESS_WOW64, 0, CALLS, NULL },
		{ 0x00000000C0FFEE11ull, PROCESS_WOW64, 0, CALLS, NULL },
	};
	run_batches(t, b, ARRAY_SIZE(b));
}

static void fuzz_then_compat_mode_syscall(struct ktest *t)
{
	static const struct batch b[] = {
		{ 0x6D646C6162000003ull, 0, FUZZ_COMPAT_END, CALLS / 2, NULL },
		{ 0x6D646C6162000004ull, PROCESS_WOW64, FUZZ_COMPAT_END, CALLS / 2, NULL },
	};
	run_batches(t, b, ARRAY_SIZE(b));
}

/* The 32-bit fuzzer (user/fuzz32.c): the same batches from a 32-bit program in compatibility
 * mode, every call through the compatibility-mode SYSCALL and its 32-bit layouts (the memory
 * calls' 4-byte BaseAddress and RegionSize, DeviceIoControl's EBP block), with hostile 32-bit
 * pointers and lengths, and the same checks after each batch.  SYSCALL from compatibility
 * mode is #UD on Intel CPUs (compat32's cases check it): skipped there. */
static void fuzz_32_bit_images_in_compatibility_mode(struct ktest *t)
{
	if (!strcmp(cpu_features.vendor, "GenuineIntel"))
		KTEST_SKIP(t, "SYSCALL from compatibility mode is #UD on Intel CPUs");
	static const struct batch b[] = {
		{ 0x6D646C6162000032ull, 0, 0, CALLS, "fuzz32" },
		{ 0x00000000FEEDFACEull, 0, 0, CALLS, "fuzz32" },
	};
	run_batches(t, b, ARRAY_SIZE(b));
}

static int fuzz_init(struct ktest *t)
{
	(void)t;
	return sioctl_load() != STATUS_SUCCESS;
}
static void fuzz_exit(struct ktest *t) { (void)t; sioctl_unload(); }

static struct ktest_case fuzz_cases[] = {
	KTEST_CASE(fuzz_64_bit_processes),
	KTEST_CASE(fuzz_32_bit_processes),
	KTEST_CASE(fuzz_then_compat_mode_syscall),
	KTEST_CASE(fuzz_32_bit_images_in_compatibility_mode),
	{ 0 }
};
KTEST_SUITE(ring3_fuzz, fuzz_cases, .init = fuzz_init, .exit = fuzz_exit);
