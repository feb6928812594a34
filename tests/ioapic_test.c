/*
 * The IO-APIC path for real (kernel/intr/ioapic.h): the RTC's periodic interrupt (ISA IRQ 8,
 * through its MADT override if there is one) routed to a chosen AP arrives there and on no
 * other CPU; a masked pin delivers nothing although the RTC raised its interrupt (its own
 * register C says so); every pin is masked when no test holds it; bad routes are refused;
 * and the MSI address/data pair has the fields of the SDM's layout (Vol. 3, 11.11.1-2).
 * Waits are for events, bounded by SMP_WAIT_MS.
 */
#include "kernel/ktest.h"
#include "kernel/cpu.h"
#include "kernel/intr/intr.h"
#include "kernel/intr/ioapic.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"

#define RTC_IRQ 8
#define RTC_VECTOR 0x38 /* class 3: the lowest device IRQL */
#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define RTC_A 0x0A      /* bits 3-0: the periodic rate */
#define RTC_B 0x0B
#define RTC_B_PIE 0x40  /* periodic interrupt enable */
#define RTC_C 0x0C      /* the flags, cleared by the read; bit 6 PF */
#define RTC_C_PF 0x40

static volatile uint64_t hits[SMP_MAX_CPUS];
static uint64_t cmos_lock; /* the index/data pair is shared by the test and the ISR */

