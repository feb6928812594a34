/*
 * User processes on every CPU (kernel/process.c, mm/RULES.md "Per-CPU state"): a process
 * runs on any CPU, its system calls use that CPU's stack, its user-half faults are resolved
 * in that CPU's address space, a shootdown for its mappings goes only to the CPU that runs
 * it, and the NMI entry finds its CPU whatever GS base it interrupts.
 *
 * Every wait is bounded and no verdict depends on timing: processes meet at a barrier in a
 * page they share (each increments a counter, then spins until all have), the kernel
 * releases a spinning process by writing the word it spins on, and a process that must
 * fault is released anyway after the wait, so a missing fault is a failure, never a hang.
 * On one CPU every case is skipped (make test SMP=1).
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/expect.h"
#include "tests/lib/pte.h"
#include "tests/lib/scratch.h"
#include "include/wdm.h"
#include "include/mdlab/compat32.h"
#include "kernel/cpu.h"
#include "kernel/kstack.h"
#include "kernel/lab/monitor.h"
#include "kernel/lab/ps_cmds.h"
#include "kernel/lib.h"
#include "kernel/process.h"
#include "kernel/seh.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "kernel/trap.h"
#include "mm/layout.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/uvm.h"

#define TAG 0x50706D53u /* 'SmpP' */
#define WAIT_MS 60000u  /* how long a process may take: generous, only a hang fails by it */
#define FILL_PAGES 24
#define DEVICE "SMPPROC"
#define IOCTL_SMPPROC_MAP CTL_CODE(40001, 0x900, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define MSR_KERNEL_GS_BASE 0xC0000102u

static void need_cpus(struct ktest *t, unsigned n)
{
	if (smp_cpus_online() < n)
		KTEST_SKIP(t, "needs more CPUs (make test SMP=4)");
}

/* A process that does not end in WAIT_MS cannot be torn down (it runs): the machine stops. */
static void wait_or_stop(PEPROCESS p)
{
	if (!ps_wait(p, WAIT_MS))
		PANIC("smp_process: pid %u did not end within %u ms on CPU %d", p->pid, WAIT_MS, p->cpu);
}

/* Until *w == v or `ms` passed, answering cross-calls (the processes' system calls send
 * this CPU shootdowns for the kernel half). */
static bool wait_word(const volatile uint64_t *w, uint64_t v, uint32_t ms)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * ms;
	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != v) {
		if (rdtsc() > end)
			return false;
		smp_serve_mailbox();
		cpu_relax();
	}
	return true;
}

/* A whole page of nonpaged pool mapped into p at va (attached, UserMode, read-write), by an
 * MDL of its own; NULL when it could not be. */
static PMDL map_into(PEPROCESS p, void *page, uint64_t va)
{
	PMDL m = IoAllocateMdl(page, PAGE_SIZE, FALSE, FALSE, NULL);
	if (!m)
		return NULL;
	MmBuildMdlForNonPagedPool(m);
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	PVOID got = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, (PVOID)va, FALSE, NormalPagePriority);
	KeUnstackDetachProcess(&apc);
	if (got != (PVOID)va) {
		IoFreeMdl(m);
		return NULL;
	}
	return m;
}

static void unmap_from(PEPROCESS p, PMDL m, uint64_t va)
{
	KAPC_STATE apc;
	KeStackAttachProcess(p, &apc);
	MmUnmapLockedPages((PVOID)va, m);
	KeUnstackDetachProcess(&apc);
	IoFreeMdl(m);
}

/* The page va's 4 KiB leaf in root maps, through the direct map; NULL when not present. */
static const uint64_t *frame_in(const struct pt_root *root, uint64_t va)
{
	struct pt_query q;
	pt_query(root, va, &q);
	if (q.level != 1 || !mmt_has(q.entry[1], MMT_PTE_P) || !mmt_has(q.entry[1], MMT_PTE_US))
		return NULL;
	return pfn_to_virt(mmt_leaf_pa(q.entry[1], 1) >> PAGE_SHIFT);
}

/* ---- a program on every CPU at once -------------------------------------------------- */

/*
 * One agent per CPU, the boot CPU's last: each increments the counter of a page they all
 * map and spins until it reads the number of CPUs, so all run at once; then each commits
 * FILL_PAGES pages (a system call), writes a pattern of its own into every page (each first
 * touch a demand-zero fault on its CPU) and reads it back.  Each page must then hold its
 * process's pattern in that process's own page tables: a fault resolved in another CPU's
 * address space, or two system calls on one stack, breaks it.
 */
