#!/usr/bin/env bash
# mkesp.sh IMAGE LOADER KERNEL CMDLINE
# Build a FAT EFI system partition image with mtools (no QEMU vvfat):
#   \EFI\BOOT\BOOTX64.EFI      the loader (the removable-media boot path)
#   \EFI\mdlab\kernel.elf      the kernel
#   \EFI\mdlab\cmdline.txt     the kernel command line
set -euo pipefail
img=$1 loader=$2 kernel=$3 cmdline=$4

# Size: the files plus room, at least 16 MiB (FAT16 wants a few thousand clusters).
need=$(( ($(stat -c %s "$loader") + $(stat -c %s "$kernel")) / 1048576 + 8 ))
mib=$(( need < 16 ? 16 : need ))
tmp=$img.tmp
rm -f "$tmp"
dd if=/dev/zero of="$tmp" bs=1M count=0 seek="$mib" status=none
mformat -i "$tmp" -v MDLAB ::
mmd -i "$tmp" ::/EFI ::/EFI/BOOT ::/EFI/mdlab
mcopy -i "$tmp" "$loader" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$tmp" "$kernel" ::/EFI/mdlab/kernel.elf
printf '%s' "$cmdline" > "$tmp.cmdline"
mcopy -i "$tmp" "$tmp.cmdline" ::/EFI/mdlab/cmdline.txt
rm -f "$tmp.cmdline"
mv "$tmp" "$img"
