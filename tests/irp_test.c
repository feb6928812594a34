/*
 * IRPs from kernel code: IoAllocateIrp / IoInitializeIrp / IoReuseIrp / IoFreeIrp, the stack
 * of locations (IoGetNextIrpStackLocation, IoCopyCurrentIrpStackLocationToNext,
 * IoSkipCurrentIrpStackLocation), IoCallDriver down a stack of two devices
 * (IoAttachDeviceToDeviceStack / IoDetachDevice), completion routines and their conditions,
 * IoMarkIrpPending, IoBuildDeviceIoControlRequest and IoBuildSynchronousFsdRequest; and the
 * bug checks: 0x35, 0x44, 0xC9/0x01-0x06, 0xC9/0x0E.  mm/RULES.md rules I1-I6.
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/dpc.h"
#include "kernel/lib.h"
#include "kernel/smp/smp.h"

#define IRPT_CODE_BUF CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define IRPT_CODE_OUT CTL_CODE(FILE_DEVICE_UNKNOWN, 0x802, METHOD_OUT_DIRECT, FILE_ANY_ACCESS)
#define IRPT_CODE_NEITHER CTL_CODE(FILE_DEVICE_UNKNOWN, 0x803, METHOD_NEITHER, FILE_ANY_ACCESS)

/* Two test drivers: the lower one completes, the upper one passes requests down. */
static DRIVER_OBJECT lower_driver, upper_driver;
static PDEVICE_OBJECT lower, upper;

/* What the dispatch and completion routines saw. */
static struct {
	int lower_calls, upper_calls, completions;
	PIO_STACK_LOCATION lower_sp, upper_sp;
	UCHAR major;
	ULONG code, in_len, out_len, read_len;
	PVOID system_buffer, type3, user_buffer;
	PMDL mdl;
	PDEVICE_OBJECT completion_device[2];
	PVOID completion_context[2];
	BOOLEAN pending_returned[2];
	NTSTATUS status;          /* what the lower driver completes with */
	bool pend;                /* the lower driver marks pending and returns STATUS_PENDING */
	enum { UPPER_COPY, UPPER_SKIP, UPPER_PLAIN } upper_mode;
	NTSTATUS upper_completion_result;
	bool upper_only_on_success;
	bool free_in_flight;
	bool raise_irql;
	bool complete_at_high_level;
	bool lower_device_ok, upper_device_ok; /* the location named the device called */
} rec;

static NTSTATUS lower_dispatch(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	rec.lower_calls++;
	rec.lower_sp = sp;
	rec.major = sp->MajorFunction;
	rec.lower_device_ok = sp->DeviceObject == DeviceObject;
	if (rec.free_in_flight)
		IoFreeIrp(Irp);
	if (rec.raise_irql) {
		KIRQL old;
		KeRaiseIrql(DISPATCH_LEVEL, &old);
	}
	ULONG_PTR info = 0;
	if (sp->MajorFunction == IRP_MJ_DEVICE_CONTROL || sp->MajorFunction == IRP_MJ_INTERNAL_DEVICE_CONTROL) {
		rec.code = sp->Parameters.DeviceIoControl.IoControlCode;
		rec.in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
		rec.out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
		rec.system_buffer = Irp->AssociatedIrp.SystemBuffer;
		rec.type3 = sp->Parameters.DeviceIoControl.Type3InputBuffer;
		rec.user_buffer = Irp->UserBuffer;
		rec.mdl = Irp->MdlAddress;
		if (rec.code == IRPT_CODE_BUF && rec.system_buffer && rec.in_len && rec.in_len <= 16) {
			PUCHAR b = rec.system_buffer;
			UCHAR in[16];
			RtlCopyMemory(in, b, rec.in_len);
			for (ULONG i = 0; i < rec.out_len; i++)
				b[i] = (UCHAR)(in[i % rec.in_len] + 1);
			info = rec.out_len;
		} else if (rec.code == IRPT_CODE_OUT && rec.mdl) {
			PUCHAR b = MmGetSystemAddressForMdlSafe(rec.mdl, NormalPagePriority | MdlMappingNoExecute);
			if (b)
				RtlFillMemory(b, rec.out_len, 0x5A);
			info = rec.out_len;
		}
	} else if (sp->MajorFunction == IRP_MJ_READ) {
		rec.read_len = sp->Parameters.Read.Length;
		rec.system_buffer = Irp->AssociatedIrp.SystemBuffer;
		rec.mdl = Irp->MdlAddress;
		rec.user_buffer = Irp->UserBuffer;
		if (rec.system_buffer)
			RtlFillMemory(rec.system_buffer, rec.read_len, 0x33);
		info = rec.read_len;
	}
	Irp->IoStatus.Status = rec.status;
	Irp->IoStatus.Information = info;
	if (rec.complete_at_high_level) {
		KIRQL old;
		KeRaiseIrql(HIGH_LEVEL, &old);
	}
	if (rec.pend) {
		IoMarkIrpPending(Irp);
		IoCompleteRequest(Irp, IO_NO_INCREMENT);
		return STATUS_PENDING;
	}
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return rec.status;
}

