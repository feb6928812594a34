/*
 * `make bench` cases for the mapping paths (README "Performance").  Each case repeats an
 * operation REPS times and reports the ticks per operation (instructions under -icount
 * shift=0); the best of ROUNDS rounds counts, so one-off costs (TCG translating code the
 * first time) do not.
 */
#include "kernel/bench.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"
#include "include/wdm.h"

#define REPS 64
#define ROUNDS 3
#define TAG 0x68636E42u /* 'Bnch' */

static const uint32_t sizes[] = { 1, 8, 64, 512 };

/* Best-of-ROUNDS ticks per call of fn(ctx) over REPS calls. */
static uint64_t time_op(void (*fn)(void *), void *ctx)
{
	uint64_t best = ~0ull;
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t t0 = bench_now();
		for (int i = 0; i < REPS; i++)
			fn(ctx);
		uint64_t t = bench_now() - t0 - bench_overhead();
		if (t < best)
			best = t;
	}
	return best / REPS;
}

/* ---- baseline ------------------------------------------------------------------------ */

struct baseline_ctx {
	uint64_t va;
	uint64_t *pfns;
	uint32_t n;
};

static void baseline_op(void *c)
{
	struct baseline_ctx *b = c;
	pt_bench_baseline(b->va, b->pfns, b->n);
}

static void bench_baseline(void)
{
	/* A range inside one page table: 512 PTEs at a 2 MiB boundary of a 1024-PTE run. */
	uint64_t va = syspte_reserve(1024, HighPagePriority, false);
	uint64_t *pfns = ExAllocatePool2(POOL_FLAG_NON_PAGED, 512 * sizeof *pfns, TAG);
	if (!va || !pfns)
		return;
	for (int i = 0; i < 512; i++)
		pfns[i] = 0x100 + i; /* never accessed: only written into PTEs */
	struct baseline_ctx b = { ALIGN_UP(va, LARGE_PAGE_SIZE), pfns, 0 };
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		b.n = sizes[s];
		bench_result("baseline_write_invlpg_clear", b.n, 1, b.n, time_op(baseline_op, &b), NULL);
	}
	ExFreePoolWithTag(pfns, TAG);
	syspte_release(va, 1024);
}
KBENCH(baseline, bench_baseline);

/* ---- map + unmap --------------------------------------------------------------------- */

struct mdl_ctx {
	PMDL mdl;
	PVOID va;
};

static void map_unmap_op(void *c)
{
	struct mdl_ctx *m = c;
	PVOID va = MmMapLockedPagesSpecifyCache(m->mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	MmUnmapLockedPages(va, m->mdl);
}

static void get_address_op(void *c)
{
	struct mdl_ctx *m = c;
	m->va = MmGetSystemAddressForMdlSafe(m->mdl, NormalPagePriority);
}

static void probe_unlock_op(void *c)
{
	struct mdl_ctx *m = c;
	MmProbeAndLockPages(m->mdl, KernelMode, IoWriteAccess);
	MmUnlockPages(m->mdl);
}

static void bench_map_unmap(void)
{
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		uint32_t n = sizes[s];
		uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, n * PAGE_SIZE, TAG);
		PMDL mdl = buf ? IoAllocateMdl(buf, n * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
		if (!mdl) {
			if (buf)
				ExFreePoolWithTag(buf, TAG);
			kprintf("# bench: map_unmap %u pages: no memory\n", n);
			continue;
		}
		struct mdl_ctx m = { mdl, NULL };
		bench_result("probe_lock_unlock_kernel", n, 1, n, time_op(probe_unlock_op, &m), NULL);
		MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess);
		struct tlb_stats t0, t1;
		tlb_get_stats(&t0);
		bench_result("map_unmap", n, 1, n, time_op(map_unmap_op, &m), NULL);
		tlb_get_stats(&t1);
		if (n == 1) {
			/* Full flushes per 1000 unmaps of one-page mappings. */
			uint64_t unmaps = (uint64_t)REPS * ROUNDS;
			char note[64];
			ksnprintf(note, sizeof note, "full=%lu,invlpg=%lu,unmaps=%lu", t1.full_flushes - t0.full_flushes,
				  t1.single_pages - t0.single_pages, unmaps);
			bench_result("tlb_flushes_per_unmap", 1, unmaps, unmaps, 0, note);
		}
		MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority);
		bench_result("get_system_address_mapped", n, 1, n, time_op(get_address_op, &m), NULL);
		MmUnlockPages(mdl);
		IoFreeMdl(mdl);
		ExFreePoolWithTag(buf, TAG);
	}
}
KBENCH(map_unmap, bench_map_unmap);