static uint8_t cmos_rw(uint8_t reg, int write, uint8_t v)
{
	uint64_t flags = read_rflags();
	__asm__ volatile("cli" ::: "memory");
	while (__atomic_exchange_n(&cmos_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	outb(CMOS_INDEX, reg);
	if (write)
		outb(CMOS_DATA, v);
	else
		v = inb(CMOS_DATA);
	__atomic_store_n(&cmos_lock, 0, __ATOMIC_RELEASE);
	if (flags & RFLAGS_IF)
		__asm__ volatile("sti" ::: "memory");
	return v;
}

static void rtc_periodic(bool on)
{
	uint8_t a = cmos_rw(RTC_A, 0, 0);
	cmos_rw(RTC_A, 1, (uint8_t)((a & 0xF0) | 6)); /* 1024 Hz */
	uint8_t b = cmos_rw(RTC_B, 0, 0);
	cmos_rw(RTC_B, 1, on ? b | RTC_B_PIE : b & ~RTC_B_PIE);
	(void)cmos_rw(RTC_C, 0, 0);
}

/* The RTC's service routine: count the CPU it ran on, and read C (the RTC holds its line
 * until C is read). */
static void rtc_isr(void *context)
{
	(void)context;
	hits[smp_this_cpu()]++;
	(void)cmos_rw(RTC_C, 0, 0);
}

static int ioapic_suite_init(struct ktest *t)
{
	(void)t;
	for (unsigned i = 0; i < SMP_MAX_CPUS; i++)
		hits[i] = 0;
	return 0;
}

static unsigned target_cpu(void) { return smp_cpus_online() > 2 ? 2 : 1; }

static void need_ioapic_and_two(struct ktest *t)
{
	if (!ioapic_gsi_count())
		KTEST_SKIP(t, "no IO-APIC");
	if (smp_cpus_online() < 2)
		KTEST_SKIP(t, "needs a second CPU");
}

/* The entry holds what was asked, and the interrupt reaches the target CPU only. */
static void rtc_interrupt_reaches_only_the_chosen_cpu(struct ktest *t)
{
	need_ioapic_and_two(t);
	unsigned cpu = target_cpu();
	struct ioapic_trigger how;
	unsigned gsi = ioapic_isa_gsi(RTC_IRQ, &how);
	ASSERT_TRUE(t, intr_connect(RTC_VECTOR, rtc_isr, NULL));
	ASSERT_TRUE(t, ioapic_route(gsi, RTC_VECTOR, cpu, how));
	uint64_t e = 0;
	EXPECT_TRUE(t, ioapic_read_entry(gsi, &e));
	EXPECT_EQ(t, e & IOAPIC_VECTOR_MASK, (uint64_t)RTC_VECTOR);
	EXPECT_EQ(t, e >> IOAPIC_DEST_SHIFT, (uint64_t)kcpus[cpu].apic_id);
	EXPECT_TRUE(t, e & IOAPIC_MASKED);
	EXPECT_EQ(t, !!(e & IOAPIC_LEVEL), how.level);
	EXPECT_EQ(t, !!(e & IOAPIC_ACTIVE_LOW), how.active_low);
	EXPECT_EQ(t, e & 0xF00, 0u); /* fixed delivery, physical destination */

	ioapic_unmask(gsi);
	rtc_periodic(true);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (hits[cpu] < 3 && rdtsc() < end)
		cpu_relax();
	ioapic_mask(gsi);
	rtc_periodic(false);
	intr_disconnect(RTC_VECTOR);
	kprintf("    # GSI %u (%s, active %s) -> vector 0x%x on CPU %u: %lu interrupts\n", gsi,
		how.level ? "level" : "edge", how.active_low ? "low" : "high", RTC_VECTOR, cpu, hits[cpu]);
	EXPECT_GE(t, hits[cpu], 3u);
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		if (i != cpu)
			EXPECT_EQ(t, hits[i], 0u);
	EXPECT_TRUE(t, ioapic_read_entry(gsi, &e) && (e & IOAPIC_MASKED));
}

/* The PIT's channel 0 (ISA IRQ 0) comes through the MADT's override (on QEMU's machines, GSI
 * 2), here routed to CPU 1: rate generator (mode 2) at about 1 kHz, stopped afterwards by a
 * one-shot (mode 0) count.  The GSI is whatever the override says; ISA IRQ 0 without one. */
#define PIT_VECTOR 0x39
static volatile uint64_t pit_hits[SMP_MAX_CPUS];

static void pit_isr(void *context)
{
	(void)context;
	pit_hits[smp_this_cpu()]++;
}

static void pit_channel0(uint8_t mode, uint16_t count)
{
	outb(0x43, (uint8_t)(0x30 | mode << 1)); /* channel 0, low then high byte */
	outb(0x40, count & 0xFF);
	outb(0x40, count >> 8);
}

static void pit_irq0_comes_through_its_override(struct ktest *t)
{
	need_ioapic_and_two(t);
	struct ioapic_trigger how;
	unsigned gsi = ioapic_isa_gsi(0, &how);
	kprintf("    # ISA IRQ 0 is GSI %u\n", gsi);
	ASSERT_TRUE(t, intr_connect(PIT_VECTOR, pit_isr, NULL));
	ASSERT_TRUE(t, ioapic_route(gsi, PIT_VECTOR, 1, how));
	for (unsigned i = 0; i < SMP_MAX_CPUS; i++)
		pit_hits[i] = 0;
	ioapic_unmask(gsi);
	pit_channel0(2, 1193);
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (pit_hits[1] < 3 && rdtsc() < end)
		cpu_relax();
	pit_channel0(0, 1);
	ioapic_mask(gsi);
	intr_disconnect(PIT_VECTOR);
	EXPECT_GE(t, pit_hits[1], 3u);
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		if (i != 1)
			EXPECT_EQ(t, pit_hits[i], 0u);
}

/* Routed but masked: the RTC raises its interrupt (register C's PF bit) and no CPU gets it. */
static void a_masked_pin_delivers_nothing(struct ktest *t)
{
	need_ioapic_and_two(t);
	struct ioapic_trigger how;
	unsigned gsi = ioapic_isa_gsi(RTC_IRQ, &how);
	ASSERT_TRUE(t, intr_connect(RTC_VECTOR, rtc_isr, NULL));
	ASSERT_TRUE(t, ioapic_route(gsi, RTC_VECTOR, target_cpu(), how));
	rtc_periodic(true);
	unsigned raised = 0;
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (raised < 3 && rdtsc() < end)
		if (cmos_rw(RTC_C, 0, 0) & RTC_C_PF)
			raised++;
	rtc_periodic(false);
	intr_disconnect(RTC_VECTOR);
	EXPECT_EQ(t, raised, 3u);
	for (unsigned i = 0; i < smp_cpus_online(); i++)
		EXPECT_EQ(t, hits[i], 0u);
}

/* No pin is left unmasked: at boot ioapic_init masks them all, and each test masks its own. */
static void every_pin_is_masked(struct ktest *t)
{
	if (!ioapic_gsi_count())
		KTEST_SKIP(t, "no IO-APIC");
	for (unsigned g = 0; g < ioapic_gsi_count(); g++) {
		uint64_t e;
		if (ioapic_read_entry(g, &e))
			EXPECT_TRUE(t, e & IOAPIC_MASKED);
	}
}

static void bad_routes_are_refused(struct ktest *t)
{
	struct ioapic_trigger edge = { 0 };
	EXPECT_FALSE(t, ioapic_route(ioapic_gsi_count(), RTC_VECTOR, 0, edge));
	EXPECT_FALSE(t, ioapic_route(0, VEC_DEVICE_FIRST - 1, 0, edge));
	EXPECT_FALSE(t, ioapic_route(0, VEC_CLOCK, 0, edge));
	EXPECT_FALSE(t, ioapic_route(0, RTC_VECTOR, smp_cpus_online(), edge));
	EXPECT_FALSE(t, intr_connect(VEC_CLOCK, rtc_isr, NULL));
	uint64_t e;
	EXPECT_FALSE(t, ioapic_read_entry(ioapic_gsi_count(), &e));
}

/* SDM Vol. 3, 11.11.1: address bits 31-20 0xFEE, 19-12 the destination APIC ID, 3 RH and 2
 * DM clear (physical, no redirection), the rest 0; 11.11.2: data bits 7-0 the vector, 10-8
 * the delivery mode (000 fixed), 15 the trigger (0 edge), 14 and 31-16 0. */
static void msi_fields_follow_the_sdm(struct ktest *t)
{
	for (unsigned cpu = 0; cpu < smp_cpus_online(); cpu++) {
		struct msi_message m = msi_compose(0x45, cpu);
		EXPECT_EQ(t, m.address >> 32, 0u);
		EXPECT_EQ(t, (m.address >> 20) & 0xFFF, 0xFEEu);
		EXPECT_EQ(t, (m.address >> 12) & 0xFF, (uint64_t)kcpus[cpu].apic_id);
		EXPECT_EQ(t, m.address & 0xFFF, 0u);
		EXPECT_EQ(t, m.data & 0xFF, 0x45u);
		EXPECT_EQ(t, (m.data >> 8) & 7, 0u);
		EXPECT_EQ(t, m.data >> 14, 0u);
		EXPECT_EQ(t, m.address, 0xFEE00000ull | (uint64_t)kcpus[cpu].apic_id << 12);
	}
}

static struct ktest_case ioapic_cases[] = {
	KTEST_CASE(rtc_interrupt_reaches_only_the_chosen_cpu),
	KTEST_CASE(pit_irq0_comes_through_its_override),
	KTEST_CASE(a_masked_pin_delivers_nothing),
	KTEST_CASE(every_pin_is_masked),
	KTEST_CASE(bad_routes_are_refused),
	KTEST_CASE(msi_fields_follow_the_sdm),
	{ 0 }
};
KTEST_SUITE(ioapic, ioapic_cases, .init = ioapic_suite_init);
