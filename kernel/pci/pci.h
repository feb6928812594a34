/*
 * PCI: the functions found at boot, their BARs and MSI-X.
 *
 * pci_init finds the configuration space through ACPI's MCFG (PCI Firmware Specification
 * 3.2, 4.1.2: the ECAM base of each segment's bus range; PCI Express Base 4.0, 7.2.2: bus
 * << 20 | device << 15 | function << 12 | register), segment 0 only; without an MCFG it
 * uses the legacy mechanism #1 ports 0xCF8/0xCFC (PCI Local Bus 3.0, 3.2.2.3.2).  It scans
 * bus 0 and every bridge's secondary bus, sizes each BAR (PCI Local Bus 3.0, 6.2.5.1: write
 * all ones, read back the writable bits, restore; with the command register's I/O and memory
 * decoding off meanwhile).  pci_map_bars, called by the function's driver, maps every memory
 * BAR with MmMapIoSpaceEx as non-cached device memory (mm/devmem.c records each mapping, so
 * the memory-type audit knows the frames); pci_unmap_bars releases them.  Boot leaves no
 * mapping behind: a configuration access through ECAM maps the function's page for itself.
 */
#ifndef KERNEL_PCI_PCI_H
#define KERNEL_PCI_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"

#define PCI_MAX_FUNCTIONS 64
#define PCI_BARS 6

enum pci_bar_kind { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bar {
	enum pci_bar_kind kind;
	bool prefetchable;
	uint64_t phys; /* the address the firmware assigned (an I/O BAR: the port) */
	uint64_t size;
	void *va;      /* a memory BAR's mapping (UC) while pci_map_bars holds it, else NULL */
};

struct pci_function {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint8_t class_code, subclass, prog_if, header_type;
	struct pci_bar bar[PCI_BARS];
	uint8_t msix_cap;      /* MSI-X capability offset, 0 when none */
	uint16_t msix_entries; /* its table size */
};

/* After mm_init and ioapic_init.  Prints "pci: ..." lines. */
void pci_init(const struct mdlab_bootinfo *bi);
/* "ecam" or "ports": how configuration space is reached. */
const char *pci_access_method(void);
unsigned pci_function_count(void);
/* The i-th function found (0..count-1), NULL past the end. */
struct pci_function *pci_function_at(unsigned i);
/* The first function with this vendor and device ID after `after` (NULL: from the start). */
struct pci_function *pci_find(uint16_t vendor, uint16_t device, struct pci_function *after);

uint32_t pci_read32(const struct pci_function *f, unsigned reg);
uint16_t pci_read16(const struct pci_function *f, unsigned reg);
uint8_t pci_read8(const struct pci_function *f, unsigned reg);
void pci_write32(const struct pci_function *f, unsigned reg, uint32_t v);
void pci_write16(const struct pci_function *f, unsigned reg, uint16_t v);

/* The offset of the first capability with this ID at or after `from` in the list (0: from
 * the head), 0 when none (PCI Local Bus 3.0, 6.7). */
uint8_t pci_find_capability(const struct pci_function *f, uint8_t id, uint8_t from);

/* Map every memory BAR of up to 1 MiB UC (PAGE_READWRITE | PAGE_NOCACHE) that is not mapped
 * yet; false when one could not be (too large, or no system PTEs).  At PASSIVE_LEVEL. */
bool pci_map_bars(struct pci_function *f);
void pci_unmap_bars(struct pci_function *f);

/* Set the command register's bus-master bit (a device may then DMA). */
void pci_enable_bus_master(const struct pci_function *f);

/* MSI-X (PCI Local Bus 3.0, 6.8.2): entry `entry` of the table given msi_compose's message
 * for `vector` on CPU `cpu`, unmasked (the table's BAR mapped by pci_map_bars); the function's MSI-X enabled (legacy INTx off).
 * False when the function has no MSI-X, the entry is past its table, or the table's BAR
 * is not mapped. */
bool pci_msix_route(const struct pci_function *f, unsigned entry, uint8_t vector, unsigned cpu);
/* The entry's fields as the device holds them (tests, the monitor). */
bool pci_msix_read(const struct pci_function *f, unsigned entry, uint64_t *address, uint32_t *data,
		   uint32_t *control);

#define PCI_CAP_MSIX 0x11
#define PCI_CAP_VENDOR 0x09
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400

#endif
