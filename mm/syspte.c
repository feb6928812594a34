#include "mm/syspte.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/tlb.h"
#include "mm/vrange.h"

#define GUARDED 1  /* vrange user byte: the reservation has a guard PTE after it */
#define DEFERRED 2 /* vrange user byte: released under tlb=lazy, not yet purged (below) */
#define CACHED 4   /* vrange user byte: released into a CPU's slot (kcpu.syspte_slot, below) */

static struct vrange space;
static struct syspte_stats st;

/* The system-PTE lock (mm/RULES.md, "Locks"): the space, the pending slot and the counters.
 * Every call below takes it inside; a release holds it across the clear and the shootdown,
 * so no range is handed out again before every CPU has dropped it. */
static struct klock lock = KLOCK_INIT(KLOCK_SYSPTE);

/*
 * The last released one-PTE run (no guard) waits here, its PTE cleared and flushed, instead
 * of going back to the allocator at once: a one-PTE reservation takes it back when the
 * allocator would have handed out that very slot (reserve_pending_hit), with the allocator's
 * state then exactly as release + reserve would have left it.  Any other use of the space
 * gives it back first (drain_pending), so everything observable — addresses, coalescing,
 * syspte_get_stats — is as without it.  It counts as free.
 */
static uint32_t pending = VRANGE_NONE;

static void drain_pending(void)
{
	if (pending == VRANGE_NONE)
		return;
	uint32_t p = pending;
	pending = VRANGE_NONE;
	if (vrange_release(&space, p, 1) != VR_OK)
		PANIC("syspte: the allocator refused the pending slot %u", p);
}

/*
 * The lazy policy (tlb=lazy, mm/tlb.h; mm/RULES.md, "TLB shootdown"): a released range's PTEs
 * are cleared and flushed on this CPU only, and the range waits here, still reserved in the
 * allocator (so it cannot be handed out) but counted as free, marked DEFERRED.  purge_locked
 * flushes them all on every other CPU in one tlb_purge round and only then gives them back
 * to the allocator: when the list is full (DEFER_MAX_RANGES ranges or DEFER_MAX_PAGES
 * pages), when a reservation finds no room without them, and when syspte_get_stats is asked
 * (so the figures it reports are as under strict).  A range too large for the list is
 * released strictly.  Bounds as NT's deferred system-PTE flush list and Linux's lazy vunmap:
 * 32 ranges, 1024 pages.
 */
#define DEFER_MAX_RANGES SYSPTE_DEFER_MAX_RANGES
#define DEFER_MAX_PAGES 1024
static struct tlb_range deferred[DEFER_MAX_RANGES];
static unsigned ndeferred;
static uint32_t deferred_pages;

static void purge_locked(void)
{
	if (!ndeferred)
		return;
	tlb_purge(deferred, ndeferred);
	for (unsigned i = 0; i < ndeferred; i++) {
		uint32_t first = (deferred[i].va - KVA_SYSPTE_BASE) / PAGE_SIZE;
		space.user[first] = 0;
		if (vrange_release(&space, first, deferred[i].pages) != VR_OK)
			PANIC("syspte: the allocator refused the deferred range at slot %u", first);
	}
	st.purges++;
	ndeferred = 0;
	deferred_pages = 0;
}

/* A reservation's head released under lazy and not yet purged: as free as a released one. */
static inline bool is_deferred(uint32_t first)
{
	return ndeferred && space.state[first] == VR_USED_HEAD && (space.user[first] & DEFERRED);
}

/* A reservation's head kept in a CPU's slot: as free as a released one. */
static inline bool is_kept(uint32_t first)
{
	return space.state[first] == VR_USED_HEAD && (space.user[first] & CACHED);
}

static uint32_t free_total(void) { return space.free_slots + (pending != VRANGE_NONE) + deferred_pages; }

/* The counters a CPU's slot (below) changes without the lock: every change is an atomic add. */
#define COUNT(field) __atomic_fetch_add(&st.field, 1, __ATOMIC_RELAXED)

