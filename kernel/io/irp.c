/* IRPs: allocation, the stack of locations, IoCallDriver, completion with its routines, and
 * the synchronous requests kernel code builds (IoBuildDeviceIoControlRequest,
 * IoBuildSynchronousFsdRequest).  mm/RULES.md "I/O rules" I1-I6. */
#include "kernel/io/io.h"
#include "kernel/cpu.h"
#include "kernel/intr/clock.h"
#include "kernel/accounting.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/klock.h"

/* AllocationFlags bits of mdlab's own (NT's values stop at 0x08): who owns the IRP. */
#define IRP_ALLOC_DRIVER 0x10   /* IoAllocateIrp: the driver frees it (IoFreeIrp) */
#define IRP_ALLOC_BUILT 0x20    /* IoBuild*: freed by the I/O manager at completion */

/* Threaded IRPs (the I/O manager's: IoBuild*, and those of user requests), by
 * ThreadListEntry, as NT queues them on their thread. */
static LIST_ENTRY thread_irps = { &thread_irps, &thread_irps };
static uint64_t nirps;
/* IRP accounting (mm/RULES.md, "Locks"): the live count is an atomic add; the list of the
 * I/O manager's IRPs has this lock, held only while an IRP joins or leaves it (the I/O
 * manager's rank; never held with the table lock of io.c). */
static struct klock thread_irps_lock = KLOCK_INIT(KLOCK_IO);
#define COUNT_IRPS(n) __atomic_fetch_add(&nirps, (uint64_t)(n), __ATOMIC_RELAXED)

static void list_init(PLIST_ENTRY e) { e->Flink = e->Blink = e; }
static void list_insert(PLIST_ENTRY head, PLIST_ENTRY e)
{
	e->Flink = head->Flink;
	e->Blink = head;
	head->Flink->Blink = e;
	head->Flink = e;
}
static void list_remove(PLIST_ENTRY e)
{
	e->Blink->Flink = e->Flink;
	e->Flink->Blink = e->Blink;
	list_init(e);
}
static bool threaded(PIRP irp) { return irp->ThreadListEntry.Flink != &irp->ThreadListEntry; }

/* I/O verification's stop: DRIVER_VERIFIER_IOMANAGER_VIOLATION with the page's parameters. */
static __attribute__((noreturn)) void io_violation(ULONG_PTR what, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
	KeBugCheckEx(DRIVER_VERIFIER_IOMANAGER_VIOLATION, what, p2, p3, p4);
}

/* ---- allocation ----------------------------------------------------------------------- */

VOID IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize)
{
	memset(Irp, 0, PacketSize);
	Irp->Type = IO_TYPE_IRP;
	Irp->Size = PacketSize;
	Irp->StackCount = StackSize;
	Irp->CurrentLocation = (CHAR)(StackSize + 1);
	list_init(&Irp->ThreadListEntry);
	Irp->Tail.Overlay.CurrentStackLocation = (PIO_STACK_LOCATION)(Irp + 1) + StackSize;
}

PIRP IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota)
{
	UNREFERENCED_PARAMETER(ChargeQuota); /* mdlab charges no quotas */
	if (StackSize < 1)
		return NULL;
	USHORT size = IoSizeOfIrp(StackSize);
	PIRP irp = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, IO_IRP_TAG);
	if (!irp)
		return NULL;
	IoInitializeIrp(irp, size, StackSize);
	irp->AllocationFlags = IRP_ALLOC_DRIVER;
	COUNT_IRPS(1);
	return irp;
}

/* In the hands of a driver: sent and not completed. */
static bool in_flight(PIRP irp) { return irp->CurrentLocation <= irp->StackCount; }

VOID IoReuseIrp(PIRP Irp, NTSTATUS Iostatus)
{
	if (Irp->Type != IO_TYPE_IRP)
		io_violation(0x01, (ULONG_PTR)Irp, 0, 0);
	if (threaded(Irp) || in_flight(Irp))
		io_violation(0x02, (ULONG_PTR)Irp, 0, 0);
	UCHAR flags = Irp->AllocationFlags;
	IoInitializeIrp(Irp, Irp->Size, Irp->StackCount);
	Irp->AllocationFlags = flags;
	Irp->IoStatus.Status = Iostatus;
}

