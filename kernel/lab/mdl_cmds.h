/*
 * The MDL printers of kernel/lab/mdl_cmds.c (`mdl ADDR`, `mdl demo`), shared with the tour
 * (kernel/lab/tour.c).  They write to a struct mon_out (kernel/lab/monitor.h) and read the MDL
 * through the real page tables first, so a bad address gives a message, never a fault.
 */
#ifndef LAB_MDL_CMDS_H
#define LAB_MDL_CMDS_H

#include <stdbool.h>
#include <stdint.h>
#include "kernel/lab/monitor.h"
#include "mm/pt.h"

/* The MDL at kernel address `at`: header fields and MdlFlags by name; with MDL_PRINT_PFNS
 * the PFN array with each frame's PFN database entry (state, owner, lock count, recorded
 * type); with MDL_PRINT_MAPPING its system mapping, page by page.  False (with the reason
 * printed) when no MDL can be read there. */
#define MDL_PRINT_PFNS 0x1
#define MDL_PRINT_MAPPING 0x2
bool mdl_print(struct mon_out *o, uint64_t at, unsigned what);

/* One line for the translation of va in `root`: the leaf's raw value, its bits, PAT slot,
 * the slot's type per the MSR, the frame. */
void mdl_print_translation(struct mon_out *o, const struct pt_root *root, const char *label, uint64_t va);

#endif
