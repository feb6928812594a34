; kstack_switch_and_call(fn, arg, top): move to a new stack and call fn(arg); never returns.
bits 64
section .text
global kstack_switch_and_call
kstack_switch_and_call:
	mov rsp, rdx
	xor ebp, ebp
	push rbp                ; a zero return address ends backtraces here
	push rbp
	mov rbp, rsp
	mov rax, rdi
	mov rdi, rsi
	call rax
.hang:
	cli
	hlt
	jmp .hang

section .note.GNU-stack noalloc noexec nowrite progbits
