/*
 * MdlSample: a WDM driver in the style of the WDK's samples, written against <wdm.h> only.
 *
 * DriverEntry creates \Device\MdlSample (buffered I/O, a device extension holding a small
 * data store and counters) and the symbolic link \DosDevices\MdlSample, so that Win32's
 * CreateFile("\\.\MdlSample") opens it.  It handles create, close, cleanup, read and write
 * (the data store, at the file offset) and device control, one code per transfer method
 * (mdlsample_ioctl.h).  DriverUnload deletes the link and the device.
 */
#include <wdm.h>
#include <string.h>
#include "mdlsample_ioctl.h"

#define MDLSAMPLE_TAG 'pSdM'

typedef struct _DEVICE_EXTENSION {
	PDEVICE_OBJECT Self;
	ULONG DataLength;
	UCHAR Data[MDLSAMPLE_DATA_SIZE];
	MDLSAMPLE_STATS Stats;
} DEVICE_EXTENSION, *PDEVICE_EXTENSION;

DRIVER_INITIALIZE DriverEntry;
DRIVER_UNLOAD MdlSampleUnload;
_Dispatch_type_(IRP_MJ_CREATE) _Dispatch_type_(IRP_MJ_CLOSE) _Dispatch_type_(IRP_MJ_CLEANUP)
DRIVER_DISPATCH MdlSampleCreateClose;
_Dispatch_type_(IRP_MJ_READ) _Dispatch_type_(IRP_MJ_WRITE) DRIVER_DISPATCH MdlSampleReadWrite;
_Dispatch_type_(IRP_MJ_DEVICE_CONTROL) DRIVER_DISPATCH MdlSampleDeviceControl;

#pragma alloc_text(INIT, DriverEntry)
#pragma alloc_text(PAGE, MdlSampleUnload)
#pragma alloc_text(PAGE, MdlSampleCreateClose)
#pragma alloc_text(PAGE, MdlSampleReadWrite)
#pragma alloc_text(PAGE, MdlSampleDeviceControl)

_Use_decl_annotations_
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
	UNICODE_STRING ntName, dosName;
	PDEVICE_OBJECT deviceObject = NULL;
	NTSTATUS status;

	KdPrint(("MdlSample: DriverEntry %wZ\n", RegistryPath));

	RtlInitUnicodeString(&ntName, MDLSAMPLE_NT_DEVICE_NAME);
	status = IoCreateDevice(DriverObject, sizeof(DEVICE_EXTENSION), &ntName, FILE_DEVICE_UNKNOWN,
				FILE_DEVICE_SECURE_OPEN, FALSE, &deviceObject);
	if (!NT_SUCCESS(status)) {
		DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "MdlSample: IoCreateDevice failed 0x%x\n", status);
		return status;
	}

	PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)deviceObject->DeviceExtension;
	RtlZeroMemory(ext, sizeof(*ext));
	ext->Self = deviceObject;
	deviceObject->Flags |= DO_BUFFERED_IO;

	DriverObject->MajorFunction[IRP_MJ_CREATE] = MdlSampleCreateClose;
	DriverObject->MajorFunction[IRP_MJ_CLOSE] = MdlSampleCreateClose;
	DriverObject->MajorFunction[IRP_MJ_CLEANUP] = MdlSampleCreateClose;
	DriverObject->MajorFunction[IRP_MJ_READ] = MdlSampleReadWrite;
	DriverObject->MajorFunction[IRP_MJ_WRITE] = MdlSampleReadWrite;
	DriverObject->MajorFunction[IRP_MJ_DEVICE_CONTROL] = MdlSampleDeviceControl;
	DriverObject->DriverUnload = MdlSampleUnload;

	RtlInitUnicodeString(&dosName, MDLSAMPLE_DOS_DEVICE_NAME);
	status = IoCreateSymbolicLink(&dosName, &ntName);
	if (!NT_SUCCESS(status)) {
		DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "MdlSample: IoCreateSymbolicLink failed 0x%x\n",
			   status);
		IoDeleteDevice(deviceObject);
		return status;
	}
	deviceObject->Flags &= ~DO_DEVICE_INITIALIZING;
	return STATUS_SUCCESS;
}

_Use_decl_annotations_
VOID MdlSampleUnload(PDRIVER_OBJECT DriverObject)
{
	UNICODE_STRING dosName;

	PAGED_CODE();
	KdPrint(("MdlSample: unload\n"));
	RtlInitUnicodeString(&dosName, MDLSAMPLE_DOS_DEVICE_NAME);
	IoDeleteSymbolicLink(&dosName);
	if (DriverObject->DeviceObject != NULL)
		IoDeleteDevice(DriverObject->DeviceObject);
}

