/* Driver objects: the built-in images, DriverEntry and DriverUnload (see driver.h).
 * mm/RULES.md rule I8. */
#include "kernel/io/driver.h"
#include "kernel/accounting.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/smp/smp.h"

#define DRIVER_OBJECT_TAG 0x6A446F49u /* 'IoDj' */
#define SERVICES_KEY "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\"
#define DRIVER_DIR "\\Driver\\"

extern const struct io_builtin_driver *const __io_drivers_start[], *const __io_drivers_end[];

/* A loaded driver: its object, extension, the strings they point to. */
struct io_loaded {
	DRIVER_OBJECT object;
	DRIVER_EXTENSION extension;
	const struct io_builtin_driver *image;
	WCHAR driver_name[IO_NAME_MAX];   /* \Driver\NAME */
	WCHAR registry_path[IO_NAME_MAX + 64];
	struct io_loaded *next;
};

static struct io_loaded *loaded;
static uint64_t nloaded;

const struct io_builtin_driver *io_builtin_driver(unsigned i)
{
	return __io_drivers_start + i < __io_drivers_end ? __io_drivers_start[i] : NULL;
}

static const struct io_builtin_driver *image_find(const char *name)
{
	for (unsigned i = 0; io_builtin_driver(i); i++)
		if (!strcmp(io_builtin_driver(i)->name, name))
			return io_builtin_driver(i);
	return NULL;
}

static struct io_loaded *loaded_find(const char *name)
{
	for (struct io_loaded *l = loaded; l; l = l->next)
		if (!strcmp(l->image->name, name))
			return l;
	return NULL;
}

PDRIVER_OBJECT io_loaded_driver(const char *name)
{
	struct io_loaded *l = loaded_find(name);
	return l ? &l->object : NULL;
}

static void to_wide(WCHAR *dst, size_t cap, const char *a, const char *b, UNICODE_STRING *s)
{
	size_t n = 0;
	for (; *a && n + 1 < cap; a++)
		dst[n++] = (WCHAR)*a;
	for (; *b && n + 1 < cap; b++)
		dst[n++] = (WCHAR)*b;
	dst[n] = 0;
	s->Buffer = dst;
	s->Length = (USHORT)(n * sizeof(WCHAR));
	s->MaximumLength = (USHORT)((n + 1) * sizeof(WCHAR));
}

/* What the I/O manager does for a driver whose DriverEntry succeeded: its devices made in
 * DriverEntry are ready (DO_DEVICE_INITIALIZING cleared). */
static void devices_ready(PDRIVER_OBJECT drv)
{
	for (PDEVICE_OBJECT d = drv->DeviceObject; d; d = d->NextDevice)
		d->Flags &= ~DO_DEVICE_INITIALIZING;
}

static NTSTATUS unsupported(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	Irp->IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_INVALID_DEVICE_REQUEST;
}

static NTSTATUS load_driver(const char *name)
{
	const struct io_builtin_driver *image = image_find(name);
	if (!image)
		return STATUS_OBJECT_NAME_NOT_FOUND;
	if (loaded_find(name))
		return STATUS_IMAGE_ALREADY_LOADED;
	struct io_loaded *l = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *l, DRIVER_OBJECT_TAG);
	if (!l)
		return STATUS_INSUFFICIENT_RESOURCES;
	PDRIVER_OBJECT drv = &l->object;
	l->image = image;
	drv->Type = IO_TYPE_DRIVER;
	drv->Size = sizeof *drv;
	drv->DriverExtension = &l->extension;
	drv->DriverInit = image->entry;
	l->extension.DriverObject = drv;
	to_wide(l->driver_name, IO_NAME_MAX, DRIVER_DIR, name, &drv->DriverName);
	UNICODE_STRING reg;
	to_wide(l->registry_path, IO_NAME_MAX + 64, SERVICES_KEY, name, &reg);
	l->extension.ServiceKeyName = reg;
	/* Every major function a driver leaves alone is refused (IopInvalidDeviceRequest). */
	for (int mj = 0; mj <= IRP_MJ_MAXIMUM_FUNCTION; mj++)
		drv->MajorFunction[mj] = unsupported;
	NTSTATUS st = image->entry(drv, &reg);
	if (!NT_SUCCESS(st)) {
		/* The image goes away: nothing may point into it. */
		io_delete_driver_devices(drv);
		ExFreePoolWithTag(l, DRIVER_OBJECT_TAG);
		return st;
	}
	devices_ready(drv);
	l->next = loaded;
	loaded = l;
	nloaded++;
	return st;
}

