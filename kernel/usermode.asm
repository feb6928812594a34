; Entering ring 3 and coming back.
;
; uint64_t user_enter(struct user_kctx *k, uint64_t rip, uint64_t rsp, uint64_t rflags)
;   saves the kernel's callee-saved registers and RSP in *k, then IRETQs to ring 3 with every
;   general register zeroed.  It "returns" when user_leave(k, value) runs (from a system call
;   or a fault of that process), with `value` in RAX.
; void user_leave(struct user_kctx *k, uint64_t value)
bits 64
section .text
global user_enter
global user_leave

%define SEL_UCODE64_RPL3 0x2B
%define SEL_UDATA_RPL3   0x23

user_enter:
	mov [rdi + 0x00], rbx
	mov [rdi + 0x08], rbp
	mov [rdi + 0x10], r12
	mov [rdi + 0x18], r13
	mov [rdi + 0x20], r14
	mov [rdi + 0x28], r15
	mov [rdi + 0x30], rsp
	push SEL_UDATA_RPL3         ; SS
	push rdx                    ; RSP
	push rcx                    ; RFLAGS
	push SEL_UCODE64_RPL3       ; CS
	push rsi                    ; RIP
	xor eax, eax
	xor ebx, ebx
	xor ecx, ecx
	xor edx, edx
	xor esi, esi
	xor edi, edi
	xor ebp, ebp
	xor r8d, r8d
	xor r9d, r9d
	xor r10d, r10d
	xor r11d, r11d
	xor r12d, r12d
	xor r13d, r13d
	xor r14d, r14d
	xor r15d, r15d
	iretq

user_leave:
	mov rbx, [rdi + 0x00]
	mov rbp, [rdi + 0x08]
	mov r12, [rdi + 0x10]
	mov r13, [rdi + 0x18]
	mov r14, [rdi + 0x20]
	mov r15, [rdi + 0x28]
	mov rsp, [rdi + 0x30]
	mov rax, rsi
	ret

section .note.GNU-stack noalloc noexec nowrite progbits
