/*
 * mdlab's wdm.h: the subset of the WDK's wdm.h that mdlab implements, with the exact NT
 * names, types and numeric values.  A driver includes this header only.
 */
#ifndef MDLAB_WDM_H
#define MDLAB_WDM_H

#include "include/mdlab/ntdef.h"
#include "include/mdlab/bugcodes.h"
#include "kernel/irql.h"
#include "kernel/intr/clock.h"
#include "kernel/intr/dpc.h"
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

/* Nonpaged pool, or paged pool, whose unlocked pages the trimmer may page out (mm/RULES.md,
 * "Paging": touched only below DISPATCH_LEVEL).  Zeroed unless POOL_FLAG_UNINITIALIZED.  NULL
 * on failure, or STATUS_INSUFFICIENT_RESOURCES raised with POOL_FLAG_RAISE_ON_FAILURE.
 * Executable pool is refused (NULL): no page is writable and executable (W^X). */
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
	USHORT MdlabFlags;          /* 0x0C: mdlab's own, MDLAB_MDL_* (NT x64: AllocationProcessorNumber) */
	struct _EPROCESS *Process;  /* 0x10 */
	PVOID MappedSystemVa;       /* 0x18 */
	PVOID StartVa;              /* 0x20: page-aligned */
	ULONG ByteCount;            /* 0x28 */
	ULONG ByteOffset;           /* 0x2C */
} MDL, *PMDL;

/* MdlabFlags: not NT's (mm/RULES.md, "MDL layout").  SOURCE_READ_ONLY: MmProbeAndLockPages met a page the buffer's own
 * mapping does not let its caller write, so every mapping of the MDL is read-only. */
#define MDLAB_MDL_SOURCE_READ_ONLY 0x0001
/* PROBE_LOCKED: MmProbeAndLockPages locked the frames (their lock counts include this MDL's)
 * and MmUnlockPages has not unlocked them; a driver's own MDL_PAGES_LOCKED does not set it. */
#define MDLAB_MDL_PROBE_LOCKED 0x0002

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
		__m->MdlabFlags = 0;                                                           \
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
 * Misuse is SYSTEM_PTE_MISUSE (0xDA) 0x100-0x10C.  Flags: 0, or MM_MAPPING_ADDRESS_DIVISIBLE
 * (rule R3: several MDLs mapped at once, each at a page of the reservation). */
#define MM_MAPPING_ADDRESS_DIVISIBLE 0x1
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

/* Move the MDL's start up by NumberOfBytes (its end stays); pages passed are unlocked and
 * leave its system and user mappings (mm/RULES.md helper rule H1).  STATUS_INVALID_PARAMETER_2
 * when that would reach the end. */
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

/* ---- The I/O manager: drivers, devices, IRPs ------------------------------------------ */

#define STATUS_PENDING ((NTSTATUS)0x00000103)
#define STATUS_MORE_PROCESSING_REQUIRED ((NTSTATUS)0xC0000016)
#define STATUS_NOT_IMPLEMENTED ((NTSTATUS)0xC0000002)
#define STATUS_INVALID_DEVICE_REQUEST ((NTSTATUS)0xC0000010)
#define STATUS_END_OF_FILE ((NTSTATUS)0xC0000011)
#define STATUS_END_OF_MEDIA ((NTSTATUS)0x8000001E)      /* a warning: the transfer passes the end */
#define STATUS_NONEXISTENT_SECTOR ((NTSTATUS)0xC0000015) /* a sector past a disk's end */
#define STATUS_DEVICE_DATA_ERROR ((NTSTATUS)0xC000009C)
#define STATUS_DEVICE_NOT_CONNECTED ((NTSTATUS)0xC000009D)
#define STATUS_IO_DEVICE_ERROR ((NTSTATUS)0xC0000185)
#define STATUS_BUFFER_TOO_SMALL ((NTSTATUS)0xC0000023)
#define STATUS_OBJECT_NAME_INVALID ((NTSTATUS)0xC0000033)
#define STATUS_OBJECT_NAME_NOT_FOUND ((NTSTATUS)0xC0000034)
#define STATUS_OBJECT_NAME_COLLISION ((NTSTATUS)0xC0000035)
#define STATUS_OBJECT_PATH_SYNTAX_BAD ((NTSTATUS)0xC000003B)
#define STATUS_DELETE_PENDING ((NTSTATUS)0xC0000056)
#define STATUS_IMAGE_ALREADY_LOADED ((NTSTATUS)0xC000010E)
#define STATUS_DEVICE_BUSY ((NTSTATUS)0x80000011)
#define STATUS_BUFFER_OVERFLOW ((NTSTATUS)0x80000005)
#define STATUS_CANCELLED ((NTSTATUS)0xC0000120)

/* An error status (severity 3), as opposed to success, information or warning. */
#define NT_ERROR(Status) ((((ULONG)(Status)) >> 30) == 3)
#define NT_INFORMATION(Status) ((((ULONG)(Status)) >> 30) == 1)
#define NT_WARNING(Status) ((((ULONG)(Status)) >> 30) == 2)

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
#define FILE_READ_DATA FILE_READ_ACCESS
#define FILE_WRITE_DATA FILE_WRITE_ACCESS

#define FILE_DEVICE_DISK 0x00000007
#define FILE_DEVICE_UNKNOWN 0x00000022

/* IoCreateDevice's DeviceCharacteristics. */
#define FILE_REMOVABLE_MEDIA 0x00000001
#define FILE_READ_ONLY_DEVICE 0x00000002
#define FILE_DEVICE_SECURE_OPEN 0x00000100

