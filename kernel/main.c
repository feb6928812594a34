/* kmain: bring the machine up from the loader's hand-off, then run what the command line
 * asks: mode=NAME runs the boot mode registered under that name (kernel/bootmode.h), the
 * monitor when none is given. */
#include <stdint.h>
#include "include/mdlab/bootinfo.h"
#include "include/mdlab/protocol.h"
#include "kernel/bootinfo.h"
#include "kernel/bootmode.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/gdt.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/ioapic.h"
#include "kernel/pci/pci.h"
#include "kernel/virtio/virtio_blk.h"
#include "mm/pagefile.h"
#include "kernel/ksym.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/serial.h"
#include "kernel/smap_sites.h"
#include "kernel/smp/smp.h"
#include "kernel/syscall.h"
#include "kernel/trap.h"
#include "mm/audit.h"
#include "mm/mm.h"

void kmain(uint64_t bootinfo_phys);
static void kmain_after_mm(void *arg);

__attribute__((aligned(16))) uint8_t boot_stack[KSTACK_SIZE];
uint8_t *const boot_stack_top = boot_stack + sizeof boot_stack;

/* Mask both legacy 8259 PICs: nothing interrupts the kernel until it sets up the APIC. */
static void pic_mask_all(void)
{
	outb(0x21, 0xFF);
	outb(0xA1, 0xFF);
}

void kmain(uint64_t bootinfo_phys)
{
	serial_init();
	gdt_init();
	smp_init_boot_cpu(); /* GS: the per-CPU data every __try uses */

	const struct mdlab_bootinfo *bi = (const void *)(MDLAB_DIRECT_MAP_BASE + bootinfo_phys);
	if (bi->magic != MDLAB_BOOTINFO_MAGIC || bi->version_major != MDLAB_BOOTINFO_VERSION_MAJOR) {
		kprintf("mdlab: boot information at 0x%lx has magic 0x%lx version %u; this kernel "
			"needs version %u\n", bootinfo_phys, bi->magic, bi->version_major,
			MDLAB_BOOTINFO_VERSION_MAJOR);
		cpu_halt_forever();
	}
	/* Before the IDT: every entry stub starts with a CLAC, #UD on a CPU without SMAP until
	 * it is patched (kernel/smap_sites.h). */
	cpufeat_init();
	unsigned smap_patched = smap_sites_patch(bi);
	idt_init();
	pic_mask_all();
	bootinfo_init(bi);
	ksym_init(bi);
	cmdline_init(bi->cmdline);

	kprintf("\nmdlab: an NT MDL memory-manager laboratory, boot info v%u.%u\n", bi->version_major,
		bi->version_minor);
	kprintf("command line: '%s'\n", cmdline_raw());
	cpufeat_print();
	if (smap_patched)
		kprintf("smap: the CPU has none: %u STAC/CLAC sites patched to NOPs\n", smap_patched);
	bootinfo_print_memory_summary();
	mm_init(bi, kmain_after_mm, (void *)bi);
}

/* On the kernel's own page tables and a guarded stack from here on. */
static void kmain_after_mm(void *arg)
{
	const struct mdlab_bootinfo *bi = arg; /* mm_init's continuation argument */
	mm_print_summary();
	mm_audit_boot();
	syscall_init();
	smp_init(bi, (unsigned)cmdline_get_u64("smp", 0));
	clock_init();
	ioapic_init(bi);
	pci_init(bi);
	/* From here the boot CPU, like every AP, runs at PASSIVE_LEVEL with interrupts on; CR8
	 * alone holds interrupts off (mm/RULES.md, "Interrupts and IRQL"). */
	__asm__ volatile("sti" ::: "memory");

	char mode[16] = MDLAB_MODE_MONITOR;
	cmdline_get("mode", mode, sizeof mode);
	const struct boot_mode *b = boot_mode_find(mode);
	if (!b) {
		kprintf("mdlab: no mode '%s' in this kernel; the monitor instead\n", mode);
		b = boot_mode_find(MDLAB_MODE_MONITOR);
	}
	if (!b) {
		kprintf("mdlab: this kernel has no monitor either\n");
		qemu_exit(QEMU_EXIT_DONE);
	}
	/* The monitor has the disk driver from the start; the tests load it for their cases. */
	if (!strcmp(b->name, MDLAB_MODE_MONITOR) && vblk_load() == STATUS_SUCCESS) {
		/* ... and pages to the disk's pagefile region (README "Devices") when the disk's
		 * owner allows it: a user's own image is not written behind their back. */
		struct vblk_info i;
		vblk_get_info(&i);
		uint64_t end = PAGEFILE_FIRST_SECTOR + (uint64_t)PAGEFILE_SLOTS * (PAGE_SIZE / 512);
		if (i.capacity < end)
			kprintf("pagefile: off (the disk has %lu sectors; the pagefile is sectors %u-%lu)\n",
				i.capacity, PAGEFILE_FIRST_SECTOR, end - 1);
		else if (!pagefile_attach(i.device))
			kprintf("pagefile: off (no pagefile=1 on the command line: the disk is not paged to)\n");
	}
	b->run();
	qemu_exit(QEMU_EXIT_DONE);
}

extern const struct boot_mode *const __boot_modes_start[], *const __boot_modes_end[];

const struct boot_mode *boot_mode_find(const char *name)
{
	for (const struct boot_mode *const *b = __boot_modes_start; b < __boot_modes_end; b++)
		if (!strcmp((*b)->name, name))
			return *b;
	return NULL;
}
