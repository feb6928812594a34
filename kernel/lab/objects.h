/*
 * Live objects for the monitor (kernel/lab/objects.c): pool buffers, MDLs, mappings and
 * processes that a user creates by name, that stay alive between commands (so `pte`, `ptdump`,
 * `lockedpages`, `ps`, QEMU's `info tlb` and gdb have something to look at) and that a user
 * releases by name.  Each command prints what it changed: the MDL, every level's entry of the
 * pages it touched, the PFN entries and the TLB flushes the routine did.
 *
 * An order error (unlocking what is not locked, mapping an unlocked MDL, freeing a buffer an
 * MDL still describes, ...) gets a message naming the bug check the real call would raise, and
 * changes nothing; the same command with --bugcheck makes the real call.
 */
#ifndef LAB_OBJECTS_H
#define LAB_OBJECTS_H

#include <stdbool.h>
#include <stdint.h>
#include "include/wdm.h"
#include "kernel/lab/monitor.h"

enum lab_object_kind { LAB_POOL, LAB_MDL, LAB_MAPPING, LAB_PROCESS };

/* What a test (or `objects`) may read of a live object.  `va` is the pool buffer, the
 * mapping's address or 0; `mdl` the MDL of an MDL or of a mapping; `process` the process of
 * a process or of a user mapping (NULL: system space). */
struct lab_object_info {
	enum lab_object_kind kind;
	uint64_t va;
	uint64_t bytes;
	PMDL mdl;
	PEPROCESS process;
};

/* The live object named `name`; false when there is none. */
bool lab_object_find(const char *name, struct lab_object_info *out);
/* How many objects are alive. */
unsigned lab_object_count(void);
/* Release every live object in dependency order (mappings, MDLs, buffers, processes), each
 * named on `o` with the routine that releases it; what `quit` does. */
void lab_objects_release_all(struct mon_out *o);
/* --bugcheck was on the command line (monitor_execute strips it): the next object command
 * makes the real call where the lab would refuse one that bug checks. */
void lab_objects_real_call(bool on);
/* Where the object commands print (MON_CONSOLE by default; a test passes a buffer). */
void lab_objects_set_output(struct mon_out *o);

#endif