/* DEVICE_OBJECT.Flags. */
#define DO_BUFFERED_IO 0x00000004
#define DO_EXCLUSIVE 0x00000008
#define DO_DIRECT_IO 0x00000010
#define DO_DEVICE_INITIALIZING 0x00000080

/* Major function codes. */
#define IRP_MJ_CREATE 0x00
#define IRP_MJ_CREATE_NAMED_PIPE 0x01
#define IRP_MJ_CLOSE 0x02
#define IRP_MJ_READ 0x03
#define IRP_MJ_WRITE 0x04
#define IRP_MJ_QUERY_INFORMATION 0x05
#define IRP_MJ_SET_INFORMATION 0x06
#define IRP_MJ_FLUSH_BUFFERS 0x09
#define IRP_MJ_DEVICE_CONTROL 0x0e
#define IRP_MJ_INTERNAL_DEVICE_CONTROL 0x0f
#define IRP_MJ_SHUTDOWN 0x10
#define IRP_MJ_CLEANUP 0x12
#define IRP_MJ_POWER 0x16
#define IRP_MJ_SYSTEM_CONTROL 0x17
#define IRP_MJ_PNP 0x1b
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

/* IO_STACK_LOCATION.Control: when the completion routine runs, and the pending mark. */
#define SL_PENDING_RETURNED 0x01
#define SL_ERROR_RETURNED 0x02
#define SL_INVOKE_ON_CANCEL 0x20
#define SL_INVOKE_ON_SUCCESS 0x40
#define SL_INVOKE_ON_ERROR 0x80

/* IoCompleteRequest's PriorityBoost: mdlab has no scheduler, every boost is ignored. */
#define IO_NO_INCREMENT 0
#define IO_DISK_INCREMENT 1
#define IO_SERIAL_INCREMENT 2

/* x64: the fields after the first of a Parameters member are pointer-aligned. */
#define POINTER_ALIGNMENT __attribute__((aligned(8)))

typedef struct _LIST_ENTRY {
	struct _LIST_ENTRY *Flink;
	struct _LIST_ENTRY *Blink;
} LIST_ENTRY, *PLIST_ENTRY;

typedef struct _IO_STATUS_BLOCK {
	union {
		NTSTATUS Status;
		PVOID Pointer;
	};
	ULONG_PTR Information;   /* bytes transferred: for METHOD_BUFFERED, the bytes copied back */
} IO_STATUS_BLOCK, *PIO_STATUS_BLOCK;

/* Counted UTF-16 strings; Length and MaximumLength in bytes, no terminator required.
 * (mdlab builds with -fshort-wchar, so L"..." literals are WCHAR strings, as with MSVC.) */
typedef unsigned short WCHAR, *PWCHAR, *PWCH, *PWSTR;
typedef const WCHAR *PCWSTR;
typedef const char *PCSTR, *PCSZ;
typedef char *PSTR;
typedef struct _UNICODE_STRING {
	USHORT Length;
	USHORT MaximumLength;
	PWSTR Buffer;
} UNICODE_STRING, *PUNICODE_STRING;
typedef const UNICODE_STRING *PCUNICODE_STRING;
typedef struct _STRING {
	USHORT Length;
	USHORT MaximumLength;
	PCHAR Buffer;
} STRING, ANSI_STRING, *PSTRING, *PANSI_STRING;
#define RTL_CONSTANT_STRING(s) { sizeof(s) - sizeof((s)[0]), sizeof(s), (void *)(s) }
#define DECLARE_CONST_UNICODE_STRING(_var, _string) \
	const WCHAR _var##_buffer[] = _string;      \
	const UNICODE_STRING _var = { sizeof(_string) - sizeof(WCHAR), sizeof(_string), (PWCH)_var##_buffer }

struct _DEVICE_OBJECT;
struct _DRIVER_OBJECT;
struct _FILE_OBJECT;

/* A dispatch routine: completes the IRP (IoCompleteRequest) and returns its status, or
 * marks it pending (IoMarkIrpPending), returns STATUS_PENDING and completes it later. */
typedef NTSTATUS DRIVER_DISPATCH(struct _DEVICE_OBJECT *DeviceObject, PIRP Irp);
typedef DRIVER_DISPATCH *PDRIVER_DISPATCH;
typedef NTSTATUS DRIVER_INITIALIZE(struct _DRIVER_OBJECT *DriverObject, PUNICODE_STRING RegistryPath);
typedef DRIVER_INITIALIZE *PDRIVER_INITIALIZE;
typedef VOID DRIVER_UNLOAD(struct _DRIVER_OBJECT *DriverObject);
typedef DRIVER_UNLOAD *PDRIVER_UNLOAD;
typedef VOID DRIVER_STARTIO(struct _DEVICE_OBJECT *DeviceObject, PIRP Irp);
typedef DRIVER_STARTIO *PDRIVER_STARTIO;
typedef NTSTATUS IO_COMPLETION_ROUTINE(struct _DEVICE_OBJECT *DeviceObject, PIRP Irp, PVOID Context);
typedef IO_COMPLETION_ROUTINE *PIO_COMPLETION_ROUTINE;
typedef DRIVER_DISPATCH DRIVER_DISPATCH_RAISED, DRIVER_DISPATCH_PAGED;

typedef struct _DRIVER_EXTENSION {
	struct _DRIVER_OBJECT *DriverObject;
	PVOID AddDevice;
	ULONG Count;
	UNICODE_STRING ServiceKeyName;
} DRIVER_EXTENSION, *PDRIVER_EXTENSION;

/* NT's x64 layout (0x150 bytes); mdlab fills the fields a driver reads: DeviceObject (the
 * list of its devices), DriverExtension, DriverName, DriverInit, DriverUnload, MajorFunction. */
typedef struct _DRIVER_OBJECT {
	CSHORT Type;                         /* 0x00 IO_TYPE_DRIVER */
	CSHORT Size;                         /* 0x02 */
	struct _DEVICE_OBJECT *DeviceObject; /* 0x08 the driver's devices, by NextDevice */
	ULONG Flags;                         /* 0x10 */
	PVOID DriverStart;                   /* 0x18 */
	ULONG DriverSize;                    /* 0x20 */
	PVOID DriverSection;                 /* 0x28 */
	PDRIVER_EXTENSION DriverExtension;   /* 0x30 */
	UNICODE_STRING DriverName;           /* 0x38 \Driver\NAME */
	PUNICODE_STRING HardwareDatabase;    /* 0x48 */
	PVOID FastIoDispatch;                /* 0x50 */
	PDRIVER_INITIALIZE DriverInit;       /* 0x58 */
	PDRIVER_STARTIO DriverStartIo;       /* 0x60 */
	PDRIVER_UNLOAD DriverUnload;         /* 0x68 NULL: the driver cannot be unloaded */
	PDRIVER_DISPATCH MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]; /* 0x70 */
} DRIVER_OBJECT, *PDRIVER_OBJECT;

