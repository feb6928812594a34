/*
 * What the kernel does once the machine is up, chosen by the command line's mode=NAME.
 * A mode registers itself where it is implemented, so that kmain knows none of them:
 *     static void run_tests(void) { ... }
 *     BOOT_MODE(test, "test", run_tests);
 * The test framework registers test, death and death-server (kernel/ktest.c), the bench
 * framework bench (kernel/bench.c), the lab monitor (kernel/lab/monitor.c).
 */
#ifndef KERNEL_BOOTMODE_H
#define KERNEL_BOOTMODE_H

struct boot_mode {
	const char *name;
	void (*run)(void);   /* may return: kmain then ends the QEMU run normally */
};

#define BOOT_MODE(id, name_, fn)                                                       \
	static const struct boot_mode __bootmode_##id = { name_, fn };                   \
	__attribute__((used, section(".boot_modes"))) static const struct boot_mode      \
		*const __bootmode_ptr_##id = &__bootmode_##id

/* The mode named `name`, or NULL. */
const struct boot_mode *boot_mode_find(const char *name);

#endif
