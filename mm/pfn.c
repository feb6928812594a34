#include "mm/pfn.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "mm/pat.h"
#include "mm/pt.h"

static struct pfn_entry *db;
static pfn_t db_limit;
/* The const view pfn.h's inline pfn_entry() reads: the same pointer and extent, written once
 * by pfn_init. */
const struct pfn_entry *pfn_db_view;
pfn_t pfn_db_view_limit;

/* Free lists: frames known to read as zero, and the rest. */
struct pfn_list {
	uint32_t head;
	uint64_t count;
};
static struct pfn_list zeroed_list = { PFN_LINK_NIL, 0 }, dirty_list = { PFN_LINK_NIL, 0 };
/* Trimmed user pages (mm/RULES.md, "Paging"): clean ones the allocator may repurpose, and
 * dirty ones the modified page writer takes.  Each frame's owner word is its PTE's address. */
static struct pfn_list standby_list = { PFN_LINK_NIL, 0 }, modified_list = { PFN_LINK_NIL, 0 };
static uint64_t repurposed_frames;
static uint64_t count_by_state[PFN_STATE_COUNT];
static uint64_t locked_frames, reclaimed_frames;

/* The PFN lock (pfn.h): the innermost of the memory manager's locks. */
static struct klock pfn_lock = KLOCK_INIT(KLOCK_PFN);

static const char *const state_names[PFN_STATE_COUNT] = {
	"not RAM", "free", "zeroed", "active", "page table", "kernel", "firmware", "standby", "modified",
};
static const char *const owner_names[] = { "none", "kernel", "stack", "pool", "mdl", "test", "devmem" };

const char *pfn_state_name(enum pfn_state s) { return s < PFN_STATE_COUNT ? state_names[s] : "?"; }
const char *pfn_owner_name(enum pfn_owner o)
{
	return o < sizeof owner_names / sizeof owner_names[0] ? owner_names[o] : "?";
}

bool pfn_is_ram(pfn_t pfn) { return pfn < db_limit && db[pfn].state != PFN_NOT_RAM; }
pfn_t pfn_limit(void) { return db_limit; }

/* The one definition of a pinned frame (pfn_frame_is_pinned). */
static inline bool entry_is_pinned(const struct pfn_entry *e)
{
	return e->lock_count || e->state == PFN_KERNEL || e->state == PFN_FIRMWARE ||
	       (e->state == PFN_ACTIVE && e->owner_kind != PFN_OWNER_NONE);
}

bool pfn_frame_is_pinned(pfn_t pfn) { return pfn < db_limit && entry_is_pinned(&db[pfn]); }

/* Whether frame `pfn` carries type t and is pinned: the test of pfn_pinned_run, its most
 * common case (a locked frame) first. */
static inline bool continues_run(pfn_t pfn, uint8_t t)
{
	if (pfn >= db_limit || db[pfn].memtype != t)
		return false;
	return db[pfn].lock_count || entry_is_pinned(&db[pfn]);
}

uint64_t pfn_pinned_run(const pfn_t *pfns, uint64_t n, enum memtype *type)
{
	if (!n || pfns[0] >= db_limit || db[pfns[0]].memtype >= MT_COUNT)
		return 0;
	uint8_t t = db[pfns[0]].memtype;
	uint64_t i = 0;
	/* Four frames a step while four remain, then one at a time (from the step that failed). */
	for (; i + 4 <= n; i += 4)
		if (!continues_run(pfns[i], t) || !continues_run(pfns[i + 1], t) ||
		    !continues_run(pfns[i + 2], t) || !continues_run(pfns[i + 3], t))
			break;
	while (i < n && continues_run(pfns[i], t))
		i++;
	if (i)
		*type = (enum memtype)t;
	return i;
}

bool pfn_pinned_frame(pfn_t pfn, enum memtype *type)
{
	if (pfn >= db_limit || db[pfn].memtype >= MT_COUNT || !(db[pfn].lock_count || entry_is_pinned(&db[pfn])))
		return false;
	*type = (enum memtype)db[pfn].memtype;
	return true;
}

static void set_state(pfn_t pfn, enum pfn_state s)
{
	count_by_state[db[pfn].state]--;
	db[pfn].state = s;
	count_by_state[s]++;
}

static void list_push(struct pfn_list *l, pfn_t pfn)
{
	db[pfn].prev = PFN_LINK_NIL;
	db[pfn].next = l->head;
	if (l->head != PFN_LINK_NIL)
		db[l->head].prev = (uint32_t)pfn;
	l->head = (uint32_t)pfn;
	l->count++;
}

static void list_remove(struct pfn_list *l, pfn_t pfn)
{
	struct pfn_entry *e = &db[pfn];
	if (e->prev != PFN_LINK_NIL)
		db[e->prev].next = e->next;
	else
		l->head = e->next;
	if (e->next != PFN_LINK_NIL)
		db[e->next].prev = e->prev;
	e->next = e->prev = PFN_LINK_NIL;
	l->count--;
}

/* Put a frame on a free list; it must not be on one. */
static void make_free(pfn_t pfn, bool known_zero)
{
	set_state(pfn, known_zero ? PFN_ZEROED : PFN_FREE);
	db[pfn].owner_kind = PFN_OWNER_NONE;
	db[pfn].owner = 0;
	db[pfn].memtype = MT_WB;
	list_push(known_zero ? &zeroed_list : &dirty_list, pfn);
}