static void a_process_on_every_cpu_faults_and_calls_in_its_own_space(struct ktest *t)
{
	need_cpus(t, 2);
	unsigned n = smp_cpus_online();
	uint64_t *shared = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, shared != NULL);
	uint64_t bar = scratch_uva(PAGE_SIZE, 0), buf = scratch_uva(FILL_PAGES * PAGE_SIZE, 0);
	PEPROCESS p[SMP_MAX_CPUS] = { 0 };
	PMDL m[SMP_MAX_CPUS] = { 0 };
	uint32_t fill[SMP_MAX_CPUS], check[SMP_MAX_CPUS], alloc[SMP_MAX_CPUS];
	bool made = true;
	for (unsigned c = 0; c < n && made; c++) {
		struct agent_script s;
		agent_begin(&s);
		agent_add64(&s, bar, 1);
		agent_spin64(&s, bar, n);
		alloc[c] = agent_alloc(&s, buf, FILL_PAGES * PAGE_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		fill[c] = agent_fill64(&s, buf, FILL_PAGES, 0x5EED0000ull + c);
		check[c] = agent_check64(&s, buf, FILL_PAGES, 0x5EED0000ull + c);
		p[c] = agent_create(&s, 0);
		m[c] = p[c] ? map_into(p[c], shared, bar) : NULL;
		made = m[c] != NULL;
	}
	bool started[SMP_MAX_CPUS] = { 0 };
	if (made) {
		for (unsigned c = 1; c < n; c++) {
			started[c] = ps_start_on_cpu(p[c], c);
			EXPECT_TRUE(t, started[c]);
			if (!started[c]) /* stands in for it at the barrier, so the others go on */
				__atomic_fetch_add(&shared[0], 1, __ATOMIC_SEQ_CST);
		}
		PsRunProcess(p[0]); /* the boot CPU's, among them */
		for (unsigned c = 1; c < n; c++)
			if (started[c])
				wait_or_stop(p[c]);
	}
	for (unsigned c = 0; c < n && made; c++) {
		if (c && !started[c])
			continue;
		EXPECT_EQ(t, p[c]->exit_status, STATUS_SUCCESS);
		EXPECT_FALSE(t, p[c]->fault.happened);
		EXPECT_EQ(t, p[c]->last_cpu, c);
		EXPECT_EQ(t, agent_result(t, p[c], alloc[c], 0), STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p[c], fill[c], 0), 0);
		EXPECT_EQ(t, agent_result(t, p[c], check[c], 0), 0);
		/* The frames, found by walking each process's own tables, read through the
		 * direct map. */
		unsigned bad = 0;
		for (unsigned pg = 0; pg < FILL_PAGES; pg++) {
			const uint64_t *q = frame_in(&p[c]->mm.root, buf + pg * PAGE_SIZE);
			if (!q || q[0] != ((0x5EED0000ull + c) ^ pg) || q[511] != ~((0x5EED0000ull + c) ^ pg))
				bad++;
		}
		EXPECT_EQ(t, bad, 0);
	}
	EXPECT_EQ(t, shared[0], made ? n : 0);
	for (unsigned c = 0; c < n; c++) {
		if (m[c])
			unmap_from(p[c], m[c], bar);
		if (p[c])
			PsDestroyProcess(p[c]);
	}
	ExFreePoolWithTag(shared, TAG);
	ASSERT_TRUE(t, made);
}

/* ---- a driver maps into each CPU's process; the unmap reaches that CPU only -------------- */

/* The driver: IOCTL_SMPPROC_MAP maps the page of the calling CPU's slot into the calling
 * process at the address in the input (MmMapLockedPagesSpecifyCache, UserMode), and records
 * which process and CPU it mapped for.  The process is the one running on that CPU. */
static struct {
	PDEVICE_OBJECT dev;
	void *page[SMP_MAX_CPUS];
	PMDL mdl[SMP_MAX_CPUS];
	PEPROCESS mapped_for[SMP_MAX_CPUS];
	uint64_t va[SMP_MAX_CPUS];
	uint64_t frame[SMP_MAX_CPUS]; /* the dispatch routine's frame, in the system call's stack */
} drv;

