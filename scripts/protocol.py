"""protocol.py — the kernel's side of the serial line, as include/mdlab/protocol.h defines it.

The header is read when this module is imported (cheader.py), so the markers the scripts
look for and the values they compare with are the ones the kernel was built with.  Names
drop the header's MDLAB_ prefix; QEMU's exit statuses are derived from the isa-debug-exit
values the kernel writes.
"""

from __future__ import annotations

import re

import cheader

HEADER = "include/mdlab/protocol.h"
_DEFINES = cheader.read_repo_header(HEADER)


def _define(name: str, kind: type):
    value = _DEFINES.get(name)
    if not isinstance(value, kind):
        raise ImportError(f"{HEADER} has no {kind.__name__} #define {name}")
    return value


def exit_status(value: int) -> int:
    """QEMU's exit status after the kernel writes `value` to the isa-debug-exit port."""
    return (value << 1) | 1


QEMU_EXIT_PORT = _define("QEMU_EXIT_PORT", int)
EXIT_DONE = exit_status(_define("QEMU_EXIT_DONE", int))          # the kernel finished
EXIT_BUGCHECK = exit_status(_define("QEMU_EXIT_BUGCHECK", int))  # KeBugCheckEx ran

MODE_MONITOR = _define("MDLAB_MODE_MONITOR", str)
MODE_TEST = _define("MDLAB_MODE_TEST", str)
MODE_DEATH = _define("MDLAB_MODE_DEATH", str)
MODE_DEATH_SERVER = _define("MDLAB_MODE_DEATH_SERVER", str)
MODE_BENCH = _define("MDLAB_MODE_BENCH", str)
CASE_NAME_MAX = _define("MDLAB_CASE_NAME_SIZE", int) - 1        # bytes, without the NUL

KTAP_HEADER = _define("MDLAB_KTAP_HEADER", str)
KTAP_SUBTEST = _define("MDLAB_KTAP_SUBTEST", str)
KTAP_SKIP = _define("MDLAB_KTAP_SKIP", str)

TESTS_DONE = _define("MDLAB_TESTS_DONE", str)
DEATH_TEST = _define("MDLAB_DEATH_TEST", str)
DEATH_EXPECT = _define("MDLAB_DEATH_EXPECT", str)
DEATH = _define("MDLAB_DEATH", str)
DEATH_RETURNED = _define("MDLAB_DEATH_RETURNED", str)
DEATH_SERVER_READY = _define("MDLAB_DEATH_SERVER_READY", str)
USER_MARK = _define("MDLAB_USER_MARK", str)
USER_FORMAT = _define("MDLAB_USER_FORMAT", str)
STOP_MARK = _define("MDLAB_STOP_MARK", str)
STOP_FORMAT = _define("MDLAB_STOP_FORMAT", str)

MONITOR_PROMPT = _define("MDLAB_MONITOR_PROMPT", str)
MONITOR_FAILED = _define("MDLAB_MONITOR_FAILED", str)
BENCH = _define("MDLAB_BENCH", str)
BENCH_DONE = _define("MDLAB_BENCH_DONE", str)
MAPDUMP = _define("MDLAB_MAPDUMP", str)
MAPDUMP_VERSION = _define("MDLAB_MAPDUMP_VERSION", int)


def marker_pattern(marker: str) -> str:
    """A regular expression for `marker` in which each space matches any run of white space,
    none included ("# death:" also matches "#death:"), as KTAP readers are lenient."""
    return r"\s*".join(re.escape(word) for word in marker.split(" "))


_CONVERSION_RE = re.compile(r"%0(\d+)(l?)X")


def printf_pattern(fmt: str) -> str:
    """A regular expression for the lines the kernel prints with the printf format `fmt`,
    whose conversions are all zero-padded upper-case hex (%0NX, %0NlX), one group each.  An
    int conversion must have exactly N digits; a long one (a ULONG_PTR) 1 to N, as older and
    hand-written logs print them unpadded."""
    out, pos = [], 0
    for m in list(_CONVERSION_RE.finditer(fmt)) + [None]:
        literal = fmt[pos:m.start() if m else len(fmt)]
        if "%" in literal:
            raise ValueError(f"printf_pattern: a conversion other than %0NX in {fmt!r}")
        out.append(re.escape(literal))
        if m:
            width = int(m.group(1))
            out.append(f"([0-9A-F]{{1,{width}}})" if m.group(2) else f"([0-9A-F]{{{width}}})")
            pos = m.end()
    return "".join(out)
