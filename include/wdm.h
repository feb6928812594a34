/*
 * mdlab's wdm.h: the subset of the WDK's wdm.h that mdlab implements, with the exact NT
 * names, types and numeric values.  A driver includes this header only.
 */
#ifndef MDLAB_WDM_H
#define MDLAB_WDM_H

#include "include/mdlab/ntdef.h"
#include "include/mdlab/bugcodes.h"
#include "kernel/irql.h"
#include "kernel/bugcheck.h"
#include "kernel/seh.h"

/* ---- Pool ---------------------------------------------------------------------------- */

typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_USE_QUOTA 0x0000000000000001ull
#define POOL_FLAG_UNINITIALIZED 0x0000000000000002ull
#define POOL_FLAG_SESSION 0x0000000000000004ull
#define POOL_FLAG_CACHE_ALIGNED 0x0000000000000008ull
#define POOL_FLAG_RAISE_ON_FAILURE 0x0000000000000020ull
#define POOL_FLAG_NON_PAGED 0x0000000000000040ull
#define POOL_FLAG_NON_PAGED_EXECUTE 0x0000000000000080ull
#define POOL_FLAG_PAGED 0x0000000000000100ull

typedef enum _POOL_TYPE {
	NonPagedPool = 0,
	NonPagedPoolExecute = NonPagedPool,
	PagedPool = 1,
	NonPagedPoolNx = 512,
} POOL_TYPE;

/* Nonpaged pool (and paged pool, which mdlab never pages out but keeps apart so that MDL
 * routines can tell them apart).  Zeroed unless POOL_FLAG_UNINITIALIZED.  NULL on failure,
 * or STATUS_INSUFFICIENT_RESOURCES raised with POOL_FLAG_RAISE_ON_FAILURE.  Executable pool is
 * refused (NULL): no page is writable and executable (W^X). */
PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
VOID ExFreePoolWithTag(PVOID P, ULONG Tag);
VOID ExFreePool(PVOID P);
/* The older interface (mm/RULES.md pool rule P1): ExAllocatePoolZero zeroes,
 * ExAllocatePoolUninitialized is ExAllocatePoolWithTag; ExAllocatePool (obsolete) tags with
 * 'None'; ExAllocatePoolWithQuotaTag raises STATUS_INSUFFICIENT_RESOURCES on failure unless
 * PoolType has POOL_QUOTA_FAIL_INSTEAD_OF_RAISE (mdlab keeps no quotas).  An unknown
 * PoolType: NULL. */
