/*
 * The I/O manager (kernel/io/io.c) driven from ring 3: the agent opens a device by name and calls
 * NtDeviceIoControlFile on it, a test driver records what its dispatch routines were handed.
 *
 * What is proven and how:
 *   - METHOD_BUFFERED: the driver sees a copy of the input in the system buffer, and exactly
 *     IoStatus.Information bytes come back (the agent reads its output buffer: the byte after
 *     them still holds what the agent put there);
 *   - the direct methods: Irp->MdlAddress describes the caller's output buffer, locked for
 *     UserMode in the caller (Mdl->Process, the process's locked pages, the frames' lock
 *     counts, all read while the driver has the IRP), the frames are the ones the process's
 *     page tables map there, the driver's writes through MmGetSystemAddressForMdlSafe reach the
 *     agent, and after completion no frame is locked and the system mapping is gone from the
 *     kernel's tables; IN_DIRECT probes for read only;
 *   - METHOD_NEITHER: the raw pointers, in the caller's address space;
 *   - a bad buffer (NULL, a kernel address, read-only where the I/O manager must write, not
 *     committed, past the user range) is STATUS_ACCESS_VIOLATION to the caller before the
 *     driver is called, and the agent goes on to report it;
 *   - unknown names, handles and codes get their statuses;
 *   - IRP_MJ_CLEANUP reaches the driver once per handle when the process is destroyed, in the
 *     process's context with its user pages still mapped, and the frames go after it;
 *   - completing an IRP twice is bug check MULTIPLE_IRP_COMPLETE_REQUESTS.
 * Every case ends with the framework's accounting: free pages, system PTEs, pool bytes,
 * locked pages, open handles and device objects as before.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/intr/dpc.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"

#define IOT_DEVICE "IOTEST"
#define IOT_FN(fn, method) CTL_CODE(FILE_DEVICE_UNKNOWN, (fn), (method), FILE_ANY_ACCESS)
/* Output = the input's bytes inverted, Information = the input's length. */
#define IOCTL_IOT_INVERT IOT_FN(0x800, METHOD_BUFFERED)
/* Fills the MDL buffer with the qwords seed, seed + 8, ... (the seed is the 8-byte input). */
#define IOCTL_IOT_FILL IOT_FN(0x801, METHOD_OUT_DIRECT)
/* Reads the first qword of the MDL buffer; writes nothing. */
#define IOCTL_IOT_PEEK IOT_FN(0x802, METHOD_IN_DIRECT)
/* Records the raw pointers. */
#define IOCTL_IOT_RAW IOT_FN(0x803, METHOD_NEITHER)
/* Completes the IRP twice (the death case). */
#define IOCTL_IOT_TWICE IOT_FN(0x804, METHOD_BUFFERED)
/* Marks the IRP pending and returns STATUS_PENDING; a DPC completes it (the input's bytes
 * inverted, Information = the input's length) on the requester's CPU (input byte 0 = 0) or on
 * another one (1). */
#define IOCTL_IOT_PENDING IOT_FN(0x805, METHOD_BUFFERED)
#define IOCTL_IOT_UNKNOWN IOT_FN(0x8FF, METHOD_BUFFERED)

/* The agent's buffer, at a scratch address of the case: 64 KiB committed read-write; the next
 * 64 KiB are not reserved. */
#define IOT_BUF_SIZE 0x10000ul
static uint64_t iot_buf;
#define IOT_MAX_PAGES 4

/* ---- the test driver ------------------------------------------------------------------ */

static PDEVICE_OBJECT iot_device;
static struct ktest *iot_death_case; /* the death case that completes an IRP twice */

/* What the dispatch routines saw. */
static struct {
	int calls;
	ULONG code, in_len, out_len;
	KPROCESSOR_MODE requestor;
	PEPROCESS process;
	PFILE_OBJECT file;
	PVOID system_buffer, type3_input, user_buffer;
	bool user_buffer_mapped;        /* METHOD_NEITHER: in the current address space */
	/* The IRP's MDL, while the driver had it. */
	bool had_mdl;
	PEPROCESS mdl_process;
	USHORT mdl_flags;
	ULONG mdl_pages;
	PFN_NUMBER pfns[IOT_MAX_PAGES];
	uint32_t lock_counts[IOT_MAX_PAGES];
	uint64_t process_locked;
	uint64_t system_va;
	uint64_t first_qword;
	/* IRP_MJ_CLEANUP. */
	int cleanups;
	UCHAR cleanup_major;
	KPROCESSOR_MODE cleanup_requestor;
	PEPROCESS cleanup_process;
	bool cleanup_terminating;
	uint32_t cleanup_handles;
	bool cleanup_page_mapped;
	PFN_NUMBER cleanup_pfn;
	NTSTATUS cleanup_copy;
	uint64_t cleanup_value;
	/* The dispatch routine's RFLAGS.IF and IRQL: a system call runs at PASSIVE_LEVEL with
	 * interrupts on, as NT's does (mm/RULES.md, "Interrupts and IRQL"). */
	bool interrupts_on;
	KIRQL irql;
	/* IOCTL_IOT_PENDING. */
	ULONG pend_cpu, pend_dpc_cpu;
	KIRQL pend_dpc_irql;
	int pend_completions;
} rec;

