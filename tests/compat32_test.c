/*
 * 32-bit processes that run in IA-32e compatibility mode (mm/RULES.md, "The ring-3
 * boundary", 32-bit processes): the 32-bit program user/compat32.c, an ELF32 image, runs with
 * CS 0x1B on a stack below 2 GiB, calls the kernel by SYSCALL through IA32_CSTAR, uses
 * MmMapLockedPagesSpecifyCache(UserMode) views with 32-bit pointers, and faults where it
 * must.  Its attacks from compatibility mode (SYSENTER, INT n, a far jump to the 64-bit user
 * CS, garbage in the upper halves of the registers) end it or are cut to 32 bits.
 *
 * Mappings are made attached before the program runs, at an address chosen beforehand and
 * passed in its parameter page; rights are read from the raw page-table entries, faults are
 * the ones the CPU reported to ps_user_fault.
 */
#include "kernel/ktest.h"
#include "tests/compat32_driver.h"
#include "tests/lib/pte.h"
#include "include/mdlab/compat32.h"
#include "include/wdm.h"
#include "kernel/cpufeat.h"
#include "kernel/gdt.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/trap.h"
#include "kernel/userprog.h"
#include "mm/layout.h"
#include "mm/mdl.h"
#include "mm/pt.h"
#include "mm/uvm.h"
#include "mm/vad.h"

#define TAG 0x32336D43u /* 'Cm32' */
/* Where the cases put their view: below the 32-bit limit, on 64 KiB, free in a fresh
 * 32-bit process (image at 4 MiB, stack under 2 GiB). */
#define VIEW_VA 0x30000000ul
#define PATTERN 0x5EED1234u
#define WRITTEN 0xCAFEF00Du

static PEPROCESS proc;
static PMDL mdl;
static uint32_t *kbuf;
static uint64_t view;
static KAPC_STATE apc;
static bool attached;

static int c32_init(struct ktest *t)
{
	(void)t;
	proc = NULL;
	mdl = NULL;
	kbuf = NULL;
	view = 0;
	attached = false;
	return 0;
}

static void attach(void)
{
	KeStackAttachProcess(proc, &apc);
	attached = true;
}

static void detach(void)
{
	KeUnstackDetachProcess(&apc);
	attached = false;
}

/* Whatever a case left: the view, the MDL, the process. */
static void c32_exit(struct ktest *t)
{
	(void)t;
	if (attached)
		detach();
	if (proc && view) {
		attach();
		MmUnmapLockedPages((PVOID)view, mdl);
		detach();
	}
	if (mdl) {
		MmFreePagesFromMdl(mdl);
		ExFreePool(mdl);
	}
	if (proc)
		PsDestroyProcess(proc);
	c32drv_unload(); /* after the process: its end took down the driver's views */
	c32_init(t);
}

/* The 32-bit program, created (not run) with command, address, value, second argument. */
static void create(struct ktest *t, uint32_t cmd, uint64_t addr, uint64_t value, uint64_t arg2)
{
	const uint64_t args[4] = { cmd, addr, value, arg2 };
	proc = PsCreateProcess("compat32", 0, args, 4);
	ASSERT_TRUE(t, proc != NULL);
	EXPECT_TRUE(t, proc->compat32);
	EXPECT_TRUE(t, proc->wow64);
	EXPECT_EQ(t, proc->mm.highest_user, MM_USER_TOP_WOW64);
}

static uint16_t insn_at_fault(struct ktest *t);

/* Run it; every run reports its CS and ESP first (include/mdlab/compat32.h).  On Intel CPUs
 * (KVM with -cpu host) SYSCALL outside 64-bit mode is #UD (SDM Vol. 2B, SYSCALL): the first
 * report ends the program there, which is checked, and the case is skipped. */
static NTSTATUS run(struct ktest *t)
{
	NTSTATUS st = PsRunProcess(proc);
	if (strcmp(cpu_features.vendor, "GenuineIntel") == 0) {
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ILLEGAL_INSTRUCTION);
		EXPECT_EQ(t, proc->fault.vector, VEC_INVALID_OPCODE);
		EXPECT_EQ(t, insn_at_fault(t), 0x050F);
		KTEST_SKIP(t, "SYSCALL from compatibility mode is #UD on Intel CPUs");
	}
	uint64_t cs = 0, esp = 0;
	EXPECT_TRUE(t, ps_report(proc, C32_KEY_CS, &cs));
	EXPECT_EQ(t, cs, SEL_UCODE32 | 3);
	EXPECT_TRUE(t, ps_report(proc, C32_KEY_ESP, &esp));
	EXPECT_TRUE(t, esp > 0x7F000000ul && esp <= MM_USER_TOP_WOW64);
	return st;
}

