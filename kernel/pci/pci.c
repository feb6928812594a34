/* PCI enumeration, BARs and MSI-X (see pci.h). */
#include "kernel/pci/pci.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/intr/ioapic.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/madt.h"

#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA 0xCFC
#define ECAM_BUS_BYTES (1ull << 20)
/* A memory BAR larger than this is sized and listed but not mapped (its va stays NULL):
 * no driver here needs a frame buffer's megabytes of system PTEs. */
#define PCI_MAP_LIMIT (1ull << 20)

static inline uint16_t inw_port(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl_port(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static struct pci_function functions[PCI_MAX_FUNCTIONS];
static unsigned nfunctions;

/* ECAM: segment 0's base and bus range from the MCFG.  A configuration access maps the
 * function's 4 KiB of ECAM for that access alone (MmMapIoSpaceEx, UC) and unmaps it: nothing
 * of the system-PTE space stays taken between accesses, so the space is as boot left it. */
static uint64_t ecam_base;
static uint8_t ecam_bus_start, ecam_bus_end;
static bool have_ecam;

/* The legacy ports are a pair, address then data: one user at a time, interrupts off so an
 * ISR on this CPU cannot come between the two (as the IO-APIC's window, kernel/intr/ioapic.c). */
static uint64_t port_lock;

static uint64_t ports_acquire(void)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory");
	while (__atomic_exchange_n(&port_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	return flags;
}

static void ports_release(uint64_t flags)
{
	__atomic_store_n(&port_lock, 0, __ATOMIC_RELEASE);
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
}

static uint32_t port_address(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC);
}

/* The function's ECAM page, mapped; NULL outside the MCFG's range or without ECAM. */
static volatile uint8_t *ecam_map(unsigned bus, unsigned dev, unsigned fn)
{
	if (!have_ecam || bus < ecam_bus_start || bus > ecam_bus_end)
		return NULL;
	PHYSICAL_ADDRESS pa = { .QuadPart = (LONGLONG)(ecam_base + ((uint64_t)bus << 20 | dev << 15 | fn << 12)) };
	return MmMapIoSpaceEx(pa, PAGE_SIZE, PAGE_READWRITE | PAGE_NOCACHE);
}

static void ecam_unmap(volatile uint8_t *p) { MmUnmapIoSpace((void *)p, PAGE_SIZE); }

/* Raw access by bus/device/function; reg aligned to the access's width. */
static uint32_t cfg_read32(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	volatile uint8_t *p = ecam_map(bus, dev, fn);
	if (p) {
		uint32_t v = *(volatile uint32_t *)(p + reg);
		ecam_unmap(p);
		return v;
	}
	if (have_ecam || bus > 255 || reg > 0xFC)
		return 0xFFFFFFFFu; /* outside the MCFG's range, or beyond the legacy 256 bytes */
	uint64_t flags = ports_acquire();
	outl(CONFIG_ADDRESS, port_address(bus, dev, fn, reg));
	uint32_t v = inl_port(CONFIG_DATA);
	ports_release(flags);
	return v;
}

static uint16_t cfg_read16(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	volatile uint8_t *p = ecam_map(bus, dev, fn);
	if (p) {
		uint16_t v = *(volatile uint16_t *)(p + reg);
		ecam_unmap(p);
		return v;
	}
	if (have_ecam || reg > 0xFE)
		return 0xFFFF;
	uint64_t flags = ports_acquire();
	outl(CONFIG_ADDRESS, port_address(bus, dev, fn, reg));
	uint16_t v = inw_port(CONFIG_DATA + (reg & 2));
	ports_release(flags);
	return v;
}

static void cfg_write32(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint32_t v)
{
	volatile uint8_t *p = ecam_map(bus, dev, fn);
	if (p) {
		*(volatile uint32_t *)(p + reg) = v;
		ecam_unmap(p);
		return;
	}
	if (have_ecam || reg > 0xFC)
		return;
	uint64_t flags = ports_acquire();
	outl(CONFIG_ADDRESS, port_address(bus, dev, fn, reg));
	outl(CONFIG_DATA, v);
	ports_release(flags);
}

static void cfg_write16(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint16_t v)
{
	volatile uint8_t *p = ecam_map(bus, dev, fn);
	if (p) {
		*(volatile uint16_t *)(p + reg) = v;
		ecam_unmap(p);
		return;
	}
	if (have_ecam || reg > 0xFE)
		return;
	uint64_t flags = ports_acquire();
	outl(CONFIG_ADDRESS, port_address(bus, dev, fn, reg));
	outw(CONFIG_DATA + (reg & 2), v);
	ports_release(flags);
}

uint32_t pci_read32(const struct pci_function *f, unsigned reg) { return cfg_read32(f->bus, f->dev, f->fn, reg & ~3u); }
uint16_t pci_read16(const struct pci_function *f, unsigned reg) { return cfg_read16(f->bus, f->dev, f->fn, reg & ~1u); }
uint8_t pci_read8(const struct pci_function *f, unsigned reg)
{
	return (uint8_t)(pci_read32(f, reg) >> ((reg & 3) * 8));
}
void pci_write32(const struct pci_function *f, unsigned reg, uint32_t v) { cfg_write32(f->bus, f->dev, f->fn, reg & ~3u, v); }
void pci_write16(const struct pci_function *f, unsigned reg, uint16_t v) { cfg_write16(f->bus, f->dev, f->fn, reg & ~1u, v); }

const char *pci_access_method(void) { return have_ecam ? "ecam" : "ports"; }
unsigned pci_function_count(void) { return nfunctions; }
struct pci_function *pci_function_at(unsigned i) { return i < nfunctions ? &functions[i] : NULL; }

struct pci_function *pci_find(uint16_t vendor, uint16_t device, struct pci_function *after)
{
	unsigned i = after ? (unsigned)(after - functions) + 1 : 0;
	for (; i < nfunctions; i++)
		if (functions[i].vendor == vendor && functions[i].device == device)
			return &functions[i];
	return NULL;
}

uint8_t pci_find_capability(const struct pci_function *f, uint8_t id, uint8_t from)
{
	if (!(pci_read16(f, 0x06) & 0x10)) /* status: capabilities list */
		return 0;
	uint8_t off = from ? pci_read8(f, from + 1) : pci_read8(f, 0x34);
	for (unsigned guard = 0; off >= 0x40 && guard < 48; guard++) {
		off &= 0xFC;
		if (pci_read8(f, off) == id)
			return off;
		off = pci_read8(f, off + 1);
	}
	return 0;
}

void pci_enable_bus_master(const struct pci_function *f)
{
	pci_write16(f, PCI_COMMAND, pci_read16(f, PCI_COMMAND) | PCI_COMMAND_MASTER);
}

/* ---- BARs --------------------------------------------------------------------------- */

/* Size BAR i (and its upper half for a 64-bit one); returns how many BAR slots it used. */
static unsigned size_bar(struct pci_function *f, unsigned i)
{
	unsigned reg = 0x10 + i * 4;
	uint32_t orig = pci_read32(f, reg);
	pci_write32(f, reg, 0xFFFFFFFFu);
	uint32_t mask = pci_read32(f, reg);
	pci_write32(f, reg, orig);
	struct pci_bar *b = &f->bar[i];
	if (!mask || mask == 0xFFFFFFFFu)
		return 1; /* not implemented */
	if (orig & 1) {
		b->kind = PCI_BAR_IO;
		b->phys = orig & ~3u;
		b->size = (uint16_t)(~(mask & ~3u) + 1);
		return 1;
	}
	b->prefetchable = orig & 8;
	uint64_t addr = orig & ~0xFull, m = (mask & ~0xFull) | 0xFFFFFFFF00000000ull;
	unsigned used = 1;
	if (((orig >> 1) & 3) == 2 && i + 1 < PCI_BARS) {
		uint32_t orig_hi = pci_read32(f, reg + 4);
		pci_write32(f, reg + 4, 0xFFFFFFFFu);
		uint32_t mask_hi = pci_read32(f, reg + 4);
		pci_write32(f, reg + 4, orig_hi);
		addr |= (uint64_t)orig_hi << 32;
		m = (m & 0xFFFFFFFFull) | (uint64_t)mask_hi << 32;
		b->kind = PCI_BAR_MEM64;
		used = 2;
	} else {
		b->kind = PCI_BAR_MEM32;
	}
	b->phys = addr;
	b->size = ~m + 1;
	return used;
}

static void size_bars(struct pci_function *f)
{
	unsigned nbars = (f->header_type & 0x7F) == 0 ? 6 : (f->header_type & 0x7F) == 1 ? 2 : 0;
	uint16_t cmd = pci_read16(f, PCI_COMMAND);
	pci_write16(f, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
	for (unsigned i = 0; i < nbars;)
		i += size_bar(f, i);
	pci_write16(f, PCI_COMMAND, cmd);
}

bool pci_map_bars(struct pci_function *f)
{
	bool ok = true;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		struct pci_bar *b = &f->bar[i];
		if ((b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64) || !b->phys || b->va)
			continue;
		if (b->size > PCI_MAP_LIMIT) {
			ok = false;
			continue;
		}
		PHYSICAL_ADDRESS pa = { .QuadPart = (LONGLONG)b->phys };
		b->va = MmMapIoSpaceEx(pa, b->size, PAGE_READWRITE | PAGE_NOCACHE);
		ok &= b->va != NULL;
	}
	return ok;
}

void pci_unmap_bars(struct pci_function *f)
{
	for (unsigned i = 0; i < PCI_BARS; i++)
		if (f->bar[i].va) {
			MmUnmapIoSpace(f->bar[i].va, f->bar[i].size);
			f->bar[i].va = NULL;
		}
}

/* ---- MSI-X -------------------------------------------------------------------------- */

static volatile uint32_t *msix_entry(const struct pci_function *f, unsigned entry)
{
	if (!f->msix_cap || entry >= f->msix_entries)
		return NULL;
	uint32_t table = pci_read32(f, f->msix_cap + 4);
	const struct pci_bar *b = &f->bar[table & 7];
	uint64_t off = (table & ~7u) + (uint64_t)entry * 16;
	if ((table & 7) >= PCI_BARS || !b->va || off + 16 > b->size)
		return NULL;
	return (volatile uint32_t *)((uint8_t *)b->va + off);
}

bool pci_msix_route(const struct pci_function *f, unsigned entry, uint8_t vector, unsigned cpu)
{
	volatile uint32_t *e = msix_entry(f, entry);
	if (!e)
		return false;
	struct msi_message m = msi_compose(vector, cpu);
	e[3] |= 1; /* masked while it changes (6.8.2.9) */
	e[0] = (uint32_t)m.address;
	e[1] = (uint32_t)(m.address >> 32);
	e[2] = m.data;
	uint16_t ctl = pci_read16(f, f->msix_cap + 2);
	pci_write16(f, f->msix_cap + 2, (uint16_t)((ctl | 0x8000) & ~0x4000)); /* enable, unmask all */
	pci_write16(f, PCI_COMMAND, pci_read16(f, PCI_COMMAND) | PCI_COMMAND_INTX_DISABLE);
	e[3] &= ~1u;
	return true;
}

bool pci_msix_read(const struct pci_function *f, unsigned entry, uint64_t *address, uint32_t *data,
		   uint32_t *control)
{
	volatile uint32_t *e = msix_entry(f, entry);
	if (!e)
		return false;
	*address = e[0] | (uint64_t)e[1] << 32;
	*data = e[2];
	*control = e[3];
	return true;
}

/* ---- enumeration -------------------------------------------------------------------- */

static void scan_bus(unsigned bus, unsigned depth);

static void add_function(unsigned bus, unsigned dev, unsigned fn, unsigned depth)
{
	uint32_t id = cfg_read32(bus, dev, fn, 0);
	if ((id & 0xFFFF) == 0xFFFF)
		return;
	if (nfunctions == PCI_MAX_FUNCTIONS) {
		kprintf("pci: more than %u functions; %02x:%02x.%x and after not recorded\n",
			PCI_MAX_FUNCTIONS, bus, dev, fn);
		return;
	}
	struct pci_function *f = &functions[nfunctions++];
	memset(f, 0, sizeof *f);
	f->bus = (uint8_t)bus, f->dev = (uint8_t)dev, f->fn = (uint8_t)fn;
	f->vendor = (uint16_t)id, f->device = (uint16_t)(id >> 16);
	uint32_t cls = cfg_read32(bus, dev, fn, 8);
	f->class_code = cls >> 24, f->subclass = (uint8_t)(cls >> 16), f->prog_if = (uint8_t)(cls >> 8);
	f->header_type = (uint8_t)(cfg_read32(bus, dev, fn, 0x0C) >> 16);
	size_bars(f);
	f->msix_cap = pci_find_capability(f, PCI_CAP_MSIX, 0);
	if (f->msix_cap)
		f->msix_entries = (pci_read16(f, f->msix_cap + 2) & 0x7FF) + 1;
	if ((f->header_type & 0x7F) == 1) { /* a PCI-to-PCI bridge: its secondary bus */
		unsigned secondary = (cfg_read32(bus, dev, fn, 0x18) >> 8) & 0xFF;
		if (secondary > bus && depth < 8)
			scan_bus(secondary, depth + 1);
	}
}

static void scan_bus(unsigned bus, unsigned depth)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		if ((cfg_read32(bus, dev, 0, 0) & 0xFFFF) == 0xFFFF)
			continue;
		bool multi = (cfg_read32(bus, dev, 0, 0x0C) >> 16) & 0x80;
		for (unsigned fn = 0; fn < (multi ? 8u : 1u); fn++)
			add_function(bus, dev, fn, depth);
	}
}

