/*
 * mdlab's driver verifier (mm/RULES.md decision 7): on by default, switchable at boot.
 *
 * Boot option verifier=N, a mask of:
 *   VF_CHECKS      (0x1, default on)  the IRQL limits and MDL-state checks, reported as bug
 *                  check 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION with NT's parameter 1;
 *   VF_DEPRECATED  (0x2, default off) calls NT's verifier flags as bad practice by
 *                  themselves: MmMapLockedPages (0x81), BugCheckOnFailure TRUE (0x82);
 *   VF_FORCE_IRQL  (0x4, default off) force IRQL checking: paged pool trimmed at every raise
 *                  to DISPATCH_LEVEL.
 * With VF_CHECKS off, the IRQL checks are skipped; a misuse that would corrupt state still
 * stops the machine, with the code NT uses without the verifier where it has one.
 *
 * Low-resources simulation: boot option lowres=N makes the N-th call (1-based, counted
 * over all sites) of IoAllocateMdl, MmProbeAndLockPages, the map routines (MmMapIoSpace too)
 * and MmAllocatePagesForMdl(Ex) (the device-memory allocations too) fail the documented way;
 * lowres=P% with lowres_seed=S makes each such call fail with probability P% from a seeded
 * generator.  Tests set it at run time.
 */
#ifndef MM_VERIFIER_H
#define MM_VERIFIER_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "kernel/irql.h"

#define VF_CHECKS 0x1u
#define VF_DEPRECATED 0x2u
/* Driver Verifier's "force IRQL checking": a raise to DISPATCH_LEVEL or above (KeRaiseIrql,
 * KeAcquireSpinLock and its forms) first trims every pageable page of paged pool, so a driver
 * that touches paged pool at DISPATCH_LEVEL stops with 0x0A every time (mm/RULES.md,
 * "Paging").  Default off (verifier=5 turns it on with the checks). */
#define VF_FORCE_IRQL 0x4u

/* Parameter 1 of bug check 0xC4: what was violated, with Driver Verifier's values where NT
 * has one; parameters 2-4 as the raising site documents.  An IRQL limit is DISPATCH_LEVEL for
 * a kernel address and APC_LEVEL for a user one (user memory is pageable). */
