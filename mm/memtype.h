/*
 * The memory-type alias guard (nt-mdl.md decision 1): a frame has one memory type across
 * every mapping, the direct map included.  Before a RAM frame is mapped with a type other
 * than WB, its direct-map alias is given that type (its large page split); when the frame
 * goes back to WB, the alias is restored (and merged back when uniform).
 *
 * The calls go one way: memtype -> page tables -> frame allocator.  Changing an alias may
 * split a large page of the direct map (a table frame from pfn_alloc) and restoring it may
 * merge one back (pfn_free of that table), so the allocator must not call back here: pfn_free
 * refuses a frame that still has a type, and the code that typed a frame releases it
 * (memtype_release_frame) before freeing it — MmFreePagesFromMdl for an MDL's frames.
 */
#ifndef MM_MEMTYPE_H
#define MM_MEMTYPE_H

#include <stdbool.h>
#include "mm/pat.h"
#include "mm/pfn.h"

/* Give frame `pfn` the type `t` (recorded in its PFN entry); its direct-map alias changes
 * first.  False (nothing changed) when a table frame for the split could not be had.
 * A frame that is not RAM has no alias; only its record changes. */
bool memtype_set_frame(pfn_t pfn, enum memtype t);
/* MmAllocatePagesForMdl: a frame fresh from the allocator (WB) becomes untyped, so that its
 * first mapping gives it its type (its alias stays WB until then). */
void memtype_make_untyped(pfn_t pfn);
/* Back to WB (direct map restored; never needs a frame: the split table exists).  The
 * owner of a typed frame calls it before pfn_free; on a WB or untyped frame it only
 * records WB. */
void memtype_release_frame(pfn_t pfn);

#endif