#define POOL_QUOTA_FAIL_INSTEAD_OF_RAISE 8
#define POOL_COLD_ALLOCATION 256 /* a hint: the memory is rarely used (no effect in mdlab) */
#define POOL_TAG_NONE 0x656E6F4Eu /* 'None' */
PVOID ExAllocatePoolZero(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePoolUninitialized(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePool(POOL_TYPE PoolType, SIZE_T NumberOfBytes);
PVOID ExAllocatePoolWithQuotaTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);

/* ---- Pages, MDLs ------------------------------------------------------------------- */

#define PAGE_SIZE 4096ul
#define PAGE_SHIFT 12

/* The offset of Va in its page, the page it lies in, and the pages [Va, Va + Size) touches. */
#define BYTE_OFFSET(Va) ((ULONG)((ULONG_PTR)(Va) & (PAGE_SIZE - 1)))
#define PAGE_ALIGN(Va) ((PVOID)((ULONG_PTR)(Va) & ~(PAGE_SIZE - 1)))
#define ADDRESS_AND_SIZE_TO_SPAN_PAGES(Va, Size) \
	((ULONG)((BYTE_OFFSET(Va) + (SIZE_T)(Size) + (PAGE_SIZE - 1)) >> PAGE_SHIFT))

struct _EPROCESS;
typedef struct _EPROCESS *PEPROCESS;
/* The handle that names the calling process (ZwAllocateVirtualMemory and friends). */
#define NtCurrentProcess() ((HANDLE)(LONG_PTR)-1)

/* The x64 layout: 0x30 bytes, the PFN array follows at (PPFN_NUMBER)(Mdl + 1). */
typedef struct _MDL {
	struct _MDL *Next;          /* 0x00 */
	CSHORT Size;                /* 0x08: sizeof(MDL) + pages * sizeof(PFN_NUMBER) */
	CSHORT MdlFlags;            /* 0x0A */
	struct _EPROCESS *Process;  /* 0x10 */
	PVOID MappedSystemVa;       /* 0x18 */
	PVOID StartVa;              /* 0x20: page-aligned */
	ULONG ByteCount;            /* 0x28 */
	ULONG ByteOffset;           /* 0x2C */
} MDL, *PMDL;

#define MDL_MAPPED_TO_SYSTEM_VA 0x0001
#define MDL_PAGES_LOCKED 0x0002
#define MDL_SOURCE_IS_NONPAGED_POOL 0x0004
#define MDL_ALLOCATED_FIXED_SIZE 0x0008
#define MDL_PARTIAL 0x0010
#define MDL_PARTIAL_HAS_BEEN_MAPPED 0x0020
#define MDL_IO_PAGE_READ 0x0040
#define MDL_WRITE_OPERATION 0x0080
#define MDL_PARENT_MAPPED_SYSTEM_VA 0x0100
#define MDL_FREE_EXTRA_PTES 0x0200
#define MDL_DESCRIBES_AWE 0x0400
#define MDL_IO_SPACE 0x0800
#define MDL_NETWORK_HEADER 0x1000
#define MDL_MAPPING_CAN_FAIL 0x2000
#define MDL_ALLOCATED_MUST_SUCCEED 0x4000
#define MDL_PAGE_CONTENTS_INVARIANT 0x4000
#define MDL_INTERNAL 0x8000

typedef enum _MEMORY_CACHING_TYPE {
	MmNonCached = 0,
	MmCached = 1,
	MmWriteCombined = 2,
	MmFrameBufferCached = 2,
	MmHardwareCoherentCached = 3,
	MmNonCachedUnordered = 4,
	MmUSWCCached = 5,
	MmMaximumCacheType = 6,
	MmNotMapped = -1,
	/* mdlab extensions, not NT names: the two PAT types NT has no name for. */
	MmMdlabWriteThrough = 0x100,
	MmMdlabWriteProtected = 0x101,
} MEMORY_CACHING_TYPE;

typedef enum _MM_PAGE_PRIORITY {
	LowPagePriority = 0,
	NormalPagePriority = 16,
	HighPagePriority = 32,
} MM_PAGE_PRIORITY;

/* Flags OR-ed into Priority (Windows 8 and later). */
#define MdlMappingNoWrite 0x80000000u
#define MdlMappingNoExecute 0x40000000u
#define MdlMappingWithGuardPtes 0x20000000u

typedef enum _LOCK_OPERATION { IoReadAccess = 0, IoWriteAccess = 1, IoModifyAccess = 2 } LOCK_OPERATION;

/* MmAllocatePagesForMdlEx flags. */
#define MM_DONT_ZERO_ALLOCATION 0x00000001
#define MM_ALLOCATE_FROM_LOCAL_NODE_ONLY 0x00000002
#define MM_ALLOCATE_FULLY_REQUIRED 0x00000004
#define MM_ALLOCATE_NO_WAIT 0x00000008
#define MM_ALLOCATE_PREFER_CONTIGUOUS 0x00000010
#define MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS 0x00000020
#define MM_ALLOCATE_FAST_LARGE_PAGES 0x00000040

/* Page protections (MmProtectMdlSystemAddress). */
#define PAGE_NOACCESS 0x01
#define PAGE_READONLY 0x02
#define PAGE_READWRITE 0x04
#define PAGE_WRITECOPY 0x08
#define PAGE_EXECUTE 0x10
#define PAGE_EXECUTE_READ 0x20
#define PAGE_EXECUTE_READWRITE 0x40
#define PAGE_EXECUTE_WRITECOPY 0x80
#define PAGE_GUARD 0x100
#define PAGE_NOCACHE 0x200
#define PAGE_WRITECOMBINE 0x400

/* The I/O request packet (defined with the I/O manager's types below). */
typedef struct _IRP IRP, *PIRP;

#define MmGetMdlVirtualAddress(Mdl) ((PVOID)((PCHAR)((Mdl)->StartVa) + (Mdl)->ByteOffset))
#define MmGetMdlByteCount(Mdl) ((Mdl)->ByteCount)
#define MmGetMdlByteOffset(Mdl) ((Mdl)->ByteOffset)
#define MmGetMdlPfnArray(Mdl) ((PPFN_NUMBER)((Mdl) + 1))

/* Initialise an MDL header for [BaseVa, BaseVa + Length); the PFN array is not filled. */
#define MmInitializeMdl(MemoryDescriptorList, BaseVa, Length)                                   \
	do {                                                                                   \
		PMDL __m = (MemoryDescriptorList);                                             \
		PVOID __va = (PVOID)(BaseVa);                                                  \
		SIZE_T __len = (SIZE_T)(Length);                                               \
		__m->Next = NULL;                                                              \
		__m->Size = (CSHORT)(sizeof(MDL) +                                              \
				     sizeof(PFN_NUMBER) * ADDRESS_AND_SIZE_TO_SPAN_PAGES(__va, __len)); \
		__m->MdlFlags = 0;                                                             \
		__m->Process = NULL;                                                           \
		__m->MappedSystemVa = NULL;                                                    \
		__m->StartVa = PAGE_ALIGN(__va);                                               \
		__m->ByteOffset = BYTE_OFFSET(__va);                                           \
		__m->ByteCount = (ULONG)__len;                                                 \
	} while (0)

PMDL IoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer, BOOLEAN ChargeQuota, PIRP Irp);
VOID IoFreeMdl(PMDL Mdl);
SIZE_T MmSizeOfMdl(PVOID Base, SIZE_T Length);
VOID MmProbeAndLockPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation);
VOID MmUnlockPages(PMDL MemoryDescriptorList);
VOID MmBuildMdlForNonPagedPool(PMDL MemoryDescriptorList);
PMDL MmAllocatePagesForMdl(PHYSICAL_ADDRESS LowAddress, PHYSICAL_ADDRESS HighAddress, PHYSICAL_ADDRESS SkipBytes,
			   SIZE_T TotalBytes);
