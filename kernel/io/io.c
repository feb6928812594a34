/* The I/O manager (see io.h): named devices, per-process handles, IRPs and their completion,
 * the transfer methods of device I/O control, cleanup at process teardown. */
#include "kernel/io/io.h"
#include "kernel/accounting.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/uvm.h"

#define DEVICE_TAG 0x76446F49u /* 'IoDv' */
#define HANDLE_TAG 0x6F466F49u /* 'IoFo' */
#define IRP_TAG 0x20707249u    /* 'Irp ' */
#define BUFFER_TAG 0x62536F49u /* 'IoSb' */
/* Handles are multiples of 4 from 4, as NT's are; 0 is never one. */
#define HANDLE_STEP 4

/* A device: its object, the dispatch table that stands for its driver, its name. */
struct io_device {
	DEVICE_OBJECT device;       /* first: a PDEVICE_OBJECT is a struct io_device * */
	DRIVER_OBJECT driver;
	char name[IO_DEVICE_NAME_MAX];
	bool deleted;               /* IoDeleteDevice ran: unnamed, freed with its last handle */
	struct io_device *next;     /* the named devices */
};

/* An open device: the file object the driver sees, and whose handle it is. */
struct io_handle {
	FILE_OBJECT file;
	PEPROCESS process;
	uint64_t value;
	struct io_handle *next;
};

/* wdm.h promises NT's x64 offsets for these. */
_Static_assert(offsetof(IRP, MdlAddress) == 0x08, "IRP.MdlAddress");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength) == 0x08, "Output");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength) == 0x10, "Input");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode) == 0x18, "Code");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.Type3InputBuffer) == 0x20, "Type3");

static struct io_device *devices;
static struct io_handle *handles;
static uint64_t ndevices, nhandles;
static bool cleanup_registered;

static void process_cleanup(PEPROCESS p);

static struct io_device *device_of(PDEVICE_OBJECT d) { return (struct io_device *)d; }

/* ---- devices ------------------------------------------------------------------------ */

/* What an IRP gets when its driver has no routine for it: create, close and cleanup
 * succeed (every NT driver that can be opened provides them), anything else is refused. */
static NTSTATUS dispatch_success(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	Irp->IoStatus.Status = STATUS_SUCCESS;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_SUCCESS;
}

static NTSTATUS dispatch_invalid(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	Irp->IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_INVALID_DEVICE_REQUEST;
}

