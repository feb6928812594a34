/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between mdlab_peer.ko and its user helper (peer.c): one ioctl on
 * /dev/mdlab_peer that times one case at one size and returns instructions per operation.
 * Included by both sides (the kernel's and the C library's <linux/ioctl.h>).
 */
#ifndef MDLAB_PEER_H
#define MDLAB_PEER_H

#include <linux/ioctl.h>
#include <linux/types.h>

enum mdlab_peer_op {
	MDLAB_PEER_VMAP = 1,		/* vmap + vunmap of n pages */
	MDLAB_PEER_VM_MAP_RAM = 2,	/* vm_map_ram + vm_unmap_ram of n pages */
	MDLAB_PEER_PIN = 3,		/* pin_user_pages_fast + unpin_user_pages of `user` */
	MDLAB_PEER_ALLOC = 4,		/* alloc_page(GFP_KERNEL) x n + __free_page x n */
	MDLAB_PEER_ALLOC_ZERO = 5,	/* the same with __GFP_ZERO */
	MDLAB_PEER_USER_MAP = 6,	/* vm_mmap of the device (mmap: vm_insert_pages) + vm_munmap */
};

#define MDLAB_PEER_MAX_PAGES 512

struct mdlab_peer_run {
	__u32 op;		/* in: enum mdlab_peer_op */
	__u32 pages;		/* in: n, 1 .. MDLAB_PEER_MAX_PAGES */
	__u64 user;		/* in: MDLAB_PEER_PIN's buffer, n resident writable pages */
	__u64 per_op;		/* out: ticks per operation, the best round */
	__u64 overhead;		/* out: ticks of an empty measurement, subtracted */
	__u32 reps;		/* out: operations a round */
	__u32 rounds;		/* out: rounds */
};

#define MDLAB_PEER_RUN _IOWR('m', 1, struct mdlab_peer_run)

#endif
