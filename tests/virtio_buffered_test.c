/*
 * The same disk on a DO_BUFFERED_IO device, for contrast with the direct one (kernel/virtio:
 * \Device\VirtioBlk0Buffered beside \Device\VirtioBlk0).  Requests are the I/O manager's own
 * (IoBuildSynchronousFsdRequest), which builds what each device's flags ask for: a
 * SystemBuffer for the buffered device, an MDL probed and locked for the direct one.
 *
 * Proven: the buffered device's data descriptors name the frames of the I/O manager's
 * SystemBuffer (read from the page tables before the IRP is sent), none of the caller's own
 * frames, and the bytes the I/O manager copied (io_get_copy_stats) are the request's length,
 * in for a write and out for a read, while a direct request of the same bytes copies none and
 * its descriptors are the caller's frames; a buffered write read back through the direct
 * device compares equal (the same disk) and is on the image (`# disk-check:`); a direct write
 * read back through the buffered device into a kernel buffer compares equal; bad sizes,
 * offsets, ends and a request without its buffer get on the buffered device exactly the
 * direct device's answers, none reaching the device.  Every case ends with the frames, system
 * PTEs, locked pages and pool where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "tests/lib/vblk_req.h"
#include "include/wdm.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/virtio/virtio_blk.h"

#define TAG 'fbtV'

static void devices(struct ktest *t, PDEVICE_OBJECT *direct, PDEVICE_OBJECT *buffered)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (!i.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	*direct = i.device;
	*buffered = i.buffered_device;
	ASSERT_TRUE(t, *buffered != NULL);
}

static uint64_t copied_in(void)
{
	struct io_copy_stats s;
	io_get_copy_stats(&s);
	return s.in;
}
static uint64_t copied_out(void)
{
	struct io_copy_stats s;
	io_get_copy_stats(&s);
	return s.out;
}

/* A kernel buffer of `length` bytes `off` bytes into a pool allocation of whole pages. */
struct kbuf {
	uint8_t *alloc, *data;
};
static void kbuf_make(struct ktest *t, struct kbuf *b, ULONG off, ULONG length)
{
	b->alloc = ExAllocatePool2(POOL_FLAG_NON_PAGED, off + length, TAG);
	ASSERT_TRUE(t, b->alloc != NULL);
	b->data = b->alloc + off;
}
static void kbuf_free(struct kbuf *b) { ExFreePoolWithTag(b->alloc, TAG); }

/* The frames the kernel's tables map under [va, va + length). */
static ULONG frames_of(const void *va, ULONG length, PFN_NUMBER *out)
{
	uint64_t base = (uint64_t)va & ~(uint64_t)(PAGE_SIZE - 1);
	ULONG pages = (ULONG)ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, length);
	for (ULONG i = 0; i < pages; i++)
		out[i] = mmt_frame_of(base + (uint64_t)i * PAGE_SIZE);
	return pages;
}

/* No descriptor of the last request lies in one of the frames. */
static void expect_no_descriptor_in(struct ktest *t, const PFN_NUMBER *frames, ULONG n)
{
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	unsigned hits = 0;
	for (unsigned d = 0; d < last.nruns; d++)
		for (ULONG i = 0; i < n; i++) {
			uint64_t lo = (uint64_t)frames[i] << PAGE_SHIFT;
			hits += last.addr[d] < lo + PAGE_SIZE && last.addr[d] + last.len[d] > lo;
		}
	EXPECT_EQ(t, hits, 0u);
}

static void the_buffered_device_is_the_same_disk_with_do_buffered_io(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT d, b;
	devices(t, &d, &b);
	EXPECT_TRUE(t, b != d);
	EXPECT_TRUE(t, b->Flags & DO_BUFFERED_IO);
	EXPECT_FALSE(t, b->Flags & DO_DIRECT_IO);
	EXPECT_TRUE(t, d->Flags & DO_DIRECT_IO);
	EXPECT_FALSE(t, d->Flags & DO_BUFFERED_IO);
	EXPECT_EQ(t, (uint64_t)b->DeviceType, (uint64_t)FILE_DEVICE_DISK);
	EXPECT_TRUE(t, b->DriverObject == d->DriverObject);
	vreq_expect_counts(t, c);
}