/* MmMapLockedPagesSpecifyCache(UserMode) into the attached process: the exception's status
 * or STATUS_SUCCESS with the address in *va. */
static NTSTATUS try_map(uint64_t requested, ULONG priority, uint64_t *va)
{
	volatile NTSTATUS st = STATUS_SUCCESS;
	volatile uint64_t got = 0;
	__try {
		got = (uint64_t)MmMapLockedPagesSpecifyCache(mdl, UserMode, MmCached, (PVOID)requested, FALSE, priority);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		st = GetExceptionCode();
	}
	*va = got;
	return st;
}

/* One page holding PATTERN, mapped into the process at VIEW_VA with `priority`; the leaf is
 * checked in the raw entries: present, user, NX, writable as asked. */
static void make_view(struct ktest *t, ULONG priority)
{
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	mdl = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, mdl != NULL);
	kbuf = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority);
	ASSERT_TRUE(t, kbuf != NULL);
	kbuf[0] = PATTERN;
	attach();
	uint64_t va;
	NTSTATUS st = try_map(VIEW_VA, priority, &va);
	detach();
	ASSERT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	ASSERT_EQ(t, va, VIEW_VA);
	view = va;
	struct pt_query q;
	pt_query(&proc->mm.root, view, &q);
	uint64_t e = q.entry[1];
	EXPECT_TRUE(t, mmt_has(e, MMT_PTE_P) && mmt_has(e, MMT_PTE_US) && mmt_has(e, MMT_PTE_NX));
	EXPECT_EQ(t, mmt_has(e, MMT_PTE_RW), !(priority & MdlMappingNoWrite));
	EXPECT_EQ(t, e & MMT_PTE_ADDR, (uint64_t)MmGetMdlPfnArray(mdl)[0] << PAGE_SHIFT);
}

/* The two bytes at the faulting RIP, read from the process's image. */
static uint16_t insn_at_fault(struct ktest *t)
{
	uint16_t b = 0;
	attach();
	NTSTATUS st = copy_from_user(&b, proc->fault.rip, 2);
	detach();
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	return b;
}

/* ---- the image and the mode -------------------------------------------------------- */

/* An ELF32 image makes a 32-bit process whatever the flags say, and it runs in
 * compatibility mode: CS 0x1B, ESP below 2 GiB, its SYSCALLs served and SYSRET back. */
static void elf32_image_runs_in_compatibility_mode(struct ktest *t)
{
	create(t, C32_NOTHING, 0, 0, 0);
	NTSTATUS st = run(t);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	EXPECT_FALSE(t, proc->fault.happened);
}

/* The loader's checks of an ELF32 header: Intel386 only, and every segment inside the 32-bit
 * address space (at or below MM_USER_TOP_WOW64). */
static void elf32_loader_refuses_what_a_32_bit_process_cannot_hold(struct ktest *t)
{
	const struct user_program *prog = userprog_find("compat32");
	ASSERT_TRUE(t, prog != NULL);
	struct elf_image img;
	ASSERT_TRUE(t, userprog_parse(prog, &img));
	EXPECT_TRUE(t, img.is32);
	EXPECT_TRUE(t, img.entry >= 0x400000 && img.entry < 0x80000000ul);
	uint8_t *copy = ExAllocatePool2(POOL_FLAG_NON_PAGED, prog->size, TAG);
	ASSERT_TRUE(t, copy != NULL);
	struct user_program bad = { "bad", copy, prog->size };
	uint32_t phoff;
	memcpy(copy, prog->start, prog->size);
	memcpy(&phoff, copy + 28, 4);
	/* The first program header's p_vaddr (offset 8): just under 2 GiB, its memsz past it. */
	uint32_t va = 0x7FFFF000u;
	memcpy(copy + phoff + 8, &va, 4);
	EXPECT_FALSE(t, userprog_parse(&bad, &img));
	/* e_machine (offset 18) other than EM_386. */
	memcpy(copy, prog->start, prog->size);
	copy[18] = 62;
	EXPECT_FALSE(t, userprog_parse(&bad, &img));
	/* e_entry (offset 24) above the 32-bit limit. */
	memcpy(copy, prog->start, prog->size);
	uint32_t entry = 0x80001000u;
	memcpy(copy + 24, &entry, 4);
	EXPECT_FALSE(t, userprog_parse(&bad, &img));
	ExFreePoolWithTag(copy, TAG);
}

