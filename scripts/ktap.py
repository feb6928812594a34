"""ktap.py — read mdlab's serial logs and judge them.

Pure functions over the text of a log: no processes, and no file but the protocol header,
read once at import (protocol.py: every marker below comes from include/mdlab/protocol.h).
harness.py feeds them the logs of real boots; test_harness.py feeds them canned logs.

What a test boot (`mode=test tests=GLOB`) prints, after any firmware output:

    KTAP version 1
    # death-test: seh.unhandled_fault code=0x0000001E
    1..2
        KTAP version 1
        # Subtest: seh
        1..3
        ok 1 fault_in_try
        not ok 2 nested
        ok 3 raise_custom # SKIP needs SMAP
    # seh: pass:1 fail:1 skip:1 total:3
    not ok 1 seh
        ...
    ok 2 irql
    # mdlab: tests done

Nesting is by indentation: KUnit indents four spaces a level, and a line indented deeper
than the lines of the innermost open subtest belongs one level further in (so two-space or
tab indentation, as older kernels print, is read the same way).  The parser reads an
unmodified Linux KUnit log too (`TAP version 14` headers, `ok 1 - name`, `# Subtest:`
without a nested header, `[   1.234] ` printk timestamps).  Results at
level 0 are suites, results at level 1 are cases; deeper results (parameterised cases)
are checked for consistency but each case is counted once, by its own result line.

A death-test announcement gives the expected code and any of the four parameters
(`code=0x... [p1=0x...] [p2=0x...] [p3=0x...] [p4=0x...]`; a parameter not given is not
compared).  A death boot (`mode=death case=SUITE.CASE`) must end in exactly one STOP screen:

    # death-expect: code=0x0000001E p1=0xC0000005
    *** STOP: 0x0000001E (0xC0000005,0xFFFFFFFF80001234,0x0000000000000000,0x0000000000000000)
    KMODE_EXCEPTION_NOT_HANDLED

The STOP line must match the announcement and every `# death-expect:` line the case printed
before it (expectations known only at run time, such as pool addresses), key for key;
a `panic=MESSAGE` key (last, the rest of its line) also requires the last line before the STOP
line to be MESSAGE, the PANIC's own.

User output: a line a user process printed starts with protocol.USER_MARK (bare, or after
the "# " of a case's diagnostics; the kernel escapes every control character in it, so such a
line cannot end early).  It is kept as a diagnostic of the running case and nothing else: a
STOP mark, a KTAP line, a death expectation or the done marker on it counts for nothing.

Cleaning: before parsing, ANSI/VT100 escape sequences, carriage returns and other
control characters are removed from every line; anything before the first
`KTAP version` on its line is firmware output and is dropped.  Line numbers in messages
are 1-based line numbers of the raw log (lines split at "\\n").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import protocol
from protocol import marker_pattern

EXIT_DONE = protocol.EXIT_DONE
EXIT_BUGCHECK = protocol.EXIT_BUGCHECK
EXIT_TRIPLE_FAULT = 0   # QEMU's own status on a triple fault with -no-reboot

DONE_MARKER = protocol.TESTS_DONE

# ESC followed by: a CSI sequence, an OSC string (ended by BEL or ST), a character-set
# designation, or a single final character.
_ESCAPE_RE = re.compile(r"""
    \x1b (?: \[ [0-?]* [ -/]* [@-~]
           | \] [^\x07\x1b]* (?: \x07 | \x1b\\ )?
           | [()*+] .
           | [ -/]* [0-~] )?
    | \x9b [0-?]* [ -/]* [@-~]
    """, re.VERBOSE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TIMESTAMP_RE = re.compile(r"^\[\s*\d+\.\d+\]\s?")

_HEADER_RE = re.compile(r"^K?TAP version (\d+)$")
_HEADER_SEARCH_RE = re.compile(r"K?TAP version \d+\s*$")
_PLAN_RE = re.compile(r"^1\.\.(\d+)(?:\s*#.*)?$")
_RESULT_RE = re.compile(r"^(ok|not ok)(?:\s+(\d+))?(?:\s+-)?(?:\s+(.*))?$")
_SUBTEST_RE = re.compile(rf"^{marker_pattern(protocol.KTAP_SUBTEST)}\s*(.*?)\s*$")
_SUMMARY_RE = re.compile(
    r"^#\s*(\S+):\s*pass:(\d+)\s+fail:(\d+)\s+skip:(\d+)\s+total:(\d+)\s*$")
_DEATH_SPEC_RE = re.compile(rf"^{marker_pattern(protocol.DEATH_TEST)}\s*(.*?)\s*$")
_DEATH_EXPECT_RE = re.compile(rf"^{marker_pattern(protocol.DEATH_EXPECT)}\s*(.*?)\s*$")
_DEATH_RETURNED_RE = re.compile(rf"^{marker_pattern(protocol.DEATH)}\s*(\S+)\s+"
                                rf"{marker_pattern(protocol.DEATH_RETURNED)}")
_STOP_MARK = protocol.STOP_MARK
_STOP_RE = re.compile(rf"^{protocol.printf_pattern(protocol.STOP_FORMAT)}$")
_BUGCHECK_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# A line a user process printed (SYS_DEBUG_PRINT), bare or as a case's "# " diagnostic.
_USER_LINE_RE = re.compile(rf"^\s*(?:#\s*)?{re.escape(protocol.USER_MARK)}")
_UNESCAPED_HASH_RE = re.compile(r"(?<!\\)#")


def clean_line(raw: str) -> str:
    """`raw` without escape sequences, carriage returns, other control characters (tab
    kept), a leading printk timestamp, or trailing white space."""
    line = _CONTROL_RE.sub("", _ESCAPE_RE.sub("", raw))
    return _TIMESTAMP_RE.sub("", line).rstrip()


def is_user_line(line: str) -> bool:
    """Whether the cleaned `line` is a user process's output (protocol.USER_FORMAT): the
    kernel marks every line a process prints so, and nothing on it is a marker."""
    return _USER_LINE_RE.match(line) is not None


def split_lines(text: str) -> list[str]:
    """The cleaned lines of a log, index i being raw line i+1."""
    return [clean_line(raw) for raw in text.split("\n")]


# --------------------------------------------------------------------- records

class Status(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


PARAM_KEYS = ("p1", "p2", "p3", "p4")


def _describe_expectation(code: int, params: tuple[int | None, ...]) -> str:
    return f"code=0x{code:08X}" + "".join(f" {key}=0x{value:X}"
                                          for key, value in zip(PARAM_KEYS, params)
                                          if value is not None)


def _expectation_mismatches(code: int, params: tuple[int | None, ...], stop: StopLine,
                            source: str) -> list[str]:
    """Why the well-formed `stop` does not match the expected code and parameters (None:
    not compared); `source` says where the expectation came from."""
    reasons = []
    if stop.code != code:
        reasons.append(f"bug check code 0x{stop.code:08X}, expected 0x{code:08X}{source}")
    for i, want in enumerate(params):
        if want is not None and stop.params[i] != want:
            reasons.append(f"bug check parameter {i + 1} is 0x{stop.params[i]:X}, "
                           f"expected 0x{want:X}{source}")
    return reasons


@dataclass
class DeathSpec:
    """One `# death-test: NAME code=0x... [p1=0x...] ... [p4=0x...]` announcement."""
    name: str
    code: int
    p1: int | None = None
    p2: int | None = None
    p3: int | None = None
    p4: int | None = None

    @property
    def params(self) -> tuple[int | None, ...]:
        return (self.p1, self.p2, self.p3, self.p4)

    def describe(self) -> str:
        return _describe_expectation(self.code, self.params)


@dataclass
class DeathExpect:
    """One `# death-expect: code=0x... [p1=0x...] ... [p4=0x...]` line a death case printed
    at run time, before its bug check."""
    line_no: int
    code: int
    params: tuple[int | None, ...] = (None, None, None, None)
    # `panic=MESSAGE` (last, to the end of the line): the PANIC's own message, the last
    # line the kernel printed before the STOP line (kpanic prints it there).
    panic: str | None = None

    def describe(self) -> str:
        return _describe_expectation(self.code, self.params)


@dataclass
class StopLine:
    """One `*** STOP:` line.  `malformed` says what is wrong with it, or is None; code
    and params are only meaningful when it is None.  `name` is the symbolic bug check
    name printed on the next line, if any.  `running` is what the test run was doing."""
    line_no: int
    text: str
    code: int = 0
    params: tuple[int, ...] = ()
    name: str | None = None
    malformed: str | None = None
    running: str = ""

    def describe(self) -> str:
        if self.malformed:
            return f"malformed STOP line ({self.malformed}): {self.text!r}"
        params = ",".join(f"0x{p:X}" for p in self.params)
        return f"0x{self.code:08X} {self.name or '(no name line)'} ({params})"


@dataclass
class Result:
    """One `ok N name` / `not ok N name # DIRECTIVE` line and the subtest it closes."""
    number: int | None
    ok: bool
    name: str
    directive: str
    line_no: int
    diagnostics: list[str] = field(default_factory=list)
    subtest: Node | None = None

    @property
    def status(self) -> Status:
        if self.directive.upper().startswith(protocol.KTAP_SKIP):
            return Status.SKIP
        return Status.PASS if self.ok else Status.FAIL

    @property
    def skip_reason(self) -> str:
        skip = len(protocol.KTAP_SKIP)
        return self.directive[skip:].strip() if self.status is Status.SKIP else ""


@dataclass
class Summary:
    """A `# NAME: pass:P fail:F skip:S total:T` line."""
    name: str
    passed: int
    failed: int
    skipped: int
    total: int
    line_no: int


@dataclass
class Node:
    """One (sub)test: the root, or a suite, or a parameterised case.  `depth` is its
    indentation level; `plan` is N of `1..N` (None if absent)."""
    name: str
    depth: int
    line_no: int
    indent: int = 0          # columns of indentation of this subtest's own lines
    has_header: bool = False
    plan: int | None = None
    plan_line: int = 0
    results: list[Result] = field(default_factory=list)
    summary: Summary | None = None
    pending: list[str] = field(default_factory=list)   # diagnostics since the last result

    def is_fresh(self) -> bool:
        return self.plan is None and not self.results


@dataclass
class ParsedLog:
    """Everything parse_log() found.  `root` is None when no KTAP header was seen.
    `open_nodes` are the subtests (depth >= 1) still without a result line at the end,
    outermost first.  `errors` are structural problems, each naming its log line."""
    root: Node | None = None
    open_nodes: list[Node] = field(default_factory=list)
    death_specs: list[DeathSpec] = field(default_factory=list)
    stops: list[StopLine] = field(default_factory=list)
    death_returned: list[str] = field(default_factory=list)
    death_expects: list[DeathExpect] = field(default_factory=list)
    bad_death_expects: list[str] = field(default_factory=list)
    done: bool = False
    errors: list[str] = field(default_factory=list)
    running_at_end: str = ""


# --------------------------------------------------------------------- parsing

def parse_expectation(words: list[str]) -> tuple[dict[str, int] | None, str | None]:
    """Parse `code=0xHEX [p1=0xHEX] ... [p4=0xHEX]` (in any order).  Returns ({key: value},
    None) or (None, what is wrong).  Unknown key=value items are ignored so the kernel may
    add more later."""
    values = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            return None, f"{word!r} is not key=value"
        values[key] = value
    parsed = {}
    for key in ("code",) + PARAM_KEYS:
        if key not in values:
            continue
        if not re.fullmatch(r"0[xX][0-9A-Fa-f]+", values[key]):
            return None, f"{key}={values[key]} is not 0x followed by hex digits"
        parsed[key] = int(values[key], 16)
    if "code" not in parsed:
        return None, "no code=0x..."
    return parsed, None


def parse_death_spec(body: str) -> tuple[DeathSpec | None, str | None]:
    """Parse the text after `# death-test:`: `SUITE.CASE code=0xHEX [p1=0xHEX] ...
    [p4=0xHEX]`.  Returns (spec, None) or (None, what is wrong)."""
    words = body.split()
    if not words or "=" in words[0]:
        return None, "no test name"
    name = words[0]
    if "." not in name.strip("."):
        return None, f"name {name!r} is not SUITE.CASE"
    parsed, problem = parse_expectation(words[1:])
    if problem:
        return None, problem
    return DeathSpec(name, parsed.pop("code"), **parsed), None


def parse_death_expect(body: str, line_no: int) -> tuple[DeathExpect | None, str | None]:
    """Parse the text after `# death-expect:`: `code=0xHEX [p1=0xHEX] ... [p4=0xHEX]
    [panic=MESSAGE]`, MESSAGE being the rest of the line."""
    m = re.search(r"(?:^|\s)panic=", body)
    panic = body[m.end():].strip() if m else None
    if m:
        body = body[:m.start()]
        if not panic:
            return None, "panic= needs the message"
    parsed, problem = parse_expectation(body.split())
    if problem:
        return None, problem
    return DeathExpect(line_no, parsed["code"], tuple(parsed.get(k) for k in PARAM_KEYS),
                       panic), None


def _panic_message(lines: list[str], stop: StopLine) -> str | None:
    """The last non-blank line before the STOP line (cleaned): where kpanic prints its
    message."""
    for line in reversed(lines[:stop.line_no - 1]):
        if line.strip():
            return line.strip()
    return None


def parse_stop(lines: list[str], index: int) -> StopLine:
    """The STOP screen whose `*** STOP:` mark is on lines[index] (cleaned lines)."""
    line = lines[index]
    text = line[line.index(_STOP_MARK):].strip()
    stop = StopLine(line_no=index + 1, text=text)
    following = [l.strip() for l in lines[index + 1:index + 3] if l.strip()]
    if following and _BUGCHECK_NAME_RE.match(following[0]):
        stop.name = following[0]
    m = _STOP_RE.match(text)
    if not m:
        stop.malformed = (f"expected '{_STOP_MARK} 0xXXXXXXXX (0xP1,0xP2,0xP3,0xP4)', "
                          "8 upper-case hex digits for the code, upper-case parameters")
        return stop
    stop.code = int(m.group(1), 16)
    stop.params = tuple(int(g, 16) for g in m.group(2, 3, 4, 5))
    return stop


class _Parser:
    """The line-by-line state machine behind parse_log().  `stack[d]` is the open node
    at nesting depth d (a line's depth comes from its indentation, see depth_of); a node
    at depth d >= 1 is closed by the next result line at depth d - 1, which it then
    belongs to."""

    def __init__(self) -> None:
        self.log = ParsedLog()
        self.stack: list[Node] = []
        self.width = 0    # indentation of the line being parsed

    def depth_of(self, width: int) -> int:
        """The nesting depth of a line indented `width` columns: that of the open node
        with this indentation, or one below the deepest open node indented less."""
        for node in reversed(self.stack):
            if width == node.indent:
                return node.depth
            if width > node.indent:
                return node.depth + 1
        return 0

    def new_node(self, name: str = "", header: bool = False, line_no: int = 0) -> Node:
        node = Node(name=name, depth=len(self.stack), line_no=line_no, indent=self.width,
                    has_header=header)
        self.stack.append(node)
        return node

    # -- helpers
    def error(self, line_no: int, message: str) -> None:
        self.log.errors.append(f"line {line_no}: {message}")

    @staticmethod
    def path(nodes: list[Node]) -> str:
        return ".".join(n.name or "<unnamed>" for n in nodes[1:])

    def describe_running(self) -> str:
        """Where the test run is at this point, as a phrase that can follow "crashed":
        "in seh case #3 of 3 (the case after seh.nested)", "between suites, after
        irql", "before the KTAP output began", ...  The running case's name is not
        known yet (KTAP prints it after the case), so its number and predecessor are."""
        if not self.stack:
            return "before the KTAP output began"
        top = self.stack[-1]
        if top.depth == 0:
            if not top.results:
                return "before the first suite"
            return f"between suites, after {top.results[-1].name}"
        where = self.path(self.stack)
        following = len(top.results) + 1
        if top.plan is not None and following > top.plan:
            return (f"in {where}, after its last case ({len(top.results)} of {top.plan} "
                    "reported), before the suite's result line")
        of = f" of {top.plan}" if top.plan is not None else ""
        after = (f" (the case after {where}.{top.results[-1].name})" if top.results
                 else " (its first case)")
        return f"in {where} case #{following}{of}{after}"

    def unterminated(self, node: Node, line_no: int) -> None:
        self.error(line_no, f"subtest {self.path(self.stack[:node.depth + 1])} "
                            "ended without a result line")

    def pop_below(self, depth: int, line_no: int) -> None:
        """Close every open node deeper than `depth`, each an error (no result line)."""
        while len(self.stack) > depth + 1:
            self.unterminated(self.stack[-1], line_no)
            self.stack.pop()

    def ensure_depth(self, depth: int, line_no: int) -> Node:
        """The open node at `depth`, creating unnamed ones down to it if needed; nodes
        deeper than it are closed (as errors)."""
        while len(self.stack) <= depth:
            self.new_node(line_no=line_no)
        self.pop_below(depth, line_no)
        return self.stack[depth]

    def open_node(self, depth: int, line_no: int, *, name: str = "",
                  header: bool = False) -> Node:
        """Begin a subtest at `depth` (>= 1) for a header or `# Subtest:` line.  A fresh
        node already there (opened by the header's partner line) is reused; an open one
        with content never got its result line."""
        if len(self.stack) > depth:
            node = self.stack[depth]
            self.pop_below(depth, line_no)
            reusable = node.is_fresh() and not (header and node.has_header) \
                and not (name and node.name)
            if reusable:
                node.name = node.name or name
                node.has_header = node.has_header or header
                return node
            self.unterminated(node, line_no)
            self.stack.pop()
        self.ensure_depth(depth - 1, line_no)
        return self.new_node(name, header, line_no)

    # -- line kinds
    def header(self, depth: int, line_no: int) -> None:
        if depth == 0:
            self.error(line_no, "a second top-level KTAP header (did the machine reboot?)")
            return
        self.open_node(depth, line_no, header=True)

    def plan(self, depth: int, count: int, line_no: int) -> None:
        node = self.ensure_depth(depth, line_no)
        if node.plan is not None:
            self.error(line_no, f"second plan for {self.path(self.stack) or 'the top level'}")
            return
        if node.results:
            self.error(line_no, "plan after results")
        node.plan, node.plan_line = count, line_no

    def result(self, depth: int, m: re.Match, line_no: int) -> None:
        child = self.stack[depth + 1] if len(self.stack) > depth + 1 else None
        if child is not None:
            self.pop_below(depth + 1, line_no)
            self.stack.pop()
        node = self.ensure_depth(depth, line_no)
        rest = m.group(3) or ""
        hashes = _UNESCAPED_HASH_RE.search(rest)
        name = (rest[:hashes.start()] if hashes else rest).strip().replace("\\#", "#")
        directive = rest[hashes.end():].strip() if hashes else ""
        number = int(m.group(2)) if m.group(2) else None
        expected = len(node.results) + 1
        where = self.path(self.stack) or "the top level"
        if number is None:
            self.error(line_no, f"result without a test number in {where}")
        elif number != expected:
            self.error(line_no, f"result numbered {number} in {where}, expected {expected}")
        if child is not None:
            if child.name and name and child.name != name:
                self.error(line_no, f"result names {name!r} but the subtest was "
                                    f"{child.name!r}")
            child.name = child.name or name
        res = Result(number=number, ok=m.group(1) == "ok", name=name, directive=directive,
                     line_no=line_no, diagnostics=node.pending, subtest=child)
        node.pending = []
        node.results.append(res)

    def summary(self, depth: int, m: re.Match, line_no: int) -> None:
        name = m.group(1)
        if name == "Totals":
            return
        summ = Summary(name, *(int(g) for g in m.group(2, 3, 4, 5)), line_no=line_no)
        target = None
        if len(self.stack) > depth + 1 and self.stack[depth + 1].name == name:
            target = self.stack[depth + 1]
        elif len(self.stack) > depth and self.stack[depth].results:
            last = self.stack[depth].results[-1]
            if last.subtest is not None and last.subtest.name == name:
                target = last.subtest
        if target is None:
            self.error(line_no, f"summary line for {name!r} matches no subtest here")
        elif target.summary is not None:
            self.error(line_no, f"second summary line for {name!r}")
        else:
            target.summary = summ

    def diagnostic(self, text: str) -> None:
        self.stack[-1].pending.append(text)

    # -- driver
    def feed(self, lines: list[str]) -> ParsedLog:
        for index, line in enumerate(lines):
            self.line(lines, index, line)
        self.log.running_at_end = self.describe_running()
        self.log.open_nodes = self.stack[1:]
        return self.log

    def line(self, lines: list[str], index: int, line: str) -> None:
        line_no = index + 1
        if is_user_line(line):
            # A process's words: shown with the case it ran in, believed for nothing.
            if self.stack:
                self.diagnostic(line.strip())
            return
        if _STOP_MARK in line:
            stop = parse_stop(lines, index)
            stop.running = self.describe_running()
            self.log.stops.append(stop)
        m = _DEATH_RETURNED_RE.match(line.strip())
        if m:
            self.log.death_returned.append(m.group(1))
        m = _DEATH_EXPECT_RE.match(line.strip())
        if m:
            expect, problem = parse_death_expect(m.group(1), line_no)
            if problem:
                self.log.bad_death_expects.append(
                    f"malformed death-expect line {line_no} ({problem}): {line.strip()!r}")
            else:
                self.log.death_expects.append(expect)
        if not self.stack:
            m = _HEADER_SEARCH_RE.search(line)
            if m:
                self.log.root = self.new_node(header=True, line_no=line_no)
            return
        expanded = line.expandtabs(8)
        text = expanded.strip()
        if not text:
            return
        self.width = len(expanded) - len(expanded.lstrip(" "))
        depth = self.depth_of(self.width)
        if text == DONE_MARKER:
            self.log.done = True
            return
        m = _DEATH_SPEC_RE.match(text)
        if m:
            spec, problem = parse_death_spec(m.group(1))
            if problem:
                self.error(line_no, f"malformed death-test line ({problem}): {text!r}")
            elif any(s.name == spec.name for s in self.log.death_specs):
                self.error(line_no, f"death test {spec.name} announced twice")
            else:
                self.log.death_specs.append(spec)
            return
        if _HEADER_RE.match(text):
            self.header(depth, line_no)
        elif m := _SUBTEST_RE.match(text):
            if depth == 0:
                self.error(line_no, "'# Subtest:' at the top level")
            else:
                self.open_node(depth, line_no, name=m.group(1))
        elif m := _PLAN_RE.match(text):
            self.plan(depth, int(m.group(1)), line_no)
        elif m := _RESULT_RE.match(text):
            self.result(depth, m, line_no)
        elif m := _SUMMARY_RE.match(text):
            self.summary(depth, m, line_no)
        else:
            self.diagnostic(text)


def parse_log(text: str) -> ParsedLog:
    """Parse the serial log of any boot: KTAP structure, death-test announcements, STOP
    screens, `# death-expect:` and `# death: ... returned` lines and the done marker.  Never raises on bad
    input; what is wrong is in the result's `errors`."""
    return _Parser().feed(split_lines(text))


def scan_death_specs(line: str) -> DeathSpec | None:
    """The death test a single raw log line announces, or None (malformed ones too).
    For starting death boots while the main log is still being written."""
    text = clean_line(line)
    if is_user_line(text):
        return None
    m = _DEATH_SPEC_RE.match(text.strip())
    return parse_death_spec(m.group(1))[0] if m else None


# --------------------------------------------------------------------- verdicts

@dataclass
class CaseOutcome:
    """The verdict on one kernel case (`suite.case`) or on a suite as a whole."""
    name: str
    suite: str
    status: Status
    reason: str = ""
    diagnostics: list[str] = field(default_factory=list)
    line_no: int = 0


@dataclass
class SuiteTally:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def count(self, status: Status) -> None:
        if status is Status.PASS:
            self.passed += 1
        elif status is Status.FAIL:
            self.failed += 1
        else:
            self.skipped += 1


@dataclass
class TestRunVerdict:
    """The verdict on a `mode=test` boot.  `cases` holds every reported case (and suites
    that failed or were skipped as a whole); `problems` holds everything else wrong with
    the run (crash, timeout, exit status, plan and protocol violations).  The run passed
    only when `problems` is empty and no case failed."""
    cases: list[CaseOutcome] = field(default_factory=list)
    suites: list[SuiteTally] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    running: str = ""
    death_specs: list[DeathSpec] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.status is not Status.FAIL for c in self.cases)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.cases if c.status is status)


