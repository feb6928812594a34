/* mdlab's ntddk.h: what a driver that includes <ntddk.h> instead of <wdm.h> gets (the WDK's
 * ntddk.h includes wdm.h and adds what mdlab does not implement). */
#ifndef MDLAB_NTDDK_H
#define MDLAB_NTDDK_H
#include "wdm.h"
#endif
