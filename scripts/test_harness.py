"""test_harness.py — unit tests of ktap.py's verdicts over canned serial logs.

They prove that the harness accepts a good log and rejects every kind of bad one
(crash, timeout, triple fault, missing plan or results, wrong bug check, ...).
harness.py runs them in-process before it boots anything; they also run on their own:

    python3 scripts/test_harness.py        (or: python3 -m unittest scripts/test_harness.py)
"""

from __future__ import annotations

import os
import sys
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ktap  # noqa: E402
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


if __name__ == "__main__":
    unittest.main()
