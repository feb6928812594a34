/* The kernel command line: space-separated key=value words (or bare keys). */
#ifndef KERNEL_CMDLINE_H
#define KERNEL_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

void cmdline_init(const char *line);
const char *cmdline_raw(void);
/* Copy the value of `key` into buf; false when absent.  A bare key has the value "". */
bool cmdline_get(const char *key, char *buf, unsigned long size);
/* Numeric value of `key` (decimal or 0x hex), or `dflt` when absent or malformed. */
uint64_t cmdline_get_u64(const char *key, uint64_t dflt);

#endif
