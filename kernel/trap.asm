; Entry stubs for the exceptions (vectors 0..31) and for every interrupt vector 32..255
; (kernel/intr/intr.h has the table).  Each stub makes the stack uniform (a zero error code where the CPU
; pushes none, then the vector), the common path saves every general register into a struct
; trap_frame (kernel/trap.h) and calls trap_dispatch(frame).  Coming from ring 3 (the saved
; CS has RPL 3) it executes SWAPGS first and again before the IRETQ back, so the kernel
; always runs with its per-CPU GS base (kernel/smp/percpu.h).  The NMI, #DF and #MC take
; paranoid_common instead, which decides the GS base without trusting CS.
bits 64
%include "kernel/smap_sites.inc"
section .text
extern trap_dispatch
global trap_stubs
global trap_interrupt_stubs

; The struct trap_frame (kernel/trap.h) both common paths build above the stub's vector and
; error code: every general register, then CR2, lowest; the direction flag cleared for C.
%macro SAVE_FRAME 0
	push rax
	push rbx
	push rcx
	push rdx
	push rsi
	push rdi
	push rbp
	push r8
	push r9
	push r10
	push r11
	push r12
	push r13
	push r14
	push r15
	mov rax, cr2
	push rax                ; frame->cr2
	cld
%endmacro

; Its undoing, down to the CPU's own frame (the vector and error code dropped too).
%macro RESTORE_FRAME 0
	add rsp, 8              ; cr2
	pop r15
	pop r14
	pop r13
	pop r12
	pop r11
	pop r10
	pop r9
	pop r8
	pop rbp
	pop rdi
	pop rsi
	pop rdx
	pop rcx
	pop rbx
	pop rax
	add rsp, 16             ; vector, error code
%endmacro

%macro STUB 1
align 16
stub_%1:
%if %1 = 8 || (%1 >= 10 && %1 <= 14) || %1 = 17 || %1 = 21 || %1 = 29 || %1 = 30
	; the CPU pushed an error code
%else
	push 0
%endif
	push %1
%if %1 = 2 || %1 = 8 || %1 = 18
	jmp paranoid_common     ; NMI, #DF, #MC: on their IST stacks, from anywhere
%else
	jmp trap_common
%endif
%endmacro

%assign v 0
%rep 32
STUB v
%assign v v+1
%endrep
%rep 224
STUB v
%assign v v+1
%endrep

; The gate clears IF; trap_dispatch may turn it on for an exception's work (kernel/trap.c,
; as NT's KiPageFault after reading CR2, which SAVE_FRAME has done), so CLI before the frame
; is undone: no interrupt between the SWAPGS back and the IRETQ, which restores the IF of the
; interrupted code from its frame.
;
; CLAC first: a gate clears neither RFLAGS.AC nor anything else SMAP reads (SDM Vol. 3,
; 6.12.1.3: TF, VM, RF, NT and, for an interrupt gate, IF), so an entry from ring 3 code that
; set AC, or from a kernel STAC window (a copy from user memory taking a fault, an interrupt
; nested in it), would run the handler with SMAP off.  IRETQ loads AC back from the saved
; RFLAGS, so the interrupted window resumes open (mm/RULES.md, "CPU entry points").
trap_common:
	SMAP_CLAC(trap_common, clac)
	test byte [rsp + 24], 3 ; the saved CS, above the vector, error code and RIP
	jz .kernel_gs
	swapgs
.kernel_gs:
	SAVE_FRAME
	mov rdi, rsp
	call trap_dispatch
	cli
	RESTORE_FRAME
	test byte [rsp + 8], 3  ; the saved CS
	jz .iret
	swapgs
.iret:
	iretq

; The NMI, #DF and #MC entries: they may interrupt the kernel inside a SWAPGS window (after a
; SYSCALL before its SWAPGS, or after a return's SWAPGS before its SYSRET/IRETQ), where the
; saved CS says ring 0 but IA32_GS_BASE is the user's, or ring 3 code whose GS base was set to
; anything, another CPU's struct kcpu included.  So no SWAPGS and no comparison: the word at
; the top of this CPU's IST stack (at the IST pointer itself, above the frame the CPU pushed:
; gdt.c) names this CPU's kcpu; IA32_GS_BASE is saved in R12, set to that kcpu for the
; handler, and written back before IRETQ, whatever it was.  IA32_KERNEL_GS_BASE is left alone.
%define MSR_GS_BASE 0xC0000101
%define KCPU_PARANOID_GS_BASE 24
%define IST_KCPU (16 * 8 + 7 * 8) ; above the saved registers, CR2, vector, error code, CPU frame

paranoid_common:
	SMAP_CLAC(paranoid_common, clac) ; as trap_common: SMAP on for the handler, AC back at IRETQ
	SAVE_FRAME
	mov ecx, MSR_GS_BASE
	rdmsr
	shl rdx, 32
	or rax, rdx
	mov r12, rax            ; the GS base found: callee-saved across trap_dispatch
	mov rbx, [rsp + IST_KCPU]
	mov [rbx + KCPU_PARANOID_GS_BASE], r12
	mov eax, ebx
	mov rdx, rbx
	shr rdx, 32
	wrmsr                   ; IA32_GS_BASE = this CPU's kcpu
	mov rdi, rsp
	call trap_dispatch
	mov ecx, MSR_GS_BASE
	mov eax, r12d
	mov rdx, r12
	shr rdx, 32
	wrmsr                   ; the GS base the entry found, back
	RESTORE_FRAME
	iretq

section .rodata
align 8
trap_stubs:
%assign v 0
%rep 32
	dq stub_ %+ v
%assign v v+1
%endrep
; vectors 32..255, in order
trap_interrupt_stubs:
%assign v 32
%rep 224
	dq stub_ %+ v
%assign v v+1
%endrep

section .note.GNU-stack noalloc noexec nowrite progbits