/* NT's x64 layout (0x150 bytes); the queue, timer, DPC and lock members mdlab does not
 * have are reserved space at their offsets. */
typedef struct _DEVICE_OBJECT {
	CSHORT Type;                          /* 0x00 IO_TYPE_DEVICE */
	USHORT Size;                          /* 0x02 the object and its extension */
	LONG ReferenceCount;                  /* 0x04 open handles */
	struct _DRIVER_OBJECT *DriverObject;  /* 0x08 */
	struct _DEVICE_OBJECT *NextDevice;    /* 0x10 the next device of the same driver */
	struct _DEVICE_OBJECT *AttachedDevice; /* 0x18 the device attached on top of this one */
	PIRP CurrentIrp;                      /* 0x20 */
	PVOID Timer;                          /* 0x28 */
	ULONG Flags;                          /* 0x30 DO_* */
	ULONG Characteristics;                /* 0x34 FILE_* characteristics */
	PVOID Vpb;                            /* 0x38 */
	PVOID DeviceExtension;                /* 0x40 DeviceExtensionSize zeroed bytes, or NULL */
	ULONG DeviceType;                     /* 0x48 */
	CHAR StackSize;                       /* 0x4C stack locations an IRP to it needs */
	UCHAR Reserved1[0x98 - 0x4D];         /* Queue */
	ULONG AlignmentRequirement;           /* 0x98 */
	UCHAR Reserved2[0x138 - 0x9C];        /* DeviceQueue, Dpc, ActiveThreadCount, ... */
	PVOID DeviceObjectExtension;          /* 0x138 */
	PVOID Reserved;                       /* 0x140 */
	PVOID Reserved3;                      /* 0x148 */
} DEVICE_OBJECT, *PDEVICE_OBJECT;

/* An open instance of a device (one per handle); NT's x64 offsets up to CurrentByteOffset. */
typedef struct _FILE_OBJECT {
	CSHORT Type;                 /* 0x00 IO_TYPE_FILE */
	CSHORT Size;                 /* 0x02 */
	PDEVICE_OBJECT DeviceObject; /* 0x08 */
	PVOID Vpb;                   /* 0x10 */
	PVOID FsContext;             /* 0x18 the driver's, per open */
	PVOID FsContext2;            /* 0x20 the driver's, per open */
	PVOID SectionObjectPointer;  /* 0x28 */
	PVOID PrivateCacheMap;       /* 0x30 */
	NTSTATUS FinalStatus;        /* 0x38 */
	struct _FILE_OBJECT *RelatedFileObject; /* 0x40 */
	BOOLEAN LockOperation, DeletePending, ReadAccess, WriteAccess; /* 0x48 */
	BOOLEAN DeleteAccess, SharedRead, SharedWrite, SharedDelete;
	ULONG Flags;                 /* 0x50 */
	UNICODE_STRING FileName;     /* 0x58 the part of the name after the device's */
	LARGE_INTEGER CurrentByteOffset; /* 0x68 */
} FILE_OBJECT, *PFILE_OBJECT;

/* NtReadFile / NtWriteFile's ByteOffset LowPart, with HighPart -1 (wdm.h): the file's current
 * position. */
#define FILE_USE_FILE_POINTER_POSITION 0xfffffffe

/* The driver's view of one request: NT's x64 layout (0x48 bytes). */
typedef struct _IO_STACK_LOCATION {
	UCHAR MajorFunction;         /* 0x00 */
	UCHAR MinorFunction;
	UCHAR Flags;
	UCHAR Control;               /* SL_* */
	union {                      /* 0x08 */
		struct {
			PVOID SecurityContext;
			ULONG Options;
			USHORT POINTER_ALIGNMENT FileAttributes;
			USHORT ShareAccess;
			ULONG POINTER_ALIGNMENT EaLength;
		} Create;
		struct {
			ULONG Length;
			ULONG POINTER_ALIGNMENT Key;
			ULONG Flags;
			LARGE_INTEGER ByteOffset;
		} Read;
		struct {
			ULONG Length;
			ULONG POINTER_ALIGNMENT Key;
			ULONG Flags;
			LARGE_INTEGER ByteOffset;
		} Write;
		struct {
			ULONG OutputBufferLength;
			ULONG POINTER_ALIGNMENT InputBufferLength;
			ULONG POINTER_ALIGNMENT IoControlCode;
			PVOID Type3InputBuffer;   /* METHOD_NEITHER: the caller's raw input pointer */
		} DeviceIoControl;
		struct {
			PVOID Argument1;
			PVOID Argument2;
			PVOID Argument3;
			PVOID Argument4;
		} Others;
	} Parameters;
	PDEVICE_OBJECT DeviceObject; /* 0x28 */
	PFILE_OBJECT FileObject;     /* 0x30 */
	PIO_COMPLETION_ROUTINE CompletionRoutine; /* 0x38 */
	PVOID Context;               /* 0x40 */
} IO_STACK_LOCATION, *PIO_STACK_LOCATION;

