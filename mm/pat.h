/*
 * The page attribute table: the only module that knows slot numbers.
 *
 * mdlab programs IA32_PAT as
 *     slot  0   1   2    3   4   5   6   7
 *     type  WB  WT  UC-  UC  WB  WC  WP  UC
 * Slots 0-3 keep their power-on meaning, so every entry written without the PAT bit — the
 * loader's tables, non-leaf entries, anything made before pat_init — means what it meant.
 * The two types the power-on value lacks, WC and WP, sit in slots 5 and 6; a PAT bit lost by
 * mistake turns them into WT and UC-, never into WB.  Each type has one canonical slot:
 * WB 0, WT 1, UC- 2, UC 3, WC 5, WP 6 (slots 4 and 7 are never produced, only decoded).
 */
#ifndef MM_PAT_H
#define MM_PAT_H

#include <stdbool.h>
#include <stdint.h>

enum memtype {
	MT_WB = 0,
	MT_WT,
	MT_UCMINUS,
	MT_UC,
	MT_WC,
	MT_WP,
	MT_COUNT,
	MT_NONE = 0xFF, /* a frame with no type yet (MmAllocatePagesForMdl's pages) */
};

/* IA32_PAT encodings (SDM Vol. 3, 13.12.2); 2 and 3 are reserved. */
#define PAT_ENC_UC 0
#define PAT_ENC_WC 1
#define PAT_ENC_WT 4
#define PAT_ENC_WP 5
#define PAT_ENC_WB 6
#define PAT_ENC_UCMINUS 7

/* The three PTE bits that select a slot: slot = pat << 2 | pcd << 1 | pwt. */
struct pat_bits {
	bool pat, pcd, pwt;
};

/* Program IA32_PAT with the layout above following the SDM's sequence, read it back and
 * check it; PANIC if the CPU has no PAT or the value does not stick. */
void pat_init(void);
/* An AP's start: the boot CPU's IA32_PAT on this CPU, before it touches a mapping that uses
 * slots 4-7 (the SDM wants one PAT value on every CPU: Vol. 3, 13.12.4). */
void pat_init_ap(void);
/* Validate and write a whole IA32_PAT value; false (nothing written) if any slot holds a
 * reserved encoding — TCG would accept it silently, hardware would #GP. */
bool pat_write_msr(uint64_t value);
uint64_t pat_read_msr(void);
/* The value pat_init programs. */
uint64_t pat_mdlab_value(void);

struct pat_bits pat_bits_for(enum memtype t);
int pat_slot(struct pat_bits b);
/* The type a slot holds in the MSR as it is now (read back, not assumed). */
enum memtype pat_slot_type(int slot);
/* The type selected by these bits, per the MSR as it is now. */
enum memtype pat_type_of(struct pat_bits b);
const char *memtype_name(enum memtype t);

/* Encoding <-> type, for the MSR. */
enum memtype pat_encoding_type(unsigned enc);
int pat_type_encoding(enum memtype t);

#endif