enum verifier_code {
	VERIFIER_RAISE_IRQL_INVALID = 0x30,             /* KeRaiseIrql below the current IRQL or above HIGH */
	VERIFIER_LOWER_IRQL_INVALID = 0x31,             /* KeLowerIrql above the current IRQL */
	VERIFIER_RELEASE_SPIN_LOCK_IRQL = 0x32,         /* KeReleaseSpinLock not at DISPATCH_LEVEL */
	VERIFIER_MDL_PROBE_IRQL = 0x70,                 /* MmProbeAndLockPages above its limit */
	VERIFIER_MDL_MAP_LOCKED_PAGES_IRQL = 0x74,      /* MmMapLockedPages(KernelMode) */
	VERIFIER_MDL_MAP_LOCKED_PAGES_USER_IRQL = 0x75, /* MmMapLockedPages(UserMode) */
	VERIFIER_MDL_MAP_SPECIFY_CACHE_IRQL = 0x76,     /* MmMapLockedPagesSpecifyCache(KernelMode) */
	VERIFIER_MDL_MAP_SPECIFY_CACHE_USER_IRQL = 0x77, /* ... (UserMode) */
	VERIFIER_MDL_UNLOCK_IRQL = 0x78,                /* MmUnlockPages */
	VERIFIER_MDL_UNMAP_IRQL = 0x79,                 /* MmUnmapLockedPages of a kernel address */
	VERIFIER_MDL_UNMAP_USER_IRQL = 0x7A,            /* MmUnmapLockedPages of a user address */
	VERIFIER_MDL_UNLOCK_NOT_LOCKED = 0x7C,          /* MmUnlockPages of an MDL never locked */
	VERIFIER_MDL_UNLOCK_NONPAGED_POOL = 0x7D,       /* MmUnlockPages of a nonpaged-pool MDL */
	VERIFIER_MDL_PAGES_FOR_MDL_IRQL = 0x7E,         /* MmAllocatePagesForMdl(Ex), MmFreePagesFromMdl */
	VERIFIER_MDL_NONPAGED_BUILD_OF_PAGED = 0x7F,    /* MmBuildMdlForNonPagedPool on pageable memory */
	VERIFIER_MDL_DEPRECATED_MAP_LOCKED_PAGES = 0x81, /* any MmMapLockedPages call (VF_DEPRECATED) */
	VERIFIER_MDL_BUGCHECK_ON_FAILURE = 0x82,        /* SpecifyCache with BugCheckOnFailure (VF_DEPRECATED) */
	VERIFIER_MDL_MAP_UNPINNED_FRAME = 0x85,         /* mapping a frame that is not locked or owned */
	VERIFIER_MDL_MAP_NON_RAM_FRAME = 0x89,          /* a frame outside RAM without MDL_IO_SPACE */
	VERIFIER_MDL_PROBE_BAD_FLAGS = 0xB0,            /* probing a locked, nonpaged-pool or partial MDL */
	VERIFIER_MDL_ALREADY_MAPPED = 0xB2,             /* a second system mapping; rebuilding a mapped
							 * partial MDL */
	VERIFIER_MDL_MAP_UNLOCKED = 0xB3,               /* mapping an MDL whose pages are not locked */
	VERIFIER_MDL_UNLOCK_PARTIAL = 0xB4,             /* MmUnlockPages of a partial MDL */
	VERIFIER_MDL_UNMAP_PARENT_MAPPING = 0xB5,       /* unmapping a partial MDL's parent's mapping */
	VERIFIER_MDL_UNMAP_UNMAPPED = 0xB6,             /* unmapping an MDL with no system mapping */
	VERIFIER_MDL_FREE_MAPPED = 0xB8,                /* IoFreeMdl of an MDL still mapped */
	VERIFIER_MDL_UNMAP_BAD_USER_ADDRESS = 0xB9,     /* not a mapping of this MDL in this process */
	VERIFIER_CALL_ABOVE_DISPATCH = 0xE5,            /* IoAllocateMdl, MmProtectMdlSystemAddress */
	/* mdlab's own: kernel memory reachable by a user after it is no longer the driver's. */
	VERIFIER_POOL_FREED_WHILE_USER_MAPPED = 0x2003, /* ExFreePool of pool mapped to a user */
	VERIFIER_MDL_USER_MAP_KERNEL_MEMORY = 0x2004,   /* a user mapping of kernel memory that is not
							 * whole zeroed pool pages */
	VERIFIER_MDL_RELEASE_USER_MAPPED = 0x2005,      /* unlocking or freeing an MDL still mapped to
							 * a user */
	VERIFIER_DEVMEM_BAD_RELEASE = 0x2006,           /* freeing or unmapping device memory that the
							 * routine's allocator did not give (mm/devmem.c) */
	VERIFIER_MDL_FREE_LOCKED = 0x2007,              /* IoFreeMdl of an MDL whose pages are locked
							 * (MDL, flags, pages) */
	VERIFIER_DPC_RETURNED_AT_WRONG_IRQL = 0x2010,   /* a DeferredRoutine returned at an IRQL
							 * other than DISPATCH_LEVEL (mdlab's) */
	VERIFIER_MDL_PROBE_NO_PROCESS = 0x2008,         /* MmProbeAndLockProcessPages with a NULL
							 * Process (MDL, 0, AccessMode) */
	VERIFIER_LOCK_ORDER = 0x2009,                   /* a kernel lock taken out of its order
							 * (kernel/smp/klock.h: lock, rank, ranks held) */
};

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
/* Bug check 0xC4 with `code` as parameter 1. */
__attribute__((noreturn)) void verifier_violation(enum verifier_code code, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4);
/* The IRQL is above `max`: with VF_CHECKS on, bug check 0xC4 (code, IRQL, p3, p4). */
void verifier_irql_above(enum verifier_code code, ULONG_PTR p3, ULONG_PTR p4);
/* With VF_CHECKS on, bug check 0xC4 (code, IRQL, p3, p4) when the IRQL is above `max`
 * (inline: the common case is one read of CR8). */
static inline void verifier_check_irql(KIRQL max, enum verifier_code code, ULONG_PTR p3, ULONG_PTR p4)
{
	if (KeGetCurrentIrql() > max)
		verifier_irql_above(code, p3, p4);
}

/* Whether this call at `site` must fail (the low-resources simulation): the call counted,
 * and while the simulation is off (nearly always) nothing more, inline; armed, the draw
 * under the simulation's lock (mm/verifier.c). */
extern uint32_t verifier_lowres_armed;
extern uint64_t verifier_site_calls[VF_SITE_COUNT];
bool verifier_inject_draw(enum vf_site site);
static inline bool verifier_inject_failure(enum vf_site site)
{
	__atomic_fetch_add(&verifier_site_calls[site], 1, __ATOMIC_RELAXED);
	if (__builtin_expect(!__atomic_load_n(&verifier_lowres_armed, __ATOMIC_RELAXED), 1))
		return false;
	return verifier_inject_draw(site);
}
/* Fail the nth call from now (0: off), or each call with `percent` probability. */
void verifier_set_lowres(uint64_t nth, uint32_t percent, uint64_t seed);
void verifier_get_stats(struct verifier_stats *out);

#endif
