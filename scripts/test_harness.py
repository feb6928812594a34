"""test_harness.py — unit tests of the harness, none of which starts QEMU.

They prove that ktap.py's verdicts accept a good log and reject every kind of bad one
(crash, timeout, triple fault, missing plan or results, wrong bug check, ...), and check
what of the death tests' save-and-restore can be checked without QEMU: the QMP exchange
that saves the death server (against a fake QMP server on a unix socket), the command
lines of the saved machine and of its copies, what is typed on a copy's serial port, and
when harness.py falls back from restoring to booting (with a stand-in for its Booter).
harness.py runs them in-process before it boots anything; they also run on their own:

    python3 scripts/test_harness.py        (or: python3 -m unittest scripts/test_harness.py)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import threading
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cheader  # noqa: E402
import bench  # noqa: E402
import check_layout  # noqa: E402
import diskcheck  # noqa: E402
import harness  # noqa: E402
import ktap  # noqa: E402
import protocol  # noqa: E402
import qemu  # noqa: E402
import run  # noqa: E402
from ktap import DeathSpec, Status  # noqa: E402


def log(text: str, crlf: bool = True) -> str:
    """A canned log: `text` dedented, with the serial port's \\r\\n line ends."""
    text = textwrap.dedent(text).lstrip("\n")
    return text.replace("\n", "\r\n") if crlf else text


CLEAN = log("""\
    KTAP version 1
    # death-test: seh.unhandled_fault code=0x0000001E
    # death-test: irql.lower_above code=0x0000000A p1=0x0000000000000002
    1..2
        KTAP version 1
        # Subtest: seh
        1..3
        ok 1 fault_in_try
        ok 2 nested
        ok 3 raise_custom
    # seh: pass:3 fail:0 skip:0 total:3
    ok 1 seh
        KTAP version 1
        # Subtest: irql
        1..2
        ok 1 raise_lower
        ok 2 dispatch_level
    # irql: pass:2 fail:0 skip:0 total:2
    ok 2 irql
    # mdlab: tests done
    """)

NOT_OK = log("""\
    KTAP version 1
    1..1
        KTAP version 1
        # Subtest: seh
        1..3
        ok 1 fault_in_try
        # nested: EXPECTATION FAILED at tests/seh_test.c:42
        # expected depth == 2, got 3
        not ok 2 nested
        ok 3 raise_custom
    # seh: pass:2 fail:1 skip:0 total:3
    not ok 1 seh
    # mdlab: tests done
    """)

# The kernel bug-checks in the second case of the first suite: the STOP screen, then
# nothing more; QEMU exits 35.
CRASH_MID_SUITE = log("""\
    KTAP version 1
    1..2
        KTAP version 1
        # Subtest: seh
        1..3
        ok 1 fault_in_try
    *** STOP: 0x0000001E (0xC0000005,0xFFFFFFFF80001234,0x0000000000000000,0x0000000000000000)
    KMODE_EXCEPTION_NOT_HANDLED
    """)

DEATH_OK = log("""\
    mdlab: running death case seh.unhandled_fault
    *** STOP: 0x0000001E (0xC0000005,0xFFFFFFFF80001234,0x0000000000000000,0x0000000000000000)
    KMODE_EXCEPTION_NOT_HANDLED
    """)

DEATH_P1 = log("""\
    *** STOP: 0x0000000A (0x0000000000000002,0x0,0x0,0xFFFFFFFF80005678)
    IRQL_NOT_LESS_OR_EQUAL
    """)

DEATH_P4 = log("""\
    # death: running mdl.locked_left, expecting bug check 0x000000CB
    # death-expect: code=0x000000CB p3=0xFFFF800000123000 p4=0x0000000000000003
    *** STOP: 0x000000CB (0xFFFFFFFF80001234,0x0000000000000000,0xFFFF800000123000,0x0000000000000003)
    DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS
    """)


class CleanPass(unittest.TestCase):
    def test_clean_pass(self):
        v = ktap.judge_test_run(CLEAN, exit_status=33)
        self.assertEqual(v.problems, [])
        self.assertTrue(v.ok)
        self.assertEqual((v.count(Status.PASS), v.count(Status.FAIL), v.count(Status.SKIP)),
                         (5, 0, 0))
        self.assertEqual([c.name for c in v.cases][:2], ["seh.fault_in_try", "seh.nested"])
        self.assertEqual([(s.name, s.passed) for s in v.suites], [("seh", 3), ("irql", 2)])

    def test_death_specs_listed(self):
        v = ktap.judge_test_run(CLEAN, exit_status=33)
        self.assertEqual(v.death_specs, [DeathSpec("seh.unhandled_fault", 0x1E, None),
                                         DeathSpec("irql.lower_above", 0xA, 2)])

    def test_death_spec_scanned_from_one_raw_line(self):
        spec = ktap.scan_death_specs("\x1b[0m# death-test: a.b code=0x00000001 p1=0x5\r")
        self.assertEqual(spec, DeathSpec("a.b", 1, 5))
        self.assertIsNone(ktap.scan_death_specs("ok 1 a"))

    def test_death_spec_with_all_four_parameters(self):
        spec = ktap.scan_death_specs("# death-test: a.b code=0x000000C4 p1=0x70 p2=0xF "
                                     "p3=0xFFFF800000001000 p4=0x0")
        self.assertEqual(spec, DeathSpec("a.b", 0xC4, 0x70, 0xF, 0xFFFF800000001000, 0))
        spec = ktap.scan_death_specs("# death-test: a.b code=0x000000C4 p3=0x5")
        self.assertEqual(spec.params, (None, None, 5, None))
        self.assertEqual(spec.describe(), "code=0x000000C4 p3=0x5")
        self.assertIsNone(ktap.scan_death_specs("# death-test: a.b code=0x1 p4=12"))

    def test_plain_lf_log(self):
        v = ktap.judge_test_run(CLEAN.replace("\r\n", "\n"), exit_status=33)
        self.assertTrue(v.ok, v.problems)


class FailedCases(unittest.TestCase):
    def test_not_ok_case_fails_with_diagnostics(self):
        v = ktap.judge_test_run(NOT_OK, exit_status=33)
        self.assertFalse(v.ok)
        self.assertEqual(v.problems, [])
        failed = [c for c in v.cases if c.status is Status.FAIL]
        self.assertEqual([c.name for c in failed], ["seh.nested"])
        self.assertIn("# expected depth == 2, got 3", failed[0].diagnostics)

    def test_suite_ok_with_failed_case_is_inconsistent(self):
        v = ktap.judge_test_run(NOT_OK.replace("not ok 1 seh", "ok 1 seh"), exit_status=33)
        self.assertTrue(any("reported ok" in p for p in v.problems), v.problems)

    def test_suite_not_ok_without_failed_case_counts_as_failure(self):
        text = CLEAN.replace("ok 2 irql", "not ok 2 irql")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertFalse(v.ok)
        self.assertEqual([c.name for c in v.cases if c.status is Status.FAIL], ["irql"])

    def test_result_numbering_checked(self):
        v = ktap.judge_test_run(CLEAN.replace("ok 2 nested", "ok 3 nested"), exit_status=33)
        self.assertTrue(any("numbered 3" in p and "expected 2" in p for p in v.problems))


