/*
 * Live objects in the monitor (kernel/lab/objects.h): named pool buffers, MDLs, mappings and
 * processes that outlive the command that made them.
 *
 *   alloc pool NAME BYTES           ExAllocatePool2(POOL_FLAG_NON_PAGED)
 *   alloc pages NAME BYTES [TYPE]   MmAllocatePagesForMdlEx: an MDL, locked, frames typed
 *   build NAME POOL [OFF [LEN]]     IoAllocateMdl over a pool buffer (not locked yet)
 *   lock NAME [read|write]          MmProbeAndLockPages(KernelMode)
 *   unlock NAME                     MmUnlockPages (its system mapping goes first, rule 8)
 *   map NAME MDL [system|PROC] [TYPE] [low|normal|high] [nowrite] [noexecute]
 *                                   MmMapLockedPagesSpecifyCache, into system space or,
 *                                   attached, into the process object PROC (UserMode)
 *   protect MDL PROT                MmProtectMdlSystemAddress of the MDL's system mapping
 *   unmap NAME                      MmUnmapLockedPages of the mapping NAME
 *   free NAME                       ExFreePoolWithTag, IoFreeMdl, MmFreePagesFromMdl +
 *                                   ExFreePool, or PsDestroyProcess
 *   spawn NAME                      PsCreateProcess("agent"), not run: mdlab has no scheduler,
 *                                   so the process waits, alive, with its own address space
 *   objects                         what is alive
 *   db|dd|dq [-p] WHERE [COUNT]     bytes, dwords, qwords at a kernel address, an object
 *   eb|eq [-p] WHERE VALUE...       (NAME or NAME+OFF, hex), or with -p a physical address;
 *                                   writes only into pool and MDL frames
 *
 * Every access of db/eb goes through the translation the real page tables hold (pt_query in
 * the object's address space), to RAM only, by the frame's direct-map alias: never a fault,
 * never a read with side effects, and a write only where the mapping itself allows one.
 *
 * An order error gets a message naming the bug check the routine would raise (mm/RULES.md
 * rules 2, 9, 12, 17, 21 and U7) and changes nothing; with --bugcheck anywhere on the line the
 * lab's check is skipped and the real call is made, to see the STOP screen.
 */
#include "kernel/lab/objects.h"
#include "kernel/lab/mdl_cmds.h"
#include "kernel/lab/mm_cmds.h"
#include "kernel/lab/ps_cmds.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/mdl_user.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/syspte.h"
#include "mm/tlb.h"

#define LAB_TAG 0x2062614Cu /* 'Lab ' */
#define MAX_OBJECTS 32
#define NAME_MAX 16
#define PAGES_SHOWN 4
#define DUMP_MAX 0x400
#define MAX_VALUES 8 /* eb/eq: what fits on a monitor line of 8 words */

struct object {
	bool used;
	char name[NAME_MAX];
	enum lab_object_kind kind;
	void *pool;            /* LAB_POOL: the buffer */
	uint64_t bytes;        /* LAB_POOL, LAB_MDL (pages): the size asked for */
	PMDL mdl;              /* LAB_MDL, LAB_MAPPING */
	bool pages;            /* LAB_MDL: from MmAllocatePagesForMdlEx, released by free */
	struct object *source; /* LAB_MDL built over a pool buffer; LAB_MAPPING: its MDL */
	struct object *proc;   /* LAB_MAPPING into a process: the process object */
	PEPROCESS process;     /* LAB_PROCESS */
	PVOID va;              /* LAB_MAPPING */
	MEMORY_CACHING_TYPE type;
	ULONG priority;
};

static struct object objects[MAX_OBJECTS];
static struct mon_out *out = MON_CONSOLE;
static bool real_call; /* --bugcheck on this command line */

void lab_objects_set_output(struct mon_out *o) { out = o; }

static const char *const kind_names[] = {
	[LAB_POOL] = "pool", [LAB_MDL] = "MDL", [LAB_MAPPING] = "mapping", [LAB_PROCESS] = "process"
};

static const char *const kind_phrases[] = {
	[LAB_POOL] = "a pool buffer", [LAB_MDL] = "an MDL", [LAB_MAPPING] = "a mapping", [LAB_PROCESS] = "a process"
};

/* ---- the table ------------------------------------------------------------------------ */

static struct object *lookup(const char *name)
{
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (objects[i].used && !strcmp(objects[i].name, name))
			return &objects[i];
	return NULL;
}

/* The object `name` of kind `kind`; NULL with a message when there is none or it is another
 * kind. */
static struct object *get(const char *name, enum lab_object_kind kind)
{
	struct object *ob = lookup(name);
	if (!ob) {
		mon_printf(out, "no object named '%s' ('objects' lists them)\n", name);
		return NULL;
	}
	if (ob->kind != kind) {
		mon_printf(out, "'%s' is %s, not %s\n", name, kind_phrases[ob->kind], kind_phrases[kind]);
		return NULL;
	}
	return ob;
}

/* A free slot for a new object `name`; NULL with a message when the name is taken, bad, or
 * the table full. */
static struct object *slot_for(const char *name)
{
	size_t n = strlen(name);
	if (!n || n >= NAME_MAX || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'))) {
		mon_printf(out, "'%s' cannot name an object: a letter, then up to %d characters\n", name, NAME_MAX - 2);
		return NULL;
	}
	for (const char *c = name; *c; c++)
		if (*c == '+') {
			mon_printf(out, "'%s' cannot name an object: '+' adds an offset\n", name);
			return NULL;
		}
	if (lookup(name)) {
		mon_printf(out, "an object named '%s' exists already\n", name);
		return NULL;
	}
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (!objects[i].used) {
			objects[i] = (struct object){ .used = true };
			strlcpy(objects[i].name, name, sizeof objects[i].name);
			return &objects[i];
		}
	mon_printf(out, "no room for another object (%d are alive): free one\n", MAX_OBJECTS);
	return NULL;
}

