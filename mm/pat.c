#include "mm/pat.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/cpufeat.h"
#include "kernel/smp/smp.h"
#include "mm/pt.h"
#include "mm/tlb.h"

/* Slot -> encoding, the layout described in pat.h. */
static const uint8_t layout[8] = {
	PAT_ENC_WB, PAT_ENC_WT, PAT_ENC_UCMINUS, PAT_ENC_UC,
	PAT_ENC_WB, PAT_ENC_WC, PAT_ENC_WP,      PAT_ENC_UC,
};
/* Type -> canonical slot. */
static const uint8_t canonical_slot[MT_COUNT] = {
	[MT_WB] = 0, [MT_WT] = 1, [MT_UCMINUS] = 2, [MT_UC] = 3, [MT_WC] = 5, [MT_WP] = 6,
};
static const char *const names[MT_COUNT] = {
	[MT_WB] = "WB", [MT_WT] = "WT", [MT_UCMINUS] = "UC-", [MT_UC] = "UC", [MT_WC] = "WC", [MT_WP] = "WP",
};

const char *memtype_name(enum memtype t)
{
	if (t == MT_NONE)
		return "none";
	return t < MT_COUNT ? names[t] : "?";
}

enum memtype pat_encoding_type(unsigned enc)
{
	switch (enc) {
	case PAT_ENC_UC: return MT_UC;
	case PAT_ENC_WC: return MT_WC;
	case PAT_ENC_WT: return MT_WT;
	case PAT_ENC_WP: return MT_WP;
	case PAT_ENC_WB: return MT_WB;
	case PAT_ENC_UCMINUS: return MT_UCMINUS;
	default: return MT_NONE; /* reserved */
	}
}

int pat_type_encoding(enum memtype t)
{
	static const int8_t enc[MT_COUNT] = {
		[MT_WB] = PAT_ENC_WB, [MT_WT] = PAT_ENC_WT, [MT_UCMINUS] = PAT_ENC_UCMINUS,
		[MT_UC] = PAT_ENC_UC, [MT_WC] = PAT_ENC_WC, [MT_WP] = PAT_ENC_WP,
	};
	return t < MT_COUNT ? enc[t] : -1;
}

uint64_t pat_mdlab_value(void)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)layout[i] << (8 * i);
	return v;
}

/* The MSR as last read back after a write: decoding a PTE's slot should not cost an RDMSR
 * (a VM exit under KVM) per entry. */
static uint64_t pat_current = 0x0007040600070406ull; /* power-on value until pat_init */

uint64_t pat_read_msr(void) { return rdmsr(MSR_PAT); }

/* One CPU's part of a PAT change (SDM Vol. 3, 13.12.4 / 13.11.7.2): interrupts off, caches
 * written back and this CPU's TLB flushed around the write, so no line or translation of the
 * old type survives.  The TLB flush must take global entries too (13.11.8: clear CR4.PGE, or
 * reload CR3 when PGE is off).  In a cross-call, so the flushes are this CPU's alone. */
static void pat_write_here(void *arg)
{
	uint64_t value = *(const uint64_t *)arg;
	uint64_t flags = read_rflags();
	__asm__ volatile("cli");
	__asm__ volatile("wbinvd" ::: "memory");
	tlb_flush_all_local();
	wrmsr(MSR_PAT, value);
	__asm__ volatile("wbinvd" ::: "memory");
	tlb_flush_all_local();
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti");
}

bool pat_write_msr(uint64_t value)
{
	for (int i = 0; i < 8; i++) {
		uint64_t enc = (value >> (8 * i)) & 0xFF;
		if (enc > 7 || pat_encoding_type((unsigned)enc) == MT_NONE)
			return false;
	}
	/* Every CPU, this one first: the SDM wants the same PAT everywhere (13.12.4). */
	if (!smp_call_mask(smp_others_mask() | 1ull << smp_this_cpu(), pat_write_here, &value))
		PANIC("pat_write_msr: a CPU did not take IA32_PAT 0x%lx", value);
	pat_current = rdmsr(MSR_PAT);
	return true;
}

void pat_init_ap(void)
{
	/* The same procedure, on this CPU only: the others have the value already. */
	uint64_t v = pat_current;
	pat_write_here(&v);
}

void pat_init(void)
{
	if (!cpu_features.pat)
		PANIC("pat_init: the CPU has no PAT");
	uint64_t want = pat_mdlab_value();
	if (!pat_write_msr(want))
		PANIC("pat_init: the layout holds a reserved encoding");
	uint64_t got = pat_read_msr();
	if (got != want)
		PANIC("pat_init: IA32_PAT reads 0x%016lx after writing 0x%016lx", got, want);
}

struct pat_bits pat_bits_for(enum memtype t)
{
	if (t >= MT_COUNT)
		PANIC("pat_bits_for: no memory type %d", t);
	unsigned s = canonical_slot[t];
	return (struct pat_bits){ .pat = s & 4, .pcd = s & 2, .pwt = s & 1 };
}

int pat_slot(struct pat_bits b) { return (b.pat << 2) | (b.pcd << 1) | b.pwt; }

enum memtype pat_slot_type(int slot)
{
	return pat_encoding_type((pat_current >> (8 * (slot & 7))) & 0xFF);
}

enum memtype pat_type_of(struct pat_bits b) { return pat_slot_type(pat_slot(b)); }