static NTSTATUS upper_completion(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
	int i = rec.completions++ & 1;
	rec.completion_device[i] = DeviceObject;
	rec.completion_context[i] = Context;
	rec.pending_returned[i] = Irp->PendingReturned;
	if (Irp->PendingReturned)
		IoMarkIrpPending(Irp);
	Irp->IoStatus.Information += 1000;
	return rec.upper_completion_result;
}

static NTSTATUS upper_dispatch(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	rec.upper_calls++;
	rec.upper_sp = IoGetCurrentIrpStackLocation(Irp);
	rec.upper_device_ok = rec.upper_sp->DeviceObject == DeviceObject;
	switch (rec.upper_mode) {
	case UPPER_SKIP:
		IoSkipCurrentIrpStackLocation(Irp);
		break;
	case UPPER_PLAIN: /* forwards without touching the next location */
		break;
	case UPPER_COPY:
		IoCopyCurrentIrpStackLocationToNext(Irp);
		IoSetCompletionRoutine(Irp, upper_completion, &rec, TRUE, !rec.upper_only_on_success, TRUE);
		break;
	}
	return IoCallDriver(lower, Irp);
}

/* The completion routine of the IRP's allocator (the top location): it gets the IRP back. */
static NTSTATUS owner_completion(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
	int i = rec.completions++ & 1;
	rec.completion_device[i] = DeviceObject;
	rec.completion_context[i] = Context;
	rec.pending_returned[i] = Irp->PendingReturned;
	return STATUS_MORE_PROCESSING_REQUIRED;
}

static int irpt_init(struct ktest *t)
{
	UNREFERENCED_PARAMETER(t);
	memset(&rec, 0, sizeof rec);
	rec.upper_completion_result = STATUS_SUCCESS;
	DRIVER_OBJECT *drivers[2] = { &lower_driver, &upper_driver };
	for (int k = 0; k < 2; k++) {
		memset(drivers[k], 0, sizeof *drivers[k]);
		drivers[k]->Type = IO_TYPE_DRIVER;
		drivers[k]->Size = sizeof(DRIVER_OBJECT);
		for (int mj = 0; mj <= IRP_MJ_MAXIMUM_FUNCTION; mj++)
			drivers[k]->MajorFunction[mj] = k ? upper_dispatch : lower_dispatch;
	}
	if (IoCreateDevice(&lower_driver, 16, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &lower) ||
	    IoCreateDevice(&upper_driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &upper))
		return 1;
	return 0;
}

static void irpt_exit(struct ktest *t)
{
	UNREFERENCED_PARAMETER(t);
	if (lower->AttachedDevice)
		IoDetachDevice(lower);
	IoDeleteDevice(upper);
	IoDeleteDevice(lower);
}

/* ---- allocation ----------------------------------------------------------------------- */

