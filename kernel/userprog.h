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
/* Check the ELF (64-bit x86-64 executable, segments inside the file and the user half, not
 * overlapping) and list its loadable segments; false when it is not one we run. */
bool userprog_parse(const struct user_program *prog, struct elf_image *out);

#endif
