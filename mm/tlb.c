/* TLB invalidation and address-space switches (see tlb.h for the contract). */
#include "mm/tlb.h"
#include "kernel/bugcheck.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/cpu.h"
#include "kernel/smp/percpu.h"
#include "kernel/smp/smp.h"
#include "mm/layout.h"
#include "mm/pt.h"

/* The control-register writes that change what is translated: here and nowhere else. */
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" ::"r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

/* What the flushes cost the CPUs that asked for them.  Every CPU flushes, so each count
 * is one atomic add; a CPU serving another's shootdown counts nothing here (its share is its
 * own kcpu.tlb_flush_requests). */
static struct tlb_stats stats;
#define COUNT(field, n) __atomic_fetch_add(&stats.field, (n), __ATOMIC_RELAXED)

/* Whether the other CPUs are told (tlb_test_set_shootdown: a test's switch, on by default). */
static volatile bool shootdown_on = true;

/* The address space CPU c has loaded (struct kcpu.tlb_loaded); NULL while the loader's
 * tables are still in CR3. */
static inline bool cached_on(const struct kcpu *c, const struct pt_root *root, uint64_t va)
{
	return root == &kernel_root || root == c->tlb_loaded || va >= USER_VA_END;
}

/* Whether root's translations of va may be cached on this CPU (tlb.h: kernel_root's
 * everywhere; a process's only where it is loaded). */
static inline bool cached_here(const struct pt_root *root, uint64_t va)
{
	return root == &kernel_root || va >= USER_VA_END || root == this_cpu()->tlb_loaded;
}

/* Everything, global entries included: toggling CR4.PGE drops every translation and every
 * paging-structure cache entry (SDM Vol. 3, 4.10.4.1); without PGE nothing is global and a
 * CR3 reload does the same. */
static void flush_everything(bool count)
{
	uint64_t cr4 = read_cr4();
	if (cr4 & CR4_PGE) {
		write_cr4(cr4 & ~CR4_PGE);
		write_cr4(cr4);
	} else {
		write_cr3(read_cr3());
	}
	if (count)
		COUNT(full_flushes, 1);
}

/* Every non-global translation: a CR3 reload. */
static void flush_non_global(bool count)
{
	write_cr3(read_cr3());
	if (count)
		COUNT(full_flushes, 1);
}

static void flush_page_here(const struct pt_root *root, uint64_t va)
{
	if (!cached_here(root, va))
		return;
	invlpg(va);
	COUNT(single_pages, 1);
}

static void flush_all_here(const struct pt_root *root, bool count)
{
	if (root == &kernel_root)
		flush_everything(count);
	else if (root == this_cpu()->tlb_loaded)
		flush_non_global(count); /* a process's translations are all non-global */
}

static void flush_range_here(const struct pt_root *root, uint64_t va, uint64_t size, bool count)
{
	uint64_t start = va & ~(PAGE_SIZE - 1), last = va + size - 1;
	uint64_t pages = (va + size - start + PAGE_SIZE - 1) / PAGE_SIZE;
	if (!size || !cached_here(root, last))
		return;
	if (pages > TLB_SINGLE_FLUSH_MAX) {
		if (root == &kernel_root || last >= USER_VA_END)
			flush_everything(count);
		else
			flush_non_global(count);
		return;
	}
	for (uint64_t i = 0; i < pages; i++)
		invlpg(start + i * PAGE_SIZE);
	if (count)
		COUNT(single_pages, pages);
}

/*
 * The shootdown (mm/RULES.md, "TLB shootdown"): after this CPU's own invalidation, every
 * other CPU that may cache the entries invalidates them too, in its IPI handler, and the
 * caller goes on only when all have answered, so when an unmap or a protect returns no CPU
 * can reach the old frame or the old rights.  The kernel half goes to every other CPU; a
 * process's user half only to the CPUs that have its root in CR3.
 */
struct shootdown {
	const struct pt_root *root;
	uint64_t va, size; /* size 0: everything of root */
};

static void shootdown_here(void *arg)
{
	const struct shootdown *s = arg;
	/* tlb_stats counts what the asking CPU's flushes cost it; this CPU's share is its own
	 * counter. */
	this_cpu()->tlb_flush_requests++;
	if (!s->size)
		flush_all_here(s->root, false);
	else
		flush_range_here(s->root, s->va, s->size, false);
}

