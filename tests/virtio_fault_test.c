/*
 * Faults from a real device: the virtio-blk driver on make test's `blkfault` machine, whose
 * disk is QEMU's blkdebug driver over an image of its own (scripts/harness.py,
 * blkfault_disk), failing with EIO every write that touches BLKFAULT_WRITE.. and every read
 * that touches BLKFAULT_READ.. (N sectors each; the kernel is told `blkfault=W,R,N`).  With
 * rerror=report,werror=report QEMU's virtio-blk answers such a request VIRTIO_BLK_S_IOERR
 * (virtio 1.1, 5.2.6), which the driver completes as STATUS_DEVICE_DATA_ERROR with
 * IoStatus.Information 0.
 *
 * Proven: the failing request went to the device (submitted and completed counters, its
 * descriptors the buffer's frames) and the caller sees the status, through a completion
 * routine and through the I/O manager's own IRP (IoBuildSynchronousFsdRequest: the
 * IO_STATUS_BLOCK and the event, the buffer probed, locked and unlocked by the I/O manager);
 * a write that failed left nothing on the disk (read back as the image's zeros, and from
 * outside by the harness: the sectors next to it hold the pattern of a good write); a read
 * that failed still transferred nothing the caller may trust (Information 0) while the
 * sectors, written before, are on the image (`# disk-check:`); a request that only
 * straddles a bad sector fails whole; good requests next to the bad range, before and
 * after, succeed (the device keeps working); failing and good requests in flight together
 * each get their own status; a 1 MiB IRP split into several requests with the bad range in a
 * middle one completes once, with the error and Information 0, after every piece went to the
 * device (the first piece's data is on the image); the buffered device
 * (\Device\VirtioBlk0Buffered) answers the same errors the same way, copying nothing back
 * into the caller's buffer after a failed read; a user program's ReadFile and WriteFile on
 * \\.\PhysicalDrive0 see the status, and nothing stays locked for the process.  Every case ends with the frames, system PTEs, locked pages and
 * pool where it began.  Without `blkfault=` (the main machine) every case skips.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/pattern.h"
#include "tests/lib/scratch.h"
#include "tests/lib/vblk_req.h"
#include "include/wdm.h"
#include "kernel/io/io.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "kernel/virtio/virtio_blk.h"
#include "mm/uvm.h"

/* The bad ranges, from `blkfault=W,R,N`; skips without it. */
static uint64_t bad_write, bad_read, bad_count;

static PDEVICE_OBJECT faulty_disk(struct ktest *t)
{
	struct vreq_blkfault bf;
	vreq_blkfault(t, &bf);
	bad_write = bf.write;
	bad_read = bf.read;
	bad_count = bf.count;
	struct vblk_info i;
	vblk_get_info(&i);
	ASSERT_TRUE(t, i.device != NULL);
	ASSERT_TRUE(t, bad_write + 4 * bad_count <= i.capacity && bad_read + 4 * bad_count <= i.capacity);
	return i.device;
}

/* ---- requests (tests/lib/vblk_req.h) at a sector ---- */

static void start(struct ktest *t, PDEVICE_OBJECT dev, struct req *r, UCHAR major, PMDL mdl, ULONG length,
		  uint64_t sector)
{
	vreq_start(t, dev, r, major, mdl, length, (LONGLONG)(sector * VBLK_SECTOR));
}

static NTSTATUS transfer(struct ktest *t, PDEVICE_OBJECT dev, UCHAR major, PMDL mdl, ULONG length, uint64_t sector,
			 ULONG_PTR *info)
{
	NTSTATUS returned;
	NTSTATUS st = vreq_transfer(t, dev, major, mdl, length, (LONGLONG)(sector * VBLK_SECTOR), info, &returned);
	EXPECT_EQ(t, returned, STATUS_PENDING); /* every request reaches the device here */
	return st;
}

