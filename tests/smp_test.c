/*
 * The processors (kernel/smp/): the APs are up with the boot CPU's controls, each has its
 * own per-CPU data behind GS and its own __try chain, cross-calls reach every CPU, and the
 * TLB shootdown (mm/RULES.md, "TLB shootdown") is proven the only way it can be: an AP
 * caches a system-PTE translation (or a user mapping's, in a process's address space) by
 * reading through it, the boot CPU unmaps or write-protects it, and the AP's next access
 * faults at once (vector, error code, CR2).  The
 * same case with the IPI switched off (tlb_test_set_shootdown) shows the stale entry
 * surviving on the AP, which proves the case can fail.
 *
 * Every wait for the other CPU is bounded (SMP_WAIT_MS) and fails the case when it runs
 * out; no verdict depends on how fast either CPU runs.  On one CPU the cases that need two
 * are skipped.
 */
#include "kernel/ktest.h"
#include "tests/lib/agent.h"
#include "tests/lib/counters.h"
#include "tests/lib/expect.h"
#include "include/wdm.h"
#include "kernel/cpu.h"
#include "kernel/faultcap.h"
#include "kernel/intr/clock.h"
#include "kernel/lib.h"
#include "kernel/seh.h"
#include "kernel/smp/percpu.h"
#include "kernel/process.h"
#include "kernel/smp/smp.h"
#include "mm/mm.h"
#include "mm/memtype.h"
#include "mm/mmproc.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/tlb.h"

#define TAG 0x706D5354u /* 'TSmp' */
#define PATTERN 0x5A

static void need_two(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU (make test SMP=2 or more)");
}

/* ---- per-CPU data and cross-calls ------------------------------------------------------- */

struct who {
	uint32_t number[SMP_MAX_CPUS];
	uint64_t gs_base[SMP_MAX_CPUS];
	uint32_t apic_seen[SMP_MAX_CPUS];
	volatile uint32_t calls;
};

static void record_who(void *arg)
{
	struct who *w = arg;
	unsigned n = KeGetCurrentProcessorNumberEx(NULL);
	PROCESSOR_NUMBER pn;
	KeGetCurrentProcessorNumberEx(&pn);
	w->number[n] = pn.Group == 0 && pn.Number == n ? n : ~0u;
	w->gs_base[n] = rdmsr(MSR_GS_BASE);
	w->apic_seen[n] = this_cpu()->apic_id;
	__atomic_fetch_add(&w->calls, 1, __ATOMIC_SEQ_CST);
}

/* Each CPU answers a cross-call with its own number and the GS base of its own struct kcpu;
 * KeQueryActiveProcessorCount's mask has exactly those CPUs. */
static void every_cpu_has_its_own_gs(struct ktest *t)
{
	KAFFINITY mask = 0;
	ULONG n = KeQueryActiveProcessorCount(&mask);
	EXPECT_EQ(t, n, smp_cpus_online());
	EXPECT_EQ(t, mask, n >= 64 ? ~0ull : (1ull << n) - 1);
	struct who w;
	memset(&w, 0, sizeof w);
	ASSERT_TRUE(t, smp_call_mask(mask, record_who, &w));
	EXPECT_EQ(t, w.calls, n);
	for (unsigned i = 0; i < n; i++) {
		EXPECT_EQ(t, w.number[i], i);
		EXPECT_EQ(t, w.gs_base[i], (uint64_t)&kcpus[i]);
		for (unsigned j = 0; j < i; j++)
			EXPECT_NE(t, w.apic_seen[i], w.apic_seen[j]);
	}
	EXPECT_EQ(t, KeGetCurrentProcessorNumberEx(NULL), 0u);
}

/* The cross-call reaches only the CPUs asked for, and each one's IPI count goes up. */
static void cross_call_reaches_only_its_mask(struct ktest *t)
{
	need_two(t);
	unsigned last = smp_cpus_online() - 1;
	uint64_t ipis = kcpus[last].ipis_received;
	struct who w;
	memset(&w, 0, sizeof w);
	memset(w.number, 0xFF, sizeof w.number);
	ASSERT_TRUE(t, smp_call_mask(1ull << last, record_who, &w));
	EXPECT_EQ(t, w.calls, 1u);
	EXPECT_EQ(t, w.number[last], last);
	for (unsigned i = 0; i < last; i++)
		EXPECT_EQ(t, w.number[i], ~0u);
	EXPECT_EQ(t, kcpus[last].ipis_received, ipis + 1);
}

