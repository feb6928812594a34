/*
 * Device memory: the routines a driver calls for memory a device uses (include/wdm.h; their
 * rules are mm/RULES.md's device-memory rules D1-D4).
 *
 *   MmAllocateNonCachedMemory / MmFreeNonCachedMemory        rule D1
 *   MmAllocateContiguousMemory(SpecifyCache), ...NodeMemory,
 *   MmFreeContiguousMemory(SpecifyCache)                      rule D2
 *   MmMapIoSpace(Ex), MmUnmapIoSpace                          rule D3
 *   MmGetPhysicalAddress, MmIsAddressValid, MmGetVirtualForPhysical rule D4
 *
 * Allocations are zeroed frames of RAM owned by this module (PFN_OWNER_DEVMEM), each given
 * its memory type for good (mm/RULES.md decision 1: the direct-map alias follows) and mapped
 * in system PTEs followed by an unmapped guard PTE, read-write and no-execute (decision 3).
 * I/O-space mappings are system PTEs over the caller's physical range.  Every block and
 * mapping is recorded (struct block) so that a release can be checked, and never releases
 * someone else's PTEs: an allocation's address, size or cache type the matching allocator did
 * not give is bug check 0xC4/0x2006 (address, bytes given, bytes allocated), an I/O-space
 * unmap that names no mapping SYSTEM_PTE_MISUSE 0x400 (address, pages, 0).
 */
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/memtype.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/verifier.h"

#define DEVMEM_TAG 0x6D766544u /* 'Devm' */

enum block_kind { BLOCK_NONCACHED, BLOCK_CONTIGUOUS, BLOCK_IO_SPACE };

/* One allocation or I/O-space mapping: n PTEs at va (page-aligned), one memory type. */
struct block {
	enum block_kind kind;
	uint64_t va;
	uint64_t pages;
	uint64_t bytes;        /* what the caller asked for */
	uint64_t base;         /* what the caller got: va, plus the byte offset for I/O space */
	uint64_t first_pa;     /* I/O space: the physical address of the first page */
	enum memtype type;
	struct block *next;
};
static struct block *blocks;

/* The block records' lock (mm/RULES.md, "Locks"): the list and every record on it.  An
 * allocation's frames and PTEs are made before it links its record; an I/O-space mapping
 * holds it from the types of the mappings already in place to its own record, so two
 * mappings of one device frame agree on its type. */
static struct klock lock = KLOCK_INIT(KLOCK_DEVMEM);

/* ---- blocks ------------------------------------------------------------------------- */

static struct block *find_block(uint64_t va, enum block_kind kind)
{
	for (struct block *b = blocks; b; b = b->next)
		if (b->base == va && b->kind == kind)
			return b;
	return NULL;
}

static void unlink_block(struct block *b)
{
	for (struct block **pp = &blocks; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			return;
		}
}

/* The type the earliest I/O-space mapping still in place gave the frame at physical address
 * pa (a frame beyond the PFN database has no record of its own: the mappings are its
 * record); MT_NONE when none maps it.  The list is newest first, so the last match is the
 * mapping whose type every later one took for this frame. */
static enum memtype io_space_type(uint64_t pa)
{
	enum memtype t = MT_NONE;
	for (struct block *b = blocks; b; b = b->next)
		if (b->kind == BLOCK_IO_SPACE && pa >= b->first_pa && pa < b->first_pa + b->pages * PAGE_SIZE)
			t = b->type;
	return t;
}

/* ---- allocations -------------------------------------------------------------------- */

/* Give back frames [0, n) mapped at va: PTEs first (flushed), then each frame's type (its
 * alias back to WB), then the frame; the PTE run and the guard go back with the first step. */