static bool all_bytes(const uint8_t *p, ULONG n, uint8_t v)
{
	for (ULONG i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* The request the device was last told names these frames (a one-page buffer). */
static void expect_last(struct ktest *t, uint32_t type, uint64_t sector, PMDL mdl, ULONG length)
{
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, type);
	EXPECT_EQ(t, last.sector, sector);
	EXPECT_GE(t, last.nruns, 1u);
	EXPECT_EQ(t, last.addr[0], (uint64_t)MmGetMdlPfnArray(mdl)[0] << PAGE_SHIFT);
	uint64_t total = 0;
	for (unsigned i = 0; i < last.nruns; i++)
		total += last.len[i];
	EXPECT_EQ(t, total, (uint64_t)length);
}

#define FAULT_SEED 0xBADD15Cu

/* Two buffers of two pages each, w filled with seed's pattern, r to read into. */
static void two_bufs(struct ktest *t, struct buf *w, struct buf *r, uint32_t seed)
{
	buf_make(t, w, 2, 0, 2 * PAGE_SIZE);
	buf_make(t, r, 2, 0, 2 * PAGE_SIZE);
	pattern_fill(w->va, 2 * PAGE_SIZE, seed);
}

/* ---- cases ---- */

static void a_write_into_the_bad_range_fails_and_the_device_keeps_working(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	ULONG len = (ULONG)(bad_count * VBLK_SECTOR);
	struct buf w, r;
	two_bufs(t, &w, &r, FAULT_SEED);
	struct vblk_info before, after;
	vblk_get_info(&before);
	ULONG_PTR info = 1;

	/* The bad range itself: the device says IOERR, the IRP completes with the data error. */
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, w.mdl, len, bad_write, &info), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, info, 0u);
	expect_last(t, VIRTIO_BLK_T_OUT, bad_write, w.mdl, len);
	/* One sector of it, at the end of a longer write from before it: the whole request fails. */
	info = 1;
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, w.mdl, len, bad_write - bad_count + 1, &info),
		  STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, info, 0u);
	vblk_get_info(&after);
	EXPECT_EQ(t, after.submitted - before.submitted, 2u); /* both reached the device */
	EXPECT_EQ(t, after.completed - before.completed, 2u);
	EXPECT_EQ(t, after.in_flight, 0u);

	/* Nothing of the failed writes landed: the fresh image's zeros read back (reads there work). */
	memset(r.va, 0xA5, 2 * PAGE_SIZE);
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_READ, r.mdl, 2 * len, bad_write - bad_count, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)(2 * len));
	EXPECT_TRUE(t, all_bytes(r.va, 2 * len, 0));

	/* The sectors just before and just after take a write and give it back. */
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, w.mdl, len, bad_write - bad_count, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)len);
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, w.mdl, len, bad_write + bad_count, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)len);
	memset(r.va, 0xA5, 2 * PAGE_SIZE);
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_READ, r.mdl, len, bad_write + bad_count, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, memcmp(r.va, w.va, len), 0);
	kprintf("# disk-check: %lu %lu 0x%x\n", bad_write - bad_count, bad_count, FAULT_SEED);
	kprintf("# disk-check: %lu %lu 0x%x\n", bad_write + bad_count, bad_count, FAULT_SEED);
	buf_free(&w);
	buf_free(&r);
	vreq_expect_counts(t, c);
}

static void a_read_from_the_bad_range_fails_and_the_device_keeps_working(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	ULONG len = (ULONG)(bad_count * VBLK_SECTOR);
	struct buf w, r;
	two_bufs(t, &w, &r, FAULT_SEED + 1);
	ULONG_PTR info = 1;
	/* Writes there work: the pattern goes onto the image (the harness checks it). */
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, w.mdl, 2 * len, bad_read, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)(2 * len));
	kprintf("# disk-check: %lu %lu 0x%x\n", bad_read, 2 * bad_count, FAULT_SEED + 1);

	struct vblk_info before, after;
	vblk_get_info(&before);
	info = 1;
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_READ, r.mdl, len, bad_read, &info), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, info, 0u);
	expect_last(t, VIRTIO_BLK_T_IN, bad_read, r.mdl, len);
	/* Straddling: the last sector before the range and the first of it. */
	info = 1;
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_READ, r.mdl, 2 * VBLK_SECTOR, bad_read - 1, &info),
		  STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, info, 0u);
	vblk_get_info(&after);
	EXPECT_EQ(t, after.submitted - before.submitted, 2u);
	EXPECT_EQ(t, after.completed - before.completed, 2u);
	EXPECT_EQ(t, after.in_flight, 0u);

	/* The page after the range reads back what was written. */
	memset(r.va, 0xA5, 2 * PAGE_SIZE);
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_READ, r.mdl, len, bad_read + bad_count, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)len);
	EXPECT_EQ(t, memcmp(r.va, w.va + len, len), 0);
	buf_free(&w);
	buf_free(&r);
	vreq_expect_counts(t, c);
}

/* The I/O manager's IRP: it probes and locks the caller's buffer, and at completion writes the
 * IO_STATUS_BLOCK, signals the event, unlocks and frees the MDL and frees the IRP. */
