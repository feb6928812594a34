/*
 * Helpers shared by the tests that check the memory manager against the hardware (the
 * mm_*, mdl_*, pool, syspte, uvm, io and tour suites, ...).
 *
 * The tests prove rules by hardware, so these helpers do two things only:
 *   - make one real access (load, store, call) inside __try and report the fault the CPU
 *     raised: vector, #PF error code, CR2, RIP;
 *   - decode raw page-table entries and the IA32_PAT MSR with the tests' own copy of the
 *     architectural bit positions (SDM Vol. 3, 4.5 and 13.12), independent of mm/pt.c and
 *     mm/pat.c, which are the code under test.
 */
#ifndef TESTS_MM_TEST_UTIL_H
#define TESTS_MM_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/ntdef.h"
#include "kernel/trap.h"
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

#define MMT_MSR_PAT 0x277u

/*
 * Scratch virtual addresses, one 1 GiB slot of the test region per use so that no two
 * tests share a page table by accident.  Slot n starts at KVA_TEST_BASE + n GiB.
 *   16-31 mm_fault, 32-47 mm_pat, 48-63 mm_pt, 64-79 mm_pfn.
 * User-half addresses (SMAP/SMEP, table pruning) use MMT_USER_VA(n), n GiB into PML4
 * slot 200 of the user half, which nothing else maps in the kernel's tables.
 */
#define MMT_TEST_VA(n) (KVA_TEST_BASE + (uint64_t)(n) * HUGE_PAGE_SIZE)
#define MMT_USER_VA(n) (200ull * (512ull << 30) + (uint64_t)(n) * HUGE_PAGE_SIZE)

/* What one access did. */
struct mmt_fault {
	bool faulted;
	bool from_cpu;      /* the exception came from a CPU fault (trap frame valid) */
	NTSTATUS status;
	uint64_t vector, error_code, cr2, rip;
};

/* One instruction each, located at the symbol itself, so a fault's RIP is known exactly:
 * mmt_load8 is `movzbl (%rdi), %eax`, mmt_store8 is `movb %sil, (%rdi)`. */
uint8_t mmt_load8(uint64_t va);
void mmt_store8(uint64_t va, uint8_t v);

/* Make the access inside __try.  True when it completed; false when it faulted, with the
 * fault in *f (zeroed first either way). */
bool mmt_try_load8(uint64_t va, uint8_t *out, struct mmt_fault *f);
bool mmt_try_store8(uint64_t va, uint8_t v, struct mmt_fault *f);
/* Call the code at va (the tests put a `ret` there). */
bool mmt_try_call(uint64_t va, struct mmt_fault *f);

/* EXPECT a #PF with this exact error code and CR2 (a macro, so failures name the caller's
 * line). */
#define EXPECT_PAGE_FAULT(t, f, code, addr)                                 \
	do {                                                                \
		EXPECT_TRUE(t, (f)->faulted && (f)->from_cpu);              \
		EXPECT_EQ(t, (f)->vector, VEC_PAGE_FAULT);                  \
		EXPECT_EQ(t, (f)->error_code, (code));                      \
		EXPECT_EQ(t, (f)->cr2, (addr));                             \
	} while (0)

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
/* The SDM's encoding of a memory type (0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC-). */
unsigned mmt_type_encoding(enum memtype t);
const char *mmt_type_name(enum memtype t);

/* The rights a translation grants across all its levels, from the raw entries pt_query
 * returned (RW and US ANDed, NX ORed, SDM Vol. 3, 4.6). */
struct mmt_rights {
	bool present, write, user, nx;
	int level;
	uint64_t leaf;
	uint64_t pa;  /* the physical address va translates to */
};
struct mmt_rights mmt_rights_of(uint64_t va);

/* Whether nothing at all maps va in the kernel's tables (pt_query walk stops short). */
bool mmt_va_unmapped(uint64_t va);
/* Whether a frame is on a free list. */
bool mmt_frame_is_free(pfn_t pfn);

/*
 * Take free frames until only `leave` are free, chaining them through their own first
 * eight bytes (each holds the previous frame number).  Returns the chain's head
 * (PFN_INVALID when nothing was taken) and the count in *taken.  mmt_release_frames gives
 * the whole chain back.
 */
pfn_t mmt_hog_frames(uint64_t leave, uint64_t *taken);
uint64_t mmt_release_frames(pfn_t head);

#endif
