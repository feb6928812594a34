/* Requests to the virtio-blk device for its suites (vblk_req.h). */
#include "tests/lib/vblk_req.h"
#include "tests/lib/counters.h"
#include "tests/lib/pte.h"
#include "kernel/cmdline.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/smp/smp.h"
#include "kernel/virtio/virtio_blk.h"
#include "mm/pool.h"

struct vreq_counts vreq_counts_now(void)
{
	struct pool_stats s;
	pool_get_stats(&s);
	return (struct vreq_counts){ mmt_free_frames(), mmt_free_sysptes(), mmt_locked_frames(), s.bytes_in_use };
}

void vreq_expect_counts(struct ktest *t, struct vreq_counts a)
{
	struct vreq_counts b = vreq_counts_now();
	EXPECT_EQ(t, b.frames, a.frames);
	EXPECT_EQ(t, b.sysptes, a.sysptes);
	EXPECT_EQ(t, b.locked, a.locked);
	EXPECT_EQ(t, b.pool_bytes, a.pool_bytes);
}

void vreq_blkfault(struct ktest *t, struct vreq_blkfault *bf)
{
	char v[64];
	if (!cmdline_get("blkfault", v, sizeof v))
		KTEST_SKIP(t, "needs blkfault=W,R,N and a blkdebug disk (make test's blkfault machine)");
	uint64_t *field[3] = { &bf->write, &bf->read, &bf->count };
	char *p = v;
	for (unsigned k = 0; k < 3; k++) {
		char *comma = p;
		while (*comma && *comma != ',')
			comma++;
		bool last = !*comma;
		*comma = 0;
		ASSERT_TRUE(t, last == (k == 2) && parse_u64(p, field[k]));
		p = comma + 1;
	}
	ASSERT_TRUE(t, bf->count > 0);
}

NTSTATUS vreq_on_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
	(void)d;
	struct req *r = ctx;
	r->status = irp->IoStatus.Status;
	r->info = irp->IoStatus.Information;
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return STATUS_MORE_PROCESSING_REQUIRED; /* the IRP is ours again: freed by vreq_finish() */
}

void vreq_start(struct ktest *t, PDEVICE_OBJECT dev, struct req *r, UCHAR major, PMDL mdl, ULONG length,
		LONGLONG offset)
{
	memset(r, 0, sizeof *r);
	r->irp = IoAllocateIrp(dev->StackSize, FALSE);
	ASSERT_TRUE(t, r->irp != NULL);
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(r->irp);
	sp->MajorFunction = major;
	sp->Parameters.Read.Length = length; /* Read and Write share the layout */
	sp->Parameters.Read.ByteOffset.QuadPart = offset;
	r->irp->MdlAddress = mdl;
	IoSetCompletionRoutine(r->irp, vreq_on_done, r, TRUE, TRUE, TRUE);
	r->returned = IoCallDriver(dev, r->irp);
}

NTSTATUS vreq_finish(struct ktest *t, struct req *r)
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

NTSTATUS vreq_transfer(struct ktest *t, PDEVICE_OBJECT dev, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset,
		       ULONG_PTR *info, NTSTATUS *returned)
{
	struct req r;
	vreq_start(t, dev, &r, major, mdl, length, offset);
	NTSTATUS st = vreq_finish(t, &r);
	if (info)
		*info = r.info;
	if (returned)
		*returned = r.returned;
	return st;
}

NTSTATUS vreq_fsd(struct ktest *t, PDEVICE_OBJECT dev, ULONG major, void *buffer, ULONG length, LONGLONG offset,
		  IO_STATUS_BLOCK *iosb, NTSTATUS *returned, PFN_NUMBER *sysbuf, ULONG *sysoff)
{
	KEVENT ev;
	KeInitializeEvent(&ev, NotificationEvent, FALSE);
	LARGE_INTEGER at = { .QuadPart = offset };
	iosb->Status = 0x12345678;
	iosb->Information = 77;
	PIRP irp = IoBuildSynchronousFsdRequest(major, dev, buffer, length, &at, &ev, iosb);
	ASSERT_TRUE(t, irp != NULL);
	if (sysbuf && irp->AssociatedIrp.SystemBuffer) {
		uint64_t va = (uint64_t)irp->AssociatedIrp.SystemBuffer;
		ULONG pages = (ULONG)ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, length);
		for (ULONG i = 0; i < pages; i++)
			sysbuf[i] = mmt_frame_of((va & ~(uint64_t)(PAGE_SIZE - 1)) + (uint64_t)i * PAGE_SIZE);
		if (sysoff)
			*sysoff = (ULONG)(va & (PAGE_SIZE - 1));
	}
	NTSTATUS st = IoCallDriver(dev, irp);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (!KeReadStateEvent(&ev) && rdtsc() < end)
		cpu_relax();
	ASSERT_TRUE(t, KeReadStateEvent(&ev));
	if (returned)
		*returned = st;
	return iosb->Status;
}

/* The descriptors the device was last told are the frames `frames` (one per page of a
 * transfer of `length` bytes starting `offset` into the first), one per contiguous run. */
void vreq_expect_descriptors(struct ktest *t, const PFN_NUMBER *frames, ULONG offset, ULONG length)
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

void buf_make(struct ktest *t, struct buf *b, ULONG npages, ULONG offset, ULONG length)
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

void buf_free(struct buf *b)
{
	IoFreeMdl(b->mdl);
	MmUnmapLockedPages(b->va, b->pages);
	MmFreePagesFromMdl(b->pages);
	ExFreePool(b->pages);
}
