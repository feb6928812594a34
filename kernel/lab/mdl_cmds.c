/*
 * Monitor commands for MDLs.
 *
 *   mdl demo   walks a pool buffer through IoAllocateMdl -> MmProbeAndLockPages ->
 *              MmMapLockedPagesSpecifyCache once per cache type and once with
 *              MdlMappingNoWrite, printing the MDL and the PTE of every mapped page, then
 *              does the same for an MmAllocatePagesForMdlEx(MmWriteCombined) MDL — pool
 *              pages are WB and stay WB (mm/RULES.md decision 1), so that is where a non-WB
 *              type shows — and cleans everything up.
 *   mdl ADDR   decodes the MDL at kernel address ADDR (hex).  Every byte read is first
 *              checked in the real page tables (mapped, supervisor, RAM), so a bad address
 *              gives a message, never a fault.
 *
 * PTEs are read from the tables (pt_query): the raw entry, its bits decoded by
 * pt_describe_entry, the PAT slot it selects and that slot's type in the MSR now.  The
 * printers write to a struct mon_out and are shared with the tour (kernel/lab/mdl_cmds.h).
 */
#include "kernel/lab/mdl_cmds.h"
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"

#define DEMO_TAG 0x6F6D6544u /* 'Demo' */
#define MAX_PFNS_SHOWN 32
#define IMPLAUSIBLE_PFNS_SHOWN 4
#define MAX_PTES_SHOWN 32

/* ---- reading kernel memory without faulting -------------------------------------------- */

static bool canonical(uint64_t va)
{
	uint64_t top = va >> 47;
	return top == 0 || top == 0x1FFFF;
}

/* Why [va, va + len) cannot be read safely, or NULL when it can: every page mapped in the
 * kernel's tables, supervisor-only (a user page would trip SMAP), and RAM (never device
 * memory, where a read can have side effects). */
static const char *unreadable(uint64_t va, uint64_t len)
{
	if (!canonical(va) || va + len < va || !canonical(va + len - 1))
		return "not a canonical address";
	if (va < KVA_DIRECT_MAP_BASE)
		return "not a kernel address";
	for (uint64_t p = ALIGN_DOWN(va, PAGE_SIZE); p < va + len; p += PAGE_SIZE) {
		struct pt_query q;
		pt_query(&kernel_root, p, &q);
		if (!q.present)
			return "not mapped";
		if (q.eff.user)
			return "a user page";
		if (!pfn_is_ram(q.pa >> PAGE_SHIFT))
			return "not RAM (device memory is never read here)";
	}
	return NULL;
}

static bool read_kernel(uint64_t va, void *out, uint64_t len)
{
	if (unreadable(va, len))
		return false;
	memcpy(out, (const void *)va, len);
	return true;
}

/* ---- printing an MDL ------------------------------------------------------------------- */

static const struct {
	USHORT bit;
	const char *name;
} flag_names[] = {
	{ MDL_MAPPED_TO_SYSTEM_VA, "MAPPED_TO_SYSTEM_VA" },
	{ MDL_PAGES_LOCKED, "PAGES_LOCKED" },
	{ MDL_SOURCE_IS_NONPAGED_POOL, "SOURCE_IS_NONPAGED_POOL" },
	{ MDL_ALLOCATED_FIXED_SIZE, "ALLOCATED_FIXED_SIZE" },
	{ MDL_PARTIAL, "PARTIAL" },
	{ MDL_PARTIAL_HAS_BEEN_MAPPED, "PARTIAL_HAS_BEEN_MAPPED" },
	{ MDL_IO_PAGE_READ, "IO_PAGE_READ" },
	{ MDL_WRITE_OPERATION, "WRITE_OPERATION" },
	{ MDL_PARENT_MAPPED_SYSTEM_VA, "PARENT_MAPPED_SYSTEM_VA" },
	{ MDL_FREE_EXTRA_PTES, "FREE_EXTRA_PTES" },
	{ MDL_DESCRIBES_AWE, "DESCRIBES_AWE" },
	{ MDL_IO_SPACE, "IO_SPACE" },
	{ MDL_NETWORK_HEADER, "NETWORK_HEADER" },
	{ MDL_MAPPING_CAN_FAIL, "MAPPING_CAN_FAIL" },
	{ MDL_ALLOCATED_MUST_SUCCEED, "ALLOCATED_MUST_SUCCEED" },
	{ MDL_INTERNAL, "INTERNAL" },
};

