#include "kernel/userprog.h"
#include "kernel/lib.h"
#include "mm/layout.h"

#define PROGRAM(name) extern const uint8_t user_##name##_elf_start[], user_##name##_elf_end[];
PROGRAM(agent)
PROGRAM(fuzz)
PROGRAM(hello)
PROGRAM(mdlsample)
PROGRAM(ioattack)
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
#define PT_LOAD 1
#define PF_X 1
#define PF_W 2

bool userprog_parse(const struct user_program *prog, struct elf_image *out)
{
	const struct elf64_ehdr *e = (const void *)prog->start;
	if (prog->size < sizeof *e || memcmp(e->ident, "\x7F" "ELF", 4) || e->ident[4] != 2 || e->type != 2 ||
	    e->machine != 62 || e->phentsize != sizeof(struct elf64_phdr) ||
	    e->phoff + (uint64_t)e->phnum * sizeof(struct elf64_phdr) > prog->size)
		return false;
	memset(out, 0, sizeof *out);
	out->entry = e->entry;
	const struct elf64_phdr *ph = (const void *)(prog->start + e->phoff);
	for (unsigned i = 0; i < e->phnum; i++) {
		if (ph[i].type != PT_LOAD || !ph[i].memsz)
			continue;
		if (out->nsegs == ELF_MAX_SEGMENTS || ph[i].filesz > ph[i].memsz ||
		    ph[i].offset + ph[i].filesz > prog->size || ph[i].vaddr + ph[i].memsz > USER_VA_END ||
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
	return out->nsegs && out->entry >= 0x100000 && out->entry < USER_VA_END;
}
