/*
 * The disk tests' data pattern, the same as scripts/diskcheck.py's: a 32-bit xorshift
 * (Marsaglia 2003: x ^= x << 13; x ^= x >> 17; x ^= x << 5) from a non-zero seed, one step
 * per 32-bit little-endian word, the first word the first step's value.  A test that wrote it
 * to the disk prints `# disk-check: SECTOR COUNT SEED` and the harness compares the image.
 */
#ifndef TESTS_LIB_PATTERN_H
#define TESTS_LIB_PATTERN_H

#include <stddef.h>
#include <stdint.h>

static inline void pattern_fill(void *buf, size_t nbytes, uint32_t seed)
{
	uint32_t x = seed, *w = buf;
	for (size_t i = 0; i < nbytes / 4; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		w[i] = x;
	}
}

#endif
