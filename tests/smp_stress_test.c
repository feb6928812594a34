/*
 * Every CPU at once through the MDL and pool routines (mm/RULES.md, "Locks"): the boot CPU and
 * each AP (smp_work_start) pass a start barrier together, then each runs a seeded, bounded
 * loop of whole sequences on buffers of its own — probe and lock pool buffers and pages
 * allocated for an MDL, two system mappings of one buffer with a pattern written through one
 * and checked through the other, a protection change (a write through the read-only mapping
 * is a real #PF: vector, error code, CR2), a partial MDL, pages allocated with
 * each of three cache types (their direct-map aliases split and restored), reserved mappings,
 * pool churn — and every shared structure underneath (PFN database, system PTEs, pool, memory
 * types, the kernel's tables, reservations, the counters) is changed by all CPUs at once.
 *
 * The verdicts do not depend on timing: every pattern checked, every call's answer, the MDL
 * counters' deltas equal to the calls made (a lost update shows), the PFN database's own
 * audit and the page-table audits clean, and the ktest accounting (free pages, system PTEs,
 * pool bytes, locked pages) back where it started.
 *
 * Boot words: stress_rounds=N (rounds per CPU, default 24), stress_seed=S.
 *
 * User address spaces (mm/RULES.md, "Locks": the process address-space lock), two cases:
 * every CPU at once runs a ring-3 process of its own (faults, allocate, protect, free) and
 * then, attached to a second process, probes, locks, maps into user space, re-protects, unmaps
 * and frees its buffers with patterns checked through every mapping; and two CPUs work on ONE
 * address space at once, one running the process (its faults and VAD changes), the other
 * mapping and unmapping MDLs into it, after which its VAD tree is checked whole.  Both end
 * with the MDL user-mapping counters balanced, the PFN and page-table audits clean and the
 * accounting back where it started.
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "kernel/cmdline.h"
#include "kernel/cpu.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "mm/audit.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"
#include "tests/lib/agent.h"

#define STRESS_TAG 'srtS'
#define MAX_WORDS_CHECKED 64 /* per buffer: a sample spread over it, every page included */
#define LOCK_CYCLES 16       /* probe-and-unlock cycles of one buffer a round */

enum stress_op { OP_POOL_MDL, OP_PAGES_FOR_MDL, OP_RESERVED, OP_POOL_CHURN, OP_COUNT };

struct worker {
	unsigned cpu, rounds;
	uint64_t rng;
	/* What it did (the counters' expected deltas) and what it saw. */
	uint64_t ops[OP_COUNT], probes, maps, checks;
	unsigned failures, first_line;
	uint64_t first_got, first_want;
};

static struct {
	unsigned n;
	volatile uint32_t arrived, go;
	struct worker w[SMP_MAX_CPUS];
} run;

static uint64_t next(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

static void fail_at(struct worker *w, unsigned line, uint64_t got, uint64_t want)
{
	if (!w->failures++) {
		w->first_line = line;
		w->first_got = got;
		w->first_want = want;
	}
}
#define CHECK_EQ(w, got, want)                                                   \
	do {                                                                     \
		uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);            \
		if (g_ != w_)                                                    \
			fail_at((w), __LINE__, g_, w_);                          \
	} while (0)
#define CHECK_TRUE(w, cond) CHECK_EQ(w, !!(cond), 1)

/* The word a buffer holds at index i for pattern `p`: distinct per CPU, pattern and index. */
static uint64_t word(const struct worker *w, uint64_t p, uint64_t i)
{
	return (uint64_t)w->cpu << 56 ^ p << 32 ^ i * 0x9E3779B97F4A7C15ull;
}

static void fill(struct worker *w, volatile uint64_t *b, uint64_t bytes, uint64_t p)
{
	for (uint64_t i = 0; i < bytes / 8; i++)
		b[i] = word(w, p, i);
}

/* Check a sample of the words (always the first and last, and some of every page). */
static void check(struct worker *w, const volatile uint64_t *b, uint64_t bytes, uint64_t p, unsigned line)
{
	uint64_t n = bytes / 8, step = n > MAX_WORDS_CHECKED ? n / MAX_WORDS_CHECKED : 1;
	for (uint64_t i = 0; i < n; i += step) {
		w->checks++;
		if (b[i] != word(w, p, i))
			fail_at(w, line, b[i], word(w, p, i));
	}
	w->checks++;
	if (n && b[n - 1] != word(w, p, n - 1))
		fail_at(w, line, b[n - 1], word(w, p, n - 1));
}

