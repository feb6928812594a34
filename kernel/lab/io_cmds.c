/* The I/O commands: `driver` loads, unloads and lists the built-in drivers; `run` starts a
 * user program with a command line and waits for it (kernel/io/driver.h, kernel/userprog.h). */
#include "kernel/lab/monitor.h"
#include "kernel/io/driver.h"
#include "kernel/io/io.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "kernel/userprog.h"

static void list_drivers(void)
{
	for (unsigned i = 0; io_builtin_driver(i); i++) {
		const char *name = io_builtin_driver(i)->name;
		PDRIVER_OBJECT drv = io_loaded_driver(name);
		mon_printf(MON_CONSOLE, "  %-16s %s", name, drv ? "loaded" : "not loaded");
		if (drv) {
			unsigned n = 0;
			for (PDEVICE_OBJECT d = drv->DeviceObject; d; d = d->NextDevice)
				n++;
			mon_printf(MON_CONSOLE, ", %u device%s, %s", n, n == 1 ? "" : "s",
				   drv->DriverUnload ? "unloadable" : "no DriverUnload");
		}
		mon_printf(MON_CONSOLE, "\n");
	}
}

static int cmd_driver(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "list")) {
		list_drivers();
		return 0;
	}
	if (argc != 3 || (strcmp(argv[1], "load") && strcmp(argv[1], "unload")))
		return -1;
	bool load = !strcmp(argv[1], "load");
	NTSTATUS st = load ? io_load_driver(argv[2]) : io_unload_driver(argv[2]);
	mon_printf(MON_CONSOLE, "%s %s: status 0x%08x%s\n", load ? "load" : "unload", argv[2], (ULONG)st,
		   NT_SUCCESS(st) ? "" : " (failed)");
	return 0;
}
MONITOR_COMMAND(driver, "driver list | driver load NAME | driver unload NAME",
		"the built-in drivers: list them, call DriverEntry or DriverUnload", cmd_driver);

#define RUN_SLOTS 64

/* `cpu=N` right after the name: the CPU that runs the program (its number as `cpus` and
 * KeGetCurrentProcessorNumberEx give it); -1 when there is none, -2 when it is refused. */
static int run_cpu_arg(int argc, char **argv)
{
	if (argc < 3 || strncmp(argv[2], "cpu=", 4))
		return -1;
	uint64_t n;
	if (!monitor_parse_number(argv[2] + 4, 10, &n))
		return -2;
	if (n >= smp_cpus_online() || !kcpus[n].online) {
		mon_printf(MON_CONSOLE, "run: there is no CPU %lu (%u online)\n", n, smp_cpus_online());
		return -2;
	}
	return (int)n;
}

static int cmd_run(int argc, char **argv)
{
	if (argc < 2)
		return -1;
	int cpu = run_cpu_arg(argc, argv);
	if (cpu == -2)
		return 1;
	if (cpu >= 0) { /* not part of the program's command line */
		for (int i = 2; i + 1 < argc; i++)
			argv[i] = argv[i + 1];
		argc--;
	}
	if (!userprog_find(argv[1])) {
		mon_printf(MON_CONSOLE, "run: no program '%s'; there are:", argv[1]);
		for (unsigned i = 0; userprog_name(i); i++)
			mon_printf(MON_CONSOLE, " %s", userprog_name(i));
		mon_printf(MON_CONSOLE, "\n");
		return 0;
	}
	char line[RUN_SLOTS * 8];
	size_t n = 0;
	for (int i = 1; i < argc && n + 1 < sizeof line; i++)
		n += (size_t)ksnprintf(line + n, sizeof line - n, "%s%s", i > 1 ? " " : "", argv[i]);
	uint64_t args[RUN_SLOTS + 1];
	uint32_t nargs = userprog_pack_cmdline(line, args, RUN_SLOTS + 1);
	PEPROCESS p = PsCreateProcess(argv[1], 0, args, nargs);
	if (!p) {
		mon_printf(MON_CONSOLE, "run: cannot create the process\n");
		return 0;
	}
	NTSTATUS st = cpu < 0 ? PsRunProcess(p) : ps_run_on_cpu(p, (unsigned)cpu);
	mon_printf(MON_CONSOLE, "run: %s (pid %u) exited with status 0x%x on CPU %u\n", argv[1], p->pid, (ULONG)st,
		   p->last_cpu);
	PsDestroyProcess(p);
	return 0;
}
MONITOR_COMMAND(run, "run NAME [cpu=N] [args]",
		"run a user program (hello, mdlsample, ...) with a command line, on CPU N (default: this one), and wait",
		cmd_run);
