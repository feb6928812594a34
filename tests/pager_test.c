/*
 * Pageable user memory and the pager (mm/RULES.md, "Paging"): a process's committed private
 * pages trimmed from its working set, written to the pagefile on the virtio disk, their
 * frames repurposed, and faulted back, soft and hard; a locked page left where it is.
 *
 * What is proven and how:
 *   - a trim turns each unlocked page's PTE into a transition PTE naming its frame (decoded
 *     from the real tables with tests/lib/pte.h's own NT bit positions) and puts the frame
 *     on the modified list (the PFN database); a locked page keeps its valid PTE and its
 *     frame, and its system mapping keeps working, a DMA read from the disk into it included;
 *   - a fault on a transition PTE (a real #PF in the SMAP window) gives the same frame back,
 *     counted as soft; after the unlock a second trim takes every page;
 *   - the modified page writer writes each page to a pagefile slot (the image read from
 *     outside: `# disk-check:`), the frame goes to standby; memory taken to the last free
 *     frame makes the allocator repurpose those frames, and their PTEs become pagefile PTEs
 *     naming the slot; a fault is then hard: a new frame, the data read back intact;
 *   - a probe of paged-out pages brings them back and locks them;
 *   - two CPUs fault the same paged-out page: the second waits for the first's read (held
 *     at the device until both are in), one read, one frame, both see the data;
 *   - on the blkfault machine (pager_inpage), a page whose slot the disk cannot read: the
 *     access gets STATUS_IN_PAGE_ERROR (the #PF's vector, error code and CR2, the device's
 *     status as the third parameter) and each probe raises it with nothing locked and the same
 *     three parameters (read in its __except filter);
 *   - paged pool (pager_pool): a whole-page PagedPool buffer's kernel PTEs become transition
 *     PTEs at a trim, a touch is a soft fault, after a page-out and a repurpose a hard one; a
 *     probe brings it back and locks it, and its MDL mapping is touched at DISPATCH_LEVEL
 *     safely; the buffer itself touched at DISPATCH_LEVEL after a trim is 0x0A, and with the
 *     verifier's force IRQL checking a raise trims it first, so that bug stops every time;
 *     small paged allocations (slab pages) the same, and an empty slab page given back while
 *     trimmed frees its frame or slot without being brought in;
 *   - memory pressure: with every free frame taken and nothing on standby, a demand-zero
 *     fault, a nonpaged-pool page (at PASSIVE_LEVEL; at DISPATCH_LEVEL it is NULL with
 *     nothing trimmed) and a hard fault, user or paged pool, are had by paging other memory
 *     out (its PTEs walked), locked memory untouched;
 *   - the trimmer's batch: a second CPU in the process's space faults on every trimmed page
 *     at once, one shootdown a batch; with the IPI off it reads them through stale entries;
 *   - every case ends with frames, standby and modified pages, slots and pool where it began.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/pattern.h"
#include "tests/lib/pte.h"
#include "tests/lib/uproc.h"
#include "tests/lib/vblk_req.h"
#include "tests/lib/wait.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/faultcap.h"
#include "kernel/ksym.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/trap.h"
#include "kernel/process.h"
#include "kernel/virtio/virtio_blk.h"
#include "kernel/smp/smp.h"
#include "mm/tlb.h"
#include "mm/mdl.h"
#include "mm/mm.h"
#include "mm/pagefile.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/tlb.h"
#include "mm/uvm.h"
#include "mm/verifier.h"

#define P PAGE_SIZE
#define NPAGES 8u
#define PG_SEED 0x5A6E0001u
#define PP_TAG_PRESSURE 0x73725050u /* 'PPrs' */

static EPROCESS proc;
static KAPC_STATE apc;
static bool live;

static struct pt_root *root(void) { return &proc.mm.root; }
static uint64_t raw(uint64_t va) { return mmt_raw_pte_in(root(), va); }

static uint64_t commit(struct ktest *t, uint64_t pages) { return uproc_commit(t, &proc, pages); }

/* Page i of the buffer at base gets the pattern of seed + i, written by the kernel into the
 * process (its demand-zero pages faulted in). */
static void fill(struct ktest *t, uint64_t base, unsigned pages, uint32_t seed)
{
	static uint8_t page[P];
	KeStackAttachProcess(&proc, &apc);
	for (unsigned i = 0; i < pages; i++) {
		pattern_fill(page, P, seed + i);
		EXPECT_EQ(t, copy_to_user(base + i * P, page, P), STATUS_SUCCESS);
	}
	KeUnstackDetachProcess(&apc);
}

/* A committed buffer of `pages`, page i filled with the pattern of seed + i. */
static uint64_t user_buffer(struct ktest *t, unsigned pages, uint32_t seed)
{
	uint64_t base = commit(t, pages);
	fill(t, base, pages, seed);
	return base;
}

/* Whether page i reads back as its pattern, read by the kernel through the process's own
 * address (the faults it takes are the pager's). */
static bool intact(uint64_t base, unsigned i, uint32_t seed)
{
	static uint8_t want[P], got[P];
	pattern_fill(want, P, seed + i);
	KeStackAttachProcess(&proc, &apc);
	NTSTATUS st = copy_from_user(got, base + i * P, P);
	KeUnstackDetachProcess(&apc);
	return st == STATUS_SUCCESS && !memcmp(want, got, P);
}

/* Every one of the buffer's first n pages reads back as its pattern. */
static void expect_intact(struct ktest *t, uint64_t base, unsigned n, uint32_t seed)
{
	for (unsigned i = 0; i < n; i++)
		EXPECT_TRUE(t, intact(base, i, seed));
}

static pfn_t frame(uint64_t va) { return mmt_frame_in(root(), va); }

/* The PTEs of the buffer's first n pages as they are now (taken while memory is short, to be
 * checked once the frames are back). */
static void read_ptes(uint64_t base, unsigned n, uint64_t *ptes)
{
	for (unsigned i = 0; i < n; i++)
		ptes[i] = raw(base + i * P);
}

/* Each PTE is of a page that left the working set: written out, a transition PTE to its
 * standby frame, or that frame repurposed, a pagefile PTE. */
static void expect_paged_out(struct ktest *t, const uint64_t *ptes, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		EXPECT_TRUE(t, mmt_sw_is_transition(ptes[i]) || mmt_sw_is_pagefile(ptes[i]));
}

static struct uvm_paging_stats stats(void)
{
	struct uvm_paging_stats s;
	uvm_get_paging_stats(&s);
	return s;
}

/* mm's working set trimmed: how many pages left it. */
static uint64_t trim(struct mm_process *mm)
{
	struct uvm_trim_result r;
	uvm_trim(mm, &r);
	return r.trimmed;
}

/* An MDL of `pages` of the buffer, probed and locked for write in the process. */
static PMDL lock(struct ktest *t, uint64_t va, unsigned pages)
{
	PMDL mdl = IoAllocateMdl((PVOID)va, pages * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	NTSTATUS st;
	KeStackAttachProcess(&proc, &apc);
	st = expect_try_probe(mdl, UserMode, IoWriteAccess, NULL, 0);
	KeUnstackDetachProcess(&apc);
	if (st != STATUS_SUCCESS) {
		IoFreeMdl(mdl);
		KTEST_FAIL(t, "MmProbeAndLockPages raised 0x%x", (ULONG)st);
		ktest_abort(t);
	}
	return mdl;
}

static void unlock(PMDL mdl)
{
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
}

/* Every free frame taken (the allocator's free lists emptied), linked through the frames
 * themselves, so that a frame asked for after this only repurposing can give.  The frame
 * counts once the last was taken. */
static pfn_t hoard;
static struct pfn_stats hoard_all_free_frames(void)
{
	hoard = PFN_INVALID;
	struct pfn_stats s;
	for (;;) {
		pfn_get_stats(&s);
		if (!s.free)
			break;
		pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
		*(pfn_t *)pfn_to_virt(f) = hoard;
		hoard = f;
	}
	return s;
}

static void release_hoard(void)
{
	while (hoard != PFN_INVALID) {
		pfn_t next = *(pfn_t *)pfn_to_virt(hoard);
		pfn_free(hoard);
		hoard = next;
	}
}

/* The free frames hoarded but n, given back: what can be had without paging is n frames. */
static void hoard_all_but(unsigned n)
{
	hoard_all_free_frames();
	for (unsigned i = 0; i < n; i++) {
		pfn_t f = hoard;
		hoard = *(pfn_t *)pfn_to_virt(f);
		pfn_free(f);
	}
}

static bool all_pagefile(const struct pt_root *r, const uint64_t *va, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!mmt_sw_is_pagefile(mmt_raw_pte_in(r, va[i])))
			return false;
	return true;
}

/* Frames taken (after the free ones are hoarded) until the PTE of every va[] in r is a
 * pagefile PTE: its standby frame repurposed, whichever order the standby list keeps.
 * Bounded; true when all are out. */
static bool repurpose_until_pagefile(const struct pt_root *r, const uint64_t *va, unsigned n)
{
	hoard_all_free_frames();
	pfn_t taken[64];
	unsigned ntaken = 0;
	while (ntaken < 64 && !all_pagefile(r, va, n))
		taken[ntaken++] = pfn_alloc(0, PFN_OWNER_TEST);
	bool out = all_pagefile(r, va, n);
	for (unsigned i = 0; i < ntaken; i++)
		if (taken[i] != PFN_INVALID)
			pfn_free(taken[i]);
	release_hoard();
	return out;
}

/* fn started on CPU 1 with the device's answers held (vblk_test_hold_completions: a request
 * stays in progress until the case lets it go, whatever the timing).  When fn cannot start,
 * the hold is let go before the case ends, so that no case after it finds the device held. */
static void start_held(struct ktest *t, void (*fn)(void *), void *arg)
{
	vblk_test_hold_completions(true);
	bool started = smp_work_start(1, fn, arg);
	if (!started)
		vblk_test_hold_completions(false);
	ASSERT_TRUE(t, started);
}

/* ---- cases ---- */

static void a_trim_leaves_locked_pages_and_a_fault_on_a_transition_pte_is_soft(struct ktest *t)
{
	uint64_t base = user_buffer(t, NPAGES, PG_SEED);
	pfn_t before[NPAGES];
	for (unsigned i = 0; i < NPAGES; i++)
		before[i] = frame(base + i * P);
	/* A driver locks the upper half and maps it into system space. */
	unsigned half = NPAGES / 2;
	PMDL mdl = lock(t, base + half * P, half);
	uint8_t *sys = MmGetSystemAddressForMdlSafe(mdl, HighPagePriority);
	ASSERT_TRUE(t, sys != NULL);

	struct uvm_trim_result r;
	uvm_trim(&proc.mm, &r);
	EXPECT_EQ(t, r.trimmed, (uint64_t)half);
	EXPECT_EQ(t, r.kept_locked, (uint64_t)half);
	for (unsigned i = 0; i < half; i++) {
		uint64_t e = raw(base + i * P);
		EXPECT_TRUE(t, mmt_sw_is_transition(e));
		EXPECT_EQ(t, mmt_sw_transition_pfn(e), before[i]);
		EXPECT_EQ(t, mmt_sw_protection(e), 4u); /* MM_READWRITE */
		EXPECT_EQ(t, pfn_entry(before[i])->state, PFN_MODIFIED);
	}
	for (unsigned i = half; i < NPAGES; i++) {
		EXPECT_TRUE(t, mmt_has(raw(base + i * P), MMT_PTE_P));
		EXPECT_EQ(t, frame(base + i * P), before[i]);
		EXPECT_EQ(t, pfn_entry(before[i])->lock_count, 1u);
	}
	/* The locked half's system mapping still reads the data and takes a DMA from the disk:
	 * a page written to the disk from a buffer of our own, read into the mapping. */
	static uint8_t want[P];
	pattern_fill(want, P, PG_SEED + half);
	EXPECT_EQ(t, memcmp(sys, want, P), 0);
	struct vblk_info vi;
	vblk_get_info(&vi);
	if (vi.device) {
		struct buf w;
		buf_make(t, &w, 1, 0, P);
		pattern_fill(w.data, P, PG_SEED + 0x100);
		EXPECT_EQ(t, vreq_transfer(t, vi.device, IRP_MJ_WRITE, w.mdl, P, (LONGLONG)PAGEFILE_FIRST_SECTOR * VBLK_SECTOR, NULL, NULL),
			  STATUS_SUCCESS);
		PMDL part = IoAllocateMdl(MmGetMdlVirtualAddress(mdl), P, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, part != NULL);
		IoBuildPartialMdl(mdl, part, MmGetMdlVirtualAddress(mdl), P);
		EXPECT_EQ(t, vreq_transfer(t, vi.device, IRP_MJ_READ, part, P, (LONGLONG)PAGEFILE_FIRST_SECTOR * VBLK_SECTOR, NULL, NULL),
			  STATUS_SUCCESS);
		IoFreeMdl(part);
		EXPECT_EQ(t, memcmp(sys, w.data, P), 0);
		buf_free(&w);
		/* What the process now has in that page is what the disk gave. */
		pattern_fill(want, P, PG_SEED + 0x100);
		EXPECT_EQ(t, memcmp(pfn_to_virt(before[half]), want, P), 0);
		pattern_fill(sys, P, PG_SEED + half); /* back as it was, for the checks below */
	}

	/* The unlocked half touched again: the same frames, soft faults, the data intact. */
	struct uvm_paging_stats s0 = stats();
	expect_intact(t, base, half, PG_SEED);
	EXPECT_EQ(t, stats().soft_faults - s0.soft_faults, (uint64_t)half);
	EXPECT_EQ(t, stats().hard_faults, s0.hard_faults);
	for (unsigned i = 0; i < half; i++) {
		EXPECT_TRUE(t, mmt_has(raw(base + i * P), MMT_PTE_P));
		EXPECT_EQ(t, frame(base + i * P), before[i]);
		EXPECT_EQ(t, pfn_entry(before[i])->state, PFN_ACTIVE);
	}
	/* Unlocked, trimmed again: everything leaves. */
	unlock(mdl);
	uvm_trim(&proc.mm, &r);
	EXPECT_EQ(t, r.trimmed, (uint64_t)NPAGES);
	EXPECT_EQ(t, r.kept_locked, 0u);
	for (unsigned i = 0; i < NPAGES; i++)
		EXPECT_TRUE(t, mmt_sw_is_transition(raw(base + i * P)));
	struct uvm_ws_counts ws;
	uvm_working_set(&proc.mm, &ws);
	EXPECT_EQ(t, ws.valid, 0u);
	EXPECT_EQ(t, ws.transition, (uint64_t)NPAGES);
	/* Teardown (the case's exit) frees the frames straight from the modified list. */
}

static PDEVICE_OBJECT pagefile_disk(struct ktest *t)
{
	struct vblk_info vi;
	vblk_get_info(&vi);
	if (!vi.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	if (!pagefile_permitted())
		ktest_skip(t, "needs pagefile=1 (make test passes it for build/disk.img; PAGEFILE=1 for a DISK=path)");
	ASSERT_TRUE(t, pagefile_attach(vi.device));
	return vi.device;
}

/* The disk's owner opts in: without pagefile=1 the disk is refused, nothing is attached and
 * the writer writes nothing (a trimmed page stays modified, its frame where it was). */
static void a_disk_is_refused_as_pagefile_without_pagefile_1(struct ktest *t)
{
	struct vblk_info vi;
	vblk_get_info(&vi);
	if (!vi.device)
		ktest_skip(t, "no virtio-blk device (make test attaches one)");
	uint64_t base = user_buffer(t, 1, PG_SEED);
	pagefile_test_permit(0);
	bool attached = pagefile_attach(vi.device);
	struct pagefile_stats ps;
	pagefile_get_stats(&ps);
	struct uvm_trim_result r;
	uvm_trim(&proc.mm, &r);
	uint64_t written = pagefile_write_modified();
	pagefile_test_permit(-1);
	EXPECT_FALSE(t, attached);
	EXPECT_FALSE(t, ps.attached);
	EXPECT_EQ(t, r.trimmed, 1u);
	EXPECT_EQ(t, written, 0u);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	EXPECT_TRUE(t, mmt_sw_is_transition(raw(base)));
	/* And with the switch the same disk is taken. */
	pagefile_test_permit(1);
	EXPECT_TRUE(t, pagefile_attach(vi.device));
	pagefile_test_permit(-1);
	EXPECT_TRUE(t, pagefile_attach(NULL));
}

/* Trim the buffer and write it: every page standby with a slot, its image on the disk (the
 * writer may write other modified pages with it: paged pool's). */
static void page_out(struct ktest *t, uint64_t base, unsigned pages, uint32_t seed, pfn_t *frames, uint32_t *slots,
		     bool disk_check)
{
	for (unsigned i = 0; i < pages; i++)
		frames[i] = frame(base + i * P);
	EXPECT_EQ(t, trim(&proc.mm), (uint64_t)pages);
	EXPECT_GE(t, pagefile_write_modified(), (uint64_t)pages);
	for (unsigned i = 0; i < pages; i++) {
		const struct pfn_entry *e = pfn_entry(frames[i]);
		EXPECT_EQ(t, e->state, PFN_STANDBY);
		slots[i] = e->slot;
		EXPECT_NE(t, slots[i], 0u);
		EXPECT_TRUE(t, mmt_sw_is_transition(raw(base + i * P)));
		/* From outside: the harness reads the slot in the image (after the run, so only
		 * the suite's last case to write these slots checks them). */
		if (disk_check)
			kprintf("# disk-check: %lu %u 0x%x\n", pagefile_offset(slots[i]) / VBLK_SECTOR, (unsigned)(P / VBLK_SECTOR), seed + i);
	}
}

/* Pages (at most 4) paged out and their frames repurposed (whatever else is on standby):
 * pagefile PTEs, a touch is a hard fault. */
static void page_out_and_repurpose(struct ktest *t, uint64_t base, unsigned pages, uint32_t seed)
{
	pfn_t frames[4];
	uint32_t slots[4];
	uint64_t va[4];
	page_out(t, base, pages, seed, frames, slots, false);
	for (unsigned i = 0; i < pages; i++)
		va[i] = base + i * P;
	ASSERT_TRUE(t, repurpose_until_pagefile(root(), va, pages));
}

static void paged_out_pages_are_repurposed_and_come_back_by_hard_faults(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x200;
	uint64_t base = user_buffer(t, 4, seed);
	pfn_t frames[4];
	uint32_t slots[4];
	page_out(t, base, 4, seed, frames, slots, true);
	/* The writer clusters: the four pages went in one request to four contiguous slots. */
	struct pagefile_stats ps;
	pagefile_get_stats(&ps);
	uint32_t lo = slots[0], hi = slots[0];
	for (unsigned i = 1; i < 4; i++) {
		lo = slots[i] < lo ? slots[i] : lo;
		hi = slots[i] > hi ? slots[i] : hi;
	}
	EXPECT_EQ(t, hi - lo, 3u);

	/* No free frame left: the allocator repurposes the standby frames (these four, and any
	 * other page's it comes to first), and their PTEs become pagefile PTEs naming the slots. */
	hoard_all_free_frames();
	pfn_t taken[64];
	uint64_t va[4];
	unsigned ntaken = 0;
	for (unsigned i = 0; i < 4; i++)
		va[i] = base + i * P;
	while (ntaken < 64 && !all_pagefile(root(), va, 4))
		taken[ntaken++] = pfn_alloc(0, PFN_OWNER_TEST);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t e = raw(base + i * P);
		EXPECT_TRUE(t, mmt_sw_is_pagefile(e));
		EXPECT_EQ(t, mmt_sw_pagefile_high(e), slots[i]);
		EXPECT_EQ(t, mmt_sw_pagefile_low(e), 0u);
		EXPECT_EQ(t, mmt_sw_protection(e), 4u);
		EXPECT_EQ(t, pfn_entry(frames[i])->state, PFN_ACTIVE);
		EXPECT_EQ(t, pfn_entry(frames[i])->owner_kind, PFN_OWNER_TEST);
	}
	/* The four standby frames are among those the allocator gave. */
	for (unsigned k = 0; k < 4; k++) {
		bool found = false;
		for (unsigned i = 0; i < ntaken; i++)
			found |= taken[i] == frames[k];
		EXPECT_TRUE(t, found);
	}
	for (unsigned i = 0; i < ntaken; i++)
		if (taken[i] != PFN_INVALID)
			pfn_free(taken[i]);
	release_hoard();

	/* Touched again: hard faults, new frames read from the slots, the data intact. */
	struct uvm_paging_stats s0 = stats();
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, stats().hard_faults - s0.hard_faults, 4u);
	EXPECT_EQ(t, stats().soft_faults, s0.soft_faults);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_has(raw(base + i * P), MMT_PTE_P));
	/* A page valid again keeps no copy: the slots are free. */
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

