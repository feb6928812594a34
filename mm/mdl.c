/*
 * The MDL routines, kernel side (include/wdm.h; their rules, with Microsoft's values and this
 * project's decisions, are mm/RULES.md's).  Mappings live in the system-PTE space; every one is no-execute (mm/RULES.md decision 3),
 * read-only with MdlMappingNoWrite or when the MDL was locked over memory its caller could not
 * write (mm/RULES.md decision 9), and carries each frame's one memory type (mm/RULES.md decision 1).
 */
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/memtype.h"
#include "mm/mmproc.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/reserved.h"
#include "mm/syspte.h"
#include "mm/uvm.h"
#include "mm/verifier.h"

#define MDL_TAG 0x206C644Du /* 'Mdl ' */
#define MAX_MDL_BYTES (0x100000000ul - PAGE_SIZE)
#define PRIORITY_FLAGS (MdlMappingNoWrite | MdlMappingNoExecute | MdlMappingWithGuardPtes)
#define MM_ALLOCATE_KNOWN_FLAGS 0x7Fu

/* The MDL counters: every CPU maps and unmaps, so each count is one atomic add. */
static struct mdl_stats stats;
#define COUNT(field, n) __atomic_fetch_add(&stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

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
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
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
		verifier_violation(VERIFIER_MDL_RELEASE_USER_MAPPED, (ULONG_PTR)Mdl, 0, 0);
	/* A partial MDL's own mapping goes with it (mm/RULES.md rule 8, the release table). */
	if (Mdl->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	else if ((Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA) && !(Mdl->MdlFlags & MDL_PARTIAL))
		verifier_violation(VERIFIER_MDL_FREE_MAPPED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	/* Pages MmProbeAndLockPages locked must be unlocked first (IoFreeMdl's page).  The
	 * verifier stops here (mdlab's code 0x2007); without it, as in NT, the frames stay
	 * locked, and a user buffer's lock is still charged to its process, which stops with
	 * 0x76 (or 0xCB) when it ends (mm/RULES.md rule 17).  A driver's own MDL_PAGES_LOCKED
	 * holds no lock count and is not checked. */
	if ((Mdl->MdlabFlags & MDLAB_MDL_PROBE_LOCKED) && verifier_on(VF_CHECKS))
		verifier_violation(VERIFIER_MDL_FREE_LOCKED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, mdl_page_count(Mdl));
	ExFreePoolWithTag(Mdl, MDL_TAG);
}

/* ---- locking ------------------------------------------------------------------------ */

void (*mdl_test_probe_window)(PMDL m);
void (*mdl_test_select_window)(PMDL m, ULONG i);

VOID MmProbeAndLockPages(PMDL Mdl, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_PROBE_IRQL, (ULONG_PTR)Mdl, AccessMode);
	USHORT bad = Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL);
	if (bad)
		verifier_violation(VERIFIER_MDL_PROBE_BAD_FLAGS, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, bad);

	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(Mdl), len = Mdl->ByteCount;
	bool write = Operation != IoReadAccess;
	ULONG access = write ? EXCEPTION_WRITE_FAULT : EXCEPTION_READ_FAULT;
	/* A user-mode range lies below the probe limit and does not wrap. */
	if (AccessMode == UserMode && (va + len < va || va + len > MM_USER_PROBE_ADDRESS))
		seh_raise_access_violation(va + len < va ? va : MM_USER_PROBE_ADDRESS, access);
	/* Any range that wraps past the top of the address space names no pages.  Pages in the
	 * canonical hole are refused below: pt_query finds nothing there (mm/RULES.md rule 12). */
	if (len && va + (len - 1) < va)
		seh_raise_access_violation(va, access);
	if (verifier_inject_failure(VF_SITE_PROBE_AND_LOCK))
		ExRaiseStatus(STATUS_INSUFFICIENT_RESOURCES);
	/* A user buffer's process (mm/mdl_user.c); its pages are made resident below. */
	struct mm_process *owner = mdl_user_probe(Mdl, AccessMode, write);

	const struct pt_root *root = mdl_current_root();
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	ULONG n = mdl_page_count(Mdl);
	/* Every page present with the access asked (effective rights), read with one walk per
	 * page table; only then is anything locked, so nothing stays locked after the
	 * exception. */
	bool read_only = false;
	/* A user buffer's walk and lock are one step under its process's address-space lock
	 * (mmproc.h): another CPU freeing the pages meanwhile either comes first (the walk
	 * fails) or finds them locked. */
	KIRQL sirql = owner ? mm_space_lock(owner) : 0;
	ULONG i;
	bool io = false, paged_pool = !owner && n && pool_pages_pageable((uint64_t)Mdl->StartVa, n);
	/* A kernel buffer with a paged-pool page: the walk and the locks one step under the pool
	 * lock, trimmed pages faulted in between steps (pool_lock_pages; mm/RULES.md "Paging",
	 * "Paged pool"), so the pool's trimmer on another CPU cannot take a page between the
	 * two.  Every other kernel buffer is nonpaged and needs none of it. */
	if (__builtin_expect(paged_pool, 0))
		i = (ULONG)pool_lock_pages((uint64_t)Mdl->StartVa, n, write, pfns, &read_only, &io, PROBE_PASSES);
	else
		i = (ULONG)pt_translate_run(root, (uint64_t)Mdl->StartVa, n, write, AccessMode != KernelMode, pfns,
					   &read_only);
	struct uvm_resident_stop stop = { .status = STATUS_SUCCESS };
	/* A page not resident with the access: the rest made resident (committed demand-zero
	 * pages get frames, trimmed ones come back, soft or hard), then walked again from the
	 * start.  The lock is not held from one to the other (nor around a read within), so a
	 * page made resident may be trimmed again by another CPU (memory pressure) before the
	 * walk: while the pass made every page it was given resident, the walk's stop is such a
	 * page, and the pass repeats from it.  Bounded: a trimmer that wins PROBE_PASSES passes
	 * in a row ends the probe as an access violation, never a wait without end. */
	for (unsigned pass = 0; i < n && owner && pass < PROBE_PASSES; pass++) {
		mm_space_unlock(owner, sirql);
		ULONG from = i;
		uint64_t made = uvm_make_resident_pages_status(owner, (uint64_t)Mdl->StartVa + (uint64_t)i * PAGE_SIZE,
							       n - i, write, &stop);
		if (__builtin_expect(mdl_test_probe_window != NULL, 0))
			mdl_test_probe_window(Mdl);
		sirql = mm_space_lock(owner);
		read_only = false;
		i = (ULONG)pt_translate_run(root, (uint64_t)Mdl->StartVa, n, write, AccessMode != KernelMode, pfns,
					    &read_only);
		if (made < n - from)
			break; /* the pass itself was refused: that answer stands */
	}
	if (!paged_pool)
		io = i == n && pfn_lock_frames(pfns, n);
	if (owner)
		mm_space_unlock(owner, sirql);
	/* A page the pagefile could not give back: STATUS_IN_PAGE_ERROR, nothing locked, with
	 * the parameters the access's own fault gives (the access, the page's address, the
	 * buffer's own on its first page, the device's status). */
	if (i < n && stop.status == STATUS_IN_PAGE_ERROR)
		seh_raise_in_page_error(stop.va > va ? stop.va : va, access, stop.io);
	if (i < n)
		seh_raise_access_violation(i ? (uint64_t)Mdl->StartVa + (uint64_t)i * PAGE_SIZE : va, access);
	Mdl->MdlFlags |= MDL_PAGES_LOCKED | (write ? MDL_WRITE_OPERATION : 0) | (io ? MDL_IO_SPACE : 0);
	/* A read lock of memory its caller cannot write gives read-only mappings only
	 * (mm/RULES.md decision 9). */
	Mdl->MdlabFlags = (Mdl->MdlabFlags & ~MDLAB_MDL_SOURCE_READ_ONLY) | MDLAB_MDL_PROBE_LOCKED |
			  (read_only ? MDLAB_MDL_SOURCE_READ_ONLY : 0);
	mdl_user_note_lock(Mdl, owner);
	COUNT(probes, 1);
}

