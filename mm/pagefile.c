/* The pagefile's slots and its I/O, and the modified page writer (see pagefile.h). */
#include "mm/pagefile.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/smp/smp.h"

#define WORDS (PAGEFILE_SLOTS / 64)

static uint64_t bitmap[WORDS];
static uint32_t limit = PAGEFILE_SLOTS;
static PDEVICE_OBJECT disk;
static uint64_t in_use;
/* The writer's gate: one writer at a time (it alone sets bitmap bits), and no attach or
 * detach while a write is in progress; and the CPU that holds it (its number + 1; 0: none),
 * written by that CPU only, after the gate is taken. */
static int writer_busy;
static uint32_t writer_cpu;
static struct pagefile_stats stats;

static bool slot_used(uint32_t s) { return __atomic_load_n(&bitmap[s / 64], __ATOMIC_ACQUIRE) & (1ull << (s % 64)); }

static uint64_t first_sector = PAGEFILE_FIRST_SECTOR;

/* Whether the disk may hold a pagefile: its owner says so with `pagefile=1` (the Makefile
 * passes it for build/disk.img, not for a user's DISK=path unless PAGEFILE=1), since paging
 * writes sectors no one else claims only on the project's own image.  -1: the command line
 * decides; a test's hook sets 0 or 1. */
static int permit_override = -1;

bool pagefile_permitted(void)
{
	int o = __atomic_load_n(&permit_override, __ATOMIC_ACQUIRE);
	return o >= 0 ? o != 0 : cmdline_get_u64("pagefile", 0) != 0;
}

void pagefile_test_permit(int permit) { __atomic_store_n(&permit_override, permit, __ATOMIC_RELEASE); }

static void gate_take(int *gate);

bool pagefile_attach_at(PDEVICE_OBJECT d, uint64_t sector)
{
	if (d && !pagefile_permitted())
		return false;
	/* The writer's gate held: no write is between its slots_take and the end of its I/O,
	 * which reads the disk and the region; one in progress is waited for (counted for the
	 * tests).  An in-page read holds its slot from its PTE to the end of its I/O, so a slot
	 * in use excludes it: the region moves only while no slot holds a page. */
	if (__atomic_load_n(&writer_busy, __ATOMIC_ACQUIRE))
		__atomic_fetch_add(&stats.attach_waits, 1, __ATOMIC_RELAXED);
	gate_take(&writer_busy);
	bool ok = true;
	if (__atomic_load_n(&in_use, __ATOMIC_ACQUIRE)) {
		ok = d && __atomic_load_n(&disk, __ATOMIC_ACQUIRE) == d && first_sector == sector;
	} else {
		first_sector = sector;
		__atomic_store_n(&disk, d, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&writer_busy, 0, __ATOMIC_RELEASE);
	return ok;
}

bool pagefile_attach(PDEVICE_OBJECT d) { return pagefile_attach_at(d, PAGEFILE_FIRST_SECTOR); }

uint64_t pagefile_offset(uint32_t slot) { return first_sector * 512u + (uint64_t)slot * PAGE_SIZE; }

void pagefile_set_limit(uint32_t l) { limit = l < 2 || l > PAGEFILE_SLOTS ? PAGEFILE_SLOTS : l; }

void pagefile_free_slot(uint32_t s)
{
	/* The bit cleared and tested in one step: of two frees of one slot, one PANICs. */
	if (!s || s >= PAGEFILE_SLOTS ||
	    !(__atomic_fetch_and(&bitmap[s / 64], ~(1ull << (s % 64)), __ATOMIC_ACQ_REL) & (1ull << (s % 64))))
		PANIC("pagefile_free_slot: slot %u is not in use", s);
	__atomic_fetch_sub(&in_use, 1, __ATOMIC_RELEASE);
}

uint64_t pagefile_slots_in_use(void) { return __atomic_load_n(&in_use, __ATOMIC_ACQUIRE); }

/* Slots 1 .. limit-1 are the usable ones (slot 0 never is). */
bool pagefile_can_write(void)
{
	return __atomic_load_n(&disk, __ATOMIC_ACQUIRE) && pagefile_slots_in_use() + 1 < limit;
}

/* The first run of n free slots (the writer's gate held), set; 0 when there is none.  The
 * writer asks for smaller runs when a cluster does not fit. */
static uint32_t slots_take(uint32_t n)
{
	uint32_t run = 0;
	for (uint32_t s = 1; s < limit; s++) {
		run = slot_used(s) ? 0 : run + 1;
		if (run == n) {
			uint32_t first = s + 1 - n;
			for (uint32_t k = first; k <= s; k++)
				__atomic_fetch_or(&bitmap[k / 64], 1ull << (k % 64), __ATOMIC_RELEASE);
			__atomic_fetch_add(&in_use, n, __ATOMIC_RELEASE);
			return first;
		}
	}
	return 0;
}

/* ---- paging I/O: an MDL of the frames, an IRP, a wait ---- */

struct paging_mdl {
	MDL mdl;
	PFN_NUMBER pfn[PAGEFILE_CLUSTER];
};

static NTSTATUS on_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
	(void)d;
	(void)irp;
	KeSetEvent(ctx, 0, FALSE);
	return STATUS_MORE_PROCESSING_REQUIRED; /* the IRP is ours again: freed by paging_io */
}

