#include <stdarg.h>
#include "kernel/bugcheck.h"
#include "kernel/backtrace.h"
#include "kernel/cpu.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"

#define NAME_ENTRY(name, value) { value, #name },
static const struct {
	ULONG code;
	const char *name;
} names[] = { MDLAB_BUGCODES(NAME_ENTRY) };
#undef NAME_ENTRY

const char *bugcheck_name(ULONG code)
{
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].code == code)
			return names[i].name;
	return "UNKNOWN_BUGCHECK";
}

void qemu_exit(uint8_t value)
{
	outb(QEMU_EXIT_PORT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* The CPU that is stopping the machine (its number + 1; 0: none yet). */
static volatile int stopping_cpu;

void KeBugCheckEx(ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
	__asm__ volatile("cli");
	int me = (int)smp_cpu_number_safe() + 1, first = 0;
	if (!__atomic_compare_exchange_n(&stopping_cpu, &first, me, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST)) {
		if (first != me)
			smp_frozen_halt(); /* another CPU is stopping the machine: it prints */
		/* A bug check while printing one: say so once and stop. */
		kprintf("\n*** nested bug check 0x%08X while stopping\n", code);
		qemu_exit(QEMU_EXIT_BUGCHECK);
	}
	/* The others stop where they are, so the STOP line is printed once, by this CPU. */
	smp_freeze_others();
	console_set_line_prefix(NULL);
	kprintf("\n" MDLAB_STOP_FORMAT "\n%s\n\n", code, p1, p2, p3, p4, bugcheck_name(code));
	kprintf("Backtrace of the caller:\n");
	backtrace_print((uint64_t)__builtin_frame_address(0), 0);
	qemu_exit(QEMU_EXIT_BUGCHECK);
}

void KeBugCheck(ULONG code) { KeBugCheckEx(code, 0, 0, 0, 0); }

void kpanic(const char *fn, const char *fmt, ...)
{
	va_list ap;
	(void)fn; /* the message names its function, as "function: reason" */
	kprintf("\n");
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
	KeBugCheckEx(MDLAB_INTERNAL_ERROR, (ULONG_PTR)__builtin_return_address(0), 0, 0, 0);
}