VOID MmUnlockPages(PMDL Mdl)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_UNLOCK_IRQL, (ULONG_PTR)Mdl, 0);
	if (Mdl->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL)
		verifier_violation(VERIFIER_MDL_UNLOCK_NONPAGED_POOL, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	if (Mdl->MdlFlags & MDL_PARTIAL)
		verifier_violation(VERIFIER_MDL_UNLOCK_PARTIAL, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PARTIAL);
	ULONG n = mdl_page_count(Mdl);
	if (!(Mdl->MdlFlags & MDL_PAGES_LOCKED)) {
		if (verifier_on(VF_CHECKS))
			verifier_violation(VERIFIER_MDL_UNLOCK_NOT_LOCKED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
		/* Microsoft's 0x76 P1 1: the MDL, its process's locked-page count, no driver stacks. */
		KeBugCheckEx(PROCESS_HAS_LOCKED_PAGES, 1, (ULONG_PTR)Mdl, mdl_user_locked_pages(Mdl), 0);
	}
	/* No user mapping may outlive the lock; the owning process stops counting the pages. */
	mdl_user_note_unlock(Mdl);
	/* MmUnlockPages releases the system mapping first (mm/RULES.md rule 8, the release table). */
	if (Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	pfn_unlock_frames(MmGetMdlPfnArray(Mdl), n);
	Mdl->MdlFlags &= ~(MDL_PAGES_LOCKED | MDL_WRITE_OPERATION | MDL_IO_SPACE);
	Mdl->MdlabFlags &= ~(MDLAB_MDL_SOURCE_READ_ONLY | MDLAB_MDL_PROBE_LOCKED);
	COUNT(unlocks, 1);
}

/* Whether frame pfn is nonpaged memory a driver allocated and mapped in system PTEs:
 * device memory (MmAllocateNonCachedMemory, MmAllocateContiguousMemory*) or an
 * MmAllocatePagesForMdl(Ex) MDL's frame. */
static bool is_allocated_frame(uint64_t pa)
{
	const struct pfn_entry *e = pfn_entry(pa >> PAGE_SHIFT);
	return e && e->state == PFN_ACTIVE && (e->owner_kind == PFN_OWNER_DEVMEM || e->owner_kind == PFN_OWNER_MDL);
}

/* Whether [va, va + len) is nonpaged kernel memory: nonpaged pool, the kernel image, the
 * direct map, system PTEs mapping allocated frames (is_allocated_frame).  Stacks, paged
 * pool, user memory and unmapped ranges are not. */
static bool is_nonpaged(uint64_t va, uint64_t len)
{
	for (uint64_t p = ALIGN_DOWN(va, PAGE_SIZE); p < va + len; p += PAGE_SIZE) {
		struct pool_info pi;
		bool in_pool = p >= KVA_POOL_BASE && p < KVA_POOL_END;
		/* Paged pool is refused from its page record alone: a trimmed page is not faulted
		 * in to read a header that would say so (mm/RULES.md rule 19, "Paging"). */
		if (in_pool && (pool_range_pageable(p, PAGE_SIZE) || !pool_query(p < va ? va : p, &pi)))
			return false;
		bool image = p >= KVA_KERNEL_IMAGE, direct = p >= KVA_DIRECT_MAP_BASE && p < KVA_DIRECT_MAP_END;
		bool sysptes = p >= KVA_SYSPTE_BASE && p < KVA_SYSPTE_END;
		if (!in_pool && !image && !direct && !sysptes)
			return false;
		struct pt_query q;
		pt_query(&kernel_root, p, &q);
		if (!q.present || (sysptes && !is_allocated_frame(q.pa)))
			return false;
	}
	return true;
}

VOID MmBuildMdlForNonPagedPool(PMDL Mdl)
{
	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(Mdl);
	if (!is_nonpaged(va, Mdl->ByteCount))
		verifier_violation(VERIFIER_MDL_NONPAGED_BUILD_OF_PAGED, KeGetCurrentIrql(), (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags);
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

/* Give an MDL's frames back: each frame's type first (the MDL typed them), then the frame
 * (memtype.h: the allocator does not restore types). */
static void free_frames(const pfn_t *pfns, uint64_t n)
{
	memtype_release_frames(pfns, n);
	pfn_free_frames(pfns, n);
}

/* Allocate the frames of an MmAllocatePagesForMdl(Ex) request for MDL m into out[], each
 * recorded as m's; returns how many. */
static inline __attribute__((always_inline)) uint64_t allocate_frames(PMDL m, pfn_t low, pfn_t high,
								      uint64_t skip_pages, uint64_t want,
								      ULONG flags, pfn_t *out)
{
	/* PFN_ALLOC_ZERO unless MM_DONT_ZERO_ALLOCATION; MM_ALLOCATE_NO_WAIT as it is, which is
	 * PFN_ALLOC_NO_RELIEF: short of frames, the call never waits for the trimmer and the
	 * writer (mm/RULES.md, "Paging", memory pressure), it returns what it got.  One AND and
	 * one XOR, as the zero flag alone costs. */
	_Static_assert(PFN_ALLOC_ZERO == MM_DONT_ZERO_ALLOCATION && PFN_ALLOC_NO_RELIEF == MM_ALLOCATE_NO_WAIT,
		       "the MM flags are the PFN flags' bits");
	unsigned pf = (flags & (MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_NO_WAIT)) ^ MM_DONT_ZERO_ALLOCATION;
	uint64_t got = 0;
	if (flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) {
		/* Skip 0: one contiguous block.  Otherwise blocks of Skip bytes aligned to Skip. */
		uint64_t chunk = skip_pages ? skip_pages : want;
		while (got < want) {
			pfn_t first = pfn_alloc_run(low, high, chunk, skip_pages ? chunk : 1, pf, PFN_OWNER_MDL);
			if (first == PFN_INVALID)
				break;
			for (uint64_t i = 0; i < chunk; i++)
				out[got++] = first + i;
		}
		pfn_set_owner_frames(out, got, (uint64_t)m);
		return got;
	}
	/* [Low, High] (a window above RAM gets nothing there), then the window moved up by
	 * Skip, and so on while RAM remains. */
	got = pfn_alloc_batch_in(low, high, want, pf, PFN_OWNER_MDL, (uint64_t)m, out);
	for (uint64_t k = 1; got < want && skip_pages; k++) {
		pfn_t lo = low + k * skip_pages, hi = high + k * skip_pages;
		if (lo >= pfn_limit())
			break;
		got += pfn_alloc_batch_in(lo, hi, want - got, pf, PFN_OWNER_MDL, (uint64_t)m, out + got);
	}
	/* Short of frames with the whole of memory allowed, the allocator itself relieved the
	 * pressure (the trimmer and the modified page writer, where the writer may wait) and
	 * tried again, unless NO_WAIT (mm/pfn.h; mm/RULES.md, "Paging"). */
	return got;
}

/* The arguments MmAllocatePagesForMdl(Ex) refuses (NULL): unknown flags, nothing asked, a
 * window upside down (physical addresses are unsigned: a High of all ones means no upper
 * limit), and for contiguous chunks a Skip that is not a power of two of at least a page
 * dividing TotalBytes. */
static bool allocation_request_is_valid(uint64_t low, uint64_t high, uint64_t skip, SIZE_T TotalBytes, ULONG Flags)
{
	if ((Flags & ~MM_ALLOCATE_KNOWN_FLAGS) || !TotalBytes || high < low)
		return false;
	return !((Flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS) && skip &&
		 (!is_pow2(skip) || skip < PAGE_SIZE || TotalBytes % skip));
}

/* The frames (recorded as the MDL's by allocate_frames) carry `type` from now on (the
 * direct-map alias changes with them); MT_NONE (MmAllocatePagesForMdl) leaves them untyped.  False when a frame
 * could not be typed: the caller frees them all (free_frames releases the types given). */
static bool adopt_frames(const pfn_t *pfns, uint64_t n, enum memtype type)
{
	/* The allocator hands out WB frames only (pfn.h: a frame comes off a free list WB, the
	 * direct map's type), so MmCached has nothing to change, frame by frame. */
	if (type == MT_WB)
		return true;
	if (type == MT_NONE) {
		memtype_make_untyped_frames(pfns, n);
		return true;
	}
	for (uint64_t i = 0; i < n; i++)
		if (!memtype_set_frame(pfns[i], type))
			return false;
	return true;
}

/* Inline into its two callers: one call level less on the allocation's path. */
static inline __attribute__((always_inline)) PMDL allocate_pages_for_mdl(PHYSICAL_ADDRESS Low, PHYSICAL_ADDRESS High,
									 PHYSICAL_ADDRESS Skip,
									 SIZE_T TotalBytes, enum memtype type, ULONG Flags)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_PAGES_FOR_MDL_IRQL, DISPATCH_LEVEL, 0);
	uint64_t skip = (uint64_t)Skip.QuadPart;
	if (!allocation_request_is_valid((uint64_t)Low.QuadPart, (uint64_t)High.QuadPart, skip, TotalBytes, Flags))
		return NULL;
	if (verifier_inject_failure(VF_SITE_ALLOCATE_PAGES))
		return NULL;
	if (TotalBytes > MAX_MDL_BYTES)
		TotalBytes = MAX_MDL_BYTES;
	uint64_t want = ALIGN_UP(TotalBytes, PAGE_SIZE) / PAGE_SIZE;
	/* MM_ALLOCATE_NO_WAIT: the MDL's pool does not relieve either (mm/RULES.md "Paging",
	 * memory pressure: the caller gets what is free). */
	PMDL m = pool_alloc_nonpaged(sizeof(MDL) + want * sizeof(PFN_NUMBER), MDL_TAG, !(Flags & MM_ALLOCATE_NO_WAIT));
	if (!m)
		return NULL;
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	pfn_t low = ALIGN_UP((uint64_t)Low.QuadPart, PAGE_SIZE) / PAGE_SIZE;
	pfn_t high = (uint64_t)High.QuadPart / PAGE_SIZE;
	uint64_t got = allocate_frames(m, low, high, skip / PAGE_SIZE, want, Flags, pfns);

	bool enough = got && (got == want || !(Flags & MM_ALLOCATE_FULLY_REQUIRED));
	if (!enough || !adopt_frames(pfns, got, type)) {
		free_frames(pfns, got);
		ExFreePoolWithTag(m, MDL_TAG);
		return NULL;
	}
	MmInitializeMdl(m, NULL, got * PAGE_SIZE < TotalBytes ? got * PAGE_SIZE : TotalBytes);
	m->MdlFlags = MDL_PAGES_LOCKED;
	COUNT(allocated_pages, got);
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
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_PAGES_FOR_MDL_IRQL, DISPATCH_LEVEL, 0);
	/* A process could still reach the frames through a user mapping. */
	if (mdl_user_mapping_count(Mdl))
		verifier_violation(VERIFIER_MDL_RELEASE_USER_MAPPED, (ULONG_PTR)Mdl, 0, 0);
	/* Windows 7 and later: a system mapping left in place is released here. */
	if (Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
		MmUnmapLockedPages(Mdl->MappedSystemVa, Mdl);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	ULONG n = mdl_page_count(Mdl);
	/* Each frame's owner checked and its type given back in one pass (free_frames' order:
	 * the type before the frame).  A frame that is not this MDL's stops the machine there;
	 * the types given back before it change nothing a bug check shows. */
	for (ULONG i = 0; i < n; i++) {
		const struct pfn_entry *e = pfn_entry(pfns[i]);
		if (!e || e->state != PFN_ACTIVE || e->owner_kind != PFN_OWNER_MDL || e->owner != (uint64_t)Mdl)
			KeBugCheckEx(MEMORY_MANAGEMENT, 0x1236, (ULONG_PTR)Mdl, (ULONG_PTR)&pfns[i], pfns[i]);
		/* An untyped frame's alias is WB already, and a WB frame has nothing to undo
		 * (memtype_release_frames, memtype_release_frame). */
		if (e->memtype != MT_NONE && e->memtype != MT_WB)
			memtype_release_frame(pfns[i]);
	}
	pfn_free_frames(pfns, n);
	COUNT(allocated_pages, -(uint64_t)n);
	Mdl->ByteCount = 0;
	Mdl->MdlFlags &= ~MDL_PAGES_LOCKED;
}

/* ---- partial MDLs ------------------------------------------------------------------- */

/*
 * The bytes an MDL's storage holds, header and PFN array.  Size is a CSHORT (NT's
 * MmInitializeMdl truncates 0x30 + 8 x pages to 16 bits), so it wraps for MDLs over 8185
 * pages, which IoAllocateMdl allows up to 4 GiB - 4 KiB.  An MDL that starts a pool
 * allocation (IoAllocateMdl's, or a driver's own ExAllocatePool2 of MmSizeOfMdl bytes) has
 * the allocation's size; any other MDL (a driver's static or stack storage) has Size
 * (mm/RULES.md rule 11).
 */
static uint64_t mdl_capacity(PMDL m)
{
	uint64_t size = (USHORT)m->Size;
	struct pool_info pi;
	if (pool_query((uint64_t)m, &pi) && pi.base == (uint64_t)m && pi.size > size)
		return pi.size;
	return size;
}

VOID IoBuildPartialMdl(PMDL SourceMdl, PMDL TargetMdl, PVOID VirtualAddress, ULONG Length)
{
	uint64_t src = (uint64_t)MmGetMdlVirtualAddress(SourceMdl), end = src + SourceMdl->ByteCount;
	uint64_t va = (uint64_t)VirtualAddress;
	ULONG asked = Length;
	if (!Length && va <= end)
		Length = (ULONG)(end - va);  /* 0 means "to the end of the source" */
	if (va < src || va + Length < va || va + Length > end)
		KeBugCheckEx(INVALID_MDL_RANGE, (ULONG_PTR)SourceMdl, (ULONG_PTR)TargetMdl, va, asked);
	if (!(SourceMdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL)))
		verifier_violation(VERIFIER_MDL_MAP_UNLOCKED, (ULONG_PTR)SourceMdl, (USHORT)SourceMdl->MdlFlags, MDL_PAGES_LOCKED);
	ULONG n = ADDRESS_AND_SIZE_TO_SPAN_PAGES(VirtualAddress, Length);
	uint64_t need = sizeof(MDL) + (uint64_t)n * sizeof(PFN_NUMBER);
	if ((USHORT)TargetMdl->Size < need && mdl_capacity(TargetMdl) < need)
		KeBugCheckEx(TARGET_MDL_TOO_SMALL, (ULONG_PTR)SourceMdl, (ULONG_PTR)TargetMdl, n, mdl_capacity(TargetMdl));
	/* Rebuilding a partial MDL that still holds its own mapping would lose it. */
	if (TargetMdl->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED)
		verifier_violation(VERIFIER_MDL_ALREADY_MAPPED, (ULONG_PTR)TargetMdl, (USHORT)TargetMdl->MdlFlags,
				   MDL_PARTIAL_HAS_BEEN_MAPPED);

	TargetMdl->MdlFlags = (TargetMdl->MdlFlags & (MDL_ALLOCATED_FIXED_SIZE | MDL_ALLOCATED_MUST_SUCCEED)) |
			      MDL_PARTIAL |
			      (SourceMdl->MdlFlags & (MDL_IO_SPACE | MDL_WRITE_OPERATION | MDL_SOURCE_IS_NONPAGED_POOL));
	TargetMdl->MdlabFlags = SourceMdl->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY;
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

/* Pages of system mappings that MmProtectMdlSystemAddress makes or made executable, the sum
 * of their frames' counts (pfn_entry.exec_maps): while it is 0 (nearly always) no frame is
 * executable in ring 0 through an MDL mapping, and the checks below cost one test.  Raised
 * and lowered under exec_lock, by locked adds; read by anyone. */
static uint64_t exec_system_pages;

/* The executable-mapping lock (mm/RULES.md decision 3 and "Locks"): the begin step of an
 * executable mapping (the counts raised, the checks, the aliases made read-only, the PTEs
 * made executable) and every end step (the PTEs made no-execute, the counts lowered, the
 * aliases given back) run one at a time, so no end step gives a frame's alias write access
 * back while a begin step on another CPU, past its checks, makes the frame executable. */
static struct klock exec_lock = KLOCK_INIT(KLOCK_MDL_EXEC);

void (*mdl_test_exec_window)(enum mdl_exec_window where, PMDL m, PFN_NUMBER pfn);

const void *mdl_test_exec_lock(void) { return &exec_lock; }

static inline uint64_t exec_pages_now(void) { return __atomic_load_n(&exec_system_pages, __ATOMIC_RELAXED); }

/* The writable-mapping paths' second look starts here: MFENCE, so the PTE stores just made are
 * globally visible before the total (then the counts) is read (SDM Vol. 3A, 9.2.2: a load may
 * pass an earlier store to another address; a fence keeps them in order).  The execute path
 * has the mirror pair: its counts raised by locked adds, then the PTEs read. */
static inline uint64_t exec_pages_after_write(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return exec_pages_now();
}

/* Whether the present PTE at va (the kernel's tables) is executable. */
static bool pte_executable(uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	return q.present && q.eff.exec;
}


/* Every frame of a mapped MDL must be pinned (pfn_frame_is_pinned): locked, pool, an MDL's
 * own allocation, kernel or firmware memory; a frame outside RAM needs MDL_IO_SPACE. */
static inline void check_frame(PMDL m, ULONG i)
{
	pfn_t pfn = MmGetMdlPfnArray(m)[i];
	if (pfn_frame_is_pinned(pfn))
		return; /* the common case, and RAM */
	if (!pfn_is_ram(pfn)) {
		if (!(m->MdlFlags & MDL_IO_SPACE))
			verifier_violation(VERIFIER_MDL_MAP_NON_RAM_FRAME, (ULONG_PTR)m, (ULONG_PTR)&MmGetMdlPfnArray(m)[i], pfn);
	} else {
		verifier_violation(VERIFIER_MDL_MAP_UNPINNED_FRAME, (ULONG_PTR)m, mdl_page_count(m), pfn);
	}
}

/*
 * Write the PTEs of the MDL's n pages at va (the start of a system-PTE reservation), each frame
 * checked (check_frame) and mapped with its one type (memtype.h).  Runs of frames that are
 * plainly pinned and typed alike are found in one pass and written in one; any other frame is
 * checked and typed on its own.  False when a frame could not be typed (its alias could not be
 * split): the PTEs written are cleared.
 */
static bool write_ptes(PMDL m, uint64_t va, ULONG n, enum memtype requested, bool write, bool exec, bool *override)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	struct pt_attrs a = { .write = write, .exec = exec, .global = true };
	/* No syspte_check_range: va is what syspte_reserve(n) has just returned. */
	if (n == 1 && pfn_pinned_frame(pfns[0], &a.type)) {
		/* The one-page MDL, its frame plainly pinned and typed: the run below, without
		 * the loop (the same checks, the same PTE). */
		*override |= a.type != requested;
		pt_set_pte(va, pfns[0], a);
		return true;
	}
	for (ULONG i = 0; i < n;) {
		uint64_t run = memtype_mapping_run(&pfns[i], n - i, requested, &a.type, override);
		if (!run) {
			check_frame(m, i);
			if (!memtype_for_mapping(pfns[i], requested, &a.type, override)) {
				if (i)
					pt_clear_ptes(va, i);
				return false;
			}
			run = 1;
		}
		pt_set_ptes_run(va + (uint64_t)i * PAGE_SIZE, &pfns[i], run, a);
		i += run;
	}
	return true;
}

void mdl_check_frames(PMDL m)
{
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++)
		check_frame(m, i);
}

