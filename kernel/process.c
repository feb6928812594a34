/* Processes (see process.h): creation from an embedded ELF program, running it in ring 3
 * until it exits or faults, attaching, and teardown. */
#include "kernel/process.h"
#include "kernel/io/io.h"
#include "kernel/bugcheck.h"
#include "kernel/gdt.h"
#include "kernel/irql.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"
#include "kernel/smp/spinlock.h"
#include "kernel/syscall.h"
#include "kernel/trap.h"
#include "kernel/userprog.h"
#include "mm/mdl_user.h"
#include "mm/pfn.h"
#include "mm/uvm.h"
#include "mm/vad.h"

#define PROCESS_TAG 0x636F7250u /* 'Proc' */
#define USER_STACK_PAGES 16
#define MAX_CLEANUPS 8
/* Kernel stack kept free below the PsRunProcess frame for system calls and faults. */
#define RSP0_GAP 512
/* Ring 3 runs with interrupts on (RFLAGS.IF; bit 1 is fixed): a CPU in user code must take
 * the other CPUs' shootdown IPIs at once, or a program spinning in ring 3 would hold every
 * unmap of the machine until it made a system call (mm/RULES.md, "Per-CPU state"). */
#define RFLAGS_USER 0x202ul
#define PS_NO_CPU (-1)

__attribute__((noreturn)) void user_iret(uint64_t rip, uint64_t rsp, uint64_t rflags, uint64_t cs);

static PEPROCESS processes;        /* the live ones, newest first, linked by `next` */
static uint32_t next_pid = 4;
/* The list's lock: processes are made and destroyed on any CPU.  Held only to link, unlink
 * and number one; nothing is taken under it.  The tools' walks (ps_next, ps_lookup) run on a
 * CPU that makes and destroys the processes it walks. */
static KSPIN_LOCK processes_lock;
/* The console's lock, for the lines processes print (SYS_DEBUG_PRINT, the "ended by" lines):
 * one line at a time, started on a fresh line.  Nothing is taken under it. */
static KSPIN_LOCK console_lock;

KIRQL ps_console_lock(void)
{
	KIRQL irql;
	KeAcquireSpinLock(&console_lock, &irql);
	return irql;
}

void ps_console_unlock(KIRQL irql) { KeReleaseSpinLock(&console_lock, irql); }
/* Which process each CPU runs, where PsRunProcess resumes and with what status are per CPU
 * (struct kcpu: running, running_resume, running_status). */
static ps_cleanup_fn cleanups[MAX_CLEANUPS];
static int ncleanups;

/* The process whose memory is loaded: mm keeps which address space that is. */
PEPROCESS ps_current(void) { return mm_current() ? mm_current()->process : NULL; }
PEPROCESS PsGetCurrentProcess(void) { return ps_current(); }

struct mm_process *ps_mm(PEPROCESS p) { return p ? &p->mm : NULL; }

PEPROCESS ps_next(PEPROCESS p) { return p ? p->next : processes; }