static NTSTATUS smpproc_control(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
	UNREFERENCED_PARAMETER(DeviceObject);
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
	NTSTATUS st = STATUS_INVALID_DEVICE_REQUEST;
	ULONG_PTR info = 0;
	unsigned cpu = KeGetCurrentProcessorNumberEx(NULL);
	if (sp->Parameters.DeviceIoControl.IoControlCode == IOCTL_SMPPROC_MAP &&
	    sp->Parameters.DeviceIoControl.InputBufferLength == 8 &&
	    sp->Parameters.DeviceIoControl.OutputBufferLength == 8 && drv.mdl[cpu] && !drv.va[cpu]) {
		uint64_t *io = Irp->AssociatedIrp.SystemBuffer;
		PVOID got = MmMapLockedPagesSpecifyCache(drv.mdl[cpu], UserMode, MmCached, (PVOID)io[0], FALSE,
							 NormalPagePriority);
		st = got ? STATUS_SUCCESS : STATUS_INSUFFICIENT_RESOURCES;
		if (got) {
			drv.va[cpu] = (uint64_t)got;
			drv.mapped_for[cpu] = PsGetCurrentProcess();
			drv.frame[cpu] = (uint64_t)__builtin_frame_address(0);
			io[0] = (uint64_t)got;
			info = 8;
		}
	}
	Irp->IoStatus.Status = st;
	Irp->IoStatus.Information = info;
	IoCompleteRequest(Irp, IO_NO_INCREMENT);
	return st;
}

static int driver_init(struct ktest *t)
{
	(void)t;
	memset(&drv, 0, sizeof drv);
	for (unsigned c = 0; c < smp_cpus_online(); c++) {
		drv.page[c] = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
		drv.mdl[c] = drv.page[c] ? IoAllocateMdl(drv.page[c], PAGE_SIZE, FALSE, FALSE, NULL) : NULL;
		if (!drv.mdl[c])
			return 1;
		MmBuildMdlForNonPagedPool(drv.mdl[c]);
		((uint64_t *)drv.page[c])[0] = 0xC0DE0000ull + c;
	}
	return IoCreateDeviceLite(DEVICE, smpproc_control, NULL, &drv.dev) != STATUS_SUCCESS;
}

static void driver_exit(struct ktest *t)
{
	(void)t;
	if (drv.dev)
		IoDeleteDevice(drv.dev);
	for (unsigned c = 0; c < SMP_MAX_CPUS; c++) {
		if (drv.mdl[c])
			IoFreeMdl(drv.mdl[c]);
		if (drv.page[c])
			ExFreePoolWithTag(drv.page[c], TAG);
	}
	memset(&drv, 0, sizeof drv);
}

/*
 * An agent on each AP asks the driver to map its CPU's page at va (the system call runs on
 * that AP: the mapping lands in the process that AP runs), reads it (its TLB caches it),
 * says it is ready in the page and spins reading the page.  Then, one process at a time, the
 * boot CPU unmaps the page from that process: the shootdown must reach the process's CPU
 * (its tlb_flush_requests counts one more) and no other AP, and the spinning read must
 * fault at once on that CPU, not-present, user read, CR2 the word it spins on.  Without the
 * shootdown the stale entry would keep the read going until the kernel releases it.  The
 * driver's frames show each AP's system call on a kernel stack of its own.
 */