_Use_decl_annotations_
NTSTATUS MdlSampleCreateClose(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
	PIO_STACK_LOCATION irpSp = IoGetCurrentIrpStackLocation(Irp);

	PAGED_CODE();
	if (irpSp->MajorFunction == IRP_MJ_CREATE)
		ext->Stats.Opens++;
	else if (irpSp->MajorFunction == IRP_MJ_CLOSE)
		ext->Stats.Closes++;
	Irp->IoStatus.Status = STATUS_SUCCESS;
	Irp->IoStatus.Information = 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return STATUS_SUCCESS;
}

/* Buffered I/O: the data store at the file offset, from or to the system buffer. */
_Use_decl_annotations_
NTSTATUS MdlSampleReadWrite(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
	PIO_STACK_LOCATION irpSp = IoGetCurrentIrpStackLocation(Irp);
	NTSTATUS status = STATUS_SUCCESS;
	ULONG_PTR done = 0;

	PAGED_CODE();
	if (irpSp->MajorFunction == IRP_MJ_READ) {
		ULONG length = irpSp->Parameters.Read.Length;
		LONGLONG offset = irpSp->Parameters.Read.ByteOffset.QuadPart;
		ext->Stats.Reads++;
		if (offset < 0) {
			status = STATUS_INVALID_PARAMETER;
		} else if (offset >= ext->DataLength) {
			status = length ? STATUS_END_OF_FILE : STATUS_SUCCESS;
		} else {
			done = ext->DataLength - (ULONG)offset;
			if (done > length)
				done = length;
			RtlCopyMemory(Irp->AssociatedIrp.SystemBuffer, ext->Data + offset, done);
		}
	} else {
		ULONG length = irpSp->Parameters.Write.Length;
		LONGLONG offset = irpSp->Parameters.Write.ByteOffset.QuadPart;
		ext->Stats.Writes++;
		if (offset < 0 || offset + length > MDLSAMPLE_DATA_SIZE) {
			status = STATUS_BUFFER_TOO_SMALL;
		} else {
			RtlCopyMemory(ext->Data + offset, Irp->AssociatedIrp.SystemBuffer, length);
			if (offset + length > ext->DataLength)
				ext->DataLength = (ULONG)(offset + length);
			done = length;
		}
	}
	Irp->IoStatus.Status = status;
	Irp->IoStatus.Information = done;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return status;
}

static VOID MdlSampleUpcase(PUCHAR Buffer, ULONG Length)
{
	for (ULONG i = 0; i < Length; i++)
		if (Buffer[i] >= 'a' && Buffer[i] <= 'z')
			Buffer[i] = (UCHAR)(Buffer[i] - 'a' + 'A');
}

/* Lock a caller's raw buffer and map it into system space (as the WDK's IOCTL sample does for
 * METHOD_NEITHER): the probe's exception becomes the status, with nothing left locked. */
static NTSTATUS MdlSampleLockBuffer(PVOID Buffer, ULONG Length, KPROCESSOR_MODE Mode, LOCK_OPERATION Operation,
				    PMDL *Mdl, PUCHAR *SystemVa)
{
	PMDL mdl = IoAllocateMdl(Buffer, Length, FALSE, TRUE, NULL);
	if (mdl == NULL)
		return STATUS_INSUFFICIENT_RESOURCES;
	__try {
		MmProbeAndLockPages(mdl, Mode, Operation);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		NTSTATUS status = GetExceptionCode();
		IoFreeMdl(mdl);
		DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "MdlSample: bad buffer, 0x%x\n", status);
		return status;
	}
	*SystemVa = (PUCHAR)MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute);
	if (*SystemVa == NULL) {
		MmUnlockPages(mdl);
		IoFreeMdl(mdl);
		return STATUS_INSUFFICIENT_RESOURCES;
	}
	*Mdl = mdl;
	return STATUS_SUCCESS;
}

/* METHOD_NEITHER: the caller's raw pointers, valid only in its own context; a user's are
 * probed first (ProbeForRead / ProbeForWrite inside __try), then locked and mapped. */