PEPROCESS ps_lookup(uint32_t pid)
{
	for (PEPROCESS p = processes; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void unlink_process(PEPROCESS p)
{
	KIRQL irql;
	KeAcquireSpinLock(&processes_lock, &irql);
	for (PEPROCESS *pp = &processes; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			KeReleaseSpinLock(&processes_lock, irql);
			return;
		}
	PANIC("PsDestroyProcess: process %u (%s) is not a live process", p->pid, p->name);
}

void ps_register_cleanup(ps_cleanup_fn fn)
{
	if (ncleanups == MAX_CLEANUPS)
		PANIC("ps_register_cleanup: more than %d cleanup callbacks", MAX_CLEANUPS);
	cleanups[ncleanups++] = fn;
}

/* Each attach is counted on the process, so PsDestroyProcess can refuse a process some CPU
 * still runs in: its CR3 would be a freed root (NT's caller holds a reference on the process
 * across KeStackAttachProcess; mdlab destroys explicitly and checks instead). */
void KeStackAttachProcess(PEPROCESS Process, PKAPC_STATE ApcState)
{
	ApcState->previous = ps_current();
	ApcState->process = Process;
	__atomic_add_fetch(&Process->attached, 1, __ATOMIC_ACQ_REL);
	mm_switch(&Process->mm);
}

void KeUnstackDetachProcess(PKAPC_STATE ApcState)
{
	mm_switch(ps_mm(ApcState->previous));
	__atomic_sub_fetch(&ApcState->process->attached, 1, __ATOMIC_ACQ_REL);
}

bool ps_report(const PEPROCESS p, uint64_t key, uint64_t *value)
{
	for (uint32_t i = p->nreports; i-- > 0;)
		if (p->report_key[i] == key) {
			*value = p->report_value[i];
			return true;
		}
	return false;
}

/* Allocate `n` zeroed frames and map them at va as a VAD of `kind`; the caller may fill them
 * through the direct map first via `fill`.  False (nothing left behind) when out of memory. */
static bool map_new_pages(PEPROCESS p, uint64_t va, uint64_t n, int kind, bool write, bool exec,
			  void (*fill)(uint64_t *pfns, uint64_t n, void *ctx), void *ctx)
{
	uint64_t *pfns = ExAllocatePool2(POOL_FLAG_NON_PAGED, n * sizeof *pfns, PROCESS_TAG);
	if (!pfns)
		return false;
	uint64_t got = pfn_alloc_batch_in(0, ~0ul, n, PFN_ALLOC_ZERO, PFN_OWNER_KERNEL, 0, pfns);
	bool ok = got == n;
	if (ok && fill)
		fill(pfns, n, ctx);
	if (ok)
		ok = uvm_map_frames(&p->mm, va, pfns, n, kind, write, exec);
	if (!ok)
		for (uint64_t i = 0; i < got; i++)
			pfn_free(pfns[i]);
	ExFreePoolWithTag(pfns, PROCESS_TAG);
	return ok;
}

struct segment_fill {
	const uint8_t *file;
	uint64_t vaddr, filesz, page;
};

static void fill_segment(uint64_t *pfns, uint64_t n, void *ctx)
{
	struct segment_fill *s = ctx;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = s->page + i * PAGE_SIZE;
		for (uint64_t off = 0; off < PAGE_SIZE; off++) {
			uint64_t va = page + off;
			if (va >= s->vaddr && va < s->vaddr + s->filesz)
				((uint8_t *)pfn_to_virt(pfns[i]))[off] = s->file[va - s->vaddr];
		}
	}
}

struct params_fill {
	const uint64_t *args;
	uint32_t nargs;
};

static void fill_params(uint64_t *pfns, uint64_t n, void *ctx)
{
	(void)n; /* one page: the parameter page */
	struct params_fill *pf = ctx;
	struct user_params *up = pfn_to_virt(pfns[0]);
	up->magic = USER_PARAMS_MAGIC;
	up->nargs = pf->nargs;
	memcpy(up->args, pf->args, pf->nargs * sizeof(uint64_t));
}

static bool load_image(PEPROCESS p, const struct user_program *prog, const struct elf_image *img)
{
	for (unsigned i = 0; i < img->nsegs; i++) {
		const struct elf_segment *s = &img->segs[i];
		struct segment_fill f = { .file = prog->start + s->offset, .vaddr = s->vaddr, .filesz = s->filesz,
					  .page = ALIGN_DOWN(s->vaddr, PAGE_SIZE) };
		uint64_t n = (ALIGN_UP(s->vaddr + s->memsz, PAGE_SIZE) - f.page) / PAGE_SIZE;
		if (!map_new_pages(p, f.page, n, VAD_IMAGE, s->write, s->exec, fill_segment, &f))
			return false;
	}
	p->entry = img->entry;
	return true;
}

static PEPROCESS create_process(const char *program, uint32_t flags, const uint64_t *args, uint32_t nargs)
{
	const struct user_program *prog = userprog_find(program);
	struct elf_image img;
	if (!prog || nargs > USER_PARAMS_ARGS || !userprog_parse(prog, &img))
		return NULL;
	PEPROCESS p = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *p, PROCESS_TAG);
	if (!p)
		return NULL;
	memset(p, 0, sizeof *p);
	p->pid = __atomic_fetch_add(&next_pid, 4, __ATOMIC_RELAXED);
	p->cpu = PS_NO_CPU;
	strlcpy(p->name, program, sizeof p->name);
	/* A 32-bit image makes a 32-bit process, as the image decides WOW64 on Windows: it runs
	 * in compatibility mode in the 32-bit address space (mm/RULES.md, "The ring-3 boundary"). */
	p->compat32 = img.is32;
	p->wow64 = (flags & PROCESS_WOW64) || img.is32;
	if (!mm_process_init(&p->mm, p, p->wow64)) {
		ExFreePoolWithTag(p, PROCESS_TAG);
		return NULL;
	}
	/* The stack sits under a 64 KiB gap below the top of the user range. */
	uint64_t stack_top = ALIGN_DOWN(p->mm.highest_user + 1, MM_ALLOCATION_GRANULARITY) - MM_ALLOCATION_GRANULARITY;
	struct params_fill pf = { args, nargs };
	if (!load_image(p, prog, &img) ||
	    !map_new_pages(p, stack_top - USER_STACK_PAGES * PAGE_SIZE, USER_STACK_PAGES, VAD_STACK, true, false,
			   NULL, NULL) ||
	    !map_new_pages(p, USER_PARAMS_VA, 1, VAD_PARAMS, false, false, fill_params, &pf)) {
		uvm_destroy(&p->mm);
		mm_process_destroy(&p->mm);
		ExFreePoolWithTag(p, PROCESS_TAG);
		return NULL;
	}
	p->user_stack = stack_top - 8; /* as if called: RSP + 8 is 16-byte aligned */
	KIRQL irql;
	KeAcquireSpinLock(&processes_lock, &irql);
	p->next = processes;
	processes = p;
	KeReleaseSpinLock(&processes_lock, irql);
	return p;
}

