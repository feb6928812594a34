/* ACPI's MADT (signature "APIC"): the processors and the local APIC's address (ACPI 6.x,
 * 5.2.12).  Read once from the RSDP the loader passed, through the direct map. */
#ifndef KERNEL_SMP_MADT_H
#define KERNEL_SMP_MADT_H

#include <stdbool.h>
#include <stdint.h>
#include "kernel/smp/percpu.h"

struct madt_info {
	uint64_t lapic_phys;            /* the header's address, or a type-5 override */
	unsigned ncpus;                 /* enabled (or online-capable) processors found */
	uint32_t apic_ids[SMP_MAX_CPUS];
	unsigned skipped;               /* enabled processors past SMP_MAX_CPUS */
};

/* Find the MADT from the RSDP at physical address `rsdp` (XSDT when revision >= 2, else the
 * RSDT), check every checksum, and list the processors: type 0 (local APIC) and type 9
 * (local x2APIC) entries with flag bit 0 (enabled) or bit 1 (online-capable).  False, with
 * the reason printed, when there is no usable table. */
bool madt_read(uint64_t rsdp, struct madt_info *out);

#endif
