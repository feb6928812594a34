/*
 * What the kernel and the host scripts say to each other over the serial line, in one place:
 * the boot modes the scripts ask for, every marker the kernel prints for a script to find, and
 * the isa-debug-exit values that end a run.  The kernel prints these macros; scripts/protocol.py
 * reads this file when it is imported (harness.py, ktap.py, qemu.py, run.py, bench.py, map.py
 * use it), so neither side spells a marker on its own.
 *
 * The scripts read only plain object-like macros: an integer literal, or string literals and
 * the names of string macros above, joined as C joins them (scripts/cheader.py).
 */
#ifndef MDLAB_PROTOCOL_H
#define MDLAB_PROTOCOL_H

/* ---- ending the run: isa-debug-exit ------------------------------------------------------
 * Writing V to the port ends QEMU with status (V << 1) | 1.  (A triple fault under -no-reboot
 * ends it with QEMU's own status 0.) */
#define QEMU_EXIT_PORT 0xf4
#define QEMU_EXIT_DONE 0x10     /* the kernel finished: QEMU exits 33 */
#define QEMU_EXIT_BUGCHECK 0x11 /* KeBugCheckEx stopped the machine: QEMU exits 35 */

/* ---- the command line: mode=NAME and the mode's own keys -------------------------------- */
#define MDLAB_MODE_MONITOR "monitor"           /* the interactive monitor (the default) */
#define MDLAB_MODE_TEST "test"                 /* tests=GLOB: the ordinary cases matching GLOB */
#define MDLAB_MODE_DEATH "death"               /* case=SUITE.CASE: one death case */
#define MDLAB_MODE_DEATH_SERVER "death-server" /* boot, wait for a case name on COM1 */
#define MDLAB_MODE_BENCH "bench"               /* bench=GLOB: the benchmark cases */
/* A death case's name, as case=NAME or typed on COM1, fits this many bytes with its NUL. */
#define MDLAB_CASE_NAME_SIZE 128

/* ---- KTAP v1, as kernel/ktest.c prints it ------------------------------------------------ */
#define MDLAB_KTAP_HEADER "KTAP version 1"
#define MDLAB_KTAP_SUBTEST "# Subtest:"
#define MDLAB_KTAP_SKIP "SKIP"                 /* the directive after "# " on a skipped case */

/* ---- test runs --------------------------------------------------------------------------- */
/* Every ordinary case ran (mode=test); a log without it ended early. */
#define MDLAB_TESTS_DONE "# mdlab: tests done"
/* Before the plan, one line per death case: "NAME code=0x%08X", then " pN=0x%016lX" for each
 * parameter the case names. */
#define MDLAB_DEATH_TEST "# death-test:"
/* Printed by a death case at run time: "code=0x%08X" and parameters, as above, that the STOP
 * line must match too. */
#define MDLAB_DEATH_EXPECT "# death-expect:"
/* A death boot's own lines: "running NAME, ...", and NAME MDLAB_DEATH_RETURNED when the case
 * came back instead of stopping the machine. */
#define MDLAB_DEATH "# death:"
#define MDLAB_DEATH_RETURNED "returned without a bug check"
/* mode=death-server is booted and waiting for a case name: the machine can be saved now. */
#define MDLAB_DEATH_SERVER_READY "# death-server: ready"

/* ---- user output ------------------------------------------------------------------------
 * What a process prints (SYS_DEBUG_PRINT) reaches the serial line only as whole lines of this
 * form, at the start of a line (after the self-tests' "    # " diagnostic prefix when a case
 * runs): the mark, the process id and name, then the user's bytes with every one outside
 * printable ASCII, and the backslash, written as \xHH.  The scripts believe no marker on such
 * a line: a process cannot forge a STOP screen, a KTAP result or a death expectation. */
#define MDLAB_USER_MARK "user|"
#define MDLAB_USER_FORMAT MDLAB_USER_MARK "%u %s| %s"

/* ---- the STOP screen --------------------------------------------------------------------
 * The code and the four parameters in upper-case hex, then the code's name alone on the next
 * line.  Exactly one STOP line ends a death case. */
#define MDLAB_STOP_MARK "*** STOP:"
#define MDLAB_STOP_FORMAT MDLAB_STOP_MARK " 0x%08X (0x%016lX,0x%016lX,0x%016lX,0x%016lX)"

/* ---- the other modes --------------------------------------------------------------------- */
#define MDLAB_MONITOR_PROMPT "mdlab> "
/* After a monitor command that failed (unknown, a usage error, refused, a failed test run):
 * this line, then the command.  A scripted `make run` exits non-zero when it saw one. */
#define MDLAB_MONITOR_FAILED "# monitor: command failed:"
/* mode=bench: result lines "case=NAME size=N ops=N pages=N ticks=N [note=WORD]" after this
 * prefix, then the closing marker. */
#define MDLAB_BENCH "# bench:"
#define MDLAB_BENCH_DONE "# mdlab: bench done"
/* The monitor's mapdump: every line starts with the prefix; "begin version=N" opens a dump. */
#define MDLAB_MAPDUMP "mapdump:"
#define MDLAB_MAPDUMP_VERSION 1

#endif