/* ---- pages for MDLs ------------------------------------------------------------------ */

struct alloc_ctx {
	uint32_t n;
	ULONG flags;
};

static void alloc_free_op(void *c)
{
	struct alloc_ctx *a = c;
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, (SIZE_T)a->n * PAGE_SIZE, MmCached, a->flags);
	if (m) {
		MmFreePagesFromMdl(m);
		ExFreePool(m);
	}
}

/* The same with MM_DONT_ZERO_ALLOCATION: the allocation without its zeroing (the difference
 * is the zeroing figure make bench prints on its own line). */
static void bench_alloc_pages(void)
{
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		struct alloc_ctx a = { sizes[s], 0 };
		bench_result("allocate_free_pages_for_mdl", a.n, 1, a.n, time_op(alloc_free_op, &a), "zeroed");
		a.flags = MM_DONT_ZERO_ALLOCATION;
		bench_result("allocate_free_pages_for_mdl_nozero", a.n, 1, a.n, time_op(alloc_free_op, &a),
			     "MM_DONT_ZERO_ALLOCATION");
	}
}
KBENCH(allocate_pages, bench_alloc_pages);

/* ---- partial MDLs -------------------------------------------------------------------- */

struct partial_ctx {
	PMDL source, target;
	uint8_t *buf;
};

static void partial_op(void *c)
{
	struct partial_ctx *p = c;
	IoBuildPartialMdl(p->source, p->target, p->buf + 100, 3 * PAGE_SIZE);
	MmGetSystemAddressForMdlSafe(p->target, NormalPagePriority);
	MmPrepareMdlForReuse(p->target);
}

static void bench_partial(void)
{
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 8 * PAGE_SIZE, TAG);
	PMDL src = buf ? IoAllocateMdl(buf, 8 * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	PMDL tgt = src ? IoAllocateMdl(buf, 8 * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	if (tgt) {
		MmProbeAndLockPages(src, KernelMode, IoReadAccess);
		struct partial_ctx p = { src, tgt, buf };
		bench_result("build_partial_map_reuse", 4, 1, 4, time_op(partial_op, &p), NULL);
		MmUnlockPages(src);
	}
	if (tgt)
		IoFreeMdl(tgt);
	if (src)
		IoFreeMdl(src);
	if (buf)
		ExFreePoolWithTag(buf, TAG);
}
KBENCH(partial, bench_partial);

/* ---- user buffers and user mappings --------------------------------------------------- */

#include "kernel/process.h"
#include "tests/lib/agent.h"
#include "mm/uvm.h"

struct user_ctx {
	PMDL mdl;
};

static void user_map_unmap_op(void *c)
{
	struct user_ctx *u = c;
	PVOID va = NULL;
	__try {
		va = MmMapLockedPagesSpecifyCache(u->mdl, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		va = NULL;
	}
	if (va)
		MmUnmapLockedPages(va, u->mdl);
}

static void bench_user(void)
{
	struct agent_script script; /* empty: the process is never run, only attached to */
	agent_begin(&script);
	PEPROCESS p = agent_create(&script, 0);
	if (!p)
		return;
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		uint32_t n = sizes[s];
		PVOID base = NULL;
		SIZE_T size = (SIZE_T)n * PAGE_SIZE;
		if (!NT_SUCCESS(ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT,
							PAGE_READWRITE)))
			break;
		PMDL mdl = IoAllocateMdl(base, n * PAGE_SIZE, FALSE, FALSE, NULL);
		if (mdl) {
			/* The first probe makes the demand-zero pages resident; the timed ones find them so. */
			struct mdl_ctx m = { mdl, NULL };
			probe_unlock_op(&m);
			bench_result("probe_lock_unlock_user", n, 1, n, time_op(probe_unlock_op, &m), NULL);
			/* A user mapping of locked kernel-pool pages (whole, zeroed). */
			IoFreeMdl(mdl);
		}
		SIZE_T zero = 0;
		ZwFreeVirtualMemory(NtCurrentProcess(), &base, &zero, MEM_RELEASE);
		uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, (SIZE_T)n * PAGE_SIZE, TAG);
		PMDL pm = buf ? IoAllocateMdl(buf, n * PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
		if (pm) {
			MmBuildMdlForNonPagedPool(pm);
			struct user_ctx u = { pm };
			bench_result("user_map_unmap", n, 1, n, time_op(user_map_unmap_op, &u), "nonpaged pool");
			IoFreeMdl(pm);
		}
		if (buf)
			ExFreePoolWithTag(buf, TAG);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
}
KBENCH(user, bench_user);
