/* Fault capture (see faultcap.h). */
#include "kernel/faultcap.h"
#include "kernel/lib.h"

/* Each access is one instruction at the function's first byte, so the RIP of a fault it
 * raises is the symbol's address. */
__asm__(".pushsection .text.faultcap, \"ax\", @progbits\n"
	".globl faultcap_load8\n"
	".type faultcap_load8, @function\n"
	"faultcap_load8:\n"
	"	movzbl (%rdi), %eax\n"
	"	ret\n"
	".size faultcap_load8, . - faultcap_load8\n"
	".globl faultcap_store8\n"
	".type faultcap_store8, @function\n"
	"faultcap_store8:\n"
	"	movb %sil, (%rdi)\n"
	"	ret\n"
	".size faultcap_store8, . - faultcap_store8\n"
	".globl faultcap_store64\n"
	".type faultcap_store64, @function\n"
	"faultcap_store64:\n"
	"	movq %rsi, (%rdi)\n"
	"	ret\n"
	".size faultcap_store64, . - faultcap_store64\n"
	".popsection\n");

void faultcap_record(struct faultcap *c, const EXCEPTION_RECORD *r, const struct trap_frame *tf)
{
	c->faulted = true;
	c->status = r->ExceptionCode;
	if (tf) {
		c->from_cpu = true;
		c->vector = tf->vector;
		c->error_code = tf->error_code;
		c->cr2 = tf->cr2;
		c->rip = tf->rip;
	}
}

bool faultcap_try_load8(uint64_t va, uint8_t *out, struct faultcap *c)
{
	memset(c, 0, sizeof *c);
	__try {
		*out = faultcap_load8(va);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}

bool faultcap_try_store8(uint64_t va, uint8_t v, struct faultcap *c)
{
	memset(c, 0, sizeof *c);
	__try {
		faultcap_store8(va, v);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}

bool faultcap_try_store64(uint64_t va, uint64_t v, struct faultcap *c)
{
	memset(c, 0, sizeof *c);
	__try {
		faultcap_store64(va, v);
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}

bool faultcap_try_call(uint64_t va, struct faultcap *c)
{
	void (*fn)(void) = (void (*)(void))va;
	memset(c, 0, sizeof *c);
	__try {
		fn();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}
