/*
 * The virtio-blk driver (kernel/virtio): IRPs sent with IoCallDriver to \Device\VirtioBlk0,
 * completed from the MSI-X interrupt's DPC.
 *
 * Proven: what was negotiated (VERSION_1 alone, FEATURES_OK and DRIVER_OK read back) and the
 * MSI-X entry the device holds; a write of a seeded pattern from frames of
 * MmAllocatePagesForMdlEx through a partial MDL at an unaligned byte offset, read back into a
 * second such buffer and compared; the data descriptors the device was told are exactly the
 * MDL's frames (its PFN array, and the frames the kernel's page tables map at the buffer's
 * VA), one per contiguous run, the first at the byte offset; several requests in flight at
 * once (sent at DISPATCH_LEVEL on CPU 0, where the completion DPC runs, so none can complete
 * before all are on the ring, whatever the timing); bad sizes and offsets and transfers past
 * the end answered without reaching the device.  The harness reads the disk image after the
 * run (`# disk-check:` lines, scripts/diskcheck.py) and compares the written sectors with
 * the pattern: the data went to the disk, not to a copy.  Splitting: 1 MiB in 256 frames of
 * which no two are adjacent (an MDL built by hand from an allocation's frames, skipping any
 * that follows the one before)
 * goes as several requests within the device's limits and completes once, its descriptors
 * every frame in order.  A buffer straddling WB, UC and WC pages (one MDL of frames of
 * three memory types, walked in the page tables) is written and read back whole, its
 * descriptors the frames, disk-checked (mm/RULES.md, I/O rule I11).  Every CPU at once: each its own range and seed, four IRPs in flight
 * at a time, three rounds of writes read back and compared, a disk-check per range.  Every case ends with the frames,
 * system PTEs, locked pages and pool where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "tests/lib/vblk_req.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/intr/ioapic.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/pci/pci.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"
#include "kernel/virtio/virtio_blk.h"

static PDEVICE_OBJECT disk(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (!i.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	return i.device;
}

/* ---- requests (tests/lib/vblk_req.h) to the disk, and buffers ---- */

static void start(struct ktest *t, struct req *r, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset)
{
	vreq_start(t, disk(t), r, major, mdl, length, offset);
}

static NTSTATUS transfer(struct ktest *t, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset, ULONG_PTR *info)
{
	NTSTATUS returned;
	NTSTATUS st = vreq_transfer(t, disk(t), major, mdl, length, offset, info, &returned);
	EXPECT_TRUE(t, returned == STATUS_PENDING || returned == st);
	return st;
}

static unsigned runs_of(const PFN_NUMBER *pfn, ULONG pages)
{
	unsigned runs = 1;
	for (ULONG i = 1; i < pages; i++)
		runs += pfn[i] != pfn[i - 1] + 1;
	return runs;
}

/* ---- cases ---- */

static void negotiated_version_1_and_routed_msix(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	struct vblk_info i;
	vblk_get_info(&i);
	EXPECT_TRUE(t, i.offered & VIRTIO_F_VERSION_1);
	/* VERSION_1, and the block limits' features whenever offered (5.2.3). */
	EXPECT_EQ(t, i.features, VIRTIO_F_VERSION_1 | (i.offered & ((1ull << 1) | (1ull << 2))));
	EXPECT_TRUE(t, i.seg_limit >= 1 && i.seg_limit <= VBLK_MAX_RUNS && i.seg_limit <= i.queue_size - 2u);
	if (i.features & (1ull << 2))
		EXPECT_TRUE(t, i.seg_limit <= i.seg_max);
	kprintf("    # seg_max %u, size_max %u offered: at most %u data descriptors of 0x%x bytes a request\n",
		i.seg_max, i.size_max, i.seg_limit, i.size_limit);
	EXPECT_EQ(t, i.device_status & 0x8Fu, 0x0Fu); /* ACK|DRIVER|DRIVER_OK|FEATURES_OK, not FAILED */
	EXPECT_TRUE(t, i.capacity > 0);
	EXPECT_TRUE(t, i.queue_size >= 8 && !(i.queue_size & (i.queue_size - 1)));
	EXPECT_TRUE(t, i.device->Flags & DO_DIRECT_IO);
	EXPECT_EQ(t, (uint64_t)i.device->DeviceType, (uint64_t)FILE_DEVICE_DISK);
	struct pci_function *f = pci_find(0x1AF4, 0x1042, NULL);
	ASSERT_TRUE(t, f != NULL);
	uint64_t addr;
	uint32_t data, ctl;
	ASSERT_TRUE(t, pci_msix_read(f, 0, &addr, &data, &ctl));
	struct msi_message m = msi_compose(VBLK_VECTOR, i.irq_cpu);
	EXPECT_EQ(t, addr, m.address);
	EXPECT_EQ(t, data, m.data);
	EXPECT_EQ(t, ctl & 1, 0u);
	EXPECT_TRUE(t, pci_read16(f, PCI_COMMAND) & PCI_COMMAND_MASTER);
	kprintf("    # %lu sectors, queue of %u, vector 0x%x on CPU %u, DPC on CPU %u\n", i.capacity,
		i.queue_size, VBLK_VECTOR, i.irq_cpu, i.dpc_cpu);
	vreq_expect_counts(t, c);
}

