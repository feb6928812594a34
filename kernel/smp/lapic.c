/* The local APIC, xAPIC or x2APIC (see lapic.h). */
#include "kernel/smp/lapic.h"
#include "kernel/bugcheck.h"
#include "kernel/cpu.h"
#include "mm/pfn.h"
#include "mm/pt.h"
#include "mm/layout.h"

#define MSR_APIC_BASE 0x1Bu
#define APIC_BASE_ENABLE (1ull << 11)
#define APIC_BASE_EXTD (1ull << 10)  /* x2APIC mode */
#define MSR_X2APIC_BASE 0x800u
#define MSR_X2APIC_ICR 0x830u

/* Register offsets in the xAPIC page (SDM Vol. 3, Table 11-1). */
#define REG_ID 0x020
#define REG_TPR 0x080
#define REG_EOI 0x0B0
#define REG_SVR 0x0F0
#define REG_ESR 0x280
#define REG_ICR_LOW 0x300
#define REG_ICR_HIGH 0x310
#define REG_LVT_TIMER 0x320
#define REG_LVT_LINT0 0x350
#define REG_LVT_ERROR 0x370
#define REG_TIMER_INITIAL 0x380
#define REG_TIMER_CURRENT 0x390
#define REG_TIMER_DIVIDE 0x3E0
#define REG_ISR 0x100 /* eight 32-bit words, 0x10 apart */
#define REG_IRR 0x200 /* the same */
#define TIMER_DIVIDE_16 0x3u
#define LVT_TIMER_PERIODIC (1u << 17)
#define SVR_ENABLE (1u << 8)
#define LVT_MASKED (1u << 16)
#define ICR_PENDING (1u << 12)

static volatile uint32_t *mmio;
static bool x2;

static uint32_t rd(unsigned reg)
{
	return x2 ? (uint32_t)rdmsr(MSR_X2APIC_BASE + (reg >> 4)) : mmio[reg / 4];
}

static void wr(unsigned reg, uint32_t v)
{
	if (x2)
		wrmsr(MSR_X2APIC_BASE + (reg >> 4), v);
	else
		mmio[reg / 4] = v;
}

static bool cpu_has_x2apic(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	return c & (1u << 21);
}

void lapic_init(uint64_t mmio_phys)
{
	x2 = cpu_has_x2apic();
	if (x2)
		return;
	/* The xAPIC page is not RAM: UC at KVA_LAPIC (README, "Memory map"), for good.  UC, as
	 * the SDM wants for the APIC's registers (Vol. 3, 11.4.1). */
	uint64_t pa = mmio_phys & ~(PAGE_SIZE - 1);
	if (!pt_map(&kernel_root, KVA_LAPIC, pa, PAGE_SIZE,
		    (struct pt_attrs){ .write = true, .global = true, .type = MT_UC }, 0))
		PANIC("lapic_init: out of frames mapping the APIC page");
	mmio = (volatile uint32_t *)(KVA_LAPIC + (mmio_phys & (PAGE_SIZE - 1)));
}

bool lapic_x2apic(void) { return x2; }

void lapic_init_this_cpu(void)
{
	uint64_t base = rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE;
	if (x2)
		base |= APIC_BASE_EXTD; /* xAPIC -> x2APIC is allowed from enabled xAPIC (11.12.5) */
	wrmsr(MSR_APIC_BASE, base);
	wr(REG_TPR, 0);
	wr(REG_LVT_TIMER, LVT_MASKED);
	wr(REG_LVT_LINT0, LVT_MASKED);
	wr(REG_LVT_ERROR, VEC_APIC_ERROR);
	wr(REG_SVR, SVR_ENABLE | VEC_APIC_SPURIOUS);
	(void)lapic_read_esr();
}

uint32_t lapic_id(void) { return x2 ? rd(REG_ID) : rd(REG_ID) >> 24; }

void lapic_eoi(void) { wr(REG_EOI, 0); }

uint32_t lapic_read_esr(void)
{
	wr(REG_ESR, 0);
	return rd(REG_ESR);
}

/* With interrupts off: an interrupt handler that sends an IPI between the xAPIC's two ICR
 * writes would change the destination under the interrupted send. */
void lapic_send_ipi(uint32_t dest, uint32_t low)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory");
	if (x2) {
		wrmsr(MSR_X2APIC_ICR, ((uint64_t)dest << 32) | low);
	} else {
		wr(REG_ICR_HIGH, dest << 24);
		wr(REG_ICR_LOW, low); /* the write to the low word sends it */
		while (rd(REG_ICR_LOW) & ICR_PENDING)
			cpu_relax();
	}
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
}

void lapic_timer_start(uint8_t vector, uint32_t initial, bool periodic, bool masked)
{
	wr(REG_TIMER_DIVIDE, TIMER_DIVIDE_16);
	wr(REG_LVT_TIMER, vector | (periodic ? LVT_TIMER_PERIODIC : 0) | (masked ? LVT_MASKED : 0));
	wr(REG_TIMER_INITIAL, initial); /* the write starts the count (11.5.4) */
}

uint32_t lapic_timer_current(void) { return rd(REG_TIMER_CURRENT); }

bool lapic_vector_pending(uint8_t vector)
{
	unsigned reg = (vector / 32) * 0x10, bit = vector % 32;
	return ((rd(REG_IRR + reg) | rd(REG_ISR + reg)) >> bit) & 1;
}
