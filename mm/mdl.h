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

/* Whether some frame of the MDL is executable in ring 0 through any MDL's system mapping
 * (MmProtectMdlSystemAddress made it so), read from the kernel's tables. */
bool mdl_frames_executable_in_ring_0(PMDL m);

/* W^X across privilege levels for user pages (mm/RULES.md decision 3): whether any system
 * mapping is executable (one test of a count), and whether one executes this frame (read from
 * the system-PTE region's PTEs, only while the count is not 0). */
bool mdl_ring_0_executes_any_frame(void);
bool mdl_frame_executable_in_ring_0(PFN_NUMBER pfn);
/* Ending an executable system mapping (mm/RULES.md decision 3): mdl_exec_pages(va, n), read
 * before the n PTEs at va stop executing (cleared or made no-execute), is how many of them
 * are executable (0 at once while none is anywhere); mdl_exec_mapping_ended(pfns, n, that
 * count), after, gives back the write access of the direct-map alias of each frame of
 * pfns[0..n) that no system mapping executes any longer. */
ULONG mdl_exec_pages(uint64_t va, ULONG n);
void mdl_exec_mapping_ended(const PFN_NUMBER *pfns, ULONG n, ULONG executable);

/* UserMode halves of MmMapLockedPagesSpecifyCache and MmUnmapLockedPages (mm/mdl_user.c). */
PVOID mdl_map_user(PMDL Mdl, MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG Priority);
void mdl_unmap_user(PVOID BaseAddress, PMDL Mdl);

#endif