static void allocate_initializes_the_stack_of_locations(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(3, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, irp->Type, IO_TYPE_IRP);
	EXPECT_EQ(t, irp->Size, IoSizeOfIrp(3));
	EXPECT_EQ(t, irp->Size, 0xD0 + 3 * 0x48);
	EXPECT_EQ(t, irp->StackCount, 3);
	EXPECT_EQ(t, irp->CurrentLocation, 4);
	EXPECT_TRUE(t, IoGetCurrentIrpStackLocation(irp) == (PIO_STACK_LOCATION)(irp + 1) + 3);
	EXPECT_TRUE(t, IoGetNextIrpStackLocation(irp) == (PIO_STACK_LOCATION)(irp + 1) + 2);
	EXPECT_EQ(t, irp->MdlAddress, 0);
	EXPECT_EQ(t, irp->Cancel, 0);
	IoFreeIrp(irp);
	EXPECT_TRUE(t, IoAllocateIrp(0, FALSE) == NULL);
	EXPECT_TRUE(t, IoAllocateIrp(-1, FALSE) == NULL);
}

static void initialize_zeroes_a_caller_allocated_irp(struct ktest *t)
{
	union {
		IRP irp;
		UCHAR bytes[0xD0 + 2 * 0x48];
	} u;
	memset(&u, 0xCC, sizeof u);
	IoInitializeIrp(&u.irp, sizeof u, 2);
	EXPECT_EQ(t, u.irp.Type, IO_TYPE_IRP);
	EXPECT_EQ(t, u.irp.Size, sizeof u);
	EXPECT_EQ(t, u.irp.StackCount, 2);
	EXPECT_EQ(t, u.irp.CurrentLocation, 3);
	EXPECT_EQ(t, u.irp.IoStatus.Status, 0);
	EXPECT_EQ(t, (uint64_t)u.irp.UserBuffer, 0);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(&u.irp)->MajorFunction, 0);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(&u.irp)->CompletionRoutine, NULL);
}

/* ---- sending and completing ------------------------------------------------------------ */

static void call_driver_hands_the_next_location_and_completion_returns_the_irp(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(lower->StackSize, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	PIO_STACK_LOCATION next = IoGetNextIrpStackLocation(irp);
	next->MajorFunction = IRP_MJ_DEVICE_CONTROL;
	next->Parameters.DeviceIoControl.IoControlCode = IRPT_CODE_NEITHER;
	next->Parameters.DeviceIoControl.Type3InputBuffer = &rec;
	IoSetCompletionRoutine(irp, owner_completion, (PVOID)0x1234, TRUE, TRUE, TRUE);
	rec.status = STATUS_SUCCESS;
	NTSTATUS st = IoCallDriver(lower, irp);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, rec.lower_calls, 1);
	EXPECT_TRUE(t, rec.lower_sp == next);
	EXPECT_TRUE(t, rec.lower_device_ok);
	EXPECT_EQ(t, rec.major, IRP_MJ_DEVICE_CONTROL);
	EXPECT_TRUE(t, rec.type3 == &rec);
	EXPECT_EQ(t, rec.completions, 1);
	/* The top location's routine gets no device: the allocator has no location of its own. */
	EXPECT_TRUE(t, rec.completion_device[0] == NULL);
	EXPECT_TRUE(t, rec.completion_context[0] == (PVOID)0x1234);
	EXPECT_EQ(t, irp->CurrentLocation, irp->StackCount + 1);
	/* The completed location is cleared. */
	EXPECT_TRUE(t, next->CompletionRoutine == NULL);
	IoFreeIrp(irp);
}

static void completion_routine_conditions_are_honoured(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoSetCompletionRoutine(irp, owner_completion, NULL, TRUE, FALSE, FALSE);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(irp)->Control, SL_INVOKE_ON_SUCCESS);
	rec.status = STATUS_INVALID_PARAMETER;
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, rec.completions, 0); /* an error, and only success was asked for */
	IoReuseIrp(irp, STATUS_NOT_IMPLEMENTED);
	EXPECT_EQ(t, irp->IoStatus.Status, STATUS_NOT_IMPLEMENTED);
	EXPECT_EQ(t, irp->CurrentLocation, 2);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(irp)->MajorFunction, 0);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoSetCompletionRoutine(irp, owner_completion, NULL, FALSE, TRUE, FALSE);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, rec.completions, 1);
	IoFreeIrp(irp);
}

