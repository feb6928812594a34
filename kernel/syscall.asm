; SYSCALL entry.  The CPU has put the user RIP in RCX and RFLAGS in R11, cleared the RFLAGS
; bits of IA32_FMASK (IF, TF, DF, AC, NT) and loaded the kernel CS/SS; RSP is still the
; user's.  One CPU: the kernel stack top is a global (syscall_kernel_rsp, set when a process
; is entered).  The frame built here is struct syscall_frame (kernel/syscall.h).
bits 64
section .text
global syscall_entry
global syscall_kernel_rsp
extern syscall_dispatch

syscall_entry:
	mov [rel syscall_user_rsp], rsp
	mov rsp, [rel syscall_kernel_rsp]
	push qword [rel syscall_user_rsp]   ; user RSP
	push r11                            ; user RFLAGS
	push rcx                            ; user RIP
	push r9
	push r8
	push r10
	push rdx
	push rsi
	push rdi
	push rax                            ; the number
	mov rdi, rsp
	call syscall_dispatch               ; RAX = the result; may rewrite frame->rip
	add rsp, 7 * 8
	pop rcx
	pop r11
	pop rsp
	; Nothing of the kernel's in the scratch registers.
	xor edi, edi
	xor esi, esi
	xor edx, edx
	xor r8d, r8d
	xor r9d, r9d
	xor r10d, r10d
	o64 sysret

section .bss
align 8
syscall_kernel_rsp: resq 1
syscall_user_rsp: resq 1

section .note.GNU-stack noalloc noexec nowrite progbits
