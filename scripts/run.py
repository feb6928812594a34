"""run.py — `make run`: boot the ESP under QEMU, talking to mdlab's monitor on COM1.

    python3 scripts/run.py --esp build/esp.img [--kvm 0|1] [--qemu-extra "OPTS"]
        [--cmd "CMD1; CMD2; ..." | --cmd-env VAR] [--boot "key=value ..." | --boot-env VAR]
        [--pagefile] [--timeout 600] [--build-dir build]

The ESP boots as given (build/esp.img carries `mode=monitor`), or a copy of it whose command
line is `mode=monitor` followed by the --boot words (`pagefile=1` first with --pagefile), with a fresh private copy
of the OVMF variables in BUILD_DIR/run-vars.fd, and without -no-reboot, so the monitor's
`reboot` really reboots.

Interactive (stdin is a terminal and no --cmd): QEMU runs in the foreground with
`-serial mon:stdio`; Ctrl-A X quits QEMU, Ctrl-A C switches to the QEMU monitor and back.

Scripted (--cmd, or stdin not a terminal): QEMU's serial port is on pipes.  Its output is
copied to stdout as it comes; the commands (--cmd split at ';', else stdin's lines) are
sent one at a time, each only once the kernel's prompt `mdlab> ` has appeared once more
than the number of lines already sent (so none is typed into the firmware, whose serial
console would swallow it).  When the commands run out, `quit` is sent at the next prompt.
A line is ended with CR, as a terminal's Enter key sends it.  The whole run is limited to
--timeout seconds.

Exit status: 0 when QEMU exits 33 (the kernel's quit) and no command failed (the kernel
prints protocol.MONITOR_FAILED after each one that did); 1 when one did, on a timeout or a
setup error;
otherwise QEMU's own status (35 after a bug check; 128+N if a signal N ended it).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import protocol  # noqa: E402
import qemu  # noqa: E402

PROMPT = protocol.MONITOR_PROMPT.encode()
FAILED = protocol.MONITOR_FAILED.encode()
TAG = "run:"


def note(message: str) -> None:
    """A message of ours, on stderr so that stdout stays the serial output."""
    print(TAG, message, file=sys.stderr, flush=True)


def exit_code(status: int) -> int:
    """Our exit status for QEMU's: qemu.EXIT_DONE (quit) is success."""
    if status == qemu.EXIT_DONE:
        return 0
    return 128 - status if status < 0 else status


def run_interactive(argv: list[str]) -> int:
    """QEMU in the foreground on this terminal; returns exit_code(QEMU's status)."""
    note("Ctrl-A X quits QEMU; Ctrl-A C switches to the QEMU monitor and back; "
         f"`quit` at the {protocol.MONITOR_PROMPT.strip()} prompt ends the run")
    # The terminal is QEMU's now (raw mode): Ctrl-C reaches the guest, not us.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = subprocess.call(argv)
    except OSError as e:
        note(f"cannot run {argv[0]!r}: {e.strerror}")
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    return exit_code(status)


_USER_LINE = re.compile(rb"^[\r\s]*(?:#\s*)?" + re.escape(protocol.USER_MARK.encode()))


def count_failures(lines: list[bytes]) -> int:
    """The kernel's "command failed" lines among complete serial lines (not a user's)."""
    return sum(1 for line in lines
               if not _USER_LINE.match(line) and line.lstrip(b"\r").startswith(FAILED))


class PromptCounter:
    """Counts the kernel's prompts in serial output fed in pieces of any size.  A prompt on a
    line a user process printed (protocol.USER_MARK) is not the kernel's and does not count,
    so a process cannot make a scripted run send its next command early."""

    def __init__(self) -> None:
        self.line = b""     # the current line so far
        self.counted = 0    # prompts already counted in it

    def feed(self, data: bytes) -> int:
        """The number of new prompts `data` completes."""
        found = 0
        parts = data.split(b"\n")
        for i, part in enumerate(parts):
            line = self.line + part
            n = 0 if _USER_LINE.match(line) else line.count(PROMPT)
            found += n - self.counted
            if i < len(parts) - 1:
                self.line, self.counted = b"", 0
            else:
                self.line, self.counted = line, n
        return found