static struct io_device *device_find(const char *name)
{
	for (struct io_device *d = devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

NTSTATUS IoCreateDeviceLite(const char *name, PDRIVER_DISPATCH device_control, PDRIVER_DISPATCH cleanup,
			    PDEVICE_OBJECT *out)
{
	size_t len = name ? strlen(name) : 0;
	if (!out)
		return STATUS_INVALID_PARAMETER;
	if (!len || len >= IO_DEVICE_NAME_MAX)
		return STATUS_OBJECT_NAME_INVALID;
	if (device_find(name))
		return STATUS_OBJECT_NAME_COLLISION;
	struct io_device *d = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *d, DEVICE_TAG);
	if (!d)
		return STATUS_INSUFFICIENT_RESOURCES;
	d->driver.Type = IO_TYPE_DRIVER;
	d->driver.Size = sizeof d->driver;
	d->driver.DeviceObject = &d->device;
	for (int mj = 0; mj <= IRP_MJ_MAXIMUM_FUNCTION; mj++)
		d->driver.MajorFunction[mj] = dispatch_invalid;
	d->driver.MajorFunction[IRP_MJ_CREATE] = dispatch_success;
	d->driver.MajorFunction[IRP_MJ_CLOSE] = dispatch_success;
	d->driver.MajorFunction[IRP_MJ_CLEANUP] = cleanup ? cleanup : dispatch_success;
	if (device_control)
		d->driver.MajorFunction[IRP_MJ_DEVICE_CONTROL] = device_control;
	d->device.Type = IO_TYPE_DEVICE;
	d->device.Size = sizeof d->device;
	d->device.DriverObject = &d->driver;
	d->device.DeviceType = FILE_DEVICE_UNKNOWN;
	strlcpy(d->name, name, sizeof d->name);
	/* Teardown must reach the drivers of whatever a process still has open. */
	if (!cleanup_registered) {
		ps_register_cleanup(process_cleanup);
		cleanup_registered = true;
	}
	d->next = devices;
	devices = d;
	ndevices++;
	*out = &d->device;
	return STATUS_SUCCESS;
}

static void device_free(struct io_device *d)
{
	ExFreePoolWithTag(d, DEVICE_TAG);
	ndevices--;
}

VOID IoDeleteDevice(PDEVICE_OBJECT DeviceObject)
{
	struct io_device *d = device_of(DeviceObject);
	if (DeviceObject->Type != IO_TYPE_DEVICE || d->deleted)
		PANIC("IoDeleteDevice: %p is not a live device object", (void *)DeviceObject);
	for (struct io_device **pp = &devices; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	d->deleted = true;
	if (!DeviceObject->ReferenceCount)
		device_free(d);
}

/* ---- IRPs --------------------------------------------------------------------------- */

/* The stack location the next io_call hands the driver. */
static PIO_STACK_LOCATION irp_next_location(PIRP irp) { return irp->Tail.Overlay.CurrentStackLocation - 1; }

/* An IRP with one stack location, for `major` on `file`'s device, from nonpaged pool; NULL
 * when pool ran out.  Its stack location is the next one (CurrentLocation = StackCount + 1),
 * as IoAllocateIrp leaves it for the caller to fill. */
static PIRP irp_allocate(PFILE_OBJECT file, UCHAR major, KPROCESSOR_MODE mode)
{
	USHORT size = sizeof(IRP) + sizeof(IO_STACK_LOCATION);
	PIRP irp = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, IRP_TAG);
	if (!irp)
		return NULL;
	irp->Type = IO_TYPE_IRP;
	irp->Size = size;
	irp->RequestorMode = mode;
	irp->StackCount = 1;
	irp->CurrentLocation = 2;
	irp->Tail.Overlay.CurrentStackLocation = (PIO_STACK_LOCATION)(irp + 1) + 1;
	PIO_STACK_LOCATION sp = irp_next_location(irp);
	sp->MajorFunction = major;
	sp->DeviceObject = file->DeviceObject;
	sp->FileObject = file;
	return irp;
}

/* Free the IRP; its buffers and MDLs must be gone (irp_release_buffers). */
static void irp_free(PIRP irp)
{
	if (irp->MdlAddress || irp->AssociatedIrp.SystemBuffer)
		PANIC("irp_free: IRP %p still holds an MDL or a system buffer", (void *)irp);
	ExFreePoolWithTag(irp, IRP_TAG);
}

/* Free the system buffer and every MDL on the IRP, unlocking any still locked (a request that
 * failed before it reached the driver). */
static void irp_release_buffers(PIRP irp)
{
	if (irp->Flags & IRP_DEALLOCATE_BUFFER)
		ExFreePoolWithTag(irp->AssociatedIrp.SystemBuffer, BUFFER_TAG);
	irp->AssociatedIrp.SystemBuffer = NULL;
	irp->Flags &= ~(IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION);
	for (PMDL m = irp->MdlAddress, next; m; m = next) {
		next = m->Next;
		if (m->MdlFlags & MDL_PAGES_LOCKED)
			MmUnlockPages(m);
		IoFreeMdl(m);
	}
	irp->MdlAddress = NULL;
}

/* Hand the IRP's next stack location to its device's driver (IoCallDriver) and return the
 * request's status.  mdlab's I/O is synchronous: the IRP must be completed by the time the
 * dispatch routine returns; a STATUS_PENDING return then means the IRP's own status. */
static NTSTATUS io_call(PIRP irp)
{
	irp->CurrentLocation--;
	irp->Tail.Overlay.CurrentStackLocation--;
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
	struct io_device *d = device_of(sp->DeviceObject);
	UCHAR major = sp->MajorFunction;
	NTSTATUS st = d->driver.MajorFunction[major](&d->device, irp);
	if (irp->CurrentLocation != irp->StackCount + 1)
		PANIC("io_call: the driver of %s returned 0x%x for major function 0x%x without completing the IRP",
		      d->name, (ULONG)st, major);
	return st == STATUS_PENDING ? irp->IoStatus.Status : st;
}

VOID IoCompleteRequest(PIRP Irp, CHAR PriorityBoost)
{
	UNREFERENCED_PARAMETER(PriorityBoost); /* every request is synchronous: no waiting thread to boost */
	/* Bug check 0x44: Microsoft defines P1 (the IRP) and reserves P2-P4 (0 here); the stack
	 * position that tells a second completion is printed instead. */
	if (Irp->Type != IO_TYPE_IRP || Irp->CurrentLocation > Irp->StackCount) {
		kprintf("*** IoCompleteRequest of IRP %p: CurrentLocation %d of StackCount %d\n", (void *)Irp,
			(int)Irp->CurrentLocation, (int)Irp->StackCount);
		KeBugCheckEx(MULTIPLE_IRP_COMPLETE_REQUESTS, (ULONG_PTR)Irp, 0, 0, 0);
	}
	if (Irp->IoStatus.Status == STATUS_PENDING)
		PANIC("IoCompleteRequest: IRP %p completed with STATUS_PENDING", (void *)Irp);
	Irp->CurrentLocation++;
	Irp->Tail.Overlay.CurrentStackLocation++;
	/* The first stage of completion, which NT allows up to DISPATCH_LEVEL: the pages go
	 * back now, and MmUnlockPages releases the system mapping first. */
	for (PMDL m = Irp->MdlAddress; m; m = m->Next)
		if (m->MdlFlags & MDL_PAGES_LOCKED)
			MmUnlockPages(m);
}

/* The second stage, in the caller's thread once the dispatch routine returned (NT does it in
 * an APC): IoStatus.Information bytes of the system buffer, at most out_len, go back to the
 * caller's output buffer unless the status is an error; then the buffers go.  False when
 * that copy faulted. */
static bool irp_finish(PIRP irp, ULONG out_len)
{
	bool ok = true;
	if ((irp->Flags & (IRP_BUFFERED_IO | IRP_INPUT_OPERATION)) == (IRP_BUFFERED_IO | IRP_INPUT_OPERATION) &&
	    !NT_ERROR(irp->IoStatus.Status)) {
		irp->IoStatus.Information = MIN(irp->IoStatus.Information, (ULONG_PTR)out_len);
		ok = copy_to_user((uint64_t)irp->UserBuffer, irp->AssociatedIrp.SystemBuffer,
				  irp->IoStatus.Information) == STATUS_SUCCESS;
	}
	irp_release_buffers(irp);
	return ok;
}

/* A request with no buffers (create, cleanup, close) on an open device. */
static NTSTATUS io_simple_request(PFILE_OBJECT file, UCHAR major, KPROCESSOR_MODE mode)
{
	PIRP irp = irp_allocate(file, major, mode);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES;
	NTSTATUS st = io_call(irp);
	irp_finish(irp, 0);
	irp_free(irp);
	return st;
}

/* ---- handles ------------------------------------------------------------------------ */

static struct io_handle *handle_find(const PEPROCESS p, uint64_t value)
{
	for (struct io_handle *h = handles; h; h = h->next)
		if (h->process == p && h->value == value)
			return h;
	return NULL;
}

static uint64_t handle_value_free(const PEPROCESS p)
{
	uint64_t v = HANDLE_STEP;
	while (handle_find(p, v))
		v += HANDLE_STEP;
	return v;
}

uint32_t io_process_handles(const PEPROCESS p)
{
	uint32_t n = 0;
	for (struct io_handle *h = handles; h; h = h->next)
		n += h->process == p;
	return n;
}

/* Close a handle: IRP_MJ_CLEANUP and IRP_MJ_CLOSE to its driver (not to a deleted device's),
 * then the handle goes, and the device too if it was deleted and this was its last handle.
 * Runs in the handle's process's context. */
static void handle_close(struct io_handle *h)
{
	struct io_device *d = device_of(h->file.DeviceObject);
	if (!d->deleted) {
		io_simple_request(&h->file, IRP_MJ_CLEANUP, KernelMode);
		io_simple_request(&h->file, IRP_MJ_CLOSE, KernelMode);
	}
	for (struct io_handle **pp = &handles; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	ExFreePoolWithTag(h, HANDLE_TAG);
	nhandles--;
	if (--d->device.ReferenceCount == 0 && d->deleted)
		device_free(d);
}

/* The ps_register_cleanup hook: PsDestroyProcess calls it attached to p, before p's address
 * space goes, so a driver's IRP_MJ_CLEANUP can still reach the process's memory. */
static void process_cleanup(PEPROCESS p)
{
	for (struct io_handle *h = handles, *next; h; h = next) {
		next = h->next;
		if (h->process == p)
			handle_close(h);
	}
}

/* ---- NtOpenDevice ------------------------------------------------------------------- */

/* The NUL-terminated device name at user_name; STATUS_OBJECT_NAME_INVALID when it is empty
 * or does not end within IO_DEVICE_NAME_MAX bytes. */
static NTSTATUS name_from_user(char name[IO_DEVICE_NAME_MAX], uint64_t user_name)
{
	for (size_t i = 0; i < IO_DEVICE_NAME_MAX; i++) {
		NTSTATUS st = copy_from_user(&name[i], user_name + i, 1);
		if (st)
			return st;
		if (!name[i])
			return i ? STATUS_SUCCESS : STATUS_OBJECT_NAME_INVALID;
	}
	return STATUS_OBJECT_NAME_INVALID;
}

static NTSTATUS open_device(PEPROCESS p, uint64_t user_name, uint64_t user_handle)
{
	char name[IO_DEVICE_NAME_MAX];
	NTSTATUS st = name_from_user(name, user_name);
	if (st)
		return st;
	struct io_device *d = device_find(name);
	if (!d)
		return STATUS_OBJECT_NAME_NOT_FOUND;
	struct io_handle *h = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *h, HANDLE_TAG);
	if (!h)
		return STATUS_INSUFFICIENT_RESOURCES;
	h->file.Type = IO_TYPE_FILE;
	h->file.Size = sizeof h->file;
	h->file.DeviceObject = &d->device;
	h->process = p;
	h->value = handle_value_free(p);
	st = io_simple_request(&h->file, IRP_MJ_CREATE, UserMode);
	if (!NT_SUCCESS(st)) {
		ExFreePoolWithTag(h, HANDLE_TAG);
		return st;
	}
	h->next = handles;
	handles = h;
	nhandles++;
	d->device.ReferenceCount++;
	/* A handle the caller can't learn would stay open until the process ends: close it. */
	st = copy_to_user(user_handle, &h->value, sizeof h->value);
	if (st)
		handle_close(h);
	return st;
}

/* ---- NtDeviceIoControlFile ---------------------------------------------------------- */

/* Whether [va, va + len) lies in p's user range without wrapping (ProbeForRead's check). */
static bool user_range(const PEPROCESS p, uint64_t va, uint64_t len)
{
	return !len || (va + len > va && va + len - 1 <= p->mm.highest_user);
}

/* ProbeForWrite: the range is user memory the caller may write (made resident, as NT's
 * probe touches each page). */
static bool probe_for_write(PEPROCESS p, uint64_t va, uint64_t len)
{
	return !len || (user_range(p, va, len) && uvm_make_resident(&p->mm, va, len, true));
}

/* ProbeForRead (its wdm.h page): nothing is checked when Length is 0; an Address not on an
 * Alignment boundary raises STATUS_DATATYPE_MISALIGNMENT; a range not wholly in the user part
 * of the address space raises STATUS_ACCESS_VIOLATION.  NT raises the latter by writing to
 * MM_USER_PROBE_ADDRESS, so the record names that address and a write (a wrapped range: its
 * start). */
static void probe_user_range(uint64_t va, SIZE_T len, ULONG align)
{
	if (va & (uint64_t)(align - 1))
		ExRaiseStatus(STATUS_DATATYPE_MISALIGNMENT);
	if (va + len < va || va + len > MM_USER_PROBE_ADDRESS)
		seh_raise_access_violation(va + len < va ? va : MM_USER_PROBE_ADDRESS, EXCEPTION_WRITE_FAULT);
}

VOID ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
	if (Length)
		probe_user_range((uint64_t)Address, Length, Alignment);
}

