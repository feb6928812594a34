/* mdlab's <string.h> for user programs (user/win32.c, user/lib.c). */
#ifndef MDLAB_USER_STRING_H
#define MDLAB_USER_STRING_H

#include <stddef.h>

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
