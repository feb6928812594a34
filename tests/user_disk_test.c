/*
 * User programs reach the disk: the agent opens \\.\PhysicalDrive0 (the virtio-blk driver's
 * symbolic link) and calls NtReadFile / NtWriteFile on it (kernel/io/io.c, DO_DIRECT_IO).
 *
 * What is proven and how:
 *   - zero copy: the data descriptors the device was told for the user's WriteFile (and for a
 *     ReadFile) are exactly the frames the process's own page tables map at its buffer, read
 *     by walking them (tests/lib/pte.h), the first at the buffer's unaligned byte offset; the
 *     sectors the user wrote hold the pattern on the disk image read from outside
 *     (`# disk-check:`, scripts/diskcheck.py); read back by a second process into a buffer at
 *     another offset, in three parts (an explicit ByteOffset, NULL, and
 *     FILE_USE_FILE_POINTER_POSITION: the position is where the transfer before ended), the
 *     bytes equal the pattern;
 *   - bad input: an unmapped buffer, a read into a read-only one (the IoWriteAccess probe), a
 *     buffer whose second page is reserved only, a ByteOffset pointer that cannot be read, are
 *     STATUS_ACCESS_VIOLATION; an unaligned or negative offset or length STATUS_INVALID_PARAMETER;
 *     none reaches the device and nothing stays locked;
 *   - a buffer freed while the read is in flight: with the driver's completions held
 *     (vblk_test_hold_completions) the process's ReadFile pends on CPU 1 while CPU 0, attached
 *     as another thread of it would be, frees the range: STATUS_UNABLE_TO_FREE_VM (mm/RULES.md
 *     U1), the PTEs still map the same frames, each locked once; released, the read completes,
 *     the process's own free then succeeds and the frames are back on the free lists;
 *   - the contrast: the same write and read on \\.\VirtioBlk0Buffered (DO_BUFFERED_IO) reach
 *     the disk (disk-check) and come back, but no descriptor names a frame of the process's
 *     buffers, and the I/O manager copies exactly the request in, then out.
 * Every case ends with free frames, system PTEs, locked frames and pool where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "tests/lib/vblk_req.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "kernel/io/io.h"
#include "kernel/virtio/virtio_blk.h"
#include "mm/uvm.h"

#define DISK_NAME "\\\\.\\PhysicalDrive0"
#define UD_SECTOR 49152u          /* 24 MiB in: no other suite's range */
#define UD_SEED 0x05E2D15Cu
#define UD_LENGTH (4 * PAGE_SIZE) /* 32 sectors */
#define UD_WOFF 0x234u            /* the write buffer's start in its first page */
#define UD_ROFF 0xA00u            /* the read buffer's */
#define UD_REGION 0x10000u        /* what the agent allocates for each buffer */

