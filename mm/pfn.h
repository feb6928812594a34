/*
 * The PFN database and the physical page allocator.
 *
 * One entry per page frame from 0 to the end of the highest RAM descriptor of the UEFI map.
 * Frames that no RAM descriptor covers (holes, MMIO, firmware-reserved ranges) are
 * PFN_NOT_RAM.  Free frames sit on one of two doubly linked lists — known-zero and dirty —
 * so allocating or freeing one frame is O(1); constrained requests (a PFN window, a
 * contiguous aligned run) scan the database.
 *
 * This module is the database's one owner: only mm/pfn.c writes an entry.  Everything else
 * reads through pfn_entry() (a const view) and changes a frame through the calls below.
 *
 * The PFN lock (mm/RULES.md, "Locks"): one ranked spin lock (kernel/smp/klock.h, KLOCK_PFN)
 * over the free lists, the counters and every entry's state, lock count, owner, recorded
 * memory type and executable-mapping count.  Every call below that changes or counts frames takes it inside (pfn_init runs
 * before any other CPU).  It is the innermost of the memory manager's locks: pfn.c calls
 * nothing that could take another (pfn_free restores no memory type), so the page-table and
 * memory-type code may call in while holding locks of their own, and a frame is zeroed after
 * the lock is dropped.  pfn_entry(), pfn_frame_is_pinned(), pfn_pinned_run() and
 * pfn_pinned_frame() read without it: a snapshot, exact for a frame the caller itself holds
 * (locked, or allocated to it).
 */
#ifndef MM_PFN_H
#define MM_PFN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"
#include "mm/layout.h"
#include "mm/pat.h"

typedef uint64_t pfn_t;
#define PFN_INVALID (~(pfn_t)0)

enum pfn_state {
	PFN_NOT_RAM = 0,  /* no RAM here: a hole, MMIO, firmware-reserved */
	PFN_FREE,         /* on the dirty free list */
	PFN_ZEROED,       /* on the zeroed free list */
	PFN_ACTIVE,       /* allocated: owner says to what */
	PFN_PAGE_TABLE,   /* a page-table page of some address space */
	PFN_KERNEL,       /* kernel image, boot information, the PFN database itself */
	PFN_FIRMWARE,     /* UEFI runtime, ACPI tables and NVS: RAM, never ours */
	PFN_STANDBY,      /* a trimmed user page, clean (its copy at `slot` of the pagefile):
			   * on the standby list, repurposable; owner = its PTE's address */
	PFN_MODIFIED,     /* a trimmed user page not yet written: on the modified list (off it
			   * while the modified page writer writes it); owner = its PTE's address */
	PFN_STATE_COUNT,
};

/* What an active frame belongs to (pfn_entry.owner_kind). */
enum pfn_owner {
	PFN_OWNER_NONE = 0,
	PFN_OWNER_KERNEL,     /* generic kernel allocation (pfn_alloc) */
	PFN_OWNER_STACK,
	PFN_OWNER_POOL,
	PFN_OWNER_MDL,        /* MmAllocatePagesForMdl(Ex) */
	PFN_OWNER_TEST,
	PFN_OWNER_DEVMEM,     /* MmAllocateContiguousMemory*, MmAllocateNonCachedMemory (mm/devmem.c) */
};

struct pfn_entry {
	uint8_t state;        /* enum pfn_state */
	uint8_t memtype;      /* enum memtype of every mapping of this frame; MT_NONE: untyped */
	uint8_t owner_kind;   /* enum pfn_owner */
	uint8_t flags;        /* PFN_F_*: paging I/O on a user page's frame (mm/RULES.md, "Paging") */
	uint32_t lock_count;  /* MmProbeAndLockPages locks, and the modified page writer's */
	uint32_t next, prev;  /* list links (frame numbers), PFN_LINK_NIL at the ends */
	uint64_t owner;       /* owner-specific: pool tag, MDL, address space; for a user page in
			       * transition or being read in, its PTE's physical address (NT's
			       * PteAddress) */
	uint32_t slot;        /* STANDBY: the pagefile slot holding its copy; being read in: the
			       * slot it is read from */
	uint8_t exec_maps;    /* executable system mappings of this frame (mm/mdl.c, decision 3);
			       * at most PFN_EXEC_MAPS_MAX */
	uint8_t pad[3];
};
#define PFN_F_WRITING 0x1     /* the modified page writer is writing it (it holds a lock) */
#define PFN_F_REDIRTIED 0x2   /* taken back or trimmed again while written: the copy is stale */
#define PFN_F_ORPHAN 0x4      /* its page was freed during the I/O: the I/O's end frees it */
#define PFN_F_READING 0x8     /* an in-page read into it is in progress (a hard fault) */
#define PFN_LINK_NIL 0xFFFFFFFFu
/* The most executable system mappings one frame may have at once: a count at it refuses
 * another (MmProtectMdlSystemAddress answers STATUS_INSUFFICIENT_RESOURCES). */