struct _KEVENT;
/* NT's x64 layout (0xD0 bytes), its stack locations following it. */
struct _IRP {
	CSHORT Type;                 /* 0x00 IO_TYPE_IRP */
	USHORT Size;                 /* 0x02 the IRP and its stack locations */
	USHORT AllocationProcessorNumber; /* 0x04 */
	USHORT Reserved;
	PMDL MdlAddress;             /* 0x08 direct I/O: the caller's buffer, probed and locked */
	ULONG Flags;                 /* 0x10 IRP_BUFFERED_IO, ... */
	union {
		struct _IRP *MasterIrp;
		LONG IrpCount;
		PVOID SystemBuffer;  /* the buffered methods' nonpaged copy */
	} AssociatedIrp;             /* 0x18 */
	LIST_ENTRY ThreadListEntry;  /* 0x20 */
	IO_STATUS_BLOCK IoStatus;    /* 0x30 */
	KPROCESSOR_MODE RequestorMode; /* 0x40 */
	BOOLEAN PendingReturned;     /* 0x41 */
	CHAR StackCount;             /* 0x42 */
	CHAR CurrentLocation;        /* 0x43 StackCount + 1 before the first IoCallDriver */
	BOOLEAN Cancel;              /* 0x44 */
	KIRQL CancelIrql;
	CCHAR ApcEnvironment;
	UCHAR AllocationFlags;       /* 0x47 */
	PIO_STATUS_BLOCK UserIosb;   /* 0x48 */
	struct _KEVENT *UserEvent;   /* 0x50 */
	union {
		struct {
			PVOID UserApcRoutine;
			PVOID UserApcContext;
		} AsynchronousParameters;
		LARGE_INTEGER AllocationSize;
	} Overlay;                   /* 0x58 */
	PVOID CancelRoutine;         /* 0x68 */
	PVOID UserBuffer;            /* 0x70 the caller's output buffer, unprobed */
	union {
		struct {
			union {
				UCHAR DeviceQueueEntry[0x18];
				struct {
					PVOID DriverContext[4];
				};
			};
			PVOID Thread;                            /* 0x98 */
			PCHAR AuxiliaryBuffer;                   /* 0xA0 */
			struct {
				LIST_ENTRY ListEntry;            /* 0xA8 */
				union {
					PIO_STACK_LOCATION CurrentStackLocation; /* 0xB8 */
					ULONG PacketType;
				};
			};
			PFILE_OBJECT OriginalFileObject;         /* 0xC0 */
		} Overlay;
		UCHAR Apc[0x58];
		PVOID CompletionKey;
	} Tail;                      /* 0x78 */
};

/* ---- IRP stack locations (macros and inline routines in the WDK) ---- */

static inline PIO_STACK_LOCATION IoGetCurrentIrpStackLocation(PIRP Irp)
{
	return Irp->Tail.Overlay.CurrentStackLocation;
}
/* The location the next IoCallDriver hands the lower driver. */
static inline PIO_STACK_LOCATION IoGetNextIrpStackLocation(PIRP Irp)
{
	return Irp->Tail.Overlay.CurrentStackLocation - 1;
}
/* The lower driver gets this driver's own location (no completion routine of this one). */
static inline VOID IoSkipCurrentIrpStackLocation(PIRP Irp)
{
	Irp->CurrentLocation++;
	Irp->Tail.Overlay.CurrentStackLocation++;
}
/* Copy this driver's location to the next, without its completion routine. */
static inline VOID IoCopyCurrentIrpStackLocationToNext(PIRP Irp)
{
	PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp), next = IoGetNextIrpStackLocation(Irp);
	for (unsigned i = 0; i < (unsigned)((char *)&sp->CompletionRoutine - (char *)sp); i++)
		((UCHAR *)next)[i] = ((UCHAR *)sp)[i];
	next->Control = 0;
}
static inline VOID IoSetCompletionRoutine(PIRP Irp, PIO_COMPLETION_ROUTINE CompletionRoutine, PVOID Context,
					  BOOLEAN InvokeOnSuccess, BOOLEAN InvokeOnError, BOOLEAN InvokeOnCancel)
{
	PIO_STACK_LOCATION next = IoGetNextIrpStackLocation(Irp);
	next->CompletionRoutine = CompletionRoutine;
	next->Context = Context;
	next->Control = 0;
	if (InvokeOnSuccess)
		next->Control |= SL_INVOKE_ON_SUCCESS;
	if (InvokeOnError)
		next->Control |= SL_INVOKE_ON_ERROR;
	if (InvokeOnCancel)
		next->Control |= SL_INVOKE_ON_CANCEL;
}
/* The mode of the request's originator (the IRP's RequestorMode). */
#define IoGetRequestorMode(Irp) ((KPROCESSOR_MODE)(Irp)->RequestorMode)
/* Whether the IRP's originator (NULL: the current process) is a 32-bit user-mode process,
 * whose request structures need thunking. */
