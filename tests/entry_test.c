/* The CPU's entry points from ring 3, attacked for real (mm/RULES.md, "CPU entry points"):
 * SYSCALL from compatibility mode (IA32_CSTAR), SYSENTER, INT n on every vector, INT3 and
 * ICEBP, and SYSRET's return address.  Each ends the process with its documented status
 * and the kernel carries on, its pool untouched. */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/pte.h"
#include "kernel/cpufeat.h"
#include "kernel/gdt.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/syscall.h"
#include "kernel/trap.h"
#include "mm/layout.h"
#include "mm/uvm.h"

#define ENTRY_TAG 0x72746E45u /* 'Entr' */
/* Where the test code goes: below 4 GiB, so compatibility-mode code can run there too. */
#define CODE_VA 0x20000000ul
#define CANARY 0x5A

static bool intel(void) { return strcmp(cpu_features.vendor, "GenuineIntel") == 0; }
/* QEMU's own CPU model under TCG (the brand it reports), where a few corners differ from the
 * manuals; each use says which. */
static bool qemu_tcg(void) { return strncmp(cpu_features.brand, "QEMU TCG", 8) == 0; }

/* The agent allocates a page at `va` (a reservation of `rsv` bytes from `rsv_base`), writes
 * `code` at va + off, makes the page execute-read and calls va + off; the code must not come
 * back.  The process has run when this returns; *st is its exit status. */
static PEPROCESS run_code_at(struct ktest *t, uint64_t rsv_base, uint64_t rsv, uint64_t page, uint64_t off,
			     const uint8_t *code, size_t len, uint32_t flags, NTSTATUS *st)
{
	struct agent_script s;
	agent_begin(&s);
	uint32_t a = agent_alloc(&s, rsv_base, rsv, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = 0x9090909090909090ull; /* NOPs after the code */
		memcpy(&w, code + i, MIN(8, len - i));
		agent_write64(&s, page + off + i, w);
	}
	uint32_t pr = agent_protect(&s, page, PAGE_SIZE, PAGE_EXECUTE_READ);
	agent_exec(&s, page + off);
	agent_exit(&s, 0x600D); /* the code came back: a test failure */
	PEPROCESS p = agent_run(&s, flags, st);
	if (!p)
		return NULL;
	EXPECT_EQ(t, agent_result(t, p, a, 0), (uint64_t)STATUS_SUCCESS);
	EXPECT_EQ(t, agent_result(t, p, pr, 0), (uint64_t)STATUS_SUCCESS);
	EXPECT_NE(t, (ULONG)*st, 0x600D);
	return p;
}

static PEPROCESS run_code(struct ktest *t, const uint8_t *code, size_t len, uint32_t flags, NTSTATUS *st)
{
	return run_code_at(t, CODE_VA, PAGE_SIZE, CODE_VA, 0, code, len, flags, st);
}

/* 64-bit code that loads RSP (when rsp is not 0), far-jumps to the 32-bit user code segment
 * and runs `tail` there. Returns the length; the compatibility-mode part starts at *tail_off. */
static size_t compat_code(uint8_t *c, uint64_t rsp, const uint8_t *tail, size_t tail_len, size_t *tail_off)
{
	size_t n = 0;
	if (rsp) {
		c[n++] = 0x48; /* mov rsp, imm64 */
		c[n++] = 0xBC;
		memcpy(c + n, &rsp, 8);
		n += 8;
	}
	/* jmp far [rip + 0]: the m16:32 operand follows the instruction. */
	c[n++] = 0xFF;
	c[n++] = 0x2D;
	memset(c + n, 0, 4);
	n += 4;
	uint32_t target = (uint32_t)(CODE_VA + n + 6);
	memcpy(c + n, &target, 4);
	n += 4;
	c[n++] = (SEL_UCODE32 | 3) & 0xFF;
	c[n++] = 0;
	*tail_off = n;
	memcpy(c + n, tail, tail_len);
	return n + tail_len;
}