/* The head of a non-empty list off it: the head has no predecessor, so unlinking it is one
 * store to its successor (list_remove's general case, without its branches). */
static inline pfn_t list_pop_head(struct pfn_list *l)
{
	pfn_t pfn = l->head;
	struct pfn_entry *e = &db[pfn];
	l->head = e->next;
	if (e->next != PFN_LINK_NIL)
		db[e->next].prev = PFN_LINK_NIL;
	e->next = PFN_LINK_NIL;
	l->count--;
	return pfn;
}

/* A frame just off a free list handed out: ACTIVE, its owner's kind and word, no lock, WB.
 * The one step of every allocation from the free lists (take, alloc_dirty_locked). */
static inline void hand_out(pfn_t pfn, enum pfn_owner owner, uint64_t owner_id)
{
	set_state(pfn, PFN_ACTIVE);
	struct pfn_entry *e = &db[pfn];
	e->owner_kind = owner;
	e->owner = owner_id;
	e->lock_count = 0;
	e->memtype = MT_WB;
}

/* Take a specific free frame off its list and hand it out; returns whether the caller must
 * zero it (PFN_ALLOC_ZERO asked, the frame not known to be zero), which it does after
 * dropping the PFN lock: a page of stores is no work for the innermost lock. */
static bool take(pfn_t pfn, unsigned flags, enum pfn_owner owner)
{
	bool was_zero = db[pfn].state == PFN_ZEROED;
	list_remove(was_zero ? &zeroed_list : &dirty_list, pfn);
	hand_out(pfn, owner, 0);
	return (flags & PFN_ALLOC_ZERO) && !was_zero;
}

static void zero_frame(pfn_t pfn) { memset(pfn_to_virt(pfn), 0, PAGE_SIZE); }

static bool is_free(pfn_t pfn) { return db[pfn].state == PFN_FREE || db[pfn].state == PFN_ZEROED; }

/* UEFI memory types that are RAM the kernel may use once boot is over. */
static bool type_is_usable(uint32_t t)
{
	return t == EFI_MT_CONVENTIONAL || t == EFI_MT_BOOT_CODE || t == EFI_MT_BOOT_DATA ||
	       t == EFI_MT_LOADER_CODE || t == EFI_MT_LOADER_DATA || t == EFI_MT_PERSISTENT;
}
/* RAM that firmware keeps: mapped (WB) in the direct map, never allocated. */
static bool type_is_firmware_ram(uint32_t t)
{
	return t == EFI_MT_RUNTIME_CODE || t == EFI_MT_RUNTIME_DATA || t == EFI_MT_ACPI_RECLAIM ||
	       t == EFI_MT_ACPI_NVS;
}

bool efi_type_is_ram(uint32_t t) { return type_is_usable(t) || type_is_firmware_ram(t); }

static const struct mdlab_efi_memdesc *desc(const struct mdlab_bootinfo *bi, uint64_t i)
{
	return (const void *)(MDLAB_DIRECT_MAP_BASE + bi->memmap + i * bi->memmap_desc_size);
}

/* One past the last frame of the highest RAM descriptor: the database's extent. */
static pfn_t ram_limit(const struct mdlab_bootinfo *bi)
{
	uint64_t n = bi->memmap_size / bi->memmap_desc_size;
	pfn_t limit = 0;
	for (uint64_t i = 0; i < n; i++) {
		const struct mdlab_efi_memdesc *d = desc(bi, i);
		if (efi_type_is_ram(d->type) && d->phys_start / PAGE_SIZE + d->pages > limit)
			limit = d->phys_start / PAGE_SIZE + d->pages;
	}
	return limit;
}

/* Where the database itself goes: the first conventional run of `bytes`, above 1 MiB. */
static uint64_t database_storage(const struct mdlab_bootinfo *bi, uint64_t bytes)
{
	uint64_t n = bi->memmap_size / bi->memmap_desc_size;
	for (uint64_t i = 0; i < n; i++) {
		const struct mdlab_efi_memdesc *d = desc(bi, i);
		if (d->type == EFI_MT_CONVENTIONAL && d->phys_start >= 0x100000 && d->pages * PAGE_SIZE >= bytes)
			return d->phys_start;
	}
	PANIC("pfn_init: no room for a %lu-byte PFN database", bytes);
}

/* Each frame a descriptor covers gets its state from the descriptor's type: conventional
 * memory is free, the loader's and boot services' is the kernel's until
 * pfn_reclaim_boot_memory, firmware RAM is firmware's.  Frames no descriptor covers stay
 * NOT_RAM. */
static void enter_memory_map(const struct mdlab_bootinfo *bi)
{
	uint64_t n = bi->memmap_size / bi->memmap_desc_size;
	for (uint64_t i = 0; i < n; i++) {
		const struct mdlab_efi_memdesc *d = desc(bi, i);
		pfn_t first = d->phys_start / PAGE_SIZE;
		for (pfn_t p = first; p < first + d->pages && p < db_limit; p++) {
			if (d->type == EFI_MT_CONVENTIONAL)
				make_free(p, false);
			else if (type_is_usable(d->type))
				set_state(p, PFN_KERNEL);
			else if (type_is_firmware_ram(d->type))
				set_state(p, PFN_FIRMWARE);
		}
	}
}

