/* The 32-bit fuzzer: user/fuzz.c's seeded batches from a 32-bit program (-m32, ELF32), run in
 * IA-32e compatibility mode, whose system calls go through the compatibility-mode SYSCALL and
 * its 32-bit layouts (include/mdlab/compat32.h): random numbers and IOCTLs with hostile 32-bit
 * pointers and lengths.  Every call must come back with a status; the kernel test that runs it
 * (tests/fuzz_test.c) checks the kernel's state afterwards.
 *
 * A 32-bit register cannot hold a kernel address: its hostile pointers are those a 32-bit
 * program can make (NULL, the low 64 KiB, straddling and past the 32-bit limit 0x7FFEFFFF,
 * 2 GiB to 4 GiB, unmapped, reserved-only and read-only pages, the parameter page, a NoWrite
 * view, its own text and cells).  The addresses its VM calls act on never include its own
 * image, stack or cells, so it survives its own calls. */
#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/syscalls.h"

uint32_t syscall32(uint32_t n, uint32_t a, uint32_t b, uint32_t c, uint32_t d);
uint32_t syscall32_ioctl(uint32_t handle, uint32_t code, uint32_t in, uint32_t out, const uint32_t *rest);
int main(void);

#define MEM_COMMIT 0x1000u
#define MEM_RESERVE 0x2000u
#define MEM_DECOMMIT 0x4000u
#define MEM_RELEASE 0x8000u

static uint64_t rng;

/* xorshift64* (Marsaglia; Vigna's multiplier), as user/fuzz.c. */
static uint64_t next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1Dull;
}

/* 32-bit code has no 64-bit division (no libgcc): the high 32 bits of the draw, modulo n. */
static uint32_t below(uint32_t n) { return (uint32_t)(next() >> 32) % n; }
static uint32_t next32(void) { return (uint32_t)(next() >> 32); }

static uint32_t arg[FUZZ_NARGS];
static uint32_t handle;
static uint32_t random_reports;
static uint32_t ok[SYS_COUNT];
static uint32_t device[2]; /* the device's name, 8 characters packed little-endian (FUZZ_DEVICE) */

#define CELLS 64 /* 4-byte cells at FUZZ_CELLS_VA; the next page holds printable text */
#define TEXT_VA ((uint32_t)FUZZ_CELLS_VA + 0x1000)
#define CELLS_VA ((uint32_t)FUZZ_CELLS_VA)

static void report(uint32_t key, uint32_t value) { syscall32(SYS_REPORT, key, value, 0, 0); }

/* A pointer a system call will read or write through. */
static uint32_t hostile_pointer(void)
{
	uint32_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(18)) {
	case 0: return 0;
	case 1: return 1 + below(0xFFFF);                  /* the never-mapped low 64 KiB */
	case 2: return top - below(8);                     /* straddling the 32-bit limit */
	case 3: return top + 1 + below(0x1000);            /* just past it */
	case 4: return 0x80000000u + below(0x1000);        /* 2 GiB */
	case 5: return 0xFFFFFFFFu - below(0x1000);        /* the top of 4 GiB: wraps */
	case 6: return (uint32_t)FUZZ_RO_VA + below(0x1000);       /* read-only */
	case 7: return (uint32_t)FUZZ_RESERVED_VA + below(0x1000); /* reserved, not committed */
	case 8: return 0x50000000u + (below(0x1000) << 12);        /* unmapped */
	case 9: return (uint32_t)USER_PARAMS_VA + below(0x1000);   /* the read-only parameter page */
	case 10: return arg[FUZZ_VIEW] + below(arg[FUZZ_VIEW_SIZE]); /* the NoWrite view */
	case 11: return arg[FUZZ_VIEW] + arg[FUZZ_VIEW_SIZE] - below(8); /* straddling its end */
	case 12: return 0x400000u + below(0x1000);         /* its own text: read-only */
	case 13: return TEXT_VA + below(0x100);            /* printable text */
	case 14: return (uint32_t)FUZZ_VICTIM_VA + below((uint32_t)FUZZ_VICTIM_SIZE); /* its VM calls' region */
	case 15: return next32();
	default: return CELLS_VA + 4 * below(CELLS);       /* a cell: read-write */
	}
}

