/* Scripts for the agent (see agent.h). */
#include "tests/lib/agent.h"
#include "kernel/bugcheck.h"
#include <stddef.h>
#include "kernel/lib.h"
#include "kernel/seh.h"
#include "mm/uvm.h"

void agent_begin(struct agent_script *s) { memset(s, 0, sizeof *s); }

uint32_t agent_op(struct agent_script *s, enum agent_op op, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
		  uint64_t e)
{
	if (1 + (s->nops + 1) * AGENT_OP_SLOTS > USER_PARAMS_ARGS)
		PANIC("agent script: more than %u operations", (USER_PARAMS_ARGS - 1) / AGENT_OP_SLOTS);
	uint32_t i = s->nops++;
	uint64_t *o = &s->args[1 + i * AGENT_OP_SLOTS];
	o[0] = op, o[1] = a, o[2] = b, o[3] = c, o[4] = d, o[5] = e;
	s->args[0] = s->nops;
	return i;
}

uint32_t agent_read8(struct agent_script *s, uint64_t va) { return agent_op(s, AGENT_READ8, va, 0, 0, 0, 0); }
uint32_t agent_read64(struct agent_script *s, uint64_t va) { return agent_op(s, AGENT_READ64, va, 0, 0, 0, 0); }

uint32_t agent_write8(struct agent_script *s, uint64_t va, uint8_t v)
{
	return agent_op(s, AGENT_WRITE8, va, v, 0, 0, 0);
}

uint32_t agent_write64(struct agent_script *s, uint64_t va, uint64_t v)
{
	return agent_op(s, AGENT_WRITE64, va, v, 0, 0, 0);
}

uint32_t agent_exec(struct agent_script *s, uint64_t va) { return agent_op(s, AGENT_EXEC, va, 0, 0, 0, 0); }

uint32_t agent_alloc(struct agent_script *s, uint64_t base, uint64_t size, uint32_t type, uint32_t protect)
{
	return agent_op(s, AGENT_ALLOC, base, size, type, protect, 0);
}

uint32_t agent_free(struct agent_script *s, uint64_t base, uint64_t size, uint32_t type)
{
	return agent_op(s, AGENT_FREE, base, size, type, 0, 0);
}

uint32_t agent_protect(struct agent_script *s, uint64_t base, uint64_t size, uint32_t protect)
{
	return agent_op(s, AGENT_PROTECT, base, size, protect, 0, 0);
}

uint32_t agent_unmap_view(struct agent_script *s, uint64_t base)
{
	return agent_op(s, AGENT_UNMAP_VIEW, base, 0, 0, 0, 0);
}

/* The name packed as AGENT_OPEN takes it: up to 39 characters, little-endian, in a-e. */
uint32_t agent_open(struct agent_script *s, const char *name)
{
	uint64_t v[5] = { 0 };
	size_t n = strlen(name);
	if (n > 39)
		PANIC("agent script: device name %s longer than 39 characters", name);
	for (size_t i = 0; i < n; i++)
		v[i / 8] |= (uint64_t)(uint8_t)name[i] << (8 * (i % 8));
	return agent_op(s, AGENT_OPEN, v[0], v[1], v[2], v[3], v[4]);
}

uint32_t agent_ioctl(struct agent_script *s, uint32_t code, uint64_t in, uint32_t in_len, uint64_t out,
		     uint32_t out_len)
{
	return agent_op(s, AGENT_IOCTL, code, in, in_len, out, out_len);
}

uint32_t agent_read_file(struct agent_script *s, uint64_t buf, uint32_t len, uint64_t offset)
{
	return agent_op(s, AGENT_READ_FILE, buf, len, offset, 0, 0);
}

uint32_t agent_write_file(struct agent_script *s, uint64_t buf, uint32_t len, uint64_t offset)
{
	return agent_op(s, AGENT_WRITE_FILE, buf, len, offset, 0, 0);
}