/* The SYSCALL MSRs (SDM Vol. 4, Table 2-2: IA32_STAR, LSTAR, CSTAR, FMASK), read raw. */
#define TEST_MSR_STAR 0xC0000081u
#define TEST_MSR_LSTAR 0xC0000082u
#define TEST_MSR_CSTAR 0xC0000083u
#define TEST_MSR_FMASK 0xC0000084u
static const uint32_t syscall_msrs[4] = { TEST_MSR_STAR, TEST_MSR_LSTAR, TEST_MSR_CSTAR, TEST_MSR_FMASK };

static void read_syscall_msrs(void *arg)
{
	uint64_t (*out)[4] = arg;
	for (int i = 0; i < 4; i++)
		out[smp_this_cpu()][i] = rdmsr(syscall_msrs[i]);
}

/* Every CPU has the boot CPU's SYSCALL entry points (LSTAR, and CSTAR for compatibility
 * mode), selectors and flag mask, so a SYSCALL on any CPU enters the kernel the same way. */
static void syscall_msrs_on_every_cpu(struct ktest *t)
{
	need_two(t);
	uint64_t v[SMP_MAX_CPUS][4];
	memset(v, 0, sizeof v);
	ASSERT_TRUE(t, smp_call_mask(smp_others_mask() | 1, read_syscall_msrs, v));
	EXPECT_NE(t, v[0][1], 0u);
	EXPECT_NE(t, v[0][2], 0u);
	for (unsigned c = 1; c < smp_cpus_online(); c++)
		for (int i = 0; i < 4; i++)
			EXPECT_EQ(t, v[c][i], v[0][i]);
}

/* ---- the audit -------------------------------------------------------------------------- */

/* IA32_PAT, CR0, CR4 and EFER read on every CPU equal the boot CPU's. */
static void regs_identical_on_every_cpu(struct ktest *t)
{
	struct smp_cpu_regs regs[SMP_MAX_CPUS];
	EXPECT_EQ(t, smp_audit(regs, SMP_MAX_CPUS), 0u);
	for (unsigned i = 0; i < smp_cpus_online(); i++) {
		EXPECT_TRUE(t, regs[i].answered);
		EXPECT_EQ(t, regs[i].pat, pat_mdlab_value());
		EXPECT_TRUE(t, regs[i].cr0 & CR0_WP);
		EXPECT_TRUE(t, regs[i].efer & EFER_NXE);
	}
}

/* Slot 7 to another valid encoding: UC (0) unless it is UC already, then WB (6). */
static void pat_slot7_changed(void *arg)
{
	(void)arg; /* a cross-call's argument: none */
	uint64_t v = pat_read_msr(), slot7 = (v >> 56) & 0xFF;
	wrmsr(MSR_PAT, (v & ~(0xFFull << 56)) | (uint64_t)(slot7 ? 0 : 6) << 56);
}

static void pat_back(void *arg)
{
	(void)arg; /* a cross-call's argument: none */
	pat_init_ap();
}

/* The audit is not blind: one AP with a different PAT is one difference. */
static void audit_sees_a_different_pat(struct ktest *t)
{
	need_two(t);
	unsigned last = smp_cpus_online() - 1;
	ASSERT_TRUE(t, smp_call_mask(1ull << last, pat_slot7_changed, NULL));
	struct smp_cpu_regs regs[SMP_MAX_CPUS];
	unsigned bad = smp_audit(regs, SMP_MAX_CPUS);
	ASSERT_TRUE(t, smp_call_mask(1ull << last, pat_back, NULL));
	EXPECT_EQ(t, bad, 1u);
	EXPECT_NE(t, regs[last].pat, regs[0].pat);
	EXPECT_EQ(t, smp_audit(regs, SMP_MAX_CPUS), 0u);
}

