/*
 * A readable dump of an address space's page tables on the console, read from the real
 * tables.  Consecutive leaves with contiguous virtual addresses, identical effective
 * attributes and the same region of mm/layout.h merge into one line:
 *
 *   0xffff800000000000-0xffff80001fffffff   512M  2M      S   RW NX   G WB   (direct map)
 *   start              end                  size  leaf sizes, U/S, RW/R, X/NX, G/-, type, region
 */
#ifndef LAB_PTDUMP_H
#define LAB_PTDUMP_H

#include <stdint.h>
#include "mm/pt.h"

/* Dump the leaves overlapping [lo, hi), clipped to it; hi = 0 means to the top of the
 * address space (lo = hi = 0: everything). */
void ptdump(const struct pt_root *r, uint64_t lo, uint64_t hi);

/* The name of the mm/layout.h region holding va ("direct map", "kernel text", ...). */
const char *ptdump_region_name(uint64_t va);

/* The leaf sizes present in a run (bit `level` set per level seen): "4K", "4K+2M", ... */
void ptdump_format_levels(unsigned mask, char *buf, unsigned n);

#endif
