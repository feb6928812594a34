/*
 * The user-mode side of the MDL routines (mm/RULES.md decisions 1, 4 and 5):
 * probing and locking user buffers, MmMapLockedPagesSpecifyCache(UserMode),
 * MmUnmapLockedPages of a user address, and what a process leaves behind when it ends.
 *
 * Probe and lock.  A buffer in the user half belongs to the current process.  Its pages are
 * made resident there before anything is locked (mm/mdl.c walks them under the process's
 * lock and calls uvm_make_resident_pages_status for what is missing: a committed demand-zero page
 * gets its frame); a page that is not committed, or refuses the access, raises
 * STATUS_ACCESS_VIOLATION naming it, and nothing stays locked.  On success Mdl->Process is
 * that process, whose memory counts the MDL's pages (mm_process.locked_pages) until
 * MmUnlockPages; a process that ends with pages still locked is bug check
 * PROCESS_HAS_LOCKED_PAGES (0, process, count), raised by PsDestroyProcess.  This holds for
 * a KernelMode probe of a user buffer too (NT charges the process either way).  A UserMode
 * probe needs a process and, the buffer being pageable, IRQL <= APC_LEVEL.
 *
 * User mappings.  A mapping is one VAD_MDL range of the current process: the user can't
 * free, decommit, re-protect, unmap or overlap it (mm/uvm.c), its PTEs are user, never
 * executable, read-only with MdlMappingNoWrite or over memory its caller could not write
 * (mm/RULES.md decision 9) and otherwise writable — never writable while a frame is
 * executable in ring 0 (decision 3) — and each frame keeps
 * its one memory type — the kernel side's rule (memtype_for_mapping): pool and locked RAM stay
 * WB, MmAllocatePagesForMdlEx frames keep their recorded type, an untyped frame takes
 * CacheType for good.  The result keeps the MDL's byte offset.  RequestedAddress
 * (mm/RULES.md decision 4): page-aligned is used exactly; NULL picks the lowest free range on 64 KiB
 * granularity.  A mapping never reaches above the process's highest user address less a
 * 16-page guard (mm/RULES.md decision 5: a WOW64 process's highest address is 0x7FFEFFFF).  Each mapping
 * is recorded (struct user_mapping) on the process and on a list of all of them.
 *
 * Every failure raises (the caller wraps the call in __try), with nothing left behind:
 *   RequestedAddress not page-aligned, below 64 KiB, past the guard;
 *     no process current (no user address space to map into)   STATUS_INVALID_ADDRESS
 *   the range overlaps any VAD                                 STATUS_CONFLICTING_ADDRESSES
 *   the process is being torn down                             STATUS_PROCESS_IS_TERMINATING
 *   a CacheType that names no type, an MDL of zero bytes       STATUS_INVALID_PARAMETER
 *   no free range (RequestedAddress NULL), no pool for the
 *     record or the VAD, no frame for a page table or a type
 *     change, the low-resources simulation (VF_SITE_MAP)       STATUS_INSUFFICIENT_RESOURCES
 *
 * Unmapping runs in the owning process (attached is fine) and releases exactly one
 * mapping, found by its address and MDL; the range is free again at once.  MmUnlockPages
 * does not release user mappings (NT releases only the system mapping): they must be
 * unmapped first.  Mappings a driver leaves behind are torn down when the process ends:
 * PsDestroyProcess calls mdl_user_process_exit after every cleanup callback, so a driver's
 * IRP_MJ_CLEANUP can still unmap its own.
 *
 * Pool mapped to a user (mm/RULES.md user rule U4, from the security warning of Microsoft's
 * MmMapLockedPagesSpecifyCache page): only whole pages of pool
 * allocations that were zeroed, the MDL covering whole pages, may be mapped; each mapping
 * counts on the pool pages (pool_note_user_mapping), and freeing pool still mapped is bug
 * check 0xC4/0x2003 (mm/pool.c).  Whole pages of a system-PTE mapping of frames a driver
 * allocated zeroed and nonpaged — MmAllocatePagesForMdl(Ex) frames, MmAllocateNonCachedMemory
 * and MmAllocateContiguousMemory* blocks — may be mapped too (the frames stay the driver's
 * until it frees them; freeing them while mapped is its bug, as on NT).  Other kernel memory
 * (the image, the direct map, stacks, page tables, the PFN database, pool through another
 * address) is never mapped to a user.
 *
 * Bug checks 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION, by P1:
 *   0x70    UserMode probe above APC_LEVEL (IRQL, MDL, access mode)
 *   0x75    MmMapLockedPages(UserMode) above APC_LEVEL (mm/mdl.c)
 *   0x77    MmMapLockedPagesSpecifyCache(UserMode) above APC_LEVEL (IRQL, MDL, mode)
 *   0x7A    MmUnmapLockedPages of a user address above APC_LEVEL (IRQL, address, MDL)
 *   0xB3    mapping an MDL that is not locked (MDL, flags, MDL_PAGES_LOCKED)
 *   0x85 / 0x89  a frame that is not pinned / outside RAM without MDL_IO_SPACE (as the
 *           kernel side)
 *   0xB9    unmapping a user address that is not a mapping of this MDL in the current
 *           process, or with no process current (address, MDL, current process)
 *   0x2004  (mdlab) kernel memory mapped to a user that is not whole zeroed pool pages nor
 *           whole pages of driver-allocated frames (MDL, offending address, reason: 1 not
 *           whole pages, 2 POOL_FLAG_UNINITIALIZED, 3 neither pool nor such frames)
 *   0x2005  (mdlab) MmUnlockPages, MmFreePagesFromMdl or IoFreeMdl of an MDL still mapped
 *           into a user address space (MDL, user address of a mapping, its process; the last
 *           two are 0 from the free routines) — the pages would stay reachable by the user
 *           after they are unlocked or freed
 * and PROCESS_HAS_LOCKED_PAGES (1, MDL, pages, pages the process has locked) when an unlock
 * would take more pages off Mdl->Process than it has locked (the field was changed).
 *
 * Locked-page tracking (mm/RULES.md, bug check 0xCB: raised "when locked-page tracking is on"): off
 * by default, on with cmdline track_locked_pages=1 or mdl_user_track_locked_pages(true).
 * While on, each lock charged to a process is recorded (struct locked_record: MDL, pages,
 * the driver's call site — the return address of MmProbeAndLockPages, found through the
 * frame-pointer chain) until MmUnlockPages takes it off.  A process that ends with a record
 * left is bug check DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS (the record, 0, MDL, pages) instead
 * of 0x76.  A record that cannot be allocated is not made (the lock still counts, and the
 * process would end in 0x76).
 */
