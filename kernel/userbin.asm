; The user programs, embedded in the kernel image (built under build/user/ first; the
; Makefile passes that folder with -i).  kernel/userprog.c lists them.
bits 64
section .rodata

%macro program 1
align 16
global user_%1_elf_start
global user_%1_elf_end
user_%1_elf_start:
	incbin %str(%1.elf)
user_%1_elf_end:
%endmacro

program agent
program hello
program mdlsample
program ioattack
program compat32
program fuzz32

align 16
global user_fuzz_elf_start
global user_fuzz_elf_end
user_fuzz_elf_start:
	incbin "fuzz.elf"
user_fuzz_elf_end:

section .note.GNU-stack noalloc noexec nowrite progbits
