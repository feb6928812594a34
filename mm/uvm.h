/*
 * User virtual memory: NtAllocateVirtualMemory / NtFreeVirtualMemory / NtProtectVirtualMemory
 * (and the Zw forms for drivers on NtCurrentProcess()), demand-zero committed pages, the
 * process's image/stack/params mappings and teardown.
 *
 * Committed private pages are demand-zero: no frame until first touched (a user #PF, or a
 * kernel probe, makes them resident).  PAGE_* protections map to PTE rights: NOACCESS (not
 * present), READONLY, READWRITE, EXECUTE(_READ) (R+X), EXECUTE_READWRITE refused (W^X).
 */
#ifndef MM_UVM_H
#define MM_UVM_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "mm/layout.h"
#include "mm/mmproc.h"

#define MEM_COMMIT 0x00001000
#define MEM_RESERVE 0x00002000
#define MEM_DECOMMIT 0x00004000
#define MEM_RELEASE 0x00008000

NTSTATUS ZwAllocateVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, ULONG_PTR ZeroBits, PSIZE_T RegionSize,
				 ULONG AllocationType, ULONG Protect);
NTSTATUS ZwFreeVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, PSIZE_T RegionSize, ULONG FreeType);
NTSTATUS ZwProtectVirtualMemory(HANDLE ProcessHandle, PVOID *BaseAddress, PSIZE_T RegionSize, ULONG NewProtect,
				PULONG OldProtect);
/* NtUnmapViewOfSection: no sections exist; an MDL mapping is not a view (mm/RULES.md decision 4). */
NTSTATUS ZwUnmapViewOfSection(HANDLE ProcessHandle, PVOID BaseAddress);

/* The same operations on an explicit process's memory: the Zw forms call them with
 * mm_current() (after the handle check, ZeroBits 0 only); tests call them directly.  *base and *size are
 * written back only on success. */
NTSTATUS uvm_allocate(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type, ULONG protect);
NTSTATUS uvm_free(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG type);
/* For tests only: called by uvm_free under the address-space lock, after the range was found
 * free of locked pages and before its frames go (tests/smp_space_lock_test.c holds another
 * CPU's probe off there).  NULL normally. */
extern void (*uvm_test_free_window)(struct mm_process *mm, uint64_t start, uint64_t end);
NTSTATUS uvm_protect(struct mm_process *mm, uint64_t *base, uint64_t *size, ULONG protect, ULONG *old);
NTSTATUS uvm_unmap_view(struct mm_process *mm, uint64_t base);

/* A #PF at va (error code `err`) in mm's address space: make a committed demand-zero page
 * resident, bring a trimmed one back, and return STATUS_SUCCESS (the access is retried); when
 * it is not resolved, the reason: STATUS_ACCESS_VIOLATION (a real access violation), or
 * STATUS_IN_PAGE_ERROR when the page's read from the pagefile failed (mm/RULES.md,
 * "Paging"), *io then the device's status of that read (the in-page error's third exception
 * parameter: this fault's own, whatever another CPU's read did).  `intr`: the faulting code's
 * RFLAGS.IF (its trap frame's). */
NTSTATUS uvm_resolve_fault_status(struct mm_process *mm, uint64_t va, uint64_t err, bool intr, NTSTATUS *io);
/* uvm_resolve_fault_status's answer for a fault on a trimmed page (transition or pagefile)
 * at DISPATCH_LEVEL or above, or by code that ran with interrupts off (`intr` false: a wait
 * for the page would turn them on under it, mm/RULES.md "Paging"), which nothing may
 * resolve: the #PF handler stops with 0x0A IRQL_NOT_LESS_OR_EQUAL.  NT's own internal value
 * for it (STATUS_IN_PAGE_ERROR | 0x10000000). */
#define UVM_STATUS_PAGEABLE_AT_DISPATCH ((NTSTATUS)0xD0000006)
/* The IRQL parameter of that 0x0A for code with interrupts off, as Windows reports a fault
 * taken with interrupts disabled. */
