#include "kernel/trap.h"
#include "kernel/backtrace.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/seh.h"
#include "mm/layout.h"
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
extern const uint64_t trap_stubs[32];

static const char *const vector_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
	"coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
	"#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15",
	"#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
	"#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
	"reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
	"#VC VMM communication", "#SX security", "reserved 31",
};

const char *trap_vector_name(uint64_t v) { return v < 32 ? vector_names[v] : "interrupt"; }

static void set_gate(int v, uint64_t handler, uint8_t ist)
{
	idt[v] = (struct idt_gate){
		.off_lo = handler & 0xFFFF,
		.sel = SEL_KCODE,
		.ist = ist,
		.type = 0x8E, /* present, DPL 0, 64-bit interrupt gate (IF cleared on entry) */
		.off_mid = (handler >> 16) & 0xFFFF,
		.off_hi = handler >> 32,
	};
}

void idt_init(void)
{
	for (int v = 0; v < 32; v++)
		set_gate(v, trap_stubs[v], 0);
	set_gate(8, trap_stubs[8], IST_DOUBLE_FAULT);
	set_gate(2, trap_stubs[2], IST_NMI);
	set_gate(18, trap_stubs[18], IST_MACHINE_CHECK);
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

/* NTSTATUS for a CPU exception, as NT's trap handlers choose them. */
static NTSTATUS status_for_vector(uint64_t v)
{
	switch (v) {
	case 0: return STATUS_INTEGER_DIVIDE_BY_ZERO;
	case 3: return STATUS_BREAKPOINT;
	case 4: return STATUS_INTEGER_OVERFLOW;
	case 5: return STATUS_ARRAY_BOUNDS_EXCEEDED;
	case 6: return STATUS_ILLEGAL_INSTRUCTION;
	case 16:
	case 19: return STATUS_FLOAT_INVALID_OPERATION;
	case 17: return STATUS_DATATYPE_MISALIGNMENT;
	default: return STATUS_ACCESS_VIOLATION; /* #PF, #GP, #SS, #NP, ... */
	}
}

static int reporting;

void trap_dispatch(struct trap_frame *f)
{
	/* NMI, #DF and #MC arrive on their own stacks and are never resumable. */
	if (f->vector == 2 || f->vector == 8 || f->vector == 18) {
		trap_print_report(f);
		ULONG code = f->vector == 2 ? NMI_HARDWARE_FAILURE
			   : f->vector == 8 ? UNEXPECTED_KERNEL_MODE_TRAP : MACHINE_CHECK_EXCEPTION;
		KeBugCheckEx(code, f->vector, f->error_code, f->rip, f->cr2);
	}
	if (reporting) {
		kprintf("\n*** fault while reporting a fault:\n");
		reporting = 0;
		trap_print_report(f);
		KeBugCheckEx(UNEXPECTED_KERNEL_MODE_TRAP, f->vector, f->error_code, f->rip, f->cr2);
	}

	/* A committed demand-zero user page touched for the first time: make it resident and
	 * retry the access, whether user code or the kernel (in its SMAP window) touched it. */
	if (f->vector == VEC_PAGE_FAULT && f->cr2 < USER_VA_END &&
	    uvm_resolve_fault(mm_current(), f->cr2, f->error_code))
		return;
	/* Anything else from ring 3 ends the process, never the kernel. */
	if (f->cs & 3)
		ps_user_fault(f);

	EXCEPTION_RECORD rec = { 0 };
	rec.ExceptionCode = status_for_vector(f->vector);
	rec.ExceptionAddress = (PVOID)f->rip;
	if (f->vector == VEC_PAGE_FAULT) {
		/* NT's access-violation parameters: access kind, then the address. */
		rec.NumberParameters = 2;
		rec.ExceptionInformation[0] = (f->error_code & PF_ID)  ? EXCEPTION_EXECUTE_FAULT
					      : (f->error_code & PF_W) ? EXCEPTION_WRITE_FAULT
								       : EXCEPTION_READ_FAULT;
		rec.ExceptionInformation[1] = f->cr2;
	} else if (f->vector == 13) {
		/* #GP: no address is known (a non-canonical access, a privileged instruction). */
		rec.NumberParameters = 2;
		rec.ExceptionInformation[0] = EXCEPTION_READ_FAULT;
		rec.ExceptionInformation[1] = ~0ull;
	}
	if (!seh_top())
		reporting = 1;
	seh_dispatch(&rec, f);
}
