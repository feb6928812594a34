/*
 * The I/O manager, kernel side (the driver's surface is in include/wdm.h).
 *
 * Objects: driver objects (kernel/io/driver.c: the built-in drivers, loaded and unloaded by
 * name), device objects (named or not, stacked with IoAttachDeviceToDeviceStack), symbolic
 * links in \?? (what Win32's \\.\NAME opens), file objects (one per handle, per process).
 *
 * A process opens a device (SYS_OPEN_DEVICE: \\.\NAME, \??\NAME, \Device\NAME, or a test's
 * IoCreateDeviceLite name) and gets a handle, a small multiple of 4 private to it; the IRPs
 * of its requests go to the top of the device's stack, with as many stack locations as that
 * device's StackSize.  SYS_READ_FILE / SYS_WRITE_FILE are IRP_MJ_READ / IRP_MJ_WRITE with the
 * transfer the device's DO_BUFFERED_IO / DO_DIRECT_IO flag asks for (neither: the raw user
 * pointer in Irp->UserBuffer), at the caller's ByteOffset or the file's current position
 * (every handle is a synchronous file object: the position is where the last transfer ended).  SYS_DEVICE_IO_CONTROL (NtDeviceIoControlFile) prepares the
 * caller's buffers by the code's transfer method:
 *
 *   METHOD_BUFFERED    one nonpaged buffer of max(in, out) bytes holds the input; at completion
 *                      IoStatus.Information bytes of it (at most the output length) go back to
 *                      the output buffer, unless the status is an error.
 *   METHOD_IN_DIRECT   input buffered; the output buffer described by Irp->MdlAddress, probed
 *   METHOD_OUT_DIRECT  and locked for UserMode (read access for IN, write access for OUT);
 *                      unlocked at IoCompleteRequest (which releases a system mapping the
 *                      driver made), freed after the request is done.
 *   METHOD_NEITHER     the raw pointers: Type3InputBuffer and Irp->UserBuffer.
 *
 * Every request returns its status, and IoStatus.Information (the bytes transferred) to the
 * caller's ULONG_PTR when it gave one's address (DeviceIoControl's lpBytesReturned).  That
 * output, and the open's handle, are probed for writing before anything is done, as NT
 * probes a system call's outputs: a call whose result could not be returned is not made.
 *
 * A buffer the I/O manager cannot use (not in the user range, not committed, read-only where
 * it must write) fails the call with STATUS_ACCESS_VIOLATION before the driver sees it.
 * A request the dispatch routine leaves pending (STATUS_PENDING) is waited for: the system
 * call returns once IofCompleteRequest has finished with it (a DPC's completion, on any CPU),
 * with IoStatus.  A driver that returns another status without completing is a panic.
 *
 * At process teardown (a ps_register_cleanup hook, with the process's address space still
 * loaded) every handle the process holds gets IRP_MJ_CLEANUP, then IRP_MJ_CLOSE, and goes.
 */
#ifndef KERNEL_IO_IO_H
#define KERNEL_IO_IO_H

#include <stdint.h>
#include "include/wdm.h"

/* Handles p holds now. */
uint32_t io_process_handles(const PEPROCESS p);

/* The system calls of the running process, for syscall_dispatch: an NTSTATUS, zero-extended.
 * `info` is the user address of a ULONG_PTR for IoStatus.Information, or 0. */
uint64_t io_sys_open_device(uint64_t user_name, uint64_t user_handle);
uint64_t io_sys_close(uint64_t handle);
uint64_t io_sys_device_io_control(uint64_t handle, uint64_t code, uint64_t in, uint64_t in_len, uint64_t out,
				  uint64_t out_len, uint64_t info);
/* NtReadFile / NtWriteFile: `offset` is the user address of the LARGE_INTEGER ByteOffset, or
 * 0 for the file's current position (so is FILE_USE_FILE_POINTER_POSITION). */
uint64_t io_sys_read_write(bool write, uint64_t handle, uint64_t buf, uint64_t len, uint64_t info, uint64_t offset);

/* The previous mode (ExGetPreviousMode): syscall_dispatch sets UserMode for the duration of
 * a system call and puts back what was there. */
KPROCESSOR_MODE io_set_previous_mode(KPROCESSOR_MODE mode);

/* The bytes the I/O manager has copied since boot for buffered requests (DO_BUFFERED_IO
 * reads and writes, METHOD_BUFFERED and the direct methods' input): `in` from the caller's
 * buffer into a SystemBuffer before the driver sees the IRP, `out` back at completion.  A
 * direct-I/O transfer copies nothing; these are what it avoids. */
struct io_copy_stats {
	uint64_t in, out;
};
void io_get_copy_stats(struct io_copy_stats *s);
/* Count a copy (irp.c and io.c, where they copy). */
void io_count_copy(uint64_t in, uint64_t out);

/* ---- shared between the I/O manager's files ---- */

/* A device object and what the I/O manager keeps with it; the extension follows. */
struct io_device {
	DEVICE_OBJECT device;       /* first: a PDEVICE_OBJECT is a struct io_device * */
	char name[IO_NAME_MAX];     /* "" for an unnamed device */
	bool deleted;               /* IoDeleteDevice ran: unnamed, freed with its last handle */
	PDEVICE_OBJECT attached_to; /* the device this one is attached above, or NULL */
	PDRIVER_OBJECT lite_driver; /* IoCreateDeviceLite's own driver object, freed with it */
	struct io_device *next;     /* every live device object */
};
static inline struct io_device *io_device_of(PDEVICE_OBJECT d) { return (struct io_device *)d; }
/* Whether d is a live device object (IoCallDriver's check). */
bool io_device_valid(PDEVICE_OBJECT d);
/* Delete every device of the driver (a failed DriverEntry's leftovers); their count. */
unsigned io_delete_driver_devices(PDRIVER_OBJECT driver);
/* Whether some handle is open on a device of the driver. */
bool io_driver_busy(PDRIVER_OBJECT driver);
/* A device's name from a UNICODE_STRING: ASCII, 1..IO_NAME_MAX - 1 characters, else
 * STATUS_OBJECT_NAME_INVALID. */
NTSTATUS io_name_from_unicode(char out[IO_NAME_MAX], PCUNICODE_STRING s);

/* The IRP routines' side of the I/O manager (kernel/io/irp.c). */
#define IO_IRP_TAG 0x20707249u    /* 'Irp ' */
#define IO_BUFFER_TAG 0x62536F49u /* 'IoSb' */
/* An IRP of the I/O manager's own, for a request of `mode` on file's device stack: threaded
 * (IoFreeIrp refuses it), freed by io_irp_release. */
PIRP io_irp_for_request(PDEVICE_OBJECT top, PFILE_OBJECT file, UCHAR major, KPROCESSOR_MODE mode);
/* Free the system buffer and every MDL on a threaded IRP, then the IRP. */
void io_irp_release(PIRP irp);
/* The top of the device's stack. */
PDEVICE_OBJECT io_top_of_stack(PDEVICE_OBJECT d);

#endif
