/*
 * The kernel ELF: validation, placement in one physically contiguous block, and copies of
 * the symbol table.
 *
 * Nothing in the file is trusted.  elf_check proves, before anything is allocated or
 * copied, that every header, segment and section the later steps touch lies inside the
 * file, that the PT_LOAD segments are disjoint and in the top 2 GiB, and that the entry
 * point is in an executable one.  Every range test is written so it cannot overflow:
 * `off + len <= size` is tested as `off <= size && len <= size - off`.
 */
#include "loader.h"

/* Does [off, off + len) lie inside a file of `size` bytes? */
static bool in_file(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Byte count of `n` table entries of `entsize` bytes, or false when it overflows. */
static bool table_bytes(uint64_t n, uint64_t entsize, uint64_t *bytes)
{
	if (entsize != 0 && n > UINT64_MAX / entsize)
		return false;
	*bytes = n * entsize;
	return true;
}

/* The identification bytes and the file header fields that say "x86-64 executable". */
static EFI_STATUS check_header(const struct kernel_image *k)
{
	const Elf64_Ehdr *eh = k->ehdr;
	const unsigned char *id = eh->e_ident;

	if (id[EI_MAG0] != ELFMAG0 || id[EI_MAG1] != ELFMAG1 || id[EI_MAG2] != ELFMAG2 ||
	    id[EI_MAG3] != ELFMAG3)
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: bad ELF magic %x %x %x %x (want 7f 45 4c 46)",
				  id[0], id[1], id[2], id[3]);
	if (id[EI_CLASS] != ELFCLASS64)
		return boot_error(EFI_LOAD_ERROR, "kernel.elf: ELF class %u is not ELFCLASS64",
				  id[EI_CLASS]);
	if (id[EI_DATA] != ELFDATA2LSB)
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: data encoding %u is not little-endian", id[EI_DATA]);
	if (eh->e_type != ET_EXEC)
		return boot_error(EFI_LOAD_ERROR, "kernel.elf: type %u is not ET_EXEC",
				  eh->e_type);
	if (eh->e_machine != EM_X86_64)
		return boot_error(EFI_LOAD_ERROR, "kernel.elf: wrong machine 0x%x (want x86-64)",
				  eh->e_machine);
	return EFI_SUCCESS;
}

/* The program header table and each PT_LOAD segment on its own; copies the segments
 * out into k->seg.  PT_LOAD entries with a zero memsz occupy nothing and are skipped. */
static EFI_STATUS check_segments(struct kernel_image *k)
{
	const Elf64_Ehdr *eh = k->ehdr;
	const Elf64_Phdr *phdr;
	uint64_t bytes;

	if (eh->e_phnum == 0)
		return boot_error(EFI_LOAD_ERROR, "kernel.elf: no program headers");
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: program header size %u (want %lu)",
				  eh->e_phentsize, (unsigned long)sizeof(Elf64_Phdr));
	if (!table_bytes(eh->e_phnum, eh->e_phentsize, &bytes) ||
	    !in_file(eh->e_phoff, bytes, k->file_size))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: program header table (offset 0x%lx, %u entries) "
				  "out of file bounds", eh->e_phoff, eh->e_phnum);
	phdr = (const Elf64_Phdr *)(k->file + eh->e_phoff);

	k->nseg = 0;
	k->virt_base = UINT64_MAX;
	k->virt_end = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = &phdr[i];

		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		if (ph->p_filesz > ph->p_memsz)
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: segment %u: file size 0x%lx > memory size 0x%lx",
					  i, ph->p_filesz, ph->p_memsz);
		if (!in_file(ph->p_offset, ph->p_filesz, k->file_size))
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: segment %u: file range 0x%lx+0x%lx out of file "
					  "bounds (file is 0x%lx bytes)",
					  i, ph->p_offset, ph->p_filesz, k->file_size);
		/* The segment must start and end in [KERNEL_VIRT_MIN, 2^64), and its last
		 * page must not wrap when rounded up. */
		if (ph->p_vaddr < KERNEL_VIRT_MIN || ph->p_memsz > 0 - PAGE_SIZE - ph->p_vaddr)
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: segment %u: vaddr 0x%lx+0x%lx not in the higher "
					  "half (want >= 0x%lx)",
					  i, ph->p_vaddr, ph->p_memsz, KERNEL_VIRT_MIN);
		if (k->nseg == KERNEL_MAX_SEGMENTS)
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: more than %u PT_LOAD segments",
					  KERNEL_MAX_SEGMENTS);
		k->seg[k->nseg++] = (struct kernel_segment){
			.index = i, .flags = ph->p_flags,
			.vaddr = ph->p_vaddr, .memsz = ph->p_memsz,
			.offset = ph->p_offset, .filesz = ph->p_filesz,
		};
		if (PAGE_DOWN(ph->p_vaddr) < k->virt_base)
			k->virt_base = PAGE_DOWN(ph->p_vaddr);
		if (PAGE_UP(ph->p_vaddr + ph->p_memsz) > k->virt_end)
			k->virt_end = PAGE_UP(ph->p_vaddr + ph->p_memsz);
	}
	if (k->nseg == 0)
		return boot_error(EFI_LOAD_ERROR, "kernel.elf: no PT_LOAD segment");
	return EFI_SUCCESS;
}

