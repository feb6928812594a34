/* The fuzzer: a seeded run of random system calls and IOCTLs with hostile pointers and
 * lengths (the parameters and memory layout: FUZZ_* in syscalls.h).  Every call must come
 * back with a status; the kernel test that runs it checks the kernel's state afterwards.
 *
 * The pointers it passes come from a fixed set of kinds (NULL, kernel addresses,
 * non-canonical ones, ranges straddling the top of the user range, unmapped, reserved-only
 * and read-only pages, the parameter page, a NoWrite view, its own cells); the addresses its
 * VM calls act on never include its own image, stack or cells, so it survives its own calls. */
#include <stdbool.h>
#include "user/user.h"

long main(void);

static uint64_t rng;

/* xorshift64* (Marsaglia; Vigna's multiplier). */
static uint64_t next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1Dull;
}

static uint64_t below(uint64_t n) { return next() % n; }

static uint64_t arg[FUZZ_NARGS];
static uint64_t handle;
static uint64_t random_reports;
static uint64_t ok[SYS_COUNT];

#define CELLS 64 /* 8-byte cells at FUZZ_CELLS_VA; the next page holds printable text */
#define TEXT_VA (FUZZ_CELLS_VA + 0x1000)

/* A pointer a system call will read or write through. */
static uint64_t hostile_pointer(void)
{
	uint64_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(22)) {
	case 0: return 0;
	case 1: return 1 + below(0xFFFF);                         /* the never-mapped low 64 KiB */
	case 2: return arg[FUZZ_POOL] + below(0x1000);             /* kernel pool */
	case 3: return arg[FUZZ_KIMAGE];                           /* the kernel image */
	case 4: return 0xFFFF800000000000ull + below(1ull << 30);  /* the direct map */
	case 5: return 0x0000800000000000ull - below(8);           /* just below the non-canonical hole */
	case 6: return 0x0000800000000000ull + (below(1ull << 40) << 8); /* non-canonical */
	case 7: return top - below(8);                             /* straddling the user limit */
	case 8: return top + 1 + below(0x1000);                    /* just past it */
	case 9: return FUZZ_RO_VA + below(0x1000);                 /* read-only */
	case 10: return FUZZ_RESERVED_VA + below(0x1000);          /* reserved, not committed */
	case 11: return 0x50000000ull + (below(0x1000) << 12);     /* unmapped */
	case 12: return USER_PARAMS_VA + below(0x1000);            /* the read-only parameter page */
	case 13: return arg[FUZZ_VIEW] + below(arg[FUZZ_VIEW_SIZE]); /* the NoWrite view */
	case 14: return arg[FUZZ_VIEW] + arg[FUZZ_VIEW_SIZE] - below(8); /* straddling its end */
	case 15: return 0x400000ull + below(0x1000);               /* its own text: read-only */
	case 16: return ~0ull - below(0x1000);
	case 17: return TEXT_VA + below(0x100);                    /* printable text */
	case 18: return FUZZ_VICTIM_VA + below(FUZZ_VICTIM_SIZE);  /* its VM calls' region */
	default: return FUZZ_CELLS_VA + 8 * below(CELLS);          /* a cell: read-write */
	}
}

/* An address a VM call acts on: never the fuzzer's own image, stack, cells or text. */
static uint64_t hostile_target(void)
{
	uint64_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(13)) {
	case 0: return 0;
	case 1: return FUZZ_RO_VA + below(0x2000);
	case 2: return FUZZ_RESERVED_VA + below(0x2000);
	case 3: return USER_PARAMS_VA + below(0x2000);
	case 4: return arg[FUZZ_VIEW] + below(0x2000);
	case 5: return 0x50000000ull + (below(0x1000) << 12);
	case 6: return (top & ~0xFFFFull) + below(16) * 0x1000; /* the gap above the stack */
	case 7: return top + 1 + below(0x10000);
	case 8: return arg[FUZZ_POOL];
	case 9: return 0x0000800000000000ull + below(1ull << 40);
	case 10: return next();
	default: return FUZZ_VICTIM_VA + (below(FUZZ_VICTIM_SIZE) & ~(below(2) ? 0xFFFull : 0));
	}
}

