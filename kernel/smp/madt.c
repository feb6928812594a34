/* The MADT reader (see madt.h). */
#include "kernel/smp/madt.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "mm/pfn.h"

struct sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem[6], oem_table[8];
	uint32_t oem_revision, creator, creator_revision;
} __attribute__((packed));

/* A table is usable when it lies in RAM the direct map covers and its bytes sum to 0. */
static const void *table_at(uint64_t pa, uint64_t len)
{
	if (!len || !pfn_is_ram(pa >> PAGE_SHIFT) || !pfn_is_ram((pa + len - 1) >> PAGE_SHIFT))
		return NULL;
	const uint8_t *p = phys_to_virt(pa);
	uint8_t sum = 0;
	for (uint64_t i = 0; i < len; i++)
		sum += p[i];
	return sum ? NULL : p;
}

static const struct sdt_header *sdt_at(uint64_t pa)
{
	if (!pfn_is_ram(pa >> PAGE_SHIFT))
		return NULL;
	const struct sdt_header *h = phys_to_virt(pa);
	if (h->length < sizeof *h || h->length > (1u << 20))
		return NULL;
	return table_at(pa, h->length);
}

/* The first table signed `sig` the RSDP's root table lists (ACPI 6.5, 5.2.5-5.2.8). */
static const struct sdt_header *find_table(uint64_t rsdp, const char *sig)
{
	const uint8_t *r = table_at(rsdp, 20); /* the ACPI 1.0 part has its own checksum */
	if (!r || memcmp(r, "RSD PTR ", 8))
		return NULL;
	bool xsdt = r[15] >= 2 && table_at(rsdp, 36);
	uint64_t root_pa = xsdt ? *(const uint64_t *)(r + 24) : *(const uint32_t *)(r + 16);
	const struct sdt_header *root = sdt_at(root_pa);
	if (!root || memcmp(root->signature, xsdt ? "XSDT" : "RSDT", 4))
		return NULL;
	unsigned width = xsdt ? 8 : 4, n = (root->length - sizeof *root) / width;
	const uint8_t *entries = (const uint8_t *)(root + 1);
	for (unsigned i = 0; i < n; i++) {
		uint64_t pa = xsdt ? *(const uint64_t *)(entries + i * 8)
				   : *(const uint32_t *)(entries + i * 4);
		const struct sdt_header *t = sdt_at(pa);
		if (t && !memcmp(t->signature, sig, 4))
			return t;
	}
	return NULL;
}

const void *acpi_find_table(uint64_t rsdp, const char *sig, uint32_t *length)
{
	const struct sdt_header *t = rsdp ? find_table(rsdp, sig) : NULL;
	if (t && length)
		*length = t->length;
	return t;
}

static void add_cpu(struct madt_info *out, uint32_t apic_id, uint32_t flags)
{
	if (!(flags & 3)) /* neither enabled nor online-capable */
		return;
	for (unsigned i = 0; i < out->ncpus; i++)
		if (out->apic_ids[i] == apic_id)
			return; /* the same CPU as a type-0 and a type-9 entry */
	if (out->ncpus == SMP_MAX_CPUS) {
		out->skipped++;
		return;
	}
	out->apic_ids[out->ncpus++] = apic_id;
}

bool madt_read(uint64_t rsdp, struct madt_info *out)
{
	memset(out, 0, sizeof *out);
	const struct sdt_header *m = rsdp ? find_table(rsdp, "APIC") : NULL;
	if (!m || m->length < sizeof *m + 8) {
		kprintf("smp: no usable ACPI MADT (RSDP 0x%lx); one CPU\n", rsdp);
		return false;
	}
	const uint8_t *p = (const uint8_t *)m;
	out->lapic_phys = *(const uint32_t *)(p + 36);
	for (uint32_t off = 44; off + 2 <= m->length;) {
		uint8_t type = p[off], len = p[off + 1];
		if (len < 2 || off + len > m->length)
			break; /* a malformed entry ends the list */
		if (type == 0 && len >= 8)
			add_cpu(out, p[off + 3], *(const uint32_t *)(p + off + 4));
		else if (type == 1 && len >= 12 && out->nioapics < MADT_MAX_IOAPICS)
			out->ioapics[out->nioapics++] = (struct madt_ioapic){
				.id = p[off + 2],
				.phys = *(const uint32_t *)(p + off + 4),
				.gsi_base = *(const uint32_t *)(p + off + 8),
			};
		else if (type == 2 && len >= 10 && out->noverrides < MADT_MAX_OVERRIDES)
			out->overrides[out->noverrides++] = (struct madt_override){
				.source = p[off + 3],
				.gsi = *(const uint32_t *)(p + off + 4),
				.flags = *(const uint16_t *)(p + off + 8),
			};
		else if (type == 5 && len >= 12)
			out->lapic_phys = *(const uint64_t *)(p + off + 4);
		else if (type == 9 && len >= 16)
			add_cpu(out, *(const uint32_t *)(p + off + 4), *(const uint32_t *)(p + off + 8));
		off += len;
	}
	return out->ncpus > 0;
}