BOOLEAN IoIs32bitProcess(PIRP Irp);
/* The dispatch routine will return STATUS_PENDING and complete the IRP later. */
static inline VOID IoMarkIrpPending(PIRP Irp)
{
	IoGetCurrentIrpStackLocation(Irp)->Control |= SL_PENDING_RETURNED;
}
static inline CCHAR IoGetStackLocationCount(PIRP Irp) { return Irp->StackCount; }
#define IoSizeOfIrp(StackSize) ((USHORT)(sizeof(IRP) + (StackSize) * sizeof(IO_STACK_LOCATION)))

/* ---- IRP routines (kernel/io/irp.c; mm/RULES.md "I/O rules") ---- */

/* An IRP with StackSize locations from nonpaged pool, initialised (IoInitializeIrp); NULL
 * when pool ran out or StackSize is below 1.  ChargeQuota is ignored (no quotas). */
PIRP IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota);
/* Free an IRP from IoAllocateIrp: not an IRP is 0xC9/0x01, one sent and not completed or
 * queued to a thread (IoBuild* IRPs) is 0xC9/0x02 (the IRP, 0, 0). */
VOID IoFreeIrp(PIRP Irp);
/* Zero PacketSize bytes of the IRP and set Type, Size, StackCount and the locations. */
VOID IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize);
/* Reinitialise a completed IRP from IoAllocateIrp for another request, IoStatus.Status =
 * Status. */
VOID IoReuseIrp(PIRP Irp, NTSTATUS Iostatus);
/* Send the IRP to DeviceObject's driver: the next location becomes the current one.  No
 * location left is bug check NO_MORE_IRP_STACK_LOCATIONS (0x35, the IRP); not an IRP
 * 0xC9/0x03, a bad device object 0xC9/0x04, the IRQL changed by the dispatch routine
 * 0xC9/0x05. */
NTSTATUS IofCallDriver(PDEVICE_OBJECT DeviceObject, PIRP Irp);
#define IoCallDriver(a, b) IofCallDriver(a, b)
/* The driver is done with the IRP: completion routines run upwards, then the I/O manager's
 * own completion (MDLs unlocked, buffered output copied, the IoBuild* event set).  Twice is
 * MULTIPLE_IRP_COMPLETE_REQUESTS (0x44); STATUS_PENDING as the status 0xC9/0x06. */
VOID IofCompleteRequest(PIRP Irp, CCHAR PriorityBoost);
#define IoCompleteRequest(a, b) IofCompleteRequest(a, b)

/* Synchronous requests to a driver from kernel code.  The IRP is the I/O manager's: the
 * caller sends it with IoCallDriver and waits on Event (mdlab: it is set by the time the
 * request completes), IoStatusBlock then holds the result; the IRP frees itself at
 * completion.  NULL when pool ran out. */
typedef enum _EVENT_TYPE { NotificationEvent, SynchronizationEvent } EVENT_TYPE;
typedef struct _KEVENT {
	LONG Signaled;
	EVENT_TYPE Type;
} KEVENT, *PKEVENT, *PRKEVENT;
VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State);
LONG KeSetEvent(PRKEVENT Event, LONG Increment, BOOLEAN Wait);
VOID KeClearEvent(PRKEVENT Event);
LONG KeReadStateEvent(PRKEVENT Event);
typedef enum _KWAIT_REASON { Executive = 0 } KWAIT_REASON;
/* mdlab has no scheduler: a wait spins (interrupts on at PASSIVE_LEVEL) until the event is
 * signalled, by a DPC or an interrupt on this CPU or by another CPU, or until *Timeout
 * (100 ns units, negative relative, 0 a poll) passes: STATUS_TIMEOUT.  NULL waits forever. */
#define STATUS_TIMEOUT ((NTSTATUS)0x00000102)
NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
			       BOOLEAN Alertable, PLARGE_INTEGER Timeout);
PIRP IoBuildDeviceIoControlRequest(ULONG IoControlCode, PDEVICE_OBJECT DeviceObject, PVOID InputBuffer,
				   ULONG InputBufferLength, PVOID OutputBuffer, ULONG OutputBufferLength,
				   BOOLEAN InternalDeviceIoControl, PKEVENT Event, PIO_STATUS_BLOCK IoStatusBlock);
PIRP IoBuildSynchronousFsdRequest(ULONG MajorFunction, PDEVICE_OBJECT DeviceObject, PVOID Buffer, ULONG Length,
				  PLARGE_INTEGER StartingOffset, PKEVENT Event, PIO_STATUS_BLOCK IoStatusBlock);

/* ---- Devices, names, drivers (kernel/io/io.c, kernel/io/driver.c) ---- */

/* Create a device of DriverObject's, named DeviceName (NULL: unnamed; \Device\NAME style,
 * up to IO_NAME_MAX - 1 characters, ASCII), with DeviceExtensionSize zeroed bytes of
 * extension.  STATUS_OBJECT_NAME_COLLISION when the name exists, STATUS_OBJECT_NAME_INVALID
 * for an empty, too long or non-ASCII one, STATUS_INSUFFICIENT_RESOURCES.  The device starts
 * with DO_DEVICE_INITIALIZING, which the driver clears (DriverEntry's devices are cleared by
 * the I/O manager when DriverEntry returns).  PASSIVE_LEVEL. */
#define IO_NAME_MAX 64
NTSTATUS IoCreateDevice(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize, PUNICODE_STRING DeviceName,
			ULONG DeviceType, ULONG DeviceCharacteristics, BOOLEAN Exclusive,
			PDEVICE_OBJECT *DeviceObject);
/* A device for a test, with its own hidden driver object: `name` is looked up as it is by
 * SYS_OPEN_DEVICE; device_control and cleanup fill the dispatch table (NULL: invalid device
 * request, resp. success).  Same failures as IoCreateDevice. */
