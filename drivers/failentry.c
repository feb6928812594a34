/*
 * FailEntry: a driver whose DriverEntry fails after creating a device, as a driver that
 * runs out of resources half-way might (and forgets its cleanup).  The I/O manager must
 * leave nothing of it: tests/driver_test.c loads it.
 */
#include <ntddk.h>

DRIVER_INITIALIZE DriverEntry;

_Use_decl_annotations_
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
	UNICODE_STRING name;
	PDEVICE_OBJECT device;
	NTSTATUS status;

	UNREFERENCED_PARAMETER(RegistryPath);
	RtlInitUnicodeString(&name, L"\\Device\\FailEntry");
	status = IoCreateDevice(DriverObject, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &device);
	if (!NT_SUCCESS(status))
		return status;
	return STATUS_INSUFFICIENT_RESOURCES;
}
