; The AP start-up trampoline.  smp.c copies these bytes to a frame below 1 MiB and fills the
; parameter block at offset 0x10; a STARTUP IPI whose vector is that frame's page number
; starts the AP here in real mode at CS = page << 8, IP = 0 (SDM Vol. 3, 9.4.4.2 and
; 11.6.1).  It climbs to long mode itself (SDM Vol. 3, 9.8.5): a flat GDT, protected mode,
; PAE, CR3 = a temporary address space that maps this frame at its own physical address and
; shares the kernel half, EFER.LME and NXE (the kernel half's entries carry NX), paging, a
; far jump to 64-bit code, then the kernel's stack and smp_ap_entry(cpu) at their kernel
; addresses.  The CR3 and CR4 writes here are the only ones outside mm/tlb.c: there is no
; kernel yet on this CPU, and smp_ap_entry switches to the kernel's tables through mm/tlb.c.
; Every GDT descriptor has its accessed bit set already, so loading one writes nothing.
bits 16
section .rodata
global smp_trampoline
global smp_trampoline_end
global smp_trampoline_pm32
global smp_trampoline_lm64
global smp_trampoline_gdt

%define P_CR3 0x10
%define P_PM32 0x14     ; m16:32 far pointer to pm32 (offset, then selector at 0x18)
%define P_LM64 0x1C     ; m16:32 far pointer to lm64 (offset, then selector at 0x20)
%define P_GDTR 0x22     ; limit (2), base (4)
%define P_ENTRY 0x28
%define P_STACK 0x30
%define P_CPU 0x38

align 16
smp_trampoline:
	jmp short real_start
	times 0x40 - ($ - smp_trampoline) db 0   ; the parameter block, filled by smp.c
smp_trampoline_gdt:
	dq 0
	dq 0x00CF9B000000FFFF   ; 0x08: 32-bit code, flat, accessed
	dq 0x00CF93000000FFFF   ; 0x10: data, flat, accessed
	dq 0x00AF9B000000FFFF   ; 0x18: 64-bit code, accessed

real_start:
	cli
	cld
	mov ax, cs
	mov ds, ax
	xor ebx, ebx
	mov bx, ax
	shl ebx, 4              ; EBX = this frame's physical address, for every mode below
	lgdt [P_GDTR]
	mov eax, cr0
	or eax, 1               ; PE
	mov cr0, eax
	o32 jmp far [P_PM32]

bits 32
smp_trampoline_pm32:
	mov ax, 0x10
	mov ds, ax
	mov es, ax
	mov ss, ax
	mov eax, cr4
	or eax, 1 << 5          ; PAE
	mov cr4, eax
	mov eax, [ebx + P_CR3]
	mov cr3, eax
	mov ecx, 0xC0000080     ; IA32_EFER
	rdmsr
	or eax, (1 << 8) | (1 << 11) ; LME, NXE
	wrmsr
	mov eax, cr0
	or eax, 0x80000001      ; PG, PE
	mov cr0, eax
	jmp far [ebx + P_LM64]

bits 64
smp_trampoline_lm64:
	mov ebx, ebx            ; the upper halves are undefined after the switch
	mov rsp, [rbx + P_STACK]
	mov rdi, [rbx + P_CPU]
	mov rax, [rbx + P_ENTRY]
	xor ebp, ebp
	push rbp                ; as if called: RSP + 8 is 16-byte aligned at the entry
	jmp rax
smp_trampoline_end:

section .note.GNU-stack noalloc noexec nowrite progbits