/* Take a frame that enter_memory_map made free back off the dirty list, for good. */
static void withhold(pfn_t pfn, enum pfn_state s)
{
	list_remove(&dirty_list, pfn);
	set_state(pfn, s);
}

void pfn_init(const struct mdlab_bootinfo *bi)
{
	db_limit = ram_limit(bi);
	if (db_limit >= PFN_LINK_NIL)
		PANIC("pfn_init: %lu frames exceed the 32-bit list links", db_limit);
	uint64_t bytes = ALIGN_UP(db_limit * sizeof(struct pfn_entry), PAGE_SIZE);
	uint64_t db_pa = database_storage(bi, bytes);
	db = phys_to_virt(db_pa);
	memset(db, 0, bytes);
	count_by_state[PFN_NOT_RAM] = db_limit;

	enter_memory_map(bi);
	/* Frame 0 stays out of use: a zero PFN in an MDL is more likely a bug than a page. */
	if (db_limit && is_free(0))
		withhold(0, PFN_FIRMWARE);
	for (pfn_t p = db_pa / PAGE_SIZE; p < (db_pa + bytes) / PAGE_SIZE; p++)
		withhold(p, PFN_KERNEL);
	/* Every frame of RAM starts WB (the direct map's type); the rest have no type. */
	for (pfn_t p = 0; p < db_limit; p++)
		db[p].memtype = db[p].state == PFN_NOT_RAM ? MT_NONE : MT_WB;
	pfn_db_view = db;
	pfn_db_view_limit = db_limit;
}

static bool in_range(uint64_t pa, uint64_t base, uint64_t size)
{
	return size && pa >= ALIGN_DOWN(base, PAGE_SIZE) && pa < ALIGN_UP(base + size, PAGE_SIZE);
}

void pfn_reclaim_boot_memory(const struct mdlab_bootinfo *bi)
{
	uint64_t bi_pa = direct_virt_to_phys(bi);
	uint64_t n = bi->memmap_size / bi->memmap_desc_size;
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		const struct mdlab_efi_memdesc *d = desc(bi, i);
		if (!type_is_usable(d->type) || d->type == EFI_MT_CONVENTIONAL)
			continue;
		for (pfn_t p = d->phys_start / PAGE_SIZE; p < d->phys_start / PAGE_SIZE + d->pages; p++) {
			uint64_t pa = p * PAGE_SIZE;
			if (db[p].state != PFN_KERNEL || p == 0)
				continue; /* the database was conventional memory; frame 0 stays out of use */
			if (in_range(pa, bi->kernel_phys_base, bi->kernel_size) ||
			    in_range(pa, bi_pa, sizeof *bi) || in_range(pa, bi->memmap, bi->memmap_size) ||
			    in_range(pa, bi->symtab, bi->symtab_size) || in_range(pa, bi->strtab, bi->strtab_size))
				continue;
			make_free(p, false);
			reclaimed_frames++;
		}
	}
	klock_release(&pfn_lock, irql);
}

/* pfn_alloc under the PFN lock: the frame, with PFN_ZERO_PENDING set when the caller must
 * zero it once the lock is dropped. */
#define PFN_ZERO_PENDING (1ull << 63)

/* No free frame left: the first standby frame is taken from its page (NT's
 * repurposing).  Its PTE, a transition PTE naming it, becomes a pagefile PTE naming its
 * slot, written here under the PFN lock (pt_swap_software_at: the one user-PTE write without
 * the address-space lock, mm/RULES.md "Paging"); the slot now belongs to that PTE.  The
 * frame's contents are the page's, so it is zeroed when asked. */
static pfn_t repurpose_standby(unsigned flags, enum pfn_owner owner)
{
	/* A frame locked while in transition (a kernel probe's walk that came before a trim of
	 * paged pool) is never repurposed: the first unlocked one is. */
	pfn_t pfn = standby_list.head;
	while (pfn != PFN_LINK_NIL && db[pfn].lock_count)
		pfn = db[pfn].next;
	if (pfn == PFN_LINK_NIL)
		return PFN_INVALID;
	struct pfn_entry *e = &db[pfn];
	uint64_t old = __atomic_load_n((uint64_t *)phys_to_virt(e->owner), __ATOMIC_SEQ_CST);
	struct pt_sw sw;
	pt_decode_software(old, &sw);
	if (sw.kind != PT_SW_TRANSITION || sw.pfn != pfn ||
	    !pt_swap_software_at(e->owner, old, pt_pagefile_pte(0, e->slot, sw.protection)))
		PANIC("repurpose_standby: frame 0x%lx's PTE at 0x%lx is 0x%lx, not its transition PTE", pfn, e->owner, old);
	list_remove(&standby_list, pfn);
	set_state(pfn, PFN_ACTIVE);
	e->owner_kind = owner;
	e->owner = 0;
	e->slot = 0;
	e->flags = 0;
	e->lock_count = 0;
	e->memtype = MT_WB;
	repurposed_frames++;
	return (flags & PFN_ALLOC_ZERO) ? pfn | PFN_ZERO_PENDING : pfn;
}
static pfn_t alloc_locked(unsigned flags, enum pfn_owner owner)
{
	struct pfn_list *first = (flags & PFN_ALLOC_ZERO) ? &zeroed_list : &dirty_list;
	struct pfn_list *second = first == &zeroed_list ? &dirty_list : &zeroed_list;
	struct pfn_list *l = first->head != PFN_LINK_NIL ? first : second;
	if (l->head == PFN_LINK_NIL)
		return repurpose_standby(flags, owner);
	pfn_t pfn = l->head;
	return take(pfn, flags, owner) ? pfn | PFN_ZERO_PENDING : pfn;
}

