/* The I/O manager (see io.h): device objects and their names, symbolic links, stacks of
 * devices, per-process handles, the requests of user programs and their transfer methods,
 * cleanup at process teardown; the previous mode and the probes.  mm/RULES.md "I/O rules". */
#include "kernel/io/io.h"
#include "kernel/accounting.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/smp/percpu.h"
#include "kernel/process.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/uvm.h"

#define DEVICE_TAG 0x76446F49u /* 'IoDv' */
#define DRIVER_TAG 0x72446F49u /* 'IoDr' */
#define HANDLE_TAG 0x6F466F49u /* 'IoFo' */
#define LINK_TAG 0x6B4C6F49u   /* 'IoLk' */
/* Handles are multiples of 4 from 4, as NT's are; 0 is never one. */
#define HANDLE_STEP 4
#define STATUS_NO_SUCH_DEVICE ((NTSTATUS)0xC000000E)
#define STATUS_ACCESS_DENIED ((NTSTATUS)0xC0000022)

/* An open device: the file object the driver sees, and whose handle it is. */
struct io_handle {
	FILE_OBJECT file;
	PEPROCESS process;
	uint64_t value;
	struct io_handle *next;
};

/* A symbolic link in \??: its name there (after the prefix) and the target's name. */
struct io_link {
	char name[IO_NAME_MAX];
	char target[IO_NAME_MAX];
	struct io_link *next;
};

/* wdm.h promises NT's x64 offsets. */
_Static_assert(sizeof(IRP) == 0xD0, "IRP");
_Static_assert(offsetof(IRP, MdlAddress) == 0x08, "IRP.MdlAddress");
_Static_assert(offsetof(IRP, IoStatus) == 0x30, "IRP.IoStatus");
_Static_assert(offsetof(IRP, RequestorMode) == 0x40, "IRP.RequestorMode");
_Static_assert(offsetof(IRP, UserBuffer) == 0x70, "IRP.UserBuffer");
_Static_assert(offsetof(IRP, Tail.Overlay.CurrentStackLocation) == 0xB8, "IRP.CurrentStackLocation");
_Static_assert(sizeof(IO_STACK_LOCATION) == 0x48, "IO_STACK_LOCATION");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength) == 0x08, "Output");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength) == 0x10, "Input");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode) == 0x18, "Code");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.DeviceIoControl.Type3InputBuffer) == 0x20, "Type3");
_Static_assert(offsetof(IO_STACK_LOCATION, Parameters.Read.ByteOffset) == 0x18, "Read.ByteOffset");
_Static_assert(offsetof(IO_STACK_LOCATION, DeviceObject) == 0x28, "DeviceObject");
_Static_assert(offsetof(IO_STACK_LOCATION, CompletionRoutine) == 0x38, "CompletionRoutine");
_Static_assert(sizeof(DRIVER_OBJECT) == 0x150, "DRIVER_OBJECT");
_Static_assert(offsetof(DRIVER_OBJECT, DriverUnload) == 0x68, "DriverUnload");
_Static_assert(offsetof(DRIVER_OBJECT, MajorFunction) == 0x70, "MajorFunction");
_Static_assert(sizeof(DEVICE_OBJECT) == 0x150, "DEVICE_OBJECT");
_Static_assert(offsetof(DEVICE_OBJECT, DeviceExtension) == 0x40, "DeviceExtension");
_Static_assert(offsetof(DEVICE_OBJECT, StackSize) == 0x4C, "StackSize");
_Static_assert(offsetof(DEVICE_OBJECT, AlignmentRequirement) == 0x98, "AlignmentRequirement");
_Static_assert(offsetof(FILE_OBJECT, FsContext) == 0x18, "FsContext");
_Static_assert(offsetof(FILE_OBJECT, CurrentByteOffset) == 0x68, "CurrentByteOffset");

static struct io_device *devices;
static struct io_handle *handles;
static struct io_link *links;
static uint64_t ndevices, nhandles, nlinks, nlite;

/* The I/O manager's table lock (mm/RULES.md, "Locks"): the device, link and handle lists,
 * their counts, each device's ReferenceCount, deleted mark and attachment links.  Held for
 * a lookup and the change it leads to, never across a call into a driver (a dispatch
 * routine may create or delete devices).  The outermost lock: pool comes after it. */
static struct klock tables = KLOCK_INIT(KLOCK_IO);
static bool cleanup_registered;

static void process_cleanup(PEPROCESS p);

/* ---- names -------------------------------------------------------------------------- */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* Object names compare without regard to case (OBJ_CASE_INSENSITIVE, as Win32 opens). */
static bool name_equal(const char *a, const char *b)
{
	while (*a && lower(*a) == lower(*b))
		a++, b++;
	return lower(*a) == lower(*b);
}

/* Whether s starts with prefix (ignoring case); the rest. */
static const char *after_prefix(const char *s, const char *prefix)
{
	while (*prefix)
		if (lower(*s++) != lower(*prefix++))
			return NULL;
	return s;
}

