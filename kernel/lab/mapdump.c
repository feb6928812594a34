/*
 * mapdump: both kinds of address space, with live MDL mappings in them, as machine-readable
 * lines for scripts/map.py (`make map` draws them).
 *
 * The command sets a scene, dumps it from the real page tables, and takes it down again:
 *
 *   - an agent process (user/agent.c): its image, stack and parameter page;
 *   - MDL "wc": MmAllocatePagesForMdlEx(WC_PAGES, MmWriteCombined), mapped into the kernel
 *     (system PTEs, RW) and into the process read-only (MdlMappingNoWrite) at USER_MAP_VA;
 *     its frames' direct-map aliases turn WC too (mm/RULES.md decision 1);
 *   - MDL "pool": a POOL_PAGES nonpaged-pool buffer, probed and locked, mapped into the
 *     kernel and into the process read-write (pool stays WB whatever is asked);
 *   - MDL "uc": MmAllocatePagesForMdlEx(UC_PAGES, MmNonCached), mapped into the kernel only,
 *     read-only;
 *
 * then runs the agent, which reads the first word of its "wc" mapping (the kernel wrote a
 * marker there through its own mapping: the same frames, seen from ring 3), and prints:
 *
 *   mapdump: begin version=1
 *   mapdump: space name=kernel cr3=0x...
 *   mapdump: space name=user cr3=0x... pid=N process=agent
 *   mapdump: range space=S start=0x... last=0x... leaves=4K+2M us=S rw=RW x=NX g=G type=WB region="..."
 *   mapdump: mdl name=N mdl=0x... pages=N type=WC kernel=0x... user=0x... rights_kernel=RW rights_user=R pfns=0x..,0x..
 *   mapdump: agent read=0x... wrote=0x...
 *   mapdump: end
 *
 * A range is a run of leaves with contiguous addresses, the same effective rights and type
 * (the page-table walk of ptdump, the same merging) and the same region: the kernel's regions
 * are mm/layout.h's (ptdump_region_name), the user's are the process's VADs.  `last` is
 * inclusive.  `kernel=`/`user=` of an MDL are page-aligned starts of its mappings (0: none).
 * Everything is released before the command returns, and it checks that every resource
 * counter (kernel/accounting.h) reads as before.
 */
#include "include/wdm.h"
#include "include/mdlab/protocol.h"
#include "kernel/accounting.h"
#include "kernel/lib.h"
#include "kernel/lab/monitor.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "kernel/lab/ptdump.h"
#include "mm/vad.h"

#define MAPDUMP_TAG 0x706D614Du /* 'Mamp' */
/* Every line of the dump starts so (include/mdlab/protocol.h; scripts/map.py reads them). */
#define DUMP MDLAB_MAPDUMP " "
#define WC_PAGES 16
#define POOL_PAGES 2
#define UC_PAGES 4
#define USER_MAP_VA 0x20000000ul
#define MARKER 0x6D646C61626D6170ull /* "pambaldm": what the kernel writes, the agent reads */
#define MAX_PFNS_LISTED 16

/* ---- one merged walk, printed as range lines -------------------------------------------- */

struct run {
	bool open;
	uint64_t first, last;
	unsigned levels;
	struct pt_attrs eff;
	const char *region;
	const void *key; /* what the range belongs to: a VAD in a user space, the region name else */
};

struct walk {
	const char *space;
	PEPROCESS process; /* user space: VADs name the regions */
	uint64_t lo, hi_incl;
	struct run run;
};

static const char *vad_kind_name(const struct vad *v)
{
	static const char *const names[] = { [VAD_PRIVATE] = "private", [VAD_IMAGE] = "image",
					     [VAD_STACK] = "stack", [VAD_PARAMS] = "parameter page",
					     [VAD_MDL] = "MDL mapping" };
	if (!v)
		return "no VAD";
	return v->kind < ARRAY_SIZE(names) && names[v->kind] ? names[v->kind] : "?";
}


static void emit_run(const struct walk *w)
{
	const struct run *r = &w->run;
	char levels[16];
	if (!r->open)
		return;
	ptdump_format_levels(r->levels, levels, sizeof levels);
	kprintf(DUMP "range space=%s start=0x%016lx last=0x%016lx leaves=%s us=%s rw=%s x=%s g=%s type=%s "
		"region=\"%s\"\n", w->space, r->first, r->last, levels, r->eff.user ? "U" : "S",
		r->eff.write ? "RW" : "R", r->eff.exec ? "X" : "NX", r->eff.global ? "G" : "-",
		memtype_name(r->eff.type), r->region);
}