/* alloc_locked's frame for a request that needs no zeroing: the dirty list's head, else the
 * zeroed list's, popped and handed out as take() hands a frame out, with the owner's word
 * set too.  With both lists empty, a standby frame is repurposed, as alloc_locked does. */
static pfn_t alloc_dirty_locked(enum pfn_owner owner, uint64_t owner_id)
{
	struct pfn_list *l = dirty_list.head != PFN_LINK_NIL ? &dirty_list : &zeroed_list;
	if (l->head == PFN_LINK_NIL) {
		pfn_t pfn = repurpose_standby(0, owner);
		if (pfn != PFN_INVALID)
			db[pfn].owner = owner_id;
		return pfn;
	}
	pfn_t pfn = list_pop_head(l);
	hand_out(pfn, owner, owner_id);
	return pfn;
}

static uint64_t (*relieve_pressure)(void);

void pfn_set_pressure_relief(uint64_t (*relieve)(void)) { relieve_pressure = relieve; }

/* Out of free and standby frames: the relief routine, with no lock of this module held (it
 * allocates, trims and waits for the writer); whether it made standby frames to retry with.
 * It refuses itself where it may not run (pfn.h). */
static bool relieved(void)
{
	return relieve_pressure && relieve_pressure() != 0;
}

pfn_t pfn_alloc(unsigned flags, enum pfn_owner owner)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	pfn_t pfn = alloc_locked(flags, owner);
	klock_release(&pfn_lock, irql);
	if (pfn == PFN_INVALID && !(flags & PFN_ALLOC_NO_RELIEF) && relieved()) {
		irql = klock_acquire(&pfn_lock);
		pfn = alloc_locked(flags, owner);
		klock_release(&pfn_lock, irql);
	}
	if (pfn != PFN_INVALID && (pfn & PFN_ZERO_PENDING)) {
		pfn &= ~PFN_ZERO_PENDING;
		zero_frame(pfn);
	}
	return pfn;
}

pfn_t pfn_alloc_in(pfn_t low, pfn_t high, unsigned flags, enum pfn_owner owner)
{
	return pfn_alloc_run(low, high, 1, 1, flags, owner);
}

pfn_t pfn_alloc_run(pfn_t low, pfn_t high, uint64_t count, uint64_t align, unsigned flags,
		    enum pfn_owner owner)
{
	if (!count || !align || (align & (align - 1)))
		return PFN_INVALID;
	KIRQL irql = klock_acquire(&pfn_lock);
	if (high >= db_limit)
		high = db_limit - 1;
	pfn_t start = ALIGN_UP(low, align);
	while (start <= high && high - start + 1 >= count) {
		uint64_t i = 0;
		while (i < count && is_free(start + i))
			i++;
		if (i == count) {
			bool zero = false;
			for (uint64_t k = 0; k < count; k++)
				zero |= take(start + k, flags, owner);
			klock_release(&pfn_lock, irql);
			/* The run is the caller's now; zeroing the known-zero frames too is harmless. */
			for (uint64_t k = 0; zero && k < count; k++)
				zero_frame(start + k);
			return start;
		}
		/* Skip past the busy frame to the next aligned candidate. */
		start = ALIGN_UP(start + i + 1, align);
	}
	klock_release(&pfn_lock, irql);
	return PFN_INVALID;
}

static uint64_t alloc_batch_in(pfn_t low, pfn_t high, uint64_t count, unsigned flags, enum pfn_owner owner,
			       uint64_t owner_id, pfn_t *out);

uint64_t pfn_alloc_batch_in(pfn_t low, pfn_t high, uint64_t count, unsigned flags, enum pfn_owner owner,
			    uint64_t owner_id, pfn_t *out)
{
	uint64_t got = alloc_batch_in(low, high, count, flags, owner, owner_id, out);
	/* Short with the whole database allowed, the one request relief can serve, unless the
	 * caller may not wait for it (pfn.h). */
	if (got < count && low == 0 && high >= db_limit - 1 && !(flags & PFN_ALLOC_NO_RELIEF) && relieved())
		got += alloc_batch_in(low, high, count - got, flags, owner, owner_id, out + got);
	return got;
}

