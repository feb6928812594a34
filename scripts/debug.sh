#!/usr/bin/env bash
# debug.sh ESP KERNEL [QEMU_EXTRA] — `make debug`: the kernel under gdb.
#
# Starts QEMU stopped at the reset vector (-s -S: gdb server on localhost:1234) in the
# background, with the same machine as `make run`/`make test` (scripts/qemu.py builds
# the command line), -no-reboot -no-shutdown so that a triple fault stops the machine
# for inspection instead of ending QEMU, and COM1 going to BUILD/debug.log (BUILD is the
# ESP's directory).  Then runs gdb in the foreground with scripts/gdbinit, which loads
# KERNEL's symbols and the mdlab-* commands (scripts/mdlab_gdb.py), connects and sets
# `hbreak kmain`.  When gdb exits, QEMU is killed.
#
# Environment: KVM=1 for KVM, PYTHON (python3), GDB (gdb), QEMU (see scripts/qemu.py);
# BOOT_CMDLINE, a kernel command line for this boot (`make debug BOOT_CMDLINE='mode=test
# tests=mdl_map.*'`): the kernel then boots from a copy of ESP, BUILD/debug-esp.img, whose
# \EFI\mdlab\cmdline.txt is that line (ESP itself is never changed).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: bash scripts/debug.sh ESP KERNEL [QEMU_EXTRA]" >&2
	exit 2
fi
esp=$1 kernel=$2 extra=${3:-}
scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(dirname "$esp")
log=$build/debug.log
for f in "$esp" "$kernel"; do
	[ -f "$f" ] || { echo "debug.sh: $f does not exist (run make first)" >&2; exit 1; }
done

if [ -n "${BOOT_CMDLINE:-}" ]; then
	cp "$esp" "$build/debug-esp.img"
	printf '%s' "$BOOT_CMDLINE" >"$build/debug-cmdline.txt"
	MTOOLS_SKIP_CHECK=1 mcopy -o -i "$build/debug-esp.img" "$build/debug-cmdline.txt" \
		::/EFI/mdlab/cmdline.txt
	rm -f "$build/debug-cmdline.txt"
	esp=$build/debug-esp.img
	echo "debug.sh: booting with the command line '$BOOT_CMDLINE' ($esp)"
fi

argv_file=$(mktemp)
qemu_pid=
cleanup() {
	rm -f "$argv_file"
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
# Ctrl-C belongs to gdb (it stops the guest): the script itself must not die of it.
trap : INT

"${PYTHON:-python3}" "$scripts/qemu.py" argv --debug --no-reboot --esp "$esp" \
	--vars "$build/debug-vars.fd" --serial-file "$log" --kvm "${KVM:-0}" \
	--qemu-extra "$extra" >"$argv_file"
mapfile -d '' qemu_argv <"$argv_file"

# Its own session: the terminal's Ctrl-C must reach gdb only, never QEMU.
setsid "${qemu_argv[@]}" </dev/null >"$build/debug-qemu.txt" 2>&1 &
qemu_pid=$!
sleep 0.5
if ! kill -0 "$qemu_pid" 2>/dev/null; then
	wait "$qemu_pid" || true
	echo "debug.sh: QEMU did not start:" >&2
	cat "$build/debug-qemu.txt" >&2
	exit 1
fi

echo "debug.sh: QEMU (pid $qemu_pid) waits for gdb on localhost:1234."
echo "debug.sh: serial output goes to $log; follow it in another terminal with:"
echo "    tail -f $log"
MDLAB_KERNEL=$kernel MDLAB_SCRIPTS=$scripts "${GDB:-gdb}" -q -x "$scripts/gdbinit" || true
echo "debug.sh: gdb has exited; stopping QEMU. The serial log stays in $log."
