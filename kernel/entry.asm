; Kernel entry: the loader jumps here (long mode, interrupts off, RDI = physical address of
; struct mdlab_bootinfo).  Switch to the kernel's own boot stack, clear RBP so backtraces
; end here, and call kmain(bootinfo_phys).  kmain never returns.
bits 64
section .text.entry
global kernel_entry
extern kmain
extern boot_stack_top

kernel_entry:
	cli
	cld
	mov rsp, [rel boot_stack_top]
	xor ebp, ebp
	push rbp                ; fake return address 0: the backtrace stops here
	push rbp
	mov rbp, rsp
	call kmain
.hang:
	hlt
	jmp .hang

section .note.GNU-stack noalloc noexec nowrite progbits
