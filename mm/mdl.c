/*
 * The MDL routines, kernel side (include/wdm.h; rules in ../shared/reference/nt-mdl.md and the
 * seed pages).  Mappings live in the system-PTE space; every one is no-execute (decision 3),
 * read-only with MdlMappingNoWrite, and carries each frame's one memory type (decision 1).
 */
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/memtype.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/verifier.h"

#define MDL_TAG 0x206C644Du /* 'Mdl ' */
#define MAX_MDL_BYTES (0x100000000ul - PAGE_SIZE)
#define PRIORITY_FLAGS (MdlMappingNoWrite | MdlMappingNoExecute | MdlMappingWithGuardPtes)
#define MM_ALLOCATE_KNOWN_FLAGS 0x7Fu

/* The user probe limit: the highest user address a probe accepts, plus one (NT's
 * MM_USER_PROBE_ADDRESS on x64). */
#define MM_USER_PROBE_ADDRESS 0x7FFFFFFF0000ul

static struct mdl_stats stats;

void mdl_get_stats(struct mdl_stats *out) { *out = stats; }

ULONG mdl_page_count(const MDL *m)
{
	return ADDRESS_AND_SIZE_TO_SPAN_PAGES(MmGetMdlVirtualAddress(m), m->ByteCount);
}

/* ---- allocation --------------------------------------------------------------------- */

SIZE_T MmSizeOfMdl(PVOID Base, SIZE_T Length)
{
	return sizeof(MDL) + sizeof(PFN_NUMBER) * ADDRESS_AND_SIZE_TO_SPAN_PAGES(Base, Length);
}

PMDL IoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer, BOOLEAN ChargeQuota, PIRP Irp)
{
	UNREFERENCED_PARAMETER(ChargeQuota); /* reserved (drivers pass FALSE); there are no quotas */
	verifier_check_irql(DISPATCH_LEVEL, 0xE5, 0, 0);
	if (!Length || Length > MAX_MDL_BYTES || verifier_inject_failure(VF_SITE_ALLOCATE_MDL))
		return NULL;
	PMDL m = ExAllocatePool2(POOL_FLAG_NON_PAGED, MmSizeOfMdl(VirtualAddress, Length), MDL_TAG);
	if (!m)
		return NULL;
	MmInitializeMdl(m, VirtualAddress, Length);
	if (Irp) {
		/* The first buffer is the IRP's; a secondary one goes at the end of its chain. */
		if (!SecondaryBuffer || !Irp->MdlAddress) {
			Irp->MdlAddress = m;
		} else {
			PMDL last = Irp->MdlAddress;
			while (last->Next)
				last = last->Next;
			last->Next = m;
		}
	}
	return m;
}

