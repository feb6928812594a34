/*
 * The pagefile and the modified page writer (mm/RULES.md, "Paging").
 *
 * The pagefile is a fixed region of the virtio disk: sectors PAGEFILE_FIRST_SECTOR up to the
 * end of the 64 MiB image (README "Devices"), one 4 KiB slot a page.  Slot 0 is never used:
 * a software PTE whose PageFileHigh is 0 is NT's demand-zero PTE, so slot s of pagefile 0
 * is PageFileHigh s, at byte PAGEFILE_FIRST_SECTOR * 512 + s * 4096.  Paging I/O is MDL I/O
 * to \Device\VirtioBlk0, as NT's IoAsynchronousPageWrite and IoPageRead are: an MDL that
 * describes the frames (MDL_PAGES_LOCKED, the frames held for the I/O), an IRP_MJ_READ or
 * IRP_MJ_WRITE, waited for (an in-page read and the writer, both below DISPATCH_LEVEL).
 *
 * The slot bitmap has no lock: bits are set only by the modified page writer, one at a
 * time (its gate), and cleared by an atomic AND by whoever frees a slot, so a clear never
 * races a set of the same bit.
 */
#ifndef MM_PAGEFILE_H
#define MM_PAGEFILE_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "mm/pfn.h"

#define PAGEFILE_FIRST_SECTOR 98304u  /* 48 MiB into the image: no suite's sectors */
#define PAGEFILE_SLOTS 4096u          /* 16 MiB: to the end of the 64 MiB image */
#define PAGEFILE_CLUSTER 16u          /* pages a write request carries at most */

/* Give the pager its disk (the virtio-blk device) or take it away (NULL; refused, false, while
 * a slot is in use).  A write in progress is waited for first (below DISPATCH_LEVEL).  With no disk nothing is written: trimmed pages stay modified.  A disk
 * is refused (false, nothing attached) unless the command line has `pagefile=1`: the disk's
 * owner opts in (README "The kernel command line"). */
bool pagefile_attach(PDEVICE_OBJECT disk);
/* The same with the pagefile at another first sector (tests: the blkfault machine's disk
 * is 16 MiB, and its failing sectors are where an in-page error is made). */
bool pagefile_attach_at(PDEVICE_OBJECT disk, uint64_t first_sector);
/* Whether `pagefile=1` lets a disk be attached (pagefile_test_permit's answer instead when it
 * set one). */
bool pagefile_permitted(void);
/* Tests: 1 or 0 answers pagefile_permitted as pagefile=1 or its absence would; -1 gives the
 * command line back. */
void pagefile_test_permit(int permit);
/* Tests: every IRP allocation of paging I/O fails (true) or not: in-page reads take the
 * reserve IRP, writes fail. */
void pagefile_test_fail_irp_allocation(bool fail);
/* Tests: only slots 1 .. limit-1 are used (PAGEFILE_SLOTS: all), to fill the pagefile. */
void pagefile_set_limit(uint32_t limit);
/* The byte offset of slot s on the disk. */
uint64_t pagefile_offset(uint32_t slot);
void pagefile_free_slot(uint32_t slot);
uint64_t pagefile_slots_in_use(void);
/* Whether the writer could write a page now: a disk attached and a slot free (a snapshot;
 * memory-pressure relief asks before it trims, mm/RULES.md "Paging"). */
bool pagefile_can_write(void);
/* An in-page read of slot s into frame pfn, at PASSIVE_LEVEL or APC_LEVEL: the device's status
 * (STATUS_DEVICE_NOT_CONNECTED without a disk). */
NTSTATUS pagefile_read(pfn_t pfn, uint32_t slot);
/* The modified page writer: every frame on the modified list written, in clusters of up to
 * PAGEFILE_CLUSTER pages to contiguous slots (one request each), then on the standby list;
 * below DISPATCH_LEVEL (PASSIVE_LEVEL or APC_LEVEL).  Stops when the pagefile is full or a
 * write fails (those frames stay modified).  Returns the pages written. */
uint64_t pagefile_write_modified(void);
/* Whether this CPU is inside pagefile_write_modified (its gate held): memory-pressure relief,
 * which runs the writer, refuses itself there (a writer's IRP allocation that finds no frame
 * must not wait for the gate it holds). */
bool pagefile_writer_is_mine(void);

struct pagefile_stats {
	bool attached;
	uint32_t limit;
	uint64_t in_use;
	uint64_t writes, pages_written, write_errors, full;
	uint64_t reads, read_errors;
	uint64_t reserve_reads; /* in-page reads that took the reserve IRP (no IRP could be allocated) */
	uint64_t wait_ticks;  /* TSC ticks paging I/O spent waiting for the device */
	uint64_t attach_waits; /* attaches and detaches that found a write in progress and waited */
};
void pagefile_get_stats(struct pagefile_stats *out);

#endif