/* 0xC9: P1 0x01 not an IRP, 0x02 an IRP still queued to a thread (the I/O manager's) or
 * still in a driver's hands (mm/RULES.md rule I1). */
VOID IoFreeIrp(PIRP Irp)
{
	if (Irp->Type != IO_TYPE_IRP)
		io_violation(0x01, (ULONG_PTR)Irp, 0, 0);
	if (threaded(Irp) || in_flight(Irp))
		io_violation(0x02, (ULONG_PTR)Irp, 0, 0);
	Irp->Type = 0;
	ExFreePoolWithTag(Irp, IO_IRP_TAG);
	COUNT_IRPS(-1);
}

PIRP io_irp_for_request(PDEVICE_OBJECT top, PFILE_OBJECT file, UCHAR major, KPROCESSOR_MODE mode)
{
	CCHAR n = top->StackSize > 0 ? top->StackSize : 1;
	USHORT size = IoSizeOfIrp(n);
	PIRP irp = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, IO_IRP_TAG);
	if (!irp)
		return NULL;
	IoInitializeIrp(irp, size, n);
	COUNT_IRPS(1);
	irp->RequestorMode = mode;
	irp->Tail.Overlay.Thread = ps_current();
	irp->Tail.Overlay.OriginalFileObject = file;
	KIRQL irql = klock_acquire(&thread_irps_lock);
	list_insert(&thread_irps, &irp->ThreadListEntry);
	klock_release(&thread_irps_lock, irql);
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->MajorFunction = major;
	sp->FileObject = file;
	return irp;
}

void io_irp_release(PIRP irp)
{
	if (irp->Flags & IRP_DEALLOCATE_BUFFER)
		ExFreePoolWithTag(irp->AssociatedIrp.SystemBuffer, IO_BUFFER_TAG);
	irp->AssociatedIrp.SystemBuffer = NULL;
	irp->Flags &= ~(IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION);
	for (PMDL m = irp->MdlAddress, next; m; m = next) {
		next = m->Next;
		if (m->MdlFlags & MDL_PAGES_LOCKED)
			MmUnlockPages(m);
		IoFreeMdl(m);
	}
	irp->MdlAddress = NULL;
	KIRQL irql = klock_acquire(&thread_irps_lock);
	list_remove(&irp->ThreadListEntry);
	klock_release(&thread_irps_lock, irql);
	irp->Type = 0;
	ExFreePoolWithTag(irp, IO_IRP_TAG);
	COUNT_IRPS(-1);
}

/* ---- sending -------------------------------------------------------------------------- */

/* mm/RULES.md rule I2: the next location becomes the current one and names the device; no
 * location left is NO_MORE_IRP_STACK_LOCATIONS (0x35, the IRP, 0, 0, 0). */
NTSTATUS IofCallDriver(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	if (Irp->Type != IO_TYPE_IRP)
		io_violation(0x03, (ULONG_PTR)Irp, 0, 0);
	if (!io_device_valid(DeviceObject))
		io_violation(0x04, (ULONG_PTR)DeviceObject, 0, 0);
	KIRQL before = KeGetCurrentIrql();
	if (before > DISPATCH_LEVEL)
		io_violation(0x10, before, 0, 0);
	if (Irp->CurrentLocation <= 1)
		KeBugCheckEx(NO_MORE_IRP_STACK_LOCATIONS, (ULONG_PTR)Irp, 0, 0, 0);
	Irp->CurrentLocation--;
	Irp->Tail.Overlay.CurrentStackLocation--;
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	sp->DeviceObject = DeviceObject;
	PDRIVER_OBJECT driver = DeviceObject->DriverObject;
	NTSTATUS st = driver->MajorFunction[sp->MajorFunction](DeviceObject, Irp);
	KIRQL after = KeGetCurrentIrql();
	if (after != before)
		io_violation(0x05, (ULONG_PTR)DeviceObject, before, after);
	return st;
}

/* ---- completion ----------------------------------------------------------------------- */

/* The bytes the I/O manager copied for buffered requests (io.h). */
static uint64_t copied_in, copied_out;

void io_count_copy(uint64_t in, uint64_t out)
{
	if (in)
		__atomic_add_fetch(&copied_in, in, __ATOMIC_RELAXED);
	if (out)
		__atomic_add_fetch(&copied_out, out, __ATOMIC_RELAXED);
}

