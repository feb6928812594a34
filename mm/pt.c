/*
 * The page-table module (see pt.h for the contract).
 *
 * A virtual address splits into four 9-bit table indices and a 12-bit offset:
 *     63..48 sign  47..39 PML4  38..30 PDPT  29..21 PD  20..12 PT  11..0 offset
 * Every function here shares one walk (walk_to), which returns the entry of a given level for
 * an address, creating intermediate tables and splitting large leaves on the way when asked.
 * Tables are reached through the direct map.
 */
#include "mm/pt.h"
#include "kernel/bugcheck.h"
#include "kernel/cpufeat.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/tlb.h"

/* Entry bits (SDM Vol. 3, 4.5).  Nothing outside this file uses them. */
#define E_P (1ull << 0)
#define E_RW (1ull << 1)
#define E_US (1ull << 2)
#define E_PWT (1ull << 3)
#define E_PCD (1ull << 4)
#define E_A (1ull << 5)
#define E_D (1ull << 6)
#define E_PS (1ull << 7)        /* levels 2 and 3: this entry is a leaf */
#define E_PAT_4K (1ull << 7)    /* level 1 leaves */
#define E_G (1ull << 8)
#define E_PAT_LARGE (1ull << 12) /* level 2 and 3 leaves */
#define E_NX (1ull << 63)
#define E_ADDR 0x000FFFFFFFFFF000ull

struct pt_root kernel_root;

/*
 * The kernel page-table lock (mm/RULES.md, "Locks"): held by every change of the kernel
 * half's tables through a walk (tables made, leaves split and merged, tables pruned) and by
 * every walk that reads them, since a merge on another CPU frees the table a walk is
 * reading (pt_leaf_unlocked excepted: pt.h says when its answer holds).  The kernel half is shared by every address space, so it is taken for any root
 * when the range reaches the kernel half.  A process's user half is its process's to lock.
 * The prepopulated ranges (the system PTEs) are never walked after pt_prepopulate: their
 * PTEs belong to whoever reserved them, and their functions take no lock.
 */
static struct klock kpt_lock = KLOCK_INIT(KLOCK_KERNEL_PT);

/* A change or a probe's walk of a process's user half without its address-space lock: another
 * CPU may free the table being read (a prune in uvm.c), so this is a bug of the caller. */
static __attribute__((noreturn, noinline, cold)) void unguarded(const struct pt_root *r, uint64_t va)
{
	PANIC("user tables %lx changed or walked at %lx without the address-space lock", r->pml4, va);
}

static inline void assert_guarded(const struct pt_root *r, uint64_t va)
{
	if (r->guard && va < USER_VA_END && __builtin_expect(!klock_held_here(r->guard), 0))
		unguarded(r, va);
}

/* A read-only walk (pt_query, pt_for_each_leaf) from a caller that does not hold the
 * address-space lock of the user half it reaches takes it for the walk: what it returns is
 * a snapshot.  True when it was taken here. */
static inline bool guard_take(const struct pt_root *r, uint64_t va, KIRQL *irql)
{
	if (!r->guard || va >= USER_VA_END || klock_held_here(r->guard))
		return false;
	*irql = klock_acquire(r->guard);
	return true;
}

static inline void guard_drop(const struct pt_root *r, bool taken, KIRQL irql)
{
	if (taken)
		klock_release(r->guard, irql);
}

/* Take kpt_lock when [.., last] of r reaches the kernel's tables; false (nothing taken) for
 * a range of a process's user half, whose lock (r->guard) is held. */
static inline bool kpt_take(const struct pt_root *r, uint64_t last, KIRQL *irql)
{
	if (r != &kernel_root && last < USER_VA_END)
		return false;
	*irql = klock_acquire(&kpt_lock);
	return true;
}

static inline void kpt_drop(bool taken, KIRQL irql)
{
	if (taken)
		klock_release(&kpt_lock, irql);
}

static uint64_t level_size(int level) { return 1ull << (12 + 9 * (level - 1)); }
static unsigned index_of(uint64_t va, int level) { return (va >> (12 + 9 * (level - 1))) & 511; }
static uint64_t *table_va(uint64_t pa) { return phys_to_virt(pa); }
static bool is_leaf(uint64_t e, int level) { return level == 1 || (e & E_PS); }
static uint64_t pat_bit(int level) { return level == 1 ? E_PAT_4K : E_PAT_LARGE; }

static uint64_t leaf_pa(uint64_t e, int level)
{
	return e & E_ADDR & ~(level_size(level) - 1);
}

/* Constructors. */
static uint64_t make_table_entry(uint64_t table_pa, bool user_half)
{
	/* Non-leaf entries grant everything; the leaf decides (rights AND, NX OR across levels). */
	return table_pa | E_P | E_RW | (user_half ? E_US : 0);
}

static uint64_t make_leaf(uint64_t pa, int level, struct pt_attrs a)
{
	struct pat_bits b = pat_bits_for(a.type);
	uint64_t e = pa | E_P | E_A | (a.write ? E_RW | E_D : 0);
	e |= a.user ? E_US : 0;
	e |= a.global ? E_G : 0;
	e |= a.exec ? 0 : E_NX;
	e |= (b.pwt ? E_PWT : 0) | (b.pcd ? E_PCD : 0) | (b.pat ? pat_bit(level) : 0);
	e |= level > 1 ? E_PS : 0;
	return e;
}

static struct pat_bits leaf_pat_bits(uint64_t e, int level)
{
	return (struct pat_bits){ .pat = e & pat_bit(level), .pcd = e & E_PCD, .pwt = e & E_PWT };
}

/* The attributes a leaf grants by its own bits. */
static struct pt_attrs leaf_attrs(uint64_t e, int level)
{
	return (struct pt_attrs){ .write = e & E_RW, .exec = !(e & E_NX), .user = e & E_US,
				  .global = e & E_G, .type = pat_type_of(leaf_pat_bits(e, level)) };
}

static uint64_t alloc_table(void)
{
	pfn_t pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
	if (pfn == PFN_INVALID)
		return 0;
	pfn_set_page_table(pfn, true);
	return pfn << PAGE_SHIFT;
}

static void free_table(uint64_t pa)
{
	pfn_set_page_table(pa >> PAGE_SHIFT, false);
	pfn_free(pa >> PAGE_SHIFT);
}

/* Replace the large leaf *slot of r (at `level`, covering `base`) by a table of 512 leaves
 * one level down with the same frames, rights and type.  False when no frame is left. */