/* An address a VM call acts on: never the fuzzer's own image, stack, cells or text. */
static uint32_t hostile_target(void)
{
	uint32_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(12)) {
	case 0: return 0;
	case 1: return (uint32_t)FUZZ_RO_VA + below(0x2000);
	case 2: return (uint32_t)FUZZ_RESERVED_VA + below(0x2000);
	case 3: return (uint32_t)USER_PARAMS_VA + below(0x2000);
	case 4: return arg[FUZZ_VIEW] + below(0x2000);
	case 5: return 0x50000000u + (below(0x1000) << 12);
	case 6: return (top & ~0xFFFFu) + below(16) * 0x1000; /* the gap above the stack */
	case 7: return top + 1 + below(0x10000);
	case 8: return 0x80000000u + (below(0x10000) << 12);
	case 9: return 0xFFFF0000u + below(0x10000);
	default: return (uint32_t)FUZZ_VICTIM_VA + (below((uint32_t)FUZZ_VICTIM_SIZE) & ~(below(2) ? 0xFFFu : 0));
	}
}

static uint32_t hostile_length(void)
{
	switch (below(10)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 8;
	case 3: return 0x1000;
	case 4: return 0x1001;
	case 5: return 0x10000;
	case 6: return 0xFFFFFFFFu;  /* wraps any base */
	case 7: return 0x80000000u;
	case 8: return 0x7FFEF000u;  /* the whole 32-bit user range */
	default: return below(0x20000);
	}
}

/* Half the time a short length, which fits where the pointer is valid. */
static uint32_t buffer_length(void) { return below(2) ? 1 + below(64) : hostile_length(); }

/* A region size for a VM call: half the time a few pages, which the victim region has. */
static uint32_t vm_size(void) { return below(2) ? (1 + below(16)) * 0x1000 : hostile_length(); }

static uint32_t vm_target(void)
{
	return below(2) ? (uint32_t)FUZZ_VICTIM_VA + (below((uint32_t)FUZZ_VICTIM_SIZE / 0x1000) << 12) : hostile_target();
}

static uint32_t random_protect(void)
{
	static const uint32_t p[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x104, 0x204, 0x404, 0x0 };
	return below(4) ? p[below(sizeof p / sizeof p[0])] : next32();
}

static uint32_t random_type(void)
{
	static const uint32_t t[] = { MEM_COMMIT, MEM_RESERVE, MEM_COMMIT | MEM_RESERVE, MEM_DECOMMIT, MEM_RELEASE,
				      MEM_RELEASE | MEM_DECOMMIT, 0 };
	return below(4) ? t[below(sizeof t / sizeof t[0])] : next32();
}

/* A cell whose value is v: the pointer passed for a 32-bit in/out value. */
static uint32_t cell_with(uint32_t v)
{
	uint32_t c = CELLS_VA + 4 * below(CELLS);
	*(volatile uint32_t *)c = v;
	return c;
}

static uint32_t inout(uint32_t v) { return below(3) ? cell_with(v) : hostile_pointer(); }

/* The three-ULONG block DeviceIoControl's EBP points to (in_len, out_len, the address for
 * BytesReturned): cells, or a hostile pointer a quarter of the time when `may_be_hostile`. */
static uint32_t ioctl_rest(uint32_t in_len, uint32_t out_len, uint32_t bytes, bool may_be_hostile)
{
	if (may_be_hostile && !below(4))
		return hostile_pointer();
	uint32_t c = CELLS_VA + 4 * below(CELLS - 2);
	((volatile uint32_t *)c)[0] = in_len;
	((volatile uint32_t *)c)[1] = out_len;
	((volatile uint32_t *)c)[2] = bytes;
	return c;
}