class Crashes(unittest.TestCase):
    def test_crash_mid_suite_names_running_case(self):
        v = ktap.judge_test_run(CRASH_MID_SUITE, exit_status=35)
        self.assertFalse(v.ok)
        text = "\n".join(v.problems)
        self.assertIn("bug check 0x0000001E KMODE_EXCEPTION_NOT_HANDLED", text)
        self.assertIn("in seh case #2 of 3 (the case after seh.fault_in_try)", text)
        self.assertIn("seh: missing results (1 of 3", text)
        self.assertIn("top level: missing results (0 of 2", text)
        self.assertEqual([c.name for c in v.cases], ["seh.fault_in_try"])

    def test_stop_line_fails_even_with_exit_33(self):
        text = CLEAN.replace("# mdlab: tests done",
                             "*** STOP: 0x00000050 (0x1,0x0,0x0,0x0)\r\nPAGE_FAULT\r\n"
                             "# mdlab: tests done")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(any("bug check 0x00000050" in p for p in v.problems), v.problems)

    def test_timeout_names_running_case(self):
        truncated = CLEAN[:CLEAN.index("ok 2 dispatch_level")]
        v = ktap.judge_test_run(truncated, exit_status=None, timed_out=True, timeout=240)
        self.assertFalse(v.ok)
        self.assertIn("timed out after 240 s in irql case #2 of 2 "
                      "(the case after irql.raise_lower)", v.problems[0])
        self.assertFalse(any("tests done" in p for p in v.problems))

    def test_timeout_before_any_output(self):
        v = ktap.judge_test_run("BdsDxe: loading Boot0001\r\n", exit_status=None,
                                timed_out=True, timeout=5)
        self.assertIn("timed out after 5 s", v.problems[0])
        self.assertIn("no 'KTAP version 1' line in the log", v.problems)

    def test_triple_fault(self):
        truncated = CLEAN[:CLEAN.index("    ok 2 nested")]
        v = ktap.judge_test_run(truncated, exit_status=0)
        self.assertFalse(v.ok)
        self.assertIn("triple fault (QEMU exited 0) in seh case #2 of 3",
                      v.problems[0])

    def test_other_exit_status(self):
        v = ktap.judge_test_run(CLEAN, exit_status=1)
        self.assertTrue(any("QEMU exit status 1, expected 33" in p for p in v.problems))

    def test_exit_35_without_stop_line(self):
        v = ktap.judge_test_run(CLEAN, exit_status=35)
        self.assertTrue(any("without a STOP line" in p for p in v.problems))

    def test_missing_done_marker(self):
        v = ktap.judge_test_run(CLEAN.replace("# mdlab: tests done", ""), exit_status=33)
        self.assertEqual(v.problems, ["the kernel never printed '# mdlab: tests done'"])


class Plans(unittest.TestCase):
    def test_missing_top_level_plan(self):
        v = ktap.judge_test_run(CLEAN.replace("1..2\r\n    KTAP", "    KTAP", 1),
                                exit_status=33)
        self.assertIn("top level: missing plan (no '1..N' line)", v.problems)

    def test_missing_suite_plan(self):
        v = ktap.judge_test_run(CLEAN.replace("    1..3\r\n", ""), exit_status=33)
        self.assertIn("seh: missing plan (no '1..N' line)", v.problems)

    def test_fewer_results_than_plan(self):
        v = ktap.judge_test_run(CLEAN.replace("    1..2\r\n", "    1..3\r\n"),
                                exit_status=33)
        self.assertIn("irql: missing results (2 of 3 planned were reported)", v.problems)
        self.assertFalse(v.ok)

    def test_fewer_suites_than_plan(self):
        text = CLEAN.replace("1..2", "1..3", 1)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertIn("top level: missing results (2 of 3 planned were reported)", v.problems)

    def test_more_results_than_plan(self):
        v = ktap.judge_test_run(CLEAN.replace("    1..3\r\n", "    1..2\r\n"),
                                exit_status=33)
        self.assertTrue(any("seh: 3 results but the plan" in p for p in v.problems))

    def test_suite_without_result_line(self):
        text = CLEAN.replace("ok 2 irql\r\n", "")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertIn("irql: no result line for this subtest", v.problems)


class Junk(unittest.TestCase):
    FIRMWARE = ("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001 "
                "\"UEFI QEMU HARDDISK QM00001 \" from PciRoot(0x0)/Pci(0x1F,0x2)\r\r\n"
                "BdsDxe: starting Boot0001\r\n\x1b[0m\x1b[37m\x1b[40mmdlab: loader\r\n")

    def test_firmware_junk_and_crlf_before_ktap(self):
        v = ktap.judge_test_run(self.FIRMWARE + CLEAN, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        self.assertEqual(v.count(Status.PASS), 5)

    def test_junk_on_the_header_line(self):
        v = ktap.judge_test_run("\x1b[0m\x1b[40mgarbage KTAP version 1\r\n" +
                                CLEAN.split("\r\n", 1)[1], exit_status=33)
        self.assertTrue(v.ok, v.problems)

    def test_escapes_inside_kernel_lines(self):
        text = CLEAN.replace("ok 1 fault_in_try", "\x1b[32mok 1 fault_in_try\x1b[0m")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)

    def test_clean_line(self):
        self.assertEqual(ktap.clean_line("\x1b[1;31m    not ok 2 x\x1b[0m\r"), "    not ok 2 x")
        self.assertEqual(ktap.clean_line("[    1.234567] ok 1 a"), "ok 1 a")


class Skips(unittest.TestCase):
    def test_skip_counting(self):
        text = CLEAN.replace("ok 3 raise_custom", "ok 3 raise_custom # SKIP needs SMAP")
        text = text.replace("# seh: pass:3 fail:0 skip:0", "# seh: pass:2 fail:0 skip:1")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        skipped = [c for c in v.cases if c.status is Status.SKIP]
        self.assertEqual([(c.name, c.reason) for c in skipped],
                         [("seh.raise_custom", "needs SMAP")])
        self.assertEqual(v.suites[0].skipped, 1)

    def test_skipped_suite_without_cases(self):
        text = log("""\
            KTAP version 1
            1..1
            ok 1 smap # SKIP CPU has no SMAP
            # mdlab: tests done
            """)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        self.assertEqual([(c.name, c.status) for c in v.cases], [("smap", Status.SKIP)])


class Summaries(unittest.TestCase):
    def test_summary_line_mismatch(self):
        text = CLEAN.replace("# irql: pass:2 fail:0 skip:0 total:2",
                             "# irql: pass:2 fail:1 skip:0 total:3")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertFalse(v.ok)
        self.assertTrue(any(p.startswith("irql: summary line") for p in v.problems),
                        v.problems)

    def test_summary_for_unknown_suite(self):
        text = CLEAN.replace("# irql: pass", "# irqx: pass")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(any("'irqx' matches no subtest" in p for p in v.problems))

    def test_malformed_death_test_line(self):
        text = CLEAN.replace("code=0x0000001E", "code=1E")
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(any("malformed death-test line" in p for p in v.problems))


class LinuxCompat(unittest.TestCase):
    """Logs as Linux's KUnit prints them, unchanged, are accepted."""

    def test_linux_ktap_with_timestamps_and_params(self):
        text = log("""\
            [    0.312000] KTAP version 1
            [    0.312001] 1..1
            [    0.312002]     KTAP version 1
            [    0.312003]     # Subtest: example
            [    0.312004]     # module: kunit_example_test
            [    0.312005]     1..3
            [    0.312006]     # example_simple_test: initializing
            [    0.312007]     ok 1 example_simple_test
            [    0.312008]     ok 2 example_skip_test # SKIP this test should be skipped
            [    0.312009]         KTAP version 1
            [    0.312010]         # Subtest: example_params_test
            [    0.312011]         ok 1 example value 3
            [    0.312012]         ok 2 example value 2 # SKIP unsupported
            [    0.312013]     # example_params_test: pass:1 fail:0 skip:1 total:2
            [    0.312014]     ok 3 example_params_test
            [    0.312015] # example: pass:2 fail:0 skip:1 total:3
            [    0.312016] # Totals: pass:2 fail:0 skip:2 total:4
            [    0.312017] ok 1 example
            # mdlab: tests done
            """, crlf=False)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        self.assertEqual([c.name for c in v.cases], ["example.example_simple_test",
                                                     "example.example_skip_test",
                                                     "example.example_params_test"])

    def test_old_tap14_style(self):
        text = log("""\
            TAP version 14
            1..1
                # Subtest: example
                1..2
                ok 1 - example_simple_test
                not ok 2 - example_failing_test
            not ok 1 - example
            # mdlab: tests done
            """, crlf=False)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertEqual(v.problems, [])
        self.assertEqual([(c.name, c.status) for c in v.cases],
                         [("example.example_simple_test", Status.PASS),
                          ("example.example_failing_test", Status.FAIL)])


    def test_tab_and_two_space_indentation(self):
        for indent in ("\t", "  "):
            text = CLEAN.replace("\r\n    ", "\r\n" + indent)
            v = ktap.judge_test_run(text, exit_status=33)
            self.assertTrue(v.ok, (repr(indent), v.problems))
            self.assertEqual(v.count(Status.PASS), 5)