static void drop(struct object *ob) { *ob = (struct object){ 0 }; }

/* The first live object that depends on `ob` (an MDL over a buffer, a mapping of an MDL or
 * into a process), or NULL. */
static struct object *dependent(const struct object *ob)
{
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (objects[i].used && (objects[i].source == ob || objects[i].proc == ob))
			return &objects[i];
	return NULL;
}

bool lab_object_find(const char *name, struct lab_object_info *info)
{
	const struct object *ob = lookup(name);
	if (!ob)
		return false;
	*info = (struct lab_object_info){ .kind = ob->kind, .bytes = ob->bytes, .mdl = ob->mdl };
	switch (ob->kind) {
	case LAB_POOL: info->va = (uint64_t)ob->pool; break;
	case LAB_MDL: info->bytes = ob->mdl->ByteCount; break;
	case LAB_MAPPING:
		info->va = (uint64_t)ob->va;
		info->process = ob->proc ? ob->proc->process : NULL;
		break;
	case LAB_PROCESS: info->process = ob->process; break;
	}
	return true;
}

unsigned lab_object_count(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		n += objects[i].used;
	return n;
}

/* ---- what changed ---------------------------------------------------------------------- */

static void tlb_since(const struct tlb_stats *before)
{
	struct tlb_stats now;
	tlb_get_stats(&now);
	uint64_t pages = now.single_pages - before->single_pages, full = now.full_flushes - before->full_flushes;
	mon_printf(out, "  TLB: %lu INVLPG, %lu full flush%s", pages, full, full == 1 ? "" : "es");
	if (!pages && !full)
		mon_printf(out, " (no translation was removed or weakened)");
	else if (full)
		mon_printf(out, " (more than %d pages, or a memory-type change: mm/tlb.h)", TLB_SINGLE_FLUSH_MAX);
	mon_printf(out, "\n");
}

static const struct pt_root *root_of(const struct object *map)
{
	return map->proc ? &map->proc->process->mm.root : &kernel_root;
}

/* Every level's entry of the first pages of a mapping (or of where it was). */
static void print_ptes(const struct pt_root *root, uint64_t va, ULONG pages)
{
	va = ALIGN_DOWN(va, PAGE_SIZE);
	for (ULONG i = 0; i < pages && i < PAGES_SHOWN; i++)
		mm_print_pte(out, root, va + (uint64_t)i * PAGE_SIZE);
	if (pages > PAGES_SHOWN)
		mon_printf(out, "  ... %u more pages ('pte VA' for each)\n", pages - PAGES_SHOWN);
}

/* ---- argument words ------------------------------------------------------------------- */

static const struct {
	const char *name;
	MEMORY_CACHING_TYPE type;
} cache_words[] = {
	{ "cached", MmCached }, { "wb", MmCached },
	{ "noncached", MmNonCached }, { "uc", MmNonCached },
	{ "writecombined", MmWriteCombined }, { "wc", MmWriteCombined },
	{ "coherent", MmHardwareCoherentCached },
	{ "unordered", MmNonCachedUnordered }, { "uc-", MmNonCachedUnordered },
	{ "uswc", MmUSWCCached },
	{ "wt", MmMdlabWriteThrough }, { "wp", MmMdlabWriteProtected },
};

static bool cache_word(const char *w, MEMORY_CACHING_TYPE *t)
{
	for (unsigned i = 0; i < ARRAY_SIZE(cache_words); i++)
		if (!strcmp(w, cache_words[i].name)) {
			*t = cache_words[i].type;
			return true;
		}
	return false;
}

static const char *cache_name(MEMORY_CACHING_TYPE t)
{
	for (unsigned i = 0; i < ARRAY_SIZE(cache_words); i++)
		if (cache_words[i].type == t)
			return cache_words[i].name;
	return "?";
}

static const struct {
	const char *name;
	ULONG value;
} protect_words[] = {
	{ "noaccess", PAGE_NOACCESS }, { "readonly", PAGE_READONLY }, { "readwrite", PAGE_READWRITE },
	{ "execute", PAGE_EXECUTE }, { "execute_read", PAGE_EXECUTE_READ },
	{ "execute_readwrite", PAGE_EXECUTE_READWRITE },
};

/* A size or count in bytes: hex like every monitor number, and not 0. */
static bool size_word(const char *w, uint64_t *v)
{
	if (!monitor_parse_number_to(out, w, 16, v))
		return false;
	if (!*v || *v > 0xFFFFF000u) {
		mon_printf(out, "'%s' is refused: a size from 1 to 0xfffff000 bytes\n", w);
		return false;
	}
	return true;
}

/* ---- alloc, build, free ----------------------------------------------------------------- */

static PMDL allocate_pages(uint64_t bytes, MEMORY_CACHING_TYPE t)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	return MmAllocatePagesForMdlEx(lo, hi, skip, bytes, t, MM_ALLOCATE_FULLY_REQUIRED);
}