#define BW_SECTOR 65536u
#define BW_OFF 0x234u
#define BW_LENGTH (3 * PAGE_SIZE)
#define BW_SEED 0xB0FFE2EDu

static void a_buffered_write_reads_back_through_the_direct_device(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT d, b;
	devices(t, &d, &b);
	struct kbuf w;
	kbuf_make(t, &w, BW_OFF, BW_LENGTH);
	pattern_fill(w.data, BW_LENGTH, BW_SEED);
	PFN_NUMBER mine[5], sys[5];
	ULONG mine_n = frames_of(w.data, BW_LENGTH, mine), sysoff = ~0u;
	struct vblk_info before, after;
	vblk_get_info(&before);
	uint64_t in = copied_in(), out = copied_out();
	IO_STATUS_BLOCK iosb;
	NTSTATUS returned;
	EXPECT_EQ(t, vreq_fsd(t, b, IRP_MJ_WRITE, w.data, BW_LENGTH, (LONGLONG)BW_SECTOR * VBLK_SECTOR, &iosb, &returned,
			      sys, &sysoff),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, returned, STATUS_PENDING);
	EXPECT_EQ(t, iosb.Information, (ULONG_PTR)BW_LENGTH);
	/* The I/O manager copied the caller's bytes in, once, and nothing out. */
	EXPECT_EQ(t, copied_in() - in, (uint64_t)BW_LENGTH);
	EXPECT_EQ(t, copied_out() - out, 0u);
	/* The device was told the SystemBuffer's frames, not the caller's. */
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_OUT);
	EXPECT_EQ(t, last.sector, (uint64_t)BW_SECTOR);
	EXPECT_TRUE(t, sysoff < PAGE_SIZE);
	vreq_expect_descriptors(t, sys, sysoff, BW_LENGTH);
	expect_no_descriptor_in(t, mine, mine_n);
	vblk_get_info(&after);
	EXPECT_EQ(t, after.buffered_bytes - before.buffered_bytes, (uint64_t)BW_LENGTH);
	EXPECT_EQ(t, after.direct_bytes, before.direct_bytes);

	/* The same sectors through the direct device: its own frames, no copy. */
	struct buf r;
	buf_make(t, &r, 5, 0x100, BW_LENGTH);
	memset(r.data, 0xA5, BW_LENGTH);
	in = copied_in(), out = copied_out();
	ULONG_PTR info = 0;
	EXPECT_EQ(t, vreq_transfer(t, d, IRP_MJ_READ, r.mdl, BW_LENGTH, (LONGLONG)BW_SECTOR * VBLK_SECTOR, &info, NULL),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, info, (ULONG_PTR)BW_LENGTH);
	vreq_expect_descriptors(t, MmGetMdlPfnArray(r.mdl), 0x100, BW_LENGTH);
	EXPECT_EQ(t, memcmp(r.data, w.data, BW_LENGTH), 0);
	EXPECT_EQ(t, copied_in() - in + copied_out() - out, 0u);
	kprintf("# disk-check: %u %u 0x%x\n", BW_SECTOR, (unsigned)(BW_LENGTH / VBLK_SECTOR), BW_SEED);
	buf_free(&r);
	kbuf_free(&w);
	vreq_expect_counts(t, c);
}

#define BR_SECTOR 65600u
#define BR_LENGTH (2 * PAGE_SIZE + 3 * VBLK_SECTOR)
#define BR_SEED 0xB0FFE2EEu