static void attach_builds_a_stack_and_the_upper_completion_runs_with_its_device(struct ktest *t)
{
	EXPECT_EQ(t, lower->StackSize, 1);
	PDEVICE_OBJECT below = IoAttachDeviceToDeviceStack(upper, lower);
	EXPECT_TRUE(t, below == lower);
	EXPECT_TRUE(t, lower->AttachedDevice == upper);
	EXPECT_EQ(t, upper->StackSize, 2);
	EXPECT_TRUE(t, IoGetAttachedDeviceReference(lower) == upper);
	ObDereferenceObject(upper);
	PIRP irp = IoAllocateIrp(upper->StackSize, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoGetNextIrpStackLocation(irp)->Parameters.Read.Length = 77;
	IoSetCompletionRoutine(irp, owner_completion, NULL, TRUE, TRUE, TRUE);
	rec.status = STATUS_SUCCESS;
	EXPECT_EQ(t, IoCallDriver(upper, irp), STATUS_SUCCESS);
	EXPECT_EQ(t, rec.upper_calls, 1);
	EXPECT_EQ(t, rec.lower_calls, 1);
	EXPECT_TRUE(t, rec.upper_device_ok && rec.lower_device_ok);
	EXPECT_TRUE(t, rec.lower_sp == rec.upper_sp - 1);
	EXPECT_EQ(t, rec.read_len, 77); /* copied down */
	EXPECT_EQ(t, rec.completions, 2);
	EXPECT_TRUE(t, rec.completion_device[0] == upper); /* the upper driver's routine, its device */
	EXPECT_TRUE(t, rec.completion_context[0] == &rec);
	EXPECT_TRUE(t, rec.completion_device[1] == NULL);  /* then the owner's */
	EXPECT_EQ(t, irp->IoStatus.Information, 77 + 1000);
	IoFreeIrp(irp);
	IoDetachDevice(lower);
	EXPECT_TRUE(t, lower->AttachedDevice == NULL);
}

static void delete_of_an_attached_device_unlinks_it(struct ktest *t)
{
	PDEVICE_OBJECT extra = NULL;
	ASSERT_EQ(t, IoCreateDevice(&upper_driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &extra), STATUS_SUCCESS);
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(extra, lower) == lower);
	/* Attached on top of the stack, whose top is now extra. */
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == extra);
	EXPECT_EQ(t, upper->StackSize, 3);
	IoDeleteDevice(extra); /* without IoDetachDevice first */
	EXPECT_TRUE(t, lower->AttachedDevice == NULL);
	EXPECT_TRUE(t, IoGetAttachedDeviceReference(lower) == lower);
}

static void skip_gives_the_lower_driver_the_same_location(struct ktest *t)
{
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == lower);
	rec.upper_mode = UPPER_SKIP;
	PIRP irp = IoAllocateIrp(upper->StackSize, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoSetCompletionRoutine(irp, owner_completion, NULL, TRUE, TRUE, TRUE);
	rec.status = STATUS_SUCCESS;
	EXPECT_EQ(t, IoCallDriver(upper, irp), STATUS_SUCCESS);
	EXPECT_TRUE(t, rec.lower_sp == rec.upper_sp);
	EXPECT_EQ(t, rec.completions, 1); /* only the owner's */
	IoFreeIrp(irp);
}

static void pending_is_seen_by_the_completion_routine_above(struct ktest *t)
{
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == lower);
	rec.pend = true;
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoAllocateIrp(upper->StackSize, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoSetCompletionRoutine(irp, owner_completion, NULL, TRUE, TRUE, TRUE);
	EXPECT_EQ(t, IoCallDriver(upper, irp), STATUS_PENDING);
	EXPECT_EQ(t, rec.completions, 2);
	EXPECT_EQ(t, rec.pending_returned[0], TRUE); /* the lower driver marked it */
	EXPECT_EQ(t, rec.pending_returned[1], TRUE); /* the upper routine propagated the mark */
	IoFreeIrp(irp);
}