static int cmd_alloc(int argc, char **argv)
{
	uint64_t bytes;
	MEMORY_CACHING_TYPE t = MmCached;
	bool pool = argc >= 2 && !strcmp(argv[1], "pool"), pages = argc >= 2 && !strcmp(argv[1], "pages");
	if (!(pool && argc == 4) && !(pages && (argc == 4 || argc == 5)))
		return -1;
	if (!size_word(argv[3], &bytes))
		return -1;
	if (argc == 5 && !cache_word(argv[4], &t)) {
		mon_printf(out, "'%s' is no cache type\n", argv[4]);
		return -1;
	}
	struct object *ob = slot_for(argv[2]);
	if (!ob)
		return 1;
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	if (pool) {
		ob->kind = LAB_POOL;
		ob->bytes = bytes;
		ob->pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, LAB_TAG);
		if (!ob->pool) {
			mon_printf(out, "ExAllocatePool2 returned NULL: no pool\n");
			drop(ob);
			return 1;
		}
		mon_printf(out, "%s: ExAllocatePool2(NonPaged, 0x%lx, 'Lab ') = %p\n", ob->name, bytes, ob->pool);
		uint64_t first = ALIGN_DOWN((uint64_t)ob->pool, PAGE_SIZE);
		uint64_t n = (ALIGN_UP((uint64_t)ob->pool + bytes, PAGE_SIZE) - first) / PAGE_SIZE;
		for (uint64_t i = 0; i < n && i < PAGES_SHOWN; i++)
			mdl_print_translation(out, &kernel_root, "page", first + i * PAGE_SIZE);
	} else {
		ob->kind = LAB_MDL;
		ob->pages = true;
		ob->bytes = bytes;
		ob->mdl = allocate_pages(bytes, t);
		if (!ob->mdl) {
			mon_printf(out, "MmAllocatePagesForMdlEx returned NULL: not enough free frames\n");
			drop(ob);
			return 1;
		}
		mon_printf(out, "%s: MmAllocatePagesForMdlEx(0x%lx, %s) = MDL %p; its frames' direct-map aliases "
			   "take the type (mm/RULES.md rule 10, decision 1)\n", ob->name, bytes, cache_name(t),
			   (void *)ob->mdl);
		mdl_print(out, (uint64_t)ob->mdl, MDL_PRINT_PFNS);
		mdl_print_translation(out, &kernel_root, "alias of [0]",
				      (uint64_t)pfn_to_virt(MmGetMdlPfnArray(ob->mdl)[0]));
	}
	tlb_since(&tlb);
	return 0;
}
MONITOR_COMMAND(alloc, "alloc pool NAME BYTES | alloc pages NAME BYTES [TYPE]",
		"a named nonpaged-pool buffer, or an MDL of fresh frames of TYPE (wb uc wc uc- wt wp ...)",
		cmd_alloc);

static int cmd_build(int argc, char **argv)
{
	uint64_t off = 0, len = 0;
	if (argc < 3 || argc > 5)
		return -1;
	if (argc >= 4 && !monitor_parse_number_to(out, argv[3], 16, &off))
		return -1;
	if (argc == 5 && !size_word(argv[4], &len))
		return -1;
	struct object *src = get(argv[2], LAB_POOL);
	if (!src)
		return 1;
	if (off >= src->bytes || (argc == 5 && len > src->bytes - off)) {
		mon_printf(out, "0x%lx bytes at offset 0x%lx are not inside '%s' (0x%lx bytes)\n", len, off, src->name,
			   src->bytes);
		return 1;
	}
	if (argc < 5)
		len = src->bytes - off;
	struct object *ob = slot_for(argv[1]);
	if (!ob)
		return 1;
	ob->kind = LAB_MDL;
	ob->source = src;
	ob->mdl = IoAllocateMdl((uint8_t *)src->pool + off, (ULONG)len, FALSE, FALSE, NULL);
	if (!ob->mdl) {
		mon_printf(out, "IoAllocateMdl returned NULL\n");
		drop(ob);
		return 1;
	}
	mon_printf(out, "%s: IoAllocateMdl(%p, 0x%lx) = %p; the PFN array is filled by 'lock %s'\n", ob->name,
		   (void *)((uint8_t *)src->pool + off), len, (void *)ob->mdl, ob->name);
	mdl_print(out, (uint64_t)ob->mdl, 0);
	return 0;
}
MONITOR_COMMAND(build, "build NAME POOL [OFFSET [LENGTH]]",
		"IoAllocateMdl: a named MDL describing (part of) the pool buffer POOL", cmd_build);

/* MmProbeAndLockPages raises its failures (rule 12): the status, or STATUS_SUCCESS. */
static NTSTATUS probe(PMDL mdl, LOCK_OPERATION op)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	__try {
		MmProbeAndLockPages(mdl, KernelMode, op);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	return st;
}

static int cmd_lock(int argc, char **argv)
{
	LOCK_OPERATION op = IoWriteAccess;
	if (argc < 2 || argc > 3)
		return -1;
	if (argc == 3) {
		if (!strcmp(argv[2], "read"))
			op = IoReadAccess;
		else if (strcmp(argv[2], "write"))
			return -1;
	}
	struct object *ob = get(argv[1], LAB_MDL);
	if (!ob)
		return 1;
	/* mm/RULES.md rule 12: an MDL already locked cannot be probed. */
	if ((ob->mdl->MdlFlags & MDL_PAGES_LOCKED) && !real_call) {
		mon_printf(out, "'%s' is locked already: MmProbeAndLockPages would bug check 0xC4 P1 0xB0 "
			   "(MDL, flags, MDL_PAGES_LOCKED); add --bugcheck to see it\n", ob->name);
		return 1;
	}
	NTSTATUS st = probe(ob->mdl, op);
	if (st != STATUS_SUCCESS) {
		mon_printf(out, "MmProbeAndLockPages raised 0x%08x; nothing is locked\n", (ULONG)st);
		return 1;
	}
	mon_printf(out, "%s: MmProbeAndLockPages(KernelMode, %s): each frame's lock count went up\n", ob->name,
		   op == IoReadAccess ? "IoReadAccess" : "IoWriteAccess");
	mdl_print(out, (uint64_t)ob->mdl, MDL_PRINT_PFNS);
	return 0;
}
MONITOR_COMMAND(lock, "lock MDL [read|write]", "MmProbeAndLockPages(KernelMode) of the MDL", cmd_lock);

