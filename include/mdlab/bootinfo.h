/*
 * The boot-information contract between boot/loader.c (BOOTX64.EFI) and the kernel.
 *
 * Versioned: the loader fills `magic` and `version`; the kernel refuses to run with a
 * structure whose magic or major version it does not know (it says so on COM1 and halts).
 * A new field is added only at the end, with a minor version bump; a change of meaning
 * bumps the major version.
 *
 * State at kernel entry (entry point = ELF e_entry, a higher-half virtual address):
 *   - long mode, interrupts disabled, UEFI boot services exited;
 *   - RDI = physical address of this structure (also reachable through the direct map);
 *   - the loader's page tables (CR3) map:
 *       identity            [0, phys_top)                  RW, executable (loader trampoline)
 *       direct map          [MDLAB_DIRECT_MAP_BASE, +phys_top)  RW, NX when the CPU has NX
 *       kernel segments     at their ELF virtual addresses, backed by kernel_phys_base..
 *     where phys_top covers all RAM and firmware regions in the memory map (rounded up to 1 GiB);
 *   - RSP points into loader memory: the kernel switches to its own stack at once;
 *   - every pointer below is a PHYSICAL address; the kernel reads them through the direct map.
 * All memory the loader allocated for the kernel (segments, this structure, the memory map,
 * symbol tables, page tables) is of UEFI type EfiLoaderData.
 */
#ifndef MDLAB_BOOTINFO_H
#define MDLAB_BOOTINFO_H

#include <stdint.h>

#define MDLAB_BOOTINFO_MAGIC 0x4f4f42424c444d00ull /* "\0MDLBBOO" */
#define MDLAB_BOOTINFO_VERSION_MAJOR 1
#define MDLAB_BOOTINFO_VERSION_MINOR 0

/* Where the loader's direct map of physical memory starts (PML4 slot 256). */
#define MDLAB_DIRECT_MAP_BASE 0xFFFF800000000000ull

#define MDLAB_CMDLINE_MAX 1024

struct mdlab_framebuffer {
	uint64_t base;          /* physical address, 0 when there is no GOP */
	uint64_t size;          /* bytes */
	uint32_t width, height; /* pixels */
	uint32_t pitch;         /* pixels per scan line */
	uint32_t format;        /* EFI_GRAPHICS_PIXEL_FORMAT */
};

struct mdlab_bootinfo {
	uint64_t magic;
	uint32_t version_major;
	uint32_t version_minor;
	uint64_t size;                 /* sizeof(struct mdlab_bootinfo) as the loader knew it */

	/* Final UEFI memory map, as returned by the GetMemoryMap() that preceded the
	 * successful ExitBootServices(): `memmap_size / memmap_desc_size` descriptors of
	 * EFI_MEMORY_DESCRIPTOR layout (the stride is memmap_desc_size, not sizeof). */
	uint64_t memmap;
	uint64_t memmap_size;
	uint64_t memmap_desc_size;
	uint32_t memmap_desc_version;
	uint32_t reserved0;

	uint64_t acpi_rsdp;            /* RSDP (ACPI 2.0 table preferred), 0 if none */
	struct mdlab_framebuffer fb;

	/* Kernel image: one physically contiguous block holding every PT_LOAD segment. */
	uint64_t kernel_phys_base;     /* physical address of the lowest segment */
	uint64_t kernel_virt_base;     /* its virtual address */
	uint64_t kernel_size;          /* bytes, page-rounded */

	/* Copies of the ELF .symtab and its string table, for backtraces (0 if absent). */
	uint64_t symtab;
	uint64_t symtab_size;
	uint64_t strtab;
	uint64_t strtab_size;

	/* Page tables the loader built (PML4 physical address) and their frames, so the
	 * kernel knows what it may reclaim once it runs on its own tables. */
	uint64_t loader_cr3;
	uint64_t phys_top;             /* end of the identity / direct map */

	/* NUL-terminated kernel command line, from \EFI\mdlab\cmdline.txt on the ESP. */
	char cmdline[MDLAB_CMDLINE_MAX];
};

/* EFI_MEMORY_DESCRIPTOR as the UEFI specification lays it out (section 7.2). */
struct mdlab_efi_memdesc {
	uint32_t type;
	uint32_t pad;
	uint64_t phys_start;
	uint64_t virt_start;
	uint64_t pages;
	uint64_t attribute;
};

/* EFI_MEMORY_TYPE values the kernel cares about. */
enum {
	EFI_MT_RESERVED = 0,
	EFI_MT_LOADER_CODE = 1,
	EFI_MT_LOADER_DATA = 2,
	EFI_MT_BOOT_CODE = 3,
	EFI_MT_BOOT_DATA = 4,
	EFI_MT_RUNTIME_CODE = 5,
	EFI_MT_RUNTIME_DATA = 6,
	EFI_MT_CONVENTIONAL = 7,
	EFI_MT_UNUSABLE = 8,
	EFI_MT_ACPI_RECLAIM = 9,
	EFI_MT_ACPI_NVS = 10,
	EFI_MT_MMIO = 11,
	EFI_MT_MMIO_PORT = 12,
	EFI_MT_PAL_CODE = 13,
	EFI_MT_PERSISTENT = 14,
};

#endif
