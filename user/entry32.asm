; The 32-bit program's runtime (user/compat32.c), assembled as ELF32 and run in IA-32e
; compatibility mode: entry, the compatibility-mode SYSCALL stub, and the excursions into
; 64-bit mode the adversarial tests make (include/mdlab/compat32.h).
bits 32
section .text
global _start
global syscall32
global syscall32_ioctl
global c32_sysenter
global c32_int80
global c32_int2e
global c32_syscall64
global c32_high_bits
extern main

%define SEL_UCODE32_RPL3 0x1B
%define SEL_UCODE64_RPL3 0x2B
%define SYS_EXIT 0
%define SYS_REPORT 8
%define SYS_DEVICE_IO_CONTROL 6
%define C32_KEY_64 0x164

_start:
	xor ebp, ebp
	and esp, -16
	call main
	mov edi, eax
	xor eax, eax            ; SYS_EXIT
	syscall
.hang:
	jmp .hang

; uint32_t syscall32(n, a, b, c, d): EAX = n, EDI, ESI, EDX, EBX = a..d.  EBX, ESI, EDI, EBP
; are callee-saved in the i386 System V ABI; SYSCALL takes ECX (and R11).
syscall32:
	push ebx
	push esi
	push edi
	mov eax, [esp + 16]
	mov edi, [esp + 20]
	mov esi, [esp + 24]
	mov edx, [esp + 28]
	mov ebx, [esp + 32]
	syscall
	pop edi
	pop esi
	pop ebx
	ret

; uint32_t syscall32_ioctl(handle, code, in, out, rest): SYS_DEVICE_IO_CONTROL with EBP the
; address of { in_len, out_len, bytes } (include/mdlab/compat32.h).
syscall32_ioctl:
	push ebx
	push esi
	push edi
	push ebp
	mov eax, SYS_DEVICE_IO_CONTROL
	mov edi, [esp + 20]
	mov esi, [esp + 24]
	mov edx, [esp + 28]
	mov ebx, [esp + 32]
	mov ebp, [esp + 36]
	syscall
	pop ebp
	pop edi
	pop esi
	pop ebx
	ret

c32_sysenter:
	sysenter
	ret

c32_int80:
	int 0x80
	ret

c32_int2e:
	int 0x2e
	ret

; Far jump to the 64-bit user code segment and SYSCALL there as a 64-bit program would.
c32_syscall64:
	jmp SEL_UCODE64_RPL3:.long
.long:
bits 64
	mov eax, SYS_REPORT
	mov edi, C32_KEY_64
	mov rsi, 0xFFFF800000001000
	syscall
	ud2
bits 32

; void c32_high_bits(uint32_t key, uint32_t value): high garbage in RDI/RSI from 64-bit mode,
; then a compatibility-mode SYSCALL that leaves EDI/ESI alone.
c32_high_bits:
	push ebx
	push esi
	push edi
	mov edi, [esp + 16]
	mov esi, [esp + 20]
	jmp SEL_UCODE64_RPL3:.long
.long:
bits 64
	mov esp, esp            ; RSP's upper half is undefined after the switch (SDM Vol. 1, 3.4.1.1)
	mov rax, 0xFFFF800000000000
	or rdi, rax
	mov rax, 0x0000DEAD00000000
	or rsi, rax
	; Back to compatibility mode through an m16:32 far pointer (a far JMP, not RETF: QEMU's
	; TCG pops RETF's stack with supervisor accesses, which SMAP refuses on a user stack).
	jmp dword far [rel .back]
.back:
	dd .compat
	dw SEL_UCODE32_RPL3
bits 32
.compat:
	mov eax, SYS_REPORT
	syscall
	pop edi
	pop esi
	pop ebx
	ret

section .note.GNU-stack noalloc noexec nowrite progbits
