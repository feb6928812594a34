/*
 * Virtual address descriptors (see vad.h): an AVL tree of a process's user ranges, keyed by
 * start address, with parent links so that walks and removal need no stack.
 *
 * Ranges never overlap, so ordering by start also orders by end: "the first range whose end
 * lies above x" is a plain lower-bound descent, which is what find, find_overlap and
 * find_free are built on.  Nodes are never moved between tree positions by copying their
 * contents: callers hold pointers to them (an MDL user mapping keeps its VAD), so removal
 * relinks the successor node itself into the removed node's place.
 */
#include "mm/vad.h"
#include "include/wdm.h"
#include "kernel/bugcheck.h"
#include "kernel/lib.h"
#include "mm/layout.h"

#define VAD_TAG 0x53646156u /* 'VadS' */

static int height(const struct vad *n) { return n ? n->height : 0; }

static void update_height(struct vad *n)
{
	n->height = 1 + MAX(height(n->left), height(n->right));
}

/* Put `child` where `old` hung under `parent` (the root when parent is NULL). */
static void replace_child(struct mm_process *mm, struct vad *parent, struct vad *old, struct vad *child)
{
	if (!parent)
		mm->vad_root = child;
	else if (parent->left == old)
		parent->left = child;
	else
		parent->right = child;
	if (child)
		child->parent = parent;
}

/* The classic rotations; each returns the node now at the top of the subtree. */
static struct vad *rotate_left(struct mm_process *mm, struct vad *x)
{
	struct vad *y = x->right;
	x->right = y->left;
	if (y->left)
		y->left->parent = x;
	replace_child(mm, x->parent, x, y);
	y->left = x;
	x->parent = y;
	update_height(x);
	update_height(y);
	return y;
}

static struct vad *rotate_right(struct mm_process *mm, struct vad *x)
{
	struct vad *y = x->left;
	x->left = y->right;
	if (y->right)
		y->right->parent = x;
	replace_child(mm, x->parent, x, y);
	y->right = x;
	x->parent = y;
	update_height(x);
	update_height(y);
	return y;
}

/* Restore heights and balance from n up to the root (after an insert below n, or a removal
 * that shortened one of n's subtrees). */
static void rebalance(struct mm_process *mm, struct vad *n)
{
	while (n) {
		update_height(n);
		int balance = height(n->left) - height(n->right);
		if (balance > 1) {
			if (height(n->left->left) < height(n->left->right))
				rotate_left(mm, n->left);
			n = rotate_right(mm, n);
		} else if (balance < -1) {
			if (height(n->right->right) < height(n->right->left))
				rotate_right(mm, n->right);
			n = rotate_left(mm, n);
		}
		n = n->parent;
	}
}

static struct vad *leftmost(struct vad *n)
{
	while (n && n->left)
		n = n->left;
	return n;
}

/* The in-order successor of n, or NULL. */
static struct vad *successor(struct vad *n)
{
	if (n->right)
		return leftmost(n->right);
	while (n->parent && n->parent->right == n)
		n = n->parent;
	return n->parent;
}

/* The lowest range whose end lies above va (the first one that va does not lie past). */
static struct vad *first_ending_above(struct mm_process *mm, uint64_t va)
{
	struct vad *best = NULL;
	for (struct vad *n = mm->vad_root; n;) {
		if (n->end > va) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return best;
}

struct vad *vad_find(struct mm_process *mm, uint64_t va)
{
	for (struct vad *n = mm->vad_root; n;) {
		if (va < n->start)
			n = n->left;
		else if (va >= n->end)
			n = n->right;
		else
			return n;
	}
	return NULL;
}

struct vad *vad_find_overlap(struct mm_process *mm, uint64_t start, uint64_t end)
{
	if (start >= end)
		return NULL;
	struct vad *n = first_ending_above(mm, start);
	return n && n->start < end ? n : NULL;
}

struct vad *vad_insert(struct mm_process *mm, uint64_t start, uint64_t end, enum vad_kind kind, uint32_t protect)
{
	if (start >= end || ((start | end) & (PAGE_SIZE - 1)) || end > USER_VA_END)
		PANIC("vad_insert: bad range 0x%lx-0x%lx", start, end);
	if (vad_find_overlap(mm, start, end))
		return NULL;
	struct vad *v = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *v, VAD_TAG);
	if (!v)
		return NULL;
	v->start = start;
	v->end = end;
	v->kind = (uint8_t)kind;
	v->protect = protect;
	v->height = 1;

