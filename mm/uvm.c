/*
 * User virtual memory (see uvm.h): NtAllocateVirtualMemory and friends on a process's VADs
 * and page tables, demand-zero faults, the process's own mappings and their teardown.
 *
 * Page state.  Every VAD but a VAD_MDL one carries, in vad.owner, one 64-bit word per page
 * (struct uvm_pages):
 *     bits 0-7   the page's PAGE_* protection; 0 = reserved, not committed
 *     bit 8      PARKED: the page has a frame that is not mapped (it was made PAGE_NOACCESS
 *                while resident: the contents must survive a later re-protect)
 *     bits 12-63 PARKED: the frame's physical address
 * A committed page is therefore in one of three states: demand-zero (no frame, no PTE),
 * resident (a PTE with the rights of its protection) or parked (a frame, no PTE).  The PTE
 * is the truth for "resident": nothing here caches it.  A VAD_PRIVATE reservation gets its
 * array at its first commit, so reserving costs one pool node whatever the size; the image,
 * stack and parameter VADs get theirs at creation, every page committed and resident.
 *
 * Frame ownership.  The frames of every VAD but VAD_MDL belong to the address space and are
 * freed when their page is decommitted or released and by uvm_destroy.  A VAD_MDL range maps
 * an MDL's frames: it is unmapped, never freed, and the user cannot free, decommit,
 * re-protect or unmap it (mm/RULES.md decision 4).
 *
 * Commit is not charged against anything: a committed page takes a frame only when it is
 * touched.  A fault that finds no frame relieves the memory pressure (the trimmer and the
 * modified page writer, mm/RULES.md "Paging") without the lock and retries once; after that
 * it is an access violation.
 *
 * Paging (mm/RULES.md, "Paging").  A resident page of a VAD_PRIVATE range whose frame no
 * lock holds is pageable: uvm_trim replaces its PTE by a transition PTE (NT's layout, pt.h)
 * and gives the frame to the modified list.  Its page-array word stays as it was (the
 * protection): the PTE is the truth for where the page is, resident, in transition (a
 * frame on a list), in the pagefile (a slot), or nowhere (demand zero).  A fault on a
 * transition PTE takes the frame back (soft); one on a pagefile PTE reads the slot into a
 * new frame (hard), the address-space lock released around the read and the page marked by
 * a transition PTE to its frame, which the PFN database says is being read, so a fault that
 * collides with it waits, and a decommit meanwhile leaves the frame to the read's end.
 */
#include "mm/uvm.h"
#include "include/wdm.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/smp/percpu.h"
#include "kernel/trap.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/memtype.h"
#include "mm/mm.h"
#include "mm/mmproc.h"
#include "mm/pagefile.h"
#include "mm/pool.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/tlb.h"
#include "mm/vad.h"

#define UVM_TAG 0x206D7655u /* 'Uvm ' */

#define PS_PROTECT 0xFFull
#define PS_PARKED 0x100ull
#define PS_FRAME (~(PAGE_SIZE - 1))
#define CR3_PML4 0x000FFFFFFFFFF000ull /* CR3's PML4 address, bits 12-51 (no PCIDs) */

struct uvm_pages {
	uint64_t npages;
	uint64_t page[];
};

struct range {
	uint64_t start, end;
};

/* ---- protections ------------------------------------------------------------------- */

/* The protections a user page can have.  PAGE_EXECUTE_READWRITE is W^X-refused (mm/RULES.md decision 3
 * in spirit); WRITECOPY needs sections; GUARD, NOCACHE and WRITECOMBINE are not supported. */
static bool protect_valid(ULONG protect)
{
	switch (protect) {
	case PAGE_NOACCESS:
	case PAGE_READONLY:
	case PAGE_READWRITE:
	case PAGE_EXECUTE:
	case PAGE_EXECUTE_READ:
		return true;
	default:
		return false;
	}
}

static bool protect_executable(uint32_t protect)
{
	return protect == PAGE_EXECUTE || protect == PAGE_EXECUTE_READ;
}

/* Whether a page of this protection may be read, written or executed.  x86 cannot make a
 * present page executable but unreadable: PAGE_EXECUTE reads like PAGE_EXECUTE_READ. */
static bool protect_allows(uint32_t protect, bool write, bool exec)
{
	if (protect == 0 || protect == PAGE_NOACCESS)
		return false;
	if (write)
		return protect == PAGE_READWRITE;
	if (exec)
		return protect_executable(protect);
	return true;
}

static struct pt_attrs protect_attrs(uint32_t protect, enum memtype type)
{
	return (struct pt_attrs){ .write = protect == PAGE_READWRITE, .exec = protect_executable(protect),
				  .user = true, .type = type };
}

/* ---- per-page state ---------------------------------------------------------------- */

static struct uvm_pages *pages_of(const struct vad *v)
{
	return v->kind == VAD_MDL ? NULL : v->owner;
}

/* Give v its page array, every page set to `protect` (0: reserved).  NULL when pool ran out. */
static struct uvm_pages *pages_create(struct vad *v, uint32_t protect)
{
	uint64_t n = (v->end - v->start) >> PAGE_SHIFT;
	struct uvm_pages *pg = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *pg + n * sizeof pg->page[0], UVM_TAG);
	if (!pg)
		return NULL;
	pg->npages = n;
	for (uint64_t i = 0; i < n; i++)
		pg->page[i] = protect;
	v->owner = pg;
	return pg;
}

static void pages_destroy(struct vad *v)
{
	struct uvm_pages *pg = pages_of(v);
	if (pg)
		ExFreePoolWithTag(pg, UVM_TAG);
	v->owner = NULL;
}

static uint64_t page_index(const struct vad *v, uint64_t va) { return (va - v->start) >> PAGE_SHIFT; }

/* ---- paging: software PTEs and the faults on them ---------------------------------- */

/* What resolving a fault came to. */
enum fault_result {
	FR_REFUSED,      /* a real access violation */
	FR_DONE,         /* resident: retry the access */
	FR_RETRY,        /* something changed meanwhile: retry the access (it may fault again) */
	FR_HARD,         /* a pagefile PTE: read it in (page_in), the lock released around it */
	FR_BUSY,         /* a read of this page is in progress: wait for it (a collided fault) */
	FR_INPAGE_ERROR, /* the read failed: STATUS_IN_PAGE_ERROR */
	FR_IRQL,         /* a trimmed page touched at DISPATCH_LEVEL or above: 0x0A */
	FR_NO_FRAME,     /* no frame (or page-table frame) left, nothing changed: relieve the
			  * pressure without the lock and retry once (relieve_and_relock) */
};
struct fault_need {
	uint64_t va, pte_pa;
	uint32_t slot;
	pfn_t pfn;
	NTSTATUS io; /* FR_INPAGE_ERROR: the device's status of the failed read (this fault's own) */
};

static struct uvm_paging_stats paging;

/* NT's 5-bit MM_ protection for the Protection field of a software PTE. */
static unsigned mm_protection(uint32_t protect)
{
	switch (protect) {
	case PAGE_READONLY:
		return 1;
	case PAGE_EXECUTE:
		return 2;
	case PAGE_EXECUTE_READ:
		return 3;
	case PAGE_READWRITE:
		return 4;
	default:
		return 0x18; /* MM_NOACCESS */
	}
}

/* The 4 KiB leaf of user page va as it is in the tables (valid or software), and its
 * physical address; 0 (and *pte_pa 0) when no page table holds it. */
static uint64_t page_leaf(struct mm_process *mm, uint64_t va, uint64_t *pte_pa)
{
	struct pt_query q;
	pt_query(&mm->root, va, &q);
	*pte_pa = q.level == 1 ? q.entry_pa[1] : 0;
	return q.level == 1 ? q.entry[1] : 0;
}