#include "mm/mdl_user.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/memtype.h"
#include "mm/mmproc.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"
#include "mm/verifier.h"

#define USER_MAPPING_TAG 0x4D6C644Du /* 'MdlM' */
/* Mappings stay this far below the process's highest user address (mm/RULES.md decision 4). */
#define USER_MAPPING_GUARD (16 * PAGE_SIZE)

#define LOCKED_PAGES_TAG 0x6B4C644Du /* 'MdLk' */

enum { KMEM_NOT_WHOLE_PAGES = 1, KMEM_UNINITIALIZED = 2, KMEM_NOT_POOL = 3 };

static struct user_mapping *all_mappings;
/* Counted with atomic adds: every CPU maps. */
static struct mdl_user_stats stats;
#define COUNT(field, n) __atomic_fetch_add(&stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* One lock recorded by locked-page tracking, on the list of all of them (oldest first). */
struct locked_record {
	struct mm_process *mm;         /* the process the pages are charged to */
	PMDL mdl;
	ULONG pages;
	ULONG_PTR caller;              /* where MmProbeAndLockPages returns to */
	struct locked_record *next;
};
static struct locked_record *locked_records;
enum { TRACKING_UNREAD = -1 };
static int tracking = TRACKING_UNREAD; /* the cmdline is read at the first lock */

/* The records' lock (mm/RULES.md, "Locks"): the list of every user mapping and each
 * process's, the locked-page records (each process's locked-page charge is atomic: mmproc.h).  Held for a
 * list walk and the change it leads to; the pool, page-table and PFN locks may come after
 * it (a record freed, a passed page unmapped), and a process's address-space lock (mmproc.h)
 * when a mapping advances; a mapping is made and released under the process's lock alone. */
static struct klock records = KLOCK_INIT(KLOCK_MDL_USER);

const struct pt_root *mdl_current_root(void) { return mm_current() ? &mm_current()->root : &kernel_root; }

void mdl_user_get_stats(struct mdl_user_stats *out) { *out = stats; }

/* ---- probe and lock ----------------------------------------------------------------- */