NTSTATUS io_name_from_unicode(char out[IO_NAME_MAX], PCUNICODE_STRING s)
{
	if (!s || !s->Buffer || !s->Length || (s->Length & 1) || s->Length > s->MaximumLength)
		return STATUS_OBJECT_NAME_INVALID;
	size_t n = s->Length / sizeof(WCHAR);
	if (n >= IO_NAME_MAX)
		return STATUS_OBJECT_NAME_INVALID;
	for (size_t i = 0; i < n; i++) {
		if (!s->Buffer[i] || s->Buffer[i] > 0x7E)
			return STATUS_OBJECT_NAME_INVALID;
		out[i] = (char)s->Buffer[i];
	}
	out[n] = 0;
	return STATUS_SUCCESS;
}

/* The part of a \?? name after its prefix: \??\X, \DosDevices\X, \GLOBAL??\X. */
static const char *link_part(const char *name)
{
	static const char *const prefixes[] = { "\\??\\", "\\DosDevices\\", "\\GLOBAL??\\" };
	for (unsigned i = 0; i < 3; i++) {
		const char *rest = after_prefix(name, prefixes[i]);
		if (rest && *rest && !strchr(rest, '\\'))
			return rest;
	}
	return NULL;
}

/* ---- devices -------------------------------------------------------------------------- */

static struct io_device *device_find(const char *name)
{
	for (struct io_device *d = devices; d; d = d->next)
		if (!d->deleted && d->name[0] && name_equal(d->name, name))
			return d;
	return NULL;
}

static bool device_valid_locked(PDEVICE_OBJECT dev)
{
	for (struct io_device *d = devices; d; d = d->next)
		if (&d->device == dev)
			return dev->Type == IO_TYPE_DEVICE;
	return false;
}

bool io_device_valid(PDEVICE_OBJECT dev)
{
	KIRQL irql = klock_acquire(&tables);
	bool valid = device_valid_locked(dev);
	klock_release(&tables, irql);
	return valid;
}

PDEVICE_OBJECT io_top_of_stack(PDEVICE_OBJECT d)
{
	while (d->AttachedDevice)
		d = d->AttachedDevice;
	return d;
}

/* A device object for `driver`, named `name` ("" unnamed), ext bytes of extension. */
static NTSTATUS device_create(PDRIVER_OBJECT driver, ULONG ext, const char *name, ULONG type, ULONG chars,
			      BOOLEAN exclusive, PDEVICE_OBJECT *out)
{
	size_t head = ALIGN_UP(sizeof(struct io_device), 16);
	if (ext > 0xFFFF - sizeof(DEVICE_OBJECT))
		return STATUS_INVALID_PARAMETER;
	struct io_device *d = ExAllocatePool2(POOL_FLAG_NON_PAGED, head + ext, DEVICE_TAG);
	if (!d)
		return STATUS_INSUFFICIENT_RESOURCES;
	d->device.Type = IO_TYPE_DEVICE;
	d->device.Size = (USHORT)(sizeof(DEVICE_OBJECT) + ext);
	d->device.DriverObject = driver;
	d->device.DeviceType = type;
	d->device.Characteristics = chars;
	d->device.Flags = DO_DEVICE_INITIALIZING | (exclusive ? DO_EXCLUSIVE : 0);
	d->device.StackSize = 1;
	d->device.DeviceExtension = ext ? (PUCHAR)d + head : NULL;
	strlcpy(d->name, name, sizeof d->name);
	/* Teardown must reach the drivers of whatever a process still has open. */
	if (!cleanup_registered) {
		ps_register_cleanup(process_cleanup);
		cleanup_registered = true;
	}
	/* The name looked up and the device linked under one hold: two CPUs creating one
	 * name get one device and one collision. */
	KIRQL irql = klock_acquire(&tables);
	if (name[0] && device_find(name)) {
		klock_release(&tables, irql);
		ExFreePoolWithTag(d, DEVICE_TAG);
		return STATUS_OBJECT_NAME_COLLISION;
	}
	d->device.NextDevice = driver->DeviceObject;
	driver->DeviceObject = &d->device;
	d->next = devices;
	devices = d;
	ndevices++;
	klock_release(&tables, irql);
	*out = &d->device;
	return STATUS_SUCCESS;
}

/* IoCreateDevice page: mm/RULES.md rule I4. */
NTSTATUS IoCreateDevice(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize, PUNICODE_STRING DeviceName,
			ULONG DeviceType, ULONG DeviceCharacteristics, BOOLEAN Exclusive,
			PDEVICE_OBJECT *DeviceObject)
{
	char name[IO_NAME_MAX] = "";
	if (!DriverObject || DriverObject->Type != IO_TYPE_DRIVER || !DeviceObject)
		return STATUS_INVALID_PARAMETER;
	if (DeviceName) {
		NTSTATUS st = io_name_from_unicode(name, DeviceName);
		if (st)
			return st;
		if (name[0] != '\\')
			return STATUS_OBJECT_PATH_SYNTAX_BAD;
	}
	return device_create(DriverObject, DeviceExtensionSize, name, DeviceType, DeviceCharacteristics, Exclusive,
			     DeviceObject);
}

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