#define PFN_EXEC_MAPS_MAX 255u

struct pfn_stats {
	uint64_t ram;          /* frames of RAM (every state but NOT_RAM) */
	uint64_t free;         /* FREE + ZEROED */
	uint64_t zeroed;
	uint64_t active;
	uint64_t locked;       /* frames with lock_count > 0 */
	uint64_t page_tables;
	uint64_t kernel;
	uint64_t firmware;
	uint64_t reclaimed;    /* boot-services and loader frames given back after boot */
	uint64_t standby;      /* on the standby list */
	uint64_t modified;     /* MODIFIED: on the modified list or being written */
	uint64_t repurposed;   /* standby frames the allocator took since boot */
};

/* Allocation flags. */
#define PFN_ALLOC_ZERO 0x1     /* the frame reads as zero */
/* Never relieve memory pressure, even where it may run: short of frames, the answer is at
 * once (MmAllocatePagesForMdlEx's MM_ALLOCATE_NO_WAIT: the caller must not wait for the
 * trimmer and the modified page writer). */
#define PFN_ALLOC_NO_RELIEF 0x8 /* MM_ALLOCATE_NO_WAIT's bit: mdl.c passes it as it is */

/* Build the database from the boot information's memory map (before the kernel's own page
 * tables: it is reached through the loader's direct map, which has the same base). */
void pfn_init(const struct mdlab_bootinfo *bi);
/* Give the loader's and the boot services' memory back, except what the kernel still uses
 * (its image, the boot information and what it points to).  Only once the kernel runs on its
 * own page tables and its own stack. */
void pfn_reclaim_boot_memory(const struct mdlab_bootinfo *bi);

/* Memory pressure (mm/RULES.md, "Paging": NT's MiEnsureAvailablePageOrWait): before
 * pfn_alloc, pfn_alloc_inpage and pfn_alloc_batch_in over the whole database fail for want of
 * a free or standby frame, they call the relief routine registered here once and try again
 * once (not with PFN_ALLOC_NO_RELIEF).  The routine (uvm_relieve_pressure: the trimmer and
 * the modified page writer) is the memory manager's, above this module, so it is called
 * through this hook, not included; it returns at once, 0, where it may not run (at
 * DISPATCH_LEVEL or above, with interrupts off, with a ranked lock held, or on a CPU already
 * relieving), so the allocation then fails as before.  A run (pfn_alloc_run, pfn_alloc_in) and a window narrower
 * than the database are served from the free lists only, which relief does not refill: they
 * never ask.  Registered once, at boot (mm_init), before a second CPU runs. */
void pfn_set_pressure_relief(uint64_t (*relieve)(void));
/* One frame, O(1); PFN_INVALID when none is left (after relief, above). */
pfn_t pfn_alloc(unsigned flags, enum pfn_owner owner);
/* One frame within [low, high] (inclusive frame numbers); PFN_INVALID when none. */
pfn_t pfn_alloc_in(pfn_t low, pfn_t high, unsigned flags, enum pfn_owner owner);
/* `count` physically contiguous frames within [low, high], the first a multiple of `align`
 * frames (a power of two); returns the first, or PFN_INVALID when no such run is free. */
pfn_t pfn_alloc_run(pfn_t low, pfn_t high, uint64_t count, uint64_t align, unsigned flags,
		    enum pfn_owner owner);
/* Up to `count` frames (not necessarily contiguous) within [low, high] into out[]; returns
 * how many it got.  One pass over the window (the free lists when it spans everything).
 * A nonzero owner_id is recorded as each frame's owner under the same hold of the PFN lock
 * (what pfn_set_owner_frames would do after it). */
uint64_t pfn_alloc_batch_in(pfn_t low, pfn_t high, uint64_t count, unsigned flags, enum pfn_owner owner,
			    uint64_t owner_id, pfn_t *out);
/* Free an ACTIVE or PAGE_TABLE frame.  Freeing a frame that is free, locked, or not ours is
 * bug check PFN_LIST_CORRUPT; one that still has a memory type other than WB is a PANIC:
 * whoever typed it calls memtype_release_frame first (mm/memtype.h says why). */
void pfn_free(pfn_t pfn);
void pfn_free_run(pfn_t first, uint64_t count);
/* pfn_free of each of pfns[0..n), the lock taken once. */
void pfn_free_frames(const pfn_t *pfns, uint64_t n);

