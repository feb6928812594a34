#include "kernel/userprog.h"
#include "kernel/lib.h"
#include "mm/layout.h"

#define PROGRAM(name) extern const uint8_t user_##name##_elf_start[], user_##name##_elf_end[];
PROGRAM(agent)
PROGRAM(fuzz)
PROGRAM(hello)
PROGRAM(mdlsample)
PROGRAM(ioattack)
PROGRAM(compat32)
PROGRAM(fuzz32)
#undef PROGRAM

/* The agent serves the kernel tests, the fuzzer the ring-3 fuzz suite; the others are Win32-style programs (user/win32.c),
 * run from tests and from the monitor's `run`. */
static const struct {
	const char *name;
	const uint8_t *start, *end;
} programs[] = {
	{ "agent", user_agent_elf_start, user_agent_elf_end },
	{ "fuzz", user_fuzz_elf_start, user_fuzz_elf_end },
	{ "hello", user_hello_elf_start, user_hello_elf_end },
	{ "mdlsample", user_mdlsample_elf_start, user_mdlsample_elf_end },
	{ "ioattack", user_ioattack_elf_start, user_ioattack_elf_end },
	/* 32-bit (ELF32): runs in compatibility mode in a 32-bit process (tests/compat32_test.c). */
	{ "compat32", user_compat32_elf_start, user_compat32_elf_end },
	/* 32-bit: the fuzzer's compatibility-mode batches (tests/fuzz_test.c). */
	{ "fuzz32", user_fuzz32_elf_start, user_fuzz32_elf_end },
};
#define NPROGRAMS (sizeof programs / sizeof programs[0])

const struct user_program *userprog_find(const char *name)
{
	static struct user_program table[NPROGRAMS];
	for (unsigned i = 0; i < NPROGRAMS; i++) {
		if (strcmp(programs[i].name, name))
			continue;
		table[i] = (struct user_program){ programs[i].name, programs[i].start,
						  (uint64_t)(programs[i].end - programs[i].start) };
		return &table[i];
	}
	return NULL;
}

const char *userprog_name(unsigned i) { return i < NPROGRAMS ? programs[i].name : NULL; }

uint32_t userprog_pack_cmdline(const char *cmdline, uint64_t *args, uint32_t max)
{
	size_t len = strlen(cmdline);
	if (!max)
		return 0;
	if (len > (size_t)(max - 1) * 8)
		len = (size_t)(max - 1) * 8;
	args[0] = len;
	memset(&args[1], 0, ALIGN_UP(len, 8));
	memcpy(&args[1], cmdline, len);
	return (uint32_t)(1 + ALIGN_UP(len, 8) / 8);
}

/* ELF64 (System V ABI) headers: only the fields used here. */
struct elf64_ehdr {
	uint8_t ident[16];
	uint16_t type, machine;
	uint32_t version;
	uint64_t entry, phoff, shoff;
	uint32_t flags;
	uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct elf64_phdr {
	uint32_t type, flags;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};
/* ELF32 (System V ABI, Intel386 supplement). */
struct elf32_ehdr {
	uint8_t ident[16];
	uint16_t type, machine;
	uint32_t version, entry, phoff, shoff, flags;
	uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct elf32_phdr {
	uint32_t type, offset, vaddr, paddr, filesz, memsz, flags, align;
};
#define ELFCLASS32 1
#define ELFCLASS64 2
#define ET_EXEC 2
#define EM_386 3
#define EM_X86_64 62
#define PT_LOAD 1
#define PF_X 1
#define PF_W 2

/* An ELF32 header's program headers as ELF64 ones (every field widens); false when the
 * header is not an Intel386 executable whose program headers lie inside the file. */
static bool parse_elf32(const struct user_program *prog, struct elf64_phdr *ph, unsigned *n, uint64_t *entry)
{
	const struct elf32_ehdr *e = (const void *)prog->start;
	if (prog->size < sizeof *e || e->type != ET_EXEC || e->machine != EM_386 ||
	    e->phentsize != sizeof(struct elf32_phdr) ||
	    (uint64_t)e->phoff + (uint64_t)e->phnum * sizeof(struct elf32_phdr) > prog->size)
		return false;
	const struct elf32_phdr *p = (const void *)(prog->start + e->phoff);
	*n = 0;
	for (unsigned i = 0; i < e->phnum; i++) {
		if (p[i].type != PT_LOAD || !p[i].memsz)
			continue;
		if (*n == ELF_MAX_SEGMENTS)
			return false;
		ph[(*n)++] = (struct elf64_phdr){ p[i].type, p[i].flags, p[i].offset, p[i].vaddr, p[i].paddr,
						  p[i].filesz, p[i].memsz, p[i].align };
	}
	*entry = e->entry;
	return true;
}

bool userprog_parse(const struct user_program *prog, struct elf_image *out)
{
	const struct elf64_ehdr *e = (const void *)prog->start;
	struct elf64_phdr ph32[ELF_MAX_SEGMENTS];
	const struct elf64_phdr *ph;
	unsigned nph;
	if (prog->size < 16 || memcmp(e->ident, "\x7F" "ELF", 4))
		return false;
	memset(out, 0, sizeof *out);
	/* A 32-bit image must fit the 32-bit address space it runs in (mm/RULES.md, "The ring-3
	 * boundary"): segments and entry at or below MM_USER_TOP_WOW64. */
	uint64_t top = USER_VA_END;
	if (e->ident[4] == ELFCLASS32) {
		if (!parse_elf32(prog, ph32, &nph, &out->entry))
			return false;
		ph = ph32;
		out->is32 = true;
		top = MM_USER_TOP_WOW64 + 1;
	} else {
		if (e->ident[4] != ELFCLASS64 || prog->size < sizeof *e || e->type != ET_EXEC ||
		    e->machine != EM_X86_64 || e->phentsize != sizeof(struct elf64_phdr) ||
		    e->phoff + (uint64_t)e->phnum * sizeof(struct elf64_phdr) > prog->size)
			return false;
		out->entry = e->entry;
		ph = (const void *)(prog->start + e->phoff);
		nph = e->phnum;
	}
	for (unsigned i = 0; i < nph; i++) {
		if (ph[i].type != PT_LOAD || !ph[i].memsz)
			continue;
		if (out->nsegs == ELF_MAX_SEGMENTS || ph[i].filesz > ph[i].memsz ||
		    ph[i].offset + ph[i].filesz > prog->size || ph[i].vaddr + ph[i].memsz > top ||
		    ph[i].vaddr < 0x100000)
			return false;
		struct elf_segment *s = &out->segs[out->nsegs++];
		*s = (struct elf_segment){ ph[i].offset, ph[i].vaddr, ph[i].filesz, ph[i].memsz, ph[i].flags & PF_W,
					   ph[i].flags & PF_X };
		for (unsigned k = 0; k + 1 < out->nsegs; k++) {
			const struct elf_segment *o = &out->segs[k];
			if (ALIGN_DOWN(s->vaddr, PAGE_SIZE) < ALIGN_UP(o->vaddr + o->memsz, PAGE_SIZE) &&
			    ALIGN_DOWN(o->vaddr, PAGE_SIZE) < ALIGN_UP(s->vaddr + s->memsz, PAGE_SIZE))
				return false;
		}
	}
	return out->nsegs && out->entry >= 0x100000 && out->entry < top;
}