static void more_processing_required_stops_completion(struct ktest *t)
{
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == lower);
	rec.upper_completion_result = STATUS_MORE_PROCESSING_REQUIRED;
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoAllocateIrp(upper->StackSize, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoSetCompletionRoutine(irp, owner_completion, NULL, TRUE, TRUE, TRUE);
	EXPECT_EQ(t, IoCallDriver(upper, irp), STATUS_SUCCESS);
	EXPECT_EQ(t, rec.completions, 1); /* the owner's routine did not run */
	/* The upper driver owns the IRP again and finishes completing it. */
	EXPECT_EQ(t, irp->CurrentLocation, 2);
	IoCompleteRequest(irp, IO_NO_INCREMENT);
	EXPECT_EQ(t, rec.completions, 2);
	IoFreeIrp(irp);
}

/* ---- IoBuild* ------------------------------------------------------------------------- */

static void build_device_io_control_buffered_copies_output_and_sets_event(struct ktest *t)
{
	UCHAR in[4] = { 1, 2, 3, 4 }, out[8];
	memset(out, 0xEE, sizeof out);
	KEVENT event;
	IO_STATUS_BLOCK iosb = { .Status = -1, .Information = 99 };
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoBuildDeviceIoControlRequest(IRPT_CODE_BUF, lower, in, sizeof in, out, 6, FALSE, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(irp)->MajorFunction, IRP_MJ_DEVICE_CONTROL);
	EXPECT_EQ(t, irp->RequestorMode, KernelMode);
	NTSTATUS st = IoCallDriver(lower, irp);
	if (st == STATUS_PENDING) {
		KeWaitForSingleObject(&event, Executive, KernelMode, FALSE, NULL);
		st = iosb.Status;
	}
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, KeReadStateEvent(&event), 1);
	EXPECT_EQ(t, iosb.Status, STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, 6);
	EXPECT_EQ(t, rec.in_len, 4);
	EXPECT_EQ(t, rec.out_len, 6);
	EXPECT_TRUE(t, rec.system_buffer != NULL && rec.system_buffer != in);
	for (int i = 0; i < 6; i++)
		EXPECT_EQ(t, out[i], in[i % 4] + 1);
	EXPECT_EQ(t, out[6], 0xEE); /* only Information bytes */
	/* The IRP freed itself: the accounting check after the case proves it. */
}

static void build_device_io_control_internal_and_neither(struct ktest *t)
{
	UCHAR in[4], out[4];
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	KeInitializeEvent(&event, SynchronizationEvent, FALSE);
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoBuildDeviceIoControlRequest(IRPT_CODE_NEITHER, lower, in, 4, out, 4, TRUE, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_SUCCESS);
	EXPECT_EQ(t, rec.major, IRP_MJ_INTERNAL_DEVICE_CONTROL);
	EXPECT_TRUE(t, rec.type3 == in);
	EXPECT_TRUE(t, rec.user_buffer == out);
	EXPECT_TRUE(t, rec.system_buffer == NULL);
	/* A synchronization event is reset by the wait that sees it. */
	EXPECT_EQ(t, KeWaitForSingleObject(&event, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
	LARGE_INTEGER zero = { .QuadPart = 0 };
	EXPECT_EQ(t, KeWaitForSingleObject(&event, Executive, KernelMode, FALSE, &zero), STATUS_TIMEOUT);
}

static void build_device_io_control_out_direct_locks_the_output(struct ktest *t)
{
	PUCHAR out = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, 'tprI');
	ASSERT_TRUE(t, out != NULL);
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoBuildDeviceIoControlRequest(IRPT_CODE_OUT, lower, NULL, 0, out + 100, PAGE_SIZE, FALSE, &event,
						 &iosb);
	ASSERT_TRUE(t, irp != NULL);
	ASSERT_TRUE(t, irp->MdlAddress != NULL);
	EXPECT_TRUE(t, irp->MdlAddress->MdlFlags & MDL_PAGES_LOCKED);
	EXPECT_EQ(t, MmGetMdlByteCount(irp->MdlAddress), PAGE_SIZE);
	EXPECT_TRUE(t, MmGetMdlVirtualAddress(irp->MdlAddress) == out + 100);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, PAGE_SIZE);
	EXPECT_EQ(t, out[100], 0x5A);
	EXPECT_EQ(t, out[100 + PAGE_SIZE - 1], 0x5A);
	EXPECT_EQ(t, out[99], 0);
	ExFreePoolWithTag(out, 'tprI');
}

