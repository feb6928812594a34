; Entering ring 3.
;
; void user_iret(uint64_t rip, uint64_t rsp, uint64_t rflags, uint64_t cs)
;   IRETQs to ring 3 at rip with the given stack, flags and code segment (the 64-bit user CS,
;   or the 32-bit one for a program that runs in compatibility mode), every general register zeroed so
;   nothing of the kernel's reaches the program.  It never returns: PsRunProcess comes back
;   through the seh_setjmp it made before (kernel/process.c), when the process exits or
;   faults.  The entries from ring 3 execute SWAPGS again (kernel/smp/percpu.h).
bits 64
section .text
global user_iret

%define SEL_UDATA_RPL3   0x23

user_iret:
	cli                         ; no interrupt between the SWAPGS and the IRETQ: an AP calls this
	                            ; with IF set, and an interrupt there would see ring 0 with the
	                            ; user's GS base (IRETQ sets IF again from the RFLAGS given)
	push SEL_UDATA_RPL3         ; SS
	push rsi                    ; RSP
	push rdx                    ; RFLAGS
	push rcx                    ; CS
	push rdi                    ; RIP
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
	swapgs                      ; the user's GS base in, the kernel's to IA32_KERNEL_GS_BASE
	iretq

section .note.GNU-stack noalloc noexec nowrite progbits
