#include "mm/pool.h"
#include "kernel/accounting.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "kernel/smp/percpu.h"
#include "mm/layout.h"
#include "mm/pagefile.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vrange.h"

/* Slab slot sizes; a slot holds a header, the caller's bytes and >= GUARD_MIN guard bytes. */
static const uint32_t class_size[] = { 32, 64, 128, 256, 512, 1024, 2048 };
#define NCLASSES (sizeof class_size / sizeof class_size[0])
_Static_assert(NCLASSES == KCPU_POOL_CLASSES, "kcpu.pool_kept has one block per class");
#define GUARD_MIN 8

#define MAGIC_LIVE 0x4556494Cu /* "LIVE" */
#define MAGIC_FREE 0x45455246u /* "FREE": given out once, freed since */
#define MAGIC_NEW 0x2057454Eu  /* "NEW ": never given out */

struct pool_header {
	uint32_t tag;
	uint32_t size;
	uint32_t magic;
	uint16_t flags;    /* HDR_* */
	uint16_t reserved;
};
#define HDR_UNINIT 0x1

enum page_kind { PP_NEVER = 0, PP_SLAB, PP_LARGE_HEAD, PP_LARGE_TAIL, PP_RELEASED };

/* A slab page's free slots are bits of its record, never words in the page: the pool's lock
 * is a spin lock (DISPATCH_LEVEL), and a paged slab page may be out when the lock is held,
 * so nothing under it reads or writes a slab page's bytes (mm/RULES.md, "Paging"). */
#define SLOTS_MAX (PAGE_SIZE / 32)

struct pool_page {
	uint64_t free_map[SLOTS_MAX / 64]; /* slab: bit i set = slot i free */
	uint8_t kind;       /* enum page_kind */
	uint8_t paged;
	uint8_t cls;        /* slab: class index */
	uint8_t uninit;     /* large head: POOL_FLAG_UNINITIALIZED */
	uint32_t user_maps; /* mappings of this page into user address spaces */
	uint32_t tag;       /* large head */
	uint32_t bytes;     /* large head: bytes asked; slab: slots in use */
	uint32_t npages;    /* large head: pages (guard excluded) */
	uint32_t next, prev;/* slab: links among its class's pages with free slots */
};

static struct vrange va_space;
static struct pool_page *pages;
/* Bit i set: page i is a page of paged pool in use (a large allocation's or a slab's), so
 * pageable.  A part of the page records kept apart, one word for 64 pages, so that a probe of
 * a nonpaged buffer learns it is not paged pool in a load or two (pool_range_pageable); set
 * and cleared under the lock, read without it. */
uint64_t *pool_pageable_map;
uint32_t pool_va_pages;
static uint64_t pages_pfn, pages_frames;
static uint32_t partial[2][NCLASSES]; /* [paged][class]: pages with a free slot */
/* [paged][class]: the one slab page kept, empty, mapped and on its partial chain, when the
 * last slot of a page was freed (VRANGE_NONE: none).  So a class whose use goes from one
 * allocation to none and back (an MDL allocated and freed per request) does not map, format,
 * unmap and shoot down a page each time, as SLUB keeps empty slabs on its partial list and
 * NT's lookaside lists keep freed blocks.  pool_trim gives them back. */
static uint32_t spare[2][NCLASSES];
static struct pool_stats stats;

#define TAG_SLOTS 64
/* A tag's count: `word` is the tag (high half) and its live allocations (low half), changed
 * only by compare-exchange, so an add can never land on a slot that meanwhile went to another
 * tag; `bytes` is an atomic add, made while the allocation is counted in the word (after the
 * add, before the take-away). */
struct tag_count {
	uint64_t word;
	int64_t bytes;
};
static struct tag_count tags[TAG_SLOTS];

/* The pool lock (mm/RULES.md, "Locks"): the VA space, the page records (a slab page's free
 * slots among them), the partial chains of slab pages,
 * the tag and byte counters.  Taken inside the allocation and free routines and the queries
 * below, after the IRQL and argument checks; it is held while the pool maps or unmaps its
 * pages (the kernel page-table and PFN locks come after it). */
static struct klock lock = KLOCK_INIT(KLOCK_POOL);

static bool lock_is_mine(void) { return klock_held_here(&lock); }
static KIRQL pool_lock(void) { return klock_acquire(&lock); }
static void pool_unlock(KIRQL old) { klock_release(&lock, old); }

static uint64_t page_va(uint32_t i) { return KVA_POOL_BASE + (uint64_t)i * PAGE_SIZE; }
static uint32_t page_index(uint64_t va) { return (va - KVA_POOL_BASE) / PAGE_SIZE; }
static bool in_pool(uint64_t va) { return va >= KVA_POOL_BASE && va < page_va(va_space.nslots); }