static void build_synchronous_fsd_read_by_the_device_flags(struct ktest *t)
{
	UCHAR buf[16];
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	LARGE_INTEGER off = { .QuadPart = 512 };
	/* Neither flag: the raw buffer. */
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	rec.status = STATUS_SUCCESS;
	PIRP irp = IoBuildSynchronousFsdRequest(IRP_MJ_READ, lower, buf, 16, &off, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, IoGetNextIrpStackLocation(irp)->Parameters.Read.ByteOffset.QuadPart, 512);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_SUCCESS);
	EXPECT_TRUE(t, rec.user_buffer == buf);
	EXPECT_TRUE(t, rec.system_buffer == NULL && rec.mdl == NULL);
	/* DO_BUFFERED_IO: a system buffer, copied back at completion. */
	lower->Flags |= DO_BUFFERED_IO;
	memset(buf, 0, sizeof buf);
	KeClearEvent(&event);
	irp = IoBuildSynchronousFsdRequest(IRP_MJ_READ, lower, buf, 16, NULL, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_SUCCESS);
	EXPECT_TRUE(t, rec.system_buffer != NULL && rec.system_buffer != buf);
	EXPECT_EQ(t, buf[0], 0x33);
	EXPECT_EQ(t, buf[15], 0x33);
	EXPECT_EQ(t, iosb.Information, 16);
	EXPECT_EQ(t, KeReadStateEvent(&event), 1);
	/* DO_DIRECT_IO: an MDL. */
	lower->Flags = (lower->Flags & ~DO_BUFFERED_IO) | DO_DIRECT_IO;
	irp = IoBuildSynchronousFsdRequest(IRP_MJ_READ, lower, buf, 16, NULL, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_TRUE(t, irp->MdlAddress != NULL);
	EXPECT_EQ(t, IoCallDriver(lower, irp), STATUS_SUCCESS);
	EXPECT_TRUE(t, rec.mdl != NULL);
	lower->Flags &= ~DO_DIRECT_IO;
	/* Not a major function it builds. */
	EXPECT_TRUE(t, IoBuildSynchronousFsdRequest(IRP_MJ_DEVICE_CONTROL, lower, buf, 16, NULL, &event, &iosb) ==
		       NULL);
}

static void build_with_an_unlockable_buffer_is_null(struct ktest *t)
{
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	/* The user half, with no process: nothing there to lock. */
	EXPECT_TRUE(t, IoBuildDeviceIoControlRequest(IRPT_CODE_OUT, lower, NULL, 0, (PVOID)0x10000000, 64, FALSE,
						     &event, &iosb) == NULL);
	EXPECT_EQ(t, rec.lower_calls, 0);
}

/* ---- bug checks ----------------------------------------------------------------------- */

static void free_of_an_irp_in_a_drivers_hands(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x02, (uint64_t)irp, 0, 0, KTEST_P_ALL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	rec.free_in_flight = true;
	IoCallDriver(lower, irp);
}

static void free_of_a_built_irp(struct ktest *t)
{
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	PIRP irp = IoBuildDeviceIoControlRequest(IRPT_CODE_NEITHER, lower, NULL, 0, NULL, 0, FALSE, &event, &iosb);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x02, (uint64_t)irp, 0, 0, KTEST_P_ALL);
	IoFreeIrp(irp);
}

