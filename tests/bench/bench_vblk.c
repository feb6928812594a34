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
 *
 * Then (vblk_io, below) whole requests through the device, direct against buffered.
 */
#include "kernel/bench.h"
#include "kernel/io/io.h"
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

/*
 * Direct against buffered I/O through the real device: IRP_MJ_READ and IRP_MJ_WRITE of 1, 8
 * and 64 pages from a kernel buffer (nonpaged pool, page-aligned) at sector 0 of the bench
 * machine's own disk (scripts/bench.py attaches build/bench/disk.img), each request the I/O
 * manager's (IoBuildSynchronousFsdRequest) to \Device\VirtioBlk0 (DO_DIRECT_IO: the buffer
 * probed and locked into an MDL, the device told its frames) or \Device\VirtioBlk0Buffered
 * (DO_BUFFERED_IO: a SystemBuffer, the data copied in for a write and out for a read).
 *
 * What is counted is the CPU's path, in two parts, never the wait for the device:
 *   submit    IoBuildSynchronousFsdRequest + IoCallDriver until it returns STATUS_PENDING
 *             (buffers, the dispatch routine, the descriptors, the doorbell), with interrupts
 *             off (CLI), so the completion interrupt cannot land inside it;
 *   complete  from the last timestamp the waiting loop took before the interrupt (interrupts
 *             back on after the submit; the loop keeps a timestamp only once its own check
 *             found the event still clear) to the loop seeing the event: interrupt entry, the ISR, the DPC walking the used ring,
 *             IoCompleteRequest (unlock and free the MDL, or copy out and free the
 *             SystemBuffer), the event, the return; plus up to two iterations of the loop
 *             (about 30 instructions, where the interrupt lands).
 * How long the device takes (QEMU's block layer, outside the guest) is in neither.  A request
 * is the best (least submit + complete) of REQS after one untimed; per_op is that sum, the note
 * its two parts and the bytes the I/O manager copied (io_get_copy_stats) for it, or, direct,
 * the copies avoided (the bytes a buffered request of the same size copies).
 */
#define REQS 8
#define IO_TAG 'biBV'
#define WAIT_LIMIT 4000000000ull /* ticks: a request not back by then fails the case */

struct io_cost {
	uint64_t submit, complete, copied;
	NTSTATUS status;
};

static struct io_cost one_request(PDEVICE_OBJECT dev, ULONG major, void *buf, ULONG length)
{
	struct io_cost c = { 0, 0, 0, STATUS_SUCCESS };
	KEVENT ev;
	IO_STATUS_BLOCK iosb;
	LARGE_INTEGER at = { .QuadPart = 0 };
	KeInitializeEvent(&ev, NotificationEvent, FALSE);
	struct io_copy_stats before, after;
	io_get_copy_stats(&before);
	__asm__ volatile("cli" ::: "memory");
	uint64_t t0 = bench_now();
	PIRP irp = IoBuildSynchronousFsdRequest(major, dev, buf, length, &at, &ev, &iosb);
	NTSTATUS st = irp ? IoCallDriver(dev, irp) : STATUS_INSUFFICIENT_RESOURCES;
	uint64_t t1 = bench_now(), last = t1;
	__asm__ volatile("sti" ::: "memory");
	if (!irp || st != STATUS_PENDING) {
		c.status = irp ? st : STATUS_INSUFFICIENT_RESOURCES;
		return c;
	}
	/* `last` only ever takes a timestamp whose own check did not see the event yet, so
	 * wherever in the loop the interrupt lands, `last` was taken before it (at most two
	 * iterations before). */
	for (;;) {
		uint64_t now = bench_now();
		if (KeReadStateEvent(&ev))
			break;
		last = now;
		if (now - t1 > WAIT_LIMIT) {
			c.status = STATUS_TIMEOUT; /* still in flight: the IRP and its buffers stay */
			return c;
		}
		cpu_relax();
	}
	uint64_t t2 = bench_now();
	io_get_copy_stats(&after);
	c.submit = t1 - t0 - bench_overhead();
	c.complete = t2 - last - bench_overhead();
	c.copied = (after.in - before.in) + (after.out - before.out);
	c.status = iosb.Status;
	return c;
}

static bool time_io(const char *name, PDEVICE_OBJECT dev, ULONG major, void *buf, uint32_t n, bool direct)
{
	ULONG length = n * PAGE_SIZE;
	struct io_cost best = { ~0ull / 4, ~0ull / 4, 0, 0 };
	for (int i = 0; i <= REQS; i++) {
		struct io_cost c = one_request(dev, major, buf, length);
		if (c.status != STATUS_SUCCESS) {
			kprintf("# bench: %s %u pages: status 0x%x\n", name, n, (unsigned)c.status);
			return false;
		}
		if (i && c.submit + c.complete < best.submit + best.complete)
			best = c;
	}
	char note[96];
	ksnprintf(note, sizeof note, "submit=%lu,complete=%lu,%s=%lu", best.submit, best.complete,
		  direct ? "copies_avoided" : "copied", direct ? (uint64_t)length : best.copied);
	bench_result(name, n, 1, n, best.submit + best.complete, note);
	return true;
}

static void bench_vblk_io(void)
{
	static const uint32_t io_sizes[] = { 1, 8, 64 };
	NTSTATUS st = vblk_load();
	if (st) {
		kprintf("# bench: vblk_io: no disk driver (0x%x): make bench attaches a disk\n", (unsigned)st);
		return;
	}
	struct vblk_info info;
	vblk_get_info(&info);
	void *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64 * PAGE_SIZE, IO_TAG);
	if (!buf || info.capacity < 64 * PAGE_SIZE / VBLK_SECTOR) {
		kprintf("# bench: vblk_io: no buffer, or the disk is under 64 pages\n");
		if (buf)
			ExFreePoolWithTag(buf, IO_TAG);
		vblk_unload_driver();
		return;
	}
	bool ok = true;
	for (unsigned s = 0; ok && s < ARRAY_SIZE(io_sizes); s++) {
		uint32_t n = io_sizes[s];
		memset(buf, 0x5A + s, (size_t)n * PAGE_SIZE);
		ok = time_io("vblk_write_direct", info.device, IRP_MJ_WRITE, buf, n, true) &&
		     time_io("vblk_write_buffered", info.buffered_device, IRP_MJ_WRITE, buf, n, false) &&
		     time_io("vblk_read_direct", info.device, IRP_MJ_READ, buf, n, true) &&
		     time_io("vblk_read_buffered", info.buffered_device, IRP_MJ_READ, buf, n, false);
	}
	if (!ok) {
		kprintf("# bench: vblk_io: stopped (a request failed or did not come back)\n");
		return; /* a request may still be in flight: nothing is released under it */
	}
	ExFreePoolWithTag(buf, IO_TAG);
	vblk_unload_driver();
}
KBENCH(vblk_io, bench_vblk_io);