/* The mapping objects of an MDL: `user` selects user mappings, else the system one. */
static struct object *mapping_of(const struct object *mdl, bool user)
{
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (objects[i].used && objects[i].kind == LAB_MAPPING && objects[i].source == mdl &&
		    !!objects[i].proc == user)
			return &objects[i];
	return NULL;
}

/* A routine that releases the MDL's system mapping itself (rule 8) ends that object. */
static void system_mapping_released(const struct object *mdl, const char *by)
{
	struct object *m = mapping_of(mdl, false);
	if (m) {
		mon_printf(out, "  %s released the system mapping '%s' at %p first (mm/RULES.md rule 8)\n", by,
			   m->name, m->va);
		drop(m);
	}
}

static int cmd_unlock(int argc, char **argv)
{
	if (argc != 2)
		return -1;
	struct object *ob = get(argv[1], LAB_MDL);
	if (!ob)
		return 1;
	if (ob->pages) {
		mon_printf(out, "'%s' cannot be unlocked: its frames came from MmAllocatePagesForMdlEx and 'free' "
			   "releases them (MmFreePagesFromMdl, rule 10)\n", ob->name);
		return 1;
	}
	if (!real_call) {
		const struct object *um = mapping_of(ob, true);
		const char *why = NULL;
		if (!(ob->mdl->MdlFlags & MDL_PAGES_LOCKED))
			why = "it is not locked: MmUnlockPages would bug check 0xC4 P1 0x7C (verifier on) or 0x76 "
			      "P1 1 (MDL, pages, 0) (rule 12)";
		else if (um)
			why = "a process still maps it: MmUnlockPages would bug check 0xC4 P1 0x2005 (MDL, user address, "
			      "process) (rule U7); 'unmap' that mapping first";
		if (why) {
			mon_printf(out, "'%s' cannot be unlocked: %s; add --bugcheck to make the call\n", ob->name, why);
			return 1;
		}
	}
	ULONG pages = mdl_page_count(ob->mdl);
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	MmUnlockPages(ob->mdl);
	mon_printf(out, "%s: MmUnlockPages: %u frame(s) unlocked\n", ob->name, pages);
	system_mapping_released(ob, "MmUnlockPages");
	mdl_print(out, (uint64_t)ob->mdl, MDL_PRINT_PFNS);
	tlb_since(&tlb);
	return 0;
}
MONITOR_COMMAND(unlock, "unlock MDL", "MmUnlockPages (releases the MDL's system mapping first)", cmd_unlock);

/* Why `ob` cannot be freed now, or NULL.  *fatal: the free routine would bug check (so
 * --bugcheck may make the call); otherwise the refusal is the lab's own bookkeeping. */
static const char *free_refused(struct object *ob, bool *fatal)
{
	static char why[160];
	struct object *d = dependent(ob), *um = ob->kind == LAB_MDL ? mapping_of(ob, true) : NULL;
	*fatal = false;
	if (um) {
		*fatal = true;
		ksnprintf(why, sizeof why, "the mapping '%s' of a process still maps it: the free would bug check "
			  "0xC4 P1 0x2005 (MDL, 0, 0) (rule U7); 'unmap %s' first", um->name, um->name);
		return why;
	}
	if (d && ob->kind != LAB_PROCESS && !(ob->kind == LAB_MDL && d->kind == LAB_MAPPING)) {
		ksnprintf(why, sizeof why, "the %s '%s' describes it; free that first", kind_names[d->kind], d->name);
		return why;
	}
	if (ob->kind == LAB_MDL && !ob->pages && (ob->mdl->MdlFlags & MDL_PAGES_LOCKED))
		return "it is locked: IoFreeMdl frees only the MDL and the frames would stay locked forever "
		       "(rule 17); 'unlock' it first";
	return NULL;
}

static void release(struct object *ob)
{
	switch (ob->kind) {
	case LAB_POOL:
		ExFreePoolWithTag(ob->pool, LAB_TAG);
		mon_printf(out, "%s: ExFreePoolWithTag(%p)\n", ob->name, ob->pool);
		break;
	case LAB_MDL:
		if (ob->pages) {
			MmFreePagesFromMdl(ob->mdl);
			mon_printf(out, "%s: MmFreePagesFromMdl: frames freed, their aliases WB again\n", ob->name);
			system_mapping_released(ob, "MmFreePagesFromMdl");
			ExFreePool(ob->mdl);
		} else {
			IoFreeMdl(ob->mdl);
			mon_printf(out, "%s: IoFreeMdl(%p)\n", ob->name, (void *)ob->mdl);
		}
		break;
	case LAB_MAPPING:
		break;
	case LAB_PROCESS:
		for (struct object *m; (m = dependent(ob));) {
			mon_printf(out, "  PsDestroyProcess tears down the mapping '%s' (user rule U9)\n", m->name);
			drop(m);
		}
		mon_printf(out, "%s: PsDestroyProcess(PID %u)\n", ob->name, ob->process->pid);
		PsDestroyProcess(ob->process);
		break;
	}
	drop(ob);
}

