/* Kernel symbols for backtraces, from the ELF .symtab the loader passes in the boot info. */
#ifndef KERNEL_KSYM_H
#define KERNEL_KSYM_H

#include <stdint.h>
#include "include/mdlab/bootinfo.h"

void ksym_init(const struct mdlab_bootinfo *bi);
/* The function symbol containing addr and the offset into it; NULL when unknown. */
const char *ksym_lookup(uint64_t addr, uint64_t *offset);
/* The address of a named symbol, 0 when unknown. */
uint64_t ksym_address(const char *name);

#endif
