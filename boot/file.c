/*
 * Files on the volume the loader itself was loaded from (the ESP): the device handle of
 * our LoadedImage, its SimpleFileSystem, and plain EFI_FILE_PROTOCOL reads.
 */
#include "loader.h"

/* EFI_FILE_INFO ends in a variable-length name; our paths are short. */
#define FILE_INFO_BYTES (sizeof(EFI_FILE_INFO) + 256 * sizeof(CHAR16))

/* The loader prints paths as ASCII: they are ours and plain. */
static void path_ascii(const CHAR16 *path, char *out, unsigned cap)
{
	unsigned i = 0;

	while (path[i] != 0 && i + 1 < cap) {
		out[i] = path[i] < 0x80 ? (char)path[i] : '?';
		i++;
	}
	out[i] = 0;
}

EFI_STATUS volume_open_root(EFI_FILE_HANDLE *root)
{
	EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
	EFI_GUID fs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
	EFI_LOADED_IMAGE_PROTOCOL *li;
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *fs;
	EFI_STATUS st;

	st = boot_bs->HandleProtocol(boot_image, &li_guid, (void **)&li);
	if (EFI_ERROR(st))
		return boot_error(st, "no LoadedImage protocol on our image: %s",
				  efi_status_name(st));
	st = boot_bs->HandleProtocol(li->DeviceHandle, &fs_guid, (void **)&fs);
	if (EFI_ERROR(st))
		return boot_error(st, "boot device has no file system: %s", efi_status_name(st));
	st = fs->OpenVolume(fs, root);
	if (EFI_ERROR(st))
		return boot_error(st, "cannot open the boot volume: %s", efi_status_name(st));
	return EFI_SUCCESS;
}

/* Open `path` for reading and return its size.  EFI_NOT_FOUND is silent. */
static EFI_STATUS file_open(EFI_FILE_HANDLE root, const CHAR16 *path, EFI_FILE_HANDLE *fh,
			    uint64_t *size)
{
	EFI_GUID info_guid = EFI_FILE_INFO_ID;
	uint64_t info_buf[FILE_INFO_BYTES / sizeof(uint64_t) + 1];
	UINTN info_size = sizeof info_buf;
	char name[128];
	EFI_STATUS st;

	path_ascii(path, name, sizeof name);
	st = root->Open(root, fh, (CHAR16 *)path, EFI_FILE_MODE_READ, 0);
	if (st == EFI_NOT_FOUND)
		return st;
	if (EFI_ERROR(st))
		return boot_error(st, "cannot open %s: %s", name, efi_status_name(st));
	st = (*fh)->GetInfo(*fh, &info_guid, &info_size, info_buf);
	if (EFI_ERROR(st)) {
		(*fh)->Close(*fh);
		return boot_error(st, "cannot get the size of %s: %s", name, efi_status_name(st));
	}
	*size = ((EFI_FILE_INFO *)info_buf)->FileSize;
	return EFI_SUCCESS;
}

/* Read exactly `len` bytes from the current position; FAT may return short reads. */
static EFI_STATUS file_read_exact(EFI_FILE_HANDLE fh, const CHAR16 *path, uint8_t *buf,
				  uint64_t len)
{
	char name[128];
	uint64_t done = 0;

	while (done < len) {
		UINTN chunk = len - done;
		EFI_STATUS st = fh->Read(fh, &chunk, buf + done);

		if (EFI_ERROR(st) || chunk == 0) {
			path_ascii(path, name, sizeof name);
			if (!EFI_ERROR(st))
				return boot_error(EFI_END_OF_FILE, "%s: short read (%lu of %lu bytes)",
						  name, done, len);
			return boot_error(st, "%s: read failed: %s", name, efi_status_name(st));
		}
		done += chunk;
	}
	return EFI_SUCCESS;
}

EFI_STATUS file_read_all(EFI_FILE_HANDLE root, const CHAR16 *path, struct file_buffer *out)
{
	EFI_FILE_HANDLE fh;
	uint64_t size;
	void *buf = NULL;
	EFI_STATUS st;

	st = file_open(root, path, &fh, &size);
	if (EFI_ERROR(st))
		return st;
	/* Allocate at least one byte so an empty file still yields a valid buffer. */
	st = boot_bs->AllocatePool(EfiLoaderData, size ? size : 1, &buf);
	if (EFI_ERROR(st)) {
		fh->Close(fh);
		return boot_error(st, "cannot allocate %lu bytes to read a file: %s", size,
				  efi_status_name(st));
	}
	st = file_read_exact(fh, path, buf, size);
	fh->Close(fh);
	if (EFI_ERROR(st)) {
		boot_bs->FreePool(buf);
		return st;
	}
	out->data = buf;
	out->size = size;
	return EFI_SUCCESS;
}

EFI_STATUS file_read_prefix(EFI_FILE_HANDLE root, const CHAR16 *path, void *buf,
			    uint64_t cap, uint64_t *len)
{
	EFI_FILE_HANDLE fh;
	uint64_t size;
	EFI_STATUS st;

	st = file_open(root, path, &fh, &size);
	if (EFI_ERROR(st))
		return st;
	*len = size < cap ? size : cap;
	st = file_read_exact(fh, path, buf, *len);
	fh->Close(fh);
	return st;
}