static KDPC pend_dpc;

/* IOCTL_IOT_PENDING's completion, at DISPATCH_LEVEL. */
static VOID pend_complete(PKDPC Dpc, PVOID Context, PVOID Arg1, PVOID Arg2)
{
	UNREFERENCED_PARAMETER(Dpc);
	UNREFERENCED_PARAMETER(Context);
	UNREFERENCED_PARAMETER(Arg2);
	PIRP irp = Arg1;
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	PUCHAR b = irp->AssociatedIrp.SystemBuffer;
	rec.pend_dpc_cpu = KeGetCurrentProcessorNumberEx(NULL);
	rec.pend_dpc_irql = KeGetCurrentIrql();
	rec.pend_completions++;
	for (ULONG i = 0; i < in_len; i++)
		b[i] = (UCHAR)~b[i];
	irp->IoStatus.Status = STATUS_SUCCESS;
	irp->IoStatus.Information = in_len;
	IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static void record_mdl(PIRP irp)
{
	PMDL m = irp->MdlAddress;
	if (!m)
		return;
	rec.had_mdl = true;
	rec.mdl_process = m->Process;
	rec.mdl_flags = (USHORT)m->MdlFlags;
	rec.mdl_pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(MmGetMdlVirtualAddress(m), m->ByteCount);
	for (ULONG i = 0; i < rec.mdl_pages && i < IOT_MAX_PAGES; i++) {
		rec.pfns[i] = MmGetMdlPfnArray(m)[i];
		rec.lock_counts[i] = pfn_entry(rec.pfns[i])->lock_count;
	}
	rec.process_locked = ps_current() ? ps_current()->mm.locked_pages : 0;
}

static PUCHAR map_mdl(PIRP irp)
{
	PUCHAR va = MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority | MdlMappingNoExecute);
	rec.system_va = (uint64_t)va;
	return va;
}

