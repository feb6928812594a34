/*
 * Reserved mappings (mm/reserved.c): what the MDL code must know of them.  The NT routines
 * themselves are declared in include/wdm.h.
 */
#ifndef MM_RESERVED_H
#define MM_RESERVED_H

#include <stdint.h>

/* How many reservations exist: MmUnmapLockedPages looks further only when there is one. */
extern uint32_t reserved_mappings_live;

/* MmUnmapLockedPages of an address inside a reservation would release PTEs that are the
 * reservation's: bug check SYSTEM_PTE_MISUSE 0x108 (reservation, 0, its tag).  Returns when
 * va is in none. */
void reserved_refuse_unmap(uint64_t va);

#endif