/* ---- the shootdown proof ---------------------------------------------------------------- */

/* What the AP does: one access through va (so its TLB holds the translation), signal, wait
 * for the boot CPU's change, the same access again; both faults captured on the AP. */
struct probe {
	uint64_t va;
	bool write;
	bool quiet;     /* interrupts off on CPU 1 from its first access to its second */
	volatile uint32_t first_done, changed, timed_out;
	volatile uint32_t second_done;
	bool first_ok, second_ok;
	uint8_t first, second;
	struct faultcap c1, c2;
	struct seh_frame *chain_after;
};

static bool access(struct probe *p, uint8_t *out, struct faultcap *c)
{
	if (p->write) {
		*out = PATTERN;
		return faultcap_try_store8(p->va, PATTERN, c);
	}
	return faultcap_try_load8(p->va, out, c);
}

/* A case with the IPI off asks for a quiet window (p->quiet): no interrupt on CPU 1 between
 * its two accesses, so no handler's own flush or working set (the clock's, an idle wake's)
 * can drop the entry the case shows to be stale.  CPU 1 still answers cross-calls while it
 * waits (smp_wait_flag serves the mailbox with interrupts off), so a shootdown that is sent
 * reaches it either way. */
static void probe_on_ap(void *arg)
{
	struct probe *p = arg;
	bool quiet = p->quiet && (read_rflags() & RFLAGS_IF);
	if (quiet)
		__asm__ volatile("cli" ::: "memory");
	p->first_ok = access(p, &p->first, &p->c1);
	__atomic_store_n(&p->first_done, 1, __ATOMIC_SEQ_CST);
	if (!smp_wait_flag(&p->changed)) {
		p->timed_out = 1;
	} else {
		p->second_ok = access(p, &p->second, &p->c2);
		p->chain_after = this_cpu()->seh_chain;
		__atomic_store_n(&p->second_done, 1, __ATOMIC_SEQ_CST);
	}
	if (quiet)
		__asm__ volatile("sti" ::: "memory");
}

/* A locked MDL over a page of pool, mapped in system PTEs with MmMapLockedPagesSpecifyCache. */
struct sysmap {
	uint8_t *buf;
	PMDL mdl;
	uint8_t *va;
};

static void sysmap_make(struct ktest *t, struct sysmap *m)
{
	m->buf = ExAllocatePool2(POOL_FLAG_NON_PAGED, PAGE_SIZE, TAG);
	ASSERT_TRUE(t, m->buf != NULL);
	memset(m->buf, PATTERN, PAGE_SIZE);
	m->mdl = IoAllocateMdl(m->buf, PAGE_SIZE, FALSE, FALSE, NULL);
	ASSERT_TRUE(t, m->mdl != NULL);
	MmProbeAndLockPages(m->mdl, KernelMode, IoWriteAccess);
	m->va = MmMapLockedPagesSpecifyCache(m->mdl, KernelMode, MmCached, NULL, FALSE, NormalPagePriority);
	ASSERT_TRUE(t, m->va != NULL);
}

static void sysmap_free(struct sysmap *m, bool mapped)
{
	if (mapped)
		MmUnmapLockedPages(m->va, m->mdl);
	MmUnlockPages(m->mdl);
	IoFreeMdl(m->mdl);
	ExFreePoolWithTag(m->buf, TAG);
}

/* Start the probe on CPU 1 and wait for its first access. */
static void probe_start_quiet(struct ktest *t, struct probe *p, uint64_t va, bool write, bool quiet)
{
	memset(p, 0, sizeof *p);
	p->va = va;
	p->write = write;
	p->quiet = quiet;
	ASSERT_TRUE(t, smp_work_start(1, probe_on_ap, p));
	if (!smp_wait_flag(&p->first_done)) {
		KTEST_FAIL(t, "CPU 1 did not make its first access within %u ms", SMP_WAIT_MS);
		ASSERT_TRUE(t, smp_work_wait(1));
	}
}

static void probe_start(struct ktest *t, struct probe *p, uint64_t va, bool write)
{
	probe_start_quiet(t, p, va, write, false);
}

