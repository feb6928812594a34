/*
 * The I/O manager, kernel side (the driver's surface is in include/wdm.h: IoCreateDeviceLite,
 * IoDeleteDevice, IoCompleteRequest, the IRP).
 *
 * A process opens a named device (SYS_OPEN_DEVICE) and gets a handle, a small multiple of 4
 * private to it; SYS_DEVICE_IO_CONTROL (NtDeviceIoControlFile) on that handle builds an IRP
 * for IRP_MJ_DEVICE_CONTROL, prepares the caller's buffers by the code's transfer method and
 * calls the driver in the caller's context.  Everything is synchronous: the dispatch routine
 * completes the IRP before it returns.
 *
 *   METHOD_BUFFERED    one nonpaged buffer of max(in, out) bytes holds the input; at completion
 *                      IoStatus.Information bytes of it (at most the output length) go back to
 *                      the output buffer, unless the status is an error.
 *   METHOD_IN_DIRECT   input buffered; the output buffer described by Irp->MdlAddress, probed
 *   METHOD_OUT_DIRECT  and locked for UserMode (read access for IN, write access for OUT);
 *                      unlocked at IoCompleteRequest (which releases a system mapping the
 *                      driver made), freed after the dispatch routine returns.
 *   METHOD_NEITHER     the raw pointers: Type3InputBuffer and Irp->UserBuffer.
 *
 * A buffer the I/O manager cannot use (not in the user range, not committed, read-only where
 * it must write) fails the call with STATUS_ACCESS_VIOLATION before the driver sees it.
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

/* The system calls SYS_OPEN_DEVICE and SYS_DEVICE_IO_CONTROL of the running process, for
 * syscall_dispatch: an NTSTATUS, zero-extended. */
uint64_t io_sys_open_device(uint64_t user_name, uint64_t user_handle);
uint64_t io_sys_device_io_control(uint64_t handle, uint64_t code, uint64_t in, uint64_t in_len, uint64_t out,
				  uint64_t out_len);

#endif
