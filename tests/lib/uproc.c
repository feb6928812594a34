/* A test process's committed memory (tests/lib/uproc.h). */
#include "tests/lib/uproc.h"
#include "tests/lib/pattern.h"
#include "kernel/process.h"
#include "mm/uvm.h"

uint64_t uproc_commit(struct ktest *t, PEPROCESS p, uint64_t pages)
{
	uint64_t base = 0, size = pages * PAGE_SIZE;
	NTSTATUS st = uvm_allocate(&p->mm, &base, &size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	if (st != STATUS_SUCCESS) {
		KTEST_FAIL(t, "uvm_allocate = 0x%x", (ULONG)st);
		ktest_abort(t);
	}
	return base;
}

NTSTATUS uproc_write_page(PEPROCESS p, KAPC_STATE *apc, uint64_t base, unsigned i, uint32_t seed)
{
	static uint8_t page[PAGE_SIZE];
	pattern_fill(page, PAGE_SIZE, seed + i);
	KeStackAttachProcess(p, apc);
	NTSTATUS st = copy_to_user(base + (uint64_t)i * PAGE_SIZE, page, PAGE_SIZE);
	KeUnstackDetachProcess(apc);
	return st;
}
