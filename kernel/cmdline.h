/* The kernel command line: space-separated key=value words (or bare keys). */
#ifndef KERNEL_CMDLINE_H
#define KERNEL_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

void cmdline_init(const char *line);
const char *cmdline_raw(void);
/* Copy the value of `key` into buf; false when absent.  A bare key has the value "". */
bool cmdline_get(const char *key, char *buf, unsigned long size);
/* Numeric value of `key` (decimal or 0x hex, parse_number of kernel/lib.h), or `dflt` when
 * absent; a value that is not a number (empty, "0x" alone, junk, over 64 bits) is refused
 * with a message and `dflt` is used, never a stop. */
uint64_t cmdline_get_u64(const char *key, uint64_t dflt);
/* `value` of `key` as a number; false with a message naming the key when it is not one. */
bool cmdline_parse_u64(const char *key, const char *value, uint64_t *out);

#endif
