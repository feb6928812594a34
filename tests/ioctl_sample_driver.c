/*
 * A driver in the style of Microsoft's IOCTL sample (sioctl): one device, one I/O control code
 * per transfer method, each copying the caller's input to its output transformed (upper-cased
 * here), and the io_sample suite, which plays the sample's user-mode application with the
 * agent.
 *
 *   METHOD_BUFFERED    the system buffer, in place
 *   METHOD_IN_DIRECT   input from the system buffer, output through the I/O manager's MDL
 *   METHOD_OUT_DIRECT  mapped with MmGetSystemAddressForMdlSafe (as the sample does for both)
 *   METHOD_NEITHER     the driver probes and locks both raw user buffers itself
 *                      (IoAllocateMdl + MmProbeAndLockPages(UserMode) inside __try), maps them
 *                      NormalPagePriority | MdlMappingNoExecute, and lets MmUnlockPages release
 *                      the mappings: no MmUnmapLockedPages (the release table)
 *   METHOD_NEITHER     (a second code) the raw pointers read and written directly inside
 *                      try/except after ProbeForRead/ProbeForWrite, as the sample reads its
 *                      input: the SMAP window opens inside the try and closes at its end
 *                      (mm/RULES.md decision 8)
 *
 * The suite proves each method's round trip from ring 3, and that a bad buffer (NULL, a
 * kernel address, read-only output) is STATUS_ACCESS_VIOLATION for the caller, raised by the
 * I/O manager's probe or, for METHOD_NEITHER, by the driver's own, with nothing left locked
 * or mapped; METHOD_IN_DIRECT's read-only output passes the read probe, is mapped read-only,
 * and the driver's write is bug check 0xBE (a death case) (the framework's accounting after every case; the driver's mappings read from the
 * kernel's page tables).
 */
#include "kernel/ktest.h"
#include "tests/ioctl_sample_driver.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "kernel/io/io.h"
#include "kernel/cpu.h"
#include "kernel/faultcap.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"

/* ---- the driver ----------------------------------------------------------------------- */

#define SIOCTL_MAPPINGS 2

static PDEVICE_OBJECT sioctl_device;

/* What the driver did (the sample prints it; the tests read it). */
static struct {
	int calls;
	NTSTATUS status;
	/* METHOD_NEITHER, while both buffers were locked. */
	PEPROCESS in_process, out_process;
	uint64_t process_locked;
	/* The direct METHOD_NEITHER code: RFLAGS.AC inside the try after the accesses, and
	 * after it; the same input read again after the try, outside any driver __try. */
	int ac_inside, ac_after;
	bool read_after_ok;
	struct faultcap after;
	/* The system mappings the driver made, any method. */
	uint64_t mapped[SIOCTL_MAPPINGS];
	int nmapped;
} sioctl_log;

/* Set by the death case below: the driver's own write must stop the machine, and only the
 * driver knows the address first; the test's expectation is printed just before it. */
static struct ktest *sioctl_expect_0xbe;

static void sioctl_note_mapping(PVOID va)
{
	if (sioctl_log.nmapped < SIOCTL_MAPPINGS)
		sioctl_log.mapped[sioctl_log.nmapped++] = (uint64_t)va;
}

/* The transformation: ASCII letters upper-cased, other bytes as they are. */
static void sioctl_transform(PUCHAR dst, const UCHAR *src, ULONG n)
{
	for (ULONG i = 0; i < n; i++)
		dst[i] = src[i] >= 'a' && src[i] <= 'z' ? (UCHAR)(src[i] - 'a' + 'A') : src[i];
}

/* Probe and lock a raw user buffer for `op`, then map it.  The locked MDL (*mdl), or a
 * status with nothing left behind: the probe's exception, or no system PTEs. */
static NTSTATUS sioctl_lock_user_buffer(PVOID va, ULONG len, LOCK_OPERATION op, PMDL *mdl, PUCHAR *mapped)
{
	PMDL m = IoAllocateMdl(va, len, FALSE, TRUE, NULL);
	if (!m)
		return STATUS_INSUFFICIENT_RESOURCES;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(m, UserMode, op);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	if (st) {
		IoFreeMdl(m);
		return st;
	}
	PUCHAR sys = MmGetSystemAddressForMdlSafe(m, NormalPagePriority | MdlMappingNoExecute);
	if (!sys) {
		MmUnlockPages(m);
		IoFreeMdl(m);
		return STATUS_INSUFFICIENT_RESOURCES;
	}
	sioctl_note_mapping(sys);
	*mdl = m;
	*mapped = sys;
	return STATUS_SUCCESS;
}