static struct vblk_info info_now(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (!i.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	return i;
}

/* The frames p's page tables map at the pages of [va, va + len). */
static unsigned frames_in(const PEPROCESS p, uint64_t va, uint32_t len, PFN_NUMBER *out, unsigned max)
{
	unsigned n = 0;
	for (uint64_t pg = ALIGN_DOWN(va, PAGE_SIZE); pg < va + len && n < max; pg += PAGE_SIZE)
		out[n++] = mmt_frame_in(&p->mm.root, pg);
	return n;
}

/* The last IRP's data descriptors, all its pieces in order, are `len` bytes of the frames
 * `frames` from byte `off` of the first: every byte a descriptor names is the frame the
 * buffer's page tables map at that byte. */
static void expect_irp_frames(struct ktest *t, const PFN_NUMBER *frames, uint32_t off, uint32_t len)
{
	static struct vblk_last_irp li;
	vblk_get_last_irp(&li);
	ASSERT_TRUE(t, li.nruns <= VBLK_RECORD_RUNS);
	uint64_t pos = off, endpos = (uint64_t)off + len; /* from the first page's start */
	unsigned bad = 0;
	for (unsigned k = 0; k < li.nruns; k++)
		for (uint32_t done = 0; done < li.len[k] && pos < endpos;) {
			uint32_t chunk = (uint32_t)MIN(PAGE_SIZE - pos % PAGE_SIZE, (uint64_t)(li.len[k] - done));
			uint64_t want = ((uint64_t)frames[pos / PAGE_SIZE] << PAGE_SHIFT) + pos % PAGE_SIZE;
			if (li.addr[k] + done != want && !bad++)
				KTEST_FAIL(t, "descriptor %u +0x%x: 0x%lx, the buffer's frame there 0x%lx", k, done,
					   li.addr[k] + done, want);
			done += chunk;
			pos += chunk;
		}
	EXPECT_EQ(t, pos, endpos);
	uint64_t total = 0;
	for (unsigned k = 0; k < li.nruns; k++)
		total += li.len[k];
	EXPECT_EQ(t, total, (uint64_t)len);
}

/* Compare `len` bytes of p's memory at uva with the pattern from seed, through the process's
 * own mapping (attached, copy_from_user); the first differing byte, or len. */
static uint32_t compare_with_pattern(PEPROCESS p, uint64_t uva, uint32_t len, uint32_t seed)
{
	static uint8_t want[UD_LENGTH], got[UD_LENGTH];
	if (len > UD_LENGTH)
		return 0;
	pattern_fill(want, len, seed);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	NTSTATUS st = copy_from_user(got, uva, len);
	KeUnstackDetachProcess(&apc);
	if (st)
		return 0;
	for (uint32_t i = 0; i < len; i++)
		if (got[i] != want[i])
			return i;
	return len;
}

static void a_user_write_is_zero_copy_and_reads_back_at_each_kind_of_offset(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	info_now(t);
	uint64_t base = scratch_uva(2 * UD_REGION, 0), w = base + UD_WOFF, r = base + UD_REGION + UD_ROFF;
	LONGLONG at = (LONGLONG)UD_SECTOR * VBLK_SECTOR;

	/* The writer: the pattern in ring 3, then one WriteFile of 4 pages spanning 5. */
	struct agent_script s;
	agent_begin(&s);
	uint32_t alloc = agent_alloc(&s, base, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_pattern32(&s, w, UD_LENGTH, UD_SEED);
	uint32_t open = agent_open(&s, DISK_NAME);
	uint32_t wr = agent_write_file(&s, w, UD_LENGTH, (uint64_t)at);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, alloc, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, open, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, wr, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, wr, 1), (uint64_t)UD_LENGTH);
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_OUT);
	PFN_NUMBER wf[8];
	ASSERT_EQ(t, frames_in(p, w, UD_LENGTH, wf, 8), 5u);
	for (unsigned i = 0; i < 5; i++)
		ASSERT_TRUE(t, wf[i] != PFN_INVALID);
	kprintf("    # user write buffer frames %lx %lx %lx %lx %lx\n", wf[0], wf[1], wf[2], wf[3], wf[4]);
	expect_irp_frames(t, wf, UD_WOFF, UD_LENGTH);
	struct vblk_last_irp li;
	vblk_get_last_irp(&li);
	EXPECT_EQ(t, li.piece_sector[0], (uint64_t)UD_SECTOR);
	EXPECT_EQ(t, compare_with_pattern(p, w, UD_LENGTH, UD_SEED), UD_LENGTH);
	kprintf("# disk-check: %u %u 0x%x\n", UD_SECTOR, (unsigned)(UD_LENGTH / VBLK_SECTOR), UD_SEED);
	PsDestroyProcess(p);

	/* The reader: half at the explicit offset, a quarter at the current position (NULL), a
	 * quarter at FILE_USE_FILE_POINTER_POSITION. */
	agent_begin(&s);
	alloc = agent_alloc(&s, base + UD_REGION, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&s, base + UD_REGION, UD_REGION / PAGE_SIZE, 0xDEAD); /* not zero: the read must land */
	open = agent_open(&s, DISK_NAME);
	uint32_t r1 = agent_read_file(&s, r, UD_LENGTH / 2, (uint64_t)at);
	uint32_t r2 = agent_read_file(&s, r + UD_LENGTH / 2, UD_LENGTH / 4, AGENT_CURRENT_POSITION);
	uint32_t r3 = agent_read_file(&s, r + 3 * UD_LENGTH / 4, UD_LENGTH / 4,
				      (uint64_t)-1 << 32 | FILE_USE_FILE_POINTER_POSITION);
	p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, alloc, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, open, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, r1, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, r1, 1), (uint64_t)UD_LENGTH / 2);
	EXPECT_EQ(t, agent_result(t, p, r2, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, r2, 1), (uint64_t)UD_LENGTH / 4);
	EXPECT_EQ(t, agent_result(t, p, r3, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, r3, 1), (uint64_t)UD_LENGTH / 4);
	/* The last read went into the reader's frames, at the sector where the one before ended. */
	vblk_get_last_request(&last);
	EXPECT_EQ(t, last.type, VIRTIO_BLK_T_IN);
	EXPECT_EQ(t, last.sector, (uint64_t)UD_SECTOR + 3 * UD_LENGTH / 4 / VBLK_SECTOR);
	PFN_NUMBER rf[8];
	uint64_t r3va = r + 3 * UD_LENGTH / 4;
	ASSERT_EQ(t, frames_in(p, r3va, UD_LENGTH / 4, rf, 8), 2u);
	expect_irp_frames(t, rf, (uint32_t)(r3va % PAGE_SIZE), UD_LENGTH / 4);
	EXPECT_EQ(t, compare_with_pattern(p, r, UD_LENGTH, UD_SEED), UD_LENGTH);
	PsDestroyProcess(p);
	vreq_expect_counts(t, c);
}

