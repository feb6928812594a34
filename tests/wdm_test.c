/*
 * The everyday wdm.h: the memory routines, the helper macros, SAL annotations and
 * alloc_text pragmas compiling away, counted strings, DbgPrint / DbgPrintEx (formats and
 * the filter), ASSERT and PAGED_CODE (a real INT3: STATUS_BREAKPOINT, unhandled 0x1E),
 * ExGetPreviousMode, ProbeForRead / ProbeForWrite (their exceptions, the access violation a
 * real #PF at MmUserProbeAddress), device names and symbolic links.  mm/RULES.md I4, I7, I9.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/expect.h"
#include "tests/lib/scratch.h"
#include <wdm.h>
#include "kernel/faultcap.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/rtl.h"
#include "kernel/trap.h"
#include "mm/uvm.h"

/* ---- annotations and pragmas: this must compile as a WDK driver's code does ------------ */

DRIVER_DISPATCH WdmtDispatch;
_IRQL_requires_max_(PASSIVE_LEVEL) _Must_inspect_result_ static NTSTATUS
WdmtAnnotated(_In_reads_bytes_(Length) const VOID *Source, _Out_writes_bytes_(Length) PVOID Destination,
	      _In_ SIZE_T Length, _Inout_opt_ PULONG Count, _Outptr_opt_ PVOID *Unused);
#ifdef ALLOC_PRAGMA
#pragma alloc_text(PAGE, WdmtAnnotated)
#endif
#pragma code_seg("PAGE")
#pragma warning(disable : 4201)

_Use_decl_annotations_ __drv_maxIRQL(APC_LEVEL) static NTSTATUS WdmtAnnotated(const VOID *Source, PVOID Destination,
									 SIZE_T Length, PULONG Count, PVOID *Unused)
{
	PAGED_CODE();
	UNREFERENCED_PARAMETER(Unused);
	RtlCopyMemory(Destination, Source, Length);
	if (Count)
		(*Count)++;
	return STATUS_SUCCESS;
}
#pragma code_seg()

/* ---- memory routines and macros ------------------------------------------------------- */

struct wdmt_outer {
	ULONG a;
	LIST_ENTRY link;
	UCHAR b[3];
};

static void memory_routines_do_what_their_pages_say(struct ktest *t)
{
	UCHAR a[16], b[16];
	RtlFillMemory(a, sizeof a, 0x7E);
	EXPECT_EQ(t, a[0], 0x7E);
	EXPECT_EQ(t, a[15], 0x7E);
	RtlZeroMemory(a + 4, 4);
	EXPECT_EQ(t, a[3], 0x7E);
	EXPECT_EQ(t, a[4] | a[5] | a[6] | a[7], 0);
	EXPECT_EQ(t, a[8], 0x7E);
	for (int i = 0; i < 16; i++)
		b[i] = (UCHAR)i;
	RtlCopyMemory(a, b, 16);
	EXPECT_EQ(t, RtlCompareMemory(a, b, 16), 16);
	a[9] = 0xFF;
	EXPECT_EQ(t, RtlCompareMemory(a, b, 16), 9); /* equal bytes before the first difference */
	EXPECT_EQ(t, RtlCompareMemory(a, b, 0), 0);
	EXPECT_FALSE(t, RtlEqualMemory(a, b, 16));
	EXPECT_TRUE(t, RtlEqualMemory(a, b, 9));
	RtlCopyBytes(a, b, 16);
	EXPECT_TRUE(t, RtlEqualMemory(a, b, 16));
	/* RtlMoveMemory: overlapping, both ways. */
	RtlMoveMemory(a + 2, a, 10);
	EXPECT_EQ(t, a[2], 0);
	EXPECT_EQ(t, a[11], 9);
	RtlCopyMemory(a, b, 16);
	RtlMoveMemory(a, a + 3, 10);
	EXPECT_EQ(t, a[0], 3);
	EXPECT_EQ(t, a[9], 12);
	RtlSecureZeroMemory(a, 16);
	EXPECT_EQ(t, RtlCompareMemory(a, (UCHAR[16]){ 0 }, 16), 16);
}