struct mcfg_entry {
	uint64_t base;
	uint16_t segment;
	uint8_t bus_start, bus_end;
	uint32_t reserved;
} __attribute__((packed));

static void find_ecam(uint64_t rsdp)
{
	uint32_t len = 0;
	const uint8_t *t = acpi_find_table(rsdp, "MCFG", &len);
	if (!t)
		return;
	/* The header (36 bytes), 8 reserved, then the allocations (PCI Firmware 3.2, 4.1.2). */
	for (uint32_t off = 44; off + sizeof(struct mcfg_entry) <= len; off += sizeof(struct mcfg_entry)) {
		const struct mcfg_entry *e = (const void *)(t + off);
		if (e->segment == 0 && e->base && e->bus_start <= e->bus_end) {
			ecam_base = e->base;
			ecam_bus_start = e->bus_start;
			ecam_bus_end = e->bus_end;
			have_ecam = true;
			return;
		}
	}
}

void pci_init(const struct mdlab_bootinfo *bi)
{
	find_ecam(bi->acpi_rsdp);
	if (have_ecam)
		kprintf("pci: ECAM at 0x%lx for buses %02x-%02x (ACPI MCFG)\n", ecam_base, ecam_bus_start,
			ecam_bus_end);
	else
		kprintf("pci: no ACPI MCFG; configuration through ports 0xCF8/0xCFC\n");
	scan_bus(have_ecam ? ecam_bus_start : 0, 0);
	kprintf("pci: %u functions\n", nfunctions);
}
