/*
 * The virtio-blk driver (virtio_blk.h).  Virtio 1.x, section numbers of the 1.1 text:
 *
 *   4.1.4     the PCI capabilities (vendor ID 0x09) naming, by BAR and offset, the common
 *             configuration (cfg_type 1), notification (2), ISR (3) and device
 *             configuration (4) structures; 4.1.4.3 the common configuration's layout.
 *   3.1.1     initialization: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK read back
 *             (a device that clears it refuses the subset: FAILED), the queues, DRIVER_OK.
 *   6         VIRTIO_F_VERSION_1 (bit 32) is required of a modern device.
 *   5.2.3/4   VIRTIO_BLK_F_SIZE_MAX (1) and VIRTIO_BLK_F_SEG_MAX (2) are accepted when offered:
 *             the device configuration's size_max (offset 8: bytes in one data descriptor)
 *             and seg_max (offset 12: data descriptors in one request) then bind the driver.
 *   2.6       one split virtqueue: descriptor table (16 bytes each), available ring, used
 *             ring, in one page of contiguous memory (alignments 16, 2, 4 bytes).
 *   5.2.6     a request is a chain: the header {type, reserved, sector} (device-readable),
 *             the data (device-writable for VIRTIO_BLK_T_IN), the status byte (writable).
 *   4.1.4.4   the doorbell: queue_notify_off x notify_off_multiplier into the notify
 *             structure, the queue's index written there.
 *   4.1.5.1.2 MSI-X: queue_msix_vector names table entry 0; config changes get no vector.
 *
 * Splitting (what storport/classpnp do by MaximumTransferLength and MaximumPhysicalPages): an
 * IRP whose runs do not fit one request's limits (seg_max, size_max, and the queue's own
 * size less the header and status descriptors) is sent as several device requests ("pieces"),
 * each whole sectors of the transfer in order, each its own slot and chain.  The IRP counts
 * them in Tail.Overlay.DriverContext (the bytes put on the ring, the pieces in flight, the
 * first error) and is completed once, when the last piece is back: Information the whole
 * length, or 0 with the first piece error seen.
 *
 * The data descriptors are the MDL's own frames (one per physically contiguous run of its
 * PFN array, the first starting MmGetMdlByteOffset bytes into its page): no copy, no bounce
 * buffer (without VIRTIO_F_ACCESS_PLATFORM the device takes guest physical addresses, all
 * 64 bits of them).  The frames stay locked by whoever built the MDL until the IRP is
 * completed, after the device has written the used ring (mm/RULES.md, "Devices and DMA").
 * The buffered device's data is the I/O manager's SystemBuffer, described by the driver's own
 * MDL (CTX_MDL), whose frames go on the ring the same way (mm/RULES.md, I/O rule I11).
 *
 * Locking: one klock of rank KLOCK_DEVICE (vq_lock) guards the descriptor free list, the
 * rings, the request slots and the wait list; the ISR takes nothing (it queues the DPC);
 * IoCompleteRequest runs after vq_lock is released.
 */
#include "kernel/virtio/virtio_blk.h"
#include "kernel/cpu.h"
#include "kernel/intr/dpc.h"
#include "kernel/intr/intr.h"
#include "kernel/io/driver.h"
#include "kernel/lib.h"
#include "kernel/pci/pci.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "kernel/smp/smp.h"

#define STATUS_NO_SUCH_DEVICE ((NTSTATUS)0xC000000E)
#ifndef STATUS_CANCELLED
#define STATUS_CANCELLED ((NTSTATUS)0xC0000120)
#endif

#define VIRTIO_VENDOR 0x1AF4
#define VIRTIO_BLK_MODERN 0x1042

/* 4.1.4: cfg_type of a virtio PCI capability. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4

/* 4.1.4.3: struct virtio_pci_common_cfg. */
struct virtio_common_cfg {
	uint32_t device_feature_select;
	uint32_t device_feature;
	uint32_t driver_feature_select;
	uint32_t driver_feature;
	uint16_t msix_config;
	uint16_t num_queues;
	uint8_t device_status;
	uint8_t config_generation;
	uint16_t queue_select;
	uint16_t queue_size;
	uint16_t queue_msix_vector;
	uint16_t queue_enable;
	uint16_t queue_notify_off;
	uint64_t queue_desc;
	uint64_t queue_driver;
	uint64_t queue_device;
} __attribute__((packed));

/* 2.1: device status bits. */
#define VS_ACKNOWLEDGE 1
#define VS_DRIVER 2
#define VS_DRIVER_OK 4
#define VS_FEATURES_OK 8
#define VS_FAILED 128
#define VIRTIO_MSI_NO_VECTOR 0xFFFF

/* 5.2.3: the block device's feature bits the driver uses. */
#define VIRTIO_BLK_F_SIZE_MAX (1ull << 1)
#define VIRTIO_BLK_F_SEG_MAX (1ull << 2)

