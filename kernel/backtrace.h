/* Backtraces: the frame-pointer chain of a kernel stack, each return address named from the
 * kernel's symbol table.  Needs nothing above the symbol table and the stack bounds, so the
 * bug-check path and the trap handler can both use it. */
#ifndef KERNEL_BACKTRACE_H
#define KERNEL_BACKTRACE_H

#include <stdint.h>

/* Walk the frame-pointer chain from `rbp`, printing "  #n 0x... symbol+off" from n = first.
 * Stops at a frame outside the kernel stacks, one that does not move up the stack, a zero
 * return address, or after 32 frames. */
void backtrace_print(uint64_t rbp, int first);
/* Print " <symbol+0xoff>" for addr; nothing when no symbol contains it. */
void backtrace_print_symbol(uint64_t addr);

#endif
