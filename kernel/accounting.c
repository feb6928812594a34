#include "kernel/accounting.h"
#include "kernel/bugcheck.h"
#include "kernel/printf.h"
#include "mm/pool.h"

void accounting_snapshot(struct accounting_snapshot *s)
{
	/* The pool's spare slab pages (mm/pool.c) are given back first: a cache, not a
	 * resource anyone holds, so no count depends on which classes kept one. */
	pool_trim();
	s->n = 0;
	accounting_for_each(c) {
		if (s->n == ACCOUNTING_MAX)
			PANIC("accounting_snapshot: more than %d counters", ACCOUNTING_MAX);
		s->value[s->n++] = (*c)->read();
	}
}

unsigned accounting_report_changes(const struct accounting_snapshot *before, const char *who)
{
	struct accounting_snapshot now;
	unsigned i = 0, changed = 0;
	accounting_snapshot(&now);
	accounting_for_each(c) {
		if (i < before->n && now.value[i] != before->value[i]) {
			kprintf("%s: %s was %lu before, %lu after\n", who, (*c)->name, before->value[i], now.value[i]);
			changed++;
		}
		i++;
	}
	return changed;
}
