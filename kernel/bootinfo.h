/* The kernel's view of the loader's boot information (include/mdlab/bootinfo.h). */
#ifndef KERNEL_BOOTINFO_H
#define KERNEL_BOOTINFO_H

#include "include/mdlab/bootinfo.h"

extern const struct mdlab_bootinfo *bootinfo;

void bootinfo_init(const struct mdlab_bootinfo *bi);
/* The i-th UEFI memory descriptor, NULL past the end. */
const struct mdlab_efi_memdesc *bootinfo_memdesc(uint64_t i);
const char *efi_memory_type_name(uint32_t type);
void bootinfo_print_memory_summary(void);

static inline void *phys_to_virt_boot(uint64_t pa) { return (void *)(MDLAB_DIRECT_MAP_BASE + pa); }

#endif