static void probe_finish(struct ktest *t, struct probe *p)
{
	__atomic_store_n(&p->changed, 1, __ATOMIC_SEQ_CST);
	ASSERT_TRUE(t, smp_work_wait(1));
	EXPECT_FALSE(t, p->timed_out);
	EXPECT_TRUE(t, p->first_ok);
	EXPECT_EQ(t, p->first, PATTERN);
	EXPECT_TRUE(t, p->chain_after == NULL); /* the AP's __try frames are all gone */
}

/* Drop whatever stale entry a case with the IPI off left on the other CPUs, before the
 * range or the frame can be used again. */
static void flush_others(void) { tlb_flush_all(&kernel_root); }

/* MmUnmapLockedPages on the boot CPU: the AP's next read of the address is a not-present
 * #PF at that address, at once. */
static void unmap_faults_on_the_other_cpu(struct ktest *t)
{
	need_two(t);
	struct sysmap m;
	sysmap_make(t, &m);
	struct probe p;
	probe_start(t, &p, (uint64_t)m.va, false);
	struct tlb_stats s0, s1;
	tlb_get_stats(&s0);
	MmUnmapLockedPages(m.va, m.mdl);
	tlb_get_stats(&s1);
	probe_finish(t, &p);
	EXPECT_FALSE(t, p.second_ok);
	EXPECT_PAGE_FAULT(t, &p.c2, PF_READ_NOT_PRESENT, (uint64_t)m.va);
	EXPECT_GE(t, s1.shootdowns, s0.shootdowns + 1);
	sysmap_free(&m, false);
}

/* The same with the shootdown switched off: the AP still reads the old frame through the
 * address that is no longer mapped, which is what the case above would see without the
 * IPI. */
static void unmap_leaves_a_stale_entry_without_the_ipi(struct ktest *t)
{
	need_two(t);
	struct sysmap m;
	sysmap_make(t, &m);
	struct probe p;
	probe_start_quiet(t, &p, (uint64_t)m.va, false, true);
	tlb_test_set_shootdown(false);
	MmUnmapLockedPages(m.va, m.mdl);
	tlb_test_set_shootdown(true);
	probe_finish(t, &p);
	flush_others();
	EXPECT_TRUE(t, p.second_ok);
	EXPECT_EQ(t, p.second, PATTERN);
	sysmap_free(&m, false);
}

/* MmProtectMdlSystemAddress(PAGE_READONLY) on the boot CPU: the AP, which wrote through the
 * mapping, faults on its next write (a protection #PF, write, at the address). */
static void protect_faults_on_the_other_cpu(struct ktest *t)
{
	need_two(t);
	struct sysmap m;
	sysmap_make(t, &m);
	struct probe p;
	probe_start(t, &p, (uint64_t)m.va, true);
	EXPECT_EQ(t, MmProtectMdlSystemAddress(m.mdl, PAGE_READONLY), STATUS_SUCCESS);
	probe_finish(t, &p);
	EXPECT_FALSE(t, p.second_ok);
	EXPECT_PAGE_FAULT(t, &p.c2, PF_WRITE_PROTECTION, (uint64_t)m.va);
	sysmap_free(&m, true);
}

static void protect_leaves_a_stale_entry_without_the_ipi(struct ktest *t)
{
	need_two(t);
	struct sysmap m;
	sysmap_make(t, &m);
	struct probe p;
	probe_start_quiet(t, &p, (uint64_t)m.va, true, true);
	tlb_test_set_shootdown(false);
	NTSTATUS st = MmProtectMdlSystemAddress(m.mdl, PAGE_READONLY);
	tlb_test_set_shootdown(true);
	probe_finish(t, &p);
	flush_others();
	EXPECT_EQ(t, st, STATUS_SUCCESS);
	EXPECT_TRUE(t, p.second_ok); /* written through a mapping that is read-only now */
	sysmap_free(&m, true);
}

/* ---- a memory-type change (SDM Vol. 3A, 11.12.4) ------------------------------------------ */

/* The probe the window hook lets make its second access, and whether it answered in time. */
static struct probe *retype_probe;
static volatile uint32_t retype_windows, retype_answered;