/* ---- views ------------------------------------------------------------------------- */

/* A view is placed below the 32-bit limit: with no address asked for, and the 32-bit code
 * reads what the kernel wrote through it. */
static void view_is_read_by_32_bit_code(struct ktest *t)
{
	create(t, C32_READ, VIEW_VA, 0, 0);
	make_view(t, NormalPagePriority);
	/* A second view anywhere: the lowest free 64 KiB range, below the limit. */
	uint64_t any;
	attach();
	NTSTATUS st = try_map(0, NormalPagePriority, &any);
	if (st == STATUS_SUCCESS)
		MmUnmapLockedPages((PVOID)any, mdl);
	detach();
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, any && any + PAGE_SIZE - 1 <= MM_USER_TOP_WOW64);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(proc, C32_KEY_READ, &v));
	EXPECT_EQ(t, v, PATTERN);
}

static void view_is_written_by_32_bit_code(struct ktest *t)
{
	create(t, C32_WRITE, VIEW_VA, WRITTEN, 0);
	make_view(t, NormalPagePriority);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(proc, C32_KEY_READ, &v));
	EXPECT_EQ(t, v, WRITTEN);
	EXPECT_EQ(t, kbuf[0], WRITTEN); /* the same frame, seen by the kernel */
}

/* A NoWrite view (MdlMappingNoWrite): the 32-bit store faults, #PF P|W|U at the view. */
static void no_write_view_faults_for_32_bit_code(struct ktest *t)
{
	create(t, C32_WRITE, VIEW_VA, WRITTEN, 0);
	make_view(t, NormalPagePriority | MdlMappingNoWrite);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, proc->fault.happened);
	EXPECT_EQ(t, proc->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, proc->fault.error_code, PF_P | PF_W | PF_U);
	EXPECT_EQ(t, proc->fault.address, VIEW_VA);
	EXPECT_EQ(t, proc->fault.access, EXCEPTION_WRITE_FAULT);
	EXPECT_EQ(t, kbuf[0], PATTERN);
}

/* User views are no-execute: a 32-bit call into one faults on the fetch, #PF P|U|I (0x15)
 * with CR2 and EIP the view. */
static void view_is_not_executable_from_32_bit_code(struct ktest *t)
{
	create(t, C32_EXEC, VIEW_VA, 0, 0);
	make_view(t, NormalPagePriority);
	kbuf[0] = 0x90909090u; /* NOPs, were it fetched */
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, proc->fault.happened);
	EXPECT_EQ(t, proc->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, proc->fault.error_code, 0x15);
	EXPECT_EQ(t, proc->fault.address, VIEW_VA);
	EXPECT_EQ(t, proc->fault.rip, VIEW_VA);
	EXPECT_EQ(t, proc->fault.access, EXCEPTION_EXECUTE_FAULT);
}

/* mm/RULES.md, decision 5: a RequestedAddress whose view would end above the 32-bit limit
 * raises STATUS_INVALID_ADDRESS, and nothing is mapped there. */
static void requested_address_above_the_32_bit_limit_is_invalid(struct ktest *t)
{
	static const uint64_t bad[] = { 0x80000000ul, 0x7FFF0000ul, 0x100000000ul, 0xFFFF0000ul };
	create(t, C32_NOTHING, 0, 0, 0);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	mdl = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, mdl != NULL);
	attach();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t va = 1;
		EXPECT_EQ(t, (ULONG)try_map(bad[i], NormalPagePriority, &va), (ULONG)STATUS_INVALID_ADDRESS);
		EXPECT_EQ(t, va, 0);
		struct pt_query q;
		pt_query(&proc->mm.root, bad[i], &q);
		EXPECT_FALSE(t, q.level == 1 && mmt_has(q.entry[1], MMT_PTE_P));
	}
	EXPECT_TRUE(t, proc->mm.mappings == NULL);
	detach();
}

/* ---- system calls from compatibility mode ------------------------------------------ */

/* A pointer is checked against the 32-bit limit: SYS_DEBUG_PRINT of the image's own bytes
 * works, of anything from 2 GiB up is STATUS_ACCESS_VIOLATION; a number with no service is
 * STATUS_INVALID_SYSTEM_SERVICE. */
