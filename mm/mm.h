/* Memory-manager bring-up and the kernel address space. */
#ifndef MM_MM_H
#define MM_MM_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"
#include "kernel/smap_sites.h"

/*
 * Build the kernel's own page tables from scratch (direct map, image with per-section rights,
 * guarded stacks), program the PAT, enable NXE, WP, PGE, SMEP and SMAP when the CPU has them,
 * switch CR3, give the boot memory back, then continue in `next(arg)` on a guarded stack.
 * Nothing of the firmware's or the loader's tables survives.
 */
__attribute__((noreturn)) void mm_init(const struct mdlab_bootinfo *bi, void (*next)(void *), void *arg);

/* A kernel stack of `pages` pages in the stack region, with an unmapped guard page below
 * it; returns its top (0 when out of frames).  Stacks are never freed today. */
uint64_t kstack_create(uint64_t pages);

/* Physical address of a kernel-image virtual address. */
uint64_t kernel_image_phys(uint64_t va);

/* The user-access window (SMAP): open around deliberate kernel accesses to user pages.  NOPs
 * on a CPU without SMAP (kernel/smap_sites.h). */
static inline void user_access_begin(void) { SMAP_STAC(); }
static inline void user_access_end(void) { SMAP_CLAC(); }

struct mm_cpu_state {
	bool nx, wp, pge, smep, smap;
};
void mm_cpu_state(struct mm_cpu_state *out);
void mm_print_summary(void);

#endif