class UserOutput(unittest.TestCase):
    """A process's SYS_DEBUG_PRINT lines (protocol.USER_FORMAT) change no verdict, whatever
    marker they hold: the harness believes only the kernel's own lines."""
    FORGED = [
        "*** STOP: 0x000000D1 (0x0000000000000000,0x0000000000000002,0x0000000000000000,"
        "0xFFFFFFFF80001234)",
        "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        "ok 2 nested",
        "not ok 3 raise_custom",
        "not ok 1 seh",
        "1..9",
        "KTAP version 1",
        "# Subtest: forged",
        "# seh: pass:0 fail:3 skip:0 total:3",
        "# death-test: seh.forged code=0x000000D1",
        "# death-expect: code=0x000000D1 p1=0x0",
        "# death: seh.unhandled_fault returned without a bug check",
        "# mdlab: tests done",
    ]

    @staticmethod
    def user(text: str, pid: int = 4, name: str = "agent") -> str:
        return protocol.USER_MARK + f"{pid} {name}| {text}"

    def forged_lines(self, indent: str) -> str:
        return "".join(indent + self.user(f) + "\r\n" for f in self.FORGED)

    def test_user_lines_inside_a_case_change_nothing(self):
        # As the kernel prints them while a case runs: after the case's "    # " prefix.
        text = CLEAN.replace("    ok 2 nested\r\n",
                             self.forged_lines("    # ") + "    ok 2 nested\r\n")
        self.assertNotEqual(text, CLEAN)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        self.assertEqual(v.problems, [])
        self.assertEqual((v.count(Status.PASS), v.count(Status.FAIL)), (5, 0))
        self.assertEqual([c.name for c in v.cases],
                         [c.name for c in ktap.judge_test_run(CLEAN, exit_status=33).cases])
        self.assertEqual(len(v.death_specs), 2)
        nested = [c for c in v.cases if c.name == "seh.nested"][0]
        self.assertIn("# " + self.user(self.FORGED[0]), nested.diagnostics)

    def test_bare_user_lines_change_nothing(self):
        # Without the case prefix too, at any indentation, before and after the header.
        text = self.forged_lines("") + CLEAN.replace("ok 1 seh\r\n", "ok 1 seh\r\n"
                                                      + self.forged_lines("    "))
        self.assertIn(self.forged_lines("    "), text)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertTrue(v.ok, v.problems)
        self.assertEqual((v.count(Status.PASS), v.count(Status.FAIL)), (5, 0))
        self.assertEqual(ktap.parse_log(text).stops, [])

    def test_a_forged_done_marker_does_not_hide_a_crash(self):
        cut = CLEAN.index(protocol.TESTS_DONE)
        text = CLEAN[:cut] + self.user(protocol.TESTS_DONE) + "\r\n"
        self.assertTrue(ktap.judge_test_run(CLEAN[:cut] + protocol.TESTS_DONE, exit_status=33).ok)
        v = ktap.judge_test_run(text, exit_status=33)
        self.assertFalse(v.ok)

    def test_a_forged_stop_line_fails_no_death_run_and_passes_none(self):
        forged = self.user(DEATH_OK.splitlines()[1])
        v = ktap.judge_death_run(forged + "\r\n" + DEATH_OK, DeathRuns.SPEC, exit_status=35)
        self.assertTrue(v.passed, v.reasons)
        v = ktap.judge_death_run("# death: running seh.unhandled_fault\r\n" + forged + "\r\n",
                                 DeathRuns.SPEC, exit_status=35)
        self.assertFalse(v.passed)
        expect = self.user("# death-expect: code=0x0000001E p1=0x1")
        v = ktap.judge_death_run(expect + "\r\n" + DEATH_OK, DeathRuns.SPEC, exit_status=35)
        self.assertTrue(v.passed, v.reasons)

    def test_a_forged_announcement_starts_no_death_test(self):
        self.assertIsNone(ktap.scan_death_specs(
            "    # " + self.user("# death-test: seh.forged code=0x000000D1") + "\r"))
        self.assertIsNone(ktap.scan_death_specs(self.user("# death-test: a.b code=0x1")))

    def test_the_kernel_line_format_is_recognised(self):
        self.assertTrue(ktap.is_user_line(protocol.USER_FORMAT.replace("%u", "4")
                                          .replace("%s", "agent", 1).replace("%s", "hi")))
        self.assertTrue(ktap.is_user_line("    # " + self.user("x")))
        self.assertFalse(ktap.is_user_line("    # [4 agent] ended by #GP"))
        self.assertFalse(ktap.is_user_line("ok 1 " + protocol.USER_MARK))


class Prompts(unittest.TestCase):
    """run.py counts the monitor's prompts, split across reads or not, but none a user
    process printed."""
    P = protocol.MONITOR_PROMPT

    def count(self, pieces) -> int:
        c = run.PromptCounter()
        return sum(c.feed(p.encode()) for p in pieces)

    def test_prompts_counted_once_however_split(self):
        text = f"banner\r\n{self.P}cpu\r\nCPU: x\r\n{self.P}"
        self.assertEqual(self.count([text]), 2)
        for cut in range(1, len(text)):
            self.assertEqual(self.count([text[:cut], text[cut:]]), 2, cut)
        self.assertEqual(self.count(list(text)), 2)

    def test_a_user_line_holding_the_prompt_does_not_count(self):
        user = protocol.USER_MARK + "4 agent| " + self.P
        text = f"{self.P}tests\r\n    # {user}\r\n{user}\r\n"
        self.assertEqual(self.count([text]), 1)
        self.assertEqual(self.count(list(text)), 1)


class ResultsForMachines(unittest.TestCase):
    """results.ktap and JUNIT=path hold every counted outcome: a KTAP parser (ours, which
    reads as Linux's does) and an XML parser count the closing line's total."""
    O = harness.Outcome
    OUTCOMES = [O("case", "mdl_map.a", Status.PASS), O("case", "mdl_map.b", Status.FAIL, ["why"]),
                O("case", "pool.c", Status.SKIP, ["no PAT"]), O("death", "mdl_map.d", Status.PASS),
                O("death", "pool.e", Status.FAIL, ["no STOP"]), O("unit", "Plans.test_x", Status.PASS),
                O("layout", "every file listed", Status.PASS),
                O("run", "test selection", Status.FAIL, ["no test matches"])]

    def test_ktap_counts_what_the_closing_line_counts(self):
        text = harness.ktap_text(self.OUTCOMES) + protocol.TESTS_DONE + "\n"
        v = ktap.judge_test_run(text, exit_status=qemu.EXIT_DONE)
        self.assertEqual(v.problems, [])
        self.assertEqual(len(v.cases), len(self.OUTCOMES))
        for st in Status:
            self.assertEqual(v.count(st), sum(o.status is st for o in self.OUTCOMES), st)
        self.assertEqual([t.name for t in v.suites], ["mdl_map", "pool", "death", "harness",
                                                      "layout", "run"])
        self.assertIn("# Totals: pass:4 fail:3 skip:1 total:8", text)

    def test_junit_has_a_testcase_per_outcome(self):
        import xml.etree.ElementTree as ET
        root = ET.fromstring(harness.junit_text(self.OUTCOMES))
        self.assertEqual(root.get("tests"), "8")
        self.assertEqual(root.get("failures"), "3")
        self.assertEqual(len(root.findall("./testsuite/testcase")), 8)
        failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
        self.assertEqual(failed, ["b", "pool.e", "test selection"])
        self.assertEqual(root.find("./testsuite[@name='pool']/testcase/skipped").get("message"),
                         "no PAT")


class RunArguments(unittest.TestCase):
    """make run passes CMD and BOOT through the environment: they arrive as typed, $ and
    backticks included; an empty variable is no --cmd (an interactive run)."""

    def parse(self, env: dict) -> object:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        esp = d / "esp.img"
        esp.write_bytes(b"")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return run.parse_args(["--esp", str(esp), "--cmd-env", "C", "--boot-env", "B"])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_cmd_and_boot_arrive_intact(self):
        args = self.parse({"C": "eb buf 41; echo $HOME `id` $(x)", "B": "syspte=262144 verifier=1"})
        self.assertEqual(args.cmd, "eb buf 41; echo $HOME `id` $(x)")
        self.assertEqual(args.boot, "syspte=262144 verifier=1")

    def test_empty_variables_mean_none(self):
        args = self.parse({"C": "", "B": " "})
        self.assertIsNone(args.cmd)
        self.assertEqual(args.boot, "")


