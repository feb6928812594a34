#include "mm/syspte.h"
#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"
#include "mm/layout.h"
#include "mm/tlb.h"
#include "mm/vrange.h"

#define GUARDED 1  /* vrange user byte: the reservation has a guard PTE after it */
#define DEFERRED 2 /* vrange user byte: released under tlb=lazy, not yet purged (below) */

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

static uint32_t free_total(void) { return space.free_slots + (pending != VRANGE_NONE) + deferred_pages; }

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

static uint64_t reserve_locked(uint32_t n, uint32_t priority, bool guard)
{
	uint32_t need = n + (guard ? 1 : 0);
	if (!n || need < n)
		return 0;
	/* The priority rule: what must stay free after this reservation. */
	uint32_t keep = priority < SYSPTE_PRIORITY_NORMAL ? SYSPTE_LOW_RESERVE(space.nslots)
		      : priority < SYSPTE_PRIORITY_HIGH   ? SYSPTE_NORMAL_RESERVE(space.nslots)
							  : 0;
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
	st.reservations++;
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
	uint32_t len = syspte_contains(va) && first != pending && !is_deferred(first)
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
	uint32_t len = syspte_contains(va) && first != pending && !is_deferred(first)
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
	if (space.state[slot] != VR_USED_HEAD || slot == pending || is_deferred(slot))
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
	bool guarded = first != pending && !is_deferred(first) && space.state[first] == VR_USED_HEAD &&
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
	if (first == pending || is_deferred(first))
		release_twice(va);
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
		st.flushes++;
		st.releases++;
		st.deferred++;
		klock_release(&lock, irql);
		return;
	}
	/* The translations go first: nothing may reach the frames through this range again. */
	pt_clear_ptes(va, len);
	st.flushes++;
	st.releases++;
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

static uint64_t free_ptes(void) { return free_total(); }
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
