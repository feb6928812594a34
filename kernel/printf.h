/* Kernel printf to the serial console.  Formats: %d %i %u %x %X %p %s %c %%, with flags
 * '-' '0', a width (or '*'), a precision for %s, and length modifiers hh h l ll z. */
#ifndef KERNEL_PRINTF_H
#define KERNEL_PRINTF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

int kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kvprintf(const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kvsnprintf(char *buf, size_t n, const char *fmt, va_list ap);

/* Prefix every console line with `prefix` (NULL: none) until changed. */
void console_set_line_prefix(const char *prefix);
/* Whether the console's next character starts a line. */
bool console_at_line_start(void);

#endif
