/* The `pci` monitor command: the functions kernel/pci found, their BARs and mappings. */
#include "kernel/lab/monitor.h"
#include "kernel/pci/pci.h"
#include "kernel/printf.h"

static const char *bar_kind(const struct pci_bar *b)
{
	switch (b->kind) {
	case PCI_BAR_IO: return "io";
	case PCI_BAR_MEM32: return b->prefetchable ? "mem32,pf" : "mem32";
	case PCI_BAR_MEM64: return b->prefetchable ? "mem64,pf" : "mem64";
	default: return "none";
	}
}

static int cmd_pci(void)
{
	kprintf("configuration space through %s; %u functions\n", pci_access_method(), pci_function_count());
	struct pci_function *f;
	for (unsigned i = 0; (f = pci_function_at(i)); i++) {
		kprintf("  %02x:%02x.%x  %04x:%04x  class %02x.%02x.%02x", f->bus, f->dev, f->fn, f->vendor,
			f->device, f->class_code, f->subclass, f->prog_if);
		if (f->msix_cap)
			kprintf("  msi-x %u entries", f->msix_entries);
		kprintf("\n");
		for (unsigned b = 0; b < PCI_BARS; b++) {
			const struct pci_bar *r = &f->bar[b];
			if (r->kind == PCI_BAR_NONE)
				continue;
			kprintf("      BAR%u %-8s 0x%012lx size 0x%lx", b, bar_kind(r), r->phys, r->size);
			if (r->va)
				kprintf("  at 0x%lx UC\n", (uint64_t)r->va);
			else
				kprintf("  %s\n", r->kind == PCI_BAR_IO ? "(ports)" : "(no driver maps it)");
		}
	}
	return 0;
}
MONITOR_COMMAND_BARE(pci, "PCI functions: bus:dev.fn, vendor:device, class, BARs and their mappings", cmd_pci);