/* A writable mapping's second look found a frame executable: its PTEs go (never seen: the
 * address was not returned), and the answer is the first check's, NULL. */
static __attribute__((noinline, cold)) PVOID map_undone(uint64_t va, ULONG n)
{
	if (n == 1)
		syspte_release_one(va);
	else
		syspte_release(va, n);
	COUNT(map_failures, 1);
	return NULL;
}

static PVOID map_failed(PMDL m, ULONG BugCheckOnFailure, ULONG pages)
{
	COUNT(map_failures, 1);
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
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_MAP_SPECIFY_CACHE_IRQL, (ULONG_PTR)Mdl, AccessMode);
	if (BugCheckOnFailure && verifier_on(VF_DEPRECATED))
		verifier_violation(VERIFIER_MDL_BUGCHECK_ON_FAILURE, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, 0);
	/* At most one system mapping; a nonpaged-pool MDL has one already (its pool address). */
	USHORT bad = Mdl->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL);
	if (bad)
		verifier_violation(VERIFIER_MDL_ALREADY_MAPPED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, bad);
	if (!(Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_PARTIAL)))
		verifier_violation(VERIFIER_MDL_MAP_UNLOCKED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PAGES_LOCKED);

	ULONG n = mdl_page_count(Mdl);
	enum memtype requested = memtype_from_caching_type(CacheType);
	if (requested == MT_NONE) {
		/* A CacheType that names no type is a bad argument, not a PTE shortage. */
		COUNT(map_failures, 1);
		return NULL;
	}
	/* Every system mapping is no-execute (mm/RULES.md decision 3); NoWrite makes it read-only,
	 * and so does a source its caller could not write (decision 9). */
	bool write = !(Priority & MdlMappingNoWrite) && !(Mdl->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	/* W^X across mappings (decision 3): no ring-0 mapping may write a frame a system mapping
	 * executes.  Refused like a bad argument: NULL, no bug check. */
	if (write && exec_pages_now() && mdl_frames_executable_in_ring_0(Mdl)) {
		COUNT(map_failures, 1);
		return NULL;
	}
	if (__builtin_expect(mdl_test_exec_window != NULL, 0) && write)
		mdl_test_exec_window(MDL_EXEC_WINDOW_MAP, Mdl, 0);
	if (verifier_inject_failure(VF_SITE_MAP))
		return map_failed(Mdl, BugCheckOnFailure, n);
	uint64_t va = n == 1 && !(Priority & MdlMappingWithGuardPtes)
			      ? syspte_reserve_one(Priority & ~PRIORITY_FLAGS)
			      : syspte_reserve(n, Priority & ~PRIORITY_FLAGS, Priority & MdlMappingWithGuardPtes);
	if (!va)
		return map_failed(Mdl, BugCheckOnFailure, n);
	bool override = false;
	if (!write_ptes(Mdl, va, n, requested, write, false, &override)) {
		syspte_release(va, n);
		return map_failed(Mdl, BugCheckOnFailure, n);
	}
	/* The second look (decision 3): a MmProtectMdlSystemAddress on another CPU may have
	 * raised a frame's count after the check above and checked before these PTEs were
	 * written.  The PTEs, a fence, the counts: one of the two sees the other.  The address
	 * was never returned, so nothing wrote through it. */
	if (write && __builtin_expect(exec_pages_after_write() != 0, 0) && mdl_frames_executable_in_ring_0(Mdl))
		return map_undone(va, n);
	if (override)
		COUNT(cache_overrides, 1);
	COUNT(maps, 1);
	Mdl->MappedSystemVa = (PVOID)(va + Mdl->ByteOffset);
	Mdl->MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA | ((Mdl->MdlFlags & MDL_PARTIAL) ? MDL_PARTIAL_HAS_BEEN_MAPPED : 0);
	return Mdl->MappedSystemVa;
}