VOID IoFreeMdl(PMDL Mdl)
{
	/* A user mapping of it would outlive the MDL (mdlab's code 0x2005, as for unlock). */
	if (mdl_user_mapping_count(Mdl))
		verifier_violation(0x2005, (ULONG_PTR)Mdl, 0, 0);
	/* A partial MDL's own mapping goes with it (the seed page's release table). */
	if (Mdl->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	else if ((Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA) && !(Mdl->MdlFlags & MDL_PARTIAL))
		verifier_violation(0xB8, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	ExFreePoolWithTag(Mdl, MDL_TAG);
}

/* ---- locking ------------------------------------------------------------------------ */

static void lock_frame(pfn_t pfn)
{
	struct pfn_entry *e = pfn_entry(pfn);
	if (!e || e->state == PFN_NOT_RAM)
		return; /* I/O space: nothing to pin */
	if (e->lock_count++ == 0)
		pfn_note_lock_change(true);
}

static void unlock_frame(pfn_t pfn)
{
	struct pfn_entry *e = pfn_entry(pfn);
	if (!e || e->state == PFN_NOT_RAM)
		return;
	if (!e->lock_count)
		KeBugCheckEx(PFN_LIST_CORRUPT, 0x07, pfn, e->state, 0);
	if (--e->lock_count == 0)
		pfn_note_lock_change(false);
}

VOID MmProbeAndLockPages(PMDL Mdl, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation)
{
	verifier_check_irql(DISPATCH_LEVEL, 0x70, (ULONG_PTR)Mdl, AccessMode);
	USHORT bad = Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL);
	if (bad)
		verifier_violation(0xB0, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, bad);

	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(Mdl), len = Mdl->ByteCount;
	bool write = Operation != IoReadAccess;
	ULONG access = write ? EXCEPTION_WRITE_FAULT : EXCEPTION_READ_FAULT;
	/* A user-mode range lies below the probe limit and does not wrap. */
	if (AccessMode == UserMode && (va + len < va || va + len > MM_USER_PROBE_ADDRESS))
		seh_raise_access_violation(va + len < va ? va : MM_USER_PROBE_ADDRESS, access);
	if (verifier_inject_failure(VF_SITE_PROBE_AND_LOCK))
		ExRaiseStatus(STATUS_INSUFFICIENT_RESOURCES);
	/* A user buffer is made resident in its process first (mm/mdl_user.c). */
	PEPROCESS owner = mdl_user_probe(Mdl, AccessMode, write);

	const struct pt_root *root = mdl_current_root();
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	ULONG n = mdl_page_count(Mdl);
	bool io = false;
	for (ULONG i = 0; i < n; i++) {
		uint64_t page = (uint64_t)Mdl->StartVa + (uint64_t)i * PAGE_SIZE;
		struct pt_query q;
		pt_query(root, page, &q);
		bool ok = q.present && (!write || q.eff.write) && (AccessMode == KernelMode || q.eff.user);
		if (!ok) {
			/* Nothing stays locked after the exception. */
			for (ULONG k = 0; k < i; k++)
				unlock_frame(pfns[k]);
			seh_raise_access_violation(i ? page : va, access);
		}
		pfns[i] = q.pa >> PAGE_SHIFT;
		io |= !pfn_is_ram(pfns[i]);
		lock_frame(pfns[i]);
	}
	Mdl->MdlFlags |= MDL_PAGES_LOCKED | (write ? MDL_WRITE_OPERATION : 0) | (io ? MDL_IO_SPACE : 0);
	mdl_user_note_lock(Mdl, owner);
	stats.probes++;
}

VOID MmUnlockPages(PMDL Mdl)
{
	verifier_check_irql(DISPATCH_LEVEL, 0x78, (ULONG_PTR)Mdl, 0);
	if (Mdl->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL)
		verifier_violation(0x7D, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	if (Mdl->MdlFlags & MDL_PARTIAL)
		verifier_violation(0xB4, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PARTIAL);
	ULONG n = mdl_page_count(Mdl);
	if (!(Mdl->MdlFlags & MDL_PAGES_LOCKED)) {
		if (verifier_on(VF_CHECKS))
			verifier_violation(0x7C, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
		KeBugCheckEx(PROCESS_HAS_LOCKED_PAGES, 1, (ULONG_PTR)Mdl, n, 0);
	}
	/* No user mapping may outlive the lock; the owning process stops counting the pages. */
	mdl_user_note_unlock(Mdl);
	/* MmUnlockPages releases the system mapping first (the seed page's release table). */
	if (Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	for (ULONG i = 0; i < n; i++)
		unlock_frame(pfns[i]);
	Mdl->MdlFlags &= ~(MDL_PAGES_LOCKED | MDL_WRITE_OPERATION | MDL_IO_SPACE);
	stats.unlocks++;
}

/* Whether [va, va + len) is nonpaged kernel memory: nonpaged pool, the kernel image, the
 * direct map.  Stacks, paged pool, user memory and unmapped ranges are not. */
static bool is_nonpaged(uint64_t va, uint64_t len)
{
	for (uint64_t p = ALIGN_DOWN(va, PAGE_SIZE); p < va + len; p += PAGE_SIZE) {
		struct pool_info pi;
		bool in_pool = p >= KVA_POOL_BASE && p < KVA_POOL_END;
		if (in_pool && (!pool_query(p < va ? va : p, &pi) || pi.paged))
			return false;
		bool image = p >= KVA_KERNEL_IMAGE, direct = p >= KVA_DIRECT_MAP_BASE && p < KVA_DIRECT_MAP_END;
		if (!in_pool && !image && !direct)
			return false;
		struct pt_query q;
		pt_query(&kernel_root, p, &q);
		if (!q.present)
			return false;
	}
	return true;
}

VOID MmBuildMdlForNonPagedPool(PMDL Mdl)
{
	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(Mdl);
	if (!is_nonpaged(va, Mdl->ByteCount))
		verifier_violation(0x7F, KeGetCurrentIrql(), (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	ULONG n = mdl_page_count(Mdl);
	for (ULONG i = 0; i < n; i++) {
		struct pt_query q;
		pt_query(&kernel_root, (uint64_t)Mdl->StartVa + (uint64_t)i * PAGE_SIZE, &q);
		pfns[i] = q.pa >> PAGE_SHIFT;
	}
	/* Mapped already, by the pool itself; not locked: nothing to unlock or unmap later. */
	Mdl->MappedSystemVa = (PVOID)va;
	Mdl->MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
	Mdl->Process = NULL;
}

/* ---- pages for MDLs ----------------------------------------------------------------- */

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* Allocate the frames of an MmAllocatePagesForMdl(Ex) request into out[]; returns how many. */
static uint64_t allocate_frames(pfn_t low, pfn_t high, uint64_t skip_pages, uint64_t want, ULONG flags,
				pfn_t *out)
{
	unsigned zero = (flags & MM_DONT_ZERO_ALLOCATION) ? 0 : PFN_ALLOC_ZERO;
	uint64_t got = 0;
	if (flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) {
		/* Skip 0: one contiguous block.  Otherwise blocks of Skip bytes aligned to Skip. */
		uint64_t chunk = skip_pages ? skip_pages : want;
		while (got < want) {
			pfn_t first = pfn_alloc_run(low, high, chunk, skip_pages ? chunk : 1, zero, PFN_OWNER_MDL);
			if (first == PFN_INVALID)
				break;
			for (uint64_t i = 0; i < chunk; i++)
				out[got++] = first + i;
		}
		return got;
	}
	/* [Low, High], then the window moved up by Skip, and so on while RAM remains. */
	for (uint64_t k = 0; got < want; k++) {
		pfn_t lo = low + k * skip_pages, hi = high + k * skip_pages;
		if (lo >= pfn_limit() || (k && !skip_pages))
			break;
		got += pfn_alloc_batch_in(lo, hi, want - got, zero, PFN_OWNER_MDL, out + got);
	}
	return got;
}

static PMDL allocate_pages_for_mdl(PHYSICAL_ADDRESS Low, PHYSICAL_ADDRESS High, PHYSICAL_ADDRESS Skip,
				   SIZE_T TotalBytes, enum memtype type, ULONG Flags)
{
	verifier_check_irql(DISPATCH_LEVEL, 0x7E, DISPATCH_LEVEL, 0);
	uint64_t skip = (uint64_t)Skip.QuadPart;
	/* Physical addresses are unsigned: a High of all ones means no upper limit. */
	if ((Flags & ~MM_ALLOCATE_KNOWN_FLAGS) || !TotalBytes || (uint64_t)High.QuadPart < (uint64_t)Low.QuadPart)
		return NULL;
	if ((Flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) && skip &&
	    (!is_pow2(skip) || skip < PAGE_SIZE || TotalBytes % skip))
		return NULL;
	if (verifier_inject_failure(VF_SITE_ALLOCATE_PAGES))
		return NULL;
	if (TotalBytes > MAX_MDL_BYTES)
		TotalBytes = MAX_MDL_BYTES;
	uint64_t want = ALIGN_UP(TotalBytes, PAGE_SIZE) / PAGE_SIZE;
	PMDL m = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof(MDL) + want * sizeof(PFN_NUMBER), MDL_TAG);
	if (!m)
		return NULL;
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	pfn_t low = ALIGN_UP((uint64_t)Low.QuadPart, PAGE_SIZE) / PAGE_SIZE;
	pfn_t high = (uint64_t)High.QuadPart / PAGE_SIZE;
	uint64_t got = allocate_frames(low, high, skip / PAGE_SIZE, want, Flags, pfns);

	/* The frames belong to this MDL and carry the requested type from now on (the
	 * direct-map alias changes with them); MmAllocatePagesForMdl leaves them untyped. */
	bool ok = got && (got == want || !(Flags & MM_ALLOCATE_FULLY_REQUIRED));
	for (uint64_t i = 0; i < got && ok; i++) {
		pfn_entry(pfns[i])->owner = (uint64_t)m;
		if (type == MT_NONE)
			pfn_entry(pfns[i])->memtype = MT_NONE;
		else if (!memtype_set_frame(pfns[i], type))
			ok = false;
	}
	if (!ok) {
		for (uint64_t i = 0; i < got; i++)
			pfn_free(pfns[i]);
		ExFreePoolWithTag(m, MDL_TAG);
		return NULL;
	}
	MmInitializeMdl(m, NULL, got * PAGE_SIZE < TotalBytes ? got * PAGE_SIZE : TotalBytes);
	m->MdlFlags = MDL_PAGES_LOCKED;
	stats.allocated_pages += got;
	return m;
}

PMDL MmAllocatePagesForMdlEx(PHYSICAL_ADDRESS LowAddress, PHYSICAL_ADDRESS HighAddress, PHYSICAL_ADDRESS SkipBytes,
			     SIZE_T TotalBytes, MEMORY_CACHING_TYPE CacheType, ULONG Flags)
{
	enum memtype t = memtype_from_caching_type(CacheType);
	if (t == MT_NONE)
		return NULL;
	return allocate_pages_for_mdl(LowAddress, HighAddress, SkipBytes, TotalBytes, t, Flags);
}

PMDL MmAllocatePagesForMdl(PHYSICAL_ADDRESS LowAddress, PHYSICAL_ADDRESS HighAddress, PHYSICAL_ADDRESS SkipBytes,
			   SIZE_T TotalBytes)
{
	return allocate_pages_for_mdl(LowAddress, HighAddress, SkipBytes, TotalBytes, MT_NONE, 0);
}

VOID MmFreePagesFromMdl(PMDL Mdl)
{
	verifier_check_irql(DISPATCH_LEVEL, 0x7E, DISPATCH_LEVEL, 0);
	/* A process could still reach the frames through a user mapping. */
	if (mdl_user_mapping_count(Mdl))
		verifier_violation(0x2005, (ULONG_PTR)Mdl, 0, 0);
	/* Windows 7 and later: a system mapping left in place is released here. */
	if (Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	ULONG n = mdl_page_count(Mdl);
	for (ULONG i = 0; i < n; i++) {
		struct pfn_entry *e = pfn_entry(pfns[i]);
		if (!e || e->state != PFN_ACTIVE || e->owner_kind != PFN_OWNER_MDL || e->owner != (uint64_t)Mdl)
			KeBugCheckEx(MEMORY_MANAGEMENT, 0x1236, (ULONG_PTR)Mdl, (ULONG_PTR)&pfns[i], pfns[i]);
	}
	for (ULONG i = 0; i < n; i++)
		pfn_free(pfns[i]);
	stats.allocated_pages -= n;
	Mdl->ByteCount = 0;
	Mdl->MdlFlags &= ~MDL_PAGES_LOCKED;
}

/* ---- partial MDLs ------------------------------------------------------------------- */

VOID IoBuildPartialMdl(PMDL SourceMdl, PMDL TargetMdl, PVOID VirtualAddress, ULONG Length)
{
	uint64_t src = (uint64_t)MmGetMdlVirtualAddress(SourceMdl), end = src + SourceMdl->ByteCount;
	uint64_t va = (uint64_t)VirtualAddress;
	if (!Length && va <= end)
		Length = (ULONG)(end - va);  /* 0 means "to the end of the source" */
	if (va < src || va + Length < va || va + Length > end)
		KeBugCheckEx(INVALID_MDL_RANGE, (ULONG_PTR)SourceMdl, va, Length, 0);
	if (!(SourceMdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL)))
		verifier_violation(0xB3, (ULONG_PTR)SourceMdl, (USHORT)SourceMdl->MdlFlags, MDL_PAGES_LOCKED);
	ULONG n = ADDRESS_AND_SIZE_TO_SPAN_PAGES(VirtualAddress, Length);
	if ((USHORT)TargetMdl->Size < sizeof(MDL) + n * sizeof(PFN_NUMBER))
		KeBugCheckEx(TARGET_MDL_TOO_SMALL, (ULONG_PTR)SourceMdl, (ULONG_PTR)TargetMdl, n, (USHORT)TargetMdl->Size);
	/* Rebuilding a partial MDL that still holds its own mapping would lose it. */
	if (TargetMdl->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED)
		verifier_violation(0xB2, (ULONG_PTR)TargetMdl, (USHORT)TargetMdl->MdlFlags, MDL_PARTIAL_HAS_BEEN_MAPPED);

	TargetMdl->MdlFlags = (TargetMdl->MdlFlags & (MDL_ALLOCATED_FIXED_SIZE | MDL_ALLOCATED_MUST_SUCCEED)) |
			      MDL_PARTIAL |
			      (SourceMdl->MdlFlags & (MDL_IO_SPACE | MDL_WRITE_OPERATION | MDL_SOURCE_IS_NONPAGED_POOL));
	TargetMdl->Process = SourceMdl->Process;
	TargetMdl->StartVa = PAGE_ALIGN(VirtualAddress);
	TargetMdl->ByteOffset = BYTE_OFFSET(VirtualAddress);
	TargetMdl->ByteCount = Length;
	TargetMdl->MappedSystemVa = NULL;
	/* A mapped source is shared: the target's system address lies inside its mapping. */
	if (SourceMdl->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL)) {
		TargetMdl->MappedSystemVa = (PCHAR)SourceMdl->MappedSystemVa + (va - src);
		if (SourceMdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
			TargetMdl->MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA | MDL_PARENT_MAPPED_SYSTEM_VA;
	}
	uint64_t first = ((uint64_t)TargetMdl->StartVa - (uint64_t)SourceMdl->StartVa) / PAGE_SIZE;
	memcpy(MmGetMdlPfnArray(TargetMdl), MmGetMdlPfnArray(SourceMdl) + first, n * sizeof(PFN_NUMBER));
}

/* ---- mapping ------------------------------------------------------------------------ */

/* The memory type frame `pfn` is mapped with (decision 1): its own type when it has one (WB
 * for pool and locked RAM, the recorded type for MmAllocatePagesForMdlEx pages); an untyped
 * frame takes `requested`, for good.  *override counts a request that was not honoured. */
bool mdl_frame_type(pfn_t pfn, enum memtype requested, enum memtype *out, bool *override)
{
	struct pfn_entry *e = pfn_entry(pfn);
	if (!e) {
		*out = requested; /* I/O space beyond RAM: no record, no alias */
		return true;
	}
	if (e->memtype == MT_NONE) {
		if (!memtype_set_frame(pfn, requested))
			return false;
		*out = requested;
		return true;
	}
	*out = (enum memtype)e->memtype;
	*override |= *out != requested;
	return true;
}

/* Check one frame as mdl_check_frames does and give its type (mdl_frame_type): the slow
 * path of write_ptes, for frames that are not plainly pinned and typed. */
static bool frame_slow(PMDL m, ULONG i, enum memtype requested, enum memtype *t, bool *override)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	struct pfn_entry *e = pfn_entry(pfns[i]);
	if (!e || e->state == PFN_NOT_RAM) {
		if (!(m->MdlFlags & MDL_IO_SPACE))
			verifier_violation(0x89, (ULONG_PTR)m, (ULONG_PTR)&pfns[i], pfns[i]);
	} else if (!(e->lock_count || e->state == PFN_KERNEL || e->state == PFN_FIRMWARE ||
		     (e->state == PFN_ACTIVE && e->owner_kind != PFN_OWNER_NONE))) {
		verifier_violation(0x85, (ULONG_PTR)m, mdl_page_count(m), pfns[i]);
	}
	return mdl_frame_type(pfns[i], requested, t, override);
}

/*
 * Write the PTEs of the MDL's n pages at va (the start of a system-PTE reservation), each frame
 * checked (every frame of a mapped MDL must be pinned: locked, pool, an MDL's own allocation,
 * kernel or firmware memory; a frame outside RAM needs MDL_IO_SPACE) and mapped with its one
 * type.  The page-table module writes the plain frames in one pass; each other frame is
 * checked and typed here, then the pass resumes.  False when a frame could not be typed (its
 * alias could not be split): the PTEs written are cleared.
 */
static bool write_ptes(PMDL m, uint64_t va, ULONG n, enum memtype requested, bool write, bool exec, bool *override)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	struct pt_attrs a = { .write = write, .exec = exec, .global = true };
	/* No syspte_check_range: va is what syspte_reserve(n) has just returned. */
	for (ULONG i = 0; i < n;) {
		i += pt_set_ptes_from_frames(va + (uint64_t)i * PAGE_SIZE, &pfns[i], n - i, a, requested,
					     override);
		if (i == n)
			break;
		enum memtype t;
		if (!frame_slow(m, i, requested, &t, override)) {
			if (i)
				pt_clear_ptes(va, i);
			return false;
		}
		uint8_t t8 = (uint8_t)t;
		pt_set_ptes_typed(va + (uint64_t)i * PAGE_SIZE, &pfns[i], &t8, 1, a);
		i++;
	}
	return true;
}

/* Every frame of a mapped MDL must be pinned: locked, or pool, or an MDL's own allocation;
 * a frame outside RAM needs MDL_IO_SPACE. */
void mdl_check_frames(PMDL m)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++) {
		struct pfn_entry *e = pfn_entry(pfns[i]);
		if (!e || e->state == PFN_NOT_RAM) {
			if (!(m->MdlFlags & MDL_IO_SPACE))
				verifier_violation(0x89, (ULONG_PTR)m, (ULONG_PTR)&pfns[i], pfns[i]);
			continue;
		}
		bool pinned = e->lock_count || e->state == PFN_KERNEL || e->state == PFN_FIRMWARE ||
			      (e->state == PFN_ACTIVE && e->owner_kind != PFN_OWNER_NONE);
		if (!pinned)
			verifier_violation(0x85, (ULONG_PTR)m, n, pfns[i]);
	}
}

static PVOID map_failed(PMDL m, ULONG BugCheckOnFailure, ULONG pages)
{
	stats.map_failures++;
	if (BugCheckOnFailure && !(m->MdlFlags & MDL_MAPPING_CAN_FAIL)) {
		struct syspte_stats s;
		syspte_get_stats(&s);
		KeBugCheckEx(NO_MORE_SYSTEM_PTES, 0, pages, s.free, s.total);
	}
	return NULL;
}

PVOID MmMapLockedPagesSpecifyCache(PMDL Mdl, KPROCESSOR_MODE AccessMode, MEMORY_CACHING_TYPE CacheType,
				   PVOID RequestedAddress, ULONG BugCheckOnFailure, ULONG Priority)
{
	if (AccessMode == UserMode)
		return mdl_map_user(Mdl, CacheType, RequestedAddress, Priority);
	verifier_check_irql(DISPATCH_LEVEL, 0x76, (ULONG_PTR)Mdl, AccessMode);
	if (BugCheckOnFailure && verifier_on(VF_DEPRECATED))
		verifier_violation(0x82, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	/* At most one system mapping; a nonpaged-pool MDL has one already (its pool address). */
	USHORT bad = Mdl->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL);
	if (bad)
		verifier_violation(0xB2, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, bad);
	if (!(Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_PARTIAL)))
		verifier_violation(0xB3, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PAGES_LOCKED);

	ULONG n = mdl_page_count(Mdl);
	enum memtype requested = memtype_from_caching_type(CacheType);
	if (requested == MT_NONE) {
		/* A CacheType that names no type is a bad argument, not a PTE shortage. */
		stats.map_failures++;
		return NULL;
	}
	if (verifier_inject_failure(VF_SITE_MAP))
		return map_failed(Mdl, BugCheckOnFailure, n);
	uint64_t va = syspte_reserve(n, Priority & ~PRIORITY_FLAGS, Priority & MdlMappingWithGuardPtes);
	if (!va)
		return map_failed(Mdl, BugCheckOnFailure, n);
	/* Every system mapping is no-execute (decision 3); NoWrite makes it read-only. */
	bool override = false;
	if (!write_ptes(Mdl, va, n, requested, !(Priority & MdlMappingNoWrite), false, &override)) {
		syspte_release(va, n);
		return map_failed(Mdl, BugCheckOnFailure, n);
	}
	stats.cache_overrides += override;
	stats.maps++;
	Mdl->MappedSystemVa = (PVOID)(va + Mdl->ByteOffset);
	Mdl->MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA | ((Mdl->MdlFlags & MDL_PARTIAL) ? MDL_PARTIAL_HAS_BEEN_MAPPED : 0);
	return Mdl->MappedSystemVa;
}

