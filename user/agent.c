/* The agent: a user program that performs the operations its parameter page lists, so that
 * kernel tests can make real ring-3 accesses and system calls (see AGENT_* in syscalls.h). */
#include "user/user.h"

long main(void);

long main(void)
{
	const struct user_params *p = params();
	if (p->magic != USER_PARAMS_MAGIC)
		return 0xBAD;
	uint64_t n = p->args[0], handle = 0;
	for (uint64_t i = 0; i < n && 1 + (i + 1) * AGENT_OP_SLOTS <= USER_PARAMS_ARGS; i++) {
		const uint64_t *op = &p->args[1 + i * AGENT_OP_SLOTS];
		uint64_t a = op[1], b = op[2], c = op[3], d = op[4], e = op[5];
		long st = 0;
		switch (op[0]) {
		case AGENT_END:
			return 0;
		case AGENT_EXIT:
			exit((long)a);
		case AGENT_READ8:
			report(AGENT_KEY(i, 0), *(volatile uint8_t *)a);
			break;
		case AGENT_READ64:
			report(AGENT_KEY(i, 0), *(volatile uint64_t *)a);
			break;
		case AGENT_WRITE8:
			*(volatile uint8_t *)a = (uint8_t)b;
			report(AGENT_KEY(i, 0), 0);
			break;
		case AGENT_WRITE64:
			*(volatile uint64_t *)a = b;
			report(AGENT_KEY(i, 0), 0);
			break;
		case AGENT_EXEC:
			((void (*)(void))a)();
			report(AGENT_KEY(i, 0), 0);
			break;
		case AGENT_ALLOC: {
			void *base = (void *)a;
			size_t size = b;
			st = NtAllocateVirtualMemory(&base, &size, (uint32_t)c, (uint32_t)d);
			report(AGENT_KEY(i, 0), (uint64_t)st);
			report(AGENT_KEY(i, 1), (uint64_t)base);
			break;
		}
		case AGENT_FREE: {
			void *base = (void *)a;
			size_t size = b;
			st = NtFreeVirtualMemory(&base, &size, (uint32_t)c);
			report(AGENT_KEY(i, 0), (uint64_t)st);
			break;
		}
		case AGENT_PROTECT: {
			void *base = (void *)a;
			size_t size = b;
			uint32_t old = 0;
			st = NtProtectVirtualMemory(&base, &size, (uint32_t)c, &old);
			report(AGENT_KEY(i, 0), (uint64_t)st);
			report(AGENT_KEY(i, 1), old);
			break;
		}
		case AGENT_UNMAP_VIEW:
			report(AGENT_KEY(i, 0), (uint64_t)NtUnmapViewOfSection((void *)a));
			break;
		case AGENT_OPEN: {
			char name[41];
			for (int k = 0; k < 40; k++)
				name[k] = (char)(op[1 + k / 8] >> (8 * (k % 8)));
			name[40] = 0;
			report(AGENT_KEY(i, 0), (uint64_t)NtOpenDevice(name, &handle));
			break;
		}
		case AGENT_IOCTL: {
			uint64_t bytes = 0;
			st = NtDeviceIoControlFile(handle, (uint32_t)a, (void *)b, (uint32_t)c, (void *)d, (uint32_t)e,
						   &bytes);
			report(AGENT_KEY(i, 0), (uint64_t)st);
			if (bytes) /* reports are few: only what the kernel wrote */
				report(AGENT_KEY(i, 1), bytes);
			break;
		}
		case AGENT_REPORT:
			report(a, b);
			break;
		case AGENT_SYSCALL:
			report(AGENT_KEY(i, 0), (uint64_t)syscall6((long)a, (long)b, (long)c, (long)d, (long)e, 0, 0));
			break;
		case AGENT_ADD64:
			report(AGENT_KEY(i, 0), __atomic_fetch_add((volatile uint64_t *)a, b, __ATOMIC_SEQ_CST));
			break;
		case AGENT_SPIN64: {
			uint64_t misses = 0;
			while (*(volatile uint64_t *)a != b)
				misses++;
			report(AGENT_KEY(i, 0), misses);
			break;
		}
		case AGENT_FILL64:
			for (uint64_t pg = 0; pg < b; pg++) {
				volatile uint64_t *q = (volatile uint64_t *)(a + pg * 4096);
				q[0] = c ^ pg;
				q[511] = ~(c ^ pg);
			}
			report(AGENT_KEY(i, 0), 0);
			break;
		case AGENT_CHECK64: {
			uint64_t bad = 0, first = b;
			for (uint64_t pg = 0; pg < b; pg++) {
				volatile uint64_t *q = (volatile uint64_t *)(a + pg * 4096);
				if (q[0] != (c ^ pg) || q[511] != ~(c ^ pg)) {
					if (!bad)
						first = pg;
					bad++;
				}
			}
			report(AGENT_KEY(i, 0), bad);
			report(AGENT_KEY(i, 1), first);
			break;
		}
		case AGENT_READ_FILE:
		case AGENT_WRITE_FILE: {
			uint64_t bytes = 0;
			int64_t at = (int64_t)c;
			const int64_t *offset = d ? (const int64_t *)d : c == AGENT_CURRENT_POSITION ? NULL : &at;
			st = op[0] == AGENT_READ_FILE ? NtReadFile(handle, (void *)a, (uint32_t)b, &bytes, offset)
						      : NtWriteFile(handle, (const void *)a, (uint32_t)b, &bytes, offset);
			report(AGENT_KEY(i, 0), (uint64_t)st);
			report(AGENT_KEY(i, 1), bytes);
			break;
		}
		case AGENT_PATTERN32: {
			uint32_t x = (uint32_t)c;
			volatile uint32_t *w = (volatile uint32_t *)a;
			for (uint64_t k = 0; k < b / 4; k++) {
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				w[k] = x;
			}
			report(AGENT_KEY(i, 0), 0);
			break;
		}
		default:
			return 0xBAD0 + (long)i;
		}
	}
	return 0;
}
