#include "kernel/bootinfo.h"
#include "kernel/printf.h"

const struct mdlab_bootinfo *bootinfo;

void bootinfo_init(const struct mdlab_bootinfo *bi) { bootinfo = bi; }

const struct mdlab_efi_memdesc *bootinfo_memdesc(uint64_t i)
{
	if (!bootinfo->memmap_desc_size || i >= bootinfo->memmap_size / bootinfo->memmap_desc_size)
		return NULL;
	return phys_to_virt_boot(bootinfo->memmap + i * bootinfo->memmap_desc_size);
}

static const char *const type_names[] = {
	"reserved", "loader code", "loader data", "boot services code", "boot services data",
	"runtime code", "runtime data", "conventional", "unusable", "ACPI reclaimable", "ACPI NVS",
	"MMIO", "MMIO port space", "PAL code", "persistent",
};

const char *efi_memory_type_name(uint32_t type)
{
	return type < sizeof type_names / sizeof type_names[0] ? type_names[type] : "other";
}

void bootinfo_print_memory_summary(void)
{
	uint64_t pages[16] = { 0 }, n = 0;
	const struct mdlab_efi_memdesc *d;
	for (; (d = bootinfo_memdesc(n)); n++)
		pages[d->type < 15 ? d->type : 15] += d->pages;
	uint64_t usable = pages[EFI_MT_CONVENTIONAL] + pages[EFI_MT_LOADER_CODE] +
			  pages[EFI_MT_LOADER_DATA] + pages[EFI_MT_BOOT_CODE] + pages[EFI_MT_BOOT_DATA];
	kprintf("memory: %lu MiB usable RAM in %lu UEFI descriptors (free %lu MiB, loader %lu KiB, "
		"boot services %lu KiB, runtime %lu KiB, ACPI %lu KiB, reserved %lu KiB, MMIO %lu KiB)\n",
		usable >> 8, n, pages[EFI_MT_CONVENTIONAL] >> 8,
		(pages[EFI_MT_LOADER_CODE] + pages[EFI_MT_LOADER_DATA]) * 4,
		(pages[EFI_MT_BOOT_CODE] + pages[EFI_MT_BOOT_DATA]) * 4,
		(pages[EFI_MT_RUNTIME_CODE] + pages[EFI_MT_RUNTIME_DATA]) * 4,
		(pages[EFI_MT_ACPI_RECLAIM] + pages[EFI_MT_ACPI_NVS]) * 4, pages[EFI_MT_RESERVED] * 4,
		(pages[EFI_MT_MMIO] + pages[EFI_MT_MMIO_PORT]) * 4);
	kprintf("kernel: 0x%lx bytes at physical 0x%lx, virtual 0x%lx; ACPI RSDP 0x%lx; framebuffer %s\n",
		bootinfo->kernel_size, bootinfo->kernel_phys_base, bootinfo->kernel_virt_base,
		bootinfo->acpi_rsdp, bootinfo->fb.base ? "present" : "none");
}
