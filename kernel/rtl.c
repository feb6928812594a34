/* The everyday run-time routines of wdm.h: memory comparison, counted strings, debug
 * output, assertions.  mm/RULES.md rule I9. */
#include <stdarg.h>
#include "include/wdm.h"
#include "kernel/lib.h"
#include "kernel/printf.h"
#include "kernel/rtl.h"

/* RtlCompareMemory page: the count of equal leading bytes. */
SIZE_T RtlCompareMemory(const VOID *Source1, const VOID *Source2, SIZE_T Length)
{
	const UCHAR *a = Source1, *b = Source2;
	SIZE_T i = 0;
	while (i < Length && a[i] == b[i])
		i++;
	return i;
}

/* RtlInitUnicodeString page: Length excludes the terminator, MaximumLength includes it;
 * a string longer than 0xFFFC bytes is cut there (UNICODE_STRING_MAX_BYTES). */
VOID RtlInitUnicodeString(PUNICODE_STRING DestinationString, PCWSTR SourceString)
{
	SIZE_T n = 0;
	if (SourceString)
		while (SourceString[n])
			n++;
	if (n * sizeof(WCHAR) > 0xFFFC)
		n = 0xFFFC / sizeof(WCHAR);
	DestinationString->Buffer = (PWSTR)SourceString;
	DestinationString->Length = (USHORT)(n * sizeof(WCHAR));
	DestinationString->MaximumLength = SourceString ? (USHORT)((n + 1) * sizeof(WCHAR)) : 0;
}

VOID RtlInitString(PSTRING DestinationString, PCSZ SourceString)
{
	SIZE_T n = SourceString ? strlen(SourceString) : 0;
	if (n > 0xFFFE)
		n = 0xFFFE;
	DestinationString->Buffer = (PCHAR)SourceString;
	DestinationString->Length = (USHORT)n;
	DestinationString->MaximumLength = SourceString ? (USHORT)(n + 1) : 0;
}

VOID RtlInitAnsiString(PANSI_STRING DestinationString, PCSZ SourceString)
{
	RtlInitString(DestinationString, SourceString);
}

static WCHAR upcase(WCHAR c) { return c >= 'a' && c <= 'z' ? (WCHAR)(c - 'a' + 'A') : c; }

BOOLEAN RtlEqualUnicodeString(PCUNICODE_STRING String1, PCUNICODE_STRING String2, BOOLEAN CaseInSensitive)
{
	if (String1->Length != String2->Length)
		return FALSE;
	for (USHORT i = 0; i < String1->Length / sizeof(WCHAR); i++) {
		WCHAR a = String1->Buffer[i], b = String2->Buffer[i];
		if (CaseInSensitive ? upcase(a) != upcase(b) : a != b)
			return FALSE;
	}
	return TRUE;
}

VOID RtlCopyUnicodeString(PUNICODE_STRING DestinationString, PCUNICODE_STRING SourceString)
{
	if (!SourceString) {
		DestinationString->Length = 0;
		return;
	}
	USHORT n = MIN(SourceString->Length, DestinationString->MaximumLength);
	memmove(DestinationString->Buffer, SourceString->Buffer, n);
	DestinationString->Length = n;
	/* Terminated when there is room, as NT does. */
	if (n + sizeof(WCHAR) <= DestinationString->MaximumLength)
		DestinationString->Buffer[n / sizeof(WCHAR)] = 0;
}

/* ---- DbgPrint ------------------------------------------------------------------------- */

ULONG dbgprint_filter;
char dbgprint_last[512];
ULONG dbgprint_printed, dbgprint_filtered;

/* NT's limit: a DbgPrint message is cut at 512 bytes. */
#define DBGPRINT_MAX 512

struct out {
	char buf[DBGPRINT_MAX];
	size_t len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < sizeof o->buf)
		o->buf[o->len++] = c;
}

static void put_wide(struct out *o, const WCHAR *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(o, w[i] < 0x80 ? (char)w[i] : '?');
}