/* pt_retype_page's window (the alias not present, every TLB flushed, the new entry not yet
 * written): let CPU 1 read the alias again and wait (bounded) for its answer. */
static void retype_window(uint64_t va)
{
	if (!retype_probe || va != retype_probe->va)
		return;
	retype_windows++;
	__atomic_store_n(&retype_probe->changed, 1, __ATOMIC_SEQ_CST);
	if (smp_wait_flag(&retype_probe->second_done))
		retype_answered = 1;
}

/* An untyped frame (MmAllocatePagesForMdl) whose direct-map alias CPU 1 has read, mapped
 * MmNonCached: its type changes by the SDM's procedure, so CPU 1's read inside the window is
 * a not-present #PF at the alias (the IPI dropped its entry), and the leaf ends UC.  With
 * ipi false the read inside the window succeeds: the stale entry, which proves it can fail. */
static void retype_case(struct ktest *t, bool ipi)
{
	need_two(t);
	uint64_t frames0 = mmt_free_frames(), ptes0 = mmt_free_sysptes(), locked0 = mmt_locked_frames();
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL mdl = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, mdl != NULL && MmGetMdlByteCount(mdl) == PAGE_SIZE);
	pfn_t pfn = MmGetMdlPfnArray(mdl)[0];
	ASSERT_EQ(t, pfn_entry(pfn)->memtype, MT_NONE); /* untyped: its alias WB */
	uint8_t *alias = pfn_to_virt(pfn);
	memset(alias, PATTERN, PAGE_SIZE);

	struct probe p;
	probe_start_quiet(t, &p, (uint64_t)alias, false, !ipi);
	retype_windows = retype_answered = 0;
	retype_probe = &p;
	pt_test_retype_window = retype_window;
	if (!ipi)
		tlb_test_set_shootdown(false);
	void *va = MmMapLockedPagesSpecifyCache(mdl, KernelMode, MmNonCached, NULL, FALSE, NormalPagePriority);
	tlb_test_set_shootdown(true);
	pt_test_retype_window = NULL;
	retype_probe = NULL;
	probe_finish(t, &p);
	if (!ipi)
		flush_others();
	EXPECT_EQ(t, retype_windows, 1u);
	EXPECT_EQ(t, retype_answered, 1u); /* CPU 1 answered inside the window */
	ASSERT_TRUE(t, va != NULL);
	if (ipi) {
		EXPECT_FALSE(t, p.second_ok);
		EXPECT_PAGE_FAULT(t, &p.c2, PF_READ_NOT_PRESENT, (uint64_t)alias);
	} else {
		EXPECT_TRUE(t, p.second_ok); /* read through an entry no longer in the tables */
		EXPECT_EQ(t, p.second, PATTERN);
	}
	/* The real tables: the alias is present again, a 4 KiB leaf of the same frame, UC. */
	struct pt_query q;
	pt_query(&kernel_root, (uint64_t)alias, &q);
	EXPECT_TRUE(t, q.present);
	EXPECT_EQ(t, q.level, 1);
	EXPECT_EQ(t, q.pa >> PAGE_SHIFT, pfn);
	EXPECT_EQ(t, q.eff.type, MT_UC);
	EXPECT_EQ(t, q.pat_slot, pat_slot(pat_bits_for(MT_UC)));
	EXPECT_EQ(t, memtype_of_frame(pfn), MT_UC);
	EXPECT_EQ(t, ((volatile uint8_t *)va)[17], PATTERN); /* the data survived the change */

	MmUnmapLockedPages(va, mdl);
	MmFreePagesFromMdl(mdl);
	ExFreePool(mdl);
	pt_query(&kernel_root, (uint64_t)alias, &q);
	EXPECT_EQ(t, q.eff.type, MT_WB); /* released: WB again, by the same procedure */
	EXPECT_EQ(t, mmt_free_frames(), frames0);
	EXPECT_EQ(t, mmt_free_sysptes(), ptes0);
	EXPECT_EQ(t, mmt_locked_frames(), locked0);
}

static void retype_faults_on_the_other_cpu(struct ktest *t) { retype_case(t, true); }
static void retype_leaves_a_stale_entry_without_the_ipi(struct ktest *t) { retype_case(t, false); }