static void release_frames(uint64_t va, uint64_t mapped, uint64_t reserved)
{
	pfn_t pfns[64];
	for (uint64_t done = 0; done < mapped;) {
		uint64_t k = mapped - done < 64 ? mapped - done : 64;
		for (uint64_t i = 0; i < k; i++) {
			struct pt_query q;
			pt_query(&kernel_root, va + (done + i) * PAGE_SIZE, &q);
			pfns[i] = q.pa >> PAGE_SHIFT;
		}
		pt_clear_ptes(va + done * PAGE_SIZE, k);
		for (uint64_t i = 0; i < k; i++) {
			memtype_release_frame(pfns[i]);
			pfn_free(pfns[i]);
		}
		done += k;
	}
	/* The PTEs are clear already; releasing clears them again and flushes. */
	syspte_release(va, (uint32_t)reserved);
}

/* Type frame pfn and map it at va; false (the frame freed) when its alias could not be
 * split. */
static bool map_new_frame(uint64_t va, pfn_t pfn, enum memtype t)
{
	if (!memtype_set_frame(pfn, t)) {
		pfn_free(pfn);
		return false;
	}
	struct pt_attrs a = { .write = true, .exec = false, .user = false, .global = true, .type = t };
	pt_set_ptes_run(va, &pfn, 1, a);
	return true;
}

/* Find n free contiguous frames in [low, high] that cross no multiple of `boundary` frames
 * (0: no boundary), taken zeroed for this module; PFN_INVALID when there are none. */
static pfn_t allocate_run(pfn_t low, pfn_t high, uint64_t n, uint64_t boundary)
{
	if (!boundary)
		return pfn_alloc_run(low, high, n, 1, PFN_ALLOC_ZERO, PFN_OWNER_DEVMEM);
	if (high >= pfn_limit())
		high = pfn_limit() - 1;
	for (pfn_t seg = ALIGN_DOWN(low, boundary); seg <= high; seg += boundary) {
		pfn_t lo = seg < low ? low : seg, hi = seg + boundary - 1 > high ? high : seg + boundary - 1;
		pfn_t first = pfn_alloc_run(lo, hi, n, 1, PFN_ALLOC_ZERO, PFN_OWNER_DEVMEM);
		if (first != PFN_INVALID)
			return first;
	}
	return PFN_INVALID;
}

/* A request for contiguous frames: the window in frames and the boundary in frames. */
struct run_request {
	pfn_t low, high;
	uint64_t boundary;
};

/*
 * Allocate `bytes` of zeroed RAM of type t, mapped at a fresh run of system PTEs with a guard
 * PTE after it, and record it as `kind`.  With `run`, the frames are one contiguous block
 * inside its window; otherwise any frames.  NULL, with nothing taken, when a record, the
 * PTEs, the frames or a split of their direct-map alias cannot be had.
 */
static PVOID allocate(SIZE_T bytes, enum memtype t, enum block_kind kind, const struct run_request *run)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	if (!bytes || t == MT_NONE || bytes > 0xFFFFFFFFul - PAGE_SIZE)
		return NULL;
	/* The verifier's low-resources simulation fails these as it fails page allocations. */
	if (verifier_inject_failure(VF_SITE_ALLOCATE_PAGES))
		return NULL;
	uint64_t n = ALIGN_UP(bytes, PAGE_SIZE) / PAGE_SIZE;
	struct block *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *b, DEVMEM_TAG);
	if (!b)
		return NULL;
	uint64_t va = syspte_reserve((uint32_t)n, HighPagePriority, true);
	if (!va) {
		ExFreePoolWithTag(b, DEVMEM_TAG);
		return NULL;
	}
	pfn_t first = run ? allocate_run(run->low, run->high, n, run->boundary) : 0;
	uint64_t mapped = 0;
	bool ok = !run || first != PFN_INVALID;
	while (ok && mapped < n) {
		pfn_t pfn = run ? first + mapped : pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_DEVMEM);
		ok = pfn != PFN_INVALID && map_new_frame(va + mapped * PAGE_SIZE, pfn, t);
		mapped += ok;
	}
	if (!ok) {
		/* A run's frames not yet mapped go back as they are (still WB, untouched). */
		if (run && first != PFN_INVALID)
			for (uint64_t i = mapped + 1; i < n; i++)
				pfn_free(first + i);
		release_frames(va, mapped, n);
		ExFreePoolWithTag(b, DEVMEM_TAG);
		return NULL;
	}
	KIRQL irql = klock_acquire(&lock);
	*b = (struct block){ .kind = kind, .va = va, .base = va, .pages = n, .bytes = bytes, .type = t,
			     .next = blocks };
	blocks = b;
	klock_release(&lock, irql);
	return (PVOID)va;
}

