; The user programs, embedded in the kernel image (built under build/user/ first; the
; Makefile passes that folder with -i).  kernel/userprog.c lists them.
bits 64
section .rodata
align 16
global user_agent_elf_start
global user_agent_elf_end
user_agent_elf_start:
	incbin "agent.elf"
user_agent_elf_end:

align 16
global user_fuzz_elf_start
global user_fuzz_elf_end
user_fuzz_elf_start:
	incbin "fuzz.elf"
user_fuzz_elf_end:

section .note.GNU-stack noalloc noexec nowrite progbits
