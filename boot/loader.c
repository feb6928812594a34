/*
 * mdlab's UEFI loader (\EFI\BOOT\BOOTX64.EFI).
 *
 * Loads \EFI\mdlab\kernel.elf from the volume it was itself loaded from, fills a
 * struct mdlab_bootinfo (include/mdlab/bootinfo.h, the binding contract), builds the
 * page tables the contract describes, exits boot services and jumps to the kernel.
 *
 * Every failure before ExitBootServices is one line "mdlab loader: ..." on COM1 and
 * ConOut, then a pause so a person can read it, then a return to the firmware with an
 * error status: the loader never hangs.  Success is one line on COM1 only.
 *
 * Allocation order matters.  The final memory map must describe every allocation, and
 * no allocation may happen between it and ExitBootServices, so the map buffer is the
 * last thing allocated, with slack for the descriptors its own allocation adds.
 */
#include "loader.h"

EFI_HANDLE boot_image;
EFI_SYSTEM_TABLE *boot_st;
EFI_BOOT_SERVICES *boot_bs;

#define KERNEL_PATH L"\\EFI\\mdlab\\kernel.elf"
#define KERNEL_PATH_ASCII "\\EFI\\mdlab\\kernel.elf"
#define CMDLINE_PATH L"\\EFI\\mdlab\\cmdline.txt"

#define FAILURE_PAUSE_US 3000000        /* time to read an error before the firmware moves on */
#define HANDOFF_STACK_PAGES 4           /* the kernel switches to its own stack at once */
#define MEMMAP_SLACK_DESCS 16
#define EXIT_ATTEMPTS 4

#define SIZE_1G (1ull << 30)
#define SIZE_4G (4ull << 30)
/* The identity map uses PML4 slots from 0 and the direct map from 256: they must not
 * reach the next region (and slot 511 holds the kernel). */
#define PHYS_TOP_MAX ((uint64_t)64 << 40)

/* The firmware's memory map and the buffer it goes into. */
struct memmap {
	EFI_MEMORY_DESCRIPTOR *buf;
	UINTN capacity;                 /* bytes allocated at buf */
	UINTN size;                     /* bytes filled by the last GetMemoryMap */
	UINTN key;
	UINTN desc_size;
	UINT32 desc_version;
};

/* Set once ExitBootServices has been called, successfully or not: from then on only
 * GetMemoryMap and ExitBootServices may be used, so no ConOut and no pause. */
static bool exit_attempted;

/* Zeroed EfiLoaderData pages for `bytes`. */
static EFI_STATUS alloc_data(uint64_t bytes, const char *what, EFI_PHYSICAL_ADDRESS *phys)
{
	EFI_STATUS st;

	st = boot_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, BYTES_TO_PAGES(bytes), phys);
	if (EFI_ERROR(st))
		return boot_error(st, "cannot allocate %lu bytes for %s: %s", bytes, what,
				  efi_status_name(st));
	memset((void *)*phys, 0, PAGE_UP(bytes));
	return EFI_SUCCESS;
}

static bool guid_equal(const EFI_GUID *a, const EFI_GUID *b)
{
	const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;

	for (unsigned i = 0; i < sizeof(EFI_GUID); i++)
		if (x[i] != y[i])
			return false;
	return true;
}

/* \EFI\mdlab\cmdline.txt into bi->cmdline: truncated to MDLAB_CMDLINE_MAX - 1 bytes,
 * trailing CR/LF removed, NUL-terminated.  A missing file is an empty command line. */
static EFI_STATUS read_cmdline(EFI_FILE_HANDLE root, struct mdlab_bootinfo *bi)
{
	uint64_t len = 0;
	EFI_STATUS st;

	st = file_read_prefix(root, CMDLINE_PATH, bi->cmdline, MDLAB_CMDLINE_MAX - 1, &len);
	if (st == EFI_NOT_FOUND)
		len = 0;
	else if (EFI_ERROR(st))
		return st;
	while (len > 0 && (bi->cmdline[len - 1] == '\n' || bi->cmdline[len - 1] == '\r'))
		len--;
	bi->cmdline[len] = 0;
	return EFI_SUCCESS;
}

