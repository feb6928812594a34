/* <string.h> for drivers (WDK drivers include it for the C run-time's string routines); the
 * kernel's own implementations, kernel/lib.c. */
#ifndef MDLAB_STRING_H
#define MDLAB_STRING_H

#include <stddef.h>

void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

#endif