struct mm_process *mdl_user_probe(PMDL Mdl, KPROCESSOR_MODE AccessMode, bool write)
{
	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(Mdl);
	struct mm_process *mm = mm_current();
	if (va >= USER_VA_END || (!mm && AccessMode == KernelMode))
		return NULL; /* a kernel buffer (or the kernel's own tables, unattached) */
	/* User memory is pageable: probing it may fault pages in. */
	verifier_check_irql(APC_LEVEL, VERIFIER_MDL_PROBE_IRQL, (ULONG_PTR)Mdl, AccessMode);
	ULONG access = write ? EXCEPTION_WRITE_FAULT : EXCEPTION_READ_FAULT;
	if (!mm)
		seh_raise_access_violation(va, access); /* no user address space at all */
	return mm;
}

void mdl_user_track_locked_pages(bool on) { tracking = on; }

bool mdl_user_tracking_locked_pages(void)
{
	if (tracking == TRACKING_UNREAD)
		tracking = cmdline_get_u64("track_locked_pages", 0) != 0;
	return tracking;
}

static void record_lock(PMDL Mdl, struct mm_process *owner, ULONG pages, ULONG_PTR caller)
{
	struct locked_record *r = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *r, LOCKED_PAGES_TAG);
	if (!r)
		return;
	*r = (struct locked_record){ .mm = owner, .mdl = Mdl, .pages = pages, .caller = caller };
	KIRQL irql = klock_acquire(&records);
	struct locked_record **tail = &locked_records;
	while (*tail)
		tail = &(*tail)->next;
	*tail = r;
	klock_release(&records, irql);
}

/* Take Mdl's record off the list, tracking on or not (it may have been turned off since).
 * Under the records' lock. */
static void forget_lock(PMDL Mdl)
{
	for (struct locked_record **pr = &locked_records; *pr; pr = &(*pr)->next)
		if ((*pr)->mdl == Mdl) {
			struct locked_record *r = *pr;
			*pr = r->next;
			ExFreePoolWithTag(r, LOCKED_PAGES_TAG);
			return;
		}
}

/* Called by MmProbeAndLockPages itself (mm/mdl.c, a direct call in a frame of its own: the
 * build keeps frame pointers and no sibling calls), so the second return address on the
 * frame chain is the driver's call site. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wframe-address"
__attribute__((noinline)) void mdl_user_note_lock(PMDL Mdl, struct mm_process *owner)
{
	Mdl->Process = owner ? owner->process : NULL;
	if (!owner)
		return;
	ULONG n = mdl_page_count(Mdl);
	/* The charge is one atomic add (mmproc.h): no lock round trip per probe. */
	__atomic_fetch_add(&owner->locked_pages, n, __ATOMIC_RELAXED);
	if (mdl_user_tracking_locked_pages())
		record_lock(Mdl, owner, n, (ULONG_PTR)__builtin_return_address(1));
}
#pragma GCC diagnostic pop

void mdl_user_check_locks_left(struct mm_process *mm)
{
	KIRQL irql = klock_acquire(&records);
	for (struct locked_record *r = locked_records; r; r = r->next)
		if (r->mm == mm)
			KeBugCheckEx(DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS, (ULONG_PTR)r, 0, (ULONG_PTR)r->mdl,
				     r->pages);
	klock_release(&records, irql);
}

ULONG_PTR mdl_user_tracking_record(PMDL Mdl)
{
	ULONG_PTR found = 0;
	KIRQL irql = klock_acquire(&records);
	for (struct locked_record *r = locked_records; r && !found; r = r->next)
		if (r->mdl == Mdl)
			found = (ULONG_PTR)r;
	klock_release(&records, irql);
	return found;
}

ULONG_PTR mdl_user_locked_pages(PMDL Mdl)
{
	struct mm_process *mm = ps_mm(Mdl->Process);
	return mm ? mm->locked_pages : 0;
}

/* Under the records' lock. */
static struct user_mapping *first_mapping_of(PMDL Mdl)
{
	for (struct user_mapping *um = all_mappings; um; um = um->next_all)
		if (um->mdl == Mdl)
			return um;
	return NULL;
}

/* Take n pages off mm's locked-page charge, one atomic step (mmproc.h); more than it holds
 * is Microsoft's 0x76 P1 1 (the MDL, the process's locked-page count, no driver stacks). */