static uint64_t hostile_length(void)
{
	switch (below(12)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 8;
	case 3: return 0x1000;
	case 4: return 0x1001;
	case 5: return 0x10000;
	case 6: return 0xFFFFFFFFull;
	case 7: return 0x80000000ull;
	case 8: return ~0ull;                    /* wraps any base */
	case 9: return 0x7FFFFFFFF000ull;        /* the whole user range */
	case 10: return 0x100000000ull | below(16); /* a ULONG truncates it */
	default: return below(0x20000);
	}
}

/* A length for a buffer at a hostile pointer: half the time a short one, which fits where
 * the pointer is valid (so the calls get past the probes), else any hostile length. */
static uint64_t buffer_length(void) { return below(2) ? 1 + below(64) : hostile_length(); }

/* A region size for a VM call: half the time a few pages, which the victim region has. */
static uint64_t vm_size(void) { return below(2) ? (1 + below(16)) * 0x1000 : hostile_length(); }

/* Half the time a page of the victim region, else any hostile target. */
static uint64_t vm_target(void)
{
	return below(2) ? FUZZ_VICTIM_VA + (below(FUZZ_VICTIM_SIZE / 0x1000) << 12) : hostile_target();
}

static uint32_t random_protect(void)
{
	static const uint32_t p[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x104, 0x204, 0x404, 0x0 };
	return below(4) ? p[below(sizeof p / sizeof p[0])] : (uint32_t)next();
}

static uint32_t random_type(void)
{
	static const uint32_t t[] = { MEM_COMMIT, MEM_RESERVE, MEM_COMMIT | MEM_RESERVE, MEM_DECOMMIT, MEM_RELEASE,
				      MEM_RELEASE | MEM_DECOMMIT, 0 };
	return below(4) ? t[below(sizeof t / sizeof t[0])] : (uint32_t)next();
}

/* A cell whose value is v: the pointer passed for an in/out value. */
static uint64_t cell_with(uint64_t v)
{
	uint64_t c = FUZZ_CELLS_VA + 8 * below(CELLS);
	*(volatile uint64_t *)c = v;
	return c;
}

/* An in/out pointer: usually a cell holding `v`, sometimes anything. */
static uint64_t inout(uint64_t v) { return below(3) ? cell_with(v) : hostile_pointer(); }

static uint64_t random_code(void)
{
	uint64_t m = below(4);
	switch (below(4)) {
	case 0:
	case 1: return arg[FUZZ_IOCTL0 + m];
	case 2: return (arg[FUZZ_IOCTL0 + m] & ~3ull) | below(4); /* the function, any method */
	default: return (uint32_t)next();
	}
}

/* METHOD_IN_DIRECT with an output the caller can only read: the system mapping of such a lock
 * is read-only (mm/RULES.md decision 9), so the sample driver's write through it is bug check
 * 0xBE, which ends the machine; the death tests io_sample.in_direct_read_only_output_stops_the_driver_write
 * and io_sample.in_direct_output_in_a_no_write_pool_view_stops_the_driver_write prove it.  The
 * fuzzer must survive its batches, and its VM calls make any page of its own read-only at
 * random, so an IN_DIRECT output is a cell (read-write for good) or an address the I/O
 * manager's probe refuses whatever the fuzzer did: NULL, the low 64 KiB, kernel addresses,
 * non-canonical ones and those past the user limit. */
static uint64_t in_direct_output(void)
{
	uint64_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(10)) {
	case 0: return 0;
	case 1: return 1 + below(0xFFFF);
	case 2: return arg[FUZZ_POOL] + below(0x1000);
	case 3: return arg[FUZZ_KIMAGE];
	case 4: return 0xFFFF800000000000ull + below(1ull << 30);
	case 5: return 0x0000800000000000ull + (below(1ull << 40) << 8);
	case 6: return top + 1 + below(0x1000);
	case 7: return ~0ull - below(0x1000);
	default: return FUZZ_CELLS_VA + 8 * below(CELLS);
	}
}