/* The segments as a set: disjoint in virtual memory, and the entry inside an executable
 * one.  Quadratic, but kernels have a handful of segments. */
static EFI_STATUS check_layout(struct kernel_image *k)
{
	const struct kernel_segment *in = NULL;
	uint64_t entry = k->ehdr->e_entry;

	for (unsigned i = 0; i < k->nseg; i++) {
		const struct kernel_segment *a = &k->seg[i];

		for (unsigned j = i + 1; j < k->nseg; j++) {
			const struct kernel_segment *b = &k->seg[j];

			if (a->vaddr < b->vaddr + b->memsz && b->vaddr < a->vaddr + a->memsz)
				return boot_error(EFI_LOAD_ERROR,
						  "kernel.elf: segments %u and %u overlap in virtual "
						  "memory (0x%lx+0x%lx, 0x%lx+0x%lx)",
						  a->index, b->index, a->vaddr, a->memsz, b->vaddr,
						  b->memsz);
		}
		if (entry >= a->vaddr && entry - a->vaddr < a->memsz)
			in = a;
	}
	if (in == NULL)
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: entry point 0x%lx not inside a loadable segment", entry);
	if (!(in->flags & PF_X))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: entry point 0x%lx is in non-executable segment %u",
				  entry, in->index);
	k->entry = entry;
	return EFI_SUCCESS;
}

/* Does section i's contents lie inside the file?  (NOBITS sections are not asked.) */
static EFI_STATUS check_section_bounds(const struct kernel_image *k, const Elf64_Shdr *sh,
				       unsigned i)
{
	if (!in_file(sh[i].sh_offset, sh[i].sh_size, k->file_size))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: section %u (0x%lx+0x%lx) out of file bounds",
				  i, sh[i].sh_offset, sh[i].sh_size);
	return EFI_SUCCESS;
}

/* The section header table, when present, and the SHT_SYMTAB with its string table.
 * A file without sections or without a symbol table is fine; a broken one is not. */