static void uncharge(PMDL Mdl, struct mm_process *mm, ULONG n)
{
	uint64_t old = __atomic_load_n(&mm->locked_pages, __ATOMIC_RELAXED);
	do {
		if (old < n)
			KeBugCheckEx(PROCESS_HAS_LOCKED_PAGES, 1, (ULONG_PTR)Mdl, old, 0);
	} while (!__atomic_compare_exchange_n(&mm->locked_pages, &old, old - n, true, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
}

void mdl_user_note_unlock(PMDL Mdl)
{
	/* NT's MmUnlockPages releases the system mapping only; a user mapping would outlive
	 * the lock and leave the user holding pages that may be reused. */
	/* No user mapping anywhere and no lock record kept: nothing of ours to check or forget,
	 * so no records' lock — a kernel buffer's unlock returns at once, a user buffer's takes
	 * its pages off its process's charge.  (A mapping or a record of this MDL is made
	 * before its unlock by the same driver's calls, so an empty list here means none.) */
	if (!__atomic_load_n(&all_mappings, __ATOMIC_RELAXED) && !__atomic_load_n(&locked_records, __ATOMIC_RELAXED)) {
		struct mm_process *mm = Mdl->Process ? ps_mm(Mdl->Process) : NULL;
		if (mm)
			uncharge(Mdl, mm, mdl_page_count(Mdl));
		return;
	}
	KIRQL irql = klock_acquire(&records);
	struct user_mapping *um = first_mapping_of(Mdl);
	if (um)
		verifier_violation(VERIFIER_MDL_RELEASE_USER_MAPPED, (ULONG_PTR)Mdl, um->va + Mdl->ByteOffset,
				   (ULONG_PTR)um->mm->process);
	struct mm_process *mm = ps_mm(Mdl->Process);
	if (mm) {
		uncharge(Mdl, mm, mdl_page_count(Mdl));
		forget_lock(Mdl);
	}
	klock_release(&records, irql);
}

/* The count under the records lock, out of line: the common call below returns before
 * any of its registers need saving. */
static __attribute__((noinline)) uint32_t count_mappings(PMDL Mdl)
{
	uint32_t n = 0;
	KIRQL irql = klock_acquire(&records);
	for (struct user_mapping *um = all_mappings; um; um = um->next_all)
		n += um->mdl == Mdl;
	klock_release(&records, irql);
	return n;
}

uint32_t mdl_user_mapping_count(PMDL Mdl)
{
	/* No user mapping anywhere (the common free of an MDL): nothing to count, no lock, as
	 * mdl_user_note_unlock.  A mapping being made of this very MDL while it is freed is the
	 * caller's race, which the lock would not order either. */
	if (!__atomic_load_n(&all_mappings, __ATOMIC_RELAXED))
		return 0;
	return count_mappings(Mdl);
}

/* ---- mapping ------------------------------------------------------------------------ */

__attribute__((noreturn)) static void map_failed(NTSTATUS status)
{
	COUNT(failures, 1);
	ExRaiseStatus(status);
}

/* Whether frame pfn is RAM a driver allocated as whole, zeroed, nonpaged pages that are its
 * own and no one else's: an MmAllocatePagesForMdl(Ex) MDL's frames, or device memory
 * (MmAllocateNonCachedMemory, MmAllocateContiguousMemory*).  Not the kernel image, stacks,
 * page tables, the PFN database, pool (which must be mapped through its own address) or a
 * free frame. */
static bool is_driver_allocated_frame(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && e->state == PFN_ACTIVE && (e->owner_kind == PFN_OWNER_MDL || e->owner_kind == PFN_OWNER_DEVMEM);
}

/* Kernel memory reaches a user only as whole pages (mm/RULES.md user rule U4): of pool
 * allocations that were zeroed, through their pool address; or, through a system-PTE
 * mapping, of frames a driver allocated zeroed and nonpaged (is_driver_allocated_frame: the
 * A1 case of issue 13).  True when the MDL describes pool (its mapping must then be counted
 * on the pool pages); false for a user buffer, pages of MmAllocatePagesForMdl (no kernel
 * address) or a system-PTE mapping of allocated frames. */
static bool check_kernel_memory(PMDL m, ULONG pages)
{
	uint64_t va = (uint64_t)MmGetMdlVirtualAddress(m), start = (uint64_t)m->StartVa;
	if (va < USER_VA_END)
		return false;
	bool pool = va >= KVA_POOL_BASE && va < KVA_POOL_END;
	bool sysptes = va >= KVA_SYSPTE_BASE && va < KVA_SYSPTE_END;
	if (!pool && !sysptes)
		verifier_violation(VERIFIER_MDL_USER_MAP_KERNEL_MEMORY, (ULONG_PTR)m, va, KMEM_NOT_POOL);
	if (m->ByteOffset || m->ByteCount % PAGE_SIZE)
		verifier_violation(VERIFIER_MDL_USER_MAP_KERNEL_MEMORY, (ULONG_PTR)m, va, KMEM_NOT_WHOLE_PAGES);
	if (sysptes) {
		PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
		for (ULONG i = 0; i < pages; i++)
			if (!is_driver_allocated_frame(pfns[i]))
				verifier_violation(VERIFIER_MDL_USER_MAP_KERNEL_MEMORY, (ULONG_PTR)m,
						   start + (uint64_t)i * PAGE_SIZE, KMEM_NOT_POOL);
		return false;
	}
	for (uint64_t page = start; page < start + (uint64_t)pages * PAGE_SIZE; page += PAGE_SIZE) {
		struct pool_info pi;
		/* The page must lie wholly inside one page-granular allocation. */
		if (!pool_query(page, &pi) || !pi.whole_pages || page + PAGE_SIZE > pi.base + pi.size)
			verifier_violation(VERIFIER_MDL_USER_MAP_KERNEL_MEMORY, (ULONG_PTR)m, page, KMEM_NOT_WHOLE_PAGES);
		if (pi.uninitialized)
			verifier_violation(VERIFIER_MDL_USER_MAP_KERNEL_MEMORY, (ULONG_PTR)m, page, KMEM_UNINITIALIZED);
	}
	return true;
}

/* The highest address a mapping in mm may cover. */
static uint64_t mapping_limit(const struct mm_process *mm) { return mm->highest_user - USER_MAPPING_GUARD; }

/* Whether a RequestedAddress fits mm's range (mm/RULES.md decision 4); raises when it can't.
 * Read without the address-space lock: the limits never change. */
static void check_address(struct mm_process *mm, uint64_t requested, uint64_t size)
{
	uint64_t limit = mapping_limit(mm);
	if (requested && ((requested & (PAGE_SIZE - 1)) || requested < MM_LOWEST_USER_ADDRESS || requested > limit ||
			  size - 1 > limit - requested))
		map_failed(STATUS_INVALID_ADDRESS);
}

/* Where a mapping of `size` bytes goes in mm: the requested address when no VAD overlaps it,
 * else the lowest free range on 64 KiB granularity; 0 when there is none.  Under mm's lock. */
static uint64_t choose_address(struct mm_process *mm, uint64_t requested, uint64_t size)
{
	if (!requested)
		return vad_find_free(mm, size, MM_ALLOCATION_GRANULARITY, MM_LOWEST_USER_ADDRESS, mapping_limit(mm) + 1);
	return vad_find_overlap(mm, requested, requested + size) ? 0 : requested;
}

/* Write the user PTEs of m's pages at va in mm, each frame with its own type.  False when a
 * frame could not be typed or a page table had no frame; nothing is left mapped then. */
static bool map_pages(struct mm_process *mm, PMDL m, uint64_t va, ULONG n, enum memtype requested, bool write)
{
	PPFN_NUMBER pfns = MmGetMdlPfnArray(m);
	bool override = false;
	for (ULONG i = 0; i < n;) {
		struct pt_attrs a = { .write = write, .exec = false, .user = true, .global = false };
		/* Each run of frames pinned and typed alike is written with one call (memtype.h),
		 * any other frame typed on its own: a frame has one type in the process and in
		 * the kernel (mm/RULES.md user rule U11, rule 6). */
		uint64_t run = memtype_mapping_run(&pfns[i], n - i, requested, &a.type, &override);
		bool ok = true;
		if (!run) {
			ok = memtype_for_mapping(pfns[i], requested, &a.type, &override);
			run = 1;
		}
		if (!ok || !pt_map_frames(&mm->root, va + (uint64_t)i * PAGE_SIZE, &pfns[i], run, a)) {
			if (i)
				pt_unmap(&mm->root, va, (uint64_t)i * PAGE_SIZE);
			return false;
		}
		i += (ULONG)run;
	}
	COUNT(cache_overrides, override);
	return true;
}

/* A user mapping MmMapLockedPagesSpecifyCache(UserMode) may make: what, where, and how. */
struct map_request {
	struct mm_process *mm;  /* the current process's memory */
	PMDL mdl;
	ULONG pages;
	uint64_t va;            /* page-aligned start: RequestedAddress, or a free range */
	enum memtype type;      /* what CacheType asks for; a frame's own type still wins */
	bool write;             /* not MdlMappingNoWrite */
	bool pool;              /* the MDL describes pool: the mapping counts on its pages */
};

/* Every check the mapping must pass, before anything changes: the verifier's (IRQL, a locked
 * MDL, pinned frames), the kernel-memory rule, the process, CacheType, the low-resources
 * simulation, and where the mapping goes (mm/RULES.md decision 4).  Raises (map_failed) or bug-checks on
 * a refusal; fills *r otherwise. */
static void check_map_request(PMDL Mdl, MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG Priority,
			      struct map_request *r)
{
	verifier_check_irql(APC_LEVEL, VERIFIER_MDL_MAP_SPECIFY_CACHE_USER_IRQL, (ULONG_PTR)Mdl, UserMode);
	if (!(Mdl->MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL)))
		verifier_violation(VERIFIER_MDL_MAP_UNLOCKED, (ULONG_PTR)Mdl, (USHORT)Mdl->MdlFlags, MDL_PAGES_LOCKED);
	mdl_check_frames(Mdl);
	*r = (struct map_request){ .mm = mm_current(), .mdl = Mdl, .pages = mdl_page_count(Mdl) };
	r->pool = check_kernel_memory(Mdl, r->pages);

	if (!r->mm)
		map_failed(STATUS_INVALID_ADDRESS);
	if (r->mm->terminating)
		map_failed(STATUS_PROCESS_IS_TERMINATING);
	r->type = memtype_from_caching_type(CacheType);
	if (r->type == MT_NONE || !r->pages)
		map_failed(STATUS_INVALID_PARAMETER);
	if (verifier_inject_failure(VF_SITE_MAP))
		map_failed(STATUS_INSUFFICIENT_RESOURCES);
	r->va = (uint64_t)RequestedAddress; /* where it goes is chosen under the lock (make_mapping) */
	check_address(r->mm, r->va, (uint64_t)r->pages * PAGE_SIZE);
	/* A user mapping is never executable (mm/RULES.md user rule U3); NoWrite makes it read-only. */
	r->write = !(Priority & MdlMappingNoWrite) && !(Mdl->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY); /* decision 9 */
	/* W^X across privilege levels (mm/RULES.md decision 3): ring 3 may not write what ring
	 * 0 can execute. */
	if (r->write && mdl_frames_executable_in_ring_0(Mdl))
		map_failed(STATUS_INVALID_PAGE_PROTECTION);
}

/* Make the mapping r describes: its record, then under the process's address-space lock its
 * place (RequestedAddress free, or the lowest free range), its VAD_MDL range and its PTEs;
 * then put it on the process's list and the list of all mappings (the records' lock comes
 * before the process's in the order, so not inside it), and count it on pool pages.  Raises
 * STATUS_CONFLICTING_ADDRESSES when the requested range overlaps a VAD, and
 * STATUS_INSUFFICIENT_RESOURCES when no range is free or memory runs out, with nothing left
 * behind.  r->va becomes the address chosen. */
static void make_mapping(struct map_request *r)
{
	struct mm_process *mm = r->mm;
	uint64_t size = (uint64_t)r->pages * PAGE_SIZE;
	struct user_mapping *um = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *um, USER_MAPPING_TAG);
	if (!um)
		map_failed(STATUS_INSUFFICIENT_RESOURCES);
	NTSTATUS st = STATUS_SUCCESS;
	if (r->write && mdl_test_exec_window)
		mdl_test_exec_window(MDL_EXEC_WINDOW_USER_MAP, r->mdl, 0);
	KIRQL irql = mm_space_lock(mm);
	uint64_t va = choose_address(mm, r->va, size);
	struct vad *v = NULL;
	if (!va) {
		st = r->va ? STATUS_CONFLICTING_ADDRESSES : STATUS_INSUFFICIENT_RESOURCES;
	} else if (mm->terminating) {
		st = STATUS_PROCESS_IS_TERMINATING;
	} else if (r->write && mdl_frames_executable_in_ring_0(r->mdl)) {
		/* The check again, under the process's lock (mm/RULES.md decision 3): a
		 * MmProtectMdlSystemAddress on another CPU raises the frames' counts before it
		 * walks this process's user half under the same lock, so either that walk comes
		 * after these PTEs and refuses, or this sees the counts and writes none. */
		st = STATUS_INVALID_PAGE_PROTECTION;
	} else {
		v = vad_insert(mm, va, va + size, VAD_MDL, r->write ? PAGE_READWRITE : PAGE_READONLY);
		if (v && !map_pages(mm, r->mdl, va, r->pages, r->type, r->write)) {
			vad_remove(mm, v);
			v = NULL;
		}
		if (!v)
			st = STATUS_INSUFFICIENT_RESOURCES;
	}
	if (v) {
		*um = (struct user_mapping){ .mm = mm, .mdl = r->mdl, .va = va, .pages = r->pages, .vad = v,
					     .pool = r->pool };
		v->owner = um;
	}
	mm_space_unlock(mm, irql);
	if (!v) {
		ExFreePoolWithTag(um, USER_MAPPING_TAG);
		map_failed(st);
	}
	r->va = va;
	irql = klock_acquire(&records);
	um->next = mm->mappings;
	um->next_all = all_mappings;
	mm->mappings = um;
	all_mappings = um;
	klock_release(&records, irql);
	if (r->pool)
		pool_note_user_mapping((uint64_t)r->mdl->StartVa, size, +1);
}

