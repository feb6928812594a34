/*
 * Loader output: the raw COM1 UART (polled, programmed here so it works whatever the
 * firmware did and after ExitBootServices) and the UEFI text console.
 *
 * OVMF mirrors ConOut onto the same serial port, so a line sent to both appears twice in
 * a serial log.  Progress goes to COM1 only; errors go to both, because a person looking
 * at a screen must see them too.
 */
#include "loader.h"

#include <stdarg.h>

#define COM1 0x3F8
#define UART_DATA 0          /* DLAB=0: transmit holding register */
#define UART_DLL 0           /* DLAB=1: divisor latch, low byte */
#define UART_IER 1           /* DLAB=0: interrupt enable */
#define UART_DLM 1           /* DLAB=1: divisor latch, high byte */
#define UART_FCR 2           /* FIFO control */
#define UART_LCR 3           /* line control */
#define UART_MCR 4           /* modem control */
#define UART_LSR 5           /* line status */

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define FCR_ENABLE_CLEAR 0x07  /* enable FIFOs, clear both */
#define MCR_DTR_RTS 0x03
#define LSR_THRE 0x20          /* transmit holding register empty */

/* Polls of LSR before a byte is sent anyway: never hang on a missing or stuck UART. */
#define UART_SPIN_LIMIT 100000

static void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

void serial_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, LCR_DLAB);
	outb(COM1 + UART_DLL, 1);       /* 115200 = 1843200 / 16 / 1 */
	outb(COM1 + UART_DLM, 0);
	outb(COM1 + UART_LCR, LCR_8N1);
	outb(COM1 + UART_FCR, FCR_ENABLE_CLEAR);
	outb(COM1 + UART_MCR, MCR_DTR_RTS);
}

static void serial_putc(char c)
{
	for (int i = 0; i < UART_SPIN_LIMIT; i++)
		if (inb(COM1 + UART_LSR) & LSR_THRE)
			break;
	outb(COM1 + UART_DATA, (uint8_t)c);
}

/* Where formatted characters go.  ConOut wants UCS-2 and CR LF; characters are
 * collected in `wbuf` and flushed in chunks. */
struct sink {
	bool conout;
	unsigned n;
	CHAR16 wbuf[128];
};

static void sink_flush(struct sink *s)
{
	if (s->n == 0)
		return;
	s->wbuf[s->n] = 0;
	boot_st->ConOut->OutputString(boot_st->ConOut, s->wbuf);
	s->n = 0;
}

static void sink_putc(struct sink *s, char c)
{
	if (c == '\n')
		sink_putc(s, '\r');
	serial_putc(c);
	if (!s->conout)
		return;
	if (s->n + 1 >= sizeof s->wbuf / sizeof s->wbuf[0])
		sink_flush(s);
	s->wbuf[s->n++] = (CHAR16)(uint8_t)c;
}

static void sink_puts(struct sink *s, const char *str)
{
	if (str == NULL)
		str = "(null)";
	while (*str)
		sink_putc(s, *str++);
}

static void sink_number(struct sink *s, uint64_t v, unsigned base)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0);
	while (n > 0)
		sink_putc(s, digits[--n]);
}

/* The formatter behind say_serial and boot_error; see loader.h for the conversions. */
static void sink_vformat(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			sink_putc(s, *fmt);
			continue;
		}
		bool is_long = false;
		fmt++;
		if (*fmt == 'l') {
			is_long = true;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			sink_puts(s, va_arg(ap, const char *));
			break;
		case 'c':
			sink_putc(s, (char)va_arg(ap, int));
			break;
		case 'u':
		case 'x': {
			uint64_t v = is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			sink_number(s, v, *fmt == 'u' ? 10 : 16);
			break;
		}
		case '%':
			sink_putc(s, '%');
			break;
		case '\0':
			return;
		default:
			sink_putc(s, '?');
			break;
		}
	}
}

void say_serial(const char *fmt, ...)
{
	struct sink s = { .conout = false };
	va_list ap;

	va_start(ap, fmt);
	sink_vformat(&s, fmt, ap);
	va_end(ap);
}

EFI_STATUS boot_error(EFI_STATUS status, const char *fmt, ...)
{
	struct sink s = { .conout = boot_st != NULL && boot_st->ConOut != NULL };
	va_list ap;

	sink_puts(&s, "mdlab loader: ");
	va_start(ap, fmt);
	sink_vformat(&s, fmt, ap);
	va_end(ap);
	sink_putc(&s, '\n');
	sink_flush(&s);
	return status;
}

const char *efi_status_name(EFI_STATUS status)
{
	switch (status) {
	case EFI_SUCCESS:           return "success";
	case EFI_LOAD_ERROR:        return "load error";
	case EFI_INVALID_PARAMETER: return "invalid parameter";
	case EFI_UNSUPPORTED:       return "unsupported";
	case EFI_BUFFER_TOO_SMALL:  return "buffer too small";
	case EFI_DEVICE_ERROR:      return "device error";
	case EFI_OUT_OF_RESOURCES:  return "out of resources";
	case EFI_VOLUME_CORRUPTED:  return "volume corrupted";
	case EFI_NO_MEDIA:          return "no media";
	case EFI_NOT_FOUND:         return "not found";
	case EFI_ACCESS_DENIED:     return "access denied";
	default:                    return "EFI error";
	}
}