static NTSTATUS iot_device_control(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	NTSTATUS st = STATUS_SUCCESS;
	ULONG_PTR info = 0;
	rec.calls++;
	rec.code = sp->Parameters.DeviceIoControl.IoControlCode;
	rec.in_len = in_len;
	rec.out_len = out_len;
	rec.requestor = Irp->RequestorMode;
	rec.interrupts_on = (read_rflags() & RFLAGS_IF) != 0;
	rec.irql = KeGetCurrentIrql();
	rec.process = ps_current();
	rec.file = sp->FileObject;
	rec.system_buffer = Irp->AssociatedIrp.SystemBuffer;
	rec.type3_input = sp->Parameters.DeviceIoControl.Type3InputBuffer;
	rec.user_buffer = Irp->UserBuffer;
	record_mdl(Irp);
	switch (rec.code) {
	case IOCTL_IOT_INVERT: {
		/* One buffer holds the input and, afterwards, the output. */
		PUCHAR b = Irp->AssociatedIrp.SystemBuffer;
		if (out_len < in_len) {
			st = STATUS_BUFFER_TOO_SMALL;
			info = 0xBAD; /* an error's Information never reaches the caller */
			break;
		}
		for (ULONG i = 0; i < in_len; i++)
			b[i] = (UCHAR)~b[i];
		info = in_len;
		break;
	}
	case IOCTL_IOT_FILL: {
		uint64_t seed;
		PUCHAR va;
		if (in_len < sizeof seed || !Irp->MdlAddress) {
			st = STATUS_INVALID_PARAMETER;
			break;
		}
		if (!(va = map_mdl(Irp))) {
			st = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		memcpy(&seed, Irp->AssociatedIrp.SystemBuffer, sizeof seed);
		for (ULONG i = 0; i + 8 <= out_len; i += 8) {
			uint64_t v = seed + i;
			memcpy(va + i, &v, sizeof v);
		}
		info = out_len;
		break;
	}
	case IOCTL_IOT_PEEK: {
		PUCHAR va;
		if (out_len < sizeof rec.first_qword || !Irp->MdlAddress) {
			st = STATUS_INVALID_PARAMETER;
			break;
		}
		if (!(va = map_mdl(Irp))) {
			st = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		memcpy(&rec.first_qword, va, sizeof rec.first_qword);
		break;
	}
	case IOCTL_IOT_RAW: {
		struct pt_query q;
		pt_query(&ps_current()->mm.root, (uint64_t)Irp->UserBuffer, &q);
		rec.user_buffer_mapped = q.present && q.eff.user;
		break;
	}
	case IOCTL_IOT_PENDING: {
		if (in_len < 1 || out_len < in_len) {
			st = STATUS_INVALID_PARAMETER;
			break;
		}
		ULONG me = KeGetCurrentProcessorNumberEx(NULL);
		ULONG n = KeQueryActiveProcessorCount(NULL);
		bool other = ((PUCHAR)Irp->AssociatedIrp.SystemBuffer)[0] != 0 && n > 1;
		rec.pend_cpu = me;
		KeInitializeDpc(&pend_dpc, pend_complete, NULL);
		KeSetTargetProcessorDpc(&pend_dpc, (CCHAR)(other ? (me + 1) % n : me));
		KeSetImportanceDpc(&pend_dpc, MediumHighImportance);
		IoMarkIrpPending(Irp);
		KeInsertQueueDpc(&pend_dpc, Irp, NULL);
		return STATUS_PENDING;
	}
	case IOCTL_IOT_TWICE:
		/* Bug check 0x44: the IRP; Microsoft reserves P2-P4. */
		if (iot_death_case)
			expect_stop(iot_death_case, MULTIPLE_IRP_COMPLETE_REQUESTS, (ULONG_PTR)Irp, 0, 0, 0);
		Irp->IoStatus.Status = STATUS_SUCCESS;
		IoCompleteRequest(Irp, IO_NO_INCREMENT);
		break;
	default:
		st = STATUS_INVALID_DEVICE_REQUEST;
		break;
	}
	Irp->IoStatus.Status = st;
	Irp->IoStatus.Information = info;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return st;
}

/* IRP_MJ_CLEANUP: what the process still had then. */
static NTSTATUS iot_cleanup(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	PEPROCESS p = ps_current();
	rec.cleanups++;
	rec.cleanup_major = IoGetCurrentIrpStackLocation(Irp)->MajorFunction;
	rec.cleanup_requestor = Irp->RequestorMode;
	rec.cleanup_process = p;
	if (p) {
		struct pt_query q;
		rec.cleanup_terminating = p->mm.terminating;
		rec.cleanup_handles = io_process_handles(p);
		pt_query(&p->mm.root, iot_buf, &q);
		rec.cleanup_page_mapped = q.present && q.eff.user;
		rec.cleanup_pfn = q.pa >> PAGE_SHIFT;
		rec.cleanup_copy = copy_from_user(&rec.cleanup_value, iot_buf, sizeof rec.cleanup_value);
	}
	Irp->IoStatus.Status = STATUS_SUCCESS;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_SUCCESS;
}

static int io_ioctl_init(struct ktest *t)
{
	(void)t;
	memset(&rec, 0, sizeof rec);
	iot_buf = scratch_uva(2 * IOT_BUF_SIZE, 0);
	return IoCreateDeviceLite(IOT_DEVICE, iot_device_control, iot_cleanup, &iot_device) != STATUS_SUCCESS;
}

static void io_ioctl_exit(struct ktest *t)
{
	(void)t;
	if (iot_device)
		IoDeleteDevice(iot_device);
	iot_device = NULL;
}

/* ---- the agent's script ----------------------------------------------------------------- */

/* A script whose first operation commits the buffer read-write. */
static void begin_script(struct agent_script *s)
{
	agent_begin(s);
	agent_alloc(s, iot_buf, IOT_BUF_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

/* ---- cases ---------------------------------------------------------------------------- */

static void buffered_round_trip_copies_back_information_bytes(struct ktest *t)
{
	const uint64_t in0 = 0x0123456789ABCDEFul, in1 = 0x1122334455667788ul, fill = 0xAAAAAAAAAAAAAAAAul;
	const uint64_t out = iot_buf + 0x3000;
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, iot_buf, in0);
	agent_write64(&s, iot_buf + 8, in1);
	for (int k = 0; k < 4; k++)
		agent_write64(&s, out + 8 * k, fill);
	uint32_t open = agent_open(&s, IOT_DEVICE);
	/* 16 bytes in, room for 32 out: the driver returns 16. */
	uint32_t call = agent_ioctl(&s, IOCTL_IOT_INVERT, iot_buf, 16, out, 32);
	uint32_t r[4];
	for (int k = 0; k < 4; k++)
		r[k] = agent_read64(&s, out + 8 * k);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, open, 0), 0);
	EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
	/* The system call returned IoStatus.Information: DeviceIoControl's lpBytesReturned. */
	EXPECT_EQ(t, agent_result(t, p, call, 1), 16);
	EXPECT_EQ(t, agent_result(t, p, r[0], 0), ~in0);
	EXPECT_EQ(t, agent_result(t, p, r[1], 0), ~in1);
	/* Information was 16: the rest of the output buffer was not written. */
	EXPECT_EQ(t, agent_result(t, p, r[2], 0), fill);
	EXPECT_EQ(t, agent_result(t, p, r[3], 0), fill);
	EXPECT_EQ(t, rec.calls, 1);
	EXPECT_EQ(t, rec.in_len, 16);
	EXPECT_EQ(t, rec.out_len, 32);
	EXPECT_EQ(t, rec.requestor, UserMode);
	EXPECT_TRUE(t, rec.interrupts_on);
	EXPECT_EQ(t, rec.irql, PASSIVE_LEVEL);
	EXPECT_TRUE(t, rec.process == p);
	/* A kernel buffer, not the caller's; no MDL. */
	EXPECT_GE(t, (uint64_t)rec.system_buffer, USER_VA_END);
	EXPECT_TRUE(t, rec.user_buffer == (PVOID)out);
	EXPECT_FALSE(t, rec.had_mdl);
	EXPECT_EQ(t, rec.file->DeviceObject, iot_device);
	EXPECT_EQ(t, io_process_handles(p), 1);
	PsDestroyProcess(p);
}

/* A request its driver leaves pending (STATUS_PENDING, completed later by a DPC) is waited
 * for: the system call returns the status and Information the DPC completed it with, and the
 * buffered output it wrote, whether the DPC ran on the requester's CPU or on another CPU.  A
 * system call runs with interrupts on at PASSIVE_LEVEL, as NT's does, so the requester's own
 * DPC interrupt may complete the IRP before its dispatch routine has returned STATUS_PENDING
 * (why the routine marks it pending first) or after: the verdict takes either order. */
static void pending_request_is_waited_for_until_a_dpc_completes_it(struct ktest *t)
{
	const uint64_t in = iot_buf, out = iot_buf + 0x3000;
	const uint64_t v0 = 0x0011223344556677ul; /* byte 0 = 0x77: overwritten below */
	for (int other = 0; other < 2; other++) {
		memset(&rec, 0, sizeof rec);
		struct agent_script s;
		begin_script(&s);
		agent_write64(&s, in, (v0 & ~0xFFul) | (uint64_t)other);
		agent_write64(&s, in + 8, ~v0);
		agent_write64(&s, out + 16, 0xAAAAAAAAAAAAAAAAul);
		uint32_t open = agent_open(&s, IOT_DEVICE);
		uint32_t call = agent_ioctl(&s, IOCTL_IOT_PENDING, in, 16, out, 24);
		uint32_t r0 = agent_read64(&s, out), r1 = agent_read64(&s, out + 8), r2 = agent_read64(&s, out + 16);
		PEPROCESS p = agent_run_clean(t, &s);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, agent_result(t, p, open, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, call, 1), 16);
		EXPECT_EQ(t, agent_result(t, p, r0, 0), ~((v0 & ~0xFFul) | (uint64_t)other));
		EXPECT_EQ(t, agent_result(t, p, r1, 0), v0);
		EXPECT_EQ(t, agent_result(t, p, r2, 0), 0xAAAAAAAAAAAAAAAAul);
		EXPECT_EQ(t, rec.pend_completions, 1);
		EXPECT_EQ(t, rec.pend_dpc_irql, DISPATCH_LEVEL);
		if (!other) {
			EXPECT_EQ(t, rec.pend_dpc_cpu, rec.pend_cpu);
		} else if (KeQueryActiveProcessorCount(NULL) > 1) {
			EXPECT_NE(t, rec.pend_dpc_cpu, rec.pend_cpu);
		}
		PsDestroyProcess(p);
	}
}