static void compat_syscall_checks_pointers_against_the_32_bit_limit(struct ktest *t)
{
	static const struct {
		uint32_t nr, a, b;
		NTSTATUS want;
	} calls[] = {
		{ SYS_DEBUG_PRINT, 0x400000, 4, STATUS_SUCCESS },
		{ SYS_DEBUG_PRINT, 0x7FFF0000, 4, STATUS_ACCESS_VIOLATION },
		{ SYS_DEBUG_PRINT, 0x80000000, 4, STATUS_ACCESS_VIOLATION },
		{ SYS_DEBUG_PRINT, 0xFFFFF000, 4, STATUS_ACCESS_VIOLATION },
		/* The memory calls' 32-bit outputs in the read-only image text: probed, refused. */
		{ SYS_ALLOCATE_VM, 0x400000, 0x400000, STATUS_ACCESS_VIOLATION },
		{ SYS_PROTECT_VM, 0x400000, 0x400000, STATUS_ACCESS_VIOLATION },
		{ SYS_FREE_VM, 0x80000000, 0x400000, STATUS_ACCESS_VIOLATION },
		{ SYS_COUNT, 0, 0, STATUS_INVALID_SYSTEM_SERVICE },
	};
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
		create(t, C32_CALL, calls[i].a, calls[i].nr, calls[i].b);
		EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
		uint64_t v = ~0ul;
		EXPECT_TRUE(t, ps_report(proc, C32_KEY_STATUS, &v));
		EXPECT_EQ(t, v, (uint64_t)(uint32_t)calls[i].want);
		PsDestroyProcess(proc);
		proc = NULL;
	}
}

/* Garbage the program put in the upper halves of RDI and RSI in a 64-bit excursion does not
 * reach the service: the compatibility-mode entry takes EDI and ESI zero-extended. */
static void compat_syscall_zero_extends_its_arguments(struct ktest *t)
{
	create(t, C32_HIGH_BITS, 0x1234, 0x4242, 0);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
	uint64_t v = 0;
	EXPECT_TRUE(t, ps_report(proc, 0x4242, &v));
	EXPECT_EQ(t, v, 0x1234);
	for (uint32_t i = 0; i < proc->nreports; i++)
		EXPECT_EQ(t, proc->report_key[i] >> 32, 0);
}

/* A far jump to the 64-bit user CS works (the GDT's ring-3 64-bit segment), but a SYSCALL
 * there (through LSTAR) from a 32-bit process, here with a kernel pointer, has no service:
 * the process is ended with STATUS_INVALID_SYSTEM_SERVICE and the call does not run. */
static void syscall_from_64_bit_mode_ends_a_32_bit_process(struct ktest *t)
{
	create(t, C32_SYSCALL64, 0, 0, 0);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_INVALID_SYSTEM_SERVICE);
	EXPECT_FALSE(t, proc->fault.happened);
	uint64_t v;
	EXPECT_FALSE(t, ps_report(proc, C32_KEY_64, &v));
}

/* SYSENTER from compatibility mode: #GP(0) (IA32_SYSENTER_CS is 0; QEMU's TCG takes Intel's
 * path there, AMD CPUs #UD), a ring-3 fault at the instruction. */
static void sysenter_from_a_32_bit_process_faults(struct ktest *t)
{
	create(t, C32_SYSENTER, 0, 0, 0);
	NTSTATUS st = run(t);
	EXPECT_TRUE(t, proc->fault.happened);
	EXPECT_EQ(t, insn_at_fault(t), 0x340F);
	if (proc->fault.vector == VEC_INVALID_OPCODE) {
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ILLEGAL_INSTRUCTION);
	} else {
		EXPECT_EQ(t, proc->fault.vector, VEC_GENERAL_PROTECTION);
		EXPECT_EQ(t, proc->fault.error_code, 0);
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	}
}

/* INT 0x80 and INT 0x2E from compatibility mode: the gates are DPL 0, so #GP with the IDT
 * vector's error code (IDT bit set) at the instruction (SDM Vol. 3, 6.12.1.1). */
