#include <stdint.h>
#include "kernel/printf.h"
#include "kernel/serial.h"
#include "kernel/lib.h"

/* Output goes through a sink: either the serial port or a bounded buffer. */
struct sink {
	char *buf;      /* NULL: serial */
	size_t cap, len;
};

/* Console line prefix: while the self-tests run a case, everything printed becomes a KTAP
 * diagnostic line ("    # ..."). */
static const char *line_prefix;
static bool at_line_start = true;

void console_set_line_prefix(const char *prefix)
{
	line_prefix = prefix;
}

bool console_at_line_start(void) { return at_line_start; }

static void console_putc(char c)
{
	if (at_line_start && line_prefix)
		for (const char *p = line_prefix; *p; p++)
			serial_putc(*p);
	serial_putc(c);
	at_line_start = c == '\n';
}

static void put(struct sink *k, char c)
{
	if (!k->buf)
		console_putc(c);
	else if (k->len + 1 < k->cap)
		k->buf[k->len] = c;
	k->len++;
}

static void put_padded(struct sink *k, const char *s, size_t n, int width, bool left, char pad)
{
	int fill = width > (int)n ? width - (int)n : 0;
	if (!left)
		while (fill-- > 0)
			put(k, pad);
	for (size_t i = 0; i < n; i++)
		put(k, s[i]);
	if (left)
		while (fill-- > 0)
			put(k, ' ');
}

static int format(struct sink *k, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(k, *fmt);
			continue;
		}
		bool left = false;
		char pad = ' ';
		int width = 0, prec = -1, lng = 0;
		for (;; fmt++) {
			if (fmt[1] == '-')
				left = true;
			else if (fmt[1] == '0')
				pad = '0';
			else
				break;
		}
		fmt++;
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		while (*fmt == 'l' || *fmt == 'z' || *fmt == 'h') {
			if (*fmt == 'l' || *fmt == 'z')
				lng++;
			fmt++;
		}
		char tmp[24];
		size_t n = 0;
		uint64_t u;
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			bool neg = v < 0;
			u = neg ? -(uint64_t)v : (uint64_t)v;
			do
				tmp[sizeof tmp - ++n] = '0' + u % 10;
			while (u /= 10);
			if (neg)
				tmp[sizeof tmp - ++n] = '-';
			put_padded(k, tmp + sizeof tmp - n, n, width, left, pad);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'p': {
			unsigned base = *fmt == 'u' ? 10 : 16;
			const char *digits = *fmt == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
			if (*fmt == 'p') {
				u = (uintptr_t)va_arg(ap, void *);
				put(k, '0');
				put(k, 'x');
				width = 16;
				pad = '0';
			} else {
				u = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			}
			do
				tmp[sizeof tmp - ++n] = digits[u % base];
			while (u /= base);
			put_padded(k, tmp + sizeof tmp - n, n, width, left, pad);
			break;
		}
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			size_t len = strlen(s);
			if (prec >= 0 && (size_t)prec < len)
				len = prec;
			put_padded(k, s, len, width, left, ' ');
			break;
		}
		case 'c':
			tmp[0] = (char)va_arg(ap, int);
			put_padded(k, tmp, 1, width, left, ' ');
			break;
		case '%':
			put(k, '%');
			break;
		case 0:
			return (int)k->len;
		default:
			put(k, '%');
			put(k, *fmt);
		}
	}
	return (int)k->len;
}

int kvprintf(const char *fmt, va_list ap)
{
	struct sink k = { 0 };
	return format(&k, fmt, ap);
}

int kprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvprintf(fmt, ap);
	va_end(ap);
	return n;
}

int kvsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
	struct sink k = { .buf = buf, .cap = n };
	int len = format(&k, fmt, ap);
	if (n)
		buf[k.len < n ? k.len : n - 1] = 0;
	return len;
}

int ksnprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int len = kvsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return len;
}