static EFI_STATUS check_symbols(struct kernel_image *k)
{
	const Elf64_Ehdr *eh = k->ehdr;
	const Elf64_Shdr *sh;
	uint64_t bytes;
	EFI_STATUS st;

	k->symtab = NULL;
	k->strtab = NULL;
	if (eh->e_shoff == 0 || eh->e_shnum == 0)
		return EFI_SUCCESS;
	if (eh->e_shentsize != sizeof(Elf64_Shdr))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: section header size %u (want %lu)",
				  eh->e_shentsize, (unsigned long)sizeof(Elf64_Shdr));
	if (!table_bytes(eh->e_shnum, eh->e_shentsize, &bytes) ||
	    !in_file(eh->e_shoff, bytes, k->file_size))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: section header table (offset 0x%lx, %u entries) "
				  "out of file bounds", eh->e_shoff, eh->e_shnum);
	sh = (const Elf64_Shdr *)(k->file + eh->e_shoff);

	for (unsigned i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_SYMTAB)
			continue;
		if (sh[i].sh_link == 0 || sh[i].sh_link >= eh->e_shnum ||
		    sh[sh[i].sh_link].sh_type != SHT_STRTAB)
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: symbol table (section %u) links to section %u, "
					  "not a string table", i, sh[i].sh_link);
		if (sh[i].sh_entsize != sizeof(Elf64_Sym) || sh[i].sh_size % sizeof(Elf64_Sym))
			return boot_error(EFI_LOAD_ERROR,
					  "kernel.elf: symbol table entry size %lu (want %lu)",
					  sh[i].sh_entsize, (unsigned long)sizeof(Elf64_Sym));
		st = check_section_bounds(k, sh, i);
		if (!EFI_ERROR(st))
			st = check_section_bounds(k, sh, sh[i].sh_link);
		if (EFI_ERROR(st))
			return st;
		k->symtab = &sh[i];
		k->strtab = &sh[sh[i].sh_link];
		break;
	}
	return EFI_SUCCESS;
}

EFI_STATUS elf_check(struct kernel_image *k)
{
	EFI_STATUS st;

	if (k->file_size < sizeof(Elf64_Ehdr))
		return boot_error(EFI_LOAD_ERROR,
				  "kernel.elf: file too small (%lu bytes, an ELF header is %lu)",
				  k->file_size, (unsigned long)sizeof(Elf64_Ehdr));
	k->ehdr = (const Elf64_Ehdr *)k->file;
	st = check_header(k);
	if (EFI_ERROR(st))
		return st;
	st = check_segments(k);
	if (EFI_ERROR(st))
		return st;
	st = check_layout(k);
	if (EFI_ERROR(st))
		return st;
	return check_symbols(k);
}

EFI_STATUS elf_load(struct kernel_image *k)
{
	uint64_t size = k->virt_end - k->virt_base;
	EFI_PHYSICAL_ADDRESS phys;
	EFI_STATUS st;

	st = boot_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, size / PAGE_SIZE, &phys);
	if (EFI_ERROR(st))
		return boot_error(st, "cannot allocate %lu contiguous pages for the kernel: %s",
				  size / PAGE_SIZE, efi_status_name(st));
	k->phys_base = phys;

	/* Zero everything first: bss, the tails of segments and any gap between them. */
	memset((void *)phys, 0, size);
	for (unsigned i = 0; i < k->nseg; i++) {
		const struct kernel_segment *sg = &k->seg[i];

		memcpy((void *)(phys + (sg->vaddr - k->virt_base)), k->file + sg->offset,
		       sg->filesz);
	}
	return EFI_SUCCESS;
}

EFI_STATUS elf_copy_symbols(const struct kernel_image *k, struct mdlab_bootinfo *bi)
{
	EFI_PHYSICAL_ADDRESS phys;
	uint64_t sym_size, str_off, total;
	EFI_STATUS st;

	if (k->symtab == NULL)
		return EFI_SUCCESS;
	/* One block: the symbols, then the strings at the next 16-byte boundary. */
	sym_size = k->symtab->sh_size;
	str_off = (sym_size + 15) & ~15ull;
	total = str_off + k->strtab->sh_size;
	st = boot_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, BYTES_TO_PAGES(total),
				    &phys);
	if (EFI_ERROR(st))
		return boot_error(st, "cannot allocate %lu bytes for the symbol table: %s",
				  total, efi_status_name(st));
	memcpy((void *)phys, k->file + k->symtab->sh_offset, sym_size);
	memcpy((void *)(phys + str_off), k->file + k->strtab->sh_offset, k->strtab->sh_size);

	bi->symtab = phys;
	bi->symtab_size = sym_size;
	bi->strtab = phys + str_off;
	bi->strtab_size = k->strtab->sh_size;
	return EFI_SUCCESS;
}