PVOID mdl_map_user(PMDL Mdl, MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG Priority)
{
	struct map_request r;
	check_map_request(Mdl, CacheType, RequestedAddress, Priority, &r);
	make_mapping(&r);
	/* Mappings a driver leaves behind go with the process (see mdl_user_process_exit). */
	COUNT(maps, 1);
	COUNT(live, 1);
	return (PVOID)(r.va + Mdl->ByteOffset);
}

bool mdl_user_frame_writable(pfn_t pfn)
{
	/* The real user PTEs of every MDL mapping, not the records' rights. */
	bool writable = false;
	KIRQL irql = klock_acquire(&records);
	for (struct user_mapping *um = all_mappings; um && !writable; um = um->next_all)
		for (uint64_t i = 0; i < um->pages && !writable; i++) {
			struct pt_query q;
			KIRQL sirql = mm_space_lock(um->mm); /* its tables may be pruned on another CPU */
			pt_query(&um->mm->root, um->va + i * PAGE_SIZE, &q);
			mm_space_unlock(um->mm, sirql);
			writable = q.present && q.eff.user && q.eff.write && q.pa >> PAGE_SHIFT == pfn;
		}
	klock_release(&records, irql);
	return writable;
}

/* ---- unmapping ---------------------------------------------------------------------- */