static void a_probe_of_paged_out_pages_brings_them_back_and_locks_them(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x300;
	uint64_t base = user_buffer(t, 4, seed);
	page_out_and_repurpose(t, base, 4, seed);

	struct uvm_paging_stats s0 = stats();
	PMDL mdl = lock(t, base, 4);
	EXPECT_EQ(t, stats().hard_faults - s0.hard_faults, 4u);
	for (unsigned i = 0; i < 4; i++) {
		pfn_t f = MmGetMdlPfnArray(mdl)[i];
		EXPECT_EQ(t, frame(base + i * P), f);
		EXPECT_EQ(t, pfn_entry(f)->lock_count, 1u);
		static uint8_t want[P];
		pattern_fill(want, P, seed + i);
		EXPECT_EQ(t, memcmp(pfn_to_virt(f), want, P), 0);
	}
	/* Locked, the pages stay through a trim. */
	struct uvm_trim_result r;
	uvm_trim(&proc.mm, &r);
	EXPECT_EQ(t, r.trimmed, 0u);
	EXPECT_EQ(t, r.kept_locked, 4u);
	unlock(mdl);
}

static void memory_pressure_pages_out_unlocked_memory_and_never_locked(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x400;
	uint64_t base = user_buffer(t, 8, seed);
	PMDL locked = lock(t, base + 4 * P, 4);
	pfn_t lf[4];
	for (unsigned i = 0; i < 4; i++)
		lf[i] = MmGetMdlPfnArray(locked)[i];
	/* Everything but two frames taken; an MDL of six pages can only be had by paging out. */
	hoard_all_but(2);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, 6 * P, MmCached, MM_DONT_ZERO_ALLOCATION);
	EXPECT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m ? MmGetMdlByteCount(m) : 0, 6 * P);
	/* The locked half is where it was; the unlocked half was paged out. */
	for (unsigned i = 0; i < 4; i++) {
		EXPECT_TRUE(t, mmt_has(raw(base + (4 + i) * P), MMT_PTE_P));
		EXPECT_EQ(t, frame(base + (4 + i) * P), lf[i]);
		EXPECT_TRUE(t, mmt_sw_is_pagefile(raw(base + i * P)));
	}
	if (m) {
		MmFreePagesFromMdl(m);
		ExFreePool(m);
	}
	release_hoard();
	unlock(locked);
	expect_intact(t, base, 8, seed);
}

/* ---- memory pressure at every frame allocation (mm/RULES.md, "Paging", memory pressure) ---- */

static struct pfn_stats pfn_now(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s;
}

/* The kernel's write of page i's pattern into the process (a real #PF in the SMAP window). */
static NTSTATUS write_page(uint64_t base, unsigned i, uint32_t seed)
{
	return uproc_write_page(&proc, &apc, base, i, seed);
}

/* MM_ALLOCATE_NO_WAIT under the same pressure: one frame free, pageable user memory there,
 * two pages asked.  With NO_WAIT the call never waits for the trimmer and the writer: a short
 * MDL of the one free frame, no relief counted, the buffer's PTEs still valid.  Without it
 * the same call relieves and has both.  (The MDL's own pool block is this CPU's kept block,
 * the one the warm-up freed: no pool page is needed, so only the frames' path can relieve.)
 * Before, the NO_WAIT call relieved as the other did. */
static void no_wait_pages_for_mdl_under_pressure_come_back_short_without_relief(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x480;
	uint64_t base = commit(t, 4);
	fill(t, base, 4, seed);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL warm = MmAllocatePagesForMdlEx(lo, hi, skip, 2 * P, MmCached, MM_DONT_ZERO_ALLOCATION);
	ASSERT_TRUE(t, warm != NULL);
	MmFreePagesFromMdl(warm);
	ExFreePool(warm);
	struct uvm_paging_stats s0 = stats();
	hoard_all_free_frames();
	pfn_t spare = hoard;
	hoard = *(pfn_t *)pfn_to_virt(spare);
	pfn_free(spare);
	struct pfn_stats p0 = pfn_now();
	PMDL nw = MmAllocatePagesForMdlEx(lo, hi, skip, 2 * P, MmCached, MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_NO_WAIT);
	struct uvm_paging_stats s1 = stats();
	uint64_t kept[4];
	for (unsigned i = 0; i < 4; i++)
		kept[i] = raw(base + i * P);
	ULONG nw_bytes = nw ? MmGetMdlByteCount(nw) : 0;
	if (nw) {
		MmFreePagesFromMdl(nw);
		ExFreePool(nw);
	}
	PMDL w = MmAllocatePagesForMdlEx(lo, hi, skip, 2 * P, MmCached, MM_DONT_ZERO_ALLOCATION);
	struct uvm_paging_stats s2 = stats();
	uint64_t out[4];
	for (unsigned i = 0; i < 4; i++)
		out[i] = raw(base + i * P);
	ULONG w_bytes = w ? MmGetMdlByteCount(w) : 0;
	if (w) {
		MmFreePagesFromMdl(w);
		ExFreePool(w);
	}
	release_hoard();
	EXPECT_EQ(t, p0.free, 1u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_EQ(t, nw_bytes, (ULONG)P);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_has(kept[i], MMT_PTE_P));
	EXPECT_EQ(t, w_bytes, (ULONG)(2 * P));
	EXPECT_EQ(t, s2.reliefs - s1.reliefs, 1u);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_sw_is_transition(out[i]) || mmt_sw_is_pagefile(out[i]));
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, intact(base, i, seed));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A one-page MDL's block: its nonpaged slab class filled (fill_mdl_class), so that its next
 * allocation needs a new pool page. */
#define NW_MDL_BYTES (sizeof(MDL) + sizeof(PFN_NUMBER))

static uint64_t slab_pages_now(void)
{
	struct pool_stats q;
	pool_get_stats(&q);
	return q.slab_pages;
}

static void free_chain(void *chain)
{
	while (chain) {
		void *next = *(void **)chain;
		ExFreePoolWithTag(chain, PP_TAG_PRESSURE);
		chain = next;
	}
}

/* Blocks of NW_MDL_BYTES taken (chained through their first word, returned) until no page of
 * their class has a free slot: after the kept blocks and spare pages are given back, until one
 * opened a new slab page, then until the next did (the page before is full; the blocks taken
 * in between are a page's slots), then that page's other slots.  NULL when a bound ran out. */
static void *fill_mdl_class(void)
{
	pool_trim();
	void *chain = NULL;
	uint64_t slabs = slab_pages_now(), per_page = 0;
	for (unsigned opened = 0, n = 0; opened < 2 || per_page > 1; n++) {
		void **b = ExAllocatePool2(POOL_FLAG_NON_PAGED, NW_MDL_BYTES, PP_TAG_PRESSURE);
		if (b) {
			*b = chain;
			chain = b;
		}
		if (!b || n > 100000) {
			free_chain(chain);
			return NULL;
		}
		if (opened == 2) {
			per_page--;
			continue;
		}
		if (opened == 1)
			per_page++;
		if (slab_pages_now() != slabs) {
			slabs++;
			opened++;
		}
	}
	return chain;
}

/* MM_ALLOCATE_NO_WAIT whose MDL needs a new nonpaged pool page: no frame free, nothing on
 * standby, no free slot of the MDL's class (fill_mdl_class), pageable user memory there.  The
 * pool allocation does not relieve either, so the call is NULL with no relief counted, no pool
 * page taken and the user PTEs valid; the same call without the flag relieves once (the pool
 * page's frame and the MDL's frame from the pages it wrote out) and has its page.  Before, the
 * MDL's ExAllocatePool2 relieved and the NO_WAIT call had its page. */
static void a_no_wait_mdl_that_needs_a_pool_page_is_null_without_relief(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1B00;
	uint64_t base = user_buffer(t, 4, seed);
	void *fill = fill_mdl_class();
	ASSERT_TRUE(t, fill != NULL);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	struct uvm_paging_stats s0 = stats();
	struct pool_stats q0, q1;
	struct pfn_stats p0 = hoard_all_free_frames();
	pool_get_stats(&q0);
	PMDL nw = MmAllocatePagesForMdlEx(lo, hi, skip, P, MmCached, MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_NO_WAIT);
	pool_get_stats(&q1);
	struct uvm_paging_stats s1 = stats();
	uint64_t kept[4];
	read_ptes(base, 4, kept);
	if (nw) {
		MmFreePagesFromMdl(nw);
		ExFreePool(nw);
	}
	PMDL w = MmAllocatePagesForMdlEx(lo, hi, skip, P, MmCached, MM_DONT_ZERO_ALLOCATION);
	struct uvm_paging_stats s2 = stats();
	struct pool_stats q2;
	pool_get_stats(&q2);
	uint64_t out[4];
	read_ptes(base, 4, out);
	ULONG w_bytes = w ? MmGetMdlByteCount(w) : 0;
	if (w) {
		MmFreePagesFromMdl(w);
		ExFreePool(w);
	}
	release_hoard();
	free_chain(fill);
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_TRUE(t, nw == NULL);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	EXPECT_EQ(t, q1.pages_in_use, q0.pages_in_use);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_has(kept[i], MMT_PTE_P));
	EXPECT_EQ(t, w_bytes, (ULONG)P);
	EXPECT_EQ(t, q2.slab_pages - q1.slab_pages, 1u); /* its MDL opened a slab page */
	EXPECT_EQ(t, s2.reliefs - s1.reliefs, 1u);
	expect_paged_out(t, out, 4);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* The same pressure with interrupts off at PASSIVE_LEVEL (a CLI): relief waits for the
 * writer's disk completion and the trim's shootdowns, so it refuses such a caller and the
 * allocation simply fails: a frame from the allocator and a new nonpaged pool page are both
 * had nowhere, no relief counted, the buffer's PTEs still valid.  After the STI the same
 * frame allocation relieves and succeeds.  Before, both relieved with interrupts off. */
static void an_allocation_with_interrupts_off_fails_without_relief(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x4C0;
	uint64_t base = commit(t, 4);
	fill(t, base, 4, seed);
	struct uvm_paging_stats s0 = stats();
	hoard_all_free_frames();
	struct pfn_stats p0 = pfn_now();
	__asm__ volatile("cli" ::: "memory");
	pfn_t off = pfn_alloc(0, PFN_OWNER_TEST);
	void *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, PP_TAG_PRESSURE);
	__asm__ volatile("sti" ::: "memory");
	struct uvm_paging_stats s1 = stats();
	uint64_t kept[4];
	for (unsigned i = 0; i < 4; i++)
		kept[i] = raw(base + i * P);
	pfn_t on = pfn_alloc(0, PFN_OWNER_TEST);
	struct uvm_paging_stats s2 = stats();
	if (off != PFN_INVALID)
		pfn_free(off);
	if (pool)
		ExFreePoolWithTag(pool, PP_TAG_PRESSURE);
	if (on != PFN_INVALID)
		pfn_free(on);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_EQ(t, off, PFN_INVALID);
	EXPECT_TRUE(t, pool == NULL);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_has(kept[i], MMT_PTE_P));
	EXPECT_TRUE(t, on != PFN_INVALID);
	EXPECT_EQ(t, s2.reliefs - s1.reliefs, 1u);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, intact(base, i, seed));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A probe's residency pass (uvm_make_resident_status, MmProbeAndLockPages' and ProbeForWrite's)
 * that finds no frame mid-buffer: pages 0-1 resident, 2-3 demand zero, every free frame taken,
 * another buffer pageable.  The pass relieves once, and the relief trims pages 0-1 too; the
 * pass starts over from page 0 (two soft faults), so when it returns success every page's PTE
 * is valid.  Before, it went on from page 2 and returned success with pages 0-1 trimmed. */
static void a_residency_pass_that_relieves_starts_over_and_leaves_every_page_resident(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x4E0, other = PG_SEED + 0x4F0;
	uint64_t a = commit(t, 4);
	fill(t, a, 2, seed);
	uint64_t b = commit(t, 8);
	fill(t, b, 8, other);
	struct uvm_paging_stats s0 = stats();
	hoard_all_free_frames();
	struct pfn_stats p0 = pfn_now();
	NTSTATUS st = uvm_make_resident_status(&proc.mm, a, 4 * P, true, NULL);
	struct uvm_paging_stats s1 = stats();
	uint64_t pte[4];
	for (unsigned i = 0; i < 4; i++)
		pte[i] = raw(a + i * P);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, s1.reliefs - s0.reliefs, 1u);
	EXPECT_EQ(t, s1.soft_faults - s0.soft_faults, 2u);
	for (unsigned i = 0; i < 4; i++)
		EXPECT_TRUE(t, mmt_has(pte[i], MMT_PTE_P));
	for (unsigned i = 0; i < 2; i++)
		EXPECT_TRUE(t, intact(a, i, seed));
	for (unsigned i = 0; i < 8; i++)
		EXPECT_TRUE(t, intact(b, i, other));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A demand-zero fault that finds no free and no standby frame: the fault path drops the
 * address-space lock, relieves the pressure (the unlocked half of the buffer trimmed and
 * written out), and its retry repurposes one of those frames.  The locked half keeps its
 * valid PTEs and frames.  Before, the fault was an access violation. */
