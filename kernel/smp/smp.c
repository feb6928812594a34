/* The processors: start-up, cross-calls, passive work, the audit, the freeze (see smp.h). */
#include "kernel/smp/smp.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "kernel/gdt.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/intr.h"
#include "kernel/irql.h"
#include "kernel/kstack.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/seh.h"
#include "kernel/smp/lapic.h"
#include "kernel/smp/madt.h"
#include "kernel/syscall.h"
#include "kernel/trap.h"
#include "mm/mm.h"
#include "mm/pat.h"
#include "mm/pfn.h"
#include "mm/pool.h"
#include "mm/pt.h"
#include "mm/tlb.h"

struct kcpu kcpus[SMP_MAX_CPUS];
unsigned smp_online_count = 1;
static uint64_t tsc_per_ms;

#define MSR_KERNEL_GS_BASE 0xC0000102u

void percpu_init_this_cpu(unsigned n)
{
	struct kcpu *c = &kcpus[n];
	c->self = c;
	c->number = n;
	wrmsr(MSR_GS_BASE, (uint64_t)c);
	wrmsr(MSR_KERNEL_GS_BASE, 0); /* the user's, until a SWAPGS */
}

void smp_init_boot_cpu(void) { percpu_init_this_cpu(0); }

unsigned smp_cpu_number_safe(void)
{
	struct kcpu *c = (struct kcpu *)rdmsr(MSR_GS_BASE);
	return c >= kcpus && c < kcpus + SMP_MAX_CPUS ? c->number : 0;
}

/* ---- time ------------------------------------------------------------------------------ */

#define PIT_HZ 1193182u
#define PIT_MAX_US 50000u /* one shot of channel 2 counts at most 65535 ticks, 54.9 ms */

/* One shot of the PIT's channel 2 in mode 0 (interrupt on terminal count), read back
 * through port 0x61 bit 5 (its OUT), with the speaker off: the PC's classic stall. */
static void pit_wait_us(uint32_t us)
{
	uint32_t ticks = (uint32_t)(((uint64_t)us * PIT_HZ + 999999) / 1000000);
	if (!ticks)
		ticks = 1;
	outb(0x61, (inb(0x61) & ~0x02) | 0x01); /* gate on, speaker off */
	outb(0x43, 0xB0);                       /* channel 2, low then high byte, mode 0 */
	outb(0x42, ticks & 0xFF);
	outb(0x42, (ticks >> 8) & 0xFF);
	while (!(inb(0x61) & 0x20))
		cpu_relax();
}

static void pit_stall(ULONG MicroSeconds)
{
	while (MicroSeconds) {
		uint32_t us = MicroSeconds > PIT_MAX_US ? PIT_MAX_US : MicroSeconds;
		pit_wait_us(us);
		MicroSeconds -= us;
	}
}

/* KeStallExecutionProcessor: busy-wait at least MicroSeconds (its Microsoft page: for short
 * waits, at any IRQL).  The PIT is one device that only one CPU may program at a time, so it
 * serves only until the TSC is calibrated against it (the boot CPU, before any AP starts);
 * from then on each CPU counts its own TSC (constant-rate, the same on every CPU), so any
 * number of CPUs stall at once. */
VOID KeStallExecutionProcessor(ULONG MicroSeconds)
{
	if (!tsc_per_ms) {
		pit_stall(MicroSeconds);
		return;
	}
	uint64_t end = rdtsc() + (tsc_per_ms * MicroSeconds + 999) / 1000;
	while (rdtsc() < end)
		cpu_relax();
}

uint64_t smp_tsc_per_ms(void) { return tsc_per_ms; }

static void calibrate_tsc(void)
{
	/* The shortest of three: a vCPU that is not scheduled when the PIT's count ends only
	 * lengthens a measurement (everything else here stalls by this figure). */
	uint64_t best = ~0ull;
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = rdtsc();
		pit_stall(10000);
		uint64_t d = rdtsc() - t0;
		if (d < best)
			best = d;
	}
	tsc_per_ms = best / 10 ? best / 10 : 1;
}