static void unlink_mapping(struct user_mapping **head, struct user_mapping *um, bool all)
{
	for (struct user_mapping **pp = head; *pp; pp = all ? &(*pp)->next_all : &(*pp)->next)
		if (*pp == um) {
			*pp = all ? um->next_all : um->next;
			return;
		}
	PANIC("unlink_mapping: user mapping at 0x%lx is not on its list", um->va);
}

/* Remove one mapping, already off both lists (so no other CPU finds it): PTEs (the TLB
 * flushed) and VAD under the process's lock, then the pool count and the record. */
static void release_mapping(struct user_mapping *um)
{
	struct mm_process *mm = um->mm;
	uint64_t size = um->pages * PAGE_SIZE;
	KIRQL irql = mm_space_lock(mm);
	pt_unmap(&mm->root, um->va, size);
	vad_remove(mm, um->vad);
	mm_space_unlock(mm, irql);
	if (um->pool)
		pool_note_user_mapping((uint64_t)um->mdl->StartVa, size, -1);
	ExFreePoolWithTag(um, USER_MAPPING_TAG);
	COUNT(live, -1);
}

/* Take um off the process's list and the list of all mappings (the records' lock held). */
static void unlink_both(struct user_mapping *um)
{
	unlink_mapping(&um->mm->mappings, um, false);
	unlink_mapping(&all_mappings, um, true);
}