NTSTATUS IoCreateDeviceLite(const char *name, PDRIVER_DISPATCH device_control, PDRIVER_DISPATCH cleanup,
			    PDEVICE_OBJECT *out)
{
	size_t len = name ? strlen(name) : 0;
	if (!out)
		return STATUS_INVALID_PARAMETER;
	if (!len || len >= IO_DEVICE_NAME_MAX)
		return STATUS_OBJECT_NAME_INVALID;
	PDRIVER_OBJECT drv = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *drv, DRIVER_TAG);
	if (!drv)
		return STATUS_INSUFFICIENT_RESOURCES;
	drv->Type = IO_TYPE_DRIVER;
	drv->Size = sizeof *drv;
	for (int mj = 0; mj <= IRP_MJ_MAXIMUM_FUNCTION; mj++)
		drv->MajorFunction[mj] = dispatch_invalid;
	drv->MajorFunction[IRP_MJ_CREATE] = dispatch_success;
	drv->MajorFunction[IRP_MJ_CLOSE] = dispatch_success;
	drv->MajorFunction[IRP_MJ_CLEANUP] = cleanup ? cleanup : dispatch_success;
	if (device_control)
		drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] = device_control;
	NTSTATUS st = device_create(drv, 0, name, FILE_DEVICE_UNKNOWN, 0, FALSE, out);
	if (st) {
		ExFreePoolWithTag(drv, DRIVER_TAG);
		return st;
	}
	KIRQL irql = klock_acquire(&tables);
	io_device_of(*out)->lite_driver = drv;
	(*out)->Flags &= ~DO_DEVICE_INITIALIZING;
	nlite++;
	klock_release(&tables, irql);
	return STATUS_SUCCESS;
}

/* Under the table lock. */
static void device_free(struct io_device *d)
{
	for (struct io_device **pp = &devices; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	if (d->lite_driver) {
		ExFreePoolWithTag(d->lite_driver, DRIVER_TAG);
		nlite--;
	}
	d->device.Type = 0;
	ExFreePoolWithTag(d, DEVICE_TAG);
	ndevices--;
}

VOID IoDeleteDevice(PDEVICE_OBJECT DeviceObject)
{
	struct io_device *d = io_device_of(DeviceObject);
	KIRQL irql = klock_acquire(&tables);
	if (!device_valid_locked(DeviceObject) || d->deleted)
		PANIC("IoDeleteDevice: %p is not a live device object", (void *)DeviceObject);
	PDRIVER_OBJECT drv = DeviceObject->DriverObject;
	for (PDEVICE_OBJECT *pp = &drv->DeviceObject; *pp; pp = &(*pp)->NextDevice)
		if (*pp == DeviceObject) {
			*pp = DeviceObject->NextDevice;
			break;
		}
	/* A driver detaches before it deletes (IoDetachDevice); one that did not must not leave
	 * its neighbours pointing at freed memory. */
	if (d->attached_to && d->attached_to->AttachedDevice == DeviceObject)
		d->attached_to->AttachedDevice = NULL;
	if (DeviceObject->AttachedDevice)
		io_device_of(DeviceObject->AttachedDevice)->attached_to = NULL;
	d->attached_to = NULL;
	DeviceObject->AttachedDevice = NULL;
	d->deleted = true;
	d->name[0] = 0;
	if (!DeviceObject->ReferenceCount)
		device_free(d);
	klock_release(&tables, irql);
}

unsigned io_delete_driver_devices(PDRIVER_OBJECT driver)
{
	unsigned n = 0;
	while (driver->DeviceObject) {
		IoDeleteDevice(driver->DeviceObject);
		n++;
	}
	return n;
}

bool io_driver_busy(PDRIVER_OBJECT driver)
{
	bool busy = false;
	KIRQL irql = klock_acquire(&tables);
	for (PDEVICE_OBJECT d = driver->DeviceObject; d && !busy; d = d->NextDevice)
		busy = d->ReferenceCount != 0;
	klock_release(&tables, irql);
	return busy;
}

/* IoAttachDeviceToDeviceStack page: mm/RULES.md rule I6. */
PDEVICE_OBJECT IoAttachDeviceToDeviceStack(PDEVICE_OBJECT SourceDevice, PDEVICE_OBJECT TargetDevice)
{
	KIRQL irql = klock_acquire(&tables);
	PDEVICE_OBJECT top = NULL;
	if (device_valid_locked(SourceDevice) && device_valid_locked(TargetDevice)) {
		top = io_top_of_stack(TargetDevice);
		if (io_device_of(top)->deleted || top == SourceDevice) {
			top = NULL;
		} else {
			top->AttachedDevice = SourceDevice;
			io_device_of(SourceDevice)->attached_to = top;
			SourceDevice->StackSize = (CHAR)(top->StackSize + 1);
			SourceDevice->AlignmentRequirement =
				MAX(SourceDevice->AlignmentRequirement, top->AlignmentRequirement);
		}
	}
	klock_release(&tables, irql);
	return top;
}

VOID IoDetachDevice(PDEVICE_OBJECT TargetDevice)
{
	KIRQL irql = klock_acquire(&tables);
	PDEVICE_OBJECT above = TargetDevice->AttachedDevice;
	if (above) {
		io_device_of(above)->attached_to = NULL;
		TargetDevice->AttachedDevice = NULL;
	}
	klock_release(&tables, irql);
}

PDEVICE_OBJECT IoGetAttachedDeviceReference(PDEVICE_OBJECT DeviceObject) { return io_top_of_stack(DeviceObject); }

VOID ObDereferenceObject(PVOID Object) { UNREFERENCED_PARAMETER(Object); }

/* ---- symbolic links ----------------------------------------------------------------- */

static struct io_link *link_find(const char *part)
{
	for (struct io_link *l = links; l; l = l->next)
		if (name_equal(l->name, part))
			return l;
	return NULL;
}

NTSTATUS IoCreateSymbolicLink(PUNICODE_STRING SymbolicLinkName, PUNICODE_STRING DeviceName)
{
	char name[IO_NAME_MAX], target[IO_NAME_MAX];
	NTSTATUS st;
	if ((st = io_name_from_unicode(name, SymbolicLinkName)) || (st = io_name_from_unicode(target, DeviceName)))
		return st;
	const char *part = link_part(name);
	if (!part || target[0] != '\\')
		return STATUS_OBJECT_NAME_INVALID;
	struct io_link *l = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *l, LINK_TAG);
	if (!l)
		return STATUS_INSUFFICIENT_RESOURCES;
	strlcpy(l->name, part, sizeof l->name);
	strlcpy(l->target, target, sizeof l->target);
	KIRQL irql = klock_acquire(&tables);
	if (link_find(part)) {
		klock_release(&tables, irql);
		ExFreePoolWithTag(l, LINK_TAG);
		return STATUS_OBJECT_NAME_COLLISION;
	}
	l->next = links;
	links = l;
	nlinks++;
	klock_release(&tables, irql);
	return STATUS_SUCCESS;
}