static NTSTATUS unload_driver(const char *name)
{
	struct io_loaded *l = loaded_find(name);
	if (!l)
		return STATUS_OBJECT_NAME_NOT_FOUND;
	PDRIVER_OBJECT drv = &l->object;
	if (!drv->DriverUnload)
		return STATUS_INVALID_DEVICE_REQUEST;
	if (io_driver_busy(drv))
		return STATUS_DEVICE_BUSY;
	drv->DriverUnload(drv);
	/* Devices the driver forgot would point at code that is gone. */
	unsigned left = io_delete_driver_devices(drv);
	if (left)
		DbgPrint("io: driver %s left %u device object(s) at unload; deleted\n", name, left);
	for (struct io_loaded **pp = &loaded; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	ExFreePoolWithTag(l, DRIVER_OBJECT_TAG);
	nloaded--;
	return STATUS_SUCCESS;
}

/*
 * The load lock: one load or unload at a time on the whole machine, from the loaded-driver
 * check to the list's change, DriverEntry and DriverUnload included (NT serializes them under
 * a load mutex, IopDriverLoadResource).  A driver's routines run at PASSIVE_LEVEL and may take
 * any lock, so this is no spin lock: the IRQL stays as it is, and a CPU waiting for it answers
 * its cross-call mailbox.  It is outside the spin locks' order, before all of them.  A load
 * or unload from inside DriverEntry or DriverUnload would wait for itself: a PANIC.
 */
static uint32_t load_owner; /* CPU number + 1; 0: free */

static void load_lock(void)
{
	uint32_t me = smp_this_cpu() + 1, free = 0;
	if (__atomic_load_n(&load_owner, __ATOMIC_RELAXED) == me)
		PANIC("io: a driver load or unload from inside one, on CPU %u", me - 1);
	while (!__atomic_compare_exchange_n(&load_owner, &free, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		free = 0;
		smp_serve_mailbox();
		cpu_relax();
	}
}

static void load_unlock(void) { __atomic_store_n(&load_owner, 0, __ATOMIC_RELEASE); }

NTSTATUS io_load_driver(const char *name)
{
	load_lock();
	NTSTATUS st = load_driver(name);
	load_unlock();
	return st;
}

NTSTATUS io_unload_driver(const char *name)
{
	load_lock();
	NTSTATUS st = unload_driver(name);
	load_unlock();
	return st;
}

/* The service name at the end of \Registry\Machine\System\CurrentControlSet\Services\NAME. */
static NTSTATUS service_name(PUNICODE_STRING path, char name[IO_NAME_MAX])
{
	char full[IO_NAME_MAX + 64];
	if (!path || !path->Buffer || path->Length / sizeof(WCHAR) >= sizeof full)
		return STATUS_OBJECT_NAME_INVALID;
	size_t n = path->Length / sizeof(WCHAR);
	for (size_t i = 0; i < n; i++) {
		if (!path->Buffer[i] || path->Buffer[i] > 0x7E)
			return STATUS_OBJECT_NAME_INVALID;
		full[i] = (char)path->Buffer[i];
	}
	full[n] = 0;
	size_t k = strlen(SERVICES_KEY);
	if (n <= k || strncmp(full, SERVICES_KEY, k) || strchr(full + k, '\\') || n - k >= IO_NAME_MAX)
		return STATUS_OBJECT_PATH_SYNTAX_BAD;
	strlcpy(name, full + k, IO_NAME_MAX);
	return STATUS_SUCCESS;
}

NTSTATUS ZwLoadDriver(PUNICODE_STRING DriverServiceName)
{
	char name[IO_NAME_MAX];
	NTSTATUS st = service_name(DriverServiceName, name);
	return st ? st : io_load_driver(name);
}

NTSTATUS ZwUnloadDriver(PUNICODE_STRING DriverServiceName)
{
	char name[IO_NAME_MAX];
	NTSTATUS st = service_name(DriverServiceName, name);
	return st ? st : io_unload_driver(name);
}

static uint64_t loaded_drivers(void) { return nloaded; }
ACCOUNTING_COUNTER(io_drivers, "loaded drivers", loaded_drivers);