static uint32_t random_code(void)
{
	uint32_t m = below(4);
	switch (below(4)) {
	case 0:
	case 1: return arg[FUZZ_IOCTL0 + m];
	case 2: return (arg[FUZZ_IOCTL0 + m] & ~3u) | below(4); /* the function, any method */
	default: return next32();
	}
}

/* METHOD_IN_DIRECT's output: a cell or an address the I/O manager's probe refuses whatever
 * the fuzzer did (user/fuzz.c's in_direct_output says why). */
static uint32_t in_direct_output(void)
{
	uint32_t top = arg[FUZZ_HIGHEST_USER];
	switch (below(7)) {
	case 0: return 0;
	case 1: return 1 + below(0xFFFF);
	case 2: return top + 1 + below(0x1000);
	case 3: return 0x80000000u + below(0x1000);
	case 4: return 0xFFFFFFFFu - below(0x1000);
	default: return CELLS_VA + 4 * below(CELLS);
	}
}

static uint32_t one_call(uint32_t *nr_out)
{
	/* IOCTLs a third of the time, the numbers (and three out-of-range draws) otherwise.
	 * SYS_CLOSE, SYS_READ_FILE and SYS_WRITE_FILE are left out, as the 64-bit fuzzer does. */
	uint32_t nr = below(3) ? below(SYS_COUNT + 3) : SYS_DEVICE_IO_CONTROL;
	*nr_out = nr;
	switch (nr) {
	case SYS_EXIT:
	case SYS_CLOSE:
	case SYS_READ_FILE:
	case SYS_WRITE_FILE:
		return syscall32(SYS_COUNT + below(0x1000), next32(), next32(), 0, 0);
	case SYS_DEBUG_PRINT: {
		uint32_t s = hostile_pointer(), len = below(8) ? below(8) : hostile_length();
		if (s >= CELLS_VA && s < TEXT_VA)
			s = TEXT_VA + below(0x100);
		return syscall32(nr, s, len, 0, 0);
	}
	case SYS_ALLOCATE_VM:
		return syscall32(nr, inout(below(3) ? 0 : vm_target()), inout(vm_size()),
				 below(2) ? MEM_COMMIT | (below(2) ? MEM_RESERVE : 0) : random_type(),
				 below(2) ? 0x04 : random_protect());
	case SYS_FREE_VM: {
		bool release = below(2);
		return syscall32(nr, inout(vm_target()), inout(release ? 0 : vm_size()),
				 below(2) ? (release ? MEM_RELEASE : MEM_DECOMMIT) : random_type(), 0);
	}
	case SYS_PROTECT_VM:
		return syscall32(nr, inout(vm_target()), inout(vm_size()), below(2) ? (below(2) ? 0x02 : 0x04) : random_protect(),
				 below(2) ? cell_with(0) : below(2) ? hostile_pointer() : 0);
	case SYS_OPEN_DEVICE: {
		uint32_t name = below(2) ? TEXT_VA : hostile_pointer();
		if (!below(4)) {
			name = CELLS_VA + 4 * below(CELLS - 2);
			((volatile uint32_t *)name)[0] = device[0];
			((volatile uint32_t *)name)[1] = device[1];
		}
		uint32_t h = below(2) ? cell_with(0) : hostile_pointer();
		return syscall32(nr, name, h, 0, 0);
	}
	case SYS_DEVICE_IO_CONTROL: {
		uint32_t code = random_code(), out = (code & 3) == 1 ? in_direct_output() : hostile_pointer();
		uint32_t h = below(8) ? handle : below(16);
		uint32_t out_len = buffer_length();
		/* An IN_DIRECT output in the cells stays in them: the lock covers every page of it. */
		if ((code & 3) == 1 && out >= CELLS_VA && out < CELLS_VA + 4 * CELLS)
			out_len = 1 + below(CELLS_VA + 4 * CELLS - out);
		uint32_t bytes = below(2) ? 0 : below(2) ? cell_with(0) : hostile_pointer();
		/* For IN_DIRECT the block is always cells: a hostile but readable one would give
		 * the output any length, past the cells into pages the fuzzer made read-only. */
		uint32_t rest = ioctl_rest(buffer_length(), out_len, bytes, (code & 3) != 1);
		return syscall32_ioctl(h, code, hostile_pointer(), out, (const uint32_t *)rest);
	}
	case SYS_UNMAP_VIEW:
		return syscall32(nr, hostile_target(), 0, 0, 0);
	case SYS_REPORT:
		if (random_reports == FUZZ_RANDOM_REPORTS)
			return syscall32(SYS_COUNT, 0, 0, 0, 0);
		random_reports++;
		return syscall32(nr, next32(), next32(), 0, 0);
	default: {
		static const uint32_t bad[] = { SYS_COUNT, SYS_COUNT + 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000u | SYS_ALLOCATE_VM };
		return syscall32(bad[below(sizeof bad / sizeof bad[0])], hostile_pointer(), hostile_pointer(),
				 hostile_length(), hostile_pointer());
	}
	}
}

