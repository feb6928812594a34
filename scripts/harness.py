"""harness.py — `make test`: boot mdlab's self-tests under QEMU and judge them.

    python3 scripts/harness.py --esp build/esp.img --kernel build/kernel.elf
        [--kvm 0|1] [--qemu-extra "QEMU OPTIONS"] [--tests GLOB] [--jobs N]
        [--cmdline-extra "key=value ..."] [--timeout 240] [--death-timeout 60]
        [--death-mode restore|boot] [--extra lazy,cpu1,blkfault,nosmap|none] [--build-dir build]

In order:
 1. runs the canned-log unit tests of scripts/test_harness.py in-process, one
    `harness: ok NAME` / `harness: not ok NAME` line each;
 2. boots the main run (kernel command line `mode=test tests=GLOB`) with a hard timeout,
    its full serial log in BUILD/test/main.log, streaming the log's lines to stdout with
    escape sequences removed;
 3. judges that log with ktap.judge_test_run (cases, plans, summaries, crash, timeout,
    exit status);
 4. runs every death test the log announces (`# death-test:` lines) whose name matches
    GLOB in a machine of its own, its serial log in BUILD/test/death/NAME.log, judged
    with ktap.judge_death_run.  Death tests start as soon as their announcement appears;
    at most N QEMUs (main run and death server included) run at once.  How:
    --death-mode restore (the default): at the first announcement, one machine boots
      with `mode=death-server` (log BUILD/test/death-server.log); when it prints
      `# death-server: ready` it is saved over QMP (`stop`, `migrate` to a file) and
      ended.  Each death test then starts a copy of that machine (`-incoming`, same
      machine options, its own copies of the ESP and vars files) and types the case
      name on its COM1; the case's log holds only what the copy printed.  A copy takes
      about a second instead of a boot's five or more.  If the machine cannot be
      booted or saved, or a copy fails before its case prints anything, the harness
      says so in one line and boots the (remaining) death tests as with `boot`;
    --death-mode boot: every death test boots on its own with `mode=death case=NAME`;
 4b. beside them, within the same N, boots each EXTRA_MACHINES entry (`--extra`) whose
    suites the glob may select: its own vCPU count and command line items (`lazy`: -smp 2
    `tlb=lazy`; `cpu1`: -smp 1; `blkfault`: -smp 2 on a disk of its own, EXTRA_DISKS, whose
    `# disk-check:` lines are judged against its image), log BUILD/test/NAME.log, judged as
    the main run, each case counted as NAME:suite.case.  A death case of a suite of a machine
    with a disk of its own (`blkfault`: pager_inpage) boots as that machine (its vCPUs,
    command line and a fresh disk of the case's own: death_machine), never restored from
    the main machine's saved copy;
 5. prints per-suite tallies, the failures with reasons and log paths, and as its last
    line `N passed, N failed` (`, N skipped` when something was skipped), counting the
    unit tests, the kernel cases and the death tests.  A main run that crashed, timed
    out or broke the protocol counts as one more failure.

Exit status: 0 only when nothing failed; 1 otherwise; 2 for bad arguments; 130 when
interrupted.  Every QEMU started is ended before the harness exits.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cheader  # noqa: E402
import check_layout  # noqa: E402
import diskcheck  # noqa: E402
import ktap  # noqa: E402
import protocol  # noqa: E402
import qemu  # noqa: E402
from ktap import Status  # noqa: E402

TAG = "harness:"
KERNEL_SPACE = cheader.read_repo_header("mm/layout.h")["KVA_DIRECT_MAP_BASE"]  # the kernel half
LOG_TAIL_LINES = 8
SERVER_READY = protocol.DEATH_SERVER_READY
SAVE_TIMEOUT = 60.0      # seconds for the QMP exchange that saves the death server
QUIT_TIMEOUT = 10.0      # seconds for the saved death server to exit after `quit`
CASE_NAME_MAX = protocol.CASE_NAME_MAX  # the kernel's buffer for a case name, less its NUL


_print_lock = threading.Lock()


def emit(line: str) -> None:
    """Print one whole line at once (stdout may be a pipe into a CI log); lines printed
    by different threads (the main log's stream, the death server's) never mix."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def say(*parts: object) -> None:
    """Print a harness line at once."""
    emit(" ".join(str(p) for p in (TAG, *parts)))


@dataclass
class Outcome:
    """One counted item of the final tally: a unit test, a kernel case, a death test, or
    the main run itself when it went wrong."""
    kind: str              # "unit", "case", "death" or "run"
    name: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    log: Path | None = None
    details: list[str] = field(default_factory=list)


# --------------------------------------------------------------------- unit tests

class _LineResult(unittest.TestResult):
    """A unittest result that keeps Outcomes and prints a harness line for each failure, and
    for each pass or skip too when `verbose` is set (make test UNIT_LINES=1: main sets it)."""

    verbose = False

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []

    @staticmethod
    def _name(test: unittest.TestCase) -> str:
        return test.id().split(".", 1)[-1]

    def addSuccess(self, test):
        super().addSuccess(test)
        if self.verbose:
            say("ok", self._name(test))
        self.outcomes.append(Outcome("unit", self._name(test), Status.PASS))

    def _fail(self, test, err, kind):
        text = self._exc_info_to_string(err, test).rstrip().splitlines()
        say("not ok", self._name(test), f"({kind})")
        for line in text:
            print("    " + line)
        self.outcomes.append(Outcome("unit", self._name(test), Status.FAIL, [kind], None,
                                     text[-3:]))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err, "failure")

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err, "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.verbose:
            say("ok", self._name(test), "# SKIP", reason)
        self.outcomes.append(Outcome("unit", self._name(test), Status.SKIP, [reason]))