static void walk_leaf(const struct pt_leaf *l, void *ctx)
{
	struct walk *w = ctx;
	uint64_t first = MAX(l->va, w->lo), last = MIN(l->va + (l->size - 1), w->hi_incl);
	const char *region;
	const void *key;
	if (w->process && first < USER_VA_END) {
		const struct vad *v = vad_find(&w->process->mm, first);
		region = vad_kind_name(v);
		key = v;
	} else {
		region = ptdump_region_name(first);
		key = region;
	}
	struct run *r = &w->run;
	if (r->open && r->last + 1 == first && pt_attrs_equal(r->eff, l->eff) && r->key == key) {
		r->last = last;
		r->levels |= 1u << l->level;
		return;
	}
	emit_run(w);
	*r = (struct run){ .open = true, .first = first, .last = last, .levels = 1u << l->level,
			   .eff = l->eff, .region = region, .key = key };
}

/* The range lines of [lo, hi) (hi 0: to the top) of one address space. */
static void dump_space(const char *space, const struct pt_root *root, PEPROCESS process, uint64_t lo, uint64_t hi)
{
	struct walk w = { .space = space, .process = process, .lo = lo, .hi_incl = hi ? hi - 1 : ~0ull };
	pt_for_each_leaf(root, lo, hi, walk_leaf, &w);
	emit_run(&w);
}

/* ---- the scene ---------------------------------------------------------------------------- */

struct scene_mdl {
	const char *name;
	PMDL mdl;
	enum memtype type;    /* what the frames are (pool: WB whatever is asked) */
	uint8_t *pool;        /* the pool buffer of a probed MDL, NULL otherwise */
	PVOID kernel_va, user_va;
	bool kernel_write, user_write;
};

struct scene {
	PEPROCESS process;
	struct scene_mdl wc, pool, uc;
	uint64_t agent_read;
	NTSTATUS agent_status;
};

static PMDL allocate_typed(ULONG pages, MEMORY_CACHING_TYPE ct)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	return MmAllocatePagesForMdlEx(lo, hi, skip, (SIZE_T)pages * PAGE_SIZE, ct, MM_ALLOCATE_FULLY_REQUIRED);
}

/* A zeroed pool buffer of whole pages, described by a probed-and-locked MDL. */
static bool make_pool_mdl(struct scene_mdl *s)
{
	s->pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, POOL_PAGES * PAGE_SIZE, MAPDUMP_TAG);
	if (!s->pool)
		return false;
	s->mdl = IoAllocateMdl(s->pool, POOL_PAGES * PAGE_SIZE, FALSE, FALSE, NULL);
	if (!s->mdl)
		return false;
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(s->mdl, KernelMode, IoWriteAccess);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	return st == STATUS_SUCCESS;
}

static bool map_kernel(struct scene_mdl *s, MEMORY_CACHING_TYPE ct, bool write)
{
	s->kernel_write = write;
	s->kernel_va = MmMapLockedPagesSpecifyCache(s->mdl, KernelMode, ct, NULL, FALSE,
						    NormalPagePriority | (write ? 0 : MdlMappingNoWrite));
	return s->kernel_va != NULL;
}

/* Map into the scene's process (attached); UserMode failures raise. */
static bool map_user(struct scene *sc, struct scene_mdl *s, MEMORY_CACHING_TYPE ct, PVOID at, bool write)
{
	KAPC_STATE apc;
	volatile PVOID va = NULL;
	s->user_write = write;
	KeStackAttachProcess(sc->process, &apc);
	__try {
		va = MmMapLockedPagesSpecifyCache(s->mdl, UserMode, ct, at, FALSE,
						  NormalPagePriority | (write ? 0 : MdlMappingNoWrite));
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		kprintf(DUMP "mapping MDL %s into the process raised 0x%08x\n", s->name, (ULONG)GetExceptionCode());
	}
	KeUnstackDetachProcess(&apc);
	s->user_va = va;
	return va != NULL;
}

/* Undo whatever of one scene MDL exists (user mapping first: an MDL can't be unlocked or
 * freed while a process maps it). */
static void release_mdl(struct scene *sc, struct scene_mdl *s)
{
	if (!s->mdl) {
		if (s->pool)
			ExFreePoolWithTag(s->pool, MAPDUMP_TAG);
		return;
	}
	if (s->user_va) {
		KAPC_STATE apc;
		KeStackAttachProcess(sc->process, &apc);
		MmUnmapLockedPages(s->user_va, s->mdl);
		KeUnstackDetachProcess(&apc);
	}
	if (s->pool) {
		if (s->mdl->MdlFlags & MDL_PAGES_LOCKED)
			MmUnlockPages(s->mdl); /* releases the system mapping first */
		IoFreeMdl(s->mdl);
		ExFreePoolWithTag(s->pool, MAPDUMP_TAG);
	} else {
		MmFreePagesFromMdl(s->mdl); /* releases the system mapping too */
		ExFreePool(s->mdl);
	}
	*s = (struct scene_mdl){ .name = s->name };
}

static void take_down(struct scene *sc)
{
	release_mdl(sc, &sc->wc);
	release_mdl(sc, &sc->pool);
	release_mdl(sc, &sc->uc);
	if (sc->process)
		PsDestroyProcess(sc->process);
	sc->process = NULL;
}

