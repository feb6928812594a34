/*
 * The virtual address layout (README "Memory map").  One PML4 slot is 512 GiB.
 *
 *   0x0000000000000000 - 0x00007FFFFFFFFFFF  user half, one per process (kernel/process.c)
 *   0xFFFF800000000000 - 0xFFFFBFFFFFFFFFFF  direct map of physical RAM (slots 256-383):
 *                                             RW, NX, global, WB unless a frame's type says
 *                                             otherwise; 1 GiB / 2 MiB pages where a whole
 *                                             large page is RAM
 *   0xFFFFC00000000000 - 0xFFFFC07FFFFFFFFF  system PTEs: MDL mappings (slot 384)
 *   0xFFFFC08000000000 - 0xFFFFC0FFFFFFFFFF  nonpaged pool (slot 385)
 *   0xFFFFC10000000000 - 0xFFFFC17FFFFFFFFF  kernel stacks, each under an unmapped guard page
 *                                             (slot 386)
 *   0xFFFFC18000000000 - 0xFFFFC1FFFFFFFFFF  scratch mappings for the self-tests (slot 387)
 *   0xFFFFC20000000000 - 0xFFFFC27FFFFFFFFF  device registers: the local APIC's page, then
 *                                            the IO-APICs' pages, UC
 *                                             (slot 388)
 *   0xFFFFE00000000000 - 0xFFFFE07FFFFFFFFF  never mapped: a known-unmapped address (slot 448)
 *   0xFFFFFFFF80000000 - ...                 the kernel image (slot 511): text R+X,
 *                                             rodata R+NX, data/bss RW+NX
 */
#ifndef MM_LAYOUT_H
#define MM_LAYOUT_H

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096ul
#define LARGE_PAGE_SIZE (2ul << 20)
#define HUGE_PAGE_SIZE (1ul << 30)

#define USER_VA_END 0x0000800000000000ul
/* The first address of system space (MmSystemRangeStart): the canonical kernel half. */
#define SYSTEM_VA_START 0xFFFF800000000000ul

/* The user range's limits, NT's x64 values.  Nothing is ever mapped in the first 64 KiB, so a
 * NULL pointer plus a small offset always faults (MM_LOWEST_USER_ADDRESS).  A 64-bit process
 * may use addresses up to MM_USER_TOP_64 (MM_HIGHEST_USER_ADDRESS), a 32-bit (WOW64) one up to
 * MM_USER_TOP_WOW64.  A UserMode probe accepts a range that ends at or below
 * MM_USER_PROBE_ADDRESS.  Reservations start on MM_ALLOCATION_GRANULARITY. */
#define MM_LOWEST_USER_ADDRESS 0x10000ul
#define MM_USER_TOP_64 0x00007FFFFFFEFFFFul
#define MM_USER_TOP_WOW64 0x7FFEFFFFul
#define MM_USER_PROBE_ADDRESS 0x00007FFFFFFF0000ul
#define MM_ALLOCATION_GRANULARITY 0x10000ul

#define KVA_DIRECT_MAP_BASE 0xFFFF800000000000ul
#define KVA_DIRECT_MAP_END 0xFFFFC00000000000ul
#define KVA_SYSPTE_BASE 0xFFFFC00000000000ul
#define KVA_SYSPTE_END 0xFFFFC08000000000ul
#define KVA_POOL_BASE 0xFFFFC08000000000ul
#define KVA_POOL_END 0xFFFFC10000000000ul
#define KVA_STACKS_BASE 0xFFFFC10000000000ul
#define KVA_STACKS_END 0xFFFFC18000000000ul
#define KVA_TEST_BASE 0xFFFFC18000000000ul
#define KVA_TEST_END 0xFFFFC20000000000ul
#define KVA_DEVICE_BASE 0xFFFFC20000000000ul
#define KVA_DEVICE_END 0xFFFFC28000000000ul
#define KVA_LAPIC KVA_DEVICE_BASE
#define KVA_IOAPIC (KVA_DEVICE_BASE + 0x1000ul) /* a page per IO-APIC (kernel/intr/ioapic.c) */
#define KVA_UNMAPPED_HOLE 0xFFFFE00000000000ul
#define KVA_KERNEL_IMAGE 0xFFFFFFFF80000000ul

#endif