static NTSTATUS fsd_transfer(struct ktest *t, PDEVICE_OBJECT dev, ULONG major, void *buffer, ULONG length,
			     uint64_t sector, IO_STATUS_BLOCK *iosb)
{
	KEVENT ev;
	KeInitializeEvent(&ev, NotificationEvent, FALSE);
	LARGE_INTEGER at = { .QuadPart = (LONGLONG)(sector * VBLK_SECTOR) };
	iosb->Status = 0x12345678;
	iosb->Information = 77;
	PIRP irp = IoBuildSynchronousFsdRequest(major, dev, buffer, length, &at, &ev, iosb);
	ASSERT_TRUE(t, irp != NULL);
	NTSTATUS st = IoCallDriver(dev, irp);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (!KeReadStateEvent(&ev) && rdtsc() < end)
		cpu_relax();
	ASSERT_TRUE(t, KeReadStateEvent(&ev));
	EXPECT_EQ(t, st, STATUS_PENDING);
	return iosb->Status;
}

static void the_io_managers_caller_sees_the_error_and_nothing_stays_locked(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	ULONG len = (ULONG)(bad_count * VBLK_SECTOR);
	uint8_t *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, len, 'tlfV');
	ASSERT_TRUE(t, p != NULL);
	uint64_t locked = mmt_locked_frames();
	IO_STATUS_BLOCK iosb;
	EXPECT_EQ(t, fsd_transfer(t, dev, IRP_MJ_WRITE, p, len, bad_write, &iosb), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, iosb.Information, 0u);
	EXPECT_EQ(t, mmt_locked_frames(), locked); /* the I/O manager unlocked the buffer */
	EXPECT_EQ(t, fsd_transfer(t, dev, IRP_MJ_READ, p, len, bad_read, &iosb), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, iosb.Information, 0u);
	EXPECT_EQ(t, mmt_locked_frames(), locked);
	EXPECT_EQ(t, fsd_transfer(t, dev, IRP_MJ_READ, p, len, bad_read + bad_count, &iosb), STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, (ULONG_PTR)len);
	EXPECT_EQ(t, mmt_locked_frames(), locked);
	ExFreePoolWithTag(p, 'tlfV');
	vreq_expect_counts(t, c);
}

/* A user program on the failing disk: its WriteFile into the bad write range and its ReadFile
 * of the bad read range on \\.\PhysicalDrive0 return STATUS_DEVICE_DATA_ERROR with no bytes,
 * a ReadFile next to the bad range succeeds, and the process ends with nothing locked for it. */
static void a_user_program_sees_the_device_error_and_nothing_stays_locked(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	faulty_disk(t);
	uint32_t len = (uint32_t)(bad_count * VBLK_SECTOR);
	uint64_t buf = scratch_uva(0x10000, 0);
	struct vblk_info before, after;
	vblk_get_info(&before);
	struct agent_script s;
	agent_begin(&s);
	uint32_t alloc = agent_alloc(&s, buf, 0x10000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&s, buf, 2, 0xFA17);
	uint32_t open = agent_open(&s, "\\\\.\\PhysicalDrive0");
	uint32_t wr = agent_write_file(&s, buf, len, bad_write * VBLK_SECTOR);
	uint32_t rd = agent_read_file(&s, buf, len, bad_read * VBLK_SECTOR);
	uint32_t good = agent_read_file(&s, buf, len, (bad_read + bad_count) * VBLK_SECTOR);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	vblk_get_info(&after);
	EXPECT_EQ(t, agent_result(t, p, alloc, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, open, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, wr, 0), (uint64_t)(uint32_t)STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, agent_result(t, p, wr, 1), 0u);
	EXPECT_EQ(t, agent_result(t, p, rd, 0), (uint64_t)(uint32_t)STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, agent_result(t, p, rd, 1), 0u);
	EXPECT_EQ(t, agent_result(t, p, good, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, good, 1), (uint64_t)len);
	EXPECT_EQ(t, after.submitted - before.submitted, 3u); /* each went to the device */
	EXPECT_EQ(t, mmt_locked_frames(), c.locked);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	PsDestroyProcess(p);
	vreq_expect_counts(t, c);
}

#define MIX 6u