static void a_demand_zero_fault_with_no_free_frame_pages_out_unlocked_memory(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1200;
	uint64_t base = commit(t, 9); /* pages 0-7 filled, page 8 demand zero */
	fill(t, base, 8, seed);
	PMDL locked = lock(t, base + 4 * P, 4);
	pfn_t lf[4], uf[4];
	for (unsigned i = 0; i < 4; i++) {
		lf[i] = MmGetMdlPfnArray(locked)[i];
		uf[i] = frame(base + i * P);
	}
	EXPECT_EQ(t, raw(base + 8 * P), 0u);
	struct uvm_paging_stats s0 = stats();
	struct pfn_stats p0 = hoard_all_free_frames();
	NTSTATUS st = write_page(base, 8, seed);
	struct uvm_paging_stats s1 = stats();
	struct pfn_stats p1 = pfn_now();
	uint64_t pte8 = raw(base + 8 * P), unl[4], lck[4];
	pfn_t lckf[4];
	for (unsigned i = 0; i < 4; i++) {
		unl[i] = raw(base + i * P);
		lck[i] = raw(base + (4 + i) * P);
		lckf[i] = frame(base + (4 + i) * P);
	}
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, s1.reliefs - s0.reliefs, 1u);
	EXPECT_GE(t, p1.repurposed - p0.repurposed, 1u);
	EXPECT_TRUE(t, mmt_has(pte8, MMT_PTE_P));
	/* The unlocked half left the working set: written out (standby, transition PTEs), one
	 * of them maybe repurposed for the new page (a pagefile PTE naming its slot). */
	unsigned out = 0;
	for (unsigned i = 0; i < 4; i++) {
		bool tr = mmt_sw_is_transition(unl[i]), pf = mmt_sw_is_pagefile(unl[i]);
		out += tr || pf;
		if (tr)
			EXPECT_EQ(t, mmt_sw_transition_pfn(unl[i]), uf[i]);
	}
	EXPECT_EQ(t, out, 4u);
	for (unsigned i = 0; i < 4; i++) {
		EXPECT_TRUE(t, mmt_has(lck[i], MMT_PTE_P));
		EXPECT_EQ(t, lckf[i], lf[i]);
	}
	unlock(locked);
	expect_intact(t, base, 9, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A nonpaged-pool allocation that needs new pages (whole pages: never a slab's room) under
 * the same pressure: at DISPATCH_LEVEL nothing may wait, so it is NULL with nothing trimmed,
 * no frame and no pool byte taken; at PASSIVE_LEVEL the pool relieves the pressure without
 * its lock and has them. */
static void a_nonpaged_pool_page_under_pressure_is_had_at_passive_and_refused_at_dispatch(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1300;
	uint64_t base = user_buffer(t, 4, seed);
	struct uvm_paging_stats s0 = stats();
	struct pool_stats q0, q1;
	struct pfn_stats p0 = hoard_all_free_frames();
	pool_get_stats(&q0);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, PP_TAG_PRESSURE);
	KeLowerIrql(old);
	pool_get_stats(&q1);
	struct pfn_stats p1 = pfn_now();
	struct uvm_paging_stats s1 = stats();
	uint64_t at_dispatch = raw(base);
	uint8_t *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, PP_TAG_PRESSURE);
	struct uvm_paging_stats s2 = stats();
	uint64_t ptes[4];
	read_ptes(base, 4, ptes);
	if (b) {
		memset(b, 0xA5, 2 * P); /* its pages are mapped and writable */
		ExFreePoolWithTag(b, PP_TAG_PRESSURE);
	}
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_TRUE(t, a == NULL);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	EXPECT_EQ(t, p1.free, 0u);
	EXPECT_EQ(t, q1.pages_in_use, q0.pages_in_use);
	EXPECT_EQ(t, q1.bytes_in_use, q0.bytes_in_use);
	EXPECT_TRUE(t, mmt_has(at_dispatch, MMT_PTE_P));
	EXPECT_TRUE(t, b != NULL);
	EXPECT_EQ(t, s2.reliefs - s1.reliefs, 1u);
	expect_paged_out(t, ptes, 4);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* Standby pages, no free frame, and a nonpaged allocation larger than all of pool VA: it
 * fails for want of VA, which relief cannot cure, so it is NULL at once with nothing
 * relieved, no page or byte of pool taken, the standby pages where they were.  (Before, every
 * failure relieved again and retried while relief returned standby pages: it never
 * returned.) */
static void a_pool_allocation_larger_than_pool_va_under_pressure_is_null_without_relief(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1380;
	uint64_t base = user_buffer(t, 4, seed);
	EXPECT_EQ(t, trim(&proc.mm), 4u);
	EXPECT_GE(t, pagefile_write_modified(), 4u);
	struct uvm_paging_stats s0 = stats();
	struct pool_stats q0, q1;
	struct pfn_stats p0 = hoard_all_free_frames();
	pool_get_stats(&q0);
	/* 1 Mi pages: more than the pool's VA (pool= is at most 32768 pages by default). */
	void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 0xFFFFFFFFul - 2 * P, PP_TAG_PRESSURE);
	pool_get_stats(&q1);
	struct pfn_stats p1 = pfn_now();
	struct uvm_paging_stats s1 = stats();
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_GE(t, p0.standby, 4u);
	EXPECT_TRUE(t, a == NULL);
	EXPECT_EQ(t, s1.reliefs, s0.reliefs);
	EXPECT_EQ(t, p1.standby, p0.standby);
	EXPECT_EQ(t, p1.free, 0u);
	EXPECT_EQ(t, q1.pages_in_use, q0.pages_in_use);
	EXPECT_EQ(t, q1.bytes_in_use, q0.bytes_in_use);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A hard fault whose read finds no frame to read into: the page's pagefile PTE is left as it
 * was, the pressure relieved (another buffer paged out), and the retry reads it in. */
static void a_hard_fault_with_no_free_frame_relieves_pressure_and_reads_the_page(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1400, other = PG_SEED + 0x1410;
	uint64_t a = user_buffer(t, 1, seed);
	page_out_and_repurpose(t, a, 1, seed);
	uint64_t b = user_buffer(t, 4, other);
	struct uvm_paging_stats s0 = stats();
	struct pfn_stats p0 = hoard_all_free_frames();
	bool back = intact(a, 0, seed);
	struct uvm_paging_stats s1 = stats();
	uint64_t pa = raw(a), pb[4];
	read_ptes(b, 4, pb);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_TRUE(t, back);
	EXPECT_TRUE(t, mmt_has(pa, MMT_PTE_P));
	EXPECT_EQ(t, s1.hard_faults - s0.hard_faults, 1u);
	EXPECT_EQ(t, s1.reliefs - s0.reliefs, 1u);
	expect_paged_out(t, pb, 4);
	expect_intact(t, b, 4, other);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A commit whose page array needs new pool pages (1024 pages: an 8 KiB array, whole pool
 * pages) under the same pressure: the pool cannot relieve under the address-space lock, so
 * the commit drops it, relieves and commits on its second try.  Before,
 * STATUS_INSUFFICIENT_RESOURCES. */
static void a_commit_whose_page_array_needs_a_pool_page_relieves_pressure(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1800;
	uint64_t base = user_buffer(t, 4, seed);
	struct uvm_paging_stats s0 = stats();
	struct pfn_stats p0 = hoard_all_free_frames();
	uint64_t big = 0, size = 1024 * P;
	NTSTATUS st = uvm_allocate(&proc.mm, &big, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	struct uvm_paging_stats s1 = stats();
	uint64_t ptes[4];
	read_ptes(base, 4, ptes);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, s1.reliefs - s0.reliefs, 1u);
	expect_paged_out(t, ptes, 4);
	if (st == STATUS_SUCCESS) {
		EXPECT_EQ(t, size, 1024 * P);
		uint64_t zero = 0;
		EXPECT_EQ(t, uvm_free(&proc.mm, &big, &zero, MEM_RELEASE), STATUS_SUCCESS);
	}
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* The same from ring 3: an agent's first write to a committed page finds no frame; the
 * #PF from user mode relieves the pressure (the pager process's buffer paged out) and the
 * write is retried; the agent reads back what it wrote and ends with STATUS_SUCCESS.  Before,
 * the process ended with the access violation. */
#define PRESSURE_VA 0x30000000ul
static void a_ring_3_demand_zero_fault_with_no_free_frame_succeeds(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1900;
	uint64_t base = user_buffer(t, 4, seed);
	struct agent_script script;
	agent_begin(&script);
	const uint64_t value = 0x5A6E19005A6E1900ull;
	agent_write64(&script, PRESSURE_VA + 0x18, value);
	uint32_t rd = agent_read64(&script, PRESSURE_VA + 0x18);
	PEPROCESS p = agent_create(&script, 0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t va = PRESSURE_VA, size = P;
	EXPECT_EQ(t, uvm_allocate(&p->mm, &va, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	EXPECT_EQ(t, mmt_raw_pte_in(&p->mm.root, PRESSURE_VA), 0u);
	struct uvm_paging_stats s0 = stats();
	struct pfn_stats p0 = hoard_all_free_frames();
	NTSTATUS st = PsRunProcess(p);
	struct uvm_paging_stats s1 = stats();
	uint64_t ptes[4];
	read_ptes(base, 4, ptes);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_GE(t, s1.reliefs - s0.reliefs, 1u);
	EXPECT_TRUE(t, mmt_has(mmt_raw_pte_in(&p->mm.root, PRESSURE_VA), MMT_PTE_P));
	uint64_t got = 0;
	EXPECT_TRUE(t, ps_report(p, AGENT_KEY(rd, 0), &got));
	EXPECT_EQ(t, got, value);
	expect_paged_out(t, ptes, 4);
	PsDestroyProcess(p);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* The trimmer's batched shootdown (RULES "Paging", the trimmer): CPU 1 runs in the process's
 * address space and reads every page of two buffers (40 pages: a full flush of the process;
 * 4: INVLPGs), so its TLB holds them; the boot CPU trims; CPU 1's next read of each page is a
 * not-present #PF at that page.  With the IPI off (ipi false) CPU 1 still reads every page
 * through its stale entries, which is what a frame put on the modified list before the flush
 * reached every CPU would be open to. */
#define TS_BIG 40u
#define TS_SMALL 4u
struct trim_probe {
	struct pt_root *root;
	uint64_t va[TS_BIG + TS_SMALL];
	volatile uint32_t first_done, changed, timed_out;
	uint32_t first_ok, second_ok, second_faults_right;
};

static uint32_t trim_probe_pass(struct trim_probe *u, bool check)
{
	uint32_t ok = 0;
	for (unsigned i = 0; i < TS_BIG + TS_SMALL; i++) {
		uint8_t v;
		struct faultcap c;
		memset(&c, 0, sizeof c);
		if (faultcap_try_load8(u->va[i], &v, &c))
			ok++;
		else if (check && c.from_cpu && c.vector == VEC_PAGE_FAULT && c.error_code == 0 && c.cr2 == u->va[i])
			u->second_faults_right++;
	}
	return ok;
}

/* Interrupts off from the first pass to the second (no handler's flush may drop an entry
 * the case shows to be stale); the wait still serves cross-calls, so a shootdown reaches it. */
static void trim_probe_on_ap(void *arg)
{
	struct trim_probe *u = arg;
	bool intr = read_rflags() & RFLAGS_IF;
	__asm__ volatile("cli" ::: "memory");
	tlb_switch_to(u->root);
	user_access_begin();
	u->first_ok = trim_probe_pass(u, false);
	__atomic_store_n(&u->first_done, 1, __ATOMIC_SEQ_CST);
	if (!smp_wait_flag(&u->changed))
		u->timed_out = 1;
	else
		u->second_ok = trim_probe_pass(u, true);
	user_access_end();
	tlb_switch_to(&kernel_root);
	if (intr)
		__asm__ volatile("sti" ::: "memory");
}

static void trim_shootdown_case(struct ktest *t, bool ipi)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	uint32_t seed = PG_SEED + 0x1600;
	uint64_t big = commit(t, TS_BIG), small = commit(t, TS_SMALL);
	fill(t, big, TS_BIG, seed);
	fill(t, small, TS_SMALL, seed + TS_BIG);
	struct trim_probe u;
	memset(&u, 0, sizeof u);
	u.root = root();
	for (unsigned i = 0; i < TS_BIG; i++)
		u.va[i] = big + i * P + 0x40;
	for (unsigned i = 0; i < TS_SMALL; i++)
		u.va[TS_BIG + i] = small + i * P + 0x40;
	bool started = smp_work_start(1, trim_probe_on_ap, &u);
	bool first = started && smp_wait_flag(&u.first_done);
	struct uvm_trim_result r = { 0 };
	struct tlb_stats s0, s1;
	tlb_get_stats(&s0);
	if (first) {
		tlb_test_set_shootdown(ipi);
		uvm_trim(&proc.mm, &r);
		tlb_test_set_shootdown(true);
	}
	tlb_get_stats(&s1);
	__atomic_store_n(&u.changed, 1, __ATOMIC_SEQ_CST);
	bool back = started && smp_work_wait(1);
	ASSERT_TRUE(t, started && first && back);
	EXPECT_FALSE(t, u.timed_out);
	EXPECT_EQ(t, u.first_ok, TS_BIG + TS_SMALL);
	EXPECT_EQ(t, r.trimmed, (uint64_t)(TS_BIG + TS_SMALL));
	for (unsigned i = 0; i < TS_BIG + TS_SMALL; i++)
		EXPECT_TRUE(t, mmt_sw_is_transition(raw(ALIGN_DOWN(u.va[i], P))));
	if (ipi) {
		EXPECT_EQ(t, u.second_ok, 0u);
		EXPECT_EQ(t, u.second_faults_right, TS_BIG + TS_SMALL);
		/* One shootdown a batch: one for each buffer, not one a page. */
		EXPECT_EQ(t, s1.shootdowns - s0.shootdowns, 2u);
	} else {
		EXPECT_EQ(t, u.second_ok, TS_BIG + TS_SMALL);
	}
	expect_intact(t, big, TS_BIG, seed);
	expect_intact(t, small, TS_SMALL, seed + TS_BIG);
}

static void a_trims_batch_is_flushed_from_the_cpu_running_the_process(struct ktest *t) { trim_shootdown_case(t, true); }
static void a_trim_without_the_ipi_leaves_stale_entries(struct ktest *t) { trim_shootdown_case(t, false); }

static void a_full_pagefile_fails_the_write_cleanly_and_nothing_is_lost(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x500;
	uint64_t base = user_buffer(t, 4, seed);
	pagefile_set_limit(3); /* slots 1 and 2 only */
	pfn_t frames[4];
	for (unsigned i = 0; i < 4; i++)
		frames[i] = frame(base + i * P);
	uint64_t others = pfn_now().modified; /* modified pages not the case's (paged pool's) */
	EXPECT_EQ(t, trim(&proc.mm), 4u);
	/* The two slots taken, whichever modified pages took them. */
	EXPECT_EQ(t, pagefile_write_modified(), 2u);
	struct pfn_stats s;
	pfn_get_stats(&s);
	EXPECT_GE(t, s.modified, 2u);
	EXPECT_GE(t, s.standby, 2u);
	EXPECT_EQ(t, pagefile_slots_in_use(), 2u);
	/* Page by page, from the real tables: every PTE still the transition PTE of its own
	 * frame; those written on standby with slot 1 or 2, each its own (both, unless other
	 * modified pages took them), those that found no slot MODIFIED with none (back on the
	 * modified list, not WRITING), so nothing is lost. */
	unsigned modified = 0, slot_seen = 0;
	for (unsigned i = 0; i < 4; i++) {
		uint64_t e = raw(base + i * P);
		EXPECT_TRUE(t, mmt_sw_is_transition(e));
		EXPECT_EQ(t, mmt_sw_transition_pfn(e), frames[i]);
		const struct pfn_entry *pe = pfn_entry(frames[i]);
		struct pt_query q;
		pt_query(root(), base + i * P, &q);
		EXPECT_EQ(t, pe->owner, q.entry_pa[1]); /* NT's PteAddress: this page's PTE */
		if (pe->state == PFN_MODIFIED) {
			modified++;
			EXPECT_EQ(t, pe->slot, 0u);
			EXPECT_EQ(t, pe->flags & PFN_F_WRITING, 0u);
			EXPECT_EQ(t, pe->lock_count, 0u);
		} else {
			EXPECT_EQ(t, pe->state, PFN_STANDBY);
			EXPECT_TRUE(t, pe->slot == 1 || pe->slot == 2);
			EXPECT_FALSE(t, slot_seen & (1u << pe->slot));
			slot_seen |= 1u << pe->slot;
		}
	}
	EXPECT_GE(t, modified, 2u);
	EXPECT_GE(t, 4 - modified + others, 2u);
	EXPECT_EQ(t, slot_seen & ~0x6u, 0u);
	pagefile_set_limit(0);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A death case: a driver touches, at DISPATCH_LEVEL, a user page the trimmer took (its
 * frame still in transition): 0x0A with the address, the IRQL, 0 (a read) and the RIP of the
 * load, even inside __try. */
static void a_trimmed_page_touched_at_dispatch_level_is_0x0a(struct ktest *t)
{
	uint64_t base = user_buffer(t, 1, PG_SEED + 0x700);
	ASSERT_EQ(t, trim(&proc.mm), 1u);
	ASSERT_TRUE(t, mmt_sw_is_transition(raw(base)));
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, base + 0x20, DISPATCH_LEVEL, 0, (uint64_t)faultcap_load8, KTEST_P_ALL);
	KeStackAttachProcess(&proc, &apc);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	uint8_t v;
	struct faultcap f;
	user_access_begin();
	faultcap_try_load8(base + 0x20, &v, &f);
	user_access_end();
	KeLowerIrql(old);
	KeUnstackDetachProcess(&apc);
	KTEST_FAIL(t, "the load at DISPATCH_LEVEL returned (faulted %d, status 0x%x)", f.faulted, (ULONG)f.status);
}

/* A death case: the same touch at PASSIVE_LEVEL by code that turned interrupts off (CLI):
 * 0x0A with 0xFF as the IRQL (interrupts off), 0, the RIP of the load.  Before, the fault was
 * resolved, a wait for a read turning interrupts on under that code. */
static void a_trimmed_page_touched_with_interrupts_off_is_0x0a(struct ktest *t)
{
	uint64_t base = user_buffer(t, 1, PG_SEED + 0x710);
	ASSERT_EQ(t, trim(&proc.mm), 1u);
	ASSERT_TRUE(t, mmt_sw_is_transition(raw(base)));
	ASSERT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, base + 0x20, UVM_IRQL_INTERRUPTS_OFF, 0, (uint64_t)faultcap_load8,
			  KTEST_P_ALL);
	KeStackAttachProcess(&proc, &apc);
	uint8_t v;
	struct faultcap f;
	__asm__ volatile("cli" ::: "memory");
	user_access_begin();
	faultcap_try_load8(base + 0x20, &v, &f);
	user_access_end();
	__asm__ volatile("sti" ::: "memory");
	KeUnstackDetachProcess(&apc);
	KTEST_FAIL(t, "the load with interrupts off returned (faulted %d, status 0x%x)", f.faulted, (ULONG)f.status);
}

/* A probe's 0x0A names, as P4, the return address into the probing routine (RULES' 0x0A
 * table): in MmProbeAndLockPages, the address after its one call of
 * uvm_make_resident_pages_status, which C cannot name.  So it is read from the routine's own
 * code: a CALL rel32 (E8) to that function at an address ksym places in MmProbeAndLockPages,
 * within PROBE_CODE_MAX bytes of its start; 0 unless there is exactly one. */
#define PROBE_CODE_MAX 0x2000u
static uint64_t probe_return_address(void)
{
	const uint8_t *code = (const uint8_t *)MmProbeAndLockPages;
	uint64_t found = 0, off;
	unsigned calls = 0;
	for (unsigned i = 0; i + 5 <= PROBE_CODE_MAX; i++) {
		int32_t rel;
		memcpy(&rel, code + i + 1, sizeof rel);
		uint64_t next = (uint64_t)(code + i + 5);
		if (code[i] != 0xE8 || next + (int64_t)rel != (uint64_t)uvm_make_resident_pages_status)
			continue;
		const char *fn = ksym_lookup((uint64_t)(code + i), &off);
		if (fn && !strcmp(fn, "MmProbeAndLockPages")) {
			found = next;
			calls++;
		}
	}
	return calls == 1 ? found : 0;
}

/* A death case: a probe of a paged-out page at PASSIVE_LEVEL with interrupts off: 0x0A
 * (the page, 0xFF, 1 for the write access, the return address into the probing routine), as
 * the probe's walk refuses to page there. */
static void a_probe_with_interrupts_off_of_a_paged_out_page_is_0x0a(struct ktest *t)
{
	uint32_t seed = PG_SEED + 0xE10;
	uint64_t base = user_buffer(t, 1, seed);
	pagefile_disk(t);
	page_out_and_repurpose(t, base, 1, seed);
	PMDL mdl = IoAllocateMdl((PVOID)base, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	uint64_t ret = probe_return_address();
	ASSERT_NE(t, ret, 0u);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, base, UVM_IRQL_INTERRUPTS_OFF, 1, ret, KTEST_P_ALL);
	KeStackAttachProcess(&proc, &apc);
	__asm__ volatile("cli" ::: "memory");
	NTSTATUS st = expect_try_probe(mdl, UserMode, IoWriteAccess, NULL, 0);
	__asm__ volatile("sti" ::: "memory");
	KeUnstackDetachProcess(&apc);
	KTEST_FAIL(t, "the probe with interrupts off returned (status 0x%x)", (ULONG)st);
}

/* A system call's copies from its caller's trimmed pages (SYS_DEBUG_PRINT's text, the only
 * accesses to them): the kernel's own #PF on the system call's path, which runs with
 * interrupts on as NT's does (trap frame IF 1), is a soft fault for the page in transition
 * (its frame back) and a hard one for the page in the pagefile (a new frame, the text read
 * back), never 0x0A; both calls succeed.  With the path's interrupts off (no STI in
 * kernel/syscall.asm) the first copy stopped with 0x0A and 0xFF as the IRQL. */
#define SYSCALL_TEXT_VA 0x31000000ul
static const char syscall_text[] = "a system call read this from a trimmed page";

static void a_system_calls_copy_from_trimmed_user_pages_is_a_soft_and_a_hard_fault(struct ktest *t)
{
	pagefile_disk(t);
	const uint64_t soft_va = SYSCALL_TEXT_VA, hard_va = SYSCALL_TEXT_VA + P;
	struct agent_script script;
	agent_begin(&script);
	uint32_t soft_op = agent_syscall(&script, SYS_DEBUG_PRINT, soft_va, sizeof syscall_text - 1, 0, 0);
	uint32_t hard_op = agent_syscall(&script, SYS_DEBUG_PRINT, hard_va, sizeof syscall_text - 1, 0, 0);
	PEPROCESS p = agent_create(&script, 0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t base = SYSCALL_TEXT_VA, size = 2 * P;
	EXPECT_EQ(t, uvm_allocate(&p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	KAPC_STATE a;
	KeStackAttachProcess(p, &a);
	EXPECT_EQ(t, copy_to_user(soft_va, syscall_text, sizeof syscall_text), STATUS_SUCCESS);
	EXPECT_EQ(t, copy_to_user(hard_va, syscall_text, sizeof syscall_text), STATUS_SUCCESS);
	KeUnstackDetachProcess(&a);
	/* Out to the pagefile, frames repurposed until the second page's PTE names its slot. */
	EXPECT_GE(t, trim(&p->mm), 2u);
	EXPECT_GE(t, pagefile_write_modified(), 2u);
	repurpose_until_pagefile(&p->mm.root, &hard_va, 1);
	/* The first page back (by the kernel, attached) and trimmed again: in transition. */
	char got[sizeof syscall_text];
	KeStackAttachProcess(p, &a);
	EXPECT_EQ(t, copy_from_user(got, soft_va, sizeof got), STATUS_SUCCESS);
	KeUnstackDetachProcess(&a);
	trim(&p->mm);
	ASSERT_TRUE(t, mmt_sw_is_transition(mmt_raw_pte_in(&p->mm.root, soft_va)));
	ASSERT_TRUE(t, mmt_sw_is_pagefile(mmt_raw_pte_in(&p->mm.root, hard_va)));
	uint64_t soft_frame = mmt_sw_transition_pfn(mmt_raw_pte_in(&p->mm.root, soft_va));
	struct uvm_paging_stats s0 = stats();

	NTSTATUS st = PsRunProcess(p);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_EQ(t, agent_result(t, p, soft_op, 0), (uint64_t)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, hard_op, 0), (uint64_t)STATUS_SUCCESS);
	/* Each page valid again, in the real tables: the first with the frame it had. */
	bool w;
	EXPECT_TRUE(t, mmt_present_in(&p->mm.root, soft_va, &w));
	EXPECT_EQ(t, (uint64_t)mmt_frame_in(&p->mm.root, soft_va), soft_frame);
	EXPECT_TRUE(t, mmt_present_in(&p->mm.root, hard_va, &w));
	EXPECT_GE(t, stats().soft_faults - s0.soft_faults, 1u);
	EXPECT_GE(t, stats().hard_faults - s0.hard_faults, 1u);
	KeStackAttachProcess(p, &a);
	EXPECT_EQ(t, copy_from_user(got, hard_va, sizeof got), STATUS_SUCCESS);
	KeUnstackDetachProcess(&a);
	EXPECT_TRUE(t, !memcmp(got, syscall_text, sizeof got));
	PsDestroyProcess(p);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* A probe of user memory at DISPATCH_LEVEL with the verifier off (on, its IRQL check is 0xC4
 * 0x70 first) of a trimmed page is the fault NT's probe would take touching it: 0x0A with
 * the page's address, DISPATCH_LEVEL, 1 (a write) and the return address into the probing
 * routine, whether the frame is still there (transition) or in the pagefile; before, the
 * first succeeded and the second raised. */
static void probe_trimmed_at_dispatch(struct ktest *t, bool paged_out)
{
	uint32_t seed = PG_SEED + 0xE00;
	uint64_t base = user_buffer(t, 2, seed);
	if (paged_out) {
		pagefile_disk(t);
		page_out_and_repurpose(t, base, 2, seed);
	} else {
		ASSERT_EQ(t, trim(&proc.mm), 2u);
	}
	/* Page 0 resident again, page 1 trimmed (in transition, or in the pagefile). */
	ASSERT_TRUE(t, intact(base, 0, seed));
	ASSERT_TRUE(t, paged_out ? mmt_sw_is_pagefile(raw(base + P)) : mmt_sw_is_transition(raw(base + P)));
	PMDL mdl = IoAllocateMdl((PVOID)base, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	uint64_t ret = probe_return_address();
	ASSERT_NE(t, ret, 0u);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, base + P, DISPATCH_LEVEL, 1, ret, KTEST_P_ALL);
	verifier_set_flags(0); /* the machine ends here: nothing to restore */
	NTSTATUS st;
	KeStackAttachProcess(&proc, &apc);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	st = expect_try_probe(mdl, UserMode, IoWriteAccess, NULL, 0);
	KeLowerIrql(old);
	KeUnstackDetachProcess(&apc);
	KTEST_FAIL(t, "the probe at DISPATCH_LEVEL returned (status 0x%x)", (ULONG)st);
}

static void a_probe_at_dispatch_level_of_a_transition_page_is_0x0a(struct ktest *t)
{
	probe_trimmed_at_dispatch(t, false);
}

static void a_probe_at_dispatch_level_of_a_paged_out_page_is_0x0a(struct ktest *t)
{
	probe_trimmed_at_dispatch(t, true);
}

/* ---- two CPUs on one page: the collided fault ---- */

struct toucher {
	uint64_t va;
	uint64_t want[4];  /* the page's first 32 bytes */
	volatile uint32_t done;
	bool ok;
};

/* On another CPU, at PASSIVE_LEVEL: attached to the process, read the page (the fault). */
static void touch_on_cpu(void *arg)
{
	struct toucher *w = arg;
	KAPC_STATE a;
	KeStackAttachProcess(&proc, &a);
	uint64_t got[4];
	NTSTATUS st = copy_from_user(got, w->va, sizeof got);
	KeUnstackDetachProcess(&a);
	w->ok = st == STATUS_SUCCESS && !memcmp(got, w->want, sizeof got);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
}

struct read_state {
	uint64_t va;
	uint64_t collided;
};

/* The page's PTE is a transition PTE to a frame the PFN database says is being read. */
static bool read_in_progress(void *arg)
{
	struct read_state *r = arg;
	uint64_t e = raw(r->va);
	if (!mmt_sw_is_transition(e))
		return false;
	const struct pfn_entry *pe = pfn_entry(mmt_sw_transition_pfn(e));
	return pe && (__atomic_load_n(&pe->flags, __ATOMIC_ACQUIRE) & PFN_F_READING);
}

static bool second_fault_waits(void *arg)
{
	struct read_state *r = arg;
	return stats().collided_faults > r->collided;
}

static void two_cpus_fault_one_paged_out_page_and_one_read_serves_both(struct ktest *t)
{
	if (smp_cpus_online() < 3)
		ktest_skip(t, "needs 3 CPUs");
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x800;
	uint64_t base = user_buffer(t, 1, seed);
	pfn_t frames[1];
	uint32_t slots[1];
	page_out(t, base, 1, seed, frames, slots, false);
	ASSERT_TRUE(t, repurpose_until_pagefile(root(), &base, 1));

	struct uvm_paging_stats s0 = stats();
	struct read_state rs = { base, s0.collided_faults };
	struct vblk_info v0;
	vblk_get_info(&v0);
	struct toucher a = { .va = base }, b = { .va = base };
	pattern_fill(a.want, sizeof a.want, seed);
	pattern_fill(b.want, sizeof b.want, seed);
	/* The device's answer is held: the first fault's read stays in progress until both
	 * faults are in, whatever the timing. */
	start_held(t, touch_on_cpu, &a);
	bool reading = mmt_wait_until(read_in_progress, &rs);
	EXPECT_TRUE(t, reading);
	bool collided = false;
	bool second = false;
	if (reading) {
		second = smp_work_start(2, touch_on_cpu, &b);
		EXPECT_TRUE(t, second); /* the device is held: no ASSERT may end the case here */
	}
	if (second) {
		collided = mmt_wait_until(second_fault_waits, &rs);
		EXPECT_TRUE(t, collided);
		EXPECT_FALSE(t, __atomic_load_n(&a.done, __ATOMIC_ACQUIRE) || __atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
	}
	vblk_test_hold_completions(false);
	EXPECT_TRUE(t, smp_work_wait(1));
	if (second)
		EXPECT_TRUE(t, smp_work_wait(2));
	EXPECT_TRUE(t, a.ok);
	EXPECT_TRUE(t, !second || b.ok);
	/* One read served both: one request reached the device (its counters), a read of the
	 * page's slot; one hard fault, one collided, the page valid, its slot free. */
	struct vblk_info v1;
	vblk_get_info(&v1);
	struct vblk_last_request last;
	vblk_get_last_request(&last);
	EXPECT_EQ(t, v1.submitted - v0.submitted, 1u);
	EXPECT_EQ(t, v1.completed - v0.completed, 1u);
	EXPECT_EQ(t, last.type, 0u); /* VIRTIO_BLK_T_IN */
	EXPECT_EQ(t, last.sector, pagefile_offset(slots[0]) / VBLK_SECTOR);
	EXPECT_EQ(t, stats().hard_faults - s0.hard_faults, 1u);
	EXPECT_EQ(t, stats().collided_faults - s0.collided_faults, collided ? 1u : 0u);
	EXPECT_TRUE(t, mmt_has(raw(base), MMT_PTE_P));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* No IRP can be allocated (nonpaged pool exhausted, made so by the test hook): an in-page
 * read takes the reserve IRP and the page comes back, never an in-page error; a write fails
 * cleanly, its page staying modified. */
static void an_in_page_read_without_an_irp_takes_the_reserve(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0xF00;
	uint64_t base = user_buffer(t, 2, seed);
	page_out_and_repurpose(t, base, 2, seed);
	struct pagefile_stats p0;
	pagefile_get_stats(&p0);
	struct uvm_paging_stats s0 = stats();
	pagefile_test_fail_irp_allocation(true);
	bool back = intact(base, 0, seed) && intact(base, 1, seed);
	/* Trimmed again: the write finds no IRP and the pages stay modified. */
	struct uvm_trim_result r;
	uvm_trim(&proc.mm, &r);
	uint64_t written = pagefile_write_modified();
	pagefile_test_fail_irp_allocation(false);
	struct pagefile_stats p1;
	pagefile_get_stats(&p1);
	EXPECT_TRUE(t, back);
	EXPECT_EQ(t, stats().hard_faults - s0.hard_faults, 2u);
	EXPECT_EQ(t, stats().inpage_errors - s0.inpage_errors, 0u);
	EXPECT_EQ(t, p1.reserve_reads - p0.reserve_reads, 2u);
	EXPECT_EQ(t, r.trimmed, 2u);
	EXPECT_EQ(t, written, 0u);
	EXPECT_EQ(t, p1.write_errors - p0.write_errors, 1u);
	for (unsigned i = 0; i < 2; i++) {
		EXPECT_TRUE(t, mmt_sw_is_transition(raw(base + i * P)));
		EXPECT_EQ(t, pfn_entry(mmt_sw_transition_pfn(raw(base + i * P)))->state, PFN_MODIFIED);
		EXPECT_TRUE(t, intact(base, i, seed));
	}
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* ---- a probe's pages trimmed again before its walk ---- */

static volatile uint32_t window_calls;
static struct uvm_trim_result window_trim;

static void trim_on_cpu(void *arg)
{
	(void)arg;
	uvm_trim(&proc.mm, &window_trim);
}

/* The probe's window, once: another CPU trims the process (memory pressure's trim) while
 * this one holds no lock, after the pass made the pages resident and before its walk. */
static void trim_in_probe_window(PMDL m)
{
	(void)m;
	if (window_calls++)
		return;
	if (smp_work_start(1, trim_on_cpu, NULL))
		smp_work_wait(1);
}

/* The pages a probe just made resident are trimmed again by another CPU before the walk
 * that locks them (held in that window by the test hook, so the verdict is the same every
 * run): the probe makes them resident again and locks them, as for the whole-MDL and the
 * selected-pages probe; a valid buffer is never an access violation. */
static void a_probe_whose_pages_are_trimmed_again_before_its_walk_still_locks_them(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	uint32_t seed = PG_SEED + 0xD00;
	uint64_t base = user_buffer(t, 2, seed);
	for (int selected = 0; selected < 2; selected++) {
		EXPECT_EQ(t, trim(&proc.mm), 2u);
		PMDL mdl = IoAllocateMdl((PVOID)base, 2 * P, FALSE, FALSE, NULL);
		ASSERT_TRUE(t, mdl != NULL);
		FILE_SEGMENT_ELEMENT seg[2] = { { .Buffer = (PVOID64)base }, { .Buffer = (PVOID64)(base + P) } };
		struct uvm_paging_stats s0 = stats();
		window_calls = 0;
		memset(&window_trim, 0, sizeof window_trim);
		volatile NTSTATUS st = STATUS_SUCCESS;
		mdl_test_probe_window = trim_in_probe_window;
		KeStackAttachProcess(&proc, &apc);
		__try {
			if (selected)
				MmProbeAndLockSelectedPages(mdl, seg, UserMode, IoWriteAccess);
			else
				MmProbeAndLockPages(mdl, UserMode, IoWriteAccess);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
		}
		KeUnstackDetachProcess(&apc);
		mdl_test_probe_window = NULL;
		/* The window was taken and the other CPU trimmed both pages in it. */
		EXPECT_GE(t, window_calls, 2u);
		EXPECT_EQ(t, window_trim.trimmed, 2u);
		EXPECT_EQ(t, st, STATUS_SUCCESS);
		EXPECT_EQ(t, stats().soft_faults - s0.soft_faults, 4u);
		if (st == STATUS_SUCCESS) {
			for (unsigned i = 0; i < 2; i++) {
				EXPECT_TRUE(t, mmt_has(raw(base + i * P), MMT_PTE_P));
				EXPECT_EQ(t, MmGetMdlPfnArray(mdl)[i], frame(base + i * P));
				EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(mdl)[i])->lock_count, 1u);
			}
			MmUnlockPages(mdl);
		}
		IoFreeMdl(mdl);
	}
}

/* ---- APC_LEVEL: NT pages there ---- */

/* A probe of user memory is allowed up to APC_LEVEL (its page), and so is a fault on
 * pageable memory: at APC_LEVEL a probe of paged-out pages reads them in and locks them, and
 * a kernel access inside the SMAP window takes its hard fault (the #PF's gate has interrupts
 * off; the wait lets the completion in). */
static void paged_out_pages_come_back_at_apc_level_probe_and_access(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0xC00;
	uint64_t base = user_buffer(t, 3, seed);
	page_out_and_repurpose(t, base, 3, seed);
	struct uvm_paging_stats s0 = stats();
	PMDL mdl = IoAllocateMdl((PVOID)base, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	NTSTATUS st;
	static uint8_t got[P];
	NTSTATUS cst;
	KeStackAttachProcess(&proc, &apc);
	KIRQL old;
	KeRaiseIrql(APC_LEVEL, &old);
	st = expect_try_probe(mdl, UserMode, IoWriteAccess, NULL, 0);
	cst = copy_from_user(got, base + 2 * P, P);
	KIRQL at = KeGetCurrentIrql();
	KeLowerIrql(old);
	KeUnstackDetachProcess(&apc);
	EXPECT_EQ(t, at, APC_LEVEL);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, cst, STATUS_SUCCESS);
	EXPECT_EQ(t, stats().hard_faults - s0.hard_faults, 3u);
	static uint8_t want[P];
	pattern_fill(want, P, seed + 2);
	EXPECT_EQ(t, memcmp(got, want, P), 0);
	if (st == STATUS_SUCCESS) {
		for (unsigned i = 0; i < 2; i++) {
			EXPECT_TRUE(t, mmt_has(raw(base + i * P), MMT_PTE_P));
			EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(mdl)[i])->lock_count, 1u);
		}
		uint8_t *sys = MmGetSystemAddressForMdlSafe(mdl, HighPagePriority);
		EXPECT_TRUE(t, sys != NULL);
		for (unsigned i = 0; sys && i < 2; i++) {
			pattern_fill(want, P, seed + i);
			EXPECT_EQ(t, memcmp(sys + i * P, want, P), 0);
		}
		MmUnlockPages(mdl);
	}
	IoFreeMdl(mdl);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

/* ---- the writer's hold is not a lock of the page's ---- */

struct writer_run {
	volatile uint32_t done;
	uint64_t written;
};

static void write_on_cpu(void *arg)
{
	struct writer_run *w = arg;
	w->written = pagefile_write_modified();
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
}

static bool frame_being_written(void *arg)
{
	const struct pfn_entry *pe = pfn_entry(*(pfn_t *)arg);
	return __atomic_load_n(&pe->flags, __ATOMIC_ACQUIRE) & PFN_F_WRITING;
}

/* A page taken back by a soft fault while the modified page writer writes it (the device's
 * answer held, so the write stays in progress whatever the timing) holds only the writer's
 * hold: the trimmer trims it again (the write's copy is stale) and a decommit frees it, the
 * writer's end freeing frame and slot; no probe lock is counted. */
static void a_page_taken_back_during_its_write_can_be_trimmed_and_freed(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x900;
	uint64_t base = user_buffer(t, 1, seed);
	pfn_t f = frame(base);
	ASSERT_EQ(t, trim(&proc.mm), 1u);
	struct writer_run w = { 0 };
	start_held(t, write_on_cpu, &w);
	bool writing = mmt_wait_until(frame_being_written, &f);
	EXPECT_TRUE(t, writing);
	struct uvm_trim_result again = { 0 };
	NTSTATUS freed = STATUS_UNSUCCESSFUL;
	bool back = false, back2 = false;
	if (writing) {
		back = intact(base, 0, seed); /* a soft fault: the frame ACTIVE, the hold on it */
		uvm_trim(&proc.mm, &again);
		back2 = intact(base, 0, seed);
		uint64_t b = base, size = P;
		freed = uvm_free(&proc.mm, &b, &size, MEM_DECOMMIT);
	}
	vblk_test_hold_completions(false);
	EXPECT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, back);
	EXPECT_EQ(t, again.trimmed, 1u);
	EXPECT_EQ(t, again.kept_locked, 0u);
	EXPECT_TRUE(t, back2);
	EXPECT_EQ(t, freed, STATUS_SUCCESS);
	/* The write's copy was of no use: nothing counted written, the slot and frame freed. */
	EXPECT_EQ(t, w.written, 0u);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	EXPECT_EQ(t, pfn_entry(f)->lock_count, 0u);
	EXPECT_TRUE(t, pfn_entry(f)->state == PFN_FREE || pfn_entry(f)->state == PFN_ZEROED);
}

struct relief_run {
	volatile uint32_t done;
	uint64_t standby;
};

static void relieve_on_cpu(void *arg)
{
	struct relief_run *r = arg;
	r->standby = uvm_relieve_pressure();
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
}

/* CPU 2's relief found CPU 1's under way and waits for it (uvm_relieve_pressure's count of
 * such waits: only its relief_cpu guard counts one). */
static bool relief_waiting(void *arg)
{
	return stats().relief_waits > *(uint64_t *)arg;
}

/* Two CPUs relieve at once: CPU 1's relief is held in its writer (the device's answer
 * held, so it stays in progress whatever the timing); CPU 2's finds it under way and waits
 * for it (counted as a relief wait, not done while CPU 1's write is held) instead of trimming
 * and writing again, and returns CPU 1's result: one relief counted, the four pages trimmed
 * and written once.  Without the guard CPU 2 would relieve too: no wait counted (it would
 * block at the writer's gate instead), and two reliefs. */
static void two_cpus_relieving_at_once_relieve_once(struct ktest *t)
{
	if (smp_cpus_online() < 3)
		ktest_skip(t, "needs 3 CPUs");
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1700;
	uint64_t base = user_buffer(t, 4, seed);
	pfn_t f = frame(base);
	struct uvm_paging_stats s0 = stats();
	struct pagefile_stats w0, w1;
	pagefile_get_stats(&w0);
	struct relief_run a = { 0 }, b = { 0 };
	vblk_test_hold_completions(true);
	bool started = smp_work_start(1, relieve_on_cpu, &a);
	bool writing = started && mmt_wait_until(frame_being_written, &f);
	bool second = writing && smp_work_start(2, relieve_on_cpu, &b);
	bool b_waits = second && mmt_wait_until(relief_waiting, &s0.relief_waits);
	/* Waiting, it cannot be done: CPU 1's relief is still held in its write. */
	bool b_done_while_held = __atomic_load_n(&b.done, __ATOMIC_ACQUIRE);
	vblk_test_hold_completions(false); /* no ASSERT before this: the device must not stay held */
	bool a_back = !started || smp_work_wait(1);
	bool b_back = !second || smp_work_wait(2);
	pagefile_get_stats(&w1);
	struct uvm_paging_stats s1 = stats();
	ASSERT_TRUE(t, started && writing && second && a_back && b_back);
	EXPECT_TRUE(t, b_waits);
	EXPECT_FALSE(t, b_done_while_held);
	EXPECT_EQ(t, s1.relief_waits - s0.relief_waits, 1u);
	EXPECT_EQ(t, s1.reliefs - s0.reliefs, 1u);
	EXPECT_EQ(t, s1.trimmed - s0.trimmed, 4u);
	EXPECT_GE(t, w1.pages_written - w0.pages_written, 4u); /* and any paged pool's */
	EXPECT_GE(t, a.standby, 4u);
	EXPECT_EQ(t, b.standby, a.standby);
	expect_intact(t, base, 4, seed);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

struct detacher {
	volatile uint32_t done;
	bool result;
};

static void detach_on_cpu(void *arg)
{
	struct detacher *d = arg;
	d->result = pagefile_attach(NULL);
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
}

static bool attach_waiting(void *arg)
{
	struct pagefile_stats p;
	pagefile_get_stats(&p);
	return p.attach_waits > *(uint64_t *)arg;
}

/* A detach while the modified page writer's write is in progress (the device's answer held,
 * so the write stays between its slots and its I/O's end whatever the timing) waits for the
 * write: it has not returned while the write is held, and answers after it, refused since the
 * written page holds its slot; the page is on standby at that slot, the disk still the
 * pagefile's.  Before, attach and detach were not ordered against a write at all: one that
 * came between the writer's slots and its I/O moved the region under the write. */
static void a_detach_waits_for_a_write_in_progress(struct ktest *t)
{
	if (smp_cpus_online() < 3)
		ktest_skip(t, "needs 3 CPUs");
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0xA00;
	uint64_t base = user_buffer(t, 1, seed);
	pfn_t f = frame(base);
	ASSERT_EQ(t, trim(&proc.mm), 1u);
	struct pagefile_stats p0;
	pagefile_get_stats(&p0);
	struct writer_run w = { 0 };
	struct detacher d = { 0 };
	start_held(t, write_on_cpu, &w);
	bool writing = mmt_wait_until(frame_being_written, &f), detaching = false, waited = false;
	EXPECT_TRUE(t, writing);
	if (writing) {
		detaching = smp_work_start(2, detach_on_cpu, &d);
		EXPECT_TRUE(t, detaching); /* the device is held: no ASSERT may end the case here */
	}
	if (detaching) {
		waited = mmt_wait_until(attach_waiting, &p0.attach_waits);
		EXPECT_TRUE(t, waited);
		/* Waiting for the gate the write holds: not returned, the write still held. */
		EXPECT_FALSE(t, __atomic_load_n(&d.done, __ATOMIC_ACQUIRE));
		EXPECT_TRUE(t, frame_being_written(&f));
	}
	vblk_test_hold_completions(false);
	EXPECT_TRUE(t, smp_work_wait(1));
	if (detaching)
		EXPECT_TRUE(t, smp_work_wait(2));
	EXPECT_GE(t, w.written, 1u); /* and any paged pool's */
	EXPECT_FALSE(t, d.result);
	struct pagefile_stats p1;
	pagefile_get_stats(&p1);
	EXPECT_TRUE(t, p1.attached);
	EXPECT_EQ(t, p1.attach_waits - p0.attach_waits, waited ? 1u : 0u);
	EXPECT_EQ(t, pfn_entry(f)->state, PFN_STANDBY);
	EXPECT_NE(t, pfn_entry(f)->slot, 0u);
	uint64_t held = pagefile_slots_in_use();
	EXPECT_TRUE(t, intact(base, 0, seed)); /* a soft fault: its slot freed */
	EXPECT_EQ(t, held - pagefile_slots_in_use(), 1u);
}

static int pager_init(struct ktest *t)
{
	(void)t;
	memset(&proc, 0, sizeof proc);
	NTSTATUS st = vblk_load();
	if (st && st != (NTSTATUS)0xC000000E /* STATUS_NO_SUCH_DEVICE: the case skips */)
		return 1;
	live = mm_process_init(&proc.mm, &proc, false);
	return live ? 0 : 1;
}

static void pager_exit(struct ktest *t)
{
	if (live) {
		uvm_destroy(&proc.mm);
		mm_process_destroy(&proc.mm);
	}
	live = false;
	pagefile_set_limit(0);
	EXPECT_TRUE(t, pagefile_attach(NULL));
	struct vblk_info i;
	vblk_get_info(&i);
	if (i.device)
		EXPECT_EQ(t, vblk_unload_driver(), STATUS_SUCCESS);
}

static struct ktest_case pager_cases[] = {
	KTEST_CASE(a_trim_leaves_locked_pages_and_a_fault_on_a_transition_pte_is_soft),
	KTEST_CASE(a_disk_is_refused_as_pagefile_without_pagefile_1),
	KTEST_CASE(a_probe_of_paged_out_pages_brings_them_back_and_locks_them),
	KTEST_CASE(memory_pressure_pages_out_unlocked_memory_and_never_locked),
	KTEST_CASE(a_demand_zero_fault_with_no_free_frame_pages_out_unlocked_memory),
	KTEST_CASE(no_wait_pages_for_mdl_under_pressure_come_back_short_without_relief),
	KTEST_CASE(an_allocation_with_interrupts_off_fails_without_relief),
	KTEST_CASE(a_residency_pass_that_relieves_starts_over_and_leaves_every_page_resident),
	KTEST_CASE(a_nonpaged_pool_page_under_pressure_is_had_at_passive_and_refused_at_dispatch),
	KTEST_CASE(a_pool_allocation_larger_than_pool_va_under_pressure_is_null_without_relief),
	KTEST_CASE(a_hard_fault_with_no_free_frame_relieves_pressure_and_reads_the_page),
	KTEST_CASE(a_commit_whose_page_array_needs_a_pool_page_relieves_pressure),
	KTEST_CASE(a_ring_3_demand_zero_fault_with_no_free_frame_succeeds),
	KTEST_CASE(a_trims_batch_is_flushed_from_the_cpu_running_the_process),
	KTEST_CASE(a_trim_without_the_ipi_leaves_stale_entries),
	KTEST_CASE(a_full_pagefile_fails_the_write_cleanly_and_nothing_is_lost),
	KTEST_CASE(two_cpus_fault_one_paged_out_page_and_one_read_serves_both),
	KTEST_CASE(a_page_taken_back_during_its_write_can_be_trimmed_and_freed),
	KTEST_CASE(two_cpus_relieving_at_once_relieve_once),
	KTEST_CASE(a_detach_waits_for_a_write_in_progress),
	KTEST_CASE(paged_out_pages_come_back_at_apc_level_probe_and_access),
	KTEST_CASE(a_probe_whose_pages_are_trimmed_again_before_its_walk_still_locks_them),
	KTEST_CASE(an_in_page_read_without_an_irp_takes_the_reserve),
	KTEST_CASE(a_system_calls_copy_from_trimmed_user_pages_is_a_soft_and_a_hard_fault),
	KTEST_DEATH_CASE(a_trimmed_page_touched_at_dispatch_level_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(a_probe_at_dispatch_level_of_a_transition_page_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(a_probe_at_dispatch_level_of_a_paged_out_page_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(a_trimmed_page_touched_with_interrupts_off_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(a_probe_with_interrupts_off_of_a_paged_out_page_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_CASE(a_no_wait_mdl_that_needs_a_pool_page_is_null_without_relief),
	/* Last: its disk-check lines name slots the cases before it wrote too. */
	KTEST_CASE(paged_out_pages_are_repurposed_and_come_back_by_hard_faults),
	{ 0 }
};
KTEST_SUITE(pager, pager_cases, .init = pager_init, .exit = pager_exit);

/* ---- an in-page error from a failing device (make test's blkfault machine) ---- */

/* blkfault=W,R,N: reads of sectors R .. R+N-1 fail.  The pagefile placed so that its slot 1
 * is sector R: the write succeeds, the read back fails.  Skips off the blkfault machine.
 * Returns R. */
static uint64_t attach_on_bad_read(struct ktest *t)
{
	struct vreq_blkfault bf;
	vreq_blkfault(t, &bf);
	uint64_t bad_read = bf.read;
	ASSERT_TRUE(t, bf.count >= P / VBLK_SECTOR && bad_read >= P / VBLK_SECTOR);
	struct vblk_info vi;
	vblk_get_info(&vi);
	if (!vi.device)
		ktest_skip(t, "no virtio-blk device");
	ASSERT_TRUE(t, pagefile_attach_at(vi.device, bad_read - P / VBLK_SECTOR));
	ASSERT_EQ(t, pagefile_offset(1) / VBLK_SECTOR, bad_read);
	return bad_read;
}

/* What an __except filter saw of an exception, through GetExceptionInformation(). */
struct filter_seen {
	NTSTATUS code;
	ULONG n;
	ULONG_PTR info[3];
};
static struct filter_seen seen[3];

/* The filter records the exception's code and first three parameters; the handler is taken
 * whatever it was (the case then says what it should have been). */
static int inpage_filter(PEXCEPTION_POINTERS ep, struct filter_seen *out)
{
	const EXCEPTION_RECORD *r = ep->ExceptionRecord;
	out->code = r->ExceptionCode;
	out->n = r->NumberParameters;
	for (unsigned k = 0; k < 3; k++)
		out->info[k] = k < r->NumberParameters ? r->ExceptionInformation[k] : ~0ul;
	return EXCEPTION_EXECUTE_HANDLER;
}

static void an_in_page_error_is_raised_to_the_access_and_to_the_probe(struct ktest *t)
{
	memset(seen, 0, sizeof seen);
	uint64_t bad_read = attach_on_bad_read(t);
	uint32_t seed = PG_SEED + 0x600;
	uint64_t base = user_buffer(t, 1, seed);
	/* Out to the slot the disk cannot read (its PTE says: the writer may write other pages
	 * with it), its frame repurposed. */
	EXPECT_EQ(t, trim(&proc.mm), 1u);
	EXPECT_GE(t, pagefile_write_modified(), 1u);
	ASSERT_TRUE(t, repurpose_until_pagefile(root(), &base, 1));
	uint64_t out = raw(base), slots = pagefile_slots_in_use();
	ASSERT_EQ(t, pagefile_offset(mmt_sw_pagefile_high(out)) / VBLK_SECTOR, bad_read);

	/* The kernel's read of the page in its SMAP window: the #PF the CPU raised, the
	 * exception STATUS_IN_PAGE_ERROR with (read, address, the device's status). */
	struct uvm_paging_stats s0 = stats();
	struct faultcap f = { 0 };
	volatile ULONG_PTR info[3] = { 0 };
	volatile ULONG nparams = 0;
	KeStackAttachProcess(&proc, &apc);
	__try {
		user_access_begin();
		(void)*(volatile uint8_t *)(base + 0x10);
		user_access_end();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(&f, GetExceptionRecord(), GetExceptionTrapFrame());
		nparams = GetExceptionRecord()->NumberParameters;
		for (int k = 0; k < 3; k++)
			info[k] = GetExceptionRecord()->ExceptionInformation[k];
	}
	KeUnstackDetachProcess(&apc);
	EXPECT_TRUE(t, f.faulted && f.from_cpu);
	EXPECT_EQ(t, f.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, f.error_code, 0u);
	EXPECT_EQ(t, f.cr2, base + 0x10);
	EXPECT_EQ(t, f.status, STATUS_IN_PAGE_ERROR);
	EXPECT_EQ(t, nparams, 3u);
	EXPECT_EQ(t, info[0], (ULONG_PTR)EXCEPTION_READ_FAULT);
	EXPECT_EQ(t, info[1], base + 0x10);
	EXPECT_EQ(t, info[2], (ULONG_PTR)(ULONG)STATUS_DEVICE_DATA_ERROR);
	EXPECT_EQ(t, stats().inpage_errors - s0.inpage_errors, 1u);
	/* The page is still in the pagefile, where a later read could find it: its PTE and its
	 * slot as they were. */
	EXPECT_EQ(t, raw(base), out);
	EXPECT_EQ(t, pagefile_slots_in_use(), slots);

	/* A probe of it raises STATUS_IN_PAGE_ERROR and leaves nothing locked, nothing mapped and
	 * no frame taken: the PTE still the pagefile PTE of its slot.  So do the selected-pages
	 * probe and ProbeForWrite: the in-page error, not an access violation (the buffer is
	 * valid, only unreadable now).  Each raises it with the access's three parameters, read
	 * by the __except filter itself (GetExceptionInformation), as a driver's filter would. */
	uint64_t locked = mmt_locked_frames(), frames = mmt_free_frames(), pte = raw(base);
	PMDL mdl = IoAllocateMdl((PVOID)base, P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	FILE_SEGMENT_ELEMENT seg[1] = { { .Buffer = (PVOID64)base } };
	KeStackAttachProcess(&proc, &apc);
	__try {
		MmProbeAndLockPages(mdl, UserMode, IoReadAccess);
	} __except (inpage_filter(GetExceptionInformation(), &seen[0])) {
	}
	__try {
		MmProbeAndLockSelectedPages(mdl, seg, UserMode, IoReadAccess);
	} __except (inpage_filter(GetExceptionInformation(), &seen[1])) {
	}
	__try {
		ProbeForWrite((PVOID)(base + 0x10), 8, 1);
	} __except (inpage_filter(GetExceptionInformation(), &seen[2])) {
	}
	KeUnstackDetachProcess(&apc);
	static const char *const probe[3] = { "MmProbeAndLockPages", "MmProbeAndLockSelectedPages", "ProbeForWrite" };
	const ULONG_PTR access[3] = { EXCEPTION_READ_FAULT, EXCEPTION_READ_FAULT, EXCEPTION_WRITE_FAULT };
	const uint64_t at[3] = { base, base, base + 0x10 };
	for (int k = 0; k < 3; k++) {
		if (seen[k].code != STATUS_IN_PAGE_ERROR || seen[k].n != 3 || seen[k].info[0] != access[k] ||
		    seen[k].info[1] != at[k] || seen[k].info[2] != (ULONG_PTR)(ULONG)STATUS_DEVICE_DATA_ERROR)
			KTEST_FAIL(t, "%s raised 0x%x with %u parameters (0x%lx, 0x%lx, 0x%lx), not 0x%x (0x%lx, 0x%lx, 0x%x)",
				   probe[k], (ULONG)seen[k].code, seen[k].n, seen[k].info[0], seen[k].info[1],
				   seen[k].info[2], (ULONG)STATUS_IN_PAGE_ERROR, access[k], at[k],
				   (ULONG)STATUS_DEVICE_DATA_ERROR);
	}
	EXPECT_FALSE(t, mdl->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, mmt_locked_frames(), locked);
	EXPECT_EQ(t, raw(base), pte);
	EXPECT_TRUE(t, mmt_sw_is_pagefile(raw(base)));
	EXPECT_EQ(t, pagefile_slots_in_use(), slots);
	EXPECT_EQ(t, mmt_free_frames(), frames);
	EXPECT_EQ(t, stats().inpage_errors - s0.inpage_errors, 4u);
	IoFreeMdl(mdl);
	/* The teardown (the case's exit) frees the slot. */
}

/* A paged-pool page whose slot the disk cannot read, touched by the kernel (inside __try: no
 * handler may see it, the kernel's own data is gone): bug check 0x7A KERNEL_DATA_INPAGE_ERROR
 * in Microsoft's PTE form, the PTE's address (its direct-map address: mdlab has no self-map),
 * the device's status, the PTE's contents (the pagefile PTE, put back), the address. */
static void paged_pool_the_pagefile_cannot_give_back_is_0x7a(struct ktest *t)
{
	uint64_t bad_read = attach_on_bad_read(t);
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, P, 0x6C6F5050u);
	ASSERT_TRUE(t, b != NULL);
	pattern_fill(b, P, PG_SEED + 0x1000);
	uint64_t va = (uint64_t)b;
	/* Out to the slot the disk cannot read, its frame repurposed: the page's own PTE says
	 * so (the trim and the writer take every other paged page with it). */
	ASSERT_GE(t, pool_trim_paged(), 1u);
	ASSERT_TRUE(t, mmt_sw_is_transition(mmt_raw_pte_in(&kernel_root, va)));
	ASSERT_GE(t, pagefile_write_modified(), 1u);
	ASSERT_TRUE(t, repurpose_until_pagefile(&kernel_root, &va, 1));
	uint64_t e = mmt_raw_pte_in(&kernel_root, va);
	ASSERT_TRUE(t, mmt_sw_is_pagefile(e));
	ASSERT_EQ(t, pagefile_offset(mmt_sw_pagefile_high(e)) / VBLK_SECTOR, bad_read);
	ASSERT_EQ(t, mmt_sw_protection(e), 4u);
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	ASSERT_EQ(t, q.level, 1);
	ktest_expect_stop(t, KERNEL_DATA_INPAGE_ERROR, (uint64_t)phys_to_virt(q.entry_pa[1]),
			  (uint64_t)(ULONG)STATUS_DEVICE_DATA_ERROR, e, va + 0x10, KTEST_P_ALL);
	volatile uint8_t v = 0;
	__try {
		v = *(volatile uint8_t *)(va + 0x10);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		KTEST_FAIL(t, "the access raised 0x%x", (ULONG)GetExceptionCode());
	}
	KTEST_FAIL(t, "the access returned (0x%x)", v);
}

/* Ring 3 reads its own page whose slot the disk cannot read: the #PF from ring 3 (error code
 * U, the address), and the process ends with STATUS_IN_PAGE_ERROR as its exception. */
#define RING3_VA 0x30000000ul

static void ring_3_gets_status_in_page_error_for_an_unreadable_page(struct ktest *t)
{
	uint64_t bad_read = attach_on_bad_read(t);
	struct agent_script script;
	agent_begin(&script);
	uint32_t op = agent_read64(&script, RING3_VA + 0x18);
	PEPROCESS p = agent_create(&script, 0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t base = RING3_VA, size = P;
	EXPECT_EQ(t, uvm_allocate(&p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	uint64_t value = 0x1122334455667788ull;
	KAPC_STATE a;
	KeStackAttachProcess(p, &a);
	EXPECT_EQ(t, copy_to_user(RING3_VA + 0x18, &value, sizeof value), STATUS_SUCCESS);
	KeUnstackDetachProcess(&a);
	EXPECT_GE(t, trim(&p->mm), 1u);
	EXPECT_GE(t, pagefile_write_modified(), 1u);
	const uint64_t va = RING3_VA;
	repurpose_until_pagefile(&p->mm.root, &va, 1);
	uint64_t e = mmt_raw_pte_in(&p->mm.root, RING3_VA);
	EXPECT_TRUE(t, mmt_sw_is_pagefile(e));
	EXPECT_EQ(t, pagefile_offset(mmt_sw_pagefile_high(e)) / VBLK_SECTOR, bad_read);

	NTSTATUS st = PsRunProcess(p);
	EXPECT_EQ(t, st, STATUS_IN_PAGE_ERROR);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, p->fault.error_code, (uint64_t)PF_U);
	EXPECT_EQ(t, p->fault.address, RING3_VA + 0x18);
	uint64_t got = 0;
	EXPECT_FALSE(t, ps_report(p, AGENT_KEY(op, 0), &got));
	PsDestroyProcess(p);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
}

static struct ktest_case pager_inpage_cases[] = {
	KTEST_CASE(an_in_page_error_is_raised_to_the_access_and_to_the_probe),
	KTEST_CASE(ring_3_gets_status_in_page_error_for_an_unreadable_page),
	KTEST_DEATH_CASE(paged_pool_the_pagefile_cannot_give_back_is_0x7a, KERNEL_DATA_INPAGE_ERROR),
	{ 0 }
};
KTEST_SUITE(pager_inpage, pager_inpage_cases, .init = pager_init, .exit = pager_exit);

/* ---- paged pool ---- */

#define PP_TAG 0x6C6F5050u /* 'PPol' */
#define PP_PAGES 3u

static uint64_t kraw(uint64_t va) { return mmt_raw_pte_in(&kernel_root, va); }

static struct pool_paging_stats pstats(void)
{
	struct pool_paging_stats s;
	pool_get_paging_stats(&s);
	return s;
}

static uint8_t *paged_buffer(struct ktest *t, uint32_t seed)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, PP_PAGES * P, PP_TAG);
	ASSERT_TRUE(t, b != NULL);
	for (unsigned i = 0; i < PP_PAGES; i++)
		pattern_fill(b + i * P, P, seed + i);
	return b;
}

/* The buffer's pages repurposed (whatever else is on standby): pagefile PTEs. */
static bool paged_repurposed(const uint8_t *b)
{
	uint64_t va[PP_PAGES];
	for (unsigned i = 0; i < PP_PAGES; i++)
		va[i] = (uint64_t)b + i * P;
	return repurpose_until_pagefile(&kernel_root, va, PP_PAGES);
}

static bool paged_intact(const uint8_t *b, uint32_t seed)
{
	static uint8_t want[P];
	for (unsigned i = 0; i < PP_PAGES; i++) {
		pattern_fill(want, P, seed + i);
		if (memcmp(b + i * P, want, P)) /* the kernel's own reads: the faults are the pool's */
			return false;
	}
	return true;
}

/* Whether len (at most a page) bytes at p read as the pattern of seed, read at
 * DISPATCH_LEVEL: where only memory that cannot leave (locked, through its MDL mapping) may
 * be touched. */
static bool pattern_at_dispatch(const uint8_t *p, uint32_t len, uint32_t seed)
{
	static uint8_t want[P];
	pattern_fill(want, len, seed);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	bool same = !memcmp(p, want, len);
	KeLowerIrql(old);
	return same;
}

static void paged_pool_pages_leave_and_come_back_soft_and_hard(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x900;
	uint8_t *b = paged_buffer(t, seed);
	pfn_t before[PP_PAGES];
	for (unsigned i = 0; i < PP_PAGES; i++)
		before[i] = mmt_frame_of((uint64_t)b + i * P);
	/* A nonpaged buffer stays whatever happens. */
	uint8_t *np = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * P, PP_TAG);
	ASSERT_TRUE(t, np != NULL);

	EXPECT_GE(t, pool_trim_paged(), (uint64_t)PP_PAGES);
	for (unsigned i = 0; i < PP_PAGES; i++) {
		uint64_t e = kraw((uint64_t)b + i * P);
		EXPECT_TRUE(t, mmt_sw_is_transition(e));
		EXPECT_EQ(t, mmt_sw_transition_pfn(e), before[i]);
		EXPECT_EQ(t, pfn_entry(before[i])->state, PFN_MODIFIED);
	}
	EXPECT_TRUE(t, mmt_has(kraw((uint64_t)np), MMT_PTE_P));
	struct pool_paging_stats s0 = pstats();
	EXPECT_TRUE(t, paged_intact(b, seed));
	EXPECT_EQ(t, pstats().soft_faults - s0.soft_faults, (uint64_t)PP_PAGES);
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_EQ(t, mmt_frame_of((uint64_t)b + i * P), before[i]);

	/* Out to the pagefile, the frames repurposed: pagefile PTEs, then hard faults. */
	pool_trim_paged();
	EXPECT_GE(t, pagefile_write_modified(), (uint64_t)PP_PAGES);
	EXPECT_TRUE(t, paged_repurposed(b));
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_TRUE(t, mmt_sw_is_pagefile(kraw((uint64_t)b + i * P)));
	s0 = pstats();
	EXPECT_TRUE(t, paged_intact(b, seed));
	EXPECT_EQ(t, pstats().hard_faults - s0.hard_faults, (uint64_t)PP_PAGES);
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_TRUE(t, mmt_has(kraw((uint64_t)b + i * P), MMT_PTE_P));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	/* Trimmed again and freed: the free brings it back first. */
	pool_trim_paged();
	ExFreePoolWithTag(b, PP_TAG);
	ExFreePoolWithTag(np, PP_TAG);
}

/* A paged-pool buffer taken back while the writer writes it (the device's answer held) is
 * freed by ExFreePool: the writer's hold is not a lock of the buffer's (no 0x4E), and the
 * write's end frees the frames and slots. */
static void paged_pool_freed_during_its_write_is_freed_at_the_writes_end(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0xB00;
	uint8_t *b = paged_buffer(t, seed);
	pfn_t f[PP_PAGES];
	for (unsigned i = 0; i < PP_PAGES; i++)
		f[i] = mmt_frame_of((uint64_t)b + i * P);
	EXPECT_GE(t, pool_trim_paged(), (uint64_t)PP_PAGES);
	/* One write request carries them all, so all are held in it. */
	struct pfn_stats ps;
	pfn_get_stats(&ps);
	ASSERT_LE(t, ps.modified, (uint64_t)PAGEFILE_CLUSTER);
	struct writer_run w = { 0 };
	start_held(t, write_on_cpu, &w);
	bool writing = true;
	for (unsigned i = 0; i < PP_PAGES; i++)
		writing = writing && mmt_wait_until(frame_being_written, &f[i]);
	EXPECT_TRUE(t, writing);
	bool back = false;
	if (writing) {
		back = paged_intact(b, seed); /* soft faults: the frames ACTIVE, the holds on them */
		ExFreePoolWithTag(b, PP_TAG);
	}
	vblk_test_hold_completions(false);
	EXPECT_TRUE(t, smp_work_wait(1));
	if (!writing)
		ExFreePoolWithTag(b, PP_TAG);
	EXPECT_TRUE(t, back);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	for (unsigned i = 0; i < PP_PAGES; i++) {
		EXPECT_EQ(t, pfn_entry(f[i])->lock_count, 0u);
		EXPECT_TRUE(t, pfn_entry(f[i])->state == PFN_FREE || pfn_entry(f[i])->state == PFN_ZEROED);
	}
}

/* Memory pressure trims the system's working set too: with every frame but one taken, an MDL
 * of PP_PAGES + 1 pages is had by paging the paged buffer out (no process has pageable pages
 * here); the buffer comes back by hard faults, intact. */
static void memory_pressure_pages_out_paged_pool(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1100;
	uint8_t *b = paged_buffer(t, seed);
	hoard_all_but(1);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, (PP_PAGES + 1) * P, MmCached, MM_DONT_ZERO_ALLOCATION);
	bool out = true;
	for (unsigned i = 0; i < PP_PAGES; i++)
		out = out && mmt_sw_is_pagefile(kraw((uint64_t)b + i * P));
	EXPECT_TRUE(t, m != NULL);
	EXPECT_EQ(t, m ? MmGetMdlByteCount(m) : 0, (PP_PAGES + 1) * P);
	if (m) {
		MmFreePagesFromMdl(m);
		ExFreePool(m);
	}
	release_hoard();
	EXPECT_TRUE(t, out);
	struct pool_paging_stats s0 = pstats();
	EXPECT_TRUE(t, paged_intact(b, seed));
	EXPECT_EQ(t, pstats().hard_faults - s0.hard_faults, (uint64_t)PP_PAGES);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	ExFreePoolWithTag(b, PP_TAG);
}

/* A paged-pool hard fault with no frame to read into (pool_resolve_fault): the pool lock
 * dropped, the pressure relieved (a second paged buffer paged out), the page read in on the
 * retry; the first fault relieves, the next two repurpose what it made. */
static void a_paged_pool_hard_fault_with_no_free_frame_relieves_pressure(struct ktest *t)
{
	pagefile_disk(t);
	uint32_t seed = PG_SEED + 0x1500, other = PG_SEED + 0x1510;
	uint8_t *b = paged_buffer(t, seed);
	pool_trim_paged();
	EXPECT_GE(t, pagefile_write_modified(), (uint64_t)PP_PAGES);
	ASSERT_TRUE(t, paged_repurposed(b));
	uint8_t *c = paged_buffer(t, other);
	struct uvm_paging_stats u0 = stats();
	struct pool_paging_stats s0 = pstats();
	struct pfn_stats p0 = hoard_all_free_frames();
	bool back = paged_intact(b, seed);
	struct uvm_paging_stats u1 = stats();
	struct pool_paging_stats s1 = pstats();
	uint64_t pc[PP_PAGES];
	for (unsigned i = 0; i < PP_PAGES; i++)
		pc[i] = kraw((uint64_t)c + i * P);
	release_hoard();
	EXPECT_EQ(t, p0.free, 0u);
	EXPECT_EQ(t, p0.standby, 0u);
	EXPECT_TRUE(t, back);
	EXPECT_EQ(t, s1.hard_faults - s0.hard_faults, (uint64_t)PP_PAGES);
	EXPECT_EQ(t, s1.inpage_errors, s0.inpage_errors);
	EXPECT_EQ(t, u1.reliefs - u0.reliefs, 1u);
	expect_paged_out(t, pc, PP_PAGES);
	EXPECT_TRUE(t, paged_intact(c, other));
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	ExFreePoolWithTag(b, PP_TAG);
	ExFreePoolWithTag(c, PP_TAG);
}

static void probed_paged_pool_is_safe_at_dispatch_through_its_mdl_mapping(struct ktest *t)
{
	uint32_t seed = PG_SEED + 0xA00;
	uint8_t *b = paged_buffer(t, seed);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b)));
	PMDL mdl = IoAllocateMdl(b, PP_PAGES * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	NTSTATUS st;
	st = expect_try_probe(mdl, KernelMode, IoReadAccess, NULL, 0);
	ASSERT_EQ(t, st, STATUS_SUCCESS);
	for (unsigned i = 0; i < PP_PAGES; i++) {
		EXPECT_TRUE(t, mmt_has(kraw((uint64_t)b + i * P), MMT_PTE_P));
		EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(mdl)[i])->lock_count, 1u);
	}
	/* Locked, the pages stay through a trim, and the MDL's mapping reads at DISPATCH_LEVEL. */
	pool_trim_paged();
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_TRUE(t, mmt_has(kraw((uint64_t)b + i * P), MMT_PTE_P));
	uint8_t *sys = MmGetSystemAddressForMdlSafe(mdl, HighPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	EXPECT_TRUE(t, pattern_at_dispatch(sys + 2 * P, P, seed + 2));
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	EXPECT_GE(t, pool_trim_paged(), (uint64_t)PP_PAGES); /* unlocked: they leave */
	ExFreePoolWithTag(b, PP_TAG);
}

/* MmProbeAndLockSelectedPages of trimmed paged pool brings each page back and locks it, as
 * MmProbeAndLockPages does (its page: the pages are made resident). */
static void selected_pages_of_trimmed_paged_pool_are_brought_back_and_locked(struct ktest *t)
{
	uint32_t seed = PG_SEED + 0xA80;
	uint8_t *b = paged_buffer(t, seed);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b)));
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b + 2 * P)));
	FILE_SEGMENT_ELEMENT seg[2] = { { .Buffer = (PVOID64)b }, { .Buffer = (PVOID64)(b + 2 * P) } };
	PMDL mdl = IoAllocateMdl(NULL, 2 * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockSelectedPages(mdl, seg, KernelMode, IoReadAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	if (st != STATUS_SUCCESS) {
		IoFreeMdl(mdl);
		ExFreePoolWithTag(b, PP_TAG);
		KTEST_FAIL(t, "MmProbeAndLockSelectedPages raised 0x%x", (ULONG)st);
		return;
	}
	for (unsigned k = 0; k < 2; k++) {
		uint64_t va = (uint64_t)b + 2 * k * P;
		EXPECT_TRUE(t, mmt_has(kraw(va), MMT_PTE_P));
		EXPECT_EQ(t, mmt_frame_of(va), MmGetMdlPfnArray(mdl)[k]);
		EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(mdl)[k])->lock_count, 1u);
	}
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	ExFreePoolWithTag(b, PP_TAG);
}

/* The death cases' loads of paged pool: 0x0A with the address, DISPATCH_LEVEL, 0 (a read)
 * and the RIP of the load.  At DISPATCH_LEVEL, of a page trimmed before: */
static void load_at_dispatch_is_0x0a(struct ktest *t, uint64_t va)
{
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, va, DISPATCH_LEVEL, 0, (uint64_t)faultcap_load8, KTEST_P_ALL);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	faultcap_load8(va);
	KeLowerIrql(old);
	KTEST_FAIL(t, "the load at DISPATCH_LEVEL returned");
}

/* Under a spin lock, of a resident page: found only because the verifier's force IRQL
 * checking, turned on here, trims paged pool at the raise. */
static void load_under_a_spin_lock_is_0x0a(struct ktest *t, uint64_t va)
{
	verifier_set_flags(verifier_get_flags() | VF_FORCE_IRQL);
	ktest_expect_stop(t, IRQL_NOT_LESS_OR_EQUAL, va, DISPATCH_LEVEL, 0, (uint64_t)faultcap_load8, KTEST_P_ALL);
	KSPIN_LOCK l;
	KeInitializeSpinLock(&l);
	KIRQL old;
	KeAcquireSpinLock(&l, &old);
	faultcap_load8(va);
	KeReleaseSpinLock(&l, old);
	KTEST_FAIL(t, "the load under the spin lock returned");
}

/* Death: a driver touches its paged pool at DISPATCH_LEVEL after a trim: 0x0A (the
 * address, DISPATCH_LEVEL, 0: a read, the RIP of the load). */
static void paged_pool_touched_at_dispatch_after_a_trim_is_0x0a(struct ktest *t)
{
	uint8_t *b = paged_buffer(t, PG_SEED + 0xB00);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b + P)));
	load_at_dispatch_is_0x0a(t, (uint64_t)b + P + 8);
}