#define RW_SECTOR 2048u
#define RW_OFFSET 0x234u
#define RW_LENGTH (4 * PAGE_SIZE)
#define RW_SEED 0x1234567u

static void write_then_read_back_through_unaligned_mdls(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	struct buf w, r;
	buf_make(t, &w, 6, RW_OFFSET, RW_LENGTH);
	buf_make(t, &r, 6, RW_OFFSET, RW_LENGTH);
	ULONG pages = (ULONG)ADDRESS_AND_SIZE_TO_SPAN_PAGES(w.data, RW_LENGTH);
	EXPECT_EQ(t, MmGetMdlByteOffset(w.mdl), RW_OFFSET);
	EXPECT_EQ(t, pages, 5u);
	PPFN_NUMBER wf = MmGetMdlPfnArray(w.mdl);
	kprintf("    # write buffer frames %lx %lx %lx %lx %lx: %u runs\n", wf[0], wf[1], wf[2], wf[3], wf[4],
		runs_of(wf, pages));
	EXPECT_TRUE(t, runs_of(wf, pages) >= 2); /* not one contiguous block */

	pattern_fill(w.data, RW_LENGTH, RW_SEED);
	memset(r.data, 0xA5, RW_LENGTH);
	ULONG_PTR info = 0;
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, w.mdl, RW_LENGTH, (LONGLONG)RW_SECTOR * VBLK_SECTOR, &info),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)RW_LENGTH);
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_OUT);
	EXPECT_EQ(t, last.sector, (uint64_t)RW_SECTOR);
	/* The descriptors name the PFN array's frames, and the frames the page tables map. */
	vreq_expect_descriptors(t, wf, RW_OFFSET, RW_LENGTH);
	PFN_NUMBER walked[5];
	for (ULONG i = 0; i < pages; i++)
		walked[i] = mmt_frame_of(((uint64_t)w.data & ~(uint64_t)(PAGE_SIZE - 1)) + i * PAGE_SIZE);
	vreq_expect_descriptors(t, walked, RW_OFFSET, RW_LENGTH);

	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, r.mdl, RW_LENGTH, (LONGLONG)RW_SECTOR * VBLK_SECTOR, &info),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)RW_LENGTH);
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_IN);
	vreq_expect_descriptors(t, MmGetMdlPfnArray(r.mdl), RW_OFFSET, RW_LENGTH);
	EXPECT_EQ(t, memcmp(w.data, r.data, RW_LENGTH), 0);
	/* The bytes around the read's range are as they were: the device wrote only there. */
	EXPECT_EQ(t, r.va[RW_OFFSET - 1], 0u);
	EXPECT_EQ(t, r.data[RW_LENGTH], 0u);
	kprintf("# disk-check: %u %u 0x%x\n", RW_SECTOR, (unsigned)(RW_LENGTH / VBLK_SECTOR), RW_SEED);
	buf_free(&w);
	buf_free(&r);
	vreq_expect_counts(t, c);
}

#define INFLIGHT 8u
#define INFLIGHT_SECTOR 4096u
#define INFLIGHT_SEED 0xC0FFEEu