static void bad_buffers_and_offsets_get_their_statuses_and_lock_nothing(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	struct vblk_info before = info_now(t), after;
	uint64_t base = scratch_uva(4 * UD_REGION, 0);
	uint64_t rw = base, ro = base + UD_REGION, part = base + 2 * UD_REGION, hole = base + 3 * UD_REGION;

	struct agent_script s;
	agent_begin(&s);
	uint32_t a1 = agent_alloc(&s, rw, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	uint32_t a2 = agent_alloc(&s, ro, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY);
	uint32_t a3 = agent_alloc(&s, part, UD_REGION, MEM_RESERVE, PAGE_READWRITE);
	uint32_t a4 = agent_alloc(&s, part, PAGE_SIZE, MEM_COMMIT, PAGE_READWRITE); /* only the first page */
	agent_write64(&s, part, 1);                                                  /* and resident */
	agent_open(&s, DISK_NAME);
	uint32_t unmapped = agent_write_file(&s, hole, 2 * VBLK_SECTOR, 0);
	uint32_t unmapped_r = agent_read_file(&s, hole, 2 * VBLK_SECTOR, 0);
	uint32_t readonly = agent_read_file(&s, ro, 2 * VBLK_SECTOR, 0);
	uint32_t partly = agent_read_file(&s, part + PAGE_SIZE - VBLK_SECTOR, 2 * VBLK_SECTOR, 0);
	uint32_t partly_w = agent_write_file(&s, part + PAGE_SIZE - VBLK_SECTOR, 2 * VBLK_SECTOR, 0);
	uint32_t bad_ptr = agent_op(&s, AGENT_READ_FILE, rw, VBLK_SECTOR, 0, hole, 0);
	uint32_t kernel_ptr = agent_op(&s, AGENT_WRITE_FILE, rw, VBLK_SECTOR, 0, (uint64_t)&before, 0);
	uint32_t unaligned = agent_read_file(&s, rw, VBLK_SECTOR, (uint64_t)UD_SECTOR * VBLK_SECTOR + 100);
	uint32_t negative = agent_write_file(&s, rw, VBLK_SECTOR, (uint64_t)-(int64_t)VBLK_SECTOR);
	uint32_t short_len = agent_read_file(&s, rw, 100, 0);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, a1, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, a2, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, a3, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, a4, 0), STATUS_SUCCESS);
	const struct { uint32_t op; NTSTATUS want; } cases[] = {
		{ unmapped, STATUS_ACCESS_VIOLATION },   { unmapped_r, STATUS_ACCESS_VIOLATION },
		{ readonly, STATUS_ACCESS_VIOLATION },   { partly, STATUS_ACCESS_VIOLATION },
		{ partly_w, STATUS_ACCESS_VIOLATION },   { bad_ptr, STATUS_ACCESS_VIOLATION },
		{ kernel_ptr, STATUS_ACCESS_VIOLATION }, { unaligned, STATUS_INVALID_PARAMETER },
		{ negative, STATUS_INVALID_PARAMETER },  { short_len, STATUS_INVALID_PARAMETER },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t got = agent_result(t, p, cases[i].op, 0);
		if (got != (uint64_t)(uint32_t)cases[i].want)
			KTEST_FAIL(t, "operation %u: 0x%lx, not 0x%x", cases[i].op, got, (unsigned)cases[i].want);
		EXPECT_EQ(t, agent_result(t, p, cases[i].op, 1), 0u); /* no status block for an error */
	}
	/* Nothing reached the device, nothing is locked, the process's count is 0. */
	vblk_get_info(&after);
	EXPECT_EQ(t, after.submitted, before.submitted);
	EXPECT_EQ(t, mmt_locked_frames(), c.locked);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	PsDestroyProcess(p);
	vreq_expect_counts(t, c);
}

