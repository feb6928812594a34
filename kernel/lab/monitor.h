/* The interactive monitor on the serial console.  Commands register themselves:
 *     static int cmd_pte(int argc, char **argv) { ... }
 *     MONITOR_COMMAND(pte, "pte VA [PID]", "every level's entry for VA", cmd_pte);
 *     static int cmd_pat(void) { ... }
 *     MONITOR_COMMAND_BARE(pat, "IA32_PAT slot by slot", cmd_pat);
 * A handler returns 0, or -1 to have its usage line printed.  A bare command takes no
 * arguments: its usage line is its name, its handler has none, and the monitor prints the
 * usage line for any argument instead of running it.
 *
 * Printers shared by commands, the tour and the tests write through a struct mon_out: the
 * console (MON_CONSOLE), or a caller's buffer, so that a test reads exactly the text a user
 * would see.
 */
#ifndef LAB_MONITOR_H
#define LAB_MONITOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct monitor_command {
	const char *name;
	const char *usage;
	const char *help;
	int (*run)(int argc, char **argv);  /* a command with arguments (argv[0] its name) */
	int (*run_bare)(void);              /* or a bare one */
};

#define MONITOR_REGISTER(id, ...)                                                           \
	static const struct monitor_command __moncmd_##id = { __VA_ARGS__ };               \
	__attribute__((used, section(".monitor_cmds"))) static const struct monitor_command \
		*const __moncmd_ptr_##id = &__moncmd_##id
/* A command named `name_` (any spelling: "bench-cache"), registered under the C identifier
 * `id`; MONITOR_COMMAND and MONITOR_COMMAND_BARE name it after the identifier. */
#define MONITOR_COMMAND_NAMED(id, name_, usage_, help_, fn) \
	MONITOR_REGISTER(id, .name = name_, .usage = usage_, .help = help_, .run = fn)
#define MONITOR_COMMAND_BARE_NAMED(id, name_, help_, fn) \
	MONITOR_REGISTER(id, .name = name_, .usage = name_, .help = help_, .run_bare = fn)
#define MONITOR_COMMAND(id, usage_, help_, fn) MONITOR_COMMAND_NAMED(id, #id, usage_, help_, fn)
#define MONITOR_COMMAND_BARE(id, help_, fn) MONITOR_COMMAND_BARE_NAMED(id, #id, help_, fn)

/* mode=monitor (kernel/bootmode.h) reads and runs commands forever; `quit` ends the QEMU run. */
/* Run one command line; returns the handler's result, or -2 for an unknown command. */
int monitor_execute(char *line);

/* ---- output ----------------------------------------------------------------------------- */

/* Where a printer's text goes.  With buf NULL, the console; otherwise appended to buf
 * (always NUL-terminated), `overflow` set when something did not fit. */
struct mon_out {
	char *buf;
	size_t size, len;
	bool overflow;
};
#define MON_CONSOLE ((struct mon_out *)0)

/* A buffer sink over buf[0..size). */
static inline struct mon_out mon_buffer(char *buf, size_t size)
{
	if (size)
		buf[0] = 0;
	return (struct mon_out){ .buf = buf, .size = size };
}
/* printf to `o` (MON_CONSOLE: the console). */
void mon_printf(struct mon_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mon_vprintf(struct mon_out *o, const char *fmt, va_list ap);

/* ---- arguments ---------------------------------------------------------------------------- */

/* A number argument through parse_number (kernel/lib.h): 0x-prefixed hex, else `base`.  On
 * anything else (empty, "0x" alone, junk, more than 64 bits) it prints why and returns false. */
bool monitor_parse_number(const char *s, unsigned base, uint64_t *out);
/* The same, its message written to `o` (tests read it from a buffer). */
bool monitor_parse_number_to(struct mon_out *o, const char *s, unsigned base, uint64_t *out);
/* A hex number as WinDbg writes them: 0x optional, ` allowed between digit groups
 * (ffffc000`00001000); monitor_parse_number in base 16. */
bool monitor_parse_hex(const char *s, uint64_t *out);

/* The process a PID argument names (decimal as `ps` prints it, or 0x-prefixed hex).
 * Returns 0 with *out set; -1 when the argument is not a number (the caller returns -1 for
 * its usage line); 1 when no live process has that PID (a message was printed). */
struct _EPROCESS;
int monitor_parse_process(const char *s, struct _EPROCESS **out);

#endif