/* A soft fault: the transition frame of the page at va back in its PTE. */
static void map_taken_back(struct mm_process *mm, uint64_t va, pfn_t pfn, uint32_t protect, uint32_t slot)
{
	if (!pt_map(&mm->root, va, pfn << PAGE_SHIFT, PAGE_SIZE, protect_attrs(protect, memtype_of_frame(pfn)), 0))
		PANIC("map_taken_back: the page table of 0x%lx is gone", va); /* its PTE was in it */
	/* A page valid again keeps no pagefile copy (RULES "Paging": no clean re-trim). */
	if (slot)
		pagefile_free_slot(slot);
	__atomic_fetch_add(&paging.soft_faults, 1, __ATOMIC_RELAXED);
}

/* A software PTE of page va (not resident, not parked) resolved as far as it can be under
 * the lock: FR_DONE after a soft fault, FR_HARD or FR_BUSY with *need filled, FR_REFUSED
 * for none (a demand-zero page: the caller gives it a frame). */
static enum fault_result software_fault(struct mm_process *mm, uint64_t va, uint32_t protect, bool may_page,
				       struct fault_need *need)
{
	for (;;) {
		uint64_t pte_pa, e = page_leaf(mm, va, &pte_pa);
		struct pt_sw sw;
		pt_decode_software(e, &sw);
		/* Pageable memory is touched only below DISPATCH_LEVEL (NT: 0x0A), a soft fault
		 * included: the rule must not depend on whether the frame was still there. */
		if (!may_page && (sw.kind == PT_SW_PAGEFILE || sw.kind == PT_SW_TRANSITION))
			return FR_IRQL;
		if (sw.kind == PT_SW_PAGEFILE) {
			*need = (struct fault_need){ .va = va, .pte_pa = pte_pa, .slot = sw.offset, .pfn = PFN_INVALID };
			return FR_HARD;
		}
		if (sw.kind != PT_SW_TRANSITION)
			return FR_REFUSED;
		uint32_t slot;
		switch (pfn_take_back(sw.pfn, pte_pa, &slot)) {
		case PFN_TAKE_OK:
			map_taken_back(mm, va, sw.pfn, protect, slot);
			return FR_DONE;
		case PFN_TAKE_BUSY:
			*need = (struct fault_need){ .va = va, .pte_pa = pte_pa, .pfn = sw.pfn };
			return FR_BUSY;
		case PFN_TAKE_GONE:
			break; /* repurposed meanwhile: its PTE is a pagefile PTE now, read again */
		}
	}
}

/* Make the committed page at va (in v) resident for this access: its transition or parked
 * frame, or a new zeroed one, mapped with the page's protection (a pagefile page: FR_HARD,
 * for page_in).  FR_REFUSED when the page is not committed or its protection refuses the
 * access; FR_NO_FRAME when no frame (or page-table frame) is left. */
static enum fault_result page_fault_in(struct mm_process *mm, struct vad *v, uint64_t va, bool write, bool exec,
				       bool may_page, struct fault_need *need)
{
	struct uvm_pages *pg = pages_of(v);
	if (!pg)
		return FR_REFUSED;
	uint64_t i = page_index(v, va), s = pg->page[i];
	uint32_t protect = s & PS_PROTECT;
	if (!protect_allows(protect, write, exec))
		return FR_REFUSED;
	bool parked = s & PS_PARKED;
	if (!parked && v->kind == VAD_PRIVATE) {
		enum fault_result r = software_fault(mm, va, protect, may_page, need);
		if (r != FR_REFUSED)
			return r;
	}
	/* W^X across privilege levels (mm/RULES.md decision 3): a parked frame ring 0 executes
	 * is never mapped writable to ring 3; the access is an access violation.  uvm_protect and
	 * commit refuse PAGE_READWRITE for such a frame; this is a page made PAGE_READWRITE while
	 * parked, before its frame became executable. */
	if (parked && protect == PAGE_READWRITE && mdl_ring_0_executes_any_frame() &&
	    mdl_frame_executable_in_ring_0((s & PS_FRAME) >> PAGE_SHIFT))
		return FR_REFUSED;
	pfn_t pfn = parked ? (s & PS_FRAME) >> PAGE_SHIFT : pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
	if (pfn == PFN_INVALID)
		return FR_NO_FRAME;
	if (!pt_map(&mm->root, va, pfn << PAGE_SHIFT, PAGE_SIZE, protect_attrs(protect, memtype_of_frame(pfn)), 0)) {
		if (!parked)
			pfn_free(pfn);
		return FR_NO_FRAME; /* a 4 KiB user leaf fails only for want of a page-table frame */
	}
	pg->page[i] = protect;
	return FR_DONE;
}

/* A hard fault on the pagefile page need->va, entered and left with the address-space lock
 * held (*irql the IRQL from before it), released around the read: a frame marked as being
 * read for the PTE (pfn_alloc_inpage), the PTE a transition PTE to it (so the trimmer
 * passes it by, a collided fault waits, a decommit leaves the frame to this read), the slot
 * read into it through an MDL, then the page mapped and its slot freed.  A read that fails
 * puts the pagefile PTE back (the page is still there, only unreadable now):
 * FR_INPAGE_ERROR, need->io the device's status.  A page decommitted during the read: FR_RETRY.
 * No frame to read into: FR_NO_FRAME, the PTE untouched. */
static enum fault_result page_in(struct mm_process *mm, struct fault_need *need, KIRQL *irql)
{
	/* The read waits: it needs an IRQL below DISPATCH_LEVEL before the lock was taken. */
	if (*irql >= DISPATCH_LEVEL)
		return FR_REFUSED;
	struct vad *v = vad_find(mm, need->va);
	struct uvm_pages *pg = v ? pages_of(v) : NULL;
	if (!pg)
		return FR_REFUSED;
	pfn_t pfn = pfn_alloc_inpage(need->pte_pa, need->slot, PFN_OWNER_KERNEL);
	if (pfn == PFN_INVALID)
		return FR_NO_FRAME;
	uint32_t protect = pg->page[page_index(v, need->va)] & PS_PROTECT;
	pt_set_software(&mm->root, need->va, pt_transition_pte(pfn, mm_protection(protect)));
	mm_space_unlock(mm, *irql);
	NTSTATUS st = pagefile_read(pfn, need->slot);
	*irql = mm_space_lock(mm);
	if (pfn_inpage_done(pfn)) {
		/* Decommitted or released meanwhile: the frame went; the slot is this read's. */
		pagefile_free_slot(need->slot);
		return FR_RETRY;
	}
	/* Still this page's: no one else writes a transition PTE whose frame is being read, and
	 * the VAD cannot have gone without the decommit above. */
	v = vad_find(mm, need->va);
	pg = pages_of(v);
	uint64_t i = page_index(v, need->va);
	protect = pg->page[i] & PS_PROTECT;
	if (!NT_SUCCESS(st)) {
		pt_set_software(&mm->root, need->va, pt_pagefile_pte(0, need->slot, mm_protection(protect)));
		pfn_free(pfn);
		need->io = st;
		__atomic_fetch_add(&paging.inpage_errors, 1, __ATOMIC_RELAXED);
		return FR_INPAGE_ERROR;
	}
	pfn_t frame = pfn;
	if (protect == PAGE_NOACCESS) {
		/* Made NOACCESS during the read: parked, as page_set_protect would have. */
		pt_set_software(&mm->root, need->va, 0);
		pg->page[i] = protect | PS_PARKED | (frame << PAGE_SHIFT);
	} else if (!pt_map(&mm->root, need->va, frame << PAGE_SHIFT, PAGE_SIZE, protect_attrs(protect, memtype_of_frame(frame)),
			   0)) {
		PANIC("page_in: the page table of 0x%lx is gone", need->va);
	}
	pagefile_free_slot(need->slot);
	__atomic_fetch_add(&paging.hard_faults, 1, __ATOMIC_RELAXED);
	return FR_DONE;
}

