/* `ps` (kernel/lab/ps_cmds.c): the live processes, one line each, shared with the tour. */
#ifndef LAB_PS_CMDS_H
#define LAB_PS_CMDS_H

#include "kernel/lab/monitor.h"
#include "kernel/process.h"

/* The column titles, then one process: PID, name, WOW64, the PML4's physical address, the
 * pages MmProbeAndLockPages charged to it, its MDL user mappings, its VADs, and the fault
 * that ended it if one did. */
void ps_print_header(struct mon_out *o);
void ps_print_process(struct mon_out *o, PEPROCESS p);

#endif
