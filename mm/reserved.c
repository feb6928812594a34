/*
 * Reserved mappings (include/wdm.h; mm/RULES.md reserved-mapping rule R1): system PTEs a
 * driver reserves ahead with MmAllocateMappingAddress(Ex), maps an MDL into with
 * MmMapLockedPagesWithReservedMapping — which then cannot fail for want of PTEs —, unmaps
 * with MmUnmapReservedMapping and gives back with MmFreeMappingAddress, each naming the pool
 * tag the reservation was made with.
 *
 * Misuse is bug check SYSTEM_PTE_MISUSE (0xDA) with the parameters of Microsoft's page:
 *   0x100 reserving 0 bytes            (pages asked, tag, caller's caller)
 *   0x101 freeing with another tag     (address, caller's tag, owner's tag)
 *   0x102 freeing what is no reservation (address, tag, 0)
 *   0x103 freeing a reservation still mapped (address, tag, pages mapped)
 *   0x104 mapping with another tag     (address, caller's tag, owner's tag)
 *   0x105 mapping at no reservation    (address, tag, 0)
 *   0x107 mapping a reservation already mapped (address, address of the first mapped page,
 *         last page's address)
 *   0x108 unmapping with another tag   (address, caller's tag, owner's tag); also
 *         MmUnmapLockedPages of a reserved mapping (tag 0: that routine has none)
 *   0x109 unmapping what is not mapped (address, tag, 0)
 *   0x10A unmapping more pages than the reservation has (address, its pages, the MDL's)
 *   0x10B unmapping pages that are not mapped (address, tag, the MDL's pages)
 *   0x10C unmapping fewer pages than are mapped (address, tag, the MDL's pages)
 * and the map routine checks the MDL as MmMapLockedPagesSpecifyCache does (0xC4/0xB2, 0xB3,
 * 0x85, 0x89).
 *
 * A reservation made with MM_MAPPING_ADDRESS_DIVISIBLE (mm/RULES.md rule R3) takes several
 * MDLs at once, each mapped at a page-aligned address inside it and unmapped at that address;
 * it records, page by page, which pages are mapped and where each mapping starts.
 */
#include "mm/reserved.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/memtype.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/verifier.h"

#define RESERVED_TAG 0x76736552u /* 'Resv' */

/* A page of a divisible reservation (rule R3): whether it is mapped; at the first page of a
 * mapping, its pages and its MDL. */
struct slot {
	PMDL mdl;
	uint32_t run;
	uint32_t used;
};

/* One reservation: `pages` PTEs at va, `mapped` of them mapping an MDL's frames now. */
struct reservation {
	uint64_t va;
	uint32_t pages;
	uint32_t mapped;
	ULONG tag;
	PMDL mdl;                 /* the MDL mapped now (mapped != 0; not divisible) */
	struct slot *slot;        /* one per page when divisible, else NULL */
	struct reservation *next;
};
static struct reservation *reservations;
uint32_t reserved_mappings_live;

/* The reservations' lock (mm/RULES.md, "Locks"): the list, every record, the live count.
 * The pool and system-PTE calls of a reservation's making and freeing run outside it; a
 * mapping holds it across its memory-type choice and PTE writes, an unmapping across the
 * clear and its shootdown. */
static struct klock lock = KLOCK_INIT(KLOCK_RESERVED);

static struct reservation *find(uint64_t va)
{
	for (struct reservation *r = reservations; r; r = r->next)
		if (r->va == va)
			return r;
	return NULL;
}

static struct reservation *containing(uint64_t va)
{
	for (struct reservation *r = reservations; r; r = r->next)
		if (va >= r->va && va < r->va + (uint64_t)r->pages * PAGE_SIZE)
			return r;
	return NULL;
}

/* The reservation where a mapping may start at va: its first page, or (divisible, rule R3)
 * any page of it. */
static struct reservation *mapping_start(uint64_t va)
{
	struct reservation *r = containing(va);
	if (!r || (va & (PAGE_SIZE - 1)) || (va != r->va && !r->slot))
		return NULL;
	return r;
}

