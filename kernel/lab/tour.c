/*
 * `tour`: a guided walk through the MDL interface on the live hardware structures.
 *
 *   - a two-page nonpaged pool buffer: IoAllocateMdl, MmProbeAndLockPages;
 *   - MmMapLockedPagesSpecifyCache of it with each of the six NT cache types: pool frames
 *     are WB and stay WB (mm/RULES.md decision 1), so every one of these mappings is WB and
 *     the tour says so, showing the override;
 *   - MmAllocatePagesForMdlEx with each cache type (and mdlab's WT and WP extensions): there
 *     the frames take the type, their direct-map alias with them, and the PTEs show it;
 *   - MdlMappingNoWrite: a kernel write faults 0x3; the default mapping is no-execute
 *     (mm/RULES.md decision 3): a kernel fetch faults 0x11 — both caught in __try, the trap frame shown;
 *   - the buffer mapped into agent processes at a chosen address (RequestedAddress, while
 *     attached): a ring-3 write to the NoWrite mapping faults 0x7, a ring-3 fetch 0x15, as
 *     recorded in p->fault;
 *   - why lock (mm/RULES.md, "Paging"): a process's two pages, one locked by a driver; a trim
 *     takes the other (its transition PTE decoded), the modified page writer writes it to the
 *     pagefile, the allocator repurposes its frame (its PTE a pagefile PTE), a touch brings it
 *     back (a hard fault); the locked page keeps its frame and its system mapping works at
 *     DISPATCH_LEVEL; after the unlock a trim takes both;
 *   - everything released, and the counters compared with the start.
 *
 * After each step it prints the MDL (fields, flags by name, each frame's PFN entry), every
 * level's page-table entry of every mapped page (mm_print_pte: raw values, decoded bits,
 * PAT slot, the slot's type per IA32_PAT read now) and the counters.  Nothing it prints is
 * remembered or assumed: each value is read from the tables, the PFN database, the MSR or
 * the trap frame when it is printed; only the "the rule says" lines state expectations.
 */
#include "kernel/lab/tour.h"
#include "kernel/faultcap.h"
#include "kernel/ksym.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/lab/ps_cmds.h"
#include "kernel/seh.h"
#include "kernel/trap.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "kernel/lab/mdl_cmds.h"
#include "mm/mdl_user.h"
#include "kernel/lab/mm_cmds.h"
#include "mm/memtype.h"
#include "mm/mm.h"
#include "mm/pagefile.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "kernel/lab/ptdump.h"
#include "mm/syspte.h"
#include "mm/tlb.h"
#include "mm/uvm.h"

#define TOUR_TAG 0x72756F54u /* 'Tour' */
#define BUFFER_PAGES 2
/* The user mappings' RequestedAddress: page-aligned, free in a fresh agent process. */
#define USER_VA 0x20000000ul
#define DATA_OFFSET 0x10        /* a quadword the kernel writes and ring 3 reads */
#define DATA_VALUE 0x4D444C6162ul /* "baLDM" */
#define CODE_OFFSET 0x40        /* a RET that the fetches jump to */

struct cache_type {
	MEMORY_CACHING_TYPE ct;
	const char *name;
};

static const struct cache_type nt_types[] = {
	{ MmNonCached, "MmNonCached" },
	{ MmCached, "MmCached" },
	{ MmWriteCombined, "MmWriteCombined" },
	{ MmHardwareCoherentCached, "MmHardwareCoherentCached" },
	{ MmNonCachedUnordered, "MmNonCachedUnordered" },
	{ MmUSWCCached, "MmUSWCCached" },
};
/* Not NT names: mdlab's way to reach WT and WP (mm/RULES.md decision 2). */
static const struct cache_type mdlab_types[] = {
	{ MmMdlabWriteThrough, "MmMdlabWriteThrough" },
	{ MmMdlabWriteProtected, "MmMdlabWriteProtected" },
};

struct counters {
	uint64_t syspte_free, frames_free, frames_locked, pool_bytes, processes, user_mappings;
};

struct tour {
	struct mon_out *o;
	const struct tour_hooks *hooks;
	unsigned step;
	unsigned faults;        /* caught as the rule says */
	bool ok;
	struct counters start;
	uint8_t *buf;           /* the pool buffer */
	PMDL mdl;               /* its MDL, locked */
	uint64_t last_table;    /* the page table the last walk ended in (brief steps) */
};

/* ---- counters -------------------------------------------------------------------------- */

static void read_counters(struct counters *c)
{
	struct syspte_stats s;
	struct pfn_stats f;
	struct pool_stats p;
	struct mdl_user_stats u;
	pool_trim(); /* the pool's spare slab pages are no one's */
	syspte_get_stats(&s);
	pfn_get_stats(&f);
	pool_get_stats(&p);
	mdl_user_get_stats(&u);
	*c = (struct counters){ .syspte_free = s.free, .frames_free = f.free, .frames_locked = f.locked,
				.pool_bytes = p.bytes_in_use, .user_mappings = u.live };
	for (PEPROCESS q = ps_next(NULL); q; q = ps_next(q))
		c->processes++;
}