#define FREE_PAGES 4u

static void a_buffer_freed_during_the_read_stays_locked_until_completion(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	struct vblk_info before = info_now(t), now;
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
	ASSERT_EQ(t, smp_this_cpu(), 0u);
	uint64_t buf = scratch_uva(UD_REGION, 0);
	struct agent_script s;
	agent_begin(&s);
	uint32_t alloc = agent_alloc(&s, buf, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&s, buf, FREE_PAGES, 0xF4EE);
	uint32_t open = agent_open(&s, DISK_NAME);
	uint32_t rd = agent_read_file(&s, buf, FREE_PAGES * PAGE_SIZE, (uint64_t)UD_SECTOR * VBLK_SECTOR);
	uint32_t fr = agent_free(&s, buf, 0, MEM_RELEASE);
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);

	/* Completions held: the read is on the ring, finished by the device perhaps, but pending. */
	vblk_test_hold_completions(true);
	bool started = ps_start_on_cpu(p, 1);
	EXPECT_TRUE(t, started);
	bool submitted = false;
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (started && !submitted && rdtsc() < end) {
		vblk_get_info(&now);
		submitted = now.submitted > before.submitted;
		cpu_relax();
	}
	EXPECT_TRUE(t, submitted);
	uint64_t v;
	bool reported_early = ps_report(p, AGENT_KEY(rd, 0), &v);
	PFN_NUMBER f[FREE_PAGES];
	uint32_t locks[FREE_PAGES];
	frames_in(p, buf, FREE_PAGES * PAGE_SIZE, f, FREE_PAGES);
	for (unsigned i = 0; i < FREE_PAGES; i++)
		locks[i] = f[i] != PFN_INVALID ? mmt_lock_count(f[i]) : 0;
	uint64_t locked = mmt_locked_frames(), proc_locked = p->mm.locked_pages;

	/* Another thread of the process frees the buffer: refused while a frame is locked (U1). */
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID b = (PVOID)buf;
	SIZE_T size = 0;
	NTSTATUS released = ZwFreeVirtualMemory(NtCurrentProcess(), &b, &size, MEM_RELEASE);
	b = (PVOID)(buf + PAGE_SIZE);
	size = PAGE_SIZE;
	NTSTATUS decommitted = ZwFreeVirtualMemory(NtCurrentProcess(), &b, &size, MEM_DECOMMIT);
	KeUnstackDetachProcess(&apc);
	PFN_NUMBER still[FREE_PAGES];
	frames_in(p, buf, FREE_PAGES * PAGE_SIZE, still, FREE_PAGES);
	vblk_get_info(&now);
	uint64_t completed_while_held = now.completed - before.completed;
	bool reported_while_held = ps_report(p, AGENT_KEY(rd, 0), &v);

	vblk_test_hold_completions(false);
	bool ended = started && ps_wait(p, SMP_WAIT_MS);

	EXPECT_FALSE(t, reported_early);
	EXPECT_FALSE(t, reported_while_held);
	EXPECT_EQ(t, completed_while_held, 0u);
	EXPECT_EQ(t, released, STATUS_UNABLE_TO_FREE_VM);
	EXPECT_EQ(t, decommitted, STATUS_UNABLE_TO_FREE_VM);
	EXPECT_EQ(t, locked, c.locked + FREE_PAGES);
	EXPECT_EQ(t, proc_locked, (uint64_t)FREE_PAGES);
	for (unsigned i = 0; i < FREE_PAGES; i++) {
		EXPECT_TRUE(t, f[i] != PFN_INVALID);
		EXPECT_EQ(t, locks[i], 1u);
		EXPECT_EQ(t, still[i], f[i]);
	}
	ASSERT_TRUE(t, ended);
	EXPECT_EQ(t, (ULONG)p->exit_status, 0u);
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_EQ(t, agent_result(t, p, alloc, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, open, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, rd, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, rd, 1), (uint64_t)FREE_PAGES * PAGE_SIZE);
	/* Completed and unlocked: the process's own free succeeds, the frames are free. */
	EXPECT_EQ(t, agent_result(t, p, fr, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, mmt_locked_frames(), c.locked);
	for (unsigned i = 0; i < FREE_PAGES; i++)
		EXPECT_TRUE(t, f[i] == PFN_INVALID || (mmt_lock_count(f[i]) == 0 && mmt_frame_is_free(f[i])));
	EXPECT_TRUE(t, mmt_frame_in(&p->mm.root, buf) == PFN_INVALID);
	PsDestroyProcess(p);
	vreq_expect_counts(t, c);
}