static void a_buffered_read_fills_a_kernel_buffer_through_the_io_managers_copy(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT d, b;
	devices(t, &d, &b);
	/* Written through the direct device, from the caller's frames. */
	struct kbuf w, r;
	kbuf_make(t, &w, 0x40, BR_LENGTH);
	kbuf_make(t, &r, 0x7C0, BR_LENGTH);
	pattern_fill(w.data, BR_LENGTH, BR_SEED);
	memset(r.data, 0xEE, BR_LENGTH);
	PFN_NUMBER wf[4], rf[4], sys[4];
	frames_of(w.data, BR_LENGTH, wf);
	ULONG rn = frames_of(r.data, BR_LENGTH, rf), sysoff = ~0u;
	uint64_t in = copied_in(), out = copied_out();
	IO_STATUS_BLOCK iosb;
	EXPECT_EQ(t, vreq_fsd(t, d, IRP_MJ_WRITE, w.data, BR_LENGTH, (LONGLONG)BR_SECTOR * VBLK_SECTOR, &iosb, NULL,
			      NULL, NULL),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, (ULONG_PTR)BR_LENGTH);
	vreq_expect_descriptors(t, wf, 0x40, BR_LENGTH);
	EXPECT_EQ(t, copied_in() - in + copied_out() - out, 0u); /* direct: no copy */

	in = copied_in(), out = copied_out();
	EXPECT_EQ(t, vreq_fsd(t, b, IRP_MJ_READ, r.data, BR_LENGTH, (LONGLONG)BR_SECTOR * VBLK_SECTOR, &iosb, NULL, sys,
			      &sysoff),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, (ULONG_PTR)BR_LENGTH);
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_IN);
	vreq_expect_descriptors(t, sys, sysoff, BR_LENGTH);
	expect_no_descriptor_in(t, rf, rn); /* the device never wrote the caller's frames */
	EXPECT_EQ(t, copied_out() - out, (uint64_t)BR_LENGTH); /* the I/O manager did */
	EXPECT_EQ(t, copied_in() - in, 0u);
	EXPECT_EQ(t, memcmp(r.data, w.data, BR_LENGTH), 0);
	/* Around the caller's range: untouched. */
	EXPECT_EQ(t, r.data[-1], 0u);
	kprintf("# disk-check: %u %u 0x%x\n", BR_SECTOR, (unsigned)(BR_LENGTH / VBLK_SECTOR), BR_SEED);
	kbuf_free(&w);
	kbuf_free(&r);
	vreq_expect_counts(t, c);
}

/* One request on both devices: the same answer, neither reaching the device. */
static void same_answer(struct ktest *t, PDEVICE_OBJECT d, PDEVICE_OBJECT b, ULONG major, void *buf, ULONG length,
			LONGLONG offset, NTSTATUS want)
{
	IO_STATUS_BLOCK iosb;
	NTSTATUS rd, rb;
	NTSTATUS sd = vreq_fsd(t, d, major, buf, length, offset, &iosb, &rd, NULL, NULL);
	ULONG_PTR id = iosb.Information;
	NTSTATUS sb = vreq_fsd(t, b, major, buf, length, offset, &iosb, &rb, NULL, NULL);
	EXPECT_EQ(t, sd, want);
	EXPECT_EQ(t, sb, want);
	EXPECT_EQ(t, rb, rd); /* completed at once: IoCallDriver returned the status */
	EXPECT_EQ(t, rb, want);
	EXPECT_EQ(t, iosb.Information, id);
}