void reserved_refuse_unmap(uint64_t va)
{
	KIRQL irql = klock_acquire(&lock);
	struct reservation *r = containing(va);
	if (r)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x108, r->va, 0, r->tag);
	klock_release(&lock, irql);
}

/* Reserve the pages NumberOfBytes spans; `caller` is the driver's return address, for 0x100. */
static PVOID reserve(SIZE_T NumberOfBytes, ULONG PoolTag, ULONG Flags, ULONG_PTR caller)
{
	verifier_check_irql(APC_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	/* Not ALIGN_UP: a size within a page of 2^64 would wrap it to 0 pages (0x100). */
	uint64_t pages = NumberOfBytes / PAGE_SIZE + ((NumberOfBytes & (PAGE_SIZE - 1)) != 0);
	if (!pages)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x100, 0, PoolTag, caller);
	if ((Flags & ~MM_MAPPING_ADDRESS_DIVISIBLE) || pages > syspte_total())
		return NULL;
	struct reservation *r = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *r, RESERVED_TAG);
	/* The page record of a divisible reservation is made now: mapping never allocates. */
	struct slot *slot = NULL;
	if (r && (Flags & MM_MAPPING_ADDRESS_DIVISIBLE)) {
		slot = ExAllocatePool2(POOL_FLAG_NON_PAGED, pages * sizeof *slot, RESERVED_TAG);
		if (!slot) {
			ExFreePoolWithTag(r, RESERVED_TAG);
			return NULL;
		}
	}
	uint64_t va = r ? syspte_reserve((uint32_t)pages, HighPagePriority, false) : 0;
	if (!va) {
		if (slot)
			ExFreePoolWithTag(slot, RESERVED_TAG);
		if (r)
			ExFreePoolWithTag(r, RESERVED_TAG);
		return NULL;
	}
	KIRQL irql = klock_acquire(&lock);
	*r = (struct reservation){ .va = va, .pages = (uint32_t)pages, .tag = PoolTag, .slot = slot,
				   .next = reservations };
	reservations = r;
	reserved_mappings_live++;
	klock_release(&lock, irql);
	return (PVOID)va;
}

PVOID MmAllocateMappingAddressEx(SIZE_T NumberOfBytes, ULONG PoolTag, ULONG Flags)
{
	return reserve(NumberOfBytes, PoolTag, Flags, (ULONG_PTR)__builtin_return_address(0));
}

PVOID MmAllocateMappingAddress(SIZE_T NumberOfBytes, ULONG PoolTag)
{
	return reserve(NumberOfBytes, PoolTag, 0, (ULONG_PTR)__builtin_return_address(0));
}

VOID MmFreeMappingAddress(PVOID BaseAddress, ULONG PoolTag)
{
	verifier_check_irql(APC_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	uint64_t va = (uint64_t)BaseAddress;
	KIRQL irql = klock_acquire(&lock);
	struct reservation *r = find(va);
	if (!r)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x102, va, PoolTag, 0);
	if (r->tag != PoolTag)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x101, va, PoolTag, r->tag);
	if (r->mapped)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x103, va, PoolTag, r->mapped);
	for (struct reservation **pp = &reservations; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	reserved_mappings_live--;
	klock_release(&lock, irql);
	/* Unlinked: the record and its PTEs are this call's alone now. */
	syspte_release(va, r->pages);
	if (r->slot)
		ExFreePoolWithTag(r->slot, RESERVED_TAG);
	ExFreePoolWithTag(r, RESERVED_TAG);
}