PVOID MmMapLockedPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode)
{
	if (verifier_on(VF_DEPRECATED))
		verifier_violation(0x81, (ULONG_PTR)MemoryDescriptorList, (USHORT)MemoryDescriptorList->MdlFlags, 0);
	verifier_check_irql(AccessMode == UserMode ? APC_LEVEL : DISPATCH_LEVEL, AccessMode == UserMode ? 0x75 : 0x74,
			    (ULONG_PTR)MemoryDescriptorList, AccessMode);
	/* The French seed page: MmCached, no requested address, bug check on failure, High. */
	return MmMapLockedPagesSpecifyCache(MemoryDescriptorList, AccessMode, MmCached, NULL, TRUE,
					    HighPagePriority);
}

VOID MmUnmapLockedPages(PVOID BaseAddress, PMDL Mdl)
{
	uint64_t base = (uint64_t)BaseAddress;
	if (base < USER_VA_END) {
		mdl_unmap_user(BaseAddress, Mdl);
		return;
	}
	verifier_check_irql(DISPATCH_LEVEL, 0x79, base, (ULONG_PTR)Mdl);
	ULONG n = mdl_page_count(Mdl);
	if (!(Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)) {
		if (verifier_on(VF_CHECKS))
			verifier_violation(0xB6, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x06, base, n, (ULONG_PTR)Mdl);
	}
	/* A partial MDL sharing its parent's mapping does not own it. */
	if (Mdl->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA)
		verifier_violation(0xB5, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PARTIAL);
	if (BaseAddress != Mdl->MappedSystemVa)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x03, base, n, (ULONG_PTR)Mdl->MappedSystemVa);
	syspte_release(ALIGN_DOWN(base, PAGE_SIZE), n);
	Mdl->MdlFlags &= ~(MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED);
	Mdl->MappedSystemVa = NULL;
	stats.unmaps++;
}