static void macros_have_the_wdk_values(struct ktest *t)
{
	struct wdmt_outer o;
	EXPECT_EQ(t, FIELD_OFFSET(struct wdmt_outer, link), 8);
	EXPECT_EQ(t, FIELD_OFFSET(IRP, IoStatus), 0x30);
	EXPECT_EQ(t, FIELD_OFFSET(IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode), 0x18);
	EXPECT_TRUE(t, CONTAINING_RECORD(&o.link, struct wdmt_outer, link) == &o);
	EXPECT_TRUE(t, CONTAINING_RECORD(&o.b[0], struct wdmt_outer, b) == &o);
	EXPECT_EQ(t, RTL_NUMBER_OF(o.b), 3);
	EXPECT_EQ(t, ARRAYSIZE(o.b), 3);
	EXPECT_TRUE(t, NT_SUCCESS(STATUS_SUCCESS) && NT_SUCCESS(STATUS_PENDING) && NT_SUCCESS(STATUS_BUFFER_OVERFLOW) == 0);
	EXPECT_TRUE(t, NT_ERROR(STATUS_ACCESS_VIOLATION) && !NT_ERROR(STATUS_BUFFER_OVERFLOW));
	EXPECT_TRUE(t, NT_WARNING(STATUS_BUFFER_OVERFLOW) && NT_INFORMATION(0x40000000) && !NT_WARNING(STATUS_SUCCESS));
	UCHAR src[4] = { 1, 2, 3, 4 }, dst[4];
	ULONG count = 0;
	EXPECT_EQ(t, WdmtAnnotated(src, dst, 4, &count, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, count, 1);
	EXPECT_EQ(t, dst[3], 4);
	ASSERT(count == 1); /* true: nothing happens */
	NT_ASSERT(count);
	EXPECT_EQ(t, DBG, 1);
}

/* ---- strings -------------------------------------------------------------------------- */

static void unicode_strings(struct ktest *t)
{
	UNICODE_STRING s, u, d;
	RtlInitUnicodeString(&s, L"\\Device\\Abc");
	EXPECT_EQ(t, s.Length, 11 * 2);
	EXPECT_EQ(t, s.MaximumLength, 12 * 2);
	EXPECT_EQ(t, s.Buffer[1], 'D');
	RtlInitUnicodeString(&u, NULL);
	EXPECT_EQ(t, u.Length, 0);
	EXPECT_EQ(t, u.MaximumLength, 0);
	EXPECT_TRUE(t, u.Buffer == NULL);
	RtlInitUnicodeString(&u, L"\\DEVICE\\abc");
	EXPECT_FALSE(t, RtlEqualUnicodeString(&s, &u, FALSE));
	EXPECT_TRUE(t, RtlEqualUnicodeString(&s, &u, TRUE));
	UNICODE_STRING c = RTL_CONSTANT_STRING(L"\\Device\\Abc");
	EXPECT_EQ(t, c.Length, s.Length);
	EXPECT_EQ(t, c.MaximumLength, s.MaximumLength);
	EXPECT_TRUE(t, RtlEqualUnicodeString(&s, &c, FALSE));
	DECLARE_CONST_UNICODE_STRING(k, L"xyz");
	EXPECT_EQ(t, k.Length, 6);
	WCHAR buf[5];
	d.Buffer = buf;
	d.MaximumLength = sizeof buf;
	RtlCopyUnicodeString(&d, &s); /* cut to 5 characters, no room for a terminator */
	EXPECT_EQ(t, d.Length, 10);
	EXPECT_EQ(t, buf[4], 'i');
	RtlCopyUnicodeString(&d, NULL);
	EXPECT_EQ(t, d.Length, 0);
	STRING a;
	RtlInitString(&a, "ansi");
	EXPECT_EQ(t, a.Length, 4);
	EXPECT_EQ(t, a.MaximumLength, 5);
	RtlInitAnsiString(&a, NULL);
	EXPECT_EQ(t, a.Length, 0);
}

/* ---- DbgPrint ------------------------------------------------------------------------- */

static void dbgprint_formats_wide_and_counted_strings(struct ktest *t)
{
	UNICODE_STRING name;
	STRING ansi;
	RtlInitUnicodeString(&name, L"\\Device\\X");
	RtlInitString(&ansi, "counted");
	EXPECT_EQ(t, DbgPrint("%wZ|%ws|%S|%Z|%d|%5u|%-3s|%x|%I64x|%lx|%c|%%|%p\n", &name, L"wide", L"W", &ansi, -42,
			      7u, "ab", 0xBEEFu, 0x123456789ull, 0xABCDEF012ul, 'q', (void *)0x1000),
		  STATUS_SUCCESS);
	EXPECT_EQ(t, strcmp(dbgprint_last,
			    "\\Device\\X|wide|W|counted|-42|    7|ab |beef|123456789|abcdef012|q|%|0x0000000000001000\n"),
		  0);
	if (strcmp(dbgprint_last,
		   "\\Device\\X|wide|W|counted|-42|    7|ab |beef|123456789|abcdef012|q|%|0x0000000000001000\n"))
		KTEST_FAIL(t, "got '%s'", dbgprint_last);
	/* A '*' precision takes its int, and %Ix a 64-bit ULONG_PTR, before the next argument. */
	DbgPrint("%.*s|%*.*s|%Ix|%I32x|%s\n", 2, "abcd", 4, 1, "xyz", (ULONG_PTR)0x123456789ull, 0xCAFEu, "end");
	if (strcmp(dbgprint_last, "ab|   x|123456789|cafe|end\n"))
		KTEST_FAIL(t, "got '%s'", dbgprint_last);
	KdPrint(("KdPrint %d\n", 5));
	EXPECT_EQ(t, strcmp(dbgprint_last, "KdPrint 5\n"), 0);
}

static void dbgprintex_filters_by_level(struct ktest *t)
{
	ULONG printed = dbgprint_printed, filtered = dbgprint_filtered, saved = dbgprint_filter;
	DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "error %d\n", 1);
	EXPECT_EQ(t, strcmp(dbgprint_last, "error 1\n"), 0);
	DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_INFO_LEVEL, "info %d\n", 2);
	EXPECT_EQ(t, strcmp(dbgprint_last, "error 1\n"), 0); /* filtered out */
	DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_MASK | 0x8, "mask %d\n", 3); /* bit 3: info level */
	EXPECT_EQ(t, strcmp(dbgprint_last, "error 1\n"), 0);
	EXPECT_EQ(t, dbgprint_filtered - filtered, 2);
	dbgprint_filter = 1u << DPFLTR_INFO_LEVEL;
	DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_INFO_LEVEL, "info %d\n", 4);
	EXPECT_EQ(t, strcmp(dbgprint_last, "info 4\n"), 0);
	DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_MASK | 0x8, "mask %d\n", 5);
	EXPECT_EQ(t, strcmp(dbgprint_last, "mask 5\n"), 0);
	dbgprint_filter = saved;
	EXPECT_EQ(t, dbgprint_printed - printed, 3);
}