/* Each case has the driver loaded for it alone, as virtio_blk's. */
static int ud_case_init(struct ktest *t)
{
	(void)t;
	NTSTATUS st = vblk_load();
	if (st && st != (NTSTATUS)0xC000000E /* STATUS_NO_SUCH_DEVICE: the cases skip */)
		kprintf("    # loading virtio_blk: 0x%x\n", (unsigned)st);
	return st && st != (NTSTATUS)0xC000000E;
}

static void ud_case_exit(struct ktest *t)
{
	struct vblk_info i;
	vblk_get_info(&i);
	if (i.device)
		EXPECT_EQ(t, vblk_unload_driver(), STATUS_SUCCESS);
}

/* ---- the buffered device, for contrast ------------------------------------------------ */

#define BUF_NAME "\\\\.\\VirtioBlk0Buffered"
#define UB_SECTOR (UD_SECTOR + 256u) /* past the direct cases' sectors */
#define UB_SEED 0x0B0FFE4Eu

/* Whether a data descriptor of the last IRP names a byte of one of the n frames. */
static bool irp_touches(const PFN_NUMBER *frames, unsigned n)
{
	static struct vblk_last_irp li;
	vblk_get_last_irp(&li);
	for (unsigned k = 0; k < li.nruns && k < VBLK_RECORD_RUNS; k++)
		for (unsigned i = 0; i < n; i++) {
			uint64_t f = (uint64_t)frames[i] << PAGE_SHIFT;
			if (li.addr[k] < f + PAGE_SIZE && li.addr[k] + li.len[k] > f)
				return true;
		}
	return false;
}