/* Death: the same driver bug with the page still resident: found only because the verifier's
 * force IRQL checking trims paged pool at the raise. */
static void force_irql_checking_catches_paged_pool_at_dispatch(struct ktest *t)
{
	uint8_t *b = paged_buffer(t, PG_SEED + 0xC00);
	ASSERT_TRUE(t, mmt_has(kraw((uint64_t)b), MMT_PTE_P));
	load_under_a_spin_lock_is_0x0a(t, (uint64_t)b + 0x10);
}

struct pool_reader {
	const uint8_t *b;
	uint32_t seed;
	bool ok;
};

/* On another CPU: read the paged buffer (its translations cached there, or faulted in). */
static void read_paged_on_cpu(void *arg)
{
	struct pool_reader *r = arg;
	r->ok = paged_intact(r->b, r->seed);
}

/* A pool trim is one flush round a batch of PT_TRIM_BATCH pages, not one shootdown per page
 * (it runs at every raise under force IRQL checking): no shootdown, and as many purge rounds
 * as batches of the pages it trimmed, whatever other paged pool exists then (other cases'
 * pages, the system's own), with this buffer's PP_PAGES among them (their transition PTEs,
 * read from the tables).  That round reached the other CPU, which cached the pages'
 * translations before: its next read faults (soft, once per page) instead of using them. */