PEPROCESS PsCreateProcess(const char *program, uint32_t flags, const uint64_t *args, uint32_t nargs)
{
	/* Each structure it touches has its own lock: the process list here, the new address
	 * space's, mm's and the pool's inside their own functions. */
	return create_process(program, flags, args, nargs);
}

NTSTATUS PsRunProcess(PEPROCESS p)
{
	struct seh_jmpbuf resume;
	KAPC_STATE apc;
	KIRQL irql = KeGetCurrentIrql();
	struct seh_frame *seh = seh_top();
	struct kcpu *c = this_cpu();
	if (c->running)
		PANIC("PsRunProcess: %s is already running on CPU %u", c->running->name, c->number);
	if (__atomic_exchange_n(&p->started, true, __ATOMIC_ACQ_REL))
		PANIC("PsRunProcess: %s (pid %u) has run already", p->name, p->pid);
	KeStackAttachProcess(p, &apc);
	/* System calls and faults of the process start below this frame, on this CPU's stack:
	 * TSS.RSP0 and the SYSCALL stack are this CPU's own (gdt.c, struct kcpu). */
	uint64_t rsp0 = ALIGN_DOWN((uint64_t)__builtin_frame_address(0) - RSP0_GAP - 256, 16);
	gdt_set_rsp0(rsp0);
	syscall_set_kernel_stack(rsp0);
	c->running = p;
	c->running_resume = &resume;
	__atomic_store_n(&p->cpu, (int32_t)c->number, __ATOMIC_RELEASE);
	/* Ring 3 from here; ps_exit_current comes back to this point with the status. */
	if (seh_setjmp(&resume) == 0)
		user_iret(p->entry, p->user_stack, RFLAGS_USER, p->compat32 ? SEL_UCODE32 | 3 : SEL_UCODE64 | 3);
	/* The locals above are not used again: this may be a longjmp back.  c is re-read. */
	c = this_cpu();
	NTSTATUS st = c->running_status;
	c->running = NULL;
	c->running_resume = NULL;
	/* The thread is the kernel's again (ExGetPreviousMode): SYS_EXIT and fatal faults
	 * leave the system-call path without putting it back. */
	io_set_previous_mode(KernelMode);
	KeUnstackDetachProcess(&apc);
	/* Whatever the system-call path left behind goes with the process's thread. */
	seh_set_top(seh);
	if (KeGetCurrentIrql() != irql)
		write_cr8(irql);
	p->exit_status = st;
	p->last_cpu = c->number;
	__atomic_store_n(&p->cpu, PS_NO_CPU, __ATOMIC_RELEASE);
	__atomic_store_n(&p->ended, true, __ATOMIC_RELEASE);
	return st;
}