static void format_flags(USHORT flags, char *buf, unsigned size)
{
	unsigned len = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(flag_names); i++)
		if (flags & flag_names[i].bit)
			len += ksnprintf(buf + len, size > len ? size - len : 0, "%s%s", len ? "|" : "",
					 flag_names[i].name);
	if (!len)
		ksnprintf(buf, size, "none");
}

/* The header, field by field, with the flags by name. */
static void print_header(struct mon_out *o, uint64_t at, const MDL *m)
{
	char flags[320];
	format_flags((USHORT)m->MdlFlags, flags, sizeof flags);
	mon_printf(o, "  MDL at 0x%016lx\n", at);
	mon_printf(o, "    Next           %p\n", (void *)m->Next);
	mon_printf(o, "    Size           0x%x (header 0x%lx + %u PFN slots)\n", (USHORT)m->Size, sizeof(MDL),
		(USHORT)m->Size >= sizeof(MDL) ? (unsigned)(((USHORT)m->Size - sizeof(MDL)) / sizeof(PFN_NUMBER)) : 0);
	mon_printf(o, "    MdlFlags       0x%04x %s\n", (USHORT)m->MdlFlags, flags);
	mon_printf(o, "    MdlabFlags     0x%04x%s%s\n", m->MdlabFlags,
		   (m->MdlabFlags & MDLAB_MDL_SOURCE_READ_ONLY) ? " SOURCE_READ_ONLY (mappings read-only)" : "",
		   (m->MdlabFlags & MDLAB_MDL_PROBE_LOCKED) ? " PROBE_LOCKED" : "");
	mon_printf(o, "    Process        %p\n", (void *)m->Process);
	mon_printf(o, "    MappedSystemVa %p\n", m->MappedSystemVa);
	mon_printf(o, "    StartVa        %p\n", m->StartVa);
	mon_printf(o, "    ByteCount      0x%x\n", m->ByteCount);
	mon_printf(o, "    ByteOffset     0x%x  (buffer at %p, %u page(s))\n", m->ByteOffset, MmGetMdlVirtualAddress(m),
		mdl_page_count(m));
}

/* The PFN array, read from `array` (the kernel address just past the header), each frame
 * with what the PFN database says of it. */
static void print_pfns(struct mon_out *o, uint64_t array, ULONG pages, ULONG max_shown)
{
	ULONG shown = pages < max_shown ? pages : max_shown;
	mon_printf(o, "    PFN array (%u entries):\n", pages);
	for (ULONG i = 0; i < shown; i++) {
		PFN_NUMBER pfn;
		if (!read_kernel(array + i * sizeof pfn, &pfn, sizeof pfn)) {
			mon_printf(o, "      [%u] at 0x%lx: %s\n", i, array + i * sizeof pfn,
				unreadable(array + i * sizeof pfn, sizeof pfn));
			return;
		}
		const struct pfn_entry *e = pfn_entry(pfn);
		if (e) {
			const char *type = e->memtype == MT_NONE ? "none yet" : memtype_name((enum memtype)e->memtype);
			mon_printf(o, "      [%u] 0x%lx  %s, owner %s, lock count %u, type %s\n", i, pfn,
				pfn_state_name((enum pfn_state)e->state), pfn_owner_name((enum pfn_owner)e->owner_kind),
				e->lock_count, type);
		} else
			mon_printf(o, "      [%u] 0x%lx  beyond the PFN database (I/O space)\n", i, pfn);
	}
	if (shown < pages)
		mon_printf(o, "      ... %u more\n", pages - shown);
}

void mdl_print_translation(struct mon_out *o, const struct pt_root *root, const char *label, uint64_t va)
{
	struct pt_query q;
	char bits[80];
	pt_query(root, va, &q);
	uint64_t e = q.entry[q.level];
	if (!q.present) {
		mon_printf(o, "      %s 0x%016lx: not present (level-%d entry 0x%016lx)\n", label, va, q.level, e);
		return;
	}
	pt_describe_entry(e, q.level, bits, sizeof bits);
	mon_printf(o, "      %s 0x%016lx: %s 0x%016lx [%s] PAT slot %d = %s -> frame 0x%lx\n", label, va,
		q.level == 1 ? "PTE" : q.level == 2 ? "PDE (2M)" : "PDPTE (1G)", e, bits, q.pat_slot,
		memtype_name(q.eff.type), q.pa >> PAGE_SHIFT);
}