static void int_gates_fault_for_a_32_bit_process(struct ktest *t)
{
	static const struct {
		uint32_t cmd, vector;
	} gates[] = { { C32_INT80, 0x80 }, { C32_INT2E, 0x2E } };
	for (size_t i = 0; i < 2; i++) {
		create(t, gates[i].cmd, 0, 0, 0);
		EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_TRUE(t, proc->fault.happened);
		EXPECT_EQ(t, proc->fault.vector, VEC_GENERAL_PROTECTION);
		/* QEMU's TCG scales the index by the 16-byte IA-32e gate (see ring3_entry). */
		uint64_t e = proc->fault.error_code;
		EXPECT_TRUE(t, e == gates[i].vector * 8 + 2 || e == gates[i].vector * 16 + 2);
		EXPECT_EQ(t, insn_at_fault(t), 0xCD | gates[i].vector << 8);
		PsDestroyProcess(proc);
		proc = NULL;
	}
}

/* ---- the memory calls from compatibility mode: 32-bit BaseAddress and RegionSize ---- */

struct vm_result {
	uint64_t status, base, size, canary, protect, old, free;
};

/* Run the 32-bit program's C32_VM (include/mdlab/compat32.h) and collect its reports; the
 * process stays for the caller to inspect. */
static struct vm_result vm32(struct ktest *t, uint32_t base, uint32_t size, bool free_it, uint32_t pbase,
			     uint32_t psize, uint32_t pold)
{
	const uint64_t args[7] = { C32_VM, base, size, free_it, pbase, psize, pold };
	struct vm_result r = { ~0ul, ~0ul, ~0ul, ~0ul, ~0ul, ~0ul, ~0ul };
	proc = PsCreateProcess("compat32", 0, args, 7);
	ASSERT_TRUE(t, proc != NULL);
	EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
	EXPECT_TRUE(t, ps_report(proc, C32_KEY_STATUS, &r.status));
	ps_report(proc, C32_KEY_VM_BASE, &r.base);
	ps_report(proc, C32_KEY_VM_SIZE, &r.size);
	ps_report(proc, C32_KEY_CANARY, &r.canary);
	ps_report(proc, C32_KEY_PROTECT, &r.protect);
	ps_report(proc, C32_KEY_OLD, &r.old);
	ps_report(proc, C32_KEY_FREE, &r.free);
	return r;
}

/* The leaf entry for a user address of the process, or 0 when there is none. */
static uint64_t user_leaf(uint64_t va)
{
	struct pt_query q;
	pt_query(&proc->mm.root, va, &q);
	return q.level == 1 ? q.entry[1] : 0;
}

/* Allocate, protect and free from 32-bit code: the 32-bit outputs come back as 4 bytes (the
 * ULONGs after them intact), the region is below the 32-bit limit, its committed page written
 * by the program is read-only and no-execute after PAGE_READONLY (walked), and MEM_RELEASE
 * takes the VAD and the page away. */
static void vm_calls_from_32_bit_code_allocate_protect_and_free(struct ktest *t)
{
	struct vm_result r = vm32(t, 0, 0x3000, false, 0, 0, 0);
	EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, r.canary, C32_CANARY);
	EXPECT_TRUE(t, r.base >= MM_LOWEST_USER_ADDRESS && r.base % MM_ALLOCATION_GRANULARITY == 0);
	EXPECT_TRUE(t, r.base + 0x3000 - 1 <= MM_USER_TOP_WOW64);
	EXPECT_EQ(t, r.size, 0x3000);
	EXPECT_EQ(t, (ULONG)r.protect, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, r.old, PAGE_READWRITE);
	uint64_t e = user_leaf(r.base);
	EXPECT_TRUE(t, mmt_has(e, MMT_PTE_P) && mmt_has(e, MMT_PTE_US) && mmt_has(e, MMT_PTE_NX));
	EXPECT_FALSE(t, mmt_has(e, MMT_PTE_RW));
	uint32_t v = 0;
	attach();
	EXPECT_EQ(t, (ULONG)copy_from_user(&v, r.base, 4), (ULONG)STATUS_SUCCESS);
	detach();
	EXPECT_EQ(t, v, C32_VM_WRITTEN);
	struct vad *vad = vad_find(&proc->mm, r.base);
	EXPECT_TRUE(t, vad != NULL);
	PsDestroyProcess(proc);
	proc = NULL;

	/* At an address asked for, then released. */
	r = vm32(t, 0x20000000u, 0x1000, true, 0, 0, 0);
	EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, r.base, 0x20000000u);
	EXPECT_EQ(t, r.size, 0x1000);
	EXPECT_EQ(t, (ULONG)r.protect, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, (ULONG)r.free, (ULONG)STATUS_SUCCESS);
	EXPECT_EQ(t, r.canary, C32_CANARY);
	EXPECT_TRUE(t, vad_find(&proc->mm, 0x20000000u) == NULL);
	EXPECT_FALSE(t, mmt_has(user_leaf(0x20000000u), MMT_PTE_P));
}