/* A collided fault: wait, without the lock, until the read into need->pfn for need's PTE is
 * over (the frame no longer marked as being read for it), at PASSIVE_LEVEL with interrupts
 * on as KeWaitForSingleObject waits.  False (nothing waited) at DISPATCH_LEVEL or above. */
static bool wait_for_inpage(const struct fault_need *need, KIRQL irql)
{
	if (irql >= DISPATCH_LEVEL)
		return false;
	__atomic_fetch_add(&paging.collided_faults, 1, __ATOMIC_RELAXED);
	pfn_wait_inpage(need->pfn, need->pte_pa);
	return true;
}

/* The software PTE of page va (not resident, not parked) cleared: a transition frame freed
 * (or left to the I/O that holds it), a pagefile slot freed. */
static void release_software(struct mm_process *mm, uint64_t va)
{
	for (;;) {
		uint64_t pte_pa, e = page_leaf(mm, va, &pte_pa);
		struct pt_sw sw;
		pt_decode_software(e, &sw);
		uint32_t slot = 0;
		if (sw.kind == PT_SW_ZERO || sw.kind == PT_SW_VALID)
			return;
		if (sw.kind == PT_SW_TRANSITION && !pfn_release_transition(sw.pfn, pte_pa, &slot))
			continue; /* repurposed meanwhile: a pagefile PTE now */
		if (sw.kind == PT_SW_PAGEFILE)
			slot = sw.offset;
		pt_set_software(&mm->root, va, 0);
		if (slot)
			pagefile_free_slot(slot);
		return;
	}
}

/* Give page i of v the protection `protect` (committing it if it was only reserved).  A
 * resident page's PTE changes now; made PAGE_NOACCESS it is unmapped and its frame parked.
 * A demand-zero or parked page gets the new rights when it is next touched. */
static void page_set_protect(struct mm_process *mm, struct vad *v, struct uvm_pages *pg, uint64_t i, uint32_t protect)
{
	uint64_t va = v->start + i * PAGE_SIZE, s = pg->page[i];
	pg->page[i] = (s & ~PS_PROTECT) | protect;
	if (!(s & PS_PROTECT) || (s & PS_PARKED))
		return;
	struct pt_query q;
	pt_query(&mm->root, va, &q);
	if (!q.present)
		return;
	if (protect == PAGE_NOACCESS) {
		pt_unmap(&mm->root, va, PAGE_SIZE);
		pg->page[i] = protect | PS_PARKED | (q.pa & PS_FRAME);
	} else if (!pt_protect(&mm->root, va, PAGE_SIZE, protect_attrs(protect, q.eff.type))) {
		/* Only a large leaf needs a table to change one page; user pages are 4 KiB. */
		PANIC("page_set_protect: could not re-protect the user page at 0x%lx", va);
	}
}

/* The frame behind page i of v (resident or parked), or PFN_INVALID for none. */
static pfn_t page_frame(struct mm_process *mm, const struct vad *v, const struct uvm_pages *pg, uint64_t i)
{
	uint64_t s = pg->page[i];
	if (s & PS_PARKED)
		return (s & PS_FRAME) >> PAGE_SHIFT;
	if (!(s & PS_PROTECT))
		return PFN_INVALID;
	struct pt_query q;
	pt_query(&mm->root, v->start + i * PAGE_SIZE, &q);
	return q.present ? q.pa >> PAGE_SHIFT : PFN_INVALID;
}

/* Whether a page of v in [start, end) has a frame locked by MmProbeAndLockPages: freeing it
 * would be PFN_LIST_CORRUPT, and NT keeps such a frame until its unlock, which mdlab's
 * frame allocator cannot do. */
static bool range_has_locked_frame(struct mm_process *mm, const struct vad *v, uint64_t start, uint64_t end)
{
	const struct uvm_pages *pg = pages_of(v);
	for (uint64_t va = start; pg && va < end; va += PAGE_SIZE) {
		pfn_t pfn = page_frame(mm, v, pg, page_index(v, va));
		if (pfn != PFN_INVALID && pfn_page_locks(pfn))
			return true;
	}
	return false;
}

/* Whether giving the pages of v in [start, end) the protection `protect` would make a frame
 * that a system mapping executes writable by ring 3 (mm/RULES.md decision 3): its resident
 * or parked frame.  One test of a count while no system mapping is executable. */
static bool range_would_write_ring_0_code(struct mm_process *mm, const struct vad *v, uint64_t start, uint64_t end,
					  uint32_t protect)
{
	const struct uvm_pages *pg = pages_of(v);
	if (protect != PAGE_READWRITE || !pg || !mdl_ring_0_executes_any_frame())
		return false;
	for (uint64_t va = start; va < end; va += PAGE_SIZE) {
		pfn_t pfn = page_frame(mm, v, pg, page_index(v, va));
		if (pfn != PFN_INVALID && mdl_frame_executable_in_ring_0(pfn))
			return true;
	}
	return false;
}

/* Page i of v back to reserved: its frame (resident or parked) unmapped and freed. */
static void page_decommit(struct mm_process *mm, struct vad *v, struct uvm_pages *pg, uint64_t i)
{
	uint64_t va = v->start + i * PAGE_SIZE;
	pfn_t pfn = page_frame(mm, v, pg, i);
	bool parked = pg->page[i] & PS_PARKED;
	if (pfn != PFN_INVALID && !parked)
		pt_unmap(&mm->root, va, PAGE_SIZE);
	else if (!parked && v->kind == VAD_PRIVATE)
		release_software(mm, va);
	pg->page[i] = 0;
	if (pfn != PFN_INVALID)
		pfn_free_user(pfn); /* the modified page writer may still hold it */
}

/* Remove v and everything under it: the address space's frames freed, an MDL's only
 * unmapped. */
static void vad_release(struct mm_process *mm, struct vad *v)
{
	struct uvm_pages *pg = pages_of(v);
	for (uint64_t i = 0; pg && i < pg->npages; i++)
		if (pg->page[i])
			page_decommit(mm, v, pg, i);
	pt_unmap(&mm->root, v->start, v->end - v->start);
	pages_destroy(v);
	vad_remove(mm, v);
}

/* ---- NtAllocateVirtualMemory ------------------------------------------------------- */

/* [base, base + size) rounded out to pages, its start down to `align`, inside the process's
 * user range: STATUS_INVALID_PARAMETER when empty, wrapping, below MM_LOWEST_USER_ADDRESS or
 * above the highest user address (NT's answer; mm/RULES.md decision 4's STATUS_INVALID_ADDRESS is for
 * MDL mappings). */
static NTSTATUS user_range(struct mm_process *mm, uint64_t base, uint64_t size, uint64_t align, struct range *r)
{
	if (!size || base + size < base || base < MM_LOWEST_USER_ADDRESS || base + size - 1 > mm->highest_user)
		return STATUS_INVALID_PARAMETER;
	r->start = ALIGN_DOWN(base, align);
	r->end = ALIGN_UP(base + size, PAGE_SIZE);
	if (r->end - 1 > mm->highest_user)
		return STATUS_INVALID_PARAMETER;
	return STATUS_SUCCESS;
}