void io_get_copy_stats(struct io_copy_stats *s)
{
	s->in = __atomic_load_n(&copied_in, __ATOMIC_RELAXED);
	s->out = __atomic_load_n(&copied_out, __ATOMIC_RELAXED);
}

/* The second stage for an IoBuild* IRP: buffered output to the caller's buffer, the status
 * block, the event; then the IRP goes. */
static void built_irp_finish(PIRP irp)
{
	if ((irp->Flags & (IRP_BUFFERED_IO | IRP_INPUT_OPERATION)) == (IRP_BUFFERED_IO | IRP_INPUT_OPERATION) &&
	    !NT_ERROR(irp->IoStatus.Status) && irp->UserBuffer) {
		ULONG_PTR n = MIN(irp->IoStatus.Information, (ULONG_PTR)irp->Overlay.AllocationSize.QuadPart);
		memcpy(irp->UserBuffer, irp->AssociatedIrp.SystemBuffer, n);
		io_count_copy(0, n);
	}
	if (irp->UserIosb)
		*irp->UserIosb = irp->IoStatus;
	if (irp->UserEvent)
		KeSetEvent(irp->UserEvent, 0, FALSE);
	io_irp_release(irp);
}

static bool invoke(const IO_STACK_LOCATION *sp, const IRP *irp)
{
	if (!sp->CompletionRoutine)
		return false;
	return (NT_SUCCESS(irp->IoStatus.Status) && (sp->Control & SL_INVOKE_ON_SUCCESS)) ||
	       (!NT_SUCCESS(irp->IoStatus.Status) && (sp->Control & SL_INVOKE_ON_ERROR)) ||
	       (irp->Cancel && (sp->Control & SL_INVOKE_ON_CANCEL));
}

/* mm/RULES.md rule I3: each location upwards gives its completion routine (when its
 * conditions hold) the IRP, with the device of the location above it (NULL at the top);
 * STATUS_MORE_PROCESSING_REQUIRED stops the walk, the routine's driver owns the IRP again. */
VOID IofCompleteRequest(PIRP Irp, CCHAR PriorityBoost)
{
	UNREFERENCED_PARAMETER(PriorityBoost); /* no scheduler: no waiting thread to boost */
	/* Bug check 0x44: Microsoft defines P1 (the IRP) and reserves P2-P4 (0 here); the stack
	 * position that tells a second completion is printed instead. */
	if (Irp->Type != IO_TYPE_IRP || Irp->CurrentLocation > Irp->StackCount) {
		kprintf("*** IoCompleteRequest of IRP %p: CurrentLocation %d of StackCount %d\n", (void *)Irp,
			(int)Irp->CurrentLocation, (int)Irp->StackCount);
		KeBugCheckEx(MULTIPLE_IRP_COMPLETE_REQUESTS, (ULONG_PTR)Irp, 0, 0, 0);
	}
	KIRQL irql = KeGetCurrentIrql();
	if (irql > DISPATCH_LEVEL)
		io_violation(0x0E, irql, (ULONG_PTR)Irp, 0);
	if (Irp->IoStatus.Status == STATUS_PENDING || Irp->IoStatus.Status == -1)
		io_violation(0x06, (ULONG)Irp->IoStatus.Status, (ULONG_PTR)Irp, 0);
	while (Irp->CurrentLocation <= Irp->StackCount) {
		PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
		Irp->PendingReturned = (sp->Control & SL_PENDING_RETURNED) != 0;
		Irp->CurrentLocation++;
		Irp->Tail.Overlay.CurrentStackLocation++;
		bool call = invoke(sp, Irp);
		PIO_COMPLETION_ROUTINE routine = sp->CompletionRoutine;
		PVOID context = sp->Context;
		sp->CompletionRoutine = NULL;
		sp->Context = NULL;
		sp->Control = 0;
		if (call) {
			PDEVICE_OBJECT dev = Irp->CurrentLocation == Irp->StackCount + 1
						     ? NULL
						     : IoGetCurrentIrpStackLocation(Irp)->DeviceObject;
			if (routine(dev, Irp, context) == STATUS_MORE_PROCESSING_REQUIRED)
				return;
		} else if (Irp->PendingReturned && Irp->CurrentLocation <= Irp->StackCount) {
			IoMarkIrpPending(Irp);
		}
	}
	if (!threaded(Irp))
		return; /* IoAllocateIrp's, completed all the way: its owner frees it */
	/* The first stage, allowed up to DISPATCH_LEVEL: the pages go back now, and
	 * MmUnlockPages releases a system mapping the driver made. */
	for (PMDL m = Irp->MdlAddress; m; m = m->Next)
		if (m->MdlFlags & MDL_PAGES_LOCKED)
			MmUnlockPages(m);
	if (Irp->AllocationFlags & IRP_ALLOC_BUILT) {
		built_irp_finish(Irp);
		return;
	}
	/* The I/O manager's own request (io.c's call_and_wait): its waiter's event, set last,
	 * after the pages went back; the waiter frees the IRP, so it is not touched after. */
	PKEVENT done = Irp->UserEvent;
	if (done)
		KeSetEvent(done, 0, FALSE);
}