/* A pool buffer, two MDLs over it, both probed and locked and mapped; a pattern written
 * through each mapping is read through the other and the pool address; one mapping made
 * read-only still reads what the other writes; a partial MDL of a slice maps the same bytes. */
static void op_pool_mdl(struct worker *w)
{
	uint64_t size = 8 + (next(w) % (3 * PAGE_SIZE)) / 8 * 8;
	uint64_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, STRESS_TAG);
	CHECK_TRUE(w, buf);
	if (!buf)
		return;
	fill(w, buf, size, 1);
	PMDL m1 = IoAllocateMdl(buf, (ULONG)size, FALSE, FALSE, NULL);
	PMDL m2 = IoAllocateMdl(buf, (ULONG)size, FALSE, FALSE, NULL);
	CHECK_TRUE(w, m1 && m2);
	if (!m1 || !m2)
		goto out;
	MmProbeAndLockPages(m1, KernelMode, IoWriteAccess);
	MmProbeAndLockPages(m2, KernelMode, IoWriteAccess);
	w->probes += 2;
	uint64_t *v1 = MmGetSystemAddressForMdlSafe(m1, NormalPagePriority | MdlMappingNoExecute);
	uint64_t *v2 = MmMapLockedPagesSpecifyCache(m2, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	w->maps += 2;
	CHECK_TRUE(w, v1 && v2);
	if (v1 && v2) {
		check(w, v2, size, 1, __LINE__);
		fill(w, v1, size, 2);
		check(w, v2, size, 2, __LINE__);
		check(w, buf, size, 2, __LINE__);
		CHECK_EQ(w, MmProtectMdlSystemAddress(m2, PAGE_READONLY), STATUS_SUCCESS);
		/* This CPU cached v2 writable (it read through it); the protect's own flush makes
		 * a write through it the fault of a present read-only page, at once. */
		struct faultcap fc;
		uint64_t at = (uint64_t)&v2[(size / 8) / 2];
		CHECK_EQ(w, faultcap_try_store64(at, 0, &fc), false);
		CHECK_EQ(w, fc.vector, VEC_PAGE_FAULT);
		CHECK_EQ(w, fc.error_code, PF_P | PF_W);
		CHECK_EQ(w, fc.cr2, at);
		fill(w, v1, size, 3);
		check(w, v2, size, 3, __LINE__);
		/* Locks and unlocks with no mapping, which send no shootdown: the PFN database and
		 * the kernel's tables under every CPU at once, many times a round. */
		PMDL m3 = IoAllocateMdl(buf, (ULONG)size, FALSE, FALSE, NULL);
		CHECK_TRUE(w, m3);
		for (unsigned k = 0; m3 && k < LOCK_CYCLES; k++) {
			MmProbeAndLockPages(m3, KernelMode, IoReadAccess);
			w->probes++;
			CHECK_EQ(w, MmGetMdlPfnArray(m3)[0], MmGetMdlPfnArray(m1)[0]);
			MmUnlockPages(m3);
		}
		if (m3)
			IoFreeMdl(m3);
		/* A slice of m1 through a partial MDL: it takes its address from m1's mapping. */
		uint64_t off = (next(w) % size) & ~7ull, len = 8 + ((next(w) % (size - off)) & ~7ull);
		if (off + len > size)
			len = size - off;
		PMDL part = IoAllocateMdl((uint8_t *)buf + off, (ULONG)len, FALSE, FALSE, NULL);
		CHECK_TRUE(w, part);
		if (part) {
			IoBuildPartialMdl(m1, part, (uint8_t *)buf + off, (ULONG)len);
			/* m1 is mapped: the partial takes its address from m1's mapping (rule 11),
			 * no mapping of its own. */
			uint64_t *vp = MmGetSystemAddressForMdlSafe(part, NormalPagePriority);
			CHECK_TRUE(w, vp);
			CHECK_EQ(w, (uint64_t)vp, (uint64_t)v1 + off);
			for (uint64_t i = 0; vp && i < len / 8; i += 1 + len / 8 / 16) {
				w->checks++;
				CHECK_EQ(w, vp[i], word(w, 3, off / 8 + i));
			}
			IoFreeMdl(part);
		}
		MmUnmapLockedPages(v2, m2);
	}
	MmUnlockPages(m2);
	MmUnlockPages(m1); /* releases m1's system mapping first (rule 8) */
	if (v1 && v2)
		check(w, buf, size, 3, __LINE__);
out:
	if (m1)
		IoFreeMdl(m1);
	if (m2)
		IoFreeMdl(m2);
	ExFreePoolWithTag(buf, STRESS_TAG);
}