NTSTATUS IoDeleteSymbolicLink(PUNICODE_STRING SymbolicLinkName)
{
	char name[IO_NAME_MAX];
	NTSTATUS st = io_name_from_unicode(name, SymbolicLinkName);
	if (st)
		return st;
	const char *part = link_part(name);
	if (!part)
		return STATUS_OBJECT_NAME_INVALID;
	struct io_link *l = NULL;
	KIRQL irql = klock_acquire(&tables);
	for (struct io_link **pp = &links; *pp; pp = &(*pp)->next)
		if (name_equal((*pp)->name, part)) {
			l = *pp;
			*pp = l->next;
			nlinks--;
			break;
		}
	klock_release(&tables, irql);
	if (!l)
		return STATUS_OBJECT_NAME_NOT_FOUND;
	ExFreePoolWithTag(l, LINK_TAG);
	return STATUS_SUCCESS;
}

/* What an open names: \\.\X and \??\X (and its synonyms) through a symbolic link,
 * \Device\X (any name from the root) directly, a bare name as IoCreateDeviceLite's. */
static struct io_device *resolve(const char *name)
{
	const char *part = after_prefix(name, "\\\\.\\");
	char buf[IO_NAME_MAX];
	if (part) {
		strlcpy(buf, "\\??\\", sizeof buf);
		strlcpy(buf + 4, part, sizeof buf - 4);
		name = buf;
	}
	if ((part = link_part(name))) {
		struct io_link *l = link_find(part);
		return l ? device_find(l->target) : NULL;
	}
	return device_find(name);
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
	KIRQL irql = klock_acquire(&tables);
	for (struct io_handle *h = handles; h; h = h->next)
		n += h->process == p;
	klock_release(&tables, irql);
	return n;
}

/* handle_find under the table lock. */
static struct io_handle *handle_lookup(const PEPROCESS p, uint64_t value)
{
	KIRQL irql = klock_acquire(&tables);
	struct io_handle *h = handle_find(p, value);
	klock_release(&tables, irql);
	return h;
}

/* Send a request the I/O manager made to the top of the file's stack and wait for it: the
 * status the dispatch routine returned, or, for STATUS_PENDING, the IRP's IoStatus.Status
 * once IofCompleteRequest has finished with it (irp.c sets the IRP's UserEvent last, after
 * the pages are unlocked), from a DPC on any CPU.  A driver that returns anything else
 * without completing the IRP broke the dispatch contract: a panic. */