static int cmd_free(int argc, char **argv)
{
	if (argc != 2)
		return -1;
	struct object *ob = lookup(argv[1]);
	if (!ob) {
		mon_printf(out, "no object named '%s' ('objects' lists them)\n", argv[1]);
		return 1;
	}
	if (ob->kind == LAB_MAPPING) {
		mon_printf(out, "'%s' is a mapping: 'unmap %s' releases it\n", ob->name, ob->name);
		return 1;
	}
	bool fatal;
	const char *why = free_refused(ob, &fatal);
	if (why && !(fatal && real_call)) {
		mon_printf(out, "'%s' cannot be freed: %s%s\n", ob->name, why, fatal ? "; or add --bugcheck" : "");
		return 1;
	}
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	release(ob);
	tlb_since(&tlb);
	return 0;
}
MONITOR_COMMAND(free, "free NAME", "release a pool buffer, an MDL or a process made here", cmd_free);

static int cmd_spawn(int argc, char **argv)
{
	static const uint64_t args[1] = { 0 }; /* no operations: it would return at once if run */
	if (argc != 2)
		return -1;
	struct object *ob = slot_for(argv[1]);
	if (!ob)
		return 1;
	ob->kind = LAB_PROCESS;
	ob->process = PsCreateProcess("agent", 0, args, ARRAY_SIZE(args));
	if (!ob->process) {
		mon_printf(out, "PsCreateProcess failed: no memory\n");
		drop(ob);
		return 1;
	}
	mon_printf(out, "%s: PsCreateProcess(agent) = PID %u; it stays alive, not run (no scheduler), with its "
		   "own PML4 at 0x%lx\n", ob->name, ob->process->pid, ob->process->mm.root.pml4);
	ps_print_header(out);
	ps_print_process(out, ob->process);
	return 0;
}
MONITOR_COMMAND(spawn, "spawn NAME", "a process that stays alive (not run) to map MDLs into", cmd_spawn);

/* ---- map, unmap, protect ---------------------------------------------------------------- */

/* A UserMode mapping, attached to p; its failures raise (rule U3): NULL and *st then. */
static PVOID map_user(PEPROCESS p, PMDL mdl, MEMORY_CACHING_TYPE t, ULONG priority, NTSTATUS *st)
{
	KAPC_STATE apc;
	volatile PVOID va = NULL;
	volatile NTSTATUS raised = STATUS_SUCCESS;
	KeStackAttachProcess(p, &apc);
	__try {
		va = MmMapLockedPagesSpecifyCache(mdl, UserMode, t, NULL, FALSE, priority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		raised = GetExceptionCode();
	}
	KeUnstackDetachProcess(&apc);
	*st = raised;
	return va;
}

static int cmd_map(int argc, char **argv)
{
	if (argc < 3)
		return -1;
	struct object *proc = NULL;
	MEMORY_CACHING_TYPE t = MmCached;
	ULONG priority = NormalPagePriority, flags = 0;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "system"))
			proc = NULL;
		else if (cache_word(argv[i], &t))
			continue;
		else if (!strcmp(argv[i], "low"))
			priority = LowPagePriority;
		else if (!strcmp(argv[i], "normal"))
			priority = NormalPagePriority;
		else if (!strcmp(argv[i], "high"))
			priority = HighPagePriority;
		else if (!strcmp(argv[i], "nowrite"))
			flags |= MdlMappingNoWrite;
		else if (!strcmp(argv[i], "noexecute"))
			flags |= MdlMappingNoExecute;
		else if (lookup(argv[i])) {
			if (!(proc = get(argv[i], LAB_PROCESS)))
				return 1;
		} else {
			mon_printf(out, "'%s' is no cache type, priority, flag or process object\n", argv[i]);
			return -1;
		}
	}
	struct object *mdl = get(argv[2], LAB_MDL);
	if (!mdl)
		return 1;
	USHORT f = (USHORT)mdl->mdl->MdlFlags;
	if (!real_call) {
		if (!(f & MDL_PAGES_LOCKED)) {
			mon_printf(out, "'%s' is not locked: MmMapLockedPagesSpecifyCache would bug check 0xC4 P1 0xB3 "
				   "(MDL, flags, MDL_PAGES_LOCKED): mapping an MDL whose pages are not locked "
				   "(rule 2); 'lock %s' first, or add --bugcheck\n", mdl->name, mdl->name);
			return 1;
		}
		/* User rule U4: kernel memory reaches a user only as whole, zeroed pool pages. */
		if (proc && !mdl->pages && (mdl->mdl->ByteOffset || (mdl->mdl->ByteCount & (PAGE_SIZE - 1)))) {
			mon_printf(out, "'%s' does not describe whole pages: mapping it to a user would bug check 0xC4 "
				   "P1 0x2004 (MDL, address, 1) (user rule U4); build it at offset 0 with a length of "
				   "whole pages, or add --bugcheck\n", mdl->name);
			return 1;
		}
		if (!proc && (f & MDL_MAPPED_TO_SYSTEM_VA)) {
			mon_printf(out, "'%s' has a system mapping already (%p): a second one would bug check 0xC4 "
				   "P1 0xB2 (MDL, flags, MDL_MAPPED_TO_SYSTEM_VA) (rule 9); add --bugcheck to see it\n",
				   mdl->name, mdl->mdl->MappedSystemVa);
			return 1;
		}
	}
	struct object *ob = slot_for(argv[1]);
	if (!ob)
		return 1;
	ob->kind = LAB_MAPPING;
	ob->source = mdl;
	ob->mdl = mdl->mdl;
	ob->proc = proc;
	ob->type = t;
	ob->priority = priority | flags;
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	NTSTATUS st = STATUS_SUCCESS;
	PVOID va = proc ? map_user(proc->process, mdl->mdl, t, ob->priority, &st)
			: MmMapLockedPagesSpecifyCache(mdl->mdl, KernelMode, t, NULL, FALSE, ob->priority);
	if (!va) {
		if (st != STATUS_SUCCESS)
			mon_printf(out, "MmMapLockedPagesSpecifyCache(UserMode) raised 0x%08x; nothing mapped\n", (ULONG)st);
		else
			mon_printf(out, "MmMapLockedPagesSpecifyCache returned NULL (rule 3: no system PTEs at this "
				   "priority, or a CacheType that names no type); nothing mapped\n");
		drop(ob);
		return 1;
	}
	ob->va = va;
	ULONG pages = mdl_page_count(mdl->mdl);
	mon_printf(out, "%s: MmMapLockedPagesSpecifyCache(%s, %s, %s, %sPagePriority%s%s) = %p in %s\n", ob->name, mdl->name,
		   proc ? "UserMode" : "KernelMode", cache_name(t),
		   priority == LowPagePriority ? "Low" : priority == HighPagePriority ? "High" : "Normal",
		   flags & MdlMappingNoWrite ? " | NoWrite" : "", flags & MdlMappingNoExecute ? " | NoExecute" : "",
		   (void *)va, proc ? proc->name : "system space");
	mdl_print(out, (uint64_t)mdl->mdl, MDL_PRINT_PFNS);
	print_ptes(root_of(ob), (uint64_t)va, pages);
	tlb_since(&tlb);
	return 0;
}
MONITOR_COMMAND(map, "map NAME MDL [system|PROC] [TYPE] [low|normal|high] [nowrite] [noexecute]",
		"MmMapLockedPagesSpecifyCache of MDL into system space or the process object PROC", cmd_map);

