/*
 * The IO-APICs and MSI: the small HAL surface a device driver uses to get an interrupt.
 *
 * ioapic_init finds the IO-APICs and the interrupt source overrides in ACPI's MADT, maps each
 * IO-APIC's registers (UC, through MmMapIoSpace) and masks every pin; nothing is routed
 * until a driver asks.  A route names a GSI (an ISA IRQ becomes its GSI through the
 * overrides, with their polarity and trigger mode; without an override ISA IRQ n is GSI n,
 * edge, active high), a vector in VEC_DEVICE_FIRST..VEC_DEVICE_LAST (its class is the
 * interrupt's IRQL) and a CPU, delivered fixed in physical destination mode to that CPU's
 * APIC ID (IO-APIC redirection entries: Intel 82093AA datasheet, 3.2.4).
 *
 * MSI: msi_compose gives the address/data pair a device writes for a vector on a CPU (SDM
 * Vol. 3, 11.11.1 and 11.11.2): address 0xFEE in bits 31-20, the APIC ID in 19-12, RH 0
 * and DM 0 (physical); data the vector in 7-0, delivery mode fixed (10-8 = 0), edge
 * (bit 15 = 0).
 */
#ifndef KERNEL_INTR_IOAPIC_H
#define KERNEL_INTR_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"

/* After smp_init (the CPUs' APIC IDs) and mm_init (the mapping).  Prints "ioapic: ...". */
void ioapic_init(const struct mdlab_bootinfo *bi);
/* How many GSIs the IO-APICs carry (0: none found). */
unsigned ioapic_gsi_count(void);

struct ioapic_trigger {
	bool level;      /* level-triggered, else edge */
	bool active_low; /* else active high */
};
/* The GSI ISA IRQ `irq` arrives on, and how (the MADT's override, or the ISA default). */
unsigned ioapic_isa_gsi(unsigned irq, struct ioapic_trigger *how);

/* Program GSI `gsi` to deliver `vector` to CPU `cpu`, masked; false for a GSI no IO-APIC
 * has, a vector outside the device range, or a CPU that is not online. */
bool ioapic_route(unsigned gsi, uint8_t vector, unsigned cpu, struct ioapic_trigger how);
void ioapic_mask(unsigned gsi);
void ioapic_unmask(unsigned gsi);
/* The redirection entry as the IO-APIC holds it (tests, the monitor); false for no GSI. */
bool ioapic_read_entry(unsigned gsi, uint64_t *entry);

/* Redirection-entry fields (82093AA 3.2.4). */
#define IOAPIC_VECTOR_MASK 0xFFull
#define IOAPIC_ACTIVE_LOW (1ull << 13)
#define IOAPIC_LEVEL (1ull << 15)
#define IOAPIC_MASKED (1ull << 16)
#define IOAPIC_DEST_SHIFT 56

struct msi_message {
	uint64_t address;
	uint32_t data;
};
/* The MSI for `vector` on CPU `cpu` (edge, fixed, physical destination). */
struct msi_message msi_compose(uint8_t vector, unsigned cpu);

#endif