PMDL MmAllocatePagesForMdlEx(PHYSICAL_ADDRESS LowAddress, PHYSICAL_ADDRESS HighAddress, PHYSICAL_ADDRESS SkipBytes,
			     SIZE_T TotalBytes, MEMORY_CACHING_TYPE CacheType, ULONG Flags);
VOID MmFreePagesFromMdl(PMDL MemoryDescriptorList);
VOID IoBuildPartialMdl(PMDL SourceMdl, PMDL TargetMdl, PVOID VirtualAddress, ULONG Length);
PVOID MmMapLockedPagesSpecifyCache(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode,
				   MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG BugCheckOnFailure,
				   ULONG Priority);
PVOID MmMapLockedPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode);
VOID MmUnmapLockedPages(PVOID BaseAddress, PMDL MemoryDescriptorList);
NTSTATUS MmProtectMdlSystemAddress(PMDL MemoryDescriptorList, ULONG NewProtect);

/* ---- Device memory (mm/devmem.c; mm/RULES.md device-memory rules D1-D4) ------------ */

/* Zeroed RAM mapped uncached (UC) in system space; NULL when it cannot be had.  Freed with
 * the same size.  IRQL <= DISPATCH_LEVEL in mdlab. */
PVOID MmAllocateNonCachedMemory(SIZE_T NumberOfBytes);
VOID MmFreeNonCachedMemory(PVOID BaseAddress, SIZE_T NumberOfBytes);

/* NUMA node requests (mdlab has one node, 0). */
typedef ULONG NODE_REQUIREMENT;
#define MM_ANY_NODE_OK 0x80000000u

/* Physically contiguous zeroed RAM within [Lowest, Highest], crossing no multiple of
 * BoundaryAddressMultiple (0: none; else a power of two), mapped in system space with the
 * cache type's memory type for good; NULL when no such block is free. */
