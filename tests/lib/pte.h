/*
 * The tests' own reading of the page tables and of IA32_PAT.
 *
 * A rule is proven by the real tables, never by the bookkeeping of the code under test, so
 * the tests decode raw entries with their own copy of the architectural bit positions
 * (SDM Vol. 3, 4.5 and 13.12), independent of mm/pt.c and mm/pat.c: pt_query is used only
 * to fetch the raw entries of a walk (entry[4..1]).
 */
#ifndef TESTS_LIB_PTE_H
#define TESTS_LIB_PTE_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/layout.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"

/* Entry bits, as the SDM defines them. */
#define MMT_PTE_P (1ull << 0)
#define MMT_PTE_RW (1ull << 1)
#define MMT_PTE_US (1ull << 2)
#define MMT_PTE_PWT (1ull << 3)
#define MMT_PTE_PCD (1ull << 4)
#define MMT_PTE_A (1ull << 5)
#define MMT_PTE_D (1ull << 6)
#define MMT_PTE_PS (1ull << 7)          /* levels 2 and 3 */
#define MMT_PTE_PAT_4K (1ull << 7)      /* level-1 leaves */
#define MMT_PTE_G (1ull << 8)
#define MMT_PTE_PAT_LARGE (1ull << 12)  /* level-2 and level-3 leaves */
#define MMT_PTE_NX (1ull << 63)
#define MMT_PTE_ADDR 0x000FFFFFFFFFF000ull
/* The rights bits a split must carry to every small leaf unchanged. */
#define MMT_PTE_RIGHTS (MMT_PTE_RW | MMT_PTE_US | MMT_PTE_NX | MMT_PTE_G)
/* Accessed and dirty: the CPU's to set, so never a routine's doing; masked off before two
 * entries are compared. */
#define MMT_PTE_AD (MMT_PTE_A | MMT_PTE_D)

#define MMT_MSR_PAT 0x277u

/* IA32_PAT encodings of the memory types (SDM Vol. 3, table 13-10). */
#define MMT_ENC_UC 0u
#define MMT_ENC_WC 1u
#define MMT_ENC_WT 4u
#define MMT_ENC_WP 5u
#define MMT_ENC_WB 6u
#define MMT_ENC_UCMINUS 7u
#define MMT_ENC_UNMAPPED 0xFFu  /* what mmt_encoding_at says when nothing maps the address */

/* Decoding raw entries. */
static inline bool mmt_has(uint64_t entry, uint64_t bit) { return (entry & bit) != 0; }
static inline uint64_t mmt_level_size(int level) { return 1ull << (12 + 9 * (level - 1)); }
/* Physical address a leaf of `level` maps (the 2M/1G PAT bit is not an address bit). */
uint64_t mmt_leaf_pa(uint64_t entry, int level);
/* PAT slot a leaf selects: PAT << 2 | PCD << 1 | PWT, PAT at bit 7 (4 KiB) or 12 (2M/1G). */
int mmt_leaf_slot(uint64_t entry, int level);
/* The 8-bit field of slot `slot` in an IA32_PAT value. */
unsigned mmt_pat_field(uint64_t msr, int slot);
/* The encoding the leaf's type has now: its slot looked up in IA32_PAT read by RDMSR. */
unsigned mmt_leaf_encoding(uint64_t entry, int level);
/* The SDM's encoding of a memory type (MMT_ENC_*), 0xFF for none. */
unsigned mmt_type_encoding(enum memtype t);
const char *mmt_type_name(enum memtype t);

/* The rights a translation grants across all its levels, from the raw entries pt_query
 * returned (RW and US ANDed, NX ORed, SDM Vol. 3, 4.6). */
struct mmt_rights {
	bool present, write, user, nx;
	int level;    /* of the leaf, or where the walk stopped */
	uint64_t leaf;
	uint64_t pa;  /* the physical address va translates to */
};
/* In the kernel's tables; in root's (a process's: mm.root). */
struct mmt_rights mmt_rights_of(uint64_t va);
struct mmt_rights mmt_rights_in(const struct pt_root *root, uint64_t va);

/* The encoding of the memory type the leaf mapping va in the kernel's tables selects,
 * MMT_ENC_UNMAPPED when nothing maps it; the translation in *r unless r is NULL. */
unsigned mmt_encoding_at(uint64_t va, struct mmt_rights *r);
/* The same for the frame's direct-map alias. */
unsigned mmt_alias_encoding(pfn_t pfn, struct mmt_rights *r);

/* Whether the kernel's tables translate va (or nothing maps it: the walk stops short). */
bool mmt_va_mapped(uint64_t va);
static inline bool mmt_va_unmapped(uint64_t va) { return !mmt_va_mapped(va); }
/* The frame the kernel's tables (root's) map va to, PFN_INVALID when nothing maps it. */
pfn_t mmt_frame_of(uint64_t va);
pfn_t mmt_frame_in(const struct pt_root *root, uint64_t va);
/* Whether r's tables map va, from the raw entries; *write: RW at every level (SDM Vol. 3,
 * 4.6). */
bool mmt_present_in(const struct pt_root *r, uint64_t va, bool *write);

/* NT's x64 software PTEs (MMPTE_TRANSITION, MMPTE_SOFTWARE: Windows Internals and the public
 * symbols), decoded here with the tests' own bit positions, not mm/pt.c's: Valid 0,
 * PageFileLow 1-4, Protection 5-9, Prototype 10, Transition 11, PageFrameNumber 12-47
 * (transition), PageFileHigh 32-63 (pagefile). */
#define MMT_SW_PROTOTYPE (1ull << 10)
#define MMT_SW_TRANSITION (1ull << 11)
static inline bool mmt_sw_is_transition(uint64_t e)
{
	return !(e & MMT_PTE_P) && !(e & MMT_SW_PROTOTYPE) && (e & MMT_SW_TRANSITION);
}
static inline uint64_t mmt_sw_transition_pfn(uint64_t e) { return (e >> 12) & ((1ull << 36) - 1); }
static inline bool mmt_sw_is_pagefile(uint64_t e)
{
	return !(e & MMT_PTE_P) && !(e & (MMT_SW_PROTOTYPE | MMT_SW_TRANSITION)) && (e >> 32);
}
static inline uint32_t mmt_sw_pagefile_high(uint64_t e) { return (uint32_t)(e >> 32); }
static inline unsigned mmt_sw_pagefile_low(uint64_t e) { return (unsigned)((e >> 1) & 0xF); }
static inline unsigned mmt_sw_protection(uint64_t e) { return (unsigned)((e >> 5) & 0x1F); }
/* The raw 4 KiB leaf of va in root's tables (valid or not), 0 when no page table holds it. */
uint64_t mmt_raw_pte_in(const struct pt_root *root, uint64_t va);

#endif