def _tally(results: list[Result]) -> tuple[int, int, int]:
    statuses = [r.status for r in results]
    return (statuses.count(Status.PASS), statuses.count(Status.FAIL),
            statuses.count(Status.SKIP))


def _check_node(node: Node, where: str, problems: list[str]) -> None:
    """Append to `problems` what is wrong with `node` and its subtests: a missing plan,
    fewer or more results than planned, a summary line that disagrees with the results,
    a subtest reported ok although one of its own subtests failed."""
    # The top level and suites need a plan; deeper (parameterised) subtests may lack
    # one, as Linux prints them.
    if node.plan is None and node.depth <= 1 and (node.results or node.depth == 0
                                                   or node.has_header):
        problems.append(f"{where}: missing plan (no '1..N' line)")
    elif node.plan is not None and len(node.results) < node.plan:
        problems.append(f"{where}: missing results ({len(node.results)} of "
                        f"{node.plan} planned were reported)")
    elif node.plan is not None and len(node.results) > node.plan:
        problems.append(f"{where}: {len(node.results)} results but the plan "
                        f"(line {node.plan_line}) says {node.plan}")
    if node.summary is not None:
        passed, failed, skipped = _tally(node.results)
        s = node.summary
        if (s.passed, s.failed, s.skipped, s.total) != (passed, failed, skipped,
                                                        len(node.results)):
            problems.append(
                f"{where}: summary line {s.line_no} says pass:{s.passed} fail:{s.failed} "
                f"skip:{s.skipped} total:{s.total}, but the results are pass:{passed} "
                f"fail:{failed} skip:{skipped} total:{len(node.results)}")
    for res in node.results:
        sub = res.subtest
        if sub is None:
            continue
        child_where = f"{where}.{res.name}" if node.depth else res.name
        _check_node(sub, child_where, problems)
        failed_children = sum(1 for r in sub.results if r.status is Status.FAIL)
        if res.status is Status.PASS and failed_children:
            problems.append(f"{child_where}: reported ok (line {res.line_no}) although "
                            f"{failed_children} of its subtests failed")