#define UVM_IRQL_INTERRUPTS_OFF 0xFFu
/* Where and why a residency call stopped short of the whole range: `status`
 * STATUS_IN_PAGE_ERROR when a page's read from the pagefile failed (`io` then the device's
 * status of that read, the in-page error's third exception parameter: this call's own), else
 * STATUS_ACCESS_VIOLATION; `va` the page it stopped at.  STATUS_SUCCESS when it did not. */
struct uvm_resident_stop {
	NTSTATUS status, io;
	uint64_t va;
};
/* Make [va, va + len) resident for a probe (demand-zero pages get frames): STATUS_SUCCESS,
 * or *stop's status (stop may be NULL): a page not committed or lacking the access,
 * STATUS_ACCESS_VIOLATION; a pagefile read that failed, STATUS_IN_PAGE_ERROR. */
NTSTATUS uvm_make_resident_status(struct mm_process *mm, uint64_t va, uint64_t len, bool write,
				  struct uvm_resident_stop *stop);
/* The same for the n pages from page (page-aligned): how many of them, from the first,
 * are resident with the access afterwards (n when all are); *stop says where and why it
 * stopped short. */
uint64_t uvm_make_resident_pages_status(struct mm_process *mm, uint64_t page, uint64_t n, bool write,
					struct uvm_resident_stop *stop);

/* Paging (mm/RULES.md, "Paging").  uvm_trim: every resident page of mm's VAD_PRIVATE ranges
 * whose frame no lock holds leaves the working set (transition PTE, frame on the modified
 * list); `trimmed` counts them, `kept_locked` the locked ones left valid. */
struct uvm_trim_result {
	uint64_t trimmed, kept_locked;
};
void uvm_trim(struct mm_process *mm, struct uvm_trim_result *res);
/* uvm_working_set counts mm's private pages by their PTE: valid (the working set), in
 * transition, in the pagefile. */
struct uvm_ws_counts {
	uint64_t valid, transition, pagefile;
};
void uvm_working_set(struct mm_process *mm, struct uvm_ws_counts *out);
/* Memory pressure (mm/RULES.md, "Paging"): every live process and paged pool trimmed, then
 * the modified page writer run; returns the pages now on the standby list (the allocator
 * repurposes them).  Only below DISPATCH_LEVEL with interrupts on and no ranked lock held
 * (kcpu.klock_held 0), not inside the writer and not again on a CPU already relieving: there
 * it does nothing and returns 0.  When the writer could write nothing (no pagefile, or a full
 * one) it trims nothing either and returns the standby count at once.  While another CPU
 * relieves it waits for that one and does not trim again.  The
 * frame allocator calls it before it fails (pfn_set_pressure_relief); a caller that holds a
 * lock when its allocation fails drops it, calls this, and retries once. */
uint64_t uvm_relieve_pressure(void);
struct uvm_paging_stats {
	uint64_t soft_faults, hard_faults, collided_faults, inpage_errors, trimmed;
	uint64_t reliefs; /* uvm_relieve_pressure runs that trimmed and wrote */
	uint64_t relief_waits; /* uvm_relieve_pressure calls that found another CPU relieving and waited */
};
void uvm_get_paging_stats(struct uvm_paging_stats *out);

/* Map `npages` frames at va as a VAD of `kind` with the given rights (image, stack,
 * params); false when out of memory, nothing left behind. */
bool uvm_map_frames(struct mm_process *mm, uint64_t va, const uint64_t *pfns, uint64_t npages, int kind,
		    bool write, bool exec);
/* Free every user page and VAD of mm, and its user page tables (the PML4 stays). */
void uvm_destroy(struct mm_process *mm);

/* Copy between kernel and user memory through the SMAP window, validating the range
 * (below the current process's highest user address, no wrap); STATUS_ACCESS_VIOLATION on a bad or
 * faulting range. */
NTSTATUS copy_from_user(void *dst, uint64_t user_src, uint64_t len);
NTSTATUS copy_to_user(uint64_t user_dst, const void *src, uint64_t len);
/* The same against mm's limits (mm must be the address space loaded). */
NTSTATUS uvm_copy_from_user(struct mm_process *mm, void *dst, uint64_t user_src, uint64_t len);
NTSTATUS uvm_copy_to_user(struct mm_process *mm, uint64_t user_dst, const void *src, uint64_t len);

#endif