static void free_of_something_not_an_irp(struct ktest *t)
{
	static UCHAR not_irp[0x200];
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x01, (uint64_t)not_irp, 0, 0, KTEST_P_ALL);
	IoFreeIrp((PIRP)not_irp);
}

static void reuse_of_an_irp_in_a_drivers_hands(struct ktest *t)
{
	/* Sent, and kept by the upper driver (more processing required): not the owner's to
	 * reuse until that driver completes it. */
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == lower);
	rec.upper_completion_result = STATUS_MORE_PROCESSING_REQUIRED;
	PIRP irp = IoAllocateIrp(upper->StackSize, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x02, (uint64_t)irp, 0, 0, KTEST_P_ALL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(upper, irp);
	IoReuseIrp(irp, STATUS_SUCCESS);
}

static void call_driver_past_the_last_location(struct ktest *t)
{
	ASSERT_TRUE(t, IoAttachDeviceToDeviceStack(upper, lower) == lower);
	/* One location for a stack of two: the upper driver's IoCallDriver has none left. */
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, NO_MORE_IRP_STACK_LOCATIONS, (uint64_t)irp, 0, 0, 0, KTEST_P_ALL);
	rec.upper_mode = UPPER_PLAIN;
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(upper, irp);
}

static void complete_twice(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, MULTIPLE_IRP_COMPLETE_REQUESTS, (uint64_t)irp, 0, 0, 0, KTEST_P_ALL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(lower, irp);
	IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static void complete_with_status_pending(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x06, (ULONG)STATUS_PENDING, (uint64_t)irp, 0,
			  KTEST_P_ALL);
	rec.status = STATUS_PENDING;
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(lower, irp);
}

static void complete_above_dispatch_level(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x0E, HIGH_LEVEL, (uint64_t)irp, 0, KTEST_P_ALL);
	rec.complete_at_high_level = true;
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(lower, irp);
}

static void call_driver_with_a_bad_device(struct ktest *t)
{
	static DEVICE_OBJECT fake;
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x04, (uint64_t)&fake, 0, 0, KTEST_P_ALL);
	IoCallDriver(&fake, irp);
}

static void call_driver_with_not_an_irp(struct ktest *t)
{
	static UCHAR not_irp[0x200];
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x03, (uint64_t)not_irp, 0, 0, KTEST_P_ALL);
	IoCallDriver(lower, (PIRP)not_irp);
}

static void dispatch_routine_returns_at_another_irql(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x05, (uint64_t)lower, PASSIVE_LEVEL,
			  DISPATCH_LEVEL, KTEST_P_ALL);
	rec.raise_irql = true;
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	IoCallDriver(lower, irp);
}

static void call_driver_above_dispatch_level(struct ktest *t)
{
	PIRP irp = IoAllocateIrp(1, FALSE);
	ktest_expect_stop(t, DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x10, HIGH_LEVEL, 0, 0, KTEST_P_ALL);
	IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
	KIRQL old;
	KeRaiseIrql(HIGH_LEVEL, &old);
	IoCallDriver(lower, irp);
}

/* A wait on an event nothing signals ends at its timeout (20 ms, relative: negative 100 ns
 * units) with STATUS_TIMEOUT, not before; the event is still not signalled. */
static void wait_for_an_event_nothing_signals_times_out(struct ktest *t)
{
	KEVENT event;
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	LARGE_INTEGER timeout = { .QuadPart = -200000 }, freq;
	uint64_t t0 = (uint64_t)KeQueryPerformanceCounter(&freq).QuadPart;
	EXPECT_EQ(t, KeWaitForSingleObject(&event, Executive, KernelMode, FALSE, &timeout), STATUS_TIMEOUT);
	uint64_t elapsed = (uint64_t)KeQueryPerformanceCounter(NULL).QuadPart - t0;
	EXPECT_GE(t, elapsed, (uint64_t)freq.QuadPart / 50);
	EXPECT_EQ(t, KeReadStateEvent(&event), 0);
}