static void a_pool_trim_flushes_its_pages_in_one_round(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	uint32_t seed = PG_SEED + 0x1500;
	uint8_t *b = paged_buffer(t, seed);
	/* Other paged pool the same trim takes: the count is what it trimmed, not PP_PAGES. */
	void *other = ExAllocatePool2(POOL_FLAG_PAGED, 2 * P, PP_TAG);
	ASSERT_TRUE(t, other != NULL);
	struct pool_reader r = { b, seed, false };
	ASSERT_TRUE(t, smp_work_start(1, read_paged_on_cpu, &r));
	EXPECT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, r.ok);
	struct tlb_stats t0, t1;
	tlb_get_stats(&t0);
	uint64_t n = pool_trim_paged();
	tlb_get_stats(&t1);
	EXPECT_GE(t, n, (uint64_t)PP_PAGES + 2);
	EXPECT_EQ(t, t1.shootdowns - t0.shootdowns, 0u);
	uint64_t rounds = (n + PT_TRIM_BATCH - 1) / PT_TRIM_BATCH;
	EXPECT_EQ(t, t1.purges - t0.purges, rounds);
	/* Adjacent pages one range: the buffer's PP_PAGES and `other`'s two are a range each
	 * (one more where a batch ends inside one), every other page one at most; page by page
	 * it would be n. */
	EXPECT_LE(t, t1.purged_ranges - t0.purged_ranges, n - (PP_PAGES - 1) - 1 + (rounds - 1));
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b + i * P)));
	struct pool_paging_stats s0 = pstats();
	r.ok = false;
	ASSERT_TRUE(t, smp_work_start(1, read_paged_on_cpu, &r));
	EXPECT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, r.ok);
	EXPECT_EQ(t, pstats().soft_faults - s0.soft_faults, (uint64_t)PP_PAGES);
	ExFreePoolWithTag(other, PP_TAG);
	ExFreePoolWithTag(b, PP_TAG);
}