/* mm/RULES.md "System-call outputs" from a 32-bit process: a RegionSize or OldProtect in the
 * read-only image, at or above the 32-bit limit, or at the top of the 4 GiB is refused with
 * STATUS_ACCESS_VIOLATION before anything changes: nothing reserved at the address asked for,
 * the page still writable after a refused protect, BaseAddress left as it was. */
static void vm_calls_with_unwritable_32_bit_outputs_change_nothing(struct ktest *t)
{
	static const uint32_t bad[] = { 0x400000u, 0x7FFF0000u, 0x80000000u, 0xFFFFFFFCu };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		/* RegionSize unwritable: no allocation. */
		struct vm_result r = vm32(t, 0x20000000u, 0x1000, false, 0, bad[i], 0);
		EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, r.base, 0x20000000u);
		EXPECT_EQ(t, r.canary, C32_CANARY);
		EXPECT_TRUE(t, vad_find_overlap(&proc->mm, 0x20000000u, 0x20010000u) == NULL);
		PsDestroyProcess(proc);
		proc = NULL;
		/* BaseAddress unwritable: no new VAD at all. */
		proc = PsCreateProcess("compat32", 0, (const uint64_t[]){ C32_NOTHING }, 1);
		ASSERT_TRUE(t, proc != NULL);
		uint64_t vads = vad_count(&proc->mm);
		PsDestroyProcess(proc);
		proc = NULL;
		r = vm32(t, 0, 0x1000, false, bad[i], 0, 0);
		EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, vad_count(&proc->mm), vads);
		PsDestroyProcess(proc);
		proc = NULL;
		/* OldProtect unwritable: the allocation stands, the protection is not changed. */
		r = vm32(t, 0x20000000u, 0x1000, false, 0, 0, bad[i]);
		EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_SUCCESS);
		EXPECT_EQ(t, (ULONG)r.protect, (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_EQ(t, r.old, 0);
		uint64_t e = user_leaf(0x20000000u);
		EXPECT_TRUE(t, mmt_has(e, MMT_PTE_P) && mmt_has(e, MMT_PTE_RW));
		PsDestroyProcess(proc);
		proc = NULL;
	}
}

/* mm/RULES.md decision 5 for the system calls: a range that would end above 0x7FFEFFFF, or a
 * size no 32-bit process can hold, is STATUS_INVALID_PARAMETER; nothing is reserved and the
 * 32-bit outputs are left as they were. */
static void vm_calls_above_the_32_bit_limit_are_refused(struct ktest *t)
{
	static const struct {
		uint32_t base, size;
	} bad[] = {
		{ 0x7FFF0000u, 0x1000 }, { 0x7FFE0000u, 0x20000 }, { 0x80000000u, 0x1000 },
		{ 0xFFFF0000u, 0x1000 }, { 0, 0x80000000u }, { 0, 0xFFFFFFFFu },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		proc = PsCreateProcess("compat32", 0, (const uint64_t[]){ C32_NOTHING }, 1);
		ASSERT_TRUE(t, proc != NULL);
		uint64_t vads = vad_count(&proc->mm);
		PsDestroyProcess(proc);
		proc = NULL;
		struct vm_result r = vm32(t, bad[i].base, bad[i].size, false, 0, 0, 0);
		EXPECT_EQ(t, (ULONG)r.status, (ULONG)STATUS_INVALID_PARAMETER);
		EXPECT_EQ(t, r.base, bad[i].base);
		EXPECT_EQ(t, r.size, bad[i].size);
		EXPECT_EQ(t, r.canary, C32_CANARY);
		EXPECT_EQ(t, vad_count(&proc->mm), vads);
		if (bad[i].base)
			EXPECT_FALSE(t, mmt_has(user_leaf(bad[i].base), MMT_PTE_P));
		PsDestroyProcess(proc);
		proc = NULL;
	}
}

/* ---- IOCTLs from a 32-bit process: a thunking driver ------------------------------ */

struct ioctl_result {
	uint64_t open, status, bytes, out, canary, read;
};