/* ProbeForWrite: the same checks, then each page must be writable by the caller (NT touches
 * each page for write): made resident here, or STATUS_ACCESS_VIOLATION at the buffer. */
VOID ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
	if (!Length)
		return;
	uint64_t va = (uint64_t)Address;
	probe_user_range(va, Length, Alignment);
	PEPROCESS p = ps_current();
	if (!p || !probe_for_write(p, va, Length))
		seh_raise_access_violation(va, EXCEPTION_WRITE_FAULT);
}

/* The buffered methods' system buffer: `size` bytes of nonpaged pool (zeroed, so no stale
 * pool contents can reach the caller), holding in_len bytes of the caller's input. */
static NTSTATUS system_buffer(PIRP irp, PEPROCESS p, uint64_t in, ULONG in_len, ULONG size)
{
	if (!size)
		return STATUS_SUCCESS;
	if (!user_range(p, in, in_len))
		return STATUS_ACCESS_VIOLATION;
	PVOID b = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, BUFFER_TAG);
	if (!b)
		return STATUS_INSUFFICIENT_RESOURCES;
	irp->AssociatedIrp.SystemBuffer = b;
	irp->Flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER;
	return copy_from_user(b, in, in_len);
}

/* The direct methods' MDL for the output buffer, on the IRP (Irp->MdlAddress), probed and
 * locked for the requestor's mode.  On failure the MDL stays on the IRP, unlocked. */