	struct vad *parent = NULL, **link = &mm->vad_root;
	while (*link) {
		parent = *link;
		link = start < parent->start ? &parent->left : &parent->right;
	}
	*link = v;
	v->parent = parent;
	rebalance(mm, parent);
	return v;
}

void vad_raise_start(struct vad *v, uint64_t start)
{
	if (start <= v->start || start >= v->end || (start & (PAGE_SIZE - 1)))
		PANIC("vad_raise_start: 0x%lx is not inside [0x%lx, 0x%lx)", start, v->start, v->end);
	v->start = start;
}

void vad_remove(struct mm_process *mm, struct vad *v)
{
	struct vad *fix;
	if (v->left && v->right) {
		/* The successor s (leftmost of the right subtree, so it has no left child) takes
		 * v's place; s's own place goes to its right child. */
		struct vad *s = leftmost(v->right);
		if (s->parent == v) {
			fix = s;
		} else {
			fix = s->parent;
			replace_child(mm, s->parent, s, s->right);
			s->right = v->right;
			s->right->parent = s;
		}
		replace_child(mm, v->parent, v, s);
		s->left = v->left;
		s->left->parent = s;
	} else {
		fix = v->parent;
		replace_child(mm, v->parent, v, v->left ? v->left : v->right);
	}
	rebalance(mm, fix);
	ExFreePoolWithTag(v, VAD_TAG);
}

uint64_t vad_find_free(struct mm_process *mm, uint64_t size, uint64_t align, uint64_t lo, uint64_t hi)
{
	if (!size || !align || (align & (align - 1)))
		return 0;
	uint64_t cand = ALIGN_UP(lo, align);
	if (cand < lo)
		return 0; /* wrapped */
	/* Ranges ending at or below cand are irrelevant; walk the rest in address order. */
	for (struct vad *n = first_ending_above(mm, cand); n; n = successor(n)) {
		if (cand >= hi || hi - cand < size)
			return 0;
		if (n->start >= cand + size)
			break; /* the gap below n holds the range */
		cand = ALIGN_UP(n->end, align);
		if (cand < n->end)
			return 0;
	}
	return cand < hi && hi - cand >= size ? cand : 0;
}

void vad_for_each(struct mm_process *mm, void (*fn)(struct vad *v, void *ctx), void *ctx)
{
	/* The successor is taken before the call, so fn may remove the node it is given. */
	for (struct vad *n = leftmost(mm->vad_root), *next; n; n = next) {
		next = successor(n);
		fn(n, ctx);
	}
}

uint64_t vad_count(const struct mm_process *mm)
{
	uint64_t n = 0;
	for (struct vad *v = leftmost(mm->vad_root); v; v = successor(v))
		n++;
	return n;
}

/* Check the subtree at n: links, order within (lo, hi), heights, balance.  Returns its
 * height, or -1 on a violation. */
static int check_subtree(const struct vad *n, const struct vad *parent, uint64_t lo, uint64_t hi)
{
	if (!n)
		return 0;
	if (n->parent != parent || n->start >= n->end || ((n->start | n->end) & (PAGE_SIZE - 1)) ||
	    n->start < lo || n->end > hi || n->kind > VAD_MDL)
		return -1;
	int hl = check_subtree(n->left, n, lo, n->start);
	int hr = check_subtree(n->right, n, n->end, hi);
	if (hl < 0 || hr < 0 || hl - hr > 1 || hr - hl > 1 || n->height != 1 + MAX(hl, hr))
		return -1;
	return n->height;
}

bool vad_check(struct mm_process *mm)
{
	return check_subtree(mm->vad_root, NULL, 0, USER_VA_END) >= 0;
}