static uint64_t alloc_batch_in(pfn_t low, pfn_t high, uint64_t count, unsigned flags, enum pfn_owner owner,
			       uint64_t owner_id, pfn_t *out)
{
	uint64_t got = 0;
	KIRQL irql = klock_acquire(&pfn_lock);
	if (high >= db_limit)
		high = db_limit - 1;
	/* The whole database: the free lists serve it in O(1) a frame. */
	if (low == 0 && high == db_limit - 1 && !(flags & PFN_ALLOC_ZERO)) {
		/* Nothing to zero (MM_DONT_ZERO_ALLOCATION): the owner recorded as each is taken. */
		while (got < count && (out[got] = alloc_dirty_locked(owner, owner_id)) != PFN_INVALID)
			got++;
		klock_release(&pfn_lock, irql);
		return got;
	}
	if (low == 0 && high == db_limit - 1) {
		while (got < count && (out[got] = alloc_locked(flags, owner)) != PFN_INVALID)
			got++;
	} else {
		for (pfn_t p = low; p <= high && got < count; p++) {
			if (!is_free(p))
				continue;
			out[got++] = take(p, flags, owner) ? p | PFN_ZERO_PENDING : p;
		}
	}
	if (owner_id) /* recorded under the same hold (pfn_set_owner_frames's step) */
		for (uint64_t i = 0; i < got; i++)
			db[out[i] & ~PFN_ZERO_PENDING].owner = owner_id;
	klock_release(&pfn_lock, irql);
	/* The frames are the caller's now: zero those that need it outside the lock. */
	for (uint64_t i = 0; i < got; i++)
		if (out[i] & PFN_ZERO_PENDING) {
			out[i] &= ~PFN_ZERO_PENDING;
			zero_frame(out[i]);
		}
	return got;
}

static void free_locked(pfn_t pfn)
{
	struct pfn_entry *e = pfn < db_limit ? &db[pfn] : NULL;
	if (!e || (e->state != PFN_ACTIVE && e->state != PFN_PAGE_TABLE))
		KeBugCheckEx(PFN_LIST_CORRUPT, 0x99, pfn, e ? e->state : 0, 0);
	if (e->lock_count)
		KeBugCheckEx(PFN_LIST_CORRUPT, 0x9A, pfn, e->state, e->lock_count);
	e->flags = 0;
	e->slot = 0;
	/* The type is its owner's to give back first (memtype_release_frame): restoring the
	 * alias can merge page tables, and the page-table code calls this allocator. */
	if (e->memtype != MT_WB && e->memtype != MT_NONE)
		PANIC("pfn_free: frame 0x%lx is still %s; its owner releases the type first", pfn,
		      memtype_name((enum memtype)e->memtype));
	/* Every mapping of a frame ends before its free (MmFreePagesFromMdl, MmUnlockPages):
	 * a count left would refuse the next owner's writable mappings. */
	if (e->exec_maps)
		PANIC("pfn_free: frame 0x%lx still has %u executable mappings", pfn, e->exec_maps);
	make_free(pfn, false);
}

void pfn_free(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	free_locked(pfn);
	klock_release(&pfn_lock, irql);
}

void pfn_free_run(pfn_t first, uint64_t count)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < count; i++)
		free_locked(first + i);
	klock_release(&pfn_lock, irql);
}

/* free_locked's common case, inline: an ACTIVE frame with no lock, no executable mapping, no
 * paging I/O and no type but WB (or none) goes to the dirty list as make_free puts it; any
 * other frame takes free_locked, which stops the machine or frees a page table. */
static inline __attribute__((always_inline)) void free_frame_locked(pfn_t pfn)
{
	struct pfn_entry *e = &db[pfn];
	if (__builtin_expect(pfn >= db_limit || e->state != PFN_ACTIVE || e->lock_count || e->exec_maps || e->flags ||
			     (e->memtype != MT_WB && e->memtype != MT_NONE), 0)) {
		free_locked(pfn);
		return;
	}
	/* An ACTIVE frame with no paging flags has slot 0 already (every path out of
	 * transition or an in-page read clears it). */
	count_by_state[PFN_ACTIVE]--;
	count_by_state[PFN_FREE]++;
	e->state = PFN_FREE;
	e->owner_kind = PFN_OWNER_NONE;
	e->owner = 0;
	e->memtype = MT_WB;
	list_push(&dirty_list, pfn);
}

void pfn_free_frames(const pfn_t *pfns, uint64_t n)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++)
		free_frame_locked(pfns[i]);
	klock_release(&pfn_lock, irql);
}

void pfn_lock_frame(pfn_t pfn) { pfn_lock_frames(&pfn, 1); }
void pfn_unlock_frame(pfn_t pfn) { pfn_unlock_frames(&pfn, 1); }

/* pfn_lock_frame for each of n frames, the frame database's bounds read once; returns
 * whether any was I/O space (not RAM, nothing pinned: mm/RULES.md, MDL_IO_SPACE). */
bool pfn_lock_frames(const pfn_t *pfns, uint64_t n)
{
	bool io = false;
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = pfns[i];
		if (pfn >= db_limit || db[pfn].state == PFN_NOT_RAM) {
			io = true;
			continue;
		}
		if (db[pfn].lock_count++ == 0)
			locked_frames++;
	}
	klock_release(&pfn_lock, irql);
	return io;
}

/* pfn_unlock_frame for each of n frames, in order.  Unlocking a frame that holds no lock is
 * Microsoft's 0x4E P1 7 (PFN, share count, 0): mdlab's one count of a frame's holders is its
 * lock count, 0 here (mm/RULES.md, 0x4E). */