NTSTATUS MmProtectMdlSystemAddress(PMDL MemoryDescriptorList, ULONG NewProtect)
{
	PMDL m = MemoryDescriptorList;
	verifier_check_irql(DISPATCH_LEVEL, 0xE5, 0, 0);
	if (!(m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA) || (m->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL))
		return STATUS_NOT_MAPPED_VIEW;
	bool present = true, write = false, exec = false;
	switch (NewProtect) {
	case PAGE_NOACCESS: present = false; break;
	case PAGE_READONLY: break;
	case PAGE_READWRITE: write = true; break;
	case PAGE_EXECUTE:
	case PAGE_EXECUTE_READ: exec = true; break;
	default:
		/* PAGE_EXECUTE_READWRITE is refused (decision 3: W^X), like every modifier. */
		return STATUS_INVALID_PAGE_PROTECTION;
	}
	uint64_t va = ALIGN_DOWN((uint64_t)m->MappedSystemVa, PAGE_SIZE);
	ULONG n = mdl_page_count(m);
	/* The PTEs change in place: each keeps its frame and its memory type (an I/O-space
	 * frame's type lives only there), and PAGE_NOACCESS clears only the present bit. */
	pt_reprotect_ptes(va, n, present, write, exec);
	stats.protects++;
	return STATUS_SUCCESS;
}
