/* Helpers shared by the memory-manager tests (see mm_test_util.h). */
#include "tests/mm_test_util.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"

uint64_t mmt_leaf_pa(uint64_t entry, int level)
{
	return entry & MMT_PTE_ADDR & ~(mmt_level_size(level) - 1);
}

int mmt_leaf_slot(uint64_t entry, int level)
{
	uint64_t pat_bit = level == 1 ? MMT_PTE_PAT_4K : MMT_PTE_PAT_LARGE;
	return (mmt_has(entry, pat_bit) << 2) | (mmt_has(entry, MMT_PTE_PCD) << 1) |
	       mmt_has(entry, MMT_PTE_PWT);
}

unsigned mmt_pat_field(uint64_t msr, int slot) { return (msr >> (8 * slot)) & 0xFF; }

unsigned mmt_leaf_encoding(uint64_t entry, int level)
{
	return mmt_pat_field(rdmsr(MMT_MSR_PAT), mmt_leaf_slot(entry, level));
}

/* SDM Vol. 3, table 13-10. */
unsigned mmt_type_encoding(enum memtype t)
{
	switch (t) {
	case MT_UC: return 0;
	case MT_WC: return 1;
	case MT_WT: return 4;
	case MT_WP: return 5;
	case MT_WB: return 6;
	case MT_UCMINUS: return 7;
	default: return 0xFF;
	}
}

const char *mmt_type_name(enum memtype t)
{
	static const char *const n[MT_COUNT] = { [MT_WB] = "WB", [MT_WT] = "WT", [MT_UCMINUS] = "UC-",
						 [MT_UC] = "UC", [MT_WC] = "WC", [MT_WP] = "WP" };
	return t < MT_COUNT ? n[t] : "?";
}

struct mmt_rights mmt_rights_of(uint64_t va)
{
	struct pt_query q;
	struct mmt_rights r = { .write = true, .user = true };
	pt_query(&kernel_root, va, &q);
	for (int level = 4; level >= 1; level--) {
		uint64_t e = q.entry[level];
		if (!mmt_has(e, MMT_PTE_P))
			return (struct mmt_rights){ .level = level };
		r.write &= mmt_has(e, MMT_PTE_RW);
		r.user &= mmt_has(e, MMT_PTE_US);
		r.nx |= mmt_has(e, MMT_PTE_NX);
		if (level == 1 || (level < 4 && mmt_has(e, MMT_PTE_PS))) {
			r.present = true;
			r.level = level;
			r.leaf = e;
			r.pa = mmt_leaf_pa(e, level) + (va & (mmt_level_size(level) - 1));
			return r;
		}
	}
	return (struct mmt_rights){ 0 };
}

bool mmt_va_unmapped(uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	return !q.present;
}

bool mmt_frame_is_free(pfn_t pfn)
{
	struct pfn_entry *e = pfn_entry(pfn);
	return e && (e->state == PFN_FREE || e->state == PFN_ZEROED);
}

pfn_t mmt_hog_frames(uint64_t leave, uint64_t *taken)
{
	pfn_t head = PFN_INVALID;
	struct pfn_stats s;
	*taken = 0;
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
