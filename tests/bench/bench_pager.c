/*
 * `make bench`: the pager's costs per page (mm/RULES.md, "Paging"), for 1, 8 and 64 resident
 * pages of a process's committed private memory:
 *   pager_trim        uvm_trim: each page's transition PTE, its shootdown, its frame to the
 *                     modified list;
 *   pager_soft_fault  the kernel's touch of each trimmed page in its SMAP window: a real #PF,
 *                     the frame taken back from the modified list and mapped again;
 *   pager_page_out    the modified page writer writing the trimmed pages (one request per 16
 *                     contiguous slots) and putting them on standby;
 *   pager_hard_fault  the touch of each page whose frame was repurposed: a #PF, a new frame,
 *                     the read of its slot through an MDL, the page mapped.
 * Paging I/O waits for the device: the ticks from IoCallDriver's return to the end of the
 * wait (the device's time, and the completion's interrupt, DPC and IoCompleteRequest, which
 * land in it) are left out of the two I/O figures (pagefile_get_stats: wait_ticks), so what
 * is counted is the CPU's own path and is the same from run to run.  The pagefile is placed at
 * sector 16384 (8 MiB) of the bench machine's 16 MiB disk, past vblk_io's sectors.
 * Each figure is the best of ROUNDS; a round's untimed set-up makes the pages resident again
 * (and for the hard fault pages them out and takes every free frame, so that the allocator
 * repurposes theirs).
 */
#include "kernel/bench.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/virtio/virtio_blk.h"
#include "include/wdm.h"
#include "mm/mm.h"
#include "mm/pagefile.h"
#include "mm/pfn.h"
#include "mm/uvm.h"
#include "tests/lib/agent.h"

#define ROUNDS 3
#define PAGEFILE_SECTOR 16384u

static const uint32_t sizes[] = { 1, 8, 64 };

struct pager_bench {
	PEPROCESS p;
	uint64_t base;
	uint32_t n;
};

/* The kernel's touch of each page (attached, in the SMAP window): the faults it takes. */
static void touch(struct pager_bench *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		uint8_t v;
		copy_from_user(&v, b->base + (uint64_t)i * PAGE_SIZE, 1);
	}
}

static uint64_t wait_ticks(void)
{
	struct pagefile_stats s;
	pagefile_get_stats(&s);
	return s.wait_ticks;
}

/* Every free frame taken and one more per page: the allocator repurposes the standby frames
 * (their PTEs become pagefile PTEs); then all given back. */
static void repurpose(uint32_t n)
{
	pfn_t hoard = PFN_INVALID;
	for (;;) {
		struct pfn_stats s;
		pfn_get_stats(&s);
		if (!s.free)
			break;
		pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
		*(pfn_t *)pfn_to_virt(f) = hoard;
		hoard = f;
	}
	for (uint32_t i = 0; i < n; i++) {
		pfn_t f = pfn_alloc(0, PFN_OWNER_TEST);
		if (f == PFN_INVALID)
			break;
		*(pfn_t *)pfn_to_virt(f) = hoard;
		hoard = f;
	}
	while (hoard != PFN_INVALID) {
		pfn_t next = *(pfn_t *)pfn_to_virt(hoard);
		pfn_free(hoard);
		hoard = next;
	}
}

static void bench_size(struct pager_bench *b)
{
	uint64_t trim = ~0ull, soft = ~0ull, out = ~0ull, hard = ~0ull;
	struct uvm_trim_result r;
	for (int round = 0; round < ROUNDS; round++) {
		touch(b); /* resident */
		uint64_t t0 = bench_now();
		uvm_trim(&b->p->mm, &r);
		uint64_t t1 = bench_now();
		touch(b);
		uint64_t t2 = bench_now();
		trim = MIN(trim, t1 - t0 - bench_overhead());
		soft = MIN(soft, t2 - t1 - bench_overhead());

		uvm_trim(&b->p->mm, &r);
		uint64_t w0 = wait_ticks();
		t0 = bench_now();
		uint64_t written = pagefile_write_modified();
		t1 = bench_now();
		uint64_t w1 = wait_ticks();
		if (written != b->n) {
			kprintf("# bench: pager %u pages: the writer wrote %lu\n", b->n, written);
			return;
		}
		out = MIN(out, t1 - t0 - bench_overhead() - (w1 - w0));

		repurpose(b->n);
		w0 = wait_ticks();
		t0 = bench_now();
		touch(b);
		t1 = bench_now();
		w1 = wait_ticks();
		hard = MIN(hard, t1 - t0 - bench_overhead() - (w1 - w0));
	}
	struct uvm_ws_counts ws;
	uvm_working_set(&b->p->mm, &ws);
	char note[64];
	ksnprintf(note, sizeof note, "valid_after=%lu", ws.valid);
	bench_result("pager_trim", b->n, 1, b->n, trim, NULL);
	bench_result("pager_soft_fault", b->n, b->n, b->n, soft, NULL);
	bench_result("pager_page_out", b->n, 1, b->n, out, "device_wait_excluded");
	bench_result("pager_hard_fault", b->n, b->n, b->n, hard, note);
}

static void bench_pager(void)
{
	NTSTATUS st = vblk_load();
	if (st) {
		kprintf("# bench: pager: no disk driver (0x%x): make bench attaches a disk\n", (unsigned)st);
		return;
	}
	struct vblk_info info;
	vblk_get_info(&info);
	struct agent_script script; /* empty: the process is never run, only attached to */
	agent_begin(&script);
	PEPROCESS p = info.capacity >= PAGEFILE_SECTOR + 1024 ? agent_create(&script, 0) : NULL;
	if (!p || !pagefile_attach_at(info.device, PAGEFILE_SECTOR)) {
		kprintf("# bench: pager: no process, or the disk is too small for the pagefile\n");
		if (p)
			PsDestroyProcess(p);
		vblk_unload_driver();
		return;
	}
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	for (unsigned s = 0; s < ARRAY_SIZE(sizes); s++) {
		struct pager_bench b = { .p = p, .n = sizes[s] };
		SIZE_T size = (SIZE_T)b.n * PAGE_SIZE;
		PVOID base = NULL;
		if (!NT_SUCCESS(ZwAllocateVirtualMemory(NtCurrentProcess(), &base, 0, &size, MEM_RESERVE | MEM_COMMIT,
							PAGE_READWRITE)))
			break;
		b.base = (uint64_t)base;
		bench_size(&b);
		SIZE_T zero = 0;
		ZwFreeVirtualMemory(NtCurrentProcess(), &base, &zero, MEM_RELEASE);
	}
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
	pagefile_attach(NULL);
	vblk_unload_driver();
}
KBENCH(pager, bench_pager);