/*
 * Each CPU's slot (kcpu.syspte_slot): the one-page MDL mapping's fast path.  An unmapping of
 * a one-PTE reservation (syspte_release_one, strict policy) clears its PTE and flushes it on
 * every CPU (pt_clear_ptes: this CPU's INVLPG, the others' shootdown), and only then leaves
 * it in this CPU's slot, still reserved in the allocator and marked CACHED, counted as free;
 * this CPU's next one-page mapping (syspte_reserve_one) takes it back.  Neither takes the
 * lock: the slot word is given and taken by atomic exchanges, so a slot has one holder at a
 * time, and nothing is handed out before every CPU has dropped its translation — the rule the
 * lock keeps for every other release.  Any use of the space under the lock gives every CPU's
 * slot back to the allocator first (drain_slots), so what the allocator hands out, coalesces
 * and reports (syspte_get_stats) is as without them; only the one-page mappings themselves may
 * get a CPU's kept slot where the allocator would have picked another.  Under tlb=lazy no slot
 * is kept (a released range must wait for the purge).  As Linux's per-CPU vmap blocks and
 * NT's per-processor lookasides, without their batching.
 */
/* Set (when clear) by a release that kept a slot, after the slot word; cleared by
 * drain_slots_all before it looks at the slots, so a slot kept meanwhile sets it again. */
static uint32_t slots_maybe_kept;

static __attribute__((noinline)) void drain_slots_all(void)
{
	__atomic_store_n(&slots_maybe_kept, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < smp_cpus_online(); i++) {
		if (!__atomic_load_n(&kcpus[i].syspte_slot, __ATOMIC_RELAXED))
			continue;
		uint32_t w = __atomic_exchange_n(&kcpus[i].syspte_slot, 0, __ATOMIC_ACQUIRE);
		if (!w)
			continue;
		drain_pending(); /* the pending slot's rule: nothing else changes the allocator first */
		space.user[w - 1] = 0;
		if (vrange_release(&space, w - 1, 1) != VR_OK)
			PANIC("syspte: the allocator refused CPU %u's kept slot %u", i, w - 1);
	}
}

/* Under the lock: every CPU's kept slot back to the allocator (one load when none is). */
static inline void drain_slots(void)
{
	if (__builtin_expect(__atomic_load_n(&slots_maybe_kept, __ATOMIC_RELAXED) != 0, 0))
		drain_slots_all();
}

static uint32_t slots_kept(void)
{
	uint32_t k = 0;
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		k += __atomic_load_n(&kcpus[i].syspte_slot, __ATOMIC_RELAXED) != 0;
	return k;
}

static unsigned class_of(uint32_t n) { return 31 - __builtin_clz(n); }

/* Whether vrange_release(pending, 1) then vrange_reserve(1) would give back `pending` and
 * leave the allocator's state as it is now: no free run just before it (it would coalesce
 * into that run's head), no smaller class in use than the run it would join (vrange's first
 * choice), and the free run just after it (if any) at the head of its class list (release +
 * reserve leaves it there).  The lengths fit: the space has fewer than 2^31 slots. */
static bool reserve_pending_hit(void)
{
	uint32_t p = pending, after = p + 1, len = 1, classes = space.bitmap;
	if (p && vrange_slot_is_free(&space, p - 1))
		return false;
	if (after < space.nslots && space.state[after] == VR_FREE_HEAD) {
		if (space.prev[after] != VRANGE_NONE)
			return false;
		/* Alone in its class, it leaves that class empty while it is merged. */
		if (space.next[after] == VRANGE_NONE)
			classes &= ~(1u << class_of(space.len[after]));
		len += space.len[after];
	}
	return !(classes & ((1u << class_of(len)) - 1));
}

uint64_t syspte_base(void) { return KVA_SYSPTE_BASE; }
uint32_t syspte_total(void) { return space.nslots; }

void syspte_init(void)
{
	tlb_policy_init();
	uint64_t n = cmdline_get_u64("syspte", SYSPTE_DEFAULT_COUNT);
	uint64_t max = (KVA_SYSPTE_END - KVA_SYSPTE_BASE) / PAGE_SIZE;
	if (n < 64 || n > max || n > 0x7FFFFFFF)
		PANIC("syspte_init: syspte=%lu is outside [64, %lu]", n, max);
	if (!vrange_init(&space, (uint32_t)n) ||
	    !pt_prepopulate(KVA_SYSPTE_BASE, ALIGN_UP(n * PAGE_SIZE, LARGE_PAGE_SIZE)))
		PANIC("syspte_init: out of frames for %lu system PTEs", n);
	st.total = n;
}