/* What a release says of the block it frees, to be checked against the record. */
struct release_claim {
	bool has_bytes;
	SIZE_T bytes;
	bool has_type;
	enum memtype type;     /* MT_NONE: a CacheType that names no type, never a match */
};

/* Release the block of `kind` at BaseAddress; 0xC4/0x2006 (address, bytes given, bytes
 * allocated) when there is no such block or the claim does not match it. */
static void release(PVOID BaseAddress, enum block_kind kind, struct release_claim c)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	uint64_t va = (uint64_t)BaseAddress;
	KIRQL irql = klock_acquire(&lock);
	struct block *b = find_block(va, kind);
	if (!b)
		verifier_violation(VERIFIER_DEVMEM_BAD_RELEASE, va, c.bytes, 0);
	if ((c.has_bytes && c.bytes != b->bytes) || (c.has_type && c.type != b->type))
		verifier_violation(VERIFIER_DEVMEM_BAD_RELEASE, va, c.bytes, b->bytes);
	unlink_block(b);
	klock_release(&lock, irql);
	/* Unlinked: the block is this call's alone. */
	release_frames(b->va, b->pages, b->pages);
	ExFreePoolWithTag(b, DEVMEM_TAG);
}

PVOID MmAllocateNonCachedMemory(SIZE_T NumberOfBytes)
{
	return allocate(NumberOfBytes, MT_UC, BLOCK_NONCACHED, NULL);
}

VOID MmFreeNonCachedMemory(PVOID BaseAddress, SIZE_T NumberOfBytes)
{
	release(BaseAddress, BLOCK_NONCACHED, (struct release_claim){ .has_bytes = true, .bytes = NumberOfBytes });
}

/* The frame window [Lowest, Highest] (every byte of a frame inside it; a Highest of all ones
 * is no limit) and the boundary in frames; false for a request no frames can meet: the
 * window upside down or holding no frame, a boundary that is not a power of two or is
 * smaller than the request. */
static bool run_request(SIZE_T bytes, PHYSICAL_ADDRESS Lowest, PHYSICAL_ADDRESS Highest,
			PHYSICAL_ADDRESS Boundary, struct run_request *r)
{
	uint64_t lo = (uint64_t)Lowest.QuadPart, hi = (uint64_t)Highest.QuadPart, bnd = (uint64_t)Boundary.QuadPart;
	if (hi < lo || (bnd & (bnd - 1)))
		return false;
	/* The block starts on a page: below a page it crosses nothing if it fits the boundary. */
	if (bnd && (bnd < PAGE_SIZE ? bytes > bnd : ALIGN_UP(bytes, PAGE_SIZE) > bnd))
		return false;
	r->low = ALIGN_UP(lo, PAGE_SIZE) / PAGE_SIZE;
	/* The last frame whose every byte is at or below Highest. */
	uint64_t end = hi == ~0ul ? ~0ul / PAGE_SIZE : (hi + 1) / PAGE_SIZE;
	if (!end || end - 1 < r->low)
		return false;
	r->high = end - 1;
	r->boundary = bnd >= PAGE_SIZE ? bnd / PAGE_SIZE : 0;
	return true;
}

PVOID MmAllocateContiguousMemorySpecifyCache(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS LowestAcceptableAddress,
					     PHYSICAL_ADDRESS HighestAcceptableAddress,
					     PHYSICAL_ADDRESS BoundaryAddressMultiple, MEMORY_CACHING_TYPE CacheType)
{
	struct run_request r;
	if (!run_request(NumberOfBytes, LowestAcceptableAddress, HighestAcceptableAddress, BoundaryAddressMultiple, &r))
		return NULL;
	return allocate(NumberOfBytes, memtype_from_caching_type(CacheType), BLOCK_CONTIGUOUS, &r);
}

