#!/usr/bin/env bash
# test-loader.sh [KERNEL [LOADER]]
#
# Boot tests of the UEFI loader (boot/).  From a good kernel ELF it derives broken ones
# (bad magic, wrong machine, overlapping segments, ...), puts each on its own copy of the
# ESP and boots it under OVMF; a case passes when the loader's one-line diagnosis appears
# on the serial port and the firmware then reports that the loader returned (so the loader
# did not hang).  Good cases boot the real kernel at 512 MiB and 2 GiB and with odd
# command-line files, and time QEMU start -> the kernel's first line (KERNEL_MARKER).
#
# Defaults: build/kernel.elf and build/boot/BOOTX64.EFI (built first with make).
# Environment: JOBS (parallel boots, default 2), BOOT_TIMEOUT (seconds per boot, 40),
# KERNEL_MARKER (extended regex for a serial line that only the kernel prints, default
# a line starting "mdlab: "), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=${1:-build/kernel.elf}
loader=${2:-build/boot/BOOTX64.EFI}
jobs=${JOBS:-2}
tmo=${BOOT_TIMEOUT:-40}
marker=${KERNEL_MARKER:-'^mdlab: '}
if [ $# -eq 0 ]; then
	make --no-print-directory "$kernel" "$loader"
fi

ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
work=$(mktemp -d "${TMPDIR:-/tmp}/mdlab-test-loader.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cases" "$work/results"

# ------------------------------------------------------------------ broken kernels
# Each case: cases/NAME.elf (absent for "missing") and cases/NAME.expect, the exact line
# the loader must print (after "mdlab loader: ").  Segment numbers are program header
# indices, read from the kernel given, so the cases follow its layout.
python3 - "$kernel" "$work/cases" <<'PY'
import struct, sys

src, out = sys.argv[1], sys.argv[2]
elf = bytearray(open(src, 'rb').read())
EH = '<16sHHIQQQIHHHHHH'
(ident, etype, machine, version, entry, phoff, shoff, flags, ehsize,
 phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from(EH, elf, 0)
PH = '<IIQQQQQQ'      # type flags offset vaddr paddr filesz memsz align
SH = '<IIQQQQIIQQ'    # name type flags addr offset size link info addralign entsize

def ph(i):
    return list(struct.unpack_from(PH, elf, phoff + i * phentsize))

def set_ph(buf, i, p):
    struct.pack_into(PH, buf, phoff + i * phentsize, *p)

loads = [i for i in range(phnum) if ph(i)[0] == 1 and ph(i)[6] != 0]
assert len(loads) >= 2, 'the kernel needs at least two PT_LOAD segments'
first, second = loads[0], loads[1]
seg_end = max(ph(i)[3] + ph(i)[6] for i in loads)
cases = {}

def case(name, buf, expect):
    if buf is not None:
        open(f'{out}/{name}.elf', 'wb').write(buf)
    open(f'{out}/{name}.expect', 'w').write('mdlab loader: ' + expect + '\n')

case('missing', None, 'cannot open \\EFI\\mdlab\\kernel.elf: not found')
case('too-small', elf[:40], 'kernel.elf: file too small (40 bytes, an ELF header is 64)')
case('empty', bytearray(), 'kernel.elf: file too small (0 bytes, an ELF header is 64)')

b = bytearray(elf); b[1:4] = b'XYZ'
case('bad-magic', b, 'kernel.elf: bad ELF magic 7f 58 59 5a (want 7f 45 4c 46)')
b = bytearray(elf); b[4] = 1
case('class32', b, 'kernel.elf: ELF class 1 is not ELFCLASS64')
b = bytearray(elf); b[5] = 2
case('big-endian', b, 'kernel.elf: data encoding 2 is not little-endian')
b = bytearray(elf); struct.pack_into('<H', b, 16, 3)
case('not-exec', b, 'kernel.elf: type 3 is not ET_EXEC')
b = bytearray(elf); struct.pack_into('<H', b, 18, 3)
case('machine', b, 'kernel.elf: wrong machine 0x3 (want x86-64)')

b = bytearray(elf); bad = len(elf) - 8; struct.pack_into('<Q', b, 32, bad)
case('phdr-bounds', b, 'kernel.elf: program header table (offset 0x%x, %u entries) '
     'out of file bounds' % (bad, phnum))

b = bytearray(elf); p = ph(first); p[5] = p[6] + 1; set_ph(b, first, p)
case('filesz', b, 'kernel.elf: segment %u: file size 0x%x > memory size 0x%x'
     % (first, p[5], p[6]))
b = bytearray(elf); p = ph(first); p[2] = len(elf) - 1; p[5] = min(p[6], 2); set_ph(b, first, p)
case('file-range', b, 'kernel.elf: segment %u: file range 0x%x+0x%x out of file bounds '
     '(file is 0x%x bytes)' % (first, p[2], p[5], len(elf)))

b = bytearray(elf); p = ph(second); q = ph(first); p[3] = q[3]; set_ph(b, second, p)
case('overlap', b, 'kernel.elf: segments %u and %u overlap in virtual memory '
     '(0x%x+0x%x, 0x%x+0x%x)' % (first, second, q[3], q[6], p[3], p[6]))

b = bytearray(elf)
for i in range(phnum):
    p = ph(i)
    if p[0] == 1:
        p[0] = 0; set_ph(b, i, p)
case('no-load', b, 'kernel.elf: no PT_LOAD segment')

b = bytearray(elf); bad = seg_end + 0x100000; struct.pack_into('<Q', b, 24, bad)
case('entry-outside', b, 'kernel.elf: entry point 0x%x not inside a loadable segment' % bad)
nx = [i for i in loads if not ph(i)[1] & 1]
if nx:
    b = bytearray(elf); bad = ph(nx[0])[3]; struct.pack_into('<Q', b, 24, bad)
    case('entry-noexec', b, 'kernel.elf: entry point 0x%x is in non-executable segment %u'
         % (bad, nx[0]))

b = bytearray(elf); p = ph(first); p[3] = 0x100000; set_ph(b, first, p)
case('lower-half', b, 'kernel.elf: segment %u: vaddr 0x100000+0x%x not in the higher half '
     '(want >= 0xffffffff80000000)' % (first, p[6]))

if shoff and shnum:
    b = bytearray(elf); bad = len(elf) - 16; struct.pack_into('<Q', b, 40, bad)
    case('shdr-bounds', b, 'kernel.elf: section header table (offset 0x%x, %u entries) '
         'out of file bounds' % (bad, shnum))
    for i in range(shnum):
        s = list(struct.unpack_from(SH, elf, shoff + i * shentsize))
        if s[1] == 2:   # SHT_SYMTAB: link it to itself, not a string table
            b = bytearray(elf); s[6] = i; struct.pack_into(SH, b, shoff + i * shentsize, *s)
            case('symtab-link', b, 'kernel.elf: symbol table (section %u) links to section '
                 '%u, not a string table' % (i, i))
PY

# ------------------------------------------------------------------ boots
base=$work/base.img
bash scripts/mkesp.sh "$base" "$loader" "$kernel" "mode=monitor"

# Print the lines of WANT that occur in no line of LOG (as substrings); status 1 if any.
missing() {
	local want=$1 log=$2 line rc=0
	while IFS= read -r line; do
		grep -aqF -- "$line" "$log" || { printf '%s\n' "$line"; rc=1; }
	done < "$want"
	return $rc
}

# Has the kernel printed its marker line?
kernel_seen() { tr -d '\r' < "$1" | grep -aqE -- "$marker"; }

# done NAME: every line of NAME.want seen, and the kernel's marker if NAME.kernel exists.
done_ok() {
	missing "$work/$1.want" "$work/$1.log" > /dev/null &&
		{ [ ! -e "$work/$1.kernel" ] || kernel_seen "$work/$1.log"; }
}

# boot NAME MEM: boot $work/NAME.img with MEM of RAM into $work/NAME.log until done_ok
# (or timeout); kills QEMU and writes results/NAME: "OK MS" (MS: time to the kernel).
boot() {
	local name=$1 mem=$2
	local log=$work/$name.log vars=$work/$name.vars
	local start now pid ok=0 seen_at=
	cp "$ovmf_vars" "$vars"
	: > "$log"
	start=$(date +%s%N)
	qemu-system-x86_64 -machine q35 -cpu max -m "$mem" \
		-drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
		-drive if=pflash,format=raw,file="$vars" \
		-drive format=raw,file="$work/$name.img" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot \
		-display none -nic none -serial file:"$log" -monitor none 2> "$work/$name.err" &
	pid=$!
	while :; do
		now=$(date +%s%N)
		if [ -z "$seen_at" ] && kernel_seen "$log"; then
			seen_at=$(( (now - start) / 1000000 ))
		fi
		if done_ok "$name"; then
			ok=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		[ $(( (now - start) / 1000000000 )) -lt "$tmo" ] || break
		sleep 0.2
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true   # QEMU notes the SIGTERM on stderr: silenced below
	# One more look: QEMU may have exited (debug-exit) just after printing.
	if [ $ok -eq 0 ] && done_ok "$name"; then
		ok=1
	fi
	echo "$ok ${seen_at:-}" > "$work/results/$name"
	rm -f "$vars" "$work/$name.img"
}

# Wanted lines (each must occur within some serial line).  For an error: the diagnosis
# (it also appears a second time through OVMF's ConOut mirror, not checked: the mirror
# may wrap long lines) and the firmware's note that the loader returned.
declare -a names=() mems=()
add() { names+=("$1"); mems+=("$2"); }

for expect in "$work"/cases/*.expect; do
	name=$(basename "$expect" .expect)
	cp "$base" "$work/$name.img"
	if [ -f "$work/cases/$name.elf" ]; then
		mcopy -o -i "$work/$name.img" "$work/cases/$name.elf" ::/EFI/mdlab/kernel.elf
	else
		mdel -i "$work/$name.img" ::/EFI/mdlab/kernel.elf
	fi
	{ cat "$expect"; } > "$work/$name.want"
	add "$name" 512M
done

good_line() { printf "mdlab loader: kernel.elf OK, entry 0x%x, %u segments, cmdline '%s'\n" "$@"; }
read -r entry nseg < <(python3 - "$kernel" <<'PY'
import struct, sys
elf = open(sys.argv[1], 'rb').read()
entry, phoff = struct.unpack_from('<QQ', elf, 24)
phentsize, phnum = struct.unpack_from('<HH', elf, 54)
n = sum(1 for i in range(phnum)
        if struct.unpack_from('<I', elf, phoff + i * phentsize)[0] == 1
        and struct.unpack_from('<Q', elf, phoff + i * phentsize + 40)[0] != 0)
print(entry, n)
PY
)
good() {   # good NAME MEM CMDLINE-FILE-CONTENT|- EXPECTED-CMDLINE
	local name=$1 mem=$2 content=$3 want=$4
	cp "$base" "$work/$name.img"
	if [ "$content" = "-" ]; then
		mdel -i "$work/$name.img" ::/EFI/mdlab/cmdline.txt
	else
		printf '%b' "$content" > "$work/$name.cmdline"
		mcopy -o -i "$work/$name.img" "$work/$name.cmdline" ::/EFI/mdlab/cmdline.txt
	fi
	good_line "$entry" "$nseg" "$want" > "$work/$name.want"
	touch "$work/$name.kernel"
	add "$name" "$mem"
}
long=$(printf 'x%.0s' $(seq 1 1500))
good boot-512M 512M "mode=monitor" "mode=monitor"
good boot-2G 2G "mode=monitor" "mode=monitor"
good cmdline-crlf 512M "a=1 b=2\r\n\r\n" "a=1 b=2"
good cmdline-missing 512M - ""
good cmdline-long 512M "$long" "${long:0:1023}"

# The error cases also want the firmware's "failed to start" line: the loader returned.
for name in "${names[@]}"; do
	case $name in boot-*|cmdline-*) ;; *)
		echo 'BdsDxe: failed to start Boot' >> "$work/$name.want"
	esac
done

for i in "${!names[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
	boot "${names[$i]}" "${mems[$i]}" &
done
wait

fail=0
for name in "${names[@]}"; do
	ok=0 ms=
	[ -f "$work/results/$name" ] && read -r ok ms < "$work/results/$name"
	if [ "$ok" = 1 ]; then
		printf 'PASS %-16s%s\n' "$name" "${ms:+  (kernel entered after ${ms} ms)}"
	else
		fail=1
		printf 'FAIL %-16s missing from the serial log:\n' "$name"
		missing "$work/$name.want" "$work/$name.log" | cut -c1-150 | sed 's/^/       /' || true
		if [ -e "$work/$name.kernel" ] && ! kernel_seen "$work/$name.log"; then
			echo "       (no line matching /$marker/ from the kernel)"
		fi
		echo "     log tail:"
		tr -d '\r' < "$work/$name.log" | tail -n 5 | sed 's/^/       /'
	fi
done
[ $fail -eq 0 ] && echo "test-loader: all ${#names[@]} cases passed" || echo "test-loader: FAILED"
exit $fail