static NTSTATUS call_and_wait(PIRP irp, PDEVICE_OBJECT top)
{
	KEVENT done;
	KeInitializeEvent(&done, NotificationEvent, FALSE);
	irp->UserEvent = &done;
	NTSTATUS st = IoCallDriver(top, irp);
	if (st == STATUS_PENDING) {
		KeWaitForSingleObject(&done, Executive, KernelMode, FALSE, NULL);
		irp->UserEvent = NULL;
		return irp->IoStatus.Status;
	}
	if (!KeReadStateEvent(&done))
		PANIC("io: the driver of device %p returned 0x%x for major function 0x%x without completing the IRP",
		      (void *)top, (ULONG)st, IoGetCurrentIrpStackLocation(irp)->MajorFunction);
	irp->UserEvent = NULL;
	return st;
}

/* A request with no buffers (create, cleanup, close) on an open device. */
static NTSTATUS simple_request(PFILE_OBJECT file, UCHAR major, KPROCESSOR_MODE mode)
{
	PDEVICE_OBJECT top = io_top_of_stack(file->DeviceObject);
	PIRP irp = io_irp_for_request(top, file, major, mode);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES;
	NTSTATUS st = call_and_wait(irp, top);
	io_irp_release(irp);
	return st;
}

/* Close a handle: IRP_MJ_CLEANUP and IRP_MJ_CLOSE to its driver (not to a deleted device's),
 * then the handle goes, and the device too if it was deleted and this was its last handle.
 * Runs in the handle's process's context. */
static void handle_close(struct io_handle *h)
{
	struct io_device *d = io_device_of(h->file.DeviceObject);
	if (!d->deleted) {
		simple_request(&h->file, IRP_MJ_CLEANUP, KernelMode);
		simple_request(&h->file, IRP_MJ_CLOSE, KernelMode);
	}
	KIRQL irql = klock_acquire(&tables);
	for (struct io_handle **pp = &handles; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	nhandles--;
	if (--d->device.ReferenceCount == 0 && d->deleted)
		device_free(d);
	klock_release(&tables, irql);
	ExFreePoolWithTag(h, HANDLE_TAG);
}

/* The ps_register_cleanup hook: PsDestroyProcess calls it attached to p, before p's address
 * space goes, so a driver's IRP_MJ_CLEANUP can still reach the process's memory. */
static void process_cleanup(PEPROCESS p)
{
	/* One handle at a time, the lock dropped for its requests to the driver. */
	for (;;) {
		KIRQL irql = klock_acquire(&tables);
		struct io_handle *h = handles;
		while (h && h->process != p)
			h = h->next;
		klock_release(&tables, irql);
		if (!h)
			return;
		handle_close(h);
	}
}

/* ---- NtOpenDevice, NtClose ----------------------------------------------------------- */

/* The NUL-terminated device name at user_name; STATUS_OBJECT_NAME_INVALID when it is empty
 * or does not end within IO_NAME_MAX bytes. */
static NTSTATUS name_from_user(char name[IO_NAME_MAX], uint64_t user_name)
{
	for (size_t i = 0; i < IO_NAME_MAX; i++) {
		NTSTATUS st = copy_from_user(&name[i], user_name + i, 1);
		if (st)
			return st;
		if (!name[i])
			return i ? STATUS_SUCCESS : STATUS_OBJECT_NAME_INVALID;
	}
	return STATUS_OBJECT_NAME_INVALID;
}

/* The width of a handle or ULONG_PTR the caller receives: 4 bytes for a process running a
 * 32-bit image (mm/RULES.md, "32-bit processes"), whose HANDLE and ULONG_PTR are 32-bit. */
static uint64_t user_ptr_size(const PEPROCESS p) { return p && p->compat32 ? 4 : 8; }

static NTSTATUS open_device(PEPROCESS p, uint64_t user_name, uint64_t user_handle)
{
	char name[IO_NAME_MAX];
	NTSTATUS st = name_from_user(name, user_name);
	if (st)
		return st;
	struct io_handle *h = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *h, HANDLE_TAG);
	if (!h)
		return STATUS_INSUFFICIENT_RESOURCES;
	/* The name resolved, the device checked and its reference taken under one hold: the
	 * reference keeps it while IRP_MJ_CREATE runs without the lock. */
	KIRQL irql = klock_acquire(&tables);
	struct io_device *d = resolve(name);
	st = !d ? STATUS_OBJECT_NAME_NOT_FOUND
	     /* A device its driver has not finished (DO_DEVICE_INITIALIZING) cannot be opened;
	      * an exclusive one only once. */
	     : io_top_of_stack(&d->device)->Flags & DO_DEVICE_INITIALIZING ? STATUS_NO_SUCH_DEVICE
	     : (d->device.Flags & DO_EXCLUSIVE) && d->device.ReferenceCount ? STATUS_ACCESS_DENIED
									    : STATUS_SUCCESS;
	if (!st) {
		d->device.ReferenceCount++;
		h->value = handle_value_free(p);
	}
	klock_release(&tables, irql);
	if (st) {
		ExFreePoolWithTag(h, HANDLE_TAG);
		return st;
	}
	h->file.Type = IO_TYPE_FILE;
	h->file.Size = sizeof h->file;
	h->file.DeviceObject = &d->device;
	h->file.ReadAccess = h->file.WriteAccess = TRUE;
	h->process = p;
	st = simple_request(&h->file, IRP_MJ_CREATE, UserMode);
	irql = klock_acquire(&tables);
	if (!NT_SUCCESS(st)) {
		if (--d->device.ReferenceCount == 0 && d->deleted)
			device_free(d);
		klock_release(&tables, irql);
		ExFreePoolWithTag(h, HANDLE_TAG);
		return st;
	}
	h->next = handles;
	handles = h;
	nhandles++;
	klock_release(&tables, irql);
	/* A handle the caller can't learn would stay open until the process ends: close it. */
	st = copy_to_user(user_handle, &h->value, user_ptr_size(p));
	if (st)
		handle_close(h);
	return st;
}

