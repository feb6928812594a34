/*
 * A process's memory, as the memory manager keeps it: its page tables, the top of its user
 * range, its VADs, the pages locked for it and the MDLs mapped into it.
 *
 * EPROCESS embeds one (kernel/process.h, field `mm`), as NT keeps DirectoryTableBase, VadRoot
 * and NumberOfLockedPages in EPROCESS.  Every mm function that works on a user address space
 * takes a struct mm_process; nothing in mm/ knows the rest of EPROCESS.  Where NT's interface
 * names a process (Mdl->Process, bug-check parameters) mm uses the back link `process`, and
 * ps_mm() leads from such a PEPROCESS to its memory.
 */
#ifndef MM_MMPROC_H
#define MM_MMPROC_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "mm/pt.h"
#include "kernel/smp/klock.h"
#include "kernel/smp/percpu.h"

struct vad;
struct user_mapping;

struct mm_process {
	PEPROCESS process;             /* the process this is the memory of */
	struct klock lock;             /* the address-space lock (KLOCK_PROCESS, mm_space_lock) */
	struct pt_root root;           /* its PML4: the user half its own, the kernel half shared */
	uint64_t highest_user;         /* MM_USER_TOP_64, or MM_USER_TOP_WOW64 for a 32-bit process */
	bool terminating;              /* teardown has begun (PsDestroyProcess): nothing new is
					* allocated or mapped */
	struct vad *vad_root;          /* mm/vad.c */
	uint64_t locked_pages;         /* pages MmProbeAndLockPages locked for it, not yet unlocked:
					* changed only by atomic adds and subtractions (mm/mdl_user.c),
					* under no lock */
	struct user_mapping *mappings; /* MDLs mapped into it (mm/mdl_user.c) */
	struct mm_process *next_live;  /* every live address space (mm_live_processes) */
};

/*
 * The address-space lock (mm/RULES.md, "Locks"): a ranked spin lock (KLOCK_PROCESS) of each
 * process that guards its VAD tree, its user page tables, the page arrays of its VADs and the
 * user-mapping records' VADs.  Taken by mm/uvm.c (every allocate, free, protect, fault
 * resolution, residency walk, mapping of frames, teardown), mm/mdl_user.c (a user mapping
 * made, advanced, released) and the probe's walk in mm/mdl.c, each inside its own function.
 * It is a spin lock at DISPATCH_LEVEL, as NT's working-set pushlock is not: nothing under it
 * waits or touches user memory (a fault under it would take it again: 0xF), so a probe makes
 * pages resident under it and copies to or from user memory only outside it.  Taken after the
 * user-mapping records' lock, before the reservation, pool, system-PTE, memory-type, kernel
 * page-table and PFN locks.
 */
static inline KIRQL mm_space_lock(struct mm_process *mm) { return klock_acquire(&mm->lock); }
static inline void mm_space_unlock(struct mm_process *mm, KIRQL old) { klock_release(&mm->lock, old); }

/* Set up the memory of `process`: a PML4 of its own, the user range of a 64-bit or (wow64)
 * 32-bit process, nothing mapped.  False when no frame is left for the PML4. */
bool mm_process_init(struct mm_process *mm, PEPROCESS process, bool wow64);

/* Free mm's PML4 (its user half empty: uvm_destroy ran) and forget the address space. */
void mm_process_destroy(struct mm_process *mm);
/* The first of every live address space, linked by next_live (the audits walk them all,
 * on a CPU that makes and destroys the processes). */
struct mm_process *mm_live_processes(void);
/* fn(mm, ctx) for every live address space, each under the list's lock and mm's own
 * (mm_space_lock), until fn returns false: a walk of their page tables that other CPUs may
 * change meanwhile.  fn takes no lock ranked before KLOCK_PROCESS. */
void mm_for_each_space(bool (*fn)(struct mm_process *mm, void *ctx), void *ctx);

/* The address space loaded now on this CPU (struct kcpu.mm_loaded); NULL while the kernel
 * runs on its own tables.  One GS-relative load, inline: the mapping paths ask often. */
static inline struct mm_process *mm_current(void)
{
	return ((const volatile struct kcpu __seg_gs *)0)->mm_loaded;
}
/* Load mm's page tables (NULL: the kernel's) and make it mm_current().  Only
 * KeStackAttachProcess and KeUnstackDetachProcess switch address spaces. */
void mm_switch(struct mm_process *mm);

/* The memory of process p (NULL for NULL).  Defined by kernel/process.c, which owns
 * EPROCESS: the one way from a PEPROCESS to its struct mm_process. */
struct mm_process *ps_mm(PEPROCESS p);

#endif
