#include "mm/verifier.h"
#include "kernel/cmdline.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/smp/klock.h"

static uint32_t flags = VF_CHECKS;
static uint64_t lowres_countdown; /* 0: off; else the call that brings it to 0 fails */
static uint32_t lowres_percent;
static uint64_t lowres_state;
/* Whether the simulation can fail a call (countdown or percent set): the one word the inline
 * verifier_inject_failure reads; written under lowres_lock. */
uint32_t verifier_lowres_armed;
uint64_t verifier_site_calls[VF_SITE_COUNT];
static uint64_t injected[VF_SITE_COUNT];

/* The low-resources simulation's countdown and generator: one sequence for all CPUs, so a
 * seed gives the same number of failures however the calls interleave (the innermost lock:
 * the sites draw before they take any other). */
static struct klock lowres_lock = KLOCK_INIT(KLOCK_VERIFIER);

void verifier_init(void)
{
	flags = (uint32_t)cmdline_get_u64("verifier", VF_CHECKS);
	char v[48];
	if (cmdline_get("lowres", v, sizeof v)) {
		size_t n = strlen(v);
		uint64_t x;
		uint64_t seed = cmdline_get_u64("lowres_seed", 1);
		/* Numbers go through cmdline_parse_u64: a bad one is refused with a message. */
		if (n == sizeof v - 1)
			kprintf("command line: lowres=%s... is refused (too long)\n", v);
		else if (n && v[n - 1] == '%') {
			v[n - 1] = 0;
			if (cmdline_parse_u64("lowres", v, &x)) {
				if (x <= 100)
					verifier_set_lowres(0, (uint32_t)x, seed);
				else
					kprintf("command line: lowres=%lu%% is refused (over 100%%)\n", x);
			}
		} else if (cmdline_parse_u64("lowres", v, &x)) {
			verifier_set_lowres(x, 0, seed);
		}
	}
}

bool verifier_on(uint32_t what) { return flags & what; }
uint32_t verifier_get_flags(void) { return flags; }
void verifier_set_flags(uint32_t f) { flags = f; }

void verifier_violation(enum verifier_code code, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
	KeBugCheckEx(DRIVER_VERIFIER_DETECTED_VIOLATION, code, p2, p3, p4);
}

void verifier_irql_above(enum verifier_code code, ULONG_PTR p3, ULONG_PTR p4)
{
	if (verifier_on(VF_CHECKS))
		verifier_violation(code, KeGetCurrentIrql(), p3, p4);
}

void verifier_set_lowres(uint64_t nth, uint32_t percent, uint64_t seed)
{
	KIRQL irql = klock_acquire(&lowres_lock);
	lowres_countdown = nth;
	lowres_percent = percent;
	lowres_state = seed ? seed : 1;
	__atomic_store_n(&verifier_lowres_armed, nth || percent, __ATOMIC_RELAXED);
	klock_release(&lowres_lock, irql);
}

/* xorshift64: a small generator whose sequence is fixed by the seed. */
static uint64_t next_random(void)
{
	lowres_state ^= lowres_state << 13;
	lowres_state ^= lowres_state >> 7;
	lowres_state ^= lowres_state << 17;
	return lowres_state;
}

/* The draw of an armed simulation (verifier.h's verifier_inject_failure counted the call). */
bool verifier_inject_draw(enum vf_site site)
{
	bool fail = false;
	KIRQL irql = klock_acquire(&lowres_lock);
	if (lowres_countdown && --lowres_countdown == 0)
		fail = true;
	else if (lowres_percent && next_random() % 100 < lowres_percent)
		fail = true;
	if (!lowres_countdown && !lowres_percent)
		__atomic_store_n(&verifier_lowres_armed, 0, __ATOMIC_RELAXED); /* the countdown is spent */
	klock_release(&lowres_lock, irql);
	if (fail)
		__atomic_fetch_add(&injected[site], 1, __ATOMIC_RELAXED);
	return fail;
}

void verifier_get_stats(struct verifier_stats *out)
{
	for (int i = 0; i < VF_SITE_COUNT; i++) {
		out->calls[i] = __atomic_load_n(&verifier_site_calls[i], __ATOMIC_RELAXED);
		out->injected[i] = __atomic_load_n(&injected[i], __ATOMIC_RELAXED);
	}
}