static inline bool contains(uint64_t va)
{
	return va >= KVA_SYSPTE_BASE && va < KVA_SYSPTE_BASE + space.nslots * PAGE_SIZE;
}

bool syspte_contains(uint64_t va) { return contains(va); }

static inline __attribute__((always_inline)) uint64_t reserve_locked(uint32_t n, uint32_t priority, bool guard)
{
	uint32_t need = n + (guard ? 1 : 0);
	if (!n || need < n)
		return 0;
	/* The priority rule: what must stay free after this reservation. */
	uint32_t keep = priority < SYSPTE_PRIORITY_NORMAL ? SYSPTE_LOW_RESERVE(space.nslots)
		      : priority < SYSPTE_PRIORITY_HIGH   ? SYSPTE_NORMAL_RESERVE(space.nslots)
							  : 0;
	drain_slots();
	uint32_t first = VRANGE_NONE, free = free_total();
	if (need <= free && free - need >= keep) {
		if (need == 1 && pending != VRANGE_NONE && reserve_pending_hit()) {
			first = pending;
			pending = VRANGE_NONE;  /* the allocator's state is as release + reserve leave it */
		} else {
			drain_pending();
			first = vrange_reserve(&space, need);
			if (first == VRANGE_NONE && ndeferred) {
				/* The room is in the deferred ranges: flushed everywhere, then reused. */
				purge_locked();
				first = vrange_reserve(&space, need);
			}
		}
	}
	if (first == VRANGE_NONE) {
		if (priority < SYSPTE_PRIORITY_NORMAL)
			st.failures_low++;
		else if (priority < SYSPTE_PRIORITY_HIGH)
			st.failures_normal++;
		else
			st.failures_high++;
		return 0;
	}
	space.user[first] = guard ? GUARDED : 0;
	COUNT(reservations);
	/* Whichever way it came (the pending slot, the allocator, after a purge), the free count
	 * is down by exactly need. */
	uint64_t used = space.nslots - (free - need);
	if (used > st.peak_in_use)
		st.peak_in_use = used;
	return KVA_SYSPTE_BASE + (uint64_t)first * PAGE_SIZE;
}

uint64_t syspte_reserve(uint32_t n, uint32_t priority, bool guard)
{
	KIRQL irql = klock_acquire(&lock);
	uint64_t va = reserve_locked(n, priority, guard);
	klock_release(&lock, irql);
	return va;
}

void syspte_check_range(uint64_t va, uint32_t n)
{
	KIRQL irql = klock_acquire(&lock);
	uint32_t first = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	uint32_t len = syspte_contains(va) && first != pending && !is_deferred(first) && !is_kept(first)
			       ? vrange_reserved_len(&space, first) : 0;
	uint32_t usable = len && (space.user[first] & GUARDED) ? len - 1 : len;
	if (!len || (va & (PAGE_SIZE - 1)) || n > usable)
		PANIC("syspte_check_range: 0x%lx+%u pages is not inside a reservation", va, n);
	klock_release(&lock, irql);
}

void syspte_map(uint64_t va, const uint64_t *pfns, uint32_t n, struct pt_attrs a)
{
	KIRQL irql = klock_acquire(&lock);
	uint32_t first = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	uint32_t len = syspte_contains(va) && first != pending && !is_deferred(first) && !is_kept(first)
			       ? vrange_reserved_len(&space, first) : 0;
	uint32_t usable = len && (space.user[first] & GUARDED) ? len - 1 : len;
	if (!syspte_contains(va) || (va & (PAGE_SIZE - 1)) || n > usable)
		PANIC("syspte_map: 0x%lx+%u pages is not inside a reservation", va, n);
	klock_release(&lock, irql);
	/* The PTEs of a reservation are its holder's: written without the lock. */
	pt_set_ptes(va, pfns, n, a);
}