static NTSTATUS lock_user_buffer(PIRP irp, uint64_t va, ULONG len, LOCK_OPERATION op)
{
	PMDL m = IoAllocateMdl((PVOID)va, len, FALSE, TRUE, irp);
	if (!m)
		return STATUS_INSUFFICIENT_RESOURCES;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(m, irp->RequestorMode, op);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	return st;
}

/* What the I/O manager does with the caller's buffers before the driver sees the IRP (the
 * table in io.h).  On failure whatever it allocated is on the IRP for irp_release_buffers. */
static NTSTATUS prepare_buffers(PIRP irp, PEPROCESS p, uint64_t in, ULONG in_len, uint64_t out, ULONG out_len)
{
	PIO_STACK_LOCATION sp = irp_next_location(irp);
	NTSTATUS st;
	switch (METHOD_FROM_CTL_CODE(sp->Parameters.DeviceIoControl.IoControlCode)) {
	case METHOD_BUFFERED:
		if (!probe_for_write(p, out, out_len))
			return STATUS_ACCESS_VIOLATION;
		if ((st = system_buffer(irp, p, in, in_len, MAX(in_len, out_len))))
			return st;
		if (out_len)
			irp->Flags |= IRP_INPUT_OPERATION;
		return STATUS_SUCCESS;
	case METHOD_IN_DIRECT:
		if ((st = system_buffer(irp, p, in, in_len, in_len)))
			return st;
		return out_len ? lock_user_buffer(irp, out, out_len, IoReadAccess) : STATUS_SUCCESS;
	case METHOD_OUT_DIRECT:
		if ((st = system_buffer(irp, p, in, in_len, in_len)))
			return st;
		return out_len ? lock_user_buffer(irp, out, out_len, IoWriteAccess) : STATUS_SUCCESS;
	default: /* METHOD_NEITHER: the driver's to probe, in this same process context */
		sp->Parameters.DeviceIoControl.Type3InputBuffer = (PVOID)in;
		return STATUS_SUCCESS;
	}
}