/* The system mapping of the MDL, page by page (a nonpaged-pool MDL's is the pool's own). */
static void print_mapping(struct mon_out *o, const MDL *m)
{
	if (!(m->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL))) {
		mon_printf(o, "    no system mapping\n");
		return;
	}
	uint64_t base = ALIGN_DOWN((uint64_t)m->MappedSystemVa, PAGE_SIZE);
	if (!canonical(base) || base < KVA_DIRECT_MAP_BASE) {
		mon_printf(o, "    MappedSystemVa %p is not a kernel address\n", m->MappedSystemVa);
		return;
	}
	ULONG pages = mdl_page_count(m), shown = pages < MAX_PTES_SHOWN ? pages : MAX_PTES_SHOWN;
	mon_printf(o, "    system mapping at %p (%s):\n", m->MappedSystemVa,
		syspte_contains(base) ? "system PTEs" : "the buffer's own address");
	for (ULONG i = 0; i < shown; i++) {
		char label[16];
		ksnprintf(label, sizeof label, "page %u", i);
		mdl_print_translation(o, &kernel_root, label, base + (uint64_t)i * PAGE_SIZE);
	}
	if (shown < pages)
		mon_printf(o, "      ... %u more pages\n", pages - shown);
}

/* Why a header cannot be an MDL's (what every MDL routine keeps true), or NULL. */
static const char *implausible(const MDL *m)
{
	if ((USHORT)m->Size < sizeof(MDL))
		return "Size is smaller than the header";
	if ((uint64_t)m->StartVa & (PAGE_SIZE - 1))
		return "StartVa is not page-aligned";
	if (m->ByteOffset >= PAGE_SIZE)
		return "ByteOffset is not inside a page";
	return NULL;
}

bool mdl_print(struct mon_out *o, uint64_t at, unsigned what)
{
	MDL m;
	const char *why = unreadable(at, sizeof m);
	if (why) {
		mon_printf(o, "no MDL can be read at 0x%016lx: %s\n", at, why);
		return false;
	}
	read_kernel(at, &m, sizeof m);
	print_header(o, at, &m);
	const char *odd = implausible(&m);
	if (odd)
		mon_printf(o, "    this does not look like an MDL (%s): the first PFN slots only\n", odd);
	if (what & MDL_PRINT_PFNS)
		print_pfns(o, at + sizeof(MDL), mdl_page_count(&m), odd ? IMPLAUSIBLE_PFNS_SHOWN : MAX_PFNS_SHOWN);
	if ((what & MDL_PRINT_MAPPING) && !odd)
		print_mapping(o, &m);
	return true;
}

/* ---- mdl demo ----------------------------------------------------------------------------- */

static const struct {
	MEMORY_CACHING_TYPE type;
	const char *name;
	ULONG priority_flags;
} demo_steps[] = {
	{ MmNonCached, "MmNonCached", 0 },
	{ MmCached, "MmCached", 0 },
	{ MmWriteCombined, "MmWriteCombined", 0 },
	{ MmHardwareCoherentCached, "MmHardwareCoherentCached", 0 },
	{ MmNonCachedUnordered, "MmNonCachedUnordered", 0 },
	{ MmUSWCCached, "MmUSWCCached", 0 },
	{ MmCached, "MmCached", MdlMappingNoWrite },
};

static void print_counters(const char *when)
{
	struct syspte_stats s;
	struct pfn_stats p;
	syspte_get_stats(&s);
	pfn_get_stats(&p);
	kprintf("%s: %lu system PTEs free, %lu frames free, %lu frames locked\n", when, s.free, p.free, p.locked);
}