static long one_call(uint64_t *nr_out)
{
	/* IOCTLs a third of the time, the numbers (and three out-of-range draws) otherwise. */
	uint64_t nr = below(3) ? below(SYS_COUNT + 3) : SYS_DEVICE_IO_CONTROL;
	*nr_out = nr;
	switch (nr) {
	case SYS_EXIT:
		return syscall6(SYS_COUNT + (long)below(0x1000), (long)next(), (long)next(), 0, 0, 0, 0);
	case SYS_DEBUG_PRINT: {
		/* Long prints only of the text, so the log stays short. */
		uint64_t s = hostile_pointer(), len = below(8) ? below(8) : hostile_length();
		if (s >= FUZZ_CELLS_VA && s < TEXT_VA)
			s = TEXT_VA + below(0x100);
		return syscall6(nr, (long)s, (long)len, 0, 0, 0, 0);
	}
	case SYS_ALLOCATE_VM:
		return syscall6(nr, (long)inout(below(3) ? 0 : vm_target()), (long)inout(vm_size()),
				below(2) ? MEM_COMMIT | (below(2) ? MEM_RESERVE : 0) : random_type(),
				below(2) ? 0x04 : random_protect(), 0, 0);
	case SYS_FREE_VM: {
		bool release = below(2);
		return syscall6(nr, (long)inout(vm_target()), (long)inout(release ? 0 : vm_size()),
				below(2) ? (release ? MEM_RELEASE : MEM_DECOMMIT) : random_type(), 0, 0, 0);
	}
	case SYS_PROTECT_VM:
		return syscall6(nr, (long)inout(vm_target()), (long)inout(vm_size()),
				below(2) ? (below(2) ? 0x02 : 0x04) : random_protect(),
				(long)(below(2) ? cell_with(0) : below(2) ? hostile_pointer() : 0), 0, 0);
	case SYS_OPEN_DEVICE: {
		uint64_t name = below(2) ? TEXT_VA : hostile_pointer();
		if (!below(4))
			name = cell_with(arg[FUZZ_DEVICE]);
		uint64_t h = below(2) ? cell_with(0) : hostile_pointer();
		return syscall6(nr, (long)name, (long)h, 0, 0, 0, 0);
	}
	case SYS_DEVICE_IO_CONTROL: {
		uint64_t code = random_code(), out = (code & 3) == 1 ? in_direct_output() : hostile_pointer();
		uint64_t h = below(8) ? handle : next() % 16;
		/* (handle, code, in, out, in_len | out_len << 32, where IoStatus.Information goes):
		 * the byte count's pointer is NULL (not wanted), a cell, or hostile. */
		uint64_t out_len = buffer_length();
		/* An IN_DIRECT output in the cells stays in them: the lock covers every page of it. */
		if ((code & 3) == 1 && out >= FUZZ_CELLS_VA && out < FUZZ_CELLS_VA + 8 * CELLS)
			out_len = 1 + below(FUZZ_CELLS_VA + 8 * CELLS - out);
		uint64_t lens = (uint64_t)(uint32_t)buffer_length() | (uint64_t)(uint32_t)out_len << 32;
		uint64_t bytes = below(2) ? 0 : below(2) ? cell_with(0) : hostile_pointer();
		return syscall6(nr, (long)h, (long)code, (long)hostile_pointer(), (long)out, (long)lens, (long)bytes);
	}
	case SYS_UNMAP_VIEW:
		return syscall6(nr, (long)hostile_target(), 0, 0, 0, 0, 0);
	case SYS_REPORT:
		if (random_reports == FUZZ_RANDOM_REPORTS)
			return syscall6(SYS_COUNT, 0, 0, 0, 0, 0, 0);
		random_reports++;
		return syscall6(nr, (long)next(), (long)next(), 0, 0, 0, 0);
	default: {
		/* Out of range, and the upper half of RAX set on a valid number. */
		static const uint64_t bad[] = { SYS_COUNT, SYS_COUNT + 1, 0x7FFFFFFF, 0xFFFFFFFF, 1ull << 32 | SYS_ALLOCATE_VM,
						1ull << 63 | SYS_DEBUG_PRINT, ~0ull };
		return syscall6((long)bad[below(sizeof bad / sizeof bad[0])], (long)hostile_pointer(),
				(long)hostile_pointer(), (long)hostile_length(), 0, 0, 0);
	}
	}
}