PVOID MmAllocateContiguousMemory(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS HighestAcceptableAddress);
PVOID MmAllocateContiguousMemorySpecifyCache(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS LowestAcceptableAddress,
					     PHYSICAL_ADDRESS HighestAcceptableAddress,
					     PHYSICAL_ADDRESS BoundaryAddressMultiple, MEMORY_CACHING_TYPE CacheType);
/* Protect: PAGE_READWRITE, optionally | PAGE_NOCACHE or PAGE_WRITECOMBINE. */
PVOID MmAllocateContiguousNodeMemory(SIZE_T NumberOfBytes, PHYSICAL_ADDRESS LowestAcceptableAddress,
				     PHYSICAL_ADDRESS HighestAcceptableAddress, PHYSICAL_ADDRESS BoundaryAddressMultiple,
				     ULONG Protect, NODE_REQUIREMENT PreferredNode);
VOID MmFreeContiguousMemory(PVOID BaseAddress);
VOID MmFreeContiguousMemorySpecifyCache(PVOID BaseAddress, SIZE_T NumberOfBytes, MEMORY_CACHING_TYPE CacheType);

/* A physical range (device memory, or RAM that is locked down) in system space; NULL when
 * it cannot be mapped.  MmMapIoSpaceEx: PAGE_READWRITE or PAGE_READONLY, optionally |
 * PAGE_NOCACHE or PAGE_WRITECOMBINE (mdlab refuses the executable protections). */
PVOID MmMapIoSpace(PHYSICAL_ADDRESS PhysicalAddress, SIZE_T NumberOfBytes, MEMORY_CACHING_TYPE CacheType);
PVOID MmMapIoSpaceEx(PHYSICAL_ADDRESS PhysicalAddress, SIZE_T NumberOfBytes, ULONG Protect);
VOID MmUnmapIoSpace(PVOID BaseAddress, SIZE_T NumberOfBytes);

/* What the current address space maps an address to (0 when nothing), whether it maps it,
 * and the direct-map address of a RAM physical address (NULL for any other). */
PHYSICAL_ADDRESS MmGetPhysicalAddress(PVOID BaseAddress);
BOOLEAN MmIsAddressValid(PVOID VirtualAddress);
PVOID MmGetVirtualForPhysical(PHYSICAL_ADDRESS PhysicalAddress);

/* x86 and x64 keep caches coherent with DMA: nothing to flush (as the WDK's amd64 macro). */
#define KeFlushIoBuffers(Mdl, ReadOperation, DmaOperation) ((void)(Mdl), (void)(ReadOperation), (void)(DmaOperation))

/* ---- Reserved mappings (mm/reserved.c; mm/RULES.md reserved-mapping rule R1) ---------- */

/* System PTEs reserved ahead, so that mapping an MDL into them cannot fail for want of PTEs.
 * Misuse is SYSTEM_PTE_MISUSE (0xDA) 0x100-0x10C.  Flags: 0 (mdlab knows no other). */
PVOID MmAllocateMappingAddress(SIZE_T NumberOfBytes, ULONG PoolTag);
PVOID MmAllocateMappingAddressEx(SIZE_T NumberOfBytes, ULONG PoolTag, ULONG Flags);
VOID MmFreeMappingAddress(PVOID BaseAddress, ULONG PoolTag);
/* The result includes the MDL's byte offset; the MDL's MappedSystemVa does not. */
PVOID MmMapLockedPagesWithReservedMapping(PVOID MappingAddress, ULONG PoolTag, PMDL MemoryDescriptorList,
					  MEMORY_CACHING_TYPE CacheType);
VOID MmUnmapReservedMapping(PVOID BaseAddress, ULONG PoolTag, PMDL MemoryDescriptorList);

#define STATUS_INVALID_PARAMETER_2 ((NTSTATUS)0xC00000F0)
#define STATUS_INVALID_PARAMETER_3 ((NTSTATUS)0xC00000F1)