/* ---- small paged pool: slab pages ---- */

#define SP_TAG 0x6C735050u /* 'PPsl' */
#define SP_SMALL 8u        /* blocks of SP_SMALL_SIZE: class 256, one slab page */
#define SP_SMALL_SIZE 200u
#define SP_BIG 2u          /* blocks of SP_BIG_SIZE: class 2048, the two slots of one page */
#define SP_BIG_SIZE 2000u
#define SP_N (SP_SMALL + SP_BIG)
#define SP_SLOT_SHIFT 1024u

struct small_set {
	uint8_t *b[SP_N];
	uint64_t page[2]; /* the class-256 page, the class-2048 page */
};

static uint32_t sp_size(unsigned i) { return i < SP_SMALL ? SP_SMALL_SIZE : SP_BIG_SIZE; }
/* Where block i's pattern starts: a class-2048 block's data begins 16 bytes into its slot,
 * so from data byte 496 the pattern fills whole sectors of the page (its slot's second and
 * third), which `# disk-check:` can name; the bytes before are SP_FILL. */
#define SP_SECTOR_OFF (VBLK_SECTOR - 16)
#define SP_FILL 0xC3
static uint32_t sp_off(unsigned i) { return i < SP_SMALL ? 0 : SP_SECTOR_OFF; }

