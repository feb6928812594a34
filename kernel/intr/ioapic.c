/* The IO-APICs and MSI (see ioapic.h). */
#include "kernel/intr/ioapic.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/printf.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/madt.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/pt.h"

/* The two registers of the indirect window (82093AA 3.1): IOREGSEL selects, IOWIN reads or
 * writes the selected 32-bit register. */
#define IOREGSEL 0x00
#define IOWIN 0x10
#define REG_VERSION 0x01         /* bits 23-16: the highest redirection entry */
#define REG_REDIRECTION 0x10     /* entry n: 0x10 + 2n (low word), 0x11 + 2n (high word) */

#define MSI_ADDRESS_BASE 0xFEE00000ull
#define MSI_DEST_SHIFT 12

struct ioapic {
	volatile uint32_t *regs;
	uint32_t gsi_base, pins;
	volatile uint32_t lock; /* the window is two accesses: one user at a time */
};

static struct ioapic ioapics[MADT_MAX_IOAPICS];
static unsigned nioapics;
static struct madt_override overrides[MADT_MAX_OVERRIDES];
static unsigned noverrides;

static uint64_t window_lock(struct ioapic *a) { return raw_lock_irqsave(&a->lock); }
static void window_unlock(struct ioapic *a, uint64_t flags) { raw_unlock_irqrestore(&a->lock, flags); }

static uint32_t reg_read(struct ioapic *a, uint32_t reg)
{
	a->regs[IOREGSEL / 4] = reg;
	return a->regs[IOWIN / 4];
}

static void reg_write(struct ioapic *a, uint32_t reg, uint32_t v)
{
	a->regs[IOREGSEL / 4] = reg;
	a->regs[IOWIN / 4] = v;
}

/* The IO-APIC carrying `gsi`, and the pin. */
static struct ioapic *find(unsigned gsi, unsigned *pin)
{
	for (unsigned i = 0; i < nioapics; i++) {
		struct ioapic *a = &ioapics[i];
		if (gsi >= a->gsi_base && gsi < a->gsi_base + a->pins) {
			*pin = gsi - a->gsi_base;
			return a;
		}
	}
	return NULL;
}

static uint64_t entry_read(struct ioapic *a, unsigned pin)
{
	uint64_t flags = window_lock(a);
	uint64_t lo = reg_read(a, REG_REDIRECTION + 2 * pin);
	uint64_t hi = reg_read(a, REG_REDIRECTION + 2 * pin + 1);
	window_unlock(a, flags);
	return hi << 32 | lo;
}

/* The high word (destination) first, the low word (vector, mask) last: the entry takes effect
 * whole. */
static void entry_write(struct ioapic *a, unsigned pin, uint64_t e)
{
	uint64_t flags = window_lock(a);
	reg_write(a, REG_REDIRECTION + 2 * pin, (uint32_t)e | (uint32_t)IOAPIC_MASKED);
	reg_write(a, REG_REDIRECTION + 2 * pin + 1, (uint32_t)(e >> 32));
	reg_write(a, REG_REDIRECTION + 2 * pin, (uint32_t)e);
	window_unlock(a, flags);
}

