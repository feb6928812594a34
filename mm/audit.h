/*
 * Audits of an address space, read from its real page tables (never from bookkeeping).
 *
 *   W^X:        no leaf is writable and executable at once (effective rights across levels),
 *               and no leaf in the kernel half (va >= KVA_DIRECT_MAP_BASE) is user-accessible
 *               — effectively, or by the U/S bit of the leaf itself (a kernel-half leaf with
 *               U/S set is one table-entry bug away from user access).
 *   memory types: no physical frame is reachable through two mappings of different effective
 *               memory types (x86-paging.md: two types for one page is undefined behaviour;
 *               mm/RULES.md decision 1: one type per frame, the direct map included).
 *   PFN records: every RAM frame the tables map with one type has that type recorded in its
 *               PFN entry (pfn_entry.memtype); frames already caught by the memory-type audit
 *               are not reported again.
 *   W^X across mappings and privilege levels: no frame is executable in ring 0 while any
 *               mapping (ring 0 or ring 3) can write it, and no frame is executable in ring 3
 *               while a ring-3 mapping can write it.  The walk covers the tables given and the
 *               user half of every live process (mm_live_processes).  The kernel's direct
 *               map is writable and never executable: it makes no finding on a user code page
 *               (ring 3 cannot write through it), and the image's text is read-only there.
 *
 * Each audit returns its number of findings; with `print`, each finding is printed on the
 * console (a long list is cut short; the count stays exact).  The frame audits keep one
 * byte per frame of scratch, taken from the page allocator and given back before they
 * return; if the scratch cannot be had, the audit reports that as one finding (an audit
 * that did not run must not pass).  Not reentrant (one CPU, no interrupts in mdlab).
 */
#ifndef MM_AUDIT_H
#define MM_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include "mm/pfn.h"
#include "mm/pt.h"

uint64_t mm_audit_wx(const struct pt_root *r, bool print);
/* The same audit; *first_va receives the start of the first offending leaf in address
 * order (unchanged when there is none). */
uint64_t mm_audit_wx_first(const struct pt_root *r, bool print, uint64_t *first_va);

uint64_t mm_audit_memtypes(const struct pt_root *r, bool print);
/* The same audit; *first_pfn receives the first frame found with a second type, in the
 * order of the walk (unchanged when there is none). */
uint64_t mm_audit_memtypes_first(const struct pt_root *r, bool print, pfn_t *first_pfn);

uint64_t mm_audit_pfn_memtypes(const struct pt_root *r, bool print);
/* The same audit; *first_pfn receives the lowest frame whose record disagrees. */
uint64_t mm_audit_pfn_memtypes_first(const struct pt_root *r, bool print, pfn_t *first_pfn);

uint64_t mm_audit_wx_aliases(const struct pt_root *r, bool print);

/* End of boot: run the W^X, memory-type and PFN-record audits on the kernel's tables, print one line when all pass, else
 * print the findings and PANIC. */
void mm_audit_boot(void);

#endif