void pfn_unlock_frames(const pfn_t *pfns, uint64_t n)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = pfns[i];
		if (pfn >= db_limit || db[pfn].state == PFN_NOT_RAM)
			continue;
		struct pfn_entry *e = &db[pfn];
		if (!e->lock_count)
			KeBugCheckEx(PFN_LIST_CORRUPT, 0x07, pfn, e->lock_count, 0);
		if (--e->lock_count == 0)
			locked_frames--;
	}
	klock_release(&pfn_lock, irql);
}

/* ---- paging (pfn.h; mm/RULES.md, "Paging") ---- */

static bool in_transition(const struct pfn_entry *e)
{
	return e->state == PFN_STANDBY || e->state == PFN_MODIFIED;
}

static void trimmed_locked(pfn_t pfn, uint64_t pte_pa)
{
	if (pfn >= db_limit || db[pfn].state != PFN_ACTIVE)
		PANIC("pfn_trimmed_frames: frame 0x%lx is not an allocated frame", pfn);
	struct pfn_entry *e = &db[pfn];
	set_state(pfn, PFN_MODIFIED);
	e->owner = pte_pa;
	e->slot = 0;
	if (e->flags & PFN_F_WRITING)
		e->flags |= PFN_F_REDIRTIED; /* the write in progress is of older contents */
	else
		list_push(&modified_list, pfn);
}

void pfn_trimmed_frames(const pfn_t *pfns, const uint64_t *pte_pas, uint64_t n)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++)
		trimmed_locked(pfns[i], pte_pas[i]);
	klock_release(&pfn_lock, irql);
}

/* Take a transition frame off its list (none while the writer has it), ACTIVE again. */
static void leave_transition(pfn_t pfn, uint32_t *slot)
{
	struct pfn_entry *e = &db[pfn];
	*slot = e->state == PFN_STANDBY ? e->slot : 0;
	if (e->state == PFN_STANDBY)
		list_remove(&standby_list, pfn);
	else if (!(e->flags & PFN_F_WRITING))
		list_remove(&modified_list, pfn);
	else
		e->flags |= PFN_F_REDIRTIED; /* the writer's copy will not be used */
	set_state(pfn, PFN_ACTIVE);
	e->owner = 0;
	e->slot = 0;
}

enum pfn_take pfn_take_back(pfn_t pfn, uint64_t pte_pa, uint32_t *slot)
{
	*slot = 0;
	enum pfn_take r = PFN_TAKE_GONE;
	KIRQL irql = klock_acquire(&pfn_lock);
	struct pfn_entry *e = pfn < db_limit ? &db[pfn] : NULL;
	if (e && e->owner == pte_pa && (e->flags & PFN_F_READING)) {
		r = PFN_TAKE_BUSY;
	} else if (e && in_transition(e) && e->owner == pte_pa) {
		leave_transition(pfn, slot);
		r = PFN_TAKE_OK;
	}
	klock_release(&pfn_lock, irql);
	return r;
}

bool pfn_release_transition(pfn_t pfn, uint64_t pte_pa, uint32_t *slot)
{
	*slot = 0;
	bool ours = false;
	KIRQL irql = klock_acquire(&pfn_lock);
	struct pfn_entry *e = pfn < db_limit ? &db[pfn] : NULL;
	if (e && e->owner == pte_pa && (e->flags & PFN_F_READING)) {
		e->flags |= PFN_F_ORPHAN; /* the reader frees frame and slot at its end */
		ours = true;
	} else if (e && in_transition(e) && e->owner == pte_pa) {
		bool writing = e->flags & PFN_F_WRITING;
		leave_transition(pfn, slot);
		if (writing)
			e->flags |= PFN_F_ORPHAN; /* the writer's lock holds it: freed at the write's end */
		else
			free_locked(pfn);
		ours = true;
	}
	klock_release(&pfn_lock, irql);
	return ours;
}

void pfn_free_user(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	if (pfn < db_limit && db[pfn].state == PFN_ACTIVE && (db[pfn].flags & PFN_F_WRITING))
		db[pfn].flags |= PFN_F_ORPHAN;
	else
		free_locked(pfn);
	klock_release(&pfn_lock, irql);
}

uint64_t pfn_take_modified(pfn_t *out, uint64_t max)
{
	uint64_t n = 0;
	KIRQL irql = klock_acquire(&pfn_lock);
	while (n < max && modified_list.head != PFN_LINK_NIL) {
		pfn_t pfn = modified_list.head;
		list_remove(&modified_list, pfn);
		db[pfn].flags = PFN_F_WRITING;
		if (db[pfn].lock_count++ == 0)
			locked_frames++;
		out[n++] = pfn;
	}
	klock_release(&pfn_lock, irql);
	return n;
}