/* Read, validate and place the kernel; copy its symbols.  The file buffer is freed. */
static EFI_STATUS load_kernel(EFI_FILE_HANDLE root, struct kernel_image *k,
			      struct mdlab_bootinfo *bi)
{
	struct file_buffer f;
	EFI_STATUS st;

	st = file_read_all(root, KERNEL_PATH, &f);
	if (st == EFI_NOT_FOUND)
		return boot_error(st, "cannot open %s: not found", KERNEL_PATH_ASCII);
	if (EFI_ERROR(st))
		return st;
	k->file = f.data;
	k->file_size = f.size;
	st = elf_check(k);
	if (!EFI_ERROR(st))
		st = elf_load(k);
	if (!EFI_ERROR(st))
		st = elf_copy_symbols(k, bi);
	boot_bs->FreePool(f.data);
	k->file = NULL;
	k->ehdr = NULL;
	k->symtab = k->strtab = NULL;
	if (EFI_ERROR(st))
		return st;

	bi->kernel_phys_base = k->phys_base;
	bi->kernel_virt_base = k->virt_base;
	bi->kernel_size = k->virt_end - k->virt_base;
	return EFI_SUCCESS;
}

/* The RSDP from the configuration table: the ACPI 2.0 entry if any, else ACPI 1.0. */
static void find_rsdp(struct mdlab_bootinfo *bi)
{
	EFI_GUID acpi20 = ACPI_20_TABLE_GUID, acpi10 = ACPI_TABLE_GUID;
	uint64_t v1 = 0;

	for (UINTN i = 0; i < boot_st->NumberOfTableEntries; i++) {
		EFI_CONFIGURATION_TABLE *t = &boot_st->ConfigurationTable[i];

		if (guid_equal(&t->VendorGuid, &acpi20)) {
			bi->acpi_rsdp = (uint64_t)t->VendorTable;
			return;
		}
		if (guid_equal(&t->VendorGuid, &acpi10))
			v1 = (uint64_t)t->VendorTable;
	}
	bi->acpi_rsdp = v1;
}

/* The GOP's current mode, if there is a GOP with a linear framebuffer; else fb stays 0. */
static void find_framebuffer(struct mdlab_bootinfo *bi)
{
	EFI_GUID gop_guid = EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID;
	EFI_GRAPHICS_OUTPUT_PROTOCOL *gop;
	EFI_GRAPHICS_OUTPUT_MODE_INFORMATION *info;

	if (EFI_ERROR(boot_bs->LocateProtocol(&gop_guid, NULL, (void **)&gop)) ||
	    gop->Mode == NULL || gop->Mode->Info == NULL)
		return;
	info = gop->Mode->Info;
	if (info->PixelFormat == PixelBltOnly || gop->Mode->FrameBufferBase == 0)
		return;
	bi->fb.base = gop->Mode->FrameBufferBase;
	bi->fb.size = gop->Mode->FrameBufferSize;
	bi->fb.width = info->HorizontalResolution;
	bi->fb.height = info->VerticalResolution;
	bi->fb.pitch = info->PixelsPerScanLine;
	bi->fb.format = info->PixelFormat;
}

/* Fill mm from the firmware.  EFI_BUFFER_TOO_SMALL is returned silently with mm->size
 * set to the bytes needed; no allocation happens here. */
static EFI_STATUS memmap_get(struct memmap *mm)
{
	mm->size = mm->capacity;
	return boot_bs->GetMemoryMap(&mm->size, mm->buf, &mm->key, &mm->desc_size,
				     &mm->desc_version);
}

/* Allocate mm->buf for the map as it is now plus slack: the allocation itself may split
 * a free range, and the firmware may allocate behind our back before the final call. */
