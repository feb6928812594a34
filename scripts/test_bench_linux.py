"""test_bench_linux.py — unit tests of scripts/bench_linux.py on a canned serial log and
canned mdlab figures, none of which builds or boots anything:

    python3 scripts/test_bench_linux.py        (make check-harness and make test run them)
"""

from __future__ import annotations

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_linux  # noqa: E402

LOG = """\
[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)
# linux-bench: cmdline console=ttyS0 nokaslr norandmaps no5lvl quiet init_on_alloc=0 panic=1
# linux-bench: kernel=6.1.0-57-amd64
# linux-bench: running vmap_vunmap 1
# linux-bench: case=vmap_vunmap size=1 per_op=2305 reps=64 rounds=3 overhead=5 ticks=0
# linux-bench: case=vm_map_ram_unmap size=1 per_op=848 reps=64 rounds=3 overhead=5 ticks=1
# linux-bench: case=alloc_free_pages size=8 per_op=5718 reps=64 rounds=3 overhead=5 ticks=0
# linux-bench: case=alloc_free_pages_zero size=8 per_op=38702 reps=64 rounds=3 overhead=5 ticks=2
# linux-bench: error=case user_map_unmap size 512: Cannot allocate memory
# linux-bench: done with errors
"""

MDLAB = [
    {"case": "map_unmap", "size": 1, "per_op": 461},
    {"case": "allocate_free_pages_for_mdl", "size": 8, "per_op": 51972},
    {"case": "allocate_free_pages_for_mdl_nozero", "size": 8, "per_op": 19084},
]


class Parse(unittest.TestCase):
    def test_results_errors_and_kernel(self):
        rows, errors, kernel = bench_linux.parse(LOG)
        self.assertEqual(kernel, "6.1.0-57-amd64")
        self.assertEqual([(r["case"], r["size"], r["per_op"]) for r in rows],
                         [("vmap_vunmap", 1, 2305), ("vm_map_ram_unmap", 1, 848),
                          ("alloc_free_pages", 8, 5718), ("alloc_free_pages_zero", 8, 38702)])
        self.assertEqual(rows[1]["timer_interrupts"], 1)
        self.assertEqual((rows[0]["reps"], rows[0]["rounds"], rows[0]["overhead"]), (64, 3, 5))
        self.assertEqual(errors, ["case user_map_unmap size 512: Cannot allocate memory"])

    def test_a_log_without_results(self):
        self.assertEqual(bench_linux.parse("[ 1.0] Kernel panic - not syncing\n"), ([], [], "unknown"))


class Compare(unittest.TestCase):
    def setUp(self):
        self.rows = bench_linux.compare(bench_linux.parse(LOG)[0], MDLAB)

    def row(self, case, n):
        return next(r for r in self.rows if r["linux_case"] == case and r["size"] == n)

    def test_each_linux_case_meets_its_mdlab_case(self):
        r = self.row("vmap_vunmap", 1)
        self.assertEqual((r["mdlab_case"], r["mdlab_per_op"], r["linux_per_op"], r["ratio"]),
                         ("map_unmap", 461, 2305, 5.0))
        self.assertEqual(self.row("vm_map_ram_unmap", 1)["ratio"], 1.84)
        self.assertEqual(self.row("alloc_free_pages", 8)["mdlab_case"], "allocate_free_pages_for_mdl_nozero")

    def test_zeroing_per_page_on_its_own_line(self):
        z = self.row("zeroing", 8)
        self.assertEqual((z["linux_per_op"], z["mdlab_per_op"]), (round(32984 / 8), round(32888 / 8)))

    def test_a_missing_mdlab_figure_has_no_ratio(self):
        r = bench_linux.compare(bench_linux.parse(LOG)[0], [])[0]
        self.assertEqual((r["mdlab_per_op"], r["ratio"]), (None, None))
        self.assertIn(" - ", bench_linux.table([r])[1])

    def test_sizes_measured_on_neither_side_are_left_out(self):
        self.assertFalse([r for r in self.rows if r["linux_case"] == "pin_unpin_user"])


class Release(unittest.TestCase):
    def test_matching_metapackages(self):
        self.assertEqual(bench_linux.kernel_release("linux-image-6.1.0-57-amd64 (= 6.1.192-3)",
                                                    "linux-headers-6.1.0-57-amd64 (= 6.1.192-3)"),
                         "6.1.0-57-amd64")

    def test_different_versions_are_refused(self):
        with self.assertRaises(SystemExit) as e:
            bench_linux.kernel_release("linux-image-6.1.0-57-amd64 (= 6.1.192-3)",
                                       "linux-headers-6.1.0-56-amd64 (= 6.1.190-1)")
        self.assertIn("matching versions", str(e.exception))

    def test_unreadable_depends_is_refused(self):
        with self.assertRaises(SystemExit):
            bench_linux.kernel_release("", "linux-headers-6.1.0-57-amd64 (= 6.1.192-3)")

    def test_machine_is_make_bench_s(self):
        opts = bench_linux.machine_options()
        pairs = dict(zip(opts[::2], opts[1::2]))
        self.assertEqual(pairs, {"-machine": "q35", "-cpu": "max", "-m": "512M", "-smp": "1",
                                 "-icount": "shift=0"})


if __name__ == "__main__":
    unittest.main()
