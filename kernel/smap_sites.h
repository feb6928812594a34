/*
 * STAC and CLAC that run on a CPU without SMAP.  Both are #UD there (SDM Vol. 2B, CLAC/STAC:
 * CPUID.(EAX=7,ECX=0):EBX.SMAP[bit 20] = 0), and the kernel runs on such CPUs with SMAP off
 * (mm/kspace.c).  So every STAC and CLAC of the kernel is written through SMAP_STAC/SMAP_CLAC
 * here (C) or the macros of kernel/smap_sites.inc (NASM), which record the instruction's
 * address in the .smap_sites table, and smap_sites_patch() turns each into a 3-byte NOP at
 * boot when the CPU has no SMAP (mm/RULES.md, "CPU entry points").  A raw stac or clac
 * anywhere else is refused by scripts/check_layout.py (smap-sites-only), so the table is
 * complete by construction.
 */
#ifndef KERNEL_SMAP_SITES_H
#define KERNEL_SMAP_SITES_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/bootinfo.h"

/* One table entry: a 32-bit offset from the entry to its instruction (the kernel is linked in
 * the top 2 GiB, so every offset fits), 4-byte aligned, in the allocated, read-only
 * .smap_sites section that linker.ld keeps between __smap_sites_start and _end. */
#define SMAP_SITE(insn)                                                                   \
	"661:\n\t" insn "\n\t"                                                            \
	".pushsection .smap_sites, \"a\"\n\t"                                             \
	".balign 4\n\t"                                                                   \
	".long 661b - .\n\t"                                                              \
	".popsection\n\t"

#define SMAP_STAC() __asm__ volatile(SMAP_SITE("stac") ::: "memory")
#define SMAP_CLAC() __asm__ volatile(SMAP_SITE("clac") ::: "memory")

/* The instructions' bytes, and what a site holds once patched (NOP DWORD [RAX], 0F 1F 00). */
#define SMAP_SITE_LEN 3
extern const uint8_t smap_insn_stac[SMAP_SITE_LEN], smap_insn_clac[SMAP_SITE_LEN],
	smap_insn_nop[SMAP_SITE_LEN];

/* The table. */
extern const int32_t __smap_sites_start[], __smap_sites_end[];
static inline uint8_t *smap_site(const int32_t *entry) { return (uint8_t *)entry + *entry; }

/* On the boot CPU, before any exception or interrupt can reach an entry stub, before any
 * user access and before the APs start, on the loader's page tables (whose direct map is
 * writable: the kernel's own make the image's alias read-only, mm/kspace.c): when
 * cpu_features says no SMAP, overwrite every site with the NOP through the direct-map alias
 * of its frame, then serialize.  Returns the number of sites patched (0 on a CPU with SMAP). */
unsigned smap_sites_patch(const struct mdlab_bootinfo *bi);

/* Whether the sites were patched at boot. */
bool smap_sites_patched(void);

#endif
