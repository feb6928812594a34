#include "kernel/syscall.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "include/mdlab/protocol.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/percpu.h"
#include "mm/layout.h"
#include "mm/uvm.h"

#define MSR_STAR 0xC0000081u
#define MSR_LSTAR 0xC0000082u
#define MSR_CSTAR 0xC0000083u
#define MSR_FMASK 0xC0000084u
#define MSR_SYSENTER_CS 0x174u
#define MSR_SYSENTER_ESP 0x175u
#define MSR_SYSENTER_EIP 0x176u
#define EFER_SCE (1ull << 0)
/* Cleared on entry: TF, IF, DF, NT, AC (so SMAP holds in the kernel whatever the user set). */
#define FMASK_BITS 0x47700ull

extern char syscall_entry[];
extern char syscall_compat_entry[];
/* The bytes of one SYS_DEBUG_PRINT that are printed; the rest are dropped. */
#define DEBUG_PRINT_MAX 255

void syscall_init(void)
{
	/* SYSCALL loads CS = STAR[47:32], SS = +8; SYSRET to 64-bit loads CS = STAR[63:48] + 16,
	 * SS = +8, both with RPL 3: user data at 0x20, user code at 0x28 (kernel/gdt.h). */
	wrmsr(MSR_STAR, ((uint64_t)(SEL_UCODE32 | 3) << 48) | ((uint64_t)SEL_KCODE << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	/* SYSCALL from compatibility mode goes to CSTAR on AMD CPUs (APM Vol. 3, SYSCALL); left
	 * at its reset value 0 it ran ring 0 at address 0 on the user's stack (issue 12). */
	wrmsr(MSR_CSTAR, (uint64_t)syscall_compat_entry);
	/* SYSENTER is #UD in long mode on AMD; on Intel it is valid in 64-bit and compatibility
	 * mode, and IA32_SYSENTER_CS = 0 makes it #GP(0) (SDM Vol. 2B, SYSENTER) before it
	 * loads anything.  Zero all three, whatever the firmware left: mm/RULES.md, "CPU entry
	 * points". */
	wrmsr(MSR_SYSENTER_CS, 0);
	wrmsr(MSR_SYSENTER_ESP, 0);
	wrmsr(MSR_SYSENTER_EIP, 0);
	wrmsr(MSR_FMASK, FMASK_BITS);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

void syscall_set_kernel_stack(uint64_t top) { this_cpu()->syscall_kernel_rsp = top; }

bool syscall_return_rip_ok(uint64_t rip) { return rip < USER_VA_END; }

/* ProbeForWrite as NT's probe macros do it: read the value and write the same bytes back, a
 * real write through the page tables, so an output the call could not return is refused
 * before anything changes (mm/RULES.md, "System-call outputs"). */
static NTSTATUS probe_for_write(uint64_t uva, uint64_t len)
{
	uint64_t v = 0;
	NTSTATUS st = copy_from_user(&v, uva, len);
	return st ? st : copy_to_user(uva, &v, len);
}

/* BaseAddress and RegionSize by reference, NT's convention, and for protect the old
 * protection (NULL: not wanted): every output probed and the inputs captured before the call;
 * on any failure nothing is done.  A write-back that fails afterwards can only be one the call
 * itself made impossible (it freed or protected the page holding the outputs): its status
 * stands, as in NtAllocateVirtualMemory and NtProtectVirtualMemory, which ignore that write's
 * exception.
 *
 * `w` is the width of BaseAddress and RegionSize: 8 for a 64-bit process, 4 for a 32-bit one
 * (the layout WOW64's NtAllocateVirtualMemory thunk gives them: 32-bit pointers to 32-bit
 * values, read and written as 4 bytes, mm/RULES.md "32-bit processes").  Every pointer is
 * checked against the process's own limit by the copies (MM_USER_TOP_WOW64 for a 32-bit
 * process), and so is every range by the service (mm->highest_user): the results written back
 * as 4 bytes are below 2 GiB, which is checked once more before they are. */
static NTSTATUS vm_call(struct syscall_frame *f, uint64_t w)
{
	uint64_t base = 0, size = 0;
	NTSTATUS st;
	if ((st = probe_for_write(f->rdi, w)) || (st = probe_for_write(f->rsi, w)))
		return st;
	if (f->nr == SYS_PROTECT_VM && f->r10 && (st = probe_for_write(f->r10, 4)))
		return st;
	if ((st = copy_from_user(&base, f->rdi, w)) || (st = copy_from_user(&size, f->rsi, w)))
		return st;
	PVOID b = (PVOID)base;
	SIZE_T s = size;
	ULONG old = 0;
	switch (f->nr) {
	case SYS_ALLOCATE_VM:
		st = ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 0, &s, (ULONG)f->rdx, (ULONG)f->r10);
		break;
	case SYS_FREE_VM:
		st = ZwFreeVirtualMemory(NtCurrentProcess(), &b, &s, (ULONG)f->rdx);
		break;
	default:
		st = ZwProtectVirtualMemory(NtCurrentProcess(), &b, &s, (ULONG)f->rdx, &old);
		break;
	}
	if (NT_SUCCESS(st)) {
		uint32_t o = old;
		base = (uint64_t)b;
		size = s;
		if (w == 4 && (base > MM_USER_TOP_WOW64 || size > MM_USER_TOP_WOW64 + 1 - base))
			PANIC("a 32-bit result above 2 GiB");
		(void)copy_to_user(f->rdi, &base, w);
		(void)copy_to_user(f->rsi, &size, w);
		if (f->nr == SYS_PROTECT_VM && f->r10)
			(void)copy_to_user(f->r10, &o, 4);
	}
	return st;
}

size_t syscall_escape_user_text(char *out, const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c >= 0x20 && c < 0x7F && c != '\\') {
			out[k++] = (char)c;
		} else {
			out[k++] = '\\';
			out[k++] = 'x';
			out[k++] = "0123456789abcdef"[c >> 4];
			out[k++] = "0123456789abcdef"[c & 0xF];
		}
	}
	out[k] = 0;
	return k;
}

