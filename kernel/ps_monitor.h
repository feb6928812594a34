/* `ps` (kernel/ps_monitor.c): the live processes, one line each, shared with the tour. */
#ifndef KERNEL_PS_MONITOR_H
#define KERNEL_PS_MONITOR_H

#include "kernel/monitor.h"
#include "kernel/process.h"

/* The column titles, then one process: PID, name, WOW64, the PML4's physical address, the
 * pages MmProbeAndLockPages charged to it, its MDL user mappings, its VADs, and the fault
 * that ended it if one did. */
void ps_print_header(struct mon_out *o);
void ps_print_process(struct mon_out *o, PEPROCESS p);

#endif
