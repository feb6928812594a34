/* What the tests count (see counters.h). */
#include "tests/lib/counters.h"
#include "mm/memtype.h"
#include "mm/pool.h"
#include "mm/syspte.h"

uint64_t mmt_free_frames(void)
{
	pool_trim(); /* the pool's spare slab pages are not the case's */
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.free;
}

uint64_t mmt_locked_frames(void)
{
	struct pfn_stats s;
	pfn_get_stats(&s);
	return s.locked;
}

uint32_t mmt_lock_count(pfn_t pfn) { return pfn_entry(pfn)->lock_count; }

bool mmt_frame_is_free(pfn_t pfn)
{
	const struct pfn_entry *e = pfn_entry(pfn);
	return e && (e->state == PFN_FREE || e->state == PFN_ZEROED);
}

uint64_t mmt_free_sysptes(void)
{
	struct syspte_stats s;
	syspte_get_stats(&s);
	return s.free;
}

pfn_t mmt_hog_frames(uint64_t leave, uint64_t *taken)
{
	pfn_t head = PFN_INVALID;
	struct pfn_stats s;
	*taken = 0;
	pool_trim(); /* so a pool allocation under the hog needs a frame, as with none kept */
	for (pfn_get_stats(&s); s.free > leave; pfn_get_stats(&s)) {
		pfn_t p = pfn_alloc(0, PFN_OWNER_TEST);
		if (p == PFN_INVALID)
			break;
		*(volatile uint64_t *)pfn_to_virt(p) = head;
		head = p;
		(*taken)++;
	}
	return head;
}

uint64_t mmt_release_frames(pfn_t head)
{
	uint64_t n = 0;
	while (head != PFN_INVALID) {
		pfn_t next = *(volatile uint64_t *)pfn_to_virt(head);
		pfn_free(head);
		head = next;
		n++;
	}
	return n;
}

void mmt_free_typed_run(pfn_t first, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		memtype_release_frame(first + i);
		pfn_free(first + i);
	}
}
