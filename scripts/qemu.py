"""qemu.py — how mdlab's host scripts start QEMU, in one place.

Used by harness.py (test boots), run.py (`make run`) and debug.sh (through the small
command-line interface at the bottom), so that every boot uses the same machine:

    qemu-system-x86_64 -machine q35 -cpu max -m 512M -smp N (the Makefile's SMP; 1 for bench)
        -drive if=pflash,format=raw,readonly=on,file=OVMF_CODE_4M.fd
        -drive if=pflash,format=raw,file=<private copy of OVMF_VARS_4M.fd>
        -drive format=raw,file=<ESP image>
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
        [-no-reboot] -display none -nic none -monitor none
        <serial options> [<save or restore options>] <QEMU_EXTRA, shlex-split>

With KVM requested, `-enable-kvm -cpu host` replaces `-cpu max`, and /dev/kvm must be
readable and writable (KvmUnavailable otherwise).

Saving and restoring a machine (harness.py's death tests): the machine options above are
the same for every boot, so a machine booted with save_options(QMP socket) can be saved
with save_machine() (QMP `stop`, `migrate` to `exec:cat > STATE`) and copies of it
started with restore_options(STATE) (`-incoming exec:cat STATE`), each with its own
copies of the ESP and vars files (QEMU locks the images it opens for writing).

The QEMU binary is `qemu-system-x86_64`, or the command in the environment variable QEMU
(shlex-split, so `QEMU="python3 fake_qemu.py"` works): the scripts' own tests stand a fake
in for QEMU that way.

Exit statuses (isa-debug-exit turns a write of V to its port into exit status V*2+1; the
port and the values are include/mdlab/protocol.h's, read by protocol.py): EXIT_DONE (33) the
kernel finished normally, EXIT_BUGCHECK (35) KeBugCheckEx ran, EXIT_TRIPLE_FAULT (0) a triple
fault under -no-reboot.  Anything else is a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import protocol

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
CMDLINE_PATH_ON_ESP = "::/EFI/mdlab/cmdline.txt"

EXIT_DONE = protocol.EXIT_DONE          # the kernel wrote QEMU_EXIT_DONE
EXIT_BUGCHECK = protocol.EXIT_BUGCHECK  # the kernel wrote QEMU_EXIT_BUGCHECK (KeBugCheckEx)
EXIT_TRIPLE_FAULT = 0                   # QEMU's own status on a triple fault with -no-reboot


class QemuSetupError(Exception):
    """A boot cannot be set up (missing firmware, mtools failure, KVM unusable, ...).

    The message is meant for the user as it stands."""


class KvmUnavailable(QemuSetupError):
    """KVM was asked for, but /dev/kvm cannot be used by this process."""


def qemu_command_prefix() -> list[str]:
    """The QEMU program and any leading arguments: $QEMU (shlex-split) or the real one."""
    override = os.environ.get("QEMU", "").strip()
    return shlex.split(override) if override else ["qemu-system-x86_64"]


def check_kvm() -> None:
    """Raise KvmUnavailable unless /dev/kvm exists and is readable and writable by us."""
    dev = "/dev/kvm"
    if not os.path.exists(dev):
        reason = f"{dev} does not exist (no KVM module, or not exposed to this container)"
    elif not os.access(dev, os.R_OK | os.W_OK):
        reason = f"{dev} is not readable and writable by this user (add yourself to group kvm)"
    else:
        return
    raise KvmUnavailable(f"KVM=1 but /dev/kvm is not usable here: {reason}")


def accel_args(kvm: bool, cpu_flags: str = "") -> list[str]:
    """CPU/accelerator options: TCG with `-cpu max`, or KVM with `-cpu host` (checked);
    `cpu_flags` (",-smap": a feature taken away) is appended to the CPU model."""
    if kvm:
        check_kvm()
        return ["-enable-kvm", "-cpu", "host" + cpu_flags]
    return ["-cpu", "max" + cpu_flags]


def _qemu_opt_value(value: str | os.PathLike) -> str:
    """Escape a value for QEMU's key=value option syntax (a comma is written twice)."""
    return str(value).replace(",", ",,")


