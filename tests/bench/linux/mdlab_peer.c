// SPDX-License-Identifier: GPL-2.0
/*
 * mdlab_peer: the Linux side of `make bench-linux` (README "make bench-linux").
 *
 * A misc device, /dev/mdlab_peer.  Its one ioctl, MDLAB_PEER_RUN (mdlab_peer.h), times one
 * operation of one case at one size in the calling process and returns the instructions per
 * operation: under QEMU's -icount shift=0 the TSC advances one tick per guest instruction.
 *
 * The statistic is make bench's (tests/bench/bench_mdl.c): REPS operations back to back
 * between two serialised TSC reads, ROUNDS such rounds, the smallest round less the cost of an
 * empty measurement, divided by REPS.  Interrupts stay enabled (vunmap and vm_mmap may sleep),
 * so a timer tick that lands in a round counts in it; the helper reports how many landed.
 */
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "mdlab_peer.h"

#define REPS 64
#define ROUNDS 3

/* What one timed call works on. */
struct peer_ctx {
	unsigned int n;
	struct page **pages;	/* n pages: mapped (vmap, vm_map_ram, user map) or filled (alloc) */
	unsigned long user;	/* the helper's buffer (pin) */
	struct file *file;	/* /dev/mdlab_peer, mapped by vm_mmap (user map) */
	gfp_t gfp;
	int error;		/* the first failure of an operation, reported by the ioctl */
};

static DEFINE_MUTEX(peer_lock);
/* The pages the device's mmap inserts: set by the user-map case while it runs (peer_lock). */
static struct page **map_pages;
static unsigned long map_count;

static inline u64 peer_now(void)
{
	u32 lo, hi;

	/* As kernel/bench.h: serialised, so the measured instructions retire before the read. */
	asm volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((u64)hi << 32) | lo;
}

static u64 peer_overhead(void)
{
	u64 best = ~0ull;
	int i;

	for (i = 0; i < 16; i++) {
		u64 t0 = peer_now(), t1 = peer_now();

		if (t1 - t0 < best)
			best = t1 - t0;
	}
	return best;
}

static void fail(struct peer_ctx *c, int error)
{
	if (!c->error)
		c->error = error;
}

static void vmap_op(struct peer_ctx *c)
{
	void *va = vmap(c->pages, c->n, VM_MAP, PAGE_KERNEL);

	if (!va) {
		fail(c, -ENOMEM);
		return;
	}
	vunmap(va);
}

static void vm_map_ram_op(struct peer_ctx *c)
{
	void *va = vm_map_ram(c->pages, c->n, NUMA_NO_NODE);

	if (!va) {
		fail(c, -ENOMEM);
		return;
	}
	vm_unmap_ram(va, c->n);
}

static void pin_op(struct peer_ctx *c)
{
	int got = pin_user_pages_fast(c->user, c->n, FOLL_WRITE, c->pages);

	if (got > 0)
		unpin_user_pages(c->pages, got);
	if (got != (int)c->n)
		fail(c, got < 0 ? got : -EFAULT);
}

static void alloc_op(struct peer_ctx *c)
{
	unsigned int i, got;

	for (got = 0; got < c->n; got++) {
		c->pages[got] = alloc_page(c->gfp);
		if (!c->pages[got])
			break;
	}
	for (i = 0; i < got; i++)
		__free_page(c->pages[i]);
	if (got != c->n)
		fail(c, -ENOMEM);
}

static void user_map_op(struct peer_ctx *c)
{
	size_t len = (size_t)c->n << PAGE_SHIFT;
	unsigned long va = vm_mmap(c->file, 0, len, PROT_READ | PROT_WRITE, MAP_SHARED, 0);

	if (IS_ERR_VALUE(va)) {
		fail(c, (int)va);
		return;
	}
	vm_munmap(va, len);
}