static void run_work(void *arg) { PsRunProcess(arg); }

bool ps_start_on_cpu(PEPROCESS p, unsigned cpu)
{
	if (cpu >= smp_cpus_online() || cpu == smp_this_cpu() || p->started)
		return false;
	return smp_work_start(cpu, run_work, p);
}

bool ps_wait(PEPROCESS p, uint32_t ms)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * ms;
	while (!__atomic_load_n(&p->ended, __ATOMIC_ACQUIRE)) {
		if (ms && rdtsc() > end)
			return false;
		/* The process's system calls may send this CPU a shootdown (pool, kernel-half
		 * changes): answer it while waiting, whatever RFLAGS.IF is. */
		smp_serve_mailbox();
		cpu_relax();
	}
	return true;
}

NTSTATUS ps_run_on_cpu(PEPROCESS p, unsigned cpu)
{
	if (cpu == smp_this_cpu())
		return PsRunProcess(p);
	if (!ps_start_on_cpu(p, cpu))
		return STATUS_INVALID_PARAMETER;
	ps_wait(p, 0);
	return p->exit_status;
}

void ps_exit_current(NTSTATUS status)
{
	struct kcpu *c = this_cpu();
	if (!c->running)
		PANIC("ps_exit_current: no process is running on CPU %u", c->number);
	c->running_status = status;
	seh_longjmp(c->running_resume);
}

void ps_user_fault(const struct trap_frame *f, NTSTATUS code)
{
	PEPROCESS p = this_cpu()->running;
	if (!p)
		PANIC("ps_user_fault: a ring-3 fault with no process running on CPU %u", smp_this_cpu());
	p->fault.happened = true;
	p->fault.vector = f->vector;
	p->fault.error_code = f->error_code;
	p->fault.rip = f->rip;
	p->fault.address = f->vector == VEC_PAGE_FAULT ? f->cr2 : f->rip;
	p->fault.access = (f->error_code & PF_ID)  ? EXCEPTION_EXECUTE_FAULT
			: (f->error_code & PF_W) ? EXCEPTION_WRITE_FAULT
						 : EXCEPTION_READ_FAULT;
	p->fault.cpu = smp_this_cpu();
	p->fault.rflags = f->rflags;
	p->fault.handler_rflags = read_rflags();
	KIRQL irql = ps_console_lock(); /* one line at a time on the console */
	kprintf("[%u %s] ended by %s at rip 0x%lx (address 0x%lx, error code 0x%lx)\n", p->pid, p->name,
		trap_vector_name(f->vector), f->rip, p->fault.address, f->error_code);
	ps_console_unlock(irql);
	ps_exit_current(code);
}

void PsDestroyProcess(PEPROCESS p)
{
	KAPC_STATE apc;
	if (__atomic_load_n(&p->cpu, __ATOMIC_ACQUIRE) != PS_NO_CPU)
		PANIC("PsDestroyProcess: %s (pid %u) is running on CPU %d", p->name, p->pid, p->cpu);
	if (__atomic_load_n(&p->attached, __ATOMIC_ACQUIRE))
		PANIC("PsDestroyProcess: %s (pid %u) has %d attaches not detached", p->name, p->pid, p->attached);
	unlink_process(p);
	p->mm.terminating = true;
	KeStackAttachProcess(p, &apc);
	/* Drivers' cleanup first (IRP_MJ_CLEANUP), then what they mapped, then the space. */
	for (int i = 0; i < ncleanups; i++)
		cleanups[i](p);
	mdl_user_process_exit(&p->mm);
	if (p->mm.locked_pages) {
		mdl_user_check_locks_left(&p->mm); /* 0xCB when locked-page tracking recorded them */
		KeBugCheckEx(PROCESS_HAS_LOCKED_PAGES, 0, (ULONG_PTR)p, p->mm.locked_pages, 0);
	}
	uvm_destroy(&p->mm);
	KeUnstackDetachProcess(&apc);
	mm_process_destroy(&p->mm);
	ExFreePoolWithTag(p, PROCESS_TAG);
}
