; SYSCALL entry.  The CPU has put the user RIP in RCX and RFLAGS in R11, cleared the RFLAGS
; bits of IA32_FMASK (IF, TF, DF, AC, NT) and loaded the kernel CS/SS; RSP is still the
; user's.  After SWAPGS the kernel stack top and the slot for the user RSP are this CPU's
; (struct kcpu, kernel/smp/percpu.h: set by PsRunProcess on the CPU that runs the process),
; so a SYSCALL on one CPU never lands on another's stack.  The frame built here is struct
; syscall_frame (kernel/syscall.h).
;
; Interrupts: FMASK enters with IF clear, and it stays clear while RSP is the user's and the
; saved user RSP sits in the kcpu slot; once the frame is on the kernel stack STI turns them on
; for the dispatch, as KiSystemCall64 does after building its trap frame, so a service runs at
; PASSIVE_LEVEL with interrupts on (a device's completion, a DPC, a shootdown IPI land on the
; way).  An interrupt there comes from ring 0 with the kernel's GS base loaded and pushes onto
; this stack below the frame.  CLI comes back before the restore: from the POP RSP (the user's
; stack) and the SWAPGS (the user's GS base) to SYSRET no interrupt may arrive.  SYSRET loads
; RFLAGS from R11, the user's, whose IF is set (mm/RULES.md, "Interrupts and IRQL").
bits 64

; struct kcpu's offsets (kernel/smp/percpu.h checks them against the C layout)
%define KCPU_SYSCALL_KERNEL_RSP 8
%define KCPU_SYSCALL_USER_RSP 16

section .text
global syscall_entry
global syscall_compat_entry
extern syscall_dispatch
extern syscall_compat_dispatch

; Nothing of the kernel's in the scratch registers on the way back (RAX is the result,
; RCX and R11 the return RIP and RFLAGS).
%macro clear_scratch 0
	xor edi, edi
	xor esi, esi
	xor edx, edx
	xor r8d, r8d
	xor r9d, r9d
	xor r10d, r10d
%endmacro

syscall_entry:
	swapgs                              ; the kernel's per-CPU GS base (kernel/smp/percpu.h)
	mov [gs:KCPU_SYSCALL_USER_RSP], rsp
	mov rsp, [gs:KCPU_SYSCALL_KERNEL_RSP]
	push qword [gs:KCPU_SYSCALL_USER_RSP] ; user RSP
	push r11                            ; user RFLAGS
	push rcx                            ; user RIP
	push r9
	push r8
	push r10
	push rdx
	push rsi
	push rdi
	push rax                            ; the number
	sti                                 ; the frame is built: the dispatch runs with interrupts on
	mov rdi, rsp
	call syscall_dispatch               ; RAX = the result; may rewrite frame->rip
	cli                                 ; off from here to SYSRET (the user's RSP and GS base)
	add rsp, 7 * 8
	pop rcx
	pop r11
	pop rsp
	clear_scratch
	swapgs                              ; the user's GS base back
	o64 sysret

; SYSCALL from compatibility mode (32-bit code, CS 0x1B): the CPU enters here through
; IA32_CSTAR (AMD APM Vol. 3, SYSCALL; Intel CPUs raise #UD instead).  The CPU is in 64-bit
; mode with the kernel CS/SS, RCX = the 32-bit return EIP, R11 = RFLAGS, and RSP still the
; user's: like syscall_entry, never touch it, switch to the kernel stack first.
; The frame is struct syscall_frame with the 32-bit convention's registers in it
; (include/mdlab/compat32.h): EAX the number, EDI, ESI, EDX, EBX, EBP the arguments, each
; zero-extended here (a 32-bit write zero-extends), since the upper halves are undefined after
; compatibility mode and may hold what the program left there in a 64-bit excursion (SDM
; Vol. 1, 3.4.1.1).  syscall_compat_dispatch ends a process that does not run a 32-bit image
; (mm/RULES.md, "CPU entry points"); for a 32-bit one it returns the result, and SYSRET
; without REX.W goes back to compatibility mode: CS = STAR[63:48] (0x1B), SS = +8 (0x23),
; EIP = ECX (SDM Vol. 2B, SYSRET).
syscall_compat_entry:
	swapgs                              ; the kernel's per-CPU GS base, as syscall_entry
	mov [gs:KCPU_SYSCALL_USER_RSP], rsp
	mov rsp, [gs:KCPU_SYSCALL_KERNEL_RSP]
	push qword [gs:KCPU_SYSCALL_USER_RSP] ; user RSP
	push r11                            ; user RFLAGS
	mov ecx, ecx
	push rcx                            ; user EIP
	push 0                              ; r9: no sixth argument
	mov r8d, ebp
	push r8                             ; fifth: EBP
	mov r10d, ebx
	push r10                            ; fourth: EBX
	mov edx, edx
	push rdx
	mov esi, esi
	push rsi
	mov edi, edi
	push rdi
	mov eax, eax
	push rax                            ; the number
	sti                                 ; as syscall_entry: interrupts on for the dispatch
	mov rdi, rsp
	call syscall_compat_dispatch        ; RAX = the result (returns only for a 32-bit process)
	cli                                 ; and off again before the restore
	add rsp, 7 * 8
	pop rcx
	pop r11
	pop rsp
	clear_scratch
	swapgs                              ; the user's GS base back
	sysret                              ; to compatibility mode

section .note.GNU-stack noalloc noexec nowrite progbits
