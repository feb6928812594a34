/* The tests' own reading of the page tables and of IA32_PAT (see pte.h). */
#include "tests/lib/pte.h"
#include "kernel/cpu.h"

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
	case MT_UC: return MMT_ENC_UC;
	case MT_WC: return MMT_ENC_WC;
	case MT_WT: return MMT_ENC_WT;
	case MT_WP: return MMT_ENC_WP;
	case MT_WB: return MMT_ENC_WB;
	case MT_UCMINUS: return MMT_ENC_UCMINUS;
	default: return 0xFF;
	}
}

const char *mmt_type_name(enum memtype t)
{
	static const char *const n[MT_COUNT] = { [MT_WB] = "WB", [MT_WT] = "WT", [MT_UCMINUS] = "UC-",
						 [MT_UC] = "UC", [MT_WC] = "WC", [MT_WP] = "WP" };
	return t < MT_COUNT ? n[t] : "?";
}

struct mmt_rights mmt_rights_of(uint64_t va) { return mmt_rights_in(&kernel_root, va); }

struct mmt_rights mmt_rights_in(const struct pt_root *root, uint64_t va)
{
	struct pt_query q;
	struct mmt_rights r = { .write = true, .user = true };
	pt_query(root, va, &q);
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

unsigned mmt_encoding_at(uint64_t va, struct mmt_rights *r)
{
	struct mmt_rights got = mmt_rights_of(va);
	if (r)
		*r = got;
	return got.present ? mmt_leaf_encoding(got.leaf, got.level) : MMT_ENC_UNMAPPED;
}

unsigned mmt_alias_encoding(pfn_t pfn, struct mmt_rights *r)
{
	return mmt_encoding_at((uint64_t)pfn_to_virt(pfn), r);
}

bool mmt_va_mapped(uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	return q.present;
}

bool mmt_present_in(const struct pt_root *r, uint64_t va, bool *write)
{
	struct pt_query q;
	pt_query(r, va, &q);
	bool w = true;
	for (int level = 4; level >= 1; level--) {
		uint64_t e = q.entry[level];
		if (!(e & MMT_PTE_P))
			return false;
		w &= (e & MMT_PTE_RW) != 0;
		if (level == 1 || (level < 4 && (e & MMT_PTE_PS)))
			break;
	}
	*write = w;
	return true;
}

pfn_t mmt_frame_of(uint64_t va)
{
	struct mmt_rights r = mmt_rights_of(va);
	return r.present ? r.pa >> PAGE_SHIFT : PFN_INVALID;
}

pfn_t mmt_frame_in(const struct pt_root *root, uint64_t va)
{
	struct mmt_rights r = mmt_rights_in(root, va);
	return r.present ? r.pa >> PAGE_SHIFT : PFN_INVALID;
}

uint64_t mmt_raw_pte_in(const struct pt_root *root, uint64_t va)
{
	struct pt_query q;
	pt_query(root, va, &q);
	return q.level == 1 ? q.entry[1] : 0;
}