/* An IRP's split state, in Tail.Overlay.DriverContext (the driver's while it holds the IRP). */
#define CTX_POS 0   /* bytes of the transfer put on the ring so far */
#define CTX_OUT 1   /* its pieces on the ring and not yet back */
#define CTX_ERR 2   /* the first piece error (0: none) */
#define CTX_MDL 3   /* the MDL whose frames the device is told: Irp->MdlAddress (direct), or the
                     * driver's own over the I/O manager's SystemBuffer (buffered), freed at
                     * completion */
#define CTX(irp, i) ((irp)->Tail.Overlay.DriverContext[i])

/* 2.6.5, 2.6.6, 2.6.8. */
struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
struct vq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VBLK_QUEUE_SIZE];
	uint16_t used_event;
};
struct vq_used_elem {
	uint32_t id;
	uint32_t len;
};
struct vq_used {
	uint16_t flags;
	uint16_t idx;
	struct vq_used_elem ring[VBLK_QUEUE_SIZE];
	uint16_t avail_event;
};

/* 5.2.6: the request header. */
struct vblk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* The ring page's layout, and the second page's: headers, then status bytes. */
#define RING_DESC_OFF 0x000
#define RING_AVAIL_OFF 0x400
#define RING_USED_OFF 0x800
#define HDR_OFF 0x000
#define STATUS_OFF 0x400
_Static_assert(VBLK_QUEUE_SIZE * sizeof(struct vq_desc) <= RING_AVAIL_OFF, "descriptors fit");
_Static_assert(RING_AVAIL_OFF + sizeof(struct vq_avail) <= RING_USED_OFF, "available ring fits");
_Static_assert(RING_USED_OFF + sizeof(struct vq_used) <= PAGE_SIZE, "used ring fits");
_Static_assert(VBLK_SLOTS * sizeof(struct vblk_req_hdr) <= STATUS_OFF, "headers fit");

/* A request in flight. */
struct vblk_slot {
	PIRP irp;          /* NULL: free */
	uint16_t head;     /* its chain's first descriptor */
	uint16_t ndesc;
	uint32_t length;   /* bytes asked */
};

static struct {
	struct pci_function *pci;
	volatile struct virtio_common_cfg *common;
	volatile uint8_t *isr;
	volatile uint8_t *devcfg;
	volatile uint16_t *notify;    /* queue 0's doorbell */
	uint8_t *mem;                 /* two contiguous pages: rings, then headers and status */
	uint64_t mem_phys;
	struct vq_desc *desc;
	struct vq_avail *avail;
	volatile struct vq_used *used;
	uint16_t qsize;
	uint16_t free_head, nfree;
	uint16_t last_used;
	struct vblk_slot slot[VBLK_SLOTS];
	int16_t slot_of_head[VBLK_QUEUE_SIZE];
	LIST_ENTRY waiting;           /* IRPs with no slot or descriptors yet (Tail.Overlay.ListEntry) */
	KDPC dpc;
	PDEVICE_OBJECT bdev;          /* \Device\VirtioBlk0Buffered (DO_BUFFERED_IO) */
	struct vblk_info info;
	struct vblk_last_request last;
	struct vblk_last_irp last_irp;
	unsigned seg_limit;           /* data descriptors per request */
	uint32_t size_limit;          /* bytes per data descriptor */
} vb;

static struct klock vq_lock = KLOCK_INIT(KLOCK_DEVICE);
/* vblk_test_hold_completions: while set, the DPC leaves the used ring alone. */
static volatile bool completions_held;

NTSTATUS vblk_status_of(uint8_t s)
{
	/* IOERR: the medium failed the transfer, NT's data error (a CRC/read failure in
	 * storport's SRB_STATUS_ERROR mapping); UNSUPP: the device does not do this request
	 * type, the request, not the device, is at fault: STATUS_INVALID_DEVICE_REQUEST
	 * (STATUS_IO_DEVICE_ERROR would say the device broke, which it did not). */
	switch (s) {
	case VIRTIO_BLK_S_OK: return STATUS_SUCCESS;
	case VIRTIO_BLK_S_IOERR: return STATUS_DEVICE_DATA_ERROR;
	case VIRTIO_BLK_S_UNSUPP: return STATUS_INVALID_DEVICE_REQUEST;
	default: return STATUS_IO_DEVICE_ERROR; /* not a status 5.2.6 defines */
	}
}

void vblk_get_info(struct vblk_info *out)
{
	KIRQL irql = klock_acquire(&vq_lock);
	*out = vb.info;
	if (vb.common)
		out->device_status = vb.common->device_status;
	klock_release(&vq_lock, irql);
}

void vblk_get_last_request(struct vblk_last_request *out)
{
	KIRQL irql = klock_acquire(&vq_lock);
	*out = vb.last;
	klock_release(&vq_lock, irql);
}

void vblk_get_last_irp(struct vblk_last_irp *out)
{
	KIRQL irql = klock_acquire(&vq_lock);
	*out = vb.last_irp;
	klock_release(&vq_lock, irql);
}

/* ---- the ring (vq_lock held) ---- */

static void desc_free_chain(uint16_t head)
{
	uint16_t i = head;
	for (;;) {
		uint16_t flags = vb.desc[i].flags, next = vb.desc[i].next;
		vb.desc[i].next = vb.free_head;
		vb.desc[i].flags = 0;
		vb.free_head = i;
		vb.nfree++;
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		i = next;
	}
}