/* Pages allocated for an MDL with a cache type (an untyped frame takes it at its first
 * mapping: its direct-map alias changes, split, and is restored at the free), mapped, written;
 * a probe of that mapping locks the same frames, and its own mapping reads the pattern. */
static void op_pages_for_mdl(struct worker *w)
{
	static const MEMORY_CACHING_TYPE types[] = { MmCached, MmNonCached, MmWriteCombined };
	MEMORY_CACHING_TYPE ct = types[next(w) % 3];
	uint64_t pages = 1 + next(w) % 8;
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, pages * PAGE_SIZE, ct, 0);
	CHECK_TRUE(w, m);
	if (!m)
		return;
	CHECK_EQ(w, MmGetMdlByteCount(m), pages * PAGE_SIZE);
	uint64_t bytes = MmGetMdlByteCount(m);
	uint64_t *va = MmMapLockedPagesSpecifyCache(m, KernelMode, ct, NULL, FALSE, HighPagePriority);
	w->maps++;
	CHECK_TRUE(w, va);
	if (va) {
		fill(w, va, bytes, 4);
		PMDL m3 = IoAllocateMdl(va, (ULONG)bytes, FALSE, FALSE, NULL);
		CHECK_TRUE(w, m3);
		if (m3) {
			MmProbeAndLockPages(m3, KernelMode, IoReadAccess);
			w->probes++;
			uint64_t *v3 = MmGetSystemAddressForMdlSafe(m3, NormalPagePriority);
			w->maps++;
			CHECK_TRUE(w, v3);
			if (v3)
				check(w, v3, bytes, 4, __LINE__);
			MmUnlockPages(m3);
			IoFreeMdl(m3);
		}
		MmUnmapLockedPages(va, m);
	}
	MmFreePagesFromMdl(m);
	ExFreePool(m);
}

/* A reservation of system PTEs, a locked pool buffer mapped into it and unmapped, the
 * reservation freed. */
static void op_reserved(struct worker *w)
{
	uint64_t pages = 1 + next(w) % 3, size = pages * PAGE_SIZE;
	uint64_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, STRESS_TAG);
	PMDL m = buf ? IoAllocateMdl(buf, (ULONG)size, FALSE, FALSE, NULL) : NULL;
	void *r = MmAllocateMappingAddress(size, STRESS_TAG);
	CHECK_TRUE(w, buf && m && r);
	if (buf && m && r) {
		fill(w, buf, size, 5);
		MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
		w->probes++;
		uint64_t *v = MmMapLockedPagesWithReservedMapping(r, STRESS_TAG, m, MmCached);
		CHECK_TRUE(w, v);
		if (v) {
			check(w, v, size, 5, __LINE__);
			fill(w, v, size, 6);
			check(w, buf, size, 6, __LINE__);
			MmUnmapReservedMapping(r, STRESS_TAG, m);
		}
		MmUnlockPages(m);
	}
	if (r)
		MmFreeMappingAddress(r, STRESS_TAG);
	if (m)
		IoFreeMdl(m);
	if (buf)
		ExFreePoolWithTag(buf, STRESS_TAG);
}

/* Up to eight pool blocks of any size (slabs and whole pages), each filled, all checked,
 * freed in an order of their own. */
static void op_pool_churn(struct worker *w)
{
	uint64_t *b[8], sz[8];
	unsigned n = 1 + next(w) % 8;
	for (unsigned i = 0; i < n; i++) {
		sz[i] = 8 + (next(w) % 6000) / 8 * 8;
		b[i] = ExAllocatePool2(next(w) & 1 ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED, sz[i], STRESS_TAG);
		CHECK_TRUE(w, b[i]);
		if (b[i])
			fill(w, b[i], sz[i], 7 + i);
	}
	unsigned first = next(w) % n;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (first + k) % n;
		if (!b[i])
			continue;
		check(w, b[i], sz[i], 7 + i, __LINE__);
		ExFreePoolWithTag(b[i], STRESS_TAG);
	}
}