static NTSTATUS MdlSampleReverse(PVOID In, PVOID Out, ULONG Length, KPROCESSOR_MODE RequestorMode)
{
	PMDL inMdl, outMdl;
	PUCHAR in, out;
	NTSTATUS status;

	if (Length == 0)
		return STATUS_SUCCESS;
	if (RequestorMode != KernelMode) {
		try {
			ProbeForRead(In, Length, sizeof(UCHAR));
			ProbeForWrite(Out, Length, sizeof(UCHAR));
		} except (EXCEPTION_EXECUTE_HANDLER) {
			return GetExceptionCode();
		}
	}
	status = MdlSampleLockBuffer(In, Length, RequestorMode, IoReadAccess, &inMdl, &in);
	if (!NT_SUCCESS(status))
		return status;
	status = MdlSampleLockBuffer(Out, Length, RequestorMode, IoWriteAccess, &outMdl, &out);
	if (NT_SUCCESS(status)) {
		for (ULONG i = 0; i < Length; i++)
			out[i] = in[Length - 1 - i];
		/* MmUnlockPages releases the system mappings too. */
		MmUnlockPages(outMdl);
		IoFreeMdl(outMdl);
	}
	MmUnlockPages(inMdl);
	IoFreeMdl(inMdl);
	return status;
}

_Use_decl_annotations_
NTSTATUS MdlSampleDeviceControl(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
	PIO_STACK_LOCATION irpSp = IoGetCurrentIrpStackLocation(Irp);
	ULONG inLen = irpSp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG outLen = irpSp->Parameters.DeviceIoControl.OutputBufferLength;
	NTSTATUS status = STATUS_SUCCESS;
	ULONG_PTR done = 0;

	PAGED_CODE();
	ext->Stats.Ioctls++;

	switch (irpSp->Parameters.DeviceIoControl.IoControlCode) {
	case IOCTL_MDLSAMPLE_BUFFERED: {
		PUCHAR buffer = (PUCHAR)Irp->AssociatedIrp.SystemBuffer;
		if (outLen < inLen) {
			status = STATUS_BUFFER_TOO_SMALL;
			break;
		}
		MdlSampleUpcase(buffer, inLen);
		done = inLen;
		break;
	}
	case IOCTL_MDLSAMPLE_IN_DIRECT: {
		PUCHAR data;
		if (!Irp->MdlAddress || outLen > MDLSAMPLE_DATA_SIZE) {
			status = STATUS_INVALID_PARAMETER;
			break;
		}
		data = (PUCHAR)MmGetSystemAddressForMdlSafe(Irp->MdlAddress, NormalPagePriority | MdlMappingNoExecute);
		if (!data) {
			status = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		RtlCopyMemory(ext->Data, data, outLen);
		ext->DataLength = outLen;
		done = outLen;
		break;
	}
	case IOCTL_MDLSAMPLE_OUT_DIRECT: {
		PUCHAR data;
		if (!Irp->MdlAddress) {
			status = STATUS_INVALID_PARAMETER;
			break;
		}
		data = (PUCHAR)MmGetSystemAddressForMdlSafe(Irp->MdlAddress, NormalPagePriority | MdlMappingNoExecute);
		if (!data) {
			status = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		done = ext->DataLength < outLen ? ext->DataLength : outLen;
		RtlCopyMemory(data, ext->Data, done);
		break;
	}
	case IOCTL_MDLSAMPLE_NEITHER: {
		PVOID in = irpSp->Parameters.DeviceIoControl.Type3InputBuffer;
		PVOID out = Irp->UserBuffer;
		if (outLen < inLen) {
			status = STATUS_BUFFER_TOO_SMALL;
			break;
		}
		status = MdlSampleReverse(in, out, inLen, IoGetRequestorMode(Irp));
		if (NT_SUCCESS(status))
			done = inLen;
		break;
	}
	case IOCTL_MDLSAMPLE_GET_STATS:
		/* Variable-size data, the NT way: what fits, and STATUS_BUFFER_OVERFLOW (a warning:
		 * the I/O manager still copies those bytes back) when not all of it does. */
		if (outLen == 0) {
			status = STATUS_BUFFER_TOO_SMALL;
			break;
		}
		ext->Stats.DataLength = ext->DataLength;
		done = outLen < sizeof(MDLSAMPLE_STATS) ? outLen : sizeof(MDLSAMPLE_STATS);
		RtlCopyMemory(Irp->AssociatedIrp.SystemBuffer, &ext->Stats, done);
		if (done < sizeof(MDLSAMPLE_STATS))
			status = STATUS_BUFFER_OVERFLOW;
		break;
	default:
		status = STATUS_INVALID_DEVICE_REQUEST;
		break;
	}
	Irp->IoStatus.Status = status;
	Irp->IoStatus.Information = done;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return status;
}