static uint16_t desc_take(void)
{
	uint16_t i = vb.free_head;
	vb.free_head = vb.desc[i].next;
	vb.nfree--;
	return i;
}

/* One piece: the data of the transfer from byte `pos` (a sector multiple) as at most `maxseg`
 * descriptors of at most `maxsize` bytes, one per physically contiguous run of the MDL's PFN
 * array (cut where a run exceeds maxsize), ending on a sector boundary unless it ends the
 * transfer (which is whole sectors).  Fills addr/len, *nseg; returns the piece's bytes, 0 when
 * not one sector fits the limits. */
static uint32_t piece_build(PMDL mdl, ULONG length, ULONG pos, unsigned maxseg, uint32_t maxsize,
			    uint64_t *addr, uint32_t *len, unsigned *nseg)
{
	PPFN_NUMBER pfn = MmGetMdlPfnArray(mdl);
	uint64_t at = (uint64_t)MmGetMdlByteOffset(mdl) + pos;
	ULONG page = (ULONG)(at >> PAGE_SHIFT);
	uint64_t off = at & (PAGE_SIZE - 1);
	ULONG left = length - pos;
	uint32_t total = 0;
	unsigned n = 0;
	while (left && n < maxseg) {
		uint64_t a = ((uint64_t)pfn[page] << PAGE_SHIFT) + off;
		uint32_t l = 0;
		for (;;) {
			uint32_t chunk = (uint32_t)(PAGE_SIZE - off) < left - l ? (uint32_t)(PAGE_SIZE - off) : left - l;
			if (chunk > maxsize - l)
				chunk = maxsize - l;
			l += chunk;
			off += chunk;
			if (off == PAGE_SIZE) {
				off = 0;
				page++;
			}
			if (l == left || l == maxsize || off || pfn[page] != pfn[page - 1] + 1)
				break;
		}
		addr[n] = a;
		len[n] = l;
		n++;
		left -= l;
		total += l;
	}
	if (left) { /* cut back to a sector boundary: a request moves whole sectors (5.2.6) */
		uint32_t extra = total % VBLK_SECTOR;
		total -= extra;
		while (extra) {
			if (len[n - 1] > extra) {
				len[n - 1] -= extra;
				extra = 0;
			} else {
				extra -= len[--n];
			}
		}
	}
	*nseg = n;
	return total;
}

uint32_t vblk_build_descriptors(PMDL mdl, ULONG length, ULONG pos, unsigned maxseg, uint32_t maxsize, uint64_t *addr,
				uint32_t *len, unsigned *nseg)
{
	return piece_build(mdl, length, pos, maxseg, maxsize, addr, len, nseg);
}

/* Put the IRP's next pieces on the ring while a slot and their descriptors are free; true when
 * every piece is on the ring. */
static bool submit_locked(PIRP irp)
{
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
	bool write = sp->MajorFunction == IRP_MJ_WRITE;
	ULONG length = sp->Parameters.Read.Length;
	uint64_t first = (uint64_t)sp->Parameters.Read.ByteOffset.QuadPart / VBLK_SECTOR;
	PMDL mdl = CTX(irp, CTX_MDL);
	ULONG pos = (ULONG)(ULONG_PTR)CTX(irp, CTX_POS);
	while (pos < length) {
		unsigned s;
		for (s = 0; s < VBLK_SLOTS && vb.slot[s].irp; s++)
			;
		if (s == VBLK_SLOTS)
			return false;
		uint64_t addr[VBLK_MAX_RUNS];
		uint32_t len[VBLK_MAX_RUNS];
		unsigned n;
		uint32_t bytes = piece_build(mdl, length, pos, vb.seg_limit, vb.size_limit, addr, len, &n);
		if (vb.nfree < n + 2)
			return false;
		uint64_t sector = first + pos / VBLK_SECTOR;

		struct vblk_req_hdr *hdr = (struct vblk_req_hdr *)(vb.mem + PAGE_SIZE + HDR_OFF) + s;
		uint8_t *status = vb.mem + PAGE_SIZE + STATUS_OFF + s;
		hdr->type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
		hdr->reserved = 0;
		hdr->sector = sector;
		*status = 0xFF;

		uint16_t head = desc_take(), cur = head;
		vb.desc[cur].addr = vb.mem_phys + PAGE_SIZE + HDR_OFF + s * sizeof(struct vblk_req_hdr);
		vb.desc[cur].len = sizeof(struct vblk_req_hdr);
		vb.desc[cur].flags = VRING_DESC_F_NEXT;
		if (pos == 0) { /* the IRP's first piece: a new record */
			vb.last_irp.irp = irp;
			vb.last_irp.npieces = vb.last_irp.nruns = 0;
		}
		bool recorded = vb.last_irp.irp == irp;
		for (unsigned i = 0; i < n; i++) {
			uint16_t d = desc_take();
			vb.desc[cur].next = d;
			cur = d;
			vb.desc[cur].addr = addr[i];
			vb.desc[cur].len = len[i];
			vb.desc[cur].flags = VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE);
			vb.last.addr[i] = addr[i];
			vb.last.len[i] = len[i];
			if (recorded && vb.last_irp.nruns < VBLK_RECORD_RUNS) {
				vb.last_irp.addr[vb.last_irp.nruns] = addr[i];
				vb.last_irp.len[vb.last_irp.nruns] = len[i];
			}
			if (recorded)
				vb.last_irp.nruns++;
		}
		if (recorded) {
			if (vb.last_irp.npieces < VBLK_RECORD_PIECES) {
				vb.last_irp.piece_sector[vb.last_irp.npieces] = sector;
				vb.last_irp.piece_runs[vb.last_irp.npieces] = n;
				vb.last_irp.piece_bytes[vb.last_irp.npieces] = bytes;
			}
			vb.last_irp.npieces++;
		}
		uint16_t st = desc_take();
		vb.desc[cur].next = st;
		vb.desc[st].addr = vb.mem_phys + PAGE_SIZE + STATUS_OFF + s;
		vb.desc[st].len = 1;
		vb.desc[st].flags = VRING_DESC_F_WRITE;
		vb.last.nruns = n;
		vb.last.type = hdr->type;
		vb.last.sector = sector;

		vb.slot[s] = (struct vblk_slot){ irp, head, (uint16_t)(n + 2), bytes };
		vb.slot_of_head[head] = (int16_t)s;
		pos += bytes;
		CTX(irp, CTX_POS) = (PVOID)(ULONG_PTR)pos;
		CTX(irp, CTX_OUT) = (PVOID)((ULONG_PTR)CTX(irp, CTX_OUT) + 1);
		vb.info.submitted++;
		vb.info.in_flight++;
		if (vb.info.in_flight > vb.info.max_in_flight)
			vb.info.max_in_flight = vb.info.in_flight;

		/* 2.6.13: the ring entry, then (a write barrier) the index, then the doorbell. */
		vb.avail->ring[vb.avail->idx % vb.qsize] = head;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		__atomic_store_n(&vb.avail->idx, (uint16_t)(vb.avail->idx + 1), __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		*vb.notify = 0;
	}
	return true;
}