def serial_to_file(path: str | os.PathLike) -> list[str]:
    """Serial options sending COM1 to `path` (created or truncated by QEMU)."""
    return ["-chardev", f"file,id=com1,path={_qemu_opt_value(path)}", "-serial", "chardev:com1"]


def serial_to_stdio() -> list[str]:
    """Serial options connecting COM1 to QEMU's stdin and stdout (give QEMU a pipe as
    stdin to type into the guest; its stdout is then the guest's serial output)."""
    return ["-chardev", "stdio,id=com1,signal=off", "-serial", "chardev:com1"]


def build_command(esp: str | os.PathLike, vars_fd: str | os.PathLike, *, kvm: bool,
                  serial: list[str], no_reboot: bool = True, extra: str = "",
                  control: list[str] | tuple[str, ...] = (), smp: int | None = None,
                  disk_snapshot: bool = True, disk: list[str] | None = None,
                  cpu_flags: str = "") -> list[str]:
    """The full argv for one boot of `esp` with OVMF variables in `vars_fd`.

    `serial` is the serial option list (serial_to_file(...), serial_to_stdio(), ...).
    `control` are options that leave the machine as it is (save_options(...),
    restore_options(...)), placed after the serial options.
    `extra` is QEMU_EXTRA, shlex-split and appended last so it can override.
    `smp` is the number of vCPUs; None takes the Makefile's SMP (MDLAB_SMP), else 1.
    The disk image named by MDLAB_DISK (the Makefile's DISK, build/disk.img unless the user
    gives one), when set, is attached as a modern-only virtio-blk PCI device (disk_options);
    with `disk_snapshot` the machine's writes go to a temporary overlay, never the image.
    `disk`, when given, are the disk options instead (a machine with a disk of its own).
    `cpu_flags` change the CPU model's features (accel_args).
    Raises KvmUnavailable when kvm is set and /dev/kvm is not usable, QemuSetupError
    when `extra` cannot be split (an unbalanced quote) or MDLAB_SMP is not a count of 1 or more."""
    argv = qemu_command_prefix()
    if smp is None:
        text = os.environ.get("MDLAB_SMP", "1") or "1"
        smp = int(text) if text.isdigit() else 0
        if smp < 1:
            raise QemuSetupError(f"SMP={text!r} is not a number of vCPUs (1, 2, ... 16)")
    argv += ["-machine", "q35", *accel_args(kvm, cpu_flags), "-m", "512M", "-smp", str(smp)]
    argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={_qemu_opt_value(OVMF_CODE)}"]
    argv += ["-drive", f"if=pflash,format=raw,file={_qemu_opt_value(vars_fd)}"]
    argv += ["-drive", f"format=raw,file={_qemu_opt_value(esp)}"]
    argv += disk if disk is not None else disk_options(os.environ.get("MDLAB_DISK", ""),
                                                       snapshot=disk_snapshot)
    argv += ["-device", f"isa-debug-exit,iobase={protocol.QEMU_EXIT_PORT:#x},iosize=0x04"]
    if no_reboot:
        argv.append("-no-reboot")
    argv += ["-display", "none", "-nic", "none", "-monitor", "none"]
    argv += serial
    argv += control
    try:
        argv += shlex.split(extra)
    except ValueError as e:
        raise QemuSetupError(f"QEMU_EXTRA {extra!r} cannot be split into options: {e}") from e
    return argv