static void the_buffered_device_refuses_what_the_direct_one_refuses(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	PDEVICE_OBJECT d, b;
	devices(t, &d, &b);
	struct vblk_info i;
	vblk_get_info(&i);
	uint64_t submitted = i.submitted, in = copied_in(), out = copied_out();
	struct kbuf k;
	kbuf_make(t, &k, 0, 4 * PAGE_SIZE);
	memset(k.data, 0xEE, 4 * PAGE_SIZE);
	LONGLONG end = (LONGLONG)i.capacity * VBLK_SECTOR;
	same_answer(t, d, b, IRP_MJ_READ, k.data, 100, 0, STATUS_INVALID_PARAMETER);
	same_answer(t, d, b, IRP_MJ_WRITE, k.data, VBLK_SECTOR + 1, 0, STATUS_INVALID_PARAMETER);
	same_answer(t, d, b, IRP_MJ_READ, k.data, VBLK_SECTOR, 3, STATUS_INVALID_PARAMETER);
	same_answer(t, d, b, IRP_MJ_READ, k.data, VBLK_SECTOR, -(LONGLONG)VBLK_SECTOR, STATUS_INVALID_PARAMETER);
	same_answer(t, d, b, IRP_MJ_READ, k.data, 1, 0, STATUS_INVALID_PARAMETER);
	same_answer(t, d, b, IRP_MJ_READ, k.data, VBLK_SECTOR, end, STATUS_NONEXISTENT_SECTOR);
	same_answer(t, d, b, IRP_MJ_WRITE, k.data, 2 * VBLK_SECTOR, end - VBLK_SECTOR, STATUS_NONEXISTENT_SECTOR);
	same_answer(t, d, b, IRP_MJ_READ, k.data, 4 * PAGE_SIZE, end + 64 * VBLK_SECTOR, STATUS_NONEXISTENT_SECTOR);
	same_answer(t, d, b, IRP_MJ_READ, k.data, 0, 0, STATUS_SUCCESS);
	/* A failed read copied nothing back: the caller's buffer is as it was. */
	unsigned changed = 0;
	for (ULONG j = 0; j < 4 * PAGE_SIZE; j++)
		changed += k.data[j] != 0xEE;
	EXPECT_EQ(t, changed, 0u);
	EXPECT_EQ(t, copied_out() - out, 0u);
	/* Only the failed writes' data was copied in (the I/O manager copies before the driver
	 * looks): VBLK_SECTOR + 1 and 2 sectors. */
	EXPECT_EQ(t, copied_in() - in, (uint64_t)(VBLK_SECTOR + 1 + 2 * VBLK_SECTOR));
	/* A driver-allocated IRP on the buffered device with no SystemBuffer: no buffer. */
	ULONG_PTR info = 1;
	NTSTATUS returned;
	EXPECT_EQ(t, vreq_transfer(t, b, IRP_MJ_READ, NULL, VBLK_SECTOR, 0, &info, &returned), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, returned, STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, vreq_transfer(t, d, IRP_MJ_READ, NULL, VBLK_SECTOR, 0, &info, &returned), STATUS_INVALID_PARAMETER);
	vblk_get_info(&i);
	EXPECT_EQ(t, i.submitted, submitted);
	kbuf_free(&k);
	vreq_expect_counts(t, c);
}

static int buffered_case_init(struct ktest *t)
{
	(void)t;
	NTSTATUS st = vblk_load();
	if (st && st != (NTSTATUS)0xC000000E)
		kprintf("    # loading virtio_blk: 0x%x\n", (unsigned)st);
	return st && st != (NTSTATUS)0xC000000E;
}

static void buffered_case_exit(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (i.device)
		EXPECT_EQ(t, vblk_unload_driver(), STATUS_SUCCESS);
}

static struct ktest_case virtio_buffered_cases[] = {
	KTEST_CASE(the_buffered_device_is_the_same_disk_with_do_buffered_io),
	KTEST_CASE(a_buffered_write_reads_back_through_the_direct_device),
	KTEST_CASE(a_buffered_read_fills_a_kernel_buffer_through_the_io_managers_copy),
	KTEST_CASE(the_buffered_device_refuses_what_the_direct_one_refuses),
	{ 0 }
};
KTEST_SUITE(virtio_buffered, virtio_buffered_cases, .init = buffered_case_init, .exit = buffered_case_exit);