uint64_t syspte_tracking_record(uint64_t va)
{
	return contains(va) ? (uint64_t)&space.state[(va - KVA_SYSPTE_BASE) / PAGE_SIZE] : 0;
}

static uint64_t reservation_of_locked(uint64_t va)
{
	if (!contains(va))
		return 0;
	uint32_t slot = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	while (slot && space.state[slot] == VR_USED_INNER)
		slot--;
	if (space.state[slot] != VR_USED_HEAD || slot == pending || is_deferred(slot) || is_kept(slot))
		return 0;
	return KVA_SYSPTE_BASE + (uint64_t)slot * PAGE_SIZE;
}

uint64_t syspte_reservation_of(uint64_t va)
{
	KIRQL irql = klock_acquire(&lock);
	uint64_t start = reservation_of_locked(va);
	klock_release(&lock, irql);
	return start;
}

bool syspte_guarded(uint64_t va)
{
	if (!contains(va) || (va & (PAGE_SIZE - 1)))
		return false;
	uint32_t first = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	KIRQL irql = klock_acquire(&lock);
	bool guarded = first != pending && !is_deferred(first) && !is_kept(first) && space.state[first] == VR_USED_HEAD &&
		       (space.user[first] & GUARDED);
	klock_release(&lock, irql);
	return guarded;
}

/* A release at an address no reservation starts at: bug check 0xDA P1 3 (the record of the
 * reservation holding va, its start, va), or (0, 0, va) where none holds it. */
static __attribute__((noreturn, noinline, cold)) void release_at_wrong_address(uint64_t va)
{
	uint64_t start = reservation_of_locked(va);
	KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x03, syspte_tracking_record(start), start, va);
}

/* A run released twice: bug check 0xDA P1 1 (its record, no MDL: the space is not told, the
 * record found again). */
static __attribute__((noreturn, noinline, cold)) void release_twice(uint64_t va)
{
	uint64_t record = syspte_tracking_record(va);
	KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x01, record, 0, record);
}

void syspte_release(uint64_t va, uint32_t n)
{
	/* Bug check 0xDA with the parameters of Microsoft's page (mm/RULES.md, 0xDA). */
	KIRQL irql = klock_acquire(&lock);
	if (!contains(va) || (va & (PAGE_SIZE - 1)))
		release_at_wrong_address(va);
	uint32_t first = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	/* Pending, deferred or kept: released already (is_deferred, is_kept in one test). */
	if (first == pending || (space.state[first] == VR_USED_HEAD && (space.user[first] & (DEFERRED | CACHED))))
		release_twice(va);
	drain_slots();
	drain_pending();
	/* vrange_reserved_len, inline: first is inside the space. */
	uint32_t len = space.state[first] == VR_USED_HEAD ? space.len[first] : 0;
	bool guard = len && (space.user[first] & GUARDED);
	uint32_t mapped = guard ? len - 1 : len;
	if (len && mapped != n)
		KeBugCheckEx(SYSTEM_PTE_MISUSE, 0x02, syspte_tracking_record(va), mapped, n);
	if (!len) {
		/* Nothing starts here: released already (free), or the middle of a reservation. */
		if (vrange_slot_is_free(&space, first))
			release_twice(va);
		release_at_wrong_address(va);
	}
	if (tlb_policy_lazy() && len <= DEFER_MAX_PAGES) {
		/* Lazy: cleared and flushed here; the other CPUs flush it in a later purge, before
		 * the range can be handed out again. */
		if (ndeferred == DEFER_MAX_RANGES || deferred_pages + len > DEFER_MAX_PAGES)
			purge_locked();
		pt_clear_ptes_local(va, len);
		space.user[first] |= DEFERRED;
		deferred[ndeferred++] = (struct tlb_range){ va, len };
		deferred_pages += len;
		COUNT(flushes);
		COUNT(releases);
		st.deferred++;
		klock_release(&lock, irql);
		return;
	}
	/* The translations go first: nothing may reach the frames through this range again. */
	pt_clear_ptes(va, len);
	COUNT(flushes);
	COUNT(releases);
	if (len == 1) {
		pending = first;  /* free from now on; the allocator gets it back later */
	} else if (vrange_release(&space, first, len) != VR_OK) {
		PANIC("syspte_release: the allocator refused a checked release at 0x%lx", va);
	}
	klock_release(&lock, irql);
}