/* Whether CPU c, idle in HLT, takes this flush when it wakes instead of by an IPI now: true
 * when its state is IDLE, which this call turns into FLUSH_PENDING, or FLUSH_PENDING already
 * (mm/RULES.md, "Idle CPUs take their flush when they wake").  A CPU that is RUNNING, or
 * exchanged RUNNING in between (the compare-exchange fails and reads it), gets the IPI. */
static bool defer_to_wake(struct kcpu *c)
{
	uint32_t s = __atomic_load_n(&c->idle_state, __ATOMIC_SEQ_CST);
	while (s != KCPU_RUNNING) {
		if (s == KCPU_IDLE_FLUSH_PENDING ||
		    __atomic_compare_exchange_n(&c->idle_state, &s, KCPU_IDLE_FLUSH_PENDING, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			__atomic_fetch_add(&c->tlb_flushes_deferred, 1, __ATOMIC_RELAXED);
			COUNT(deferred, 1);
			return true;
		}
	}
	return false;
}

/* may_defer: the change cleared or downgraded leaves only (tlb_flush_leaf_*), so a CPU idle
 * in HLT may take it when it wakes.  Otherwise every CPU that may cache the entries is sent
 * the IPI, idle or not: a freed page-table frame may be rewritten at once while a halted
 * CPU's paging-structure caches still point at it, and a memory-type change wants every TLB
 * flushed before the new type (SDM Vol. 3A, 11.12.4). */
static __attribute__((noinline)) void shootdown_others(const struct pt_root *root, uint64_t va,
							  uint64_t size, bool may_defer)
{
	if (!shootdown_on)
		return;
	/* The PTE writes before the reads of the other CPUs' CR3 (tlb_switch_to writes its
	 * record before it loads CR3) and idle states: a CPU not seen here loads CR3, or
	 * wakes and flushes, after the change. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t mask = 0, me = smp_this_cpu(), ipis = 0;
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		if (i != me && kcpus[i].online && cached_on(&kcpus[i], root, size ? va + size - 1 : va) &&
		    !(may_defer && defer_to_wake(&kcpus[i]))) {
			mask |= 1ull << i;
			ipis++;
		}
	if (!mask)
		return;
	struct shootdown s = { root, va, size };
	COUNT(shootdowns, 1);
	COUNT(shootdown_ipis, ipis);
	if (!smp_call_mask(mask, shootdown_here, &s))
		PANIC("tlb shootdown: a CPU of mask 0x%lx did not invalidate 0x%lx+0x%lx within %u ms", mask,
		      va, size, SMP_WAIT_MS);
}

/* The hot path's test, inline: on one CPU there is nobody to tell. */
static inline void shootdown(const struct pt_root *root, uint64_t va, uint64_t size, bool may_defer)
{
	if (__builtin_expect(smp_cpus_online() > 1, 0))
		shootdown_others(root, va, size, may_defer);
}

void tlb_flush_page(const struct pt_root *root, uint64_t va)
{
	flush_page_here(root, va);
	shootdown(root, va & ~(PAGE_SIZE - 1), PAGE_SIZE, false);
}

void tlb_flush_range(const struct pt_root *root, uint64_t va, uint64_t size)
{
	if (!size)
		return;
	flush_range_here(root, va, size, true);
	shootdown(root, va, size, false);
}

void tlb_flush_leaf_page(const struct pt_root *root, uint64_t va)
{
	flush_page_here(root, va);
	shootdown(root, va & ~(PAGE_SIZE - 1), PAGE_SIZE, true);
}

void tlb_flush_leaf_range(const struct pt_root *root, uint64_t va, uint64_t size)
{
	if (!size)
		return;
	flush_range_here(root, va, size, true);
	shootdown(root, va, size, true);
}

void tlb_flush_all(const struct pt_root *root)
{
	flush_all_here(root, true);
	shootdown(root, 0, 0, false);
}

void tlb_flush_all_local(void) { flush_everything(true); }

void tlb_test_set_shootdown(bool on) { shootdown_on = on; }

/* Whether a waking CPU does the flush left pending for it (tlb_test_set_wake_flush). */
static volatile bool wake_flush_on = true;

void tlb_test_set_wake_flush(bool on) { wake_flush_on = on; }

/* The wake of a CPU whose state is not RUNNING (tlb_idle_wake): back to RUNNING, and the
 * flush another CPU left for it, everything including global entries, before this CPU
 * executes anything that could reach a changed address.  Until here it has touched only its
 * IDT, its own stack, kernel text and its struct kcpu, none of which is ever unmapped. */
void tlb_idle_wake_slow(void)
{
	struct kcpu *c = this_cpu();
	if (__atomic_exchange_n(&c->idle_state, KCPU_RUNNING, __ATOMIC_SEQ_CST) == KCPU_IDLE_FLUSH_PENDING &&
	    wake_flush_on) {
		flush_everything(false);
		c->tlb_wake_flushes++;
	}
}

void tlb_switch_to(const struct pt_root *root)
{
	__atomic_store_n(&this_cpu()->tlb_loaded, root, __ATOMIC_SEQ_CST);
	write_cr3(root->pml4);
}

void tlb_load_cr4_ap(uint64_t value)
{
	if (smp_this_cpu() == 0)
		PANIC("tlb_load_cr4_ap: on the boot CPU");
	write_cr4(value);
	flush_everything(true);
}

void tlb_enable_cr4(uint64_t bits)
{
	if (bits & ~(CR4_PGE | CR4_SMEP | CR4_SMAP))
		PANIC("tlb_enable_cr4: 0x%lx holds bits other than PGE, SMEP and SMAP", bits);
	write_cr4(read_cr4() | bits);
}

/* ---- the lazy policy -------------------------------------------------------------------- */

bool tlb_lazy_policy;

void tlb_policy_init(void)
{
	char v[16];
	if (!cmdline_get("tlb", v, sizeof v) || !strcmp(v, "strict"))
		return;
	if (!strcmp(v, "lazy"))
		tlb_lazy_policy = true;
	else
		kprintf("tlb: tlb=%s is neither strict nor lazy; strict\n", v);
}

void tlb_flush_range_local(const struct pt_root *root, uint64_t va, uint64_t size)
{
	if (size)
		flush_range_here(root, va, size, true);
}

struct purge {
	const struct tlb_range *r;
	unsigned n;
	uint64_t pages;
};

static void purge_here(void *arg)
{
	const struct purge *p = arg;
	this_cpu()->tlb_purges_served++;
	if (p->pages > TLB_SINGLE_FLUSH_MAX) {
		flush_everything(false);
		return;
	}
	for (unsigned i = 0; i < p->n; i++)
		for (uint32_t k = 0; k < p->r[i].pages; k++)
			invlpg(p->r[i].va + (uint64_t)k * PAGE_SIZE);
}

void tlb_purge(const struct tlb_range *r, unsigned n)
{
	if (!n)
		return;
	struct purge p = { r, n, 0 };
	for (unsigned i = 0; i < n; i++)
		p.pages += r[i].pages;
	COUNT(purges, 1);
	COUNT(purged_ranges, n);
	if (smp_cpus_online() < 2 || !shootdown_on)
		return;
	/* The PTE writes (done at each release) before the IPIs: the same order as a shootdown. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t mask = 0, me = smp_this_cpu(), ipis = 0;
	/* The ranges' PTEs were cleared and nothing else changed: an idle CPU takes the purge
	 * when it wakes, as a leaf flush (mm/RULES.md, "Idle CPUs take their flush when they
	 * wake"). */
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		if (i != me && kcpus[i].online && !defer_to_wake(&kcpus[i])) {
			mask |= 1ull << i;
			ipis++;
		}
	if (!mask)
		return;
	COUNT(purge_ipis, ipis);
	if (!smp_call_mask(mask, purge_here, &p))
		PANIC("tlb purge: a CPU of mask 0x%lx did not flush %u ranges within %u ms", mask, n,
		      SMP_WAIT_MS);
}

void tlb_get_stats(struct tlb_stats *out)
{
	out->purges = __atomic_load_n(&stats.purges, __ATOMIC_RELAXED);
	out->purge_ipis = __atomic_load_n(&stats.purge_ipis, __ATOMIC_RELAXED);
	out->purged_ranges = __atomic_load_n(&stats.purged_ranges, __ATOMIC_RELAXED);
	out->single_pages = __atomic_load_n(&stats.single_pages, __ATOMIC_RELAXED);
	out->full_flushes = __atomic_load_n(&stats.full_flushes, __ATOMIC_RELAXED);
	out->shootdowns = __atomic_load_n(&stats.shootdowns, __ATOMIC_RELAXED);
	out->shootdown_ipis = __atomic_load_n(&stats.shootdown_ipis, __ATOMIC_RELAXED);
	out->deferred = __atomic_load_n(&stats.deferred, __ATOMIC_RELAXED);
}