/* MmUnlockPages releases the system mapping first (the release table for MDLs built by
 * MmProbeAndLockPages): no MmUnmapLockedPages. */
static void sioctl_release_user_buffer(PMDL m)
{
	MmUnlockPages(m);
	IoFreeMdl(m);
}

/* METHOD_NEITHER: the raw pointers, valid only here, in the caller's context. */
static NTSTATUS sioctl_neither(PIRP Irp, PIO_STACK_LOCATION sp, ULONG_PTR *info)
{
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	PMDL in_mdl, out_mdl;
	PUCHAR in, out;
	NTSTATUS st = sioctl_lock_user_buffer(sp->Parameters.DeviceIoControl.Type3InputBuffer, in_len, IoReadAccess,
					      &in_mdl, &in);
	if (st)
		return st;
	st = sioctl_lock_user_buffer(Irp->UserBuffer, out_len, IoWriteAccess, &out_mdl, &out);
	if (st) {
		sioctl_release_user_buffer(in_mdl);
		return st;
	}
	sioctl_log.in_process = in_mdl->Process;
	sioctl_log.out_process = out_mdl->Process;
	sioctl_log.process_locked = ps_current()->mm.locked_pages;
	*info = MIN(in_len, out_len);
	sioctl_transform(out, in, (ULONG)*info);
	sioctl_release_user_buffer(out_mdl);
	sioctl_release_user_buffer(in_mdl);
	return STATUS_SUCCESS;
}

#define IOCTL_SIOCTL_NEITHER_DIRECT CTL_CODE(SIOCTL_TYPE, 0x904, METHOD_NEITHER, FILE_ANY_ACCESS)

/* METHOD_NEITHER as drivers write it for small buffers: probe, then use the raw pointers,
 * all inside try (the ProbeForRead page: later accesses must be inside try too).  No
 * volatile anywhere: the rewriter sees to the locals. */
static NTSTATUS sioctl_neither_direct(PIRP Irp, PIO_STACK_LOCATION sp, ULONG_PTR *info)
{
	PUCHAR in = sp->Parameters.DeviceIoControl.Type3InputBuffer;
	PUCHAR out = Irp->UserBuffer;
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	NTSTATUS st = STATUS_SUCCESS;
	ULONG_PTR done = 0;
	try {
		ProbeForRead(in, in_len, sizeof(UCHAR));
		ProbeForWrite(out, out_len, sizeof(UCHAR));
		sioctl_transform(out, in, MIN(in_len, out_len));
		done = MIN(in_len, out_len);
		sioctl_log.ac_inside = (read_rflags() & RFLAGS_AC) != 0;
	} except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
		done = 0;
	}
	sioctl_log.ac_after = (read_rflags() & RFLAGS_AC) != 0;
	/* Outside the try the window is shut: the machine's own probe sees SMAP's fault. */
	uint8_t b;
	sioctl_log.read_after_ok = faultcap_try_load8((uint64_t)in, &b, &sioctl_log.after);
	*info = done;
	return st;
}

/* The direct methods: input in the system buffer, output through the I/O manager's MDL. */
static NTSTATUS sioctl_direct(PIRP Irp, PIO_STACK_LOCATION sp, ULONG_PTR *info)
{
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	PUCHAR out = MmGetSystemAddressForMdlSafe(Irp->MdlAddress, NormalPagePriority | MdlMappingNoExecute);
	if (!out)
		return STATUS_INSUFFICIENT_RESOURCES;
	sioctl_note_mapping(out);
	*info = MIN(in_len, out_len);
	if (sioctl_expect_0xbe) {
		struct pt_query q;
		pt_query(&kernel_root, (uint64_t)out, &q);
		ktest_expect_stop(sioctl_expect_0xbe, ATTEMPTED_WRITE_TO_READONLY_MEMORY, (ULONG_PTR)out,
				  q.entry[q.level], 0, 0, KTEST_P_ALL);
	}
	sioctl_transform(out, Irp->AssociatedIrp.SystemBuffer, (ULONG)*info);
	return STATUS_SUCCESS;
}