/* `unmap MDL --bugcheck`: the unmap of an MDL's system mapping that is not there, for real:
 * a system-space address (the first system PTE's) for an MDL with no mapping (rule 21). */
static int unmap_mdl(struct object *mdl)
{
	bool mapped = mdl->mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA;
	if (!real_call || mapped) {
		if (mapped)
			mon_printf(out, "'%s' is an MDL: unmap takes the mapping made by 'map' ('objects' lists it)\n",
				   mdl->name);
		else
			mon_printf(out, "'%s' is an MDL with no system mapping: MmUnmapLockedPages would bug check "
				   "0xC4 P1 0xB6 (verifier on) or 0xDA P1 6 (rule 21); add --bugcheck to see it\n",
				   mdl->name);
		return 1;
	}
	MmUnmapLockedPages((PVOID)syspte_base(), mdl->mdl);
	mon_printf(out, "MmUnmapLockedPages of an unmapped MDL returned\n");
	return 1;
}

static int cmd_unmap(int argc, char **argv)
{
	if (argc != 2)
		return -1;
	struct object *lk = lookup(argv[1]);
	if (lk && lk->kind == LAB_MDL)
		return unmap_mdl(lk);
	struct object *ob = get(argv[1], LAB_MAPPING);
	if (!ob)
		return 1;
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	ULONG pages = mdl_page_count(ob->mdl);
	const struct pt_root *root = root_of(ob);
	if (ob->proc) {
		KAPC_STATE apc;
		KeStackAttachProcess(ob->proc->process, &apc);
		MmUnmapLockedPages(ob->va, ob->mdl);
		KeUnstackDetachProcess(&apc);
	} else {
		MmUnmapLockedPages(ob->va, ob->mdl);
	}
	mon_printf(out, "%s: MmUnmapLockedPages(%p, %s): the PTEs are cleared and flushed\n", ob->name, ob->va,
		   ob->source->name);
	mdl_print(out, (uint64_t)ob->mdl, 0);
	print_ptes(root, (uint64_t)ob->va, pages);
	tlb_since(&tlb);
	drop(ob);
	return 0;
}
MONITOR_COMMAND(unmap, "unmap MAPPING", "MmUnmapLockedPages of a mapping made by 'map'", cmd_unmap);

static int cmd_protect(int argc, char **argv)
{
	uint64_t prot = 0;
	bool named = false;
	if (argc != 3)
		return -1;
	for (unsigned i = 0; i < ARRAY_SIZE(protect_words); i++)
		if (!strcmp(argv[2], protect_words[i].name)) {
			prot = protect_words[i].value;
			named = true;
		}
	if (!named && !monitor_parse_number_to(out, argv[2], 16, &prot))
		return -1;
	struct object *ob = get(argv[1], LAB_MDL);
	if (!ob)
		return 1;
	struct tlb_stats tlb;
	tlb_get_stats(&tlb);
	NTSTATUS st = MmProtectMdlSystemAddress(ob->mdl, (ULONG)prot);
	mon_printf(out, "%s: MmProtectMdlSystemAddress(0x%lx) = 0x%08x%s\n", ob->name, prot, (ULONG)st,
		   st == STATUS_NOT_MAPPED_VIEW ? " STATUS_NOT_MAPPED_VIEW: no system mapping (rule 13)"
		   : st == STATUS_INVALID_PAGE_PROTECTION ? " STATUS_INVALID_PAGE_PROTECTION: PTEs untouched (rule 13)"
		   : "");
	if (ob->mdl->MdlFlags & MDL_MAPPED_TO_SYSTEM_VA)
		print_ptes(&kernel_root, (uint64_t)ob->mdl->MappedSystemVa, mdl_page_count(ob->mdl));
	tlb_since(&tlb);
	return st == STATUS_SUCCESS ? 0 : 1;
}
MONITOR_COMMAND(protect, "protect MDL noaccess|readonly|readwrite|execute|execute_read|HEX",
		"MmProtectMdlSystemAddress of the MDL's system mapping", cmd_protect);

