#!/usr/bin/env bash
# Install whatever is missing of the Debian packages mdlab builds and boots with.
# Run by `make run`, `make test` and `make debug` before anything else.
set -euo pipefail

pkgs=(gcc make binutils nasm gnu-efi mtools qemu-system-x86 ovmf python3 gdb)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "mdlab: missing Debian packages: ${missing[*]}" >&2
	echo "mdlab: install them as root with:" >&2
	echo "  $cmd" >&2
	exit 1
fi
echo "mdlab: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