class PromptWatcher:
    """Copies QEMU's output to our stdout and counts the prompts in it."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.prompts = 0
        self.failures = 0   # commands the kernel said failed
        self.eof = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._pump, name="serial-out", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        out = sys.stdout.buffer
        counter = PromptCounter()
        fd = self.stream.fileno()
        partial = b""
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            out.write(data)
            out.flush()
            *complete, partial = (partial + data).split(b"\n")
            self.failures += count_failures(complete)
            found = counter.feed(data)
            if found:
                with self.changed:
                    self.prompts += found
                    self.changed.notify_all()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    def wait_for_prompt(self, count: int, deadline: float) -> bool:
        """Wait until `count` prompts have been seen; False on EOF or at the deadline."""
        with self.changed:
            while self.prompts < count:
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.5))
            return True


def stdin_lines(lines: queue.Queue) -> None:
    """Put stdin's lines (without line ends) on `lines`, then None at EOF."""
    for raw in sys.stdin.buffer:
        lines.put(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
    lines.put(None)


def run_scripted(argv: list[str], commands: list[str] | None, timeout: float) -> int:
    """QEMU on pipes, fed `commands` (or stdin's lines when None) prompt by prompt."""
    lines: queue.Queue = queue.Queue()
    if commands is None:
        threading.Thread(target=stdin_lines, args=(lines,), name="stdin", daemon=True).start()
    else:
        for command in commands:
            lines.put(command)
        lines.put(None)
    procs = qemu.ProcessSet()
    try:
        proc = procs.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except qemu.QemuSetupError as e:
        note(str(e))
        return 1
    watcher = PromptWatcher(proc.stdout)
    deadline = time.monotonic() + timeout
    sent = 0
    try:
        while True:
            if not watcher.wait_for_prompt(sent + 1, deadline):
                break
            line = _next_line(lines, proc, deadline)
            if line is _GONE:
                break
            if line is None:
                _send(proc, "quit")
                break
            if not _send(proc, line):
                break
            sent += 1
        status, timed_out = procs.wait(proc, max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        procs.kill_all()
        note("interrupted")
        return 130
    finally:
        procs.kill_all()
    watcher.thread.join(timeout=5)
    if commands is not None and sent < len(commands):
        note(f"{len(commands) - sent} command(s) not sent: no prompt came for them")
    if timed_out:
        note(f"timed out after {timeout:g} s; QEMU killed")
        return 1
    if watcher.failures and status == qemu.EXIT_DONE:
        note(f"{watcher.failures} command(s) failed (the '{protocol.MONITOR_FAILED}' lines)")
        return 1
    return exit_code(status)


_GONE = object()


def _next_line(lines: queue.Queue, proc: subprocess.Popen, deadline: float):
    """The next input line (None at the end of input), or _GONE when QEMU has exited
    or the deadline has passed while waiting for it."""
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            return lines.get(timeout=0.2)
        except queue.Empty:
            continue
    return _GONE


def _send(proc: subprocess.Popen, line: str) -> bool:
    """Type `line` and Enter (CR) into the serial port; False once QEMU has gone."""
    try:
        proc.stdin.write(line.encode() + b"\r")
        proc.stdin.flush()
        return True
    except (BrokenPipeError, ValueError):
        return False


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="run.py", description="Boot mdlab to its monitor.")
    ap.add_argument("--esp", required=True, help="the ESP image (build/esp.img)")
    ap.add_argument("--kvm", choices=["0", "1"], default="0")
    ap.add_argument("--qemu-extra", default="", help="extra QEMU options (shlex-split)")
    ap.add_argument("--cmd", help="monitor commands separated by ';', run without a "
                    "terminal, then quit")
    ap.add_argument("--cmd-env", metavar="NAME",
                    help="take --cmd from environment variable NAME when it is not empty "
                    "(make run passes CMD so: no shell or make ever expands its $ or `)")
    ap.add_argument("--boot", default="",
                    help="key=value words appended to the kernel command line "
                    "'mode=monitor' (booted from a copy of the ESP)")
    ap.add_argument("--pagefile", action="store_true",
                    help="add pagefile=1: the kernel may page to the disk (the Makefile's "
                    "PAGEFILE, on for build/disk.img)")
    ap.add_argument("--boot-env", metavar="NAME",
                    help="take --boot from environment variable NAME when it is not empty")
    ap.add_argument("--timeout", type=float, default=600,
                    help="limit of a scripted run, seconds (default 600)")
    ap.add_argument("--build-dir", default="build", help="where the OVMF variables copy goes")
    args = ap.parse_args(argv)
    if args.cmd_env and os.environ.get(args.cmd_env, "").strip():
        args.cmd = os.environ[args.cmd_env]
    if args.boot_env and os.environ.get(args.boot_env, "").strip():
        args.boot = os.environ[args.boot_env]
    if args.pagefile:
        args.boot = f"pagefile=1 {args.boot}".strip()
    if any(c in args.boot for c in "\r\n"):
        ap.error("--boot: the kernel command line is one line")
    if not Path(args.esp).is_file():
        ap.error(f"--esp {args.esp}: no such image (run make first)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    interactive = args.cmd is None and sys.stdin.isatty()
    serial = ["-serial", "mon:stdio"] if interactive else ["-serial", "stdio"]
    try:
        vars_fd = qemu.copy_vars(Path(args.build_dir) / "run-vars.fd")
        esp = args.esp
        if args.boot.strip():
            cmdline = f"mode={protocol.MODE_MONITOR} {' '.join(args.boot.split())}"
            esp = qemu.clone_esp(args.esp, Path(args.build_dir) / "run-esp.img", cmdline)
        cmd = qemu.build_command(esp, vars_fd, kvm=args.kvm == "1", serial=serial,
                                 no_reboot=False, extra=args.qemu_extra, disk_snapshot=False)
    except qemu.QemuSetupError as e:
        print(e if isinstance(e, qemu.KvmUnavailable) else f"{TAG} {e}", file=sys.stderr)
        return 1
    if interactive:
        return run_interactive(cmd)
    # SIGTERM/SIGHUP end QEMU too; SIGINT as well (a shell's background job ignores it).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    commands = None
    if args.cmd is not None:
        commands = [c.strip() for c in args.cmd.split(";") if c.strip()]
    return run_scripted(cmd, commands, args.timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