/* How long smp_call_mask waits for an answer: SMP_WAIT_MS, shorter only for the death test
 * of a CPU that answers none (smp_test_set_call_wait_ms). */
static uint32_t call_wait_ms = SMP_WAIT_MS;
void smp_test_set_call_wait_ms(uint32_t ms) { call_wait_ms = ms; }

/* The TSC value SMP_WAIT_MS from now. */
static uint64_t deadline(void) { return rdtsc() + tsc_per_ms * SMP_WAIT_MS; }

static void serve_mailbox(struct kcpu *c);

/* One step of a bounded wait: the boot CPU waits with interrupts off, so it serves its
 * mailbox meanwhile (another CPU's shootdown may be waiting for it). */
static void wait_step(void)
{
	serve_mailbox(this_cpu());
	cpu_relax();
}

bool smp_wait_flag(const volatile uint32_t *flag)
{
	for (uint64_t end = deadline(); !*flag;) {
		if (rdtsc() > end)
			return *flag != 0;
		wait_step();
	}
	return true;
}

/* ---- cross-calls ----------------------------------------------------------------------- */

/* One cross-call at a time: the lock is held from filling the mailboxes until every answer
 * is in.  A CPU spinning for it serves its own mailbox meanwhile, so two CPUs that both
 * want to call each other cannot deadlock, even with interrupts off. */
static volatile uint32_t call_lock;

/* PAUSEs the callers spun waiting for answers, all cross-calls (written under call_lock). */
static uint64_t call_wait_spins;

uint64_t smp_call_wait_spins(void) { return __atomic_load_n(&call_wait_spins, __ATOMIC_RELAXED); }

/* Whether CPU n is running its mailbox's request now (by CPU number). */
static volatile bool serving[SMP_MAX_CPUS];

/* Run the request in c's mailbox, if any, once: with interrupts off from the check to the
 * answer, so the IPI that brought it cannot run it a second time on this CPU meanwhile (a
 * CPU that spins with interrupts on serves from its loop and from its IPI handler), and not
 * from inside a request this CPU is running (a wait inside it, whose request is still the
 * one in the mailbox). */
static void serve_mailbox(struct kcpu *c)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli");
	uint64_t req = c->call_req;
	if (req != c->call_ack && !serving[c->number]) {
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		serving[c->number] = true;
		/* From a wait loop the request runs as it would from the IPI: at IPI_LEVEL, with
		 * the IRQL the loop ran at as the interrupted one (what `cpus` shows). */
		KIRQL was = KeGetCurrentIrql(), saved = 0;
		bool from_loop = was < IPI_LEVEL;
		if (from_loop) {
			saved = intr_swap_interrupted_irql(was);
			write_cr8(IPI_LEVEL);
		}
		c->call_fn(c->call_arg);
		if (from_loop) {
			write_cr8(was);
			intr_swap_interrupted_irql(saved);
		}
		serving[c->number] = false;
		__atomic_store_n(&c->call_ack, req, __ATOMIC_RELEASE);
	}
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti");
}

void smp_serve_mailbox(void) { serve_mailbox(this_cpu()); }

uint64_t smp_others_mask(void)
{
	uint64_t m = 0;
	for (unsigned i = 0; i < smp_online_count; i++)
		if (kcpus[i].online && i != smp_this_cpu())
			m |= 1ull << i;
	return m;
}