void ioapic_init(const struct mdlab_bootinfo *bi)
{
	struct madt_info m;
	if (!madt_read(bi->acpi_rsdp, &m) || !m.nioapics) {
		kprintf("ioapic: none in the MADT\n");
		return;
	}
	noverrides = m.noverrides;
	for (unsigned i = 0; i < m.noverrides; i++)
		overrides[i] = m.overrides[i];
	for (unsigned i = 0; i < m.nioapics; i++) {
		/* Its registers' page, UC, at a fixed address of the device region for good (as
		 * the local APIC's: README, "Memory map"). */
		uint64_t va = KVA_IOAPIC + nioapics * PAGE_SIZE, pa = m.ioapics[i].phys & ~(PAGE_SIZE - 1);
		if (!pt_map(&kernel_root, va, pa, PAGE_SIZE,
			    (struct pt_attrs){ .write = true, .global = true, .type = MT_UC }, 0))
			PANIC("ioapic_init: out of frames mapping the IO-APIC at 0x%x", m.ioapics[i].phys);
		volatile uint32_t *regs = (volatile uint32_t *)(va + (m.ioapics[i].phys & (PAGE_SIZE - 1)));
		struct ioapic *a = &ioapics[nioapics++];
		a->regs = regs;
		a->gsi_base = m.ioapics[i].gsi_base;
		a->pins = ((reg_read(a, REG_VERSION) >> 16) & 0xFF) + 1;
		for (unsigned p = 0; p < a->pins; p++)
			entry_write(a, p, IOAPIC_MASKED);
		kprintf("ioapic: ID %u at 0x%x, GSIs %u-%u, all masked; %u interrupt source override%s\n",
			m.ioapics[i].id, m.ioapics[i].phys, a->gsi_base, a->gsi_base + a->pins - 1,
			noverrides, noverrides == 1 ? "" : "s");
	}
}

unsigned ioapic_gsi_count(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nioapics; i++)
		if (ioapics[i].gsi_base + ioapics[i].pins > n)
			n = ioapics[i].gsi_base + ioapics[i].pins;
	return n;
}

unsigned ioapic_isa_gsi(unsigned irq, struct ioapic_trigger *how)
{
	*how = (struct ioapic_trigger){ .level = false, .active_low = false }; /* ISA: edge, high */
	for (unsigned i = 0; i < noverrides; i++) {
		if (overrides[i].source != irq)
			continue;
		unsigned polarity = overrides[i].flags & 3, trigger = (overrides[i].flags >> 2) & 3;
		how->active_low = polarity == 3;
		how->level = trigger == 3;
		return overrides[i].gsi;
	}
	return irq;
}

bool ioapic_route(unsigned gsi, uint8_t vector, unsigned cpu, struct ioapic_trigger how)
{
	unsigned pin;
	struct ioapic *a = find(gsi, &pin);
	if (!a || vector < VEC_DEVICE_FIRST || vector > VEC_DEVICE_LAST || cpu >= smp_cpus_online() ||
	    !kcpus[cpu].online)
		return false;
	uint64_t e = vector | IOAPIC_MASKED | (how.level ? IOAPIC_LEVEL : 0) |
		     (how.active_low ? IOAPIC_ACTIVE_LOW : 0) | (uint64_t)kcpus[cpu].apic_id << IOAPIC_DEST_SHIFT;
	entry_write(a, pin, e); /* fixed delivery (bits 10-8 = 0), physical destination (bit 11 = 0) */
	return true;
}

static void set_mask(unsigned gsi, bool masked)
{
	unsigned pin;
	struct ioapic *a = find(gsi, &pin);
	if (!a)
		return;
	uint64_t e = entry_read(a, pin);
	e = masked ? e | IOAPIC_MASKED : e & ~IOAPIC_MASKED;
	uint64_t flags = window_lock(a);
	reg_write(a, REG_REDIRECTION + 2 * pin, (uint32_t)e);
	window_unlock(a, flags);
}

void ioapic_mask(unsigned gsi) { set_mask(gsi, true); }
void ioapic_unmask(unsigned gsi) { set_mask(gsi, false); }

bool ioapic_read_entry(unsigned gsi, uint64_t *entry)
{
	unsigned pin;
	struct ioapic *a = find(gsi, &pin);
	if (!a)
		return false;
	*entry = entry_read(a, pin);
	return true;
}

struct msi_message msi_compose(uint8_t vector, unsigned cpu)
{
	uint32_t apic_id = cpu < SMP_MAX_CPUS ? kcpus[cpu].apic_id : 0;
	return (struct msi_message){
		.address = MSI_ADDRESS_BASE | (uint64_t)(apic_id & 0xFF) << MSI_DEST_SHIFT,
		.data = vector, /* fixed delivery, edge trigger: bits 10-8 and 15 clear */
	};
}
