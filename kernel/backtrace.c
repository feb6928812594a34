/* Backtraces (see backtrace.h).  The build keeps frame pointers (-fno-omit-frame-pointer), so
 * every kernel frame starts with the caller's RBP and then the return address. */
#include "kernel/backtrace.h"
#include "kernel/ksym.h"
#include "kernel/kstack.h"
#include "kernel/printf.h"

#define BACKTRACE_DEPTH 32

void backtrace_print(uint64_t rbp, int first)
{
	for (int depth = first; depth < first + BACKTRACE_DEPTH && rbp; depth++) {
		/* Follow only frames that lie in a known kernel stack and move upwards. */
		if ((rbp & 7) || !kstack_contains(rbp, 16)) {
			kprintf("  (frame pointer 0x%lx is outside the kernel stacks)\n", rbp);
			return;
		}
		uint64_t next = ((uint64_t *)rbp)[0], ret = ((uint64_t *)rbp)[1];
		if (!ret)
			return;
		/* ret - 1 lies in the call instruction: the caller, even for a noreturn call that
		 * ends its function. */
		uint64_t off;
		const char *name = ksym_lookup(ret - 1, &off);
		if (name)
			kprintf("  #%-2d 0x%016lx %s+0x%lx\n", depth, ret, name, off + 1);
		else
			kprintf("  #%-2d 0x%016lx\n", depth, ret);
		if (next <= rbp)
			return;
		rbp = next;
	}
}

void backtrace_print_symbol(uint64_t addr)
{
	uint64_t off;
	const char *name = ksym_lookup(addr, &off);
	if (name)
		kprintf(" <%s+0x%lx>", name, off);
}