void syspte_get_stats(struct syspte_stats *out)
{
	KIRQL irql = klock_acquire(&lock);
	drain_slots();
	drain_pending();
	purge_locked();
	*out = st;
	out->total = space.nslots;
	out->free = space.free_slots;
	out->in_use = space.nslots - space.free_slots;
	out->largest_free = vrange_largest_free(&space);
	out->free_runs = space.free_runs;
	klock_release(&lock, irql);
}

static uint64_t free_ptes(void) { return free_total() + slots_kept(); }

uint32_t syspte_kept_slots(void) { return slots_kept(); }

uint64_t syspte_reserve_one(uint32_t priority)
{
	struct kcpu *c = this_cpu();
	/* The priority rule with the allocator's free count alone (the other free PTEs not
	 * counted: the slow way decides when it is close): this slot is free, and keep stay. */
	uint32_t keep = priority < SYSPTE_PRIORITY_NORMAL ? SYSPTE_LOW_RESERVE(space.nslots)
		      : priority < SYSPTE_PRIORITY_HIGH   ? SYSPTE_NORMAL_RESERVE(space.nslots)
							  : 0;
	if (__atomic_load_n(&c->syspte_slot, __ATOMIC_RELAXED) &&
	    __atomic_load_n(&space.free_slots, __ATOMIC_RELAXED) >= keep) {
		uint32_t w = __atomic_exchange_n(&c->syspte_slot, 0, __ATOMIC_ACQUIRE);
		if (w) {
			space.user[w - 1] = 0; /* this CPU's reservation now: no guard, not kept */
			COUNT(reservations);
			return KVA_SYSPTE_BASE + (uint64_t)(w - 1) * PAGE_SIZE;
		}
	}
	return syspte_reserve(1, priority, false);
}

void syspte_release_one(uint64_t va)
{
	struct kcpu *c = this_cpu();
	uint32_t first = (va - KVA_SYSPTE_BASE) / PAGE_SIZE;
	/* A one-PTE reservation without guard, not released (pending, deferred or kept: user
	 * byte 0), this CPU's slot empty, the strict policy; anything else the checked way. */
	if (tlb_policy_lazy() || !contains(va) || (va & (PAGE_SIZE - 1)) ||
	    __atomic_load_n(&c->syspte_slot, __ATOMIC_RELAXED) || space.state[first] != VR_USED_HEAD ||
	    space.len[first] != 1 || space.user[first] || first == __atomic_load_n(&pending, __ATOMIC_RELAXED)) {
		syspte_release(va, 1);
		return;
	}
	/* Cleared and flushed on every CPU before the slot can be taken again. */
	pt_clear_ptes(va, 1);
	COUNT(flushes);
	COUNT(releases);
	space.user[first] = CACHED;
	uint32_t empty = 0;
	if (__atomic_compare_exchange_n(&c->syspte_slot, &empty, first + 1, false, __ATOMIC_SEQ_CST,
					__ATOMIC_RELAXED)) {
		if (!__atomic_load_n(&slots_maybe_kept, __ATOMIC_RELAXED))
			__atomic_store_n(&slots_maybe_kept, 1, __ATOMIC_RELAXED);
		return;
	}
	/* A DPC on this CPU kept a slot meanwhile: this one goes back to the allocator. */
	KIRQL irql = klock_acquire(&lock);
	space.user[first] = 0;
	drain_pending();
	if (vrange_release(&space, first, 1) != VR_OK)
		PANIC("syspte_release_one: the allocator refused a checked release at 0x%lx", va);
	klock_release(&lock, irql);
}
ACCOUNTING_COUNTER(syspte_free, "free system PTEs", free_ptes);

/* Released under lazy and not yet purged: the ranges and pages waiting (for tests and
 * scripts/bench.py's figures; syspte_get_stats purges them). */
void syspte_deferred(unsigned *ranges, uint32_t *pages)
{
	KIRQL irql = klock_acquire(&lock);
	*ranges = ndeferred;
	*pages = deferred_pages;
	klock_release(&lock, irql);
}
