#include "kernel/seh.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smap_sites.h"
#include "kernel/smp/percpu.h"
#include "mm/layout.h"

/* The chain of registered __try frames, innermost first, is per CPU (struct kcpu): a fault
 * on one CPU unwinds that CPU's frames only.  There are no threads yet, so per CPU is per
 * thread. */
#define chain (this_cpu()->seh_chain)

struct seh_frame *seh_top(void) { return chain; }
void seh_set_top(struct seh_frame *f) { chain = f; }

static void frame_register(struct seh_frame *f, int kind, int flags)
{
	struct kcpu *c = this_cpu();
	f->prev = c->seh_chain;
	f->registered = 1;
	f->kind = kind;
	f->flags = flags;
	f->filtering = 0;
	f->abnormal = 0;
	f->from_cpu = 0;
	c->seh_chain = f;
}

void seh_push(struct seh_frame *f) { frame_register(f, SEH_EXCEPT, 0); }

/* Normal exit from a __try block. */
void seh_pop(struct seh_frame *f)
{
	if (!f->registered)
		return;
	if (chain != f)
		PANIC("seh_pop: frame %p is not the innermost (%p)", (void *)f, (void *)chain);
	chain = f->prev;
	f->registered = 0;
}

/* Scope exit of the __try statement: unregister a frame left by return/goto/break. */
void seh_cleanup(struct seh_frame *f)
{
	if (f->registered)
		seh_pop(f);
}

/* ---- the rewriter's frames ------------------------------------------------------------ */

void seh_enter(struct seh_frame *f, int kind) { frame_register(f, kind, SEH_F_USER_WINDOW); }

/* The __try block is left by its end, __leave, break, continue, return or goto: unregister,
 * and close a SMAP window opened inside it (AC back to its value at the __try). */
void seh_leave(struct seh_frame *f)
{
	seh_pop(f);
	if ((f->flags & SEH_F_WINDOW_OPEN) && !(f->jb.rflags & RFLAGS_AC))
		SMAP_CLAC();
	f->flags &= ~SEH_F_WINDOW_OPEN;
}

/* MSVC's AbnormalTermination(): any way out but the end of the block or __leave. */
void seh_leave_finally(struct seh_frame *f, int abnormal)
{
	seh_leave(f);
	f->abnormal = abnormal != 0;
}

/* mm/RULES.md decision 8: a kernel-mode data access to a present user page with AC clear,
 * under CR4.SMAP, faults with P=1, U/S=0, I/D=0 (SDM Vol. 3, 4.6.1 and 4.7).  Inside a driver
 * frame that is the access Windows lets through; open the window for the rest of the frame
 * and retry.  Anything else about the access (a write to a read-only page) faults again with
 * AC set and is dispatched as an exception. */
bool seh_open_user_window(struct trap_frame *f)
{
	struct seh_frame *fr = chain;
	if (!fr || !(fr->flags & SEH_F_USER_WINDOW) || fr->filtering)
		return false;
	if (f->vector != VEC_PAGE_FAULT || f->cr2 >= USER_VA_END || (f->cs & 3))
		return false;
	if ((f->error_code & (PF_P | PF_U | PF_ID | PF_RSVD)) != PF_P || (f->rflags & RFLAGS_AC))
		return false;
	if (!(read_cr4() & CR4_SMAP))
		return false;
	fr->flags |= SEH_F_WINDOW_OPEN;
	f->rflags |= RFLAGS_AC;
	return true;
}

/* ---- dispatch: phase 1, the filters ---------------------------------------------------- */

/* The dispatcher's state while a filter runs, per CPU (struct kcpu.seh_filter): the stack
 * between the dispatcher and the frame whose filter runs is saved in `save` while the filter
 * runs over it.  No kernel stack is larger (KSTACK_PAGES pages), so the copy always fits.
 * The boot CPU's buffer is in .bss; each AP's is given by smp.c before it starts
 * (seh_prepare_cpu), so two CPUs dispatching at once never share one. */