static void several_requests_in_flight_at_once(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	struct vblk_info before, during;
	vblk_get_info(&before);
	ASSERT_EQ(t, before.dpc_cpu, 0u);
	ASSERT_EQ(t, smp_this_cpu(), 0u);
	struct buf b[INFLIGHT];
	static struct req r[INFLIGHT];
	for (unsigned i = 0; i < INFLIGHT; i++) {
		buf_make(t, &b[i], 2, 0, PAGE_SIZE);
		pattern_fill(b[i].data, PAGE_SIZE, INFLIGHT_SEED + i);
	}
	/* At DISPATCH_LEVEL on CPU 0 the completion DPC (CPU 0's) cannot run: every request is
	 * on the ring before any completes, however fast the device is. */
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	for (unsigned i = 0; i < INFLIGHT; i++)
		start(t, &r[i], IRP_MJ_WRITE, b[i].mdl, PAGE_SIZE,
		      (LONGLONG)(INFLIGHT_SECTOR + i * (PAGE_SIZE / VBLK_SECTOR)) * VBLK_SECTOR);
	unsigned done_early = 0;
	for (unsigned i = 0; i < INFLIGHT; i++)
		done_early += r[i].done;
	vblk_get_info(&during);
	KeLowerIrql(old);
	EXPECT_EQ(t, done_early, 0u);
	EXPECT_EQ(t, during.in_flight, (uint64_t)INFLIGHT);
	for (unsigned i = 0; i < INFLIGHT; i++) {
		EXPECT_EQ(t, r[i].returned, STATUS_PENDING);
		EXPECT_EQ(t, vreq_finish(t, &r[i]), STATUS_SUCCESS);
		EXPECT_EQ(t, r[i].info, (ULONG_PTR)PAGE_SIZE);
	}
	struct vblk_info after;
	vblk_get_info(&after);
	EXPECT_EQ(t, after.in_flight, 0u);
	EXPECT_EQ(t, after.completed - before.completed, (uint64_t)INFLIGHT);
	EXPECT_GE(t, after.max_in_flight, (uint64_t)INFLIGHT);
	EXPECT_GE(t, after.interrupts, before.interrupts + 1);
	for (unsigned i = 0; i < INFLIGHT; i++) {
		kprintf("# disk-check: %u %u 0x%x\n", (unsigned)(INFLIGHT_SECTOR + i * (PAGE_SIZE / VBLK_SECTOR)),
			(unsigned)(PAGE_SIZE / VBLK_SECTOR), INFLIGHT_SEED + i);
		buf_free(&b[i]);
	}
	vreq_expect_counts(t, c);
}

static void bad_sizes_offsets_and_ends_are_refused(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	struct vblk_info i;
	vblk_get_info(&i);
	struct buf b;
	buf_make(t, &b, 3, 0, 2 * PAGE_SIZE);
	uint64_t submitted = i.submitted;
	LONGLONG end = (LONGLONG)i.capacity * VBLK_SECTOR;
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, 100, 0, NULL), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, b.mdl, VBLK_SECTOR + 1, 0, NULL), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, 3, NULL), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, -(LONGLONG)VBLK_SECTOR, NULL), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, 4 * PAGE_SIZE, 0, NULL), STATUS_INVALID_PARAMETER); /* > MDL */
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, 1, 0, NULL), STATUS_INVALID_PARAMETER); /* 1 byte */
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, b.mdl, 1, VBLK_SECTOR, NULL), STATUS_INVALID_PARAMETER);
	/* Past the end: Windows' disk stack's STATUS_NONEXISTENT_SECTOR (virtio_blk.c). */
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, end, NULL), STATUS_NONEXISTENT_SECTOR);
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, b.mdl, 2 * VBLK_SECTOR, end - VBLK_SECTOR, NULL), STATUS_NONEXISTENT_SECTOR);
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, end + 64 * VBLK_SECTOR, NULL), STATUS_NONEXISTENT_SECTOR);
	ULONG_PTR info = 1;
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, 0, 0, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, 0u);
	/* The last sector itself is readable. */
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, end - VBLK_SECTOR, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)VBLK_SECTOR);
	vblk_get_info(&i);
	EXPECT_EQ(t, i.submitted, submitted + 1); /* only that one reached the device */
	/* The device's own statuses. */
	EXPECT_EQ(t, vblk_status_of(VIRTIO_BLK_S_IOERR), STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, vblk_status_of(VIRTIO_BLK_S_UNSUPP), STATUS_INVALID_DEVICE_REQUEST);
	buf_free(&b);
	vreq_expect_counts(t, c);
}