/* MEM_RESERVE (and MEM_COMMIT with it): a new VAD_PRIVATE at *base rounded down to 64 KiB,
 * or where the kernel finds room (the lowest free 64 KiB-aligned range) when *base is 0. */
static NTSTATUS reserve(struct mm_process *mm, uint64_t *base, uint64_t *size, bool commit, uint32_t protect)
{
	struct range r;
	if (*base) {
		NTSTATUS st = user_range(mm, *base, *size, MM_ALLOCATION_GRANULARITY, &r);
		if (!NT_SUCCESS(st))
			return st;
		if (vad_find_overlap(mm, r.start, r.end))
			return STATUS_CONFLICTING_ADDRESSES;
	} else {
		if (*size > mm->highest_user)
			return STATUS_INVALID_PARAMETER;
		uint64_t len = ALIGN_UP(*size, PAGE_SIZE);
		r.start = vad_find_free(mm, len, MM_ALLOCATION_GRANULARITY, MM_LOWEST_USER_ADDRESS, mm->highest_user + 1);
		if (!r.start)
			return STATUS_NO_MEMORY;
		r.end = r.start + len;
	}
	struct vad *v = vad_insert(mm, r.start, r.end, VAD_PRIVATE, protect);
	if (!v)
		return STATUS_INSUFFICIENT_RESOURCES;
	if (commit && !pages_create(v, protect)) {
		vad_remove(mm, v);
		return STATUS_INSUFFICIENT_RESOURCES;
	}
	*base = r.start;
	*size = r.end - r.start;
	return STATUS_SUCCESS;
}

/* MEM_COMMIT alone: pages of one existing VAD_PRIVATE reservation.  Committing a committed
 * page is allowed (NT) and gives it the new protection, its contents kept. */
static NTSTATUS commit(struct mm_process *mm, uint64_t *base, uint64_t *size, uint32_t protect)
{
	struct range r;
	NTSTATUS st = user_range(mm, *base, *size, PAGE_SIZE, &r);
	if (!NT_SUCCESS(st))
		return st;
	struct vad *v = vad_find(mm, r.start);
	if (!v || r.end > v->end || v->kind != VAD_PRIVATE)
		return STATUS_CONFLICTING_ADDRESSES;
	/* A committed page re-committed read-write is re-protected: refused as uvm_protect
	 * refuses it (mm/RULES.md decision 3), nothing changed. */
	if (range_would_write_ring_0_code(mm, v, r.start, r.end, protect))
		return STATUS_INVALID_PAGE_PROTECTION;
	struct uvm_pages *pg = pages_of(v);
	if (!pg && !(pg = pages_create(v, 0)))
		return STATUS_INSUFFICIENT_RESOURCES;
	for (uint64_t va = r.start; va < r.end; va += PAGE_SIZE)
		page_set_protect(mm, v, pg, page_index(v, va), protect);
	*base = r.start;
	*size = r.end - r.start;
	return STATUS_SUCCESS;
}

static NTSTATUS allocate(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type, ULONG protect)
{
	if (!mm || !base || !size)
		return STATUS_INVALID_PARAMETER;
	if (mm->terminating)
		return STATUS_PROCESS_IS_TERMINATING;
	if (!(type & (MEM_COMMIT | MEM_RESERVE)) || (type & ~(ULONG)(MEM_COMMIT | MEM_RESERVE)) || !*size)
		return STATUS_INVALID_PARAMETER;
	if (!protect_valid(protect))
		return STATUS_INVALID_PAGE_PROTECTION;
	/* A commit with no address reserves too: the kernel picks the range. */
	if (!*base || (type & MEM_RESERVE))
		return reserve(mm, base, size, type & MEM_COMMIT, protect);
	return commit(mm, base, size, protect);
}

/* ---- NtFreeVirtualMemory ----------------------------------------------------------- */

/* Why the user may not free (or re-protect) in v: the MDL mapping and the image are views
 * in NT's terms (mm/RULES.md decision 4: STATUS_UNABLE_TO_DELETE_SECTION); the stack and the parameter
 * page are the kernel's to manage. */
static NTSTATUS free_refusal(const struct vad *v)
{
	switch (v->kind) {
	case VAD_PRIVATE:
		return STATUS_SUCCESS;
	case VAD_MDL:
	case VAD_IMAGE:
		return STATUS_UNABLE_TO_DELETE_SECTION;
	default:
		return STATUS_INVALID_PARAMETER;
	}
}

/*
 * MEM_DECOMMIT: the pages touching [*base, *base + *size) go back to reserved (size 0: from
 * *base to the end of the reservation).  MEM_RELEASE: the whole reservation, *base its start,
 * *size 0 or its whole size (mdlab never splits a reservation).
 *   nothing at *base                        STATUS_MEMORY_NOT_ALLOCATED
 *   the range runs past the reservation,    STATUS_UNABLE_TO_FREE_VM
 *   or holds a page locked for an MDL
 *   MEM_RELEASE not at the start            STATUS_FREE_VM_NOT_AT_BASE
 *   MEM_RELEASE of part of a reservation    STATUS_INVALID_PARAMETER
 */
void (*uvm_test_free_window)(struct mm_process *mm, uint64_t start, uint64_t end);

static NTSTATUS free_range(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type)
{
	if (!mm || !base || !size || (type != MEM_DECOMMIT && type != MEM_RELEASE))
		return STATUS_INVALID_PARAMETER;
	uint64_t b = *base, s = *size;
	if (b > mm->highest_user || (s && (b + s < b || b + s - 1 > mm->highest_user)))
		return STATUS_INVALID_PARAMETER;
	uint64_t start = ALIGN_DOWN(b, PAGE_SIZE);
	struct vad *v = vad_find(mm, start);
	if (!v)
		return STATUS_MEMORY_NOT_ALLOCATED;
	NTSTATUS st = free_refusal(v);
	if (!NT_SUCCESS(st))
		return st;
	uint64_t end = s ? ALIGN_UP(b + s, PAGE_SIZE) : v->end;
	if (end > v->end)
		return STATUS_UNABLE_TO_FREE_VM;
	if (type == MEM_RELEASE) {
		if (start != v->start)
			return STATUS_FREE_VM_NOT_AT_BASE;
		if (end != v->end)
			return STATUS_INVALID_PARAMETER;
	}
	if (range_has_locked_frame(mm, v, start, end))
		return STATUS_UNABLE_TO_FREE_VM;
	if (uvm_test_free_window)
		uvm_test_free_window(mm, start, end);
	if (type == MEM_RELEASE) {
		vad_release(mm, v);
	} else {
		struct uvm_pages *pg = pages_of(v);
		for (uint64_t va = start; pg && va < end; va += PAGE_SIZE)
			if (pg->page[page_index(v, va)])
				page_decommit(mm, v, pg, page_index(v, va));
	}
	*base = start;
	*size = end - start;
	return STATUS_SUCCESS;
}

/* ---- NtProtectVirtualMemory, NtUnmapViewOfSection ---------------------------------- */

/*
 * The pages touching [*base, *base + *size), all committed and in one VAD, get `protect`;
 * *old receives the first page's previous protection.
 *   not inside one VAD                      STATUS_CONFLICTING_ADDRESSES
 *   an MDL mapping (mm/RULES.md decision 4: refused)    STATUS_INVALID_PAGE_PROTECTION
 *   a page only reserved                    STATUS_NOT_COMMITTED (nothing changed)
 *   PAGE_READWRITE of a page whose frame    STATUS_INVALID_PAGE_PROTECTION (nothing
 *   a system mapping executes (decision 3)  changed)
 * Image, stack and parameter pages can be re-protected like private ones.
 */