static bool split_leaf(const struct pt_root *r, uint64_t *slot, int level, uint64_t base)
{
	uint64_t e = *slot, tpa = alloc_table();
	if (!tpa)
		return false;
	struct pt_attrs a = leaf_attrs(e, level);
	uint64_t *t = table_va(tpa), pa = leaf_pa(e, level), step = level_size(level - 1);
	for (int i = 0; i < 512; i++)
		t[i] = make_leaf(pa + i * step, level - 1, a) | (e & E_D);
	*slot = make_table_entry(tpa, base < USER_VA_END);
	/* One INVLPG drops the large translation and the paging-structure caches. */
	tlb_flush_page(r, base);
	return true;
}

/*
 * Return a pointer to the level-`target` entry for va.  With `create`, missing tables are
 * allocated and a large leaf above `target` is split; then NULL means no frame was left.
 * Without it, NULL means the walk met a hole or a leaf above `target`; *stop_level (if
 * given) says at which level it stopped.
 */
static uint64_t *walk_to(const struct pt_root *r, uint64_t va, int target, bool create, int *stop_level)
{
	/* A non-canonical address has no entry: its index bits would name some other page's. */
	if (!pt_is_canonical(va)) {
		if (create)
			PANIC("walk_to: 0x%lx is not canonical", va);
		if (stop_level)
			*stop_level = 4;
		return NULL;
	}
	uint64_t *table = table_va(r->pml4);
	for (int level = 4; level > target; level--) {
		uint64_t *slot = &table[index_of(va, level)];
		if (!(*slot & E_P)) {
			if (!create) {
				if (stop_level)
					*stop_level = level;
				return NULL;
			}
			uint64_t tpa = alloc_table();
			if (!tpa)
				return NULL;
			*slot = make_table_entry(tpa, va < USER_VA_END);
		} else if (is_leaf(*slot, level)) {
			if (!create) {
				if (stop_level)
					*stop_level = level;
				return NULL;
			}
			if (!split_leaf(r, slot, level, va & ~(level_size(level) - 1)))
				return NULL;
		}
		table = table_va(*slot & E_ADDR);
	}
	return &table[index_of(va, target)];
}

/* Find the present leaf that maps va: its slot and level, or NULL. */
static uint64_t *find_leaf(const struct pt_root *r, uint64_t va, int *level_out)
{
	*level_out = 4;
	if (!pt_is_canonical(va))
		return NULL; /* no entry maps it (walk_to) */
	uint64_t *table = table_va(r->pml4);
	for (int level = 4; level >= 1; level--) {
		uint64_t *slot = &table[index_of(va, level)];
		*level_out = level;
		if (!(*slot & E_P))
			return NULL;
		if (level < 4 && is_leaf(*slot, level))
			return slot;
		table = table_va(*slot & E_ADDR);
	}
	return NULL;
}

/* Ranges whose page tables are made once and kept (the system-PTE region): never pruned,
 * never merged, so writing their PTEs never allocates.  Their level-1 tables are one
 * physically contiguous run, so the range's PTEs form one array in the direct map (as NT's
 * system PTEs do): the PTE of va is ptes[(va - lo) / PAGE_SIZE], no walk.  They are the
 * kernel's, in the kernel half: their tables are shared by every address space, so their
 * PTE functions need no root, and their flushes are kernel_root's. */
#define MAX_PINNED 4
static struct {
	uint64_t lo, hi;
	uint64_t *ptes;
} pinned[MAX_PINNED];
static int npinned;

static bool is_pinned(uint64_t va)
{
	if (va < USER_VA_END)
		return false; /* the user half has none (pt_prepopulate) */
	for (int i = 0; i < npinned; i++)
		if (va >= pinned[i].lo && va < pinned[i].hi)
			return true;
	return false;
}

