#include "kernel/lab/monitor.h"
#include "include/mdlab/protocol.h"
#include "kernel/bootmode.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/serial.h"
#include "kernel/ktest.h"

extern const struct monitor_command *const __monitor_cmds_start[], *const __monitor_cmds_end[];
#define for_each_command(c) \
	for (const struct monitor_command *const *c = __monitor_cmds_start; c < __monitor_cmds_end; c++)

#define MAX_ARGS 8

int monitor_execute(char *line)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	for (char *p = line; *p && argc <= MAX_ARGS;) {
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
		/* Any argument for a bare command, or more than any command takes. */
		int r = (*c)->run_bare ? (argc > 1 ? -1 : (*c)->run_bare())
					: (argc > MAX_ARGS ? -1 : (*c)->run(argc, argv));
		if (r == -1)
			kprintf("usage: %s\n", (*c)->usage);
		return r;
	}
	kprintf("unknown command '%s' (try 'help')\n", argv[0]);
	return -2;
}

void mon_vprintf(struct mon_out *o, const char *fmt, va_list ap)
{
	if (!o || !o->buf) {
		kvprintf(fmt, ap);
		return;
	}
	if (o->len + 1 >= o->size) {
		o->overflow = true;
		return;
	}
	size_t room = o->size - o->len;
	int n = kvsnprintf(o->buf + o->len, room, fmt, ap);
	if ((size_t)n >= room) {
		o->len = o->size - 1;
		o->overflow = true;
	} else {
		o->len += (size_t)n;
	}
}

void mon_printf(struct mon_out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mon_vprintf(o, fmt, ap);
	va_end(ap);
}

bool monitor_parse_number_to(struct mon_out *o, const char *s, unsigned base, uint64_t *out)
{
	const char *why = parse_number(s, base, out);
	if (why)
		mon_printf(o, "'%s' is refused: %s\n", s, why);
	return !why;
}

bool monitor_parse_number(const char *s, unsigned base, uint64_t *out)
{
	return monitor_parse_number_to(MON_CONSOLE, s, base, out);
}

bool monitor_parse_hex(const char *s, uint64_t *out) { return monitor_parse_number(s, 16, out); }

int monitor_parse_process(const char *s, struct _EPROCESS **out)
{
	uint64_t pid;
	if (!monitor_parse_number(s, 10, &pid))
		return -1;
	*out = pid <= UINT32_MAX ? ps_lookup((uint32_t)pid) : NULL;
	if (!*out) {
		kprintf("no process with PID %s ('ps' lists the live ones)\n", s);
		return 1;
	}
	return 0;
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

static void monitor_run(void)
{
	char line[256];
	kprintf("Type 'help' for the commands.\n");
	for (;;) {
		kprintf(MDLAB_MONITOR_PROMPT);
		read_line(line, sizeof line);
		monitor_execute(line);
	}
}

BOOT_MODE(monitor, MDLAB_MODE_MONITOR, monitor_run);

static int cmd_help(void)
{
	int width = 0;
	for_each_command(c)
		width = MAX(width, (int)strlen((*c)->usage));
	for_each_command(c)
		kprintf("  %-*s  %s\n", width, (*c)->usage, (*c)->help);
	return 0;
}
MONITOR_COMMAND_BARE(help, "this list", cmd_help);

static int cmd_tests(int argc, char **argv)
{
	if (argc > 2)
		return -1;
	int failed = ktest_run_all(argc == 2 ? argv[1] : "*");
	kprintf("%s (death tests run only under 'make test')\n", failed ? "FAILED" : "all passed");
	return 0;
}
MONITOR_COMMAND(tests, "tests [glob]", "run the self-tests matching suite.case glob", cmd_tests);

static int cmd_reboot(void)
{
	kprintf("rebooting\n");
	outb(0xCF9, 0x02); /* reset control register: system reset, then full reset */
	outb(0xCF9, 0x06);
	outb(0x64, 0xFE);  /* the keyboard controller's reset line, in case */
	cpu_halt_forever();
}
MONITOR_COMMAND_BARE(reboot, "reset the machine", cmd_reboot);

static int cmd_quit(void)
{
	kprintf("bye\n");
	qemu_exit(QEMU_EXIT_DONE);
}
MONITOR_COMMAND_BARE(quit, "end the QEMU run", cmd_quit);

static int cmd_bugcheck(int argc, char **argv)
{
	uint64_t code;
	if (argc != 2 || !monitor_parse_number(argv[1], 10, &code))
		return -1;
	if (code > UINT32_MAX) {
		kprintf("'%s' is refused: a bug-check code has 32 bits\n", argv[1]);
		return -1;
	}
	KeBugCheckEx((ULONG)code, 1, 2, 3, 4);
}
MONITOR_COMMAND(bugcheck, "bugcheck CODE", "stop the machine with a bug check (to see the STOP screen)",
		cmd_bugcheck);
