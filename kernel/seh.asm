; seh_setjmp / seh_longjmp: the context switch under the kernel's try/except.
; struct seh_jmpbuf (kernel/seh.h): rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags.
bits 64
section .text
global seh_setjmp
global seh_longjmp
global seh_longjmp_value
global seh_restore_stack_and_jump

; int seh_setjmp(struct seh_jmpbuf *jb)  -- returns 0 now, and 1 when resumed by longjmp
seh_setjmp:
	mov [rdi + 0x00], rbx
	mov [rdi + 0x08], rbp
	mov [rdi + 0x10], r12
	mov [rdi + 0x18], r13
	mov [rdi + 0x20], r14
	mov [rdi + 0x28], r15
	lea rax, [rsp + 8]          ; the caller's RSP after our return
	mov [rdi + 0x30], rax
	mov rax, [rsp]              ; return address
	mov [rdi + 0x38], rax
	pushfq
	pop qword [rdi + 0x40]      ; IF and AC as they were: restored on resume
	xor eax, eax
	ret

; void seh_longjmp(const struct seh_jmpbuf *jb)  -- resumes seh_setjmp returning 1.
; Works from a trap handler on the same stack: RSP moves back up to the protected frame.
seh_longjmp:
	mov esi, 1
; void seh_longjmp_value(const struct seh_jmpbuf *jb, int value)  -- seh_setjmp returns value
seh_longjmp_value:
	mov rbx, [rdi + 0x00]
	mov rbp, [rdi + 0x08]
	mov r12, [rdi + 0x10]
	mov r13, [rdi + 0x18]
	mov r14, [rdi + 0x20]
	mov r15, [rdi + 0x28]
	mov rsp, [rdi + 0x30]
	push qword [rdi + 0x38]     ; return address
	push qword [rdi + 0x40]
	popfq
	mov eax, esi
	ret

; void seh_restore_stack_and_jump(void *dst, const void *src, uint64_t len, const struct seh_jmpbuf *jb)
; The end of a filter's evaluation (kernel/seh.c): dst is the stack the filter ran over,
; the caller's own frame included, so nothing here touches the stack; interrupts stay off
; until jb's RFLAGS are loaded.
seh_restore_stack_and_jump:
	cli
	mov r8, rcx
	mov rcx, rdx
	cld
	rep movsb
	mov rdi, r8
	mov esi, 1
	jmp seh_longjmp_value

section .note.GNU-stack noalloc noexec nowrite progbits