/* Paging (mm/RULES.md, "Paging"): the life of a pageable user page's frame, for mm/uvm.c
 * (its address-space lock held) and mm/pagefile.c (the modified page writer).  A frame in
 * transition is named by its PTE's physical address: every call that finds its PTE checks
 * the frame still belongs to that PTE, under the PFN lock, since the allocator may have
 * repurposed it (and rewritten the PTE as a pagefile PTE) in the meantime. */
/* Trimmed pages' ACTIVE frames pfns[0..n), whose PTEs at pte_pas[i] are now their transition
 * PTEs: onto the modified list (or, while the writer holds one, marked REDIRTIED), under one
 * hold of the PFN lock. */
void pfn_trimmed_frames(const pfn_t *pfns, const uint64_t *pte_pas, uint64_t n);
enum pfn_take { PFN_TAKE_OK, PFN_TAKE_GONE, PFN_TAKE_BUSY };
/* A soft fault: the transition frame of the PTE at pte_pa back to ACTIVE (PFN_TAKE_OK;
 * *slot, when not 0, is a pagefile copy the caller frees), PFN_TAKE_GONE when the frame is
 * no longer that PTE's (repurposed: read the PTE again), PFN_TAKE_BUSY while an in-page
 * read into it runs (a collided fault: wait for it). */
enum pfn_take pfn_take_back(pfn_t pfn, uint64_t pte_pa, uint32_t *slot);
/* Decommit or teardown of a transition PTE: its frame freed (or, during I/O, left to the
 * I/O's end); false when the frame was no longer the PTE's (read it again).  *slot as above. */
bool pfn_release_transition(pfn_t pfn, uint64_t pte_pa, uint32_t *slot);
/* pfn_free of a resident user or paged-pool page's frame, which the writer may still be
 * writing (then the writer's end frees it). */
void pfn_free_user(pfn_t pfn);
/* The modified page writer: up to max frames off the modified list, each marked WRITING and
 * locked once (nothing frees or repurposes it); then, the write done, each unlocked and put
 * where it now belongs: standby with slots[i] (written, still in transition), back on the
 * modified list (the write failed), or nowhere (taken back, trimmed again or freed meanwhile:
 * its slot goes to free_slots[], *nfree counts them). */
uint64_t pfn_take_modified(pfn_t *out, uint64_t max);
void pfn_write_done(const pfn_t *pfns, const uint32_t *slots, uint64_t n, bool ok, uint32_t *free_slots,
		    uint64_t *nfree);
/* A hard fault: a frame of `owner` for the PTE at pte_pa, marked READING from `slot` (PFN_INVALID when
 * none is left, the allocator's repurposing and relief included); and its end: true when the page was
 * freed during the read (the frame is freed here), else the frame is the caller's, ACTIVE. */
pfn_t pfn_alloc_inpage(uint64_t pte_pa, uint32_t slot, enum pfn_owner owner);
bool pfn_inpage_done(pfn_t pfn);
/* A collided fault's wait, with no lock held: until frame pfn is no longer being read for
 * the PTE at pte_pa, at PASSIVE_LEVEL or APC_LEVEL with interrupts on while it spins (as
 * KeWaitForSingleObject waits). */
void pfn_wait_inpage(pfn_t pfn, uint64_t pte_pa);

/* Changes of one frame, each by the module that owns that part of its life. */
void pfn_set_page_table(pfn_t pfn, bool is_table);   /* pt.c: ACTIVE <-> PAGE_TABLE */
/* MmProbeAndLockPages / MmUnlockPages: one lock more or less on a RAM frame (a frame that
 * is not RAM, I/O space, has nothing to pin: no-op).  Unlocking a frame that holds no lock
 * is bug check PFN_LIST_CORRUPT (0x07, pfn, state). */
void pfn_lock_frame(pfn_t pfn);
void pfn_unlock_frame(pfn_t pfn);
/* The same for n frames at once (one call per MDL); pfn_lock_frames returns whether any
 * frame was not RAM (I/O space). */
bool pfn_lock_frames(const pfn_t *pfns, uint64_t n);
void pfn_unlock_frames(const pfn_t *pfns, uint64_t n);
/* The owner-specific word of an ACTIVE frame (pool: its pool address; MDL: the MDL). */
void pfn_set_owner(pfn_t pfn, uint64_t owner);
/* pfn_set_owner of each of pfns[0..n) to the same owner, the lock taken once. */
void pfn_set_owner_frames(const pfn_t *pfns, uint64_t n, uint64_t owner);
/* Record the memory type of every mapping of the frame.  Only mm/memtype.c calls it, after
 * making the frame's direct-map alias agree (memtype_set_frame). */