/* The report key the 32-bit code's system call would use, were it run. */
#define COMPAT_KEY 0x777
static const uint8_t syscall_then_spin[] = { 0xB8, SYS_REPORT, 0, 0, 0,           /* mov eax, SYS_REPORT */
					     0xBF, COMPAT_KEY & 0xFF, COMPAT_KEY >> 8, 0, 0, /* mov edi, key */
					     0x0F, 0x05,                          /* syscall */
					     0xEB, 0xFE };                        /* jmp $ */

/* SYSCALL from compatibility mode: on AMD through CSTAR to the entry that ends the process
 * with STATUS_INVALID_SYSTEM_SERVICE; on Intel #UD in ring 3.  `rsp`: the user's RSP at the
 * SYSCALL, 0 to leave the agent's. */
static void compat_syscall(struct ktest *t, uint32_t flags, uint64_t rsp)
{
	uint8_t code[64];
	size_t off, len = compat_code(code, rsp, syscall_then_spin, sizeof syscall_then_spin, &off);
	NTSTATUS st;
	PEPROCESS p = run_code(t, code, len, flags, &st);
	ASSERT_TRUE(t, p != NULL);
	if (intel()) {
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ILLEGAL_INSTRUCTION);
		EXPECT_EQ(t, p->fault.vector, VEC_INVALID_OPCODE);
		EXPECT_EQ(t, p->fault.rip, CODE_VA + off + 10);
	} else {
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_INVALID_SYSTEM_SERVICE);
		EXPECT_FALSE(t, p->fault.happened);
	}
	uint64_t v;
	EXPECT_FALSE(t, ps_report(p, COMPAT_KEY, &v)); /* no system call ran */
	PsDestroyProcess(p);
}

static void compat_syscall_ends_the_process(struct ktest *t) { compat_syscall(t, 0, 0); }
static void compat_syscall_ends_a_wow64_process(struct ktest *t) { compat_syscall(t, PROCESS_WOW64, 0); }

/* The attack: RSP at a kernel pool page, then SYSCALL from 32-bit code.  Before
 * CSTAR was programmed, ring 0 pushed user registers over that page. */
static void compat_syscall_with_rsp_at_kernel_pool_leaves_the_pool_alone(struct ktest *t)
{
	uint8_t *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, ENTRY_TAG);
	ASSERT_TRUE(t, pool != NULL);
	memset(pool, CANARY, PAGE_SIZE);
	compat_syscall(t, 0, (uint64_t)pool + PAGE_SIZE / 2);
	size_t bad = 0;
	for (size_t i = 0; i < PAGE_SIZE; i++)
		bad += pool[i] != CANARY;
	EXPECT_EQ(t, bad, 0);
	ExFreePoolWithTag(pool, ENTRY_TAG);
}

/* SYSENTER, from 64-bit and from compatibility mode: #UD on AMD in long mode (APM Vol. 3);
 * on Intel #GP(0), IA32_SYSENTER_CS being 0 (SDM Vol. 2B).  QEMU's TCG #UDs only in 64-bit
 * mode and takes compatibility mode down Intel's path, so there SYSENTER_CS = 0 is what
 * stops it.  Either way a ring-3 fault at the instruction. */
static void sysenter(struct ktest *t, bool compat, uint64_t rsp)
{
	static const uint8_t tail[] = { 0x0F, 0x34, 0xEB, 0xFE };
	uint8_t code[64];
	size_t off = 0, len;
	if (compat) {
		len = compat_code(code, rsp, tail, sizeof tail, &off);
	} else {
		len = 0;
		if (rsp) {
			code[len++] = 0x48;
			code[len++] = 0xBC;
			memcpy(code + len, &rsp, 8);
			len += 8;
		}
		off = len;
		memcpy(code + len, tail, sizeof tail);
		len += sizeof tail;
	}
	NTSTATUS st;
	PEPROCESS p = run_code(t, code, len, 0, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.rip, CODE_VA + off);
	if (intel() || (compat && qemu_tcg())) {
		EXPECT_EQ(t, p->fault.vector, VEC_GENERAL_PROTECTION);
		EXPECT_EQ(t, p->fault.error_code, 0);
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	} else {
		EXPECT_EQ(t, p->fault.vector, VEC_INVALID_OPCODE);
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ILLEGAL_INSTRUCTION);
	}
	PsDestroyProcess(p);
}

