; SYSCALL entry.  The CPU has put the user RIP in RCX and RFLAGS in R11, cleared the RFLAGS
; bits of IA32_FMASK (IF, TF, DF, AC, NT) and loaded the kernel CS/SS; RSP is still the
; user's.  One CPU: the kernel stack top is a global (syscall_kernel_rsp, set when a process
; is entered).  The frame built here is struct syscall_frame (kernel/syscall.h).
bits 64
section .text
global syscall_entry
global syscall_compat_entry
global syscall_kernel_rsp
extern syscall_dispatch
extern syscall_compat_dispatch

syscall_entry:
	swapgs                              ; the kernel's per-CPU GS base (kernel/smp/percpu.h)
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
	swapgs                              ; the user's GS base back
	o64 sysret

; SYSCALL from compatibility mode (32-bit code, CS 0x1B): the CPU enters here through
; IA32_CSTAR (AMD APM Vol. 3, SYSCALL; Intel CPUs raise #UD instead).  The CPU is in 64-bit
; mode with the kernel CS/SS, RCX = the 32-bit return EIP, R11 = RFLAGS, and RSP still the
; user's: like syscall_entry, never touch it, switch to the kernel stack first.  The frame is
; the same struct syscall_frame, so a real 32-bit system-call path (issue 19) can dispatch
; from it and return with SYSRET without REX.W (to CS = STAR[63:48], compatibility mode).
; Today there are no 32-bit programs: syscall_compat_dispatch ends the process and never
; returns (mm/RULES.md, "CPU entry points").
syscall_compat_entry:
	swapgs
	mov [rel syscall_user_rsp], rsp
	mov rsp, [rel syscall_kernel_rsp]
	push qword [rel syscall_user_rsp]   ; user RSP
	push r11                            ; user RFLAGS
	push rcx                            ; user RIP (EIP)
	push r9
	push r8
	push r10
	push rdx
	push rsi
	push rdi
	push rax                            ; the number
	mov rdi, rsp
	call syscall_compat_dispatch        ; does not return
	ud2

section .bss
align 8
syscall_kernel_rsp: resq 1
syscall_user_rsp: resq 1

section .note.GNU-stack noalloc noexec nowrite progbits