#define FILTER_SAVE_BYTES (KSTACK_PAGES * 4096ul)
struct filter_state {
	struct seh_jmpbuf jb;     /* the dispatcher, resumed when the filter is done */
	uint8_t *lo;
	uint64_t len;
	int result;
	int active;
	uint8_t *save;            /* FILTER_SAVE_BYTES */
};
static uint8_t boot_filter_save[FILTER_SAVE_BYTES];
static struct filter_state filter_of[SMP_MAX_CPUS];

void seh_prepare_cpu(unsigned n, uint8_t *save)
{
	filter_of[n].save = save;
	kcpus[n].seh_filter = &filter_of[n];
}

static struct filter_state *flt_here(void)
{
	struct kcpu *c = this_cpu();
	if (!c->seh_filter) {
		if (c->number != 0)
			PANIC("seh: CPU %u has no filter state (seh_prepare_cpu)", c->number);
		seh_prepare_cpu(0, boot_filter_save);
	}
	return c->seh_filter;
}

static void frame_take_exception(struct seh_frame *f, const EXCEPTION_RECORD *rec, const struct trap_frame *trap)
{
	f->record = *rec;
	f->record.ExceptionRecord = NULL;
	memset(&f->context, 0, sizeof f->context);
	if (trap) {
		f->trap = *trap;
		f->from_cpu = 1;
		CONTEXT *c = &f->context;
		c->Rax = trap->rax, c->Rcx = trap->rcx, c->Rdx = trap->rdx, c->Rbx = trap->rbx;
		c->Rsp = trap->rsp, c->Rbp = trap->rbp, c->Rsi = trap->rsi, c->Rdi = trap->rdi;
		c->R8 = trap->r8, c->R9 = trap->r9, c->R10 = trap->r10, c->R11 = trap->r11;
		c->R12 = trap->r12, c->R13 = trap->r13, c->R14 = trap->r14, c->R15 = trap->r15;
		c->Rip = trap->rip;
		c->EFlags = (ULONG)trap->rflags;
		c->SegCs = (USHORT)trap->cs, c->SegSs = (USHORT)trap->ss;
	} else {
		f->from_cpu = 0;
		f->context.Rip = (ULONG64)rec->ExceptionAddress;
	}
	f->pointers.ExceptionRecord = &f->record;
	f->pointers.ContextRecord = &f->context;
}

/* Evaluate f's filter in f's function, the stack below it kept: seh_setjmp returns
 * SEH_RESUME_FILTER there, the filter's value comes back through seh_filter_done. */
__attribute__((noinline)) static int run_filter(struct seh_frame *f)
{
	struct filter_state *const flt = flt_here();
	if (seh_setjmp(&flt->jb) == 0) {
		uint8_t *lo = (uint8_t *)flt->jb.rsp, *hi = (uint8_t *)f->jb.rsp;
		if (hi < lo || (uint64_t)(hi - lo) > FILTER_SAVE_BYTES)
			PANIC("seh: frame %p is not on the dispatcher's stack (rsp %p)", (void *)f, (void *)lo);
		flt->lo = lo;
		flt->len = (uint64_t)(hi - lo);
		memcpy(flt->save, lo, flt->len);
		flt->active = 1;
		f->filtering = 1;
		seh_longjmp_value(&f->jb, SEH_RESUME_FILTER);
	}
	return flt->result;
}

__attribute__((noreturn)) void seh_filter_done(struct seh_frame *f, int filter)
{
	struct filter_state *flt = flt_here();
	if (!flt->active || !f->filtering)
		PANIC("seh_filter_done: frame %p is not evaluating its filter", (void *)f);
	f->filtering = 0;
	flt->active = 0;
	flt->result = filter;
	seh_restore_stack_and_jump(flt->lo, flt->save, flt->len, &flt->jb);
}

/* The machine's __except macro: evaluated when the frame is resumed either way. */
int seh_filter(struct seh_frame *f, int filter)
{
	if (f->filtering)
		seh_filter_done(f, filter);
	return 1; /* resumed to run the handler: phase 1 chose it */
}

/* ---- dispatch: phase 2, the unwind ------------------------------------------------------ */