static void print_counter(struct mon_out *o, const char *name, uint64_t now, uint64_t then, const char *sep)
{
	mon_printf(o, "%s %lu (%s%lu)%s", name, now, now >= then ? "+" : "-", now >= then ? now - then : then - now,
		   sep);
}

/* The counters now, with their change since the tour started. */
static void print_counters(struct tour *t)
{
	struct counters c;
	read_counters(&c);
	mon_printf(t->o, "  counters (change since the start): ");
	print_counter(t->o, "system PTEs free", c.syspte_free, t->start.syspte_free, ", ");
	print_counter(t->o, "frames locked", c.frames_locked, t->start.frames_locked, ", ");
	print_counter(t->o, "frames free", c.frames_free, t->start.frames_free, ",\n    ");
	print_counter(t->o, "pool bytes", c.pool_bytes, t->start.pool_bytes, ", ");
	print_counter(t->o, "processes", c.processes, t->start.processes, ", ");
	print_counter(t->o, "MDL user mappings", c.user_mappings, t->start.user_mappings, "\n");
}

/* The TLB invalidations a routine did: INVLPGs and full flushes since `before`.  mm/tlb.h: a
 * range of up to TLB_SINGLE_FLUSH_MAX pages goes page by page with INVLPG, a larger one (and
 * any memory-type change, which must reach global entries and every alias) by a full flush. */
static void print_tlb(struct tour *t, const char *who, const struct tlb_stats *before)
{
	struct tlb_stats now;
	tlb_get_stats(&now);
	uint64_t pages = now.single_pages - before->single_pages, full = now.full_flushes - before->full_flushes;
	mon_printf(t->o, "  TLB: %s did %lu INVLPG and %lu full flush%s", who, pages, full, full == 1 ? "" : "es");
	if (pages && !full)
		mon_printf(t->o, " (one INVLPG per page whose translation went or changed: up to %d pages are "
			   "flushed one by one)", TLB_SINGLE_FLUSH_MAX);
	else if (full)
		mon_printf(t->o, " (more than %d pages, or a memory type given back: every translation goes, global "
			   "ones included)", TLB_SINGLE_FLUSH_MAX);
	else
		mon_printf(t->o, " (no translation was removed or changed)");
	mon_printf(t->o, "\n");
}

/* ---- steps ----------------------------------------------------------------------------- */

/* Start a step: its title; returns where its text starts in a buffer. */
__attribute__((format(printf, 2, 3))) static size_t begin_step(struct tour *t, const char *fmt, ...)
{
	size_t from = t->o ? t->o->len : 0;
	va_list ap;
	mon_printf(t->o, "\n== %u. ", ++t->step);
	va_start(ap, fmt);
	mon_vprintf(t->o, fmt, ap);
	va_end(ap);
	mon_printf(t->o, "\n");
	return from;
}

static void fail(struct tour *t, const char *what)
{
	mon_printf(t->o, "  FAILED: %s\n", what);
	t->ok = false;
}

/* Every level's entry of every page of a mapping, then the counters; then the test hook. */
static void show_mapping(struct tour *t, const struct tour_mapping *m)
{
	for (ULONG i = 0; i < m->pages; i++) {
		uint64_t va = m->va + (uint64_t)i * PAGE_SIZE;
		mon_printf(t->o, "  page %u of the mapping, %s (%s):\n", i, m->brief ? "what differs" : "every level",
			   m->process ? "the process's tables" : "the kernel's tables");
		if (m->brief)
			mm_print_pte_brief(t->o, m->root, va, &t->last_table);
		else {
			mm_print_pte(t->o, m->root, va);
			struct pt_query q;
			pt_query(m->root, va, &q);
			t->last_table = q.present && q.level == 1 ? ALIGN_DOWN(q.entry_pa[1], PAGE_SIZE) : 0;
		}
	}
	print_counters(t);
	if (t->hooks && t->hooks->mapped)
		t->hooks->mapped(t->hooks->ctx, t->o, m);
}

/* The memory type the first PTE of a mapping selects, read from the tables. */
static const char *mapped_type(const struct pt_root *root, uint64_t va)
{
	struct pt_query q;
	pt_query(root, va, &q);
	return q.present ? memtype_name(q.eff.type) : "not mapped";
}

/* MmMapLockedPagesSpecifyCache(KernelMode) of m; prints what was asked and what the PTEs
 * say, then the MDL and the mapping.  Returns the address (0 on failure). */