/* The 32-bit program opens the device, makes one DeviceIoControl and closes it. */
static struct ioctl_result ioctl32_deref(struct ktest *t, ULONG code, ULONG in_len, ULONG out_len, bool sum,
					 ULONG sum_len, bool deref)
{
	uint64_t args[9] = { C32_IOCTL, code, in_len, out_len, sum, sum_len, deref, 0, 0 };
	struct ioctl_result r = { ~0ul, ~0ul, ~0ul, ~0ul, ~0ul, ~0ul };
	memcpy(&args[8], C32_DEVICE, sizeof C32_DEVICE);
	ASSERT_EQ(t, (ULONG)c32drv_load(), (ULONG)STATUS_SUCCESS);
	proc = PsCreateProcess("compat32", 0, args, 9);
	if (proc) {
		EXPECT_EQ(t, (ULONG)run(t), (ULONG)STATUS_SUCCESS);
		EXPECT_TRUE(t, ps_report(proc, C32_KEY_OPEN, &r.open));
		ps_report(proc, C32_KEY_STATUS, &r.status);
		ps_report(proc, C32_KEY_BYTES, &r.bytes);
		ps_report(proc, C32_KEY_OUT, &r.out);
		ps_report(proc, C32_KEY_CANARY, &r.canary);
		if (deref)
			EXPECT_TRUE(t, ps_report(proc, C32_KEY_READ, &r.read));
		/* Its end takes down any view the driver left in it (user rule U9). */
		PsDestroyProcess(proc);
		proc = NULL;
	}
	c32drv_unload();
	ASSERT_TRUE(t, r.open != ~0ul);
	EXPECT_EQ(t, r.open, STATUS_SUCCESS);
	/* The handle and BytesReturned came back as 4 bytes: the ULONGs after them are intact. */
	EXPECT_EQ(t, r.canary, C32_CANARY);
	return r;
}

static struct ioctl_result ioctl32(struct ktest *t, ULONG code, ULONG in_len, ULONG out_len, bool sum, ULONG sum_len)
{
	return ioctl32_deref(t, code, in_len, out_len, sum, sum_len, false);
}

/* The seed page's case: a 64-bit driver maps a page UserMode in the context of the 32-bit
 * application, inside its IOCTL; the view is below the application's limit, comes back as a
 * 32-bit address, and the 32-bit code reads the driver's data through it. */
static void driver_maps_into_the_32_bit_caller_below_its_limit(struct ktest *t)
{
	struct ioctl_result r = ioctl32_deref(t, IOCTL_C32_MAP, 0, 4, false, 0, true);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, r.bytes, 4);
	EXPECT_TRUE(t, c32_log.map_va >= MM_LOWEST_USER_ADDRESS);
	EXPECT_TRUE(t, c32_log.map_va + PAGE_SIZE - 1 <= MM_USER_TOP_WOW64);
	EXPECT_EQ(t, r.out, c32_log.map_va);
	EXPECT_EQ(t, r.read, C32DRV_MAP_PATTERN);
}

/* IoIs32bitProcess: TRUE for the IRP the I/O manager made for the 32-bit program and for
 * NULL in its context; FALSE for a 64-bit process, even one in a 32-bit address space
 * (PROCESS_WOW64), for the kernel, and for a driver-allocated IRP. */
static void io_is_32bit_process_tells_a_driver_the_caller_is_32_bit(struct ktest *t)
{
	struct ioctl_result r = ioctl32(t, IOCTL_C32_WHO, 0, 4, false, 0);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, r.bytes, 4);
	EXPECT_EQ(t, r.out, 0xB0B00001u);
	EXPECT_EQ(t, c32_log.calls, 1);
	EXPECT_TRUE(t, c32_log.is32_irp);
	EXPECT_TRUE(t, c32_log.is32_null);
	/* The compatibility-mode SYSCALL's dispatch: PASSIVE_LEVEL, interrupts on. */
	EXPECT_TRUE(t, c32_log.interrupts_on);
	EXPECT_EQ(t, c32_log.irql, PASSIVE_LEVEL);
	EXPECT_FALSE(t, IoIs32bitProcess(NULL));
	PIRP irp = IoAllocateIrp(1, FALSE);
	ASSERT_TRUE(t, irp != NULL);
	EXPECT_FALSE(t, IoIs32bitProcess(irp));
	IoFreeIrp(irp);
	static const uint64_t idle[] = { 0 };
	for (int wow64 = 0; wow64 < 2; wow64++) {
		PEPROCESS a = PsCreateProcess("agent", wow64 ? PROCESS_WOW64 : 0, idle, 1);
		ASSERT_TRUE(t, a != NULL);
		KAPC_STATE s;
		KeStackAttachProcess(a, &s);
		EXPECT_FALSE(t, IoIs32bitProcess(NULL));
		KeUnstackDetachProcess(&s);
		PsDestroyProcess(a);
	}
	create(t, C32_NOTHING, 0, 0, 0);
	attach();
	EXPECT_TRUE(t, IoIs32bitProcess(NULL));
	detach();
}

