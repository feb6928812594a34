/*
 * Fault capture: make one memory access (or call) inside __try and keep what the CPU
 * reported, so that a rule can be proven by the real fault — vector, #PF error code, CR2,
 * RIP — instead of by the bookkeeping of the code under test.  The monitor's tour shows
 * such faults; the self-tests check them.
 *
 * Each access is one instruction at the first byte of its function (faultcap_load8 is
 * `movzbl (%rdi), %eax`, faultcap_store8 `movb %sil, (%rdi)`, faultcap_store64
 * `movq %rsi, (%rdi)`), so the RIP of a fault it raises is the function's own address.
 */
#ifndef KERNEL_FAULTCAP_H
#define KERNEL_FAULTCAP_H

#include <stdbool.h>
#include <stdint.h>
#include "include/mdlab/ntdef.h"
#include "kernel/seh.h"
#include "kernel/trap.h"

/* x86's RET: what the callers of faultcap_try_call put at the address they call. */
#define FAULTCAP_RET_OPCODE 0xC3

/* What one access left: the exception, and the CPU's trap frame when a fault raised it. */
struct faultcap {
	bool faulted;
	bool from_cpu;      /* a CPU fault: vector .. rip are the trap frame's */
	NTSTATUS status;
	uint64_t vector, error_code, cr2, rip;
};

/* Fill *c from an exception caught in __except:
 * faultcap_record(c, GetExceptionRecord(), GetExceptionTrapFrame()).  `tf` is NULL for a
 * software raise (c->from_cpu stays false). */
void faultcap_record(struct faultcap *c, const EXCEPTION_RECORD *r, const struct trap_frame *tf);

/* The single-instruction accesses, for a caller's own __try or to compare a RIP with. */
uint8_t faultcap_load8(uint64_t va);
void faultcap_store8(uint64_t va, uint8_t v);
void faultcap_store64(uint64_t va, uint64_t v);

/* Make the access inside __try.  True when it completed; false when it raised, with what
 * it raised in *c.  *c is zeroed first either way. */
bool faultcap_try_load8(uint64_t va, uint8_t *out, struct faultcap *c);
bool faultcap_try_store8(uint64_t va, uint8_t v, struct faultcap *c);
bool faultcap_try_store64(uint64_t va, uint64_t v, struct faultcap *c);
/* Call the code at va (the caller put a FAULTCAP_RET_OPCODE there); a fetch fault's RIP is
 * va itself. */
bool faultcap_try_call(uint64_t va, struct faultcap *c);

#endif
