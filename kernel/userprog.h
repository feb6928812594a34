/* The user programs embedded in the kernel image, and their ELF headers. */
#ifndef KERNEL_USERPROG_H
#define KERNEL_USERPROG_H

#include <stdbool.h>
#include <stdint.h>

struct user_program {
	const char *name;
	const uint8_t *start;
	uint64_t size;
};

#define ELF_MAX_SEGMENTS 8
struct elf_segment {
	uint64_t offset, vaddr, filesz, memsz;
	bool write, exec;
};
struct elf_image {
	uint64_t entry;
	unsigned nsegs;
	struct elf_segment segs[ELF_MAX_SEGMENTS];
};

const struct user_program *userprog_find(const char *name);
/* The i-th embedded program's name, NULL past the last (for the monitor's `run`). */
const char *userprog_name(unsigned i);
/* A Win32 program's command line ("NAME arg ...") as its parameter page carries it
 * (user/win32.c): args[0] its length in bytes, the bytes from args[1], cut to fit `max`
 * slots.  Returns the slots used, for PsCreateProcess's nargs. */
uint32_t userprog_pack_cmdline(const char *cmdline, uint64_t *args, uint32_t max);
/* Check the ELF (64-bit x86-64 executable, segments inside the file and the user half, not
 * overlapping) and list its loadable segments; false when it is not one we run. */
bool userprog_parse(const struct user_program *prog, struct elf_image *out);

#endif
