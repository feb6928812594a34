#include <stdarg.h>
#include "kernel/bugcheck.h"
#include "kernel/backtrace.h"
#include "kernel/cpu.h"
#include "kernel/printf.h"
#include "kernel/smp/smp.h"

#define NAME_ENTRY(name, value) { value, #name },
static const struct {
	ULONG code;
	const char *name;
} names[] = { MDLAB_BUGCODES(NAME_ENTRY) };
#undef NAME_ENTRY

const char *bugcheck_name(ULONG code)
{
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].code == code)
			return names[i].name;
	return "UNKNOWN_BUGCHECK";
}

/* ---- what each code and parameter means ---------------------------------------------------
 * One row a cause: the code, and for the codes whose P1 says which cause (0x4E, 0x76, 0xC2,
 * 0xC4, 0xDA) that P1; then the cause and what P1-P4 hold, from Microsoft's bug-check pages
 * (mm/RULES.md, "Bug checks", says what mdlab puts where a page leaves one open).  Data only:
 * a new cause is a new row.  NULL: nothing to say (a reserved parameter). */
#define ANY_P1 (~(ULONG_PTR)0)
static const struct {
	ULONG code;
	ULONG_PTR p1;
	const char *cause;
	const char *p[4];
} explanations[] = {
	{ 0x09, ANY_P1, "an IRQL below the one a routine needs (mdlab raises 0xC4 P1 0x30/0x31 for IRQL misuse)",
	  { "(not raised by mdlab)", NULL, NULL, NULL } },
	{ 0x0A, ANY_P1,
	  "pageable memory touched at DISPATCH_LEVEL or above or with interrupts off, or a wait at DISPATCH_LEVEL or above",
	  { "the memory referenced (a wait: the object)", "the IRQL (0xFF: interrupts were off)", "bit 0: write, bit 3: execute",
	    "the address that referenced memory (a wait: its caller)" } },
	{ 0x0F, ANY_P1, "acquiring a spin lock this CPU already holds (it would spin for ever)", { NULL, NULL, NULL, NULL } },
	{ 0x10, ANY_P1, "releasing a spin lock this CPU does not hold", { NULL, NULL, NULL, NULL } },
	{ 0x1A, 0x1236, "MmFreePagesFromMdl met a frame its allocation did not give",
	  { "the subtype, 0x1236", "the MDL", "address of the bad PFN array entry", "the PFN" } },
	{ 0x1A, ANY_P1, "a memory-management error", { "the subtype", NULL, NULL, NULL } },
	{ 0x1E, ANY_P1, "an exception no __try handled",
	  { "the exception code", "the address of the exception", "its parameter 0", "its parameter 1" } },
	{ 0x35, ANY_P1, "IoCallDriver with no stack location left in the IRP", { "the IRP", NULL, NULL, NULL } },
	{ 0x3F, ANY_P1, "a kernel mapping that must not fail found no free system PTEs",
	  { "0: system PTEs", "the pages asked for", "free system PTEs", "total system PTEs" } },
	{ 0x40, ANY_P1, "IoBuildPartialMdl: the target MDL is too small for the range",
	  { "the source MDL", "the target MDL", "pages needed", "the target's capacity in bytes" } },
	{ 0x44, ANY_P1, "IoCompleteRequest of an IRP already completed", { "the IRP", NULL, NULL, NULL } },
	{ 0x4E, 0x07, "a frame unlocked more often than it was locked",
	  { "0x07", "the PFN", "its share (lock) count", NULL } },
	{ 0x4E, 0x99, "freeing a frame that is not allocated", { "0x99", "the PFN", "its page state", NULL } },
	{ 0x4E, 0x9A, "freeing a frame that is still locked",
	  { "0x9A", "the PFN", "its page state", "its reference (lock) count" } },
	{ 0x4E, ANY_P1, "the PFN database is inconsistent", { "the subtype", NULL, NULL, NULL } },
	{ 0x50, ANY_P1, "a reference to memory that is not there (mdlab: an unhandled kernel #PF is 0x1E)",
	  { "the memory referenced", "0 read, 2 write, 0x10 execute", "the address that referenced memory",
	    "the type of fault" } },
	{ 0x76, 0, "a process ended with pages still locked for it",
	  { "0", "the process", "pages locked", "driver stacks (0: none kept)" } },
	{ 0x76, 1, "unlocking pages that are not locked (verifier off)",
	  { "1", "the MDL", "the process's count of locked pages", "driver stacks (0: none kept)" } },
	{ 0x7A, ANY_P1, "a page of kernel data (paged pool) could not be read from the pagefile",
	  { "the address of the PTE (mdlab: its direct-map address)", "the error status (the device's)",
	    "the PTE contents (its pagefile PTE)", "the faulting address" } },
	{ 0x7F, ANY_P1, "a trap the kernel cannot handle (#DF, #NM, vector 9, #TS)",
	  { "the trap number", "the error code", "RIP", "CR2" } },
	{ 0x80, ANY_P1, "an NMI (hardware failure)", { "2", "the error code", "RIP", "CR2" } },
	{ 0x9C, ANY_P1, "a machine check (#MC)",
	  { "the bank", "address of the MCA_EXCEPTION record", "MCi_STATUS bits 63-32", "MCi_STATUS bits 31-0" } },
	{ 0xBE, ANY_P1, "a write to read-only memory (mdlab: a read-locked source's read-only mapping, decision 9)",
	  { "the address written", "the PTE contents", NULL, NULL } },
	{ 0xC2, 0x00, "pool allocation of zero bytes", { "0x00", "0", "the pool type", "the tag" } },
	{ 0xC2, 0x07, "pool freed twice", { "0x07", NULL, "the pool header's contents", "the block's address" } },
	{ 0xC2, 0x08, "pool allocated above its pool type's IRQL",
	  { "0x08", "the IRQL", "the pool type", "the size" } },
	{ 0xC2, 0x09, "pool freed above its pool type's IRQL (DISPATCH_LEVEL; APC_LEVEL for paged pool)", { "0x09", "the IRQL", "the pool type", "the address" } },
	{ 0xC2, 0x0A, "pool freed with the wrong tag",
	  { "0x0A", "the address", "the allocator's tag", "the tag used" } },
	{ 0xC2, 0x40, "freeing a user address as pool",
	  { "0x40", "the address", "the start of system space", NULL } },
	{ 0xC2, 0x42, "freeing an address in no pool", { "0x42", "the address", NULL, NULL } },
	{ 0xC2, 0x46, "freeing a pool address that is not an allocation", { "0x46", "the address", NULL, NULL } },
	{ 0xC2, 0x9B, "pool allocated with tag 0", { "0x9B", "the pool type", "the size", "the caller's address" } },
	{ 0xC2, ANY_P1, "bad pool request", { "the violation", NULL, NULL, NULL } },
	{ 0xC4, 0x30, "KfRaiseIrql below the current IRQL or above HIGH_LEVEL",
	  { "0x30", "the current IRQL", "the requested IRQL", NULL } },
	{ 0xC4, 0x31, "KeLowerIrql to above the current IRQL, or below DISPATCH_LEVEL in a DPC routine",
	  { "0x31", "the current IRQL", "the requested IRQL", "0: the new IRQL is bad, 1: inside a DPC routine" } },
	{ 0xC4, 0x32, "KeReleaseSpinLock not at DISPATCH_LEVEL (a double release)",
	  { "0x32", "the current IRQL", "the spin lock's address", NULL } },
	{ 0xC4, 0x70, "MmProbeAndLockPages above its IRQL", { "0x70", "the IRQL", "the MDL", "the access mode" } },
	{ 0xC4, 0x74, "MmMapLockedPages (kernel) above DISPATCH_LEVEL",
	  { "0x74", "the IRQL", "the MDL", "the access mode" } },
	{ 0xC4, 0x75, "MmMapLockedPages (user) above APC_LEVEL", { "0x75", "the IRQL", "the MDL", "the access mode" } },
	{ 0xC4, 0x76, "MmMapLockedPagesSpecifyCache (kernel) above DISPATCH_LEVEL",
	  { "0x76", "the IRQL", "the MDL", "the access mode" } },
	{ 0xC4, 0x77, "MmMapLockedPagesSpecifyCache (user) above APC_LEVEL",
	  { "0x77", "the IRQL", "the MDL", "the access mode" } },
	{ 0xC4, 0x78, "MmUnlockPages above DISPATCH_LEVEL", { "0x78", "the IRQL", "the MDL", NULL } },
	{ 0xC4, 0x79, "MmUnmapLockedPages (kernel) above DISPATCH_LEVEL",
	  { "0x79", "the IRQL", "the address", "the MDL" } },
	{ 0xC4, 0x7A, "MmUnmapLockedPages (user) above APC_LEVEL", { "0x7A", "the IRQL", "the address", "the MDL" } },
	{ 0xC4, 0x7C, "unlocking an MDL that was never locked", { "0x7C", "the MDL", "its MdlFlags", NULL } },
	{ 0xC4, 0x7D, "unlocking a nonpaged-pool MDL (MmBuildMdlForNonPagedPool locks nothing)",
	  { "0x7D", "the MDL", "its MdlFlags", NULL } },
	{ 0xC4, 0x7E, "MmAllocatePagesForMdl(Ex) or MmFreePagesFromMdl above DISPATCH_LEVEL",
	  { "0x7E", "the IRQL", "DISPATCH_LEVEL", NULL } },
	{ 0xC4, 0x7F, "MmBuildMdlForNonPagedPool over memory that is not nonpaged",
	  { "0x7F", "the IRQL", "the MDL", "its MdlFlags" } },
	{ 0xC4, 0x81, "MmMapLockedPages (deprecated: use MmMapLockedPagesSpecifyCache)",
	  { "0x81", "the MDL", "its MdlFlags", NULL } },
	{ 0xC4, 0x82, "MmMapLockedPagesSpecifyCache with BugCheckOnFailure TRUE",
	  { "0x82", "the MDL", "its MdlFlags", NULL } },
	{ 0xC4, 0x85, "mapping a frame that is not locked", { "0x85", "the MDL", "pages to map", "the first frame not locked" } },
	{ 0xC4, 0x89, "an MDL frame outside RAM without MDL_IO_SPACE",
	  { "0x89", "the MDL", "address of its PFN array entry", "the frame" } },
	{ 0xC4, 0xB0, "probing an MDL already locked, built for nonpaged pool, or partial",
	  { "0xB0", "the MDL", "its MdlFlags", "the offending flags" } },
	{ 0xC4, 0xB2, "a second system mapping of an MDL (or one of a nonpaged-pool MDL)",
	  { "0xB2", "the MDL", "its MdlFlags", "the offending flag" } },
	{ 0xC4, 0xB3, "mapping an MDL whose pages are not locked",
	  { "0xB3", "the MDL", "its MdlFlags", "the missing flag, MDL_PAGES_LOCKED (0x2)" } },
	{ 0xC4, 0xB4, "unlocking a partial MDL", { "0xB4", "the MDL", "its MdlFlags", "MDL_PARTIAL (0x10)" } },
	{ 0xC4, 0xB5, "unmapping a partial MDL's shared parent mapping",
	  { "0xB5", "the MDL", "its MdlFlags", "MDL_PARTIAL (0x10)" } },
	{ 0xC4, 0xB6, "unmapping an MDL that is not mapped",
	  { "0xB6", "the MDL", "its MdlFlags", "the missing flag, MDL_MAPPED_TO_SYSTEM_VA (0x1)" } },
	{ 0xC4, 0xB8, "IoFreeMdl of an MDL that is still mapped", { "0xB8", "the MDL", "its MdlFlags", NULL } },
	{ 0xC4, 0xB9, "unmapping a user address that is not this MDL's mapping in the current process",
	  { "0xB9", "the address", "the MDL", NULL } },
	{ 0xC4, 0xE5, "a memory routine above its IRQL (DISPATCH_LEVEL)", { "0xE5", "the IRQL", NULL, NULL } },
	{ 0xC4, 0x2003, "mdlab: freeing pool still mapped into a user space",
	  { "0x2003", "the address", "mappings of its page", NULL } },
	{ 0xC4, 0x2004, "mdlab: kernel memory mapped to a user that is not whole zeroed pool pages",
	  { "0x2004", "the MDL", "the offending address", "why: 1 not whole pages, 2 uninitialized pool, 3 not pool" } },
	{ 0xC4, 0x2005, "mdlab: unlocking or freeing an MDL still mapped to a user",
	  { "0x2005", "the MDL", "the user address (0 from the free routines)", "the process (0 from the free routines)" } },
	{ 0xC4, 0x2006, "mdlab: freeing device memory the matching allocator did not give",
	  { "0x2006", "the address", "the bytes given (0: the routine takes none)", "the bytes allocated (0: no block)" } },
	{ 0xC4, 0x2007, "mdlab: IoFreeMdl of an MDL whose pages are still locked",
	  { "0x2007", "the MDL", "its MdlFlags", "pages locked" } },
	{ 0xC4, 0x2008, "mdlab: MmProbeAndLockProcessPages with no process",
	  { "0x2008", "the MDL", "the process (0)", "the access mode" } },
	{ 0xC4, 0x2009, "mdlab: a kernel lock taken out of the lock order (mm/RULES.md, Locks)",
	  { "0x2009", "the lock", "its rank", "the ranks this CPU holds (bit n: rank n)" } },
	{ 0xC4, 0x2010, "mdlab: a DPC routine returned at an IRQL other than DISPATCH_LEVEL",
	  { "0x2010", "the DeferredRoutine", "the IRQL it returned at", "the DPC" } },
	{ 0xC4, ANY_P1, "the driver verifier found a violation", { "the violation", NULL, NULL, NULL } },
	{ 0xC5, ANY_P1, "pool guard bytes overwritten, found when the block was freed or a kept block reused",
	  { "the memory referenced (the first changed guard byte)", "the IRQL", "0 read, 1 write",
	    "the allocation's address" } },
	{ 0xC7, 3, "KeInsertQueueDpc of a DPC whose target is no online processor",
	  { "3", "the DPC", "the processor number", "the number of processors" } },
	{ 0xC7, ANY_P1, "a timer or DPC where none may be", { "the subtype", NULL, NULL, NULL } },
	{ 0xC9, 0x01, "IoFreeIrp or IoReuseIrp of something that is not an IRP", { "0x01", "the IRP", NULL, NULL } },
	{ 0xC9, 0x02, "IoFreeIrp or IoReuseIrp of an IRP still in use", { "0x02", "the IRP", NULL, NULL } },
	{ 0xC9, 0x03, "IoCallDriver of something that is not an IRP", { "0x03", "the IRP", NULL, NULL } },
	{ 0xC9, 0x04, "IoCallDriver to something that is not a live device", { "0x04", "the device", NULL, NULL } },
	{ 0xC9, 0x05, "a dispatch routine returned at another IRQL",
	  { "0x05", "the device", "the IRQL before", "the IRQL after" } },
	{ 0xC9, 0x06, "IoCompleteRequest with STATUS_PENDING or -1", { "0x06", "the status", "the IRP", NULL } },
	{ 0xC9, 0x10, "IoCallDriver above DISPATCH_LEVEL", { "0x10", "the IRQL", NULL, NULL } },
	{ 0xC9, ANY_P1, "the I/O manager found a misuse", { "the violation", NULL, NULL, NULL } },
	{ 0xCB, ANY_P1, "a process ended with pages a driver locked for it and never unlocked",
	  { "the lock-tracking record", NULL, "the MDL", "pages locked" } },
	{ 0xDA, 0x01, "a run of system PTEs released twice",
	  { "0x01", "the tracking record", "the MDL (0: not known)", "the duplicate tracking record" } },
	{ 0xDA, 0x02, "system PTEs released with the wrong count",
	  { "0x02", "the tracking record", "the count expected", "the count asked to release" } },
	{ 0xDA, 0x03, "system PTEs released at a wrong address",
	  { "0x03", "the first tracking record found", "the address expected", "the address asked for" } },
	{ 0xDA, 0x06, "unmapping an MDL that is not mapped (verifier off)",
	  { "0x06", "the MDL", "the virtual address", "the number of mappings to release" } },
	{ 0xDA, 0x400, "MmUnmapIoSpace of what is no I/O-space mapping", { "0x400", "the base address", "pages to free", NULL } },
	{ 0xDA, ANY_P1, "system PTEs misused", { "the subtype", NULL, NULL, NULL } },
	{ 0xE2, ANY_P1, "a crash asked for on purpose", { NULL, NULL, NULL, NULL } },
	{ 0x101, ANY_P1, "a processor answered no cross-call (IPI) in the time allowed: it is not taking interrupts",
	  { "the time allowed, in clock ticks", "0", "the unresponsive CPU's struct kcpu (its PRCB)",
	    "the unresponsive CPU's number" } },
	{ 0x12E, ANY_P1, "IoBuildPartialMdl of a range outside the source MDL",
	  { "the source MDL", "the target MDL", "the virtual address", "the length" } },
	{ 0x4D440001, ANY_P1, "an invariant of mdlab itself broke (the line above says which)",
	  { "an address in the function that stopped (PANIC: the return address into it)",
	    NULL, NULL, NULL } },
};