static uint64_t map_system(struct tour *t, PMDL m, const struct cache_type *ty, ULONG flags, bool pool,
			   size_t from, bool brief)
{
	struct mdl_stats before, after;
	mdl_get_stats(&before);
	PVOID va = MmMapLockedPagesSpecifyCache(m, KernelMode, ty->ct, NULL, FALSE, NormalPagePriority | flags);
	mdl_get_stats(&after);
	if (!va) {
		fail(t, "MmMapLockedPagesSpecifyCache returned NULL");
		return 0;
	}
	enum memtype asked = memtype_from_caching_type(ty->ct);
	mon_printf(t->o, "  MmMapLockedPagesSpecifyCache(KernelMode, %s%s) = %p\n", ty->name,
		   flags & MdlMappingNoWrite ? ", MdlMappingNoWrite" : "", va);
	mon_printf(t->o, "  asked %s (mm/RULES.md decision 2); the PTEs say %s", memtype_name(asked),
		   mapped_type(&kernel_root, (uint64_t)va));
	if (after.cache_overrides != before.cache_overrides)
		mon_printf(t->o, ": the frames' own type overrode the request (cache_overrides %lu -> %lu)",
			   before.cache_overrides, after.cache_overrides);
	mon_printf(t->o, "\n");
	if (brief)
		mon_printf(t->o, "  the MDL is as in the first of these steps but for MappedSystemVa %p; only the "
			   "walk differs (the PTE values, and the frame's alias is untouched)\n", m->MappedSystemVa);
	else
		mdl_print(t->o, (uint64_t)m, MDL_PRINT_PFNS);
	struct tour_mapping tm = { .root = &kernel_root, .va = ALIGN_DOWN((uint64_t)va, PAGE_SIZE),
				   .pages = mdl_page_count(m), .requested = ty->ct, .pool_frames = pool,
				   .writable = !(flags & MdlMappingNoWrite), .text_from = from, .brief = brief };
	show_mapping(t, &tm);
	return (uint64_t)va;
}

static void unmap_system(struct tour *t, PMDL m, uint64_t va)
{
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	MmUnmapLockedPages((PVOID)va, m);
	mon_printf(t->o, "  MmUnmapLockedPages; the PTE now:\n");
	mdl_print_translation(t->o, &kernel_root, "page 0", ALIGN_DOWN(va, PAGE_SIZE));
	print_tlb(t, "MmUnmapLockedPages", &tlb);
}

/* ---- faults ---------------------------------------------------------------------------- */

/* A #PF error code in words (SDM Vol. 3, 4.7). */
static void describe_error_code(uint64_t e, char *buf, unsigned size)
{
	ksnprintf(buf, size, "%s | %s | %s%s%s", e & PF_P ? "P: the page is present (a protection violation)"
						   : "not P: nothing mapped",
		  e & PF_ID ? "I/D: an instruction fetch" : e & PF_W ? "W: a write" : "a read",
		  e & PF_U ? "U: from ring 3" : "from ring 0", e & PF_RSVD ? " | RSVD: a reserved bit" : "",
		  e & PF_PK ? " | PK: a protection key" : "");
}

/* The fault as the CPU reported it, and whether it is the one the rule gives. */
static void report_fault(struct tour *t, uint64_t vector, uint64_t code, uint64_t cr2, uint64_t rip,
			 uint64_t want_code, uint64_t want_cr2)
{
	char words[160];
	uint64_t off;
	const char *sym = ksym_lookup(rip, &off);
	describe_error_code(code, words, sizeof words);
	mon_printf(t->o, "    vector %lu (%s), error code 0x%lx = %s\n", vector, trap_vector_name(vector), code, words);
	mon_printf(t->o, "    CR2 0x%016lx, RIP 0x%016lx", cr2, rip);
	if (sym)
		mon_printf(t->o, " (%s+0x%lx)\n", sym, off);
	else
		mon_printf(t->o, " (no symbol: %s)\n", ptdump_region_name(rip));
	bool good = vector == VEC_PAGE_FAULT && code == want_code && cr2 == want_cr2;
	mon_printf(t->o, "  %s: the rule says #PF error code 0x%lx at 0x%lx\n", good ? "as expected" : "UNEXPECTED",
		   want_code, want_cr2);
	if (good)
		t->faults++;
	else
		t->ok = false;
}

static void report_caught(struct tour *t, const struct faultcap *c, uint64_t want_code, uint64_t want_cr2)
{
	if (!c->faulted) {
		fail(t, "no fault: the access went through");
		return;
	}
	mon_printf(t->o, "  caught in __except: GetExceptionCode() 0x%08x%s; GetExceptionTrapFrame():\n",
		   (ULONG)c->status, c->status == STATUS_ACCESS_VIOLATION ? " (STATUS_ACCESS_VIOLATION)" : "");
	if (!c->from_cpu) {
		fail(t, "a software exception, not a CPU fault");
		return;
	}
	report_fault(t, c->vector, c->error_code, c->cr2, c->rip, want_code, want_cr2);
}