/* ---- objects, and quit ------------------------------------------------------------------- */

static void print_object(const struct object *ob)
{
	mon_printf(out, "  %-15s %-8s ", ob->name, kind_names[ob->kind]);
	switch (ob->kind) {
	case LAB_POOL:
		mon_printf(out, "%p, 0x%lx bytes\n", ob->pool, ob->bytes);
		break;
	case LAB_MDL:
		mon_printf(out, "%p, 0x%x bytes, flags 0x%04x%s%s%s\n", (void *)ob->mdl, ob->mdl->ByteCount,
			   (USHORT)ob->mdl->MdlFlags, ob->pages ? ", fresh frames" : ", over ",
			   ob->source ? ob->source->name : "", ob->mdl->MdlFlags & MDL_PAGES_LOCKED ? ", locked" : "");
		break;
	case LAB_MAPPING:
		mon_printf(out, "%p of %s in %s, %s%s\n", ob->va, ob->source->name, ob->proc ? ob->proc->name : "system",
			   cache_name(ob->type), ob->priority & MdlMappingNoWrite ? ", nowrite" : "");
		break;
	case LAB_PROCESS:
		mon_printf(out, "PID %u, PML4 0x%lx\n", ob->process->pid, ob->process->mm.root.pml4);
		break;
	}
}

static int cmd_objects(void)
{
	unsigned n = lab_object_count();
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (objects[i].used)
			print_object(&objects[i]);
	mon_printf(out, "%u live object%s\n", n, n == 1 ? "" : "s");
	return 0;
}
MONITOR_COMMAND_BARE(objects, "the live objects made by alloc, build, map and spawn", cmd_objects);

void lab_objects_release_all(struct mon_out *o)
{
	struct mon_out *saved = out;
	out = o;
	/* Mappings first (an MDL cannot go while mapped), then unlocks, MDLs, buffers, processes. */
	for (unsigned i = 0; i < MAX_OBJECTS; i++)
		if (objects[i].used && objects[i].kind == LAB_MAPPING) {
			struct object *m = &objects[i];
			KAPC_STATE apc;
			if (m->proc)
				KeStackAttachProcess(m->proc->process, &apc);
			MmUnmapLockedPages(m->va, m->mdl);
			if (m->proc)
				KeUnstackDetachProcess(&apc);
			mon_printf(out, "%s: MmUnmapLockedPages(%p)\n", m->name, m->va);
			drop(m);
		}
	static const enum lab_object_kind order[] = { LAB_MDL, LAB_POOL, LAB_PROCESS };
	for (unsigned j = 0; j < ARRAY_SIZE(order); j++) {
		enum lab_object_kind k = order[j];
		for (unsigned i = 0; i < MAX_OBJECTS; i++) {
			struct object *ob = &objects[i];
			if (!ob->used || ob->kind != k)
				continue;
			if (k == LAB_MDL && !ob->pages && (ob->mdl->MdlFlags & MDL_PAGES_LOCKED)) {
				MmUnlockPages(ob->mdl);
				mon_printf(out, "%s: MmUnlockPages\n", ob->name);
			}
			release(ob);
		}
	}
	out = saved;
}

/* ---- db/dd/dq, eb/eq ------------------------------------------------------------------ */

/* Where an access goes: a physical address, or a virtual one in an address space. */
struct place {
	bool physical;
	uint64_t addr;
	const struct pt_root *root;
};

/* WHERE: hex, or NAME / NAME+OFF of a pool buffer or a mapping (in its process). */
static bool parse_place(const char *w, bool physical, struct place *pl)
{
	char name[NAME_MAX];
	const char *plus = w;
	while (*plus && *plus != '+')
		plus++;
	size_t n = (size_t)(plus - w);
	*pl = (struct place){ .physical = physical, .root = &kernel_root };
	const struct object *ob = NULL;
	if (n && n < NAME_MAX) {
		memcpy(name, w, n);
		name[n] = 0;
		ob = lookup(name);
	}
	if (ob || *plus) {
		uint64_t off = 0;
		if (!ob) {
			mon_printf(out, "no object named '%.*s' ('objects' lists them)\n", (int)n, w);
			return false;
		}
		if (*plus && !monitor_parse_number_to(out, plus + 1, 16, &off))
			return false;
		if (physical || (ob->kind != LAB_POOL && ob->kind != LAB_MAPPING)) {
			mon_printf(out, "'%s' has no address to read: name a pool buffer or a mapping\n", name);
			return false;
		}
		pl->addr = (ob->kind == LAB_POOL ? (uint64_t)ob->pool : (uint64_t)ob->va) + off;
		if (ob->kind == LAB_MAPPING)
			pl->root = root_of(ob);
		return true;
	}
	if (!monitor_parse_hex(w, &pl->addr))
		return false;
	if (!physical && pl->addr < USER_VA_END) {
		mon_printf(out, "0x%lx is a user address: name the mapping object to read a process's space\n", pl->addr);
		return false;
	}
	return true;
}

/* The direct-map address of the byte at `at`, or 0 with the reason printed.  `write` also
 * needs the translation to allow writes. */