static void sysenter_from_64_bit_code_faults_in_ring_3(struct ktest *t) { sysenter(t, false, 0); }
static void sysenter_from_compat_mode_faults_in_ring_3(struct ktest *t) { sysenter(t, true, 0); }

static void sysenter_with_rsp_at_kernel_pool_leaves_the_pool_alone(struct ktest *t)
{
	uint8_t *pool = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, ENTRY_TAG);
	ASSERT_TRUE(t, pool != NULL);
	memset(pool, CANARY, PAGE_SIZE);
	sysenter(t, false, (uint64_t)pool + PAGE_SIZE / 2);
	sysenter(t, true, (uint64_t)pool + PAGE_SIZE / 2);
	size_t bad = 0;
	for (size_t i = 0; i < PAGE_SIZE; i++)
		bad += pool[i] != CANARY;
	EXPECT_EQ(t, bad, 0);
	ExFreePoolWithTag(pool, ENTRY_TAG);
}

/* INT n for every n from ring 3, each in a process of its own: #GP(n * 8 + 2) at the INT
 * (an access violation), but for the two DPL-3 gates, #BP and #OF, which trap after it.
 * The error code is the gate's selector-format index with the IDT bit (SDM Vol. 3, 6.13):
 * vector * 8 + 2; QEMU's TCG scales the vector by the 16-byte long-mode gate instead
 * (vector * 16 + 2), which names the same vector.  Either way the exact value is checked. */
static void int_n_on_every_vector_ends_the_process(struct ktest *t)
{
	for (unsigned v = 0; v < 256; v++) {
		const uint8_t code[] = { 0xCD, (uint8_t)v, 0xEB, 0xFE };
		NTSTATUS st;
		PEPROCESS p = run_code(t, code, sizeof code, 0, &st);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_TRUE(t, p->fault.happened);
		if (v == VEC_BREAKPOINT || v == VEC_OVERFLOW) {
			EXPECT_EQ(t, (ULONG)st, (ULONG)(v == VEC_BREAKPOINT ? STATUS_BREAKPOINT : STATUS_INTEGER_OVERFLOW));
			EXPECT_EQ(t, p->fault.vector, v);
			EXPECT_EQ(t, p->fault.rip, CODE_VA + 2);
		} else {
			EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
			EXPECT_EQ(t, p->fault.vector, VEC_GENERAL_PROTECTION);
			EXPECT_EQ(t, p->fault.error_code, (uint64_t)v * (qemu_tcg() ? 16 : 8) + 2);
			EXPECT_EQ(t, p->fault.rip, CODE_VA);
		}
		PsDestroyProcess(p);
		if (t->failures) {
			KTEST_FAIL(t, "INT 0x%x", v);
			return;
		}
	}
}

/* The one-byte forms: INT3 is #BP through its DPL-3 gate (STATUS_BREAKPOINT, RIP after it);
 * ICEBP (INT1) is #DB with no gate-DPL check (SDM Vol. 3, 6.12.1.1): STATUS_SINGLE_STEP.
 * QEMU's TCG decodes F1 as invalid outside SVM: #UD at the byte, STATUS_ILLEGAL_INSTRUCTION. */
