/* Interrupt dispatch (see intr.h). */
#include "kernel/intr/intr.h"
#include "kernel/cpu.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/dpc.h"
#include "kernel/irql.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"

static struct {
	intr_service_fn fn;
	void *context;
} device[VEC_DEVICE_LAST - VEC_DEVICE_FIRST + 1];

static struct intr_cpu_counts counts[SMP_MAX_CPUS];
static KIRQL interrupted_irql[SMP_MAX_CPUS];

KIRQL intr_interrupted_irql(void) { return interrupted_irql[smp_this_cpu()]; }

KIRQL intr_swap_interrupted_irql(KIRQL irql)
{
	KIRQL old = interrupted_irql[smp_this_cpu()];
	interrupted_irql[smp_this_cpu()] = irql;
	return old;
}

bool intr_connect(unsigned vector, intr_service_fn fn, void *context)
{
	if (vector < VEC_DEVICE_FIRST || vector > VEC_DEVICE_LAST || !fn)
		return false;
	unsigned i = vector - VEC_DEVICE_FIRST;
	device[i].context = context;
	intr_service_fn none = NULL;
	return __atomic_compare_exchange_n(&device[i].fn, &none, fn, false, __ATOMIC_RELEASE,
					   __ATOMIC_RELAXED);
}

void intr_disconnect(unsigned vector)
{
	if (vector >= VEC_DEVICE_FIRST && vector <= VEC_DEVICE_LAST)
		__atomic_store_n(&device[vector - VEC_DEVICE_FIRST].fn, NULL, __ATOMIC_RELEASE);
}

void intr_counts(unsigned cpu, struct intr_cpu_counts *out)
{
	*out = cpu < SMP_MAX_CPUS ? counts[cpu] : (struct intr_cpu_counts){ 0 };
}

void intr_dispatch(uint64_t vector)
{
	struct intr_cpu_counts *n = &counts[smp_this_cpu()];
	if (vector == VEC_APIC_SPURIOUS) {
		n->spurious++; /* no EOI: the APIC set no ISR bit (SDM Vol. 3, 11.9) */
		return;
	}
	KIRQL interrupted = KeGetCurrentIrql();
	interrupted_irql[smp_this_cpu()] = interrupted;
	write_cr8(vector >> 4);
	switch (vector) {
	case VEC_DPC:
		/* The DPC interrupt: EOI first, so the drain can run with interrupts on (CR8 at
		 * DISPATCH_LEVEL holds off another DPC interrupt, not the clock or IPIs). */
		lapic_eoi();
		dpc_interrupt();
		break;
	case VEC_CLOCK:
		clock_interrupt();
		lapic_eoi();
		break;
	case VEC_IPI_CALL:
		smp_interrupt(vector); /* sends its own EOI */
		break;
	case VEC_APIC_ERROR:
		n->apic_errors++;
		kprintf("intr: CPU %u: APIC error, ESR 0x%x\n", smp_this_cpu(), lapic_read_esr());
		lapic_eoi();
		break;
	default: {
		intr_service_fn fn = NULL;
		void *context = NULL;
		if (vector >= VEC_DEVICE_FIRST && vector <= VEC_DEVICE_LAST) {
			fn = __atomic_load_n(&device[vector - VEC_DEVICE_FIRST].fn, __ATOMIC_ACQUIRE);
			context = device[vector - VEC_DEVICE_FIRST].context;
		}
		if (fn) {
			n->device++;
			fn(context);
		} else {
			n->unclaimed++;
		}
		lapic_eoi();
		break;
	}
	}
	write_cr8(interrupted);
}
