/*
 * Drivers as a driver sees them: the MdlSample driver (drivers/mdlsample.c, WDK source)
 * loaded and unloaded by name with ZwLoadDriver / ZwUnloadDriver, its DRIVER_OBJECT,
 * device and symbolic link, and its application (user/mdlsample.c) run in ring 3 against
 * it; the Win32 runtime (user/win32.c) through the hello program.  mm/RULES.md rule I8.
 */
#include "kernel/ktest.h"
#include "include/wdm.h"
#include "drivers/mdlsample_ioctl.h"
#include "kernel/lab/monitor.h"
#include "kernel/io/driver.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/userprog.h"

#define SERVICES L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\"

static UNICODE_STRING service(PCWSTR path)
{
	UNICODE_STRING s;
	RtlInitUnicodeString(&s, path);
	return s;
}

/* Run a Win32 program with a command line; its exit status, the process left for checks
 * (the caller destroys it). */
static NTSTATUS run(const char *cmdline, PEPROCESS *out)
{
	uint64_t args[65];
	char name[32];
	size_t n = 0;
	while (cmdline[n] && cmdline[n] != ' ' && n + 1 < sizeof name)
		n++;
	memcpy(name, cmdline, n);
	name[n] = 0;
	*out = PsCreateProcess(name, 0, args, userprog_pack_cmdline(cmdline, args, 65));
	return *out ? PsRunProcess(*out) : STATUS_INSUFFICIENT_RESOURCES;
}

static void load_by_name_calls_driver_entry_and_unload_undoes_it(struct ktest *t)
{
	UNICODE_STRING s = service(SERVICES L"mdlsample");
	ASSERT_EQ(t, ZwLoadDriver(&s), STATUS_SUCCESS);
	PDRIVER_OBJECT drv = io_loaded_driver("mdlsample");
	ASSERT_TRUE(t, drv != NULL);
	EXPECT_EQ(t, drv->Type, IO_TYPE_DRIVER);
	EXPECT_EQ(t, drv->Size, sizeof(DRIVER_OBJECT));
	UNICODE_STRING expect = service(L"\\Driver\\mdlsample");
	EXPECT_TRUE(t, RtlEqualUnicodeString(&drv->DriverName, &expect, FALSE));
	EXPECT_TRUE(t, drv->DriverUnload != NULL);
	EXPECT_TRUE(t, drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] != drv->MajorFunction[IRP_MJ_PNP]);
	/* Its device: named, buffered, ready (DO_DEVICE_INITIALIZING gone), with its extension. */
	PDEVICE_OBJECT dev = drv->DeviceObject;
	ASSERT_TRUE(t, dev != NULL);
	EXPECT_TRUE(t, dev->NextDevice == NULL);
	EXPECT_TRUE(t, dev->DriverObject == drv);
	EXPECT_TRUE(t, dev->Flags & DO_BUFFERED_IO);
	EXPECT_FALSE(t, dev->Flags & DO_DEVICE_INITIALIZING);
	EXPECT_TRUE(t, dev->DeviceExtension != NULL);
	EXPECT_EQ(t, dev->Characteristics, FILE_DEVICE_SECURE_OPEN);
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_IMAGE_ALREADY_LOADED);
	EXPECT_EQ(t, ZwUnloadDriver(&s), STATUS_SUCCESS);
	EXPECT_TRUE(t, io_loaded_driver("mdlsample") == NULL);
	EXPECT_EQ(t, ZwUnloadDriver(&s), STATUS_OBJECT_NAME_NOT_FOUND);
	/* Loaded again, the name and link are free for it. */
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_SUCCESS);
	EXPECT_EQ(t, ZwUnloadDriver(&s), STATUS_SUCCESS);
}

static void load_of_bad_names(struct ktest *t)
{
	UNICODE_STRING s = service(SERVICES L"nosuchdriver");
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_OBJECT_NAME_NOT_FOUND);
	s = service(L"\\Registry\\Machine\\mdlsample");
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_OBJECT_PATH_SYNTAX_BAD);
	s = service(SERVICES L"a\\b");
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_OBJECT_PATH_SYNTAX_BAD);
	s = service(SERVICES);
	EXPECT_EQ(t, ZwLoadDriver(&s), STATUS_OBJECT_PATH_SYNTAX_BAD);
	EXPECT_EQ(t, ZwLoadDriver(NULL), STATUS_OBJECT_NAME_INVALID);
	EXPECT_TRUE(t, io_loaded_driver("mdlsample") == NULL);
}

