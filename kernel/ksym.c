#include "kernel/ksym.h"
#include "kernel/lib.h"

/* Elf64_Sym (System V ABI). */
struct elf_sym {
	uint32_t name;
	uint8_t info;
	uint8_t other;
	uint16_t shndx;
	uint64_t value;
	uint64_t size;
};
#define STT_FUNC 2
#define STT_OBJECT 1
#define STT_NOTYPE 0

static const struct elf_sym *syms;
static uint64_t nsyms;
static const char *strs;
static uint64_t strs_size;

void ksym_init(const struct mdlab_bootinfo *bi)
{
	if (!bi->symtab || !bi->strtab)
		return;
	syms = (const void *)(MDLAB_DIRECT_MAP_BASE + bi->symtab);
	nsyms = bi->symtab_size / sizeof(struct elf_sym);
	strs = (const char *)(MDLAB_DIRECT_MAP_BASE + bi->strtab);
	strs_size = bi->strtab_size;
}

static const char *name_of(const struct elf_sym *s)
{
	return s->name < strs_size ? strs + s->name : "?";
}

const char *ksym_lookup(uint64_t addr, uint64_t *offset)
{
	const struct elf_sym *best = NULL;
	for (uint64_t i = 0; i < nsyms; i++) {
		const struct elf_sym *s = &syms[i];
		unsigned type = s->info & 0xF;
		if ((type != STT_FUNC && type != STT_OBJECT && type != STT_NOTYPE) || !s->value || s->value > addr)
			continue;
		if (s->size && addr < s->value + s->size) {
			best = s;
			break;
		}
		if (!s->size && (!best || s->value > best->value))
			best = s; /* assembly labels carry no size: nearest below */
	}
	if (!best)
		return NULL;
	*offset = addr - best->value;
	return name_of(best);
}

uint64_t ksym_address(const char *name)
{
	for (uint64_t i = 0; i < nsyms; i++)
		if (!strcmp(name_of(&syms[i]), name))
			return syms[i].value;
	return 0;
}