/* ---- the caller's buffers ------------------------------------------------------------- */

/* Whether [va, va + len) lies in p's user range without wrapping (ProbeForRead's check). */
static bool user_range(const PEPROCESS p, uint64_t va, uint64_t len)
{
	return !len || (va + len > va && va + len - 1 <= p->mm.highest_user);
}

/* ProbeForWrite: the range is user memory the caller may write (made resident, as NT's
 * probe touches each page): STATUS_SUCCESS, STATUS_IN_PAGE_ERROR when a page could not be
 * read back from the pagefile, else STATUS_ACCESS_VIOLATION. */
static NTSTATUS probe_for_write(PEPROCESS p, uint64_t va, uint64_t len)
{
	if (!len)
		return STATUS_SUCCESS;
	if (!user_range(p, va, len))
		return STATUS_ACCESS_VIOLATION;
	return uvm_make_resident_status(&p->mm, va, len, true, NULL);
}

/* The buffered methods' system buffer: `size` bytes of nonpaged pool (zeroed, so no stale
 * pool contents can reach the caller), holding in_len bytes of the caller's input. */
static NTSTATUS system_buffer(PIRP irp, PEPROCESS p, uint64_t in, ULONG in_len, ULONG size)
{
	if (!size)
		return STATUS_SUCCESS;
	if (!user_range(p, in, in_len))
		return STATUS_ACCESS_VIOLATION;
	PVOID b = ExAllocatePool2(POOL_FLAG_NON_PAGED, size, IO_BUFFER_TAG);
	if (!b)
		return STATUS_INSUFFICIENT_RESOURCES;
	irp->AssociatedIrp.SystemBuffer = b;
	irp->Flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER;
	NTSTATUS st = copy_from_user(b, in, in_len);
	if (!st)
		io_count_copy(in_len, 0);
	return st;
}

/* The direct methods' MDL for a user buffer, on the IRP (Irp->MdlAddress), probed and
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

/* The second stage, in the caller's context once the request is done (NT does it in an
 * APC): IoStatus.Information bytes of the system buffer, at most out_len, go back to the
 * caller's output buffer unless the status is an error; then IoStatus.Information to *info
 * (not for an error status: NT writes no status block for a request that failed at once).
 * STATUS_ACCESS_VIOLATION when a copy faulted, else st. */
static NTSTATUS finish(PIRP irp, NTSTATUS st, ULONG out_len, uint64_t info)
{
	NTSTATUS c = STATUS_SUCCESS;
	if ((irp->Flags & (IRP_BUFFERED_IO | IRP_INPUT_OPERATION)) == (IRP_BUFFERED_IO | IRP_INPUT_OPERATION) &&
	    !NT_ERROR(irp->IoStatus.Status)) {
		irp->IoStatus.Information = MIN(irp->IoStatus.Information, (ULONG_PTR)out_len);
		c = copy_to_user((uint64_t)irp->UserBuffer, irp->AssociatedIrp.SystemBuffer,
				 irp->IoStatus.Information);
		if (!c)
			io_count_copy(0, irp->IoStatus.Information);
	}
	if (!c && info && !NT_ERROR(st)) {
		uint64_t n = irp->IoStatus.Information;
		c = copy_to_user(info, &n, user_ptr_size(ps_current()));
	}
	io_irp_release(irp);
	return c ? STATUS_ACCESS_VIOLATION : st;
}

/* What the I/O manager does with the caller's buffers before the driver sees the IRP (the
 * table in io.h).  On failure whatever it allocated is on the IRP for io_irp_release. */