static void int3_and_icebp_end_the_process_with_their_status(struct ktest *t)
{
	struct {
		uint8_t op;
		uint64_t vector;
		NTSTATUS status;
		uint64_t rip;
	} forms[] = { { 0xCC, VEC_BREAKPOINT, STATUS_BREAKPOINT, CODE_VA + 1 },
		      { 0xF1, VEC_DEBUG, STATUS_SINGLE_STEP, CODE_VA + 1 } };
	if (qemu_tcg()) {
		forms[1].vector = VEC_INVALID_OPCODE;
		forms[1].status = STATUS_ILLEGAL_INSTRUCTION;
		forms[1].rip = CODE_VA;
	}
	for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
		const uint8_t code[] = { forms[i].op, 0xEB, 0xFE };
		NTSTATUS st;
		PEPROCESS p = run_code(t, code, sizeof code, 0, &st);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, (ULONG)st, (ULONG)forms[i].status);
		EXPECT_TRUE(t, p->fault.happened);
		EXPECT_EQ(t, p->fault.vector, forms[i].vector);
		EXPECT_EQ(t, p->fault.rip, forms[i].rip);
		PsDestroyProcess(p);
	}
}

/* Privileged instructions and segment loads from ring 3: each #GP at the instruction, which
 * never runs.  The privileged ones are STATUS_PRIVILEGED_INSTRUCTION (#GP(0) and the decoder
 * of kernel/insn.c), the segment loads #GP(selector), STATUS_ACCESS_VIOLATION.  The WRMSR
 * would zero IA32_LSTAR, the MOV to CR3 load page tables at 0: had either run, nothing after
 * it would. */
