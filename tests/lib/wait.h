/*
 * The tests' bounded wait for another CPU's progress (tests/smp_exec_test.c,
 * tests/smp_space_lock_test.c, tests/pager_test.c): a spin until a condition holds, serving
 * this CPU's cross-call mailbox meanwhile, so a shootdown the other side sends to this CPU
 * is answered even with interrupts off.  The bound is SMP_WAIT_MS: only a hang fails by it,
 * no verdict depends on how long the wait took.
 */
#ifndef TESTS_LIB_WAIT_H
#define TESTS_LIB_WAIT_H

#include <stdbool.h>

/* Until done(arg) or SMP_WAIT_MS passed; whether done(arg) came true. */
bool mmt_wait_until(bool (*done)(void *), void *arg);

#endif