static NTSTATUS protect_range(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG protect, ULONG *old)
{
	if (!mm || !base || !size || !old)
		return STATUS_INVALID_PARAMETER;
	if (!protect_valid(protect))
		return STATUS_INVALID_PAGE_PROTECTION;
	struct range r;
	NTSTATUS st = user_range(mm, *base, *size, PAGE_SIZE, &r);
	if (!NT_SUCCESS(st))
		return st;
	struct vad *v = vad_find(mm, r.start);
	if (!v || r.end > v->end)
		return STATUS_CONFLICTING_ADDRESSES;
	if (v->kind == VAD_MDL)
		return STATUS_INVALID_PAGE_PROTECTION;
	struct uvm_pages *pg = pages_of(v);
	for (uint64_t va = r.start; va < r.end; va += PAGE_SIZE)
		if (!pg || !(pg->page[page_index(v, va)] & PS_PROTECT))
			return STATUS_NOT_COMMITTED;
	if (range_would_write_ring_0_code(mm, v, r.start, r.end, protect))
		return STATUS_INVALID_PAGE_PROTECTION;
	*old = pg->page[page_index(v, r.start)] & PS_PROTECT;
	for (uint64_t va = r.start; va < r.end; va += PAGE_SIZE)
		page_set_protect(mm, v, pg, page_index(v, va), protect);
	*base = r.start;
	*size = r.end - r.start;
	return STATUS_SUCCESS;
}

/* There are no section objects, so there is no view to unmap: an MDL mapping is not one
 * (mm/RULES.md decision 4) and neither is anything else, so whatever mm has at base, the
 * answer is the same. */
NTSTATUS uvm_unmap_view(struct mm_process *mm, uint64_t base)
{
	(void)mm;
	(void)base;
	return STATUS_NOT_MAPPED_VIEW;
}

/* ---- the Zw forms ------------------------------------------------------------------ */

/* The memory of the process a handle names.  Only NtCurrentProcess() names one; the kernel
 * running unattached has no user address space, so the handle names nothing then either. */
static struct mm_process *memory_of(HANDLE h)
{
	return h == NtCurrentProcess() ? mm_current() : NULL;
}

NTSTATUS ZwAllocateVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, ULONG_PTR ZeroBits, PSIZE_T RegionSize,
				 ULONG AllocationType, ULONG Protect)
{
	struct mm_process *mm = memory_of(ProcessHandle);
	if (!mm)
		return STATUS_INVALID_HANDLE;
	/* ZeroBits (an address-width limit) is not implemented: 0 only. */
	if (!BaseAddress || !RegionSize || ZeroBits)
		return STATUS_INVALID_PARAMETER;
	uint64_t base = (uint64_t)*BaseAddress, size = *RegionSize;
	NTSTATUS st = uvm_allocate(mm, &base, &size, AllocationType, Protect);
	if (NT_SUCCESS(st)) {
		*BaseAddress = (PVOID)base;
		*RegionSize = size;
	}
	return st;
}

NTSTATUS ZwFreeVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, PSIZE_T RegionSize, ULONG FreeType)
{
	struct mm_process *mm = memory_of(ProcessHandle);
	if (!mm)
		return STATUS_INVALID_HANDLE;
	if (!BaseAddress || !RegionSize)
		return STATUS_INVALID_PARAMETER;
	uint64_t base = (uint64_t)*BaseAddress, size = *RegionSize;
	NTSTATUS st = uvm_free(mm, &base, &size, FreeType);
	if (NT_SUCCESS(st)) {
		*BaseAddress = (PVOID)base;
		*RegionSize = size;
	}
	return st;
}

NTSTATUS ZwProtectVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, PSIZE_T RegionSize, ULONG NewProtect,
				PULONG OldProtect)
{
	struct mm_process *mm = memory_of(ProcessHandle);
	if (!mm)
		return STATUS_INVALID_HANDLE;
	if (!BaseAddress || !RegionSize)
		return STATUS_INVALID_PARAMETER;
	uint64_t base = (uint64_t)*BaseAddress, size = *RegionSize;
	NTSTATUS st = uvm_protect(mm, &base, &size, NewProtect, OldProtect);
	if (NT_SUCCESS(st)) {
		*BaseAddress = (PVOID)base;
		*RegionSize = size;
	}
	return st;
}

NTSTATUS ZwUnmapViewOfSection(HANDLE ProcessHandle, PVOID BaseAddress)
{
	struct mm_process *mm = memory_of(ProcessHandle);
	if (!mm)
		return STATUS_INVALID_HANDLE;
	return uvm_unmap_view(mm, (uint64_t)BaseAddress);
}

/* ---- faults and probes ------------------------------------------------------------- */

static enum fault_result resolve_fault(struct mm_process *mm, uint64_t va, uint64_t err, bool may_page,
				       struct fault_need *need)
{
	/* A protection fault on a present page, or a reserved-bit one, is real. */
	if (!mm || (err & (PF_P | PF_RSVD)) || va >= USER_VA_END || va > mm->highest_user)
		return FR_REFUSED;
	bool exec = err & PF_ID;
	/* The kernel never runs user code (SMEP would refuse it even once resident). */
	if (exec && !(err & PF_U))
		return FR_REFUSED;
	struct vad *v = vad_find(mm, va);
	if (!v)
		return FR_REFUSED;
	uint64_t page = ALIGN_DOWN(va, PAGE_SIZE);
	struct pt_query q;
	pt_query(&mm->root, page, &q);
	if (q.present) {
		/* Not present when it faulted, resident now: another CPU's fault made it so
		 * before this one took the lock (a collided fault's retry that runs while the
		 * reader still maps the page).  Retried when the PTE allows the access, and only
		 * when this CPU translates through mm's tables: a CPU whose CR3 holds another
		 * root would fault again on the same address for ever.  x86 caches no not-present
		 * translation (SDM Vol. 3, 4.10.2.3), so the retry walks the tables anew; the
		 * INVLPG says so explicitly, and drops any entry of older rights. */
		bool allowed = q.eff.user && (!(err & PF_W) || q.eff.write) && (!exec || q.eff.exec);
		if (!allowed || (read_cr3() & CR3_PML4) != mm->root.pml4)
			return FR_REFUSED;
		tlb_flush_range_local(&mm->root, page, PAGE_SIZE);
		return FR_RETRY;
	}
	return page_fault_in(mm, v, page, err & PF_W, exec, may_page, need);
}

static uint64_t make_resident_pages(struct mm_process *mm, uint64_t page, uint64_t n, bool write, bool may_page,
				    enum fault_result *stop, struct fault_need *need)
{
	*stop = FR_REFUSED;
	/* Only whole pages at or below the highest user address. */
	uint64_t room = page <= mm->highest_user ? (mm->highest_user - page + 1) / PAGE_SIZE : 0;
	uint64_t limit = n < room ? n : room, done = 0;
	while (done < limit) {
		/* The resident pages with the access asked, one walk per page table (pt.h). */
		done += pt_translate_run(&mm->root, page + done * PAGE_SIZE, limit - done, write, true, NULL, NULL);
		if (done == limit)
			break;
		uint64_t p = page + done * PAGE_SIZE;
		struct pt_query q;
		pt_query(&mm->root, p, &q);
		if (q.present)
			return done; /* resident, but not user-accessible or not writable */
		struct vad *v = vad_find(mm, p);
		enum fault_result r = v ? page_fault_in(mm, v, p, write, false, may_page, need) : FR_REFUSED;
		if (r != FR_DONE) {
			*stop = r;
			return done;
		}
		done++;
	}
	return done;
}

static uint64_t resident_pages_status(struct mm_process *mm, uint64_t page, uint64_t n, bool write,
				      struct uvm_resident_stop *stop, ULONG_PTR caller);