bool smp_call_mask(uint64_t mask, void (*fn)(void *), void *arg)
{
	struct kcpu *me = this_cpu();
	uint64_t flags = read_rflags();
	__asm__ volatile("cli");
	while (__atomic_exchange_n(&call_lock, 1, __ATOMIC_ACQUIRE)) {
		serve_mailbox(me);
		cpu_relax();
	}
	if (mask & (1ull << me->number))
		fn(arg);
	uint64_t want[SMP_MAX_CPUS] = { 0 };
	for (unsigned i = 0; i < smp_online_count; i++) {
		struct kcpu *c = &kcpus[i];
		if (i == me->number || !(mask & (1ull << i)) || !c->online)
			continue;
		c->call_fn = fn;
		c->call_arg = arg;
		want[i] = c->call_req + 1;
		__atomic_store_n(&c->call_req, want[i], __ATOMIC_RELEASE);
		lapic_send_ipi(c->apic_id, VEC_IPI_CALL | ICR_FIXED | ICR_ASSERT);
	}
	uint64_t end = rdtsc() + tsc_per_ms * call_wait_ms;
	for (unsigned i = 0; i < smp_online_count; i++) {
		while (want[i] && __atomic_load_n(&kcpus[i].call_ack, __ATOMIC_ACQUIRE) != want[i]) {
			if (rdtsc() > end) {
				/* Its request stays pending and names fn and arg, which may be on this
				 * stack: a late answer would run fn on a frame that is gone, and the
				 * next call would rewrite the request under it.  A CPU that does not
				 * answer is a machine that cannot go on: NT's name for a processor
				 * that takes no interrupts, with its parameters (P1 the interval in
				 * clock ticks, P3 its PRCB, P4 its number). */
				KeBugCheckEx(CLOCK_WATCHDOG_TIMEOUT, (ULONG_PTR)call_wait_ms * CLOCK_HZ / 1000, 0,
					     (ULONG_PTR)&kcpus[i], i);
			}
			call_wait_spins++;
			cpu_relax();
		}
	}
	__atomic_store_n(&call_lock, 0, __ATOMIC_RELEASE);
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti");
	return true;
}

void smp_interrupt(uint64_t vector)
{
	(void)vector; /* VEC_IPI_CALL, the one vector that comes here (kernel/intr/intr.c) */
	struct kcpu *c = this_cpu();
	/* At IPI_LEVEL while the call runs, as NT's IPI service routine. */
	uint64_t irql = read_cr8();
	write_cr8(IPI_LEVEL);
	c->ipis_received++;
	serve_mailbox(c);
	lapic_eoi();
	write_cr8(irql);
}

/* ---- passive work ---------------------------------------------------------------------- */

bool smp_work_start(unsigned cpu, void (*fn)(void *), void *arg)
{
	if (cpu >= smp_online_count || cpu == smp_this_cpu() || !kcpus[cpu].online)
		return false;
	struct kcpu *c = &kcpus[cpu];
	if (c->work_req != c->work_done)
		return false; /* still busy with the last one */
	c->work_fn = fn;
	c->work_arg = arg;
	__atomic_store_n(&c->work_req, c->work_req + 1, __ATOMIC_RELEASE);
	lapic_send_ipi(c->apic_id, VEC_IPI_CALL | ICR_FIXED | ICR_ASSERT); /* out of HLT */
	return true;
}

bool smp_work_wait(unsigned cpu)
{
	struct kcpu *c = &kcpus[cpu];
	for (uint64_t end = deadline(); __atomic_load_n(&c->work_done, __ATOMIC_ACQUIRE) != c->work_req;) {
		if (rdtsc() > end)
			return false;
		/* The work may change the kernel half (a process it makes or ends) and send this
		 * CPU a shootdown: answered here, whatever RFLAGS.IF is. */
		wait_step();
	}
	return true;
}

/* An AP's life after start-up: HLT with interrupts on until an IPI brings work.  STI's
 * one-instruction shadow makes "STI; HLT" atomic: an IPI that arrives after the check
 * still ends the HLT (SDM Vol. 2B, STI).  The store of KCPU_IDLE is the instruction before
 * them, in the same asm, with interrupts off: from then until its wake (tlb_idle_wake,
 * the first thing trap_dispatch does) the CPU executes only STI and HLT, so another CPU may
 * leave it a flush instead of an IPI (mm/RULES.md, "Idle CPUs take their flush when they
 * wake").  An NMI in between finds it IDLE and sets it RUNNING: that HLT then just gets
 * its IPIs. */