def run_unit_tests() -> list[Outcome]:
    """Run the host-side unit tests in this process (scripts/test_harness.py's,
    scripts/test_seh_rewrite.py's, then scripts/test_bench_linux.py's); one Outcome per test
    (or one failed Outcome for a module that cannot be loaded)."""
    outcomes = []
    for module, what in (("test_harness", "the log parser"), ("test_seh_rewrite", "the SEH rewriter"),
                         ("test_bench_linux", "make bench-linux's parser")):
        say(f"unit tests of {what} (scripts/{module}.py)")
        try:
            suite = unittest.defaultTestLoader.loadTestsFromName(module)
        except Exception:  # an import or syntax error in a test module is a failure, not a crash
            lines = traceback.format_exc().rstrip().splitlines()
            say(f"not ok {module} (cannot load)")
            print("\n".join("    " + l for l in lines))
            outcomes.append(Outcome("unit", module, Status.FAIL, ["cannot load"], None, lines[-1:]))
            continue
        result = _LineResult()
        suite.run(result)
        outcomes += result.outcomes
    return outcomes


def run_layout_checks(repo: Path) -> list[Outcome]:
    """scripts/check_layout.py's checks, one Outcome each."""
    say("layout checks (scripts/check_layout.py)")
    outcomes = []
    for c in check_layout.run_checks(repo):
        say("ok" if c.ok else "not ok", "layout", c.name)
        for p in c.problems:
            print("    " + p)
        outcomes.append(Outcome("layout", c.name, Status.PASS if c.ok else Status.FAIL,
                                c.problems[:20]))
    return outcomes


# --------------------------------------------------------------------- results for machines

def result_groups(outcomes: list[Outcome]) -> list[tuple[str, list[tuple[str, Outcome]]]]:
    """The outcomes as suites of cases, in order of first appearance: a kernel case
    "suite.case" in its suite; death tests in "death", the harness's unit tests in
    "harness", the layout checks in "layout", a run that went wrong in "run"."""
    groups: dict[str, list[tuple[str, Outcome]]] = {}
    for o in outcomes:
        if o.kind == "case" and "." in o.name:
            suite, case = o.name.split(".", 1)
        else:
            suite = {"death": "death", "unit": "harness", "layout": "layout"}.get(o.kind, "run")
            case = o.name
        groups.setdefault(suite, []).append((case, o))
    return list(groups.items())


def ktap_text(outcomes: list[Outcome]) -> str:
    """Every counted outcome as one KTAP version 1 document, a suite each (the kernel's
    format: nested subtests with a `# suite: pass:P fail:F skip:S total:T` line), so a KTAP
    parser counts exactly the closing line's total."""
    groups = result_groups(outcomes)
    out = [protocol.KTAP_HEADER, f"1..{len(groups)}"]
    totals = {s: 0 for s in Status}
    for i, (suite, cases) in enumerate(groups, 1):
        out += [f"    {protocol.KTAP_HEADER}", f"    {protocol.KTAP_SUBTEST} {suite}",
                f"    1..{len(cases)}"]
        counts = {s: 0 for s in Status}
        for j, (case, o) in enumerate(cases, 1):
            counts[o.status] += 1
            for reason in (o.reasons if o.status is Status.FAIL else []):
                out.append(f"    # {reason}")
            if o.status is Status.SKIP:
                why = "; ".join(o.reasons)
                out.append(f"    ok {j} {case} # {protocol.KTAP_SKIP} {why}".rstrip())
            else:
                out.append(f"    {'ok' if o.status is Status.PASS else 'not ok'} {j} {case}")
        for st in Status:
            totals[st] += counts[st]
        out.append(f"# {suite}: pass:{counts[Status.PASS]} fail:{counts[Status.FAIL]} "
                   f"skip:{counts[Status.SKIP]} total:{len(cases)}")
        out.append(f"{'not ok' if counts[Status.FAIL] else 'ok'} {i} {suite}")
    out.append(f"# Totals: pass:{totals[Status.PASS]} fail:{totals[Status.FAIL]} "
               f"skip:{totals[Status.SKIP]} total:{sum(totals.values())}")
    return "\n".join(out) + "\n"


def junit_text(outcomes: list[Outcome]) -> str:
    """The same outcomes as JUnit XML: a <testsuite> per group, a <testcase> per outcome,
    <failure> with the reasons and details, <skipped> with the reason."""
    from xml.sax.saxutils import escape, quoteattr
    groups = result_groups(outcomes)
    fails = sum(o.status is Status.FAIL for o in outcomes)
    skips = sum(o.status is Status.SKIP for o in outcomes)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="mdlab" tests="{len(outcomes)}" failures="{fails}" '
           f'skipped="{skips}">']
    for suite, cases in groups:
        f = sum(o.status is Status.FAIL for _, o in cases)
        k = sum(o.status is Status.SKIP for _, o in cases)
        out.append(f'  <testsuite name={quoteattr(suite)} tests="{len(cases)}" failures="{f}" '
                   f'skipped="{k}">')
        for case, o in cases:
            head = f'    <testcase classname={quoteattr(suite)} name={quoteattr(case)}'
            if o.status is Status.PASS:
                out.append(head + "/>")
                continue
            out.append(head + ">")
            text = "\n".join(o.reasons + o.details + ([f"log: {o.log}"] if o.log else []))
            if o.status is Status.SKIP:
                out.append(f"      <skipped message={quoteattr('; '.join(o.reasons))}/>")
            else:
                out.append(f"      <failure message={quoteattr('; '.join(o.reasons))}>"
                           f"{escape(text)}</failure>")
            out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------- booting

@dataclass
class BootResult:
    """How one boot ended.  `status` is QEMU's exit status, None when it was killed
    (timeout) or never started; `error` is set when it could not be started."""
    status: int | None
    timed_out: bool
    seconds: float
    text: str
    qemu_stderr: str = ""
    error: str | None = None


@dataclass
class SavedMachine:
    """A death server saved by Booter.save_server: its migration stream and the ESP and
    vars files it ran with (each restored copy gets copies of these)."""
    state: Path
    esp: Path
    vars_fd: Path
    log: Path
    seconds: float
    size: int


class SaveError(Exception):
    """The death server could not be booted or saved; the message is for the user."""


def death_case_input(name: str) -> bytes:
    """What is typed on a restored death server's COM1: the case name on a line of its
    own, after a few empty lines.  Those are for the copy's UART: a byte that arrives
    before the migration stream has loaded the UART's state is lost (the default UART,
    without FIFO, takes one byte, which the load then overwrites; one more can be lost
    while the FIFO is switched on).  The kernel skips empty lines before a name."""
    if not name or len(name.encode()) > CASE_NAME_MAX or any(
            c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"death case name {name!r} cannot be typed on the serial port")
    return b"\n\n\n\n" + name.encode() + b"\n"


