/* ACPI's MADT (signature "APIC"): the processors, the local APIC's address, the IO-APICs
 * and the interrupt source overrides (ACPI 6.x, 5.2.12).  Read from the RSDP the loader
 * passed, through the direct map. */
#ifndef KERNEL_SMP_MADT_H
#define KERNEL_SMP_MADT_H

#include <stdbool.h>
#include <stdint.h>
#include "kernel/smp/percpu.h"

#define MADT_MAX_IOAPICS 4
#define MADT_MAX_OVERRIDES 16

/* Type 1: an IO-APIC, its registers' address and the first GSI its pins carry. */
struct madt_ioapic {
	uint8_t id;
	uint32_t phys;
	uint32_t gsi_base;
};

/* Type 2: ISA IRQ `source` arrives on `gsi`; flags bits 1-0 the polarity, 3-2 the trigger
 * mode (MPS INTI flags: 0 as the bus conforms, 1 active high / edge, 3 active low / level). */
struct madt_override {
	uint8_t source;
	uint32_t gsi;
	uint16_t flags;
};

struct madt_info {
	uint64_t lapic_phys;            /* the header's address, or a type-5 override */
	unsigned ncpus;                 /* enabled (or online-capable) processors found */
	uint32_t apic_ids[SMP_MAX_CPUS];
	unsigned skipped;               /* enabled processors past SMP_MAX_CPUS */
	unsigned nioapics, noverrides;
	struct madt_ioapic ioapics[MADT_MAX_IOAPICS];
	struct madt_override overrides[MADT_MAX_OVERRIDES];
};

/* Find the MADT from the RSDP at physical address `rsdp` (XSDT when revision >= 2, else the
 * RSDT), check every checksum, and list the processors: type 0 (local APIC) and type 9
 * (local x2APIC) entries with flag bit 0 (enabled) or bit 1 (online-capable).  False, with
 * the reason printed, when there is no usable table. */
bool madt_read(uint64_t rsdp, struct madt_info *out);

/* Any other ACPI table the same way (the MCFG for kernel/pci): the table signed `sig` (4
 * characters), whole and checksummed, with its length; NULL when there is none. */
const void *acpi_find_table(uint64_t rsdp, const char *sig, uint32_t *length);

#endif