/* The reserve IRP of in-page reads, as NT's IoPageRead keeps one: a read that cannot allocate
 * an IRP (nonpaged pool exhausted) takes this one, waiting while another read has it, so low
 * pool delays an in-page read but never turns it into an in-page error.  Static, so it costs
 * no pool and no IRP count; for a device whose stack fits RESERVE_STACK. */
#define RESERVE_STACK 4
static union {
	IRP irp;
	uint8_t bytes[sizeof(IRP) + RESERVE_STACK * sizeof(IO_STACK_LOCATION)];
} reserve;
static int reserve_busy;
static bool test_no_irp;

void pagefile_test_fail_irp_allocation(bool fail) { __atomic_store_n(&test_no_irp, fail, __ATOMIC_RELEASE); }

/* Take a gate of the paging I/O (the reserve IRP, the writer).  Its holder waits for its
 * request with interrupts on, and the request's completion may need this CPU (the device's
 * interrupt lands on one CPU, a shootdown on every CPU that has the space loaded): the spin
 * runs with interrupts on as that wait does, whatever its caller's IF (paging I/O runs at
 * PASSIVE_LEVEL or APC_LEVEL only). */
static void gate_take(int *gate)
{
	bool window = !(read_rflags() & RFLAGS_IF);
	if (window)
		__asm__ volatile("sti" ::: "memory");
	while (__atomic_exchange_n(gate, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (window)
		__asm__ volatile("cli" ::: "memory");
}

/* An IRP for a request to d: a new one, else for a read the reserve (*reserved). */
static PIRP paging_irp(PDEVICE_OBJECT d, UCHAR major, bool *reserved)
{
	*reserved = false;
	PIRP irp = __atomic_load_n(&test_no_irp, __ATOMIC_ACQUIRE) ? NULL : IoAllocateIrp(d->StackSize, FALSE);
	if (irp || major != IRP_MJ_READ || d->StackSize > RESERVE_STACK)
		return irp;
	gate_take(&reserve_busy);
	IoInitializeIrp(&reserve.irp, (USHORT)sizeof reserve, d->StackSize);
	__atomic_fetch_add(&stats.reserve_reads, 1, __ATOMIC_RELAXED);
	*reserved = true;
	return &reserve.irp;
}

/* n frames to or from n slots from `first`, one request; at PASSIVE_LEVEL or APC_LEVEL. */
static NTSTATUS paging_io(UCHAR major, const pfn_t *pfns, uint32_t n, uint32_t first)
{
	PDEVICE_OBJECT d = __atomic_load_n(&disk, __ATOMIC_ACQUIRE);
	if (!d)
		return STATUS_DEVICE_NOT_CONNECTED;
	/* NT pages at APC_LEVEL too (a probe of user memory is allowed up to it, and a fault
	 * under a guarded region or a fast mutex is one): the wait below enables interrupts
	 * there as at PASSIVE_LEVEL.  The callers refuse DISPATCH_LEVEL and above first. */
	if (KeGetCurrentIrql() > APC_LEVEL)
		PANIC("paging_io: at IRQL %u, above APC_LEVEL", KeGetCurrentIrql());
	struct paging_mdl m;
	MmInitializeMdl(&m.mdl, NULL, (SIZE_T)n * PAGE_SIZE);
	for (uint32_t i = 0; i < n; i++)
		m.pfn[i] = pfns[i];
	/* The frames are held for the I/O by the caller (the writer's lock, an in-page frame
	 * nothing else has): the device may name them (I/O rule I10). */
	m.mdl.MdlFlags |= MDL_PAGES_LOCKED;
	bool reserved;
	PIRP irp = paging_irp(d, major, &reserved);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES; /* a write: its frames stay modified */
	KEVENT ev;
	KeInitializeEvent(&ev, NotificationEvent, FALSE);
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->MajorFunction = major;
	sp->Parameters.Read.Length = n * PAGE_SIZE; /* Read and Write share the layout */
	sp->Parameters.Read.ByteOffset.QuadPart = (LONGLONG)pagefile_offset(first);
	irp->MdlAddress = &m.mdl;
	IoSetCompletionRoutine(irp, on_done, &ev, TRUE, TRUE, TRUE);
	/* The wait (the device's time, the completion's interrupt and DPC) is counted apart,
	 * and make bench leaves it out of the CPU's cost of paging I/O: interrupts are off from
	 * the submit to the wait (which turns them on while it waits below DISPATCH_LEVEL), so the
	 * completion lands inside the wait. */
	bool intr = read_rflags() & RFLAGS_IF;
	__asm__ volatile("cli" ::: "memory");
	IoCallDriver(d, irp);
	uint64_t t0 = rdtsc();
	KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, NULL);
	__atomic_fetch_add(&stats.wait_ticks, rdtsc() - t0, __ATOMIC_RELAXED);
	if (intr)
		__asm__ volatile("sti" ::: "memory");
	NTSTATUS st = irp->IoStatus.Status;
	irp->MdlAddress = NULL;
	if (reserved)
		__atomic_store_n(&reserve_busy, 0, __ATOMIC_RELEASE);
	else
		IoFreeIrp(irp);
	return st;
}

NTSTATUS pagefile_read(pfn_t pfn, uint32_t slot)
{
	NTSTATUS st = paging_io(IRP_MJ_READ, &pfn, 1, slot);
	__atomic_fetch_add(NT_SUCCESS(st) ? &stats.reads : &stats.read_errors, 1, __ATOMIC_RELAXED);
	return st;
}

uint64_t pagefile_write_modified(void)
{
	if (!__atomic_load_n(&disk, __ATOMIC_ACQUIRE))
		return 0;
	gate_take(&writer_busy);
	__atomic_store_n(&writer_cpu, this_cpu()->number + 1, __ATOMIC_RELAXED);
	uint64_t written = 0;
	pfn_t pfns[PAGEFILE_CLUSTER];
	uint32_t slots[PAGEFILE_CLUSTER], freed[PAGEFILE_CLUSTER];
	for (;;) {
		uint64_t n = pfn_take_modified(pfns, PAGEFILE_CLUSTER), done = 0, nfree;
		if (!n)
			break;
		bool stop = false;
		while (done < n) {
			/* The largest run of contiguous slots that is free, one request for it. */
			uint32_t want = (uint32_t)(n - done), first = 0;
			while (want && !(first = slots_take(want)))
				want /= 2;
			if (!first) {
				/* The pagefile is full: the rest go back to the modified list. */
				for (uint64_t i = done; i < n; i++)
					slots[i] = 0;
				pfn_write_done(pfns + done, slots + done, n - done, false, freed, &nfree);
				stats.full++;
				stop = true;
				break;
			}
			for (uint32_t i = 0; i < want; i++)
				slots[done + i] = first + i;
			NTSTATUS st = paging_io(IRP_MJ_WRITE, pfns + done, want, first);
			stats.writes++;
			if (!NT_SUCCESS(st))
				stats.write_errors++;
			pfn_write_done(pfns + done, slots + done, want, NT_SUCCESS(st), freed, &nfree);
			for (uint64_t i = 0; i < nfree; i++)
				if (freed[i])
					pagefile_free_slot(freed[i]);
			if (NT_SUCCESS(st)) {
				written += want - nfree;
				stats.pages_written += want;
			}
			done += want;
			if (!NT_SUCCESS(st)) {
				if (done < n) {
					for (uint64_t i = done; i < n; i++)
						slots[i] = 0;
					pfn_write_done(pfns + done, slots + done, n - done, false, freed, &nfree);
				}
				stop = true;
				break;
			}
		}
		if (stop)
			break;
	}
	__atomic_store_n(&writer_cpu, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&writer_busy, 0, __ATOMIC_RELEASE);
	return written;
}

/* Only this CPU writes its own number there, so a read that finds it is exact. */
bool pagefile_writer_is_mine(void)
{
	return __atomic_load_n(&writer_cpu, __ATOMIC_RELAXED) == this_cpu()->number + 1;
}

void pagefile_get_stats(struct pagefile_stats *out)
{
	*out = stats;
	out->attached = __atomic_load_n(&disk, __ATOMIC_ACQUIRE) != NULL;
	out->limit = limit;
	out->in_use = pagefile_slots_in_use();
}

ACCOUNTING_COUNTER(pagefile_slots, "pagefile slots in use", pagefile_slots_in_use);