def restore_command(saved: SavedMachine, esp: Path, vars_fd: Path, *, kvm: bool,
                    extra: str) -> list[str]:
    """The QEMU argv that starts a copy of `saved` with the ESP and vars copies `esp` and
    `vars_fd`: the machine options of the saved boot, COM1 on stdin/stdout, and
    `-incoming` from the saved state."""
    return qemu.build_command(esp, vars_fd, kvm=kvm, serial=qemu.serial_to_stdio(),
                              control=qemu.restore_options(saved.state), extra=extra)


def restore_failure(res: BootResult) -> str | None:
    """Why a restored death test failed before its case ran, or None when the case ran
    (and is to be judged).  Every death case prints `# death: running ...` first, so a
    copy that exits or hangs with nothing on its serial port failed as a copy (state
    file unreadable or incompatible, QEMU refusing an option), not as a test."""
    if res.error:
        return res.error
    if res.text.strip() or res.status == qemu.EXIT_BUGCHECK:
        return None
    said = [l for l in res.qemu_stderr.splitlines() if "terminating on signal" not in l]
    why = ("printed nothing in {:.0f} s".format(res.seconds) if res.timed_out else
           f"exited with status {qemu.describe_exit(res.status)} before printing anything")
    return f"the restored machine {why}" + (f" (QEMU said: {said[-1]})" if said else "")


def _keep_stderr(path: Path) -> str:
    """QEMU's stderr file's text; the file is removed when it holds nothing but the
    message about the signal we ended QEMU with."""
    stderr = _read(path).strip()
    if not [l for l in stderr.splitlines() if "terminating on signal" not in l]:
        path.unlink(missing_ok=True)
    return stderr


# The blkfault machine's failing sectors (512 bytes each): writes from BLKFAULT_WRITE, reads
# from BLKFAULT_READ, BLKFAULT_COUNT sectors each (one page); the kernel is told them by
# `blkfault=W,R,N` (tests/virtio_fault_test.c).
BLKFAULT_WRITE, BLKFAULT_READ, BLKFAULT_COUNT = 4096, 8192, 8

# Machines booted beside the main run, within the same --jobs: name -> (vCPUs, kernel
# command line items).  Their cases count as NAME:suite.case in the tally; their death
# cases are not run (the main run's are).  "lazy": the lazy TLB policy (mm/RULES.md, "TLB
# shootdown") on 2 CPUs, with suites that unmap and stress under it; "cpu1": the MDL, pool,
# system-PTE and user-mapping suites on one CPU (their SMP cases skip there); "blkfault":
# the virtio_fault and pager_inpage suites on a disk that fails chosen sectors (blkfault_disk),
# its own image, so the pager may always use it (pagefile=1); "nosmap": a CPU without SMAP
# (EXTRA_CPU_FLAGS), whose STAC and CLAC sites the kernel patches to NOPs at boot
# (kernel/smap_sites.h), running system calls, ring 3 entries and user copies.
EXTRA_MACHINES: dict[str, tuple[int, str]] = {
    "lazy": (2, "tlb=lazy suites=smp_lazy,smp_idle,mdl_map,mdl_release,pool,smp_stress,smp_exec"),
    "cpu1": (1, "suites=mdl_alloc,mdl_map,mdl_partial,mdl_probe,mdl_protect,mdl_release,pool,"
                "syspte,uvm,smp"),
    "blkfault": (2, f"blkfault={BLKFAULT_WRITE},{BLKFAULT_READ},{BLKFAULT_COUNT} pagefile=1 "
                    "suites=virtio_fault,pager_inpage"),
    "nosmap": (2, "suites=smap_sites,ring3_syscall,ring3_entry,mdl_user"),
}

# The CPU model's feature changes of an extra machine (qemu.accel_args); none when absent.
EXTRA_CPU_FLAGS = {"nosmap": ",-smap"}


def blkfault_disk(test_dir: Path, where: Path | None = None) -> tuple[list[str], Path]:
    """The blkfault machine's disk: a fresh sparse image of its own (BUILD/blkfault.img,
    16 MiB, `truncate`; WHERE/blkfault.img when `where` is given: a death case's own) under
    QEMU's blkdebug driver, whose rules (written to TEST_DIR/blkdebug.cfg, or
    WHERE/blkdebug.cfg) fail every write touching sectors BLKFAULT_WRITE.. and every read
    touching BLKFAULT_READ.. (BLKFAULT_COUNT each) with EIO: an `inject-error` rule per
    sector, on the raw format driver's write_aio / read_aio events (a rule's `sector` fails
    a request whose range holds that sector; no `once`, so every such request fails).
    werror=report,rerror=report: the device reports the error to the guest (virtio-blk's
    VIRTIO_BLK_S_IOERR) instead of stopping the VM, QEMU's choice for some errors.
    Returns the options and the image (its `# disk-check:` lines are judged against it)."""
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
    image = (where or test_dir.parent) / "blkfault.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    cfg = (where or test_dir) / "blkdebug.cfg"
    rules = []
    for event, first in (("write_aio", BLKFAULT_WRITE), ("read_aio", BLKFAULT_READ)):
        for sector in range(first, first + BLKFAULT_COUNT):
            rules.append(f'[inject-error]\nevent = "{event}"\nerrno = "5"\n'
                         f'sector = "{sector}"\n')
    cfg.write_text("\n".join(rules))
    drive = (f"file=blkdebug:{qemu._qemu_opt_value(cfg)}:{qemu._qemu_opt_value(image)},"
             "if=none,id=d0,format=raw,werror=report,rerror=report")
    return ["-drive", drive, "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"], image


# The extra machines with a disk of their own: name -> the writer of its options and image.
EXTRA_DISKS = {"blkfault": blkfault_disk}


def machine_suites(items: str) -> list[str]:
    """The suites a machine whose command line is `items` runs (its `suites=` item)."""
    return next((i[len("suites="):].split(",") for i in items.split()
                 if i.startswith("suites=")), [])


