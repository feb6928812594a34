; User program entry: main(params) then exit with its result; and the SYSCALL stub.
bits 64
section .text
global _start
global syscall6
extern main

_start:
	xor ebp, ebp
	and rsp, -16
	call main
	mov rdi, rax
	xor eax, eax            ; SYS_EXIT
	syscall
.hang:
	jmp .hang

; long syscall6(n, a, b, c, d, e, f): RAX = n, then RDI, RSI, RDX, R10, R8, R9.
syscall6:
	mov rax, rdi
	mov rdi, rsi
	mov rsi, rdx
	mov rdx, rcx
	mov r10, r8
	mov r8, r9
	mov r9, [rsp + 8]
	syscall
	ret

section .note.GNU-stack noalloc noexec nowrite progbits
