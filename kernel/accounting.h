/* Resource counters the self-test framework compares before and after every case (free
 * physical pages, system PTEs, pool bytes, locked pages, ...).  A subsystem registers its
 * counter with ACCOUNTING_COUNTER; nothing central lists them. */
#ifndef KERNEL_ACCOUNTING_H
#define KERNEL_ACCOUNTING_H

#include <stdint.h>

struct accounting_counter {
	const char *name;
	uint64_t (*read)(void);
};

#define ACCOUNTING_COUNTER(id, label, fn)                                                   \
	static const struct accounting_counter __acct_##id = { label, fn };                 \
	__attribute__((used, section(".kresources"))) static const struct accounting_counter \
		*const __acct_ptr_##id = &__acct_##id

extern const struct accounting_counter *const __kresources_start[], *const __kresources_end[];

#define accounting_for_each(c)                                                           \
	for (const struct accounting_counter *const *c = __kresources_start; c < __kresources_end; c++)

/* Every counter's value at one moment. */
#define ACCOUNTING_MAX 32
struct accounting_snapshot {
	unsigned n;
	uint64_t value[ACCOUNTING_MAX];
};
void accounting_snapshot(struct accounting_snapshot *s);
/* Compare the counters now with `before`; print "<who>: <counter> was X before, Y after" for
 * each that changed and return how many did. */
unsigned accounting_report_changes(const struct accounting_snapshot *before, const char *who);

#endif