/* MmMapMdl (mm/RULES.md rule R2): the MDL mapped for the time of one call of DriverRoutine. */
typedef VOID MM_MDL_ROUTINE(PVOID DriverContext, PVOID MappedVa);
typedef MM_MDL_ROUTINE *PMM_MDL_ROUTINE;
NTSTATUS MmMapMdl(PMDL MemoryDescriptorList, ULONG Protection, PMM_MDL_ROUTINE DriverRoutine, PVOID DriverContext);

/* Move the MDL's start up by NumberOfBytes (its end stays); pages passed are unlocked
 * (mm/RULES.md helper rule H1).  STATUS_INVALID_PARAMETER_2 when that would reach the end. */
#define STATUS_NOT_SUPPORTED ((NTSTATUS)0xC00000BB)
NTSTATUS MmAdvanceMdl(PMDL Mdl, ULONG NumberOfBytes);

/* One page of a scattered buffer: page i of the MDL (MmProbeAndLockSelectedPages). */
typedef void *PVOID64;
typedef union _FILE_SEGMENT_ELEMENT {
	PVOID64 Buffer;
	ULONGLONG Alignment;
} FILE_SEGMENT_ELEMENT, *PFILE_SEGMENT_ELEMENT;
VOID MmProbeAndLockSelectedPages(PMDL MemoryDescriptorList, PFILE_SEGMENT_ELEMENT SegmentArray,
				 KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation);

/* MmProbeAndLockPages in Process's address space (attached for the call when it is not the
 * current one); raises as MmProbeAndLockPages does, after detaching. */
VOID MmProbeAndLockProcessPages(PMDL MemoryDescriptorList, PEPROCESS Process, KPROCESSOR_MODE AccessMode,
				LOCK_OPERATION Operation);

/* The system address of an MDL's buffer: the existing mapping (a mapped MDL, or a
 * nonpaged-pool one), else a new MmCached kernel mapping; NULL when that fails. */
#define MmGetSystemAddressForMdlSafe(Mdl, Priority)                                             \
	(((Mdl)->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL))            \
		 ? (Mdl)->MappedSystemVa                                                       \
		 : MmMapLockedPagesSpecifyCache((Mdl), KernelMode, MmCached, NULL, FALSE, (Priority)))

/* Obsolete: the same with MmMapLockedPages (bug check instead of NULL on failure). */
#define MmGetSystemAddressForMdl(Mdl)                                                           \
	(((Mdl)->MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL))            \
		 ? (Mdl)->MappedSystemVa                                                       \
		 : MmMapLockedPages((Mdl), KernelMode))

/* Make a partial MDL reusable: release the mapping it made of its own, if any. */
#define MmPrepareMdlForReuse(Mdl)                                                               \
	do {                                                                                   \
		if ((Mdl)->MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED)                             \
			MmUnmapLockedPages((Mdl)->MappedSystemVa, (Mdl));                      \
	} while (0)

/* ---- The I/O manager: devices, IRPs, device I/O control ------------------------------ */

#define STATUS_PENDING ((NTSTATUS)0x00000103)
#define STATUS_INVALID_DEVICE_REQUEST ((NTSTATUS)0xC0000010)
#define STATUS_BUFFER_TOO_SMALL ((NTSTATUS)0xC0000023)
#define STATUS_OBJECT_NAME_INVALID ((NTSTATUS)0xC0000033)
#define STATUS_OBJECT_NAME_NOT_FOUND ((NTSTATUS)0xC0000034)
#define STATUS_OBJECT_NAME_COLLISION ((NTSTATUS)0xC0000035)
#define STATUS_DELETE_PENDING ((NTSTATUS)0xC0000056)

/* An error status (severity 3), as opposed to success, information or warning. */
#define NT_ERROR(Status) ((((ULONG)(Status)) >> 30) == 3)

/* I/O control codes: device type, required access, function, transfer method. */
#define CTL_CODE(DeviceType, Function, Method, Access) \
	(((ULONG)(DeviceType) << 16) | ((ULONG)(Access) << 14) | ((ULONG)(Function) << 2) | (ULONG)(Method))
