#include "kernel/serial.h"
#include "kernel/cpu.h"

#define COM1 0x3F8
enum { DATA = 0, IER = 1, FCR = 2, LCR = 3, MCR = 4, LSR = 5 };
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20

void serial_init(void)
{
	outb(COM1 + IER, 0x00);    /* no interrupts: the kernel polls */
	outb(COM1 + LCR, 0x80);    /* DLAB on */
	outb(COM1 + DATA, 0x01);   /* divisor 1 = 115200 baud */
	outb(COM1 + IER, 0x00);
	outb(COM1 + LCR, 0x03);    /* 8N1, DLAB off */
	outb(COM1 + FCR, 0xC7);    /* FIFOs on, cleared, 14-byte threshold */
	outb(COM1 + MCR, 0x03);    /* DTR, RTS */
}

void serial_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	while (!(inb(COM1 + LSR) & LSR_THR_EMPTY))
		cpu_relax();
	outb(COM1 + DATA, (uint8_t)c);
}

void serial_write(const char *s, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		serial_putc(s[i]);
}

int serial_getc_nonblock(void)
{
	if (!(inb(COM1 + LSR) & LSR_DATA_READY))
		return -1;
	return inb(COM1 + DATA);
}

int serial_getc(void)
{
	int c;
	while ((c = serial_getc_nonblock()) < 0)
		cpu_relax();
	return c;
}

void serial_read_line(char *buf, unsigned long size)
{
	unsigned long n = 0;
	for (;;) {
		int c = serial_getc();
		if (c == '\r' || c == '\n') {
			if (!n)
				continue; /* a leftover end of line */
			break;
		}
		if (n + 1 < size)
			buf[n++] = (char)c;
	}
	buf[n] = 0;
}