PVOID MmMapLockedPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode)
{
	PMDL m = MemoryDescriptorList;
	if (verifier_on(VF_DEPRECATED))
		verifier_violation(VERIFIER_MDL_DEPRECATED_MAP_LOCKED_PAGES, (ULONG_PTR)m, (USHORT)m->MdlFlags, 0);
	if (AccessMode == UserMode)
		verifier_check_irql(APC_LEVEL, VERIFIER_MDL_MAP_LOCKED_PAGES_USER_IRQL, (ULONG_PTR)m, AccessMode);
	else
		verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_MAP_LOCKED_PAGES_IRQL, (ULONG_PTR)m, AccessMode);
	/* MmMapLockedPages (mm/RULES.md rule 20): MmCached, no requested address, bug check on failure, High. */
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
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_UNMAP_IRQL, base, (ULONG_PTR)Mdl);
	ULONG n = mdl_page_count(Mdl);
	if (!(Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)) {
		if (verifier_on(VF_CHECKS))
			verifier_violation(VERIFIER_MDL_UNMAP_UNMAPPED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags,
					   MDL_MAPPED_TO_SYSTEM_VA);
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x06, (ULONG_PTR)Mdl, base, n);
	}
	/* A partial MDL sharing its parent's mapping does not own it. */
	if (Mdl->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA)
		verifier_violation(VERIFIER_MDL_UNMAP_PARENT_MAPPING, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PARTIAL);
	/* 0xDA P1 3: the mapping's tracking record, the address expected, the one asked for. */
	if (BaseAddress != Mdl->MappedSystemVa)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x03, syspte_tracking_record((uint64_t)Mdl->MappedSystemVa),
			     (ULONG_PTR)Mdl->MappedSystemVa, base);
	/* A reserved mapping's PTEs are its reservation's (MmUnmapReservedMapping's to clear). */
	if (reserved_mappings_live)
		reserved_refuse_unmap(base);
	if (exec_pages_now())
		mdl_exec_mapping_ending(base, MmGetMdlPfnArray(Mdl), n);
	if (n == 1)
		syspte_release_one(ALIGN_DOWN(base, PAGE_SIZE));
	else
		syspte_release(ALIGN_DOWN(base, PAGE_SIZE), n);
	Mdl->MdlFlags &= ~(MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED);
	Mdl->MappedSystemVa = NULL;
	COUNT(unmaps, 1);
}

