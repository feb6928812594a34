/* A process's memory (see mmproc.h): its setup, and which address space is loaded. */
#include "mm/mmproc.h"
#include "kernel/cpu.h"
#include "kernel/lib.h"
#include "kernel/smp/spinlock.h"
#include "kernel/smp/percpu.h"
#include "mm/layout.h"
#include "mm/tlb.h"

static struct mm_process *live;   /* every address space mm_process_init made, not destroyed */
/* The list's own lock: processes are made and destroyed on any CPU.  Nothing is taken under it. */
static KSPIN_LOCK live_lock;

bool mm_process_init(struct mm_process *mm, PEPROCESS process, bool wow64)
{
	memset(mm, 0, sizeof *mm);
	mm->lock = (struct klock)KLOCK_INIT(KLOCK_PROCESS);
	mm->process = process;
	mm->highest_user = wow64 ? MM_USER_TOP_WOW64 : MM_USER_TOP_64;
	if (!pt_root_create(&mm->root))
		return false;
	mm->root.guard = &mm->lock;
	KIRQL irql;
	KeAcquireSpinLock(&live_lock, &irql);
	mm->next_live = live;
	live = mm;
	KeReleaseSpinLock(&live_lock, irql);
	return true;
}

void mm_process_destroy(struct mm_process *mm)
{
	KIRQL irql;
	KeAcquireSpinLock(&live_lock, &irql);
	for (struct mm_process **pp = &live; *pp; pp = &(*pp)->next_live)
		if (*pp == mm) {
			*pp = mm->next_live;
			break;
		}
	KeReleaseSpinLock(&live_lock, irql);
	pt_root_destroy(&mm->root);
}

struct mm_process *mm_live_processes(void) { return live; }

void mm_for_each_space(bool (*fn)(struct mm_process *mm, void *ctx), void *ctx)
{
	KIRQL irql;
	KeAcquireSpinLock(&live_lock, &irql);
	for (struct mm_process *mm = live; mm; mm = mm->next_live) {
		KIRQL sirql = mm_space_lock(mm);
		bool more = fn(mm, ctx);
		mm_space_unlock(mm, sirql);
		if (!more)
			break;
	}
	KeReleaseSpinLock(&live_lock, irql);
}

/* Per CPU (struct kcpu.mm_loaded, read by mm_current): each CPU runs in its own address
 * space, and a user-half fault is resolved in the space of the CPU that took it.  mm_loaded
 * and tlb_loaded change together, here, with interrupts off, so an IPI handler on this CPU
 * never sees one without the other. */

void mm_switch(struct mm_process *mm)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory");
	this_cpu()->mm_loaded = mm;
	tlb_switch_to(mm ? &mm->root : &kernel_root);
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
}
