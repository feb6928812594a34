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

/* The one __try all the accesses share: `kind` names the access, v the value stored. */
enum access { ACCESS_LOAD8, ACCESS_STORE8, ACCESS_STORE64, ACCESS_CALL };

static bool try_access(enum access kind, uint64_t va, uint64_t v, uint8_t *out, struct faultcap *c)
{
	memset(c, 0, sizeof *c);
	__try {
		if (kind == ACCESS_LOAD8)
			*out = faultcap_load8(va);
		else if (kind == ACCESS_STORE8)
			faultcap_store8(va, (uint8_t)v);
		else if (kind == ACCESS_STORE64)
			faultcap_store64(va, v);
		else
			((void (*)(void))va)();
	} __except (EXCEPTION_EXECUTE_HANDLER) {
		faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame());
	}
	return !c->faulted;
}

bool faultcap_try_load8(uint64_t va, uint8_t *out, struct faultcap *c)
{
	return try_access(ACCESS_LOAD8, va, 0, out, c);
}

bool faultcap_try_store8(uint64_t va, uint8_t v, struct faultcap *c)
{
	return try_access(ACCESS_STORE8, va, v, NULL, c);
}

bool faultcap_try_store64(uint64_t va, uint64_t v, struct faultcap *c)
{
	return try_access(ACCESS_STORE64, va, v, NULL, c);
}

bool faultcap_try_call(uint64_t va, struct faultcap *c) { return try_access(ACCESS_CALL, va, 0, NULL, c); }
