/* Privileged-instruction recognition (see insn.h), from the opcode maps of the SDM Vol. 2,
 * appendix A.  NT's #GP handler asks the same question to choose between
 * STATUS_PRIVILEGED_INSTRUCTION and STATUS_ACCESS_VIOLATION for a user fault. */
#include "kernel/insn.h"

/* Legacy prefixes (groups 1-4) and REX: skipped before the opcode. */
static bool is_prefix(uint8_t b)
{
	switch (b) {
	case 0xF0: case 0xF2: case 0xF3:                     /* LOCK, REPNE, REP */
	case 0x26: case 0x2E: case 0x36: case 0x3E: case 0x64: case 0x65: /* segments */
	case 0x66: case 0x67:                                /* operand, address size */
		return true;
	default:
		return (b & 0xF0) == 0x40;                   /* REX */
	}
}

/* One-byte opcodes: HLT, and those IOPL 0 keeps from ring 3. */
static bool privileged_one_byte(uint8_t op)
{
	switch (op) {
	case 0xF4:                                           /* HLT */
	case 0xFA: case 0xFB:                                /* CLI, STI */
	case 0x6C: case 0x6D: case 0x6E: case 0x6F:          /* INS, OUTS */
	case 0xE4: case 0xE5: case 0xE6: case 0xE7:          /* IN, OUT imm8 */
	case 0xEC: case 0xED: case 0xEE: case 0xEF:          /* IN, OUT DX */
		return true;
	default:
		return false;
	}
}

/* Two-byte opcodes 0F op; modrm is the byte after op, when the instruction has one. */
static bool privileged_two_byte(uint8_t op, const uint8_t *modrm)
{
	unsigned reg = modrm ? (*modrm >> 3) & 7 : 0, mod = modrm ? *modrm >> 6 : 0;
	switch (op) {
	case 0x06:                                           /* CLTS */
	case 0x07:                                           /* SYSRET */
	case 0x08: case 0x09:                                /* INVD, WBINVD */
	case 0x20: case 0x21: case 0x22: case 0x23:          /* MOV to/from CR, DR */
	case 0x30: case 0x32:                                /* WRMSR, RDMSR */
	case 0x31: case 0x33:                                /* RDTSC, RDPMC (CR4.TSD, PCE) */
	case 0x35:                                           /* SYSEXIT */
		return true;
	case 0x00:                                           /* group 6: LLDT, LTR */
		return modrm && (reg == 2 || reg == 3);
	case 0x01:                                           /* group 7 */
		if (!modrm)
			return false;
		if (mod == 3)                                /* LMSW, SWAPGS, XSETBV, MONITOR, MWAIT */
			return reg == 6 || *modrm == 0xF8 || *modrm == 0xD1 || *modrm == 0xC8 || *modrm == 0xC9;
		return reg == 2 || reg == 3 || reg == 6 || reg == 7; /* LGDT, LIDT, LMSW, INVLPG */
	default:
		return false;
	}
}

bool insn_is_privileged(const uint8_t *code, size_t len)
{
	size_t i = 0;
	while (i < len && i < INSN_MAX_LENGTH && is_prefix(code[i]))
		i++;
	if (i >= len)
		return false;
	if (code[i] != 0x0F)
		return privileged_one_byte(code[i]);
	if (i + 1 >= len)
		return false;
	return privileged_two_byte(code[i + 1], i + 2 < len ? &code[i + 2] : NULL);
}