void pfn_write_done(const pfn_t *pfns, const uint32_t *slots, uint64_t n, bool ok, uint32_t *free_slots,
		    uint64_t *nfree)
{
	*nfree = 0;
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = pfns[i];
		struct pfn_entry *e = &db[pfn];
		if (!(e->flags & PFN_F_WRITING) || !e->lock_count)
			PANIC("pfn_write_done: frame 0x%lx is not being written (flags 0x%x)", pfn, e->flags);
		uint8_t f = e->flags;
		/* The flag goes before the hold: pfn_page_locks, without this lock, may see the
		 * hold with the flag (the truth) or the hold alone (one too many), never one too
		 * few. */
		__atomic_store_n(&e->flags, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&e->lock_count, e->lock_count - 1, __ATOMIC_RELEASE);
		if (e->lock_count == 0)
			locked_frames--;
		bool still = e->state == PFN_MODIFIED && !(f & PFN_F_REDIRTIED);
		if (f & PFN_F_ORPHAN) {
			free_slots[(*nfree)++] = slots[i];
			if (e->state == PFN_MODIFIED)
				set_state(pfn, PFN_ACTIVE); /* off every list: free_locked frees ACTIVE */
			free_locked(pfn);
		} else if (still && ok) {
			set_state(pfn, PFN_STANDBY);
			e->slot = slots[i];
			list_push(&standby_list, pfn);
		} else {
			free_slots[(*nfree)++] = slots[i];
			if (e->state == PFN_MODIFIED)
				list_push(&modified_list, pfn); /* failed, or trimmed again: written later */
		}
	}
	klock_release(&pfn_lock, irql);
}

pfn_t pfn_alloc_inpage(uint64_t pte_pa, uint32_t slot, enum pfn_owner owner)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	pfn_t pfn = alloc_locked(0, owner);
	if (pfn == PFN_INVALID) {
		/* Its callers hold their own lock (relief refuses itself then) and relieve after
		 * dropping it; one without a lock is relieved here. */
		klock_release(&pfn_lock, irql);
		bool again = relieved();
		irql = klock_acquire(&pfn_lock);
		if (again)
			pfn = alloc_locked(0, owner);
	}
	if (pfn != PFN_INVALID) {
		pfn &= ~PFN_ZERO_PENDING; /* read over whole: no zeroing */
		db[pfn].owner = pte_pa;
		db[pfn].slot = slot;
		db[pfn].flags = PFN_F_READING;
	}
	klock_release(&pfn_lock, irql);
	return pfn;
}

bool pfn_inpage_done(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	struct pfn_entry *e = &db[pfn];
	if (e->state != PFN_ACTIVE || !(e->flags & PFN_F_READING))
		PANIC("pfn_inpage_done: frame 0x%lx is not being read (flags 0x%x)", pfn, e->flags);
	bool orphan = e->flags & PFN_F_ORPHAN;
	e->flags = 0;
	e->owner = 0;
	e->slot = 0;
	if (orphan)
		free_locked(pfn);
	klock_release(&pfn_lock, irql);
	return orphan;
}

void pfn_wait_inpage(pfn_t pfn, uint64_t pte_pa)
{
	bool window = !(read_rflags() & RFLAGS_IF);
	if (window)
		__asm__ volatile("sti" ::: "memory");
	while ((__atomic_load_n(&db[pfn].flags, __ATOMIC_ACQUIRE) & PFN_F_READING) &&
	       __atomic_load_n(&db[pfn].owner, __ATOMIC_ACQUIRE) == pte_pa)
		cpu_relax();
	if (window)
		__asm__ volatile("cli" ::: "memory");
}

/* The sum of every frame's exec_maps: the pages of executable system mappings, under the
 * PFN lock (an accounting counter: every case ends with it where it began). */
static uint64_t exec_maps_total;

bool pfn_exec_raise(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	bool ok = pfn < db_limit && db[pfn].exec_maps < PFN_EXEC_MAPS_MAX;
	if (ok) {
		/* A locked add: the store is globally visible before any load that follows it
		 * (SDM Vol. 3A, 9.2.3.8), which the W^X checks after it rely on. */
		__atomic_fetch_add(&db[pfn].exec_maps, 1, __ATOMIC_SEQ_CST);
		exec_maps_total++;
	}
	klock_release(&pfn_lock, irql);
	return ok;
}

unsigned pfn_exec_lower(pfn_t pfn)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	if (pfn >= db_limit || !db[pfn].exec_maps)
		PANIC("pfn_exec_lower: frame 0x%lx has no executable mapping to end", pfn);
	unsigned left = __atomic_sub_fetch(&db[pfn].exec_maps, 1, __ATOMIC_SEQ_CST);
	exec_maps_total--;
	klock_release(&pfn_lock, irql);
	return left;
}

void pfn_set_owner(pfn_t pfn, uint64_t owner)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	if (pfn >= db_limit || db[pfn].state != PFN_ACTIVE)
		PANIC("pfn_set_owner: frame 0x%lx is not allocated", pfn);
	db[pfn].owner = owner;
	klock_release(&pfn_lock, irql);
}

void pfn_set_owner_frames(const pfn_t *pfns, uint64_t n, uint64_t owner)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		if (pfns[i] >= db_limit || db[pfns[i]].state != PFN_ACTIVE)
			PANIC("pfn_set_owner_frames: frame 0x%lx is not allocated", pfns[i]);
		db[pfns[i]].owner = owner;
	}
	klock_release(&pfn_lock, irql);
}

void pfn_record_memtype(pfn_t pfn, enum memtype t)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	if (pfn >= db_limit)
		PANIC("pfn_record_memtype: frame 0x%lx is beyond the database", pfn);
	db[pfn].memtype = (uint8_t)t;
	klock_release(&pfn_lock, irql);
}

