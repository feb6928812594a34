/*
 * mdlab's <windows.h>: the part of the Win32 API mdlab's user programs can call, with
 * Windows's names, types and values (user/win32.c implements it on mdlab's system calls).
 */
#ifndef MDLAB_USER_WINDOWS_H
#define MDLAB_USER_WINDOWS_H

#include <stddef.h>
#include <stdint.h>

typedef int BOOL;
typedef unsigned char BYTE, *PBYTE, *LPBYTE;
typedef unsigned short WORD;
typedef uint32_t DWORD, *PDWORD, *LPDWORD;
typedef int32_t LONG;
typedef uint32_t ULONG, UINT;
typedef uint64_t ULONG_PTR, SIZE_T, DWORD_PTR;
typedef int64_t LONG_PTR;
typedef void VOID, *PVOID, *LPVOID, *HANDLE;
typedef const void *LPCVOID;
typedef char CHAR;
typedef const char *LPCSTR;
typedef char *LPSTR;

typedef unsigned char UCHAR, BOOLEAN, *PUCHAR;
typedef unsigned short USHORT;
typedef int INT;
typedef char TCHAR, *LPTSTR;
typedef const char *LPCTSTR;
#define TEXT(s) s

#define TRUE 1
#define FALSE 0
#define UNREFERENCED_PARAMETER(P) ((void)(P))
#define __cdecl
#define _cdecl
#define WINAPI
#define CONST const
#define INVALID_HANDLE_VALUE ((HANDLE)(LONG_PTR)-1)
#define MAXDWORD 0xFFFFFFFFu

typedef struct _SECURITY_ATTRIBUTES {
	DWORD nLength;
	LPVOID lpSecurityDescriptor;
	BOOL bInheritHandle;
} SECURITY_ATTRIBUTES, *LPSECURITY_ATTRIBUTES;
/* ReadFile / WriteFile on a handle opened for synchronous I/O (every mdlab handle): Offset and
 * OffsetHigh are the byte offset of the transfer; Internal gets the NTSTATUS and InternalHigh
 * the bytes transferred.  hEvent is not used (the call returns when the transfer is done). */
typedef struct _OVERLAPPED {
	ULONG_PTR Internal;
	ULONG_PTR InternalHigh;
	union {
		struct {
			DWORD Offset;
			DWORD OffsetHigh;
		};
		PVOID Pointer;
	};
	HANDLE hEvent;
} OVERLAPPED, *LPOVERLAPPED;

/* CreateFileA: access, sharing, disposition, attributes. */
#define GENERIC_READ 0x80000000u
#define GENERIC_WRITE 0x40000000u
#define GENERIC_EXECUTE 0x20000000u
#define GENERIC_ALL 0x10000000u
#define FILE_SHARE_READ 0x1
#define FILE_SHARE_WRITE 0x2
#define FILE_SHARE_DELETE 0x4
#define CREATE_NEW 1
#define CREATE_ALWAYS 2
#define OPEN_EXISTING 3
#define OPEN_ALWAYS 4
#define TRUNCATE_EXISTING 5
#define FILE_ATTRIBUTE_NORMAL 0x80

/* Memory. */
#define MEM_COMMIT 0x1000
#define MEM_RESERVE 0x2000
#define MEM_DECOMMIT 0x4000
#define MEM_RELEASE 0x8000
#define PAGE_NOACCESS 0x01
#define PAGE_READONLY 0x02
#define PAGE_READWRITE 0x04
#define PAGE_WRITECOPY 0x08
#define PAGE_EXECUTE 0x10
#define PAGE_EXECUTE_READ 0x20
#define PAGE_EXECUTE_READWRITE 0x40
#define PAGE_GUARD 0x100
#define PAGE_NOCACHE 0x200

/* GetLastError values (winerror.h). */
#define ERROR_SUCCESS 0
#define ERROR_INVALID_FUNCTION 1
#define ERROR_FILE_NOT_FOUND 2
#define ERROR_PATH_NOT_FOUND 3
#define ERROR_ACCESS_DENIED 5
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_BAD_UNIT 20
#define ERROR_NOT_SUPPORTED 50
#define ERROR_INVALID_PARAMETER 87
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_INVALID_NAME 123
#define ERROR_BAD_PATHNAME 161
#define ERROR_ALREADY_EXISTS 183
#define ERROR_MORE_DATA 234
#define ERROR_MR_MID_NOT_FOUND 317
#define ERROR_INVALID_ADDRESS 487
#define ERROR_NOACCESS 998
#define ERROR_NO_SYSTEM_RESOURCES 1450
#define ERROR_HANDLE_EOF 38
#define ERROR_BUSY 170

/* The SAL annotations Win32 code carries: for static analysis only. */
#define _In_
#define _In_opt_
#define _In_z_
#define _Out_
#define _Out_opt_
#define _Inout_
#define _Inout_opt_
#define _In_reads_(...)
#define _In_reads_bytes_(...)
#define _Out_writes_(...)
#define _Out_writes_bytes_(...)
#define _Out_writes_bytes_opt_(...)
#define _Success_(...)
#define _Must_inspect_result_
#define _Use_decl_annotations_
#define _Check_return_

/* No UNICODE build: the A routines under their generic names. */
#define CreateFile CreateFileA

HANDLE WINAPI CreateFileA(LPCSTR lpFileName, DWORD dwDesiredAccess, DWORD dwShareMode,
			  LPSECURITY_ATTRIBUTES lpSecurityAttributes, DWORD dwCreationDisposition,
			  DWORD dwFlagsAndAttributes, HANDLE hTemplateFile);
BOOL WINAPI CloseHandle(HANDLE hObject);
BOOL WINAPI DeviceIoControl(HANDLE hDevice, DWORD dwIoControlCode, LPVOID lpInBuffer, DWORD nInBufferSize,
			    LPVOID lpOutBuffer, DWORD nOutBufferSize, LPDWORD lpBytesReturned,
			    LPOVERLAPPED lpOverlapped);
BOOL WINAPI ReadFile(HANDLE hFile, LPVOID lpBuffer, DWORD nNumberOfBytesToRead, LPDWORD lpNumberOfBytesRead,
		     LPOVERLAPPED lpOverlapped);
BOOL WINAPI WriteFile(HANDLE hFile, LPCVOID lpBuffer, DWORD nNumberOfBytesToWrite,
		      LPDWORD lpNumberOfBytesWritten, LPOVERLAPPED lpOverlapped);
LPVOID WINAPI VirtualAlloc(LPVOID lpAddress, SIZE_T dwSize, DWORD flAllocationType, DWORD flProtect);
BOOL WINAPI VirtualFree(LPVOID lpAddress, SIZE_T dwSize, DWORD dwFreeType);
BOOL WINAPI VirtualProtect(LPVOID lpAddress, SIZE_T dwSize, DWORD flNewProtect, PDWORD lpflOldProtect);
DWORD WINAPI GetLastError(void);
void WINAPI SetLastError(DWORD dwErrCode);
__attribute__((noreturn)) void WINAPI ExitProcess(UINT uExitCode);

#define ZeroMemory(d, n) memset((d), 0, (n))
#define CopyMemory(d, s, n) memcpy((d), (s), (n))
#define FillMemory(d, n, f) memset((d), (f), (n))
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
