/*
 * The user-mode side of the MDL routines.  mdlab has no processes yet: there is no user
 * address space to map into, so a UserMode mapping raises (as a failed UserMode mapping
 * does) and no user address can be a mapping to unmap.
 */
#include "mm/mdl.h"
#include "mm/verifier.h"

#define STATUS_NOT_IMPLEMENTED ((NTSTATUS)0xC0000002)

const struct pt_root *mdl_current_root(void) { return &kernel_root; }
PEPROCESS mdl_current_process(void) { return NULL; }

PVOID mdl_map_user(PMDL Mdl, MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG Priority)
{
	verifier_check_irql(APC_LEVEL, 0x77, (ULONG_PTR)Mdl, UserMode);
	ExRaiseStatus(STATUS_NOT_IMPLEMENTED);
}

void mdl_unmap_user(PVOID BaseAddress, PMDL Mdl)
{
	verifier_check_irql(APC_LEVEL, 0x7A, (ULONG_PTR)BaseAddress, (ULONG_PTR)Mdl);
	/* No user mapping exists to be unmapped: a bad user address. */
	verifier_violation(0xB9, (ULONG_PTR)Mdl, (ULONG_PTR)BaseAddress, 0);
}