/* ---- a user mapping, with the process's root loaded on the AP ----------------------------- */

/* The AP runs in the process's address space (as KeStackAttachProcess would put it there)
 * and makes its accesses to the user page inside the SMAP window. */
struct user_probe {
	struct probe p;
	struct pt_root *root;
};

static void user_probe_on_ap(void *arg)
{
	struct user_probe *u = arg;
	tlb_switch_to(u->root);
	user_access_begin();
	probe_on_ap(&u->p);
	user_access_end();
	tlb_switch_to(&kernel_root);
}

/* An MDL's page mapped into an idle agent process with MmMapLockedPagesSpecifyCache(UserMode);
 * CPU 1 has that process's root in CR3 and reads the page; the boot CPU, attached to the
 * process, unmaps it; CPU 1's next read is a not-present #PF at the user address.  With the
 * IPI off (ipi false) CPU 1 still reads the frame: the user-half shootdown reached it only
 * because its CR3 holds the root. */
static void user_unmap_case(struct ktest *t, bool ipi)
{
	need_two(t);
	PEPROCESS proc = agent_create_idle(0);
	ASSERT_TRUE(t, proc != NULL);
	PHYSICAL_ADDRESS lo = { .QuadPart = 0 }, hi = { .QuadPart = -1 }, skip = { .QuadPart = 0 };
	PMDL m = MmAllocatePagesForMdl(lo, hi, skip, PAGE_SIZE);
	ASSERT_TRUE(t, m != NULL && m->ByteCount == PAGE_SIZE);
	memset(pfn_to_virt(MmGetMdlPfnArray(m)[0]), PATTERN, PAGE_SIZE);
	KAPC_STATE apc;
	KeStackAttachProcess(proc, &apc);
	uint8_t *uva = MmMapLockedPagesSpecifyCache(m, UserMode, MmCached, NULL, FALSE, NormalPagePriority);
	struct user_probe u = { .root = &ps_mm(proc)->root };
	memset(&u.p, 0, sizeof u.p);
	u.p.va = (uint64_t)uva;
	u.p.quiet = !ipi;
	bool started = uva && smp_work_start(1, user_probe_on_ap, &u);
	bool first = started && smp_wait_flag(&u.p.first_done);
	if (uva) {
		tlb_test_set_shootdown(ipi);
		MmUnmapLockedPages(uva, m);
		tlb_test_set_shootdown(true);
	}
	__atomic_store_n(&u.p.changed, 1, __ATOMIC_SEQ_CST);
	bool back = started && smp_work_wait(1);
	KeUnstackDetachProcess(&apc);
	flush_others();
	MmFreePagesFromMdl(m);
	ExFreePool(m);
	PsDestroyProcess(proc);

	ASSERT_TRUE(t, uva != NULL);
	ASSERT_TRUE(t, started && first && back);
	EXPECT_FALSE(t, u.p.timed_out);
	EXPECT_TRUE(t, u.p.first_ok);
	EXPECT_EQ(t, u.p.first, PATTERN);
	EXPECT_TRUE(t, u.p.chain_after == NULL);
	if (ipi) {
		EXPECT_FALSE(t, u.p.second_ok);
		EXPECT_PAGE_FAULT(t, &u.p.c2, PF_READ_NOT_PRESENT, (uint64_t)uva);
	} else {
		EXPECT_TRUE(t, u.p.second_ok);
		EXPECT_EQ(t, u.p.second, PATTERN);
	}
}

static void user_unmap_faults_on_the_cpu_running_the_process(struct ktest *t) { user_unmap_case(t, true); }
static void user_unmap_leaves_a_stale_entry_without_the_ipi(struct ktest *t) { user_unmap_case(t, false); }

/* ---- who is told ------------------------------------------------------------------------ */

struct loader {
	struct pt_root *root;
	volatile uint32_t loaded, done, timed_out;
};

/* CPU 1 runs on a process-like root (the kernel half is shared, so kernel code goes on)
 * until told, then goes back to the kernel's. */
