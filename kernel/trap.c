#include "kernel/trap.h"
#include "kernel/backtrace.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "kernel/insn.h"
#include "kernel/intr/intr.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/seh.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/tlb.h"
#include "mm/uvm.h"

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

static struct idt_gate idt[256];
extern const uint64_t trap_stubs[VEC_EXCEPTIONS];
extern const uint64_t trap_interrupt_stubs[256 - VEC_EXCEPTIONS];

static const char *const vector_names[VEC_EXCEPTIONS] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
	"coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
	"#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15",
	"#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
	"#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
	"reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
	"#VC VMM communication", "#SX security", "reserved 31",
};

const char *trap_vector_name(uint64_t v) { return v < VEC_EXCEPTIONS ? vector_names[v] : "interrupt"; }

/* dpl: the lowest privilege an INT n, INT3 or INTO may come from (SDM Vol. 3, 6.12.1.1);
 * exceptions the CPU raises itself ignore it. */
static void set_gate(int v, uint64_t handler, uint8_t ist, uint8_t dpl)
{
	idt[v] = (struct idt_gate){
		.off_lo = handler & 0xFFFF,
		.sel = SEL_KCODE,
		.ist = ist,
		.type = (uint8_t)(0x8E | dpl << 5), /* present, DPL, 64-bit interrupt gate (IF cleared) */
		.off_mid = (handler >> 16) & 0xFFFF,
		.off_hi = handler >> 32,
	};
}

void idt_init(void)
{
	/* Every gate DPL 0, so INT n from ring 3 is #GP(n * 8 + 2) and ends the process as an
	 * access violation, except #BP and #OF, DPL 3 as in NT: INT3 (and INT 3) from ring 3 is
	 * STATUS_BREAKPOINT, INT 4 STATUS_INTEGER_OVERFLOW.  Both push no error code, so the
	 * stub's frame is right however they are reached; a DPL-3 gate for a vector with an error
	 * code would let INT n build a frame one word short.  mm/RULES.md, "CPU entry points".
	 * Vectors 32-255 are the interrupts (kernel/intr/intr.h): interrupt gates (IF cleared on
	 * entry), DPL 0, so a user INT n there is the same #GP(n * 8 + 2). */
	for (int v = 0; v < VEC_EXCEPTIONS; v++)
		set_gate(v, trap_stubs[v], 0, v == VEC_BREAKPOINT || v == VEC_OVERFLOW ? 3 : 0);
	set_gate(VEC_DOUBLE_FAULT, trap_stubs[VEC_DOUBLE_FAULT], IST_DOUBLE_FAULT, 0);
	set_gate(VEC_NMI, trap_stubs[VEC_NMI], IST_NMI, 0);
	set_gate(VEC_MACHINE_CHECK, trap_stubs[VEC_MACHINE_CHECK], IST_MACHINE_CHECK, 0);
	for (int v = VEC_EXCEPTIONS; v < 256; v++)
		set_gate(v, trap_interrupt_stubs[v - VEC_EXCEPTIONS], 0, 0);
	idt_load();
}

void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof idt - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