static void driver_mappings_on_each_ap_are_shot_down_on_that_ap_only(struct ktest *t)
{
	need_cpus(t, 3);
	unsigned n = smp_cpus_online();
	PEPROCESS p[SMP_MAX_CPUS] = { 0 };
	uint32_t rd[SMP_MAX_CPUS], ctl[SMP_MAX_CPUS], spin[SMP_MAX_CPUS];
	uint64_t va[SMP_MAX_CPUS];
	uint64_t out = scratch_uva(PAGE_SIZE, 0);
	for (unsigned c = 1; c < n; c++) {
		va[c] = scratch_uva(PAGE_SIZE, 0);
		struct agent_script s;
		agent_begin(&s);
		agent_alloc(&s, out, PAGE_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
		agent_open(&s, DEVICE);
		uint32_t arg = agent_report(&s, 0x5150, va[c]); /* its slot b holds va: the input */
		ctl[c] = agent_ioctl(&s, IOCTL_SMPPROC_MAP, agent_slot_va(arg, 2), 8, out, 8);
		rd[c] = agent_read64(&s, va[c]);
		agent_write64(&s, va[c] + 8, 1);
		spin[c] = agent_spin64(&s, va[c] + 16, 1);
		p[c] = agent_create(&s, 0);
		ASSERT_TRUE(t, p[c] != NULL);
	}
	for (unsigned c = 1; c < n; c++)
		ASSERT_TRUE(t, ps_start_on_cpu(p[c], c));
	bool ready = true;
	for (unsigned c = 1; c < n; c++)
		ready &= wait_word((uint64_t *)drv.page[c] + 1, 1, WAIT_MS);
	EXPECT_TRUE(t, ready);
	/* Each AP's system call ran on that AP's own kernel stack: frames at the same depth in
	 * one shared SYSCALL stack would coincide. */
	for (unsigned a = 1; a < n && ready; a++) {
		EXPECT_TRUE(t, kstack_contains(drv.frame[a], 8));
		for (unsigned b = a + 1; b < n; b++)
			EXPECT_GE(t, drv.frame[a] > drv.frame[b] ? drv.frame[a] - drv.frame[b] : drv.frame[b] - drv.frame[a],
				  PAGE_SIZE);
	}
	for (unsigned c = 1; c < n && ready; c++) {
		EXPECT_TRUE(t, drv.mapped_for[c] == p[c]);
		EXPECT_EQ(t, drv.va[c], va[c]);
		uint64_t before[SMP_MAX_CPUS];
		for (unsigned o = 0; o < n; o++)
			before[o] = kcpus[o].tlb_flush_requests;
		KAPC_STATE apc;
		KeStackAttachProcess(p[c], &apc);
		MmUnmapLockedPages((PVOID)va[c], drv.mdl[c]);
		KeUnstackDetachProcess(&apc);
		drv.va[c] = 0;
		EXPECT_GE(t, kcpus[c].tlb_flush_requests, before[c] + 1);
		for (unsigned o = 1; o < n; o++)
			if (o != c)
				EXPECT_EQ(t, kcpus[o].tlb_flush_requests, before[o]);
		if (!ps_wait(p[c], WAIT_MS)) {
			KTEST_FAIL(t, "pid %u on CPU %u read on through the unmapped page", p[c]->pid, c);
			((volatile uint64_t *)drv.page[c])[2] = 1; /* the stale read sees it and ends */
		}
	}
	for (unsigned c = 1; c < n; c++) {
		if (!ready)
			((volatile uint64_t *)drv.page[c])[2] = 1;
		wait_or_stop(p[c]);
		EXPECT_EQ(t, agent_result(t, p[c], ctl[c], 0), STATUS_SUCCESS);
		EXPECT_EQ(t, agent_result(t, p[c], rd[c], 0), 0xC0DE0000ull + c);
		EXPECT_EQ(t, p[c]->exit_status, STATUS_ACCESS_VIOLATION);
		EXPECT_TRUE(t, p[c]->fault.happened);
		EXPECT_EQ(t, p[c]->fault.vector, VEC_PAGE_FAULT);
		EXPECT_EQ(t, p[c]->fault.error_code, PF_U);
		EXPECT_EQ(t, p[c]->fault.address, va[c] + 16);
		EXPECT_EQ(t, p[c]->fault.cpu, c);
		(void)spin[c];
		if (drv.va[c]) { /* not unmapped above: the teardown does it */
			unmap_from(p[c], drv.mdl[c], va[c]);
			drv.mdl[c] = NULL;
			drv.va[c] = 0;
		}
		PsDestroyProcess(p[c]);
	}
}

/* ---- the NMI entry and the GS base --------------------------------------------------- */

/*
 * On an AP, in ring 0 with interrupts off, the kernel's own GS base is swapped out for a
 * hostile one — another CPU's struct kcpu, which a comparison with "some kcpu" would accept
 * — exactly the state between a SYSCALL and its SWAPGS.  Then the AP sends itself an NMI and
 * waits for it there.  The NMI must be counted in this AP's kcpu (and not the decoy's), it
 * must have found the hostile base (so it did arrive in the window), and the hostile base
 * must be in IA32_GS_BASE again after it, IA32_KERNEL_GS_BASE untouched.
 */
struct window_probe {
	unsigned cpu, decoy;
	uint64_t seen, gs_after, kgs_after;
	bool taken;
};

static void nmi_in_window(void *arg)
{
	struct window_probe *w = arg;
	struct kcpu *me = &kcpus[w->cpu];
	uint64_t kgs = rdmsr(MSR_KERNEL_GS_BASE), before = me->nmis_taken;
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	__asm__ volatile("cli" ::: "memory");
	wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)&kcpus[w->decoy]);
	__asm__ volatile("swapgs" ::: "memory"); /* GS base: the decoy; the kernel's in KERNEL_GS */
	lapic_send_ipi(me->apic_id, ICR_NMI | ICR_ASSERT);
	while (__atomic_load_n(&me->nmis_taken, __ATOMIC_ACQUIRE) == before && rdtsc() < end)
		cpu_relax();
	w->gs_after = rdmsr(MSR_GS_BASE);
	w->kgs_after = rdmsr(MSR_KERNEL_GS_BASE);
	__asm__ volatile("swapgs" ::: "memory");
	wrmsr(MSR_KERNEL_GS_BASE, kgs);
	__asm__ volatile("sti" ::: "memory");
	w->taken = me->nmis_taken != before;
	w->seen = me->nmi_saw_gs_base;
}