static PVOID map_locked(PVOID MappingAddress, ULONG PoolTag, PMDL m, MEMORY_CACHING_TYPE CacheType)
{
	uint64_t va = (uint64_t)MappingAddress;
	struct reservation *r = mapping_start(va);
	if (!r)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x105, va, PoolTag, 0);
	if (r->tag != PoolTag)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x104, va, PoolTag, r->tag);
	uint32_t first = (uint32_t)((va - r->va) >> PAGE_SHIFT), room = r->pages - first;
	if (!r->slot && r->mapped)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x107, va, va, va + ((uint64_t)r->mapped - 1) * PAGE_SIZE);
	if (r->slot) {
		/* Rule R3: a page of the range asked for that is mapped already is 0x107 (address,
		 * that page, the last page of the mapping holding it). */
		ULONG want = mdl_page_count(m);
		for (uint32_t i = first; i < first + (want < room ? want : room); i++) {
			if (!r->slot[i].used)
				continue;
			uint32_t s = i;
			while (!r->slot[s].run)
				s--;
			KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x107, va, r->va + (uint64_t)i * PAGE_SIZE,
				     r->va + ((uint64_t)s + r->slot[s].run - 1) * PAGE_SIZE);
		}
	}
	/* The MDL's own checks, as for every system mapping (mm/RULES.md rules 2 and 9). */
	USHORT bad = m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL);
	if (bad)
		verifier_violation(VERIFIER_MDL_ALREADY_MAPPED, (ULONG_PTR)m, (USHORT)m->MdlFlags, bad);
	if (!(m->MdlFlags & (MDL_PAGES_LOCKED | MDL_PARTIAL)))
		verifier_violation(VERIFIER_MDL_MAP_UNLOCKED, (ULONG_PTR)m, (USHORT)m->MdlFlags, MDL_PAGES_LOCKED);
	ULONG n = mdl_page_count(m);
	enum memtype requested = memtype_from_caching_type(CacheType);
	/* NULL for a bad argument (the page): an MDL larger than the reservation, a
	 * CacheType that names no type, an MDL of no bytes. */
	if (!n || n > room || requested == MT_NONE)
		return NULL;
	/* W^X across mappings (mm/RULES.md decision 3): a writable mapping of a frame a system
	 * mapping executes is refused, NULL as for a bad argument. */
	bool write = !(m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY);
	if (write && mdl_frames_executable_in_ring_0(m))
		return NULL;
	mdl_check_frames(m);
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	bool override = false;
	if (write && mdl_test_exec_window)
		mdl_test_exec_window(MDL_EXEC_WINDOW_MAP, m, 0);
	for (ULONG i = 0; i < n; i++) {
		/* Read-only when the MDL's caller could not write its source (decision 9). */
		struct pt_attrs a = { .write = !(m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY), .exec = false,
				      .user = false, .global = true };
		/* An untyped frame takes CacheType (its alias split); with no frame for that, the
		 * mapping cannot be made: what is written goes, and the answer is NULL. */
		if (!memtype_for_mapping(pfns[i], requested, &a.type, &override)) {
			if (i)
				pt_clear_ptes(va, i);
			return NULL;
		}
		pt_set_ptes_run(va + (uint64_t)i * PAGE_SIZE, &pfns[i], 1, a);
	}
	/* The second look (decision 3), as for MmMapLockedPagesSpecifyCache: the PTEs written,
	 * a fence, the counts, in case MmProtectMdlSystemAddress on another CPU raised one after
	 * the check above and checked before these PTEs were there. */
	if (write && mdl_frames_executable_after_write(m)) {
		pt_clear_ptes(va, n);
		return NULL;
	}
	r->mapped += n;
	if (r->slot) {
		r->slot[first] = (struct slot){ .mdl = m, .run = n, .used = 1 };
		for (ULONG i = 1; i < n; i++)
			r->slot[first + i].used = 1;
	} else {
		r->mdl = m;
	}
	/* The page: the MDL's MappedSystemVa does not include the byte offset; the result does. */
	m->MappedSystemVa = MappingAddress;
	m->MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
	return (PVOID)(va + m->ByteOffset);
}