bool mdl_frames_executable_in_ring_0(PMDL m)
{
	if (!exec_pages_now())
		return false;
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++)
		if (pfn_exec_maps(pfn_entry(pfns[i])))
			return true;
	return false;
}

bool mdl_frames_executable_after_write(PMDL m)
{
	return exec_pages_after_write() && mdl_frames_executable_in_ring_0(m);
}

/* ---- ring-0 aliases of executable frames (mm/RULES.md decision 3) ----------------------
 *
 * While a frame is executable through a system mapping, its direct-map alias is read-only:
 * made so before the mapping becomes executable, made writable again (same memory type)
 * once no system mapping executes the frame (its count back at 0).  Every path that ends an
 * executable mapping (unmap, re-protection, MmAdvanceMdl's move, a reserved mapping's
 * unmap) calls mdl_exec_mapping_ending first; all of it runs only while exec_system_pages is
 * not 0, and under exec_lock.
 */

bool mdl_ring_0_executes_any_frame(void)
{
	return exec_pages_now() != 0;
}

bool mdl_frame_executable_in_ring_0(PFN_NUMBER pfn)
{
	return exec_pages_now() && pfn_exec_maps(pfn_entry(pfn));
}

/* The frame's direct-map alias given write access `write`, its memory type and every other
 * right kept (the 2 MiB / 1 GiB page is split or merged back by pt_protect, which flushes
 * the TLB).  True when there is no such alias, or it has the access already. */
static bool set_alias_write(pfn_t pfn, bool write)
{
	if (!pfn_is_ram(pfn))
		return true; /* I/O space: no direct-map alias */
	uint64_t va = (uint64_t)pfn_to_virt(pfn);
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	if (!q.present || q.eff.write == write)
		return true;
	struct pt_attrs a = { .write = write, .exec = q.eff.exec, .user = q.eff.user, .global = true,
			      .type = pt_entry_memtype(q.entry[q.level], q.level) };
	return pt_protect(&kernel_root, va, PAGE_SIZE, a);
}

/* Whether the direct map is the frame's one ring-0 alias mm may make read-only: not the
 * kernel image, a page table or firmware memory, whose aliases keep their rights, nor a pool,
 * stack or device-memory allocation, written through their own mapping.  I/O space has none. */
static bool frame_alias_is_ours(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && e->state == PFN_ACTIVE && e->owner_kind != PFN_OWNER_POOL &&
	       e->owner_kind != PFN_OWNER_STACK && e->owner_kind != PFN_OWNER_DEVMEM;
}

/* One executable mapping of the frame less (under exec_lock, its PTE no longer executable):
 * the last one gives the alias its write access back.  A read-only 4 KiB alias is never
 * merged with its writable neighbours, so this needs no table frame. */
