/*
 * Built-in drivers: the driver images linked into the kernel, loaded and unloaded by name
 * (ZwLoadDriver / ZwUnloadDriver, the monitor's `driver` command).
 *
 * A driver is a WDK-style source file in drivers/ that defines DriverEntry and includes
 * <wdm.h>, nothing of mdlab's.  The Makefile compiles drivers/NAME.c with
 *     -include kernel/io/driver.h -DDriverEntry=NAME_DriverEntry -DMDLAB_DRIVER_NAME=NAME
 * so that each image's DriverEntry has a name of its own and is registered here under NAME.
 */
#ifndef KERNEL_IO_DRIVER_H
#define KERNEL_IO_DRIVER_H

#include "include/wdm.h"

struct io_builtin_driver {
	const char *name;
	PDRIVER_INITIALIZE entry;
};

#define IO_BUILTIN_DRIVER_CAT2(a, b) a##b
#define IO_BUILTIN_DRIVER_CAT(a, b) IO_BUILTIN_DRIVER_CAT2(a, b)
#define IO_BUILTIN_DRIVER_STR2(a) #a
#define IO_BUILTIN_DRIVER_STR(a) IO_BUILTIN_DRIVER_STR2(a)

#ifdef MDLAB_DRIVER_NAME
/* The forced include of a driver image: its DriverEntry, registered. */
DRIVER_INITIALIZE DriverEntry;
static const struct io_builtin_driver IO_BUILTIN_DRIVER_CAT(__io_driver_, MDLAB_DRIVER_NAME) = {
	IO_BUILTIN_DRIVER_STR(MDLAB_DRIVER_NAME), DriverEntry
};
__attribute__((used, section(".io_drivers"))) static const struct io_builtin_driver
	*const IO_BUILTIN_DRIVER_CAT(__io_driver_ptr_, MDLAB_DRIVER_NAME) =
		&IO_BUILTIN_DRIVER_CAT(__io_driver_, MDLAB_DRIVER_NAME);
#endif

/* The built-in driver images: the i-th (NULL past the last). */
const struct io_builtin_driver *io_builtin_driver(unsigned i);
/* The loaded driver named `name` (NULL: not loaded). */
PDRIVER_OBJECT io_loaded_driver(const char *name);
/* Load or unload by the image's name, as ZwLoadDriver / ZwUnloadDriver with
 * \Registry\Machine\System\CurrentControlSet\Services\NAME. */
NTSTATUS io_load_driver(const char *name);
NTSTATUS io_unload_driver(const char *name);

#endif