/* METHOD_BUFFERED with a pointer-carrying structure: the driver reads the 32-bit layout and
 * follows its 32-bit pointer into the caller's buffer; the 64-bit layout's length from a
 * 32-bit caller is refused. */
static void buffered_ioctl_with_a_32_bit_pointer_structure_is_thunked(struct ktest *t)
{
	ULONG want = 0;
	for (ULONG i = 0; i < 100; i++)
		want += (uint8_t)(i + 1);
	struct ioctl_result r = ioctl32(t, IOCTL_C32_SUM, sizeof(struct c32_sum_input32), 4, true, 100);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, r.bytes, 4);
	EXPECT_EQ(t, r.out, want);
	EXPECT_EQ(t, c32_log.sum, want);
	r = ioctl32(t, IOCTL_C32_SUM, 16, 4, true, 100) /* the 64-bit layout's size */;
	EXPECT_EQ(t, r.status, (uint64_t)(uint32_t)STATUS_INVALID_PARAMETER);
	EXPECT_EQ(t, r.bytes, 0);
}

/* The direct methods and METHOD_NEITHER from a 32-bit process, with 32-bit buffers. */
static void direct_and_neither_ioctls_from_a_32_bit_process(struct ktest *t)
{
	ULONG want = 0;
	for (ULONG i = 0; i < 16; i++)
		want += (uint8_t)(i + 1) + (uint8_t)(3 * i + 7);
	struct ioctl_result r = ioctl32(t, IOCTL_C32_IN_DIRECT, 16, 16, false, 0);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, c32_log.sum, want);
	EXPECT_TRUE(t, c32_log.is32_irp);
	r = ioctl32(t, IOCTL_C32_OUT_DIRECT, 0, 32, false, 0);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, r.bytes, 32);
	EXPECT_EQ(t, r.out, 0xA5A5A5A5u);
	r = ioctl32(t, IOCTL_C32_NEITHER, 4, 4, false, 0);
	EXPECT_EQ(t, r.status, STATUS_SUCCESS);
	EXPECT_EQ(t, r.bytes, 4);
	EXPECT_EQ(t, r.out, ~0x04030201u);
	EXPECT_TRUE(t, c32_log.is32_irp);
}

static struct ktest_case compat32_cases[] = {
	KTEST_CASE(elf32_image_runs_in_compatibility_mode),
	KTEST_CASE(elf32_loader_refuses_what_a_32_bit_process_cannot_hold),
	KTEST_CASE(view_is_read_by_32_bit_code),
	KTEST_CASE(view_is_written_by_32_bit_code),
	KTEST_CASE(no_write_view_faults_for_32_bit_code),
	KTEST_CASE(view_is_not_executable_from_32_bit_code),
	KTEST_CASE(requested_address_above_the_32_bit_limit_is_invalid),
	KTEST_CASE(compat_syscall_checks_pointers_against_the_32_bit_limit),
	KTEST_CASE(compat_syscall_zero_extends_its_arguments),
	KTEST_CASE(syscall_from_64_bit_mode_ends_a_32_bit_process),
	KTEST_CASE(sysenter_from_a_32_bit_process_faults),
	KTEST_CASE(int_gates_fault_for_a_32_bit_process),
	KTEST_CASE(vm_calls_from_32_bit_code_allocate_protect_and_free),
	KTEST_CASE(vm_calls_with_unwritable_32_bit_outputs_change_nothing),
	KTEST_CASE(vm_calls_above_the_32_bit_limit_are_refused),
	KTEST_CASE(io_is_32bit_process_tells_a_driver_the_caller_is_32_bit),
	KTEST_CASE(buffered_ioctl_with_a_32_bit_pointer_structure_is_thunked),
	KTEST_CASE(direct_and_neither_ioctls_from_a_32_bit_process),
	KTEST_CASE(driver_maps_into_the_32_bit_caller_below_its_limit),
	{ 0 }
};
KTEST_SUITE(compat32, compat32_cases, .init = c32_init, .exit = c32_exit);
