#include "kernel/monitor.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/serial.h"
#include "tests/ktest.h"

extern const struct monitor_command *const __monitor_cmds_start[], *const __monitor_cmds_end[];
#define for_each_command(c) \
	for (const struct monitor_command *const *c = __monitor_cmds_start; c < __monitor_cmds_end; c++)

#define MAX_ARGS 8

int monitor_execute(char *line)
{
	char *argv[MAX_ARGS];
	int argc = 0;
	for (char *p = line; *p && argc < MAX_ARGS;) {
		while (*p == ' ' || *p == '\t')
			*p++ = 0;
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	if (!argc)
		return 0;
	for_each_command(c) {
		if (strcmp((*c)->name, argv[0]))
			continue;
		int r = (*c)->run(argc, argv);
		if (r == -1)
			kprintf("usage: %s\n", (*c)->usage);
		return r;
	}
	kprintf("unknown command '%s' (try 'help')\n", argv[0]);
	return -2;
}

/* Line editing: printable characters echo, backspace/DEL erase, CR or LF ends the line.
 * A CR LF pair (or LF CR) counts as one end of line. */
static void read_line(char *buf, unsigned size)
{
	static int last_eol;
	unsigned n = 0;
	for (;;) {
		int c = serial_getc();
		if (c == '\r' || c == '\n') {
			if (last_eol && last_eol != c && n == 0) {
				last_eol = 0;
				continue;
			}
			last_eol = c;
			serial_putc('\n');
			buf[n] = 0;
			return;
		}
		last_eol = 0;
		if (c == 0x7F || c == 0x08) {
			if (n) {
				n--;
				serial_write("\b \b", 3);
			}
		} else if (c >= 0x20 && c < 0x7F && n + 1 < size) {
			buf[n++] = (char)c;
			serial_putc((char)c);
		}
	}
}

void monitor_run(void)
{
	char line[256];
	kprintf("Type 'help' for the commands.\n");
	for (;;) {
		kprintf(MONITOR_PROMPT);
		read_line(line, sizeof line);
		monitor_execute(line);
	}
}

static int cmd_help(int argc, char **argv)
{
	for_each_command(c)
		kprintf("  %-24s %s\n", (*c)->usage, (*c)->help);
	return 0;
}
MONITOR_COMMAND(help, "help", "this list", cmd_help);

static int cmd_tests(int argc, char **argv)
{
	if (argc > 2)
		return -1;
	int failed = ktest_run_all(argc == 2 ? argv[1] : "*");
	kprintf("%s (death tests run only under 'make test')\n", failed ? "FAILED" : "all passed");
	return 0;
}
MONITOR_COMMAND(tests, "tests [glob]", "run the self-tests matching suite.case glob", cmd_tests);

static int cmd_reboot(int argc, char **argv)
{
	kprintf("rebooting\n");
	outb(0xCF9, 0x02); /* reset control register: system reset, then full reset */
	outb(0xCF9, 0x06);
	outb(0x64, 0xFE);  /* the keyboard controller's reset line, in case */
	cpu_halt_forever();
}
MONITOR_COMMAND(reboot, "reboot", "reset the machine", cmd_reboot);

static int cmd_quit(int argc, char **argv)
{
	kprintf("bye\n");
	qemu_exit(QEMU_EXIT_DONE);
}
MONITOR_COMMAND(quit, "quit", "end the QEMU run", cmd_quit);

static int cmd_bugcheck(int argc, char **argv)
{
	uint64_t code;
	if (argc != 2 || !parse_u64(argv[1], &code))
		return -1;
	KeBugCheckEx((ULONG)code, 1, 2, 3, 4);
}
MONITOR_COMMAND(bugcheck, "bugcheck CODE", "stop the machine with a bug check (to see the STOP screen)",
		cmd_bugcheck);