class FailedCommands(unittest.TestCase):
    """run.py counts the kernel's "command failed" lines (a scripted run then exits 1), but
    none a user process printed."""
    F = protocol.MONITOR_FAILED

    def test_failed_lines_are_counted(self):
        lines = [f"{self.F} nosuch".encode(), b"mdlab> cpu", f"\r{self.F} pte zz".encode()]
        self.assertEqual(run.count_failures(lines), 2)

    def test_a_user_line_saying_it_does_not_count(self):
        user = f"{protocol.USER_MARK}4 agent| {self.F} x".encode()
        self.assertEqual(run.count_failures([user, b"    # " + user]), 0)


class DeathRuns(unittest.TestCase):
    SPEC = DeathSpec("seh.unhandled_fault", 0x1E)

    def test_death_pass(self):
        v = ktap.judge_death_run(DEATH_OK, self.SPEC, exit_status=35)
        self.assertTrue(v.passed, v.reasons)
        self.assertEqual(v.stop.name, "KMODE_EXCEPTION_NOT_HANDLED")

    def test_death_pass_with_p1(self):
        v = ktap.judge_death_run(DEATH_P1, DeathSpec("irql.lower_above", 0xA, 2),
                                 exit_status=35)
        self.assertTrue(v.passed, v.reasons)

    def test_death_wrong_code(self):
        v = ktap.judge_death_run(DEATH_P1, self.SPEC, exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["bug check code 0x0000000A, expected 0x0000001E"])

    def test_death_wrong_p1(self):
        v = ktap.judge_death_run(DEATH_P1, DeathSpec("irql.lower_above", 0xA, 3),
                                 exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["bug check parameter 1 is 0x2, expected 0x3"])

    def test_death_all_parameters_match(self):
        spec = DeathSpec("irql.lower_above", 0xA, 2, 0, 0, 0xFFFFFFFF80005678)
        v = ktap.judge_death_run(DEATH_P1, spec, exit_status=35)
        self.assertTrue(v.passed, v.reasons)

    def test_death_wrong_p3(self):
        spec = DeathSpec("irql.lower_above", 0xA, 2, 0, 1, 0xFFFFFFFF80005678)
        v = ktap.judge_death_run(DEATH_P1, spec, exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["bug check parameter 3 is 0x0, expected 0x1"])

    def test_death_missing_keys_not_compared(self):
        for spec in (DeathSpec("irql.lower_above", 0xA),
                     DeathSpec("irql.lower_above", 0xA, p2=0),
                     DeathSpec("irql.lower_above", 0xA, p4=0xFFFFFFFF80005678)):
            v = ktap.judge_death_run(DEATH_P1, spec, exit_status=35)
            self.assertTrue(v.passed, (spec, v.reasons))

    def test_death_expect_line_honoured(self):
        spec = DeathSpec("mdl.locked_left", 0xCB)
        v = ktap.judge_death_run(DEATH_P4, spec, exit_status=35)
        self.assertTrue(v.passed, v.reasons)
        wrong = DEATH_P4.replace("p3=0xFFFF800000123000", "p3=0xFFFF800000124000")
        v = ktap.judge_death_run(wrong, spec, exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["bug check parameter 3 is 0xFFFF800000123000, expected "
                                     "0xFFFF800000124000 (death-expect line 2)"])

    def test_death_expect_code_must_match(self):
        wrong = DEATH_P4.replace("death-expect: code=0x000000CB", "death-expect: code=0x00000076")
        v = ktap.judge_death_run(wrong, DeathSpec("mdl.locked_left", 0xCB), exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["bug check code 0x000000CB, expected 0x00000076 "
                                     "(death-expect line 2)"])

    def test_death_expect_and_announcement_both_judged(self):
        v = ktap.judge_death_run(DEATH_P4, DeathSpec("mdl.locked_left", 0xCB, p4=4),
                                 exit_status=35)
        self.assertEqual(v.reasons, ["bug check parameter 4 is 0x3, expected 0x4"])

    def test_death_expect_malformed_fails(self):
        bad = DEATH_P4.replace("p4=0x0000000000000003", "p4=3")
        v = ktap.judge_death_run(bad, DeathSpec("mdl.locked_left", 0xCB), exit_status=35)
        self.assertFalse(v.passed)
        self.assertTrue(any("malformed death-expect line 2" in r for r in v.reasons), v.reasons)

    def test_death_expect_panic_message(self):
        text = log("""\
            # death: running process.attached, expecting bug check 0x4D440001
            # death-expect: code=0x4D440001 panic=PsDestroyProcess: agent (pid 4) has 1 attaches

            PsDestroyProcess: agent (pid 4) has 1 attaches

            *** STOP: 0x4D440001 (0xFFFFFFFF80015CD2,0x0000000000000000,0x0000000000000000,0x0000000000000000)
            MDLAB_INTERNAL_ERROR
            """)
        spec = DeathSpec("process.attached", 0x4D440001)
        v = ktap.judge_death_run(text, spec, exit_status=35)
        self.assertTrue(v.passed, v.reasons)
        other = text.replace("\r\nPsDestroyProcess: agent (pid 4) has 1 attaches\r\n",
                             "\r\nPsDestroyProcess: agent (pid 4) is running on CPU 1\r\n")
        v = ktap.judge_death_run(other, spec, exit_status=35)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["the line before the STOP line is 'PsDestroyProcess: agent "
                                     "(pid 4) is running on CPU 1', expected the PANIC "
                                     "'PsDestroyProcess: agent (pid 4) has 1 attaches' "
                                     "(death-expect line 2)"])
        empty = text.replace("panic=PsDestroyProcess: agent (pid 4) has 1 attaches", "panic= ")
        v = ktap.judge_death_run(empty, spec, exit_status=35)
        self.assertTrue(any("panic= needs the message" in r for r in v.reasons), v.reasons)

    def test_death_expect_after_stop_fails(self):
        lines = DEATH_P4.split("\r\n")
        late = "\r\n".join([lines[0], lines[2], lines[3], lines[1], ""])
        v = ktap.judge_death_run(late, DeathSpec("mdl.locked_left", 0xCB), exit_status=35)
        self.assertFalse(v.passed)
        self.assertIn("death-expect line 4 comes after the STOP line", v.reasons)

    def test_death_no_bug_check(self):
        text = log("""\
            # death: seh.unhandled_fault returned without a bug check
            """)
        v = ktap.judge_death_run(text, self.SPEC, exit_status=33)
        self.assertFalse(v.passed)
        self.assertIn("the case returned without a bug check", v.reasons)
        self.assertTrue(any("expected 35" in r for r in v.reasons))

    def test_death_silent_exit(self):
        v = ktap.judge_death_run("", self.SPEC, exit_status=33)
        self.assertIn("no bug check (no '*** STOP:' line)", v.reasons)

    def test_death_two_stop_lines(self):
        v = ktap.judge_death_run(DEATH_OK + DEATH_OK, self.SPEC, exit_status=35)
        self.assertFalse(v.passed)
        self.assertTrue(any("2 STOP lines" in r for r in v.reasons))

    def test_death_malformed_stop_line(self):
        text = DEATH_OK.replace("0x0000001E (0xC0000005", "0x1e (0xc0000005")
        v = ktap.judge_death_run(text, self.SPEC, exit_status=35)
        self.assertFalse(v.passed)
        self.assertTrue(any("malformed STOP line" in r for r in v.reasons))

    def test_death_right_code_but_triple_fault(self):
        v = ktap.judge_death_run(DEATH_OK, self.SPEC, exit_status=0)
        self.assertFalse(v.passed)
        self.assertTrue(any("triple fault" in r for r in v.reasons))

    def test_death_timeout(self):
        v = ktap.judge_death_run("BdsDxe: loading\r\n", self.SPEC, exit_status=None,
                                 timed_out=True, timeout=60)
        self.assertFalse(v.passed)
        self.assertEqual(v.reasons, ["timed out after 60 s"])


