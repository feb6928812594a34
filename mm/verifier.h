/*
 * mdlab's driver verifier (nt-mdl.md decision 7): on by default, switchable at boot.
 *
 * Boot option verifier=N, a mask of:
 *   VF_CHECKS      (0x1, default on)  the IRQL limits and MDL-state checks, reported as bug
 *                  check 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION with NT's parameter 1;
 *   VF_DEPRECATED  (0x2, default off) calls NT's verifier flags as bad practice by
 *                  themselves: MmMapLockedPages (0x81), BugCheckOnFailure TRUE (0x82).
 * With VF_CHECKS off, the IRQL checks are skipped; a misuse that would corrupt state still
 * stops the machine, with the code NT uses without the verifier where it has one.
 *
 * Low-resources simulation: boot option lowres=N makes the N-th call (1-based, counted
 * over all sites) of IoAllocateMdl, MmProbeAndLockPages, the map routines and
 * MmAllocatePagesForMdl(Ex) fail the documented way; lowres=P% with lowres_seed=S makes each
 * such call fail with probability P% from a seeded generator.  Tests set it at run time.
 */
#ifndef MM_VERIFIER_H
#define MM_VERIFIER_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "kernel/irql.h"

#define VF_CHECKS 0x1u
#define VF_DEPRECATED 0x2u

enum vf_site {
	VF_SITE_ALLOCATE_MDL,
	VF_SITE_PROBE_AND_LOCK,
	VF_SITE_MAP,
	VF_SITE_ALLOCATE_PAGES,
	VF_SITE_COUNT,
};

struct verifier_stats {
	uint64_t calls[VF_SITE_COUNT];
	uint64_t injected[VF_SITE_COUNT];
};

void verifier_init(void);
bool verifier_on(uint32_t what);
uint32_t verifier_get_flags(void);
void verifier_set_flags(uint32_t flags);
__attribute__((noreturn)) void verifier_violation(ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4);
/* The IRQL is above `max`: with VF_CHECKS on, bug check 0xC4 (code, IRQL, p3, p4). */
void verifier_irql_above(ULONG_PTR code, ULONG_PTR p3, ULONG_PTR p4);
/* With VF_CHECKS on, bug check 0xC4 (code, IRQL, p3, p4) when the IRQL is above `max`
 * (inline: the common case is one read of CR8). */
static inline void verifier_check_irql(KIRQL max, ULONG_PTR code, ULONG_PTR p3, ULONG_PTR p4)
{
	if (KeGetCurrentIrql() > max)
		verifier_irql_above(code, p3, p4);
}

/* Whether this call at `site` must fail (the low-resources simulation). */
bool verifier_inject_failure(enum vf_site site);
/* Fail the nth call from now (0: off), or each call with `percent` probability. */
void verifier_set_lowres(uint64_t nth, uint32_t percent, uint64_t seed);
void verifier_get_stats(struct verifier_stats *out);

#endif