#define DEVICE_TYPE_FROM_CTL_CODE(Code) (((ULONG)(Code) & 0xFFFF0000u) >> 16)
#define METHOD_FROM_CTL_CODE(Code) ((ULONG)(Code) & 3)

#define METHOD_BUFFERED 0
#define METHOD_IN_DIRECT 1
#define METHOD_OUT_DIRECT 2
#define METHOD_NEITHER 3
#define METHOD_DIRECT_TO_HARDWARE METHOD_IN_DIRECT
#define METHOD_DIRECT_FROM_HARDWARE METHOD_OUT_DIRECT

#define FILE_ANY_ACCESS 0
#define FILE_SPECIAL_ACCESS FILE_ANY_ACCESS
#define FILE_READ_ACCESS 0x0001
#define FILE_WRITE_ACCESS 0x0002

#define FILE_DEVICE_UNKNOWN 0x00000022

/* Major function codes (the ones mdlab's I/O manager sends, and the bound of the table). */
#define IRP_MJ_CREATE 0x00
#define IRP_MJ_CLOSE 0x02
#define IRP_MJ_READ 0x03
#define IRP_MJ_WRITE 0x04
#define IRP_MJ_DEVICE_CONTROL 0x0e
#define IRP_MJ_INTERNAL_DEVICE_CONTROL 0x0f
#define IRP_MJ_CLEANUP 0x12
#define IRP_MJ_MAXIMUM_FUNCTION 0x1b

/* Object types in the Type field of the I/O manager's objects. */
#define IO_TYPE_DEVICE 3
#define IO_TYPE_DRIVER 4
#define IO_TYPE_FILE 5
#define IO_TYPE_IRP 6

/* Irp->Flags the I/O manager sets for the buffered methods. */
#define IRP_BUFFERED_IO 0x00000010     /* AssociatedIrp.SystemBuffer is the I/O manager's */
#define IRP_DEALLOCATE_BUFFER 0x00000020 /* free it at completion */
#define IRP_INPUT_OPERATION 0x00000040  /* copy IoStatus.Information bytes of it to UserBuffer */

/* IoCompleteRequest's PriorityBoost: mdlab has no scheduler, every boost is this one. */
#define IO_NO_INCREMENT 0

/* x64: the fields after the first of a Parameters member are pointer-aligned. */
#define POINTER_ALIGNMENT __attribute__((aligned(8)))

typedef struct _IO_STATUS_BLOCK {
	union {
		NTSTATUS Status;
		PVOID Pointer;
	};
	ULONG_PTR Information;   /* bytes transferred: for METHOD_BUFFERED, the bytes copied back */
} IO_STATUS_BLOCK, *PIO_STATUS_BLOCK;

struct _DEVICE_OBJECT;
struct _FILE_OBJECT;

/* A dispatch routine: completes the IRP (IoCompleteRequest) and returns its status.
 * mdlab's I/O is synchronous: STATUS_PENDING is not supported. */
typedef NTSTATUS DRIVER_DISPATCH(struct _DEVICE_OBJECT *DeviceObject, PIRP Irp);
typedef DRIVER_DISPATCH *PDRIVER_DISPATCH;

/* The driver object, lite: mdlab has no driver loading, so each device carries its own
 * dispatch table (IoCreateDeviceLite fills it). */
typedef struct _DRIVER_OBJECT {
	CSHORT Type;                 /* IO_TYPE_DRIVER */
	CSHORT Size;
	struct _DEVICE_OBJECT *DeviceObject;
	PDRIVER_DISPATCH MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1];
} DRIVER_OBJECT, *PDRIVER_OBJECT;

typedef struct _DEVICE_OBJECT {
	CSHORT Type;                 /* IO_TYPE_DEVICE */
	USHORT Size;
	LONG ReferenceCount;         /* open handles */
	struct _DRIVER_OBJECT *DriverObject;
	ULONG Flags;
	ULONG DeviceType;
	PVOID DeviceExtension;       /* the driver's (IoCreateDeviceLite leaves it NULL) */
} DEVICE_OBJECT, *PDEVICE_OBJECT;