# --------------------------------------------------------------------- save and restore

class FakeQmpServer(threading.Thread):
    """A QMP server on a unix socket, in a thread: sends the greeting, then answers each
    command with what `respond(request)` returns (a list of messages; None closes the
    connection).  Keeps every request in `requests`."""

    def __init__(self, path: str, respond) -> None:
        super().__init__(daemon=True)
        self.respond, self.requests = respond, []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(5)

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn, conn.makefile("rwb") as f:
            try:
                f.write(b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2}}, '
                        b'"capabilities": []}}\r\n')
                f.flush()
                for line in f:
                    request = json.loads(line)
                    self.requests.append(request)
                    replies = self.respond(request)
                    if replies is None:
                        return
                    for message in replies:
                        if "return" in message or "error" in message:
                            message = dict(message, id=request.get("id"))
                        f.write(json.dumps(message).encode() + b"\r\n")
                    f.flush()
            except OSError:
                pass

    def commands(self) -> list[str]:
        return [r["execute"] for r in self.requests]


def migration_script(statuses, fail_on=None):
    """A `respond` for FakeQmpServer: ordinary replies (with events in between), the
    query-migrate statuses in turn, an error reply to the command `fail_on`."""
    statuses = list(statuses)

    def respond(request):
        command = request["execute"]
        if command == fail_on:
            return [{"error": {"class": "GenericError", "desc": f"{command} refused"}}]
        if command == "stop":
            return [{"event": "STOP", "timestamp": {}}, {"return": {}}]
        if command == "query-migrate":
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            info = {"status": status, "ram": {"transferred": 1234}}
            if status == "failed":
                info["error-desc"] = "Unable to write to command"
            return [{"return": info}]
        if command == "quit":
            return None
        return [{"return": {}}]
    return respond


class QmpSave(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mdlab-test-qmp-")
        self.path = os.path.join(self.dir, "qmp.sock")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, respond) -> FakeQmpServer:
        server = FakeQmpServer(self.path, respond)
        server.start()
        self.addCleanup(server.listener.close)
        self.addCleanup(server.join, 5)
        return server

    def test_save_sequence(self):
        server = self.serve(migration_script(["setup", "active", "active", "completed"]))
        with qemu.Qmp.connect(self.path, timeout=5) as qmp:
            qmp.execute("qmp_capabilities")
            info = qemu.save_machine(qmp, "/tmp/a b/machine.state", timeout=5, poll=0.001)
            qmp.quit()
        self.assertEqual(info["status"], "completed")
        self.assertEqual(server.commands(), ["qmp_capabilities", "stop", "migrate"] +
                         ["query-migrate"] * 4 + ["quit"])
        migrate = server.requests[2]
        self.assertEqual(migrate["arguments"], {"uri": "exec:cat > '/tmp/a b/machine.state'"})
        ids = [r["id"] for r in server.requests]
        self.assertEqual(len(set(ids)), len(ids))

    def test_migration_failed(self):
        self.serve(migration_script(["active", "failed"]))
        with qemu.Qmp.connect(self.path, timeout=5) as qmp:
            qmp.execute("qmp_capabilities")
            with self.assertRaisesRegex(qemu.QmpError,
                                        "migration failed: Unable to write to command"):
                qemu.save_machine(qmp, "/tmp/state", timeout=5, poll=0.001)

    def test_migration_never_completes(self):
        self.serve(migration_script(["active"]))
        with qemu.Qmp.connect(self.path, timeout=5) as qmp:
            with self.assertRaisesRegex(qemu.QmpError, "not completed after 0.05 s "
                                                       r"\(status active\)"):
                qemu.save_machine(qmp, "/tmp/state", timeout=0.05, poll=0.001)

    def test_error_reply(self):
        self.serve(migration_script(["completed"], fail_on="stop"))
        with qemu.Qmp.connect(self.path, timeout=5) as qmp:
            with self.assertRaisesRegex(qemu.QmpError, "QMP stop: stop refused"):
                qemu.save_machine(qmp, "/tmp/state", timeout=5)

    def test_connection_closed(self):
        server = self.serve(lambda request: None)
        with qemu.Qmp.connect(self.path, timeout=5) as qmp:
            with self.assertRaisesRegex(qemu.QmpError, "closed the QMP connection"):
                qmp.execute("qmp_capabilities")
            qmp.quit()  # a closed connection is what quit expects
        self.assertEqual(server.commands(), ["qmp_capabilities"])

    def test_no_answer_times_out(self):
        self.serve(lambda request: [])
        with qemu.Qmp.connect(self.path, timeout=0.1) as qmp:
            with self.assertRaisesRegex(qemu.QmpError, "did not answer"):
                qmp.execute("qmp_capabilities")

    def test_no_socket(self):
        with self.assertRaisesRegex(qemu.QmpError, "cannot connect"):
            qemu.Qmp.connect(self.path, timeout=0.1)
        with self.assertRaisesRegex(qemu.QmpError, "cannot connect"):
            qemu.Qmp.connect(self.path, timeout=30, alive=lambda: False)


class RestoreCommands(unittest.TestCase):
    def setUp(self):
        saved_env = os.environ.get("QEMU")
        os.environ["QEMU"] = "qemu-system-x86_64"
        self.addCleanup(lambda: os.environ.__setitem__("QEMU", saved_env) if saved_env
                        is not None else os.environ.pop("QEMU", None))

    def test_copy_has_the_saved_machine_options(self):
        extra = "-d int -device virtio-rng-pci"
        server = qemu.build_command("/b/server/esp.img", "/b/server/vars.fd", kvm=False,
                                    serial=qemu.serial_to_file("/b/server.log"),
                                    control=qemu.save_options("/tmp/q/qmp.sock"),
                                    extra=extra)
        saved = harness.SavedMachine(Path("/b/server/machine.state"),
                                     Path("/b/server/esp.img"), Path("/b/server/vars.fd"),
                                     Path("/b/server.log"), 1.0, 1)
        copy = harness.restore_command(saved, Path("/b/case/esp.img"),
                                       Path("/b/case/vars.fd"), kvm=False, extra=extra)
        # Everything up to the serial options is the machine: it must be the same but
        # for the private copies of the two writable images.
        cut = server.index("-chardev")
        self.assertEqual(copy.index("-chardev"), cut)
        self.assertEqual([a.replace("/b/case/", "/b/server/") for a in copy[:cut]],
                         server[:cut])
        self.assertEqual(server[-4:], ["-d", "int", "-device", "virtio-rng-pci"])
        self.assertEqual(copy[-4:], server[-4:])
        self.assertEqual(copy[cut:-4], ["-chardev", "stdio,id=com1,signal=off",
                                        "-serial", "chardev:com1",
                                        "-incoming", "exec:cat /b/server/machine.state"])
        self.assertEqual(server[cut + 4:-4], [
            "-qmp", "unix:/tmp/q/qmp.sock,server=on,wait=off",
            "-global", "migration.store-global-state=off"])

    def test_paths_are_quoted(self):
        self.assertEqual(qemu.restore_options("/b/my build/s'tate"),
                         ["-incoming", "exec:cat '/b/my build/s'\"'\"'tate'"])
        self.assertEqual(qemu.migrate_uri("/b/x;rm -rf y"), "exec:cat > '/b/x;rm -rf y'")
        self.assertEqual(qemu.save_options("/t/a,b")[1], "unix:/t/a,,b,server=on,wait=off")

    def test_smp_from_the_makefile(self):
        saved = os.environ.get("MDLAB_SMP")
        self.addCleanup(lambda: os.environ.__setitem__("MDLAB_SMP", saved) if saved
                        is not None else os.environ.pop("MDLAB_SMP", None))
        serial = qemu.serial_to_file("/b/x.log")
        os.environ["MDLAB_SMP"] = "3"
        argv = qemu.build_command("/b/esp.img", "/b/vars.fd", kvm=False, serial=serial)
        self.assertEqual(argv[argv.index("-smp") + 1], "3")
        for bad in ("abc", "0", "-2", "4 "):
            os.environ["MDLAB_SMP"] = bad
            with self.assertRaisesRegex(qemu.QemuSetupError, "SMP="):
                qemu.build_command("/b/esp.img", "/b/vars.fd", kvm=False, serial=serial)

    def test_case_input(self):
        data = harness.death_case_input("seh.unhandled_fault_is_0x1e")
        self.assertTrue(data.endswith(b"\nseh.unhandled_fault_is_0x1e\n"))
        self.assertGreaterEqual(len(data) - len(data.lstrip(b"\n")), 2)
        for bad in ("", "a b", "a\nb", "x" * 128):
            with self.assertRaises(ValueError):
                harness.death_case_input(bad)
        harness.death_case_input("x" * 127)


