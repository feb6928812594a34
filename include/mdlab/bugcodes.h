/* Bug check codes used by mdlab, with their NT values and names. */
#ifndef MDLAB_BUGCODES_H
#define MDLAB_BUGCODES_H

/*
 * Every bug check code mdlab raises, as X(name, value), in order of value.  The one list makes
 * both the constants below and the names the STOP screen prints (kernel/bugcheck.c), so a code
 * cannot be raised without its name.  NT's values; MDLAB_INTERNAL_ERROR is mdlab's own.  Each is
 * raised with the parameters its Microsoft bug-check page defines, in its order (mm/RULES.md,
 * "Bug checks", which says what mdlab puts where a page leaves a parameter open).
 */
#define MDLAB_BUGCODES(X)                                                                        \
	X(IRQL_NOT_LESS_OR_EQUAL, 0x0000000A)  /* pageable memory at DISPATCH+ or IF 0, a wait */ \
	X(SPIN_LOCK_ALREADY_OWNED, 0x0000000F) /* no parameters */                               \
	X(SPIN_LOCK_NOT_OWNED, 0x00000010)     /* no parameters */                               \
	X(MEMORY_MANAGEMENT, 0x0000001A)                                                         \
	X(KMODE_EXCEPTION_NOT_HANDLED, 0x0000001E)                                               \
	X(NO_MORE_IRP_STACK_LOCATIONS, 0x00000035) /* IoCallDriver with no location left */      \
	X(NO_MORE_SYSTEM_PTES, 0x0000003F)                                                       \
	X(TARGET_MDL_TOO_SMALL, 0x00000040)                                                      \
	X(MULTIPLE_IRP_COMPLETE_REQUESTS, 0x00000044) /* IoCompleteRequest twice (P1 the IRP) */ \
	X(PFN_LIST_CORRUPT, 0x0000004E)                                                          \
	X(PROCESS_HAS_LOCKED_PAGES, 0x00000076)                                                  \
	X(KERNEL_DATA_INPAGE_ERROR, 0x0000007A) /* paged pool not read back */                   \
	X(UNEXPECTED_KERNEL_MODE_TRAP, 0x0000007F)                                               \
	X(NMI_HARDWARE_FAILURE, 0x00000080)                                                      \
	X(MACHINE_CHECK_EXCEPTION, 0x0000009C)                                                   \
	X(ATTEMPTED_WRITE_TO_READONLY_MEMORY, 0x000000BE)                                        \
	X(BAD_POOL_CALLER, 0x000000C2)                                                           \
	X(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x000000C4)                                        \
	X(DRIVER_CORRUPTED_EXPOOL, 0x000000C5)                                                   \
	X(TIMER_OR_DPC_INVALID, 0x000000C7)  /* P1 3: a DPC's target is no processor */          \
	X(DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x000000C9)                                                   \
	X(DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS, 0x000000CB)                                       \
	X(SYSTEM_PTE_MISUSE, 0x000000DA)                                                         \
	X(MANUALLY_INITIATED_CRASH, 0x000000E2)                                                  \
	X(CLOCK_WATCHDOG_TIMEOUT, 0x00000101) /* a CPU that answers no cross-call */            \
	X(INVALID_MDL_RANGE, 0x0000012E)                                                         \
	/* An invariant of mdlab itself broke (PANIC("function: reason")). */                    \
	X(MDLAB_INTERNAL_ERROR, 0x4D440001)

#define MDLAB_BUGCODE_CONSTANT(name, value) name = value,
enum bugcheck_code { MDLAB_BUGCODES(MDLAB_BUGCODE_CONSTANT) };
#undef MDLAB_BUGCODE_CONSTANT

#endif
