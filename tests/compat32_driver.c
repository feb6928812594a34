/* The thunking test driver: IOCTLs of the four transfer methods, one of them carrying a
 * pointer in its METHOD_BUFFERED request, whose layout IoIs32bitProcess decides.  A driver
 * file (*_driver.c) so its __try blocks get the SMAP window of mm/RULES.md decision 8. */
#include "tests/compat32_driver.h"
#include "include/mdlab/compat32.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"

/* The 64-bit layout of the pointer-carrying request (the 32-bit one is
 * struct c32_sum_input32, include/mdlab/compat32.h). */
struct c32_sum_input64 {
	uint64_t buffer;
	uint32_t length, pad;
};

static PDEVICE_OBJECT c32_device;
static PMDL map_mdl;
struct c32drv_log c32_log;

static ULONG sum_bytes(const uint8_t *b, ULONG n)
{
	ULONG s = 0;
	for (ULONG i = 0; i < n; i++)
		s += b[i];
	return s;
}

/* The driver, written as a 64-bit driver serving 32-bit callers must be: IoIs32bitProcess
 * decides the layout of IOCTL_C32_SUM's request, whose embedded pointer it then probes in the
 * caller's context (Programming Issues for 64-Bit Drivers; I/O rule I7). */
static NTSTATUS c32_device_control(PDEVICE_OBJECT dev, PIRP Irp)
{
	(void)dev;
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	ULONG in_len = sp->Parameters.DeviceIoControl.InputBufferLength;
	ULONG out_len = sp->Parameters.DeviceIoControl.OutputBufferLength;
	PVOID sys = Irp->AssociatedIrp.SystemBuffer;
	volatile NTSTATUS st = STATUS_SUCCESS; /* set in __except */
	volatile ULONG_PTR info = 0;
	c32_log.calls++;
	c32_log.is32_irp = IoIs32bitProcess(Irp);
	c32_log.is32_null = IoIs32bitProcess(NULL);
	c32_log.interrupts_on = (read_rflags() & RFLAGS_IF) != 0;
	c32_log.irql = KeGetCurrentIrql();
	switch (sp->Parameters.DeviceIoControl.IoControlCode) {
	case IOCTL_C32_WHO:
		if (out_len < 4) {
			st = STATUS_BUFFER_TOO_SMALL;
			break;
		}
		*(ULONG *)sys = 0xB0B00000u | c32_log.is32_irp;
		info = 4;
		break;
	case IOCTL_C32_SUM: {
		volatile uint64_t buffer;
		volatile ULONG length;
		if (c32_log.is32_irp) {
			struct c32_sum_input32 r;
			if (in_len != sizeof r) {
				st = STATUS_INVALID_PARAMETER;
				break;
			}
			memcpy(&r, sys, sizeof r);
			buffer = r.buffer; /* a 32-bit pointer, zero-extended */
			length = r.length;
		} else {
			struct c32_sum_input64 r;
			if (in_len != sizeof r) {
				st = STATUS_INVALID_PARAMETER;
				break;
			}
			memcpy(&r, sys, sizeof r);
			buffer = r.buffer;
			length = r.length;
		}
		if (out_len < 4) {
			st = STATUS_BUFFER_TOO_SMALL;
			break;
		}
		__try {
			ProbeForRead((PVOID)buffer, length, 1);
			c32_log.sum = sum_bytes((const uint8_t *)buffer, length);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
		}
		if (NT_SUCCESS(st)) {
			*(ULONG *)sys = c32_log.sum;
			info = 4;
		}
		break;
	}
	case IOCTL_C32_IN_DIRECT: {
		const uint8_t *b = Irp->MdlAddress ? MmGetSystemAddressForMdlSafe(Irp->MdlAddress, NormalPagePriority) : NULL;
		if (!b) {
			st = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		c32_log.sum = sum_bytes(sys, in_len) + sum_bytes(b, out_len);
		break;
	}
	case IOCTL_C32_OUT_DIRECT: {
		uint8_t *b = Irp->MdlAddress ? MmGetSystemAddressForMdlSafe(Irp->MdlAddress, NormalPagePriority) : NULL;
		if (!b) {
			st = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		memset(b, 0xA5, out_len);
		info = out_len;
		break;
	}
	case IOCTL_C32_NEITHER: {
		PVOID in = sp->Parameters.DeviceIoControl.Type3InputBuffer, out = Irp->UserBuffer;
		__try {
			ProbeForRead(in, 4, 1);
			ProbeForWrite(out, 4, 1);
			*(volatile ULONG *)out = ~*(volatile ULONG *)in;
			info = 4;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
		}
		break;
	}
	case IOCTL_C32_MAP: {
		ULONG need = c32_log.is32_irp ? sizeof(ULONG) : sizeof(ULONG64);
		PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
		if (out_len < need || map_mdl) {
			st = out_len < need ? STATUS_BUFFER_TOO_SMALL : STATUS_DEVICE_BUSY;
			break;
		}
		map_mdl = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
		ULONG *k = map_mdl ? MmGetSystemAddressForMdlSafe(map_mdl, NormalPagePriority) : NULL;
		if (!k) {
			st = STATUS_INSUFFICIENT_RESOURCES;
			break;
		}
		k[0] = C32DRV_MAP_PATTERN;
		/* The seed page: for a 64-bit driver in the context of a 32-bit application the view
		 * is in the application's 32-bit range. */
		volatile uint64_t va = 0;
		__try {
			va = (uint64_t)MmMapLockedPagesSpecifyCache(map_mdl, UserMode, MmCached, NULL, FALSE,
								    NormalPagePriority | MdlMappingNoExecute);
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			st = GetExceptionCode();
		}
		if (!NT_SUCCESS(st))
			break;
		c32_log.map_va = va;
		if (c32_log.is32_irp)
			*(ULONG *)sys = (ULONG)va;
		else
			*(ULONG64 *)sys = va;
		info = need;
		break;
	}
	default:
		st = STATUS_INVALID_DEVICE_REQUEST;
	}
	Irp->IoStatus.Status = st;
	Irp->IoStatus.Information = NT_SUCCESS(st) ? info : 0;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return st;
}

NTSTATUS c32drv_load(void)
{
	memset(&c32_log, 0, sizeof c32_log);
	return IoCreateDeviceLite(C32_DEVICE, c32_device_control, NULL, &c32_device);
}

void c32drv_unload(void)
{
	if (c32_device)
		IoDeleteDevice(c32_device);
	c32_device = NULL;
	if (map_mdl) {
		MmFreePagesFromMdl(map_mdl);
		ExFreePool(map_mdl);
	}
	map_mdl = NULL;
}