bool pt_prepopulate(uint64_t va, uint64_t size)
{
	if (npinned == MAX_PINNED || (va | size) & (LARGE_PAGE_SIZE - 1) || va < USER_VA_END)
		PANIC("pt_prepopulate: %d pinned ranges, or 0x%lx+0x%lx not 2 MiB-aligned in the kernel half",
		      npinned, va, size);
	uint64_t tables = size / LARGE_PAGE_SIZE;
	pfn_t first = pfn_alloc_run(0, ~0ul, tables, 1, PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
	if (first == PFN_INVALID)
		return false;
	KIRQL irql = klock_acquire(&kpt_lock);
	for (uint64_t i = 0; i < tables; i++) {
		pfn_set_page_table(first + i, true);
		uint64_t *pde = walk_to(&kernel_root, va + i * LARGE_PAGE_SIZE, 2, true, NULL);
		if (!pde || (*pde & E_P))
			PANIC("pt_prepopulate: 0x%lx is in use or out of frames", va + i * LARGE_PAGE_SIZE);
		*pde = make_table_entry((first + i) << PAGE_SHIFT, false);
	}
	pinned[npinned].lo = va;
	pinned[npinned].hi = va + size;
	pinned[npinned].ptes = pfn_to_virt(first);
	npinned++;
	klock_release(&kpt_lock, irql);
	return true;
}

static uint64_t *pinned_ptes_search(uint64_t va, uint64_t n);

/* The PTEs of [va, va + n pages), a slice of a pinned range's array.  The first range (the
 * system-PTE space) is looked at inline; a slice inside it cannot wrap. */
static inline uint64_t *pinned_ptes(uint64_t va, uint64_t n)
{
	if (va >= pinned[0].lo && va < pinned[0].hi && n <= (pinned[0].hi - va) / PAGE_SIZE)
		return pinned[0].ptes + (va - pinned[0].lo) / PAGE_SIZE;
	return pinned_ptes_search(va, n);
}

static __attribute__((noinline)) uint64_t *pinned_ptes_search(uint64_t va, uint64_t n)
{
	for (int i = 0; i < npinned; i++)
		if (va >= pinned[i].lo && va + n * PAGE_SIZE <= pinned[i].hi && va + n * PAGE_SIZE >= va)
			return pinned[i].ptes + (va - pinned[i].lo) / PAGE_SIZE;
	PANIC("pinned_ptes: 0x%lx+%lu pages is not in a prepopulated range", va, n);
}

void pt_set_ptes(uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a)
{
	if (a.user && va + n * PAGE_SIZE > USER_VA_END)
		PANIC("pt_set_ptes: user mapping 0x%lx+%lu pages reaches the kernel half", va, n);
	uint64_t proto = make_leaf(0, 1, a), *pte = pinned_ptes(va, n);
	for (uint64_t i = 0; i < n; i++) {
		if (pte[i] & E_P)
			PANIC("pt_set_ptes: 0x%lx is already mapped", va + i * PAGE_SIZE);
		pte[i] = proto | (pfns[i] << PAGE_SHIFT);
	}
}

/* make_leaf(0, 1, a), remembered for the last attributes asked (a pure function of them:
 * pat_bits_for is a fixed table), so a mapping does not redo the PAT lookup.  Every CPU maps,
 * so the attributes and the entry they give live in one word, written and read whole: a
 * prototype's frame bits (51..12) are 0, and the attributes' key goes in bits 59..52 (ignored
 * by the processor at level 1 without protection keys, and stripped before use).  A CPU
 * reads one CPU's key with that CPU's entry, never a key with another's entry. */
#define PROTO_KEY_SHIFT 52
#define PROTO_KEY_MASK (0xFFull << PROTO_KEY_SHIFT)
static uint64_t last_proto_word; /* 0: nothing remembered */

/* The attributes' key, never 0: the rights in bits 0-3, the type (below 8) in bits 4-6,
 * bit 7 set.  A type of 8 or more (MT_NONE) never matches a remembered key. */
static inline uint64_t proto_key(struct pt_attrs a)
{
	return ((uint64_t)a.write | (uint64_t)a.exec << 1 | (uint64_t)a.user << 2 | (uint64_t)a.global << 3 |
		((uint64_t)a.type & 7) << 4 | 0x80) << PROTO_KEY_SHIFT;
}

static inline bool proto_hit(uint64_t w, struct pt_attrs a)
{
	return (w & PROTO_KEY_MASK) == proto_key(a) && (unsigned)a.type < 8;
}

static __attribute__((noinline)) uint64_t leaf_proto_4k_new(struct pt_attrs a)
{
	uint64_t proto = make_leaf(0, 1, a);
	if ((unsigned)a.type < 8)
		__atomic_store_n(&last_proto_word, proto | proto_key(a), __ATOMIC_RELAXED);
	return proto;
}

/* The remembered one inline, so a mapping's PTE writer makes no call for it. */
static inline uint64_t leaf_proto_4k(struct pt_attrs a)
{
	uint64_t w = __atomic_load_n(&last_proto_word, __ATOMIC_RELAXED);
	if (proto_hit(w, a))
		return w & ~PROTO_KEY_MASK;
	return leaf_proto_4k_new(a);
}

void pt_set_ptes_run(uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a)
{
	uint64_t proto = leaf_proto_4k(a), *pte = pinned_ptes(va, n), i = 0;
	/* The tight part: no call, everything in registers, four PTEs a step. */
	for (; i + 4 <= n; i += 4) {
		pte[i] = proto | (pfns[i] << PAGE_SHIFT);
		pte[i + 1] = proto | (pfns[i + 1] << PAGE_SHIFT);
		pte[i + 2] = proto | (pfns[i + 2] << PAGE_SHIFT);
		pte[i + 3] = proto | (pfns[i + 3] << PAGE_SHIFT);
	}
	for (; i < n; i++)
		pte[i] = proto | (pfns[i] << PAGE_SHIFT);
}

static __attribute__((noinline)) void set_pte_any(uint64_t va, uint64_t pfn, struct pt_attrs a)
{
	*pinned_ptes(va, 1) = leaf_proto_4k(a) | (pfn << PAGE_SHIFT);
}

void pt_set_pte(uint64_t va, uint64_t pfn, struct pt_attrs a)
{
	/* The common case inline (the remembered attributes, the system-PTE range); any other
	 * goes the general way, with nothing left to do after it. */
	uint64_t w = __atomic_load_n(&last_proto_word, __ATOMIC_RELAXED);
	if (proto_hit(w, a) && va >= pinned[0].lo && va < pinned[0].hi) {
		pinned[0].ptes[(va - pinned[0].lo) / PAGE_SIZE] = (w & ~PROTO_KEY_MASK) | (pfn << PAGE_SHIFT);
		return;
	}
	set_pte_any(va, pfn, a);
}

void pt_reprotect_ptes(uint64_t va, uint64_t n, bool present, bool write, bool exec)
{
	uint64_t *pte = pinned_ptes(va, n);
	for (uint64_t i = 0; i < n; i++) {
		if (!(pte[i] & E_ADDR))
			PANIC("pt_reprotect_ptes: 0x%lx holds no frame", va + i * PAGE_SIZE);
		uint64_t e = pte[i] & ~(E_P | E_RW | E_D | E_NX);
		e |= (present ? E_P : 0) | (write ? E_RW | E_D : 0) | (exec ? 0 : E_NX);
		pte[i] = e;
	}
	/* Leaves only, in pinned tables: an idle CPU may take it on waking. */
	tlb_flush_leaf_range(&kernel_root, va, n * PAGE_SIZE);
}

void pt_clear_ptes(uint64_t va, uint64_t n)
{
	if (n == 1) {
		/* The common one-page mapping: one store, one INVLPG (and, tested first, a lookup
		 * with no length to check). */
		*pinned_ptes(va, 1) = 0;
		tlb_flush_leaf_page(&kernel_root, va);
		return;
	}
	uint64_t *pte = pinned_ptes(va, n), i = 0;
	for (; i + 4 <= n; i += 4)
		pte[i] = pte[i + 1] = pte[i + 2] = pte[i + 3] = 0;
	for (; i < n; i++)
		pte[i] = 0;
	/* Leaves only: the system-PTE tables are pinned, never freed (an idle CPU may take the
	 * flush on waking). */
	tlb_flush_leaf_range(&kernel_root, va, n * PAGE_SIZE);
}

void pt_clear_ptes_local(uint64_t va, uint64_t n)
{
	uint64_t *pte = pinned_ptes(va, n);
	for (uint64_t i = 0; i < n; i++)
		pte[i] = 0;
	tlb_flush_range_local(&kernel_root, va, n * PAGE_SIZE);
}

static bool table_empty(const uint64_t *t)
{
	for (int i = 0; i < 512; i++)
		if (t[i])
			return false;
	return true;
}

/* Table frames pt_unmap has unlinked, freed only after the range's flush: another CPU's
 * paging-structure caches may still point at an unlinked table until its invalidation
 * reaches it (SDM Vol. 3, 4.10.4.1: invalidate after the change, reuse the frame after), so
 * the frame must not be handed out, and written as a new table, before then. */
struct deferred_tables {
	const struct pt_root *r;
	uint64_t va, size;  /* the range being unmapped: flushed before an early free */
	unsigned n;
	uint64_t pa[16];
};

static void free_deferred(struct deferred_tables *d)
{
	for (unsigned i = 0; i < d->n; i++)
		free_table(d->pa[i]);
	d->n = 0;
}

static void free_table_after_flush(struct deferred_tables *d, uint64_t tpa)
{
	if (!d) {
		free_table(tpa);
		return;
	}
	if (d->n == sizeof d->pa / sizeof d->pa[0]) {
		tlb_flush_range(d->r, d->va, d->size);
		free_deferred(d);
	}
	d->pa[d->n++] = tpa;
}

/* After clearing an entry for va at `level`, free every table on the path that became empty,
 * bottom up (with d, after the flush of d's range).  PDPTs under the kernel half of the
 * PML4 are shared by every address space and are never freed. */
static void prune(const struct pt_root *r, uint64_t va, int level, struct deferred_tables *d)
{
	if (is_pinned(va))
		return;
	for (int l = level; l < 4; l++) {
		uint64_t *parent = walk_to(r, va, l + 1, false, NULL);
		/* No table at this level (a walk that failed half-way): look one level up. */
		if (!parent || !(*parent & E_P))
			continue;
		if (is_leaf(*parent, l + 1))
			return;
		if (l + 1 == 4 && va >= USER_VA_END)
			return;
		uint64_t tpa = *parent & E_ADDR;
		if (!table_empty(table_va(tpa)))
			return;
		*parent = 0;
		free_table_after_flush(d, tpa);
	}
}

static int choose_level(uint64_t va, uint64_t pa, uint64_t left, unsigned flags)
{
	if (flags & PT_MAP_LARGE) {
		if (cpu_features.page1g && !((va | pa) & (HUGE_PAGE_SIZE - 1)) && left >= HUGE_PAGE_SIZE)
			return 3;
		if (!((va | pa) & (LARGE_PAGE_SIZE - 1)) && left >= LARGE_PAGE_SIZE)
			return 2;
	}
	return 1;
}

static void unmap_locked(struct pt_root *r, uint64_t va, uint64_t size);

static bool map_locked(struct pt_root *r, uint64_t va, uint64_t pa, uint64_t size, struct pt_attrs a, unsigned flags)
{
	if ((va | pa | size) & (PAGE_SIZE - 1))
		PANIC("pt_map: unaligned request va 0x%lx pa 0x%lx size 0x%lx", va, pa, size);
	if (a.user && va + size > USER_VA_END)
		PANIC("pt_map: user mapping 0x%lx+0x%lx reaches the kernel half", va, size);
	uint64_t done = 0;
	while (done < size) {
		int level = choose_level(va + done, pa + done, size - done, flags);
		uint64_t *slot = walk_to(r, va + done, level, true, NULL);
		if (!slot) {
			/* No half-made mapping: undo what was mapped and the tables this walk made. */
			unmap_locked(r, va, done);
			prune(r, va + done, 1, NULL); /* tables this walk made, never holding a leaf */
			return false;
		}
		if (*slot & E_P)
			PANIC("pt_map: 0x%lx is already mapped (entry 0x%lx)", va + done, *slot);
		*slot = make_leaf(pa + done, level, a);
		done += level_size(level);
	}
	/* A not-present entry is never cached, so a new mapping needs no flush. */
	return true;
}

static bool map_frames_locked(struct pt_root *r, uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a)
{
	if (va & (PAGE_SIZE - 1))
		PANIC("pt_map_frames: unaligned va 0x%lx", va);
	if (a.user && (n > (USER_VA_END - va) / PAGE_SIZE || va >= USER_VA_END))
		PANIC("pt_map_frames: user mapping 0x%lx+%lu pages reaches the kernel half", va, n);
	/* make_leaf(pa, 1, a) is make_leaf(0, 1, a) | pa: the memory-type bits do not depend on
	 * the frame (SDM Vol. 3, 4.5, table 4-19). */
	uint64_t proto = make_leaf(0, 1, a), done = 0;
	while (done < n) {
		uint64_t page = va + done * PAGE_SIZE;
		uint64_t *pte = walk_to(r, page, 1, true, NULL);
		if (!pte) {
			/* No half-made mapping: as pt_map, undo the pages and the tables made. */
			unmap_locked(r, va, done * PAGE_SIZE);
			prune(r, page, 1, NULL); /* tables this walk made, never holding a leaf */
			return false;
		}
		/* The rest of this page table, one walk for all of it. */
		uint64_t left = n - done, room = 512 - index_of(page, 1);
		if (left > room)
			left = room;
		for (uint64_t k = 0; k < left; k++) {
			if (pte[k] & E_P)
				PANIC("pt_map_frames: 0x%lx is already mapped (entry 0x%lx)", page + k * PAGE_SIZE, pte[k]);
			pte[k] = proto | (pfns[done + k] << PAGE_SHIFT);
		}
		done += left;
	}
	/* A not-present entry is never cached, so a new mapping needs no flush. */
	return true;
}

static void unmap_locked(struct pt_root *r, uint64_t va, uint64_t size)
{
	uint64_t end = va + size, cur = va;
	struct deferred_tables d = { .r = r, .va = va, .size = size };
	while (cur < end) {
		int level;
		uint64_t *slot = find_leaf(r, cur, &level);
		uint64_t lsize = level_size(level), base = cur & ~(lsize - 1);
		if (!slot) { /* a hole at `level`: skip it */
			if (base + lsize <= cur)
				break; /* the top of the address space */
			cur = base + lsize;
			continue;
		}
		if (base < cur || base + lsize > end) {
			/* The leaf straddles an edge of the range: split, then look again. */
			if (!split_leaf(r, slot, level, base))
				PANIC("pt_unmap: no frame to split the page at 0x%lx", base);
			continue;
		}
		if (level == 1) {
			/* The present PTEs of the range left in this table cleared in one pass, the
			 * table pruned once when they are done (the same end state as a prune per
			 * page: a table is freed when it holds nothing). */
			uint64_t left = (end - cur) / PAGE_SIZE, room = 512 - index_of(cur, 1);
			if (left > room)
				left = room;
			for (uint64_t k = 0; k < left; k++)
				if (slot[k] & E_P)
					slot[k] = 0;
			uint64_t last = cur + (left - 1) * PAGE_SIZE;
			prune(r, last, 1, &d);
			if (last + PAGE_SIZE <= cur)
				break;
			cur = last + PAGE_SIZE;
			continue;
		}
		*slot = 0;
		prune(r, cur, level, &d);
		if (base + lsize <= cur)
			break;
		cur = base + lsize;
	}
	tlb_flush_range(r, va, size);
	free_deferred(&d);
}

/* If the table under the level-`level` entry for va holds 512 leaves with contiguous frames
 * and identical attributes, replace it by one leaf (the large page it came from). */
static void try_merge(const struct pt_root *r, uint64_t va, int level)
{
	if ((level == 3 && !cpu_features.page1g) || is_pinned(va))
		return;
	uint64_t *slot = walk_to(r, va, level, false, NULL);
	if (!slot || !(*slot & E_P) || is_leaf(*slot, level))
		return;
	uint64_t tpa = *slot & E_ADDR, *t = table_va(tpa);
	int child = level - 1;
	if (!(t[0] & E_P) || !is_leaf(t[0], child))
		return;
	uint64_t pa0 = leaf_pa(t[0], child);
	if (pa0 & (level_size(level) - 1))
		return;
	struct pt_attrs a0 = leaf_attrs(t[0], child);
	for (int i = 1; i < 512; i++) {
		if (!(t[i] & E_P) || !is_leaf(t[i], child) || leaf_pa(t[i], child) != pa0 + i * level_size(child) ||
		    !pt_attrs_equal(leaf_attrs(t[i], child), a0))
			return;
	}
	*slot = make_leaf(pa0, level, a0);
	tlb_flush_range(r, va & ~(level_size(level) - 1), level_size(level));
	free_table(tpa);
}

static bool protect_locked(struct pt_root *r, uint64_t va, uint64_t size, struct pt_attrs a)
{
	uint64_t end = va + size;
	if (a.user && end > USER_VA_END)
		PANIC("pt_protect: user access to 0x%lx+0x%lx reaches the kernel half", va, size);
	/* Pass 1: split the leaves that straddle the range's edges (the only allocations). */
	for (uint64_t edge_i = 0; edge_i < 2; edge_i++) {
		uint64_t edge = edge_i ? end : va;
		for (;;) {
			int level;
			uint64_t *slot = find_leaf(r, edge, &level);
			uint64_t base = edge & ~(level_size(level) - 1);
			if (!slot || base == edge)
				break;
			if (!split_leaf(r, slot, level, base))
				return false;
		}
	}
	/* Pass 2: rewrite every leaf inside, keeping its frame. */
	for (uint64_t cur = va; cur < end;) {
		int level;
		uint64_t *slot = find_leaf(r, cur, &level);
		uint64_t lsize = level_size(level), base = cur & ~(lsize - 1);
		if (slot)
			*slot = make_leaf(leaf_pa(*slot, level), level, a) | (*slot & E_D);
		if (base + lsize <= cur)
			break;
		cur = base + lsize;
	}
	tlb_flush_range(r, va, size);
	/* Pass 3: merge back what became uniform around the edges (at most two tables a level). */
	for (int level = 2; level <= 3; level++) {
		try_merge(r, va, level);
		if (end - 1 != va)
			try_merge(r, end - 1, level);
	}
	return true;
}

void (*pt_test_retype_window)(uint64_t va);

/* A kernel page's memory type changed by SDM Vol. 3A, 11.12.4 ("Programming the PAT"): the
 * old mapping made not present, the TLBs of every CPU flushed, then the new mapping.  The
 * caller flushes the caches through the new mapping (memtype.c). */
static bool retype_locked(uint64_t va, enum memtype t)
{
	uint64_t *slot;
	int level;
	for (;;) {
		slot = find_leaf(&kernel_root, va, &level);
		if (!slot)
			PANIC("pt_retype_page: 0x%lx is not mapped", va);
		if (level == 1)
			break;
		if (!split_leaf(&kernel_root, slot, level, va & ~(level_size(level) - 1)))
			return false; /* nothing changed */
	}
	/* One atomic step: an A or D bit another CPU's page walk sets between a read and a
	 * write of the entry would otherwise be lost (SDM Vol. 3A, 4.8: the processor sets them
	 * with a locked update). */
	uint64_t old = __atomic_fetch_and(slot, ~E_P, __ATOMIC_SEQ_CST);
	tlb_flush_range(&kernel_root, va, PAGE_SIZE); /* this CPU and every other (the IPI) */
	if (pt_test_retype_window)
		pt_test_retype_window(va);
	/* The same frame, rights, G, A and D; only the three type bits change.  A not-present
	 * entry is never cached (SDM Vol. 3A, 4.10.2.3), so the new one needs no flush. */
	struct pat_bits b = pat_bits_for(t);
	uint64_t e = old & ~(E_PWT | E_PCD | E_PAT_4K);
	e |= (b.pwt ? E_PWT : 0) | (b.pcd ? E_PCD : 0) | (b.pat ? E_PAT_4K : 0);
	*slot = e;
	for (int l = 2; l <= 3; l++)
		try_merge(&kernel_root, va, l);
	return true;
}

bool pt_retype_page(uint64_t va, enum memtype t)
{
	KIRQL irql;
	bool k = kpt_take(&kernel_root, va, &irql);
	bool ok = retype_locked(va, t);
	kpt_drop(k, irql);
	return ok;
}

static void query_locked(const struct pt_root *r, uint64_t va, struct pt_query *q)
{
	memset(q, 0, sizeof *q);
	q->eff = (struct pt_attrs){ .write = true, .exec = true, .user = true };
	q->level = 4;
	/* A non-canonical address translates to nothing (SDM Vol. 3A, 4.5: the CPU raises #GP
	 * without walking); its truncated index bits must not find another page's entry. */
	if (!pt_is_canonical(va))
		return;
	uint64_t table_pa = r->pml4;
	for (int level = 4; level >= 1; level--) {
		uint64_t *slot = &table_va(table_pa)[index_of(va, level)];
		q->entry[level] = *slot;
		q->entry_pa[level] = table_pa + index_of(va, level) * 8;
		q->level = level;
		if (!(*slot & E_P))
			return;
		q->eff.write &= !!(*slot & E_RW);
		q->eff.user &= !!(*slot & E_US);
		q->eff.exec &= !(*slot & E_NX);
		if (level < 4 && is_leaf(*slot, level)) {
			uint64_t size = level_size(level);
			q->present = true;
			q->leaf_va = va & ~(size - 1);
			q->leaf_size = size;
			q->pa = leaf_pa(*slot, level) + (va & (size - 1));
			q->eff.global = *slot & E_G;
			q->pat_slot = pat_slot(leaf_pat_bits(*slot, level));
			q->eff.type = pat_slot_type(q->pat_slot);
			return;
		}
		table_pa = *slot & E_ADDR;
	}
}

static uint64_t canonical(uint64_t va) { return (va & (1ull << 47)) ? va | 0xFFFF000000000000ull : va; }

/* One walk per page table (SDM Vol. 3, 4.5: the rights of a 4 KiB page are its PTE's ANDed
 * with those of the three entries above it, so the upper three are read once for all the
 * PTEs of one table; a 2 MiB or 1 GiB leaf maps frames in order).  The answer per page is
 * the same as pt_query's: present, RW and U/S effective where asked. */
static uint64_t translate_run_locked(const struct pt_root *r, uint64_t va, uint64_t n, bool write, bool user,
				     uint64_t *pfns, bool *read_only)
{
	uint64_t need = E_P | (write ? E_RW : 0) | (user ? E_US : 0), done = 0;
	/* The RW bits of every entry of every page that passed, ANDed: one AND a page. */
	uint64_t rw_all = E_RW;
	while (done < n) {
		uint64_t page = va + done * PAGE_SIZE;
		/* A non-canonical or wrapped address translates to nothing (SDM Vol. 3, 4.5). */
		if (canonical(page) != page || page < va)
			break;
		const uint64_t *table = table_va(r->pml4);
		uint64_t e = 0, upper = need, rw = E_RW;
		int level = 4;
		for (; level > 1; level--) {
			e = table[index_of(page, level)];
			upper &= e;
			rw &= e;
			if (!(e & E_P) || (level < 4 && (e & E_PS)))
				break;
			table = table_va(e & E_ADDR);
		}
		if (upper != need)
			break;
		uint64_t left = n - done;
		if (level > 1) {
			/* A large leaf with the rights asked: its frames follow one another. */
			uint64_t pages = level_size(level) / PAGE_SIZE, first = (page >> PAGE_SHIFT) & (pages - 1);
			uint64_t pfn = (leaf_pa(e, level) >> PAGE_SHIFT) + first;
			if (left > pages - first)
				left = pages - first;
			for (uint64_t k = 0; pfns && k < left; k++)
				pfns[done + k] = pfn + k;
			rw_all &= rw;
			done += left;
			continue;
		}
		/* The PTEs of this table from page on: each checked, none walked to. */
		unsigned i = index_of(page, 1);
		if (left > 512 - i)
			left = 512 - i;
		const uint64_t *pte = table + i;
		uint64_t k = 0, pte_rw = E_RW;
		for (; k < left; k++) {
			if ((pte[k] & need) != need)
				break;
			pte_rw &= pte[k];
			if (pfns)
				pfns[done + k] = (pte[k] & E_ADDR) >> PAGE_SHIFT;
		}
		if (k)
			rw_all &= rw & pte_rw;
		done += k;
		if (k < left)
			break;
	}
	if (read_only && !(rw_all & E_RW))
		*read_only = true;
	return done;
}

struct walk_ctx {
	uint64_t lo, hi_incl;
	pt_leaf_fn fn;
	void *ctx;
};

static void walk_table(struct walk_ctx *w, uint64_t table_pa, int level, uint64_t base, struct pt_attrs eff)
{
	const uint64_t *t = table_va(table_pa);
	uint64_t size = level_size(level);
	for (int i = 0; i < 512; i++) {
		uint64_t va = canonical(base + i * size), last = va + size - 1;
		if (last < w->lo || va > w->hi_incl || !(t[i] & E_P))
			continue;
		struct pt_attrs e = eff;
		e.write &= !!(t[i] & E_RW);
		e.user &= !!(t[i] & E_US);
		e.exec &= !(t[i] & E_NX);
		if (level < 4 && is_leaf(t[i], level)) {
			struct pat_bits b = leaf_pat_bits(t[i], level);
			e.global = t[i] & E_G;
			e.type = pat_type_of(b);
			struct pt_leaf leaf = { .va = va, .size = size, .pa = leaf_pa(t[i], level),
						.level = level, .entry = t[i], .eff = e,
						.own = leaf_attrs(t[i], level), .pat_slot = pat_slot(b) };
			w->fn(&leaf, w->ctx);
		} else {
			walk_table(w, t[i] & E_ADDR, level - 1, va, e);
		}
	}
}

void pt_for_each_leaf(const struct pt_root *r, uint64_t lo, uint64_t hi, pt_leaf_fn fn, void *ctx)
{
	struct walk_ctx w = { .lo = lo, .hi_incl = hi ? hi - 1 : ~0ull, .fn = fn, .ctx = ctx };
	KIRQL girql, irql;
	bool g = guard_take(r, lo, &girql);
	bool k = kpt_take(r, w.hi_incl, &irql);
	walk_table(&w, r->pml4, 4, 0, (struct pt_attrs){ .write = true, .exec = true, .user = true });
	kpt_drop(k, irql);
	guard_drop(r, g, girql);
}

/* ---- the walking calls: the kernel page-table lock around each (kpt_take) ---------------- */

bool pt_map(struct pt_root *r, uint64_t va, uint64_t pa, uint64_t size, struct pt_attrs a, unsigned flags)
{
	assert_guarded(r, va);
	KIRQL irql;
	bool k = kpt_take(r, va + size - 1, &irql);
	bool ok = map_locked(r, va, pa, size, a, flags);
	kpt_drop(k, irql);
	return ok;
}

bool pt_map_frames(struct pt_root *r, uint64_t va, const uint64_t *pfns, uint64_t n, struct pt_attrs a)
{
	assert_guarded(r, va);
	KIRQL irql;
	bool k = kpt_take(r, va + n * PAGE_SIZE - 1, &irql);
	bool ok = map_frames_locked(r, va, pfns, n, a);
	kpt_drop(k, irql);
	return ok;
}

void pt_unmap(struct pt_root *r, uint64_t va, uint64_t size)
{
	assert_guarded(r, va);
	KIRQL irql;
	bool k = kpt_take(r, va + size - 1, &irql);
	unmap_locked(r, va, size);
	kpt_drop(k, irql);
}

bool pt_protect(struct pt_root *r, uint64_t va, uint64_t size, struct pt_attrs a)
{
	assert_guarded(r, va);
	KIRQL irql;
	bool k = kpt_take(r, va + size - 1, &irql);
	bool ok = protect_locked(r, va, size, a);
	kpt_drop(k, irql);
	return ok;
}

void pt_query(const struct pt_root *r, uint64_t va, struct pt_query *q)
{
	KIRQL girql, irql;
	bool g = guard_take(r, va, &girql);
	bool k = kpt_take(r, va, &irql);
	query_locked(r, va, q);
	kpt_drop(k, irql);
	guard_drop(r, g, girql);
}

uint64_t pt_leaf_unlocked(const struct pt_root *r, uint64_t va)
{
	if (!pt_is_canonical(va))
		return 0;
	uint64_t table_pa = r->pml4;
	for (int level = 4; level > 1; level--) {
		uint64_t e = __atomic_load_n(&table_va(table_pa)[index_of(va, level)], __ATOMIC_ACQUIRE);
		if (!(e & E_P) || is_leaf(e, level))
			return 0;
		table_pa = e & E_ADDR;
	}
	return __atomic_load_n(&table_va(table_pa)[index_of(va, 1)], __ATOMIC_ACQUIRE);
}

uint64_t pt_translate_run(const struct pt_root *r, uint64_t va, uint64_t n, bool write, bool user, uint64_t *pfns,
			  bool *read_only)
{
	assert_guarded(r, va);
	KIRQL irql;
	bool k = kpt_take(r, va + n * PAGE_SIZE - 1, &irql);
	uint64_t done = translate_run_locked(r, va, n, write, user, pfns, read_only);
	kpt_drop(k, irql);
	return done;
}

/* ---- software PTEs (pt.h; NT's x64 MMPTE_TRANSITION and MMPTE_SOFTWARE) ---- */

#define SW_PAGEFILE_LOW_SHIFT 1
#define SW_PAGEFILE_LOW_MASK (0xFull << SW_PAGEFILE_LOW_SHIFT)
#define SW_PROTECTION_SHIFT 5
#define SW_PROTECTION_MASK (0x1Full << SW_PROTECTION_SHIFT)
#define SW_PROTOTYPE (1ull << 10)
#define SW_TRANSITION (1ull << 11)
#define SW_PFN_MASK 0x0000FFFFFFFFF000ull  /* PageFrameNumber, bits 12-47 */
#define SW_PAGEFILE_HIGH_SHIFT 32

void pt_decode_software(uint64_t e, struct pt_sw *out)
{
	memset(out, 0, sizeof *out);
	if (!e) {
		out->kind = PT_SW_ZERO;
		return;
	}
	if (e & E_P) {
		out->kind = PT_SW_VALID;
		out->pfn = (e & E_ADDR) >> PAGE_SHIFT;
		return;
	}
	out->protection = (unsigned)((e & SW_PROTECTION_MASK) >> SW_PROTECTION_SHIFT);
	if (e & SW_PROTOTYPE) {
		out->kind = PT_SW_PROTOTYPE;
	} else if (e & SW_TRANSITION) {
		out->kind = PT_SW_TRANSITION;
		out->pfn = (e & SW_PFN_MASK) >> PAGE_SHIFT;
	} else {
		out->pagefile = (unsigned)((e & SW_PAGEFILE_LOW_MASK) >> SW_PAGEFILE_LOW_SHIFT);
		out->offset = (uint32_t)(e >> SW_PAGEFILE_HIGH_SHIFT);
		out->kind = out->offset ? PT_SW_PAGEFILE : PT_SW_DEMAND_ZERO;
	}
}

uint64_t pt_transition_pte(uint64_t pfn, unsigned protection)
{
	return SW_TRANSITION | ((uint64_t)(protection & 0x1F) << SW_PROTECTION_SHIFT) | ((pfn << PAGE_SHIFT) & SW_PFN_MASK);
}

uint64_t pt_pagefile_pte(unsigned pagefile, uint32_t offset, unsigned protection)
{
	return ((uint64_t)offset << SW_PAGEFILE_HIGH_SHIFT) | ((uint64_t)(protection & 0x1F) << SW_PROTECTION_SHIFT) |
	       ((uint64_t)(pagefile & 0xF) << SW_PAGEFILE_LOW_SHIFT);
}

uint64_t pt_trim_page(struct pt_root *r, uint64_t va, uint64_t sw)
{
	assert_guarded(r, va);
	if ((va >= USER_VA_END && r != &kernel_root) || (sw & E_P))
		PANIC("pt_trim_page: 0x%lx is not a user or kernel page, or 0x%lx is valid", va, sw);
	KIRQL irql;
	bool k = kpt_take(r, va, &irql);
	int level;
	uint64_t *slot = find_leaf(r, va, &level);
	if (!slot || level != 1)
		PANIC("pt_trim_page: 0x%lx has no 4 KiB leaf", va);
	/* One atomic step: a CPU's page walk may set A or D meanwhile (retype_locked's reason). */
	uint64_t old = __atomic_exchange_n(slot, sw, __ATOMIC_SEQ_CST);
	tlb_flush_range(r, va & ~(PAGE_SIZE - 1), PAGE_SIZE);
	kpt_drop(k, irql);
	return old;
}

void pt_trim_kernel_pages(const uint64_t *va, const uint64_t *sw, unsigned n)
{
	if (n > PT_TRIM_BATCH)
		PANIC("pt_trim_kernel_pages: %u pages, more than %u", n, PT_TRIM_BATCH);
	struct tlb_range ranges[PT_TRIM_BATCH];
	unsigned nr = 0;
	KIRQL irql;
	bool k = kpt_take(&kernel_root, ~0ul, &irql);
	for (unsigned i = 0; i < n; i++) {
		if (va[i] < USER_VA_END || (va[i] & (PAGE_SIZE - 1)) || (sw[i] & E_P))
			PANIC("pt_trim_kernel_pages: 0x%lx is not a kernel page, or 0x%lx is valid", va[i], sw[i]);
		int level;
		uint64_t *slot = find_leaf(&kernel_root, va[i], &level);
		if (!slot || level != 1)
			PANIC("pt_trim_kernel_pages: 0x%lx has no 4 KiB leaf", va[i]);
		/* One atomic step each, as pt_trim_page's. */
		__atomic_exchange_n(slot, sw[i], __ATOMIC_SEQ_CST);
		if (nr && ranges[nr - 1].va + (uint64_t)ranges[nr - 1].pages * PAGE_SIZE == va[i])
			ranges[nr - 1].pages++;
		else
			ranges[nr++] = (struct tlb_range){ .va = va[i], .pages = 1 };
	}
	/* This CPU's entries page by page, then every other CPU's in one round: the batch's one
	 * shootdown, made before the call returns (the strict rule: nothing reaches a frame
	 * through an old translation once it is on a list). */
	for (unsigned i = 0; i < nr; i++)
		tlb_flush_range_local(&kernel_root, ranges[i].va, (uint64_t)ranges[i].pages * PAGE_SIZE);
	tlb_purge(ranges, nr);
	kpt_drop(k, irql);
}

uint64_t pt_trim_run_unflushed(struct pt_root *r, uint64_t va, uint64_t n, pt_trim_pick_fn pick, void *ctx)
{
	if ((va & (PAGE_SIZE - 1)) || va >= USER_VA_END || n > (USER_VA_END - va) / PAGE_SIZE)
		PANIC("pt_trim_run_unflushed: 0x%lx, %lu pages is not a user range", va, n);
	assert_guarded(r, va);
	uint64_t done = 0, exchanged = 0;
	while (done < n) {
		uint64_t p = va + done * PAGE_SIZE;
		/* One walk a page table: the rest of this table's 512 leaves, or of the range. */
		uint64_t in_table = 512 - index_of(p, 1), cnt = in_table < n - done ? in_table : n - done;
		uint64_t *slot = walk_to(r, p, 1, false, NULL);
		for (uint64_t k = 0; slot && k < cnt; k++) {
			uint64_t e = __atomic_load_n(&slot[k], __ATOMIC_RELAXED);
			if (!(e & E_P))
				continue;
			uint64_t sw = pick(ctx, p + k * PAGE_SIZE, (e & E_ADDR) >> PAGE_SHIFT, direct_virt_to_phys(&slot[k]));
			if (!sw)
				continue;
			if (sw & E_P)
				PANIC("pt_trim_run_unflushed: 0x%lx would be valid at 0x%lx", sw, p + k * PAGE_SIZE);
			/* One atomic step, as pt_trim_page: a page walk may set A or D meanwhile. */
			__atomic_exchange_n(&slot[k], sw, __ATOMIC_SEQ_CST);
			exchanged++;
		}
		done += cnt; /* no table (a hole, or a large leaf, which no user page is): none here */
	}
	return exchanged;
}

void pt_set_software(struct pt_root *r, uint64_t va, uint64_t sw)
{
	assert_guarded(r, va);
	if ((va >= USER_VA_END && r != &kernel_root) || (sw & E_P))
		PANIC("pt_set_software: 0x%lx is not a user or kernel page, or 0x%lx is valid", va, sw);
	KIRQL irql;
	bool k = kpt_take(r, va, &irql);
	uint64_t *slot = walk_to(r, va, 1, false, NULL);
	if (!slot) {
		if (sw)
			PANIC("pt_set_software: 0x%lx has no page table", va);
		kpt_drop(k, irql);
		return;
	}
	if (*slot & E_P)
		PANIC("pt_set_software: 0x%lx is valid (0x%lx)", va, *slot);
	__atomic_store_n(slot, sw, __ATOMIC_SEQ_CST);
	if (!sw) {
		/* As unmap_locked: a table that became empty is freed after the flush. */
		struct deferred_tables d = { .r = r, .va = va, .size = PAGE_SIZE };
		prune(r, va, 1, &d);
		if (d.n)
			tlb_flush_range(r, va, PAGE_SIZE);
		free_deferred(&d);
	}
	kpt_drop(k, irql);
}

bool pt_swap_software_at(uint64_t pte_pa, uint64_t expect, uint64_t sw)
{
	if ((expect & E_P) || (sw & E_P))
		PANIC("pt_swap_software_at: 0x%lx -> 0x%lx is not between software PTEs", expect, sw);
	return __atomic_compare_exchange_n((uint64_t *)phys_to_virt(pte_pa), &expect, sw, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

bool pt_root_create(struct pt_root *r)
{
	uint64_t pa = alloc_table();
	if (!pa)
		return false;
	uint64_t *k = table_va(kernel_root.pml4), *n = table_va(pa);
	for (int i = 256; i < 512; i++)
		n[i] = k[i];
	r->pml4 = pa;
	r->guard = NULL;
	return true;
}

uint64_t pt_table_frames(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.page_tables;
}

void pt_describe_entry(uint64_t e, int level, char *buf, unsigned size)
{
	bool leaf = level == 1 || (level < 4 && (e & E_PS));
	ksnprintf(buf, size, "%s %s %s %s %s %s %s %s %s %s", e & E_P ? "P" : "-", e & E_RW ? "RW" : "R-",
		  e & E_US ? "U" : "S", e & E_PWT ? "PWT" : "---", e & E_PCD ? "PCD" : "---",
		  e & E_A ? "A" : "-", e & E_D ? "D" : "-",
		  !leaf ? "--" : level == 1 ? (e & E_PAT_4K ? "PAT" : "---") : (e & E_PAT_LARGE ? "PS PAT" : "PS ---"),
		  e & E_G ? "G" : "-", e & E_NX ? "NX" : "X");
}

/* For the kernel address-space setup: the PML4 must exist before anything is mapped. */
bool pt_kernel_root_init(void)
{
	uint64_t pa = alloc_table();
	if (!pa)
		return false;
	kernel_root.pml4 = pa;
	/* Every kernel-half PDPT exists from the start, so address spaces made later share the
	 * whole kernel half by copying 256 PML4 entries once. */
	for (int i = 256; i < 512; i++) {
		uint64_t t = alloc_table();
		if (!t)
			return false;
		table_va(pa)[i] = make_table_entry(t, false);
	}
	return true;
}

/* For the audit's own proof test only: set or clear the U/S bit of the leaf mapping va,
 * making a leaf no other call here would make (a user page in the kernel half). */
void pt_test_set_leaf_user(struct pt_root *r, uint64_t va, bool user)
{
	int level;
	uint64_t *slot = find_leaf(r, va, &level);
	if (!slot)
		PANIC("pt_test_set_leaf_user: 0x%lx is not mapped", va);
	*slot = user ? *slot | E_US : *slot & ~E_US;
	tlb_flush_page(r, va);
}

uint64_t pt_cache_bits(enum memtype t, int level)
{
	if (t >= MT_COUNT)
		return PT_CACHE_BITS_INVALID;
	struct pat_bits b = pat_bits_for(t);
	return (b.pwt ? E_PWT : 0) | (b.pcd ? E_PCD : 0) | (b.pat ? pat_bit(level) : 0);
}

enum memtype pt_entry_memtype(uint64_t entry, int level)
{
	return pat_type_of(leaf_pat_bits(entry, level));
}

void pt_root_destroy(struct pt_root *r)
{
	const uint64_t *t = table_va(r->pml4);
	for (int i = 0; i < 256; i++)
		if (t[i])
			PANIC("pt_root_destroy: the user half of 0x%lx still maps slot %d", r->pml4, i);
	free_table(r->pml4);
	r->pml4 = 0;
}

/* The benchmark's baseline: the least work the hardware needs to map and unmap n pages in a
 * prepopulated range — write n PTEs from a PFN array, clear them, INVLPG each. */
void pt_bench_baseline(uint64_t va, const uint64_t *pfns, uint64_t n)
{
	uint64_t *pte = pinned_ptes(va, n), proto = make_leaf(0, 1, (struct pt_attrs){ .write = true, .global = true });
	for (uint64_t i = 0; i < n; i++)
		pte[i] = proto | (pfns[i] << PAGE_SHIFT);
	for (uint64_t i = 0; i < n; i++) {
		pte[i] = 0;
		tlb_bench_invlpg(va + i * PAGE_SIZE);
	}
}