static __attribute__((noreturn)) void ap_idle(struct kcpu *c)
{
	for (;;) {
		__asm__ volatile("cli");
		uint64_t req = __atomic_load_n(&c->work_req, __ATOMIC_ACQUIRE);
		if (req != c->work_done) {
			__asm__ volatile("sti");
			c->work_fn(c->work_arg);
			__asm__ volatile("cli");
			if (c->seh_chain || read_cr8() != PASSIVE_LEVEL)
				PANIC("ap_idle: work on CPU %u left a __try frame or IRQL %lu", c->number,
				      read_cr8());
			__atomic_store_n(&c->work_done, req, __ATOMIC_RELEASE);
			continue;
		}
		__asm__ volatile("movl %1, %0\n\tsti\n\thlt"
				 : "=m"(c->idle_state)
				 : "i"(KCPU_IDLE)
				 : "memory");
		/* The interrupt that ended the HLT has run tlb_idle_wake already; again, in case
		 * anything else ever ends one. */
		tlb_idle_wake();
	}
}

/* ---- start-up ------------------------------------------------------------------------- */

extern const char smp_trampoline[], smp_trampoline_end[], smp_trampoline_pm32[],
	smp_trampoline_lm64[], smp_trampoline_gdt[];

/* The trampoline's parameter block at offset 0x10 (kernel/smp/trampoline.asm). */
struct tramp_params {
	uint32_t cr3;
	uint32_t pm32_off;
	uint16_t pm32_sel, pad0;
	uint32_t lm64_off;
	uint16_t lm64_sel;
	uint16_t gdtr_limit;
	uint32_t gdtr_base;
	uint64_t entry, stack, cpu;
} __attribute__((packed));
#define TRAMP_PARAMS 0x10

#define SMP_TAG 0x20706D53u /* 'Smp ' */

static pfn_t tramp_pfn = PFN_INVALID;
static uint64_t boot_cr0, boot_cr4;

void smp_ap_entry(uint64_t n);

__attribute__((noreturn)) void smp_ap_entry(uint64_t n)
{
	gdt_init_cpu((unsigned)n);
	percpu_init_this_cpu((unsigned)n);
	idt_load();
	struct kcpu *c = this_cpu();
	/* The boot CPU's controls, whole: CR0 (the AP came up with CD and NW set), the kernel's
	 * tables, CR4, the PAT, the SYSCALL MSRs and EFER.SCE (README, "Processors"). */
	write_cr0(boot_cr0);
	tlb_switch_to(&kernel_root);
	tlb_load_cr4_ap(boot_cr4);
	pat_init_ap();
	syscall_init();
	write_cr8(PASSIVE_LEVEL);
	lapic_init_this_cpu();
	c->apic_id = lapic_id();
	__atomic_store_n(&c->online, true, __ATOMIC_RELEASE);
	ap_idle(c);
}

/* INIT, 10 ms, STARTUP, 200 us, STARTUP: the universal start-up algorithm (SDM Vol. 3,
 * 9.4.4.1); the second STARTUP only if the first did not start it. */
