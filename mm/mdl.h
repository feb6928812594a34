/* MDL internals shared by mm/mdl.c (kernel side), the user-mode side and the tools. */
#ifndef MM_MDL_H
#define MM_MDL_H

#include <stdint.h>
#include "include/wdm.h"
#include "mm/pt.h"

struct mdl_stats {
	uint64_t probes, unlocks, maps, unmaps, protects, map_failures;
	uint64_t cache_overrides;  /* mappings where a frame's own type overrode CacheType */
	uint64_t allocated_pages;  /* frames held by MmAllocatePagesForMdl(Ex) MDLs */
};
void mdl_get_stats(struct mdl_stats *out);

/* Pages the MDL's buffer spans. */
ULONG mdl_page_count(const MDL *m);

/* The address space MmProbeAndLockPages walks: the current process's, else the kernel's. */
const struct pt_root *mdl_current_root(void);

/* Shared by both sides (mm/mdl.c): the check that every frame of an MDL to be mapped is
 * pinned (0xC4/0x85, 0x89).  Each frame's memory type comes from memtype_for_mapping. */
void mdl_check_frames(PMDL m);

/*
 * W^X across mappings (mm/RULES.md decision 3).  Each frame counts its executable system
 * mappings (pfn_entry.exec_maps).  MmProtectMdlSystemAddress raises the counts before its
 * checks and every end step lowers them after the PTEs stop executing, both under mdl.c's
 * executable-mapping lock (KLOCK_MDL_EXEC); a writable-mapping path reads them.
 *
 * mdl_frames_executable_in_ring_0: whether some frame of the MDL has an executable system
 * mapping, being made or made (its count; one test of a total while none is anywhere).
 * mdl_frames_executable_after_write: the same after a full fence, for a path that has just
 * written writable PTEs of the MDL's frames with no lock in common with the execute path
 * (a kernel or reserved mapping): it undoes them and refuses when this is true.  Either the
 * execute path's check sees those PTEs, or this sees its count.
 */
bool mdl_frames_executable_in_ring_0(PMDL m);
bool mdl_frames_executable_after_write(PMDL m);

/* For user pages (mm/uvm.c), under the process's lock, which the execute path's walk of the
 * process's user half takes after raising the counts: whether any system mapping is
 * executable (one test of a total), and whether this frame's count says one is. */
bool mdl_ring_0_executes_any_frame(void);
bool mdl_frame_executable_in_ring_0(PFN_NUMBER pfn);
/* Ending a system mapping that may be executable, before its n PTEs at va (frames
 * pfns[0..n), the MDL's PFN array) are cleared: under the executable-mapping lock, each
 * executable run made no-execute (flushed), its frames' counts lowered, and the direct-map
 * alias of each frame no system mapping executes any longer given write access back.  One
 * test of a total while no mapping is executable.  Takes KLOCK_MDL_EXEC: no lock of a later
 * rank may be held. */
void mdl_exec_mapping_ending(uint64_t va, const PFN_NUMBER *pfns, ULONG n);

/* Tests only (tests/smp_exec_test.c): called in the windows below, NULL otherwise. */
enum mdl_exec_window {
	MDL_EXEC_WINDOW_BEGIN,    /* MmProtectMdlSystemAddress(PAGE_EXECUTE*): counts raised,
				   * checks passed, aliases read-only, PTEs not yet executable;
				   * the executable-mapping lock held */
	MDL_EXEC_WINDOW_END,      /* an end step: pfn's count reached 0, its alias not yet
				   * writable; the lock held */
	MDL_EXEC_WINDOW_MAP,      /* a writable KernelMode or reserved mapping: checked, PTEs
				   * not written (a reserved one under the reservations' lock) */
	MDL_EXEC_WINDOW_USER_MAP, /* a writable UserMode mapping: checked, the process's lock
				   * not yet taken, PTEs not written */
};
extern void (*mdl_test_exec_window)(enum mdl_exec_window where, PMDL m, PFN_NUMBER pfn);
/* Tests only (tests/pager_test.c): called by MmProbeAndLockPages and
 * MmProbeAndLockSelectedPages after a pass made a user buffer's pages resident, before the
 * address-space lock is taken again for the walk (the window a trim can take a page back in);
 * NULL otherwise.  PROBE_PASSES: the passes a probe makes at most. */
extern void (*mdl_test_probe_window)(PMDL m);
/* Tests only (tests/pager_test.c): called by MmProbeAndLockSelectedPages between page i's
 * walk and its frame's lock, with the locks of that step held (the address-space lock of a
 * user page's process, the pool lock when a segment is paged pool); NULL otherwise. */
extern void (*mdl_test_select_window)(PMDL m, ULONG i);
#define PROBE_PASSES 4u
/* The executable-mapping lock, for a test to see a CPU spinning for it (kcpu.klock_waiting). */
const void *mdl_test_exec_lock(void);

/* UserMode halves of MmMapLockedPagesSpecifyCache and MmUnmapLockedPages (mm/mdl_user.c). */
PVOID mdl_map_user(PMDL Mdl, MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG Priority);
void mdl_unmap_user(PVOID BaseAddress, PMDL Mdl);

#endif