/* An open instance of a device (one per handle). */
typedef struct _FILE_OBJECT {
	CSHORT Type;                 /* IO_TYPE_FILE */
	CSHORT Size;
	PDEVICE_OBJECT DeviceObject;
	PVOID FsContext;             /* the driver's, per open */
} FILE_OBJECT, *PFILE_OBJECT;

/* The driver's view of one request; the x64 offsets of DeviceIoControl are NT's. */
typedef struct _IO_STACK_LOCATION {
	UCHAR MajorFunction;
	UCHAR MinorFunction;
	UCHAR Flags;
	UCHAR Control;
	union {
		struct {
			ULONG OutputBufferLength;
			ULONG POINTER_ALIGNMENT InputBufferLength;
			ULONG POINTER_ALIGNMENT IoControlCode;
			PVOID Type3InputBuffer;   /* METHOD_NEITHER: the caller's raw input pointer */
		} DeviceIoControl;
	} Parameters;
	PDEVICE_OBJECT DeviceObject;
	PFILE_OBJECT FileObject;
} IO_STACK_LOCATION, *PIO_STACK_LOCATION;

/* The fields NT drivers use, in NT's order (not at NT's offsets past MdlAddress). */
struct _IRP {
	CSHORT Type;                 /* IO_TYPE_IRP */
	USHORT Size;                 /* the IRP and its stack locations */
	PMDL MdlAddress;             /* direct I/O: the caller's buffer, probed and locked */
	ULONG Flags;                 /* IRP_BUFFERED_IO, ... */
	union {
		struct _IRP *MasterIrp;
		PVOID SystemBuffer;  /* the buffered methods' nonpaged copy */
	} AssociatedIrp;
	IO_STATUS_BLOCK IoStatus;
	KPROCESSOR_MODE RequestorMode;
	BOOLEAN PendingReturned;
	CHAR StackCount;
	CHAR CurrentLocation;        /* StackCount + 1 before the driver has it and once completed */
	BOOLEAN Cancel;
	PVOID UserBuffer;            /* the caller's output buffer, unprobed */
	union {
		struct {
			PIO_STACK_LOCATION CurrentStackLocation;
		} Overlay;
	} Tail;
};

static inline PIO_STACK_LOCATION IoGetCurrentIrpStackLocation(PIRP Irp)
{
	return Irp->Tail.Overlay.CurrentStackLocation;
}

/* Create a device named `name` (up to IO_DEVICE_NAME_MAX - 1 characters; what NT does with
 * DriverEntry, IoCreateDevice and a symbolic link) whose IRP_MJ_DEVICE_CONTROL and
 * IRP_MJ_CLEANUP requests go to the given routines (NULL: invalid device request, resp.
 * success).  STATUS_OBJECT_NAME_COLLISION when the name exists, STATUS_OBJECT_NAME_INVALID for
 * an empty or too long one.  PASSIVE_LEVEL. */
#define IO_DEVICE_NAME_MAX 32
NTSTATUS IoCreateDeviceLite(const char *name, PDRIVER_DISPATCH device_control, PDRIVER_DISPATCH cleanup,
			    PDEVICE_OBJECT *out);
/* Remove the device's name and free it once no handle refers to it; requests on handles
 * still open get STATUS_DELETE_PENDING and their cleanup is not sent.  PASSIVE_LEVEL. */
VOID IoDeleteDevice(PDEVICE_OBJECT DeviceObject);
/* The driver is done with the IRP: the I/O manager unlocks its MDLs now (and, once the
 * dispatch routine has returned, copies buffered output back and frees the buffers).
 * Completing an IRP twice is bug check MULTIPLE_IRP_COMPLETE_REQUESTS (0x44). */
VOID IoCompleteRequest(PIRP Irp, CHAR PriorityBoost);

/* ProbeForRead / ProbeForWrite: a user buffer a driver reads or writes itself (METHOD_NEITHER),
 * called inside __try; they raise STATUS_DATATYPE_MISALIGNMENT or STATUS_ACCESS_VIOLATION. */
VOID ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment);
VOID ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment);

#endif