static NTSTATUS sioctl_device_control(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	ULONG_PTR info = 0;
	NTSTATUS st;
	sioctl_log.calls++;
	if (!in_len || !out_len) {
		st = STATUS_INVALID_PARAMETER;
	} else {
		switch (sp->Parameters.DeviceIoControl.IoControlCode) {
		case IOCTL_SIOCTL_METHOD_BUFFERED:
			/* One buffer, input first, the output over it. */
			info = MIN(in_len, out_len);
			sioctl_transform(Irp->AssociatedIrp.SystemBuffer, Irp->AssociatedIrp.SystemBuffer, (ULONG)info);
			st = STATUS_SUCCESS;
			break;
		case IOCTL_SIOCTL_METHOD_IN_DIRECT:
		case IOCTL_SIOCTL_METHOD_OUT_DIRECT:
			st = sioctl_direct(Irp, sp, &info);
			break;
		case IOCTL_SIOCTL_METHOD_NEITHER:
			st = sioctl_neither(Irp, sp, &info);
			break;
		case IOCTL_SIOCTL_NEITHER_DIRECT:
			st = sioctl_neither_direct(Irp, sp, &info);
			break;
		default:
			st = STATUS_INVALID_DEVICE_REQUEST;
			break;
		}
	}
	sioctl_log.status = st;
	Irp->IoStatus.Status = st;
	Irp->IoStatus.Information = NT_SUCCESS(st) ? info : 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return st;
}

/* DriverEntry and unload, as far as mdlab has them. */
NTSTATUS sioctl_load(void)
{
	memset(&sioctl_log, 0, sizeof sioctl_log);
	return IoCreateDeviceLite(SIOCTL_DEVICE, sioctl_device_control, NULL, &sioctl_device);
}

void sioctl_unload(void)
{
	if (sioctl_device)
		IoDeleteDevice(sioctl_device);
	sioctl_device = NULL;
}

/* ---- the application: the agent -------------------------------------------------------- */

/* 64 KiB committed read-write for the buffers, at a scratch address of the case. */
#define APP_BUF_SIZE 0x10000ul
static uint64_t app_buf;
/* The input, 16 bytes, and what the driver makes of it. */
static const char app_input[16] = "hello, sioctl 6!";
static const char app_output[16] = "HELLO, SIOCTL 6!";

/* The buffer, the input written at app_buf, the device opened. */
static void app_prologue(struct agent_script *s)
{
	uint64_t q[2];
	memcpy(q, app_input, sizeof q);
	agent_alloc(s, app_buf, APP_BUF_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_write64(s, app_buf, q[0]);
	agent_write64(s, app_buf + 8, q[1]);
	agent_open(s, SIOCTL_DEVICE);
}

/* ---- cases ---------------------------------------------------------------------------- */

static int io_sample_init(struct ktest *t)
{
	(void)t;
	app_buf = scratch_uva(APP_BUF_SIZE, 0);
	return sioctl_load() != STATUS_SUCCESS;
}
static void io_sample_exit(struct ktest *t) { (void)t; sioctl_unload(); }

static const struct {
	const char *name;
	ULONG code;
} methods[] = {
	{ "buffered", IOCTL_SIOCTL_METHOD_BUFFERED },
	{ "in direct", IOCTL_SIOCTL_METHOD_IN_DIRECT },
	{ "out direct", IOCTL_SIOCTL_METHOD_OUT_DIRECT },
	{ "neither", IOCTL_SIOCTL_METHOD_NEITHER },
	{ "neither direct", IOCTL_SIOCTL_NEITHER_DIRECT },
};

static void each_method_round_trips_from_ring_3(struct ktest *t)
{
	uint64_t expect[2];
	memcpy(expect, app_output, sizeof expect);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++) {
		/* Output across a page boundary, in pages the agent never touched; room for 24. */
		const uint64_t out = app_buf + (m + 1) * 2 * PAGE_SIZE - 8;
		struct agent_script s;
		agent_begin(&s);
		app_prologue(&s);
		agent_write64(&s, out + 16, ~0ull);
		uint32_t call = agent_ioctl(&s, methods[m].code, app_buf, 16, out, 24);
		uint32_t r0 = agent_read64(&s, out);
		uint32_t r1 = agent_read64(&s, out + 8);
		uint32_t r2 = agent_read64(&s, out + 16);
		memset(&sioctl_log, 0, sizeof sioctl_log);
		PEPROCESS p = agent_run_clean(t, &s);
		ASSERT_TRUE(t, p != NULL);
		uint64_t status = agent_result(t, p, call, 0), out0 = agent_result(t, p, r0, 0),
			 out1 = agent_result(t, p, r1, 0);
		if (status != 0 || out0 != expect[0] || out1 != expect[1])
			KTEST_FAIL(t, "%s: status 0x%lx, output 0x%lx 0x%lx", methods[m].name, status, out0, out1);
		/* Information was 16: the last 8 bytes of the output are the agent's. */
		EXPECT_EQ(t, agent_result(t, p, r2, 0), ~0ull);
		EXPECT_EQ(t, sioctl_log.calls, 1);
		EXPECT_EQ(t, p->mm.locked_pages, 0);
		/* The driver's system mappings are gone: MmUnlockPages (the I/O manager's at
		 * completion, or the driver's own for METHOD_NEITHER) released them. */
		for (int i = 0; i < sioctl_log.nmapped; i++)
			if (mmt_va_mapped(sioctl_log.mapped[i]))
				KTEST_FAIL(t, "%s: system mapping 0x%lx still present", methods[m].name,
					   sioctl_log.mapped[i]);
		if (methods[m].code == IOCTL_SIOCTL_METHOD_NEITHER) {
			EXPECT_EQ(t, sioctl_log.nmapped, 2);
			EXPECT_TRUE(t, sioctl_log.in_process == p && sioctl_log.out_process == p);
			/* One input page, two output pages. */
			EXPECT_EQ(t, sioctl_log.process_locked, 3);
		}
		if (methods[m].code == IOCTL_SIOCTL_NEITHER_DIRECT) {
			/* The window was open for the rest of the try, and shut after it: a kernel
			 * read of the same user byte is SMAP's fault (present, read, supervisor). */
			EXPECT_EQ(t, sioctl_log.nmapped, 0);
			EXPECT_EQ(t, sioctl_log.ac_inside, 1);
			EXPECT_EQ(t, sioctl_log.ac_after, 0);
			EXPECT_FALSE(t, sioctl_log.read_after_ok);
			EXPECT_EQ(t, sioctl_log.after.vector, VEC_PAGE_FAULT);
			EXPECT_EQ(t, sioctl_log.after.error_code, PF_P);
			EXPECT_EQ(t, sioctl_log.after.cr2, app_buf);
		}
		for (uint64_t va = ALIGN_DOWN(out, PAGE_SIZE); va < out + 24; va += PAGE_SIZE) {
			struct pt_query q;
			pt_query(&p->mm.root, va, &q);
			EXPECT_TRUE(t, q.present);
			EXPECT_EQ(t, pfn_entry(q.pa >> PAGE_SHIFT)->lock_count, 0);
		}
		PsDestroyProcess(p);
	}
}

