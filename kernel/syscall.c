#include "kernel/syscall.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "include/mdlab/protocol.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
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
extern uint64_t syscall_kernel_rsp;
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

void syscall_set_kernel_stack(uint64_t top) { syscall_kernel_rsp = top; }

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
 * exception. */
static NTSTATUS vm_call(struct syscall_frame *f)
{
	uint64_t base, size;
	NTSTATUS st;
	if ((st = probe_for_write(f->rdi, 8)) || (st = probe_for_write(f->rsi, 8)))
		return st;
	if (f->nr == SYS_PROTECT_VM && f->r10 && (st = probe_for_write(f->r10, 4)))
		return st;
	if ((st = copy_from_user(&base, f->rdi, 8)) || (st = copy_from_user(&size, f->rsi, 8)))
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
		(void)copy_to_user(f->rdi, &base, 8);
		(void)copy_to_user(f->rsi, &size, 8);
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
	if (!console_at_line_start())
		kprintf("\n");
	size_t start = 0;
	for (size_t i = 0; i <= len; i++)
		if (i == len ? i > start : buf[i] == '\n') {
			print_user_line(p, buf + start, i - start);
			start = i + 1;
		}
	return STATUS_SUCCESS;
}

uint64_t syscall_dispatch(struct syscall_frame *f)
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
		r = (uint64_t)(uint32_t)vm_call(f);
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
		r = io_sys_read_write(f->nr == SYS_WRITE_FILE, f->rdi, f->rsi, f->rdx, f->r10);
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

void syscall_compat_dispatch(struct syscall_frame *f)
{
	PEPROCESS p = ps_current();
	/* No 32-bit program exists yet (issue 19 brings them): a 32-bit system call is one the
	 * process has no right to make, as NT answers a call it does not know. */
	kprintf("[%u %s] ended by SYSCALL from compatibility mode at rip 0x%lx (number 0x%lx)\n",
		p ? p->pid : 0, p ? p->name : "?", f->rip, f->nr);
	ps_exit_current(STATUS_INVALID_SYSTEM_SERVICE);
}