PVOID MmAllocateContiguousMemory(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS HighestAcceptableAddress)
{
	PHYSICAL_ADDRESS zero = { .QuadPart = 0 };
	return MmAllocateContiguousMemorySpecifyCache(NumberOfBytes, zero, HighestAcceptableAddress, zero, MmCached);
}

/* PAGE_READWRITE or PAGE_READONLY, with at most one of PAGE_NOCACHE and PAGE_WRITECOMBINE:
 * the rights and the type (WB without either).  False for anything else, the executable
 * protections included (mm/RULES.md decision 3: no system mapping is executable). */
static bool protection_to_mapping(ULONG protect, bool *write, enum memtype *t)
{
	ULONG cache = protect & (PAGE_NOCACHE | PAGE_WRITECOMBINE);
	if (cache == (PAGE_NOCACHE | PAGE_WRITECOMBINE))
		return false;
	*t = cache == PAGE_NOCACHE ? MT_UC : cache == PAGE_WRITECOMBINE ? MT_WC : MT_WB;
	switch (protect & ~cache) {
	case PAGE_READWRITE: *write = true; return true;
	case PAGE_READONLY: *write = false; return true;
	default: return false;
	}
}

PVOID MmAllocateContiguousNodeMemory(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS LowestAcceptableAddress,
				     PHYSICAL_ADDRESS HighestAcceptableAddress, PHYSICAL_ADDRESS BoundaryAddressMultiple,
				     ULONG Protect, NODE_REQUIREMENT PreferredNode)
{
	bool write;
	enum memtype t;
	struct run_request r;
	/* One node, 0; a read-only allocation would be of no use to its caller. */
	if ((PreferredNode != MM_ANY_NODE_OK && PreferredNode != 0) || !protection_to_mapping(Protect, &write, &t) ||
	    !write)
		return NULL;
	if (!run_request(NumberOfBytes, LowestAcceptableAddress, HighestAcceptableAddress, BoundaryAddressMultiple, &r))
		return NULL;
	return allocate(NumberOfBytes, t, BLOCK_CONTIGUOUS, &r);
}

VOID MmFreeContiguousMemory(PVOID BaseAddress) { release(BaseAddress, BLOCK_CONTIGUOUS, (struct release_claim){ 0 }); }

VOID MmFreeContiguousMemorySpecifyCache(PVOID BaseAddress, SIZE_T NumberOfBytes, MEMORY_CACHING_TYPE CacheType)
{
	/* Both must be what the allocation was given (its type: the same memory type). */
	release(BaseAddress, BLOCK_CONTIGUOUS,
		(struct release_claim){ .has_bytes = true, .bytes = NumberOfBytes, .has_type = true,
					.type = memtype_from_caching_type(CacheType) });
}

/* ---- I/O space ---------------------------------------------------------------------- */

/*
 * Map [pa, pa + bytes) into system PTEs (MmMapIoSpace's page: "only pages that are locked
 * down": a frame of RAM must be pinned — locked, or owned by pool, an MDL, this module — else
 * NULL).  Each frame keeps its one type (decision 1): a RAM frame its own, a frame beyond the
 * PFN database the type an earlier I/O-space mapping gave it, else the requested one.
 */
