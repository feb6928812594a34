/*
 * Requests to the virtio-blk device for its suites (tests/virtio_blk_test.c,
 * tests/virtio_fault_test.c): driver-allocated IRPs whose completion routine keeps them
 * (STATUS_MORE_PROCESSING_REQUIRED), a bounded wait for the completion, and buffers of
 * MmAllocatePagesForMdlEx frames described again by a partial MDL; the resource counts every
 * case ends with; the blkfault machine's bad ranges (also tests/pager_test.c's).
 */
#ifndef TESTS_LIB_VBLK_REQ_H
#define TESTS_LIB_VBLK_REQ_H

#include <stdint.h>
#include "include/wdm.h"
#include "kernel/ktest.h"

/* make test's blkfault machine: the kernel is told `blkfault=W,R,N` (its blkdebug disk fails
 * every write touching sectors W .. W+N-1 and every read touching R .. R+N-1).  Skips the case
 * without it; fails it unless the value is exactly three numbers and N > 0. */
struct vreq_blkfault {
	uint64_t write, read, count;
};
void vreq_blkfault(struct ktest *t, struct vreq_blkfault *bf);

/* Frames, system PTEs, locked frames and pool bytes in use. */
struct vreq_counts {
	uint64_t frames, sysptes, locked, pool_bytes;
};
struct vreq_counts vreq_counts_now(void);
void vreq_expect_counts(struct ktest *t, struct vreq_counts a);

struct req {
	PIRP irp;
	volatile int done;
	NTSTATUS status;     /* IoStatus at completion */
	ULONG_PTR info;
	NTSTATUS returned;   /* what IoCallDriver returned */
};

/* The completion routine: records the status, marks done, keeps the IRP. */
NTSTATUS vreq_on_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx);
/* An IRP of `major` (IRP_MJ_READ/WRITE) for `length` bytes at byte `offset`, carrying `mdl`,
 * sent with IoCallDriver. */
void vreq_start(struct ktest *t, PDEVICE_OBJECT dev, struct req *r, UCHAR major, PMDL mdl, ULONG length,
		LONGLONG offset);
/* Wait (bounded, SMP_WAIT_MS) for the completion, free the IRP; the completion status. */
NTSTATUS vreq_finish(struct ktest *t, struct req *r);
/* Start and finish one; *info (if not NULL) the bytes transferred, *returned (if not NULL)
 * IoCallDriver's status. */
NTSTATUS vreq_transfer(struct ktest *t, PDEVICE_OBJECT dev, UCHAR major, PMDL mdl, ULONG length, LONGLONG offset,
		       ULONG_PTR *info, NTSTATUS *returned);

/* The I/O manager's own request (IoBuildSynchronousFsdRequest) for `length` bytes of the
 * kernel buffer at byte `offset`: the buffers the device's flags ask for (a SystemBuffer for
 * DO_BUFFERED_IO, an MDL probed and locked for DO_DIRECT_IO), sent, waited for (bounded) on
 * its event.  The IO_STATUS_BLOCK's status; *iosb all of it; *returned (if not NULL)
 * IoCallDriver's status.  For a buffered device, sysbuf[] (if not NULL, room for the
 * request's pages) gets the frames of the SystemBuffer the I/O manager made, read from the
 * page tables before the IRP is sent, and *sysoff its offset into its first page. */
NTSTATUS vreq_fsd(struct ktest *t, PDEVICE_OBJECT dev, ULONG major, void *buffer, ULONG length, LONGLONG offset,
		  IO_STATUS_BLOCK *iosb, NTSTATUS *returned, PFN_NUMBER *sysbuf, ULONG *sysoff);

/* The data descriptors the device was last told (vblk_get_last_request) are the frames
 * `frames` (one per page of a transfer of `length` bytes starting `offset` into the first),
 * one per physically contiguous run. */
void vreq_expect_descriptors(struct ktest *t, const PFN_NUMBER *frames, ULONG offset, ULONG length);

/* Frames of MmAllocatePagesForMdlEx, mapped, described again at an offset. */
struct buf {
	PMDL pages;   /* the allocation */
	uint8_t *va;  /* its system mapping */
	PMDL mdl;     /* the partial MDL the IRP carries: `length` bytes from `offset` */
	uint8_t *data;
};
void buf_make(struct ktest *t, struct buf *b, ULONG npages, ULONG offset, ULONG length);
void buf_free(struct buf *b);

#endif