/* The device's mmap (reached here only through user_map_op's vm_mmap): the case's pages,
 * inserted in one batch while mmap_region holds the mmap lock for writing. */
static int peer_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long count = vma_pages(vma);

	if (!map_pages || count != map_count || vma->vm_pgoff)
		return -EINVAL;
	return vm_insert_pages(vma, vma->vm_start, map_pages, &count);
}

static u64 time_op(void (*op)(struct peer_ctx *), struct peer_ctx *c, u64 overhead)
{
	u64 best = ~0ull;
	int r, i;

	for (r = 0; r < ROUNDS; r++) {
		u64 t0 = peer_now(), t;

		for (i = 0; i < REPS; i++)
			op(c);
		t = peer_now() - t0 - overhead;
		if (t < best)
			best = t;
	}
	return best / REPS;
}

static int alloc_pages_array(struct peer_ctx *c, bool fill)
{
	unsigned int i;

	c->pages = kcalloc(c->n, sizeof(*c->pages), GFP_KERNEL);
	if (!c->pages)
		return -ENOMEM;
	for (i = 0; fill && i < c->n; i++) {
		c->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!c->pages[i])
			return -ENOMEM;
	}
	return 0;
}

static void free_pages_array(struct peer_ctx *c, bool filled)
{
	unsigned int i;

	for (i = 0; filled && c->pages && i < c->n; i++)
		if (c->pages[i])
			__free_page(c->pages[i]);
	kfree(c->pages);
}

static int peer_run(struct file *file, struct mdlab_peer_run *run)
{
	struct peer_ctx c = { .n = run->pages, .user = run->user, .file = file };
	void (*op)(struct peer_ctx *);
	bool filled = false;
	int err;

	if (!run->pages || run->pages > MDLAB_PEER_MAX_PAGES)
		return -EINVAL;
	switch (run->op) {
	case MDLAB_PEER_VMAP:
		op = vmap_op, filled = true;
		break;
	case MDLAB_PEER_VM_MAP_RAM:
		op = vm_map_ram_op, filled = true;
		break;
	case MDLAB_PEER_PIN:
		op = pin_op;
		break;
	case MDLAB_PEER_ALLOC:
		op = alloc_op, c.gfp = GFP_KERNEL;
		break;
	case MDLAB_PEER_ALLOC_ZERO:
		op = alloc_op, c.gfp = GFP_KERNEL | __GFP_ZERO;
		break;
	case MDLAB_PEER_USER_MAP:
		op = user_map_op, filled = true;
		break;
	default:
		return -EINVAL;
	}
	err = alloc_pages_array(&c, filled);
	if (!err) {
		map_pages = run->op == MDLAB_PEER_USER_MAP ? c.pages : NULL;
		map_count = c.n;
		/* One untimed call first: it must work, and later rounds then find everything warm. */
		op(&c);
		err = c.error;
	}
	if (!err) {
		run->overhead = peer_overhead();
		run->reps = REPS;
		run->rounds = ROUNDS;
		run->per_op = time_op(op, &c, run->overhead);
		err = c.error;
	}
	map_pages = NULL;
	free_pages_array(&c, filled);
	return err;
}

static long peer_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct mdlab_peer_run run;
	long err;

	if (cmd != MDLAB_PEER_RUN)
		return -ENOTTY;
	if (copy_from_user(&run, (void __user *)arg, sizeof(run)))
		return -EFAULT;
	mutex_lock(&peer_lock);
	err = peer_run(file, &run);
	mutex_unlock(&peer_lock);
	if (!err && copy_to_user((void __user *)arg, &run, sizeof(run)))
		err = -EFAULT;
	return err;
}

static const struct file_operations peer_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = peer_ioctl,
	.mmap = peer_mmap,
};

static struct miscdevice peer_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "mdlab_peer",
	.fops = &peer_fops,
};

module_misc_device(peer_dev);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("mdlab's peer benchmark: Linux's mapping paths timed with rdtsc");
