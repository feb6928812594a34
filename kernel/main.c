#include <stdint.h>
#include "include/mdlab/bootinfo.h"
#include "kernel/cpu.h"
#include "kernel/serial.h"

void kmain(uint64_t bootinfo_phys);

__attribute__((aligned(16))) static uint8_t boot_stack[16384];
uint8_t *const boot_stack_top = boot_stack + sizeof boot_stack;

void kmain(uint64_t bootinfo_phys)
{
	serial_init();
	const struct mdlab_bootinfo *bi = (const void *)(MDLAB_DIRECT_MAP_BASE + bootinfo_phys);
	const char *msg = "mdlab: kernel entered\n";
	unsigned long n = 0;
	while (msg[n])
		n++;
	serial_write(msg, n);
	if (bi->magic == MDLAB_BOOTINFO_MAGIC)
		serial_write("mdlab: bootinfo ok\n", 19);
	outb(0xf4, 0x10);
	cpu_halt_forever();
}