static bool start_ap(unsigned n, uint32_t apic_id, struct pt_root *tramp_root)
{
	uint64_t ist[3];
	for (int i = 0; i < 3; i++)
		ist[i] = kstack_create(KSTACK_PAGES);
	uint64_t stack = kstack_create(KSTACK_PAGES);
	uint8_t *filter_save = ExAllocatePool2(POOL_FLAG_NON_PAGED, KSTACK_PAGES * PAGE_SIZE, SMP_TAG);
	if (!filter_save)
		PANIC("start_ap: no pool for CPU %u's SEH filter buffer", n);
	seh_prepare_cpu(n, filter_save);
	gdt_prepare_cpu(n, ist);
	kcpus[n].apic_id = apic_id;

	uint64_t pa = tramp_pfn << PAGE_SHIFT;
	uint8_t *t = pfn_to_virt(tramp_pfn);
	memcpy(t, smp_trampoline, smp_trampoline_end - smp_trampoline);
	struct tramp_params *p = (struct tramp_params *)(t + TRAMP_PARAMS);
	p->cr3 = (uint32_t)tramp_root->pml4;
	p->pm32_off = (uint32_t)(pa + (smp_trampoline_pm32 - smp_trampoline));
	p->pm32_sel = 0x08;
	p->lm64_off = (uint32_t)(pa + (smp_trampoline_lm64 - smp_trampoline));
	p->lm64_sel = 0x18;
	p->gdtr_limit = 4 * 8 - 1;
	p->gdtr_base = (uint32_t)(pa + (smp_trampoline_gdt - smp_trampoline));
	p->entry = (uint64_t)smp_ap_entry;
	p->stack = stack;
	p->cpu = n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	lapic_send_ipi(apic_id, ICR_INIT | ICR_ASSERT);
	KeStallExecutionProcessor(10000);
	for (int i = 0; i < 2 && !kcpus[n].online; i++) {
		lapic_send_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | (uint32_t)tramp_pfn);
		KeStallExecutionProcessor(200);
		if (i == 0)
			for (int w = 0; w < 100 && !kcpus[n].online; w++)
				KeStallExecutionProcessor(100);
	}
	for (uint64_t end = deadline(); !__atomic_load_n(&kcpus[n].online, __ATOMIC_ACQUIRE);) {
		if (rdtsc() > end)
			return false;
		cpu_relax();
	}
	return true;
}

static void print_mismatch(unsigned cpu, const char *what, uint64_t got, uint64_t want)
{
	kprintf("smp: CPU %u %s 0x%lx, the boot CPU's 0x%lx\n", cpu, what, got, want);
}

static void read_regs(void *arg)
{
	struct smp_cpu_regs *r = (struct smp_cpu_regs *)arg + smp_this_cpu();
	r->pat = pat_read_msr();
	r->cr0 = read_cr0();
	r->cr4 = read_cr4();
	r->efer = rdmsr(MSR_EFER);
	r->answered = true;
}

unsigned smp_audit(struct smp_cpu_regs *regs, unsigned n)
{
	if (n > smp_online_count)
		n = smp_online_count;
	memset(regs, 0, n * sizeof *regs);
	uint64_t mask = n >= 64 ? ~0ull : (1ull << n) - 1;
	smp_call_mask(mask, read_regs, regs);
	unsigned bad = 0;
	for (unsigned i = 1; i < n; i++) {
		const struct smp_cpu_regs *r = &regs[i], *b = &regs[0];
		if (!r->answered) {
			kprintf("smp: CPU %u did not answer the audit\n", i);
			bad++;
			continue;
		}
		bool diff = false;
		if (r->pat != b->pat)
			print_mismatch(i, "IA32_PAT", r->pat, b->pat), diff = true;
		if (r->cr0 != b->cr0)
			print_mismatch(i, "CR0", r->cr0, b->cr0), diff = true;
		if (r->cr4 != b->cr4)
			print_mismatch(i, "CR4", r->cr4, b->cr4), diff = true;
		if (r->efer != b->efer)
			print_mismatch(i, "EFER", r->efer, b->efer), diff = true;
		bad += diff;
	}
	return bad;
}