static void load_root_on_ap(void *arg)
{
	struct loader *l = arg;
	tlb_switch_to(l->root);
	__atomic_store_n(&l->loaded, 1, __ATOMIC_SEQ_CST);
	if (!smp_wait_flag(&l->done))
		l->timed_out = 1;
	tlb_switch_to(&kernel_root);
}

/* A flush of a user-half address goes only to the CPUs that have its root in CR3: none
 * while no CPU has it, CPU 1 alone while CPU 1 has it; a kernel flush goes to every other
 * CPU. */
static void user_flushes_go_only_where_the_root_is_loaded(struct ktest *t)
{
	need_two(t);
	struct pt_root root;
	ASSERT_TRUE(t, pt_root_create(&root));
	const uint64_t uva = 0x10000;
	struct tlb_stats s0, s1, s2, s3;
	uint64_t served1 = kcpus[1].tlb_flush_requests;
	tlb_get_stats(&s0);
	tlb_flush_page(&root, uva); /* loaded nowhere: nobody to tell */
	tlb_get_stats(&s1);

	struct loader l = { .root = &root };
	bool started = smp_work_start(1, load_root_on_ap, &l);
	bool loaded = started && smp_wait_flag(&l.loaded);
	uint64_t served_other[SMP_MAX_CPUS];
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		served_other[i] = kcpus[i].tlb_flush_requests;
	tlb_flush_page(&root, uva); /* loaded on CPU 1 only */
	tlb_get_stats(&s2);
	__atomic_store_n(&l.done, 1, __ATOMIC_SEQ_CST);
	bool back = started && smp_work_wait(1);

	tlb_flush_page(&root, uva); /* CPU 1 has switched away again */
	tlb_get_stats(&s3);
	pt_root_destroy(&root);
	ASSERT_TRUE(t, started && loaded && back);
	EXPECT_FALSE(t, l.timed_out);

	EXPECT_EQ(t, s1.shootdowns, s0.shootdowns);
	EXPECT_EQ(t, s2.shootdowns, s1.shootdowns + 1);
	EXPECT_EQ(t, s2.shootdown_ipis, s1.shootdown_ipis + 1);
	EXPECT_EQ(t, kcpus[1].tlb_flush_requests, served1 + 1);
	for (unsigned i = 2; i < smp_cpus_online(); i++)
		EXPECT_EQ(t, kcpus[i].tlb_flush_requests, served_other[i]);
	EXPECT_EQ(t, s3.shootdowns, s2.shootdowns);

	struct tlb_stats k0, k1;
	tlb_get_stats(&k0);
	tlb_flush_page(&kernel_root, (uint64_t)&root); /* the kernel half: everybody */
	tlb_get_stats(&k1);
	EXPECT_EQ(t, k1.shootdown_ipis, k0.shootdown_ipis + smp_cpus_online() - 1);
}

/* tlb_stats counts the asking CPU's own INVLPGs only: kernel-half flushes, each served by
 * every other CPU at once, add exactly one apiece however the servers interleave. */
static void shootdowns_leave_the_askers_counts_exact(struct ktest *t)
{
	need_two(t);
	const unsigned n = 2000;
	struct tlb_stats s0, s1;
	tlb_get_stats(&s0);
	for (unsigned i = 0; i < n; i++)
		tlb_flush_page(&kernel_root, (uint64_t)&s0);
	tlb_get_stats(&s1);
	EXPECT_EQ(t, s1.shootdowns, s0.shootdowns + n);
	EXPECT_EQ(t, s1.single_pages, s0.single_pages + n);
	EXPECT_EQ(t, s1.full_flushes, s0.full_flushes);
}

/* ---- bug check on another CPU ---------------------------------------------------------- */

static void stop_on_ap(void *arg)
{
	(void)arg; /* passive work's argument: none */
	KeBugCheck(MANUALLY_INITIATED_CRASH); /* its page defines no parameters: all 0 */
}

/* An AP that bug checks freezes the boot CPU (which is waiting for it) with an NMI and
 * prints the one STOP line; on one CPU the boot CPU stops the same way. */