PVOID MmMapLockedPagesWithReservedMapping(PVOID MappingAddress, ULONG PoolTag, PMDL MemoryDescriptorList,
					  MEMORY_CACHING_TYPE CacheType)
{
	PMDL m = MemoryDescriptorList;
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_MAP_SPECIFY_CACHE_IRQL, (ULONG_PTR)m, KernelMode);
	KIRQL irql = klock_acquire(&lock);
	PVOID p = map_locked(MappingAddress, PoolTag, m, CacheType);
	klock_release(&lock, irql);
	return p;
}

/* The checks of an unmap (the bug checks below), under the lock; returns the MDL that is
 * mapped at BaseAddress (the one whose frames the PTEs hold). */
static PMDL unmap_check(PVOID BaseAddress, ULONG PoolTag, PMDL m)
{
	uint64_t va = (uint64_t)BaseAddress;
	struct reservation *r = mapping_start(va);
	if (!r)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x109, va, PoolTag, 0);
	if (r->tag != PoolTag)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x108, va, PoolTag, r->tag);
	ULONG n = mdl_page_count(m);
	uint32_t first = (uint32_t)((va - r->va) >> PAGE_SHIFT);
	/* The mapping that starts at va: the whole of a reservation that is not divisible; in a
	 * divisible one (rule R3) the run recorded at va's page (0 when va is inside a mapping). */
	uint32_t mapped = r->slot ? r->slot[first].run : r->mapped;
	if (r->slot ? !r->slot[first].used : !r->mapped)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x109, va, PoolTag, 0);
	if (n > r->pages - first)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x10A, va, r->pages - first, n);
	if (n > mapped && mapped)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x10B, va, PoolTag, n);
	if (n < mapped || !mapped)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x10C, va, PoolTag, n);
	return r->slot ? r->slot[first].mdl : r->mdl;
}

static void unmap_locked(PVOID BaseAddress, ULONG PoolTag, PMDL m)
{
	uint64_t va = (uint64_t)BaseAddress;
	PMDL was = unmap_check(BaseAddress, PoolTag, m);
	struct reservation *r = mapping_start(va);
	ULONG n = mdl_page_count(m);
	uint32_t first = (uint32_t)((va - r->va) >> PAGE_SHIFT);
	/* Cleared and flushed before the return; the PTEs stay reserved for the next map.  An
	 * executable mapping was ended first (MmUnmapReservedMapping). */
	pt_clear_ptes(va, n);
	r->mapped -= n;
	if (r->slot) {
		for (ULONG i = 0; i < n; i++)
			r->slot[first + i] = (struct slot){ 0 };
	} else {
		r->mdl = NULL;
	}
	/* The MDL that was mapped loses its system address, whichever MDL of the same size the
	 * caller named (the pages are what the page table held, not the MDL). */
	if (was->MappedSystemVa == BaseAddress && (was->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)) {
		was->MappedSystemVa = NULL;
		was->MdlFlags &= ~MDL_MAPPED_TO_SYSTEM_VA;
	}
}

VOID MmUnmapReservedMapping(PVOID BaseAddress, ULONG PoolTag, PMDL MemoryDescriptorList)
{
	PMDL m = MemoryDescriptorList;
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_MDL_UNMAP_IRQL, (ULONG_PTR)BaseAddress, (ULONG_PTR)m);
	KIRQL irql = klock_acquire(&lock);
	if (mdl_ring_0_executes_any_frame()) {
		/* An executable mapping's direct-map aliases become writable again (decision 3), the
		 * frames those of the MDL that was mapped.  Its end step takes the
		 * executable-mapping lock, which ranks before this one: the unmap is checked here,
		 * the mapping ended outside, then unmapped (checked again: nothing it relies on is
		 * changed by anyone but the reservation's owner). */
		PMDL was = unmap_check(BaseAddress, PoolTag, m);
		klock_release(&lock, irql);
		mdl_exec_mapping_ending((uint64_t)BaseAddress, MmGetMdlPfnArray(was), mdl_page_count(m));
		irql = klock_acquire(&lock);
	}
	unmap_locked(BaseAddress, PoolTag, m);
	klock_release(&lock, irql);
}