void pfn_record_memtype(pfn_t pfn, enum memtype t);
/* For memtype_make_untyped_frames: each of pfns[0..n), a WB frame of RAM (else a PANIC),
 * recorded untyped (MT_NONE), the lock taken once. */
void pfn_make_untyped_frames(const pfn_t *pfns, uint64_t n);
/* The executable-mapping count of a frame (mm/RULES.md decision 3), changed only by mm/mdl.c
 * under its executable-mapping lock, each change a locked operation (a full fence: the
 * count is raised before the W^X checks that follow it).  pfn_exec_raise: one more, false
 * (nothing changed) for a frame beyond the database, which has no count to hold it to the
 * rule, or one at PFN_EXEC_MAPS_MAX.  pfn_exec_lower: one less, returns what is left; a
 * count of 0 is a PANIC (the bookkeeping is broken).  pfn_exec_maps reads it without the
 * lock (0 beyond the database): the writable-mapping paths' check, after their fence. */
bool pfn_exec_raise(pfn_t pfn);
unsigned pfn_exec_lower(pfn_t pfn);
static inline unsigned pfn_exec_maps(const struct pfn_entry *e)
{
	return e ? __atomic_load_n(&e->exec_maps, __ATOMIC_RELAXED) : 0;
}
/* Whether a UEFI memory type is RAM (usable after boot, or firmware-owned). */
bool efi_type_is_ram(uint32_t type);

/* NULL beyond the database.  Inline (every free of an MDL's frames reads each frame's
 * entry): pfn.c's pointer and extent through a const view, set once by pfn_init. */
extern const struct pfn_entry *pfn_db_view;
extern pfn_t pfn_db_view_limit;
static inline const struct pfn_entry *pfn_entry(pfn_t pfn)
{
	return pfn < pfn_db_view_limit ? &pfn_db_view[pfn] : NULL;
}
/* The locks on a frame that keep its page where it is (MmProbeAndLockPages and the kernel's
 * own lockers): its lock count less the modified page writer's hold, which only keeps the
 * frame for the write (a free or a trim meanwhile is taken care of at the write's end:
 * PFN_F_ORPHAN, PFN_F_REDIRTIED), so a user's free or the trimmer must not count it.  Read
 * without the PFN lock: the count is read first, and pfn_write_done clears the flag before it
 * drops the count, so a read racing the write's end can only see the writer's hold too (one
 * more than the truth, as before the read), never one too few. */
static inline uint32_t pfn_page_locks(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	if (!e)
		return 0; /* beyond the database (I/O space): nothing is pinned */
	uint32_t n = __atomic_load_n(&e->lock_count, __ATOMIC_ACQUIRE);
	uint8_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
	return n - (n && (f & PFN_F_WRITING) ? 1 : 0);
}
bool pfn_is_ram(pfn_t pfn);
/* Whether RAM frame `pfn` stays put while something maps it: locked by MmProbeAndLockPages,
 * kernel or firmware memory, or allocated to an owner (pool, an MDL, a stack...).  False for
 * a free frame, a page table, and anything that is not RAM. */
bool pfn_frame_is_pinned(pfn_t pfn);
/* How many leading frames of pfns[0..n) are pinned (as above) and record one same memory
 * type (not MT_NONE), which goes to *type; 0 (and *type untouched) when pfns[0] is not
 * such a frame.  The MDL mapping's fast path (memtype_mapping_run): one pass, no call per
 * frame. */
uint64_t pfn_pinned_run(const pfn_t *pfns, uint64_t n, enum memtype *type);
/* pfn_pinned_run of one frame (the one-page mapping's): whether it is pinned and typed,
 * its type in *type. */
bool pfn_pinned_frame(pfn_t pfn, enum memtype *type);
pfn_t pfn_limit(void);                         /* one past the highest frame in the database */
void pfn_get_stats(struct pfn_stats *out);
/* Check the database against itself under the PFN lock: each free list's links, states and
 * length, the per-state counts and the locked-frame count; returns the findings (printed
 * with `print`). */
uint64_t pfn_audit(bool print);
const char *pfn_state_name(enum pfn_state s);
const char *pfn_owner_name(enum pfn_owner o);

/* The direct map: every RAM frame at KVA_DIRECT_MAP_BASE + physical address. */
static inline void *phys_to_virt(uint64_t pa) { return (void *)(KVA_DIRECT_MAP_BASE + pa); }
static inline void *pfn_to_virt(pfn_t pfn) { return phys_to_virt(pfn << PAGE_SHIFT); }
static inline uint64_t direct_virt_to_phys(const void *va) { return (uint64_t)va - KVA_DIRECT_MAP_BASE; }

#endif