/* ---- the pool buffer ------------------------------------------------------------------- */

static bool lock_buffer(struct tour *t)
{
	size_t bytes = BUFFER_PAGES * PAGE_SIZE;
	begin_step(t, "a nonpaged pool buffer, its MDL, MmProbeAndLockPages");
	t->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, TOUR_TAG);
	if (!t->buf) {
		fail(t, "no pool for the buffer");
		return false;
	}
	((volatile uint64_t *)(t->buf + DATA_OFFSET))[0] = DATA_VALUE;
	t->buf[CODE_OFFSET] = FAULTCAP_RET_OPCODE;
	mon_printf(t->o, "  ExAllocatePool2(POOL_FLAG_NON_PAGED, 0x%lx) = %p; wrote 0x%lx at +0x%x and a RET "
		   "(0x%02x) at +0x%x\n", bytes, t->buf, DATA_VALUE, DATA_OFFSET, FAULTCAP_RET_OPCODE, CODE_OFFSET);
	mon_printf(t->o, "  the pool's own mapping of page 0:\n");
	mm_print_pte(t->o, &kernel_root, (uint64_t)t->buf);
	t->mdl = IoAllocateMdl(t->buf, (ULONG)bytes, FALSE, FALSE, NULL);
	if (!t->mdl) {
		fail(t, "IoAllocateMdl returned NULL");
		return false;
	}
	mon_printf(t->o, "  IoAllocateMdl: the header (the PFN array is filled by the probe):\n");
	mdl_print(t->o, (uint64_t)t->mdl, 0);
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(t->mdl, KernelMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	if (st != STATUS_SUCCESS) {
		mon_printf(t->o, "  MmProbeAndLockPages raised 0x%08x\n", (ULONG)st);
		fail(t, "the probe");
		return false;
	}
	mon_printf(t->o, "  MmProbeAndLockPages(KernelMode, IoWriteAccess): each frame's lock count is 1\n");
	mdl_print(t->o, (uint64_t)t->mdl, MDL_PRINT_PFNS);
	mon_printf(t->o, "  locked pages (as `lockedpages` shows them):\n");
	mm_print_locked_pages(t->o, NULL);
	print_counters(t);
	return true;
}

static void pool_type_step(struct tour *t, const struct cache_type *ty, bool brief)
{
	size_t from = begin_step(t, "the pool buffer mapped %s", ty->name);
	uint64_t va = map_system(t, t->mdl, ty, 0, true, from, brief);
	if (va)
		unmap_system(t, t->mdl, va);
}

static void no_write_step(struct tour *t)
{
	struct faultcap c;
	size_t from = begin_step(t, "MdlMappingNoWrite: the PTEs are read-only; a kernel write faults");
	uint64_t va = map_system(t, t->mdl, &nt_types[1], MdlMappingNoWrite, true, from, true);
	if (!va)
		return;
	mon_printf(t->o, "  kernel write of a quadword at 0x%lx (mapping + 0x%x), inside __try:\n", va + DATA_OFFSET,
		   DATA_OFFSET);
	faultcap_try_store64(va + DATA_OFFSET, ~DATA_VALUE, &c);
	report_caught(t, &c, PF_P | PF_W, va + DATA_OFFSET);
	mon_printf(t->o, "  the buffer still holds 0x%lx (read through the pool address)\n",
		   *(volatile uint64_t *)(t->buf + DATA_OFFSET));
	unmap_system(t, t->mdl, va);
}

static void no_execute_step(struct tour *t)
{
	struct faultcap c;
	size_t from = begin_step(t, "the default mapping is no-execute (mm/RULES.md decision 3): a kernel fetch faults");
	uint64_t va = map_system(t, t->mdl, &nt_types[1], 0, true, from, true);
	if (!va)
		return;
	mon_printf(t->o, "  no MdlMappingNoExecute was asked, and the PTEs carry NX; the byte at 0x%lx is 0x%02x "
		   "(RET)\n", va + CODE_OFFSET, *(volatile uint8_t *)(va + CODE_OFFSET));
	mon_printf(t->o, "  kernel call to 0x%lx, inside __try:\n", va + CODE_OFFSET);
	faultcap_try_call(va + CODE_OFFSET, &c);
	report_caught(t, &c, PF_P | PF_ID, va + CODE_OFFSET);
	unmap_system(t, t->mdl, va);
}