static void exec_frame_ended(pfn_t pfn)
{
	if (pfn_exec_lower(pfn) || !frame_alias_is_ours(pfn))
		return;
	if (mdl_test_exec_window)
		mdl_test_exec_window(MDL_EXEC_WINDOW_END, NULL, pfn);
	if (!set_alias_write(pfn, true))
		PANIC("exec_frame_ended: cannot make the alias of frame 0x%lx writable", pfn);
}

/* Under exec_lock: every executable run among the n PTEs at page-aligned va made no-execute
 * and read-only (flushed: no CPU fetches through it after), then its frames' counts lowered. */
static void end_exec_locked(uint64_t va, const PFN_NUMBER *pfns, ULONG n)
{
	for (ULONG i = 0; i < n;) {
		if (!pte_executable(va + (uint64_t)i * PAGE_SIZE)) {
			i++;
			continue;
		}
		ULONG j = i + 1;
		while (j < n && pte_executable(va + (uint64_t)j * PAGE_SIZE))
			j++;
		pt_reprotect_ptes(va + (uint64_t)i * PAGE_SIZE, j - i, true, false, false);
		__atomic_fetch_sub(&exec_system_pages, j - i, __ATOMIC_SEQ_CST);
		for (ULONG k = i; k < j; k++)
			exec_frame_ended(pfns[k]);
		i = j;
	}
}

void mdl_exec_mapping_ending(uint64_t va, const PFN_NUMBER *pfns, ULONG n)
{
	/* 0: no system mapping executes anything, this one included (it is the caller's own,
	 * and only its owner's calls make it executable). */
	if (!exec_pages_now())
		return;
	KIRQL irql = klock_acquire(&exec_lock);
	end_exec_locked(ALIGN_DOWN(va, PAGE_SIZE), pfns, n);
	klock_release(&exec_lock, irql);
}

struct writable_alias_ctx {
	const PFN_NUMBER *pfns;
	ULONG n;
	uint64_t skip_lo, skip_hi; /* the mapping being made executable */
	bool found;
};

static void find_writable_alias(const struct pt_leaf *l, void *arg)
{
	struct writable_alias_ctx *c = arg;
	if (c->found || !l->eff.write || (l->va >= c->skip_lo && l->va < c->skip_hi))
		return;
	for (ULONG i = 0; i < c->n; i++)
		if (c->pfns[i] << PAGE_SHIFT >= l->pa && (c->pfns[i] << PAGE_SHIFT) - l->pa < l->size)
			c->found = true;
}

/* Whether some frame of the MDL has a ring-0 writable alias that cannot be made read-only:
 * the kernel image's, a page table's or firmware memory; a pool, stack or device-memory
 * allocation's own mapping; or another system mapping (any MDL's, read from the PTEs). */
static bool frames_have_fixed_writable_alias(PMDL m, uint64_t va, ULONG n)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	for (ULONG i = 0; i < n; i++)
		if (pfn_is_ram(pfns[i]) && !frame_alias_is_ours(pfns[i]))
			return true;
	struct writable_alias_ctx c = { .pfns = pfns, .n = n, .skip_lo = va,
					.skip_hi = va + (uint64_t)n * PAGE_SIZE };
	pt_for_each_leaf(&kernel_root, KVA_SYSPTE_BASE, KVA_SYSPTE_END, find_writable_alias, &c);
	return c.found;
}

/* Make the direct-map alias of every frame read-only; n when all are, else the index of the
 * frame whose alias could not be split (no table frame): the caller gives back the ones
 * before it (give_back_counts). */
static ULONG make_aliases_read_only(const PFN_NUMBER *pfns, ULONG n)
{
	for (ULONG i = 0; i < n; i++)
		if (frame_alias_is_ours(pfns[i]) && !set_alias_write(pfns[i], false))
			return i;
	return n;
}

static void find_user_writable(const struct pt_leaf *l, void *arg)
{
	struct writable_alias_ctx *c = arg;
	if (c->found || !l->eff.write || !l->eff.user)
		return;
	for (ULONG i = 0; i < c->n; i++)
		if (c->pfns[i] << PAGE_SHIFT >= l->pa && (c->pfns[i] << PAGE_SHIFT) - l->pa < l->size)
			c->found = true;
}

/* One process's user half, under its address-space lock (mm_for_each_space). */
static bool user_half_has_writable(struct mm_process *p, void *arg)
{
	struct writable_alias_ctx *c = arg;
	pt_for_each_leaf(&p->root, 0, USER_VA_END, find_user_writable, c);
	return !c->found;
}

/* W^X across privilege levels (mm/RULES.md decision 3): no frame ring 3 can write becomes
 * executable in ring 0 — through an MDL user mapping, or any other user page (a locked
 * user buffer's own), read from the user half of every live process's tables. */
static bool frames_user_writable(PMDL m)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	ULONG n = mdl_page_count(m);
	for (ULONG i = 0; i < n; i++)
		if (mdl_user_frame_writable(pfns[i]))
			return true;
	struct writable_alias_ctx c = { .pfns = pfns, .n = n };
	mm_for_each_space(user_half_has_writable, &c);
	return c.found;
}

/* The counts raised for the pages among the first k of the mapping at va that were not
 * executable, lowered again (the begin step failed), and `added` off the total; each frame
 * whose count is back at 0 and whose alias was made read-only (the first `aliased` frames)
 * gets its write access back. */
static void give_back_counts(const PFN_NUMBER *pfns, uint64_t va, ULONG k, ULONG added, ULONG aliased)
{
	for (ULONG i = 0; i < k; i++) {
		if (pte_executable(va + (uint64_t)i * PAGE_SIZE))
			continue; /* executable already: never raised */
		if (!pfn_exec_lower(pfns[i]) && i < aliased && frame_alias_is_ours(pfns[i]) &&
		    !set_alias_write(pfns[i], true))
			PANIC("give_back_counts: cannot make the alias of frame 0x%lx writable", pfns[i]);
	}
	__atomic_fetch_sub(&exec_system_pages, added, __ATOMIC_SEQ_CST);
}

/*
 * The begin step of an executable mapping, under exec_lock (mm/RULES.md decision 3).  The
 * counts first: each frame of a page not yet executable gets one more executable mapping, by
 * a locked add (pfn_exec_raise), and the total after it, by another.  Only then the checks,
 * which read the real PTEs: a writable mapping made on another CPU either has its PTEs
 * written before the counts were raised, and the checks see them, or reads the counts after
 * its PTE write and a fence (mdl_frames_executable_after_write), or under the process's
 * lock the user-half walk below takes too, and sees them.  Then the aliases, then the PTEs.
 */
static NTSTATUS begin_exec_locked(PMDL m, uint64_t va, ULONG n)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	ULONG raised = 0;
	for (ULONG i = 0; i < n; i++) {
		if (pte_executable(va + (uint64_t)i * PAGE_SIZE))
			continue; /* counted when it became executable */
		if (!pfn_exec_raise(pfns[i])) {
			/* Beyond the PFN database (I/O space) there is no count to hold the frame to
			 * the rule; a frame at PFN_EXEC_MAPS_MAX takes no more. */
			give_back_counts(pfns, va, i, 0, 0); /* the total has none of them yet */
			return pfn_entry(pfns[i]) ? STATUS_INSUFFICIENT_RESOURCES : STATUS_INVALID_PAGE_PROTECTION;
		}
		raised++;
	}
	__atomic_fetch_add(&exec_system_pages, raised, __ATOMIC_SEQ_CST);
	/* W^X across mappings and privilege levels (decision 3): no frame becomes executable in
	 * ring 0 while ring 3 can write it, or while a ring-0 alias that cannot be made
	 * read-only can; the direct-map aliases become read-only first. */
	if (frames_user_writable(m) || frames_have_fixed_writable_alias(m, va, n)) {
		give_back_counts(pfns, va, n, raised, 0);
		return STATUS_INVALID_PAGE_PROTECTION;
	}
	ULONG aliased = make_aliases_read_only(pfns, n);
	if (aliased < n) {
		give_back_counts(pfns, va, n, raised, aliased);
		return STATUS_INSUFFICIENT_RESOURCES;
	}
	if (mdl_test_exec_window)
		mdl_test_exec_window(MDL_EXEC_WINDOW_BEGIN, m, 0);
	pt_reprotect_ptes(va, n, true, false, true);
	return STATUS_SUCCESS;
}

