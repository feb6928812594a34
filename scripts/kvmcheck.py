"""kvmcheck.py — can this machine's KVM run mdlab's machine?  (`make ... KVM=1` asks first.)

/dev/kvm being there and writable is not enough: on a host whose KVM lacks what `-cpu host`
needs (nested virtualisation that hides an MSR, for one) QEMU aborts as soon as it sets the
vCPU up, with a message about an MSR and an assertion.  So the check starts the same
accelerator and CPU (scripts/qemu.py's accel_args) on an empty machine, stopped (-S), with
its monitor on stdin, and types `quit`.  QEMU that gets that far exits 0: KVM works.

Exit status 0 when KVM works; 1, with one line saying why and what to do, when it does not.
The QEMU binary is the one scripts/qemu.py uses ($QEMU or qemu-system-x86_64).
"""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import qemu  # noqa: E402

TIMEOUT = 20  # seconds: an empty machine that never starts quits at once


def qemu_said(stderr: str) -> str:
    """QEMU's own error lines, without its program-name prefixes, on one line."""
    lines = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        head, sep, rest = line.partition(": ")
        if sep and head.endswith("qemu-system-x86_64"):
            line = rest
        if line.startswith("error: "):
            line = line[len("error: "):]
        lines.append(line)
    # The first line names the cause; an assertion after it adds nothing a user can act on.
    return lines[0] if lines else "nothing"


def probe() -> str | None:
    """None when KVM runs `-cpu host` here; otherwise the reason, for the user."""
    try:
        accel = qemu.accel_args(True)
    except qemu.KvmUnavailable as e:
        return str(e).replace("KVM=1 but ", "")
    argv = qemu.qemu_command_prefix() + ["-machine", "q35", *accel, "-m", "64M", "-nodefaults",
                                         "-display", "none", "-S", "-monitor", "stdio",
                                         "-serial", "none"]
    try:
        proc = subprocess.run(argv, input="quit\n", capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        return f"{argv[0]} is not installed (scripts/deps.sh installs qemu-system-x86)"
    except subprocess.TimeoutExpired:
        return f"QEMU with KVM did not start and quit within {TIMEOUT} s"
    if proc.returncode == 0:
        return None
    return f"this machine's KVM cannot run -cpu host (QEMU said: {qemu_said(proc.stderr)})"


def main() -> int:
    reason = probe()
    if reason is None:
        return 0
    print(f"KVM=1: {reason}; use KVM=0 (QEMU's TCG emulator, the default)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