def disk_options(path: str | os.PathLike, *, snapshot: bool) -> list[str]:
    """The options attaching raw image `path` as virtio-blk-pci with the legacy interface off
    (virtio 1.x only: the kernel's driver speaks the modern interface); none for no path.
    `snapshot` (snapshot=on) opens the image read-only below a temporary overlay, for
    machines that run at the same time as the one that writes (the death tests' saved and
    restored copies): they never write it, and file.locking=off lets them open it while the
    writer holds its lock (QEMU refuses a second opener the "shared write" lock otherwise);
    what they read of it may be mid-update, and no death test reads the disk.  A saved machine's copies attach the same
    path with the same options, so the incoming migration finds the device it left."""
    if not str(path):
        return []
    drive = f"file={_qemu_opt_value(path)},if=none,id=d0,format=raw"
    if snapshot:
        drive += ",snapshot=on,file.locking=off"
    return ["-drive", drive, "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]


def describe_exit(status: int | None) -> str:
    """A short human reading of a QEMU exit status (None = still running / killed by us)."""
    if status is None:
        return "no exit status (killed)"
    if status == EXIT_DONE:
        return f"{EXIT_DONE} (kernel finished normally)"
    if status == EXIT_BUGCHECK:
        return f"{EXIT_BUGCHECK} (bug check)"
    if status == EXIT_TRIPLE_FAULT:
        return "0 (triple fault, or QEMU quit)"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"{status} (QEMU killed by {name})"
    return f"{status} (QEMU error or unexpected exit)"


def copy_vars(dest: str | os.PathLike) -> Path:
    """Write a fresh, writable copy of the OVMF variable store to `dest`; return its path."""
    if not OVMF_VARS.is_file() or not OVMF_CODE.is_file():
        raise QemuSetupError(f"OVMF firmware not found ({OVMF_CODE}, {OVMF_VARS}): "
                             "install Debian's package ovmf (scripts/deps.sh does)")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OVMF_VARS, dest)
    return dest


def clone_esp(esp: str | os.PathLike, dest: str | os.PathLike, cmdline: str | None) -> Path:
    """Copy the ESP image `esp` to `dest` and, if `cmdline` is given, replace the copy's
    kernel command line (::/EFI/mdlab/cmdline.txt, written without a newline as
    scripts/mkesp.sh does).  The original image is never modified.  Returns `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(esp, dest)
    except OSError as e:
        raise QemuSetupError(f"cannot copy ESP image {esp}: {e.strerror}") from e
    if cmdline is not None:
        text = dest.with_name(dest.name + ".cmdline.txt")
        text.write_text(cmdline)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        proc = subprocess.run(["mcopy", "-o", "-i", str(dest), str(text), CMDLINE_PATH_ON_ESP],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        text.unlink()
        if proc.returncode != 0:
            raise QemuSetupError(f"mcopy could not write the command line into {dest}: "
                                 f"{proc.stderr.strip() or proc.stdout.strip()}")
    return dest


@dataclass
class BootFiles:
    """The per-boot writable files: the ESP copy and the OVMF variable store copy."""
    esp: Path
    vars_fd: Path


def prepare_boot_dir(directory: str | os.PathLike, esp: str | os.PathLike,
                     cmdline: str | None) -> BootFiles:
    """Create `directory` holding esp.img (a clone of `esp` with `cmdline`) and vars.fd."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return BootFiles(esp=clone_esp(esp, directory / "esp.img", cmdline),
                     vars_fd=copy_vars(directory / "vars.fd"))


# --------------------------------------------------------------------- save and restore

def save_options(qmp_socket: str | os.PathLike) -> list[str]:
    """Options for a machine that is to be saved: a QMP server on the unix socket
    `qmp_socket` (QEMU creates it; nothing waits for a client), and no run state in the
    migration stream.  Without the latter a machine saved after `stop` would restore
    paused, as it was saved; without a recorded state a restored copy starts running."""
    return ["-qmp", f"unix:{_qemu_opt_value(qmp_socket)},server=on,wait=off",
            "-global", "migration.store-global-state=off"]