/* Every handle is opened for read and write, so the access bits of a code are not checked. */
static NTSTATUS device_io_control(PEPROCESS p, uint64_t handle, ULONG code, uint64_t in, ULONG in_len,
				  uint64_t out, ULONG out_len)
{
	struct io_handle *h = handle_find(p, handle);
	if (!h)
		return STATUS_INVALID_HANDLE;
	if (device_of(h->file.DeviceObject)->deleted)
		return STATUS_DELETE_PENDING;
	PIRP irp = irp_allocate(&h->file, IRP_MJ_DEVICE_CONTROL, UserMode);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES;
	PIO_STACK_LOCATION sp = irp_next_location(irp);
	sp->Parameters.DeviceIoControl.OutputBufferLength = out_len;
	sp->Parameters.DeviceIoControl.InputBufferLength = in_len;
	sp->Parameters.DeviceIoControl.IoControlCode = code;
	irp->UserBuffer = (PVOID)out;
	NTSTATUS st = prepare_buffers(irp, p, in, in_len, out, out_len);
	if (NT_SUCCESS(st)) {
		st = io_call(irp);
		if (!irp_finish(irp, out_len))
			st = STATUS_ACCESS_VIOLATION;
	} else {
		irp_release_buffers(irp);
	}
	irp_free(irp);
	return st;
}

/* ---- system calls ------------------------------------------------------------------- */

uint64_t io_sys_open_device(uint64_t user_name, uint64_t user_handle)
{
	PEPROCESS p = ps_current();
	return (uint32_t)(p ? open_device(p, user_name, user_handle) : STATUS_INVALID_PARAMETER);
}

/* The code and lengths are ULONGs in NT's signature: their upper halves are not looked at. */
uint64_t io_sys_device_io_control(uint64_t handle, uint64_t code, uint64_t in, uint64_t in_len, uint64_t out,
				  uint64_t out_len)
{
	PEPROCESS p = ps_current();
	if (!p)
		return (uint32_t)STATUS_INVALID_PARAMETER;
	return (uint32_t)device_io_control(p, handle, (ULONG)code, in, (ULONG)in_len, out, (ULONG)out_len);
}

/* ---- accounting --------------------------------------------------------------------- */

static uint64_t open_handles(void) { return nhandles; }
ACCOUNTING_COUNTER(io_handles, "open device handles", open_handles);
static uint64_t device_objects(void) { return ndevices; }
ACCOUNTING_COUNTER(io_devices, "device objects", device_objects);
