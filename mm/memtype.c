#include "mm/memtype.h"
#include "include/wdm.h"
#include "kernel/bugcheck.h"
#include "kernel/smp/klock.h"
#include "mm/pt.h"

enum memtype memtype_from_other_caching_type(int ct)
{
	switch (ct) {
	case MmNonCached: return MT_UC;
	case MmCached: return MT_WB;
	case MmWriteCombined: return MT_WC;  /* also MmFrameBufferCached */
	case MmHardwareCoherentCached: return MT_WB;
	case MmNonCachedUnordered: return MT_UCMINUS;
	case MmUSWCCached: return MT_WC;
	case MmMdlabWriteThrough: return MT_WT;
	case MmMdlabWriteProtected: return MT_WP;
	default: return MT_NONE;
	}
}

const char *caching_type_name_for(enum memtype t)
{
	switch (t) {
	case MT_WB: return "MmCached";
	case MT_UC: return "MmNonCached";
	case MT_UCMINUS: return "MmNonCachedUnordered";
	case MT_WC: return "MmWriteCombined";
	case MT_WT: return "MmMdlabWriteThrough";
	case MT_WP: return "MmMdlabWriteProtected";
	default: return "none";
	}
}

/* Write back and invalidate the frame's cache lines through its new mapping, on every CPU:
 * CLFLUSH reaches every cache of the coherence domain whatever the type of the page it is
 * made through (SDM Vol. 2A, CLFLUSH), so no line of the old type outlives the change (SDM
 * Vol. 3A, 11.12.4, step 4; no WBINVD). */
static void flush_frame_lines(pfn_t pfn)
{
	volatile uint8_t *p = pfn_to_virt(pfn);
	for (uint64_t off = 0; off < PAGE_SIZE; off += 64)
		__asm__ volatile("clflush (%0)" ::"r"(p + off) : "memory");
	__asm__ volatile("mfence" ::: "memory");
}

/* Whether lines of the frame can be in a cache under type t (an untyped frame's alias is WB). */
static bool cacheable(enum memtype t)
{
	return t == MT_WB || t == MT_NONE || t == MT_WT || t == MT_WP;
}

/* The memory-type lock (mm/RULES.md, "Locks"): a frame's recorded type is read, its alias
 * changed and the new type recorded as one step, so two CPUs giving an untyped frame its
 * first type agree on one.  Held across pt_retype_page of the direct map (the kernel
 * page-table and PFN locks come after it).  A typed frame's type is read without it on the
 * mapping's fast path (pfn_pinned_run): only its owner changes it back, and not while it maps
 * it. */
static struct klock lock = KLOCK_INIT(KLOCK_MEMTYPE);

/* Give the frame's direct-map alias type t by the SDM's procedure (pt_retype_page: not
 * present, every CPU's TLB flushed, the new type), then flush its lines through the new
 * mapping when the old type could have cached them.  Between the two the alias is not
 * present: the frame is its changer's (mm/RULES.md, decision 1, "The window"). */
static bool set_alias(pfn_t pfn, enum memtype old, enum memtype t)
{
	if ((old == MT_NONE ? MT_WB : old) == t)
		return true; /* the alias has that type already (an untyped frame's is WB) */
	if (!pt_retype_page((uint64_t)pfn_to_virt(pfn), t))
		return false;
	if (cacheable(old))
		flush_frame_lines(pfn);
	return true;
}

static bool set_frame_locked(pfn_t pfn, enum memtype t)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e || e->state == PFN_NOT_RAM) {
		if (e)
			pfn_record_memtype(pfn, t);
		return true;
	}
	if (e->memtype == t)
		return true;
	if (!set_alias(pfn, (enum memtype)e->memtype, t == MT_NONE ? MT_WB : t))
		return false;
	pfn_record_memtype(pfn, t);
	return true;
}

bool memtype_set_frame(pfn_t pfn, enum memtype t)
{
	/* Already of that type (a fresh frame asked WB): nothing to change, nothing to lock. */
	const struct pfn_entry *e = pfn_entry(pfn);
	if (e && e->state != PFN_NOT_RAM && e->memtype == t)
		return true;
	KIRQL irql = klock_acquire(&lock);
	bool ok = set_frame_locked(pfn, t);
	klock_release(&lock, irql);
	return ok;
}

void memtype_make_untyped(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&lock);
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e || e->state == PFN_NOT_RAM || e->memtype != MT_WB)
		PANIC("memtype_make_untyped: frame 0x%lx is not a WB frame of RAM", pfn);
	pfn_record_memtype(pfn, MT_NONE);
	klock_release(&lock, irql);
}

void memtype_make_untyped_frames(const pfn_t *pfns, uint64_t n)
{
	KIRQL irql = klock_acquire(&lock);
	pfn_make_untyped_frames(pfns, n);
	klock_release(&lock, irql);
}

void memtype_release_frames(const pfn_t *pfns, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		const struct pfn_entry *e = pfn_entry(pfns[i]);
		/* Untyped: its alias is WB, and pfn_free takes it as it is. */
		if (!e || e->memtype != MT_NONE)
			memtype_release_frame(pfns[i]);
	}
}

void memtype_release_frame(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e || e->state == PFN_NOT_RAM || e->memtype == MT_WB)
		return; /* no alias, or WB already: the owner's frame, nobody else changes it */
	if (e->memtype == MT_NONE) {
		/* Untyped: its alias is WB already, only the record changes (the owner's frame:
		 * no other CPU types it while it frees it). */
		pfn_record_memtype(pfn, MT_WB);
		return;
	}
	KIRQL irql = klock_acquire(&lock);
	/* Restoring can need no new frame only if it merges; a split table already exists, so
	 * rewriting one 4 KiB entry never allocates. */
	if (!set_alias(pfn, (enum memtype)e->memtype, MT_WB))
		PANIC("memtype_release_frame: cannot restore the alias of frame 0x%lx", pfn);
	pfn_record_memtype(pfn, MT_WB);
	klock_release(&lock, irql);
}

bool memtype_for_mapping(pfn_t pfn, enum memtype requested, enum memtype *out, bool *override)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e) {
		*out = requested; /* I/O space beyond RAM: no record, no alias */
		return true;
	}
	if (e->memtype == MT_NONE) {
		/* Looked at again under the lock: another mapping may have typed it meanwhile. */
		KIRQL irql = klock_acquire(&lock);
		bool ok = e->memtype != MT_NONE || set_frame_locked(pfn, requested);
		enum memtype now = (enum memtype)e->memtype;
		klock_release(&lock, irql);
		if (!ok)
			return false;
		*out = now;
		*override |= now != requested;
		return true;
	}
	*out = (enum memtype)e->memtype;
	*override |= *out != requested;
	return true;
}

enum memtype memtype_of_frame(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && e->memtype < MT_COUNT ? (enum memtype)e->memtype : MT_WB;
}