#define IO_DEVICE_NAME_MAX 32
NTSTATUS IoCreateDeviceLite(const char *name, PDRIVER_DISPATCH device_control, PDRIVER_DISPATCH cleanup,
			    PDEVICE_OBJECT *out);
/* Remove the device's name and free it once no handle refers to it; requests on handles
 * still open get STATUS_DELETE_PENDING and their cleanup is not sent.  A device something
 * is attached to, or that is attached, is detached first by its driver.  PASSIVE_LEVEL. */
VOID IoDeleteDevice(PDEVICE_OBJECT DeviceObject);
/* A name in the \??\ (\DosDevices\) directory for a device: what Win32's \\.\NAME opens.
 * The target is a name, resolved at each open (as NT's symbolic links are): it need not
 * exist yet.  STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_INVALID (not \??\X,
 * \DosDevices\X or \GLOBAL??\X, or a bad target); delete: STATUS_OBJECT_NAME_NOT_FOUND. */
NTSTATUS IoCreateSymbolicLink(PUNICODE_STRING SymbolicLinkName, PUNICODE_STRING DeviceName);
NTSTATUS IoDeleteSymbolicLink(PUNICODE_STRING SymbolicLinkName);
/* Attach SourceDevice on top of the stack TargetDevice is in: returns the device it is now
 * directly above (the old top), SourceDevice->StackSize becomes its + 1; NULL when the
 * target is being deleted. */
PDEVICE_OBJECT IoAttachDeviceToDeviceStack(PDEVICE_OBJECT SourceDevice, PDEVICE_OBJECT TargetDevice);
/* Detach whatever is attached on top of TargetDevice. */
VOID IoDetachDevice(PDEVICE_OBJECT TargetDevice);
/* The top of the stack DeviceObject is in (NT references it; mdlab has no object
 * references to drop, ObDereferenceObject is accepted and does nothing). */
PDEVICE_OBJECT IoGetAttachedDeviceReference(PDEVICE_OBJECT DeviceObject);
VOID ObDereferenceObject(PVOID Object);

/* Load the built-in driver named by DriverServiceName
 * (\Registry\Machine\System\CurrentControlSet\Services\NAME): a DRIVER_OBJECT is made and
 * its DriverEntry called with that registry path.  STATUS_OBJECT_NAME_NOT_FOUND (no such
 * driver), STATUS_IMAGE_ALREADY_LOADED, STATUS_OBJECT_PATH_SYNTAX_BAD, or DriverEntry's own
 * failure (the driver object is then freed; the devices it left are deleted).
 * ZwUnloadDriver calls DriverUnload: STATUS_INVALID_DEVICE_REQUEST when the driver has none,
 * STATUS_DEVICE_BUSY while a handle to one of its devices is open (mm/RULES.md, "Known
 * differences").  PASSIVE_LEVEL. */
NTSTATUS ZwLoadDriver(PUNICODE_STRING DriverServiceName);
NTSTATUS ZwUnloadDriver(PUNICODE_STRING DriverServiceName);

/* ---- Previous mode, probing ---- */

/* The mode the current request came from: UserMode inside a system call (and in the
 * dispatch routines it calls), KernelMode otherwise. */
KPROCESSOR_MODE ExGetPreviousMode(VOID);
/* The highest user address plus one; ProbeForRead/ProbeForWrite's limit. */
extern const ULONG_PTR MmUserProbeAddress;
/* Check that [Address, Address + Length) is user memory (ProbeForWrite: writable, each page
 * touched): STATUS_DATATYPE_MISALIGNMENT raised when Address is not a multiple of Alignment
 * (1, 2, 4, 8 or 16), STATUS_ACCESS_VIOLATION raised when the range wraps or ends above
 * MmUserProbeAddress (ProbeForWrite: or is not writable).  Length 0: nothing. */
VOID ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment);
VOID ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment);

/* ---- Everyday wdm.h: annotations, helpers, memory and debug-print routines ------------- */

/* Windows calling-convention and linkage words: x64 has one convention, nothing to say. */
#define NTAPI
#define NTSYSAPI
#define NTKERNELAPI
#define NTHALAPI
#define DECLSPEC_IMPORT
#define DECLSPEC_NOINLINE __attribute__((noinline))
#define FORCEINLINE static inline __attribute__((always_inline))
#define __forceinline inline __attribute__((always_inline))
#define __inline inline
#define EXTERN_C
#define __declspec(...)
#define IN
#define OUT
#define OPTIONAL
#define CONST const

/* #pragma alloc_text(PAGE, ...), #pragma code_seg("INIT"), #pragma warning(...): MSVC's
 * placement of code in the pageable PAGE and discardable INIT sections.  mdlab keeps all
 * driver code resident, so they mean nothing here, and GCC is told to let them pass. */
#define ALLOC_PRAGMA 1
#define ALLOC_DATA_PRAGMA 1
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

/* excpt.h's lowercase spellings of the SEH keywords, which WDK samples use (try, except,
 * finally, leave), reach scripts/seh_rewrite.py as they are: driver images (drivers/NAME.c) and
 * the *_driver.c files are rewritten like any driver source (README, "Structured exception
 * handling"). */