/* ---- events (what a synchronous request waits on) -------------------------------------- */

VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State)
{
	Event->Type = Type;
	__atomic_store_n(&Event->Signaled, State ? 1 : 0, __ATOMIC_RELEASE);
}
/* A release: what the setter wrote before (the IRP's IoStatus, the buffer) is seen by the
 * waiter whose acquire reads the 1, on any CPU. */
LONG KeSetEvent(PRKEVENT Event, LONG Increment, BOOLEAN Wait)
{
	UNREFERENCED_PARAMETER(Increment);
	UNREFERENCED_PARAMETER(Wait);
	return __atomic_exchange_n(&Event->Signaled, 1, __ATOMIC_ACQ_REL);
}
VOID KeClearEvent(PRKEVENT Event) { __atomic_store_n(&Event->Signaled, 0, __ATOMIC_RELEASE); }
LONG KeReadStateEvent(PRKEVENT Event) { return __atomic_load_n(&Event->Signaled, __ATOMIC_ACQUIRE); }

/* The wait is satisfied: a notification event stays signalled, a synchronization event is
 * reset by the one waiter it releases (the exchange: two waiters cannot both take it). */
static bool event_take(PKEVENT e)
{
	if (e->Type == SynchronizationEvent)
		return __atomic_exchange_n(&e->Signaled, 0, __ATOMIC_ACQUIRE) != 0;
	return __atomic_load_n(&e->Signaled, __ATOMIC_ACQUIRE) != 0;
}

/* *Timeout as a TSC deadline: negative is relative, positive absolute (mdlab has no system
 * time: absolute is counted from the performance counter's zero), both in 100 ns units. */
static uint64_t wait_deadline(const LARGE_INTEGER *Timeout)
{
	LARGE_INTEGER freq;
	uint64_t now = (uint64_t)KeQueryPerformanceCounter(&freq).QuadPart;
	LONGLONG t = Timeout->QuadPart;
	uint64_t units = (uint64_t)(t < 0 ? -t : t);
	/* counts = units * freq / 10^7, split so the product cannot overflow */
	uint64_t f = (uint64_t)freq.QuadPart;
	uint64_t counts = (units / 10000000u) * f + (units % 10000000u) * f / 10000000u;
	uint64_t base = t < 0 ? now : 0;
	return base + counts < base ? UINT64_MAX : base + counts;
}

NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable,
			       PLARGE_INTEGER Timeout)
{
	UNREFERENCED_PARAMETER(WaitReason);
	UNREFERENCED_PARAMETER(WaitMode);
	UNREFERENCED_PARAMETER(Alertable);
	/* Its page: at IRQL <= DISPATCH_LEVEL, and <= APC_LEVEL unless *Timeout is 0 (no wait).
	 * Breaking that is 0xA IRQL_NOT_LESS_OR_EQUAL, the code Microsoft's IRQL rules name,
	 * with its parameters: the object waited on, the IRQL, 0 (a read), the caller. */
	KIRQL irql = KeGetCurrentIrql();
	bool no_wait = Timeout && Timeout->QuadPart == 0;
	if (irql > DISPATCH_LEVEL || (irql == DISPATCH_LEVEL && !no_wait))
		KeBugCheckEx(IRQL_NOT_LESS_OR_EQUAL, (ULONG_PTR)Object, irql, 0,
			     (ULONG_PTR)__builtin_return_address(0));
	PKEVENT e = Object;
	if (event_take(e))
		return STATUS_SUCCESS;
	if (no_wait)
		return STATUS_TIMEOUT;
	/* mdlab has no scheduler: the waiter spins (PAUSE, SDM Vol. 2B "PAUSE": a spin-wait
	 * hint) at its IRQL, below DISPATCH_LEVEL, so this CPU's interrupts and DPCs (a
	 * device's completion) still run; another CPU's KeSetEvent is seen through the
	 * acquire.  Timeout NULL waits for as long as it takes, as NT's does. */
	uint64_t deadline = Timeout ? wait_deadline(Timeout) : UINT64_MAX;
	/* A waiter that runs with interrupts off below DISPATCH_LEVEL (PASSIVE, or APC_LEVEL,
	 * which masks no device or DPC vector: CR8 1), as the pagefile's paging I/O does from
	 * its submit to this wait, turns them on while it spins, so a completion queued to this
	 * CPU (its DPC interrupt, the device's) is taken, and off again before it returns.  A
	 * system call and a #PF's handler run with them on already (mm/RULES.md "Interrupts and
	 * IRQL"). */
	bool window = irql <= APC_LEVEL && !(read_rflags() & RFLAGS_IF);
	if (window)
		__asm__ volatile("sti" ::: "memory");
	NTSTATUS st;
	for (;;) {
		if (event_take(e)) {
			st = STATUS_SUCCESS;
			break;
		}
		if (deadline != UINT64_MAX && rdtsc() >= deadline) {
			st = event_take(e) ? STATUS_SUCCESS : STATUS_TIMEOUT;
			break;
		}
		cpu_relax();
	}
	if (window)
		__asm__ volatile("cli" ::: "memory");
	return st;
}

/* ---- synchronous requests from kernel code ---------------------------------------------- */

/* An IRP of the I/O manager's for a kernel caller's request to DeviceObject's stack. */
static PIRP built_irp(PDEVICE_OBJECT DeviceObject, UCHAR major, PKEVENT Event, PIO_STATUS_BLOCK IoStatusBlock)
{
	PIRP irp = io_irp_for_request(DeviceObject, NULL, major, KernelMode);
	if (!irp)
		return NULL;
	irp->AllocationFlags = IRP_ALLOC_BUILT;
	irp->UserEvent = Event;
	irp->UserIosb = IoStatusBlock;
	return irp;
}

/* A buffer of `size` bytes holding in_len bytes of `in`. */
static bool system_buffer(PIRP irp, const void *in, ULONG in_len, ULONG size)
{
	if (!size)
		return true;
	PVOID b = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, IO_BUFFER_TAG);
	if (!b)
		return false;
	if (in_len) {
		memcpy(b, in, in_len);
		io_count_copy(in_len, 0);
	}
	irp->AssociatedIrp.SystemBuffer = b;
	irp->Flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER;
	return true;
}

/* An MDL for the caller's buffer on the IRP, probed and locked for KernelMode. */
static bool lock_buffer(PIRP irp, PVOID va, ULONG len, LOCK_OPERATION op)
{
	PMDL m = IoAllocateMdl(va, len, FALSE, FALSE, irp);
	if (!m)
		return false;
	volatile bool ok = true;
	__try {
		MmProbeAndLockPages(m, KernelMode, op);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		ok = false;
	}
	return ok;
}

/* IoBuildDeviceIoControlRequest page: the buffers by the code's method, as for a user's
 * request but for KernelMode; NULL when pool ran out or a direct buffer cannot be locked. */