/* ---- splitting ---- */

#define SPLIT_PAGES 256u
#define SPLIT_SECTOR 16384u
#define SPLIT_SEED 0x5A11CEu

/* An MDL of SPLIT_PAGES frames built by hand from an allocation of three times as many, each
 * frame taken only when it does not follow the one before: one run per page. */
#define SPLIT_SRC (3 * SPLIT_PAGES)
struct scattered {
	PMDL src;
	uint8_t *sva;
	PMDL mdl;
	unsigned idx[SPLIT_PAGES];   /* page k of the MDL is page idx[k] of the allocation */
	bool used[SPLIT_SRC];
};
static void scattered_make(struct ktest *t, struct scattered *b)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	b->src = MmAllocatePagesForMdlEx(lo, hi, skip, (SIZE_T)SPLIT_SRC * PAGE_SIZE, MmCached,
					 MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, b->src != NULL);
	b->sva = MmMapLockedPagesSpecifyCache(b->src, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, b->sva != NULL);
	b->mdl = IoAllocateMdl(MmGetMdlVirtualAddress(b->src), SPLIT_PAGES * PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, b->mdl != NULL);
	PPFN_NUMBER from = MmGetMdlPfnArray(b->src), to = MmGetMdlPfnArray(b->mdl);
	memset(b->used, 0, sizeof b->used);
	unsigned k = 0;
	for (unsigned i = 0; i < SPLIT_SRC && k < SPLIT_PAGES; i++) {
		if (k && from[i] == to[k - 1] + 1)
			continue; /* would join the run before */
		b->idx[k] = i;
		b->used[i] = true;
		to[k++] = from[i];
	}
	ASSERT_EQ(t, k, SPLIT_PAGES);
	ASSERT_EQ(t, runs_of(to, SPLIT_PAGES), SPLIT_PAGES);
}
static uint8_t *scattered_page(struct scattered *b, unsigned k) { return b->sva + (uint64_t)b->idx[k] * PAGE_SIZE; }
static void scattered_free(struct scattered *b)
{
	IoFreeMdl(b->mdl);
	MmUnmapLockedPages(b->sva, b->src);
	MmFreePagesFromMdl(b->src);
	ExFreePool(b->src);
}