static NTSTATUS prepare_buffers(PIRP irp, PEPROCESS p, uint64_t in, ULONG in_len, uint64_t out, ULONG out_len)
{
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	NTSTATUS st;
	switch (METHOD_FROM_CTL_CODE(sp->Parameters.DeviceIoControl.IoControlCode)) {
	case METHOD_BUFFERED:
		if ((st = probe_for_write(p, out, out_len)))
			return st;
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

/* The handle's file object and the top of its stack, for a request. */
static NTSTATUS request_target(PEPROCESS p, uint64_t handle, struct io_handle **h, PDEVICE_OBJECT *top)
{
	*h = handle_lookup(p, handle);
	if (!*h)
		return STATUS_INVALID_HANDLE;
	if (io_device_of((*h)->file.DeviceObject)->deleted)
		return STATUS_DELETE_PENDING;
	*top = io_top_of_stack((*h)->file.DeviceObject);
	return STATUS_SUCCESS;
}

/* Every handle is opened for read and write, so the access bits of a code are not checked. */
static NTSTATUS device_io_control(PEPROCESS p, uint64_t handle, ULONG code, uint64_t in, ULONG in_len,
				  uint64_t out, ULONG out_len, uint64_t info)
{
	struct io_handle *h;
	PDEVICE_OBJECT top;
	NTSTATUS st = request_target(p, handle, &h, &top);
	if (st)
		return st;
	PIRP irp = io_irp_for_request(top, &h->file, IRP_MJ_DEVICE_CONTROL, UserMode);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES;
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->Parameters.DeviceIoControl.OutputBufferLength = out_len;
	sp->Parameters.DeviceIoControl.InputBufferLength = in_len;
	sp->Parameters.DeviceIoControl.IoControlCode = code;
	irp->UserBuffer = (PVOID)out;
	st = prepare_buffers(irp, p, in, in_len, out, out_len);
	if (!NT_SUCCESS(st)) {
		io_irp_release(irp);
		return st;
	}
	return finish(irp, call_and_wait(irp, top), out_len, info);
}

/* NtReadFile / NtWriteFile: the transfer the device's flags ask for (io.h), at `offset` (the
 * caller's ByteOffset, or the file's current offset when it gave none), and the file's
 * current offset is then where the transfer ended, as for a file object opened for
 * synchronous I/O. */
static NTSTATUS read_write(PEPROCESS p, bool write, uint64_t handle, uint64_t buf, ULONG len, uint64_t info,
			   const LARGE_INTEGER *offset)
{
	struct io_handle *h;
	PDEVICE_OBJECT top;
	NTSTATUS st = request_target(p, handle, &h, &top);
	if (st)
		return st;
	PIRP irp = io_irp_for_request(top, &h->file, write ? IRP_MJ_WRITE : IRP_MJ_READ, UserMode);
	if (!irp)
		return STATUS_INSUFFICIENT_RESOURCES;
	PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
	sp->Parameters.Read.Length = len;
	sp->Parameters.Read.ByteOffset = offset ? *offset : h->file.CurrentByteOffset;
	irp->UserBuffer = (PVOID)buf;
	if (top->Flags & DO_BUFFERED_IO) {
		st = write ? STATUS_SUCCESS : probe_for_write(p, buf, len);
		if (!st)
			st = system_buffer(irp, p, buf, write ? len : 0, len);
		if (!st && !write && len)
			irp->Flags |= IRP_INPUT_OPERATION;
	} else if ((top->Flags & DO_DIRECT_IO) && len) {
		st = lock_user_buffer(irp, buf, len, write ? IoReadAccess : IoWriteAccess);
	} else if (!user_range(p, buf, len)) {
		st = STATUS_ACCESS_VIOLATION;
	}
	if (!NT_SUCCESS(st)) {
		io_irp_release(irp);
		return st;
	}
	st = call_and_wait(irp, top);
	if (NT_SUCCESS(st))
		h->file.CurrentByteOffset.QuadPart =
			sp->Parameters.Read.ByteOffset.QuadPart + (LONGLONG)MIN(irp->IoStatus.Information, (ULONG_PTR)len);
	return finish(irp, st, len, info);
}

/* ---- system calls ------------------------------------------------------------------- */

/* NT probes a system call's outputs (the handle, the status block) before it does anything,
 * so a request whose result could not be returned is never made: read the bytes and write
 * them back, a real write through the caller's page tables.  0 is "no output wanted". */
static NTSTATUS probe_output(uint64_t uva, uint64_t len)
{
	uint64_t v = 0;
	if (!uva)
		return STATUS_SUCCESS;
	NTSTATUS st = copy_from_user(&v, uva, len);
	return st ? st : copy_to_user(uva, &v, len);
}

uint64_t io_sys_open_device(uint64_t user_name, uint64_t user_handle)
{
	PEPROCESS p = ps_current();
	if (!p)
		return (uint32_t)STATUS_INVALID_PARAMETER;
	NTSTATUS st = user_handle ? probe_output(user_handle, user_ptr_size(p)) : STATUS_ACCESS_VIOLATION;
	return (uint32_t)(st ? st : open_device(p, user_name, user_handle));
}

uint64_t io_sys_close(uint64_t handle)
{
	PEPROCESS p = ps_current();
	struct io_handle *h = p ? handle_lookup(p, handle) : NULL;
	if (!h)
		return (uint32_t)STATUS_INVALID_HANDLE;
	handle_close(h);
	return STATUS_SUCCESS;
}

/* The code and lengths are ULONGs in NT's signature: their upper halves are not looked at. */
uint64_t io_sys_device_io_control(uint64_t handle, uint64_t code, uint64_t in, uint64_t in_len, uint64_t out,
				  uint64_t out_len, uint64_t info)
{
	PEPROCESS p = ps_current();
	if (!p)
		return (uint32_t)STATUS_INVALID_PARAMETER;
	NTSTATUS st = probe_output(info, user_ptr_size(p));
	if (st)
		return (uint32_t)st;
	return (uint32_t)device_io_control(p, handle, (ULONG)code, in, (ULONG)in_len, out, (ULONG)out_len, info);
}

/* NtReadFile / NtWriteFile's ByteOffset, captured as NT's probe block does, before any I/O:
 * a LARGE_INTEGER at `uva` (a fault is STATUS_ACCESS_VIOLATION).  None given (0), or the
 * value FILE_USE_FILE_POINTER_POSITION (HighPart -1, LowPart 0xFFFFFFFE): the file's current
 * position, *use_current.  Any other value goes to the driver as it is (a disk refuses a
 * negative or unaligned one, STATUS_INVALID_PARAMETER). */
static NTSTATUS byte_offset_from_user(uint64_t uva, LARGE_INTEGER *out, bool *use_current)
{
	*use_current = true;
	if (!uva)
		return STATUS_SUCCESS;
	NTSTATUS st = copy_from_user(out, uva, sizeof *out);
	if (st)
		return st;
	*use_current = out->HighPart == -1 && out->LowPart == FILE_USE_FILE_POINTER_POSITION;
	return STATUS_SUCCESS;
}

uint64_t io_sys_read_write(bool write, uint64_t handle, uint64_t buf, uint64_t len, uint64_t info, uint64_t offset)
{
	PEPROCESS p = ps_current();
	if (!p)
		return (uint32_t)STATUS_INVALID_PARAMETER;
	LARGE_INTEGER at = { .QuadPart = 0 };
	bool current;
	NTSTATUS st = probe_output(info, user_ptr_size(p));
	if (!st)
		st = byte_offset_from_user(offset, &at, &current);
	return (uint32_t)(st ? st : read_write(p, write, handle, buf, (ULONG)len, info, current ? NULL : &at));
}

/* ---- previous mode, probes ------------------------------------------------------------ */

/* The previous mode is the thread's; a CPU runs one thread (its process's, or the kernel's),
 * so it lives in struct kcpu: a system call on one CPU never changes what a kernel caller on
 * another sees.  KernelMode (0) until a system call sets it. */
KPROCESSOR_MODE io_set_previous_mode(KPROCESSOR_MODE mode)
{
	struct kcpu *c = this_cpu();
	KPROCESSOR_MODE old = (KPROCESSOR_MODE)c->previous_mode;
	c->previous_mode = (int8_t)mode;
	return old;
}

KPROCESSOR_MODE ExGetPreviousMode(VOID) { return (KPROCESSOR_MODE)this_cpu()->previous_mode; }

const ULONG_PTR MmUserProbeAddress = MM_USER_PROBE_ADDRESS;

/* ProbeForRead / ProbeForWrite pages: mm/RULES.md rule I7.  A range beyond the limit is
 * refused as NT refuses it, by a real access at MmUserProbeAddress (never mapped: the
 * #PF raises STATUS_ACCESS_VIOLATION naming that address). */
static void probe_range(const volatile void *address, SIZE_T length, ULONG alignment)
{
	ULONG_PTR va = (ULONG_PTR)address, end = va + length;
	if (alignment != 1 && alignment != 2 && alignment != 4 && alignment != 8 && alignment != 16)
		ExRaiseStatus(STATUS_DATATYPE_MISALIGNMENT);
	if (va & (alignment - 1))
		ExRaiseStatus(STATUS_DATATYPE_MISALIGNMENT);
	if (end < va || end > MmUserProbeAddress)
		*(volatile UCHAR *)MmUserProbeAddress = 0;
}

VOID ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
	if (Length)
		probe_range(Address, Length, Alignment);
}

VOID ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
	if (!Length)
		return;
	probe_range(Address, Length, Alignment);
	PEPROCESS p = ps_current();
	/* NT's probe writes each page back: the fault names the buffer and a write; a page the
	 * pagefile cannot give back is the in-page error the write's fault would raise. */
	struct uvm_resident_stop stop;
	NTSTATUS st = p ? uvm_make_resident_status(&p->mm, (uint64_t)Address, Length, true, &stop)
			: STATUS_ACCESS_VIOLATION;
	if (st == STATUS_IN_PAGE_ERROR)
		seh_raise_in_page_error(stop.va, EXCEPTION_WRITE_FAULT, stop.io);
	if (st != STATUS_SUCCESS)
		seh_raise_access_violation((uint64_t)Address, EXCEPTION_WRITE_FAULT);
}

/* ---- accounting --------------------------------------------------------------------- */

static uint64_t open_handles(void) { return nhandles; }
ACCOUNTING_COUNTER(io_handles, "open device handles", open_handles);
static uint64_t device_objects(void) { return ndevices; }
ACCOUNTING_COUNTER(io_devices, "device objects", device_objects);
static uint64_t symbolic_links(void) { return nlinks; }
ACCOUNTING_COUNTER(io_links, "symbolic links", symbolic_links);