/* A 32-bit allocation at a fixed address, RegionSize as asked. */
static uint32_t alloc(uint32_t base, uint32_t size, uint32_t type)
{
	volatile uint32_t b = base, s = size;
	return syscall32(SYS_ALLOCATE_VM, (uint32_t)&b, (uint32_t)&s, type, 0x04);
}

static uint32_t setup(void)
{
	const volatile struct user_params *p = (const void *)USER_PARAMS_VA;
	if (p->magic != USER_PARAMS_MAGIC || p->nargs < FUZZ_NARGS)
		return 1;
	for (unsigned i = 0; i < FUZZ_NARGS; i++)
		arg[i] = (uint32_t)p->args[i];
	device[0] = (uint32_t)p->args[FUZZ_DEVICE];
	device[1] = (uint32_t)(p->args[FUZZ_DEVICE] >> 32);
	rng = p->args[FUZZ_SEED] ? p->args[FUZZ_SEED] : 1;
	if (alloc(CELLS_VA, 0x10000, MEM_RESERVE | MEM_COMMIT))
		return 2;
	for (unsigned i = 0; i < 0x100; i++)
		((volatile char *)TEXT_VA)[i] = (char)('a' + i % 26);
	((volatile char *)TEXT_VA)[0x100] = 0;
	if (alloc((uint32_t)FUZZ_RO_VA, 0x10000, MEM_RESERVE | MEM_COMMIT))
		return 3;
	*(volatile uint32_t *)FUZZ_RO_VA = 0x524F; /* resident */
	volatile uint32_t b = (uint32_t)FUZZ_RO_VA, s = 0x10000, old;
	if (syscall32(SYS_PROTECT_VM, (uint32_t)&b, (uint32_t)&s, 0x02, (uint32_t)&old))
		return 4;
	if (alloc((uint32_t)FUZZ_RESERVED_VA, 0x10000, MEM_RESERVE))
		return 5;
	if (alloc((uint32_t)FUZZ_VICTIM_VA, (uint32_t)FUZZ_VICTIM_SIZE, MEM_RESERVE | MEM_COMMIT))
		return 6;
	volatile char name[9];
	for (int k = 0; k < 8; k++)
		name[k] = (char)(k < 4 ? device[0] >> (8 * k) : device[1] >> (8 * (k - 4)));
	name[8] = 0;
	volatile uint32_t h = 0;
	if (syscall32(SYS_OPEN_DEVICE, (uint32_t)name, (uint32_t)&h, 0, 0))
		return 7;
	handle = h;
	return 0;
}

int main(void)
{
	uint32_t st = setup();
	if (st)
		return (int)(FUZZ_SETUP_FAILED + st);
	uint32_t n = arg[FUZZ_CALLS];
	for (uint32_t i = 0; i < n; i++) {
		uint32_t nr;
		if (one_call(&nr) == 0 && nr < SYS_COUNT)
			ok[nr]++;
	}
	for (unsigned nr = 1; nr < SYS_COUNT; nr++)
		report(FUZZ_KEY_OK + nr, ok[nr]);
	return (int)n;
}
