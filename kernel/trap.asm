; Entry stubs for the exceptions (vectors 0..31) and for every interrupt vector 32..255
; (kernel/intr/intr.h has the table).  Each stub makes the stack uniform (a zero error code where the CPU
; pushes none, then the vector), the common path saves every general register into a struct
; trap_frame (kernel/trap.h) and calls trap_dispatch(frame).  Coming from ring 3 (the saved
; CS has RPL 3) it executes SWAPGS first and again before the IRETQ back, so the kernel
; always runs with its per-CPU GS base (kernel/smp/percpu.h).
bits 64
section .text
extern trap_dispatch
global trap_stubs
global trap_interrupt_stubs

%macro STUB 1
align 16
stub_%1:
%if %1 = 8 || (%1 >= 10 && %1 <= 14) || %1 = 17 || %1 = 21 || %1 = 29 || %1 = 30
	; the CPU pushed an error code
%else
	push 0
%endif
	push %1
	jmp trap_common
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

trap_common:
	test byte [rsp + 24], 3 ; the saved CS, above the vector, error code and RIP
	jz .kernel_gs
	swapgs
.kernel_gs:
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
	mov rdi, rsp
	call trap_dispatch
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
	test byte [rsp + 8], 3  ; the saved CS
	jz .iret
	swapgs
.iret:
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