static void start_waiting_locked(void)
{
	while (vb.waiting.Flink != &vb.waiting) {
		PLIST_ENTRY e = vb.waiting.Flink;
		PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
		if (!submit_locked(irp))
			return;
		e->Blink->Flink = e->Flink;
		e->Flink->Blink = e->Blink;
	}
}

/* ---- completion ---- */

/* The driver's own MDL over a buffered IRP's SystemBuffer goes before the IRP is completed
 * (the I/O manager frees the buffer after it; the MDL must not outlive it).  A direct IRP's
 * MDL is the I/O manager's or the caller's: not the driver's to free. */
static void release_data_mdl(PIRP irp)
{
	PMDL m = CTX(irp, CTX_MDL);
	if (m && m != irp->MdlAddress)
		IoFreeMdl(m);
	CTX(irp, CTX_MDL) = NULL;
}

static void vblk_isr(void *context)
{
	(void)context;
	(void)*vb.isr; /* 4.1.4.5: reading the ISR status acknowledges it */
	vb.info.interrupts++;
	KeInsertQueueDpc(&vb.dpc, NULL, NULL);
}

static VOID vblk_dpc(PKDPC Dpc, PVOID ctx, PVOID a1, PVOID a2)
{
	(void)Dpc, (void)ctx, (void)a1, (void)a2;
	PIRP done[VBLK_SLOTS];
	unsigned ndone = 0;
	if (__atomic_load_n(&completions_held, __ATOMIC_ACQUIRE))
		return; /* vblk_test_hold_completions(false) queues the DPC again */
	KIRQL irql = klock_acquire(&vq_lock);
	for (;;) {
		uint16_t idx = __atomic_load_n(&vb.used->idx, __ATOMIC_ACQUIRE);
		if (vb.last_used == idx || ndone == VBLK_SLOTS)
			break;
		uint32_t id = vb.used->ring[vb.last_used % vb.qsize].id;
		vb.last_used++;
		if (id >= vb.qsize || vb.slot_of_head[id] < 0)
			continue; /* not a chain of ours: nothing to complete */
		struct vblk_slot *s = &vb.slot[vb.slot_of_head[id]];
		uint8_t status = vb.mem[PAGE_SIZE + STATUS_OFF + (unsigned)(s - vb.slot)];
		PIRP irp = s->irp;
		NTSTATUS st = vblk_status_of(status);
		if (st != STATUS_SUCCESS && !CTX(irp, CTX_ERR))
			CTX(irp, CTX_ERR) = (PVOID)(ULONG_PTR)(ULONG)st; /* the first error wins */
		CTX(irp, CTX_OUT) = (PVOID)((ULONG_PTR)CTX(irp, CTX_OUT) - 1);
		vb.slot_of_head[id] = -1;
		desc_free_chain(s->head);
		s->irp = NULL;
		vb.info.in_flight--;
		vb.info.completed++;
		ULONG length = IoGetCurrentIrpStackLocation(irp)->Parameters.Read.Length;
		if (CTX(irp, CTX_OUT) || (ULONG)(ULONG_PTR)CTX(irp, CTX_POS) != length)
			continue; /* pieces still on the ring, or still to be put there */
		NTSTATUS err = (NTSTATUS)(ULONG)(ULONG_PTR)CTX(irp, CTX_ERR);
		irp->IoStatus.Status = err;
		irp->IoStatus.Information = err == STATUS_SUCCESS ? length : 0;
		if (err == STATUS_SUCCESS) {
			if (IoGetCurrentIrpStackLocation(irp)->DeviceObject == vb.bdev)
				vb.info.buffered_bytes += length;
			else
				vb.info.direct_bytes += length;
		}
		done[ndone++] = irp;
	}
	start_waiting_locked();
	bool more = vb.last_used != __atomic_load_n(&vb.used->idx, __ATOMIC_ACQUIRE);
	klock_release(&vq_lock, irql);
	for (unsigned i = 0; i < ndone; i++) {
		release_data_mdl(done[i]);
		IoCompleteRequest(done[i], IO_DISK_INCREMENT);
	}
	if (more)
		KeInsertQueueDpc(&vb.dpc, NULL, NULL);
}