static void work(struct worker *w)
{
	/* The start barrier: nobody begins before every CPU is here, so the loops overlap.
	 * Bounded: a CPU that never arrives leaves the others waiting SMP_WAIT_MS, no more. */
	if (__atomic_add_fetch(&run.arrived, 1, __ATOMIC_SEQ_CST) == run.n)
		__atomic_store_n(&run.go, 1, __ATOMIC_SEQ_CST);
	CHECK_TRUE(w, smp_wait_flag(&run.go));
	for (unsigned r = 0; r < w->rounds; r++) {
		enum stress_op op = (enum stress_op)(next(w) % OP_COUNT);
		w->ops[op]++;
		switch (op) {
		case OP_POOL_MDL: op_pool_mdl(w); break;
		case OP_PAGES_FOR_MDL: op_pages_for_mdl(w); break;
		case OP_RESERVED: op_reserved(w); break;
		default: op_pool_churn(w); break;
		}
	}
}

static void work_on_ap(void *arg) { work(arg); }

/* Worker c of run.w on CPU c, for every c below n, this CPU (0) among them; true when every
 * AP started and came back within its bounded wait (smp_work_wait). */
static bool run_everywhere(unsigned n, void (*fn)(void *))
{
	unsigned started = 1;
	for (unsigned c = 1; c < n; c++)
		started += smp_work_start(c, fn, &run.w[c]);
	if (started != n)
		return false;
	fn(&run.w[0]);
	bool back = true;
	for (unsigned c = 1; c < n; c++)
		back &= smp_work_wait(c);
	return back;
}

/* run's n workers, each with the rounds and its own seed derived from seed. */
static void setup_run(unsigned n, uint64_t rounds, uint64_t seed)
{
	memset(&run, 0, sizeof run);
	run.n = n;
	for (unsigned c = 0; c < n; c++) {
		run.w[c].cpu = c;
		run.w[c].rounds = (unsigned)rounds;
		run.w[c].rng = (seed ^ (0x9E3779B97F4A7C15ull * (c + 1))) | 1;
	}
}

static void every_cpu_maps_and_allocates_at_once(struct ktest *t)
{
	unsigned n = smp_cpus_online();
	uint64_t rounds = cmdline_get_u64("stress_rounds", 24);
	uint64_t seed = cmdline_get_u64("stress_seed", 0x5EEDull);
	setup_run(n, rounds, seed);
	struct mdl_stats ms0, ms1;
	mdl_get_stats(&ms0);
	uint64_t t0 = rdtsc();
	ASSERT_TRUE(t, run_everywhere(n, work_on_ap));
	mdl_get_stats(&ms1);
	kprintf("%u CPUs, %lu rounds each, seed 0x%lx: %lu ms\n", n, rounds, seed,
		(rdtsc() - t0) / smp_tsc_per_ms());

	uint64_t probes = 0, maps = 0, checks = 0;
	for (unsigned c = 0; c < n; c++) {
		struct worker *w = &run.w[c];
		probes += w->probes;
		maps += w->maps;
		checks += w->checks;
		kprintf("CPU %u: %u rounds (pool MDLs %lu, pages for MDLs %lu, reserved %lu, pool %lu), %lu words checked\n",
			c, w->rounds, w->ops[OP_POOL_MDL], w->ops[OP_PAGES_FOR_MDL], w->ops[OP_RESERVED],
			w->ops[OP_POOL_CHURN], w->checks);
		if (w->failures)
			KTEST_FAIL(t, "CPU %u: %u failed checks, the first at line %u: 0x%lx, want 0x%lx", c, w->failures,
				   w->first_line, w->first_got, w->first_want);
	}
	EXPECT_GT(t, checks, 0);
	/* Every call counted once: a counter bumped without its atomic add loses some. */
	EXPECT_EQ(t, ms1.probes - ms0.probes, probes);
	EXPECT_EQ(t, ms1.maps - ms0.maps, maps);
	EXPECT_EQ(t, ms1.unlocks - ms0.unlocks, probes);
	EXPECT_EQ(t, ms1.allocated_pages, ms0.allocated_pages);
	/* The structures underneath, each checked against itself and the real tables. */
	EXPECT_EQ(t, pfn_audit(true), 0);
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
}