static void bugcheck_on_an_ap_stops_once(struct ktest *t)
{
	if (smp_cpus_online() < 2)
		stop_on_ap(NULL);
	ASSERT_TRUE(t, smp_work_start(1, stop_on_ap, NULL));
	smp_work_wait(1);
	KTEST_FAIL(t, "CPU 1 did not stop the machine within %u ms", SMP_WAIT_MS);
}

/* A CPU that takes no interrupts: it spins with IF clear, so it never answers the boot CPU's
 * cross-call, which waits its (shortened) time and stops with 0x101 CLOCK_WATCHDOG_TIMEOUT
 * and every parameter of Microsoft's page: the interval in clock ticks, 0, the silent CPU's
 * struct kcpu (mdlab's PRCB), its number.  The NMI of the stop reaches it anyway.  On one CPU
 * no other CPU can fail to answer: the case stops with the same line directly. */
#define DEAF_WAIT_MS 200u
static volatile uint32_t deaf;

static void take_no_interrupts(void *arg)
{
	(void)arg;
	__asm__ volatile("cli");
	__atomic_store_n(&deaf, 1, __ATOMIC_RELEASE);
	for (;;)
		cpu_relax();
}

static void nothing(void *arg) { (void)arg; }

static void a_cpu_that_answers_no_cross_call_is_0x101(struct ktest *t)
{
	unsigned ap = smp_cpus_online() - 1;
	ULONG_PTR ticks = (ULONG_PTR)DEAF_WAIT_MS * CLOCK_HZ / 1000;
	ktest_expect_stop(t, CLOCK_WATCHDOG_TIMEOUT, ticks, 0, (uint64_t)&kcpus[ap], ap, KTEST_P_ALL);
	if (ap == 0)
		KeBugCheckEx(CLOCK_WATCHDOG_TIMEOUT, ticks, 0, (ULONG_PTR)&kcpus[0], 0);
	ASSERT_TRUE(t, smp_work_start(ap, take_no_interrupts, NULL));
	ASSERT_TRUE(t, smp_wait_flag(&deaf));
	smp_test_set_call_wait_ms(DEAF_WAIT_MS);
	smp_call_mask(1ull << ap, nothing, NULL);
	KTEST_FAIL(t, "CPU %u answered a cross-call with interrupts off", ap);
}

static struct ktest_case smp_cases[] = {
	KTEST_CASE(every_cpu_has_its_own_gs),
	KTEST_CASE(cross_call_reaches_only_its_mask),
	KTEST_CASE(syscall_msrs_on_every_cpu),
	KTEST_CASE(regs_identical_on_every_cpu),
	KTEST_CASE(audit_sees_a_different_pat),
	KTEST_CASE(unmap_faults_on_the_other_cpu),
	KTEST_CASE(unmap_leaves_a_stale_entry_without_the_ipi),
	KTEST_CASE(protect_faults_on_the_other_cpu),
	KTEST_CASE(protect_leaves_a_stale_entry_without_the_ipi),
	KTEST_CASE(retype_faults_on_the_other_cpu),
	KTEST_CASE(retype_leaves_a_stale_entry_without_the_ipi),
	KTEST_CASE(user_unmap_faults_on_the_cpu_running_the_process),
	KTEST_CASE(user_unmap_leaves_a_stale_entry_without_the_ipi),
	KTEST_CASE(user_flushes_go_only_where_the_root_is_loaded),
	KTEST_CASE(shootdowns_leave_the_askers_counts_exact),
	KTEST_DEATH_CASE_P(bugcheck_on_an_ap_stops_once, MANUALLY_INITIATED_CRASH, KTEST_P_ALL, 0, 0, 0, 0),
	KTEST_DEATH_CASE(a_cpu_that_answers_no_cross_call_is_0x101, CLOCK_WATCHDOG_TIMEOUT),
	{ 0 }
};
KTEST_SUITE(smp, smp_cases);

/* The audit again after every other suite (KTEST_SUITE_LAST): nothing in the run left a CPU
 * with another PAT, CR0, CR4 or EFER. */
static struct ktest_case smp_final_cases[] = {
	KTEST_CASE(regs_identical_on_every_cpu),
	{ 0 }
};
KTEST_SUITE_LAST(smp_final_audit, smp_final_cases);