void vblk_test_hold_completions(bool hold)
{
	__atomic_store_n(&completions_held, hold, __ATOMIC_RELEASE);
	if (!hold && vb.info.device)
		KeInsertQueueDpc(&vb.dpc, NULL, NULL);
}

/* ---- dispatch ---- */

static NTSTATUS complete_now(PIRP irp, NTSTATUS st)
{
	irp->IoStatus.Status = st;
	irp->IoStatus.Information = 0;
	IoCompleteRequest(irp, IO_NO_INCREMENT);
	return st;
}

/* IRP_MJ_READ / IRP_MJ_WRITE on either device object.  \Device\VirtioBlk0 (DO_DIRECT_IO): the
 * data is Irp->MdlAddress, locked by whoever built the IRP.  \Device\VirtioBlk0Buffered
 * (DO_BUFFERED_IO): the data is Irp->AssociatedIrp.SystemBuffer, the I/O manager's nonpaged
 * buffer of Length bytes (it copied a write's data in, and copies a read's out at completion:
 * "Using Buffered I/O"); the driver describes it with an MDL of its own, the DDI way
 * (IoAllocateMdl + MmBuildMdlForNonPagedPool: nonpaged pool is resident, nothing to lock), and
 * the device DMAs to and from the pool's frames.  Everything else is the same path. */
static NTSTATUS vblk_read_write(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	ULONG length = sp->Parameters.Read.Length; /* Read and Write share the layout */
	LONGLONG offset = sp->Parameters.Read.ByteOffset.QuadPart;
	bool buffered = DeviceObject == vb.bdev;
	/* A disk transfers whole sectors at sector-aligned offsets. */
	if (length % VBLK_SECTOR || offset < 0 || offset % VBLK_SECTOR)
		return complete_now(Irp, STATUS_INVALID_PARAMETER);
	if (length == 0)
		return complete_now(Irp, STATUS_SUCCESS);
	if (buffered ? !Irp->AssociatedIrp.SystemBuffer
		     : !Irp->MdlAddress || MmGetMdlByteCount(Irp->MdlAddress) < length)
		return complete_now(Irp, STATUS_INVALID_PARAMETER);
	/* Past the end: what Windows' disk stack answers.  disk.sys's read/write check
	 * (DiskReadWriteVerification, the ClassReadWriteVerification hook classpnp's
	 * ClassReadWrite calls) finds a transfer starting or running past the partition's length
	 * but, the sizes being sector multiples, sends it down "and let[s] the hardware decide";
	 * the drive refuses the LBA (sense ILLEGAL REQUEST, ASC LOGICAL BLOCK ADDRESS OUT OF
	 * RANGE), which classpnp's sense interpretation turns into STATUS_NONEXISTENT_SECTOR.  The
	 * driver is disk, class and device at once, so it answers that without asking the device
	 * (whose own answer, VIRTIO_BLK_S_IOERR, 5.2.6, would read as a medium error). */
	uint64_t first = (uint64_t)offset / VBLK_SECTOR, count = length / VBLK_SECTOR;
	if (first >= vb.info.capacity || count > vb.info.capacity - first)
		return complete_now(Irp, STATUS_NONEXISTENT_SECTOR);
	PMDL mdl = Irp->MdlAddress;
	if (buffered) {
		mdl = IoAllocateMdl(Irp->AssociatedIrp.SystemBuffer, length, FALSE, FALSE, NULL);
		if (!mdl)
			return complete_now(Irp, STATUS_INSUFFICIENT_RESOURCES);
		MmBuildMdlForNonPagedPool(mdl);
	}
	CTX(Irp, CTX_MDL) = mdl;
	/* Every piece must hold a sector within the limits (it does unless seg_max x size_max is
	 * under 512 bytes around a short run). */
	for (ULONG pos = 0; pos < length;) {
		uint64_t addr[VBLK_MAX_RUNS];
		uint32_t len[VBLK_MAX_RUNS];
		unsigned n;
		uint32_t bytes = piece_build(mdl, length, pos, vb.seg_limit, vb.size_limit, addr, len, &n);
		if (!bytes) {
			release_data_mdl(Irp);
			return complete_now(Irp, STATUS_INSUFFICIENT_RESOURCES);
		}
		pos += bytes;
	}
	CTX(Irp, CTX_POS) = CTX(Irp, CTX_OUT) = CTX(Irp, CTX_ERR) = NULL;

	IoMarkIrpPending(Irp);
	KIRQL irql = klock_acquire(&vq_lock);
	/* FIFO: a request behind waiting ones waits too. */
	if (vb.waiting.Flink != &vb.waiting || !submit_locked(Irp)) {
		PLIST_ENTRY e = &Irp->Tail.Overlay.ListEntry;
		e->Flink = &vb.waiting;
		e->Blink = vb.waiting.Blink;
		vb.waiting.Blink->Flink = e;
		vb.waiting.Blink = e;
	}
	klock_release(&vq_lock, irql);
	return STATUS_PENDING;
}