static void bad_buffers_are_access_violations_with_nothing_leaked(struct ktest *t)
{
	const uint64_t kernel = (uint64_t)&sioctl_log, ro = USER_PARAMS_VA, in = app_buf, out = app_buf + PAGE_SIZE;
	const struct {
		const char *what;
		uint64_t in, out;
		bool in_direct_ok;   /* IN_DIRECT probes its output for read: the probe accepts a
				      * read-only page, the driver's write stops (the death case) */
	} bad[] = {
		{ "NULL input", 0, out, false },
		{ "kernel input", kernel, out, false },
		{ "NULL output", in, 0, false },
		{ "kernel output", in, kernel, false },
		{ "read-only output", in, ro, true },
	};
	uint32_t call[ARRAY_SIZE(methods)][ARRAY_SIZE(bad)];
	int neither_calls = 0;
	struct agent_script s;
	agent_begin(&s);
	app_prologue(&s);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++)
		for (size_t b = 0; b < ARRAY_SIZE(bad); b++) {
			if (methods[m].code == IOCTL_SIOCTL_METHOD_IN_DIRECT && bad[b].in_direct_ok) {
				call[m][b] = ~0u;
				continue;
			}
			neither_calls += METHOD_FROM_CTL_CODE(methods[m].code) == METHOD_NEITHER;
			call[m][b] = agent_ioctl(&s, methods[m].code, bad[b].in, 16, bad[b].out, 16);
		}
	agent_report(&s, 1000, 7);
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++)
		for (size_t b = 0; b < ARRAY_SIZE(bad); b++)
			if (call[m][b] != ~0u && agent_result(t, p, call[m][b], 0) != (ULONG)STATUS_ACCESS_VIOLATION)
				KTEST_FAIL(t, "%s, %s: status 0x%lx, expected STATUS_ACCESS_VIOLATION", methods[m].name,
					   bad[b].what, agent_result(t, p, call[m][b], 0));
	/* Only METHOD_NEITHER reached the driver, whose own probe (or, for the direct code, its
	 * access inside try) refused the buffer. */
	EXPECT_EQ(t, sioctl_log.calls, neither_calls);
	EXPECT_EQ(t, (ULONG)sioctl_log.status, (ULONG)STATUS_ACCESS_VIOLATION);
	/* NULL output after a good input: the input was mapped, then released by its unlock. */
	for (int i = 0; i < sioctl_log.nmapped; i++)
		EXPECT_FALSE(t, mmt_va_mapped(sioctl_log.mapped[i]));
	EXPECT_EQ(t, p->mm.locked_pages, 0);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(p, 1000, &v) && v == 7);
	PsDestroyProcess(p);
}