NTSTATUS MmProtectMdlSystemAddress(PMDL MemoryDescriptorList, ULONG NewProtect)
{
	PMDL m = MemoryDescriptorList;
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	if (!(m->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA) || (m->MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL))
		return STATUS_NOT_MAPPED_VIEW;
	bool present = true, write = false, exec = false;
	switch (NewProtect) {
	case PAGE_NOACCESS: present = false; break;
	case PAGE_READONLY: break;
	case PAGE_READWRITE:
		/* A mapping of memory its caller could not write stays read-only (decision 9). */
		if (m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY)
			return STATUS_INVALID_PAGE_PROTECTION;
		write = true;
		break;
	case PAGE_EXECUTE:
	case PAGE_EXECUTE_READ:
		exec = true;
		break;
	default:
		/* PAGE_EXECUTE_READWRITE is refused (mm/RULES.md decision 3: W^X), like every modifier. */
		return STATUS_INVALID_PAGE_PROTECTION;
	}
	uint64_t va = ALIGN_DOWN((uint64_t)m->MappedSystemVa, PAGE_SIZE);
	ULONG n = mdl_page_count(m);
	/* The PTEs change in place: each keeps its frame and its memory type (an I/O-space
	 * frame's type lives only there), and PAGE_NOACCESS clears only the present bit. */
	if (!exec && !exec_pages_now()) {
		pt_reprotect_ptes(va, n, present, write, false); /* nothing executes: nothing ends */
		COUNT(protects, 1);
		return STATUS_SUCCESS;
	}
	KIRQL irql = klock_acquire(&exec_lock);
	NTSTATUS st = STATUS_SUCCESS;
	if (exec) {
		st = begin_exec_locked(m, va, n);
	} else {
		end_exec_locked(va, MmGetMdlPfnArray(m), n);
		pt_reprotect_ptes(va, n, present, write, false);
	}
	klock_release(&exec_lock, irql);
	if (NT_SUCCESS(st))
		COUNT(protects, 1);
	return st;
}

/* ---- MmMapMdl ----------------------------------------------------------------------- */

/* Windows 10 1709 and later (mm/RULES.md reserved-mapping rule R2): map the MDL unless it is
 * mapped already, call the driver's routine with the system address, release what was made.
 * Protection: PAGE_READWRITE or PAGE_READONLY, optionally with PAGE_NOCACHE or
 * PAGE_WRITECOMBINE; executable protections are refused (decision 3). */
NTSTATUS MmMapMdl(PMDL MemoryDescriptorList, ULONG Protection, PMM_MDL_ROUTINE DriverRoutine, PVOID DriverContext)
{
	PMDL m = MemoryDescriptorList;
	ULONG cache = Protection & (PAGE_NOCACHE | PAGE_WRITECOMBINE), rights = Protection & ~cache;
	if (!DriverRoutine)
		return STATUS_INVALID_PARAMETER_3;
	if (cache == (PAGE_NOCACHE | PAGE_WRITECOMBINE) || (rights != PAGE_READWRITE && rights != PAGE_READONLY))
		return STATUS_INVALID_PAGE_PROTECTION;
	if (m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL)) {
		DriverRoutine(DriverContext, m->MappedSystemVa);
		return STATUS_SUCCESS;
	}
	MEMORY_CACHING_TYPE ct = cache == PAGE_NOCACHE ? MmNonCached : cache == PAGE_WRITECOMBINE ? MmWriteCombined : MmCached;
	ULONG priority = NormalPagePriority | MdlMappingNoExecute | (rights == PAGE_READONLY ? MdlMappingNoWrite : 0);
	PVOID va = MmMapLockedPagesSpecifyCache(m, KernelMode, ct, NULL, FALSE, priority);
	if (!va)
		return STATUS_INSUFFICIENT_RESOURCES;
	DriverRoutine(DriverContext, va);
	MmUnmapLockedPages(va, m);
	return STATUS_SUCCESS;
}

/* ---- MmAdvanceMdl ------------------------------------------------------------------- */

/* Map the frames pfns[0..n) at a fresh system-PTE run, each page with the rights and the
 * memory type of the page of the existing mapping at old_va + i pages (a copy of its PTEs:
 * an I/O-space frame's type lives only there), followed by a guard PTE when the old run had
 * one (MdlMappingWithGuardPtes stays true of the moved mapping).  0 when no run is free. */
static uint64_t copy_mapping(uint64_t old_va, const PFN_NUMBER *pfns, ULONG n, bool guard)
{
	uint64_t va = syspte_reserve(n, HighPagePriority, guard);
	if (!va)
		return 0;
	for (ULONG i = 0; i < n; i++) {
		struct pt_query q;
		pt_query(&kernel_root, old_va + (uint64_t)i * PAGE_SIZE, &q);
		struct pt_attrs a = { .write = q.eff.write, .exec = false, .user = false, .global = true,
				      .type = pt_entry_memtype(q.entry[q.level], q.level) };
		pt_set_ptes_run(va + (uint64_t)i * PAGE_SIZE, &pfns[i], 1, a);
	}
	return va;
}

/*
 * mm/RULES.md helper rule H1.  The start moves up by NumberOfBytes, the end stays.  Pages
 * passed are unlocked at once (and no longer charged to the MDL's process) and leave the PFN array;
 * a system mapping of the MDL's own moves to the remaining pages (a new run with the same
 * PTEs; STATUS_INSUFFICIENT_RESOURCES, nothing changed, when no run is free).  A frame the
 * MDL allocated itself (MmAllocatePagesForMdl) is held by nothing else: its unlock frees it.
 * A user mapping of the MDL loses the passed pages the same way: the user address moves up
 * with the start (the page: the system and the user address are "adjusted").
 */