static NTSTATUS vblk_create_close(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	(void)DeviceObject;
	return complete_now(Irp, STATUS_SUCCESS);
}

/* ---- DriverEntry ---- */

static bool find_structures(struct pci_function *f, uint32_t *notify_mult)
{
	bool have[5] = { 0 };
	uint8_t cap = pci_find_capability(f, PCI_CAP_VENDOR, 0);
	while (cap) {
		uint8_t type = pci_read8(f, cap + 3), bar = pci_read8(f, cap + 4);
		uint32_t off = pci_read32(f, cap + 8), len = pci_read32(f, cap + 12);
		/* 4.1.4: the first of each type the driver can use; others are skipped. */
		if (type >= 1 && type <= 4 && !have[type] && bar < PCI_BARS && f->bar[bar].va &&
		    (uint64_t)off + len <= f->bar[bar].size) {
			uint8_t *p = (uint8_t *)f->bar[bar].va + off;
			have[type] = true;
			switch (type) {
			case VIRTIO_PCI_CAP_COMMON_CFG: vb.common = (volatile struct virtio_common_cfg *)p; break;
			case VIRTIO_PCI_CAP_NOTIFY_CFG:
				vb.notify = (volatile uint16_t *)p;
				*notify_mult = pci_read32(f, cap + 16);
				break;
			case VIRTIO_PCI_CAP_ISR_CFG: vb.isr = p; break;
			case VIRTIO_PCI_CAP_DEVICE_CFG: vb.devcfg = p; break;
			}
		}
		cap = pci_find_capability(f, PCI_CAP_VENDOR, cap); /* the next one after cap */
	}
	return have[1] && have[2] && have[3] && have[4];
}

static NTSTATUS fail(const char *why)
{
	kprintf("virtio-blk: %s\n", why);
	if (vb.common)
		vb.common->device_status |= VS_FAILED;
	if (vb.mem)
		MmFreeContiguousMemorySpecifyCache(vb.mem, 2 * PAGE_SIZE, MmCached);
	if (vb.pci)
		pci_unmap_bars(vb.pci);
	memset(&vb, 0, sizeof vb);
	return STATUS_NO_SUCH_DEVICE;
}

/* Reset (3.1.1, 4.1.4.3.1: writing 0 to device_status; the device has stopped using the
 * queue once it reads back 0), so the memory it was told can go. */
static void device_reset(void)
{
	vb.common->device_status = 0;
	while (vb.common->device_status)
		cpu_relax();
}

/* DriverUnload: the device reset first (no DMA, no interrupt after it), then the vector, the
 * DPC, the queue memory, the BAR mappings and the device object.  A request still in flight
 * (none when every caller waited for its own) completes STATUS_CANCELLED. */
static VOID vblk_unload(PDRIVER_OBJECT DriverObject)
{
	(void)DriverObject;
	device_reset();
	intr_disconnect(VBLK_VECTOR);
	KeRemoveQueueDpc(&vb.dpc);
	__atomic_store_n(&completions_held, false, __ATOMIC_RELEASE);
	UNICODE_STRING link = RTL_CONSTANT_STRING(VBLK_LINK), blink = RTL_CONSTANT_STRING(VBLK_BUFFERED_LINK);
	IoDeleteSymbolicLink(&link);
	IoDeleteSymbolicLink(&blink);
	/* An IRP split into pieces may hold several slots and be waiting with more to send:
	 * each is completed once, those waiting with pieces on the ring among them. */
	PIRP left[VBLK_SLOTS];
	unsigned n = 0;
	for (unsigned i = 0; i < VBLK_SLOTS; i++) {
		PIRP irp = vb.slot[i].irp;
		unsigned k = 0;
		while (k < n && left[k] != irp)
			k++;
		if (irp && k == n && (ULONG)(ULONG_PTR)CTX(irp, CTX_POS) ==
		    IoGetCurrentIrpStackLocation(irp)->Parameters.Read.Length)
			left[n++] = irp;
	}
	for (unsigned i = 0; i < n; i++) {
		release_data_mdl(left[i]);
		complete_now(left[i], STATUS_CANCELLED);
	}
	while (vb.waiting.Flink != &vb.waiting) {
		PLIST_ENTRY e = vb.waiting.Flink;
		vb.waiting.Flink = e->Flink;
		e->Flink->Blink = &vb.waiting;
		PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
		release_data_mdl(irp);
		complete_now(irp, STATUS_CANCELLED);
	}
	MmFreeContiguousMemorySpecifyCache(vb.mem, 2 * PAGE_SIZE, MmCached);
	pci_unmap_bars(vb.pci);
	IoDeleteDevice(vb.bdev);
	IoDeleteDevice(vb.info.device);
	KIRQL irql = klock_acquire(&vq_lock);
	memset(&vb, 0, sizeof vb);
	klock_release(&vq_lock, irql);
	kprintf("virtio-blk: unloaded\n");
}

