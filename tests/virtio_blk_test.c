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
 * the pattern: the data went to the disk, not to a copy.  Every case ends with the frames,
 * system PTEs, locked pages and pool where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/intr/ioapic.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/pci/pci.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"
#include "kernel/virtio/virtio_blk.h"
#include "mm/pool.h"

struct counts {
	uint64_t frames, sysptes, locked, pool_bytes;
};
static struct counts counts_now(void)
{
	struct pool_stats s;
	pool_get_stats(&s);
	return (struct counts){ mmt_free_frames(), mmt_free_sysptes(), mmt_locked_frames(), s.bytes_in_use };
}
static void expect_counts(struct ktest *t, struct counts a)
{
	struct counts b = counts_now();
	EXPECT_EQ(t, b.frames, a.frames);
	EXPECT_EQ(t, b.sysptes, a.sysptes);
	EXPECT_EQ(t, b.locked, a.locked);
	EXPECT_EQ(t, b.pool_bytes, a.pool_bytes);
}

static PDEVICE_OBJECT disk(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (!i.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	return i.device;
}

/* ---- requests ---- */

struct req {
	PIRP irp;
	volatile int done;
	NTSTATUS status;
	ULONG_PTR info;
	NTSTATUS returned;
};

static NTSTATUS on_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
	(void)d;
	struct req *r = ctx;
	r->status = irp->IoStatus.Status;
	r->info = irp->IoStatus.Information;
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return STATUS_MORE_PROCESSING_REQUIRED; /* the IRP is ours again: freed by finish() */
}

static void start(struct ktest *t, struct req *r, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset)
{
	PDEVICE_OBJECT dev = disk(t);
	memset(r, 0, sizeof *r);
	r->irp = IoAllocateIrp(dev->StackSize, FALSE);
	ASSERT_TRUE(t, r->irp != NULL);
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(r->irp);
	sp->MajorFunction = major;
	sp->Parameters.Read.Length = length;
	sp->Parameters.Read.ByteOffset.QuadPart = offset;
	r->irp->MdlAddress = mdl;
	IoSetCompletionRoutine(r->irp, on_done, r, TRUE, TRUE, TRUE);
	r->returned = IoCallDriver(dev, r->irp);
}

/* Wait (bounded) for the completion, free the IRP; the completion status. */
static NTSTATUS finish(struct ktest *t, struct req *r)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) && rdtsc() < end)
		cpu_relax();
	ASSERT_TRUE(t, r->done);
	r->irp->MdlAddress = NULL; /* the caller's MDL, not the IRP's to free */
	IoFreeIrp(r->irp);
	r->irp = NULL;
	return r->status;
}

static NTSTATUS transfer(struct ktest *t, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset, ULONG_PTR *info)
{
	struct req r;
	start(t, &r, major, mdl, length, offset);
	NTSTATUS st = finish(t, &r);
	EXPECT_TRUE(t, r.returned == STATUS_PENDING || r.returned == st);
	if (info)
		*info = r.info;
	return st;
}

/* ---- buffers: frames of MmAllocatePagesForMdlEx, mapped, described again at an offset ---- */

struct buf {
	PMDL pages;   /* the allocation */
	uint8_t *va;  /* its system mapping */
	PMDL mdl;     /* the partial MDL the IRP carries */
	uint8_t *data;
};

static void buf_make(struct ktest *t, struct buf *b, ULONG npages, ULONG offset, ULONG length)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	b->pages = MmAllocatePagesForMdlEx(lo, hi, skip, (SIZE_T)npages * PAGE_SIZE, MmCached, MM_ALLOCATE_FULLY_REQUIRED);
	ASSERT_TRUE(t, b->pages != NULL);
	b->va = MmMapLockedPagesSpecifyCache(b->pages, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, b->va != NULL);
	b->data = b->va + offset;
	/* The partial MDL's range in the source's own terms: MmAllocatePagesForMdlEx's MDL
	 * describes its frames from virtual address 0. */
	PUCHAR at = (PUCHAR)MmGetMdlVirtualAddress(b->pages) + offset;
	b->mdl = IoAllocateMdl(at, length, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, b->mdl != NULL);
	IoBuildPartialMdl(b->pages, b->mdl, at, length);
}

static void buf_free(struct buf *b)
{
	IoFreeMdl(b->mdl);
	MmUnmapLockedPages(b->va, b->pages);
	MmFreePagesFromMdl(b->pages);
	ExFreePool(b->pages);
}

