/* mdlab's <stdio.h> for user programs: formatted output to the console (user/win32.c).
 * Formats: %d %i %u %x %X %p %s %c %%, flags '-' '0', a width (or '*'), a precision for %s,
 * length modifiers hh h l ll z.  stdout is line-buffered and flushed at exit. */
#ifndef MDLAB_USER_STDIO_H
#define MDLAB_USER_STDIO_H

#include <stdarg.h>
#include <stddef.h>

int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
int puts(const char *s);
int putchar(int c);
int fflush(void *stream);
#define stdout ((void *)1)

#endif