static NTSTATUS vblk_driver_entry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
	(void)RegistryPath;
	struct pci_function *f = pci_find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, NULL);
	if (!f)
		return STATUS_NO_SUCH_DEVICE;
	vb.pci = f;
	if (!pci_map_bars(f)) {
		pci_unmap_bars(f);
		return fail("its BARs could not be mapped");
	}
	uint32_t mult = 0;
	if (!find_structures(f, &mult))
		return fail("a virtio structure is missing or not mapped");
	volatile struct virtio_common_cfg *c = vb.common;

	/* 3.1.1 */
	c->device_status = 0;
	while (c->device_status)
		cpu_relax();
	c->device_status = VS_ACKNOWLEDGE;
	c->device_status = VS_ACKNOWLEDGE | VS_DRIVER;
	c->device_feature_select = 0;
	uint64_t offered = c->device_feature;
	c->device_feature_select = 1;
	offered |= (uint64_t)c->device_feature << 32;
	vb.info.offered = offered;
	if (!(offered & VIRTIO_F_VERSION_1))
		return fail("VIRTIO_F_VERSION_1 not offered");
	uint64_t accept = VIRTIO_F_VERSION_1 | (offered & (VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX));
	c->driver_feature_select = 0;
	c->driver_feature = (uint32_t)accept;
	c->driver_feature_select = 1;
	c->driver_feature = (uint32_t)(accept >> 32);
	vb.info.features = accept;
	c->device_status = VS_ACKNOWLEDGE | VS_DRIVER | VS_FEATURES_OK;
	if (!(c->device_status & VS_FEATURES_OK))
		return fail("the device refused the features (FEATURES_OK cleared)");

	/* The queue. */
	c->msix_config = VIRTIO_MSI_NO_VECTOR;
	c->queue_select = 0;
	uint16_t qsize = c->queue_size;
	if (!qsize)
		return fail("queue 0 does not exist");
	if (qsize > VBLK_QUEUE_SIZE)
		qsize = VBLK_QUEUE_SIZE; /* a power of two (2.6), smaller than the device's */
	c->queue_size = qsize;
	vb.qsize = qsize;
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, none = { .QuadPart = 0 };
	vb.mem = MmAllocateContiguousMemorySpecifyCache(2 * PAGE_SIZE, lo, hi, none, MmCached);
	if (!vb.mem)
		return fail("no contiguous memory for the virtqueue");
	memset(vb.mem, 0, 2 * PAGE_SIZE);
	vb.mem_phys = (uint64_t)MmGetPhysicalAddress(vb.mem).QuadPart;
	vb.desc = (struct vq_desc *)(vb.mem + RING_DESC_OFF);
	vb.avail = (struct vq_avail *)(vb.mem + RING_AVAIL_OFF);
	vb.used = (volatile struct vq_used *)(vb.mem + RING_USED_OFF);
	for (uint16_t i = 0; i < qsize; i++) {
		vb.desc[i].next = (uint16_t)(i + 1);
		vb.slot_of_head[i] = -1;
	}
	vb.free_head = 0;
	vb.nfree = qsize;
	vb.waiting.Flink = vb.waiting.Blink = &vb.waiting;
	vb.notify = (volatile uint16_t *)((volatile uint8_t *)vb.notify + (uint64_t)c->queue_notify_off * mult);

	unsigned irq_cpu = smp_cpus_online() > 1 ? 1 : 0;
	KeInitializeDpc(&vb.dpc, vblk_dpc, NULL);
	KeSetImportanceDpc(&vb.dpc, HighImportance);
	KeSetTargetProcessorDpc(&vb.dpc, 0);
	vb.info.irq_cpu = irq_cpu;
	vb.info.dpc_cpu = 0;
	if (!intr_connect(VBLK_VECTOR, vblk_isr, NULL))
		return fail("vector taken");
	c->queue_msix_vector = 0;
	if (c->queue_msix_vector != 0 || !pci_msix_route(f, 0, VBLK_VECTOR, irq_cpu)) {
		device_reset();
		intr_disconnect(VBLK_VECTOR);
		return fail("no MSI-X vector for queue 0");
	}
	c->queue_desc = vb.mem_phys + RING_DESC_OFF;
	c->queue_driver = vb.mem_phys + RING_AVAIL_OFF;
	c->queue_device = vb.mem_phys + RING_USED_OFF;
	c->queue_enable = 1;
	pci_enable_bus_master(f);

	/* 5.2.4: capacity, read until config_generation holds still (4.1.4.3.1). */
	uint8_t gen;
	uint64_t cap;
	do {
		gen = c->config_generation;
		cap = *(volatile uint32_t *)vb.devcfg | (uint64_t) * (volatile uint32_t *)(vb.devcfg + 4) << 32;
	} while (gen != c->config_generation);
	vb.info.capacity = cap;
	vb.info.queue_size = qsize;
	/* 5.2.4: size_max and seg_max are valid when their features were negotiated. */
	vb.seg_limit = (unsigned)qsize - 2u < VBLK_MAX_RUNS ? (unsigned)qsize - 2u : VBLK_MAX_RUNS;
	vb.size_limit = 0xFFFFFFFFu;
	uint32_t size_max = *(volatile uint32_t *)(vb.devcfg + 8), seg_max = *(volatile uint32_t *)(vb.devcfg + 12);
	if ((accept & VIRTIO_BLK_F_SEG_MAX) && seg_max && seg_max < vb.seg_limit)
		vb.seg_limit = seg_max;
	if ((accept & VIRTIO_BLK_F_SIZE_MAX) && size_max)
		vb.size_limit = size_max;
	vb.info.seg_max = (accept & VIRTIO_BLK_F_SEG_MAX) ? seg_max : 0;
	vb.info.size_max = (accept & VIRTIO_BLK_F_SIZE_MAX) ? size_max : 0;
	vb.info.seg_limit = vb.seg_limit;
	vb.info.size_limit = vb.size_limit;

	UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\VirtioBlk0");
	PDEVICE_OBJECT dev;
	NTSTATUS st = IoCreateDevice(DriverObject, 0, &name, FILE_DEVICE_DISK, 0, FALSE, &dev);
	if (st) {
		device_reset(); /* the device forgets the queue before the memory goes */
		intr_disconnect(VBLK_VECTOR);
		fail("no device object");
		return st;
	}
	dev->Flags |= DO_DIRECT_IO;
	/* The Win32 name of the first disk, \\.\PhysicalDrive0 (CreateFile page, "Physical
	 * disks and volumes"): Windows' disk class driver makes the same link. */
	UNICODE_STRING link = RTL_CONSTANT_STRING(VBLK_LINK);
	if ((st = IoCreateSymbolicLink(&link, &name))) {
		IoDeleteDevice(dev);
		device_reset();
		intr_disconnect(VBLK_VECTOR);
		fail("no symbolic link");
		return st;
	}
	/* The same disk again for buffered I/O, for contrast: the I/O manager copies between the
	 * caller's buffer and a SystemBuffer of its own, which the device DMAs to and from. */
	UNICODE_STRING bname = RTL_CONSTANT_STRING(L"\\Device\\VirtioBlk0Buffered");
	PDEVICE_OBJECT bdev;
	st = IoCreateDevice(DriverObject, 0, &bname, FILE_DEVICE_DISK, 0, FALSE, &bdev);
	if (st) {
		IoDeleteSymbolicLink(&link);
		IoDeleteDevice(dev);
		device_reset();
		intr_disconnect(VBLK_VECTOR);
		fail("no device object for buffered I/O");
		return st;
	}
	bdev->Flags |= DO_BUFFERED_IO;
	UNICODE_STRING blink = RTL_CONSTANT_STRING(VBLK_BUFFERED_LINK);
	if ((st = IoCreateSymbolicLink(&blink, &bname))) {
		IoDeleteDevice(bdev);
		IoDeleteSymbolicLink(&link);
		IoDeleteDevice(dev);
		device_reset();
		intr_disconnect(VBLK_VECTOR);
		fail("no symbolic link for buffered I/O");
		return st;
	}
	vb.bdev = bdev;
	vb.info.buffered_device = bdev;
	DriverObject->MajorFunction[IRP_MJ_CREATE] = vblk_create_close;
	DriverObject->MajorFunction[IRP_MJ_CLOSE] = vblk_create_close;
	DriverObject->MajorFunction[IRP_MJ_READ] = vblk_read_write;
	DriverObject->MajorFunction[IRP_MJ_WRITE] = vblk_read_write;
	DriverObject->DriverUnload = vblk_unload;
	c->device_status = VS_ACKNOWLEDGE | VS_DRIVER | VS_FEATURES_OK | VS_DRIVER_OK;
	vb.info.device = dev;
	kprintf("virtio-blk: %02x:%02x.%x, %lu sectors (%lu MiB), queue of %u, MSI-X vector 0x%x on CPU %u\n",
		f->bus, f->dev, f->fn, cap, cap >> 11, qsize, VBLK_VECTOR, irq_cpu);
	return STATUS_SUCCESS;
}

static const struct io_builtin_driver vblk_image = { "virtio_blk", vblk_driver_entry };
__attribute__((used, section(".io_drivers"))) static const struct io_builtin_driver *const vblk_image_ptr =
	&vblk_image;

NTSTATUS vblk_load(void)
{
	if (!pci_find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, NULL))
		return STATUS_NO_SUCH_DEVICE;
	return io_load_driver("virtio_blk");
}

NTSTATUS vblk_unload_driver(void)
{
	return io_unload_driver("virtio_blk");
}