static unsigned runs_of(const PFN_NUMBER *pfn, ULONG pages)
{
	unsigned runs = 1;
	for (ULONG i = 1; i < pages; i++)
		runs += pfn[i] != pfn[i - 1] + 1;
	return runs;
}

/* The descriptors the device was last told are the frames `frames` (one per page of a
 * transfer of `length` bytes starting `offset` into the first), one per contiguous run. */
static void expect_descriptors_name(struct ktest *t, const PFN_NUMBER *frames, ULONG offset, ULONG length)
{
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	unsigned n = 0;
	ULONG page = 0, left = length;
	uint64_t off = offset;
	while (left && n < last.nruns) {
		uint64_t addr = ((uint64_t)frames[page] << PAGE_SHIFT) + off;
		uint32_t len = 0;
		for (;;) {
			uint32_t chunk = (uint32_t)(PAGE_SIZE - off) < left - len ? (uint32_t)(PAGE_SIZE - off) : left - len;
			len += chunk;
			off = 0;
			page++;
			if (len == left || frames[page] != frames[page - 1] + 1)
				break;
		}
		EXPECT_EQ(t, last.addr[n], addr);
		EXPECT_EQ(t, (uint64_t)last.len[n], (uint64_t)len);
		left -= len;
		n++;
	}
	EXPECT_EQ(t, left, 0u);
	EXPECT_EQ(t, n, last.nruns);
}

/* ---- cases ---- */

static void negotiated_version_1_and_routed_msix(struct ktest *t)
{
	struct counts c = counts_now();
	disk(t);
	struct vblk_info i;
	vblk_get_info(&i);
	EXPECT_TRUE(t, i.offered & VIRTIO_F_VERSION_1);
	EXPECT_EQ(t, i.features, VIRTIO_F_VERSION_1);
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
	expect_counts(t, c);
}

#define RW_SECTOR 2048u
#define RW_OFFSET 0x234u
#define RW_LENGTH (4 * PAGE_SIZE)
#define RW_SEED 0x1234567u

static void write_then_read_back_through_unaligned_mdls(struct ktest *t)
{
	struct counts c = counts_now();
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
	expect_descriptors_name(t, wf, RW_OFFSET, RW_LENGTH);
	PFN_NUMBER walked[5];
	for (ULONG i = 0; i < pages; i++)
		walked[i] = mmt_frame_of(((uint64_t)w.data & ~(uint64_t)(PAGE_SIZE - 1)) + i * PAGE_SIZE);
	expect_descriptors_name(t, walked, RW_OFFSET, RW_LENGTH);

	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, r.mdl, RW_LENGTH, (LONGLONG)RW_SECTOR * VBLK_SECTOR, &info),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)RW_LENGTH);
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_IN);
	expect_descriptors_name(t, MmGetMdlPfnArray(r.mdl), RW_OFFSET, RW_LENGTH);
	EXPECT_EQ(t, memcmp(w.data, r.data, RW_LENGTH), 0);
	/* The bytes around the read's range are as they were: the device wrote only there. */
	EXPECT_EQ(t, r.va[RW_OFFSET - 1], 0u);
	EXPECT_EQ(t, r.data[RW_LENGTH], 0u);
	kprintf("# disk-check: %u %u 0x%x\n", RW_SECTOR, (unsigned)(RW_LENGTH / VBLK_SECTOR), RW_SEED);
	buf_free(&w);
	buf_free(&r);
	expect_counts(t, c);
}

#define INFLIGHT 8u
#define INFLIGHT_SECTOR 4096u
#define INFLIGHT_SEED 0xC0FFEEu

static void several_requests_in_flight_at_once(struct ktest *t)
{
	struct counts c = counts_now();
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
		EXPECT_EQ(t, finish(t, &r[i]), STATUS_SUCCESS);
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
	expect_counts(t, c);
}

static void bad_sizes_offsets_and_ends_are_refused(struct ktest *t)
{
	struct counts c = counts_now();
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
	EXPECT_EQ(t, transfer(t, IRP_MJ_READ, b.mdl, VBLK_SECTOR, end, NULL), STATUS_END_OF_MEDIA);
	EXPECT_EQ(t, transfer(t, IRP_MJ_WRITE, b.mdl, 2 * VBLK_SECTOR, end - VBLK_SECTOR, NULL), STATUS_END_OF_MEDIA);
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
	expect_counts(t, c);
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
	{ 0 }
};
KTEST_SUITE(virtio_blk, virtio_blk_cases, .init = vblk_case_init, .exit = vblk_case_exit);
