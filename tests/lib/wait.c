/* The tests' bounded wait (see wait.h). */
#include "tests/lib/wait.h"
#include "kernel/cpu.h"
#include "kernel/smp/smp.h"

bool mmt_wait_until(bool (*done)(void *), void *arg)
{
	uint64_t end = rdtsc() + smp_tsc_per_ms() * SMP_WAIT_MS;
	while (!done(arg)) {
		if (rdtsc() > end)
			return false;
		smp_serve_mailbox();
		cpu_relax();
	}
	return true;
}