static void failing_and_good_requests_in_flight_each_get_their_own_status(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	ULONG len = (ULONG)(bad_count * VBLK_SECTOR);
	ASSERT_EQ(t, smp_this_cpu(), 0u);
	struct buf b[MIX];
	static struct req r[MIX];
	/* Even: a good write after the write-bad range; odd: alternately a write into it and a
	 * read from the read-bad range. */
	uint64_t sector[MIX];
	UCHAR major[MIX];
	for (unsigned i = 0; i < MIX; i++) {
		buf_make(t, &b[i], 1, 0, PAGE_SIZE);
		pattern_fill(b[i].va, PAGE_SIZE, FAULT_SEED + 16 + i);
		bool bad = i & 1;
		major[i] = bad && (i & 2) ? IRP_MJ_READ : IRP_MJ_WRITE;
		sector[i] = !bad ? bad_write + (2 + i) * bad_count : major[i] == IRP_MJ_READ ? bad_read : bad_write;
	}
	/* At DISPATCH_LEVEL on CPU 0 the completion DPC cannot run: all are on the ring at once. */
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	for (unsigned i = 0; i < MIX; i++)
		start(t, dev, &r[i], major[i], b[i].mdl, len, sector[i]);
	struct vblk_info during;
	vblk_get_info(&during);
	KeLowerIrql(old);
	EXPECT_EQ(t, during.in_flight, (uint64_t)MIX);
	for (unsigned i = 0; i < MIX; i++) {
		EXPECT_EQ(t, r[i].returned, STATUS_PENDING);
		bool bad = i & 1;
		EXPECT_EQ(t, vreq_finish(t, &r[i]), bad ? STATUS_DEVICE_DATA_ERROR : STATUS_SUCCESS);
		EXPECT_EQ(t, r[i].info, bad ? 0u : (ULONG_PTR)len);
		if (!bad)
			kprintf("# disk-check: %lu %lu 0x%x\n", sector[i], bad_count, FAULT_SEED + 16 + i);
		buf_free(&b[i]);
	}
	struct vblk_info after;
	vblk_get_info(&after);
	EXPECT_EQ(t, after.in_flight, 0u);
	vreq_expect_counts(t, c);
}

#define SPLIT_PAGES 256u
#define SPLIT_SEED 0x5EED5u

/* A split IRP with one bad piece: every piece goes to the device, the IRP completes once with
 * the error and Information 0, and the good pieces' data is on the disk. */
