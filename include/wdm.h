/*
 * mdlab's wdm.h: the subset of the WDK's wdm.h that mdlab implements, with the exact NT
 * names, types and numeric values.  A driver includes this header only.
 */
#ifndef MDLAB_WDM_H
#define MDLAB_WDM_H

#include "include/mdlab/ntdef.h"
#include "include/mdlab/bugcodes.h"
#include "kernel/irql.h"
#include "kernel/bugcheck.h"
#include "kernel/seh.h"

/* ---- Pool ---------------------------------------------------------------------------- */

typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_USE_QUOTA 0x0000000000000001ull
#define POOL_FLAG_UNINITIALIZED 0x0000000000000002ull
#define POOL_FLAG_SESSION 0x0000000000000004ull
#define POOL_FLAG_CACHE_ALIGNED 0x0000000000000008ull
#define POOL_FLAG_RAISE_ON_FAILURE 0x0000000000000020ull
#define POOL_FLAG_NON_PAGED 0x0000000000000040ull
#define POOL_FLAG_NON_PAGED_EXECUTE 0x0000000000000080ull
#define POOL_FLAG_PAGED 0x0000000000000100ull

typedef enum _POOL_TYPE {
	NonPagedPool = 0,
	NonPagedPoolExecute = NonPagedPool,
	PagedPool = 1,
	NonPagedPoolNx = 512,
} POOL_TYPE;

/* Nonpaged pool (and paged pool, which mdlab never pages out but keeps apart so that MDL
 * routines can tell them apart).  Zeroed unless POOL_FLAG_UNINITIALIZED.  NULL on failure,
 * or STATUS_INSUFFICIENT_RESOURCES raised with POOL_FLAG_RAISE_ON_FAILURE.  Executable pool is
 * refused (NULL): no page is writable and executable (W^X). */
PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
VOID ExFreePoolWithTag(PVOID P, ULONG Tag);
VOID ExFreePool(PVOID P);

#endif