static EFI_STATUS memmap_alloc(struct memmap *mm)
{
	EFI_PHYSICAL_ADDRESS phys;
	EFI_STATUS st;

	mm->buf = NULL;
	mm->capacity = 0;
	st = memmap_get(mm);
	if (st != EFI_BUFFER_TOO_SMALL)
		return boot_error(EFI_ERROR(st) ? st : EFI_LOAD_ERROR,
				  "GetMemoryMap did not report its size: %s", efi_status_name(st));
	mm->capacity = PAGE_UP(mm->size + MEMMAP_SLACK_DESCS * mm->desc_size + PAGE_SIZE);
	st = alloc_data(mm->capacity, "the memory map", &phys);
	if (EFI_ERROR(st))
		return st;
	mm->buf = (EFI_MEMORY_DESCRIPTOR *)phys;
	return EFI_SUCCESS;
}

static void memmap_free(struct memmap *mm)
{
	boot_bs->FreePages((EFI_PHYSICAL_ADDRESS)mm->buf, mm->capacity / PAGE_SIZE);
	mm->buf = NULL;
}

/*
 * The end of the identity and direct maps: the highest end of any memory-map descriptor
 * (of any type, so firmware and MMIO regions count) and of the framebuffer, rounded up
 * to 1 GiB, and at least 4 GiB so the low MMIO (LAPIC, IOAPIC, HPET) is covered.
 */
static EFI_STATUS compute_phys_top(const struct mdlab_bootinfo *bi, uint64_t *phys_top)
{
	struct memmap mm;
	uint64_t top = SIZE_4G;
	EFI_STATUS st;

	st = memmap_alloc(&mm);
	if (EFI_ERROR(st))
		return st;
	st = memmap_get(&mm);
	if (EFI_ERROR(st)) {
		memmap_free(&mm);
		return boot_error(st, "GetMemoryMap failed: %s", efi_status_name(st));
	}
	for (UINTN off = 0; off + mm.desc_size <= mm.size; off += mm.desc_size) {
		const EFI_MEMORY_DESCRIPTOR *d = (const void *)((uint8_t *)mm.buf + off);
		uint64_t end = d->PhysicalStart + d->NumberOfPages * PAGE_SIZE;

		if (end > top)
			top = end;
	}
	memmap_free(&mm);
	if (bi->fb.base + bi->fb.size > top)
		top = bi->fb.base + bi->fb.size;
	top = (top + SIZE_1G - 1) & ~(SIZE_1G - 1);
	if (top > PHYS_TOP_MAX)
		return boot_error(EFI_UNSUPPORTED,
				  "physical address space ends at 0x%lx, above the 0x%lx supported",
				  top, PHYS_TOP_MAX);
	*phys_top = top;
	return EFI_SUCCESS;
}

/* The contract's three regions; see paging.c. */
static EFI_STATUS build_page_tables(const struct kernel_image *k, uint64_t phys_top,
				    struct page_tables *pt)
{
	EFI_STATUS st;

	st = pt_init(pt);
	if (EFI_ERROR(st))
		return st;
	st = pt_map_huge(pt, 0, 0, phys_top, false);
	if (EFI_ERROR(st))
		return st;
	st = pt_map_huge(pt, MDLAB_DIRECT_MAP_BASE, 0, phys_top, true);
	if (EFI_ERROR(st))
		return st;
	for (unsigned i = 0; i < k->nseg; i++) {
		uint64_t va = PAGE_DOWN(k->seg[i].vaddr);
		uint64_t end = PAGE_UP(k->seg[i].vaddr + k->seg[i].memsz);

		st = pt_map_small(pt, va, k->phys_base + (va - k->virt_base), end - va);
		if (EFI_ERROR(st))
			return st;
	}
	return EFI_SUCCESS;
}

/*
 * GetMemoryMap + ExitBootServices.  A stale map key (EFI_INVALID_PARAMETER) means the
 * map changed in between: fetch it again into the same buffer, allocating nothing, and
 * retry.  Only before the first attempt may a too-small buffer be replaced.
 */
