/*
 * peer: the user helper of `make bench-linux`, run by the initramfs's /init (statically
 * linked: the initramfs has no C library).  For every case and size it asks mdlab_peer.ko,
 * through MDLAB_PEER_RUN on /dev/mdlab_peer, to time the operation in this process, and
 * prints one line a result on its standard output (the serial console), read by
 * scripts/bench_linux.py:
 *
 *   # linux-bench: case=vmap_vunmap size=8 per_op=3009 reps=64 rounds=3 overhead=4 ticks=1
 *
 * ticks= counts the local APIC timer interrupts (/proc/interrupts, LOC) that landed during
 * the whole ioctl: the untimed call, the rounds and the setup around them.
 * For the pin case it provides the buffer: n anonymous pages, each written once, so
 * resident and writable as mdlab's probe_lock_unlock_user finds its buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "mdlab_peer.h"

#define MARK "# linux-bench:"

static const struct {
	const char *name;
	unsigned int op;
} cases[] = {
	{ "vmap_vunmap", MDLAB_PEER_VMAP },
	{ "vm_map_ram_unmap", MDLAB_PEER_VM_MAP_RAM },
	{ "pin_unpin_user", MDLAB_PEER_PIN },
	{ "alloc_free_pages", MDLAB_PEER_ALLOC },
	{ "alloc_free_pages_zero", MDLAB_PEER_ALLOC_ZERO },
	{ "user_map_unmap", MDLAB_PEER_USER_MAP },
};
static const unsigned int sizes[] = { 1, 8, 64, 512 };

/* The local APIC timer interrupts so far (the LOC line of /proc/interrupts), or -1. */
static long timer_interrupts(void)
{
	char line[512];
	long total = -1;
	FILE *f = fopen("/proc/interrupts", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		char *p = line;

		while (*p == ' ')
			p++;
		if (strncmp(p, "LOC:", 4))
			continue;
		total = 0;
		for (p += 4;;) {
			char *end;
			long v = strtol(p, &end, 10);

			if (end == p)
				break;
			total += v;
			p = end;
		}
	}
	fclose(f);
	return total;
}

int main(void)
{
	struct utsname u;
	int failed = 0;
	int fd = open("/dev/mdlab_peer", O_RDWR);

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (uname(&u) == 0)
		printf(MARK " kernel=%s\n", u.release);
	if (fd < 0) {
		printf(MARK " error=open /dev/mdlab_peer: %s\n", strerror(errno));
		return 1;
	}
	for (unsigned int c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		for (unsigned int s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			unsigned int n = sizes[s];
			size_t len = (size_t)n * 4096;
			struct mdlab_peer_run run = { .op = cases[c].op, .pages = n };
			char *buf = NULL;

			printf(MARK " running %s %u\n", cases[c].name, n);
			if (cases[c].op == MDLAB_PEER_PIN) {
				buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (buf == MAP_FAILED) {
					printf(MARK " error=mmap %zu bytes: %s\n", len, strerror(errno));
					return 1;
				}
				memset(buf, 0x5a, len);
				run.user = (unsigned long)buf;
			}
			long t0 = timer_interrupts();
			int r = ioctl(fd, MDLAB_PEER_RUN, &run);
			long t1 = timer_interrupts();
			if (buf)
				munmap(buf, len);
			if (r) {
				printf(MARK " error=case %s size %u: %s\n", cases[c].name, n, strerror(errno));
				failed = 1;
				continue;
			}
			printf(MARK " case=%s size=%u per_op=%llu reps=%u rounds=%u overhead=%llu ticks=%ld\n",
			       cases[c].name, n, (unsigned long long)run.per_op, run.reps, run.rounds,
			       (unsigned long long)run.overhead, t0 >= 0 && t1 >= 0 ? t1 - t0 : -1);
		}
	}
	printf(MARK " done%s\n", failed ? " with errors" : "");
	close(fd);
	return failed;
}
