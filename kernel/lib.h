/* Freestanding C library subset: memory and string routines, and glob matching. */
#ifndef KERNEL_LIB_H
#define KERNEL_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "include/string.h" /* the C routines, declared once for the kernel and drivers */

size_t strlcpy(char *d, const char *s, size_t n);

/* Parse an unsigned 64-bit number, 0x-prefixed hex or else in `base` (10 or 16); in hex a `
 * may stand between two digits (0xffffffff`80000000).  Returns NULL with *out set, or why the
 * text is not a number ("no digits", "not a number", "junk after the digits", "more than 64
 * bits") with *out unchanged. */
const char *parse_number(const char *s, unsigned base, uint64_t *out);
/* parse_number in base 10: true with *out set, false on anything that is not a number. */
bool parse_u64(const char *s, uint64_t *out);

/* Shell-style glob over the whole string: '*' any run, '?' one character. */
bool glob_match(const char *pattern, const char *s);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