static void the_application_drives_every_request(struct ktest *t)
{
	ASSERT_EQ(t, io_load_driver("mdlsample"), STATUS_SUCCESS);
	PEPROCESS p;
	NTSTATUS st = run("mdlsample", &p);
	ASSERT_TRUE(t, p != NULL);
	/* The program counts what did not give what it should: 0. */
	EXPECT_EQ(t, st, 0);
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_EQ(t, io_process_handles(p), 0); /* it closed what it opened */
	PsDestroyProcess(p);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_SUCCESS);
}

static void a_kernel_address_for_method_neither_is_refused_by_the_probe(struct ktest *t)
{
	ASSERT_EQ(t, io_load_driver("mdlsample"), STATUS_SUCCESS);
	PEPROCESS p;
	NTSTATUS st = run("mdlsample bad", &p);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, st, 0); /* FALSE with ERROR_NOACCESS, as the program checks */
	PsDestroyProcess(p);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_SUCCESS);
}

static void unload_waits_for_no_handle(struct ktest *t)
{
	ASSERT_EQ(t, io_load_driver("mdlsample"), STATUS_SUCCESS);
	PEPROCESS p;
	EXPECT_EQ(t, run("mdlsample hold", &p), 0);
	ASSERT_TRUE(t, p != NULL);
	/* The ended process still holds its handle until it is torn down. */
	EXPECT_EQ(t, io_process_handles(p), 1);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_DEVICE_BUSY);
	EXPECT_TRUE(t, io_loaded_driver("mdlsample") != NULL);
	PsDestroyProcess(p);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_SUCCESS);
}

/* Ring 3 as an attacker: every I/O system call refuses a kernel pointer, a bad handle, a
 * length past its buffer, and writes nothing into kernel memory. */
static void the_io_system_calls_refuse_bad_arguments(struct ktest *t)
{
	static volatile uint64_t canary[2] = { 0xC0FFEE00C0FFEE00ull, 0xC0FFEE00C0FFEE00ull };
	char line[64];
	ksnprintf(line, sizeof line, "ioattack %lx", (uint64_t)&canary[0]);
	ASSERT_EQ(t, io_load_driver("mdlsample"), STATUS_SUCCESS);
	PEPROCESS p;
	NTSTATUS st = run(line, &p);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, st, 0); /* every call failed as it must */
	EXPECT_FALSE(t, p->fault.happened);
	EXPECT_EQ(t, io_process_handles(p), 0);
	PsDestroyProcess(p);
	EXPECT_EQ(t, canary[0], 0xC0FFEE00C0FFEE00ull);
	EXPECT_EQ(t, canary[1], 0xC0FFEE00C0FFEE00ull);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_SUCCESS);
}

static void without_the_driver_the_application_finds_no_device(struct ktest *t)
{
	PEPROCESS p;
	EXPECT_EQ(t, run("mdlsample", &p), 1); /* CreateFile failed: ERROR_FILE_NOT_FOUND */
	ASSERT_TRUE(t, p != NULL);
	PsDestroyProcess(p);
}

static void hello_gets_its_arguments_and_the_memory_calls_work(struct ktest *t)
{
	PEPROCESS p;
	EXPECT_EQ(t, run("hello one two", &p), 0);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_FALSE(t, p->fault.happened);
	PsDestroyProcess(p);
}

static void command_line_packing(struct ktest *t)
{
	uint64_t args[3];
	EXPECT_EQ(t, userprog_pack_cmdline("hello", args, 3), 2);
	EXPECT_EQ(t, args[0], 5);
	EXPECT_EQ(t, memcmp(&args[1], "hello", 5), 0);
	/* Cut to what fits: two slots of bytes. */
	EXPECT_EQ(t, userprog_pack_cmdline("0123456789abcdefXYZ", args, 3), 3);
	EXPECT_EQ(t, args[0], 16);
	EXPECT_TRUE(t, userprog_find("hello") && userprog_find("mdlsample") && !userprog_find("nope"));
}

static void a_failing_driver_entry_leaves_nothing(struct ktest *t)
{
	/* The accounting after the case proves the device and the driver object went. */
	EXPECT_EQ(t, io_load_driver("failentry"), STATUS_INSUFFICIENT_RESOURCES);
	EXPECT_TRUE(t, io_loaded_driver("failentry") == NULL);
	/* Its device's name is free again. */
	EXPECT_EQ(t, io_load_driver("failentry"), STATUS_INSUFFICIENT_RESOURCES);
}

/* Kernel callers reach the same driver with IoBuildDeviceIoControlRequest: KernelMode, so the
 * driver does not probe METHOD_NEITHER pointers. */
