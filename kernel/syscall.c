#include "kernel/syscall.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "mm/layout.h"
#include "mm/uvm.h"

#define MSR_STAR 0xC0000081u
#define MSR_LSTAR 0xC0000082u
#define MSR_FMASK 0xC0000084u
#define EFER_SCE (1ull << 0)
/* Cleared on entry: TF, IF, DF, NT, AC (so SMAP holds in the kernel whatever the user set). */
#define FMASK_BITS 0x47700ull

extern char syscall_entry[];
extern uint64_t syscall_kernel_rsp;

void syscall_init(void)
{
	/* SYSCALL loads CS = STAR[47:32], SS = +8; SYSRET to 64-bit loads CS = STAR[63:48] + 16,
	 * SS = +8, both with RPL 3: user data at 0x20, user code at 0x28 (kernel/gdt.h). */
	wrmsr(MSR_STAR, ((uint64_t)(SEL_UCODE32 | 3) << 48) | ((uint64_t)SEL_KCODE << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_FMASK, FMASK_BITS);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

void syscall_set_kernel_stack(uint64_t top) { syscall_kernel_rsp = top; }

static bool canonical_user(uint64_t va) { return va < USER_VA_END; }

/* Copy in an in/out pointer-sized value, call, copy back: the NT convention of passing
 * BaseAddress and RegionSize by reference. */
static NTSTATUS vm_call(struct syscall_frame *f)
{
	uint64_t base, size;
	NTSTATUS st;
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
		if (NT_SUCCESS(st) && f->r10) {
			uint32_t o = old;
			NTSTATUS c = copy_to_user(f->r10, &o, 4);
			if (c)
				return c;
		}
		break;
	}
	base = (uint64_t)b;
	size = s;
	if (NT_SUCCESS(st)) {
		NTSTATUS c;
		if ((c = copy_to_user(f->rdi, &base, 8)) || (c = copy_to_user(f->rsi, &size, 8)))
			return c;
	}
	return st;
}

static NTSTATUS debug_print(uint64_t s, uint64_t len)
{
	char buf[256];
	PEPROCESS p = ps_current();
	if (len >= sizeof buf)
		len = sizeof buf - 1;
	NTSTATUS st = copy_from_user(buf, s, len);
	if (st)
		return st;
	buf[len] = 0;
	kprintf("[%u %s] %s", p ? p->pid : 0, p ? p->name : "?", buf);
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
		r = (uint64_t)(uint32_t)STATUS_INVALID_PARAMETER;
	}
	io_set_previous_mode(mode);
	/* SYSRET to a non-canonical RIP would fault in ring 0 with the user's RSP (Intel):
	 * never return there. */
	if (!canonical_user(f->rip))
		ps_exit_current(STATUS_ACCESS_VIOLATION);
	return r;
}
