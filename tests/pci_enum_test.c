/*
 * PCI enumeration (kernel/pci): the virtio-blk function make test attaches is found, with
 * its BARs sized, and mapped uncached by pci_map_bars, proven on the real page tables (the leaf's frame and
 * its PAT/PCD/PWT memory type decoded by tests/lib/pte.h); its MSI-X table entry holds the
 * message msi_compose gives, read back from the device.
 */
#include "kernel/ktest.h"
#include "tests/lib/counters.h"
#include "tests/lib/pte.h"
#include "kernel/intr/ioapic.h"
#include "kernel/lib.h"
#include "kernel/pci/pci.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/smp.h"
#include "mm/pool.h"

#define VIRTIO_VENDOR 0x1AF4
#define VIRTIO_BLK_MODERN 0x1042 /* 0x1040 + device ID 2 (virtio 1.x, 4.1.2.1) */

struct counts {
	uint64_t frames, sysptes, locked, pool_bytes;
};
static struct counts counts_now(void)
{
	struct pool_stats s;
	pool_get_stats(&s);
	return (struct counts){ mmt_free_frames(), mmt_free_sysptes(), mmt_locked_frames(), s.bytes_in_use };
}
static void expect_counts(struct ktest *t, struct counts a)
{
	struct counts b = counts_now();
	EXPECT_EQ(t, b.frames, a.frames);
	EXPECT_EQ(t, b.sysptes, a.sysptes);
	EXPECT_EQ(t, b.locked, a.locked);
	EXPECT_EQ(t, b.pool_bytes, a.pool_bytes);
}

static void finds_the_virtio_blk_function_through_ecam(struct ktest *t)
{
	struct counts c = counts_now();
	EXPECT_TRUE(t, !strcmp(pci_access_method(), "ecam")); /* q35 has an MCFG */
	struct pci_function *f = pci_find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, NULL);
	ASSERT_TRUE(t, f != NULL);
	EXPECT_EQ(t, f->class_code, 0x01u); /* mass storage */
	EXPECT_EQ(t, (uint32_t)pci_read16(f, 0), (uint32_t)VIRTIO_VENDOR);
	EXPECT_EQ(t, (uint32_t)pci_read16(f, 2), (uint32_t)VIRTIO_BLK_MODERN);
	EXPECT_TRUE(t, pci_find_capability(f, PCI_CAP_VENDOR, 0) != 0); /* virtio's structures */
	EXPECT_TRUE(t, f->msix_cap != 0 && f->msix_entries >= 2);
	/* The host bridge, 00:00.0, is found first. */
	ASSERT_TRUE(t, pci_function_at(0) != NULL);
	EXPECT_EQ(t, pci_function_at(0)->bus + pci_function_at(0)->dev + pci_function_at(0)->fn, 0);
	expect_counts(t, c);
}

static void memory_bars_are_sized_and_mapped_uncached(struct ktest *t)
{
	struct counts c = counts_now();
	struct pci_function *f = pci_find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, NULL);
	ASSERT_TRUE(t, f != NULL);
	ASSERT_TRUE(t, pci_map_bars(f));
	unsigned mapped = 0;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		const struct pci_bar *b = &f->bar[i];
		if (b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64)
			continue;
		EXPECT_TRUE(t, b->size >= PAGE_SIZE && !(b->size & (b->size - 1))); /* a power of two */
		EXPECT_EQ(t, b->phys & (b->size - 1), 0u);                           /* naturally aligned */
		ASSERT_TRUE(t, b->va != NULL);
		for (uint64_t off = 0; off < b->size; off += PAGE_SIZE) {
			struct mmt_rights r;
			EXPECT_EQ(t, mmt_encoding_at((uint64_t)b->va + off, &r), MMT_ENC_UC);
			EXPECT_TRUE(t, r.present && r.write && !r.user && r.nx);
			EXPECT_EQ(t, mmt_frame_of((uint64_t)b->va + off), (b->phys + off) >> PAGE_SHIFT);
		}
		/* The BAR register still holds the address (sizing restored it), decoding on. */
		uint32_t lo = pci_read32(f, 0x10 + i * 4) & ~0xFu;
		EXPECT_EQ(t, lo, (uint32_t)b->phys);
		mapped++;
	}
	EXPECT_TRUE(t, mapped >= 1);
	EXPECT_TRUE(t, pci_read16(f, PCI_COMMAND) & PCI_COMMAND_MEMORY);
	uint64_t va = (uint64_t)f->bar[4].va;
	pci_unmap_bars(f);
	for (unsigned i = 0; i < PCI_BARS; i++)
		EXPECT_TRUE(t, f->bar[i].va == NULL);
	if (va)
		EXPECT_EQ(t, mmt_encoding_at(va, NULL), MMT_ENC_UNMAPPED);
	expect_counts(t, c);
}

static void msix_entry_holds_the_composed_message(struct ktest *t)
{
	struct counts c = counts_now();
	struct pci_function *f = pci_find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, NULL);
	ASSERT_TRUE(t, f != NULL);
	unsigned cpu = smp_cpus_online() > 1 ? 1 : 0;
	uint8_t vector = VEC_DEVICE_FIRST + 5;
	EXPECT_FALSE(t, pci_msix_route(f, 1, vector, cpu)); /* the table's BAR is not mapped */
	ASSERT_TRUE(t, pci_map_bars(f));
	ASSERT_TRUE(t, pci_msix_route(f, 1, vector, cpu));
	uint64_t addr;
	uint32_t data, ctl;
	ASSERT_TRUE(t, pci_msix_read(f, 1, &addr, &data, &ctl));
	struct msi_message m = msi_compose(vector, cpu);
	EXPECT_EQ(t, addr, m.address);
	EXPECT_EQ(t, data, m.data);
	EXPECT_EQ(t, ctl & 1, 0u); /* unmasked */
	EXPECT_TRUE(t, pci_read16(f, f->msix_cap + 2) & 0x8000);
	EXPECT_FALSE(t, pci_msix_route(f, f->msix_entries, vector, cpu)); /* past the table */
	/* Masked again: the device has no queue to signal with it yet. */
	volatile uint32_t *e = (volatile uint32_t *)((uint8_t *)f->bar[pci_read32(f, f->msix_cap + 4) & 7].va +
						     (pci_read32(f, f->msix_cap + 4) & ~7u) + 16);
	e[3] |= 1;
	pci_unmap_bars(f);
	expect_counts(t, c);
}

static struct ktest_case pci_enum_cases[] = {
	KTEST_CASE(finds_the_virtio_blk_function_through_ecam),
	KTEST_CASE(memory_bars_are_sized_and_mapped_uncached),
	KTEST_CASE(msix_entry_holds_the_composed_message),
	{ 0 }
};
KTEST_SUITE(pci_enum, pci_enum_cases);
