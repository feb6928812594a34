#include "kernel/cmdline.h"
#include "include/mdlab/bootinfo.h"
#include "kernel/lib.h"
#include "kernel/printf.h"

static char line[MDLAB_CMDLINE_MAX];

void cmdline_init(const char *src) { strlcpy(line, src, sizeof line); }

const char *cmdline_raw(void) { return line; }

bool cmdline_get(const char *key, char *buf, unsigned long size)
{
	size_t klen = strlen(key);
	for (const char *p = line; *p;) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (*p && *p != ' ')
			p++;
		size_t wlen = p - w;
		if (wlen >= klen && !strncmp(w, key, klen) && (wlen == klen || w[klen] == '=')) {
			const char *v = wlen == klen ? w + wlen : w + klen + 1;
			size_t vlen = p - v;
			if (size) {
				size_t k = vlen < size - 1 ? vlen : size - 1;
				memcpy(buf, v, k);
				buf[k] = 0;
			}
			return true;
		}
	}
	return false;
}

bool cmdline_parse_u64(const char *key, const char *value, uint64_t *out)
{
	const char *why = parse_number(value, 10, out);
	if (why)
		kprintf("command line: %s=%s is refused (%s)\n", key, value, why);
	return !why;
}

uint64_t cmdline_get_u64(const char *key, uint64_t dflt)
{
	char buf[48];
	uint64_t v;
	if (!cmdline_get(key, buf, sizeof buf))
		return dflt;
	/* A value that filled the buffer may have been cut: no number is that long. */
	if (strlen(buf) == sizeof buf - 1) {
		kprintf("command line: %s=%s... is refused (too long)\n", key, buf);
		return dflt;
	}
	if (!cmdline_parse_u64(key, buf, &v))
		return dflt;
	return v;
}