__attribute__((noipa)) NTSTATUS uvm_make_resident_status(struct mm_process *mm, uint64_t va, uint64_t len,
							  bool write, struct uvm_resident_stop *stop)
{
	struct uvm_resident_stop own;
	if (!stop)
		stop = &own;
	*stop = (struct uvm_resident_stop){ .status = STATUS_ACCESS_VIOLATION, .io = STATUS_SUCCESS, .va = va };
	if (!mm)
		return STATUS_ACCESS_VIOLATION;
	if (!len)
		return stop->status = STATUS_SUCCESS;
	if (va + len < va || va + len - 1 > mm->highest_user)
		return STATUS_ACCESS_VIOLATION;
	uint64_t first = ALIGN_DOWN(va, PAGE_SIZE), n = (va + len - 1 - first) / PAGE_SIZE + 1;
	/* A 0x0A's P4 is the return address into the probing routine (ProbeForWrite,
	 * MmProbeAndLockSelectedPages), not into this one. */
	resident_pages_status(mm, first, n, write, stop, (ULONG_PTR)__builtin_return_address(0));
	/* The first page's stop is at the buffer's own address, as a probe touching it. */
	if (stop->va < va)
		stop->va = va;
	return stop->status;
}

/* ---- the process's own mappings ------------------------------------------------------ */

static bool map_frames(struct mm_process *mm, uint64_t va, const uint64_t *pfns, uint64_t npages, int kind, bool write,
		       bool exec)
{
	if (!npages || (va & (PAGE_SIZE - 1)) || va < MM_LOWEST_USER_ADDRESS || npages > mm->highest_user >> PAGE_SHIFT ||
	    va + npages * PAGE_SIZE - 1 > mm->highest_user)
		PANIC("uvm_map_frames: bad range 0x%lx, %lu pages", va, npages);
	if (write && exec)
		PANIC("uvm_map_frames: a writable and executable mapping at 0x%lx (W^X)", va);
	if (kind < VAD_PRIVATE || kind > VAD_MDL)
		PANIC("uvm_map_frames: bad VAD kind %d", kind);
	uint32_t protect = exec ? PAGE_EXECUTE_READ : write ? PAGE_READWRITE : PAGE_READONLY;
	struct vad *v = vad_insert(mm, va, va + npages * PAGE_SIZE, kind, protect);
	if (!v)
		return false;
	if (kind != VAD_MDL && !pages_create(v, protect)) {
		vad_remove(mm, v);
		return false;
	}
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t page = va + i * PAGE_SIZE;
		if (!pt_map(&mm->root, page, pfns[i] << PAGE_SHIFT, PAGE_SIZE, protect_attrs(protect, memtype_of_frame(pfns[i])),
			    0)) {
			/* The frames stay the caller's: unmap, don't free. */
			if (i)
				pt_unmap(&mm->root, va, i * PAGE_SIZE);
			pages_destroy(v);
			vad_remove(mm, v);
			return false;
		}
	}
	return true;
}

/* ---- the public entries: each under the address-space lock (mmproc.h) ------------- */

static uint64_t free_frames(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.free;
}

/* A frame allocation that failed under the lock (a fault path's FR_NO_FRAME, a commit's
 * STATUS_INSUFFICIENT_RESOURCES) (mm/RULES.md, "Paging", memory pressure): the address-space
 * lock dropped (the relief trims this space too, and waits for the writer), the pressure
 * relieved, the lock taken again; whether to retry, once: the relief ran and made standby
 * frames.  Where it may not run (the caller's IRQL, a lock the caller holds) nothing waits
 * and the fault fails as it would have. */
static bool relieve_and_relock(struct mm_process *mm, KIRQL *irql)
{
	mm_space_unlock(mm, *irql);
	bool again = uvm_relieve_pressure() != 0;
	*irql = mm_space_lock(mm);
	return again;
}

/* The argument checks without a lock (they read nothing the lock guards: highest_user is
 * set once); everything else under it.  terminating is read under it too. */
NTSTATUS uvm_allocate(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type, ULONG protect)
{
	if (!mm)
		return STATUS_INVALID_PARAMETER;
	KIRQL irql = mm_space_lock(mm);
	NTSTATUS st = allocate(mm, base, size, type, protect);
	/* Its pool allocations (the VAD, the page array) failed, nothing changed; when that was
	 * for want of a frame (none free), relieved and tried once more. */
	if (st == STATUS_INSUFFICIENT_RESOURCES && !free_frames() && relieve_and_relock(mm, &irql))
		st = allocate(mm, base, size, type, protect);
	mm_space_unlock(mm, irql);
	return st;
}

NTSTATUS uvm_free(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type)
{
	if (!mm)
		return STATUS_INVALID_PARAMETER;
	KIRQL irql = mm_space_lock(mm);
	NTSTATUS st = free_range(mm, base, size, type);
	mm_space_unlock(mm, irql);
	return st;
}

NTSTATUS uvm_protect(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG protect, ULONG *old)
{
	if (!mm)
		return STATUS_INVALID_PARAMETER;
	KIRQL irql = mm_space_lock(mm);
	NTSTATUS st = protect_range(mm, base, size, protect, old);
	mm_space_unlock(mm, irql);
	return st;
}

/* A fault of the kernel on a user page while it holds this lock would recurse (0xF): nothing
 * under the lock touches user memory (mmproc.h). */
NTSTATUS uvm_resolve_fault_status(struct mm_process *mm, uint64_t va, uint64_t err, bool intr, NTSTATUS *io)
{
	*io = STATUS_SUCCESS;
	if (!mm)
		return STATUS_ACCESS_VIOLATION;
	/* Where nothing may wait, code holding an address-space lock, or one ranked after it (the
	 * pool's, the PFN lock), touching a trimmed page is 0x0A, decided before the lock, as
	 * pool_resolve_fault does: taking it here would stop it as a lock-order error (0xC4
	 * 0x2009) or a recursion (0xF) instead.  The PTE alone decides, read without the lock
	 * (pt_leaf_unlocked; the page array, which the lock guards, is not read). */
	if (!(intr && KeGetCurrentIrql() < DISPATCH_LEVEL) && klock_holds_rank_from(KLOCK_PROCESS) &&
	    !(err & (PF_P | PF_RSVD)) && va <= mm->highest_user) {
		struct pt_sw sw;
		pt_decode_software(pt_leaf_unlocked(&mm->root, va), &sw);
		if (sw.kind == PT_SW_TRANSITION || sw.kind == PT_SW_PAGEFILE)
			return UVM_STATUS_PAGEABLE_AT_DISPATCH;
	}
	KIRQL irql = mm_space_lock(mm);
	struct fault_need need;
	enum fault_result r;
	for (bool relieved = false;; relieved = true) {
		r = resolve_fault(mm, va, err, intr && irql < DISPATCH_LEVEL, &need);
		if (r == FR_HARD)
			r = page_in(mm, &need, &irql);
		/* Everything is read again after the relief: the page may have changed meanwhile.
		 * No relief where no page may be waited for (interrupts off). */
		if (r != FR_NO_FRAME || relieved || !intr || !relieve_and_relock(mm, &irql))
			break;
	}
	mm_space_unlock(mm, irql);
	if (r == FR_IRQL)
		return UVM_STATUS_PAGEABLE_AT_DISPATCH;
	if (r == FR_BUSY)
		r = wait_for_inpage(&need, irql) ? FR_RETRY : FR_REFUSED;
	if (r == FR_INPAGE_ERROR) {
		*io = need.io;
		return STATUS_IN_PAGE_ERROR;
	}
	return r == FR_DONE || r == FR_RETRY ? STATUS_SUCCESS : STATUS_ACCESS_VIOLATION;
}