def boot_result(text="", status=None, timed_out=False, stderr="", error=None):
    return harness.BootResult(status, timed_out, 1.0, text, stderr, error)


RESTORED_OK = log("""    # death: running seh.unhandled_fault, expecting bug check 0x0000001E
    *** STOP: 0x0000001E (0xC0000005,0xFFFFFFFF80001234,0x0000000000000000,0x0000000000000000)
    KMODE_EXCEPTION_NOT_HANDLED
    """)


class RestoreFailure(unittest.TestCase):
    def test_case_that_ran_is_judged(self):
        self.assertIsNone(harness.restore_failure(boot_result(RESTORED_OK, 35)))
        # Ran and went wrong: a test failure, not a restore failure.
        self.assertIsNone(harness.restore_failure(boot_result(
            "# death: running a.b, expecting bug check 0x0000001E\r\n", None, True)))
        self.assertIsNone(harness.restore_failure(boot_result("", 35)))

    def test_copy_that_never_ran(self):
        why = harness.restore_failure(boot_result(
            "", 1, stderr="qemu-system-x86_64: load of migration failed: Invalid argument"))
        self.assertIn("exited with status 1", why)
        self.assertIn("QEMU said: qemu-system-x86_64: load of migration failed", why)
        why = harness.restore_failure(boot_result(
            "\r\n", None, True, stderr="qemu-system-x86_64: terminating on signal 15"))
        self.assertEqual(why, "the restored machine printed nothing in 1 s")
        self.assertEqual(harness.restore_failure(boot_result(error="no space")), "no space")


class FakeBooter:
    """Stands in for harness.Booter: canned results, and a record of the calls."""

    def __init__(self, saved=True, restored=None, booted=None):
        self.saved, self.calls = saved, []
        self.restored = restored or boot_result(RESTORED_OK, 35)
        self.booted = booted or boot_result("BdsDxe: loading\r\n" + RESTORED_OK, 35)

    def save_server(self, cmdline, log, server_dir, timeout):
        self.calls.append(("save", cmdline))
        if not self.saved:
            raise harness.SaveError("QEMU exited with status 1 before the ready line")
        return harness.SavedMachine(server_dir / "machine.state", server_dir / "esp.img",
                                    server_dir / "vars.fd", log, 2.0, 50 << 20)

    def restore(self, saved, name, log, case_dir, timeout):
        self.calls.append(("restore", name))
        return self.restored

    def boot(self, cmdline, log, boot_dir, timeout, on_line=None, smp=None, disk=None):
        self.calls.append(("boot", cmdline))
        self.last_boot = {"smp": smp, "disk": disk}
        return self.booted


class DeathModes(unittest.TestCase):
    """harness.Harness.run_death: restore, boot, and the fallbacks between them."""
    SPEC = DeathSpec("seh.unhandled_fault", 0x1E)

    def harness(self, booter, mode="restore") -> harness.Harness:
        tmp = tempfile.mkdtemp(prefix="mdlab-test-harness-")
        self.addCleanup(shutil.rmtree, tmp, True)
        esp = Path(tmp, "esp.img")
        esp.write_bytes(b"")
        args = harness.parse_args(["--esp", str(esp), "--kernel", str(Path(tmp, "k.elf")),
                                   "--build-dir", tmp, "--death-mode", mode,
                                   "--cmdline-extra", "x=1"])
        h = harness.Harness(args)
        self.addCleanup(h.stop)
        h.booter = booter
        return h

    def run_deaths(self, h, *specs):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            outcomes = [h.run_death(spec) for spec in specs]
        return outcomes, out.getvalue()

    def test_default_mode_is_restore(self):
        tmp = tempfile.mkdtemp(prefix="mdlab-test-args-")
        self.addCleanup(shutil.rmtree, tmp, True)
        Path(tmp, "esp.img").write_bytes(b"")
        args = harness.parse_args(["--esp", str(Path(tmp, "esp.img")), "--kernel", "k"])
        self.assertEqual(args.death_mode, "restore")
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            harness.parse_args(["--esp", str(Path(tmp, "esp.img")), "--kernel", "k",
                                "--death-mode", "snapshot"])

    def test_restored_once_saved(self):
        booter = FakeBooter()
        h = self.harness(booter)
        spec2 = DeathSpec("irql.lower_above", 0x1E)
        (o1, o2), out = self.run_deaths(h, self.SPEC, spec2)
        self.assertEqual(booter.calls, [("save", "mode=death-server x=1"),
                                        ("restore", "seh.unhandled_fault"),
                                        ("restore", "irql.lower_above")])
        self.assertEqual((o1.status, o2.status), (Status.PASS, Status.PASS))
        self.assertIn("(restored)", o1.reasons[0])
        self.assertIn("machine saved", out)

    def test_restored_wrong_code_fails(self):
        h = self.harness(FakeBooter())
        (o,), _ = self.run_deaths(h, DeathSpec("seh.unhandled_fault", 0x50))
        self.assertEqual(o.status, Status.FAIL)
        self.assertIn("bug check code 0x0000001E, expected 0x00000050", o.reasons)

    def test_restored_case_that_returned_fails(self):
        text = log("""\
            # death: running seh.unhandled_fault, expecting bug check 0x0000001E
            # death: seh.unhandled_fault returned without a bug check
            """)
        booter = FakeBooter(restored=boot_result(text, 33))
        (o,), _ = self.run_deaths(self.harness(booter), self.SPEC)
        self.assertEqual(o.status, Status.FAIL)
        self.assertIn("the case returned without a bug check", o.reasons)
        self.assertNotIn("boot", [c[0] for c in booter.calls])

    def test_restored_timeout_fails_without_fallback(self):
        text = "# death: running seh.unhandled_fault, expecting bug check 0x0000001E\r\n"
        booter = FakeBooter(restored=boot_result(text, None, timed_out=True))
        (o,), _ = self.run_deaths(self.harness(booter), self.SPEC)
        self.assertEqual(o.status, Status.FAIL)
        self.assertTrue(o.reasons[0].startswith("timed out after 60 s"), o.reasons)
        self.assertNotIn("boot", [c[0] for c in booter.calls])

    def test_blkfault_suite_death_case_boots_on_the_blkfault_machine(self):
        booter = FakeBooter()
        h = self.harness(booter)
        spec = DeathSpec("pager_inpage.paged_pool_read_error_is_0x7a", 0x7A)
        text = RESTORED_OK.replace("seh.unhandled_fault", spec.name).replace("0x0000001E", "0x0000007A")
        booter.booted = boot_result(text, 35)
        (o, _main), _ = self.run_deaths(h, spec, self.SPEC)
        w, r, n = harness.BLKFAULT_WRITE, harness.BLKFAULT_READ, harness.BLKFAULT_COUNT
        # Booted (never restored from the main machine) with the blkfault machine's items
        # but its suites filter, its vCPUs and a blkdebug disk of its own; the main
        # machine's case is restored as before.
        self.assertEqual(booter.calls[0], ("boot", f"mode=death case={spec.name} "
                                                   f"blkfault={w},{r},{n} pagefile=1 x=1"))
        self.assertEqual([c[0] for c in booter.calls[1:]], ["save", "restore"])
        self.assertEqual(booter.last_boot["smp"], harness.EXTRA_MACHINES["blkfault"][0])
        self.assertEqual(harness.death_machine(spec.name), "blkfault")
        self.assertIsNone(harness.death_machine("pager.a_trimmed_page_touched_at_dispatch_level_is_0x0a"))
        self.assertIn("(booted on the blkfault machine)", o.reasons[0])
        self.assertEqual(o.status, Status.PASS, o.reasons)

    def test_save_failure_falls_back_to_boot(self):
        booter = FakeBooter(saved=False)
        h = self.harness(booter)
        (o1, o2), out = self.run_deaths(h, self.SPEC, self.SPEC)
        self.assertEqual(booter.calls, [("save", "mode=death-server x=1"),
                                        ("boot", "mode=death case=seh.unhandled_fault x=1"),
                                        ("boot", "mode=death case=seh.unhandled_fault x=1")])
        self.assertEqual(out.count("cannot save a booted machine (QEMU exited with status 1 "
                                   "before the ready line); booting each death test"), 1)
        self.assertEqual((o1.status, o2.status), (Status.PASS, Status.PASS))
        self.assertIn("(booted)", o1.reasons[0])

    def test_restore_failure_falls_back_to_boot(self):
        booter = FakeBooter(restored=boot_result("", 1, stderr="load of migration failed"))
        h = self.harness(booter)
        (o1, o2), out = self.run_deaths(h, self.SPEC, self.SPEC)
        self.assertEqual([c[0] for c in booter.calls], ["save", "restore", "boot", "boot"])
        self.assertEqual(out.count("restoring seh.unhandled_fault failed"), 1)
        self.assertIn("load of migration failed", h.restore_broken)
        self.assertEqual((o1.status, o2.status), (Status.PASS, Status.PASS))
        self.assertIn("booted after a failed restore", o1.reasons[0])
        self.assertEqual(o2.reasons[0], "bug check 0x0000001E in 1.0 s (booted)")

    def test_restored_and_booted_judge_death_expect_alike(self):
        spec = DeathSpec("mdl.locked_left", 0xCB, p1=0xFFFFFFFF80001234)
        wrong = DEATH_P4.replace("p4=0x0000000000000003", "p4=0x0000000000000004")
        for mode in ("restore", "boot"):
            for text, status in ((DEATH_P4, Status.PASS), (wrong, Status.FAIL)):
                booter = FakeBooter(restored=boot_result(text, 35),
                                    booted=boot_result(text, 35))
                (o,), _ = self.run_deaths(self.harness(booter, mode=mode), spec)
                self.assertEqual(o.status, status, (mode, o.reasons))
                self.assertEqual(booter.calls[-1][0], mode)
                if status is Status.FAIL:
                    self.assertIn("bug check parameter 4 is 0x3, expected 0x4 "
                                  "(death-expect line 2)", o.reasons)

    def test_boot_mode_never_saves(self):
        booter = FakeBooter()
        (o,), out = self.run_deaths(self.harness(booter, mode="boot"), self.SPEC)
        self.assertEqual(booter.calls, [("boot", "mode=death case=seh.unhandled_fault x=1")])
        self.assertEqual(o.status, Status.PASS)
        self.assertEqual(out, "")