static void a_split_irp_with_one_failing_piece_completes_once_with_the_error(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	struct vblk_info before, after;
	vblk_get_info(&before);
	ASSERT_TRUE(t, before.seg_limit < SPLIT_PAGES);
	uint64_t first = bad_write - SPLIT_PAGES * (PAGE_SIZE / VBLK_SECTOR) / 2; /* the bad range mid-IRP */
	/* Frames of an allocation of three times as many, none following the one before: one run
	 * per page. */
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL src = MmAllocatePagesForMdlEx(lo, hi, skip, (SIZE_T)3 * SPLIT_PAGES * PAGE_SIZE, MmCached,
					   MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, src != NULL);
	uint8_t *sva = MmMapLockedPagesSpecifyCache(src, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, sva != NULL);
	PMDL mdl = IoAllocateMdl(MmGetMdlVirtualAddress(src), SPLIT_PAGES * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	uint32_t x = SPLIT_SEED;
	PPFN_NUMBER from = MmGetMdlPfnArray(src), to = MmGetMdlPfnArray(mdl);
	for (unsigned k = 0, f = 0; k < SPLIT_PAGES; k++, f++) {
		while (k && f < 3 * SPLIT_PAGES && from[f] == to[k - 1] + 1)
			f++; /* a frame that would join the run before */
		ASSERT_TRUE(t, f < 3 * SPLIT_PAGES);
		to[k] = from[f];
		uint32_t *wd = (uint32_t *)(sva + (uint64_t)f * PAGE_SIZE);
		for (unsigned j = 0; j < PAGE_SIZE / 4; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			wd[j] = x;
		}
	}
	ULONG_PTR info = 1;
	EXPECT_EQ(t, transfer(t, dev, IRP_MJ_WRITE, mdl, SPLIT_PAGES * PAGE_SIZE, first, &info), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, info, 0u);
	struct vblk_last_irp li;
	vblk_get_last_irp(&li);
	vblk_get_info(&after);
	EXPECT_GE(t, li.npieces, 3u);
	EXPECT_EQ(t, after.submitted - before.submitted, (uint64_t)li.npieces); /* all went to the device */
	EXPECT_EQ(t, after.completed - before.completed, (uint64_t)li.npieces);
	EXPECT_EQ(t, after.in_flight, 0u);
	/* The first piece ends before the bad range: it went to the disk (checked from outside). */
	ASSERT_TRUE(t, li.piece_sector[0] == first && first + li.piece_bytes[0] / VBLK_SECTOR <= bad_write);
	kprintf("# disk-check: %lu %u 0x%x\n", first, li.piece_bytes[0] / VBLK_SECTOR, SPLIT_SEED);
	kprintf("    # %u pieces, sectors %lu.. in error\n", li.npieces, bad_write);
	IoFreeMdl(mdl);
	MmUnmapLockedPages(sva, src);
	MmFreePagesFromMdl(src);
	ExFreePool(src);
	vreq_expect_counts(t, c);
}

/* The buffered device (\Device\VirtioBlk0Buffered) answers the device's errors as the direct
 * one does; a failed read copies nothing back into the caller's buffer (the I/O manager copies
 * out only for a status that is not an error), and the SystemBuffer and the driver's MDL over
 * it are gone (pool as it was). */
static void the_buffered_device_answers_device_errors_like_the_direct_one(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = faulty_disk(t);
	struct vblk_info i;
	vblk_get_info(&i);
	PDEVICE_OBJECT b = i.buffered_device;
	ASSERT_TRUE(t, b != NULL);
	ULONG len = (ULONG)(bad_count * VBLK_SECTOR);
	uint8_t *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, len, 'tlfV');
	ASSERT_TRUE(t, p != NULL);
	struct io_copy_stats before, after;
	IO_STATUS_BLOCK iosb;
	NTSTATUS returned;
	for (int k = 0; k < 2; k++) { /* the direct device, then the buffered one: the same answers */
		PDEVICE_OBJECT d = k ? b : dev;
		uint64_t submitted = i.submitted;
		memset(p, 0xEE, len);
		io_get_copy_stats(&before);
		EXPECT_EQ(t, vreq_fsd(t, d, IRP_MJ_WRITE, p, len, (LONGLONG)(bad_write * VBLK_SECTOR), &iosb, &returned,
				      NULL, NULL),
			  STATUS_DEVICE_DATA_ERROR);
		EXPECT_EQ(t, returned, STATUS_PENDING);
		EXPECT_EQ(t, iosb.Information, 0u);
		EXPECT_EQ(t, vreq_fsd(t, d, IRP_MJ_READ, p, len, (LONGLONG)(bad_read * VBLK_SECTOR), &iosb, &returned,
				      NULL, NULL),
			  STATUS_DEVICE_DATA_ERROR);
		EXPECT_EQ(t, returned, STATUS_PENDING);
		EXPECT_EQ(t, iosb.Information, 0u);
		unsigned changed = 0;
		for (ULONG j = 0; j < len; j++)
			changed += p[j] != 0xEE;
		EXPECT_EQ(t, changed, 0u);
		io_get_copy_stats(&after);
		EXPECT_EQ(t, after.out, before.out);
		EXPECT_EQ(t, after.in - before.in, k ? (uint64_t)len : 0u); /* the write's data, copied in */
		vblk_get_info(&i);
		EXPECT_EQ(t, i.submitted, submitted + 2); /* both went to the device */
		/* The device keeps working: the sectors after the bad read range (written by the
		 * read case before, or zeros) come back. */
		EXPECT_EQ(t, vreq_fsd(t, d, IRP_MJ_READ, p, len, (LONGLONG)((bad_read + bad_count) * VBLK_SECTOR), &iosb,
				      NULL, NULL, NULL),
			  STATUS_SUCCESS);
		EXPECT_EQ(t, iosb.Information, (ULONG_PTR)len);
		vblk_get_info(&i);
	}
	ExFreePoolWithTag(p, 'tlfV');
	vreq_expect_counts(t, c);
}

static int fault_case_init(struct ktest *t)
{
	(void)t;
	NTSTATUS st = vblk_load();
	if (st && st != (NTSTATUS)0xC000000E)
		kprintf("    # loading virtio_blk: 0x%x\n", (unsigned)st);
	return st && st != (NTSTATUS)0xC000000E;
}

static void fault_case_exit(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (i.device)
		EXPECT_EQ(t, vblk_unload_driver(), STATUS_SUCCESS);
}

static struct ktest_case virtio_fault_cases[] = {
	KTEST_CASE(a_write_into_the_bad_range_fails_and_the_device_keeps_working),
	KTEST_CASE(a_read_from_the_bad_range_fails_and_the_device_keeps_working),
	KTEST_CASE(the_io_managers_caller_sees_the_error_and_nothing_stays_locked),
	KTEST_CASE(a_user_program_sees_the_device_error_and_nothing_stays_locked),
	KTEST_CASE(failing_and_good_requests_in_flight_each_get_their_own_status),
	KTEST_CASE(a_split_irp_with_one_failing_piece_completes_once_with_the_error),
	KTEST_CASE(the_buffered_device_answers_device_errors_like_the_direct_one),
	{ 0 }
};
KTEST_SUITE(virtio_fault, virtio_fault_cases, .init = fault_case_init, .exit = fault_case_exit);