def migrate_uri(state: str | os.PathLike) -> str:
    """The `migrate` URI that writes the machine's state to the file `state`."""
    return "exec:cat > " + shlex.quote(str(state))


def restore_options(state: str | os.PathLike) -> list[str]:
    """Options that start the machine from the state saved in the file `state` instead
    of booting it.  The rest of the command line must set up the same machine (same
    options, devices and drives, in the same order) as the one that was saved."""
    return ["-incoming", "exec:cat " + shlex.quote(str(state))]


class QmpError(QemuSetupError):
    """A QMP exchange failed: no connection, an error reply, a timeout, or QEMU gone."""


class Qmp:
    """A minimal QMP client on a unix socket: one command at a time, events skipped.

    Every read waits at most `timeout` seconds (QmpError after that)."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.file = sock.makefile("rwb")
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {json.dumps(greeting)[:120]}")

    @classmethod
    def connect(cls, path: str | os.PathLike, timeout: float = 10.0,
                alive=lambda: True) -> "Qmp":
        """Connect to the QMP socket `path`, retrying while it does not accept
        connections yet, for at most `timeout` seconds or until `alive()` is false."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                try:
                    return cls(sock, timeout)
                except BaseException:
                    sock.close()
                    raise
            except (FileNotFoundError, ConnectionRefusedError) as e:
                sock.close()
                if time.monotonic() >= deadline or not alive():
                    raise QmpError(f"cannot connect to QMP socket {path}: {e.strerror}") from e
                time.sleep(0.05)
            except OSError as e:
                sock.close()
                raise QmpError(f"QMP socket {path}: {e}") from e

    def _read(self) -> dict:
        try:
            line = self.file.readline()
        except (TimeoutError, socket.timeout) as e:
            raise QmpError("QEMU did not answer on QMP in time") from e
        except OSError as e:
            raise QmpError(f"QMP connection: {e}") from e
        if not line:
            raise QmpError("QEMU closed the QMP connection")
        try:
            message = json.loads(line)
        except ValueError as e:
            raise QmpError(f"malformed QMP message {line[:120]!r}") from e
        if not isinstance(message, dict):
            raise QmpError(f"malformed QMP message {line[:120]!r}")
        return message

    def execute(self, command: str, arguments: dict | None = None):
        """Run one QMP command; return its `return` value.  QmpError on an error reply
        (with QEMU's description), a timeout or a closed connection."""
        self.next_id += 1
        request = {"execute": command, "id": self.next_id}
        if arguments:
            request["arguments"] = arguments
        try:
            self.file.write(json.dumps(request).encode() + b"\n")
            self.file.flush()
        except OSError as e:
            raise QmpError(f"QMP {command}: cannot send ({e})") from e
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                err = reply["error"]
                desc = err.get("desc", err) if isinstance(err, dict) else err
                raise QmpError(f"QMP {command}: {desc}")
            if "return" in reply:
                return reply["return"]
            raise QmpError(f"QMP {command}: unexpected reply {json.dumps(reply)[:120]}")

    def quit(self) -> None:
        """Ask QEMU to exit; a connection closed before the reply is fine."""
        try:
            self.execute("quit")
        except QmpError:
            pass

    def close(self) -> None:
        for closer in (self.file.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass

    def __enter__(self) -> "Qmp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_machine(qmp: Qmp, state: str | os.PathLike, timeout: float = 60.0,
                 poll: float = 0.05) -> dict:
    """Save the machine behind `qmp` (negotiated already: `qmp_capabilities` sent) to the
    file `state`: `stop`, `migrate` to migrate_uri(state), then `query-migrate` every
    `poll` seconds until the status is `completed`.  Returns the last query-migrate
    answer.  Raises QmpError when the migration fails, is cancelled or has not completed
    after `timeout` seconds.  The machine stays stopped; the caller sends `quit`."""
    deadline = time.monotonic() + timeout
    qmp.execute("stop")
    qmp.execute("migrate", {"uri": migrate_uri(state)})
    while True:
        info = qmp.execute("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return info
        if status in ("failed", "cancelled"):
            why = info.get("error-desc", "") if isinstance(info, dict) else ""
            raise QmpError(f"migration {status}" + (f": {why}" if why else ""))
        if time.monotonic() >= deadline:
            raise QmpError(f"migration not completed after {timeout:g} s "
                           f"(status {status or 'unknown'})")
        time.sleep(poll)


# --------------------------------------------------------------------- process control

class ProcessSet:
    """The QEMU processes a script has running, so that every one of them can be ended
    on a timeout, an interrupt or an error; none outlives the script that started it
    (short of SIGKILL of the script itself).

    Children are started in their own session (process group), so a terminal's Ctrl-C
    reaches only the script, which then ends them through kill_all()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def start(self, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        """Popen(argv) in a new session, registered.  Raises QemuSetupError when the
        program cannot be started, or when kill_all() has already been called."""
        with self._lock:
            if self.stopping.is_set():
                raise QemuSetupError("not starting QEMU: the run is being stopped")
            try:
                proc = subprocess.Popen(argv, start_new_session=True, **popen_kwargs)
            except OSError as e:
                raise QemuSetupError(f"cannot run {argv[0]!r}: {e.strerror} "
                                     "(install qemu-system-x86, or check $QEMU)") from e
            self._procs.add(proc)
            return proc

    def wait(self, proc: subprocess.Popen, timeout: float | None) -> tuple[int | None, bool]:
        """Wait for `proc` up to `timeout` seconds; on timeout end it.  Returns
        (exit status, timed_out); the status is None when we had to end it."""
        try:
            status = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            terminate(proc)
            status, timed_out = None, True
        self.forget(proc)
        return status, timed_out

    def forget(self, proc: subprocess.Popen) -> None:
        """Stop tracking `proc` (it has exited)."""
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        """End every registered process and refuse to start new ones."""
        with self._lock:
            self.stopping.set()
            procs = list(self._procs)
        for proc in procs:
            terminate(proc)
            self.forget(proc)


def terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End `proc` and its process group: SIGTERM, then SIGKILL after `grace` seconds.
    Returns once the process has been reaped."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------- CLI for debug.sh

def _main(argv: list[str]) -> int:
    """`python3 scripts/qemu.py argv --esp E --vars V --serial-file F [--kvm 0|1]
    [--qemu-extra S] [--no-reboot] [--debug]` prints the QEMU argv NUL-separated (for
    bash's `mapfile -d ''`); --vars is (re)created from OVMF_VARS_4M.fd.  --debug adds
    `-s -S -no-shutdown`.  Errors go to stderr with exit status 1."""
    ap = argparse.ArgumentParser(prog="qemu.py", description="print a QEMU command line")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("argv", help="print the QEMU argv, NUL-separated")
    p.add_argument("--esp", required=True)
    p.add_argument("--vars", required=True, help="where to put the private OVMF_VARS copy")
    p.add_argument("--serial-file", required=True)
    p.add_argument("--kvm", choices=["0", "1"], default="0")
    p.add_argument("--qemu-extra", default="")
    p.add_argument("--no-reboot", action="store_true")
    p.add_argument("--debug", action="store_true", help="add -s -S -no-shutdown")
    args = ap.parse_args(argv)
    try:
        copy_vars(args.vars)
        cmd = build_command(args.esp, args.vars, kvm=args.kvm == "1",
                            serial=serial_to_file(args.serial_file),
                            no_reboot=args.no_reboot, extra=args.qemu_extra)
    except QemuSetupError as e:
        print(f"qemu.py: {e}", file=sys.stderr)
        return 1
    if args.debug:
        n = len(qemu_command_prefix())
        cmd[n:n] = ["-s", "-S", "-no-shutdown"]
    sys.stdout.write("".join(a + "\0" for a in cmd))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
