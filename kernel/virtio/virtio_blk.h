/*
 * virtio-blk over PCI, modern (virtio 1.x) only: the driver `virtio_blk` (kernel/virtio/
 * virtio_blk.c), loaded at boot when kernel/pci found the function (1AF4:1042).
 *
 * Two device objects on the one disk, FILE_DEVICE_DISK both, served by the same dispatch
 * routines for IRP_MJ_READ and IRP_MJ_WRITE (Parameters.Read/Write.ByteOffset and Length in
 * bytes): \Device\VirtioBlk0 (DO_DIRECT_IO; a user program opens it as \\.\PhysicalDrive0,
 * the symbolic link VBLK_LINK), whose buffer is the IRP's MdlAddress (locked:
 * its PFN array is what the device is told, one data descriptor per physically contiguous
 * run), and \Device\VirtioBlk0Buffered (DO_BUFFERED_IO), whose buffer is the I/O manager's
 * Irp->AssociatedIrp.SystemBuffer (the driver describes it with an MDL of its own,
 * IoAllocateMdl + MmBuildMdlForNonPagedPool, freed before it completes the IRP; the I/O
 * manager copies between it and the caller's buffer).  Every request is pending when the
 * dispatch routine returns and is completed by the driver's DPC (the MSI-X interrupt's),
 * with IoStatus.Information the bytes transferred.
 *
 * This header is the kernel's and the tests' view: what was negotiated and what the device
 * was last told.
 */
#ifndef KERNEL_VIRTIO_VIRTIO_BLK_H
#define KERNEL_VIRTIO_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"

#define VBLK_SECTOR 512u
#define VBLK_QUEUE_SIZE 64u  /* descriptors (at most; the device's own size if smaller) */
#define VBLK_SLOTS 16u       /* requests in flight at once */
#define VBLK_VECTOR 0x61     /* the queue's MSI-X vector (class 6) */
#define VBLK_LINK L"\\DosDevices\\PhysicalDrive0"
/* The buffered device's link, \\.\VirtioBlk0Buffered for a user program (mdlab's name:
 * Windows has no buffered twin of a disk). */
#define VBLK_BUFFERED_LINK L"\\DosDevices\\VirtioBlk0Buffered"

/* Load the driver (io_load_driver("virtio_blk")) when kernel/pci found the device; at
 * PASSIVE_LEVEL.  Prints "virtio-blk: ..." and returns DriverEntry's status
 * (STATUS_NO_SUCH_DEVICE: none).  The monitor loads it at boot; a test loads it for its case
 * and unloads it after (DriverUnload resets the device and gives back the BAR mappings, the
 * queue memory and the vector), so the other suites find the system-PTE space whole. */
NTSTATUS vblk_load(void);
NTSTATUS vblk_unload_driver(void);

struct vblk_info {
	PDEVICE_OBJECT device;  /* \Device\VirtioBlk0, NULL when the driver is not running */
	PDEVICE_OBJECT buffered_device; /* \Device\VirtioBlk0Buffered */
	uint64_t capacity;      /* 512-byte sectors (device configuration, offset 0) */
	uint64_t features;      /* what the driver accepted: VIRTIO_F_VERSION_1, and
	                         * VIRTIO_BLK_F_SIZE_MAX / F_SEG_MAX when offered */
	uint32_t seg_max, size_max;   /* the device's limits (0: feature not offered) */
	unsigned seg_limit;     /* data descriptors per request: seg_max, the queue less 2, VBLK_MAX_RUNS */
	uint32_t size_limit;    /* bytes per data descriptor: size_max, else 0xFFFFFFFF */
	uint64_t offered;       /* what the device offered */
	uint16_t queue_size;
	unsigned irq_cpu;       /* the CPU the MSI-X message names */
	unsigned dpc_cpu;       /* the CPU the completion DPC runs on */
	uint8_t device_status;  /* read back from the common configuration */
	uint64_t submitted, completed, interrupts, max_in_flight, in_flight;
	/* Bytes of the IRPs completed with success, by device: the direct device's moved with no
	 * copy (the copies avoided: a buffered request of the same bytes is copied once by the I/O
	 * manager, io_get_copy_stats), the buffered device's through its SystemBuffer. */
	uint64_t direct_bytes, buffered_bytes;
};
void vblk_get_info(struct vblk_info *out);

/* The last request put on the ring: its data descriptors (address, length), in order. */
#define VBLK_MAX_RUNS (VBLK_QUEUE_SIZE - 2)
struct vblk_last_request {
	unsigned nruns;
	uint64_t addr[VBLK_MAX_RUNS];
	uint32_t len[VBLK_MAX_RUNS];
	uint32_t type;    /* VIRTIO_BLK_T_IN 0 / OUT 1 */
	uint64_t sector;
};
void vblk_get_last_request(struct vblk_last_request *out);

/* The last IRP whose first piece went on the ring: every piece's sector, descriptors and bytes,
 * and all its data descriptors in order (the first VBLK_RECORD_RUNS; npieces and nruns count
 * them all). */
#define VBLK_RECORD_RUNS 512u
#define VBLK_RECORD_PIECES 64u
struct vblk_last_irp {
	PIRP irp;
	unsigned npieces, nruns;
	uint64_t piece_sector[VBLK_RECORD_PIECES];
	unsigned piece_runs[VBLK_RECORD_PIECES];
	uint32_t piece_bytes[VBLK_RECORD_PIECES];
	uint64_t addr[VBLK_RECORD_RUNS];
	uint32_t len[VBLK_RECORD_RUNS];
};
void vblk_get_last_irp(struct vblk_last_irp *out);

/* For tests: while held, the completion DPC does not look at the used ring, so a request the
 * device has finished stays pending (its IRP not completed, its pages locked) until the hold
 * is released, which queues the DPC.  Unloading the driver releases it. */
void vblk_test_hold_completions(bool hold);

/* The driver's descriptor builder, the one every request's data goes through, callable
 * without the device (make bench times it): the data of a transfer of `length` bytes of `mdl`
 * from byte `pos` (a sector multiple) as at most `maxseg` descriptors of at most `maxsize`
 * bytes, one per physically contiguous run of the PFN array (the first MmGetMdlByteOffset
 * into its page), cut back to a sector boundary unless it ends the transfer.  Fills addr[],
 * len[] and *nseg; returns the piece's bytes (0: not one sector fits the limits).  A whole
 * transfer is the pieces from pos 0 until the bytes add up to `length`. */
uint32_t vblk_build_descriptors(PMDL mdl, ULONG length, ULONG pos, unsigned maxseg, uint32_t maxsize, uint64_t *addr,
				uint32_t *len, unsigned *nseg);

#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u
#define VIRTIO_F_VERSION_1 (1ull << 32)

/* The completion status of a virtio-blk status byte (see README, Devices). */
NTSTATUS vblk_status_of(uint8_t s);

#endif