/* A wait with no timeout ends when a DPC on another CPU sets the event (on one CPU, this
 * CPU's DPC, which runs while the waiter spins at PASSIVE_LEVEL); a synchronization event
 * is reset by the wait it satisfies. */
static KEVENT dpc_event;
static volatile ULONG dpc_event_cpu;
static VOID set_event_dpc(PKDPC Dpc, PVOID Context, PVOID Arg1, PVOID Arg2)
{
	UNREFERENCED_PARAMETER(Dpc);
	UNREFERENCED_PARAMETER(Context);
	UNREFERENCED_PARAMETER(Arg1);
	UNREFERENCED_PARAMETER(Arg2);
	dpc_event_cpu = KeGetCurrentProcessorNumberEx(NULL);
	KeSetEvent(&dpc_event, 0, FALSE);
}

static void wait_ends_when_a_dpc_sets_the_event(struct ktest *t)
{
	static KDPC dpc; /* static: its CPU may still be finishing with it when the wait ends */
	KeInitializeEvent(&dpc_event, SynchronizationEvent, FALSE);
	KeInitializeDpc(&dpc, set_event_dpc, NULL);
	ULONG me = KeGetCurrentProcessorNumberEx(NULL), n = KeQueryActiveProcessorCount(NULL);
	ULONG target = n > 1 ? (me + 1) % n : me;
	KeSetTargetProcessorDpc(&dpc, (CCHAR)target);
	KeSetImportanceDpc(&dpc, MediumHighImportance);
	dpc_event_cpu = ~0u;
	ASSERT_TRUE(t, KeInsertQueueDpc(&dpc, NULL, NULL));
	EXPECT_EQ(t, KeWaitForSingleObject(&dpc_event, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
	EXPECT_EQ(t, dpc_event_cpu, target);
	EXPECT_EQ(t, KeReadStateEvent(&dpc_event), 0);
}

static struct ktest_case irp_cases[] = {
	KTEST_CASE(allocate_initializes_the_stack_of_locations),
	KTEST_CASE(initialize_zeroes_a_caller_allocated_irp),
	KTEST_CASE(call_driver_hands_the_next_location_and_completion_returns_the_irp),
	KTEST_CASE(completion_routine_conditions_are_honoured),
	KTEST_CASE(attach_builds_a_stack_and_the_upper_completion_runs_with_its_device),
	KTEST_CASE(delete_of_an_attached_device_unlinks_it),
	KTEST_CASE(skip_gives_the_lower_driver_the_same_location),
	KTEST_CASE(pending_is_seen_by_the_completion_routine_above),
	KTEST_CASE(more_processing_required_stops_completion),
	KTEST_CASE(build_device_io_control_buffered_copies_output_and_sets_event),
	KTEST_CASE(build_device_io_control_internal_and_neither),
	KTEST_CASE(build_device_io_control_out_direct_locks_the_output),
	KTEST_CASE(build_synchronous_fsd_read_by_the_device_flags),
	KTEST_CASE(build_with_an_unlockable_buffer_is_null),
	KTEST_DEATH_CASE(free_of_an_irp_in_a_drivers_hands, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(free_of_a_built_irp, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(free_of_something_not_an_irp, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(reuse_of_an_irp_in_a_drivers_hands, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(call_driver_past_the_last_location, NO_MORE_IRP_STACK_LOCATIONS),
	KTEST_DEATH_CASE(complete_twice, MULTIPLE_IRP_COMPLETE_REQUESTS),
	KTEST_DEATH_CASE(complete_with_status_pending, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(complete_above_dispatch_level, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(call_driver_with_a_bad_device, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(call_driver_with_not_an_irp, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(dispatch_routine_returns_at_another_irql, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_DEATH_CASE(call_driver_above_dispatch_level, DRIVER_VERIFIER_IOMANAGER_VIOLATION),
	KTEST_CASE(wait_for_an_event_nothing_signals_times_out),
	KTEST_CASE(wait_ends_when_a_dpc_sets_the_event),
	{0}
};
KTEST_SUITE(irp, irp_cases, .init = irpt_init, .exit = irpt_exit);
