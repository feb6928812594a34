#!/usr/bin/env bash
# Install whatever is missing of the Debian packages mdlab builds and boots with.
# Run by `make run`, `make test` and `make debug` before anything else.
#
#   scripts/deps.sh [LIST]
#
# With LIST, an optional package list (one name a line, # comments) instead of the built-in
# one: `make bench-linux` passes tests/bench/linux/packages.txt.  For such a list a non-root
# user goes through sudo when there is one (the packages are asked for by that one command).
set -euo pipefail

pkgs=(gcc make binutils nasm gnu-efi mtools qemu-system-x86 ovmf python3 gdb)
list=${1:-}
if [ -n "$list" ]; then
	mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ] && [ -n "$list" ] && command -v sudo >/dev/null; then
	sudo=(sudo)
elif [ "$(id -u)" -ne 0 ]; then
	echo "mdlab: missing Debian packages: ${missing[*]}" >&2
	echo "mdlab: install them as root with:" >&2
	echo "  $cmd" >&2
	exit 1
fi
echo "mdlab: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