static void a_megabyte_of_scattered_frames_is_split_and_completed_once(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	struct vblk_info i, after;
	vblk_get_info(&i);
	ASSERT_TRUE(t, i.seg_limit < SPLIT_PAGES); /* more runs than one request may carry */
	static struct scattered w, r;
	scattered_make(t, &w);
	scattered_make(t, &r);
	uint32_t x = SPLIT_SEED; /* the pattern, continued across the scattered pages */
	for (unsigned k = 0; k < SPLIT_PAGES; k++) {
		uint32_t *wd = (uint32_t *)scattered_page(&w, k);
		for (unsigned j = 0; j < PAGE_SIZE / 4; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			wd[j] = x;
		}
	}
	memset(r.sva, 0x5A, SPLIT_SRC * PAGE_SIZE);

	ULONG_PTR info = 0;
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, w.mdl, SPLIT_PAGES * PAGE_SIZE, (LONGLONG)SPLIT_SECTOR * VBLK_SECTOR, &info),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)(SPLIT_PAGES * PAGE_SIZE)); /* the whole IRP, once */
	vblk_get_info(&after);
	struct vblk_last_irp li;
	vblk_get_last_irp(&li);
	EXPECT_EQ(t, after.completed - i.completed, (uint64_t)li.npieces); /* every piece was a request */
	EXPECT_EQ(t, after.in_flight, 0u);
	EXPECT_GE(t, li.npieces, 2u);
	ASSERT_TRUE(t, li.npieces <= VBLK_RECORD_PIECES);
	/* The descriptors, all pieces in order, are the MDL's frames and the frames the page
	 * tables map at the pages the pattern was written through. */
	ASSERT_EQ(t, li.nruns, SPLIT_PAGES);
	PPFN_NUMBER wf = MmGetMdlPfnArray(w.mdl);
	for (unsigned k = 0; k < SPLIT_PAGES; k++) {
		EXPECT_EQ(t, li.addr[k], (uint64_t)wf[k] << PAGE_SHIFT);
		EXPECT_EQ(t, li.addr[k] >> PAGE_SHIFT, (uint64_t)mmt_frame_of((uint64_t)scattered_page(&w, k)));
		EXPECT_TRUE(t, li.len[k] == PAGE_SIZE || i.size_limit < PAGE_SIZE);
	}
	/* Each piece within the limits, whole sectors, at the sector where the one before ended. */
	uint64_t sector = SPLIT_SECTOR, bytes = 0;
	for (unsigned p = 0; p < li.npieces; p++) {
		EXPECT_EQ(t, li.piece_sector[p], sector);
		EXPECT_TRUE(t, li.piece_runs[p] >= 1 && li.piece_runs[p] <= i.seg_limit);
		EXPECT_EQ(t, li.piece_bytes[p] % VBLK_SECTOR, 0u);
		sector += li.piece_bytes[p] / VBLK_SECTOR;
		bytes += li.piece_bytes[p];
	}
	EXPECT_EQ(t, bytes, (uint64_t)SPLIT_PAGES * PAGE_SIZE);
	kprintf("    # 1 MiB in %u runs: %u requests of at most %u descriptors\n", li.nruns, li.npieces, i.seg_limit);

	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, r.mdl, SPLIT_PAGES * PAGE_SIZE, (LONGLONG)SPLIT_SECTOR * VBLK_SECTOR, &info),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)(SPLIT_PAGES * PAGE_SIZE));
	vblk_get_last_irp(&li);
	PPFN_NUMBER rf = MmGetMdlPfnArray(r.mdl);
	ASSERT_EQ(t, li.nruns, SPLIT_PAGES);
	for (unsigned k = 0; k < SPLIT_PAGES; k++)
		EXPECT_EQ(t, li.addr[k], (uint64_t)rf[k] << PAGE_SHIFT);
	unsigned bad = 0, touched = 0;
	for (unsigned k = 0; k < SPLIT_PAGES; k++)
		bad += memcmp(scattered_page(&r, k), scattered_page(&w, k), PAGE_SIZE) != 0;
	for (unsigned f = 0; f < SPLIT_SRC; f++) { /* the allocation's other frames: not the MDL's */
		const uint8_t *gap = r.sva + (uint64_t)f * PAGE_SIZE;
		for (unsigned j = 0; !r.used[f] && j < PAGE_SIZE; j++)
			touched += gap[j] != 0x5A;
	}
	EXPECT_EQ(t, bad, 0u);
	EXPECT_EQ(t, touched, 0u);
	kprintf("# disk-check: %u %u 0x%x\n", SPLIT_SECTOR, (unsigned)(SPLIT_PAGES * PAGE_SIZE / VBLK_SECTOR), SPLIT_SEED);
	scattered_free(&w);
	scattered_free(&r);
	vreq_expect_counts(t, c);
}

/* ---- a buffer straddling pages of different memory types ---- */

#define MT_SECTOR 69632u
#define MT_OFFSET 0x234u
#define MT_LENGTH (2 * PAGE_SIZE + 2 * VBLK_SECTOR) /* into all three pages */
#define MT_SEED 0x3E3717E5u

/* Three one-page allocations of MmAllocatePagesForMdlEx, each its own CacheType (the frame's
 * memory type for good, mm/RULES.md rule 6), in one MDL built by hand at byte offset
 * MT_OFFSET, mapped with MmCached: each PTE carries its own frame's type. */
struct mixed {
	PMDL part[3];
	PMDL mdl;
	uint8_t *va;
};
static void mixed_make(struct ktest *t, struct mixed *m, const MEMORY_CACHING_TYPE types[3])
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	m->mdl = IoAllocateMdl((PVOID)(uint64_t)MT_OFFSET, MT_LENGTH, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m->mdl != NULL);
	for (unsigned i = 0; i < 3; i++) {
		m->part[i] = MmAllocatePagesForMdlEx(lo, hi, skip, PAGE_SIZE, types[i], MM_ALLOCATE_FULLY_REQUIRED);
		ASSERT_TRUE(t, m->part[i] != NULL);
		MmGetMdlPfnArray(m->mdl)[i] = MmGetMdlPfnArray(m->part[i])[0];
	}
	m->mdl->MdlFlags |= MDL_PAGES_LOCKED; /* the allocations' frames: resident, not probed */
	m->va = MmMapLockedPagesSpecifyCache(m->mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, m->va != NULL);
	EXPECT_EQ(t, (uint64_t)m->va & (PAGE_SIZE - 1), (uint64_t)MT_OFFSET);
}
static void mixed_free(struct mixed *m)
{
	MmUnmapLockedPages(m->va, m->mdl);
	m->mdl->MdlFlags &= ~MDL_PAGES_LOCKED;
	IoFreeMdl(m->mdl);
	for (unsigned i = 0; i < 3; i++) {
		MmFreePagesFromMdl(m->part[i]);
		ExFreePool(m->part[i]);
	}
}