class LayoutChecks(unittest.TestCase):
    """check_layout.py on a small tree made here (no git: every file counts as tracked)."""

    README = textwrap.dedent("""\
        # x
        ## Layout
        ```
        README.md         this
        kernel/           the machine
        kernel/a.c        a
        kernel/lab/       the lab
        kernel/lab/m.c    monitor
        mm/               mm
        mm/p.h            p
        ```
        """)

    def tree(self, files: dict[str, str]) -> Path:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        for name, text in {"README.md": self.README, **files}.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
        return d

    def verdicts(self, files: dict[str, str]) -> dict[str, list[str]]:
        return {c.name: c.problems for c in check_layout.run_checks(self.tree(files))}

    GOOD = {"kernel/a.c": '#include "mm/p.h"\n', "kernel/lab/m.c": '#include "kernel/lab/x.h"\n',
            "mm/p.h": "\n"}

    def test_good_tree_passes(self):
        self.assertEqual(self.verdicts(self.GOOD),
                         {"machine-includes-no-lab": [], "lab-through-public-headers": [],
                          "readme-lists-every-file": [], "no-outside-references": [],
                          "smap-sites-only": []})

    def test_raw_stac_or_clac_outside_the_macros_fails(self):
        v = self.verdicts({**self.GOOD, "kernel/a.c": 'f() { __asm__ volatile("stac" ::: "memory"); }\n',
                           "mm/p.h": '/* every CLAC, a clac in prose */\n#define X "1:\\n\\tclac"\n'})
        self.assertEqual([p.split(":")[0:2] for p in v["smap-sites-only"]],
                         [["kernel/a.c", "1"], ["mm/p.h", "2"]])

    def test_raw_clac_in_nasm_fails_and_the_macro_files_pass(self):
        files = {**self.GOOD, "kernel/t.asm": "; CLAC first\nentry:\tclac\n\tSMAP_CLAC(entry, clac)\n",
                 "kernel/smap_sites.inc": "%macro M 0\n\tclac\n%endmacro\n",
                 "kernel/smap_sites.h": '#define SMAP_CLAC() __asm__ volatile("clac")\n'}
        v = self.verdicts(files)
        self.assertEqual(len(v["smap-sites-only"]), 1)
        self.assertIn("kernel/t.asm:2", v["smap-sites-only"][0])

    def test_machine_including_the_lab_fails(self):
        v = self.verdicts({**self.GOOD, "kernel/a.c": 'x\n#include "kernel/lab/monitor.h"\n'})
        self.assertEqual(len(v["machine-includes-no-lab"]), 1)
        self.assertIn("kernel/a.c:2", v["machine-includes-no-lab"][0])

    def test_machine_including_a_test_header_fails(self):
        v = self.verdicts({**self.GOOD, "mm/p.h": '#include "tests/util.h"\n'})
        self.assertIn("mm/p.h:1", v["machine-includes-no-lab"][0])

    def test_lab_including_a_c_file_or_a_test_header_fails(self):
        v = self.verdicts({**self.GOOD, "kernel/lab/m.c": '#include "mm/p.c"\n#include "tests/t.h"\n'})
        self.assertEqual(len(v["lab-through-public-headers"]), 2)

    def test_readme_missing_or_extra_file_fails(self):
        v = self.verdicts({**self.GOOD, "mm/q.c": ""})
        self.assertEqual(v["readme-lists-every-file"], ["README Layout does not name mm/q.c"])
        files = dict(self.GOOD)
        del files["mm/p.h"]
        v = self.verdicts(files)
        self.assertIn("README Layout names mm/p.h, which git does not track",
                      v["readme-lists-every-file"])

    def test_outside_reference_fails(self):
        v = self.verdicts({**self.GOOD, "kernel/a.c": "/* see ../" + "shar" + "ed/x */\n"})
        self.assertIn("kernel/a.c:1", v["no-outside-references"][0])


class BenchBaseline(unittest.TestCase):
    """bench.py's check against the committed figures: over 5 % worse, or gone, fails."""

    def run_check(self, committed: dict, now: dict) -> tuple[int, str]:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        rows = [{"case": k.split("@")[0], "size": int(k.split("@")[1]), "per_op": v}
                for k, v in now.items()]
        base = d / "baseline.json"
        bench.write_baseline(base, [{"case": k.split("@")[0], "size": int(k.split("@")[1]),
                                     "per_op": v} for k, v in committed.items()])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = bench.check_baseline(base, rows)
        return rc, out.getvalue()

    def test_equal_and_within_five_percent_pass(self):
        rc, out = self.run_check({"map_unmap@1": 478, "map_unmap@8": 969},
                                 {"map_unmap@1": 478, "map_unmap@8": 1017})
        self.assertEqual(rc, 0)
        self.assertIn("0 regressions", out)

    def test_over_five_percent_fails(self):
        rc, out = self.run_check({"map_unmap@1": 478}, {"map_unmap@1": 503})
        self.assertEqual(rc, 1)
        self.assertIn("REGRESSION map_unmap@1", out)

    def test_a_case_gone_fails_and_a_new_one_is_reported(self):
        rc, out = self.run_check({"map_unmap@1": 478}, {"other@1": 10})
        self.assertEqual(rc, 1)
        self.assertIn("no longer measured", out)
        self.assertIn("new        other@1", out)


