/*
 * Memory types of frames: the one module that decides them.
 *
 * The rule (mm/RULES.md decision 1): a frame has one memory type across every mapping, the
 * direct map included, recorded in its PFN entry.  Pool, locked RAM, kernel and firmware
 * frames are WB; MmAllocatePagesForMdlEx frames carry the type asked at allocation;
 * MmAllocatePagesForMdl frames are untyped (MT_NONE) until their first mapping, whose
 * CacheType they take for good.  A mapping asking another type gets the frame's own (a
 * cache override).  Before a RAM frame takes a type other than WB, its direct-map alias is
 * given that type (its large page split); when the frame goes back to WB, the alias is
 * restored (and merged back when uniform).  Frames outside RAM have no alias.
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

/* MEMORY_CACHING_TYPE -> memory type (mm/RULES.md decision 2): MmCached and
 * MmHardwareCoherentCached are WB, MmNonCached UC, MmNonCachedUnordered UC-, MmWriteCombined
 * and MmUSWCCached WC; the mdlab extensions MmMdlabWriteThrough / MmMdlabWriteProtected are
 * WT / WP.  MT_NONE for any other value. */
enum memtype memtype_from_other_caching_type(int caching_type);
static inline enum memtype memtype_from_caching_type(int caching_type)
{
	/* MmNonCached (0) to MmUSWCCached (5) by table, inline (every mapping asks); the mdlab
	 * extensions and bad values in memtype.c. */
	static const uint8_t nt_types[] = { MT_UC, MT_WB, MT_WC, MT_WB, MT_UCMINUS, MT_WC };
	if ((unsigned)caching_type < sizeof nt_types)
		return (enum memtype)nt_types[caching_type];
	return memtype_from_other_caching_type(caching_type);
}
/* The inverse, for tools: the NT name (or mdlab extension) that gives this type. */
const char *caching_type_name_for(enum memtype t);

/* The type a mapping of frame `pfn` asking `requested` gets, in *out: the frame's own; an
 * untyped frame takes `requested` for good (its alias changes: false, nothing changed, when
 * no table frame could be had for that); a frame beyond the database (I/O space) has no
 * record and gets `requested`.  *override is set when the frame's own type wins. */
bool memtype_for_mapping(pfn_t pfn, enum memtype requested, enum memtype *out, bool *override);
/* The plain case of memtype_for_mapping for a run: how many leading frames of pfns[0..n)
 * are pinned (pfn_frame_is_pinned) and already have one same type, given in *type (*override
 * set when it is not `requested`).  0 when pfns[0] is not such a frame: it takes
 * memtype_for_mapping.  For the MDL mapping's fast path: one pass, no call per frame
 * (inline, so the one-page mapping pays a single call). */
static inline uint64_t memtype_mapping_run(const pfn_t *pfns, uint64_t n, enum memtype requested,
					   enum memtype *type, bool *override)
{
	uint64_t run = pfn_pinned_run(pfns, n, type);
	*override |= run && *type != requested;
	return run;
}
/* The type a mapping of `pfn` gets when its maker asks for none (uvm's user pages): the
 * frame's own, WB for an untyped frame or one beyond the database. */
enum memtype memtype_of_frame(pfn_t pfn);

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
/* The same for each of pfns[0..n): memtype_make_untyped with the lock taken once; and,
 * for frames about to be freed, memtype_release_frame of each typed one (an untyped frame's
 * alias is WB already and pfn_free takes it untyped). */
void memtype_make_untyped_frames(const pfn_t *pfns, uint64_t n);
void memtype_release_frames(const pfn_t *pfns, uint64_t n);

#endif