/* ---- user address spaces on every CPU -------------------------------------------------- */

#define USER_BUF 0x20000000ull    /* the ring-3 phase's buffer */
#define USER_PAGES 8
#define USER_WAIT_MS 20000        /* a process that has not ended by then stops the machine */

/* What an agent operation reported (~0: nothing): agent_result without a case to fail, for
 * the APs, whose verdicts go through their worker. */
static uint64_t report_of(const PEPROCESS p, uint32_t op, uint32_t k)
{
	uint64_t v;
	return ps_report(p, AGENT_KEY(op, k), &v) ? v : ~0ull;
}

/* The ring-3 phase: a process of this CPU's run on it (its creation and teardown too) that
 * allocates, fills by demand-zero faults, re-protects and checks, then frees. */
static void user_ring3_phase(struct worker *w)
{
	uint64_t seed = 0xC0DE0000ull + w->cpu * 0x100 + (next(w) & 0xFF);
	struct agent_script sc;
	agent_begin(&sc);
	uint32_t a = agent_alloc(&sc, USER_BUF, USER_PAGES * PAGE_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&sc, USER_BUF, USER_PAGES, seed);
	uint32_t pr = agent_protect(&sc, USER_BUF, USER_PAGES * PAGE_SIZE, PAGE_READONLY);
	uint32_t c1 = agent_check64(&sc, USER_BUF, USER_PAGES, seed);
	uint32_t pw = agent_protect(&sc, USER_BUF, USER_PAGES * PAGE_SIZE, PAGE_READWRITE);
	agent_fill64(&sc, USER_BUF, USER_PAGES, ~seed);
	uint32_t c2 = agent_check64(&sc, USER_BUF, USER_PAGES, ~seed);
	uint32_t f = agent_free(&sc, USER_BUF, 0, MEM_RELEASE);
	PEPROCESS p = agent_create(&sc, 0);
	CHECK_TRUE(w, p != NULL);
	if (!p)
		return;
	CHECK_EQ(w, PsRunProcess(p), STATUS_SUCCESS);
	CHECK_EQ(w, p->fault.happened, false);
	CHECK_EQ(w, report_of(p, a, 0), STATUS_SUCCESS);
	CHECK_EQ(w, report_of(p, pr, 0), STATUS_SUCCESS);
	CHECK_EQ(w, report_of(p, pr, 1), PAGE_READWRITE);
	CHECK_EQ(w, report_of(p, c1, 0), 0);
	CHECK_EQ(w, report_of(p, pw, 0), STATUS_SUCCESS);
	CHECK_EQ(w, report_of(p, c2, 0), 0);
	CHECK_EQ(w, report_of(p, f, 0), STATUS_SUCCESS);
	w->checks += 2 * USER_PAGES * 2;
	PsDestroyProcess(p);
}

/* The pattern word i of a user buffer, round r. */
static uint64_t uword(const struct worker *w, unsigned r, uint64_t i) { return word(w, 0x5500 + r, i); }

/* One round in the attached process: a user buffer allocated, written by demand-zero faults,
 * probed and locked UserMode, mapped into the process (MmMapLockedPagesSpecifyCache) and to
 * the system, each checked; written through the user mapping and read through the buffer;
 * made read-only (a write is then refused by a real fault) and back; its free refused while
 * it is locked; unmapped, unlocked, freed. */
