/*
 * hello: a Win32 console program that greets, prints its arguments and exercises the
 * memory calls: VirtualAlloc (reserve, commit), VirtualProtect, VirtualFree, GetLastError.
 * Exit status: the number of steps that did not give what Windows documents.
 */
#include <windows.h>
#include <stdio.h>

static int failures;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok" : "FAILED", what);
	if (!ok)
		failures++;
}

int __cdecl main(_In_ int argc, _In_reads_(argc) char **argv)
{
	printf("hello from ring 3: %d argument%s\n", argc, argc == 1 ? "" : "s");
	for (int i = 0; i < argc; i++)
		printf("  argv[%d] = '%s'\n", i, argv[i]);

	char *p = VirtualAlloc(NULL, 8192, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	check(p != NULL, "VirtualAlloc reserve+commit");
	if (!p)
		return 1;
	p[0] = 'x';
	p[8191] = 'y';
	check(p[0] == 'x' && p[8191] == 'y', "the pages are writable");
	DWORD old = 0;
	check(VirtualProtect(p, 4096, PAGE_READONLY, &old) && old == PAGE_READWRITE, "VirtualProtect to read-only");
	check(!VirtualProtect(p, 4096, PAGE_READWRITE, NULL) && GetLastError() == ERROR_NOACCESS,
	      "VirtualProtect without lpflOldProtect fails");
	check(!VirtualFree(p, 8192, MEM_RELEASE) && GetLastError() == ERROR_INVALID_PARAMETER,
	      "VirtualFree(MEM_RELEASE) with a size fails");
	check(VirtualFree(p, 0, MEM_RELEASE), "VirtualFree(MEM_RELEASE)");
	check(!VirtualFree(p, 0, MEM_RELEASE) && GetLastError() == ERROR_INVALID_ADDRESS,
	      "VirtualFree twice: ERROR_INVALID_ADDRESS");
	check(VirtualAlloc((LPVOID)0x1000, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE) == NULL,
	      "VirtualAlloc of writable code is refused");
	printf("hello: %d failed, error now %u\n", failures, GetLastError());
	return failures;
}