def _crash_reasons(log: ParsedLog, exit_status: int | None, timed_out: bool,
                   timeout: float | None) -> list[str]:
    """Why the run did not end as a finished test run should, or []."""
    reasons = []
    if timed_out:
        limit = f" after {timeout:g} s" if timeout is not None else ""
        reasons.append(f"timed out{limit} {log.running_at_end}")
    for stop in log.stops:
        reasons.append(f"bug check {stop.describe()} at line {stop.line_no}, {stop.running}")
    if not timed_out:
        if exit_status == EXIT_TRIPLE_FAULT:
            reasons.append(f"triple fault (QEMU exited 0) {log.running_at_end}")
        elif exit_status == EXIT_BUGCHECK:
            if not log.stops:
                reasons.append(f"bug check (QEMU exited {EXIT_BUGCHECK}) without a STOP line, "
                               f"{log.running_at_end}")
        elif exit_status is not None and exit_status < 0:
            reasons.append(f"QEMU died of signal {-exit_status}, {log.running_at_end}")
        elif exit_status != EXIT_DONE:
            shown = "none" if exit_status is None else exit_status
            reasons.append(f"QEMU exit status {shown}, expected {EXIT_DONE}, {log.running_at_end}")
    return reasons


def judge_test_run(text: str, *, exit_status: int | None, timed_out: bool = False,
                   timeout: float | None = None) -> TestRunVerdict:
    """Judge the serial log `text` of a `mode=test` boot that ended with QEMU exit status
    `exit_status` (None if it had to be killed) or was killed after `timeout` seconds
    (`timed_out`).  See TestRunVerdict for what the result holds."""
    log = parse_log(text)
    verdict = TestRunVerdict(running=log.running_at_end, death_specs=log.death_specs)
    crash = _crash_reasons(log, exit_status, timed_out, timeout)
    verdict.problems += crash
    if log.root is None:
        verdict.problems.append(f"no '{protocol.KTAP_HEADER}' line in the log")
        return verdict
    if not log.done and not crash:
        verdict.problems.append(f"the kernel never printed '{DONE_MARKER}'")
    verdict.problems += log.errors
    _check_node(log.root, "top level", verdict.problems)
    for node in log.open_nodes:
        where = ".".join(n.name or "<unnamed>" for n in log.open_nodes[:node.depth])
        if not crash:
            verdict.problems.append(f"{where}: no result line for this subtest")
        _check_node(node, where, verdict.problems)

    suites = [(r.name, r.subtest, r) for r in log.root.results]
    if log.open_nodes:
        suites.append((log.open_nodes[0].name or "<unnamed>", log.open_nodes[0], None))
    for name, node, res in suites:
        tally = SuiteTally(name)
        verdict.suites.append(tally)
        cases = node.results if node is not None else []
        for case in cases:
            reason = case.skip_reason if case.status is Status.SKIP else (
                f"not ok (line {case.line_no})" if case.status is Status.FAIL else "")
            verdict.cases.append(CaseOutcome(f"{name}.{case.name}", name, case.status,
                                             reason, case.diagnostics, case.line_no))
            tally.count(case.status)
        if res is None:
            continue
        any_failed = any(c.status is Status.FAIL for c in cases)
        if res.status is Status.FAIL and not any_failed:
            why = ("suite reported not ok with no case results" if not cases
                   else "suite reported not ok although none of its cases failed")
            verdict.cases.append(CaseOutcome(name, name, Status.FAIL,
                                             f"{why} (line {res.line_no})",
                                             res.diagnostics, res.line_no))
            tally.count(Status.FAIL)
        elif res.status is Status.SKIP and not cases:
            verdict.cases.append(CaseOutcome(name, name, Status.SKIP, res.skip_reason,
                                             res.diagnostics, res.line_no))
            tally.count(Status.SKIP)
    return verdict