const char *bugcheck_explain(ULONG code, ULONG_PTR p1, unsigned what)
{
	for (unsigned i = 0; i < sizeof explanations / sizeof explanations[0]; i++) {
		if (explanations[i].code != code || (explanations[i].p1 != ANY_P1 && explanations[i].p1 != p1))
			continue;
		return what == 0 ? explanations[i].cause : what <= 4 ? explanations[i].p[what - 1] : NULL;
	}
	return NULL;
}

/* Under the name, as !analyze prints it: the cause, then each parameter with its meaning. */
static void print_explanation(ULONG code, const ULONG_PTR p[4])
{
	const char *cause = bugcheck_explain(code, p[0], 0);
	if (!cause)
		return;
	kprintf("%s\nArguments:\n", cause);
	for (unsigned i = 0; i < 4; i++) {
		const char *what = bugcheck_explain(code, p[0], i + 1);
		kprintf("  Arg%u: 0x%016lx, %s\n", i + 1, p[i], what ? what : "reserved");
	}
	kprintf("\n");
}

void qemu_exit(uint8_t value)
{
	outb(QEMU_EXIT_PORT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* The CPU that is stopping the machine (its number + 1; 0: none yet). */
static volatile int stopping_cpu;

void KeBugCheckEx(ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
	__asm__ volatile("cli");
	int me = (int)smp_cpu_number_safe() + 1, first = 0;
	if (!__atomic_compare_exchange_n(&stopping_cpu, &first, me, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST)) {
		if (first != me)
			smp_frozen_halt(); /* another CPU is stopping the machine: it prints */
		/* A bug check while printing one: say so once and stop. */
		kprintf("\n*** nested bug check 0x%08X while stopping\n", code);
		qemu_exit(QEMU_EXIT_BUGCHECK);
	}
	/* The others stop where they are, so the STOP line is printed once, by this CPU. */
	smp_freeze_others();
	console_set_line_prefix(NULL);
	kprintf("\n" MDLAB_STOP_FORMAT "\n%s\n\n", code, p1, p2, p3, p4, bugcheck_name(code));
	print_explanation(code, (const ULONG_PTR[4]){ p1, p2, p3, p4 });
	kprintf("Backtrace of the caller:\n");
	backtrace_print((uint64_t)__builtin_frame_address(0), 0);
	qemu_exit(QEMU_EXIT_BUGCHECK);
}

void KeBugCheck(ULONG code) { KeBugCheckEx(code, 0, 0, 0, 0); }

void kpanic(const char *fn, const char *fmt, ...)
{
	va_list ap;
	(void)fn; /* the message names its function, as "function: reason" */
	kprintf("\n");
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
	KeBugCheckEx(MDLAB_INTERNAL_ERROR, (ULONG_PTR)__builtin_return_address(0), 0, 0, 0);
}
