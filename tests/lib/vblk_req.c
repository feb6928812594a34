/* Requests to the virtio-blk device for its suites (vblk_req.h). */
#include "tests/lib/vblk_req.h"
#include "tests/lib/counters.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/smp/smp.h"
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
