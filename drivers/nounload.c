/*
 * NoUnload: a driver that sets no DriverUnload routine.  Such a driver can never be unloaded
 * (ZwUnloadDriver answers STATUS_INVALID_DEVICE_REQUEST, mm/RULES.md I/O rule I8) and keeps
 * its device for the life of the system: tests/driver_test.c loads it in a death case.
 */
#include <ntddk.h>

DRIVER_INITIALIZE DriverEntry;

_Use_decl_annotations_
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
	UNICODE_STRING name;
	PDEVICE_OBJECT device;

	UNREFERENCED_PARAMETER(RegistryPath);
	RtlInitUnicodeString(&name, L"\\Device\\NoUnload");
	return IoCreateDevice(DriverObject, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &device);
}