PIRP IoBuildDeviceIoControlRequest(ULONG IoControlCode, PDEVICE_OBJECT DeviceObject, PVOID InputBuffer,
				   ULONG InputBufferLength, PVOID OutputBuffer, ULONG OutputBufferLength,
				   BOOLEAN InternalDeviceIoControl, PKEVENT Event, PIO_STATUS_BLOCK IoStatusBlock)
{
	UCHAR major = InternalDeviceIoControl ? IRP_MJ_INTERNAL_DEVICE_CONTROL : IRP_MJ_DEVICE_CONTROL;
	PIRP irp = built_irp(DeviceObject, major, Event, IoStatusBlock);
	if (!irp)
		return NULL;
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->Parameters.DeviceIoControl.OutputBufferLength = OutputBufferLength;
	sp->Parameters.DeviceIoControl.InputBufferLength = InputBufferLength;
	sp->Parameters.DeviceIoControl.IoControlCode = IoControlCode;
	irp->UserBuffer = OutputBuffer;
	irp->Overlay.AllocationSize.QuadPart = OutputBufferLength;
	bool ok = true;
	switch (METHOD_FROM_CTL_CODE(IoControlCode)) {
	case METHOD_BUFFERED:
		ok = system_buffer(irp, InputBuffer, InputBufferLength, MAX(InputBufferLength, OutputBufferLength));
		if (ok && OutputBufferLength)
			irp->Flags |= IRP_INPUT_OPERATION;
		break;
	case METHOD_IN_DIRECT:
	case METHOD_OUT_DIRECT:
		ok = system_buffer(irp, InputBuffer, InputBufferLength, InputBufferLength);
		if (ok && OutputBufferLength)
			ok = lock_buffer(irp, OutputBuffer, OutputBufferLength,
					 METHOD_FROM_CTL_CODE(IoControlCode) == METHOD_IN_DIRECT ? IoReadAccess
												: IoWriteAccess);
		break;
	default:
		sp->Parameters.DeviceIoControl.Type3InputBuffer = InputBuffer;
		break;
	}
	if (!ok) {
		io_irp_release(irp);
		return NULL;
	}
	return irp;
}

/* IoBuildSynchronousFsdRequest page: IRP_MJ_READ, IRP_MJ_WRITE, IRP_MJ_FLUSH_BUFFERS,
 * IRP_MJ_SHUTDOWN (others: NULL); a read or write transfers as the device asks
 * (DO_BUFFERED_IO, DO_DIRECT_IO, else the raw Buffer in Irp->UserBuffer). */
PIRP IoBuildSynchronousFsdRequest(ULONG MajorFunction, PDEVICE_OBJECT DeviceObject, PVOID Buffer, ULONG Length,
				  PLARGE_INTEGER StartingOffset, PKEVENT Event, PIO_STATUS_BLOCK IoStatusBlock)
{
	if (MajorFunction != IRP_MJ_READ && MajorFunction != IRP_MJ_WRITE && MajorFunction != IRP_MJ_FLUSH_BUFFERS &&
	    MajorFunction != IRP_MJ_SHUTDOWN)
		return NULL;
	PIRP irp = built_irp(DeviceObject, (UCHAR)MajorFunction, Event, IoStatusBlock);
	if (!irp || MajorFunction == IRP_MJ_FLUSH_BUFFERS || MajorFunction == IRP_MJ_SHUTDOWN)
		return irp;
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->Parameters.Read.Length = Length;
	sp->Parameters.Read.ByteOffset.QuadPart = StartingOffset ? StartingOffset->QuadPart : 0;
	bool read = MajorFunction == IRP_MJ_READ, ok = true;
	irp->UserBuffer = Buffer;
	irp->Overlay.AllocationSize.QuadPart = Length;
	if (DeviceObject->Flags & DO_BUFFERED_IO) {
		ok = system_buffer(irp, read ? NULL : Buffer, read ? 0 : Length, Length);
		if (ok && read)
			irp->Flags |= IRP_INPUT_OPERATION;
	} else if ((DeviceObject->Flags & DO_DIRECT_IO) && Length) {
		ok = lock_buffer(irp, Buffer, Length, read ? IoWriteAccess : IoReadAccess);
	}
	if (!ok) {
		io_irp_release(irp);
		return NULL;
	}
	return irp;
}

static uint64_t live_irps(void) { return nirps; }
ACCOUNTING_COUNTER(io_irps, "IRPs", live_irps);

/* IoIs32bitProcess (wdm.h): with an IRP, whether the I/O manager issued it for a 32-bit
 * user-mode process (driver-allocated IRPs are KernelMode, assumed 64-bit-ready); with NULL,
 * whether the caller runs in the context of a 32-bit process.  "32-bit" is a process running
 * a 32-bit image (compat32): its structures have 32-bit pointers.  A 64-bit program in a
 * PROCESS_WOW64 address space passes 64-bit ones (mm/RULES.md, "32-bit processes"). */
BOOLEAN IoIs32bitProcess(PIRP Irp)
{
	PEPROCESS p = Irp ? (Irp->RequestorMode == UserMode ? (PEPROCESS)Irp->Tail.Overlay.Thread : NULL) : ps_current();
	return p && p->compat32;
}
