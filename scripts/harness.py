"""harness.py — `make test`: boot mdlab's self-tests under QEMU and judge them.

    python3 scripts/harness.py --esp build/esp.img --kernel build/kernel.elf
        [--kvm 0|1] [--qemu-extra "QEMU OPTIONS"] [--tests GLOB] [--jobs N]
        [--cmdline-extra "key=value ..."] [--timeout 240] [--death-timeout 60]
        [--build-dir build]

In order:
 1. runs the canned-log unit tests of scripts/test_harness.py in-process, one
    `harness: ok NAME` / `harness: not ok NAME` line each;
 2. boots the main run (kernel command line `mode=test tests=GLOB`) with a hard timeout,
    its full serial log in BUILD/test/main.log, streaming the log's lines to stdout with
    escape sequences removed;
 3. judges that log with ktap.judge_test_run (cases, plans, summaries, crash, timeout,
    exit status);
 4. boots every death test the log announces (`# death-test:` lines) whose name matches
    GLOB on its own (`mode=death case=NAME`), logs in BUILD/test/death/NAME.log, judged
    with ktap.judge_death_run.  Death boots start as soon as their announcement appears;
    at most N QEMUs (main run included) run at once;
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
import threading
import time
import traceback
import unittest
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ktap  # noqa: E402
import qemu  # noqa: E402
from ktap import Status  # noqa: E402

TAG = "harness:"
KERNEL_SPACE = 0xFFFF800000000000
LOG_TAIL_LINES = 8


def say(*parts: object) -> None:
    """Print a harness line at once (stdout may be a pipe into a CI log)."""
    print(TAG, *parts, flush=True)


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
    """A unittest result that prints one harness line per test and keeps Outcomes."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []

    @staticmethod
    def _name(test: unittest.TestCase) -> str:
        return test.id().split(".", 1)[-1]

    def addSuccess(self, test):
        super().addSuccess(test)
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
        say("ok", self._name(test), "# SKIP", reason)
        self.outcomes.append(Outcome("unit", self._name(test), Status.SKIP, [reason]))


def run_unit_tests() -> list[Outcome]:
    """Run scripts/test_harness.py's tests in this process; one Outcome per test (or one
    failed Outcome if the module cannot be loaded)."""
    say("unit tests of the log parser (scripts/test_harness.py)")
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName("test_harness")
    except Exception:  # an import or syntax error in test_harness.py is a failure, not a crash
        lines = traceback.format_exc().rstrip().splitlines()
        say("not ok test_harness (cannot load)")
        print("\n".join("    " + l for l in lines))
        return [Outcome("unit", "test_harness", Status.FAIL, ["cannot load"], None, lines[-1:])]
    result = _LineResult()
    suite.run(result)
    return result.outcomes


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


class Booter:
    """Boots the ESP with a given kernel command line, at most `jobs` at a time."""

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
             on_line=None) -> BootResult:
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
                                      extra=self.qemu_extra)
            with open(stderr_path, "wb") as err:
                proc = self.procs.start(argv, stdin=subprocess.DEVNULL, stdout=err,
                                        stderr=subprocess.STDOUT)
            status, timed_out = self._wait(proc, log, start + timeout, on_line)
        except (qemu.QemuSetupError, OSError) as e:
            return BootResult(None, False, time.monotonic() - start, _read(log), error=str(e))
        finally:
            self.slots.release()
            shutil.rmtree(boot_dir, ignore_errors=True)
        stderr = _read(stderr_path).strip()
        if not [l for l in stderr.splitlines() if "terminating on signal" not in l]:
            stderr_path.unlink(missing_ok=True)
        return BootResult(status, timed_out, time.monotonic() - start, _read(log), stderr)

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

    def cmdline(self, base: str) -> str:
        extra = self.args.cmdline_extra.strip()
        return f"{base} {extra}" if extra else base

    # -- death tests
    def submit_death(self, spec: ktap.DeathSpec) -> None:
        """Start the death boot for `spec` (once) if its name matches the glob."""
        if spec.name in self.death_futures or not fnmatch.fnmatchcase(spec.name,
                                                                       self.args.tests):
            return
        self.death_futures[spec.name] = self.pool.submit(self.run_death, spec)

    def run_death(self, spec: ktap.DeathSpec) -> Outcome:
        """Boot and judge one death test (runs in a pool thread)."""
        log = self.test_dir / "death" / f"{_safe_name(spec.name)}.log"
        res = self.booter.boot(self.cmdline(f"mode=death case={spec.name}"), log,
                               self.test_dir / "boot" / f"death-{_safe_name(spec.name)}",
                               self.args.death_timeout)
        if res.error:
            return Outcome("death", spec.name, Status.FAIL, [res.error], log)
        verdict = ktap.judge_death_run(res.text, spec, exit_status=res.status,
                                       timed_out=res.timed_out,
                                       timeout=self.args.death_timeout)
        if verdict.passed:
            return Outcome("death", spec.name, Status.PASS,
                           [f"bug check 0x{verdict.stop.code:08X} in {res.seconds:.1f} s"], log)
        details = stop_details(self.kernel, verdict.stop) + qemu_said(res) + log_tail(res.text)
        return Outcome("death", spec.name, Status.FAIL,
                       verdict.reasons + [f"(expected a bug check with {spec.describe()})"],
                       log, details)

    # -- the main run
    def stream_line(self, raw: str) -> None:
        """Show one serial line of the main run and start any death test it announces."""
        line = ktap.clean_line(raw)
        if line or not raw.strip("\r"):
            print(line, flush=True)
        spec = ktap.scan_death_specs(raw)
        if spec is not None:
            self.submit_death(spec)

    def run_main(self) -> None:
        log = self.test_dir / "main.log"
        cmdline = self.cmdline(f"mode=test tests={self.args.tests}")
        say(f"booting '{cmdline}' (timeout {self.args.timeout:g} s, serial log {log})")
        res = self.booter.boot(cmdline, log, self.test_dir / "boot" / "main",
                               self.args.timeout, on_line=self.stream_line)
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
        if not verdict.cases and not self.death_futures and not verdict.problems:
            say(f"note: no kernel test matched '{self.args.tests}'")

    def collect_deaths(self) -> None:
        """Wait for the death boots, printing each verdict as it arrives."""
        if self.death_futures:
            say(f"waiting for {len(self.death_futures)} death test(s)")
        for future in concurrent.futures.as_completed(self.death_futures.values()):
            outcome = future.result()
            self.outcomes.append(outcome)
            ok = "ok" if outcome.status is Status.PASS else "not ok"
            say(f"{ok} death {outcome.name}: " + "; ".join(outcome.reasons))

    # -- report
    def report(self) -> int:
        """Print tallies, failures and the closing line; return the exit status."""
        print(flush=True)
        say("results")
        for suite in self.verdict.suites if self.verdict else []:
            print(f"  suite {suite.name}: pass:{suite.passed} fail:{suite.failed} "
                  f"skip:{suite.skipped}")
        for kind, label in (("death", "death tests"), ("unit", "harness unit tests")):
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
        """End every QEMU and every queued boot."""
        self.procs.kill_all()
        self.pool.shutdown(wait=True, cancel_futures=True)
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
                    help="limit per death boot, seconds")
    ap.add_argument("--build-dir", default="build", help="logs go to BUILD_DIR/test")
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
        harness.outcomes += run_unit_tests()
        harness.run_main()
        harness.collect_deaths()
    except KeyboardInterrupt:
        say("interrupted: stopping every QEMU")
        harness.stop()
        return 130
    harness.stop()
    return harness.report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