static void nmi_in_a_swapgs_window_finds_its_own_cpu(struct ktest *t)
{
	need_cpus(t, 3);
	struct window_probe w = { .cpu = 1, .decoy = 2 };
	uint64_t decoy_before = kcpus[2].nmis_taken;
	trap_expect_nmi(1);
	ASSERT_TRUE(t, smp_work_start(1, nmi_in_window, &w));
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_TRUE(t, w.taken);
	EXPECT_EQ(t, w.seen, (uint64_t)&kcpus[2]);
	EXPECT_EQ(t, w.gs_after, (uint64_t)&kcpus[2]);
	EXPECT_EQ(t, w.kgs_after, (uint64_t)&kcpus[1]);
	EXPECT_EQ(t, kcpus[2].nmis_taken, decoy_before);
	EXPECT_EQ(t, kcpus[1].nmi_expected, 0);
	EXPECT_EQ(t, kcpus[2].nmi_expected, 0);
}

/* Whether `ps`'s line for p ends with `tail` (its CPU and "ended by" columns). */
static bool ps_line_ends(PEPROCESS p, const char *tail)
{
	static char text[256];
	struct mon_out o = mon_buffer(text, sizeof text);
	ps_print_process(&o, p);
	size_t n = strlen(text), k = strlen(tail);
	return n >= k && !strcmp(text + n - k, tail);
}

/*
 * An NMI while an AP runs ring 3 with the user's GS base: the handler finds the AP's kcpu
 * (counted there, the user's base seen on entry), and the program goes on unharmed when the
 * kernel releases it.  Meanwhile `ps` shows it on that CPU.
 */
static void nmi_in_ring_3_on_an_ap_returns_to_the_program(struct ktest *t)
{
	need_cpus(t, 2);
	uint64_t *page = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, page != NULL);
	uint64_t va = scratch_uva(PAGE_SIZE, 0);
	struct agent_script s;
	agent_begin(&s);
	agent_write64(&s, va, 1);
	uint32_t spin = agent_spin64(&s, va + 8, 7);
	uint32_t after = agent_read64(&s, va + 16);
	PEPROCESS p = agent_create(&s, 0);
	PMDL m = p ? map_into(p, page, va) : NULL;
	if (m) {
		page[2] = 0xAF7E2;
		uint64_t before = kcpus[1].nmis_taken;
		ASSERT_TRUE(t, ps_start_on_cpu(p, 1));
		EXPECT_TRUE(t, wait_word(&page[0], 1, WAIT_MS)); /* in its spin, in ring 3 */
		EXPECT_TRUE(t, ps_line_ends(p, "  1  -\n"));   /* ps: on CPU 1, not ended */
		trap_expect_nmi(1);
		lapic_send_ipi(kcpus[1].apic_id, ICR_NMI | ICR_ASSERT);
		EXPECT_TRUE(t, wait_word(&kcpus[1].nmis_taken, before + 1, WAIT_MS));
		EXPECT_EQ(t, kcpus[1].nmi_saw_gs_base, 0); /* the user's GS base, never set */
		__atomic_store_n(&page[1], 7, __ATOMIC_RELEASE);
		wait_or_stop(p);
		EXPECT_EQ(t, p->exit_status, STATUS_SUCCESS);
		EXPECT_FALSE(t, p->fault.happened);
		EXPECT_EQ(t, agent_result(t, p, after, 0), 0xAF7E2);
		EXPECT_TRUE(t, ps_line_ends(p, "  -  -\n"));   /* ps: not running any more */
		(void)spin;
		unmap_from(p, m, va);
	}
	if (p)
		PsDestroyProcess(p);
	ExFreePoolWithTag(page, TAG);
	ASSERT_TRUE(t, m != NULL);
}