@dataclass
class DeathVerdict:
    """The verdict on one `mode=death` boot: passed, or the reasons it did not."""
    name: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    stop: StopLine | None = None


def judge_death_run(text: str, spec: DeathSpec, *, exit_status: int | None,
                    timed_out: bool = False, timeout: float | None = None) -> DeathVerdict:
    """Judge the serial log `text` of the death boot for `spec`.  It passes only if the
    log holds exactly one well-formed STOP line, its code is spec.code and its parameters
    are those spec gives, it matches every `# death-expect:` line before it (all of them
    well-formed), and QEMU exited 35."""
    log = parse_log(text)
    lines = split_lines(text)
    reasons = []
    if timed_out:
        limit = f" after {timeout:g} s" if timeout is not None else ""
        reasons.append(f"timed out{limit}")
    if spec.name in log.death_returned:
        reasons.append("the case returned without a bug check")
    if not log.stops:
        if spec.name not in log.death_returned and not timed_out:
            reasons.append(f"no bug check (no '{_STOP_MARK}' line)")
    elif len(log.stops) > 1:
        lines = ", ".join(str(s.line_no) for s in log.stops)
        reasons.append(f"{len(log.stops)} STOP lines (lines {lines}), expected exactly one")
    stop = log.stops[0] if log.stops else None
    if stop is not None and stop.malformed:
        reasons.append(stop.describe())
    elif stop is not None:
        reasons += _expectation_mismatches(spec.code, spec.params, stop, "")
        for expect in log.death_expects:
            if expect.line_no > stop.line_no:
                reasons.append(f"death-expect line {expect.line_no} comes after the STOP line")
            else:
                reasons += _expectation_mismatches(
                    expect.code, expect.params, stop,
                    f" (death-expect line {expect.line_no})")
                got = _panic_message(lines, stop) if expect.panic is not None else None
                if expect.panic is not None and got != expect.panic:
                    reasons.append(f"the line before the STOP line is {got!r}, expected the "
                                   f"PANIC {expect.panic!r} (death-expect line "
                                   f"{expect.line_no})")
    reasons += log.bad_death_expects
    if not timed_out and exit_status != EXIT_BUGCHECK:
        how = {EXIT_DONE: "the kernel finished normally",
               EXIT_TRIPLE_FAULT: "triple fault"}.get(exit_status, "crash or QEMU error")
        reasons.append(f"QEMU exit status {exit_status} ({how}), "
                       f"expected {EXIT_BUGCHECK} (bug check)")
    return DeathVerdict(spec.name, not reasons, reasons, stop)