static void empty_buffers_are_invalid_parameters(struct ktest *t)
{
	uint32_t call[ARRAY_SIZE(methods)][2];
	struct agent_script s;
	agent_begin(&s);
	app_prologue(&s);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++) {
		call[m][0] = agent_ioctl(&s, methods[m].code, app_buf, 0, app_buf + PAGE_SIZE, 16);
		call[m][1] = agent_ioctl(&s, methods[m].code, app_buf, 16, app_buf + PAGE_SIZE, 0);
	}
	PEPROCESS p = agent_run_clean(t, &s);
	ASSERT_TRUE(t, p != NULL);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++)
		for (int k = 0; k < 2; k++)
			if (agent_result(t, p, call[m][k], 0) != (ULONG)STATUS_INVALID_PARAMETER)
				KTEST_FAIL(t, "%s, %s length 0: status 0x%lx", methods[m].name, k ? "output" : "input",
					   agent_result(t, p, call[m][k], 0));
	EXPECT_EQ(t, sioctl_log.calls, 2 * (int)ARRAY_SIZE(methods));
	PsDestroyProcess(p);
}

/* METHOD_IN_DIRECT with a read-only output buffer (the process's read-only parameter page):
 * the I/O manager's read probe accepts it, but the system mapping is read-only (mm/RULES.md
 * decision 9), and the driver's write through it is 0xBE (address, PTE, 0, 0), not a change
 * of memory the process could not write. */
static void in_direct_read_only_output_stops_the_driver_write(struct ktest *t)
{
	struct agent_script s;
	agent_begin(&s);
	app_prologue(&s);
	agent_ioctl(&s, IOCTL_SIOCTL_METHOD_IN_DIRECT, app_buf, 16, USER_PARAMS_VA + 8, 16);
	sioctl_expect_0xbe = t;
	agent_run_clean(t, &s);
	KTEST_FAIL(t, "the driver's write through a read-only mapping did not stop the machine");
}

/* The same through a NoWrite view of kernel pool: a driver mapped a zeroed pool page into the
 * process with MdlMappingNoWrite; the process hands that view to METHOD_IN_DIRECT as its
 * output.  The driver's write stops with 0xBE instead of changing the pool page. */
static void in_direct_output_in_a_no_write_pool_view_stops_the_driver_write(struct ktest *t)
{
	const uint64_t view = scratch_uva(PAGE_SIZE, 0);
	struct agent_script s;
	agent_begin(&s);
	app_prologue(&s);
	agent_ioctl(&s, IOCTL_SIOCTL_METHOD_IN_DIRECT, app_buf, 16, view + 0x20, 16);
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);
	void *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, 0x56574E53u /* 'SNWV' */);
	PMDL m = pool ? IoAllocateMdl(pool, PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	ASSERT_TRUE(t, m != NULL);
	MmBuildMdlForNonPagedPool(m);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID got = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)view, FALSE,
						 NormalPagePriority | MdlMappingNoWrite);
	KeUnstackDetachProcess(&apc);
	ASSERT_TRUE(t, got == (PVOID)view);
	sioctl_expect_0xbe = t;
	PsRunProcess(p);
	KTEST_FAIL(t, "the driver's write through a read-only mapping did not stop the machine");
}

static struct ktest_case io_sample_cases[] = {
	KTEST_CASE(each_method_round_trips_from_ring_3),
	KTEST_CASE(bad_buffers_are_access_violations_with_nothing_leaked),
	KTEST_CASE(empty_buffers_are_invalid_parameters),
	KTEST_DEATH_CASE(in_direct_read_only_output_stops_the_driver_write, ATTEMPTED_WRITE_TO_READONLY_MEMORY),
	KTEST_DEATH_CASE(in_direct_output_in_a_no_write_pool_view_stops_the_driver_write,
			 ATTEMPTED_WRITE_TO_READONLY_MEMORY),
	{ 0 }
};
KTEST_SUITE(io_sample, io_sample_cases, .init = io_sample_init, .exit = io_sample_exit);