/* One line of user output, as MDLAB_USER_FORMAT says. */
static void print_user_line(const PEPROCESS p, const char *s, size_t n)
{
	char out[4 * DEBUG_PRINT_MAX + 1];
	syscall_escape_user_text(out, s, n);
	kprintf(MDLAB_USER_FORMAT "\n", p ? p->pid : 0, p ? p->name : "?", out);
}

/* A process's text reaches the serial line marked as its own, whole lines only, so that
 * nothing it prints can pass for a kernel line (mm/RULES.md, "User output"): each of its lines
 * (and a last one without a newline) is one MDLAB_USER_FORMAT line, started on a fresh line. */
static NTSTATUS debug_print(uint64_t s, uint64_t len)
{
	char buf[DEBUG_PRINT_MAX];
	PEPROCESS p = ps_current();
	if (len > sizeof buf)
		len = sizeof buf;
	NTSTATUS st = copy_from_user(buf, s, len);
	if (st)
		return st;
	/* The copy above may fault (demand-zero): the console's lock only after it. */
	KIRQL irql = ps_console_lock();
	if (!console_at_line_start())
		kprintf("\n");
	size_t start = 0;
	for (size_t i = 0; i <= len; i++)
		if (i == len ? i > start : buf[i] == '\n') {
			print_user_line(p, buf + start, i - start);
			start = i + 1;
		}
	ps_console_unlock(irql);
	return STATUS_SUCCESS;
}

static uint64_t dispatch(struct syscall_frame *f)
{
	PEPROCESS p = ps_current();
	uint64_t r;
	/* ExGetPreviousMode: a system call's requests come from user mode.  SYS_EXIT does not
	 * come back here; PsRunProcess puts KernelMode back when the process ends. */
	KPROCESSOR_MODE mode = io_set_previous_mode(UserMode);
	switch (f->nr) {
	case SYS_EXIT:
		ps_exit_current((NTSTATUS)f->rdi);
	case SYS_DEBUG_PRINT:
		r = (uint64_t)(uint32_t)debug_print(f->rdi, f->rsi);
		break;
	case SYS_ALLOCATE_VM:
	case SYS_FREE_VM:
	case SYS_PROTECT_VM:
		r = (uint64_t)(uint32_t)vm_call(f, 8);
		break;
	case SYS_UNMAP_VIEW:
		r = (uint64_t)(uint32_t)ZwUnmapViewOfSection(NtCurrentProcess(), (PVOID)f->rdi);
		break;
	case SYS_OPEN_DEVICE:
		r = io_sys_open_device(f->rdi, f->rsi);
		break;
	case SYS_DEVICE_IO_CONTROL:
		/* The two ULONG lengths share R8 (in: low half, out: high half), R9 is the
		 * address for IoStatus.Information. */
		r = io_sys_device_io_control(f->rdi, f->rsi, f->rdx, (uint32_t)f->r8, f->r10, f->r8 >> 32, f->r9);
		break;
	case SYS_CLOSE:
		r = io_sys_close(f->rdi);
		break;
	case SYS_READ_FILE:
	case SYS_WRITE_FILE:
		/* R8 the address of ByteOffset (a 32-bit process: EBP, syscall_compat_entry). */
		r = io_sys_read_write(f->nr == SYS_WRITE_FILE, f->rdi, f->rsi, f->rdx, f->r10, f->r8);
		break;
	case SYS_REPORT:
		if (p && p->nreports < PROCESS_REPORTS) {
			p->report_key[p->nreports] = f->rdi;
			p->report_value[p->nreports] = f->rsi;
			p->nreports++;
		}
		r = 0;
		break;
	default:
		/* A number with no service, as NT answers it (the whole of RAX is the number:
		 * mm/RULES.md, "System-call numbers"). */
		r = (uint64_t)(uint32_t)STATUS_INVALID_SYSTEM_SERVICE;
	}
	io_set_previous_mode(mode);
	/* SYSRET to a non-canonical RIP would fault in ring 0 with the user's RSP (Intel):
	 * never return there. */
	if (!syscall_return_rip_ok(f->rip))
		ps_exit_current(STATUS_ACCESS_VIOLATION);
	return r;
}