/* The agent reads the first word of the "wc" mapping and exits. */
static PEPROCESS make_agent(void)
{
	static uint64_t args[1 + 2 * AGENT_OP_SLOTS];
	memset(args, 0, sizeof args);
	args[0] = 2;
	args[1] = AGENT_READ64;
	args[2] = USER_MAP_VA;
	args[1 + AGENT_OP_SLOTS] = AGENT_EXIT;
	return PsCreateProcess("agent", 0, args, ARRAY_SIZE(args));
}

static bool set_up(struct scene *sc)
{
	sc->wc = (struct scene_mdl){ .name = "wc", .type = MT_WC };
	sc->pool = (struct scene_mdl){ .name = "pool", .type = MT_WB };
	sc->uc = (struct scene_mdl){ .name = "uc", .type = MT_UC };
	sc->process = make_agent();
	if (!sc->process) {
		kprintf(DUMP "PsCreateProcess(agent) failed\n");
		return false;
	}
	sc->wc.mdl = allocate_typed(WC_PAGES, MmWriteCombined);
	sc->uc.mdl = allocate_typed(UC_PAGES, MmNonCached);
	if (!sc->wc.mdl || !sc->uc.mdl || !make_pool_mdl(&sc->pool)) {
		kprintf(DUMP "could not allocate the MDLs\n");
		return false;
	}
	if (!map_kernel(&sc->wc, MmWriteCombined, true) || !map_kernel(&sc->pool, MmCached, true) ||
	    !map_kernel(&sc->uc, MmNonCached, false)) {
		kprintf(DUMP "a kernel mapping failed\n");
		return false;
	}
	if (!map_user(sc, &sc->wc, MmWriteCombined, (PVOID)USER_MAP_VA, false) ||
	    !map_user(sc, &sc->pool, MmCached, NULL, true))
		return false;
	*(volatile uint64_t *)sc->wc.kernel_va = MARKER;
	sc->agent_status = PsRunProcess(sc->process);
	if (!ps_report(sc->process, AGENT_KEY(0, 0), &sc->agent_read))
		sc->agent_read = 0;
	return true;
}

/* ---- printing the scene ----------------------------------------------------------------------- */

static void print_mdl(const struct scene_mdl *s)
{
	char pfns[MAX_PFNS_LISTED * 20];
	ULONG pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(MmGetMdlVirtualAddress(s->mdl), s->mdl->ByteCount);
	unsigned len = 0;
	pfns[0] = 0;
	for (ULONG i = 0; i < pages && i < MAX_PFNS_LISTED; i++)
		len += ksnprintf(pfns + len, sizeof pfns - len, "%s0x%lx", i ? "," : "", MmGetMdlPfnArray(s->mdl)[i]);
	kprintf(DUMP "mdl name=%s mdl=0x%lx pages=%u type=%s kernel=0x%lx user=0x%lx rights_kernel=%s "
		"rights_user=%s pfns=%s\n", s->name, (uint64_t)s->mdl, pages, memtype_name(s->type),
		ALIGN_DOWN((uint64_t)s->kernel_va, PAGE_SIZE), ALIGN_DOWN((uint64_t)s->user_va, PAGE_SIZE),
		s->kernel_va ? (s->kernel_write ? "RW" : "R") : "-", s->user_va ? (s->user_write ? "RW" : "R") : "-",
		pfns);
}

static void print_scene(const struct scene *sc)
{
	kprintf(DUMP "begin version=%d\n", MDLAB_MAPDUMP_VERSION);
	kprintf(DUMP "space name=kernel cr3=0x%lx\n", kernel_root.pml4);
	kprintf(DUMP "space name=user cr3=0x%lx pid=%u process=%s\n", sc->process->mm.root.pml4,
		sc->process->pid, sc->process->name);
	print_mdl(&sc->wc);
	print_mdl(&sc->pool);
	print_mdl(&sc->uc);
	kprintf(DUMP "agent status=0x%08x read=0x%lx wrote=0x%lx\n", (ULONG)sc->agent_status, sc->agent_read,
		(uint64_t)MARKER);
	dump_space("kernel", &kernel_root, NULL, USER_VA_END, 0);
	dump_space("user", &sc->process->mm.root, sc->process, 0, USER_VA_END);
	kprintf(DUMP "end\n");
}

/* ---- the command ------------------------------------------------------------------------------ */

static int cmd_mapdump(void)
{
	struct accounting_snapshot before;
	accounting_snapshot(&before);
	struct scene sc = { 0 };
	if (set_up(&sc))
		print_scene(&sc);
	take_down(&sc);
	if (!accounting_report_changes(&before, DUMP "LEAK"))
		kprintf(DUMP "cleaned up, all %u resource counters read as before\n", before.n);
	return 0;
}
MONITOR_COMMAND_BARE(mapdump,
		     "map MDLs into the kernel and an agent process; print both spaces as range lines (make map)",
		     cmd_mapdump);
