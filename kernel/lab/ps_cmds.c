/* `ps`: the live processes (kernel/process.c's list), read from each EPROCESS, its list of
 * MDL user mappings and its VAD tree.  "bits" is the image's: 32 for an ELF32 program run in
 * compatibility mode (EPROCESS compat32, mm/RULES.md "32-bit processes"), 64 otherwise; WOW64
 * is the 32-bit address space, which a 64-bit process can also have (PROCESS_WOW64).  CPU is
 * the processor whose ring-3 thread runs it now (`run NAME cpu=N`), "-" when it does not run. */
#include "kernel/lab/ps_cmds.h"
#include "kernel/trap.h"
#include "mm/mdl_user.h"
#include "mm/vad.h"

void ps_print_header(struct mon_out *o)
{
	mon_printf(o, "  %5s %-16s %-4s %-5s %-12s %7s %8s %5s %3s  %s\n", "PID", "name", "bits", "WOW64", "PML4",
		   "locked", "mappings", "VADs", "CPU", "ended by");
}

void ps_print_process(struct mon_out *o, PEPROCESS p)
{
	uint64_t vads = vad_count(&p->mm);
	unsigned mappings = 0;
	for (const struct user_mapping *um = p->mm.mappings; um; um = um->next)
		mappings++;
	int32_t cpu = p->cpu;
	mon_printf(o, "  %5u %-16s %-4s %-5s 0x%010lx %7lu %8u %5lu ", p->pid, p->name, p->compat32 ? "32" : "64",
		   p->wow64 ? "yes" : "no", p->mm.root.pml4, p->mm.locked_pages, mappings, vads);
	if (cpu >= 0)
		mon_printf(o, "%3d  ", cpu);
	else
		mon_printf(o, "%3s  ", "-");
	if (p->fault.happened)
		mon_printf(o, "vector %lu, error code 0x%lx at 0x%lx\n", p->fault.vector, p->fault.error_code,
			   p->fault.address);
	else
		mon_printf(o, "-\n");
}

static int cmd_ps(void)
{
	unsigned n = 0;
	ps_print_header(MON_CONSOLE);
	for (PEPROCESS p = ps_next(NULL); p; p = ps_next(p), n++)
		ps_print_process(MON_CONSOLE, p);
	mon_printf(MON_CONSOLE, "%u live process%s\n", n, n == 1 ? "" : "es");
	return 0;
}
MONITOR_COMMAND_BARE(ps, "live processes: PID, name, 32 or 64-bit image, WOW64, PML4, locked pages, MDL mappings, VADs, CPU", cmd_ps);