def extra_selected(items: str, glob: str) -> bool:
    """Whether a machine whose command line is `items` has a suite that `glob` (over
    suite.case) may select."""
    prefix = glob.split(".", 1)[0]
    return any(fnmatch.fnmatchcase(name, prefix) for name in machine_suites(items))


def death_machine(name: str) -> str | None:
    """The extra machine with a disk of its own (EXTRA_DISKS) whose suites hold the death
    case `name` (suite.case): such a case needs that machine's disk and command line (the
    blkfault machine's failing sectors), so it boots as that machine does; None for a case
    of the main machine's."""
    suite = name.split(".", 1)[0]
    return next((m for m in EXTRA_DISKS if suite in machine_suites(EXTRA_MACHINES[m][1])), None)


def death_machine_items(machine: str) -> str:
    """The command line items of `machine` for one of its death cases: all but `suites=`
    (a death boot runs the one case it is named)."""
    return " ".join(i for i in EXTRA_MACHINES[machine][1].split() if not i.startswith("suites="))


class Booter:
    """Boots the ESP with a given kernel command line, at most `jobs` at a time; saves a
    death server and starts copies of it under the same limit."""

    def __init__(self, args: argparse.Namespace, procs: qemu.ProcessSet) -> None:
        self.esp = args.esp
        self.kvm = args.kvm == "1"
        self.qemu_extra = args.qemu_extra
        self.procs = procs
        self.slots = threading.BoundedSemaphore(args.jobs)

    def _acquire_slot(self) -> bool:
        while not self.procs.stopping.is_set():
            if self.slots.acquire(timeout=0.2):
                return True
        return False

    def boot(self, cmdline: str, log: Path, boot_dir: Path, timeout: float,
             on_line=None, smp: int | None = None,
             disk_snapshot: bool = True, disk: list[str] | None = None,
             cpu_flags: str = "") -> BootResult:
        """Boot with `cmdline` (written into a private ESP copy in `boot_dir`, removed
        afterwards), serial output to `log`, for at most `timeout` seconds.  When given,
        `on_line(raw_line)` is called from this thread for each serial line as it
        arrives.  Never raises for boot problems: they are in the result's `error`."""
        if not self._acquire_slot():
            return BootResult(None, False, 0.0, "", error="stopped before it started")
        start = time.monotonic()
        stderr_path = log.with_name(log.name + ".qemu-stderr")
        try:
            files = qemu.prepare_boot_dir(boot_dir, self.esp, cmdline)
            log.parent.mkdir(parents=True, exist_ok=True)
            argv = qemu.build_command(files.esp, files.vars_fd, kvm=self.kvm,
                                      serial=qemu.serial_to_file(log),
                                      extra=self.qemu_extra, smp=smp,
                                      disk_snapshot=disk_snapshot, disk=disk,
                                      cpu_flags=cpu_flags)
            with open(stderr_path, "wb") as err:
                proc = self.procs.start(argv, stdin=subprocess.DEVNULL, stdout=err,
                                        stderr=subprocess.STDOUT)
            status, timed_out = self._wait(proc, log, start + timeout, on_line)
        except (qemu.QemuSetupError, OSError) as e:
            return BootResult(None, False, time.monotonic() - start, _read(log), error=str(e))
        finally:
            self.slots.release()
            shutil.rmtree(boot_dir, ignore_errors=True)
        return BootResult(status, timed_out, time.monotonic() - start, _read(log),
                          _keep_stderr(stderr_path))

    def save_server(self, cmdline: str, log: Path, server_dir: Path,
                    timeout: float) -> SavedMachine:
        """Boot with `cmdline` (a `mode=death-server` one), serial output to `log`, wait
        at most `timeout` seconds for `# death-server: ready`, save the machine into
        `server_dir` and end that QEMU.  Raises SaveError (a message for the user) when
        any of it fails; the QEMU is ended in every case."""
        if not self._acquire_slot():
            raise SaveError("stopped before it started")
        start = time.monotonic()
        stderr_path = log.with_name(log.name + ".qemu-stderr")
        sock_dir = Path(tempfile.mkdtemp(prefix="mdlab-qmp-"))  # short: AF_UNIX limit
        proc = None
        try:
            files = qemu.prepare_boot_dir(server_dir, self.esp, cmdline)
            state = server_dir / "machine.state"
            log.parent.mkdir(parents=True, exist_ok=True)
            argv = qemu.build_command(files.esp, files.vars_fd, kvm=self.kvm,
                                      serial=qemu.serial_to_file(log),
                                      control=qemu.save_options(sock_dir / "qmp.sock"),
                                      extra=self.qemu_extra)
            with open(stderr_path, "wb") as err:
                proc = self.procs.start(argv, stdin=subprocess.DEVNULL, stdout=err,
                                        stderr=subprocess.STDOUT)
            self._wait_for_ready(proc, log, start + timeout, timeout)
            alive = lambda: proc.poll() is None  # noqa: E731
            with qemu.Qmp.connect(sock_dir / "qmp.sock", alive=alive) as qmp:
                qmp.execute("qmp_capabilities")
                qemu.save_machine(qmp, state, SAVE_TIMEOUT)
                qmp.quit()
            status, timed_out = self.procs.wait(proc, QUIT_TIMEOUT)
            if timed_out:
                raise SaveError(f"the saved machine did not exit within {QUIT_TIMEOUT:g} s "
                                "of QMP quit")
            size = state.stat().st_size if state.is_file() else 0
            if not size:
                raise SaveError(f"the migration left no state in {state}")
            return SavedMachine(state, files.esp, files.vars_fd, log,
                                time.monotonic() - start, size)
        except (SaveError, qemu.QemuSetupError, OSError) as e:
            if proc is not None and proc.poll() is None:
                qemu.terminate(proc)  # so that its last words are in the file
            said = [l for l in _read(stderr_path).strip().splitlines()
                    if "terminating on signal" not in l]
            raise SaveError(str(e) + (f" (QEMU said: {said[-1]})" if said else "")) from e
        finally:
            if proc is not None:
                qemu.terminate(proc)
                self.procs.forget(proc)
            self.slots.release()
            shutil.rmtree(sock_dir, ignore_errors=True)
            _keep_stderr(stderr_path)

    def _wait_for_ready(self, proc: subprocess.Popen, log: Path, deadline: float,
                        timeout: float) -> None:
        """Wait until the serial log `log` holds SERVER_READY; SaveError if QEMU exits,
        `deadline` passes or the run is being stopped first."""
        seen = threading.Event()

        def on_line(raw: str) -> None:
            if ktap.clean_line(raw).strip() == SERVER_READY:
                seen.set()
        tail = _LogTail(log, on_line)
        while True:
            tail.poll()
            if seen.is_set():
                return
            status = proc.poll()
            if status is not None:
                tail.poll()
                if seen.is_set():
                    return
                raise SaveError(f"QEMU exited with status {qemu.describe_exit(status)} "
                                f"before '{SERVER_READY}'")
            if self.procs.stopping.is_set():
                raise SaveError("the run is being stopped")
            if time.monotonic() >= deadline:
                raise SaveError(f"no '{SERVER_READY}' within {timeout:g} s")
            time.sleep(0.1)

    def restore(self, saved: SavedMachine, name: str, log: Path, case_dir: Path,
                timeout: float) -> BootResult:
        """Start a copy of the saved machine (own copies of its ESP and vars files, in
        `case_dir`, removed afterwards), type death_case_input(name) on its COM1, its
        serial output to `log`, for at most `timeout` seconds.  Never raises for QEMU
        problems: they are in the result's `error`."""
        if not self._acquire_slot():
            return BootResult(None, False, 0.0, "", error="stopped before it started")
        start = time.monotonic()
        stderr_path = log.with_name(log.name + ".qemu-stderr")
        try:
            case_dir.mkdir(parents=True, exist_ok=True)
            esp, vars_fd = case_dir / "esp.img", case_dir / "vars.fd"
            shutil.copyfile(saved.esp, esp)
            shutil.copyfile(saved.vars_fd, vars_fd)
            argv = restore_command(saved, esp, vars_fd, kvm=self.kvm, extra=self.qemu_extra)
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as out, open(stderr_path, "wb") as err:
                proc = self.procs.start(argv, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                        bufsize=0)
            try:
                proc.stdin.write(death_case_input(name))
            except BrokenPipeError:
                pass  # QEMU is gone already; its exit status tells why
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            status, timed_out = self.procs.wait(proc, max(0.0, start + timeout
                                                          - time.monotonic()))
        except (qemu.QemuSetupError, OSError) as e:
            return BootResult(None, False, time.monotonic() - start, _read(log), error=str(e))
        finally:
            self.slots.release()
            shutil.rmtree(case_dir, ignore_errors=True)
        return BootResult(status, timed_out, time.monotonic() - start, _read(log),
                          _keep_stderr(stderr_path))

    def _wait(self, proc: subprocess.Popen, log: Path, deadline: float,
              on_line) -> tuple[int | None, bool]:
        """Wait for `proc` until `deadline`, feeding `on_line` from the growing log."""
        if on_line is None:
            return self.procs.wait(proc, max(0.0, deadline - time.monotonic()))
        tail = _LogTail(log, on_line)
        while proc.poll() is None and time.monotonic() < deadline:
            tail.poll()
            time.sleep(0.1)
        status, timed_out = self.procs.wait(proc, max(0.0, deadline - time.monotonic()))
        tail.poll()
        tail.finish()
        return status, timed_out