void pfn_make_untyped_frames(const pfn_t *pfns, uint64_t n)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	for (uint64_t i = 0; i < n; i++) {
		pfn_t pfn = pfns[i];
		if (pfn >= db_limit || db[pfn].state == PFN_NOT_RAM || db[pfn].memtype != MT_WB)
			PANIC("pfn_make_untyped_frames: frame 0x%lx is not a WB frame of RAM", pfn);
		db[pfn].memtype = MT_NONE;
	}
	klock_release(&pfn_lock, irql);
}

void pfn_set_page_table(pfn_t pfn, bool is_table)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	set_state(pfn, is_table ? PFN_PAGE_TABLE : PFN_ACTIVE);
	klock_release(&pfn_lock, irql);
}

void pfn_get_stats(struct pfn_stats *out)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	out->ram = db_limit - count_by_state[PFN_NOT_RAM];
	out->free = zeroed_list.count + dirty_list.count;
	out->zeroed = zeroed_list.count;
	out->active = count_by_state[PFN_ACTIVE];
	out->locked = locked_frames;
	out->page_tables = count_by_state[PFN_PAGE_TABLE];
	out->kernel = count_by_state[PFN_KERNEL];
	out->firmware = count_by_state[PFN_FIRMWARE];
	out->reclaimed = reclaimed_frames;
	out->standby = standby_list.count;
	out->modified = count_by_state[PFN_MODIFIED];
	out->repurposed = repurposed_frames;
	klock_release(&pfn_lock, irql);
}

/* Walk one free list: every frame on it in the list's state, the back links consistent, the
 * length its count. */
static uint64_t audit_list(const struct pfn_list *l, enum pfn_state s, uint64_t off_list, bool print)
{
	uint64_t n = 0, findings = 0;
	uint32_t prev = PFN_LINK_NIL;
	for (uint32_t p = l->head; p != PFN_LINK_NIL && n <= db_limit; p = db[p].next, n++) {
		if (p >= db_limit || db[p].state != s || db[p].prev != prev) {
			if (print)
				kprintf("pfn audit: frame 0x%x on the %s list is %s, back link 0x%x (want 0x%x)\n", p,
					state_names[s], p < db_limit ? pfn_state_name((enum pfn_state)db[p].state) : "beyond",
					p < db_limit ? db[p].prev : 0, prev);
			return findings + 1; /* the rest of the list cannot be trusted */
		}
		prev = p;
	}
	if (n != l->count || n + off_list != count_by_state[s]) {
		if (print)
			kprintf("pfn audit: the %s list holds %lu frames, counts %lu, the state count says %lu (%lu off it)\n",
				state_names[s], n, l->count, count_by_state[s], off_list);
		findings++;
	}
	return findings;
}

uint64_t pfn_audit(bool print)
{
	KIRQL irql = klock_acquire(&pfn_lock);
	/* A MODIFIED frame the writer holds is on no list. */
	uint64_t writing = 0;
	for (pfn_t p = 0; p < db_limit; p++)
		writing += db[p].state == PFN_MODIFIED && (db[p].flags & PFN_F_WRITING);
	uint64_t findings = audit_list(&zeroed_list, PFN_ZEROED, 0, print) + audit_list(&dirty_list, PFN_FREE, 0, print) +
			    audit_list(&standby_list, PFN_STANDBY, 0, print) +
			    audit_list(&modified_list, PFN_MODIFIED, writing, print);
	uint64_t by_state[PFN_STATE_COUNT] = { 0 }, locked = 0, exec = 0;
	for (pfn_t p = 0; p < db_limit; p++) {
		by_state[db[p].state < PFN_STATE_COUNT ? db[p].state : PFN_NOT_RAM]++;
		locked += db[p].lock_count != 0;
		exec += db[p].exec_maps;
	}
	if (exec != exec_maps_total) {
		if (print)
			kprintf("pfn audit: the frames count %lu executable mappings, the total says %lu\n", exec,
				exec_maps_total);
		findings++;
	}
	for (int s = 0; s < PFN_STATE_COUNT; s++)
		if (by_state[s] != count_by_state[s]) {
			if (print)
				kprintf("pfn audit: %lu frames are %s, the count says %lu\n", by_state[s], state_names[s],
					count_by_state[s]);
			findings++;
		}
	if (locked != locked_frames) {
		if (print)
			kprintf("pfn audit: %lu frames hold locks, the count says %lu\n", locked, locked_frames);
		findings++;
	}
	klock_release(&pfn_lock, irql);
	return findings;
}

static uint64_t free_pages(void) { return zeroed_list.count + dirty_list.count; }
ACCOUNTING_COUNTER(free_pages, "free physical pages", free_pages);
static uint64_t locked_pages(void) { return locked_frames; }
ACCOUNTING_COUNTER(locked_pages, "locked physical pages", locked_pages);
static uint64_t standby_pages(void) { return standby_list.count; }
ACCOUNTING_COUNTER(standby_pages, "standby pages", standby_pages);
static uint64_t modified_pages(void) { return count_by_state[PFN_MODIFIED]; }
ACCOUNTING_COUNTER(modified_pages, "modified pages", modified_pages);
static uint64_t exec_mapped_pages(void) { return exec_maps_total; }
ACCOUNTING_COUNTER(exec_maps, "executable system-mapping pages", exec_mapped_pages);