/* mm/RULES.md, I/O rule I11: the device's DMA is coherent and takes physical addresses, so a
 * transfer through pages of different memory types is handled, one descriptor per run. */
static void a_buffer_straddling_memory_types_is_transferred_whole(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	disk(t);
	static const MEMORY_CACHING_TYPE wt[3] = { MmCached, MmNonCached, MmWriteCombined };
	static const MEMORY_CACHING_TYPE rt[3] = { MmWriteCombined, MmCached, MmNonCached };
	static const unsigned wenc[3] = { MMT_ENC_WB, MMT_ENC_UC, MMT_ENC_WC }, renc[3] = { MMT_ENC_WC, MMT_ENC_WB, MMT_ENC_UC };
	struct mixed w, r;
	mixed_make(t, &w, wt);
	mixed_make(t, &r, rt);
	/* The mapping's leaves, walked: three types in one buffer, as the frames have them. */
	uint64_t wpage = (uint64_t)w.va & ~(uint64_t)(PAGE_SIZE - 1), rpage = (uint64_t)r.va & ~(uint64_t)(PAGE_SIZE - 1);
	for (unsigned i = 0; i < 3; i++) {
		EXPECT_EQ(t, mmt_encoding_at(wpage + i * PAGE_SIZE, NULL), wenc[i]);
		EXPECT_EQ(t, mmt_encoding_at(rpage + i * PAGE_SIZE, NULL), renc[i]);
		EXPECT_EQ(t, mmt_frame_of(wpage + i * PAGE_SIZE), (pfn_t)MmGetMdlPfnArray(w.mdl)[i]);
	}
	/* Written through the mapping: WB, UC and WC stores (the WC ones leave the processor's
	 * write-combining buffers at the driver's locked instruction and MFENCE before the
	 * doorbell, SDM Vol. 3A 11.3.1). */
	pattern_fill(w.va, MT_LENGTH, MT_SEED);
	for (unsigned i = 0; i < MT_LENGTH; i++)
		r.va[i] = 0xA5;
	ULONG_PTR info = 0;
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, w.mdl, MT_LENGTH, (LONGLONG)MT_SECTOR * VBLK_SECTOR, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)MT_LENGTH);
	vreq_expect_descriptors(t, MmGetMdlPfnArray(w.mdl), MT_OFFSET, MT_LENGTH);
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, r.mdl, MT_LENGTH, (LONGLONG)MT_SECTOR * VBLK_SECTOR, &info), STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)MT_LENGTH);
	vreq_expect_descriptors(t, MmGetMdlPfnArray(r.mdl), MT_OFFSET, MT_LENGTH);
	/* Read back through WC, WB and UC leaves: the bytes the device wrote, in every page. */
	unsigned bad[3] = { 0, 0, 0 };
	for (unsigned i = 0; i < MT_LENGTH; i++)
		bad[(MT_OFFSET + i) / PAGE_SIZE] += r.va[i] != w.va[i];
	EXPECT_EQ(t, bad[0], 0u);
	EXPECT_EQ(t, bad[1], 0u);
	EXPECT_EQ(t, bad[2], 0u);
	/* The types did not change under the transfer. */
	for (unsigned i = 0; i < 3; i++)
		EXPECT_EQ(t, mmt_alias_encoding(MmGetMdlPfnArray(w.mdl)[i], NULL), wenc[i]);
	kprintf("# disk-check: %u %u 0x%x\n", MT_SECTOR, (unsigned)(MT_LENGTH / VBLK_SECTOR), MT_SEED);
	mixed_free(&w);
	mixed_free(&r);
	vreq_expect_counts(t, c);
}

