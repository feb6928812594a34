#include "mm/vrange.h"
#include "kernel/lib.h"
#include "mm/pfn.h"

void vrange_destroy(struct vrange *v)
{
	if (v->meta_pages)
		pfn_free_run(v->meta_pfn, v->meta_pages);
	v->meta_pages = 0;
}

static unsigned floor_log2(uint32_t n) { return 31 - __builtin_clz(n); }
static unsigned ceil_log2(uint32_t n) { return n <= 1 ? 0 : floor_log2(n - 1) + 1; }

/* Set state[from .. from + n) to `val`, eight slots a store where it can. */
static void fill_state(struct vrange *v, uint32_t from, uint32_t n, uint8_t val)
{
	uint8_t *p = v->state + from, *end = p + n;
	uint64_t word = 0x0101010101010101ull * val;
	while (p < end && ((uint64_t)p & 7))
		*p++ = val;
	for (; p + 8 <= end; p += 8)
		*(uint64_t *)p = word;
	while (p < end)
		*p++ = val;
}

static void list_add(struct vrange *v, uint32_t head)
{
	unsigned c = floor_log2(v->len[head]);
	v->prev[head] = VRANGE_NONE;
	v->next[head] = v->heads[c];
	if (v->heads[c] != VRANGE_NONE)
		v->prev[v->heads[c]] = head;
	v->heads[c] = head;
	v->bitmap |= 1u << c;
	v->free_runs++;
}

static void list_del(struct vrange *v, uint32_t head)
{
	unsigned c = floor_log2(v->len[head]);
	if (v->prev[head] != VRANGE_NONE)
		v->next[v->prev[head]] = v->next[head];
	else
		v->heads[c] = v->next[head];
	if (v->next[head] != VRANGE_NONE)
		v->prev[v->next[head]] = v->prev[head];
	if (v->heads[c] == VRANGE_NONE)
		v->bitmap &= ~(1u << c);
	v->free_runs--;
}

/* Mark [first, first + n) a free run and file it. */
static void make_free_run(struct vrange *v, uint32_t first, uint32_t n)
{
	v->state[first] = VR_FREE_HEAD;
	v->len[first] = n;
	if (n > 1)
		v->state[first + n - 1] = VR_FREE_INNER;
	v->head_of_tail[first + n - 1] = first;
	list_add(v, first);
}

bool vrange_init(struct vrange *v, uint32_t nslots)
{
	memset(v, 0, sizeof *v);
	for (int c = 0; c < VRANGE_CLASSES; c++)
		v->heads[c] = VRANGE_NONE;
	uint64_t bytes = (uint64_t)nslots * (2 + 4 * 4);
	v->meta_pages = ALIGN_UP(bytes, PAGE_SIZE) / PAGE_SIZE;
	v->meta_pfn = pfn_alloc_run(0, ~0ull, v->meta_pages, 1, PFN_ALLOC_ZERO, PFN_OWNER_KERNEL);
	if (v->meta_pfn == PFN_INVALID) {
		v->meta_pages = 0; /* nothing for vrange_destroy to give back */
		return false;
	}
	uint8_t *m = pfn_to_virt(v->meta_pfn);
	v->len = (uint32_t *)m;
	v->head_of_tail = v->len + nslots;
	v->next = v->head_of_tail + nslots;
	v->prev = v->next + nslots;
	v->state = (uint8_t *)(v->prev + nslots);
	v->user = v->state + nslots;
	v->nslots = nslots;
	v->free_slots = nslots;
	if (nslots)
		make_free_run(v, 0, nslots);
	return true;
}

/* The first run of class c that holds n slots, or VRANGE_NONE. */
static uint32_t search_class(const struct vrange *v, unsigned c, uint32_t n)
{
	for (uint32_t h = v->heads[c]; h != VRANGE_NONE; h = v->next[h])
		if (v->len[h] >= n)
			return h;
	return VRANGE_NONE;
}

static uint32_t find_run(const struct vrange *v, uint32_t n)
{
	unsigned want = ceil_log2(n);
	uint32_t mask = want >= 32 ? 0 : v->bitmap & ~((1u << want) - 1);
	if (mask)
		return v->heads[__builtin_ctz(mask)];
	/* Nearly full: class floor(log2 n) may still hold a run long enough. */
	return search_class(v, floor_log2(n), n);
}

bool vrange_fits(const struct vrange *v, uint32_t n)
{
	return n && n <= v->free_slots && find_run(v, n) != VRANGE_NONE;
}

uint32_t vrange_reserve(struct vrange *v, uint32_t n)
{
	if (!n || n > v->free_slots)
		return VRANGE_NONE;
	uint32_t head = find_run(v, n);
	if (head == VRANGE_NONE)
		return VRANGE_NONE;
	uint32_t len = v->len[head];
	list_del(v, head);
	/* Take the front; the rest stays a free run. */
	if (len > n)
		make_free_run(v, head + n, len - n);
	v->state[head] = VR_USED_HEAD;
	v->len[head] = n;
	v->user[head] = 0;
	fill_state(v, head + 1, n - 1, VR_USED_INNER);
	v->free_slots -= n;
	return head;
}

enum vrange_status vrange_release(struct vrange *v, uint32_t first, uint32_t n)
{
	if (first >= v->nslots)
		return VR_NOT_RESERVED;
	if (vrange_slot_is_free(v, first))
		return VR_DOUBLE_FREE;
	if (v->state[first] != VR_USED_HEAD)
		return VR_NOT_RESERVED;
	if (v->len[first] != n)
		return VR_WRONG_COUNT;
	uint32_t start = first, len = n;
	/* Coalesce with a free run just before ... */
	if (first > 0 && vrange_slot_is_free(v, first - 1)) {
		uint32_t h = v->head_of_tail[first - 1];
		list_del(v, h);
		start = h;
		len += v->len[h];
	}
	/* ... and just after. */
	uint32_t after = first + n;
	if (after < v->nslots && v->state[after] == VR_FREE_HEAD) {
		list_del(v, after);
		len += v->len[after];
		v->state[after] = VR_FREE_INNER;
	}
	fill_state(v, first, n, VR_FREE_INNER);
	make_free_run(v, start, len);
	v->free_slots += n;
	return VR_OK;
}

uint32_t vrange_largest_free(const struct vrange *v)
{
	if (!v->bitmap)
		return 0;
	unsigned c = floor_log2(v->bitmap);
	uint32_t best = 0;
	for (uint32_t h = v->heads[c]; h != VRANGE_NONE; h = v->next[h])
		if (v->len[h] > best)
			best = v->len[h];
	return best;
}

uint32_t vrange_reserved_len(const struct vrange *v, uint32_t first)
{
	return first < v->nslots && v->state[first] == VR_USED_HEAD ? v->len[first] : 0;
}