static void release_buffer(struct tour *t)
{
	begin_step(t, "MmUnlockPages, IoFreeMdl, ExFreePoolWithTag");
	if (t->mdl && (t->mdl->MdlFlags & MDL_PAGES_LOCKED)) {
		MmUnlockPages(t->mdl);
		mon_printf(t->o, "  MmUnlockPages: MDL_PAGES_LOCKED gone, each frame's lock count back to 0:\n");
		mdl_print(t->o, (uint64_t)t->mdl, MDL_PRINT_PFNS);
	}
	if (t->mdl)
		IoFreeMdl(t->mdl);
	if (t->buf)
		ExFreePoolWithTag(t->buf, TOUR_TAG);
	t->mdl = NULL;
	t->buf = NULL;
	print_counters(t);
}

/* ---- pages for MDLs with a cache type ---------------------------------------------------- */

/* The size of the direct-map leaf that maps `alias` now, from the tables. */
static const char *alias_leaf(uint64_t alias)
{
	struct pt_query q;
	pt_query(&kernel_root, alias, &q);
	return !q.present ? "missing" : q.level == 1 ? "4K" : q.level == 2 ? "2M" : "1G";
}

static void allocated_step(struct tour *t, const struct cache_type *ty)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	size_t from = begin_step(t, "MmAllocatePagesForMdlEx(1 page, %s), mapped %s", ty->name, ty->name);
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	PMDL m = MmAllocatePagesForMdlEx(lo, hi, skip, PAGE_SIZE, ty->ct, MM_ALLOCATE_FULLY_REQUIRED);
	if (!m) {
		fail(t, "MmAllocatePagesForMdlEx returned NULL");
		return;
	}
	pfn_t pfn = MmGetMdlPfnArray(m)[0];
	uint64_t alias = (uint64_t)pfn_to_virt(pfn);
	bool typed = memtype_from_caching_type(ty->ct) != MT_WB;
	mon_printf(t->o, "  the frame's PFN entry records its type; its direct-map alias has that type too:\n");
	mdl_print(t->o, (uint64_t)m, MDL_PRINT_PFNS);
	mm_print_pte(t->o, &kernel_root, alias);
	print_tlb(t, "MmAllocatePagesForMdlEx", &tlb);
	if (typed)
		mon_printf(t->o, "  the alias is a %s leaf: the direct map's large page holding the frame was split (into "
			   "512 entries of the next size, down to 4K PTEs) so that only this frame's alias changes "
			   "type (mm/memtype.h)\n", alias_leaf(alias));
	uint64_t va = map_system(t, m, ty, 0, false, from, false);
	if (va)
		unmap_system(t, m, va);
	tlb_get_stats(&tlb);
	MmFreePagesFromMdl(m);
	ExFreePool(m);
	mon_printf(t->o, "  MmFreePagesFromMdl, ExFreePool: the alias is WB again:\n");
	mdl_print_translation(t->o, &kernel_root, "alias", alias);
	print_tlb(t, "MmFreePagesFromMdl", &tlb);
	if (typed && strcmp(alias_leaf(alias), "4K"))
		mon_printf(t->o, "  the alias is a %s leaf again: its 512 PTEs were uniform once more, so they were "
			   "merged back into one large page and the page table freed\n", alias_leaf(alias));
	else if (typed)
		mon_printf(t->o, "  the alias stays a 4K leaf: another frame of its 2 MiB range still has a type of "
			   "its own, so the 512 PTEs are not uniform and are not merged yet\n");
}

/* ---- user mappings --------------------------------------------------------------------- */

/* An agent process that reads the buffer's quadword through the mapping, then makes the
 * access `op` at mapping + offset. */
static PEPROCESS make_agent(uint64_t op, uint64_t offset)
{
	const uint64_t args[1 + 2 * AGENT_OP_SLOTS] = {
		2,
		AGENT_READ64, USER_VA + DATA_OFFSET, 0, 0, 0, 0,
		op, USER_VA + offset, ~DATA_VALUE, 0, 0, 0,
	};
	return PsCreateProcess("agent", 0, args, ARRAY_SIZE(args));
}

/* MmMapLockedPagesSpecifyCache(UserMode) at USER_VA while attached to p: the address, or
 * 0 with what it raised printed. */