static void privileged_instructions_and_segment_loads_fault_in_ring_3(struct ktest *t)
{
	static const struct {
		const char *what;
		uint8_t code[12];
		uint8_t len, at; /* bytes, offset of the faulting instruction */
		uint16_t error;
		NTSTATUS status;
	} cases[] = {
		{ "hlt", { 0xF4 }, 1, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "cli", { 0xFA }, 1, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "sti", { 0xFB }, 1, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "in al, dx", { 0xEC }, 1, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "out 0xf4, al", { 0xE6, 0xF4 }, 2, 0, 0, STATUS_PRIVILEGED_INSTRUCTION }, /* isa-debug-exit */
		{ "insb", { 0x6C }, 1, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "wrmsr IA32_LSTAR", { 0xB9, 0x82, 0x00, 0x00, 0xC0, 0x31, 0xC0, 0x31, 0xD2, 0x0F, 0x30 }, 11, 9, 0,
		  STATUS_PRIVILEGED_INSTRUCTION },
		{ "rdmsr", { 0x0F, 0x32 }, 2, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "mov cr3, rax", { 0x31, 0xC0, 0x0F, 0x22, 0xD8 }, 5, 2, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "mov rax, cr0", { 0x0F, 0x20, 0xC0 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "mov dr7, rax", { 0x0F, 0x23, 0xF8 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "lgdt [rax]", { 0x0F, 0x01, 0x10 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "invlpg [rax]", { 0x0F, 0x01, 0x38 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "swapgs", { 0x0F, 0x01, 0xF8 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "sysret", { 0x48, 0x0F, 0x07 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "clts", { 0x0F, 0x06 }, 2, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "wbinvd", { 0x0F, 0x09 }, 2, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "ltr ax", { 0x0F, 0x00, 0xD8 }, 3, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "rdpmc", { 0x0F, 0x33 }, 2, 0, 0, STATUS_PRIVILEGED_INSTRUCTION },
		{ "mov ss, kernel data", { 0x66, 0xB8, SEL_KDATA | 3, 0, 0x8E, 0xD0 }, 6, 4, SEL_KDATA,
		  STATUS_ACCESS_VIOLATION },
		{ "mov ds, kernel code", { 0x66, 0xB8, SEL_KCODE | 3, 0, 0x8E, 0xD8 }, 6, 4, SEL_KCODE,
		  STATUS_ACCESS_VIOLATION },
		{ "mov es, TSS", { 0x66, 0xB8, SEL_TSS | 3, 0, 0x8E, 0xC0 }, 6, 4, SEL_TSS, STATUS_ACCESS_VIOLATION },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t code[16];
		memcpy(code, cases[i].code, cases[i].len);
		code[cases[i].len] = 0xEB; /* jmp $ */
		code[cases[i].len + 1] = 0xFE;
		NTSTATUS st;
		PEPROCESS p = run_code(t, code, cases[i].len + 2u, 0, &st);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, (ULONG)st, (ULONG)cases[i].status);
		EXPECT_TRUE(t, p->fault.happened);
		EXPECT_EQ(t, p->fault.vector, VEC_GENERAL_PROTECTION);
		EXPECT_EQ(t, p->fault.error_code, cases[i].error);
		EXPECT_EQ(t, p->fault.rip, CODE_VA + cases[i].at);
		PsDestroyProcess(p);
		if (t->failures) {
			KTEST_FAIL(t, "%s", cases[i].what);
			return;
		}
	}
}

/* A HLT in ring 3 on the last byte of its page, the next page of the process trimmed (in
 * transition, its frame on the modified list): the #GP handler reads the instruction's
 * INSN_MAX_LENGTH bytes with interrupts on, as NT's trap handlers run for a fault from user
 * mode, and its read takes the soft fault that brings that page back (the program never
 * touches it): STATUS_PRIVILEGED_INSTRUCTION at the HLT, the next page valid again with its
 * frame.  With the handler's interrupts off (no STI in trap_dispatch) the read stopped with
 * 0x0A and 0xFF as the IRQL. */
static void a_privileged_instructions_bytes_on_a_trimmed_page_are_read_back(struct ktest *t)
{
	const uint64_t hlt = CODE_VA + PAGE_SIZE - 1, next = CODE_VA + PAGE_SIZE;
	struct agent_script s;
	agent_begin(&s);
	agent_exec(&s, hlt);
	agent_exit(&s, 0x600D); /* the HLT came back: a test failure */
	PEPROCESS p = agent_create(&s, 0);
	ASSERT_TRUE(t, p != NULL);
	uint64_t base = CODE_VA, size = 2 * PAGE_SIZE;
	EXPECT_EQ(t, uvm_allocate(&p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), STATUS_SUCCESS);
	static const uint8_t f4 = 0xF4, nops[16] = { 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
						     0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90 };
	KAPC_STATE a;
	KeStackAttachProcess(p, &a);
	EXPECT_EQ(t, copy_to_user(hlt, &f4, 1), STATUS_SUCCESS);
	EXPECT_EQ(t, copy_to_user(next, nops, sizeof nops), STATUS_SUCCESS);
	KeUnstackDetachProcess(&a);
	base = CODE_VA, size = PAGE_SIZE;
	ULONG old;
	EXPECT_EQ(t, uvm_protect(&p->mm, &base, &size, PAGE_EXECUTE_READ, &old), STATUS_SUCCESS);
	struct uvm_trim_result r;
	uvm_trim(&p->mm, &r);
	uint64_t e = mmt_raw_pte_in(&p->mm.root, next);
	ASSERT_TRUE(t, mmt_sw_is_transition(e));
	NTSTATUS st = PsRunProcess(p);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_PRIVILEGED_INSTRUCTION);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_GENERAL_PROTECTION);
	EXPECT_EQ(t, p->fault.error_code, 0u);
	EXPECT_EQ(t, p->fault.rip, hlt);
	bool w;
	EXPECT_TRUE(t, mmt_present_in(&p->mm.root, next, &w));
	EXPECT_EQ(t, (uint64_t)mmt_frame_in(&p->mm.root, next), mmt_sw_transition_pfn(e));
	PsDestroyProcess(p);
}

/* A far jump from ring 3 to every other selector the GDT answers to (with RPL 3): the kernel's
 * code and data, the user data segment, both halves of the TSS descriptor, the first one past
 * the GDT's limit, and the null selector.  Each is #GP at the jump with the selector as error
 * code (SDM Vol. 2A, JMP: a code segment of another privilege, not a code segment, a TSS in
 * IA-32e mode, outside the table; the null selector #GP(0)).  Only 0x1B and 0x2B lead on. */
static void far_jumps_to_other_selectors_fault_in_ring_3(struct ktest *t)
{
	static const uint16_t selectors[] = { SEL_KCODE, SEL_KDATA, SEL_UDATA, SEL_TSS, SEL_TSS + 8, SEL_TSS + 16, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(selectors); i++) {
		uint16_t sel = selectors[i] ? (uint16_t)(selectors[i] | 3) : 0;
		/* jmp far [rip + 0]; the m16:32 operand: offset CODE_VA + 12, the selector. */
		uint8_t code[16] = { 0xFF, 0x2D, 0, 0, 0, 0 };
		uint32_t target = (uint32_t)(CODE_VA + 12);
		memcpy(code + 6, &target, 4);
		memcpy(code + 10, &sel, 2);
		code[12] = 0xEB; /* jmp $ */
		code[13] = 0xFE;
		NTSTATUS st;
		PEPROCESS p = run_code(t, code, 14, 0, &st);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
		EXPECT_TRUE(t, p->fault.happened);
		EXPECT_EQ(t, p->fault.vector, VEC_GENERAL_PROTECTION);
		EXPECT_EQ(t, p->fault.error_code, (uint64_t)(sel & 0xFFFC));
		EXPECT_EQ(t, p->fault.rip, CODE_VA);
		PsDestroyProcess(p);
		if (t->failures) {
			KTEST_FAIL(t, "far jump to selector 0x%x", sel);
			return;
		}
	}
}

/* SYSRET never takes a non-canonical RCX: the check, and the closest a process gets for
 * real: a SYSCALL ending at the last byte of the highest user page returns (SYSRET) to the
 * first address past it, and the fetch there faults in ring 3. */
static void sysret_returns_only_to_canonical_user_addresses(struct ktest *t)
{
	EXPECT_FALSE(t, syscall_return_rip_ok(USER_VA_END));
	EXPECT_FALSE(t, syscall_return_rip_ok(0x0000800000001000ul));
	EXPECT_FALSE(t, syscall_return_rip_ok(0xFFFF800000000000ul));
	EXPECT_FALSE(t, syscall_return_rip_ok(~0ul));
	EXPECT_TRUE(t, syscall_return_rip_ok(USER_VA_END - 1));
	EXPECT_TRUE(t, syscall_return_rip_ok(MM_USER_TOP_64 + 1));

	static const uint8_t code[] = { 0xB8, SYS_REPORT, 0, 0, 0, 0x90, 0x90, 0x90,
					0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x0F, 0x05 };
	uint64_t page = MM_USER_TOP_64 + 1 - PAGE_SIZE, rsv = MM_USER_TOP_64 + 1 - MM_ALLOCATION_GRANULARITY;
	NTSTATUS st;
	PEPROCESS p = run_code_at(t, rsv, MM_ALLOCATION_GRANULARITY, page, PAGE_SIZE - sizeof code, code, sizeof code,
				  0, &st);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, p->fault.happened);
	EXPECT_EQ(t, p->fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, p->fault.error_code, PF_U | PF_ID);
	EXPECT_EQ(t, p->fault.address, MM_USER_TOP_64 + 1);
	PsDestroyProcess(p);
}

/* RFLAGS.AC set by ring 3 (POPF may change it at any CPL) does not reach the kernel: a
 * gate leaves AC as it was, so every entry stub's CLAC (kernel/trap.asm) is what turns SMAP
 * back on for the handler, and SYSCALL's IA32_FMASK clears it (kernel/syscall.c).  The code
 * sets AC, optionally makes a system call (SYS_REPORT: SYSRET gives the user's RFLAGS back
 * from R11), then INT3: the #BP's trap frame holds the user's AC, set, and the handler
 * (ps_user_fault, reading RFLAGS as it records the fault) runs with it clear.  Without the
 * CLAC the handler ran with AC set: SMAP off in the kernel. */
#define AC_KEY 0xAC
static void ac_set_in_ring_3_is_clear_in_the_kernel(struct ktest *t)
{
	static const uint8_t set_ac[] = { 0x9C,                                     /* pushfq */
					  0x48, 0x81, 0x0C, 0x24, 0x00, 0x00, 0x04, 0x00, /* or qword [rsp], AC */
					  0x9D };                                   /* popfq */
	static const uint8_t report[] = { 0xB8, SYS_REPORT, 0, 0, 0, /* mov eax, SYS_REPORT */
					  0xBF, AC_KEY, 0, 0, 0,     /* mov edi, key */
					  0xBE, 1, 0, 0, 0,          /* mov esi, 1 */
					  0x0F, 0x05 };              /* syscall */
	static const uint8_t int3[] = { 0xCC, 0xEB, 0xFE };
	if (!cpu_features.smap)
		KTEST_SKIP(t, "the CPU has no SMAP: the entry stubs' CLAC is a NOP (kernel/smap_sites.h)");
	ASSERT_TRUE(t, rdmsr(0xC0000084u /* IA32_FMASK */) & RFLAGS_AC);
	for (int call = 0; call < 2; call++) {
		uint8_t code[64];
		size_t n = 0;
		memcpy(code + n, set_ac, sizeof set_ac);
		n += sizeof set_ac;
		if (call) {
			memcpy(code + n, report, sizeof report);
			n += sizeof report;
		}
		memcpy(code + n, int3, sizeof int3);
		n += sizeof int3;
		NTSTATUS st;
		PEPROCESS p = run_code(t, code, n, 0, &st);
		ASSERT_TRUE(t, p != NULL);
		EXPECT_EQ(t, (ULONG)st, (ULONG)STATUS_BREAKPOINT);
		EXPECT_EQ(t, p->fault.vector, VEC_BREAKPOINT);
		EXPECT_EQ(t, p->fault.rip, CODE_VA + n - sizeof int3 + 1);
		EXPECT_TRUE(t, p->fault.rflags & RFLAGS_AC);          /* ring 3 had it set */
		EXPECT_FALSE(t, p->fault.handler_rflags & RFLAGS_AC); /* the kernel had it clear */
		uint64_t v = 0;
		EXPECT_EQ(t, ps_report(p, AC_KEY, &v), call == 1);
		PsDestroyProcess(p);
	}
}

static struct ktest_case entry_cases[] = {
	KTEST_CASE(compat_syscall_ends_the_process),
	KTEST_CASE(compat_syscall_ends_a_wow64_process),
	KTEST_CASE(compat_syscall_with_rsp_at_kernel_pool_leaves_the_pool_alone),
	KTEST_CASE(sysenter_from_64_bit_code_faults_in_ring_3),
	KTEST_CASE(sysenter_from_compat_mode_faults_in_ring_3),
	KTEST_CASE(sysenter_with_rsp_at_kernel_pool_leaves_the_pool_alone),
	KTEST_CASE(int_n_on_every_vector_ends_the_process),
	KTEST_CASE(int3_and_icebp_end_the_process_with_their_status),
	KTEST_CASE(privileged_instructions_and_segment_loads_fault_in_ring_3),
	KTEST_CASE(a_privileged_instructions_bytes_on_a_trimmed_page_are_read_back),
	KTEST_CASE(far_jumps_to_other_selectors_fault_in_ring_3),
	KTEST_CASE(sysret_returns_only_to_canonical_user_addresses),
	KTEST_CASE(ac_set_in_ring_3_is_clear_in_the_kernel),
	{ 0 }
};
KTEST_SUITE(ring3_entry, entry_cases);