/* A system call through the entry of the other mode than the process's image: a 64-bit
 * process in compatibility mode (through CSTAR), or a 32-bit process that far-jumped to the
 * 64-bit user CS (through LSTAR).  Neither has a service there: the process is ended, as NT
 * answers a call it does not know (mm/RULES.md, "CPU entry points"). */
__attribute__((noreturn)) static void wrong_mode_call(const PEPROCESS p, const struct syscall_frame *f, const char *how)
{
	KIRQL irql = ps_console_lock();
	kprintf("[%u %s] ended by SYSCALL from %s at rip 0x%lx (number 0x%lx)\n", p ? p->pid : 0,
		p ? p->name : "?", how, f->rip, f->nr);
	ps_console_unlock(irql);
	ps_exit_current(STATUS_INVALID_SYSTEM_SERVICE);
}

/* No lock around a service: each structure it reaches has its own (mm/RULES.md, "Locks"),
 * taken inside the functions that own it, so a service that ends the process
 * (ps_exit_current) holds none. */
uint64_t syscall_dispatch(struct syscall_frame *f)
{
	PEPROCESS p = ps_current();
	if (p && p->compat32)
		wrong_mode_call(p, f, "64-bit mode in a 32-bit process");
	return dispatch(f);
}

static uint64_t compat_dispatch(struct syscall_frame *f);

uint64_t syscall_compat_dispatch(struct syscall_frame *f) { return compat_dispatch(f); }

static uint64_t compat_dispatch(struct syscall_frame *f)
{
	PEPROCESS p = ps_current();
	if (!p || !p->compat32)
		wrong_mode_call(p, f, "compatibility mode");
	/* The 32-bit services: those whose arguments are all 32-bit wide, taken zero-extended
	 * (syscall_compat_entry); a pointer among them is checked against the process's own
	 * limit, MM_USER_TOP_WOW64, by copy_from_user/copy_to_user.  The memory calls and
	 * DeviceIoControl have a 32-bit layout of their own. */
	switch (f->nr) {
	case SYS_EXIT:
	case SYS_DEBUG_PRINT:
	case SYS_UNMAP_VIEW:
	case SYS_REPORT:
	case SYS_CLOSE:
	case SYS_OPEN_DEVICE:
	case SYS_READ_FILE:
	case SYS_WRITE_FILE:
		return dispatch(f);
	case SYS_DEVICE_IO_CONTROL: {
		/* Seven arguments, five registers: EBX is the output buffer, EBP the address of
		 * { ULONG InputBufferLength, OutputBufferLength, ULONG_PTR *BytesReturned }. */
		uint32_t rest[3];
		/* The previous mode is the user's for the whole call, its first access to user
		 * memory included, as dispatch sets it for the others. */
		KPROCESSOR_MODE mode = io_set_previous_mode(UserMode);
		NTSTATUS st = copy_from_user(rest, f->r8, sizeof rest);
		uint64_t r = st ? (uint64_t)(uint32_t)st
				: io_sys_device_io_control(f->rdi, f->rsi, f->rdx, rest[0], f->r10, rest[1], rest[2]);
		io_set_previous_mode(mode);
		return r;
	}
	case SYS_ALLOCATE_VM:
	case SYS_FREE_VM:
	case SYS_PROTECT_VM: {
		/* EDI the address of a 32-bit BaseAddress, ESI of a 32-bit RegionSize, EDX the
		 * type (protect: the new protection), EBX the protection (protect: the address
		 * of OldProtect, 0 for not wanted). */
		KPROCESSOR_MODE mode = io_set_previous_mode(UserMode);
		uint64_t r = (uint64_t)(uint32_t)vm_call(f, 4);
		io_set_previous_mode(mode);
		return r;
	}
	default:
		return (uint64_t)(uint32_t)STATUS_INVALID_SYSTEM_SERVICE;
	}
}