static EFI_STATUS exit_boot_services(struct memmap *mm)
{
	EFI_STATUS st = EFI_LOAD_ERROR;

	for (int attempt = 0; attempt < EXIT_ATTEMPTS; attempt++) {
		st = memmap_get(mm);
		if (st == EFI_BUFFER_TOO_SMALL && !exit_attempted) {
			memmap_free(mm);
			st = memmap_alloc(mm);
			if (EFI_ERROR(st))
				return st;
			continue;
		}
		if (EFI_ERROR(st))
			break;
		exit_attempted = true;
		st = boot_bs->ExitBootServices(boot_image, mm->key);
		if (st != EFI_INVALID_PARAMETER)
			break;
	}
	if (EFI_ERROR(st)) {
		if (exit_attempted) {
			say_serial("mdlab loader: ExitBootServices failed: %s\n",
				   efi_status_name(st));
			return st;
		}
		return boot_error(st, "GetMemoryMap failed: %s", efi_status_name(st));
	}
	return EFI_SUCCESS;
}

/* Everything from the watchdog to the jump.  Returns only on failure, having printed. */
static EFI_STATUS boot(void)
{
	struct kernel_image k = { 0 };
	struct page_tables pt;
	struct memmap mm;
	struct mdlab_bootinfo *bi;
	EFI_FILE_HANDLE root;
	EFI_PHYSICAL_ADDRESS phys, stack;
	uint64_t phys_top = 0;
	EFI_STATUS st;

	/* The firmware's default five-minute watchdog would reset a long boot. */
	boot_bs->SetWatchdogTimer(0, 0, 0, NULL);

	st = alloc_data(sizeof *bi, "the boot information", &phys);
	if (EFI_ERROR(st))
		return st;
	bi = (struct mdlab_bootinfo *)phys;
	bi->magic = MDLAB_BOOTINFO_MAGIC;
	bi->version_major = MDLAB_BOOTINFO_VERSION_MAJOR;
	bi->version_minor = MDLAB_BOOTINFO_VERSION_MINOR;
	bi->size = sizeof *bi;

	st = volume_open_root(&root);
	if (EFI_ERROR(st))
		return st;
	st = read_cmdline(root, bi);
	if (!EFI_ERROR(st))
		st = load_kernel(root, &k, bi);
	root->Close(root);
	if (EFI_ERROR(st))
		return st;

	find_rsdp(bi);
	find_framebuffer(bi);
	st = compute_phys_top(bi, &phys_top);
	if (EFI_ERROR(st))
		return st;
	st = build_page_tables(&k, phys_top, &pt);
	if (EFI_ERROR(st))
		return st;
	bi->loader_cr3 = (uint64_t)pt.pml4;
	bi->phys_top = phys_top;
	st = alloc_data(HANDOFF_STACK_PAGES * PAGE_SIZE, "the hand-off stack", &stack);
	if (EFI_ERROR(st))
		return st;

	/* Last allocation; then only serial output until the kernel runs. */
	st = memmap_alloc(&mm);
	if (EFI_ERROR(st))
		return st;
	say_serial("mdlab loader: kernel.elf OK, entry 0x%lx, %u segments, cmdline '%s'\n",
		   k.entry, k.nseg, bi->cmdline);
	st = exit_boot_services(&mm);
	if (EFI_ERROR(st))
		return st;

	bi->memmap = (uint64_t)mm.buf;
	bi->memmap_size = mm.size;
	bi->memmap_desc_size = mm.desc_size;
	bi->memmap_desc_version = mm.desc_version;
	pt_enter_kernel(&pt, k.entry, (uint64_t)bi, stack + HANDOFF_STACK_PAGES * PAGE_SIZE);
}

/* Called by GNU-EFI's crt0 (System V ABI) after self-relocation. */
EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	EFI_STATUS status;

	boot_image = image;
	boot_st = st;
	boot_bs = st->BootServices;
	serial_init();

	status = boot();
	if (!exit_attempted)
		boot_bs->Stall(FAILURE_PAUSE_US);
	return status;
}