/* The same WriteFile and ReadFile from ring 3 on \\.\VirtioBlk0Buffered (DO_BUFFERED_IO):
 * the data reaches the disk and comes back (disk-check, the pattern read back), but the
 * device is told the frames of the I/O manager's SystemBuffer, never the process's, and the
 * I/O manager copies exactly the request in and out (io_get_copy_stats), where the direct
 * device above copies nothing. */
static void a_user_write_on_the_buffered_device_is_copied_not_locked(struct ktest *t)
{
	struct vreq_counts c = vreq_counts_now();
	info_now(t);
	uint64_t base = scratch_uva(2 * UD_REGION, 0), w = base + UD_WOFF, r = base + UD_REGION + UD_ROFF;
	LONGLONG at = (LONGLONG)UB_SECTOR * VBLK_SECTOR;
	struct io_copy_stats c0, c1, c2;
	io_get_copy_stats(&c0);
	struct agent_script s;
	agent_begin(&s);
	uint32_t alloc = agent_alloc(&s, base, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_pattern32(&s, w, UD_LENGTH, UB_SEED);
	uint32_t open = agent_open(&s, BUF_NAME);
	uint32_t wr = agent_write_file(&s, w, UD_LENGTH, (uint64_t)at);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	io_get_copy_stats(&c1);
	EXPECT_EQ(t, agent_result(t, p, alloc, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, open, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, wr, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, wr, 1), (uint64_t)UD_LENGTH);
	EXPECT_EQ(t, c1.in - c0.in, (uint64_t)UD_LENGTH); /* the caller's bytes into the SystemBuffer */
	EXPECT_EQ(t, c1.out, c0.out);
	PFN_NUMBER wf[8];
	ASSERT_EQ(t, frames_in(p, w, UD_LENGTH, wf, 8), 5u);
	EXPECT_FALSE(t, irp_touches(wf, 5));
	kprintf("# disk-check: %u %u 0x%x\n", UB_SECTOR, (unsigned)(UD_LENGTH / VBLK_SECTOR), UB_SEED);
	PsDestroyProcess(p);

	agent_begin(&s);
	alloc = agent_alloc(&s, base + UD_REGION, UD_REGION, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&s, base + UD_REGION, UD_REGION / PAGE_SIZE, 0xDEAD);
	open = agent_open(&s, BUF_NAME);
	uint32_t rd = agent_read_file(&s, r, UD_LENGTH, (uint64_t)at);
	p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	io_get_copy_stats(&c2);
	EXPECT_EQ(t, agent_result(t, p, rd, 0), STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, rd, 1), (uint64_t)UD_LENGTH);
	EXPECT_EQ(t, c2.out - c1.out, (uint64_t)UD_LENGTH); /* the SystemBuffer out to the caller */
	EXPECT_EQ(t, c2.in, c1.in);
	PFN_NUMBER rf[8];
	ASSERT_EQ(t, frames_in(p, r, UD_LENGTH, rf, 8), 5u);
	EXPECT_FALSE(t, irp_touches(rf, 5));
	EXPECT_EQ(t, compare_with_pattern(p, r, UD_LENGTH, UB_SEED), UD_LENGTH);
	EXPECT_EQ(t, p->mm.locked_pages, 0u);
	PsDestroyProcess(p);
	vreq_expect_counts(t, c);
}

static struct ktest_case user_disk_cases[] = {
	KTEST_CASE(a_user_write_is_zero_copy_and_reads_back_at_each_kind_of_offset),
	KTEST_CASE(bad_buffers_and_offsets_get_their_statuses_and_lock_nothing),
	KTEST_CASE(a_buffer_freed_during_the_read_stays_locked_until_completion),
	KTEST_CASE(a_user_write_on_the_buffered_device_is_copied_not_locked),
	{ 0 }
};
KTEST_SUITE(user_disk, user_disk_cases, .init = ud_case_init, .exit = ud_case_exit);