static void user_mdl_round(struct worker *w, unsigned r)
{
	uint64_t pages = 1 + next(w) % 6, size = pages * PAGE_SIZE;
	PVOID base = NULL;
	SIZE_T sz = size;
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &sz, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	CHECK_EQ(w, st, STATUS_SUCCESS);
	if (st)
		return;
	uint64_t b = (uint64_t)base;
	for (uint64_t pg = 0; pg < pages; pg++) {
		uint64_t v0 = uword(w, r, pg * 2), v1 = uword(w, r, pg * 2 + 1);
		CHECK_EQ(w, copy_to_user(b + pg * PAGE_SIZE, &v0, 8), STATUS_SUCCESS);
		CHECK_EQ(w, copy_to_user(b + pg * PAGE_SIZE + PAGE_SIZE - 8, &v1, 8), STATUS_SUCCESS);
	}
	PMDL m = IoAllocateMdl(base, (ULONG)size, FALSE, FALSE, NULL);
	CHECK_TRUE(w, m != NULL);
	volatile bool locked = false;
	volatile PVOID uva = NULL;
	if (m) {
		__try {
			MmProbeAndLockPages(m, UserMode, IoWriteAccess);
			locked = true;
			uva = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			fail_at(w, __LINE__, (uint64_t)GetExceptionCode(), 0);
		}
	}
	if (locked)
		w->probes++;
	if (uva) {
		w->maps++;
		uint64_t u = (uint64_t)uva;
		const uint64_t *sys = MmGetSystemAddressForMdlSafe(m, NormalPagePriority);
		CHECK_TRUE(w, sys != NULL);
		for (uint64_t pg = 0; pg < pages; pg++) {
			uint64_t got = 0;
			CHECK_EQ(w, copy_from_user(&got, u + pg * PAGE_SIZE + PAGE_SIZE - 8, 8), STATUS_SUCCESS);
			CHECK_EQ(w, got, uword(w, r, pg * 2 + 1));
			if (sys)
				CHECK_EQ(w, sys[pg * 512], uword(w, r, pg * 2));
			/* Through the user mapping, back through the buffer. */
			uint64_t v = ~uword(w, r, pg);
			CHECK_EQ(w, copy_to_user(u + pg * PAGE_SIZE + 8, &v, 8), STATUS_SUCCESS);
			got = 0;
			CHECK_EQ(w, copy_from_user(&got, b + pg * PAGE_SIZE + 8, 8), STATUS_SUCCESS);
			CHECK_EQ(w, got, v);
			w->checks += 3;
		}
		/* The buffer read-only: a write to it is refused (a real fault, present page). */
		PVOID pb = base;
		SIZE_T ps = size;
		ULONG old = 0;
		CHECK_EQ(w, ZwProtectVirtualMemory(NtCurrentProcess(), &pb, &ps, PAGE_READONLY, &old), STATUS_SUCCESS);
		CHECK_EQ(w, old, PAGE_READWRITE);
		uint64_t v = 1;
		CHECK_EQ(w, copy_to_user(b, &v, 8), STATUS_ACCESS_VIOLATION);
		pb = base;
		ps = size;
		CHECK_EQ(w, ZwProtectVirtualMemory(NtCurrentProcess(), &pb, &ps, PAGE_READWRITE, &old), STATUS_SUCCESS);
		CHECK_EQ(w, old, PAGE_READONLY);
		/* Locked frames cannot be freed under the MDL. */
		pb = base;
		ps = 0;
		CHECK_EQ(w, ZwFreeVirtualMemory(NtCurrentProcess(), &pb, &ps, MEM_RELEASE), STATUS_UNABLE_TO_FREE_VM);
		MmUnmapLockedPages(uva, m);
	}
	if (locked)
		MmUnlockPages(m);
	if (m)
		IoFreeMdl(m);
	sz = 0;
	CHECK_EQ(w, ZwFreeVirtualMemory(NtCurrentProcess(), &base, &sz, MEM_RELEASE), STATUS_SUCCESS);
}

static void user_work(struct worker *w)
{
	if (__atomic_add_fetch(&run.arrived, 1, __ATOMIC_SEQ_CST) == run.n)
		__atomic_store_n(&run.go, 1, __ATOMIC_SEQ_CST);
	CHECK_TRUE(w, smp_wait_flag(&run.go));
	user_ring3_phase(w);
	PEPROCESS q = agent_create_idle(0);
	CHECK_TRUE(w, q != NULL);
	if (!q)
		return;
	uint64_t vads = vad_count(&q->mm);
	KAPC_STATE apc;
	KeStackAttachProcess(q, &apc);
	for (unsigned r = 0; r < w->rounds; r++)
		user_mdl_round(w, r);
	KeUnstackDetachProcess(&apc);
	CHECK_TRUE(w, vad_check(&q->mm));
	CHECK_EQ(w, vad_count(&q->mm), vads);
	PsDestroyProcess(q);
}

static void user_work_on_ap(void *arg) { user_work(arg); }

