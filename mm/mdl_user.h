/*
 * The user-mode side of the MDL routines (mm/mdl_user.c): what mm/mdl.c calls for user
 * buffers, the record of every MDL mapping into a process, and process teardown.
 */
#ifndef MM_MDL_USER_H
#define MM_MDL_USER_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "mm/mmproc.h"
#include "mm/pfn.h"

struct vad;

/* One MDL mapped into one process: a VAD_MDL range (its vad.owner points back here), on the
 * process's list (mm_process.mappings) and on the list of all user mappings. */
struct user_mapping {
	struct mm_process *mm;         /* the memory of the process it is mapped into */
	PMDL mdl;
	uint64_t va;                   /* page-aligned start; the caller got va + byte offset */
	uint64_t pages;
	struct vad *vad;
	bool pool;                     /* counted with pool_note_user_mapping */
	struct user_mapping *next;     /* the process's list */
	struct user_mapping *next_all; /* every user mapping */
};

/* MmProbeAndLockPages, before locking: for a buffer in the user half with a process
 * current, check the IRQL (UserMode: <= APC_LEVEL, else 0xC4/0x70).  A UserMode probe with no
 * process raises STATUS_ACCESS_VIOLATION.  Returns the memory of the process the buffer
 * belongs to, NULL for a kernel buffer.  The caller walks the buffer under that memory's lock
 * and, when a page is not resident with the access, makes the rest resident
 * (uvm_make_resident_pages_status, outside the lock) and walks again: one hold when all is
 * resident. */
struct mm_process *mdl_user_probe(PMDL Mdl, KPROCESSOR_MODE AccessMode, bool write);
/* MmProbeAndLockSelectedPages, before locking: the same for one page of the user half (the
 * caller checks the IRQL), raising STATUS_ACCESS_VIOLATION at it when it cannot be made
 * resident; NULL for a kernel page. */
struct mm_process *mdl_user_probe_page(uint64_t page, KPROCESSOR_MODE AccessMode, bool write);
/* MmProbeAndLockPages, after locking: Mdl->Process = owner's process, whose locked_pages
 * counts the MDL's pages (owner NULL: a kernel buffer, Mdl->Process NULL). */
void mdl_user_note_lock(PMDL Mdl, struct mm_process *owner);
/* MmUnlockPages, before unlocking: an MDL still mapped into a user address space is bug
 * check 0xC4/0x2005; otherwise its pages stop counting on Mdl->Process. */
void mdl_user_note_unlock(PMDL Mdl);
/* The lock-tracking record of Mdl's lock (bug check 0xCB's P1), 0 when none is kept. */
ULONG_PTR mdl_user_tracking_record(PMDL Mdl);
/* The pages locked in the MDL's process (0 for a kernel buffer), for bug check 0x76 P1 1. */
ULONG_PTR mdl_user_locked_pages(PMDL Mdl);

/* MmAdvanceMdl, after unlocking the first `passed` pages: they stop counting on
 * Mdl->Process (and on its tracking record). */
void mdl_user_note_advance(PMDL Mdl, ULONG passed);
/* MmAdvanceMdl past `passed` whole pages (mm/RULES.md helper rule H1): every user mapping of
 * the MDL loses its first `passed` pages (PTEs cleared and flushed, its range and record start
 * later).  Before the MDL's StartVa moves. */
void mdl_user_advance_mappings(PMDL Mdl, ULONG passed);

/* Locked-page tracking (NT's TrackLockedPages; cmdline track_locked_pages=1, off by
 * default): while on, every lock charged to a process is recorded with its MDL, pages and
 * the address MmProbeAndLockPages returns to, until MmUnlockPages.  Set at run time by
 * tests; locks made while it was off are not recorded. */
void mdl_user_track_locked_pages(bool on);
bool mdl_user_tracking_locked_pages(void);
/* PsDestroyProcess, when a process ends with pages locked: a recorded lock left in its memory
 * mm is bug check DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS (its record, 0, MDL, pages) for the oldest
 * such lock; returns when none is recorded (PsDestroyProcess then stops with 0x76). */
void mdl_user_check_locks_left(struct mm_process *mm);

/* Tear down every MDL mapping left in mm (its process attached): its PTEs, VADs and records
 * go, its pool pages stop counting as user-mapped.  PsDestroyProcess runs it after the
 * drivers' cleanup callbacks, before the address space goes. */
void mdl_user_process_exit(struct mm_process *mm);

/* Whether some MDL mapping in some process lets ring 3 write frame pfn (read from the
 * process's page tables): MmProtectMdlSystemAddress refuses to make such a frame executable. */
bool mdl_user_frame_writable(pfn_t pfn);

/* The mappings of Mdl in any process (tools, tests, the MDL-freeing paths). */
uint32_t mdl_user_mapping_count(PMDL Mdl);

struct mdl_user_stats {
	uint64_t maps, unmaps, failures, teardowns; /* teardowns: unmapped at process exit */
	uint64_t cache_overrides;                   /* a frame's own type overrode CacheType */
	uint64_t live;                              /* mappings that exist now */
};
void mdl_user_get_stats(struct mdl_user_stats *out);

#endif