void pool_init(void)
{
	uint64_t n = cmdline_get_u64("pool", POOL_DEFAULT_PAGES);
	if (n < 64 || n > (KVA_POOL_END - KVA_POOL_BASE) / PAGE_SIZE)
		PANIC("pool_init: pool=%lu pages is out of range", n);
	pages_frames = ALIGN_UP(n * sizeof(struct pool_page) + ALIGN_UP(n, 64) / 8, PAGE_SIZE) / PAGE_SIZE;
	pages_pfn = pfn_alloc_run(0, ~0ul, pages_frames, 1, PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
	if (pages_pfn == PFN_INVALID || !vrange_init(&va_space, (uint32_t)n))
		PANIC("pool_init: out of frames for %lu pool pages", n);
	pages = pfn_to_virt(pages_pfn);
	pool_pageable_map = (uint64_t *)(pages + n);
	pool_va_pages = (uint32_t)n;
	for (int p = 0; p < 2; p++)
		for (unsigned c = 0; c < NCLASSES; c++)
			partial[p][c] = spare[p][c] = VRANGE_NONE;
}

/* ---- counters ---------------------------------------------------------------------- */

/* The slot count_tag found last: a tag is in one slot at most, so when that slot still holds
 * the tag it is the one the scan would find (an allocation and its free, or a loop of them,
 * count the same tag back to back: no scan then).  A hint, read and written without the lock. */
static int last_tag_slot;

static uint32_t word_tag(uint64_t w) { return (uint32_t)(w >> 32); }

/* One more (delta +1) or one fewer (-1) live allocation of `tag` in slot i, if the slot holds
 * the tag (and, to take one away, counts one).  The bytes change only while the allocation
 * is counted in the word: added after the count goes up, taken away before it goes down, so
 * a slot's bytes are its tag's alone (a slot whose count reaches 0 holds 0 bytes when another
 * tag claims it).  A free's bytes are put back if the count is gone meanwhile (a free of an
 * allocation the full table never counted, racing the slot's last counted free). */
static inline __attribute__((always_inline)) bool tag_slot_add(int i, uint32_t tag, int64_t bytes, int delta)
{
	struct tag_count *c = &tags[i];
	uint64_t w = __atomic_load_n(&c->word, __ATOMIC_RELAXED);
	if (delta > 0) {
		do {
			if (word_tag(w) != tag)
				return false;
		} while (!__atomic_compare_exchange_n(&c->word, &w, w + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
		__atomic_fetch_add(&c->bytes, bytes, __ATOMIC_RELAXED);
	} else {
		if (word_tag(w) != tag || !(uint32_t)w)
			return false;
		__atomic_fetch_add(&c->bytes, bytes, __ATOMIC_RELAXED);
		do {
			if (word_tag(w) != tag || !(uint32_t)w) {
				__atomic_fetch_add(&c->bytes, -bytes, __ATOMIC_RELAXED); /* counted no more */
				return false;
			}
		} while (!__atomic_compare_exchange_n(&c->word, &w, w - 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	}
	__atomic_store_n(&last_tag_slot, i, __ATOMIC_RELAXED);
	return true;
}

/* A slot with no live allocation given to `tag`, counting one, under the pool lock (so a tag
 * gets one slot: every claim is made there, after a scan that found none).  False when the
 * table is full (the tag goes uncounted, its frees find nothing to take away). */
static bool tag_claim_locked(uint32_t tag, int64_t bytes)
{
	for (int i = 0; i < TAG_SLOTS; i++) {
		if (tag_slot_add(i, tag, bytes, +1))
			return true; /* claimed meanwhile (before the lock) */
	}
	for (int i = 0; i < TAG_SLOTS; i++) {
		uint64_t w = __atomic_load_n(&tags[i].word, __ATOMIC_RELAXED);
		/* An add to the slot's old tag between the load and the exchange fails it. */
		while (!(uint32_t)w) {
			if (__atomic_compare_exchange_n(&tags[i].word, &w, (uint64_t)tag << 32 | 1, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
				__atomic_fetch_add(&tags[i].bytes, bytes, __ATOMIC_RELAXED);
				__atomic_store_n(&last_tag_slot, i, __ATOMIC_RELAXED);
				return true;
			}
		}
	}
	return false;
}

static bool lock_is_mine(void);
static KIRQL pool_lock(void);
static void pool_unlock(KIRQL old);

/* Count an allocation (+1, bytes > 0) or its free (-1) under its tag: the slot found last,
 * else a scan, without the lock; a tag with no slot gets one under the lock (taken here when
 * the caller does not hold it). */
static __attribute__((noinline)) void count_tag_scan(uint32_t tag, int64_t bytes, int delta, int last);

static inline __attribute__((always_inline)) void count_tag(uint32_t tag, int64_t bytes, int delta)
{
	int last = __atomic_load_n(&last_tag_slot, __ATOMIC_RELAXED);
	if (__builtin_expect(!tag_slot_add(last, tag, bytes, delta), 0))
		count_tag_scan(tag, bytes, delta, last);
}

/* count_tag when the slot found last holds another tag: out of line. */
static void count_tag_scan(uint32_t tag, int64_t bytes, int delta, int last)
{
	for (int i = 0; i < TAG_SLOTS; i++)
		if (i != last && tag_slot_add(i, tag, bytes, delta))
			return;
	if (delta < 0)
		return;
	if (lock_is_mine()) {
		tag_claim_locked(tag, bytes);
		return;
	}
	KIRQL old = pool_lock();
	tag_claim_locked(tag, bytes);
	pool_unlock(old);
}

/* The byte and allocation counts are atomic adds: the per-CPU fast paths (below) count
 * without the lock. */
static inline __attribute__((always_inline)) void account(uint32_t tag, uint64_t size, int delta)
{
	__atomic_fetch_add(&stats.bytes_in_use, delta > 0 ? size : -size, __ATOMIC_RELAXED);
	__atomic_fetch_add(&stats.allocations, (uint64_t)(int64_t)delta, __ATOMIC_RELAXED);
	count_tag(tag, delta > 0 ? (int64_t)size : -(int64_t)size, delta);
}

/* ---- pages ------------------------------------------------------------------------- */

static const struct pt_attrs POOL_RW = { .write = true, .exec = false, .global = true, .type = MT_WB };

/* Reserve `n` pages (+ `guard` unmapped ones after them) of pool VA and back the n with
 * frames; returns the first page index or VRANGE_NONE, leaving nothing behind on failure.
 * *no_frame says why it failed: set when a frame (the page's or a page table's) was
 * missing, the one failure relieving memory pressure can cure; left alone when the VA was. */
static uint32_t get_pages(uint32_t n, uint32_t guard, bool *no_frame)
{
	uint32_t first = vrange_reserve(&va_space, n + guard);
	if (first == VRANGE_NONE)
		return VRANGE_NONE;
	for (uint32_t i = 0; i < n; i++) {
		pfn_t pfn = pfn_alloc(0, PFN_OWNER_POOL);
		if (pfn == PFN_INVALID || !pt_map(&kernel_root, page_va(first + i), pfn << PAGE_SHIFT, PAGE_SIZE, POOL_RW, 0)) {
			*no_frame = true;
			if (pfn != PFN_INVALID)
				pfn_free(pfn);
			for (uint32_t k = 0; k < i; k++) {
				struct pt_query q;
				pt_query(&kernel_root, page_va(first + k), &q);
				pt_unmap(&kernel_root, page_va(first + k), PAGE_SIZE);
				pfn_free(q.pa >> PAGE_SHIFT);
			}
			vrange_release(&va_space, first, n + guard);
			return VRANGE_NONE;
		}
		pfn_set_owner(pfn, page_va(first + i));
	}
	stats.pages_in_use += n;
	return first;
}

static void release_trimmed(uint64_t va);

/* Under the lock: page i's bit of pool_pageable_map. */
static void set_pageable(uint32_t i, bool on)
{
	uint64_t bit = 1ull << (i % 64);
	if (on)
		__atomic_fetch_or(&pool_pageable_map[i / 64], bit, __ATOMIC_RELAXED);
	else
		__atomic_fetch_and(&pool_pageable_map[i / 64], ~bit, __ATOMIC_RELAXED);
}

static void put_pages(uint32_t first, uint32_t n, uint32_t guard)
{
	for (uint32_t i = 0; i < n; i++) {
		struct pt_query q;
		pt_query(&kernel_root, page_va(first + i), &q);
		if (!q.present) {
			release_trimmed(page_va(first + i)); /* an empty paged slab page, trimmed */
		} else {
			pt_unmap(&kernel_root, page_va(first + i), PAGE_SIZE);
			/* A paged page taken back while the writer writes it is the writer's to free. */
			pfn_free_user(q.pa >> PAGE_SHIFT);
		}
		pages[first + i].kind = PP_RELEASED;
		set_pageable(first + i, false);
	}
	if (vrange_release(&va_space, first, n + guard) != VR_OK)
		PANIC("put_pages: pool VA 0x%lx was not reserved", page_va(first));
	stats.pages_in_use -= n;
}

/* ---- slabs ------------------------------------------------------------------------- */

static void partial_add(bool paged, uint32_t pg)
{
	struct pool_page *p = &pages[pg];
	uint32_t *head = &partial[paged][p->cls];
	p->prev = VRANGE_NONE;
	p->next = *head;
	if (*head != VRANGE_NONE)
		pages[*head].prev = pg;
	*head = pg;
}

static void partial_del(bool paged, uint32_t pg)
{
	struct pool_page *p = &pages[pg];
	if (p->prev != VRANGE_NONE)
		pages[p->prev].next = p->next;
	else
		partial[paged][p->cls] = p->next;
	if (p->next != VRANGE_NONE)
		pages[p->next].prev = p->prev;
}

static uint32_t slots_per_page(unsigned cls) { return PAGE_SIZE / class_size[cls]; }

/* A fresh slab page for (paged, cls), every slot free.  Its headers are written here, under
 * the pool lock: the page was mapped just now and no trim (which takes the lock) has seen it. */
static uint32_t new_slab(bool paged, unsigned cls, bool *no_frame)
{
	uint32_t pg = get_pages(1, 0, no_frame);
	if (pg == VRANGE_NONE)
		return VRANGE_NONE;
	uint8_t *base = (uint8_t *)page_va(pg);
	uint32_t sz = class_size[cls], n = slots_per_page(cls);
	for (uint32_t i = 0; i < n; i++) {
		struct pool_header *h = (struct pool_header *)(base + i * sz);
		memset(h, 0, sizeof *h);
		h->magic = MAGIC_NEW;
	}
	struct pool_page *p = &pages[pg];
	memset(p, 0, sizeof *p);
	p->kind = PP_SLAB;
	p->paged = paged;
	p->cls = cls;
	if (paged)
		set_pageable(pg, true);
	for (uint32_t w = 0; w < SLOTS_MAX / 64; w++)
		p->free_map[w] = n >= (w + 1) * 64 ? ~0ull : n > w * 64 ? (1ull << (n - w * 64)) - 1 : 0;
	stats.slab_pages++;
	partial_add(paged, pg);
	return pg;
}

/* The smallest class whose slot holds the header, `size` bytes and GUARD_MIN guard bytes
 * (size < POOL_SMALL_MAX): the classes are the powers of two from 32, so it is the bit
 * length of slot - 1, less 5. */
static unsigned class_of(uint32_t size)
{
	uint32_t slot = sizeof(struct pool_header) + size + GUARD_MIN;
	return slot <= class_size[0] ? 0 : 32 - __builtin_clz(slot - 1) - 5;
}

typedef uint64_t __attribute__((may_alias)) pool_word;
#define WORD_OF(byte) (0x0101010101010101ull * (uint8_t)(byte))

/* Store v into n words from w: eight a step, then four, two and one as n's low bits say
 * (volatile: kept as stores, not made back into a memset call); returns the word after. */
static inline __attribute__((always_inline)) pool_word *store_words(pool_word *w, uint32_t n, uint64_t v)
{
	volatile pool_word *x = w;
	for (; n >= 8; n -= 8, x += 8)
		for (int i = 0; i < 8; i++)
			x[i] = v;
	if (n & 4) {
		x[0] = v;
		x[1] = v;
		x[2] = v;
		x[3] = v;
		x += 4;
	}
	if (n & 2) {
		x[0] = v;
		x[1] = v;
		x += 2;
	}
	if (n & 1)
		*x++ = v;
	return (pool_word *)x;
}

/* A slot's bytes after its header: `size` bytes of `fill` (0, or the uninitialized
 * pattern), then the guard pattern to the end of the slot.  Word stores: the slot is 16-byte
 * aligned and a few words long, where two `rep stosb` would spend more on starting up (tens
 * of cycles each on hardware) than on storing; the large allocations' pages keep memset. */
static inline __attribute__((always_inline)) void fill_slot(uint8_t *data, uint32_t size, uint32_t bytes, uint8_t fill)
{
	const uint64_t f = WORD_OF(fill), g = WORD_OF(POOL_GUARD_PATTERN);
	pool_word *w = store_words((pool_word *)data, size / 8, f);
	if (size % 8) /* the word the data ends in: its low bytes data, the rest guard */
		*w++ = (f & ((1ull << (size % 8 * 8)) - 1)) | (g & ~((1ull << (size % 8 * 8)) - 1));
	store_words(w, (uint32_t)((pool_word *)(data + bytes) - w), g);
}

/* Whether a slot's guard, from data + size to its end (a word boundary), is intact: the
 * word the data ends in compared under a mask, then whole words (fill_slot's layout), four a
 * step, then two and one as the count's low bits say. */
static inline __attribute__((always_inline)) bool slot_guard_intact(const uint8_t *data, uint32_t size,
								     const uint8_t *end)
{
	const uint64_t g = WORD_OF(POOL_GUARD_PATTERN);
	const pool_word *w = (const pool_word *)(data + size / 8 * 8), *e = (const pool_word *)end;
	uint64_t diff = 0;
	if (size % 8)
		diff = (*w++ ^ g) & ~((1ull << (size % 8 * 8)) - 1);
	uint64_t n = (uint64_t)(e - w);
	for (; n >= 4; n -= 4, w += 4)
		diff |= (w[0] ^ g) | (w[1] ^ g) | (w[2] ^ g) | (w[3] ^ g);
	if (n & 2) {
		diff |= (w[0] ^ g) | (w[1] ^ g);
		w += 2;
	}
	if (n & 1)
		diff |= *w ^ g;
	return !diff;
}

static void slot_free_bit(uint32_t pg, struct pool_header *h);
static void drain_kept_locked(void);

static bool map_empty(const struct pool_page *p)
{
	uint64_t any = 0;
	for (uint32_t w = 0; w < SLOTS_MAX / 64; w++)
		any |= p->free_map[w];
	return !any;
}

/* Under the lock: a free slot of class cls taken (its bit cleared, counted in its page), NULL
 * when no page can be had (*no_frame set when for want of a frame, get_pages).  Only the page record changes: the slot is the caller's from here,
 * and slot_give writes it after the lock is released (a paged page may be out). */
static struct pool_header *slab_take(bool paged, unsigned cls, bool *no_frame)
{
	uint32_t pg = partial[paged][cls];
	if (pg == VRANGE_NONE) {
		drain_kept_locked(); /* a free slot some CPU keeps, before a new page */
		pg = partial[paged][cls];
	}
	if (pg == VRANGE_NONE && (pg = new_slab(paged, cls, no_frame)) == VRANGE_NONE)
		return NULL;
	struct pool_page *p = &pages[pg];
	uint32_t w = p->free_map[0] ? 0 : 1;
	uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(p->free_map[w]);
	p->free_map[w] &= p->free_map[w] - 1;
	if (spare[paged][cls] == pg)
		spare[paged][cls] = VRANGE_NONE; /* in use again */
	p->bytes++;
	if (map_empty(p))
		partial_del(paged, pg);
	return (struct pool_header *)(page_va(pg) + (uint64_t)slot * class_size[cls]);
}

/* The slot slab_take took, made the caller's allocation: header, bytes, guard, counted; at
 * the caller's IRQL with no lock held (a paged slot's page faults back in here). */
static void *slot_give(struct pool_header *h, unsigned cls, uint32_t size, uint32_t tag, bool uninit)
{
	h->tag = tag;
	h->size = size;
	h->flags = uninit ? HDR_UNINIT : 0;
	uint8_t *data = (uint8_t *)(h + 1);
	fill_slot(data, size, class_size[cls] - sizeof *h, uninit ? POOL_UNINIT_PATTERN : 0);
	account(tag, size, +1);
	__atomic_store_n(&h->magic, MAGIC_LIVE, __ATOMIC_RELEASE);
	return data;
}

/* ---- each CPU's kept blocks ---------------------------------------------------------- */

/*
 * The small blocks' per-processor fast path, as NT's per-processor lookaside lists for small
 * pool blocks (one block deep): ExFreePool of a small block that passes every check (a live
 * slot's start, its tag, no user mapping, its guard intact) leaves it in this CPU's
 * kcpu.pool_kept[paged][class], and this CPU's next allocation of that class takes it, both
 * by atomic exchange, neither under the pool lock.  The block given out is still zeroed (or
 * patterned) and guarded as any other.  What counts does not see the difference: the free
 * takes the block's bytes and tag count away at once (the byte, allocation and tag counts are
 * atomic, below), its header says FREE (a second free of it is 0x07, as of a free slot), and
 * only the slab page record still counts it; every use of the page records that reports or
 * gives pages back (pool_trim, pool_get_stats, a class with no free slot left) first puts
 * every CPU's kept blocks back as free slots of their pages (drain_kept_locked).  A free
 * that fails a check takes the slow path (free_slab), and a large block pool_free_locked;
 * each says what is wrong.
 */

/* Set by a free that kept a block, after the exchange; cleared by drain_kept_locked before it
 * looks, so a block kept meanwhile sets it again. */
static uint32_t kept_maybe;

/* Under the lock: every CPU's kept blocks free again in their pages' records (one load when
 * none is kept); their bytes are not touched. */
static void drain_kept_locked(void)
{
	if (!__atomic_load_n(&kept_maybe, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&kept_maybe, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		for (int paged = 0; paged < 2; paged++)
			for (unsigned c = 0; c < NCLASSES; c++) {
				void **kept = &kcpus[i].pool_kept[paged][c];
				if (!__atomic_load_n(kept, __ATOMIC_RELAXED))
					continue;
				uint8_t *data = __atomic_exchange_n(kept, NULL, __ATOMIC_ACQUIRE);
				if (data)
					slot_free_bit(page_index((uint64_t)data), (struct pool_header *)data - 1);
			}
}

static void check_guard(const uint8_t *p, const uint8_t *end, uint64_t alloc, KIRQL irql);

/* This CPU's kept block of the class, given out as slot_give gives a slot; NULL if none. */
static void *alloc_kept(bool paged, uint32_t size, uint32_t tag, bool uninit)
{
	unsigned cls = class_of(size);
	void **kept = &this_cpu()->pool_kept[paged][cls];
	if (!__atomic_load_n(kept, __ATOMIC_RELAXED))
		return NULL;
	uint8_t *data = __atomic_exchange_n(kept, NULL, __ATOMIC_ACQUIRE);
	if (!data)
		return NULL;
	struct pool_header *h = (struct pool_header *)data - 1;
	/* Its guard, from the size it had to the slot's end, was found intact when it was freed
	 * (free_kept).  Only the words up to the larger of the two sizes are written again; the
	 * guard in them is looked at first, so a write over it since the free (its old owner's)
	 * is never written away: it is 0xC5 here as at a free, naming the first byte and the
	 * block.  The guard beyond them stays as it is, checked at the block's next free as
	 * every guard is (a block of the same size again writes its data and nothing else). */
	uint32_t before = h->size;
	uint32_t upto = (size > before ? size : before) + 7;
	upto -= upto % 8;
	if (__builtin_expect(upto > before && !slot_guard_intact(data, before, data + upto), 0))
		check_guard(data + before, data + upto, (uint64_t)data, KeGetCurrentIrql());
	h->tag = tag;
	h->size = size;
	h->flags = uninit ? HDR_UNINIT : 0;
	fill_slot(data, size, upto, uninit ? POOL_UNINIT_PATTERN : 0);
	account(tag, size, +1);
	__atomic_store_n(&h->magic, MAGIC_LIVE, __ATOMIC_RELEASE);
	return data;
}

/* The block a CPU kept before, a free slot of its page again under the lock (out of line: the fast
 * path's callers save no registers for it). */
static __attribute__((noinline)) void kept_to_page(uint8_t *data)
{
	KIRQL irql = klock_acquire(&lock);
	slot_free_bit(page_index((uint64_t)data), (struct pool_header *)data - 1);
	klock_release(&lock, irql);
}

/* ExFreePool's fast path for va in slab page pg: true when the block passed every check and
 * is freed, kept by this CPU (the block it kept before becomes a free slot of its page).  False
 * changes nothing: free_slab looks again and stops the machine with what is wrong. */
static inline __attribute__((always_inline)) bool free_kept(uint32_t pg, uint64_t va, bool check_tag, ULONG Tag)
{
	const struct pool_page *p = &pages[pg];
	unsigned cls = p->cls;
	uint32_t sz = class_size[cls], off = (uint32_t)(va - page_va(pg));
	if (off < sizeof(struct pool_header) || (off - sizeof(struct pool_header)) % sz)
		return false;
	struct pool_header *h = (struct pool_header *)va - 1;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MAGIC_LIVE || (check_tag && h->tag != Tag) ||
	    __atomic_load_n(&p->user_maps, __ATOMIC_RELAXED) ||
	    !slot_guard_intact((uint8_t *)va, h->size, (uint8_t *)h + sz))
		return false;
	uint32_t live = MAGIC_LIVE;
	if (!__atomic_compare_exchange_n(&h->magic, &live, MAGIC_FREE, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return false; /* freed meanwhile by another CPU: free_slab finds it freed */
	account(h->tag, h->size, -1);
	uint8_t *old = __atomic_exchange_n(&this_cpu()->pool_kept[p->paged][cls], (void *)va, __ATOMIC_ACQ_REL);
	__atomic_store_n(&kept_maybe, 1, __ATOMIC_SEQ_CST);
	if (old)
		kept_to_page(old);
	return true;
}

/* ---- large ------------------------------------------------------------------------- */

/* NULL when the pages cannot be had; *no_frame set when for want of a frame (get_pages). */
static void *large_alloc(bool paged, uint64_t size, uint32_t tag, bool uninit, bool *no_frame)
{
	uint64_t n = ALIGN_UP(size, PAGE_SIZE) / PAGE_SIZE;
	if (n > va_space.nslots)
		return NULL;
	uint32_t first = get_pages((uint32_t)n, 1, no_frame);
	if (first == VRANGE_NONE)
		return NULL;
	struct pool_page *p = &pages[first];
	memset(p, 0, sizeof *p);
	p->kind = PP_LARGE_HEAD;
	p->paged = paged;
	p->uninit = uninit;
	p->tag = tag;
	p->bytes = (uint32_t)size;
	p->npages = (uint32_t)n;
	for (uint32_t i = 1; i < n; i++) {
		memset(&pages[first + i], 0, sizeof pages[0]);
		pages[first + i].kind = PP_LARGE_TAIL;
		pages[first + i].paged = paged; /* pageable like the head (pageable_page) */
		pages[first + i].npages = first; /* the head */
	}
	if (paged)
		for (uint32_t i = 0; i < n; i++)
			set_pageable(first + i, true);
	uint8_t *data = (uint8_t *)page_va(first);
	memset(data, uninit ? POOL_UNINIT_PATTERN : 0, size);
	memset(data + size, POOL_GUARD_PATTERN, n * PAGE_SIZE - size);
	stats.large_pages += n;
	return data;
}

/* ---- paged pool pages (mm/RULES.md, "Paging") ----------------------------------------- */

#define MM_READWRITE 4 /* the Protection field of a pool page's software PTE */
static struct pool_paging_stats paging;

/* Whether page i may leave memory: a page of paged pool, a large allocation's or a slab's
 * (its free slots are bits of its record, so nothing under the pool lock needs its bytes). */
static bool pageable_page(uint32_t i)
{
	return __atomic_load_n(&pool_pageable_map[i / 64], __ATOMIC_RELAXED) >> (i % 64) & 1;
}

/* Under the lock: the trimmed page at va given back without bringing it in, as a decommit
 * of user memory: a transition PTE's frame freed (or left to the I/O that holds it: the
 * writer's end, or an in-page read's, which then frees the slot), a pagefile PTE's slot
 * freed, the PTE cleared.  Only an empty slab page gets here (put_pages): a large
 * allocation is made resident before its free. */
static void release_trimmed(uint64_t va)
{
	for (;;) {
		struct pt_query q;
		pt_query(&kernel_root, va, &q);
		struct pt_sw sw;
		pt_decode_software(q.level == 1 ? q.entry[1] : 0, &sw);
		uint32_t slot = 0;
		if (sw.kind == PT_SW_TRANSITION && !pfn_release_transition(sw.pfn, q.entry_pa[1], &slot))
			continue; /* repurposed meanwhile: a pagefile PTE now */
		if (sw.kind == PT_SW_PAGEFILE)
			slot = sw.offset;
		else if (sw.kind != PT_SW_TRANSITION)
			PANIC("pool release_trimmed: 0x%lx is neither valid nor trimmed (0x%lx)", va,
			      q.level == 1 ? q.entry[1] : 0);
		pt_set_software(&kernel_root, va, 0);
		if (slot)
			pagefile_free_slot(slot);
		return;
	}
}

/* The batch's PTEs exchanged with one flush for all (pt_trim_kernel_pages), and only then
 * its frames onto the modified list, under one hold of the PFN lock as the user trimmer's
 * (pfn_trimmed_frames): no CPU can write a frame through an old translation once the writer
 * may take it. */
static void trim_batch(const uint64_t *va, const uint64_t *sw, const pfn_t *pfn, const uint64_t *pte_pa, unsigned n)
{
	pt_trim_kernel_pages(va, sw, n);
	pfn_trimmed_frames(pfn, pte_pa, n);
}

void (*pool_test_trim_entry)(bool lock_busy);

uint64_t pool_trim_paged(void)
{
	uint64_t n = 0, va[PT_TRIM_BATCH], sw[PT_TRIM_BATCH], pte_pa[PT_TRIM_BATCH];
	pfn_t pfn[PT_TRIM_BATCH];
	unsigned b = 0;
	if (__builtin_expect(pool_test_trim_entry != NULL, 0))
		pool_test_trim_entry(__atomic_load_n(&lock.word, __ATOMIC_ACQUIRE) != 0);
	KIRQL old = klock_acquire(&lock);
	for (uint32_t i = 0; i < va_space.nslots; i++) {
		if (!pageable_page(i) || pages[i].user_maps)
			continue;
		struct pt_query q;
		pt_query(&kernel_root, page_va(i), &q);
		if (!q.present || q.level != 1)
			continue;
		pfn_t f = q.pa >> PAGE_SHIFT;
		/* A locked frame (MmProbeAndLockPages of the buffer) stays, valid. */
		if (pfn_page_locks(f))
			continue;
		va[b] = page_va(i);
		sw[b] = pt_transition_pte(f, MM_READWRITE);
		pfn[b] = f;
		pte_pa[b] = q.entry_pa[1];
		if (++b == PT_TRIM_BATCH) {
			trim_batch(va, sw, pfn, pte_pa, b);
			n += b;
			b = 0;
		}
	}
	if (b)
		trim_batch(va, sw, pfn, pte_pa, b);
	n += b;
	paging.trimmed += n;
	klock_release(&lock, old);
	return n;
}

/* The frame of a paged page back in its PTE, the pool's again. */
static void map_back(uint32_t i, pfn_t pfn)
{
	if (!pt_map(&kernel_root, page_va(i), pfn << PAGE_SHIFT, PAGE_SIZE, POOL_RW, 0))
		PANIC("pool map_back: the page table of 0x%lx is gone", page_va(i));
	pfn_set_owner(pfn, page_va(i));
}

/* Whether a kernel PTE is a trimmed page's: in transition or in the pagefile. */
static bool trimmed_pte(uint64_t e)
{
	struct pt_sw sw;
	pt_decode_software(e, &sw);
	return sw.kind == PT_SW_TRANSITION || sw.kind == PT_SW_PAGEFILE;
}

NTSTATUS pool_resolve_fault(uint64_t va, bool may_page, NTSTATUS *io_status)
{
	*io_status = STATUS_SUCCESS;
	if (!in_pool(va))
		return STATUS_ACCESS_VIOLATION;
	/* Where nothing may wait, code holding the pool lock, or one ranked after it (the
	 * kernel page-table lock the walk below takes, the PFN lock), touching a trimmed page is
	 * 0x0A, decided before any lock: taking them here would stop it as a lock-order error
	 * (0xC4 0x2009) or a recursion (0xF) instead.  The PTE is read without the lock
	 * (pt_leaf_unlocked: a trimmed page's software PTE keeps its table from being pruned). */
	if (!may_page && klock_holds_rank_from(KLOCK_POOL) && trimmed_pte(pt_leaf_unlocked(&kernel_root, va)))
		return UVM_STATUS_PAGEABLE_AT_DISPATCH;
	uint32_t i = page_index(va);
	NTSTATUS st = STATUS_ACCESS_VIOLATION;
	bool relieved = false;
	KIRQL old = klock_acquire(&lock);
	for (;;) {
		if (!pageable_page(i))
			break;
		struct pt_query q;
		pt_query(&kernel_root, page_va(i), &q);
		if (q.present) {
			st = STATUS_SUCCESS; /* another CPU brought it back: retry */
			break;
		}
		struct pt_sw sw;
		pt_decode_software(q.level == 1 ? q.entry[1] : 0, &sw);
		if (sw.kind != PT_SW_TRANSITION && sw.kind != PT_SW_PAGEFILE)
			break;
		/* Pageable memory below DISPATCH_LEVEL with interrupts on only, soft faults
		 * included (uvm's rule). */
		if (!may_page) {
			st = UVM_STATUS_PAGEABLE_AT_DISPATCH;
			break;
		}
		uint64_t pte_pa = q.entry_pa[1];
		if (sw.kind == PT_SW_TRANSITION) {
			uint32_t slot;
			enum pfn_take r = pfn_take_back(sw.pfn, pte_pa, &slot);
			if (r == PFN_TAKE_GONE)
				continue; /* repurposed meanwhile: a pagefile PTE now */
			if (r == PFN_TAKE_BUSY) {
				/* Another CPU's read of this page: wait for it, then retry. */
				paging.collided_faults++;
				klock_release(&lock, old);
				pfn_wait_inpage(sw.pfn, pte_pa);
				return STATUS_SUCCESS;
			}
			map_back(i, sw.pfn);
			if (slot)
				pagefile_free_slot(slot);
			paging.soft_faults++;
			st = STATUS_SUCCESS;
			break;
		}
		/* A hard fault: a frame marked as being read, the PTE a transition PTE to it, the
		 * pool lock released around the read (a free of the allocation first makes it
		 * resident, so it waits for this read as a collided fault). */
		pfn_t f = pfn_alloc_inpage(pte_pa, sw.offset, PFN_OWNER_POOL);
		if (f == PFN_INVALID && !relieved) {
			/* No frame: the pressure relieved without the lock (its trim of paged pool
			 * takes it), then the page looked at again, once (RULES "Paging"). */
			relieved = true;
			klock_release(&lock, old);
			uvm_relieve_pressure();
			old = klock_acquire(&lock);
			continue;
		}
		if (f == PFN_INVALID) {
			st = STATUS_IN_PAGE_ERROR;
			*io_status = STATUS_INSUFFICIENT_RESOURCES; /* no frame to read into */
			break;
		}
		pt_set_software(&kernel_root, page_va(i), pt_transition_pte(f, MM_READWRITE));
		klock_release(&lock, old);
		NTSTATUS io = pagefile_read(f, sw.offset);
		old = klock_acquire(&lock);
		/* A large allocation's free makes it resident first, waiting for this read (above);
		 * an empty slab page given back meanwhile (release_trimmed: only a touch of memory no
		 * allocation holds reads one in) leaves the frame, freed now, and the slot to this
		 * read, and the access is retried against what the address is now. */
		if (pfn_inpage_done(f)) {
			pagefile_free_slot(sw.offset);
			st = STATUS_SUCCESS;
			break;
		}
		if (!NT_SUCCESS(io)) {
			pt_set_software(&kernel_root, page_va(i), pt_pagefile_pte(0, sw.offset, MM_READWRITE));
			pfn_free(f);
			paging.inpage_errors++;
			*io_status = io;
			st = STATUS_IN_PAGE_ERROR;
			break;
		}
		map_back(i, f);
		pagefile_free_slot(sw.offset);
		paging.hard_faults++;
		st = STATUS_SUCCESS;
		break;
	}
	klock_release(&lock, old);
	return st;
}

/* Whether every page of the large allocation at head page pg is valid. */
static bool large_resident(uint32_t pg)
{
	for (uint32_t k = 0; k < pages[pg].npages; k++) {
		struct pt_query q;
		pt_query(&kernel_root, page_va(pg + k), &q);
		if (!q.present)
			return false;
	}
	return true;
}

bool pool_make_resident(uint64_t va, uint64_t len)
{
	bool any = false;
	for (uint64_t p = ALIGN_DOWN(va, PAGE_SIZE); len && p < va + len && in_pool(p); p += PAGE_SIZE) {
		uint32_t i = page_index(p);
		if (!pageable_page(i))
			continue;
		any = true;
		(void)*(volatile uint8_t *)p; /* a fault resolves (pool_resolve_fault) or stops */
	}
	return any;
}

bool pool_range_pageable_words(uint64_t va, uint64_t len)
{
	uint64_t end = va + len, top = page_va(va_space.nslots);
	if (!len || end <= KVA_POOL_BASE || va >= top)
		return false;
	if (va < KVA_POOL_BASE)
		va = KVA_POOL_BASE;
	uint64_t first = page_index(va), last = page_index((end < top ? end : top) - 1);
	for (uint64_t p = first; p <= last; p = ALIGN_DOWN(p, 64) + 64) {
		uint64_t upto = last < ALIGN_DOWN(p, 64) + 63 ? last : ALIGN_DOWN(p, 64) + 63;
		uint64_t bits = __atomic_load_n(&pool_pageable_map[p / 64], __ATOMIC_RELAXED) >> (p % 64);
		if (bits & ((2ull << (upto - p)) - 1))
			return true;
	}
	return false;
}

void (*pool_test_lock_window)(uint64_t va, uint64_t n);

/* The probe's walk and its frame locks one step under the pool lock (mm/RULES.md "Paging",
 * "Paged pool": a probe and the trimmer): pool_trim_paged reads each frame's lock count under
 * this lock, so it either trims a page before the walk (which then stops at its transition
 * PTE) or finds its frame locked.  Lock order: pool, then the kernel page tables (the walk),
 * then PFN (the locks), as RULES "Locks" ranks them. */
uint64_t pool_lock_pages(uint64_t va, uint64_t n, bool write, uint64_t *pfns, bool *read_only, bool *io,
			 unsigned passes)
{
	for (unsigned pass = 1;; pass++) {
		KIRQL old = klock_acquire(&lock);
		*read_only = false;
		uint64_t i = pt_translate_run(&kernel_root, va, n, write, false, pfns, read_only);
		*io = i == n && pfn_lock_frames(pfns, n);
		klock_release(&lock, old);
		/* A trimmed page: faulted in at the caller's IRQL without the lock (soft or hard;
		 * at DISPATCH_LEVEL 0x0A), then walked again; bounded, so a trimmer that wins every
		 * pass ends the probe as an access violation, never a wait without end. */
		if (i == n || pass == passes || !pool_make_resident(va + i * PAGE_SIZE, (n - i) * PAGE_SIZE))
			return i;
		if (__builtin_expect(pool_test_lock_window != NULL, 0))
			pool_test_lock_window(va, n);
	}
}

/* The lock pool_trim_paged reads lock counts and trims under (mm/RULES.md "Paging", "Paged
 * pool": a probe and the trimmer). */
KIRQL pool_hold_trimmer(void) { return klock_acquire(&lock); }
void pool_release_trimmer(KIRQL old) { klock_release(&lock, old); }

/* Under the lock, which every count of `paging` is changed under: one consistent copy. */
void pool_get_paging_stats(struct pool_paging_stats *out)
{
	KIRQL old = klock_acquire(&lock);
	*out = paging;
	klock_release(&lock, old);
}

/* ---- the NT surface ---------------------------------------------------------------- */

/* `caller`: where the driver's call returns to, bug check 0xC2/0x9B's P4.  `may_relieve`:
 * whether a new page that finds no frame may relieve the pressure (false for a caller that
 * must not wait, through pool_alloc_nonpaged). */
static void *pool_alloc(bool paged, POOL_FLAGS pool_type_for_bugcheck, SIZE_T size, ULONG tag, bool uninit,
			ULONG_PTR caller, bool may_relieve)
{
	KIRQL irql = KeGetCurrentIrql();
	if (irql > (paged ? APC_LEVEL : DISPATCH_LEVEL))
		KeBugCheckEx(BAD_POOL_CALLER, 0x08, irql, pool_type_for_bugcheck, size);
	if (!size)
		KeBugCheckEx(BAD_POOL_CALLER, 0x00, 0, pool_type_for_bugcheck, tag);
	if (!tag)
		KeBugCheckEx(BAD_POOL_CALLER, 0x9B, pool_type_for_bugcheck, size, caller);
	if (size > 0xFFFFFFFFul - PAGE_SIZE)
		return NULL;
	if (size < POOL_SMALL_MAX) {
		void *kept = alloc_kept(paged, (uint32_t)size, tag, uninit);
		if (kept)
			return kept;
	}
	void *p = NULL;
	/* A new page that found no frame (none free; the allocator cannot relieve under this
	 * lock): the pressure relieved without it, where that may wait, and one more try
	 * (mm/RULES.md, "Paging", memory pressure).  Once: a second failure is the answer, and
	 * a failure for want of pool VA relieves nothing (relief gives frames, not VA).  At
	 * DISPATCH_LEVEL relief refuses and it simply fails. */
	for (bool relieved = false;; relieved = true) {
		bool no_frame = false;
		KIRQL old = klock_acquire(&lock);
		if (size < POOL_SMALL_MAX) {
			/* The slot taken under the lock, its header and bytes written after it. */
			unsigned cls = class_of((uint32_t)size);
			struct pool_header *h = slab_take(paged, cls, &no_frame);
			klock_release(&lock, old);
			if (h)
				p = slot_give(h, cls, (uint32_t)size, tag, uninit);
		} else {
			p = large_alloc(paged, size, tag, uninit, &no_frame);
			if (p)
				account(tag, size, +1);
			klock_release(&lock, old);
		}
		if (p || !no_frame || relieved || !may_relieve || !uvm_relieve_pressure())
			break;
	}
	return p;
}

/* ExAllocatePool2(POOL_FLAG_NON_PAGED)'s path with its flags known and the relief the
 * caller's choice (MM_ALLOCATE_NO_WAIT's MDL: mm/RULES.md "Paging", memory pressure): this
 * CPU's kept block when it has one, else pool_alloc. */
void *pool_alloc_nonpaged(SIZE_T size, ULONG tag, bool may_relieve)
{
	if (size - 1 < POOL_SMALL_MAX - 1 && tag && KeGetCurrentIrql() <= DISPATCH_LEVEL) {
		void *kept = alloc_kept(false, (uint32_t)size, tag, false);
		if (kept)
			return kept;
	}
	return pool_alloc(false, NonPagedPoolNx, size, tag, false, (ULONG_PTR)__builtin_return_address(0),
			  may_relieve);
}

PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)
{
	/* Nonpaged, 1 to POOL_SMALL_MAX - 1 bytes, tagged, at or below DISPATCH_LEVEL (every check
	 * of pool_alloc passed): this CPU's kept block of the class, when it has one. */
	if ((Flags & ~POOL_FLAG_UNINITIALIZED) == POOL_FLAG_NON_PAGED && NumberOfBytes - 1 < POOL_SMALL_MAX - 1 && Tag &&
	    KeGetCurrentIrql() <= DISPATCH_LEVEL) {
		void *kept = alloc_kept(false, (uint32_t)NumberOfBytes, Tag, Flags & POOL_FLAG_UNINITIALIZED);
		if (kept)
			return kept;
	}
	POOL_FLAGS type = Flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_PAGED);
	void *p = NULL;
	/* Exactly one pool type; executable pool would be writable and executable (W^X). */
	if (type == POOL_FLAG_NON_PAGED || type == POOL_FLAG_PAGED)
		p = pool_alloc(type == POOL_FLAG_PAGED, type == POOL_FLAG_PAGED ? PagedPool : NonPagedPoolNx,
			       NumberOfBytes, Tag, Flags & POOL_FLAG_UNINITIALIZED,
			       (ULONG_PTR)__builtin_return_address(0), true);
	if (!p && (Flags & POOL_FLAG_RAISE_ON_FAILURE))
		ExRaiseStatus(STATUS_INSUFFICIENT_RESOURCES);
	return p;
}

/* The pool a POOL_TYPE names (NonPagedPool, NonPagedPoolNx, PagedPool); false for any
 * other value, which gets NULL. */
static bool pool_type_is_known(POOL_TYPE t) { return t == NonPagedPool || t == NonPagedPoolNx || t == PagedPool; }

PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
	/* The legacy routine does not zero; mdlab fills with the uninitialized pattern. */
	if (!pool_type_is_known(PoolType))
		return NULL;
	return pool_alloc(PoolType == PagedPool, PoolType, NumberOfBytes, Tag, true,
			  (ULONG_PTR)__builtin_return_address(0), true);
}

PVOID ExAllocatePoolZero(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
	if (!pool_type_is_known(PoolType))
		return NULL;
	return pool_alloc(PoolType == PagedPool, PoolType, NumberOfBytes, Tag, false,
			  (ULONG_PTR)__builtin_return_address(0), true);
}

PVOID ExAllocatePoolUninitialized(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
	if (!pool_type_is_known(PoolType))
		return NULL;
	return pool_alloc(PoolType == PagedPool, PoolType, NumberOfBytes, Tag, true,
			  (ULONG_PTR)__builtin_return_address(0), true);
}

/* The obsolete untagged form: the tag is 'None', as NT's. */
PVOID ExAllocatePool(POOL_TYPE PoolType, SIZE_T NumberOfBytes)
{
	return ExAllocatePoolWithTag(PoolType, NumberOfBytes, POOL_TAG_NONE);
}

/* Charged to the current process on NT; mdlab keeps no pool quotas, so only the failure
 * differs from ExAllocatePoolWithTag: it raises STATUS_INSUFFICIENT_RESOURCES unless
 * POOL_QUOTA_FAIL_INSTEAD_OF_RAISE is OR-ed into PoolType, and takes the POOL_COLD_ALLOCATION
 * hint (ExAllocatePoolWithQuotaTag's page). */
PVOID ExAllocatePoolWithQuotaTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
	bool fail_quietly = PoolType & POOL_QUOTA_FAIL_INSTEAD_OF_RAISE;
	/* POOL_COLD_ALLOCATION is a hint only (the page says so): paged pool is trimmed as it is,
	 * hot or cold, and nonpaged pool never. */
	POOL_TYPE type = (POOL_TYPE)(PoolType & ~(POOL_QUOTA_FAIL_INSTEAD_OF_RAISE | POOL_COLD_ALLOCATION));
	PVOID p = ExAllocatePoolWithTag(type, NumberOfBytes, Tag);
	if (!p && !fail_quietly)
		ExRaiseStatus(STATUS_INSUFFICIENT_RESOURCES);
	return p;
}

/* Check the guard bytes [p, end); bug check 0xC5 at the first one overwritten, with the IRQL
 * the caller of the free ran at (P2). */
static void check_guard(const uint8_t *p, const uint8_t *end, uint64_t alloc, KIRQL irql)
{
	typedef uint64_t __attribute__((may_alias)) guard_word;
	const uint64_t pattern = 0x0101010101010101ull * POOL_GUARD_PATTERN;
	/* Sixteen bytes a step once aligned (two words, one test of their differences ORed),
	 * then one word; a step that differs, and the tail, byte by byte, so the bug check names
	 * the first byte overwritten. */
	while (p < end && ((uint64_t)p & 7) && *p == POOL_GUARD_PATTERN)
		p++;
	if (!((uint64_t)p & 7)) {
		const uint8_t *end16 = p + ((end - p) & ~(ptrdiff_t)15);
		while (p < end16 && !((((const guard_word *)p)[0] ^ pattern) | (((const guard_word *)p)[1] ^ pattern)))
			p += 16;
		if (p == end16 && end - p >= 8 && *(const guard_word *)p == pattern)
			p += 8;
	}
	for (; p < end; p++)
		if (*p != POOL_GUARD_PATTERN)
			KeBugCheckEx(DRIVER_CORRUPTED_EXPOOL, (ULONG_PTR)p, irql, 1, alloc);
}

/* Free the large allocation whose head page is pg (va its first byte): its guard page
 * checked, every page unmapped and freed, its VA and guard given back. */
static void free_large(uint32_t pg, uint64_t va, bool check_tag, ULONG Tag, KIRQL irql)
{
	struct pool_page *p = &pages[pg];
	if (check_tag && p->tag != Tag)
		KeBugCheckEx(BAD_POOL_CALLER, 0x0A, va, p->tag, Tag);
	for (uint32_t i = 0; i < p->npages; i++)
		if (pages[pg + i].user_maps)
			KeBugCheckEx(DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_POOL_FREED_WHILE_USER_MAPPED, va,
				     pages[pg + i].user_maps, 0);
	uint8_t *data = (uint8_t *)va;
	check_guard(data + p->bytes, data + (uint64_t)p->npages * PAGE_SIZE, va, irql);
	account(p->tag, p->bytes, -1);
	stats.large_pages -= p->npages;
	put_pages(pg, p->npages, 1);
}

/* The header of the live slot whose data starts at va in slab page pg; a va that starts no
 * slot is bug check 0x46, a slot freed already 0x07. */
static struct pool_header *live_slot(uint32_t pg, uint64_t va)
{
	uint32_t sz = class_size[pages[pg].cls], off = (va - page_va(pg)) - sizeof(struct pool_header);
	if ((va - page_va(pg)) < sizeof(struct pool_header) || off % sz)
		KeBugCheckEx(BAD_POOL_CALLER, 0x46, va, 0, 0);
	struct pool_header *h = (struct pool_header *)(va - sizeof *h);
	if (h->magic == MAGIC_FREE)
		KeBugCheckEx(BAD_POOL_CALLER, 0x07, 0, *(uint64_t *)h, va);
	if (h->magic != MAGIC_LIVE)
		KeBugCheckEx(BAD_POOL_CALLER, 0x46, va, 0, 0);
	return h;
}

/* Free the slot at va of slab page pg, which was a slab page when pool_free looked: the
 * header and guard checked and the header made FREE at the caller's IRQL with no lock held
 * (a paged slot's page faults back in here: ExFreePool of paged pool runs below
 * DISPATCH_LEVEL), then its bit set under the lock; a page left with no slot in use goes
 * back at once.  The slot is the caller's until its bit is set: its page cannot go back. */
static __attribute__((noinline)) void free_slab(uint32_t pg, uint64_t va, bool check_tag, ULONG Tag, KIRQL irql)
{
	struct pool_page *p = &pages[pg];
	struct pool_header *h = live_slot(pg, va);
	uint32_t sz = class_size[p->cls];
	if (check_tag && h->tag != Tag)
		KeBugCheckEx(BAD_POOL_CALLER, 0x0A, va, h->tag, Tag);
	uint32_t maps = __atomic_load_n(&p->user_maps, __ATOMIC_RELAXED);
	if (maps)
		KeBugCheckEx(DRIVER_VERIFIER_DETECTED_VIOLATION, VERIFIER_POOL_FREED_WHILE_USER_MAPPED, va, maps, 0);
	if (!slot_guard_intact((uint8_t *)va, h->size, (uint8_t *)h + sz))
		check_guard((uint8_t *)va + h->size, (uint8_t *)h + sz, va, irql); /* names the byte */
	/* LIVE to FREE by one compare-exchange, as free_kept's: of two frees of one block, on
	 * any CPUs, the one that comes second finds it freed (0x07). */
	uint32_t live = MAGIC_LIVE;
	if (!__atomic_compare_exchange_n(&h->magic, &live, MAGIC_FREE, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		KeBugCheckEx(BAD_POOL_CALLER, 0x07, 0, *(uint64_t *)h, va);
	account(h->tag, h->size, -1);
	KIRQL old = klock_acquire(&lock);
	slot_free_bit(pg, h);
	klock_release(&lock, old);
}

/* Under the lock: the freed slot h of slab page pg (its header says FREE, its counts are
 * taken away) free again in its page's record, whose bytes are not touched; a page left with
 * no slot in use goes back at once. */
static void slot_free_bit(uint32_t pg, struct pool_header *h)
{
	struct pool_page *p = &pages[pg];
	uint32_t slot = (uint32_t)((uint64_t)h - page_va(pg)) / class_size[p->cls];
	bool was_full = map_empty(p);
	p->free_map[slot / 64] |= 1ull << (slot % 64);
	p->bytes--;
	if (was_full)
		partial_add(p->paged, pg);
	if (!p->bytes) {
		/* Every slot is free: the class keeps one such page (it stays on the partial chain);
		 * another goes back at once. */
		if (spare[p->paged][p->cls] == VRANGE_NONE) {
			spare[p->paged][p->cls] = pg;
			return;
		}
		partial_del(p->paged, pg);
		stats.slab_pages--;
		put_pages(pg, 1, 0);
	}
}

void pool_trim(void)
{
	KIRQL old = klock_acquire(&lock);
	drain_kept_locked();
	for (int paged = 0; paged < 2; paged++)
		for (unsigned c = 0; c < NCLASSES; c++) {
			uint32_t pg = spare[paged][c];
			if (pg == VRANGE_NONE)
				continue;
			spare[paged][c] = VRANGE_NONE;
			partial_del(paged, pg);
			stats.slab_pages--;
			put_pages(pg, 1, 0);
		}
	klock_release(&lock, old);
}

/* The pool type of the allocation at va, for bug check 0xC2 P1 9: PagedPool, or
 * NonPagedPoolNx (mdlab's nonpaged pool is never executable); NonPagedPool (0) when va is in
 * no pool page in use. */
static ULONG_PTR pool_type_of(uint64_t va)
{
	if (!in_pool(va))
		return NonPagedPool;
	const struct pool_page *p = &pages[page_index(va)];
	if (p->kind == PP_LARGE_TAIL)
		p = &pages[p->npages]; /* the head */
	if (p->kind != PP_SLAB && p->kind != PP_LARGE_HEAD)
		return NonPagedPool;
	return p->paged ? PagedPool : NonPagedPoolNx;
}

static void pool_free_locked(uint64_t va, uint32_t pg, bool check_tag, ULONG Tag, KIRQL irql);

/* ExFreePool(WithTag): the caller's IRQL and address checked, then the allocation freed as
 * what its page says it is. */
static inline __attribute__((always_inline)) void pool_free(PVOID P, bool check_tag, ULONG Tag)
{
	uint64_t va = (uint64_t)P;
	KIRQL irql = KeGetCurrentIrql();
	/* Microsoft's 0xC2 P1 0x09 (the IRQL, the pool type, the address): any pool above
	 * DISPATCH_LEVEL, paged pool above APC_LEVEL (ExFreePool's page: at DISPATCH_LEVEL only
	 * nonpaged pool).  Paged or not is the page record's answer, never a header's: the page
	 * may be out, and a fault here would be 0x0A instead. */
	if (irql > APC_LEVEL && (irql > DISPATCH_LEVEL || pool_type_of(va) == PagedPool))
		KeBugCheckEx(BAD_POOL_CALLER, 0x09, irql, pool_type_of(va), va);
	/* Microsoft's 0xC2 P1 0x40: the address and the start of system space. */
	if (va < USER_VA_END)
		KeBugCheckEx(BAD_POOL_CALLER, 0x40, va, SYSTEM_VA_START, 0);
	if (!in_pool(va))
		KeBugCheckEx(BAD_POOL_CALLER, 0x42, va, 0, 0);
	uint32_t pg = page_index(va);
	if (pages[pg].kind == PP_SLAB) {
		if (!free_kept(pg, va, check_tag, Tag))
			free_slab(pg, va, check_tag, Tag, irql); /* says what is wrong, or frees */
		return;
	}
	pool_free_locked(va, pg, check_tag, Tag, irql);
}

/* pool_free's locked path (out of line: the fast path above saves no registers for it). */
static __attribute__((noinline)) void pool_free_locked(uint64_t va, uint32_t pg, bool check_tag, ULONG Tag, KIRQL irql)
{
	KIRQL old = klock_acquire(&lock);
	/* A large paged allocation is made resident first (its guard check reads its last
	 * page, under this spin lock): its pages touched with the lock released. */
	while (pages[pg].kind == PP_LARGE_HEAD && va == page_va(pg) && pages[pg].paged && !large_resident(pg)) {
		klock_release(&lock, old);
		pool_make_resident(va, (uint64_t)pages[pg].npages * PAGE_SIZE);
		old = klock_acquire(&lock);
	}
	switch (pages[pg].kind) {
	case PP_LARGE_HEAD:
		if (va != page_va(pg))
			break; /* inside a large allocation, not its start */
		free_large(pg, va, check_tag, Tag, irql);
		klock_release(&lock, old);
		return;
	case PP_SLAB: /* a slab page since pool_free looked: its checks run without the lock */
		klock_release(&lock, old);
		free_slab(pg, va, check_tag, Tag, irql);
		return;
	case PP_RELEASED:
		KeBugCheckEx(BAD_POOL_CALLER, 0x07, 0, 0, va);
	}
	KeBugCheckEx(BAD_POOL_CALLER, 0x46, va, 0, 0);
}

VOID ExFreePoolWithTag(PVOID P, ULONG Tag) { pool_free(P, true, Tag); }
VOID ExFreePool(PVOID P) { pool_free(P, false, 0); }

/* ---- for the MDL code -------------------------------------------------------------- */

enum query { Q_NONE, Q_FOUND, Q_PAGED_OUT };

/* Under the lock: what va belongs to.  A slab slot's header is read only when its page is
 * valid (pt_query: no trim can take it while the lock is held), else Q_PAGED_OUT, as !pool
 * reports a paged-out page. */
static inline __attribute__((always_inline)) enum query query_locked(uint64_t va, struct pool_info *out)
{
	uint32_t pg = page_index(va);
	struct pool_page *p = &pages[pg];
	if (p->kind == PP_LARGE_TAIL) {
		pg = p->npages;
		p = &pages[pg];
	}
	if (p->kind == PP_LARGE_HEAD) {
		uint64_t base = page_va(pg);
		if (va >= base + p->bytes)
			return Q_NONE;
		*out = (struct pool_info){ .base = base, .size = p->bytes, .tag = p->tag, .paged = p->paged,
					   .whole_pages = true, .uninitialized = p->uninit };
		return Q_FOUND;
	}
	if (p->kind == PP_SLAB) {
		if (p->paged) {
			struct pt_query q;
			pt_query(&kernel_root, page_va(pg), &q);
			if (!q.present)
				return Q_PAGED_OUT;
		}
		uint32_t sz = class_size[p->cls], slot = (va - page_va(pg)) / sz;
		struct pool_header *h = (struct pool_header *)(page_va(pg) + slot * sz);
		uint64_t data = (uint64_t)(h + 1);
		if (h->magic != MAGIC_LIVE || va < data || va >= data + h->size)
			return Q_NONE;
		*out = (struct pool_info){ .base = data, .size = h->size, .tag = h->tag, .paged = p->paged,
					   .whole_pages = false, .uninitialized = h->flags & HDR_UNINIT };
		return Q_FOUND;
	}
	return Q_NONE;
}

/* A small paged allocation whose page is out is brought back (below DISPATCH_LEVEL, with the
 * lock released) and looked at again, a few times at most, since a trim may take it again;
 * at DISPATCH_LEVEL or above, or after that, it is not found (what its header says is out). */
#define QUERY_PASSES 4

/* pool_query's answer for a block whose page was out (out of line: the common answer needs
 * none of it). */
static __attribute__((noinline)) bool query_paged_out(uint64_t va, struct pool_info *out, KIRQL irql)
{
	for (unsigned pass = 1; irql < DISPATCH_LEVEL && pass < QUERY_PASSES; pass++) {
		pool_make_resident(va, 1);
		KIRQL old = klock_acquire(&lock);
		enum query r = query_locked(va, out);
		klock_release(&lock, old);
		if (r != Q_PAGED_OUT)
			return r == Q_FOUND;
	}
	return false;
}

bool pool_query(uint64_t va, struct pool_info *out)
{
	if (!in_pool(va))
		return false;
	KIRQL old = klock_acquire(&lock);
	enum query r = query_locked(va, out);
	klock_release(&lock, old);
	if (__builtin_expect(r == Q_PAGED_OUT, 0))
		return query_paged_out(va, out, old);
	return r == Q_FOUND;
}

void pool_note_user_mapping(uint64_t va, uint64_t size, int delta)
{
	KIRQL old = klock_acquire(&lock);
	for (uint64_t a = ALIGN_DOWN(va, PAGE_SIZE); a < va + size; a += PAGE_SIZE)
		if (in_pool(a))
			pages[page_index(a)].user_maps += delta;
	klock_release(&lock, old);
}

void pool_get_stats(struct pool_stats *out)
{
	KIRQL old = klock_acquire(&lock);
	drain_kept_locked();
	*out = stats;
	out->va_pages = va_space.nslots;
	out->va_pages_free = va_space.free_slots;
	klock_release(&lock, old);
}

unsigned pool_get_tags(struct pool_tag_usage *out, unsigned max)
{
	unsigned n = 0;
	KIRQL old = klock_acquire(&lock);
	for (int i = 0; i < TAG_SLOTS && n < max; i++) {
		uint64_t w = __atomic_load_n(&tags[i].word, __ATOMIC_RELAXED);
		if ((uint32_t)w)
			out[n++] = (struct pool_tag_usage){ .tag = word_tag(w), .allocs = (uint32_t)w,
							    .bytes = (uint64_t)__atomic_load_n(&tags[i].bytes,
												__ATOMIC_RELAXED) };
	}
	klock_release(&lock, old);
	return n;
}

static uint64_t pool_bytes(void) { return __atomic_load_n(&stats.bytes_in_use, __ATOMIC_RELAXED); }
ACCOUNTING_COUNTER(pool_bytes, "pool bytes in use", pool_bytes);