/* kprintf's formats, one conversion at a time, plus the wide ones kprintf lacks. */
static void format(struct out *o, const char *fmt, va_list ap)
{
	while (*fmt) {
		if (*fmt != '%') {
			put(o, *fmt++);
			continue;
		}
		const char *start = fmt++;
		while (*fmt && strchr("-+ #0", *fmt))
			fmt++;
		int star[2], nstar = 0; /* a width and a precision of '*' take an int each */
		if (*fmt == '*')
			fmt++, star[nstar++] = va_arg(ap, int);
		while (*fmt >= '0' && *fmt <= '9')
			fmt++;
		if (*fmt == '.') {
			fmt++;
			if (*fmt == '*')
				fmt++, star[nstar++] = va_arg(ap, int);
			while (*fmt >= '0' && *fmt <= '9')
				fmt++;
		}
		if (fmt[0] == 'w' && fmt[1] == 'Z') {
			PCUNICODE_STRING s = va_arg(ap, PCUNICODE_STRING);
			if (s && s->Buffer)
				put_wide(o, s->Buffer, s->Length / sizeof(WCHAR));
			fmt += 2;
			continue;
		}
		if ((fmt[0] == 'w' && fmt[1] == 's') || (fmt[0] == 'l' && fmt[1] == 's') || fmt[0] == 'S') {
			const WCHAR *w = va_arg(ap, const WCHAR *);
			size_t n = 0;
			while (w && w[n])
				n++;
			put_wide(o, w, n);
			fmt += fmt[0] == 'S' ? 1 : 2;
			continue;
		}
		if (fmt[0] == 'Z') {
			const STRING *s = va_arg(ap, const STRING *);
			for (USHORT i = 0; s && s->Buffer && i < s->Length; i++)
				put(o, s->Buffer[i]);
			fmt++;
			continue;
		}
		const char *mods = fmt; /* flags, width and precision end here */
		int longs = 0;
		while (*fmt && strchr("hlzI", *fmt)) {
			if (*fmt == 'l' || *fmt == 'z')
				longs = 1;
			if (fmt[0] == 'I' && fmt[1] == '6' && fmt[2] == '4') /* MSVC's %I64x */
				fmt += 2, longs = 1;
			else if (fmt[0] == 'I' && fmt[1] == '3' && fmt[2] == '2') /* %I32x: 32-bit */
				fmt += 2;
			else if (fmt[0] == 'I') /* %Ix: a ULONG_PTR, 64-bit */
				longs = 1;
			fmt++;
		}
		char conv = *fmt ? *fmt++ : 0;
		/* The spec rebuilt for ksnprintf: flags, width (a * becomes its number),
		 * precision, then 'l' for a 64-bit argument, then the conversion. */
		char spec[40];
		size_t k = 0;
		int nused = 0;
		for (const char *c = start; c < mods && k + 24 < sizeof spec; c++) {
			if (*c == '*')
				k += (size_t)ksnprintf(spec + k, sizeof spec - k, "%d", star[nused++]);
			else
				spec[k++] = *c;
		}
		if (longs)
			spec[k++] = 'l';
		spec[k++] = conv;
		spec[k] = 0;
		char piece[DBGPRINT_MAX];
		switch (conv) {
		case 'd': case 'i': case 'u': case 'x': case 'X': case 'c':
			if (longs)
				ksnprintf(piece, sizeof piece, spec, va_arg(ap, long));
			else
				ksnprintf(piece, sizeof piece, spec, va_arg(ap, int));
			break;
		case 'p':
			ksnprintf(piece, sizeof piece, spec, va_arg(ap, void *));
			break;
		case 's':
			ksnprintf(piece, sizeof piece, spec, va_arg(ap, const char *));
			break;
		case '%':
			strlcpy(piece, "%", sizeof piece);
			break;
		default:
			strlcpy(piece, "%?", sizeof piece);
			break;
		}
		for (const char *c = piece; *c; c++)
			put(o, *c);
	}
	o->buf[o->len] = 0;
}

static ULONG dbg_vprint(const char *fmt, va_list ap)
{
	struct out o = { .len = 0 };
	format(&o, fmt, ap);
	memcpy(dbgprint_last, o.buf, o.len + 1);
	dbgprint_printed++;
	kprintf("%s", o.buf);
	return STATUS_SUCCESS;
}

ULONG DbgPrint(PCSTR Format, ...)
{
	va_list ap;
	va_start(ap, Format);
	ULONG r = dbg_vprint(Format, ap);
	va_end(ap);
	return r;
}

/* DbgPrintEx page: Level 0-31 is a level (its bit), above 31 a mask; error level always
 * passes, the rest when dbgprint_filter has its bit. */
ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)
{
	UNREFERENCED_PARAMETER(ComponentId); /* one filter for every component */
	ULONG mask = Level <= 31 ? 1u << Level : Level & ~DPFLTR_MASK;
	if (!(mask & (1u | dbgprint_filter))) {
		dbgprint_filtered++;
		return STATUS_SUCCESS;
	}
	va_list ap;
	va_start(ap, Format);
	ULONG r = dbg_vprint(Format, ap);
	va_end(ap);
	return r;
}

/* A real INT3: #BP is STATUS_BREAKPOINT to the exception dispatcher (kernel/trap.c). */
__attribute__((noinline)) VOID DbgBreakPoint(VOID)
{
	__asm__ volatile(".globl dbg_break_instruction\ndbg_break_instruction: int3");
}

VOID RtlAssert(PVOID VoidFailedAssertion, PVOID VoidFileName, ULONG LineNumber, PCHAR MutableMessage)
{
	DbgPrint("\n*** Assertion failed: %s%s\n***   Source File: %s, line %u\n\n",
		 MutableMessage ? MutableMessage : "", (const char *)VoidFailedAssertion, (const char *)VoidFileName,
		 LineNumber);
	DbgBreakPoint();
}
