/* mdlab's <stdlib.h> for user programs: exit and number parsing (user/win32.c). */
#ifndef MDLAB_USER_STDLIB_H
#define MDLAB_USER_STDLIB_H

__attribute__((noreturn)) void exit(long status);
unsigned long strtoul(const char *s, char **end, int base);
int atoi(const char *s);
#define EXIT_SUCCESS 0
#define EXIT_FAILURE 1

#endif