void mdl_unmap_user(PVOID BaseAddress, PMDL Mdl)
{
	uint64_t base = (uint64_t)BaseAddress;
	verifier_check_irql(APC_LEVEL, VERIFIER_MDL_UNMAP_USER_IRQL, base, (ULONG_PTR)Mdl);
	struct mm_process *mm = mm_current();
	/* Only the process that owns the mapping can name it: its address is one of mm's. */
	struct user_mapping *found = NULL;
	KIRQL irql = klock_acquire(&records);
	for (struct user_mapping *um = mm ? mm->mappings : NULL; um && !found; um = um->next)
		if (um->mdl == Mdl && um->va + Mdl->ByteOffset == base)
			found = um;
	if (found)
		unlink_both(found); /* found and taken in one hold: one unmap gets it */
	klock_release(&records, irql);
	if (found) {
		release_mapping(found);
		COUNT(unmaps, 1);
		return;
	}
	/* Microsoft's 0xC4/0xB9: the address, the MDL, P4 reserved. */
	verifier_violation(VERIFIER_MDL_UNMAP_BAD_USER_ADDRESS, base, (ULONG_PTR)Mdl, 0);
}

void mdl_user_process_exit(struct mm_process *mm)
{
	for (;;) {
		KIRQL irql = klock_acquire(&records);
		struct user_mapping *um = mm->mappings;
		if (um)
			unlink_both(um);
		klock_release(&records, irql);
		if (!um)
			break;
		release_mapping(um);
		COUNT(teardowns, 1);
	}
}

