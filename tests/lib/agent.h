/*
 * Scripts for the agent, the ring-3 program kernel tests drive (user/agent.c): a test lists
 * operations — reads, writes, fetches, system calls — in a script, starts a process of the
 * agent with it in the parameter page, and reads back what each operation reported.
 *
 *     struct agent_script s;
 *     agent_begin(&s);
 *     agent_alloc(&s, buf, 0x10000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
 *     agent_write64(&s, buf, 42);
 *     uint32_t r = agent_read64(&s, buf);
 *     PEPROCESS p = agent_run_clean(t, &s);        // exit status 0, no fault
 *     EXPECT_EQ(t, agent_result(t, p, r, 0), 42);
 *     PsDestroyProcess(p);
 *
 * The layout is syscalls.h's: args[0] the number of operations, then AGENT_OP_SLOTS values
 * { op, a, b, c, d, e } each; operation i reports under AGENT_KEY(i, 0) and AGENT_KEY(i, 1).
 */
#ifndef TESTS_LIB_AGENT_H
#define TESTS_LIB_AGENT_H

#include <stdint.h>
#include "kernel/ktest.h"
/* syscalls.h (the AGENT_* operations) comes through process.h: its agent part lies outside
 * its include guard, so it can be included only once. */
#include "kernel/process.h"
#include "include/wdm.h"

struct agent_script {
	uint64_t args[USER_PARAMS_ARGS];
	uint32_t nops;
};

/* An empty script. */
void agent_begin(struct agent_script *s);

/* Append one operation and return its index, which names its reports (agent_result).
 * PANICs when the parameter page has no room left: a test's own mistake. */
uint32_t agent_op(struct agent_script *s, enum agent_op op, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
		  uint64_t e);
/* The operations by name (what each reports: syscalls.h). */
uint32_t agent_read8(struct agent_script *s, uint64_t va);
uint32_t agent_read64(struct agent_script *s, uint64_t va);
uint32_t agent_write8(struct agent_script *s, uint64_t va, uint8_t v);
uint32_t agent_write64(struct agent_script *s, uint64_t va, uint64_t v);
uint32_t agent_exec(struct agent_script *s, uint64_t va);
uint32_t agent_alloc(struct agent_script *s, uint64_t base, uint64_t size, uint32_t type, uint32_t protect);
uint32_t agent_free(struct agent_script *s, uint64_t base, uint64_t size, uint32_t type);
uint32_t agent_protect(struct agent_script *s, uint64_t base, uint64_t size, uint32_t protect);
uint32_t agent_unmap_view(struct agent_script *s, uint64_t base);
/* NtOpenDevice of `name` (at most 39 characters); the handle is the agent's from then on. */
uint32_t agent_open(struct agent_script *s, const char *name);
/* NtDeviceIoControlFile on the handle the last agent_open got (0 before any). */
uint32_t agent_ioctl(struct agent_script *s, uint32_t code, uint64_t in, uint32_t in_len, uint64_t out,
		     uint32_t out_len);
/* NtReadFile / NtWriteFile of len bytes at buf on the last agent_open's handle, at byte
 * `offset` (AGENT_CURRENT_POSITION: ByteOffset NULL); reports the status, then the bytes.
 * For a ByteOffset pointer of the test's choosing, agent_op with d = that pointer. */
uint32_t agent_read_file(struct agent_script *s, uint64_t buf, uint32_t len, uint64_t offset);
uint32_t agent_write_file(struct agent_script *s, uint64_t buf, uint32_t len, uint64_t offset);
/* Write `bytes` of tests/lib/pattern.h's pattern from `seed` at va, in ring 3. */
uint32_t agent_pattern32(struct agent_script *s, uint64_t va, uint64_t bytes, uint32_t seed);
/* LOCK XADD v at va (reports the old value); spin in ring 3 until the quadword at va is v
 * (reports the reads that missed): a barrier between processes on different CPUs that share
 * a page, or a wait for the kernel to write it. */
uint32_t agent_add64(struct agent_script *s, uint64_t va, uint64_t v);
uint32_t agent_spin64(struct agent_script *s, uint64_t va, uint64_t v);
/* Write seed ^ n at the start (and its complement at the end) of each of `pages` pages from
 * va; read them back (reports the mismatches, then the first bad page or `pages`). */
uint32_t agent_fill64(struct agent_script *s, uint64_t va, uint64_t pages, uint64_t seed);
uint32_t agent_check64(struct agent_script *s, uint64_t va, uint64_t pages, uint64_t seed);
/* Report `value` under `key` as it is. */
uint32_t agent_report(struct agent_script *s, uint64_t key, uint64_t value);
uint32_t agent_exit(struct agent_script *s, uint64_t status);
/* A raw system call with these registers (R8 = R9 = 0); reports RAX. */
uint32_t agent_syscall(struct agent_script *s, uint64_t nr, uint64_t rdi, uint64_t rsi, uint64_t rdx, uint64_t r10);
/* The user address of value `slot` (1-5: a-e) of operation `op` in the parameter page: a
 * read-only page whose contents the script chooses (operations after an AGENT_EXIT never run,
 * so their slots are data). */
uint64_t agent_slot_va(uint32_t op, unsigned slot);

/* A process of the agent with the script (PsCreateProcess flags: PROCESS_WOW64), not yet
 * run; NULL when it could not be made.  The caller destroys it. */
PEPROCESS agent_create(const struct agent_script *s, uint32_t flags);
/* The same with a script of one AGENT_EXIT 0: an address space to attach to. */
PEPROCESS agent_create_idle(uint32_t flags);
/* Made and run to its end (PsRunProcess): the exit status in *status.  NULL when it could
 * not be made. */
PEPROCESS agent_run(const struct agent_script *s, uint32_t flags, NTSTATUS *status);
/* Made (64-bit) and run, and it must end well: EXPECT exit status 0 and no fault. */
PEPROCESS agent_run_clean(struct ktest *t, const struct agent_script *s);

/* What operation `op` reported under key k (AGENT_KEY(op, k)).  A case failure when it
 * reported nothing, and then ~0. */
uint64_t agent_result(struct ktest *t, const PEPROCESS p, uint32_t op, uint32_t k);

/* Attached to an agent's process: a page committed with `protect` at buf (0: where
 * ZwAllocateVirtualMemory chooses; the MDL's virtual address says where), locked for `op` by
 * an MDL probed from UserMode; NULL, the case failed and nothing held, when it cannot be. */
PMDL agent_lock_user_page(struct ktest *t, uint64_t buf, ULONG protect, LOCK_OPERATION op);

#endif