/* The MDL and user-mapping counters and the audits after a user case. */
static void check_user_run(struct ktest *t, const struct mdl_stats *ms0, const struct mdl_user_stats *us0)
{
	struct mdl_stats ms1;
	struct mdl_user_stats us1;
	mdl_get_stats(&ms1);
	mdl_user_get_stats(&us1);
	uint64_t probes = 0, maps = 0, checks = 0;
	for (unsigned c = 0; c < run.n; c++) {
		struct worker *w = &run.w[c];
		probes += w->probes;
		maps += w->maps;
		checks += w->checks;
		if (w->failures)
			KTEST_FAIL(t, "CPU %u: %u failed checks, the first at line %u: 0x%lx, want 0x%lx", c, w->failures,
				   w->first_line, w->first_got, w->first_want);
	}
	kprintf("%u CPUs: %lu probes, %lu user mappings, %lu words checked\n", run.n, probes, maps, checks);
	EXPECT_GT(t, checks, 0);
	EXPECT_EQ(t, ms1.probes - ms0->probes, probes);
	EXPECT_EQ(t, ms1.unlocks - ms0->unlocks, probes);
	EXPECT_EQ(t, us1.maps - us0->maps, maps);
	EXPECT_EQ(t, us1.unmaps - us0->unmaps, maps);
	EXPECT_EQ(t, us1.live, us0->live);
	EXPECT_EQ(t, us1.teardowns, us0->teardowns);
	EXPECT_EQ(t, pfn_audit(true), 0);
	EXPECT_EQ(t, mm_audit_wx(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_memtypes(&kernel_root, true), 0);
	EXPECT_EQ(t, mm_audit_pfn_memtypes(&kernel_root, true), 0);
}


static void every_cpu_runs_processes_whose_buffers_are_locked_and_mapped(struct ktest *t)
{
	unsigned n = smp_cpus_online();
	setup_run(n, cmdline_get_u64("stress_rounds", 24), cmdline_get_u64("stress_seed", 0x5EEDull));
	struct mdl_stats ms0;
	struct mdl_user_stats us0;
	mdl_get_stats(&ms0);
	mdl_user_get_stats(&us0);
	ASSERT_TRUE(t, run_everywhere(n, user_work_on_ap));
	check_user_run(t, &ms0, &us0);
}

/* ---- two CPUs on one address space -------------------------------------------------------- */

#define SHARED_START 0x3F000000ull /* the page the process spins on before it starts */
#define SHARED_MAPS 0x40000000ull  /* where the boot CPU maps, 16 slots of 64 KiB */
#define SHARED_ALLOCS 10           /* the process's allocate, fill, check, free rounds */
#define SHARED_REPORTED 5          /* the rounds its 32 reports cover */

/*
 * A process runs on CPU 1: it waits for the word of a page the boot CPU mapped into it before
 * it started, then allocates, fills by demand-zero faults, checks and frees a buffer
 * SHARED_ALLOCS times, each at an address of its own (the rounds past its reports checked by
 * their effects).  The boot CPU, attached to the same
 * process, meanwhile maps a pool page into it (MmMapLockedPagesSpecifyCache(UserMode) at an
 * address of its own range), reads the page's pattern back through the mapping and unmaps it,
 * stress_rounds * 4 times.  Both change one VAD tree; every allocation of the process and
 * every mapping must succeed (their ranges never overlap), every pattern must match, and
 * afterwards the tree must be whole (vad_check) and hold what it held before.
 */
/* MmMapLockedPagesSpecifyCache(UserMode) of m at va in the current process: its address, or
 * NULL with the exception's code in *st. */
static PVOID map_user_at(PMDL m, uint64_t va, NTSTATUS *st)
{
	volatile PVOID u = NULL;
	volatile NTSTATUS code = STATUS_SUCCESS;
	__try {
		u = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)va, FALSE, NormalPagePriority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		code = GetExceptionCode();
	}
	*st = code;
	return u;
}

