/* Scratch virtual addresses (see scratch.h). */
#include "tests/lib/scratch.h"
#include "kernel/bugcheck.h"
#include "kernel/lib.h"
#include "mm/layout.h"
#include "mm/pt.h"

#define SCRATCH_UNIT HUGE_PAGE_SIZE
#define HOLE_SIZE SCRATCH_PML4_SLOT  /* the hole is one PML4 slot */

struct region {
	const char *name;
	uint64_t base, end;
	uint64_t next;  /* where the next search starts */
};

static struct region kernel_region = { "kernel", KVA_TEST_BASE, KVA_TEST_END, KVA_TEST_BASE };
static struct region user_region = { "user", SCRATCH_USER_BASE, SCRATCH_USER_END, SCRATCH_USER_BASE };
static uint64_t hole_next;  /* offset into KVA_UNMAPPED_HOLE */

/* Whether nothing maps the GiB at va in the kernel's tables: the walk stops at an empty
 * PDPT or PML4 entry. */
static bool unit_is_empty(uint64_t va)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	return !q.present && q.level >= 3 && q.entry[q.level] == 0;
}

/* The first GiB of [va, va + size) something maps, 0 when none. */
static uint64_t first_used(uint64_t va, uint64_t size)
{
	for (uint64_t u = va; u < va + size; u += SCRATCH_UNIT)
		if (!unit_is_empty(u))
			return u;
	return 0;
}

/* The first range of r at or after r->next (wrapping once) that is `size` bytes aligned to
 * `align`, in whole GiB, and empty now; r->next moves past it.  PANICs when there is none. */
static uint64_t take(struct region *r, uint64_t size, uint64_t align)
{
	if (align < SCRATCH_UNIT)
		align = SCRATCH_UNIT;
	size = ALIGN_UP(size ? size : 1, SCRATCH_UNIT);
	if ((align & (align - 1)) || size > r->end - r->base)
		PANIC("scratch: no %s range of 0x%lx bytes aligned to 0x%lx", r->name, size, align);
	bool wrapped = false;
	uint64_t va = ALIGN_UP(r->next, align);
	for (;;) {
		if (va < r->base || va + size > r->end) {
			if (wrapped)
				PANIC("scratch: the %s region has no empty 0x%lx bytes left", r->name, size);
			wrapped = true;
			va = ALIGN_UP(r->base, align);
			continue;
		}
		uint64_t used = first_used(va, size);
		if (!used) {
			r->next = va + size;
			return va;
		}
		va = ALIGN_UP(used + SCRATCH_UNIT, align);
	}
}

uint64_t scratch_kva(uint64_t size, uint64_t align) { return take(&kernel_region, size, align); }

uint64_t scratch_uva(uint64_t size, uint64_t align) { return take(&user_region, size, align); }

uint64_t scratch_unmapped_kva(uint64_t size)
{
	size = ALIGN_UP(size ? size : 1, PAGE_SIZE);
	if (size > HOLE_SIZE)
		PANIC("scratch: 0x%lx bytes do not fit in the unmapped hole", size);
	if (hole_next + size > HOLE_SIZE)
		hole_next = 0;
	uint64_t va = KVA_UNMAPPED_HOLE + hole_next;
	hole_next += size;
	return va;
}

bool scratch_map_page(struct ktest *t, uint64_t va, pfn_t *pfn, struct pt_attrs a, uint8_t first)
{
	struct pt_query q;
	pt_query(&kernel_root, va, &q);
	if (q.present) {
		KTEST_FAIL(t, "test address 0x%lx is already mapped", va);
		return false;
	}
	*pfn = pfn_alloc(PFN_ALLOC_ZERO, PFN_OWNER_TEST);
	if (*pfn == PFN_INVALID) {
		KTEST_FAIL(t, "no frame");
		return false;
	}
	*(uint8_t *)pfn_to_virt(*pfn) = first;
	if (!pt_map(&kernel_root, va, *pfn << PAGE_SHIFT, PAGE_SIZE, a, 0)) {
		KTEST_FAIL(t, "pt_map of the test page failed");
		pfn_free(*pfn);
		return false;
	}
	return true;
}

void scratch_unmap_page(uint64_t va, pfn_t pfn)
{
	pt_unmap(&kernel_root, va, PAGE_SIZE);
	pfn_free(pfn);
}