/* ---- every CPU at once ---- */

#define CC_ROUNDS 3u
#define CC_INFL 4u                         /* IRPs in flight per CPU per round */
#define CC_PAGES (CC_ROUNDS * CC_INFL)     /* pages per CPU, one range of the disk */
#define CC_SECTOR 24576u
#define CC_SEED 0xC0C0A000u
#define CC_MAX_CPUS 16u

struct cc_worker {
	PDEVICE_OBJECT dev;
	unsigned cpu;
	uint64_t sector;                   /* its range's first sector */
	struct buf w[CC_PAGES], r[CC_PAGES];
	struct req req[CC_INFL];
	unsigned failures, first_line;
	uint64_t first_got;
};
static struct {
	unsigned n;
	volatile uint32_t arrived, go;
	struct cc_worker w[CC_MAX_CPUS];
} cc;

#define CC_CHECK(k, cond, got)                                  \
	do {                                                    \
		if (!(cond) && !(k)->failures++) {              \
			(k)->first_line = __LINE__;             \
			(k)->first_got = (uint64_t)(got);       \
		}                                               \
	} while (0)

/* IoCallDriver from any CPU; the completion routine marks the request done. */
static bool cc_start(struct cc_worker *k, struct req *r, UCHAR major, PMDL mdl, uint64_t sector)
{
	memset(r, 0, sizeof *r);
	r->irp = IoAllocateIrp(k->dev->StackSize, FALSE);
	if (!r->irp)
		return false;
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(r->irp);
	sp->MajorFunction = major;
	sp->Parameters.Read.Length = PAGE_SIZE;
	sp->Parameters.Read.ByteOffset.QuadPart = (LONGLONG)(sector * VBLK_SECTOR);
	r->irp->MdlAddress = mdl;
	IoSetCompletionRoutine(r->irp, vreq_on_done, r, TRUE, TRUE, TRUE);
	r->returned = IoCallDriver(k->dev, r->irp);
	return true;
}
static NTSTATUS cc_finish(struct cc_worker *k, struct req *r)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) && rdtsc() < end)
		cpu_relax();
	CC_CHECK(k, r->done, 0);
	if (!r->done)
		return STATUS_PENDING; /* still in flight: the case fails (and the IRP leaks) */
	r->irp->MdlAddress = NULL;
	IoFreeIrp(r->irp);
	r->irp = NULL;
	return r->status;
}

static void cc_work(struct cc_worker *k)
{
	if (__atomic_add_fetch(&cc.arrived, 1, __ATOMIC_SEQ_CST) == cc.n)
		__atomic_store_n(&cc.go, 1, __ATOMIC_SEQ_CST);
	CC_CHECK(k, smp_wait_flag(&cc.go), 0);
	for (unsigned round = 0; round < CC_ROUNDS; round++) {
		unsigned p0 = round * CC_INFL;
		for (unsigned i = 0; i < CC_INFL; i++)
			CC_CHECK(k, cc_start(k, &k->req[i], IRP_MJ_WRITE, k->w[p0 + i].mdl, k->sector + (p0 + i) * 8u), 0);
		for (unsigned i = 0; i < CC_INFL; i++) {
			NTSTATUS st = cc_finish(k, &k->req[i]);
			CC_CHECK(k, st == STATUS_SUCCESS && k->req[i].info == PAGE_SIZE, st);
		}
		for (unsigned i = 0; i < CC_INFL; i++)
			CC_CHECK(k, cc_start(k, &k->req[i], IRP_MJ_READ, k->r[p0 + i].mdl, k->sector + (p0 + i) * 8u), 0);
		for (unsigned i = 0; i < CC_INFL; i++) {
			NTSTATUS st = cc_finish(k, &k->req[i]);
			CC_CHECK(k, st == STATUS_SUCCESS && k->req[i].info == PAGE_SIZE, st);
			CC_CHECK(k, !memcmp(k->r[p0 + i].data, k->w[p0 + i].data, PAGE_SIZE), p0 + i);
		}
	}
}
static void cc_work_on_ap(void *arg) { cc_work(arg); }