static void sp_fill(uint8_t *b, unsigned i, uint32_t seed)
{
	memset(b, SP_FILL, sp_off(i));
	pattern_fill(b + sp_off(i), sp_size(i) - sp_off(i), seed + i);
}

/* SP_SMALL blocks of one class in one slab page and SP_BIG of another in a second, each
 * filled with the pattern of seed + i.  Paged slab pages are made for these blocks alone: the
 * case starts with no paged slab page (accounting's pool_trim gave the spares back). */
static void small_set_alloc(struct ktest *t, struct small_set *s, uint32_t seed)
{
	for (unsigned i = 0; i < SP_N; i++) {
		s->b[i] = ExAllocatePool2(POOL_FLAG_PAGED, sp_size(i), SP_TAG);
		ASSERT_TRUE(t, s->b[i] != NULL);
		sp_fill(s->b[i], i, seed);
	}
	s->page[0] = ALIGN_DOWN((uint64_t)s->b[0], P);
	s->page[1] = ALIGN_DOWN((uint64_t)s->b[SP_SMALL], P);
	ASSERT_NE(t, s->page[0], s->page[1]);
	for (unsigned i = 0; i < SP_N; i++)
		ASSERT_EQ(t, ALIGN_DOWN((uint64_t)s->b[i], P), s->page[i < SP_SMALL ? 0 : 1]);
}

static bool small_set_intact(const struct small_set *s, uint32_t seed)
{
	static uint8_t want[SP_BIG_SIZE];
	for (unsigned i = 0; i < SP_N; i++) {
		sp_fill(want, i, seed);
		if (memcmp(s->b[i], want, sp_size(i))) /* the kernel's own reads: the faults are the pool's */
			return false;
	}
	return true;
}

static void small_set_free(struct small_set *s)
{
	for (unsigned i = 0; i < SP_N; i++)
		ExFreePoolWithTag(s->b[i], SP_TAG);
}

/* Every page of pages[] (kernel addresses) given a pagefile PTE: its standby frame
 * repurposed.  True when all are out. */
static bool repurpose_pool_pages(const uint64_t *pages, unsigned n)
{
	return repurpose_until_pagefile(&kernel_root, pages, n);
}

/* Small paged allocations (two slab pages) leave and come back as the large ones do: the
 * trim makes their PTEs transition PTEs naming the same frames, a touch is a soft fault;
 * written (the image read from outside: the class-2048 page's data sectors at its slot) and
 * repurposed, pagefile PTEs, a touch a hard fault; the data intact throughout.  pool_query
 * of a block whose page is out: not found at DISPATCH_LEVEL (its header is out), found below
 * (the page brought back).  Freed while trimmed, each block's page comes back for its checks. */
static void small_paged_pool_leaves_and_comes_back_soft_and_hard(struct ktest *t)
{
	/* The pagefile 1024 slots further in, so that no later case's page-out (the slots are
	 * taken first-fit) writes over the sectors the harness reads after the run. */
	PDEVICE_OBJECT d = pagefile_disk(t);
	ASSERT_TRUE(t, pagefile_attach_at(d, PAGEFILE_FIRST_SECTOR + SP_SLOT_SHIFT * (P / VBLK_SECTOR)));
	pagefile_set_limit(PAGEFILE_SLOTS - SP_SLOT_SHIFT);
	uint32_t seed = PG_SEED + 0x1300;
	struct small_set s;
	small_set_alloc(t, &s, seed);
	pfn_t before[2] = { mmt_frame_of(s.page[0]), mmt_frame_of(s.page[1]) };
	uint8_t *np = ExAllocatePool2(POOL_FLAG_NON_PAGED, SP_SMALL_SIZE, SP_TAG);
	ASSERT_TRUE(t, np != NULL);

	/* Counts at least: any other paged page is trimmed and written with these; each
	 * page's own PTE and frame say where it is. */
	EXPECT_GE(t, pool_trim_paged(), 2u);
	for (unsigned k = 0; k < 2; k++) {
		uint64_t e = kraw(s.page[k]);
		EXPECT_TRUE(t, mmt_sw_is_transition(e));
		EXPECT_EQ(t, mmt_sw_transition_pfn(e), before[k]);
		EXPECT_EQ(t, mmt_sw_protection(e), 4u);
		EXPECT_EQ(t, pfn_entry(before[k])->state, PFN_MODIFIED);
	}
	EXPECT_TRUE(t, mmt_has(kraw((uint64_t)np), MMT_PTE_P));
	struct pool_info pi;
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	bool found_at_dispatch = pool_query((uint64_t)s.b[1], &pi);
	KeLowerIrql(old);
	EXPECT_FALSE(t, found_at_dispatch);
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(s.page[0])));
	struct pool_paging_stats s0 = pstats();
	EXPECT_TRUE(t, pool_query((uint64_t)s.b[1] + 5, &pi));
	EXPECT_EQ(t, pi.base, (uint64_t)s.b[1]);
	EXPECT_EQ(t, pi.size, (uint64_t)SP_SMALL_SIZE);
	EXPECT_EQ(t, pi.tag, SP_TAG);
	EXPECT_TRUE(t, pi.paged);
	EXPECT_FALSE(t, pi.whole_pages);
	EXPECT_TRUE(t, small_set_intact(&s, seed));
	EXPECT_EQ(t, pstats().soft_faults - s0.soft_faults, 2u);
	for (unsigned k = 0; k < 2; k++)
		EXPECT_EQ(t, mmt_frame_of(s.page[k]), before[k]);

	/* Out to the pagefile: each page at its slot, then repurposed: hard faults. */
	EXPECT_GE(t, pool_trim_paged(), 2u);
	EXPECT_GE(t, pagefile_write_modified(), 2u);
	for (unsigned k = 0; k < 2; k++)
		EXPECT_EQ(t, pfn_entry(before[k])->state, PFN_STANDBY);
	/* From outside: the class-2048 page's first block (slot 0 of the page) has its pattern
	 * in the page's sectors 1 and 2 (sp_fill), at the page's pagefile slot in the image. */
	uint32_t slot = pfn_entry(before[1])->slot;
	EXPECT_NE(t, slot, 0u);
	EXPECT_TRUE(t, repurpose_pool_pages(s.page, 2));
	for (unsigned k = 0; k < 2; k++) {
		uint64_t e = kraw(s.page[k]);
		EXPECT_TRUE(t, mmt_sw_is_pagefile(e));
		EXPECT_EQ(t, mmt_sw_pagefile_low(e), 0u);
		EXPECT_EQ(t, mmt_sw_protection(e), 4u);
	}
	EXPECT_EQ(t, mmt_sw_pagefile_high(kraw(s.page[1])), slot);
	ASSERT_EQ(t, (uint64_t)s.b[SP_SMALL] - s.page[1], 16u); /* its slot is the page's first */
	kprintf("# disk-check: %lu 2 0x%x\n", pagefile_offset(slot) / VBLK_SECTOR + 1, seed + SP_SMALL);
	s0 = pstats();
	EXPECT_TRUE(t, small_set_intact(&s, seed));
	EXPECT_EQ(t, pstats().hard_faults - s0.hard_faults, 2u);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	for (unsigned k = 0; k < 2; k++)
		EXPECT_TRUE(t, mmt_has(kraw(s.page[k]), MMT_PTE_P));

	/* Trimmed and paged out again, then freed: each free brings its page back (soft, then
	 * hard), and the pages go back with every frame and slot.  The pagefile where it was, so
	 * the slots checked from outside are not written again. */
	ASSERT_TRUE(t, pagefile_attach(d));
	pagefile_set_limit(0);
	EXPECT_GE(t, pool_trim_paged(), 2u);
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(s.page[0])));
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(s.page[1])));
	ExFreePoolWithTag(s.b[0], SP_TAG); /* soft */
	EXPECT_TRUE(t, mmt_has(kraw(s.page[0]), MMT_PTE_P));
	pool_trim_paged();
	EXPECT_GE(t, pagefile_write_modified(), 2u);
	EXPECT_TRUE(t, repurpose_pool_pages(s.page, 2));
	s0 = pstats();
	for (unsigned i = 1; i < SP_N; i++)
		ExFreePoolWithTag(s.b[i], SP_TAG);
	EXPECT_EQ(t, pstats().hard_faults - s0.hard_faults, 2u);
	EXPECT_EQ(t, pagefile_slots_in_use(), 0u);
	ExFreePoolWithTag(np, SP_TAG);
}

/* The class's empty spare page (kept after its last block's free), trimmed, is given back by
 * pool_trim without being brought in: its transition frame freed; trimmed, written and
 * repurposed, its pagefile slot freed.  The accounting (standby, modified, slots, frames)
 * after the case says nothing leaked; here, the frame's state and the slot count. */
static void an_empty_trimmed_slab_page_goes_back_with_its_frame_and_slot(struct ktest *t)
{
	pagefile_disk(t);
	for (int paged_out = 0; paged_out < 2; paged_out++) {
		uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 100, SP_TAG);
		ASSERT_TRUE(t, b != NULL);
		uint64_t page = ALIGN_DOWN((uint64_t)b, P);
		pfn_t f = mmt_frame_of(page);
		ExFreePoolWithTag(b, SP_TAG);
		struct pool_stats ps;
		pool_get_stats(&ps); /* the kept block back in its page: the page empty, the spare */
		EXPECT_TRUE(t, mmt_has(kraw(page), MMT_PTE_P));
		/* Counts at least: other paged pages may be trimmed and written with it. */
		EXPECT_GE(t, pool_trim_paged(), 1u);
		EXPECT_TRUE(t, mmt_sw_is_transition(kraw(page)));
		if (paged_out) {
			EXPECT_GE(t, pagefile_write_modified(), 1u);
			EXPECT_EQ(t, pfn_entry(f)->state, PFN_STANDBY);
			EXPECT_NE(t, pfn_entry(f)->slot, 0u);
			EXPECT_TRUE(t, repurpose_pool_pages(&page, 1));
		} else {
			EXPECT_EQ(t, pfn_entry(f)->state, PFN_MODIFIED);
		}
		uint64_t slots = pagefile_slots_in_use();
		struct pool_paging_stats s0 = pstats();
		pool_trim();
		EXPECT_EQ(t, pstats().soft_faults, s0.soft_faults);
		EXPECT_EQ(t, pstats().hard_faults, s0.hard_faults);
		EXPECT_EQ(t, kraw(page), 0u);
		if (paged_out) /* its slot among those given back (any other empty page's too) */
			EXPECT_GE(t, slots - pagefile_slots_in_use(), 1u);
		if (!paged_out)
			EXPECT_TRUE(t, pfn_entry(f)->state == PFN_FREE || pfn_entry(f)->state == PFN_ZEROED);
	}
}