static PVOID map_io_space(uint64_t pa, SIZE_T bytes, enum memtype requested, bool write)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	if (!bytes || requested == MT_NONE || bytes > 0xFFFFFFFFul - PAGE_SIZE || pa + bytes < pa)
		return NULL;
	if (verifier_inject_failure(VF_SITE_MAP))
		return NULL;
	uint64_t first = ALIGN_DOWN(pa, PAGE_SIZE);
	uint64_t n = ADDRESS_AND_SIZE_TO_SPAN_PAGES(pa, bytes);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = (first >> PAGE_SHIFT) + i;
		if (pfn_is_ram(pfn) && !pfn_frame_is_pinned(pfn))
			return NULL;
	}
	struct block *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *b, DEVMEM_TAG);
	uint64_t va = b ? syspte_reserve((uint32_t)n, HighPagePriority, false) : 0;
	if (!va) {
		if (b)
			ExFreePoolWithTag(b, DEVMEM_TAG);
		return NULL;
	}
	bool override = false;
	KIRQL irql = klock_acquire(&lock);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = (first >> PAGE_SHIFT) + i;
		struct pt_attrs a = { .write = write, .exec = false, .user = false, .global = true };
		enum memtype earlier = pfn_entry(pfn) ? MT_NONE : io_space_type(pfn << PAGE_SHIFT);
		if (earlier != MT_NONE) {
			a.type = earlier;
		} else if (!memtype_for_mapping(pfn, requested, &a.type, &override)) {
			klock_release(&lock, irql);
			syspte_release(va, (uint32_t)n);
			ExFreePoolWithTag(b, DEVMEM_TAG);
			return NULL;
		}
		pt_set_ptes_run(va + i * PAGE_SIZE, &pfn, 1, a);
	}
	*b = (struct block){ .kind = BLOCK_IO_SPACE, .va = va, .base = va + (pa & (PAGE_SIZE - 1)), .pages = n,
			     .bytes = bytes, .first_pa = first, .type = requested, .next = blocks };
	blocks = b;
	klock_release(&lock, irql);
	return (PVOID)b->base;
}

PVOID MmMapIoSpace(PHYSICAL_ADDRESS PhysicalAddress, SIZE_T NumberOfBytes, MEMORY_CACHING_TYPE CacheType)
{
	return map_io_space((uint64_t)PhysicalAddress.QuadPart, NumberOfBytes, memtype_from_caching_type(CacheType),
			    true);
}

PVOID MmMapIoSpaceEx(PHYSICAL_ADDRESS PhysicalAddress, SIZE_T NumberOfBytes, ULONG Protect)
{
	bool write;
	enum memtype t;
	if (!protection_to_mapping(Protect, &write, &t))
		return NULL;
	return map_io_space((uint64_t)PhysicalAddress.QuadPart, NumberOfBytes, t, write);
}

VOID MmUnmapIoSpace(PVOID BaseAddress, SIZE_T NumberOfBytes)
{
	verifier_check_irql(DISPATCH_LEVEL, VERIFIER_CALL_ABOVE_DISPATCH, 0, 0);
	uint64_t va = (uint64_t)BaseAddress;
	KIRQL irql = klock_acquire(&lock);
	struct block *b = find_block(va, BLOCK_IO_SPACE);
	/* Microsoft's 0xDA page: "an I/O space mapping that the system is unaware of" is P1
	 * 0x400 (base address, pages to free, 0); a size other than the mapping's names none. */
	if (!b || NumberOfBytes != b->bytes)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x400, va, ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, NumberOfBytes), 0);
	unlink_block(b);
	klock_release(&lock, irql);
	syspte_release(b->va, (uint32_t)b->pages);
	ExFreePoolWithTag(b, DEVMEM_TAG);
}

/* ---- addresses ---------------------------------------------------------------------- */

PHYSICAL_ADDRESS MmGetPhysicalAddress(PVOID BaseAddress)
{
	struct pt_query q;
	pt_query(mdl_current_root(), (uint64_t)BaseAddress, &q);
	PHYSICAL_ADDRESS pa = { .QuadPart = q.present ? (LONGLONG)q.pa : 0 };
	return pa;
}

BOOLEAN MmIsAddressValid(PVOID VirtualAddress)
{
	struct pt_query q;
	pt_query(mdl_current_root(), (uint64_t)VirtualAddress, &q);
	return q.present;
}

PVOID MmGetVirtualForPhysical(PHYSICAL_ADDRESS PhysicalAddress)
{
	uint64_t pa = (uint64_t)PhysicalAddress.QuadPart;
	return pfn_is_ram(pa >> PAGE_SHIFT) ? phys_to_virt(pa) : NULL;
}