void smp_init(const struct mdlab_bootinfo *bi, unsigned max_cpus)
{
	calibrate_tsc();
	struct madt_info m;
	bool have = madt_read(bi->acpi_rsdp, &m);
	lapic_init(have ? m.lapic_phys : 0xFEE00000ull);
	lapic_init_this_cpu();
	kcpus[0].apic_id = lapic_id();
	kcpus[0].online = true;
	if (!have)
		return;
	boot_cr0 = read_cr0();
	boot_cr4 = read_cr4();

	/* The trampoline's frame, below 1 MiB (a STARTUP vector is a page number under 0x100)
	 * and kept for good; and its address space: that frame at its physical address, the
	 * kernel half shared.  The AP loads that PML4 in 32-bit mode, so it must lie below
	 * 4 GiB. */
	tramp_pfn = pfn_alloc_in(1, 0xFF, 0, PFN_OWNER_KERNEL);
	struct pt_root tramp_root;
	if (tramp_pfn == PFN_INVALID || !pt_root_create(&tramp_root))
		PANIC("smp_init: no frame below 1 MiB for the trampoline, or none for its PML4");
	if (tramp_root.pml4 >= (1ull << 32))
		PANIC("smp_init: the trampoline's PML4 0x%lx is above 4 GiB", tramp_root.pml4);
	uint64_t pa = tramp_pfn << PAGE_SHIFT;
	if (!pt_map(&tramp_root, pa, pa, PAGE_SIZE, (struct pt_attrs){ .exec = true, .type = MT_WB }, 0))
		PANIC("smp_init: out of frames for the trampoline's tables");

	unsigned want = max_cpus && max_cpus < m.ncpus ? max_cpus : m.ncpus;
	for (unsigned i = 0; i < m.ncpus && smp_online_count < want; i++) {
		if (m.apic_ids[i] == kcpus[0].apic_id)
			continue;
		unsigned n = smp_online_count;
		if (!start_ap(n, m.apic_ids[i], &tramp_root)) {
			kprintf("smp: the processor with APIC ID %u did not start\n", m.apic_ids[i]);
			continue;
		}
		smp_online_count++;
	}
	pt_unmap(&tramp_root, pa, PAGE_SIZE);
	pt_root_destroy(&tramp_root);

	struct smp_cpu_regs regs[SMP_MAX_CPUS];
	unsigned bad = smp_audit(regs, SMP_MAX_CPUS);
	kprintf("smp: %u CPU%s online (%s, MADT lists %u%s), trampoline at 0x%lx; IA32_PAT, CR0, CR4, "
		"EFER %s\n", smp_online_count, smp_online_count == 1 ? "" : "s", lapic_x2apic() ? "x2APIC" : "xAPIC",
		m.ncpus, m.skipped ? ", more than mdlab takes" : "", pa,
		bad ? "DIFFER" : "identical on every CPU");
	if (bad)
		PANIC("smp_init: %u CPUs differ from the boot CPU (SDM Vol. 3, 13.12.4: one PAT)", bad);
}

/* ---- bug check ------------------------------------------------------------------------ */

static volatile bool freezing;

bool smp_freezing(void) { return freezing; }

void smp_freeze_others(void)
{
	freezing = true;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (smp_online_count > 1)
		lapic_send_ipi(0, ICR_NMI | ICR_ASSERT | ICR_ALL_EXCLUDING_SELF);
}

void smp_frozen_halt(void) { cpu_halt_forever(); }

/* ---- NT's queries ---------------------------------------------------------------------- */

ULONG KeGetCurrentProcessorNumberEx(PPROCESSOR_NUMBER ProcNumber)
{
	unsigned n = smp_this_cpu();
	if (ProcNumber) {
		ProcNumber->Group = 0; /* one processor group */
		ProcNumber->Number = (UCHAR)n;
		ProcNumber->Reserved = 0;
	}
	return n;
}

ULONG KeQueryActiveProcessorCount(PKAFFINITY ActiveProcessors)
{
	if (ActiveProcessors) {
		KAFFINITY a = 0;
		for (unsigned i = 0; i < smp_online_count; i++)
			if (kcpus[i].online)
				a |= 1ull << i;
		*ActiveProcessors = a;
	}
	return smp_online_count;
}
