/*
 * `make bench`: the cost of turning an MDL into the virtio-blk device's data descriptors
 * (vblk_build_descriptors, the driver's own builder, the code every IRP_MJ_READ/WRITE goes
 * through), per transfer of 1, 8, 64 and 512 pages, against the hardware baseline
 * (baseline_write_invlpg_clear, tests/bench/bench_mdl.c).  No device is needed: the builder
 * reads only the MDL.  The limits are the driver's own when the device sets none lower
 * (VBLK_MAX_RUNS descriptors a request, no size limit): a transfer of more runs than that is
 * several pieces, as the driver sends it.
 *
 * Two MDLs: frames of MmAllocatePagesForMdlEx none of which follows the one before (one
 * descriptor a page) and MmAllocateContiguousMemorySpecifyCache's block described by
 * MmBuildMdlForNonPagedPool (one run: one descriptor).  The note says how many descriptors
 * and pieces the transfer took.
 */
#include "kernel/bench.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/virtio/virtio_blk.h"
#include "include/wdm.h"

#define REPS 64
#define ROUNDS 3

static const uint32_t sizes[] = { 1, 8, 64, 512 };

struct desc_ctx {
	PMDL mdl;
	ULONG length;
	unsigned ndesc, npieces;
	uint64_t addr[VBLK_MAX_RUNS];
	uint32_t len[VBLK_MAX_RUNS];
};

/* Every piece of the transfer, as the driver builds them. */
static void build_op(struct desc_ctx *c)
{
	unsigned ndesc = 0, npieces = 0;
	for (ULONG pos = 0; pos < c->length;) {
		unsigned n;
		uint32_t bytes = vblk_build_descriptors(c->mdl, c->length, pos, VBLK_MAX_RUNS, 0xFFFFFFFFu, c->addr,
							c->len, &n);
		if (!bytes)
			break;
		pos += bytes;
		ndesc += n;
		npieces++;
	}
	c->ndesc = ndesc;
	c->npieces = npieces;
}

static uint64_t time_build(struct desc_ctx *c)
{
	uint64_t best = ~0ull;
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t t0 = bench_now();
		for (int i = 0; i < REPS; i++)
			build_op(c);
		uint64_t t = bench_now() - t0 - bench_overhead();
		if (t < best)
			best = t;
	}
	return best / REPS;
}

static void report(const char *name, struct desc_ctx *c, uint32_t n)
{
	uint64_t ticks = time_build(c);
	char note[48];
	ksnprintf(note, sizeof note, "descriptors=%u,pieces=%u", c->ndesc, c->npieces);
	bench_result(name, n, 1, n, ticks, note);
}

static void bench_vblk_descriptors(void)
{
	static struct desc_ctx c;
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		uint32_t n = sizes[s];
		SIZE_T bytes = (SIZE_T)n * PAGE_SIZE;
		c.length = (ULONG)bytes;

		/* Frames of an allocation of three times as many, each taken only when it does not
		 * follow the one before: one run (one descriptor) a page, whatever order the
		 * allocator hands frames out in. */
		PMDL src = MmAllocatePagesForMdlEx(lo, hi, skip, 3 * bytes, MmCached, MM_ALLOCATE_FULLY_REQUIRED);
		PMDL m = src ? IoAllocateMdl(MmGetMdlVirtualAddress(src), (ULONG)bytes, FALSE, FALSE, NULL) : NULL;
		bool reported = false;
		if (m) {
			PPFN_NUMBER from = MmGetMdlPfnArray(src), to = MmGetMdlPfnArray(m);
			uint32_t k = 0;
			for (uint32_t i = 0; i < 3 * n && k < n; i++)
				if (!k || from[i] != to[k - 1] + 1)
					to[k++] = from[i];
			if (k == n) {
				c.mdl = m;
				report("vblk_descriptors_scattered", &c, n);
				reported = true;
			}
			IoFreeMdl(m);
		}
		if (!reported)
			kprintf("# bench: vblk_descriptors_scattered %u pages: no memory, or too few frames apart\n", n);
		if (src) {
			MmFreePagesFromMdl(src);
			ExFreePool(src);
		}

		void *block = MmAllocateContiguousMemorySpecifyCache(bytes, lo, hi, skip, MmCached);
		PMDL cm = block ? IoAllocateMdl(block, (ULONG)bytes, FALSE, FALSE, NULL) : NULL;
		if (cm) {
			MmBuildMdlForNonPagedPool(cm);
			c.mdl = cm;
			report("vblk_descriptors_contiguous", &c, n);
			IoFreeMdl(cm);
		} else {
			kprintf("# bench: vblk_descriptors_contiguous %u pages: no memory\n", n);
		}
		if (block)
			MmFreeContiguousMemorySpecifyCache(block, bytes, MmCached);
	}
}
KBENCH(vblk_descriptors, bench_vblk_descriptors);