/* SAL 2 annotations and the older __drv_ ones: for static analysis only, empty. */
#define _In_
#define _In_opt_
#define _In_z_
#define _In_opt_z_
#define _Out_
#define _Out_opt_
#define _Inout_
#define _Inout_opt_
#define _Inout_z_
#define _Outptr_
#define _Outptr_opt_
#define _Outptr_result_maybenull_
#define _Outptr_result_nullonfailure_
#define _Deref_out_
#define _Deref_out_opt_
#define _In_reads_(...)
#define _In_reads_opt_(...)
#define _In_reads_bytes_(...)
#define _In_reads_bytes_opt_(...)
#define _Out_writes_(...)
#define _Out_writes_opt_(...)
#define _Out_writes_z_(...)
#define _Out_writes_all_(...)
#define _Out_writes_bytes_(...)
#define _Out_writes_bytes_opt_(...)
#define _Out_writes_bytes_all_(...)
#define _Out_writes_bytes_to_(...)
#define _Out_writes_to_(...)
#define _Inout_updates_(...)
#define _Inout_updates_bytes_(...)
#define _Outptr_result_buffer_(...)
#define _Outptr_result_bytebuffer_(...)
#define _Field_size_(...)
#define _Field_size_bytes_(...)
#define _Field_size_opt_(...)
#define _Field_size_bytes_opt_(...)
#define _Post_writable_byte_size_(...)
#define _Ret_maybenull_
#define _Ret_notnull_
#define _Ret_z_
#define _Ret_range_(...)
#define _Ret_writes_bytes_maybenull_(...)
#define _Must_inspect_result_
#define _Check_return_
#define _Success_(...)
#define _Return_type_success_(...)
#define _When_(...)
#define _At_(...)
#define _Pre_
#define _Post_
#define _Pre_notnull_
#define _Pre_maybenull_
#define _Post_invalid_
#define _Pre_satisfies_(...)
#define _Post_satisfies_(...)
#define _In_range_(...)
#define _Out_range_(...)
#define _Deref_out_range_(...)
#define _Notnull_
#define _Maybenull_
#define _Null_terminated_
#define _NullNull_terminated_
#define _Printf_format_string_
#define _Reserved_
#define _Frees_ptr_
#define _Frees_ptr_opt_
#define _Analysis_assume_(...)
#define _Analysis_mode_(...)
#define _Inexpressible_(...)
#define _Use_decl_annotations_
#define _Function_class_(...)
#define _Dispatch_type_(...)
#define _IRQL_requires_(...)
#define _IRQL_requires_max_(...)
#define _IRQL_requires_min_(...)
#define _IRQL_requires_same_
#define _IRQL_raises_(...)
#define _IRQL_saves_
#define _IRQL_restores_
#define _IRQL_saves_global_(...)
#define _IRQL_restores_global_(...)
#define _IRQL_always_function_max_(...)
#define _IRQL_always_function_min_(...)
#define _IRQL_is_cancel_
#define _IRQL_uses_cancel_
#define _Kernel_requires_resource_held_(...)
#define _Kernel_requires_resource_not_held_(...)
#define _Kernel_acquires_resource_(...)
#define _Kernel_releases_resource_(...)
#define _Kernel_float_saved_
#define _Kernel_float_restored_
#define _Kernel_float_used_
#define _Kernel_clear_do_init_(...)
#define _Acquires_lock_(...)
#define _Releases_lock_(...)
#define _Requires_lock_held_(...)
#define _Requires_lock_not_held_(...)
#define _Acquires_exclusive_lock_(...)
#define _Releases_exclusive_lock_(...)
#define _Guarded_by_(...)
#define _Interlocked_
#define _Interlocked_operand_
#define _Pre_defensive_
#define _Post_defensive_
#define _Strict_type_match_
#define _Points_to_data_
#define _Literal_
#define _Notliteral_
#define _Enum_is_bitflag_
#define _Struct_size_bytes_(...)
#define __in
#define __in_opt
#define __out
#define __out_opt
#define __inout
#define __inout_opt
#define __in_bcount(...)
#define __out_bcount(...)
#define __drv_dispatchType(...)
#define __drv_dispatchType_other
#define __drv_maxIRQL(...)
#define __drv_minIRQL(...)
#define __drv_requiresIRQL(...)
#define __drv_sameIRQL
#define __drv_setsIRQL(...)
#define __drv_savesIRQL
#define __drv_restoresIRQL
#define __drv_raisesIRQL(...)
#define __drv_savesIRQLGlobal(...)
#define __drv_restoresIRQLGlobal(...)
#define __drv_maxFunctionIRQL(...)
#define __drv_minFunctionIRQL(...)
#define __drv_functionClass(...)
#define __drv_when(...)
#define __drv_allocatesMem(...)
#define __drv_freesMem(...)
#define __drv_aliasesMem
#define __drv_preferredFunction(...)
#define __drv_reportError(...)
#define __drv_strictType(...)
#define __drv_strictTypeMatch(...)
#define __drv_inTry
#define __drv_notInTry
#define __drv_valueIs(...)
#define __drv_clearDoInit(...)
#define __drv_completionType(...)
#define __drv_useCancelIRQL
#define __drv_isCancelIRQL
#define __drv_mustHold(...)
#define __drv_neverHold(...)
#define __drv_acquiresResource(...)
#define __drv_releasesResource(...)
#define __drv_in(...)
#define __drv_out(...)
#define __drv_arg(...)
#define __drv_at(...)
#define __drv_deref(...)
#define __drv_isObjectPointer
#define __drv_formatString(...)
#define __drv_constant
#define __drv_nonConstant
#define __drv_interlocked
#define __drv_floatUsed
#define __drv_floatSaved
#define __drv_floatRestored
#define __drv_requiresIRQL(...)

/* A checked build unless the driver says otherwise: KdPrint prints, ASSERT checks. */
#ifndef DBG
#define DBG 1
#endif