NTSTATUS MmAdvanceMdl(PMDL Mdl, ULONG NumberOfBytes)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	if (NumberOfBytes >= Mdl->ByteCount)
		return STATUS_INVALID_PARAMETER_2;
	ULONG n = mdl_page_count(Mdl), offset = Mdl->ByteOffset + NumberOfBytes, passed = offset >> PAGE_SHIFT;
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	bool own_ptes = (Mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA) && !(Mdl->MdlFlags & MDL_PARENT_MAPPED_SYSTEM_VA);
	bool locks = (Mdl->MdlFlags & MDL_PAGES_LOCKED) && !(Mdl->MdlFlags & (MDL_PARTIAL | MDL_SOURCE_IS_NONPAGED_POOL));
	uint64_t sys = (uint64_t)Mdl->MappedSystemVa + NumberOfBytes;
	if (passed) {
		if (own_ptes) {
			uint64_t old = ALIGN_DOWN((uint64_t)Mdl->MappedSystemVa, PAGE_SIZE);
			uint64_t va = copy_mapping(old + (uint64_t)passed * PAGE_SIZE, pfns + passed, n - passed,
						   syspte_guarded(old));
			if (!va)
				return STATUS_INSUFFICIENT_RESOURCES;
			if (reserved_mappings_live)
				reserved_refuse_unmap(old);
			/* The copy is never executable (decision 3): the old mapping's aliases return. */
			mdl_exec_mapping_ending(old, pfns, n);
			syspte_release(old, n);
			sys = va + (offset & (PAGE_SIZE - 1));
		}
		if (mdl_user_mapping_count(Mdl))
			mdl_user_advance_mappings(Mdl, passed);
		if (locks) {
			/* The mapping that reached them went above: nothing maps a passed frame now. */
			for (ULONG i = 0; i < passed; i++) {
				const struct pfn_entry *e = pfn_entry(pfns[i]);
				if (e && e->state == PFN_ACTIVE && e->owner_kind == PFN_OWNER_MDL &&
				    e->owner == (uint64_t)Mdl) {
					free_frames(&pfns[i], 1);
					COUNT(allocated_pages, -1);
				} else {
					pfn_unlock_frame(pfns[i]);
				}
			}
			mdl_user_note_advance(Mdl, passed);
		}
		memmove(pfns, pfns + passed, (n - passed) * sizeof(PFN_NUMBER));
	}
	if (Mdl->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL))
		Mdl->MappedSystemVa = (PVOID)sys;
	Mdl->StartVa = (PCHAR)Mdl->StartVa + (uint64_t)passed * PAGE_SIZE;
	Mdl->ByteOffset = offset & (PAGE_SIZE - 1);
	Mdl->ByteCount -= NumberOfBytes;
	return STATUS_SUCCESS;
}

/* ---- MmProbeAndLockSelectedPages ---------------------------------------------------- */

/*
 * MmProbeAndLockPages with page i of the MDL at SegmentArray[i].Buffer instead of StartVa +
 * i pages (mm/RULES.md user rule U13): each segment a page-aligned address (else
 * STATUS_DATATYPE_MISALIGNMENT is raised), every page checked and made resident before any
 * is locked, the first refused raising STATUS_ACCESS_VIOLATION at its address with nothing
 * locked.  User pages charge their process as a probe does.  IRQL <= APC_LEVEL.
 */
VOID MmProbeAndLockSelectedPages(PMDL MemoryDescriptorList, PFILE_SEGMENT_ELEMENT SegmentArray,
				 KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation)
{
	PMDL Mdl = MemoryDescriptorList;
	verifier_check_irql(APC_LEVEL, VERIFIER_MDL_PROBE_IRQL, (ULONG_PTR)Mdl, AccessMode);
	USHORT bad = Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL);
	if (bad)
		verifier_violation(VERIFIER_MDL_PROBE_BAD_FLAGS, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, bad);
	bool write = Operation != IoReadAccess;
	ULONG access = write ? EXCEPTION_WRITE_FAULT : EXCEPTION_READ_FAULT;
	ULONG n = mdl_page_count(Mdl);
	struct mm_process *owner = NULL;
	/* Whether a segment is a page of paged pool, from the page records (no fault); a user
	 * probe's pages are below the probe limit, never pool. */
	bool paged_pool = false;
	for (ULONG i = 0; i < n; i++) {
		uint64_t page = (uint64_t)SegmentArray[i].Buffer;
		if (page & (PAGE_SIZE - 1))
			ExRaiseStatus(STATUS_DATATYPE_MISALIGNMENT);
		if (AccessMode == UserMode && page >= MM_USER_PROBE_ADDRESS)
			seh_raise_access_violation(page, access);
		paged_pool |= AccessMode == KernelMode && pool_range_pageable(page, PAGE_SIZE);
	}
	if (verifier_inject_failure(VF_SITE_PROBE_AND_LOCK))
		ExRaiseStatus(STATUS_INSUFFICIENT_RESOURCES);
	const struct pt_root *root = mdl_current_root();
	PPFN_NUMBER pfns = MmGetMdlPfnArray(Mdl);
	bool io, read_only;
	/* Every page made resident, then the walk and the locks under the process's
	 * address-space lock, as MmProbeAndLockPages.  A page made resident may be trimmed
	 * again by another CPU before the walk (the lock is not held from one to the other):
	 * the walk then unlocks what it took and the pass repeats, PROBE_PASSES at most; the
	 * last pass's refusal is the probe's. */
	for (unsigned pass = 1;; pass++) {
		for (ULONG i = 0; i < n; i++) {
			uint64_t page = (uint64_t)SegmentArray[i].Buffer;
			struct mm_process *mm = mdl_user_probe_page(page, AccessMode, write);
			if (mm)
				owner = mm;
			else
				pool_make_resident(page, PAGE_SIZE); /* a trimmed paged-pool page, as MmProbeAndLockPages */
		}
		if (__builtin_expect(mdl_test_probe_window != NULL, 0))
			mdl_test_probe_window(Mdl);
		io = read_only = false;
		KIRQL sirql = owner ? mm_space_lock(owner) : 0;
		/* With a paged-pool page among them, the pool trimmer held off too, after the
		 * address-space lock ("Locks" ranks the process before the pool): pool_trim_paged
		 * reads lock counts under that lock, so it trims a page before its walk (which
		 * stops at the transition PTE, and the pass repeats) or finds its frame locked,
		 * never between the two (mm/RULES.md "Paging", "Paged pool": a probe and the
		 * trimmer). */
		KIRQL pirql = paged_pool ? pool_hold_trimmer() : 0;
		ULONG i = 0;
		for (; i < n; i++) {
			uint64_t page = (uint64_t)SegmentArray[i].Buffer;
			struct pt_query q;
			pt_query(root, page, &q);
			if (!q.present || (write && !q.eff.write) || (AccessMode == UserMode && !q.eff.user))
				break;
			pfns[i] = q.pa >> PAGE_SHIFT;
			io |= !pfn_is_ram(pfns[i]);
			read_only |= !q.eff.write;
			if (__builtin_expect(mdl_test_select_window != NULL, 0))
				mdl_test_select_window(Mdl, i);
			pfn_lock_frame(pfns[i]);
		}
		if (i < n)
			for (ULONG k = 0; k < i; k++)
				pfn_unlock_frame(pfns[k]);
		if (paged_pool)
			pool_release_trimmer(pirql);
		if (owner)
			mm_space_unlock(owner, sirql);
		if (i == n)
			break;
		if (pass == PROBE_PASSES)
			seh_raise_access_violation((uint64_t)SegmentArray[i].Buffer, access);
	}
	Mdl->MdlFlags |= MDL_PAGES_LOCKED | (write ? MDL_WRITE_OPERATION : 0) | (io ? MDL_IO_SPACE : 0);
	/* As MmProbeAndLockPages: probe-locked, and read-only mappings only of what its caller
	 * cannot write (mm/RULES.md decision 9). */
	Mdl->MdlabFlags = (Mdl->MdlabFlags & ~MDLAB_MDL_SOURCE_READ_ONLY) | MDLAB_MDL_PROBE_LOCKED |
			  (read_only ? MDLAB_MDL_SOURCE_READ_ONLY : 0);
	mdl_user_note_lock(Mdl, owner);
	COUNT(probes, 1);
}