static void two_cpus_change_one_address_space_at_once(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs 2 CPUs");
	unsigned rounds = (unsigned)cmdline_get_u64("stress_rounds", 24) * 4;
	setup_run(1, rounds, cmdline_get_u64("stress_seed", 0x5EEDull));
	struct worker *w = &run.w[0];
	struct mdl_stats ms0;
	struct mdl_user_stats us0;
	mdl_get_stats(&ms0);
	mdl_user_get_stats(&us0);

	struct agent_script sc;
	agent_begin(&sc);
	agent_spin64(&sc, SHARED_START, 1);
	uint32_t al[SHARED_ALLOCS], ck[SHARED_ALLOCS], fr[SHARED_ALLOCS];
	for (unsigned k = 0; k < SHARED_ALLOCS; k++) {
		uint64_t va = USER_BUF + k * 0x100000ull;
		al[k] = agent_alloc(&sc, va, 16 * PAGE_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		agent_fill64(&sc, va, 16, 0xA11C0000ull + k);
		ck[k] = agent_check64(&sc, va, 16, 0xA11C0000ull + k);
		fr[k] = agent_free(&sc, va, 0, MEM_RELEASE);
	}
	PEPROCESS p = agent_create(&sc, 0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t vads = vad_count(&p->mm);

	/* The start page, mapped before the process runs; the pattern page. */
	uint64_t *start = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, STRESS_TAG);
	uint64_t *pat = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, STRESS_TAG);
	ASSERT_TRUE(t, start && pat);
	for (unsigned i = 0; i < 512; i++)
		pat[i] = word(w, 0x77, i);
	PMDL ms = IoAllocateMdl(start, PAGE_SIZE, FALSE, FALSE, NULL), mp = IoAllocateMdl(pat, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, ms && mp);
	MmBuildMdlForNonPagedPool(ms);
	MmBuildMdlForNonPagedPool(mp);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	NTSTATUS st;
	PVOID sva = map_user_at(ms, SHARED_START, &st);
	KeUnstackDetachProcess(&apc);
	ASSERT_TRUE(t, sva == (PVOID)SHARED_START);
	ASSERT_TRUE(t, ps_start_on_cpu(p, 1));

	KeStackAttachProcess(p, &apc);
	__atomic_store_n(&start[0], 1, __ATOMIC_RELEASE);
	for (unsigned r = 0; r < rounds; r++) {
		uint64_t va = SHARED_MAPS + (r % 16) * 0x10000ull;
		PVOID u = map_user_at(mp, va, &st);
		CHECK_EQ(w, st, STATUS_SUCCESS);
		if (!u)
			continue;
		CHECK_EQ(w, (uint64_t)u, va);
		w->maps++;
		unsigned i = (unsigned)(next(w) % 512);
		uint64_t got = 0;
		CHECK_EQ(w, copy_from_user(&got, va + i * 8, 8), STATUS_SUCCESS);
		CHECK_EQ(w, got, pat[i]);
		w->checks++;
		MmUnmapLockedPages(u, mp);
	}
	KeUnstackDetachProcess(&apc);
	if (!ps_wait(p, USER_WAIT_MS))
		PANIC("smp_stress: pid %u did not end within %u ms", p->pid, USER_WAIT_MS);
	EXPECT_EQ(t, p->exit_status, STATUS_SUCCESS);
	EXPECT_FALSE(t, p->fault.happened);
	/* The rounds past its reports are checked by their effects: a failed allocation is a
	 * fault in the fill after it, a failed free a VAD left over. */
	for (unsigned k = 0; k < SHARED_REPORTED; k++) {
		EXPECT_EQ(t, agent_result(t, p, al[k], 0), STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p, ck[k], 0), 0);
		EXPECT_EQ(t, agent_result(t, p, fr[k], 0), STATUS_SUCCESS);
	}
	/* The tree whole, and holding what it did plus the start page's mapping. */
	EXPECT_TRUE(t, vad_check(&p->mm));
	EXPECT_EQ(t, vad_count(&p->mm), vads + 1);
	KeStackAttachProcess(p, &apc);
	MmUnmapLockedPages((PVOID)SHARED_START, ms);
	KeUnstackDetachProcess(&apc);
	w->maps++;
	EXPECT_EQ(t, vad_count(&p->mm), vads);
	PsDestroyProcess(p);
	IoFreeMdl(ms);
	IoFreeMdl(mp);
	ExFreePoolWithTag(start, STRESS_TAG);
	ExFreePoolWithTag(pat, STRESS_TAG);
	EXPECT_EQ(t, w->maps, rounds + 1);
	check_user_run(t, &ms0, &us0);
}

static struct ktest_case stress_cases[] = {
	KTEST_CASE(every_cpu_maps_and_allocates_at_once),
	KTEST_CASE(every_cpu_runs_processes_whose_buffers_are_locked_and_mapped),
	KTEST_CASE(two_cpus_change_one_address_space_at_once),
	{ 0 },
};
KTEST_SUITE(smp_stress, stress_cases);