static uint64_t map_user(struct tour *t, PEPROCESS p, ULONG flags)
{
	KAPC_STATE apc;
	volatile NTSTATUS st = STATUS_SUCCESS;
	PVOID volatile va = NULL;
	KeStackAttachProcess(p, &apc);
	__try {
		va = MmMapLockedPagesSpecifyCache(t->mdl, UserMode, MmCached, (PVOID)USER_VA, FALSE,
						  NormalPagePriority | flags);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	KeUnstackDetachProcess(&apc);
	mon_printf(t->o, "  attached to process %u: MmMapLockedPagesSpecifyCache(UserMode, MmCached, "
		   "RequestedAddress 0x%lx%s)", p->pid, USER_VA, flags & MdlMappingNoWrite ? ", MdlMappingNoWrite" : "");
	if (st != STATUS_SUCCESS) {
		mon_printf(t->o, " raised 0x%08x\n", (ULONG)st);
		fail(t, "the user mapping");
		return 0;
	}
	mon_printf(t->o, " = %p; detached\n", va);
	return (uint64_t)va;
}

static void user_step(struct tour *t, ULONG flags, uint64_t op, uint64_t offset, uint64_t want_code)
{
	size_t from = begin_step(t, "the buffer mapped into a user process%s; ring 3 %s it",
				 flags & MdlMappingNoWrite ? " with MdlMappingNoWrite" : "",
				 op == AGENT_EXEC ? "calls into" : "writes to");
	PEPROCESS p = make_agent(op, offset);
	if (!p) {
		fail(t, "PsCreateProcess(\"agent\") returned NULL");
		return;
	}
	mon_printf(t->o, "  PsCreateProcess(\"agent\"): it will read mapping + 0x%x, then %s mapping + 0x%lx\n",
		   DATA_OFFSET, op == AGENT_EXEC ? "call" : "write", offset);
	uint64_t va = map_user(t, p, flags);
	if (va) {
		ps_print_header(t->o);
		ps_print_process(t->o, p);
		mdl_print(t->o, (uint64_t)t->mdl, MDL_PRINT_PFNS);
		mm_print_locked_pages(t->o, p);
		struct tour_mapping tm = { .process = p, .root = &p->mm.root, .va = va, .pages = mdl_page_count(t->mdl),
					   .requested = MmCached, .pool_frames = true,
					   .writable = !(flags & MdlMappingNoWrite), .text_from = from };
		show_mapping(t, &tm);
		NTSTATUS st = PsRunProcess(p);
		uint64_t value = 0;
		bool read = ps_report(p, AGENT_KEY(0, 0), &value);
		mon_printf(t->o, "  PsRunProcess = 0x%08x; ring 3 read %s0x%lx at 0x%lx\n", (ULONG)st,
			   read ? "" : "nothing: ", value, va + DATA_OFFSET);
		ps_print_process(t->o, p);
		if (p->fault.happened) {
			mon_printf(t->o, "  p->fault (recorded by the #PF handler):\n");
			report_fault(t, p->fault.vector, p->fault.error_code, p->fault.address, p->fault.rip, want_code,
				     va + offset);
		} else {
			fail(t, "the process ended without a fault");
		}
		KAPC_STATE apc;
		KeStackAttachProcess(p, &apc);
		MmUnmapLockedPages((PVOID)va, t->mdl);
		KeUnstackDetachProcess(&apc);
		mon_printf(t->o, "  attached: MmUnmapLockedPages; the user PTE now:\n");
		mdl_print_translation(t->o, &p->mm.root, "page 0", va);
	}
	PsDestroyProcess(p);
	mon_printf(t->o, "  PsDestroyProcess\n");
	print_counters(t);
}

/* ---- why lock ------------------------------------------------------------------------------ */

#define WHY_VALUE0 0x6567615020656E4Ful /* "One Page" */
#define WHY_VALUE1 0x64656B636F4C2021ul /* "! Locked" */

static void why_ptes(struct tour *t, PEPROCESS p, uint64_t base)
{
	for (unsigned i = 0; i < 2; i++) {
		mon_printf(t->o, "  page %u (%s):\n", i, i ? "locked by the driver" : "not locked");
		mm_print_pte(t->o, &p->mm.root, base + i * PAGE_SIZE);
	}
	struct uvm_ws_counts ws;
	uvm_working_set(&p->mm, &ws);
	mon_printf(t->o, "  working set: %lu pages valid (image and stack too), %lu in transition, %lu in the pagefile\n",
		   ws.valid, ws.transition,
		   ws.pagefile);
}

static uint64_t why_read(PEPROCESS p, uint64_t va)
{
	uint64_t v = 0;
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	copy_from_user(&v, va, sizeof v);
	KeUnstackDetachProcess(&apc);
	return v;
}

/* Every free frame taken (linked through the frames), then one more: only a standby frame can
 * give it, so the allocator repurposes the one the writer made. */
static void why_repurpose(struct tour *t)
{
	pfn_t hoard = PFN_INVALID, extra;
	uint64_t n = 0;
	for (;;) {
		struct pfn_stats s;
		pfn_get_stats(&s);
		if (!s.free)
			break;
		pfn_t f = pfn_alloc(0, PFN_OWNER_KERNEL);
		*(pfn_t *)pfn_to_virt(f) = hoard;
		hoard = f;
		n++;
	}
	extra = pfn_alloc(0, PFN_OWNER_KERNEL);
	mon_printf(t->o, "  took all %lu free frames, then one more: pfn_alloc = PFN 0x%lx (a repurposed standby frame)\n", n,
		   extra);
	if (extra != PFN_INVALID)
		pfn_free(extra);
	while (hoard != PFN_INVALID) {
		pfn_t next = *(pfn_t *)pfn_to_virt(hoard);
		pfn_free(hoard);
		hoard = next;
	}
}

static void why_lock_step(struct tour *t)
{
	begin_step(t, "why lock: an unlocked page leaves, a locked one stays (mm/RULES.md, \"Paging\")");
	PEPROCESS p = PsCreateProcess("agent", 0, NULL, 0);
	if (!p) {
		fail(t, "PsCreateProcess(\"agent\") returned NULL");
		return;
	}
	uint64_t base = 0, size = 2 * PAGE_SIZE;
	if (uvm_allocate(&p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE) != STATUS_SUCCESS) {
		fail(t, "NtAllocateVirtualMemory in the process");
		PsDestroyProcess(p);
		return;
	}
	const uint64_t values[2] = { WHY_VALUE0, WHY_VALUE1 };
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	copy_to_user(base, &values[0], 8);
	copy_to_user(base + PAGE_SIZE, &values[1], 8);
	PMDL mdl = IoAllocateMdl((PVOID)(base + PAGE_SIZE), PAGE_SIZE, FALSE, FALSE, NULL);
	volatile NTSTATUS st = mdl ? STATUS_SUCCESS : STATUS_INSUFFICIENT_RESOURCES;
	__try {
		if (mdl)
			MmProbeAndLockPages(mdl, UserMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	KeUnstackDetachProcess(&apc);
	if (st != STATUS_SUCCESS) {
		if (mdl)
			IoFreeMdl(mdl);
		fail(t, "MmProbeAndLockPages of the second page");
		PsDestroyProcess(p);
		return;
	}
	uint64_t *sys = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority);
	mon_printf(t->o, "  process %u: NtAllocateVirtualMemory of two pages at 0x%lx, a quadword written in each;\n"
		   "  a driver probes and locks the second (MmProbeAndLockPages) and maps it at %p\n", p->pid, base, sys);
	why_ptes(t, p, base);

	struct uvm_trim_result r;
	uvm_trim(&p->mm, &r);
	mon_printf(t->o, "\n  uvm_trim (MmTrimProcess-style): %lu page trimmed, %lu locked page left valid.  The\n"
		   "  unlocked page's PTE is a transition PTE (Valid 0, Transition 1, its PFN): the frame is on the\n"
		   "  modified list, the contents still in it; the locked page's PTE is valid, its frame ACTIVE:\n",
		   r.trimmed, r.kept_locked);
	why_ptes(t, p, base);
	struct pagefile_stats ps;
	pagefile_get_stats(&ps);
	if (ps.attached) {
		uint64_t w = pagefile_write_modified();
		mon_printf(t->o, "\n  the modified page writer: %lu page written to the pagefile through an MDL; its frame is\n"
			   "  on the standby list now (clean, with its slot), the PTE still a transition PTE:\n", w);
		why_ptes(t, p, base);
		why_repurpose(t);
		mon_printf(t->o, "  the frame went to someone else, so the PTE is now a pagefile PTE (PageFileHigh: the slot):\n");
		why_ptes(t, p, base);
	} else {
		mon_printf(t->o, "  (no pagefile attached: the page stays in transition; `make run` attaches the disk)\n");
	}
	struct uvm_paging_stats s0, s1;
	uvm_get_paging_stats(&s0);
	uint64_t v0 = why_read(p, base);
	uvm_get_paging_stats(&s1);
	mon_printf(t->o, "\n  the kernel reads the unlocked page again: 0x%lx (%s), a %s fault:\n", v0,
		   v0 == WHY_VALUE0 ? "intact" : "NOT intact", s1.hard_faults > s0.hard_faults ? "hard" : "soft");
	if (v0 != WHY_VALUE0)
		fail(t, "the unlocked page came back changed");
	why_ptes(t, p, base);
	KIRQL irql;
	KeRaiseIrql(DISPATCH_LEVEL, &irql);
	uint64_t v1 = *sys;
	KeLowerIrql(irql);
	mon_printf(t->o, "  at DISPATCH_LEVEL the driver reads the locked page through its system mapping: 0x%lx (%s);\n"
		   "  touching a trimmed page at DISPATCH_LEVEL would be bug check 0x0A instead\n",
		   v1, v1 == WHY_VALUE1 ? "intact" : "NOT intact");
	if (v1 != WHY_VALUE1)
		fail(t, "the locked page's system mapping");
	MmUnlockPages(mdl);
	IoFreeMdl(mdl);
	uvm_trim(&p->mm, &r);
	mon_printf(t->o, "\n  MmUnlockPages, then uvm_trim again: %lu pages trimmed, %lu locked: both leave\n", r.trimmed,
		   r.kept_locked);
	why_ptes(t, p, base);
	PsDestroyProcess(p);
	mon_printf(t->o, "  PsDestroyProcess: the frames and the slot freed\n");
	print_counters(t);
}

/* ---- the tour ------------------------------------------------------------------------------ */

static void introduce(struct tour *t)
{
	mon_printf(t->o, "The MDL interface on live structures.  After each step: the MDL, every level's "
		   "page-table entry\nof each mapped page (decoded, with its PAT slot and that slot's type in "
		   "IA32_PAT read now),\nthe PFN entries, the TLB invalidations and the counters.\n\n");
	mon_printf(t->o,
		   "Legend of an entry's flag bracket, left to right (SDM Vol. 3, 4.5; '-' or '---': bit clear):\n"
		   "  P  present          RW/R- writable or read-only   U/S  user or supervisor only\n"
		   "  PWT PCD  the write-through and cache-disable bits (two of the three PAT index bits)\n"
		   "  A  accessed: set by the CPU on the first access through the entry\n"
		   "  D  dirty (leaves only): set by the CPU on the first write.  mdlab sets A in every leaf it\n"
		   "     makes and D in every writable one, so the CPU never has to write them back into the\n"
		   "     entry (a locked update); a table entry's A is the CPU's, set when a walk uses it\n"
		   "  PAT / PS PAT  in a 4K PTE bit 7 is the PAT index bit; above level 1 bit 7 is PS (a 2M or 1G\n"
		   "     leaf), and that leaf's PAT bit is bit 12; '--' on a table entry, which has neither\n"
		   "  G  global: survives a CR3 load (kernel leaves)   NX/X  no-execute or executable\n\n");
	mon_printf(t->o,
		   "The PAT slot of a leaf is PAT*4 + PCD*2 + PWT, with PAT at bit 7 of a 4 KiB PTE and at bit\n"
		   "12 of a 2 MiB or 1 GiB entry; the slot's byte in IA32_PAT is the memory type (SDM Vol. 3,\n"
		   "13.12.3).  mdlab's layout puts WB in 0, WT 1, UC- 2, UC 3, WC 5, WP 6: so WB is no bits,\n"
		   "WC is PAT+PWT, WP is PAT+PCD.  The PAT, read by RDMSR:\n");
	mm_print_pat(t->o);
	mon_printf(t->o, "At the start:\n");
	print_counters(t);
}

/* The counters against the start: each one must be back. */
static void conclude(struct tour *t)
{
	struct counters now;
	read_counters(&now);
	bool back = !memcmp(&now, &t->start, sizeof now);
	begin_step(t, "the end");
	print_counters(t);
	if (!back)
		fail(t, "a counter is not back where it started");
	mon_printf(t->o, "tour: %u of 4 faults caught as the rules say; counters %s; %s\n", t->faults,
		   back ? "all back" : "NOT back", t->ok && t->faults == 4 ? "all well" : "FAILED");
}

bool tour_run(struct mon_out *o, const struct tour_hooks *hooks)
{
	struct tour t = { .o = o, .hooks = hooks, .ok = true };
	read_counters(&t.start);
	introduce(&t);
	if (lock_buffer(&t)) {
		begin_step(&t, "mm/RULES.md decision 1: pool frames are WB and stay WB");
		mon_printf(o, "  No frame ever has two memory types, and the direct map maps pool frames WB; so a\n"
			   "  mapping of the locked pool buffer asking for another type gets WB (an override,\n"
			   "  counted).  The next six steps ask for each NT type and show the PTEs it got.\n");
		for (unsigned i = 0; i < ARRAY_SIZE(nt_types); i++)
			pool_type_step(&t, &nt_types[i], i > 0);
		for (unsigned i = 0; i < ARRAY_SIZE(nt_types); i++)
			allocated_step(&t, &nt_types[i]);
		for (unsigned i = 0; i < ARRAY_SIZE(mdlab_types); i++)
			allocated_step(&t, &mdlab_types[i]);
		no_write_step(&t);
		no_execute_step(&t);
		user_step(&t, MdlMappingNoWrite, AGENT_WRITE64, DATA_OFFSET, PF_P | PF_W | PF_U);
		user_step(&t, 0, AGENT_EXEC, CODE_OFFSET, PF_P | PF_U | PF_ID);
		why_lock_step(&t);
	}
	release_buffer(&t);
	conclude(&t);
	return t.ok && t.faults == 4;
}

static int cmd_tour(void)
{
	tour_run(MON_CONSOLE, NULL);
	return 0;
}
MONITOR_COMMAND_BARE(tour,
		     "guided walk: lock, map with every cache type, NoWrite, NX, user mappings, the faults",
		     cmd_tour);