void trap_print_report(const struct trap_frame *f)
{
	kprintf("\n*** EXCEPTION %lu %s", f->vector, trap_vector_name(f->vector));
	kprintf(" in %s mode, error code 0x%lx\n", (f->cs & 3) ? "user" : "kernel", f->error_code);
	if (f->vector == VEC_PAGE_FAULT) {
		uint64_t e = f->error_code;
		kprintf("    #PF: %s, %s, %s mode%s%s%s%s\n", e & PF_P ? "protection violation" : "not present",
			e & PF_ID ? "instruction fetch" : e & PF_W ? "write" : "read", e & PF_U ? "user" : "supervisor",
			e & PF_RSVD ? ", reserved bit set" : "", e & PF_PK ? ", protection key" : "",
			e & PF_SS ? ", shadow stack" : "", "");
		kprintf("    CR2 0x%016lx\n", f->cr2);
	}
	kprintf("    RIP 0x%016lx", f->rip);
	backtrace_print_symbol(f->rip);
	kprintf("\n    CS %04lx SS %04lx RFLAGS %016lx RSP %016lx\n", f->cs, f->ss, f->rflags, f->rsp);
	kprintf("    RAX %016lx RBX %016lx RCX %016lx RDX %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
	kprintf("    RSI %016lx RDI %016lx RBP %016lx R8  %016lx\n", f->rsi, f->rdi, f->rbp, f->r8);
	kprintf("    R9  %016lx R10 %016lx R11 %016lx R12 %016lx\n", f->r9, f->r10, f->r11, f->r12);
	kprintf("    R13 %016lx R14 %016lx R15 %016lx\n", f->r13, f->r14, f->r15);
	kprintf("    CR0 %016lx CR3 %016lx CR4 %016lx CR8 %lx\n", read_cr0(), read_cr3(), read_cr4(),
		read_cr8());
	kprintf("  Backtrace:\n  #0  0x%016lx", f->rip);
	backtrace_print_symbol(f->rip);
	kprintf("\n");
	backtrace_print(f->rbp, 1);
}

/* The exception flags the x87 status word and MXCSR share (SDM Vol. 1, 8.1.3 and 10.2.3);
 * a flag counts when its mask bit (x87 control word, MXCSR bits 7-12) is clear. */
#define FP_INVALID (1u << 0)
#define FP_DENORMAL (1u << 1)
#define FP_ZERO_DIVIDE (1u << 2)
#define FP_OVERFLOW (1u << 3)
#define FP_UNDERFLOW (1u << 4)
#define FP_PRECISION (1u << 5)
#define FP_FLAGS 0x3Fu
#define FSW_STACK_FAULT (1u << 6)
#define MXCSR_MASK_SHIFT 7

/* The STATUS_FLOAT_* of the unmasked flags, the invalid operation first (a stack fault is
 * STATUS_FLOAT_STACK_CHECK), as NT reports one exception per fault. */
static NTSTATUS float_status(unsigned flags, bool stack_fault)
{
	if (flags & FP_INVALID)
		return stack_fault ? STATUS_FLOAT_STACK_CHECK : STATUS_FLOAT_INVALID_OPERATION;
	if (flags & FP_ZERO_DIVIDE)
		return STATUS_FLOAT_DIVIDE_BY_ZERO;
	if (flags & FP_DENORMAL)
		return STATUS_FLOAT_DENORMAL_OPERAND;
	if (flags & FP_OVERFLOW)
		return STATUS_FLOAT_OVERFLOW;
	if (flags & FP_UNDERFLOW)
		return STATUS_FLOAT_UNDERFLOW;
	if (flags & FP_PRECISION)
		return STATUS_FLOAT_INEXACT_RESULT;
	return STATUS_FLOAT_INVALID_OPERATION; /* no flag left: the generic one */
}

/* #MF and #XM: the kernel itself never touches the FPU, so its state is the faulting code's.
 * #MF implies x87 instructions run (CR0.EM clear), #XM that SSE is enabled (CR4.OSXMMEXCPT),
 * so the reads below cannot fault. */
static NTSTATUS x87_status(void)
{
	uint16_t sw, cw;
	__asm__ volatile("fnstsw %0\n\tfnstcw %1" : "=m"(sw), "=m"(cw));
	return float_status(sw & ~cw & FP_FLAGS, sw & FSW_STACK_FAULT);
}

static NTSTATUS simd_status(void)
{
	uint32_t mxcsr;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	return float_status(mxcsr & ~(mxcsr >> MXCSR_MASK_SHIFT) & FP_FLAGS, false);
}

/* Whether the user instruction at rip is a privileged one: as many of its bytes as can be
 * read (the instruction may end just before an unmapped page), then decoded. */
static bool user_privileged_instruction(uint64_t rip)
{
	uint8_t code[INSN_MAX_LENGTH];
	size_t n = INSN_MAX_LENGTH;
	/* Read with interrupts on (trap_dispatch turned them on for a ring-3 fault), so a
	 * trimmed page among these bytes is brought back as for any access (mm/RULES.md
	 * "Paging"). */
	if (copy_from_user(code, rip, n) != STATUS_SUCCESS) {
		n = MIN(n, PAGE_SIZE - (rip & (PAGE_SIZE - 1)));
		if (copy_from_user(code, rip, n) != STATUS_SUCCESS)
			return false;
	}
	return insn_is_privileged(code, n);
}

/* NT's choices, by vector.  Not modelled: NT's #DE handler reports an IDIV overflow as
 * STATUS_INTEGER_OVERFLOW, and a WOW64 process's #XM as STATUS_FLOAT_MULTIPLE_TRAPS/FAULTS. */
NTSTATUS trap_exception_code(const struct trap_frame *f)
{
	switch (f->vector) {
	case VEC_DIVIDE_ERROR:
		return STATUS_INTEGER_DIVIDE_BY_ZERO;
	case VEC_DEBUG:
		return STATUS_SINGLE_STEP;
	case VEC_BREAKPOINT:
		return STATUS_BREAKPOINT;
	case VEC_OVERFLOW:
		return STATUS_INTEGER_OVERFLOW;
	case VEC_BOUND_RANGE:
		return STATUS_ARRAY_BOUNDS_EXCEEDED;
	case VEC_INVALID_OPCODE:
		return STATUS_ILLEGAL_INSTRUCTION;
	case VEC_GENERAL_PROTECTION:
		/* #GP(0) in ring 3 at an instruction only ring 0 may run; else a bad access (a
		 * non-canonical address, a segment). */
		if ((f->cs & 3) && !f->error_code && user_privileged_instruction(f->rip))
			return STATUS_PRIVILEGED_INSTRUCTION;
		return STATUS_ACCESS_VIOLATION;
	case VEC_X87_FP:
		return x87_status();
	case VEC_ALIGNMENT_CHECK:
		return STATUS_DATATYPE_MISALIGNMENT;
	case VEC_SIMD_FP:
		return simd_status();
	default:
		return STATUS_ACCESS_VIOLATION; /* #PF, #NP, #SS, and anything else */
	}
}

/* The bug check for a vector that is never dispatched as an exception, 0 for the others.
 * NMI, #DF and #MC arrive on their own stacks and cannot be resumed; NT's handlers for #NM
 * (the FPU is always enabled: CR0.EM and CR0.TS stay clear), vector 9 and #TS stop the
 * machine too, whatever the mode. */
static ULONG fatal_vector_bugcheck(uint64_t vector)
{
	switch (vector) {
	case VEC_NMI:
		return NMI_HARDWARE_FAILURE;
	case VEC_MACHINE_CHECK:
		return MACHINE_CHECK_EXCEPTION;
	case VEC_DEVICE_NOT_AVAILABLE:
	case VEC_DOUBLE_FAULT:
	case VEC_COPROCESSOR_OVERRUN:
	case VEC_INVALID_TSS:
		return UNEXPECTED_KERNEL_MODE_TRAP;
	default:
		return 0;
	}
}

/* What the machine-check banks held at the last #MC: bug check 0x9C's P2 points here. */
static struct trap_mca_exception mca_exception;

const struct trap_mca_exception *trap_mca_exception(void) { return &mca_exception; }

#define CPUID1_EDX_MCA (1u << 14)
#define MSR_IA32_MCG_CAP 0x179
#define MSR_IA32_MC0_STATUS 0x401 /* bank i: MCi_CTL 0x400 + 4i, STATUS +1, ADDR +2, MISC +3 */
#define MCI_STATUS_VAL (1ull << 63)
#define MCI_STATUS_ADDRV (1ull << 58)

/* Bug check 0x9C with Microsoft's x64 parameters: the bank that reported the error, the
 * record of it, MCi_STATUS high and low 32 bits (SDM vol. 3B 16.3.2: the first bank whose
 * MCi_STATUS.VAL is set; bank 0 and its status when none is, or no bank at all when the CPU
 * has no MCA). */
static __attribute__((noreturn)) void machine_check_stop(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	struct trap_mca_exception *e = &mca_exception;
	*e = (struct trap_mca_exception){ 0 };
	uint32_t banks = (d & CPUID1_EDX_MCA) ? (uint32_t)(rdmsr(MSR_IA32_MCG_CAP) & 0xFF) : 0;
	for (uint32_t i = 0; i < banks; i++) {
		uint64_t status = rdmsr(MSR_IA32_MC0_STATUS + 4 * i);
		if (i == 0 || (status & MCI_STATUS_VAL)) {
			e->bank = i;
			e->status = status;
			e->addr = (status & MCI_STATUS_ADDRV) ? rdmsr(MSR_IA32_MC0_STATUS + 4 * i + 1) : 0;
		}
		if (status & MCI_STATUS_VAL)
			break;
	}
	KeBugCheckEx(MACHINE_CHECK_EXCEPTION, e->bank, (ULONG_PTR)e, e->status >> 32, e->status & 0xFFFFFFFF);
}

void trap_expect_nmi(unsigned cpu) { __atomic_fetch_add(&kcpus[cpu].nmi_expected, 1, __ATOMIC_SEQ_CST); }

void trap_dispatch(struct trap_frame *f)
{
	/* Before anything else: a CPU woken from its idle HLT takes the TLB flush another CPU
	 * left for it (mm/RULES.md, "Idle CPUs take their flush when they wake"). */
	tlb_idle_wake();
	/* Interrupts (kernel/intr/intr.c), and the NMI by which a CPU that bug checks freezes
	 * the others. */
	if (f->vector >= VEC_EXCEPTIONS) {
		intr_dispatch(f->vector);
		return;
	}
	if (f->vector == VEC_NMI) {
		if (smp_freezing())
			smp_frozen_halt();
		/* An NMI a test announced (trap_expect_nmi): counted in the kcpu the entry found,
		 * with the GS base it found, and resumed. */
		struct kcpu *c = this_cpu();
		if (c->nmi_expected) {
			c->nmi_saw_gs_base = c->paranoid_gs_base;
			c->nmi_expected--;
			__atomic_fetch_add(&c->nmis_taken, 1, __ATOMIC_RELEASE);
			return;
		}
	}
	/* Whether this CPU is printing a fault report now (per CPU, as the __try chain is). */
	int *reporting = &this_cpu()->trap_reporting;
	ULONG fatal = fatal_vector_bugcheck(f->vector);
	if (fatal) {
		trap_print_report(f);
		/* 0x7F: P1 the trap number, the rest undefined (mdlab: error code, RIP, CR2);
		 * 0x80: no parameters defined (the same four). */
		if (fatal == MACHINE_CHECK_EXCEPTION)
			machine_check_stop();
		KeBugCheckEx(fatal, f->vector, f->error_code, f->rip, f->cr2);
	}
	if (*reporting) {
		kprintf("\n*** fault while reporting a fault:\n");
		*reporting = 0;
		trap_print_report(f);
		KeBugCheckEx(UNEXPECTED_KERNEL_MODE_TRAP, f->vector, f->error_code, f->rip, f->cr2);
	}
	/* What is left is an exception whose handler works (a page resolved, user memory read,
	 * a process ended, a __try's filter run): with interrupts on when the faulting code had
	 * them on (ring 3 always has), at the IRQL it ran at, as NT's handlers enable them once
	 * CR2 is read (trap.asm's SAVE_FRAME) and before MmAccessFault or the exception's
	 * dispatch.  Code that turned them off keeps them off here too; trap.asm turns them off
	 * again before the return (mm/RULES.md "Interrupts and IRQL"). */
	if ((f->cs & 3) || (f->rflags & RFLAGS_IF))
		__asm__ volatile("sti" ::: "memory");

	/* A committed demand-zero user page touched for the first time: make it resident and
	 * retry the access, whether user code or the kernel (in its SMAP window) touched it. */
	/* A page whose read from the pagefile failed is STATUS_IN_PAGE_ERROR, not an access
	 * violation (mm/RULES.md, "Paging"). */
	NTSTATUS inpage = STATUS_SUCCESS, io = STATUS_SUCCESS; /* io: this fault's read's status */
	if (f->vector == VEC_PAGE_FAULT && f->cr2 < USER_VA_END) {
		/* In this CPU's address space (mm_current is per CPU), under that space's own
		 * lock (uvm_resolve_fault_status takes it). */
		NTSTATUS st = uvm_resolve_fault_status(mm_current(), f->cr2, f->error_code, f->rflags & RFLAGS_IF, &io);
		if (st == STATUS_SUCCESS)
			return;
		if (st == STATUS_IN_PAGE_ERROR)
			inpage = st;
		/* A trimmed page at DISPATCH_LEVEL or above, or touched by code that ran with
		 * interrupts off (its trap frame's IF), in any mode and whatever __try is open:
		 * IRQL_NOT_LESS_OR_EQUAL (the address, the IRQL or 0xFF for interrupts off, bit 0
		 * write / bit 3 execute, the RIP: mm/RULES.md "Paging"). */
		if (st == UVM_STATUS_PAGEABLE_AT_DISPATCH) {
			trap_print_report(f);
			KeBugCheckEx(IRQL_NOT_LESS_OR_EQUAL, f->cr2,
				     (f->rflags & RFLAGS_IF) ? KeGetCurrentIrql() : UVM_IRQL_INTERRUPTS_OFF,
				     ((f->error_code & PF_W) ? 1 : 0) | ((f->error_code & PF_ID) ? 8 : 0), f->rip);
		}
	}
	/* A trimmed page of paged pool (mm/RULES.md, "Paging"): brought back below
	 * DISPATCH_LEVEL, 0x0A at or above it; a failed read is STATUS_IN_PAGE_ERROR. */
	if (f->vector == VEC_PAGE_FAULT && f->cr2 >= KVA_POOL_BASE && f->cr2 < KVA_POOL_END &&
	    !(f->error_code & (PF_P | PF_RSVD | PF_U | PF_ID))) {
		/* Paged below DISPATCH_LEVEL with interrupts on only; else 0x0A, with 0xFF as
		 * the IRQL for code that ran with interrupts off, as for a user page. */
		bool intr = f->rflags & RFLAGS_IF;
		NTSTATUS st = pool_resolve_fault(f->cr2, intr && KeGetCurrentIrql() < DISPATCH_LEVEL, &io);
		if (st == STATUS_SUCCESS)
			return;
		if (st == UVM_STATUS_PAGEABLE_AT_DISPATCH) {
			trap_print_report(f);
			KeBugCheckEx(IRQL_NOT_LESS_OR_EQUAL, f->cr2, intr ? KeGetCurrentIrql() : UVM_IRQL_INTERRUPTS_OFF,
				     (f->error_code & PF_W) ? 1 : 0, f->rip);
		}
		/* Kernel data the pagefile cannot give back: 0x7A KERNEL_DATA_INPAGE_ERROR in the
		 * form whose P1 is the PTE (Microsoft's third: the PTE's address, the error status,
		 * the PTE's contents, the faulting address), whatever __try is open: the kernel's
		 * own memory is gone (mm/RULES.md "Paging"). */
		if (st == STATUS_IN_PAGE_ERROR) {
			struct pt_query q;
			pt_query(&kernel_root, f->cr2, &q);
			trap_print_report(f);
			KeBugCheckEx(KERNEL_DATA_INPAGE_ERROR, q.level == 1 ? (ULONG_PTR)phys_to_virt(q.entry_pa[1]) : 0,
				     (ULONG_PTR)(ULONG)io, q.level == 1 ? q.entry[1] : 0, f->cr2);
		}
	}
	/* Anything else from ring 3 ends the process, never the kernel. */
	if (f->cs & 3)
		ps_user_fault(f, inpage ? inpage : trap_exception_code(f));
	/* Driver code touching user memory inside __try: the SMAP window (mm/RULES.md decision 8). */
	if (seh_open_user_window(f))
		return;

	EXCEPTION_RECORD rec = { 0 };
	rec.ExceptionCode = inpage ? inpage : trap_exception_code(f);
	rec.ExceptionAddress = (PVOID)f->rip;
	if (f->vector == VEC_PAGE_FAULT) {
		/* NT's access-violation parameters: access kind, then the address; an in-page
		 * error adds the I/O's status. */
		rec.NumberParameters = inpage ? 3 : 2;
		rec.ExceptionInformation[0] = (f->error_code & PF_ID)  ? EXCEPTION_EXECUTE_FAULT
					      : (f->error_code & PF_W) ? EXCEPTION_WRITE_FAULT
								       : EXCEPTION_READ_FAULT;
		rec.ExceptionInformation[1] = f->cr2;
		if (inpage)
			rec.ExceptionInformation[2] = (ULONG_PTR)(ULONG)io;
	} else if (f->vector == VEC_GENERAL_PROTECTION) {
		/* #GP: no address is known (a non-canonical access, a privileged instruction). */
		rec.NumberParameters = 2;
		rec.ExceptionInformation[0] = EXCEPTION_READ_FAULT;
		rec.ExceptionInformation[1] = ~0ull;
	}
	if (!seh_top()) {
		/* A kernel write to a present read-only page of the kernel half that no __try
		 * handles: NT's ATTEMPTED_WRITE_TO_READONLY_MEMORY, (address written, its PTE,
		 * reserved, reserved) as the bug-check page gives them (mm/RULES.md decision 9). */
		if (f->vector == VEC_PAGE_FAULT && f->cr2 >= USER_VA_END &&
		    (f->error_code & (PF_P | PF_W | PF_U | PF_RSVD)) == (PF_P | PF_W)) {
			struct pt_query q;
			pt_query(&kernel_root, f->cr2, &q);
			trap_print_report(f);
			KeBugCheckEx(ATTEMPTED_WRITE_TO_READONLY_MEMORY, f->cr2, q.entry[q.level], 0, 0);
		}
		*reporting = 1;
	}
	seh_dispatch(&rec, f);
}