/* ---- MmProbeAndLockProcessPages ----------------------------------------------------- */

/* MmProbeAndLockPages of a buffer in Process's address space (mm/RULES.md user rule U12): the
 * process is attached for the probe when it is not the current one, and detached again
 * before the exception a refused probe raises goes on to the caller (the same status, and
 * for an access violation the same access kind and address).  A NULL Process names no
 * address space: mdlab's 0xC4/0x2008 (MDL, 0, AccessMode) before anything is touched. */
VOID MmProbeAndLockProcessPages(PMDL MemoryDescriptorList, PEPROCESS Process, KPROCESSOR_MODE AccessMode,
				LOCK_OPERATION Operation)
{
	KAPC_STATE apc;
	if (!Process)
		verifier_violation(VERIFIER_MDL_PROBE_NO_PROCESS, (ULONG_PTR)MemoryDescriptorList, 0, AccessMode);
	bool attach = ps_mm(Process) != mm_current();
	volatile NTSTATUS status = STATUS_SUCCESS;
	volatile ULONG_PTR kind = 0, address = 0;
	if (attach)
		KeStackAttachProcess(Process, &apc);
	__try {
		MmProbeAndLockPages(MemoryDescriptorList, AccessMode, Operation);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		const EXCEPTION_RECORD *r = GetExceptionRecord();
		status = GetExceptionCode();
		if (r->NumberParameters >= 2) {
			kind = r->ExceptionInformation[0];
			address = r->ExceptionInformation[1];
		}
	}
	if (attach)
		KeUnstackDetachProcess(&apc);
	if (status == STATUS_ACCESS_VIOLATION)
		seh_raise_access_violation(address, (ULONG)kind);
	if (status != STATUS_SUCCESS)
		ExRaiseStatus(status);
}

void mdl_user_advance_mappings(PMDL Mdl, ULONG passed)
{
	uint64_t bytes = (uint64_t)passed * PAGE_SIZE;
	KIRQL irql = klock_acquire(&records);
	for (struct user_mapping *um = all_mappings; um; um = um->next_all) {
		if (um->mdl != Mdl)
			continue;
		/* The translations go first: the process cannot reach a passed page again.  Its
		 * space changes under its lock, which comes after the records' in the order. */
		KIRQL sirql = mm_space_lock(um->mm);
		pt_unmap(&um->mm->root, um->va, bytes);
		vad_raise_start(um->vad, um->va + bytes);
		mm_space_unlock(um->mm, sirql);
		if (um->pool)
			pool_note_user_mapping((uint64_t)Mdl->StartVa, bytes, -1);
		um->va += bytes;
		um->pages -= passed;
	}
	klock_release(&records, irql);
}

void mdl_user_note_advance(PMDL Mdl, ULONG passed)
{
	struct mm_process *mm = ps_mm(Mdl->Process);
	if (!mm)
		return;
	KIRQL irql = klock_acquire(&records);
	__atomic_fetch_sub(&mm->locked_pages, passed, __ATOMIC_RELAXED);
	for (struct locked_record *r = locked_records; r; r = r->next)
		if (r->mdl == Mdl)
			r->pages -= passed;
	klock_release(&records, irql);
}

struct mm_process *mdl_user_probe_page(uint64_t page, KPROCESSOR_MODE AccessMode, bool write)
{
	struct mm_process *mm = mm_current();
	if (page >= USER_VA_END || (!mm && AccessMode == KernelMode))
		return NULL;
	ULONG access = write ? EXCEPTION_WRITE_FAULT : EXCEPTION_READ_FAULT;
	struct uvm_resident_stop stop;
	NTSTATUS st = mm ? uvm_make_resident_status(mm, page, PAGE_SIZE, write, &stop) : STATUS_ACCESS_VIOLATION;
	/* A page the pagefile could not give back: the probe's in-page error, with the
	 * parameters the whole-MDL probe raises it with. */
	if (st == STATUS_IN_PAGE_ERROR)
		seh_raise_in_page_error(page, access, stop.io);
	if (st != STATUS_SUCCESS)
		seh_raise_access_violation(page, access);
	return mm;
}