static void buffered_error_status_copies_nothing_back(struct ktest *t)
{
	const uint64_t out = iot_buf + 0x3000, fill = 0x5555555555555555ul;
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, out, fill);
	agent_open(&s, IOT_DEVICE);
	/* Output too small for the input: STATUS_BUFFER_TOO_SMALL, nothing copied. */
	uint32_t call = agent_ioctl(&s, IOCTL_IOT_INVERT, iot_buf, 16, out, 8);
	uint32_t r = agent_read64(&s, out);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), (ULONG)STATUS_BUFFER_TOO_SMALL);
	uint64_t bytes;
	EXPECT_FALSE(t, ps_report(p, AGENT_KEY(call, 1), &bytes)); /* no bytes for an error status */
	EXPECT_EQ(t, agent_result(t, p, r, 0), fill);
	PsDestroyProcess(p);
}

static void out_direct_driver_writes_through_the_mdl_locked_for_the_caller(struct ktest *t)
{
	const uint64_t seed = 0x5EED000000000000ul;
	/* 32 bytes across a page boundary, in pages the agent never touched (demand-zero). */
	const uint64_t out = iot_buf + 0x2000 - 16;
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, iot_buf, seed);
	agent_open(&s, IOT_DEVICE);
	uint32_t call = agent_ioctl(&s, IOCTL_IOT_FILL, iot_buf, 8, out, 32);
	uint32_t r[4];
	for (int k = 0; k < 4; k++)
		r[k] = agent_read64(&s, out + 8 * k);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
	EXPECT_EQ(t, agent_result(t, p, call, 1), 32); /* direct I/O: the driver's Information as is */
	for (int k = 0; k < 4; k++)
		EXPECT_EQ(t, agent_result(t, p, r[k], 0), seed + 8 * k);
	/* While the driver had the IRP: locked for this process, UserMode, for writing. */
	EXPECT_EQ(t, rec.calls, 1);
	ASSERT_TRUE(t, rec.had_mdl);
	EXPECT_TRUE(t, rec.mdl_process == p);
	EXPECT_EQ(t, rec.mdl_flags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION), MDL_PAGES_LOCKED | MDL_WRITE_OPERATION);
	ASSERT_EQ(t, rec.mdl_pages, 2);
	EXPECT_EQ(t, rec.process_locked, 2);
	EXPECT_NE(t, (uint64_t)rec.system_buffer, 0);
	for (int i = 0; i < 2; i++) {
		struct pt_query q;
		pt_query(&p->mm.root, ALIGN_DOWN(out, PAGE_SIZE) + (uint64_t)i * PAGE_SIZE, &q);
		EXPECT_TRUE(t, q.present);
		EXPECT_EQ(t, q.pa >> PAGE_SHIFT, rec.pfns[i]);
		EXPECT_GE(t, rec.lock_counts[i], 1);
		/* After completion: unlocked. */
		EXPECT_EQ(t, pfn_entry(rec.pfns[i])->lock_count, 0);
	}
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	/* MmUnlockPages released the driver's system mapping (the driver never unmapped). */
	struct pt_query k;
	EXPECT_GE(t, rec.system_va, KVA_SYSPTE_BASE);
	pt_query(&kernel_root, rec.system_va, &k);
	EXPECT_FALSE(t, k.present);
	PsDestroyProcess(p);
}

