/*
 * The STAC/CLAC site table (kernel/smap_sites.h), read against the text the CPU runs.  Every
 * entry must point into the kernel's text at a STAC or CLAC on a CPU with SMAP, and at the
 * 3-byte NOP on one without (the boot patched them all, and only them).  The table is
 * complete by construction (scripts/check_layout.py refuses a raw stac or clac outside the
 * macros); the byte scan here lists, as diagnostics, any 0F 01 CA/CB of the text that is not
 * a site: such bytes may be part of another instruction, so they are reported, not judged.
 */
#include "kernel/ktest.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/ksym.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smap_sites.h"
#include "mm/mm.h"

extern char __text_start[], __text_end[];

static bool in_text(const uint8_t *p)
{
	return p >= (uint8_t *)__text_start && p + SMAP_SITE_LEN <= (uint8_t *)__text_end;
}

static bool is_listed(const uint8_t *p)
{
	for (const int32_t *e = __smap_sites_start; e < __smap_sites_end; e++)
		if (smap_site(e) == p)
			return true;
	return false;
}

/* Every entry: in the text, at the instruction the CPU may run (STAC/CLAC with SMAP, the NOP
 * without), and no two entries at one site.  The entry stubs' two CLACs and the user-access
 * window's STAC and CLAC are at least four. */
static void every_entry_is_a_site_in_the_text(struct ktest *t)
{
	unsigned n = 0, stac = 0, clac = 0;
	EXPECT_EQ(t, smap_sites_patched(), !cpu_features.smap);
	for (const int32_t *e = __smap_sites_start; e < __smap_sites_end; e++, n++) {
		const uint8_t *p = smap_site(e);
		ASSERT_TRUE(t, in_text(p));
		for (const int32_t *f = __smap_sites_start; f < e; f++)
			ASSERT_TRUE(t, smap_site(f) != p);
		if (!cpu_features.smap) {
			ASSERT_EQ(t, memcmp(p, smap_insn_nop, SMAP_SITE_LEN), 0);
			continue;
		}
		stac += !memcmp(p, smap_insn_stac, SMAP_SITE_LEN);
		clac += !memcmp(p, smap_insn_clac, SMAP_SITE_LEN);
	}
	EXPECT_TRUE(t, n >= 4);
	if (cpu_features.smap) {
		EXPECT_EQ(t, stac + clac, n);
		EXPECT_TRUE(t, stac >= 1 && clac >= 3);
	}
}

/* The scan: every listed site is found by it on a CPU with SMAP (none of them on one
 * without: all patched), and the unlisted matches are printed with their symbols. */
static void the_texts_stac_clac_bytes_are_the_listed_sites(struct ktest *t)
{
	unsigned listed = 0, unlisted = 0;
	for (const uint8_t *p = (uint8_t *)__text_start; in_text(p); p++) {
		if (p[0] != 0x0F || p[1] != 0x01 || (p[2] != 0xCA && p[2] != 0xCB))
			continue;
		if (is_listed(p)) {
			listed++;
			continue;
		}
		uint64_t off = 0;
		const char *sym = ksym_lookup((uint64_t)p, &off);
		kprintf("# smap_sites: %02x %02x %02x at 0x%lx (%s+0x%lx) is not a site: inside another "
			"instruction, or a raw stac/clac\n", p[0], p[1], p[2], (uint64_t)p, sym ? sym : "?", off);
		unlisted++;
	}
	EXPECT_EQ(t, listed, cpu_features.smap ? (unsigned)(__smap_sites_end - __smap_sites_start) : 0u);
	kprintf("# smap_sites: %u sites, %u unlisted byte matches in the text\n",
		(unsigned)(__smap_sites_end - __smap_sites_start), unlisted);
}

/* The sites run: a user-access window opened and closed sets and clears AC on a CPU with
 * SMAP; on one without, the NOPs leave AC alone (a STAC left in place would be #UD here). */
static void a_user_access_window_opens_and_closes(struct ktest *t)
{
	user_access_begin();
	bool ac = read_rflags() & RFLAGS_AC;
	user_access_end();
	EXPECT_EQ(t, ac, cpu_features.smap);
	EXPECT_FALSE(t, read_rflags() & RFLAGS_AC);
}

static struct ktest_case smap_sites_cases[] = {
	KTEST_CASE(every_entry_is_a_site_in_the_text),
	KTEST_CASE(the_texts_stac_clac_bytes_are_the_listed_sites),
	KTEST_CASE(a_user_access_window_opens_and_closes),
	{ 0 },
};
KTEST_SUITE(smap_sites, smap_sites_cases);