#define FIELD_OFFSET(type, field) ((LONG)__builtin_offsetof(type, field))
#define RTL_FIELD_SIZE(type, field) (sizeof(((type *)0)->field))
#define RTL_NUMBER_OF(A) (sizeof(A) / sizeof((A)[0]))
#define ARRAYSIZE(A) RTL_NUMBER_OF(A)
/* The structure a field of which `address` points to. */
#define CONTAINING_RECORD(address, type, field) ((type *)((PCHAR)(address) - (ULONG_PTR)(&((type *)0)->field)))
#define UNREFERENCED_LOCAL_VARIABLE(V) ((void)(V))
#define DBG_UNREFERENCED_PARAMETER(P) ((void)(P))
#define DBG_UNREFERENCED_LOCAL_VARIABLE(V) ((void)(V))

/* Memory: RtlCopyMemory and RtlCopyBytes may not overlap, RtlMoveMemory may. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#define RtlCopyMemory(Destination, Source, Length) memcpy((Destination), (Source), (Length))
#define RtlCopyBytes RtlCopyMemory
#define RtlMoveMemory(Destination, Source, Length) memmove((Destination), (Source), (Length))
#define RtlFillMemory(Destination, Length, Fill) memset((Destination), (Fill), (Length))
#define RtlFillBytes RtlFillMemory
#define RtlZeroMemory(Destination, Length) memset((Destination), 0, (Length))
#define RtlZeroBytes RtlZeroMemory
#define RtlEqualMemory(Destination, Source, Length) (!memcmp((Destination), (Source), (Length)))
/* The number of bytes at the start of both blocks that are equal (Length when all are). */
SIZE_T RtlCompareMemory(const VOID *Source1, const VOID *Source2, SIZE_T Length);
/* Zeroes that the compiler cannot drop (volatile stores). */
static inline PVOID RtlSecureZeroMemory(PVOID Ptr, SIZE_T cnt)
{
	volatile UCHAR *p = (volatile UCHAR *)Ptr;
	while (cnt--)
		*p++ = 0;
	return Ptr;
}

/* Strings: Buffer = SourceString, Length its bytes without the terminator (at most
 * 0xFFFC), MaximumLength with it; NULL gives an empty string with a NULL buffer. */
VOID RtlInitUnicodeString(PUNICODE_STRING DestinationString, PCWSTR SourceString);
VOID RtlInitString(PSTRING DestinationString, PCSZ SourceString);
VOID RtlInitAnsiString(PANSI_STRING DestinationString, PCSZ SourceString);
BOOLEAN RtlEqualUnicodeString(PCUNICODE_STRING String1, PCUNICODE_STRING String2, BOOLEAN CaseInSensitive);
/* Copy min(Length, Destination->MaximumLength) bytes; a NULL source empties Destination. */
VOID RtlCopyUnicodeString(PUNICODE_STRING DestinationString, PCUNICODE_STRING SourceString);

/* Debug output on the console, as a kernel debugger would show it.  DbgPrint always prints;
 * DbgPrintEx prints when Level (0-31, or a mask above 31) is enabled for the component:
 * DPFLTR_ERROR_LEVEL always, others when dbgprint_filter (bits of levels) has them, as NT's
 * Kd_DEFAULT_Mask.  The formats are kprintf's, plus %wZ (PUNICODE_STRING), %ws / %S (wide
 * strings) and %Z (PSTRING).  STATUS_SUCCESS. */
#define DPFLTR_ERROR_LEVEL 0
#define DPFLTR_WARNING_LEVEL 1
#define DPFLTR_TRACE_LEVEL 2
#define DPFLTR_INFO_LEVEL 3
#define DPFLTR_MASK 0x80000000u
#define DPFLTR_IHVDRIVER_ID 77
#define DPFLTR_DEFAULT_ID 101
ULONG DbgPrint(PCSTR Format, ...);
ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...);
extern ULONG dbgprint_filter;
/* A breakpoint: with no debugger attached, bug check 0x1E with STATUS_BREAKPOINT unless a
 * __try handles it. */
VOID DbgBreakPoint(VOID);
/* The checked build's assertion failure: prints the expression, then DbgBreakPoint. */
VOID RtlAssert(PVOID VoidFailedAssertion, PVOID VoidFileName, ULONG LineNumber, PCHAR MutableMessage);
#if DBG
#define KdPrint(_x_) DbgPrint _x_
#define KdPrintEx(_x_) DbgPrintEx _x_
#define KdBreakPoint() DbgBreakPoint()
#define ASSERT(exp) ((void)((!(exp)) ? (RtlAssert((PVOID) #exp, (PVOID)__FILE__, __LINE__, NULL), FALSE) : TRUE))
#define ASSERTMSG(msg, exp) \
	((void)((!(exp)) ? (RtlAssert((PVOID) #exp, (PVOID)__FILE__, __LINE__, (PCHAR)(msg)), FALSE) : TRUE))
#define NT_ASSERT(exp) ASSERT(exp)
/* Pageable code must not run above APC_LEVEL: said, then asserted. */
#define PAGED_CODE()                                                                    \
	do {                                                                            \
		if (KeGetCurrentIrql() > APC_LEVEL) {                                   \
			DbgPrint("EX: Pageable code called at IRQL %d\n", KeGetCurrentIrql()); \
			NT_ASSERT(FALSE);                                                \
		}                                                                       \
	} while (0)
#else
#define KdPrint(_x_)
#define KdPrintEx(_x_)
#define KdBreakPoint()
#define ASSERT(exp) ((void)0)
#define ASSERTMSG(msg, exp) ((void)0)
#define NT_ASSERT(exp) ((void)0)
#define PAGED_CODE() ((void)0)
#endif
#define PAGED_CODE_LOCKED() ((void)0)

#endif