/* The residency walk of a probe: the pages are made resident through the page tables and the
 * page arrays, never by touching them, so no fault happens under the lock.  A trimmed page
 * met at DISPATCH_LEVEL or above is the fault NT's probe would take touching it there: 0x0A
 * (the address, the IRQL, 1 for a write, `caller`: the return address into the probing
 * routine, RULES' 0x0A table), whether its frame is still there or in the pagefile
 * (mm/RULES.md "Paging", IRQL). */
static uint64_t resident_pages_status(struct mm_process *mm, uint64_t page, uint64_t n, bool write,
				      struct uvm_resident_stop *stop, ULONG_PTR caller)
{
	*stop = (struct uvm_resident_stop){ .status = STATUS_SUCCESS, .io = STATUS_SUCCESS, .va = page };
	if (!mm) {
		stop->status = n ? STATUS_ACCESS_VIOLATION : STATUS_SUCCESS;
		return 0;
	}
	/* The probing code's own interrupt state, read before the lock (mm/RULES.md "Paging":
	 * no pageable access with interrupts off). */
	bool may_page = read_rflags() & RFLAGS_IF;
	KIRQL irql = mm_space_lock(mm);
	uint64_t done = 0;
	enum fault_result r = FR_DONE;
	bool relieved = false; /* one relief a walk (relieve_and_relock) */
	while (done < n) {
		struct fault_need need;
		done += make_resident_pages(mm, page + done * PAGE_SIZE, n - done, write,
					    may_page && irql < DISPATCH_LEVEL, &r, &need);
		if (done == n || r == FR_IRQL)
			break;
		/* A pagefile page is read in (the lock released around the read), a page being
		 * read by another fault waited for; then the walk goes on from that page. */
		if (r == FR_HARD) {
			r = page_in(mm, &need, &irql);
		} else if (r == FR_BUSY) {
			mm_space_unlock(mm, irql);
			r = wait_for_inpage(&need, irql) ? FR_RETRY : FR_REFUSED;
			irql = mm_space_lock(mm);
		}
		/* The relief trims this space too, so pages before `done` the walk made resident
		 * may be trimmed again: the walk starts over from the first page, so that its
		 * return means every page it counts is resident (bounded: one relief a walk). */
		if (r == FR_NO_FRAME && !relieved && may_page) {
			relieved = true;
			if (relieve_and_relock(mm, &irql)) {
				r = FR_RETRY;
				done = 0;
			}
		}
		if (r == FR_INPAGE_ERROR) {
			stop->status = STATUS_IN_PAGE_ERROR;
			stop->io = need.io;
		}
		if (r != FR_DONE && r != FR_RETRY)
			break;
	}
	mm_space_unlock(mm, irql);
	if (done < n && r == FR_IRQL)
		KeBugCheckEx(IRQL_NOT_LESS_OR_EQUAL, page + done * PAGE_SIZE, may_page ? irql : UVM_IRQL_INTERRUPTS_OFF,
			     write ? 1 : 0, caller);
	if (done < n && stop->status == STATUS_SUCCESS)
		stop->status = STATUS_ACCESS_VIOLATION;
	stop->va = page + done * PAGE_SIZE;
	return done;
}

/* noipa, as uvm_make_resident_status: __builtin_return_address(0) is the probing routine's
 * return address only while GCC splits no part off the function that reads it (a split
 * part's is inside this file). */
__attribute__((noipa)) uint64_t uvm_make_resident_pages_status(struct mm_process *mm, uint64_t page, uint64_t n,
								bool write, struct uvm_resident_stop *stop)
{
	return resident_pages_status(mm, page, n, write, stop, (ULONG_PTR)__builtin_return_address(0));
}

/* ---- the trimmer (mm/RULES.md, "Paging") ------------------------------------------- */

/* The trimmer's batch: TRIM_BATCH pages of a VAD at a time, their PTEs exchanged first
 * (pt_trim_run_unflushed: one walk a page table), then one flush of the batch's range from
 * every CPU, then its frames to the modified list under one hold of the PFN lock.  64: the
 * flush is one full flush of the process where 64 single-page shootdowns were, and the
 * batch's arrays are 1 KiB of stack. */
#define TRIM_BATCH 64
struct trim_ctx {
	struct mm_process *mm;
	struct uvm_trim_result *res;
	const struct vad *v;
	const struct uvm_pages *pg;
	uint32_t n;
	uint64_t first_va, last_va;
	pfn_t pfn[TRIM_BATCH];
	uint64_t pte_pa[TRIM_BATCH];
};

/* pt_trim_run_unflushed's choice for a valid page: its transition PTE, the frame kept in the
 * batch; 0 (left valid) for a page whose frame a lock holds, a locked frame staying in the
 * working set (the rulebook's decision): the probe locks under this lock, so the count read
 * here cannot rise meanwhile, and the writer's hold on a frame taken back during its write is
 * no lock of the page's. */
static uint64_t trim_pick(void *ctx, uint64_t va, uint64_t pfn, uint64_t pte_pa)
{
	struct trim_ctx *c = ctx;
	uint64_t s = c->pg->page[page_index(c->v, va)];
	if (!(s & PS_PROTECT) || (s & PS_PARKED))
		return 0; /* not a committed page's own frame */
	if (pfn_page_locks(pfn)) {
		c->res->kept_locked++;
		return 0;
	}
	if (!c->n)
		c->first_va = va;
	c->last_va = va;
	c->pfn[c->n] = pfn;
	c->pte_pa[c->n++] = pte_pa;
	return pt_transition_pte(pfn, mm_protection(s & PS_PROTECT));
}

/* Every resident page of one VAD_PRIVATE range that no lock holds leaves the working set, a
 * batch at a time.  No frame goes on a list before the flush that follows its exchange has
 * reached every CPU: until then a CPU may still write it through its old translation, and
 * on the list the writer reads it and the allocator hands it out (RULES "Paging"). */
static void trim_vad(struct vad *v, void *ctx)
{
	struct trim_ctx *c = ctx;
	const struct uvm_pages *pg = pages_of(v);
	if (v->kind != VAD_PRIVATE || !pg)
		return;
	c->v = v;
	c->pg = pg;
	for (uint64_t i = 0; i < pg->npages; i += TRIM_BATCH) {
		uint64_t cnt = pg->npages - i < TRIM_BATCH ? pg->npages - i : TRIM_BATCH;
		c->n = 0;
		pt_trim_run_unflushed(&c->mm->root, v->start + i * PAGE_SIZE, cnt, trim_pick, c);
		if (!c->n)
			continue;
		tlb_flush_range(&c->mm->root, c->first_va, c->last_va + PAGE_SIZE - c->first_va);
		pfn_trimmed_frames(c->pfn, c->pte_pa, c->n);
		c->res->trimmed += c->n;
	}
}

void uvm_trim(struct mm_process *mm, struct uvm_trim_result *res)
{
	memset(res, 0, sizeof *res);
	if (!mm)
		return;
	struct trim_ctx c; /* the batch's arrays are filled before they are read */
	c.mm = mm;
	c.res = res;
	KIRQL irql = mm_space_lock(mm);
	vad_for_each(mm, trim_vad, &c);
	mm_space_unlock(mm, irql);
	__atomic_fetch_add(&paging.trimmed, res->trimmed, __ATOMIC_RELAXED);
}

static bool trim_space(struct mm_process *mm, void *ctx)
{
	struct uvm_trim_result *total = ctx, res = { 0 };
	struct trim_ctx c;
	c.mm = mm;
	c.res = &res;
	vad_for_each(mm, trim_vad, &c); /* mm_for_each_space holds mm's lock */
	total->trimmed += res.trimmed;
	total->kept_locked += res.kept_locked;
	return true;
}