/* Unregister every frame inside `target`, resuming each __finally on the way, then resume
 * target's handler.  The record is target's, copied in phase 1. */
__attribute__((noreturn)) static void unwind_to(struct seh_frame *target)
{
	while (chain && chain != target) {
		struct seh_frame *f = chain;
		chain = f->prev;
		f->registered = 0;
		if (f->kind == SEH_FINALLY) {
			f->abnormal = 1;
			f->unwind_target = target;
			seh_longjmp_value(&f->jb, SEH_RESUME_FINALLY);
		}
	}
	if (chain != target)
		PANIC("seh: unwind target %p is not on the chain", (void *)target);
	chain = target->prev;
	target->registered = 0;
	seh_longjmp_value(&target->jb, SEH_RESUME_HANDLER);
}

void seh_unwind_resume(struct seh_frame *f)
{
	struct seh_frame *target = f->unwind_target;
	f->unwind_target = NULL;
	if (!target)
		PANIC("seh_unwind_resume: frame %p was not resumed by an unwind", (void *)f);
	unwind_to(target);
}

void seh_dispatch(const EXCEPTION_RECORD *rec, const struct trap_frame *trap)
{
	/* Copy first: rec may live in a frame's record or in the trap's stack. */
	EXCEPTION_RECORD copy = *rec;
	if (flt_here()->active)
		KeBugCheckEx(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)copy.ExceptionCode,
			     (ULONG_PTR)copy.ExceptionAddress, copy.ExceptionInformation[0],
			     copy.ExceptionInformation[1]);
	for (struct seh_frame *f = chain; f; f = f->prev) {
		if (f->kind != SEH_EXCEPT)
			continue;
		frame_take_exception(f, &copy, trap);
		int r = run_filter(f);
		if (r == EXCEPTION_EXECUTE_HANDLER)
			unwind_to(f);
		if (r != EXCEPTION_CONTINUE_SEARCH) {
			/* EXCEPTION_CONTINUE_EXECUTION (or a value NT does not define): not supported.
			 * It is the new exception STATUS_NONCONTINUABLE_EXCEPTION, which has no
			 * parameters: bug check 0x1E (code, address, 0, 0) as Microsoft's page gives
			 * it; the original code is printed. */
			kprintf("*** EXCEPTION_CONTINUE_EXECUTION for exception 0x%08X at %p: it cannot continue\n",
				(ULONG)copy.ExceptionCode, copy.ExceptionAddress);
			KeBugCheckEx(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_NONCONTINUABLE_EXCEPTION,
				     (ULONG_PTR)copy.ExceptionAddress, 0, 0);
		}
	}
	if (trap)
		trap_print_report(trap);
	KeBugCheckEx(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)copy.ExceptionCode, (ULONG_PTR)copy.ExceptionAddress,
		     copy.ExceptionInformation[0], copy.ExceptionInformation[1]);
}

/* A software raise: the record of `code` with its n parameters, raised at `at`, the return
 * address of the public routine that raises it (so in that routine's caller). */
__attribute__((noreturn)) static void raise_at(void *at, NTSTATUS code, ULONG n, const ULONG_PTR *info)
{
	EXCEPTION_RECORD rec = { 0 };
	rec.ExceptionCode = code;
	rec.ExceptionAddress = at;
	rec.NumberParameters = n;
	for (ULONG k = 0; k < n; k++)
		rec.ExceptionInformation[k] = info[k];
	seh_dispatch(&rec, NULL);
}

void ExRaiseStatus(NTSTATUS status) { raise_at(__builtin_return_address(0), status, 0, NULL); }

void seh_raise_access_violation(uint64_t address, ULONG access)
{
	const ULONG_PTR info[] = { access, address };
	raise_at(__builtin_return_address(0), STATUS_ACCESS_VIOLATION, 2, info);
}

void seh_raise_in_page_error(uint64_t address, ULONG access, NTSTATUS io)
{
	const ULONG_PTR info[] = { access, address, (ULONG_PTR)(ULONG)io };
	raise_at(__builtin_return_address(0), STATUS_IN_PAGE_ERROR, 3, info);
}