uint32_t agent_pattern32(struct agent_script *s, uint64_t va, uint64_t bytes, uint32_t seed)
{
	return agent_op(s, AGENT_PATTERN32, va, bytes, seed, 0, 0);
}

uint32_t agent_add64(struct agent_script *s, uint64_t va, uint64_t v) { return agent_op(s, AGENT_ADD64, va, v, 0, 0, 0); }

uint32_t agent_spin64(struct agent_script *s, uint64_t va, uint64_t v) { return agent_op(s, AGENT_SPIN64, va, v, 0, 0, 0); }

uint32_t agent_fill64(struct agent_script *s, uint64_t va, uint64_t pages, uint64_t seed)
{
	return agent_op(s, AGENT_FILL64, va, pages, seed, 0, 0);
}

uint32_t agent_check64(struct agent_script *s, uint64_t va, uint64_t pages, uint64_t seed)
{
	return agent_op(s, AGENT_CHECK64, va, pages, seed, 0, 0);
}

uint32_t agent_report(struct agent_script *s, uint64_t key, uint64_t value)
{
	return agent_op(s, AGENT_REPORT, key, value, 0, 0, 0);
}

uint32_t agent_syscall(struct agent_script *s, uint64_t nr, uint64_t rdi, uint64_t rsi, uint64_t rdx, uint64_t r10)
{
	return agent_op(s, AGENT_SYSCALL, nr, rdi, rsi, rdx, r10);
}

uint64_t agent_slot_va(uint32_t op, unsigned slot)
{
	return USER_PARAMS_VA + offsetof(struct user_params, args) + (1 + (uint64_t)op * AGENT_OP_SLOTS + slot) * 8;
}

uint32_t agent_exit(struct agent_script *s, uint64_t status) { return agent_op(s, AGENT_EXIT, status, 0, 0, 0, 0); }

PEPROCESS agent_create(const struct agent_script *s, uint32_t flags)
{
	return PsCreateProcess("agent", flags, s->args, 1 + s->nops * AGENT_OP_SLOTS);
}

PEPROCESS agent_create_idle(uint32_t flags)
{
	struct agent_script s;
	agent_begin(&s);
	agent_exit(&s, 0);
	return agent_create(&s, flags);
}

PEPROCESS agent_run(const struct agent_script *s, uint32_t flags, NTSTATUS *status)
{
	PEPROCESS p = agent_create(s, flags);
	if (p)
		*status = PsRunProcess(p);
	return p;
}

PEPROCESS agent_run_clean(struct ktest *t, const struct agent_script *s)
{
	NTSTATUS st;
	PEPROCESS p = agent_run(s, 0, &st);
	if (!p)
		return NULL;
	EXPECT_EQ(t, (ULONG)st, 0);
	EXPECT_FALSE(t, p->fault.happened);
	return p;
}

uint64_t agent_result(struct ktest *t, const PEPROCESS p, uint32_t op, uint32_t k)
{
	uint64_t v;
	if (ps_report(p, AGENT_KEY(op, k), &v))
		return v;
	KTEST_FAIL(t, "agent operation %u reported nothing under key %u", op, k);
	return ~0ull;
}

PMDL agent_lock_user_page(struct ktest *t, uint64_t buf, ULONG protect, LOCK_OPERATION op)
{
	PVOID b = (PVOID)buf;
	SIZE_T size = PAGE_SIZE;
	NTSTATUS st = ZwAllocateVirtualMemory(NtCurrentProcess(), &b, 0, &size, MEM_RESERVE | MEM_COMMIT, protect);
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	PMDL m = st == STATUS_SUCCESS ? IoAllocateMdl(b, PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
	volatile bool locked = false;
	if (m) {
		__try {
			MmProbeAndLockPages(m, UserMode, op);
			locked = true;
		} __except (EXCEPTION_EXECUTE_HANDLER) {
			KTEST_FAIL(t, "the probe raised 0x%x", (ULONG)GetExceptionCode());
		}
	}
	if (m && !locked) {
		IoFreeMdl(m);
		m = NULL;
	}
	return m;
}
