/* The boot-time patching of the STAC and CLAC sites on a CPU without SMAP (kernel/smap_sites.h). */
#include "kernel/smap_sites.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/lib.h"

const uint8_t smap_insn_stac[SMAP_SITE_LEN] = { 0x0F, 0x01, 0xCB };
const uint8_t smap_insn_clac[SMAP_SITE_LEN] = { 0x0F, 0x01, 0xCA };
const uint8_t smap_insn_nop[SMAP_SITE_LEN] = { 0x0F, 0x1F, 0x00 };

static bool patched;

bool smap_sites_patched(void) { return patched; }

/* The site's frame through the loader's direct map (RW, NX): the text's own mapping is never
 * made writable (W^X, mm/RULES.md). */
static uint8_t *writable_alias(const struct mdlab_bootinfo *bi, uint8_t *site)
{
	return (uint8_t *)(MDLAB_DIRECT_MAP_BASE + bi->kernel_phys_base + ((uint64_t)site - bi->kernel_virt_base));
}

unsigned smap_sites_patch(const struct mdlab_bootinfo *bi)
{
	if (cpu_features.smap)
		return 0;
	unsigned n = 0;
	for (const int32_t *e = __smap_sites_start; e < __smap_sites_end; e++, n++)
		memcpy(writable_alias(bi, smap_site(e)), smap_insn_nop, SMAP_SITE_LEN);
	/* Code written through another linear address and then run: a serializing instruction
	 * between the two (SDM Vol. 3, 9.1.3 "Handling Self- and Cross-Modifying Code"). */
	uint32_t a, b, c, d;
	cpuid(0, 0, &a, &b, &c, &d);
	patched = true;
	return n;
}