/* ---- ASSERT, PAGED_CODE, DbgBreakPoint ------------------------------------------------ */

static bool contains(const char *s, const char *part)
{
	for (size_t n = strlen(part); *s; s++)
		if (!strncmp(s, part, n))
			return true;
	return false;
}

static void failed_assert_is_a_breakpoint_a_handler_can_take(struct ktest *t)
{
	volatile int zero = 0;
	struct faultcap c = { 0 };
	__try {
		ASSERT(zero == 1);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(&c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	EXPECT_TRUE(t, c.faulted && c.from_cpu);
	EXPECT_EQ(t, c.status, STATUS_BREAKPOINT);
	EXPECT_EQ(t, c.vector, VEC_BREAKPOINT);
	EXPECT_EQ(t, c.rip, (uint64_t)dbg_break_instruction + 1); /* after the INT3, as the CPU leaves it */
	EXPECT_TRUE(t, contains(dbgprint_last, "zero == 1"));
}

static void paged_code_at_passive_level_is_silent(struct ktest *t)
{
	ULONG printed = dbgprint_printed;
	PAGED_CODE();
	KIRQL old;
	KeRaiseIrql(APC_LEVEL, &old);
	PAGED_CODE();
	KeLowerIrql(old);
	EXPECT_EQ(t, dbgprint_printed, printed);
}

static void failed_assert_unhandled(struct ktest *t)
{
	ktest_expect_stop(t, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_BREAKPOINT, (uint64_t)dbg_break_instruction + 1,
			  0, 0, KTEST_P_ALL);
	volatile int zero = 0;
	ASSERT(zero == 1);
}

static void paged_code_at_dispatch_level(struct ktest *t)
{
	ktest_expect_stop(t, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_BREAKPOINT, (uint64_t)dbg_break_instruction + 1,
			  0, 0, KTEST_P_ALL);
	KIRQL old;
	KeRaiseIrql(DISPATCH_LEVEL, &old);
	PAGED_CODE();
}

/* ---- ProbeForRead, ProbeForWrite, ExGetPreviousMode ---------------------------------- */

static bool probe(bool write, uint64_t va, SIZE_T len, ULONG align, struct faultcap *c)
{
	memset(c, 0, sizeof *c);
	__try {
		if (write)
			ProbeForWrite((PVOID)va, len, align);
		else
			ProbeForRead((PVOID)va, len, align);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}

static void probes_refuse_what_is_not_user_memory(struct ktest *t)
{
	struct faultcap c;
	uint64_t kva = (uint64_t)&c;
	/* Length 0: nothing is checked at all. */
	EXPECT_TRUE(t, probe(false, kva, 0, 8, &c));
	EXPECT_TRUE(t, probe(true, 1, 0, 16, &c));
	/* Misaligned: STATUS_DATATYPE_MISALIGNMENT, raised before the range is looked at. */
	EXPECT_FALSE(t, probe(false, 0x100002, 8, 4, &c));
	EXPECT_EQ(t, c.status, STATUS_DATATYPE_MISALIGNMENT);
	EXPECT_FALSE(t, c.from_cpu);
	EXPECT_FALSE(t, probe(true, kva | 1, 8, 2, &c));
	EXPECT_EQ(t, c.status, STATUS_DATATYPE_MISALIGNMENT);
	EXPECT_FALSE(t, probe(false, 0x100000, 8, 3, &c)); /* not a power of two up to 16 */
	EXPECT_EQ(t, c.status, STATUS_DATATYPE_MISALIGNMENT);
	/* Beyond MmUserProbeAddress, or wrapping: a real write at MmUserProbeAddress faults. */
	EXPECT_FALSE(t, probe(false, kva, 8, 1, &c));
	EXPECT_EQ(t, c.status, STATUS_ACCESS_VIOLATION);
	EXPECT_PAGE_FAULT(t, &c, PF_WRITE_NOT_PRESENT, MmUserProbeAddress);
	EXPECT_FALSE(t, probe(true, MmUserProbeAddress - 8, 9, 1, &c));
	EXPECT_PAGE_FAULT(t, &c, PF_WRITE_NOT_PRESENT, MmUserProbeAddress);
	EXPECT_FALSE(t, probe(false, 0x1000, ~0ull, 1, &c));
	EXPECT_PAGE_FAULT(t, &c, PF_WRITE_NOT_PRESENT, MmUserProbeAddress);
	/* Inside the user range, ProbeForRead checks nothing more; the last byte may be the
	 * one before MmUserProbeAddress. */
	EXPECT_TRUE(t, probe(false, MmUserProbeAddress - 8, 8, 8, &c));
	/* ProbeForWrite wants writable memory: with no process, there is none. */
	EXPECT_FALSE(t, probe(true, 0x100000, 8, 8, &c));
	EXPECT_EQ(t, c.status, STATUS_ACCESS_VIOLATION);
}

static void probe_for_write_wants_writable_pages_of_the_process(struct ktest *t)
{
	PEPROCESS p = agent_create_idle(0);
	ASSERT_TRUE(t, p != NULL);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID rw = NULL, ro = NULL;
	SIZE_T size = 2 * PAGE_SIZE;
	NTSTATUS a = ZwAllocateVirtualMemory(NtCurrentProcess(), &rw, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	size = PAGE_SIZE;
	NTSTATUS b = ZwAllocateVirtualMemory(NtCurrentProcess(), &ro, 0, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READONLY);
	struct faultcap c;
	bool ok_rw = probe(true, (uint64_t)rw, 2 * PAGE_SIZE, 8, &c);
	bool ok_ro = probe(true, (uint64_t)ro, 8, 8, &c);
	NTSTATUS ro_status = c.status;
	bool ok_read_ro = probe(false, (uint64_t)ro, 8, 8, &c);
	KeUnstackDetachProcess(&apc);
	PsDestroyProcess(p);
	EXPECT_EQ(t, a, STATUS_SUCCESS);
	EXPECT_EQ(t, b, STATUS_SUCCESS);
	EXPECT_TRUE(t, ok_rw);
	EXPECT_FALSE(t, ok_ro);
	EXPECT_EQ(t, ro_status, STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, ok_read_ro);
}

/* A device whose dispatch routine records the previous mode. */
static PDEVICE_OBJECT wdmt_device;
static KPROCESSOR_MODE wdmt_mode;
static int wdmt_calls;

NTSTATUS WdmtDispatch(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	wdmt_mode = ExGetPreviousMode();
	wdmt_calls++;
	Irp->IoStatus.Status = STATUS_SUCCESS;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_SUCCESS;
}

static void previous_mode_is_user_inside_a_system_call_only(struct ktest *t)
{
	EXPECT_EQ(t, ExGetPreviousMode(), KernelMode);
	ASSERT_EQ(t, IoCreateDeviceLite("WDMT", WdmtDispatch, NULL, &wdmt_device), STATUS_SUCCESS);
	wdmt_calls = 0;
	wdmt_mode = KernelMode;
	struct agent_script s;
	agent_begin(&s);
	agent_open(&s, "WDMT");
	uint32_t call = agent_ioctl(&s, CTL_CODE(FILE_DEVICE_UNKNOWN, 1, METHOD_NEITHER, FILE_ANY_ACCESS), 0, 0, 0, 0);
	PEPROCESS p = agent_run_clean(t, &s);
	if (p) {
		EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
		PsDestroyProcess(p);
	}
	IoDeleteDevice(wdmt_device);
	EXPECT_EQ(t, wdmt_calls, 1);
	EXPECT_EQ(t, wdmt_mode, UserMode);
	/* Back in the kernel's thread once the process ended. */
	EXPECT_EQ(t, ExGetPreviousMode(), KernelMode);
}

/* ---- names ---------------------------------------------------------------------------- */

static DRIVER_OBJECT wdmt_driver = { .Type = IO_TYPE_DRIVER, .Size = sizeof(DRIVER_OBJECT) };

static void device_names_and_symbolic_links(struct ktest *t)
{
	UNICODE_STRING name, other, link, bad;
	PDEVICE_OBJECT d = NULL, e = NULL;
	RtlInitUnicodeString(&name, L"\\Device\\WdmTest");
	RtlInitUnicodeString(&other, L"\\device\\WDMTEST");
	ASSERT_EQ(t, IoCreateDevice(&wdmt_driver, 24, &name, FILE_DEVICE_UNKNOWN, 0, TRUE, &d), STATUS_SUCCESS);
	EXPECT_TRUE(t, d->Flags & DO_DEVICE_INITIALIZING);
	EXPECT_TRUE(t, d->Flags & DO_EXCLUSIVE);
	EXPECT_EQ(t, d->StackSize, 1);
	EXPECT_EQ(t, d->Size, sizeof(DEVICE_OBJECT) + 24);
	EXPECT_TRUE(t, wdmt_driver.DeviceObject == d);
	ASSERT_TRUE(t, d->DeviceExtension != NULL);
	EXPECT_EQ(t, RtlCompareMemory(d->DeviceExtension, (UCHAR[24]){ 0 }, 24), 24);
	/* Names compare without regard to case. */
	EXPECT_EQ(t, IoCreateDevice(&wdmt_driver, 0, &other, FILE_DEVICE_UNKNOWN, 0, FALSE, &e),
		  STATUS_OBJECT_NAME_COLLISION);
	RtlInitUnicodeString(&bad, L"Device\\Relative");
	EXPECT_EQ(t, IoCreateDevice(&wdmt_driver, 0, &bad, FILE_DEVICE_UNKNOWN, 0, FALSE, &e),
		  STATUS_OBJECT_PATH_SYNTAX_BAD);
	RtlInitUnicodeString(&bad, L"\\Device\\N\x00e9");
	EXPECT_EQ(t, IoCreateDevice(&wdmt_driver, 0, &bad, FILE_DEVICE_UNKNOWN, 0, FALSE, &e),
		  STATUS_OBJECT_NAME_INVALID);
	RtlInitUnicodeString(&bad, L"");
	EXPECT_EQ(t, IoCreateDevice(&wdmt_driver, 0, &bad, FILE_DEVICE_UNKNOWN, 0, FALSE, &e),
		  STATUS_OBJECT_NAME_INVALID);
	EXPECT_EQ(t, IoCreateDevice(NULL, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &e), STATUS_INVALID_PARAMETER);
	/* An unnamed device. */
	ASSERT_EQ(t, IoCreateDevice(&wdmt_driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &e), STATUS_SUCCESS);
	EXPECT_TRUE(t, e->DeviceExtension == NULL);
	EXPECT_TRUE(t, wdmt_driver.DeviceObject == e && e->NextDevice == d);
	/* Links: the three spellings of \??, collisions, bad names, deletion. */
	RtlInitUnicodeString(&link, L"\\DosDevices\\WdmTest");
	EXPECT_EQ(t, IoCreateSymbolicLink(&link, &name), STATUS_SUCCESS);
	RtlInitUnicodeString(&bad, L"\\??\\wdmtest");
	EXPECT_EQ(t, IoCreateSymbolicLink(&bad, &name), STATUS_OBJECT_NAME_COLLISION);
	RtlInitUnicodeString(&bad, L"\\GLOBAL??\\WdmTest");
	EXPECT_EQ(t, IoCreateSymbolicLink(&bad, &name), STATUS_OBJECT_NAME_COLLISION);
	RtlInitUnicodeString(&bad, L"\\Elsewhere\\WdmTest");
	EXPECT_EQ(t, IoCreateSymbolicLink(&bad, &name), STATUS_OBJECT_NAME_INVALID);
	RtlInitUnicodeString(&bad, L"\\??\\");
	EXPECT_EQ(t, IoCreateSymbolicLink(&bad, &name), STATUS_OBJECT_NAME_INVALID);
	RtlInitUnicodeString(&bad, L"\\??\\WdmTest");
	EXPECT_EQ(t, IoDeleteSymbolicLink(&bad), STATUS_SUCCESS);
	EXPECT_EQ(t, IoDeleteSymbolicLink(&link), STATUS_OBJECT_NAME_NOT_FOUND);
	IoDeleteDevice(e);
	IoDeleteDevice(d);
	EXPECT_TRUE(t, wdmt_driver.DeviceObject == NULL);
}

/* ---- opens: the top of the stack, and the devices that cannot be opened -------------- */

static PDEVICE_OBJECT filter_lower;
static int filter_calls;
static UCHAR filter_majors[8];

static NTSTATUS WdmtFilter(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	if (filter_calls < 8)
		filter_majors[filter_calls] = IoGetCurrentIrpStackLocation(Irp)->MajorFunction;
	filter_calls++;
	IoSkipCurrentIrpStackLocation(Irp);
	return IoCallDriver(filter_lower, Irp);
}

static DRIVER_OBJECT filter_driver = { .Type = IO_TYPE_DRIVER, .Size = sizeof(DRIVER_OBJECT) };

static void user_requests_go_to_the_top_of_the_stack(struct ktest *t)
{
	PDEVICE_OBJECT upper = NULL;
	for (int mj = 0; mj <= IRP_MJ_MAXIMUM_FUNCTION; mj++)
		filter_driver.MajorFunction[mj] = WdmtFilter;
	ASSERT_EQ(t, IoCreateDeviceLite("WDMS", WdmtDispatch, NULL, &filter_lower), STATUS_SUCCESS);
	ASSERT_EQ(t, IoCreateDevice(&filter_driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &upper), STATUS_SUCCESS);
	upper->Flags &= ~DO_DEVICE_INITIALIZING;
	EXPECT_TRUE(t, IoAttachDeviceToDeviceStack(upper, filter_lower) == filter_lower);
	filter_calls = wdmt_calls = 0;
	struct agent_script s;
	agent_begin(&s);
	uint32_t open = agent_open(&s, "WDMS");
	uint32_t call = agent_ioctl(&s, CTL_CODE(FILE_DEVICE_UNKNOWN, 2, METHOD_NEITHER, FILE_ANY_ACCESS), 0, 0, 0, 0);
	PEPROCESS p = agent_run_clean(t, &s);
	if (p) {
		EXPECT_EQ(t, agent_result(t, p, open, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, call, 0), 0);
		PsDestroyProcess(p); /* cleanup and close, through the filter too */
	}
	IoDetachDevice(filter_lower);
	IoDeleteDevice(upper);
	IoDeleteDevice(filter_lower);
	EXPECT_EQ(t, filter_calls, 4);
	EXPECT_EQ(t, filter_majors[0], IRP_MJ_CREATE);
	EXPECT_EQ(t, filter_majors[1], IRP_MJ_DEVICE_CONTROL);
	EXPECT_EQ(t, filter_majors[2], IRP_MJ_CLEANUP);
	EXPECT_EQ(t, filter_majors[3], IRP_MJ_CLOSE);
	EXPECT_EQ(t, wdmt_calls, 1); /* the lower driver got the IOCTL the filter passed down */
}

static void initializing_and_exclusive_devices_refuse_opens(struct ktest *t)
{
	PDEVICE_OBJECT d = NULL;
	ASSERT_EQ(t, IoCreateDeviceLite("WDMX", WdmtDispatch, NULL, &d), STATUS_SUCCESS);
	d->Flags |= DO_DEVICE_INITIALIZING;
	struct agent_script s;
	agent_begin(&s);
	uint32_t first = agent_open(&s, "WDMX");
	PEPROCESS p = agent_run_clean(t, &s);
	if (p) {
		EXPECT_EQ(t, agent_result(t, p, first, 0), 0xC000000E); /* STATUS_NO_SUCH_DEVICE */
		PsDestroyProcess(p);
	}
	d->Flags = (d->Flags & ~DO_DEVICE_INITIALIZING) | DO_EXCLUSIVE;
	agent_begin(&s);
	first = agent_open(&s, "WDMX");
	uint32_t second = agent_open(&s, "WDMX");
	p = agent_run_clean(t, &s);
	if (p) {
		EXPECT_EQ(t, agent_result(t, p, first, 0), 0);
		EXPECT_EQ(t, agent_result(t, p, second, 0), 0xC0000022); /* STATUS_ACCESS_DENIED */
		EXPECT_EQ(t, io_process_handles(p), 1);
		PsDestroyProcess(p);
	}
	IoDeleteDevice(d);
}

static struct ktest_case wdm_cases[] = {
	KTEST_CASE(user_requests_go_to_the_top_of_the_stack),
	KTEST_CASE(initializing_and_exclusive_devices_refuse_opens),
	KTEST_CASE(memory_routines_do_what_their_pages_say),
	KTEST_CASE(macros_have_the_wdk_values),
	KTEST_CASE(unicode_strings),
	KTEST_CASE(dbgprint_formats_wide_and_counted_strings),
	KTEST_CASE(dbgprintex_filters_by_level),
	KTEST_CASE(failed_assert_is_a_breakpoint_a_handler_can_take),
	KTEST_CASE(paged_code_at_passive_level_is_silent),
	KTEST_DEATH_CASE_P1(failed_assert_unhandled, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_BREAKPOINT),
	KTEST_DEATH_CASE_P1(paged_code_at_dispatch_level, KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_BREAKPOINT),
	KTEST_CASE(probes_refuse_what_is_not_user_memory),
	KTEST_CASE(probe_for_write_wants_writable_pages_of_the_process),
	KTEST_CASE(previous_mode_is_user_inside_a_system_call_only),
	KTEST_CASE(device_names_and_symbolic_links),
	{0}
};
KTEST_SUITE(wdm, wdm_cases);
