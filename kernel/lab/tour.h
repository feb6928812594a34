/*
 * The guided tour (the monitor's `tour`, kernel/lab/tour.c): a buffer walked through the MDL
 * interface on the live structures — locked, mapped with every cache type, read-only, into
 * a user process — with the MDL, every level's page-table entry, the PFN entries and the
 * counters printed after each step, and each enforcement fault made and caught.
 */
#ifndef LAB_TOUR_H
#define LAB_TOUR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "include/wdm.h"
#include "kernel/lab/monitor.h"
#include "mm/pt.h"

/* A mapping the tour has just made and printed; it is still in place. */
struct tour_mapping {
	PEPROCESS process;             /* NULL: a system mapping, in the kernel's tables */
	const struct pt_root *root;    /* the address space it is in */
	uint64_t va;                   /* its first page */
	ULONG pages;
	MEMORY_CACHING_TYPE requested; /* the CacheType the tour asked for */
	bool pool_frames;              /* pool pages: WB whatever was asked (mm/RULES.md decision 1) */
	bool writable;                 /* without MdlMappingNoWrite */
	size_t text_from;              /* this step's text is o->buf[text_from, o->len) */
	bool brief;                    /* a repeated step: walks shortened to what differs, the PTE */
};

/* For the tests: called after each mapping step has been printed, before it is undone
 * (with `o` a buffer: the step's text is in it). */
struct tour_hooks {
	void (*mapped)(void *ctx, struct mon_out *o, const struct tour_mapping *m);
	void *ctx;
};

/* Run the whole tour, printing to `o`; hooks may be NULL.  Everything it makes is released
 * before it returns.  True when every step did what it should: each fault caught with the
 * error code the rule gives, and every counter back where it started. */
bool tour_run(struct mon_out *o, const struct tour_hooks *hooks);

#endif
