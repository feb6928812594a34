/* COM1 (0x3F8), 115200 8N1, polled.  Everything the kernel says goes here. */
#ifndef KERNEL_SERIAL_H
#define KERNEL_SERIAL_H

#include <stdbool.h>

void serial_init(void);
void serial_putc(char c);
void serial_write(const char *s, unsigned long n);
/* Returns -1 when no byte is waiting. */
int serial_getc_nonblock(void);
int serial_getc(void);
/* Read one line (without echo); leading empty lines are skipped. */
void serial_read_line(char *buf, unsigned long size);

#endif