/* ---- a whole life on an AP ----------------------------------------------------------- */

/*
 * A process made, run and destroyed on an AP: its demand-zero commit and its system calls
 * work there, its access to an unmapped address (the gap below its stack) ends it with the
 * fault taken on that AP, and afterwards the AP is back on the kernel's tables with no
 * process, no current address space, and the kernel's previous mode; the case's counters
 * (free pages, pool, system PTEs, locked pages) are checked by the framework.
 */
struct life {
	PEPROCESS p;
	uint64_t buf, hole;
	uint32_t alloc, check, bad;
	NTSTATUS st;
	struct process_fault fault;
	uint64_t alloc_st, checked, bad_reported;
	uint32_t pid;
	bool made, reports;
};

static void whole_life(void *arg)
{
	struct life *l = arg;
	struct agent_script s;
	agent_begin(&s);
	l->alloc = agent_alloc(&s, l->buf, 4 * PAGE_SIZE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	agent_fill64(&s, l->buf, 4, 0x11FE);
	l->check = agent_check64(&s, l->buf, 4, 0x11FE);
	l->bad = agent_read64(&s, l->hole);
	l->p = agent_create(&s, 0);
	l->made = l->p != NULL;
	if (!l->p)
		return;
	l->pid = l->p->pid;
	l->st = PsRunProcess(l->p);
	l->fault = l->p->fault;
	uint64_t v;
	l->reports = ps_report(l->p, AGENT_KEY(l->alloc, 0), &l->alloc_st) &&
		     ps_report(l->p, AGENT_KEY(l->check, 0), &l->checked) &&
		     !ps_report(l->p, AGENT_KEY(l->bad, 0), &v);
	PsDestroyProcess(l->p);
}

static void a_whole_process_life_on_an_ap_leaves_it_as_it_was(struct ktest *t)
{
	need_cpus(t, 2);
	unsigned ap = smp_cpus_online() - 1;
	struct life l = { .buf = scratch_uva(4 * PAGE_SIZE, 0) };
	l.hole = ALIGN_DOWN(MM_USER_TOP_64 + 1, MM_ALLOCATION_GRANULARITY) - 2 * PAGE_SIZE;
	ASSERT_TRUE(t, smp_work_start(ap, whole_life, &l));
	ASSERT_TRUE(t, smp_work_wait(ap));
	ASSERT_TRUE(t, l.made);
	EXPECT_EQ(t, l.st, STATUS_ACCESS_VIOLATION);
	EXPECT_TRUE(t, l.reports);
	EXPECT_EQ(t, l.alloc_st, STATUS_SUCCESS);
	EXPECT_EQ(t, l.checked, 0);
	EXPECT_TRUE(t, l.fault.happened);
	EXPECT_EQ(t, l.fault.vector, VEC_PAGE_FAULT);
	EXPECT_EQ(t, l.fault.error_code, PF_U);
	EXPECT_EQ(t, l.fault.address, l.hole);
	EXPECT_EQ(t, l.fault.cpu, ap);
	EXPECT_TRUE(t, kcpus[ap].tlb_loaded == &kernel_root);
	EXPECT_TRUE(t, kcpus[ap].mm_loaded == NULL);
	EXPECT_TRUE(t, kcpus[ap].running == NULL);
	EXPECT_EQ(t, kcpus[ap].previous_mode, KernelMode);
	EXPECT_TRUE(t, ps_lookup(l.pid) == NULL);
}

/* ---- the SEH dispatcher on two CPUs at once ------------------------------------------- */

/*
 * The boot CPU and an AP each raise an exception of their own and meet inside their
 * filters (each filter counts itself in and waits for the other), so both dispatchers have a
 * filter running at once, with the stack under it saved.  Each handler must get its own
 * code: one shared filter state would resume one CPU's dispatcher on the other's stack.
 */
static struct {
	volatile uint32_t in, met;
	volatile bool entered[2];
	NTSTATUS seen[2], got[2];
} meet;

/* The machine's __except evaluates its expression again when the handler is resumed: only
 * the first evaluation (phase 1) counts in. */
static int meeting_filter(unsigned slot, NTSTATUS code)
{
	if (meet.entered[slot])
		return EXCEPTION_EXECUTE_HANDLER;
	meet.entered[slot] = true;
	meet.seen[slot] = code;
	__atomic_fetch_add(&meet.in, 1, __ATOMIC_SEQ_CST);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (__atomic_load_n(&meet.in, __ATOMIC_ACQUIRE) < 2 && rdtsc() < end) {
		smp_serve_mailbox();
		cpu_relax();
	}
	if (__atomic_load_n(&meet.in, __ATOMIC_ACQUIRE) == 2)
		__atomic_fetch_add(&meet.met, 1, __ATOMIC_SEQ_CST);
	return EXCEPTION_EXECUTE_HANDLER;
}

static __attribute__((noinline)) void raise_and_meet(unsigned slot)
{
	__try {
		ExRaiseStatus((NTSTATUS)(0xE0000100u + slot));
	} __except (meeting_filter(slot, GetExceptionCode())) {
		meet.got[slot] = GetExceptionCode();
	}
}

static void raise_on_ap(void *arg)
{
	(void)arg;
	raise_and_meet(1);
}

static void seh_filters_on_two_cpus_at_once_keep_their_own_state(struct ktest *t)
{
	need_cpus(t, 2);
	memset(&meet, 0, sizeof meet);
	ASSERT_TRUE(t, smp_work_start(1, raise_on_ap, NULL));
	raise_and_meet(0);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_EQ(t, meet.met, 2); /* both filters ran at once */
	for (unsigned i = 0; i < 2; i++) {
		EXPECT_EQ(t, meet.seen[i], (NTSTATUS)(0xE0000100u + i));
		EXPECT_EQ(t, meet.got[i], (NTSTATUS)(0xE0000100u + i));
	}
}

/* ---- a 32-bit program on an AP -------------------------------------------------------- */

/* The compatibility-mode SYSCALL (CSTAR) on an AP finds that AP's stack: the 32-bit image's
 * exit comes back with its status, and its far jump to 64-bit code and SYSCALL there (LSTAR)
 * ends it as on the boot CPU (mm/RULES.md, "CPU entry points"). */
static void a_32_bit_program_on_an_ap_enters_through_that_aps_stack(struct ktest *t)
{
	need_cpus(t, 2);
	static const uint64_t nothing[] = { C32_NOTHING }, far64[] = { C32_SYSCALL64 };
	PEPROCESS p = PsCreateProcess("compat32", 0, nothing, 1);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, ps_run_on_cpu(p, 1), STATUS_SUCCESS);
	EXPECT_EQ(t, p->last_cpu, 1);
	PsDestroyProcess(p);
	p = PsCreateProcess("compat32", 0, far64, 1);
	ASSERT_TRUE(t, p != NULL);
	EXPECT_EQ(t, ps_run_on_cpu(p, 1), STATUS_INVALID_SYSTEM_SERVICE);
	EXPECT_EQ(t, p->last_cpu, 1);
	PsDestroyProcess(p);
}

static struct ktest_case smp_process_cases[] = {
	KTEST_CASE(a_32_bit_program_on_an_ap_enters_through_that_aps_stack),
	KTEST_CASE(seh_filters_on_two_cpus_at_once_keep_their_own_state),
	KTEST_CASE(a_process_on_every_cpu_faults_and_calls_in_its_own_space),
	KTEST_CASE(a_whole_process_life_on_an_ap_leaves_it_as_it_was),
	KTEST_CASE(nmi_in_a_swapgs_window_finds_its_own_cpu),
	KTEST_CASE(nmi_in_ring_3_on_an_ap_returns_to_the_program),
	{ 0 }
};
KTEST_SUITE(smp_process, smp_process_cases);

static struct ktest_case smp_process_driver_cases[] = {
	KTEST_CASE(driver_mappings_on_each_ap_are_shot_down_on_that_ap_only),
	{ 0 }
};
KTEST_SUITE(smp_process_driver, smp_process_driver_cases, .init = driver_init, .exit = driver_exit);