static void in_direct_locks_for_read_so_a_read_only_buffer_is_accepted(struct ktest *t)
{
	const uint64_t data = 0xDA7ADA7ADA7ADA7Aul;
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, iot_buf + 0x1000, data);
	agent_open(&s, IOT_DEVICE);
	uint32_t rw = agent_ioctl(&s, IOCTL_IOT_PEEK, 0, 0, iot_buf + 0x1000, 8);
	uint32_t ro = agent_ioctl(&s, IOCTL_IOT_PEEK, 0, 0, USER_PARAMS_VA, 8);
	uint32_t marker = agent_report(&s, 1000, 7);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	(void)marker;
	EXPECT_EQ(t, agent_result(t, p, rw, 0), 0);
	/* The read-only parameter page: probed for read, the driver reads its magic. */
	EXPECT_EQ(t, agent_result(t, p, ro, 0), 0);
	EXPECT_EQ(t, rec.calls, 2);
	EXPECT_EQ(t, rec.first_qword, USER_PARAMS_MAGIC);
	EXPECT_TRUE(t, rec.mdl_process == p);
	EXPECT_EQ(t, rec.mdl_flags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION), MDL_PAGES_LOCKED);
	EXPECT_EQ(t, pfn_entry(rec.pfns[0])->lock_count, 0);
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(p, 1000, &v) && v == 7);
	PsDestroyProcess(p);
}