/* SYSCALL from compatibility mode: a far jump (through an m16:32 operand) to the 32-bit
 * user code segment (0x1B), SYSCALL there.  The kernel ends the process (mm/RULES.md, "CPU
 * entry points").  Not LRET: QEMU's TCG pops its operands with supervisor accesses, which
 * SMAP refuses on the user stack (a #PF with error code 1 in ring 3). */
__attribute__((noreturn)) static void compat_syscall(void)
{
	__asm__ volatile("ljmpl *3f(%%rip)\n"
			 "3:\t.long 1f\n\t"
			 ".word 0x1b\n"
			 ".code32\n"
			 "1:\tmovl $8, %%eax\n\t"
			 "syscall\n"
			 "2:\tjmp 2b\n\t"
			 ".code64"
			 ::: "rax", "memory");
	__builtin_unreachable();
}

static long setup(void)
{
	const struct user_params *p = params();
	if (p->magic != USER_PARAMS_MAGIC || p->nargs < FUZZ_NARGS)
		return 1;
	for (unsigned i = 0; i < FUZZ_NARGS; i++)
		arg[i] = p->args[i];
	rng = arg[FUZZ_SEED] ? arg[FUZZ_SEED] : 1;
	void *b = (void *)FUZZ_CELLS_VA;
	size_t s = 0x10000;
	if (NtAllocateVirtualMemory(&b, &s, MEM_RESERVE | MEM_COMMIT, 0x04))
		return 2;
	for (unsigned i = 0; i < 0x100; i++)
		((volatile char *)TEXT_VA)[i] = (char)('a' + i % 26);
	((volatile char *)TEXT_VA)[0x100] = 0;
	b = (void *)FUZZ_RO_VA;
	s = 0x10000;
	uint32_t old;
	if (NtAllocateVirtualMemory(&b, &s, MEM_RESERVE | MEM_COMMIT, 0x04))
		return 3;
	*(volatile uint64_t *)FUZZ_RO_VA = 0x524F; /* resident */
	s = 0x10000;
	if (NtProtectVirtualMemory(&b, &s, 0x02, &old))
		return 4;
	b = (void *)FUZZ_RESERVED_VA;
	s = 0x10000;
	if (NtAllocateVirtualMemory(&b, &s, MEM_RESERVE, 0x04))
		return 5;
	b = (void *)FUZZ_VICTIM_VA;
	s = FUZZ_VICTIM_SIZE;
	if (NtAllocateVirtualMemory(&b, &s, MEM_RESERVE | MEM_COMMIT, 0x04))
		return 6;
	char name[9];
	for (int k = 0; k < 8; k++)
		name[k] = (char)(arg[FUZZ_DEVICE] >> (8 * k));
	name[8] = 0;
	if (NtOpenDevice(name, &handle))
		return 7;
	return 0;
}

long main(void)
{
	long st = setup();
	if (st)
		return (long)FUZZ_SETUP_FAILED + st;
	uint64_t n = arg[FUZZ_CALLS];
	for (uint64_t i = 0; i < n; i++) {
		uint64_t nr;
		if (one_call(&nr) == 0 && nr < SYS_COUNT)
			ok[nr]++;
	}
	for (unsigned nr = 1; nr < SYS_COUNT; nr++)
		report(FUZZ_KEY_OK + nr, ok[nr]);
	if (arg[FUZZ_FLAGS] & FUZZ_COMPAT_END)
		compat_syscall();
	return (long)n;
}