static void kernel_requests_to_the_sample(struct ktest *t)
{
	ASSERT_EQ(t, io_load_driver("mdlsample"), STATUS_SUCCESS);
	PDEVICE_OBJECT dev = io_loaded_driver("mdlsample")->DeviceObject;
	char buf[16] = "kernel caller", rev[16] = { 0 };
	KEVENT event;
	IO_STATUS_BLOCK iosb;
	KeInitializeEvent(&event, NotificationEvent, FALSE);
	PIRP irp = IoBuildDeviceIoControlRequest(IOCTL_MDLSAMPLE_BUFFERED, dev, buf, 6, buf, sizeof buf, FALSE,
						 &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	NTSTATUS st = IoCallDriver(dev, irp);
	if (st == STATUS_PENDING) {
		KeWaitForSingleObject(&event, Executive, KernelMode, FALSE, NULL);
		st = iosb.Status;
	}
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, 6);
	EXPECT_EQ(t, memcmp(buf, "KERNEL caller", 13), 0);
	KeClearEvent(&event);
	irp = IoBuildDeviceIoControlRequest(IOCTL_MDLSAMPLE_NEITHER, dev, buf, 6, rev, 6, FALSE, &event, &iosb);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_EQ(t, IoCallDriver(dev, irp), STATUS_SUCCESS);
	EXPECT_EQ(t, iosb.Information, 6);
	EXPECT_EQ(t, memcmp(rev, "LENREK", 6), 0);
	EXPECT_EQ(t, io_unload_driver("mdlsample"), STATUS_SUCCESS);
}

static void monitor_commands_load_run_and_unload(struct ktest *t)
{
	char load[] = "driver load mdlsample", run_line[] = "run mdlsample", unload[] = "driver unload mdlsample";
	char list[] = "driver list", bad[] = "driver load", nothing[] = "run", unknown[] = "run nosuch";
	EXPECT_EQ(t, monitor_execute(load), 0);
	EXPECT_TRUE(t, io_loaded_driver("mdlsample") != NULL);
	EXPECT_EQ(t, monitor_execute(list), 0);
	EXPECT_EQ(t, monitor_execute(run_line), 0);
	EXPECT_EQ(t, monitor_execute(unload), 0);
	EXPECT_TRUE(t, io_loaded_driver("mdlsample") == NULL);
	EXPECT_EQ(t, monitor_execute(bad), -1);
	EXPECT_EQ(t, monitor_execute(nothing), -1);
	EXPECT_EQ(t, monitor_execute(unknown), 0);
}

/* A driver without DriverUnload can never be unloaded (rule I8): ZwUnloadDriver refuses it,
 * every time, and it keeps its object and device.  It stays loaded for the life of the
 * system, which no ordinary case may leave behind (the accounting counts loaded drivers and
 * pool), so this case ends in a stop of its own whose parameters carry what it found: loaded
 * with no DriverUnload and a device, the status of two unloads, still loaded with its device. */
static void a_driver_without_unload_stays_loaded(struct ktest *t)
{
	UNICODE_STRING s = service(SERVICES L"nounload");
	NTSTATUS st = ZwLoadDriver(&s);
	PDRIVER_OBJECT drv = io_loaded_driver("nounload");
	ULONG_PTR loaded = st == STATUS_SUCCESS && drv && !drv->DriverUnload && drv->DeviceObject;
	NTSTATUS first = ZwUnloadDriver(&s), again = ZwUnloadDriver(&s);
	ULONG_PTR still = drv && io_loaded_driver("nounload") == drv && drv->DeviceObject &&
			  drv->DeviceObject->DriverObject == drv;
	ktest_expect_stop(t, MANUALLY_INITIATED_CRASH, 1, (ULONG)STATUS_INVALID_DEVICE_REQUEST,
			  (ULONG)STATUS_INVALID_DEVICE_REQUEST, 1, KTEST_P_ALL);
	KeBugCheckEx(MANUALLY_INITIATED_CRASH, loaded, (ULONG)first, (ULONG)again, still);
}

static struct ktest_case driver_cases[] = {
	KTEST_CASE(a_failing_driver_entry_leaves_nothing),
	KTEST_CASE(kernel_requests_to_the_sample),
	KTEST_CASE(monitor_commands_load_run_and_unload),
	KTEST_CASE(load_by_name_calls_driver_entry_and_unload_undoes_it),
	KTEST_CASE(load_of_bad_names),
	KTEST_CASE(the_application_drives_every_request),
	KTEST_CASE(a_kernel_address_for_method_neither_is_refused_by_the_probe),
	KTEST_CASE(unload_waits_for_no_handle),
	KTEST_CASE(the_io_system_calls_refuse_bad_arguments),
	KTEST_CASE(without_the_driver_the_application_finds_no_device),
	KTEST_CASE(hello_gets_its_arguments_and_the_memory_calls_work),
	KTEST_CASE(command_line_packing),
	KTEST_DEATH_CASE_P1(a_driver_without_unload_stays_loaded, MANUALLY_INITIATED_CRASH, 1),
	{0}
};
KTEST_SUITE(driver, driver_cases);