class _LogTail:
    """Follows a file being written, handing each complete line to a callback."""

    def __init__(self, path: Path, on_line) -> None:
        self.path, self.on_line = path, on_line
        self.offset, self.partial = 0, b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.on_line(line.decode("utf-8", "replace"))

    def finish(self) -> None:
        if self.partial:
            self.on_line(self.partial.decode("utf-8", "replace"))
            self.partial = b""


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


# --------------------------------------------------------------------- symbols

def symbolize(kernel: Path, addr: int) -> str:
    """`function (file:line)` for a kernel address, via addr2line, or ''."""
    if addr < KERNEL_SPACE or not kernel.is_file() or not shutil.which("addr2line"):
        return ""
    try:
        out = subprocess.run(["addr2line", "-f", "-e", str(kernel), f"0x{addr:x}"],
                             capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if len(out) < 2 or out[0].startswith("??"):
        return ""
    where = out[1].strip()
    return out[0].strip() + ("" if where.startswith("??") else f" ({where})")


def stop_details(kernel: Path, stop: ktap.StopLine | None) -> list[str]:
    """Lines naming the functions behind a STOP screen's kernel-address parameters."""
    if stop is None or stop.malformed:
        return []
    lines = []
    for i, p in enumerate(stop.params, 1):
        sym = symbolize(kernel, p)
        if sym:
            lines.append(f"P{i} 0x{p:X} = {sym}")
    return lines


def qemu_said(res: BootResult) -> list[str]:
    """QEMU's own last messages (not the one about the signal we ended it with)."""
    lines = [l for l in res.qemu_stderr.splitlines() if "terminating on signal" not in l]
    return ["QEMU said: " + l for l in lines[-3:]]


def log_tail(text: str, count: int = LOG_TAIL_LINES) -> list[str]:
    lines = [l for l in ktap.split_lines(text) if l.strip()]
    return ["| " + l for l in lines[-count:]]


# --------------------------------------------------------------------- the runs

class Harness:
    """One `make test`: the state shared by the main run and the death boots."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.test_dir = Path(args.build_dir) / "test"
        self.kernel = Path(args.kernel)
        self.procs = qemu.ProcessSet()
        self.booter = Booter(args, self.procs)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs,
                                                          thread_name_prefix="death")
        self.death_futures: dict[str, concurrent.futures.Future] = {}
        self.outcomes: list[Outcome] = []
        self.verdict: ktap.TestRunVerdict | None = None
        # Restore mode: the death server is saved once, in its own thread, at the first
        # death test; `restore_broken` says why copies are no longer used, once one failed.
        self.server_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="death-server")
        self.server_lock = threading.Lock()
        self.server_future: concurrent.futures.Future | None = None
        self.restore_broken: str | None = None
        self.death_start: float | None = None
        self.death_end: float | None = None
        self.extra_futures: dict[str, concurrent.futures.Future] = {}

    def cmdline(self, base: str) -> str:
        extra = self.args.cmdline_extra.strip()
        return f"{base} {extra}" if extra else base

    # -- death tests
    def submit_death(self, spec: ktap.DeathSpec) -> None:
        """Start the death boot for `spec` (once) if its name matches the glob."""
        if spec.name in self.death_futures or not fnmatch.fnmatchcase(spec.name,
                                                                       self.args.tests):
            return
        if self.death_start is None:
            self.death_start = time.monotonic()
        self.death_futures[spec.name] = self.pool.submit(self.run_death, spec)

    def saved_server(self) -> SavedMachine | None:
        """The saved death server, saving it first if nobody has (the first caller
        starts it, every caller waits for it); None when it could not be saved."""
        with self.server_lock:
            if self.server_future is None:
                self.server_future = self.server_pool.submit(self.save_server)
        return self.server_future.result()

    def save_server(self) -> SavedMachine | None:
        """Boot and save the death server; one line saying how it went."""
        log = self.test_dir / "death-server.log"
        cmdline = self.cmdline(f"mode={protocol.MODE_DEATH_SERVER}")
        say(f"death tests: booting '{cmdline}' once, to save it and restore a copy per "
            f"death test (serial log {log})")
        try:
            saved = self.booter.save_server(cmdline, log,
                                            self.test_dir / "boot" / "death-server",
                                            self.args.death_timeout)
        except SaveError as e:
            reason = str(e)
        except Exception as e:  # a harness bug must not cost the death tests: boot them
            reason = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        else:
            say(f"death tests: machine saved after {saved.seconds:.1f} s "
                f"({saved.size / 2**20:.0f} MiB state)")
            return saved
        if not self.procs.stopping.is_set():
            say(f"death tests: cannot save a booted machine ({reason}); booting each "
                f"death test on its own instead (--death-mode boot)")
        return None

    def run_death(self, spec: ktap.DeathSpec) -> Outcome:
        """Run and judge one death test (runs in a pool thread): in a copy of the saved
        death server, or in a boot of its own when restoring is off or does not work."""
        log = self.test_dir / "death" / f"{_safe_name(spec.name)}.log"
        case_dir = self.test_dir / "boot" / f"death-{_safe_name(spec.name)}"
        machine = death_machine(spec.name)
        if machine is not None:
            return self.run_death_on(machine, spec, log, case_dir)
        note = ""
        if self.args.death_mode == "restore" and self.restore_broken is None:
            saved = self.saved_server()
            if saved is not None and self.restore_broken is None:
                res = self.booter.restore(saved, spec.name, log, case_dir,
                                          self.args.death_timeout)
                why = restore_failure(res)
                if why is None:
                    return self.judge_death(spec, res, log, "restored", saved)
                if self.procs.stopping.is_set():
                    return Outcome("death", spec.name, Status.FAIL, [why], log)
                with self.server_lock:
                    first = self.restore_broken is None
                    if first:
                        self.restore_broken = why
                if first:
                    say(f"death tests: restoring {spec.name} failed ({why}); booting this "
                        "and every death test not yet started on its own instead")
                failed_log = log.with_name(log.stem + ".restore-failed.log")
                if log.exists():
                    log.replace(failed_log)
                note = " after a failed restore"
        cmdline = self.cmdline(f"mode={protocol.MODE_DEATH} case={spec.name}")
        res = self.booter.boot(cmdline, log, case_dir, self.args.death_timeout)
        return self.judge_death(spec, res, log, "booted" + note)

    def run_death_on(self, machine: str, spec: ktap.DeathSpec, log: Path,
                     case_dir: Path) -> Outcome:
        """Boot one death case of an extra machine's suite as that machine: its vCPUs, its
        command line items (death_machine_items) and a fresh disk of the case's own (its
        image and rules beside the boot files, removed with them), never a copy of the
        saved main machine, whose disk is the main one."""
        smp = EXTRA_MACHINES[machine][0]
        disk_dir = self.test_dir / "boot" / f"death-{_safe_name(spec.name)}-disk"
        try:
            disk, _ = EXTRA_DISKS[machine](self.test_dir, disk_dir)
            cmdline = self.cmdline(f"mode={protocol.MODE_DEATH} case={spec.name} "
                                   f"{death_machine_items(machine)}")
            res = self.booter.boot(cmdline, log, case_dir, self.args.death_timeout, smp=smp,
                                   disk=disk)
        finally:
            shutil.rmtree(disk_dir, ignore_errors=True)
        return self.judge_death(spec, res, log, f"booted on the {machine} machine")

    def judge_death(self, spec: ktap.DeathSpec, res: BootResult, log: Path, how: str,
                    saved: SavedMachine | None = None) -> Outcome:
        """The Outcome of one death test run `how` ("restored" or "booted ...")."""
        self.death_end = max(self.death_end or 0.0, time.monotonic())
        if res.error:
            return Outcome("death", spec.name, Status.FAIL, [res.error], log)
        verdict = ktap.judge_death_run(res.text, spec, exit_status=res.status,
                                       timed_out=res.timed_out,
                                       timeout=self.args.death_timeout)
        if verdict.passed:
            return Outcome("death", spec.name, Status.PASS,
                           [f"bug check 0x{verdict.stop.code:08X} in {res.seconds:.1f} s "
                            f"({how})"], log)
        details = stop_details(self.kernel, verdict.stop) + qemu_said(res) + log_tail(res.text)
        if saved is not None:
            details.append(f"(ran in a copy of the death server saved at '{SERVER_READY}', "
                           f"boot log {saved.log}; harness.py --death-mode boot boots each "
                           "case instead)")
        return Outcome("death", spec.name, Status.FAIL,
                       verdict.reasons + [f"(expected a bug check with {spec.describe()}, "
                                          f"{how})"],
                       log, details)

    # -- the main run
    def submit_extras(self) -> None:
        """Start the EXTRA_MACHINES the glob selects (once, after the main run has its
        QEMU, so that they do not hold it up)."""
        if self.extra_futures:
            return
        for name, (smp, items) in EXTRA_MACHINES.items():
            if extra_selected(items, self.args.tests) and name in self.args.extra.split(","):
                self.extra_futures[name] = self.pool.submit(self.run_extra, name, smp, items)

    def run_extra(self, name: str, smp: int, items: str) -> list[Outcome]:
        """Boot one extra machine and judge its log as the main run's."""
        log = self.test_dir / f"{name}.log"
        cmdline = self.cmdline(f"mode={protocol.MODE_TEST} tests={self.args.tests} {items}")
        disk, image = EXTRA_DISKS[name](self.test_dir) if name in EXTRA_DISKS else (None, None)
        res = self.booter.boot(cmdline, log, self.test_dir / "boot" / name, self.args.timeout,
                               smp=smp, disk=disk, cpu_flags=EXTRA_CPU_FLAGS.get(name, ""))
        if res.error:
            return [Outcome("run", f"{name} machine", Status.FAIL, [res.error], log)]
        verdict = ktap.judge_test_run(res.text, exit_status=res.status,
                                      timed_out=res.timed_out, timeout=self.args.timeout)
        out = [Outcome("case", f"{name}:{c.name}", c.status, [c.reason] if c.reason else [],
                       log, c.diagnostics) for c in verdict.cases]
        if verdict.problems:
            out.append(Outcome("run", f"{name} machine", Status.FAIL, verdict.problems, log,
                               qemu_said(res) + log_tail(res.text)))
        for sector, count, seed in diskcheck.directives(res.text) if image else []:
            why = diskcheck.check(image, sector, count, seed)
            out.append(Outcome("disk", f"{name}:disk-check {sector}+{count} seed {seed:#x}",
                               Status.FAIL if why else Status.PASS, [why] if why else [], log))
        say(f"{name} machine (-smp {smp}, '{items}'): {len(verdict.cases)} cases in "
            f"{res.seconds:.1f} s, {sum(o.status is Status.FAIL for o in out)} failed "
            f"(serial log {log})")
        return out

    def collect_extras(self) -> None:
        for name, future in self.extra_futures.items():
            self.outcomes += future.result()

    def stream_line(self, raw: str) -> None:
        """Show one serial line of the main run and start any death test it announces."""
        self.submit_extras()
        line = ktap.clean_line(raw)
        if line or not raw.strip("\r"):
            emit(line)
        spec = ktap.scan_death_specs(raw)
        if spec is not None:
            self.submit_death(spec)

    def run_main(self) -> None:
        log = self.test_dir / "main.log"
        cmdline = self.cmdline(f"mode={protocol.MODE_TEST} tests={self.args.tests}")
        say(f"booting '{cmdline}' (timeout {self.args.timeout:g} s, serial log {log})")
        # The main run alone writes the disk image (MDLAB_DISK); every death machine has
        # snapshot=on (qemu.disk_options).
        res = self.booter.boot(cmdline, log, self.test_dir / "boot" / "main",
                               self.args.timeout, on_line=self.stream_line, disk_snapshot=False)
        if res.error:
            self.outcomes.append(Outcome("run", "main run", Status.FAIL, [res.error], log))
            return
        say(f"main run ended after {res.seconds:.1f} s: " + (
            "timed out, QEMU killed" if res.timed_out else
            f"QEMU exit status {qemu.describe_exit(res.status)}"))
        verdict = ktap.judge_test_run(res.text, exit_status=res.status,
                                      timed_out=res.timed_out, timeout=self.args.timeout)
        self.verdict = verdict
        for case in verdict.cases:
            self.outcomes.append(Outcome("case", case.name, case.status,
                                         [case.reason] if case.reason else [], log,
                                         case.diagnostics))
        if verdict.problems:
            details = []
            for stop in ktap.parse_log(res.text).stops:
                details += stop_details(self.kernel, stop)
            details += qemu_said(res)
            self.outcomes.append(Outcome("run", "main run", Status.FAIL, verdict.problems,
                                         log, details + log_tail(res.text)))
        for spec in verdict.death_specs:
            self.submit_death(spec)
        # What a test wrote through the disk device, read from the image now QEMU is gone.
        image = os.environ.get("MDLAB_DISK", "")
        for sector, count, seed in diskcheck.directives(res.text):
            why = diskcheck.check(Path(image), sector, count, seed) if image else "no disk image"
            self.outcomes.append(Outcome("disk", f"disk-check {sector}+{count} seed {seed:#x}",
                                         Status.FAIL if why else Status.PASS,
                                         [why] if why else [], log))
        # An empty selection is an error: the late suites (mm_audit) run whatever the glob
        # says, so they do not count as selected.
        selected = [c for c in verdict.cases if fnmatch.fnmatchcase(c.name, self.args.tests)]
        if not selected and not self.death_futures and not verdict.problems:
            self.outcomes.append(Outcome("run", "test selection", Status.FAIL,
                                         [f"no test matches T='{self.args.tests}' (a glob over "
                                          "suite.case, as 'mdl_map.*')"], log))

    def collect_deaths(self) -> None:
        """Wait for the death boots, printing each verdict as it arrives."""
        if self.death_futures:
            say(f"waiting for {len(self.death_futures)} death test(s)")
        for future in concurrent.futures.as_completed(self.death_futures.values()):
            outcome = future.result()
            self.outcomes.append(outcome)
            ok = "ok" if outcome.status is Status.PASS else "not ok"
            say(f"{ok} death {outcome.name}: " + "; ".join(outcome.reasons))
        if self.death_futures and self.death_start is not None:
            end = self.death_end or time.monotonic()
            say(f"{len(self.death_futures)} death test(s) took {end - self.death_start:.1f} s "
                f"from the first start to the last end ({self.death_how()})")

    def death_how(self) -> str:
        """How the death tests were run, for the timing line."""
        own = sum(death_machine(n) is not None for n in self.death_futures)
        mine = f"; {own} booted on their own machine" if own else ""
        if self.args.death_mode == "boot":
            return "each booted, --death-mode boot" + mine
        future = self.server_future
        if future is None and own == len(self.death_futures):
            return "each booted on its suite's machine (death_machine)"
        if future is None or not future.done() or future.result() is None:
            return "each booted: the death server could not be saved" + mine
        if self.restore_broken:
            return "restored, then booted after a failed restore" + mine
        return "each restored from one saved boot" + mine

    # -- report
    def report(self) -> int:
        """Print tallies, failures and the closing line; return the exit status."""
        print(flush=True)
        say("results")
        for suite in self.verdict.suites if self.verdict else []:
            print(f"  suite {suite.name}: pass:{suite.passed} fail:{suite.failed} "
                  f"skip:{suite.skipped}")
        for name in self.extra_futures:
            items = [o for o in self.outcomes if o.name.startswith(f"{name}:")]
            print(f"  {name} machine: pass:{sum(o.status is Status.PASS for o in items)} "
                  f"fail:{sum(o.status is Status.FAIL for o in items)} "
                  f"skip:{sum(o.status is Status.SKIP for o in items)}")
        for kind, label in (("death", "death tests"), ("unit", "harness unit tests"),
                            ("layout", "layout checks"), ("disk", "disk checks")):
            items = [o for o in self.outcomes if o.kind == kind]
            passed = sum(o.status is Status.PASS for o in items)
            failed = sum(o.status is Status.FAIL for o in items)
            print(f"  {label}: pass:{passed} fail:{failed}")
        failures = [o for o in self.outcomes if o.status is Status.FAIL]
        if failures:
            print(flush=True)
            say("failures")
        for o in failures:
            where = f" (log {o.log})" if o.log else ""
            print(f"  FAIL {o.kind} {o.name}{where}")
            for reason in o.reasons:
                print(f"       {reason}")
            for line in o.details:
                print(f"         {line}")
        counts = {s: sum(o.status is s for o in self.outcomes) for s in Status}
        closing = f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed"
        if counts[Status.SKIP]:
            closing += f", {counts[Status.SKIP]} skipped"
        print(flush=True)
        print(closing, flush=True)
        return 1 if failures else 0

    def stop(self) -> None:
        """End every QEMU and every queued boot (the saved machine's files too)."""
        self.procs.kill_all()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.server_pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.test_dir / "boot", ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="harness.py",
                                 description="Boot mdlab's self-tests under QEMU and judge them.")
    ap.add_argument("--esp", required=True, help="the ESP image built by make (build/esp.img)")
    ap.add_argument("--kernel", required=True, help="kernel ELF, for symbolizing STOP screens")
    ap.add_argument("--kvm", choices=["0", "1"], default="0")
    ap.add_argument("--qemu-extra", default="", help="extra QEMU options (shlex-split)")
    ap.add_argument("--tests", default="*", help="glob over suite.case (default *)")
    ap.add_argument("--jobs", type=int, default=1, help="QEMUs at once, main run included")
    ap.add_argument("--cmdline-extra", default="", help="key=value items appended to "
                    "every kernel command line")
    ap.add_argument("--timeout", type=float, default=240, help="main run limit, seconds")
    ap.add_argument("--death-timeout", type=float, default=60,
                    help="limit per death test (and for the death server to get ready), "
                    "seconds")
    ap.add_argument("--death-mode", choices=["restore", "boot"], default="restore",
                    help="restore: boot one death server, save it, run each death test "
                    "in a copy (falls back to boot when that fails); boot: boot every "
                    "death test on its own (default restore)")
    ap.add_argument("--extra", default=",".join(EXTRA_MACHINES),
                    help="the extra machines to boot beside the main run, comma-separated "
                    f"(default {','.join(EXTRA_MACHINES)}; 'none' for none)")
    ap.add_argument("--build-dir", default="build", help="logs go to BUILD_DIR/test")
    ap.add_argument("--junit", default="", help="also write the results as JUnit XML here")
    ap.add_argument("--unit-lines", action="store_true",
                    help="print a line for every unit test of the harness, not only failures")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if not args.tests or any(c.isspace() for c in args.tests):
        ap.error(f"--tests {args.tests!r}: the glob must be non-empty, without white space "
                 "(it is one item of the kernel command line)")
    if not Path(args.esp).is_file():
        ap.error(f"--esp {args.esp}: no such image (run make first)")
    try:
        shlex.split(args.qemu_extra)
    except ValueError as e:
        ap.error(f"--qemu-extra {args.qemu_extra!r}: {e}")
    return args


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(errors="replace")
    args = parse_args(argv)
    if args.kvm == "1":
        try:
            qemu.check_kvm()
        except qemu.KvmUnavailable as e:
            print(e, file=sys.stderr)
            return 1
    # Ctrl-C, SIGTERM (CI cancelling) and SIGHUP (terminal closed) all end every QEMU
    # (SIGINT too: a shell starts background jobs with it ignored).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    harness = Harness(args)
    shutil.rmtree(harness.test_dir, ignore_errors=True)
    harness.test_dir.mkdir(parents=True)
    try:
        _LineResult.verbose = args.unit_lines
        units = run_unit_tests()
        say(f"unit tests: {sum(o.status is Status.PASS for o in units)} of {len(units)} passed"
            + ("" if args.unit_lines else " (UNIT_LINES=1 lists each)"))
        harness.outcomes += units
        harness.outcomes += run_layout_checks(Path(__file__).resolve().parent.parent)
        harness.run_main()
        harness.submit_extras()
        harness.collect_deaths()
        harness.collect_extras()
    except KeyboardInterrupt:
        say("interrupted: stopping every QEMU")
        harness.stop()
        return 130
    harness.stop()
    # The files first, so that the closing line of the report is the last line printed.
    ktap_path = harness.test_dir / "results.ktap"
    ktap_path.write_text(ktap_text(harness.outcomes))
    say(f"every result as KTAP: {ktap_path}")
    junit_failed = False
    if args.junit:
        try:
            Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
            Path(args.junit).write_text(junit_text(harness.outcomes))
            say(f"JUnit XML: {args.junit}")
        except OSError as e:
            say(f"cannot write JUnit XML to {args.junit}: {e.strerror}")
            junit_failed = True
    status = harness.report()
    return 1 if junit_failed else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
