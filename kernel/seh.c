#include "kernel/seh.h"
#include "kernel/bugcheck.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/percpu.h"

/* The chain of registered __try frames, innermost first, is per CPU (struct kcpu): a fault
 * on one CPU unwinds that CPU's frames only.  There are no threads yet, so per CPU is per
 * thread. */
#define chain (this_cpu()->seh_chain)

struct seh_frame *seh_top(void) { return chain; }
void seh_set_top(struct seh_frame *f) { chain = f; }

void seh_push(struct seh_frame *f)
{
	struct kcpu *c = this_cpu();
	f->prev = c->seh_chain;
	f->registered = 1;
	f->from_cpu = 0;
	c->seh_chain = f;
}

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

int seh_filter(struct seh_frame *f, int filter)
{
	if (filter == EXCEPTION_EXECUTE_HANDLER)
		return 1;
	if (filter == EXCEPTION_CONTINUE_SEARCH)
		seh_dispatch(&f->record, f->from_cpu ? &f->trap : NULL);
	/* EXCEPTION_CONTINUE_EXECUTION: the faulting context is gone; NT would resume it.  It is
	 * the new exception STATUS_NONCONTINUABLE_EXCEPTION, which has no parameters: bug check
	 * 0x1E (code, address, 0, 0) as Microsoft's page gives it; the original code is printed. */
	kprintf("*** EXCEPTION_CONTINUE_EXECUTION for exception 0x%08X at %p: it cannot continue\n",
		(ULONG)f->record.ExceptionCode, f->record.ExceptionAddress);
	KeBugCheckEx(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)STATUS_NONCONTINUABLE_EXCEPTION,
		     (ULONG_PTR)f->record.ExceptionAddress, 0, 0);
}

void seh_dispatch(const EXCEPTION_RECORD *rec, const struct trap_frame *trap)
{
	struct seh_frame *f = chain;
	if (!f) {
		if (trap)
			trap_print_report(trap);
		KeBugCheckEx(KMODE_EXCEPTION_NOT_HANDLED, (ULONG)rec->ExceptionCode,
			     (ULONG_PTR)rec->ExceptionAddress, rec->ExceptionInformation[0],
			     rec->ExceptionInformation[1]);
	}
	/* Copy first: rec may live in an inner frame (continue-search) or in the trap's stack. */
	EXCEPTION_RECORD copy = *rec;
	if (trap) {
		f->trap = *trap;
		f->from_cpu = 1;
	} else {
		f->from_cpu = 0;
	}
	f->record = copy;
	chain = f->prev;
	f->registered = 0;
	seh_longjmp(&f->jb);
}

void ExRaiseStatus(NTSTATUS status)
{
	EXCEPTION_RECORD rec = { 0 };
	rec.ExceptionCode = status;
	rec.ExceptionAddress = __builtin_return_address(0);
	seh_dispatch(&rec, NULL);
}

void seh_raise_access_violation(uint64_t address, ULONG access)
{
	EXCEPTION_RECORD rec = { 0 };
	rec.ExceptionCode = STATUS_ACCESS_VIOLATION;
	rec.ExceptionAddress = __builtin_return_address(0);
	rec.NumberParameters = 2;
	rec.ExceptionInformation[0] = access;
	rec.ExceptionInformation[1] = address;
	seh_dispatch(&rec, NULL);
}