/* One pool-buffer step: allocate, probe and lock, map with the step's type, show, clean up. */
static void demo_pool_step(uint8_t *buf, unsigned k)
{
	uint8_t *va = buf + 0x180;
	ULONG len = PAGE_SIZE; /* from 0x180 in the first page into the second */
	ULONG priority = NormalPagePriority | demo_steps[k].priority_flags;
	kprintf("\n== %u. pool buffer, MmMapLockedPagesSpecifyCache(%s, %sNormalPagePriority)\n", k + 1,
		demo_steps[k].name, demo_steps[k].priority_flags ? "MdlMappingNoWrite | " : "");
	PMDL m = IoAllocateMdl(va, len, FALSE, FALSE, NULL);
	if (!m) {
		kprintf("IoAllocateMdl failed\n");
		return;
	}
	if (k == 0) {
		kprintf("-- after IoAllocateMdl (PFN array not filled yet):\n");
		print_header(MON_CONSOLE, (uint64_t)m, m);
	}
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(m, KernelMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	if (st != STATUS_SUCCESS) {
		kprintf("MmProbeAndLockPages raised 0x%08x\n", (ULONG)st);
		IoFreeMdl(m);
		return;
	}
	if (k == 0) {
		kprintf("-- after MmProbeAndLockPages(KernelMode, IoWriteAccess):\n");
		mdl_print(MON_CONSOLE, (uint64_t)m, MDL_PRINT_PFNS);
	}
	struct mdl_stats before, after;
	mdl_get_stats(&before);
	PVOID sva = MmMapLockedPagesSpecifyCache(m, KernelMode, demo_steps[k].type, NULL, FALSE, priority);
	mdl_get_stats(&after);
	if (!sva) {
		kprintf("the mapping failed\n");
	} else {
		kprintf("-- mapped at %p%s:\n", sva,
			after.cache_overrides != before.cache_overrides
				? " (pool frames are WB: the requested type was overridden)" : "");
		mdl_print(MON_CONSOLE, (uint64_t)m, MDL_PRINT_PFNS | MDL_PRINT_MAPPING);
	}
	MmUnlockPages(m); /* releases the mapping first */
	IoFreeMdl(m);
}

/* MmAllocatePagesForMdlEx(MmWriteCombined): the frames carry WC from the allocation, in
 * their direct-map alias and in any mapping, whatever the mapping asks for. */
static void demo_allocated_step(unsigned k)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	kprintf("\n== %u. MmAllocatePagesForMdlEx(2 pages, MmWriteCombined), mapped asking MmCached\n", k);
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, 2 * PAGE_SIZE, MmWriteCombined, 0);
	if (!m) {
		kprintf("MmAllocatePagesForMdlEx failed\n");
		return;
	}
	ULONG pages = mdl_page_count(m);
	PFN_NUMBER pfns[2];
	memcpy(pfns, MmGetMdlPfnArray(m), pages * sizeof(PFN_NUMBER));
	kprintf("-- allocated (StartVa 0, locked, not mapped):\n");
	mdl_print(MON_CONSOLE, (uint64_t)m, MDL_PRINT_PFNS | MDL_PRINT_MAPPING);
	kprintf("    direct-map aliases of the frames:\n");
	for (ULONG i = 0; i < pages; i++)
		mdl_print_translation(MON_CONSOLE, &kernel_root, "alias", (uint64_t)pfn_to_virt(pfns[i]));
	PVOID sva = MmMapLockedPagesSpecifyCache(m, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	if (sva) {
		kprintf("-- mapped at %p (the frames' own type wins over MmCached):\n", sva);
		mdl_print(MON_CONSOLE, (uint64_t)m, MDL_PRINT_PFNS | MDL_PRINT_MAPPING);
	} else {
		kprintf("the mapping failed\n");
	}
	MmFreePagesFromMdl(m); /* releases the mapping too */
	ExFreePool(m);
	kprintf("-- after MmFreePagesFromMdl: the aliases are WB again:\n");
	for (ULONG i = 0; i < pages; i++)
		mdl_print_translation(MON_CONSOLE, &kernel_root, "alias", (uint64_t)pfn_to_virt(pfns[i]));
}

static void mdl_demo(void)
{
	print_counters("before");
	uint8_t *buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, 2 * PAGE_SIZE, DEMO_TAG);
	if (!buf) {
		kprintf("no pool for the demo buffer\n");
		return;
	}
	kprintf("pool buffer %p (2 pages); the MDL describes 0x%lx bytes at %p\n", buf, PAGE_SIZE, buf + 0x180);
	for (unsigned k = 0; k < ARRAY_SIZE(demo_steps); k++)
		demo_pool_step(buf, k);
	ExFreePoolWithTag(buf, DEMO_TAG);
	demo_allocated_step(ARRAY_SIZE(demo_steps) + 1);
	kprintf("\n");
	print_counters("after (everything released)");
}

/* ---- the command ------------------------------------------------------------------------ */

static int cmd_mdl(int argc, char **argv)
{
	uint64_t at;
	if (argc != 2)
		return -1;
	if (!strcmp(argv[1], "demo")) {
		mdl_demo();
		return 0;
	}
	if (!monitor_parse_hex(argv[1], &at))
		return -1;
	mdl_print(MON_CONSOLE, at, MDL_PRINT_PFNS | MDL_PRINT_MAPPING);
	return 0;
}
MONITOR_COMMAND(mdl, "mdl ADDR | mdl demo",
		"decode the MDL at kernel address ADDR (hex) | map a pool buffer with each cache type", cmd_mdl);