static void neither_hands_the_driver_raw_pointers_in_the_callers_space(struct ktest *t)
{
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, iot_buf + 0x1000, 1);
	agent_open(&s, IOT_DEVICE);
	uint32_t call = agent_ioctl(&s, IOCTL_IOT_RAW, iot_buf + 0x10, 4, iot_buf + 0x1000, 8);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
	EXPECT_EQ(t, rec.calls, 1);
	EXPECT_TRUE(t, rec.type3_input == (PVOID)(iot_buf + 0x10));
	EXPECT_TRUE(t, rec.user_buffer == (PVOID)(iot_buf + 0x1000));
	EXPECT_TRUE(t, rec.system_buffer == NULL);
	EXPECT_FALSE(t, rec.had_mdl);
	EXPECT_TRUE(t, rec.process == p);
	EXPECT_TRUE(t, rec.user_buffer_mapped);
	PsDestroyProcess(p);
}

/* A buffer the I/O manager can't use never reaches the driver. */
struct bad_buffer {
	const char *what;
	ULONG code;
	uint64_t in;
	ULONG in_len;
	uint64_t out;
	ULONG out_len;
};

static void bad_buffers_are_access_violations_for_the_caller(struct ktest *t)
{
	const uint64_t kernel = (uint64_t)&rec, ro = USER_PARAMS_VA, ok = iot_buf;
	/* Uncommitted: the 64 KiB after the buffer; straddling: the buffer's last 8 bytes and 8
	 * of those; past the top of the user range. */
	const uint64_t uncommitted = iot_buf + IOT_BUF_SIZE, straddle = iot_buf + IOT_BUF_SIZE - 8;
	const uint64_t top = MM_USER_TOP_64 + 1 - PAGE_SIZE;
	const struct bad_buffer bad[] = {
		{ "buffered, NULL input", IOCTL_IOT_INVERT, 0, 16, ok, 16 },
		{ "buffered, kernel input", IOCTL_IOT_INVERT, kernel, 16, ok, 16 },
		{ "buffered, NULL output", IOCTL_IOT_INVERT, ok, 16, 0, 16 },
		{ "buffered, kernel output", IOCTL_IOT_INVERT, ok, 16, kernel, 16 },
		{ "buffered, read-only output", IOCTL_IOT_INVERT, ok, 16, ro, 16 },
		{ "buffered, output past the user range", IOCTL_IOT_INVERT, ok, 16, top, 2 * PAGE_SIZE },
		{ "out direct, NULL input", IOCTL_IOT_FILL, 0, 8, ok + 0x1000, 16 },
		{ "out direct, NULL output", IOCTL_IOT_FILL, ok, 8, 0, 16 },
		{ "out direct, kernel output", IOCTL_IOT_FILL, ok, 8, kernel, 16 },
		{ "out direct, read-only output", IOCTL_IOT_FILL, ok, 8, ro, 16 },
		{ "out direct, uncommitted output", IOCTL_IOT_FILL, ok, 8, uncommitted, 16 },
		{ "out direct, output straddling into uncommitted", IOCTL_IOT_FILL, ok, 8, straddle, 16 },
		{ "out direct, output past the user range", IOCTL_IOT_FILL, ok, 8, top, 2 * PAGE_SIZE },
		{ "in direct, NULL output", IOCTL_IOT_PEEK, 0, 0, 0, 8 },
		{ "in direct, kernel output", IOCTL_IOT_PEEK, 0, 0, kernel, 8 },
		{ "in direct, uncommitted output", IOCTL_IOT_PEEK, 0, 0, uncommitted, 8 },
	};
	uint32_t call[ARRAY_SIZE(bad)];
	struct agent_script s;
	begin_script(&s);
	/* The straddling buffer's first page is resident: the probe locks it, then fails. */
	agent_write64(&s, straddle, 1);
	agent_open(&s, IOT_DEVICE);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		call[i] = agent_ioctl(&s, bad[i].code, bad[i].in, bad[i].in_len, bad[i].out, bad[i].out_len);
	uint32_t marker = agent_report(&s, 1000, 7);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	(void)marker;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (agent_result(t, p, call[i], 0) != (ULONG)STATUS_ACCESS_VIOLATION)
			KTEST_FAIL(t, "%s: status 0x%lx, expected STATUS_ACCESS_VIOLATION", bad[i].what,
				   agent_result(t, p, call[i], 0));
	/* The driver never saw any of them; the agent went on. */
	EXPECT_EQ(t, rec.calls, 0);
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(p, 1000, &v) && v == 7);
	struct pt_query q;
	pt_query(&p->mm.root, straddle, &q);
	ASSERT_TRUE(t, q.present);
	EXPECT_EQ(t, pfn_entry(q.pa >> PAGE_SHIFT)->lock_count, 0);
	PsDestroyProcess(p);
}

