/* The interactive monitor on the serial console.  Commands register themselves:
 *     static int cmd_pat(int argc, char **argv) { ... }
 *     MONITOR_COMMAND(pat, "pat", "IA32_PAT slot by slot", cmd_pat);
 * A handler returns 0, or -1 to have its usage line printed. */
#ifndef KERNEL_MONITOR_H
#define KERNEL_MONITOR_H

struct monitor_command {
	const char *name;
	const char *usage;
	const char *help;
	int (*run)(int argc, char **argv);
};

#define MONITOR_COMMAND(id, usage_, help_, fn)                                             \
	static const struct monitor_command __moncmd_##id = { #id, usage_, help_, fn };  \
	__attribute__((used, section(".monitor_cmds"))) static const struct monitor_command \
		*const __moncmd_ptr_##id = &__moncmd_##id

#define MONITOR_PROMPT "mdlab> "

/* Read and run commands forever (`quit` ends the QEMU run). */
__attribute__((noreturn)) void monitor_run(void);
/* Run one command line; returns the handler's result, or -2 for an unknown command. */
int monitor_execute(char *line);

#endif