static void every_cpu_issues_io_at_once_and_every_pattern_checks_out(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT dev = disk(t);
	unsigned n = smp_cpus_online();
	if (n < 2)
		KTEST_SKIP(t, "needs a second CPU");
	ASSERT_TRUE(t, n <= CC_MAX_CPUS);
	ASSERT_EQ(t, smp_this_cpu(), 0u);
	struct vblk_info before, after;
	vblk_get_info(&before);
	memset(&cc, 0, sizeof cc);
	cc.n = n;
	for (unsigned cpu = 0; cpu < n; cpu++) {
		struct cc_worker *k = &cc.w[cpu];
		k->dev = dev;
		k->cpu = cpu;
		k->sector = CC_SECTOR + (uint64_t)cpu * CC_PAGES * 8u;
		/* The CPU's range is one pattern from its seed, page after page. */
		uint32_t x = CC_SEED + cpu;
		for (unsigned p = 0; p < CC_PAGES; p++) {
			buf_make(t, &k->w[p], 1, 0, PAGE_SIZE);
			buf_make(t, &k->r[p], 1, 0, PAGE_SIZE);
			uint32_t *wd = (uint32_t *)k->w[p].data;
			for (unsigned j = 0; j < PAGE_SIZE / 4; j++) {
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				wd[j] = x;
			}
			memset(k->r[p].data, 0xA5, PAGE_SIZE);
		}
	}
	unsigned started = 1;
	for (unsigned cpu = 1; cpu < n; cpu++)
		started += smp_work_start(cpu, cc_work_on_ap, &cc.w[cpu]);
	ASSERT_EQ(t, started, n);
	cc_work(&cc.w[0]);
	bool back = true;
	for (unsigned cpu = 1; cpu < n; cpu++)
		back &= smp_work_wait(cpu);
	ASSERT_TRUE(t, back);
	vblk_get_info(&after);
	for (unsigned cpu = 0; cpu < n; cpu++) {
		struct cc_worker *k = &cc.w[cpu];
		if (k->failures)
			KTEST_FAIL(t, "CPU %u: %u failed checks, the first at line %u (0x%lx)", cpu, k->failures,
				   k->first_line, k->first_got);
		kprintf("# disk-check: %lu %u 0x%x\n", k->sector, CC_PAGES * 8u, CC_SEED + cpu);
	}
	EXPECT_EQ(t, after.completed - before.completed, (uint64_t)n * CC_PAGES * 2);
	EXPECT_EQ(t, after.in_flight, 0u);
	kprintf("    # %u CPUs x %u IRPs (%u in flight each at a time), most in flight at once %lu\n", n,
		2 * CC_PAGES, CC_INFL, after.max_in_flight);
	for (unsigned cpu = 0; cpu < n; cpu++)
		for (unsigned p = 0; p < CC_PAGES; p++) {
			buf_free(&cc.w[cpu].w[p]);
			buf_free(&cc.w[cpu].r[p]);
		}
	vreq_expect_counts(t, c);
}

/* Each case has the driver loaded for it alone (virtio_blk.h). */
static int vblk_case_init(struct ktest *t)
{
	(void)t;
	NTSTATUS st = vblk_load();
	if (st && st != (NTSTATUS)0xC000000E /* STATUS_NO_SUCH_DEVICE: disk() skips */)
		kprintf("    # loading virtio_blk: 0x%x\n", (unsigned)st);
	return st && st != (NTSTATUS)0xC000000E;
}

static void vblk_case_exit(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (i.device)
		EXPECT_EQ(t, vblk_unload_driver(), STATUS_SUCCESS);
}

static struct ktest_case virtio_blk_cases[] = {
	KTEST_CASE(negotiated_version_1_and_routed_msix),
	KTEST_CASE(write_then_read_back_through_unaligned_mdls),
	KTEST_CASE(several_requests_in_flight_at_once),
	KTEST_CASE(bad_sizes_offsets_and_ends_are_refused),
	KTEST_CASE(a_megabyte_of_scattered_frames_is_split_and_completed_once),
	KTEST_CASE(a_buffer_straddling_memory_types_is_transferred_whole),
	KTEST_CASE(every_cpu_issues_io_at_once_and_every_pattern_checks_out),
	{ 0 }
};
KTEST_SUITE(virtio_blk, virtio_blk_cases, .init = vblk_case_init, .exit = vblk_case_exit);