/* The CPU relieving memory pressure (its number + 1; 0: none): one at a time, since a second
 * trim of the same working sets finds nothing the first left and the writer has one gate. */
static uint32_t relief_cpu;

static uint64_t standby_pages(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.standby;
}

/* Spin until no CPU relieves, interrupts on (uvm_relieve_pressure refuses a caller without
 * them): the relieving CPU's shootdowns and its disk's completion may need this one. */
static void wait_for_relief(void)
{
	while (__atomic_load_n(&relief_cpu, __ATOMIC_ACQUIRE))
		cpu_relax();
}

uint64_t uvm_relieve_pressure(void)
{
	/* NT's MiEnsureAvailablePageOrWait: only a thread that may wait waits for the trimmer
	 * and the writer; at DISPATCH_LEVEL, or holding a ranked lock (the trimmer takes every
	 * address-space lock and the pool's; the writer waits for I/O), the allocation fails.
	 * The writer's own allocations (its IRP, a pool page for it) and those of this routine
	 * never relieve again: on this CPU that would wait for itself.  With interrupts off the
	 * caller may not wait either (mm/RULES.md "Paging": no pageable access with interrupts
	 * off): the writer's disk completion and the trim's shootdowns need them, so its
	 * allocation simply fails, as at DISPATCH_LEVEL. */
	struct kcpu *c = this_cpu();
	if (!(read_rflags() & RFLAGS_IF) || KeGetCurrentIrql() >= DISPATCH_LEVEL || c->klock_held || c->mm_relieving ||
	    pagefile_writer_is_mine())
		return 0;
	/* A trimmed frame always goes to the modified list (the trimmer reads no D bit, which a
	 * writable leaf has preset anyway, and a soft fault frees the page's slot), so it reaches
	 * standby only through a write: with no pagefile, or a full one, a trim would take every
	 * working set and paged pool to the modified list for nothing, to fault back.  Then only
	 * what standby has now (mm/RULES.md "Paging", memory pressure). */
	if (!pagefile_can_write())
		return standby_pages();
	uint32_t none = 0;
	if (!__atomic_compare_exchange_n(&relief_cpu, &none, c->number + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		/* Another CPU relieves: its standby pages serve this caller's retry too.  It waits
		 * for nothing this CPU holds (no ranked lock, not the writer's gate). */
		__atomic_fetch_add(&paging.relief_waits, 1, __ATOMIC_RELAXED);
		wait_for_relief();
		return standby_pages();
	}
	c->mm_relieving = true;
	struct uvm_trim_result total = { 0 };
	mm_for_each_space(trim_space, &total);
	__atomic_fetch_add(&paging.trimmed, total.trimmed, __ATOMIC_RELAXED);
	/* The system's working set too: paged pool's unlocked pages (its module trims them). */
	pool_trim_paged();
	pagefile_write_modified();
	c->mm_relieving = false;
	__atomic_fetch_add(&paging.reliefs, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&relief_cpu, 0, __ATOMIC_RELEASE);
	return standby_pages();
}

struct count_ctx {
	struct mm_process *mm;
	struct uvm_ws_counts *out;
};

static void count_vad(struct vad *v, void *ctx)
{
	struct count_ctx *c = ctx;
	struct uvm_pages *pg = pages_of(v);
	for (uint64_t i = 0; pg && i < pg->npages; i++) {
		uint64_t pte_pa, e = page_leaf(c->mm, v->start + i * PAGE_SIZE, &pte_pa);
		struct pt_sw sw;
		pt_decode_software(e, &sw);
		if (sw.kind == PT_SW_VALID)
			c->out->valid++;
		else if (sw.kind == PT_SW_TRANSITION)
			c->out->transition++;
		else if (sw.kind == PT_SW_PAGEFILE)
			c->out->pagefile++;
	}
}

void uvm_working_set(struct mm_process *mm, struct uvm_ws_counts *out)
{
	memset(out, 0, sizeof *out);
	if (!mm)
		return;
	struct count_ctx c = { mm, out };
	KIRQL irql = mm_space_lock(mm);
	vad_for_each(mm, count_vad, &c);
	mm_space_unlock(mm, irql);
}

void uvm_get_paging_stats(struct uvm_paging_stats *out)
{
	out->soft_faults = __atomic_load_n(&paging.soft_faults, __ATOMIC_RELAXED);
	out->hard_faults = __atomic_load_n(&paging.hard_faults, __ATOMIC_RELAXED);
	out->collided_faults = __atomic_load_n(&paging.collided_faults, __ATOMIC_RELAXED);
	out->inpage_errors = __atomic_load_n(&paging.inpage_errors, __ATOMIC_RELAXED);
	out->trimmed = __atomic_load_n(&paging.trimmed, __ATOMIC_RELAXED);
	out->reliefs = __atomic_load_n(&paging.reliefs, __ATOMIC_RELAXED);
	out->relief_waits = __atomic_load_n(&paging.relief_waits, __ATOMIC_RELAXED);
}

bool uvm_map_frames(struct mm_process *mm, uint64_t va, const uint64_t *pfns, uint64_t npages, int kind, bool write,
		    bool exec)
{
	KIRQL irql = mm_space_lock(mm);
	bool ok = map_frames(mm, va, pfns, npages, kind, write, exec);
	mm_space_unlock(mm, irql);
	return ok;
}

void uvm_destroy(struct mm_process *mm)
{
	/* Emptied page tables go with their last page (pt_unmap prunes them), so once every
	 * range is gone the user half of the PML4 is empty: pt_root_destroy checks that. */
	KIRQL irql = mm_space_lock(mm);
	while (mm->vad_root)
		vad_release(mm, mm->vad_root);
	mm_space_unlock(mm, irql);
}

/* ---- copies -------------------------------------------------------------------------- */

/* Whether [va, va + len) (len > 0) lies in mm's user range without wrapping. */
static bool user_span_ok(struct mm_process *mm, uint64_t va, uint64_t len)
{
	return mm && va + len > va && va + len - 1 <= mm->highest_user;
}

/* A fault on a committed demand-zero page is resolved by the #PF handler before SEH sees it;
 * anything else ends the copy with STATUS_ACCESS_VIOLATION (the AC flag is restored by the
 * SEH, closing the SMAP window). */
NTSTATUS uvm_copy_from_user(struct mm_process *mm, void *dst, uint64_t user_src, uint64_t len)
{
	if (!len)
		return STATUS_SUCCESS;
	if (!user_span_ok(mm, user_src, len))
		return STATUS_ACCESS_VIOLATION;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		user_access_begin();
		memcpy(dst, (const void *)user_src, len);
		user_access_end();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = STATUS_ACCESS_VIOLATION;
	}
	return st;
}

NTSTATUS uvm_copy_to_user(struct mm_process *mm, uint64_t user_dst, const void *src, uint64_t len)
{
	if (!len)
		return STATUS_SUCCESS;
	if (!user_span_ok(mm, user_dst, len))
		return STATUS_ACCESS_VIOLATION;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		user_access_begin();
		memcpy((void *)user_dst, src, len);
		user_access_end();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = STATUS_ACCESS_VIOLATION;
	}
	return st;
}

NTSTATUS copy_from_user(void *dst, uint64_t user_src, uint64_t len)
{
	return uvm_copy_from_user(mm_current(), dst, user_src, len);
}

NTSTATUS copy_to_user(uint64_t user_dst, const void *src, uint64_t len)
{
	return uvm_copy_to_user(mm_current(), user_dst, src, len);
}