static void unknown_names_handles_and_codes_get_their_statuses(struct ktest *t)
{
	struct agent_script s;
	begin_script(&s);
	/* No handle yet: the agent passes 0. */
	uint32_t no_handle = agent_ioctl(&s, IOCTL_IOT_INVERT, iot_buf, 8, iot_buf, 8);
	uint32_t no_device = agent_open(&s, "NODEV");
	uint32_t prefix = agent_open(&s, "IOTES");
	uint32_t open = agent_open(&s, IOT_DEVICE);
	uint32_t no_code = agent_ioctl(&s, IOCTL_IOT_UNKNOWN, iot_buf, 8, iot_buf, 8);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, agent_result(t, p, no_handle, 0), (ULONG)STATUS_INVALID_HANDLE);
	EXPECT_EQ(t, agent_result(t, p, no_device, 0), (ULONG)STATUS_OBJECT_NAME_NOT_FOUND);
	EXPECT_EQ(t, agent_result(t, p, prefix, 0), (ULONG)STATUS_OBJECT_NAME_NOT_FOUND);
	EXPECT_EQ(t, agent_result(t, p, open, 0), 0);
	EXPECT_EQ(t, agent_result(t, p, no_code, 0), (ULONG)STATUS_INVALID_DEVICE_REQUEST);
	EXPECT_EQ(t, rec.calls, 1);
	EXPECT_EQ(t, io_process_handles(p), 1);
	PsDestroyProcess(p);
}

static void device_names_are_unique_and_bounded(struct ktest *t)
{
	PDEVICE_OBJECT d = NULL;
	EXPECT_EQ(t, (ULONG)IoCreateDeviceLite(IOT_DEVICE, NULL, NULL, &d), (ULONG)STATUS_OBJECT_NAME_COLLISION);
	EXPECT_EQ(t, (ULONG)IoCreateDeviceLite("", NULL, NULL, &d), (ULONG)STATUS_OBJECT_NAME_INVALID);
	EXPECT_EQ(t, (ULONG)IoCreateDeviceLite("0123456789012345678901234567890123", NULL, NULL, &d),
		  (ULONG)STATUS_OBJECT_NAME_INVALID);
	EXPECT_TRUE(t, d == NULL);
	/* A device with no routines: opens and closes, refuses I/O control. */
	ASSERT_EQ(t, (ULONG)IoCreateDeviceLite("BARE", NULL, NULL, &d), 0);
	EXPECT_EQ(t, d->Type, IO_TYPE_DEVICE);
	struct agent_script s;
	begin_script(&s);
	uint32_t open = agent_open(&s, "BARE");
	uint32_t call = agent_ioctl(&s, IOCTL_IOT_INVERT, iot_buf, 8, iot_buf, 8);
	PEPROCESS p = agent_run_clean(t, &s);
	if (p) {
		EXPECT_EQ(t, agent_result(t, p, open, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, call, 0), (ULONG)STATUS_INVALID_DEVICE_REQUEST);
		PsDestroyProcess(p);
	}
	IoDeleteDevice(d);
	ASSERT_TRUE(t, p != NULL);
}