class BenchPreviousRun(unittest.TestCase):
    """bench.py's comparison with the previous run's build/bench.json: over 5 % worse is
    printed, nothing else; no previous run, or one in another unit, is said so."""

    UNIT = "instructions (-icount shift=0)"

    def compare(self, previous: dict | None, now: dict) -> tuple[list[str], str]:
        rows = [{"case": k.split("@")[0], "size": int(k.split("@")[1]), "per_op": v} for k, v in now.items()]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            worse = bench.compare_previous(previous, rows, self.UNIT)
        return worse, out.getvalue()

    def run_json(self, figures: dict, unit: str = UNIT) -> dict:
        return {"unit": unit, "results": [{"case": k.split("@")[0], "size": int(k.split("@")[1]),
                                           "per_op": v} for k, v in figures.items()]}

    def test_over_five_percent_is_printed(self):
        worse, out = self.compare(self.run_json({"map_unmap@1": 387, "map_unmap@8": 954}),
                                  {"map_unmap@1": 407, "map_unmap@8": 1001})
        self.assertEqual(len(worse), 1)
        self.assertIn("REGRESSION since the previous run map_unmap@1: 407 against 387", out)
        self.assertNotIn("map_unmap@8", out)

    def test_better_and_new_cases_are_not_regressions(self):
        worse, out = self.compare(self.run_json({"map_unmap@1": 465}), {"map_unmap@1": 387, "new@1": 5})
        self.assertEqual(worse, [])
        self.assertIn("0 regressions", out)

    def test_no_previous_run_or_another_unit(self):
        worse, out = self.compare(None, {"map_unmap@1": 387})
        self.assertEqual(worse, [])
        self.assertIn("none to compare with", out)
        worse, out = self.compare(self.run_json({"map_unmap@1": 100}, "cycles (TSC, KVM)"), {"map_unmap@1": 387})
        self.assertEqual(worse, [])
        self.assertIn("not compared", out)

    def test_the_previous_file_is_read_before_it_is_replaced(self):
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        self.assertIsNone(bench.read_previous(d / "bench.json"))
        (d / "bench.json").write_text("not json")
        self.assertIsNone(bench.read_previous(d / "bench.json"))
        (d / "bench.json").write_text(json.dumps(self.run_json({"a@1": 1})))
        self.assertEqual(bench.read_previous(d / "bench.json")["results"][0]["per_op"], 1)


class ProtocolHeader(unittest.TestCase):
    """The scripts' side of include/mdlab/protocol.h: what cheader.py reads from a header,
    and that lines printed with the kernel's own formats are read back by ktap.py."""

    def test_defines_read_as_c_reads_them(self):
        text = textwrap.dedent(r"""
            #define PORT 0xf4            /* a comment */
            #define SIZE 4096ul
            #define OCTAL 010
            #define MARK "*** STOP:"
            #define FORMAT MARK " 0x%08X\n" // joined
            #define QUOTE "say \"hi\""
            #define MACRO(x) ((x) + 1)
            #define EXPRESSION (1u << 3)
            #define UNKNOWN NOT_DEFINED " x"
            #define LIST(X) \
                X(A, 1)
            """)
        d = cheader.parse_defines(text)
        self.assertEqual(d, {"PORT": 0xF4, "SIZE": 4096, "OCTAL": 8, "MARK": "*** STOP:",
                             "FORMAT": "*** STOP: 0x%08X\n", "QUOTE": 'say "hi"'})

    def test_exit_statuses(self):
        self.assertEqual((protocol.EXIT_DONE, protocol.EXIT_BUGCHECK), (33, 35))
        self.assertEqual((qemu.EXIT_DONE, ktap.EXIT_BUGCHECK), (33, 35))

    def test_stop_line_printed_with_the_kernels_format_is_read_back(self):
        line = protocol.STOP_FORMAT % (0xC4, 0xB3, 0xFFFFC08000001000, 0x1A, 2)
        stop = ktap.parse_stop([line, "DRIVER_VERIFIER_DETECTED_VIOLATION"], 0)
        self.assertIsNone(stop.malformed)
        self.assertEqual((stop.code, stop.params), (0xC4, (0xB3, 0xFFFFC08000001000, 0x1A, 2)))
        self.assertEqual(stop.name, "DRIVER_VERIFIER_DETECTED_VIOLATION")

    def test_death_lines_built_from_the_markers_are_read_back(self):
        text = log(f"""\
            {protocol.KTAP_HEADER}
            {protocol.DEATH_TEST} seh.unhandled_fault code=0x0000001E
            1..0
            {protocol.TESTS_DONE}
            """)
        v = ktap.judge_test_run(text, exit_status=protocol.EXIT_DONE)
        self.assertEqual(v.problems, [])
        self.assertEqual([s.name for s in v.death_specs], ["seh.unhandled_fault"])
        returned = log(f"""\
            {protocol.DEATH} seh.unhandled_fault {protocol.DEATH_RETURNED}
            """)
        self.assertEqual(ktap.parse_log(returned).death_returned, ["seh.unhandled_fault"])


class DiskCheckTests(unittest.TestCase):
    """scripts/diskcheck.py: the pattern is tests/lib/pattern.h's, the directive is read from
    the kernel's indented case output, and the image comparison says where it differs."""

    def test_pattern_is_xorshift32_little_endian(self):
        # From 1: 1 ^ 1 << 13 = 0x2001; ^ >> 17 leaves it; ^ << 5 gives 0x42021.
        self.assertEqual(diskcheck.pattern(1, 4), bytes([0x21, 0x20, 0x04, 0x00]))
        self.assertEqual(len(diskcheck.pattern(0x1234567, 1024)), 1024)

    def test_directive_inside_a_case(self):
        text = "    # virtio-blk: loaded\n    # # disk-check: 2048 32 0x1234567\r\n# disk-check: 7 1 9\n"
        self.assertEqual(diskcheck.directives(text), [(2048, 32, 0x1234567), (7, 1, 9)])

    def test_image_compared(self):
        with tempfile.TemporaryDirectory() as d:
            img = Path(d) / "disk.img"
            img.write_bytes(bytes(512 * 3) + diskcheck.pattern(5, 1024))
            self.assertIsNone(diskcheck.check(img, 3, 2, 5))
            self.assertIn("sector 3 byte 0", diskcheck.check(img, 3, 2, 6))
            self.assertIn("short", diskcheck.check(img, 4, 2, 5) or "")
            self.assertIn("cannot read", diskcheck.check(Path(d) / "none.img", 0, 1, 1))


class BlkfaultDisk(unittest.TestCase):
    """harness.blkfault_disk: a fresh image, one blkdebug rule per failing sector, errors
    reported to the guest, and the kernel told the same sectors."""

    def test_rules_image_and_drive(self):
        with tempfile.TemporaryDirectory() as d:
            test_dir = Path(d) / "test"
            test_dir.mkdir()
            (Path(d) / "blkfault.img").write_bytes(b"old")
            argv, image = harness.blkfault_disk(test_dir)
            self.assertEqual(image, Path(d) / "blkfault.img")
            self.assertEqual(image.stat().st_size, 16 << 20)
            self.assertEqual(image.read_bytes()[:3], bytes(3))  # made afresh, not the old one
            cfg = (test_dir / "blkdebug.cfg").read_text()
            n = harness.BLKFAULT_COUNT
            self.assertEqual(cfg.count("[inject-error]"), 2 * n)
            self.assertEqual(cfg.count('event = "write_aio"'), n)
            self.assertEqual(cfg.count('event = "read_aio"'), n)
            self.assertIn(f'sector = "{harness.BLKFAULT_WRITE + n - 1}"', cfg)
            self.assertIn(f'sector = "{harness.BLKFAULT_READ}"', cfg)
            self.assertNotIn("once", cfg)
            drive = argv[argv.index("-drive") + 1]
            self.assertTrue(drive.startswith(f"file=blkdebug:{test_dir / 'blkdebug.cfg'}:{image},"))
            self.assertIn("werror=report,rerror=report", drive)
            items = harness.EXTRA_MACHINES["blkfault"][1]
            self.assertIn(f"blkfault={harness.BLKFAULT_WRITE},{harness.BLKFAULT_READ},{n}", items)
            self.assertIn("suites=virtio_fault", items)


if __name__ == "__main__":
    unittest.main()
