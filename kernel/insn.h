/* Just enough x86-64 instruction decoding to tell a privileged instruction from the rest. */
#ifndef KERNEL_INSN_H
#define KERNEL_INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INSN_MAX_LENGTH 15 /* the architectural limit (SDM Vol. 2, 2.3.11) */

/* Whether the instruction whose first `len` bytes are `code` (len <= INSN_MAX_LENGTH) raises
 * #GP in ring 3 because it is privileged: CPL-0 instructions (HLT, MOV CR/DR, LGDT, WRMSR,
 * ...) and the ones IOPL guards, IOPL being 0 (CLI, STI, IN, OUT, INS, OUTS).  False for
 * anything else, or when the bytes end before the opcode does. */
bool insn_is_privileged(const uint8_t *code, size_t len);

#endif