static uint64_t reach(const struct place *pl, uint64_t at, bool write)
{
	uint64_t pa = at;
	if (!pl->physical) {
		struct pt_query q;
		pt_query(pl->root, at, &q);
		if (!q.present) {
			mon_printf(out, "0x%016lx: not present (an access would #PF, error code %s)\n", at,
				   write ? "0x2" : "0x0");
			return 0;
		}
		if (write && !q.eff.write) {
			mon_printf(out, "0x%016lx: the mapping is read-only (a write through it would #PF, error code "
				   "0x3)\n", at);
			return 0;
		}
		pa = q.pa;
	}
	if (!pfn_is_ram(pa >> PAGE_SHIFT)) {
		mon_printf(out, "0x%lx: not RAM (device memory is never touched here)\n", pa);
		return 0;
	}
	/* A write reaches only what a driver may write: pool and MDL frames.  A page table, the
	 * kernel, a stack or a free frame (the zeroed list promises zeros) is refused. */
	const struct pfn_entry *e = pfn_entry(pa >> PAGE_SHIFT);
	if (write && !(e && e->state == PFN_ACTIVE &&
		       (e->owner_kind == PFN_OWNER_POOL || e->owner_kind == PFN_OWNER_MDL))) {
		mon_printf(out, "pa 0x%lx: frame 0x%lx is %s%s%s, not pool or an MDL's: the lab writes only those\n", pa,
			   pa >> PAGE_SHIFT, e ? pfn_state_name((enum pfn_state)e->state) : "unknown",
			   e && e->state == PFN_ACTIVE ? ", owner " : "",
			   e && e->state == PFN_ACTIVE ? pfn_owner_name((enum pfn_owner)e->owner_kind) : "");
		return 0;
	}
	return (uint64_t)phys_to_virt(pa);
}

static int dump(int argc, char **argv, unsigned width)
{
	bool physical = argc >= 2 && !strcmp(argv[1], "-p");
	int a = physical ? 2 : 1;
	uint64_t count = 0x80 / width;
	struct place pl;
	if (argc < a + 1 || argc > a + 2)
		return -1;
	if (!parse_place(argv[a], physical, &pl))
		return -1;
	if (argc == a + 2 && !size_word(argv[a + 1], &count))
		return -1;
	if (count * width > DUMP_MAX)
		count = DUMP_MAX / width;
	if (pl.addr & (width - 1)) {
		mon_printf(out, "0x%lx is not aligned to %u bytes\n", pl.addr, width);
		return -1;
	}
	for (uint64_t i = 0; i < count; i++) {
		uint64_t at = pl.addr + i * width;
		if (i % (16 / width) == 0)
			mon_printf(out, "%s%s%016lx ", i ? "\n" : "", physical ? "#" : "", at);
		uint64_t d = reach(&pl, at, false);
		if (!d) {
			if (i)
				mon_printf(out, "\n");
			return 1;
		}
		switch (width) {
		case 1: mon_printf(out, " %02x", *(volatile uint8_t *)d); break;
		case 4: mon_printf(out, " %08x", *(volatile uint32_t *)d); break;
		default: mon_printf(out, " %016lx", *(volatile uint64_t *)d); break;
		}
	}
	mon_printf(out, "\n");
	return 0;
}

static int enter(int argc, char **argv, unsigned width)
{
	bool physical = argc >= 2 && !strcmp(argv[1], "-p");
	int a = physical ? 2 : 1;
	struct place pl;
	if (argc < a + 2)
		return -1;
	if (!parse_place(argv[a], physical, &pl))
		return -1;
	if (pl.addr & (width - 1)) {
		mon_printf(out, "0x%lx is not aligned to %u bytes\n", pl.addr, width);
		return -1;
	}
	uint64_t values[MAX_VALUES];
	int n = argc - a - 1;
	if (n > MAX_VALUES)
		return -1;
	for (int i = 0; i < n; i++) {
		if (!monitor_parse_number_to(out, argv[a + 1 + i], 16, &values[i]))
			return -1;
		if (width == 1 && values[i] > 0xFF) {
			mon_printf(out, "'%s' is refused: a byte is at most ff\n", argv[a + 1 + i]);
			return -1;
		}
	}
	/* All or nothing: every target is checked before the first write. */
	for (int i = 0; i < n; i++)
		if (!reach(&pl, pl.addr + (uint64_t)i * width, true))
			return 1;
	for (int i = 0; i < n; i++) {
		uint64_t d = reach(&pl, pl.addr + (uint64_t)i * width, true);
		if (width == 1)
			*(volatile uint8_t *)d = (uint8_t)values[i];
		else
			*(volatile uint64_t *)d = values[i];
	}
	mon_printf(out, "%d %s written at %s0x%lx\n", n, width == 1 ? "byte(s)" : "qword(s)", physical ? "physical " : "",
		   pl.addr);
	return 0;
}

static int cmd_db(int argc, char **argv) { return dump(argc, argv, 1); }
static int cmd_dd(int argc, char **argv) { return dump(argc, argv, 4); }
static int cmd_dq(int argc, char **argv) { return dump(argc, argv, 8); }
static int cmd_eb(int argc, char **argv) { return enter(argc, argv, 1); }
static int cmd_eq(int argc, char **argv) { return enter(argc, argv, 8); }
MONITOR_COMMAND(db, "db [-p] WHERE [COUNT]", "bytes at WHERE: hex kernel address, NAME[+OFF], or -p physical", cmd_db);
MONITOR_COMMAND(dd, "dd [-p] WHERE [COUNT]", "dwords, like db", cmd_dd);
MONITOR_COMMAND(dq, "dq [-p] WHERE [COUNT]", "qwords, like db", cmd_dq);
MONITOR_COMMAND(eb, "eb [-p] WHERE BYTE...", "write bytes where the mapping allows writes", cmd_eb);
MONITOR_COMMAND(eq, "eq [-p] WHERE QWORD...", "write qwords, like eb", cmd_eq);

/* --bugcheck: monitor.c strips it from the line and sets this for the command. */
void lab_objects_real_call(bool on) { real_call = on; }
