/*
 * Shared declarations of the UEFI loader (BOOTX64.EFI).
 *
 * The loader is a GNU-EFI application built with GNU_EFI_USE_MS_ABI: every firmware
 * function pointer is declared ms_abi by the headers and is called directly; the loader's
 * own functions use the System V ABI.  It does not link libefi, so nothing here depends
 * on InitializeLib() having run.
 *
 * Module map:
 *   loader.c   efi_main: the boot sequence, firmware tables, exit and hand-off
 *   console.c  COM1 and ConOut output, error reporting
 *   file.c     reading files from the volume the loader came from
 *   elf.c      kernel ELF validation, placement and symbol-table copies
 *   paging.c   the page tables the kernel is entered with
 *   mem.c      memcpy/memset
 */
#ifndef BOOT_LOADER_H
#define BOOT_LOADER_H

#include <efi.h>
#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mdlab/bootinfo.h>

#define PAGE_SIZE ((uint64_t)4096)
#define PAGE_UP(x) (((x) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
#define PAGE_DOWN(x) ((x) & ~(PAGE_SIZE - 1))
#define BYTES_TO_PAGES(x) (PAGE_UP(x) / PAGE_SIZE)

/* Set once by efi_main before anything else runs. */
extern EFI_HANDLE boot_image;
extern EFI_SYSTEM_TABLE *boot_st;
extern EFI_BOOT_SERVICES *boot_bs;

/* console.c ----------------------------------------------------------------------------- */

/* Program COM1 for 115200 baud 8N1, FIFOs on, interrupts off (polled output only). */
void serial_init(void);

/* Formatted output.  Conversions: %s %c %u %lu %x %lx %%; no widths or flags.
 * say_serial writes to COM1 only (usable after ExitBootServices);
 * say writes to COM1 and, while boot_st is usable, to ConOut. */
void say_serial(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report a fatal problem: "mdlab loader: <message>" as one line on COM1 and ConOut.
 * Returns `status` so callers can write `return boot_error(EFI_LOAD_ERROR, ...)`. */
EFI_STATUS boot_error(EFI_STATUS status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A short name for common EFI status codes ("not found"), else "EFI error". */
const char *efi_status_name(EFI_STATUS status);

/* file.c -------------------------------------------------------------------------------- */

struct file_buffer {
	uint8_t *data;  /* pool memory (EfiLoaderData), owned by the caller */
	uint64_t size;  /* bytes read: the whole file */
};

/* Open the root of the volume the loader image was loaded from.  Prints on failure. */
EFI_STATUS volume_open_root(EFI_FILE_HANDLE *root);

/* Read the whole file `path` (below `root`) into a new pool buffer.  On failure nothing
 * is allocated; EFI_NOT_FOUND is returned without a message (the caller decides whether
 * a missing file is an error), any other failure is printed. */
EFI_STATUS file_read_all(EFI_FILE_HANDLE root, const CHAR16 *path, struct file_buffer *out);

/* Read at most `cap` bytes of the start of `path` into `buf`; *len gets the count.
 * Same error convention as file_read_all. */
EFI_STATUS file_read_prefix(EFI_FILE_HANDLE root, const CHAR16 *path, void *buf,
			    uint64_t cap, uint64_t *len);

/* elf.c --------------------------------------------------------------------------------- */

/* The lowest address a kernel segment may occupy: the top 2 GiB (-mcmodel=kernel). */
#define KERNEL_VIRT_MIN ((uint64_t)0xFFFFFFFF80000000)

#define KERNEL_MAX_SEGMENTS 16

/* A PT_LOAD segment with a non-zero memsz, copied out of the program header table. */
struct kernel_segment {
	unsigned index;                 /* in the program header table, for messages */
	uint32_t flags;                 /* PF_R | PF_W | PF_X */
	uint64_t vaddr, memsz;
	uint64_t offset, filesz;
};

struct kernel_image {
	/* The file as read from the ESP.  It, and the header pointers into it, are valid
	 * only until the caller frees it (after elf_copy_symbols). */
	const uint8_t *file;
	uint64_t file_size;
	const Elf64_Ehdr *ehdr;
	const Elf64_Shdr *symtab;       /* NULL when the file has no SHT_SYMTAB */
	const Elf64_Shdr *strtab;       /* its sh_link string table */

	/* The layout, set by elf_check; it outlives the file. */
	struct kernel_segment seg[KERNEL_MAX_SEGMENTS];
	unsigned nseg;
	uint64_t virt_base;             /* lowest segment start, page-aligned down */
	uint64_t virt_end;              /* highest segment end, page-aligned up */
	uint64_t entry;

	/* Set by elf_load. */
	uint64_t phys_base;             /* one contiguous block of virt_end - virt_base bytes */
};

/* Validate k->file as an x86-64 higher-half ET_EXEC kernel and fill the layout fields.
 * Prints the first problem found ("kernel.elf: ...") and returns EFI_LOAD_ERROR. */
EFI_STATUS elf_check(struct kernel_image *k);

/* Allocate the physical block, copy every segment's file bytes and zero the rest. */
EFI_STATUS elf_load(struct kernel_image *k);

/* Copy .symtab and its string table into LoaderData pages and record them in bi
 * (all four fields stay 0 when the file has no symbol table). */
EFI_STATUS elf_copy_symbols(const struct kernel_image *k, struct mdlab_bootinfo *bi);

/* paging.c ------------------------------------------------------------------------------ */

struct page_tables {
	uint64_t *pml4;                 /* physical == virtual while the loader runs */
	bool nx;                        /* the CPU has NX: EFER.NXE must be set before use */
	bool gbpages;                   /* 1 GiB pages available */
	unsigned table_pages;           /* page-table pages allocated so far */
};

/* Probe the CPU features and allocate an empty PML4. */
EFI_STATUS pt_init(struct page_tables *pt);

/* Map [va, va + len) to [pa, pa + len) with the largest pages the CPU offers.
 * va, pa and len must be 1 GiB aligned.  Writable; no-execute when `nx` and pt->nx. */
EFI_STATUS pt_map_huge(struct page_tables *pt, uint64_t va, uint64_t pa, uint64_t len, bool nx);

/* Map [va, va + len) to [pa, pa + len) with 4 KiB pages, writable and executable.
 * va, pa and len must be page-aligned. */
EFI_STATUS pt_map_small(struct page_tables *pt, uint64_t va, uint64_t pa, uint64_t len);

/* Switch to `pt` (enabling EFER.NXE first when pt->nx) and enter the kernel at `entry`
 * with RDI = `arg` on the stack ending at `stack_top`, interrupts disabled.
 * Only after ExitBootServices: the caller must run identity-mapped below phys_top. */
__attribute__((noreturn)) void pt_enter_kernel(const struct page_tables *pt, uint64_t entry,
					      uint64_t arg, uint64_t stack_top);

/* Compiler support: GCC may emit calls to these even in freestanding code. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

#endif