/* MmProbeAndLockPages(KernelMode) of a small paged block whose page is out brings it back and
 * locks it: a trim leaves it, and its MDL mapping reads at DISPATCH_LEVEL. */
static void probed_small_paged_pool_is_brought_back_and_locked(struct ktest *t)
{
	uint32_t seed = PG_SEED + 0x1400;
	struct small_set s;
	small_set_alloc(t, &s, seed);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw(s.page[0])));
	PMDL mdl = IoAllocateMdl(s.b[3], SP_SMALL_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	NTSTATUS st = expect_try_probe(mdl, KernelMode, IoWriteAccess, NULL, 0);
	if (st != STATUS_SUCCESS) {
		IoFreeMdl(mdl);
		small_set_free(&s);
		KTEST_FAIL(t, "MmProbeAndLockPages raised 0x%x", (ULONG)st);
		return;
	}
	EXPECT_TRUE(t, mmt_has(kraw(s.page[0]), MMT_PTE_P));
	EXPECT_EQ(t, MmGetMdlPfnArray(mdl)[0], mmt_frame_of(s.page[0]));
	EXPECT_EQ(t, pfn_entry(MmGetMdlPfnArray(mdl)[0])->lock_count, 1u);
	pool_trim_paged(); /* the locked page stays, the other is out already */
	EXPECT_TRUE(t, mmt_has(kraw(s.page[0]), MMT_PTE_P));
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(s.page[1])));
	uint8_t *sys = MmGetSystemAddressForMdlSafe(mdl, HighPagePriority);
	ASSERT_TRUE(t, sys != NULL);
	EXPECT_TRUE(t, pattern_at_dispatch(sys, SP_SMALL_SIZE, seed + 3));
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	EXPECT_GE(t, pool_trim_paged(), 1u); /* unlocked: it leaves */
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(s.page[0])));
	small_set_free(&s);
}

/* Death: a small paged block touched at DISPATCH_LEVEL after a trim: 0x0A (the address,
 * DISPATCH_LEVEL, 0: a read, the RIP of the load). */
static void small_paged_pool_touched_at_dispatch_after_a_trim_is_0x0a(struct ktest *t)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 64, SP_TAG);
	ASSERT_TRUE(t, b != NULL);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b)));
	load_at_dispatch_is_0x0a(t, (uint64_t)b + 8);
}

/* Death: a resident small paged block touched under a spin lock: the verifier's force IRQL
 * checking trims its slab page at the raise. */
static void force_irql_checking_catches_small_paged_pool_under_a_spin_lock(struct ktest *t)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 64, SP_TAG);
	ASSERT_TRUE(t, b != NULL);
	ASSERT_TRUE(t, mmt_has(kraw((uint64_t)b), MMT_PTE_P));
	load_under_a_spin_lock_is_0x0a(t, (uint64_t)b + 0x10);
}

/* Death: a small paged block freed twice, its page trimmed and paged out between: the second
 * free brings the page back and stops as before, 0xC2/0x07 (0, the header's first 8 bytes:
 * tag and size, the address); another block keeps the page in use. */
static void double_free_of_a_trimmed_small_paged_block_is_0xc2_7(struct ktest *t)
{
	pagefile_disk(t);
	uint8_t *other = ExAllocatePool2(POOL_FLAG_PAGED, 100, SP_TAG);
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 100, SP_TAG);
	ASSERT_TRUE(t, other && b);
	ASSERT_EQ(t, ALIGN_DOWN((uint64_t)b, P), ALIGN_DOWN((uint64_t)other, P));
	ExFreePoolWithTag(b, SP_TAG);
	uint64_t page = ALIGN_DOWN((uint64_t)b, P);
	EXPECT_GE(t, pool_trim_paged(), 1u);
	EXPECT_TRUE(t, mmt_sw_is_transition(kraw(page)));
	EXPECT_GE(t, pagefile_write_modified(), 1u);
	ASSERT_TRUE(t, repurpose_pool_pages(&page, 1));
	expect_stop(t, BAD_POOL_CALLER, 0x07, 0, (uint64_t)100 << 32 | SP_TAG, (ULONG_PTR)b);
	ExFreePoolWithTag(b, SP_TAG);
}

/* The trim pool_test_lock_window runs, on the first window only: every paged-pool page the
 * probe just faulted in goes back to transition before the probe locks. */
static unsigned lock_windows;
static void trim_in_the_lock_window(uint64_t va, uint64_t n)
{
	(void)va;
	(void)n;
	if (!lock_windows++)
		pool_trim_paged();
}

/* MmProbeAndLockPages(KernelMode) of trimmed paged pool whose pages the trimmer takes again
 * between the probe's fault-in and its lock (pool_test_lock_window): the walk and the locks
 * are one step under the pool lock, so the next step's walk meets the transition PTEs, faults
 * them in again and locks; every page valid, its real PTE's frame the MDL's, locked once, and
 * the trimmer leaves it.  With the walk made before the window and the lock after it (the
 * step split) the probe locked frames that were on the modified list under transition PTEs. */
static void a_probe_of_paged_pool_trimmed_before_its_lock_still_locks_every_page(struct ktest *t)
{
	uint32_t seed = PG_SEED + 0x1500;
	uint8_t *b = paged_buffer(t, seed);
	EXPECT_GE(t, pool_trim_paged(), (uint64_t)PP_PAGES);
	for (unsigned i = 0; i < PP_PAGES; i++)
		ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b + i * P)));
	PMDL mdl = IoAllocateMdl(b, PP_PAGES * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	struct pool_paging_stats s0 = pstats();
	lock_windows = 0;
	pool_test_lock_window = trim_in_the_lock_window;
	NTSTATUS st = expect_try_probe(mdl, KernelMode, IoWriteAccess, NULL, 0);
	pool_test_lock_window = NULL;
	if (st != STATUS_SUCCESS) {
		IoFreeMdl(mdl);
		ExFreePoolWithTag(b, PP_TAG);
		KTEST_FAIL(t, "MmProbeAndLockPages raised 0x%x", (ULONG)st);
		return;
	}
	EXPECT_EQ(t, lock_windows, 2u); /* a trim in the first, none in the second */
	EXPECT_EQ(t, pstats().soft_faults - s0.soft_faults, 2ull * PP_PAGES);
	for (unsigned i = 0; i < PP_PAGES; i++) {
		uint64_t va = (uint64_t)b + i * P;
		pfn_t f = MmGetMdlPfnArray(mdl)[i];
		EXPECT_TRUE(t, mmt_has(kraw(va), MMT_PTE_P));
		EXPECT_EQ(t, mmt_frame_of(va), f);
		EXPECT_EQ(t, pfn_entry(f)->state, PFN_ACTIVE);
		EXPECT_EQ(t, pfn_entry(f)->lock_count, 1u);
	}
	pool_trim_paged(); /* locked: they stay */
	for (unsigned i = 0; i < PP_PAGES; i++)
		EXPECT_TRUE(t, mmt_has(kraw((uint64_t)b + i * P), MMT_PTE_P));
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	EXPECT_TRUE(t, paged_intact(b, seed));
	ExFreePoolWithTag(b, PP_TAG);
}

/* pool_range_pageable answers from the page records: a small paged block whose page is out
 * is paged pool with no fault taken (its PTE still the transition PTE, no soft fault), a
 * nonpaged block is not, nor a whole-page paged allocation's guard page. */
static void pool_range_pageable_takes_no_fault(struct ktest *t)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 64, SP_TAG);
	uint8_t *np = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, SP_TAG);
	uint8_t *big = ExAllocatePool2(POOL_FLAG_PAGED, P, SP_TAG);
	ASSERT_TRUE(t, b && np && big);
	pool_trim_paged();
	uint64_t e = kraw((uint64_t)b);
	ASSERT_TRUE(t, mmt_sw_is_transition(e));
	struct pool_paging_stats s0 = pstats();
	EXPECT_TRUE(t, pool_range_pageable((uint64_t)b, 64));
	uint64_t lo = (uint64_t)(b < np ? b : np), hi = (uint64_t)(b < np ? np : b);
	EXPECT_TRUE(t, pool_range_pageable(lo, hi - lo + 1)); /* the paged page at either end */
	EXPECT_FALSE(t, pool_range_pageable((uint64_t)np, 64));
	EXPECT_TRUE(t, pool_range_pageable((uint64_t)big, P));
	EXPECT_FALSE(t, pool_range_pageable((uint64_t)big + P, P)); /* its guard page */
	EXPECT_EQ(t, pstats().soft_faults, s0.soft_faults);
	EXPECT_EQ(t, pstats().hard_faults, s0.hard_faults);
	EXPECT_EQ(t, kraw((uint64_t)b), e);
	ExFreePoolWithTag(b, SP_TAG);
	ExFreePoolWithTag(np, SP_TAG);
	ExFreePoolWithTag(big, SP_TAG);
}

/* Death: MmBuildMdlForNonPagedPool of a small paged block whose page is out, with interrupts
 * off at PASSIVE_LEVEL: 0xC4/0x7F (the IRQL, the MDL, its flags), decided from the page
 * record.  Any fault on the transition page here would be 0x0A with 0xFF as the IRQL; before,
 * is_nonpaged asked pool_query, which faulted the page in to read the block's header, and
 * the case stopped with that 0x0A. */
static void nonpaged_build_of_trimmed_small_paged_pool_faults_nothing_in(struct ktest *t)
{
	uint8_t *b = ExAllocatePool2(POOL_FLAG_PAGED, 64, SP_TAG);
	ASSERT_TRUE(t, b != NULL);
	PMDL m = IoAllocateMdl(b, 64, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m != NULL);
	pool_trim_paged();
	ASSERT_TRUE(t, mmt_sw_is_transition(kraw((uint64_t)b)));
	ASSERT_EQ(t, KeGetCurrentIrql(), PASSIVE_LEVEL);
	ktest_expect_stop(t, DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_MDL_NONPAGED_BUILD_OF_PAGED, PASSIVE_LEVEL,
			  (ULONG_PTR)m, (USHORT)m->MdlFlags, KTEST_P_ALL);
	__asm__ volatile("cli" ::: "memory");
	MmBuildMdlForNonPagedPool(m);
	__asm__ volatile("sti" ::: "memory");
	KTEST_FAIL(t, "MmBuildMdlForNonPagedPool of paged pool returned");
}

/* CPU 1's trim of paged pool, started in the selected-pages probe's window. */
static volatile uint32_t select_trim_done, select_trim_at_lock;
static bool select_trim_started, select_trim_found_busy, select_trim_done_in_window;

static void trim_pool_on_cpu(void *arg)
{
	(void)arg;
	pool_trim_paged();
	__atomic_store_n(&select_trim_done, 1, __ATOMIC_RELEASE);
}

/* pool_trim_paged's entry on CPU 1 (pool_test_trim_entry): whether the pool lock was held
 * when the trim came to take it. */
static void trim_entry_on_cpu1(bool lock_busy)
{
	if (smp_this_cpu() != 1)
		return;
	select_trim_found_busy = lock_busy;
	__atomic_store_n(&select_trim_at_lock, 1, __ATOMIC_RELEASE);
}

static bool trim_at_lock(void *arg)
{
	(void)arg;
	return __atomic_load_n(&select_trim_at_lock, __ATOMIC_ACQUIRE);
}

/* The window between the last segment's walk and its frame's lock, on the first pass: CPU 1
 * trims paged pool, and this CPU waits until the trim has come to the pool lock (a bounded
 * wait serving its mailbox: only a hang fails by it), then notes whether the trim is done. */
static void trim_in_the_select_window(PMDL m, ULONG i)
{
	if (i + 1 != mdl_page_count(m) || select_trim_started)
		return;
	select_trim_started = smp_work_start(1, trim_pool_on_cpu, NULL);
	if (select_trim_started)
		mmt_wait_until(trim_at_lock, NULL);
	select_trim_done_in_window = __atomic_load_n(&select_trim_done, __ATOMIC_ACQUIRE);
}

/* MmProbeAndLockSelectedPages(KernelMode) of resident paged pool, its segments the buffer's
 * pages in reverse order, with CPU 1's pool_trim_paged started between the last page's walk
 * and its lock (mdl_test_select_window).  The walk and the locks are one step under the pool
 * lock, so the trim cannot run until the probe let it go: CPU 1's trim, come to the pool
 * lock, finds it held and is not done while the window lasts (no timing decides it: the
 * window waits for the trim to reach the lock, pool_test_trim_entry), then every page is valid, its real PTE's
 * frame the MDL's, locked once, and CPU 1's trim, after the probe, leaves them valid.  Without
 * the pool lock the trim finished in the window and took the last page after its walk: the
 * probe locked a frame on the modified list behind a transition PTE. */
static void a_selected_pages_probe_of_paged_pool_holds_the_trimmer_off_its_walk_and_lock(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		ktest_skip(t, "needs 2 CPUs");
	uint32_t seed = PG_SEED + 0x1600;
	uint8_t *b = paged_buffer(t, seed);
	FILE_SEGMENT_ELEMENT seg[PP_PAGES];
	for (unsigned k = 0; k < PP_PAGES; k++) {
		seg[k].Buffer = (PVOID64)(b + (PP_PAGES - 1 - k) * P);
		ASSERT_TRUE(t, mmt_has(kraw((uint64_t)seg[k].Buffer), MMT_PTE_P));
	}
	PMDL mdl = IoAllocateMdl(NULL, PP_PAGES * P, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, mdl != NULL);
	select_trim_done = select_trim_at_lock = 0;
	select_trim_started = select_trim_found_busy = select_trim_done_in_window = false;
	volatile NTSTATUS st = STATUS_SUCCESS;
	pool_test_trim_entry = trim_entry_on_cpu1;
	mdl_test_select_window = trim_in_the_select_window;
	__try {
		MmProbeAndLockSelectedPages(mdl, seg, KernelMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	mdl_test_select_window = NULL;
	bool finished = select_trim_started && smp_work_wait(1);
	pool_test_trim_entry = NULL;
	uint64_t pte[PP_PAGES];
	for (unsigned k = 0; k < PP_PAGES; k++)
		pte[k] = kraw((uint64_t)seg[k].Buffer);
	EXPECT_TRUE(t, select_trim_started);
	EXPECT_TRUE(t, finished);
	/* The trim found the pool lock held by the probe's walk and lock, and had not run. */
	EXPECT_TRUE(t, select_trim_at_lock);
	EXPECT_TRUE(t, select_trim_found_busy);
	EXPECT_FALSE(t, select_trim_done_in_window);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	if (st == STATUS_SUCCESS) {
		for (unsigned k = 0; k < PP_PAGES; k++) {
			pfn_t f = MmGetMdlPfnArray(mdl)[k];
			EXPECT_TRUE(t, mmt_has(pte[k], MMT_PTE_P)); /* after CPU 1's trim too */
			EXPECT_EQ(t, mmt_frame_of((uint64_t)seg[k].Buffer), f);
			EXPECT_EQ(t, pfn_entry(f)->state, PFN_ACTIVE);
			EXPECT_EQ(t, pfn_page_locks(f), 1u);
		}
		MmUnlockPages(mdl);
	}
	IoFreeMdl(mdl);
	EXPECT_TRUE(t, paged_intact(b, seed));
	ExFreePoolWithTag(b, PP_TAG);
}

static int pool_case_init(struct ktest *t) { return pager_init(t); }

static struct ktest_case pager_pool_cases[] = {
	KTEST_CASE(paged_pool_pages_leave_and_come_back_soft_and_hard),
	KTEST_CASE(probed_paged_pool_is_safe_at_dispatch_through_its_mdl_mapping),
	KTEST_CASE(selected_pages_of_trimmed_paged_pool_are_brought_back_and_locked),
	KTEST_CASE(paged_pool_freed_during_its_write_is_freed_at_the_writes_end),
	KTEST_CASE(memory_pressure_pages_out_paged_pool),
	KTEST_CASE(a_paged_pool_hard_fault_with_no_free_frame_relieves_pressure),
	KTEST_DEATH_CASE(paged_pool_touched_at_dispatch_after_a_trim_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(force_irql_checking_catches_paged_pool_at_dispatch, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_CASE(a_pool_trim_flushes_its_pages_in_one_round),
	KTEST_CASE(small_paged_pool_leaves_and_comes_back_soft_and_hard),
	KTEST_CASE(an_empty_trimmed_slab_page_goes_back_with_its_frame_and_slot),
	KTEST_CASE(probed_small_paged_pool_is_brought_back_and_locked),
	KTEST_DEATH_CASE(small_paged_pool_touched_at_dispatch_after_a_trim_is_0x0a, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE(force_irql_checking_catches_small_paged_pool_under_a_spin_lock, IRQL_NOT_LESS_OR_EQUAL),
	KTEST_DEATH_CASE_P1(double_free_of_a_trimmed_small_paged_block_is_0xc2_7, BAD_POOL_CALLER, 0x07),
	KTEST_CASE(a_probe_of_paged_pool_trimmed_before_its_lock_still_locks_every_page),
	KTEST_CASE(pool_range_pageable_takes_no_fault),
	KTEST_DEATH_CASE_P1(nonpaged_build_of_trimmed_small_paged_pool_faults_nothing_in,
			    DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_MDL_NONPAGED_BUILD_OF_PAGED),
	KTEST_CASE(a_selected_pages_probe_of_paged_pool_holds_the_trimmer_off_its_walk_and_lock),
	{ 0 }
};
KTEST_SUITE(pager_pool, pager_pool_cases, .init = pool_case_init, .exit = pager_exit);