static void cleanup_reaches_the_driver_at_process_end_before_teardown(struct ktest *t)
{
	const uint64_t value = 0xC1EA0000C1EA0000ul;
	struct agent_script s;
	begin_script(&s);
	agent_write64(&s, iot_buf, value);
	agent_open(&s, IOT_DEVICE);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	/* Ending the program is not the end of the process: no cleanup yet. */
	EXPECT_EQ(t, rec.cleanups, 0);
	EXPECT_EQ(t, io_process_handles(p), 1);
	PsDestroyProcess(p);
	EXPECT_EQ(t, rec.cleanups, 1);
	EXPECT_EQ(t, rec.cleanup_major, IRP_MJ_CLEANUP);
	EXPECT_EQ(t, rec.cleanup_requestor, KernelMode);
	EXPECT_TRUE(t, rec.cleanup_process == p);
	EXPECT_TRUE(t, rec.cleanup_terminating);
	/* The handle was still open, the process's page still mapped and readable in its
	 * loaded address space. */
	EXPECT_EQ(t, rec.cleanup_handles, 1);
	EXPECT_TRUE(t, rec.cleanup_page_mapped);
	EXPECT_EQ(t, (ULONG)rec.cleanup_copy, 0);
	EXPECT_EQ(t, rec.cleanup_value, value);
	/* And after teardown the page's frame is free. */
	EXPECT_TRUE(t, mmt_frame_is_free(rec.cleanup_pfn));
	EXPECT_EQ(t, rec.calls, 0);
}

static void cleanup_runs_once_per_handle_even_after_a_fault(struct ktest *t)
{
	struct agent_script s;
	begin_script(&s);
	uint32_t a = agent_open(&s, IOT_DEVICE);
	uint32_t b = agent_open(&s, IOT_DEVICE);
	/* The program dies on a fault with both handles open. */
	agent_read64(&s, (uint64_t)&rec);
	NTSTATUS st;
	PEPROCESS p = agent_run(&s, 0, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, agent_result(t, p, a, 0), 0);
	EXPECT_EQ(t, agent_result(t, p, b, 0), 0);
	EXPECT_EQ(t, io_process_handles(p), 2);
	PsDestroyProcess(p);
	EXPECT_EQ(t, rec.cleanups, 2);
	EXPECT_TRUE(t, rec.cleanup_process == p);
}

static void deleted_device_is_freed_with_its_last_handle_without_cleanup(struct ktest *t)
{
	struct agent_script s;
	begin_script(&s);
	agent_open(&s, IOT_DEVICE);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, iot_device->ReferenceCount, 1);
	IoDeleteDevice(iot_device);
	iot_device = NULL;
	/* The name is gone at once. */
	struct agent_script s2;
	agent_begin(&s2);
	uint32_t open = agent_open(&s2, IOT_DEVICE);
	PEPROCESS q = agent_run_clean(t, &s2);
	if (q) {
		EXPECT_EQ(t, agent_result(t, q, open, 0), (ULONG)STATUS_OBJECT_NAME_NOT_FOUND);
		PsDestroyProcess(q);
	}
	/* The driver is gone: its cleanup is not called; the device object goes with the handle
	 * (the framework's pool and device-object counts). */
	PsDestroyProcess(p);
	EXPECT_EQ(t, rec.cleanups, 0);
}

static void completing_an_irp_twice(struct ktest *t)
{
	iot_death_case = t;
	struct agent_script s;
	begin_script(&s);
	agent_open(&s, IOT_DEVICE);
	agent_ioctl(&s, IOCTL_IOT_TWICE, iot_buf, 8, iot_buf, 8);
	agent_run_clean(t, &s);
}

static struct ktest_case io_ioctl_cases[] = {
	KTEST_CASE(buffered_round_trip_copies_back_information_bytes),
	KTEST_CASE(buffered_error_status_copies_nothing_back),
	KTEST_CASE(pending_request_is_waited_for_until_a_dpc_completes_it),
	KTEST_CASE(out_direct_driver_writes_through_the_mdl_locked_for_the_caller),
	KTEST_CASE(in_direct_locks_for_read_so_a_read_only_buffer_is_accepted),
	KTEST_CASE(neither_hands_the_driver_raw_pointers_in_the_callers_space),
	KTEST_CASE(bad_buffers_are_access_violations_for_the_caller),
	KTEST_CASE(unknown_names_handles_and_codes_get_their_statuses),
	KTEST_CASE(device_names_are_unique_and_bounded),
	KTEST_CASE(cleanup_reaches_the_driver_at_process_end_before_teardown),
	KTEST_CASE(cleanup_runs_once_per_handle_even_after_a_fault),
	KTEST_CASE(deleted_device_is_freed_with_its_last_handle_without_cleanup),
	KTEST_DEATH_CASE(completing_an_irp_twice, MULTIPLE_IRP_COMPLETE_REQUESTS),
	{ 0 }
};
KTEST_SUITE(io_ioctl, io_ioctl_cases, .init = io_ioctl_init, .exit = io_ioctl_exit);
