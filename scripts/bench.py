#!/usr/bin/env python3
"""bench.py — `make bench`: boot the kernel with mode=bench under QEMU with `-icount shift=0`
(the guest TSC then advances one tick per guest instruction, so every figure is an exact,
repeatable instruction count), collect the `# bench:` lines, print a table with each figure's
ratio to the hardware baseline, check the performance targets (README "Performance"), and
write build/bench.json.

With --kvm 1 the unit is TSC cycles under KVM (no -icount); the ratios still apply.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402
import qemu  # noqa: E402

LINE = re.compile(protocol.marker_pattern(protocol.BENCH) +
                  r"\s*case=(\S+) size=(\d+) ops=(\d+) pages=(\d+) ticks=(\d+)(?: note=(\S+))?")
RUNNING = re.compile(protocol.marker_pattern(protocol.BENCH) + r"\s*running (\S+)")
BASELINE = "baseline_write_invlpg_clear"


# The SMP suite (tests/bench/bench_smp.c) runs on the one-CPU machine with every other suite,
# and on each machine of this table alone: (label, vCPUs, extra kernel arguments).  Its rows
# are named by the machine's label (smp_map_unmap_cpu4).  A shootdown policy is one more row,
# e.g. ("cpu4_lazy", 4, "tlb=lazy").
SMP_SUITE = "smp"
ONE_CPU_LABEL = "cpu1"
SMP_MACHINES = [
    ("cpu2", 2, ""),
    ("cpu4", 4, ""),
    ("cpu2_lazy", 2, "tlb=lazy"),
    ("cpu4_lazy", 4, "tlb=lazy"),
]


BENCH_DISK_BYTES = 16 << 20


def bench_disk(where: Path) -> list[str]:
    """The one-CPU bench machine's disk: WHERE/disk.img made afresh (sparse, 16 MiB, like
    `truncate -s`), attached as make test attaches its own (qemu.disk_options)."""
    image = where / "disk.img"
    where.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(BENCH_DISK_BYTES)
    return qemu.disk_options(image, snapshot=False)


def run(esp: Path, build: Path, kvm: bool, extra: str, timeout: int, smp: int = 1, kargs: str = "",
        label: str = "") -> str:
    """Boot the benchmarks, printing a progress line as each case starts (the kernel's
    `# bench: running NAME` lines, read from the serial log while QEMU runs).  `label` names
    a machine of SMP_MACHINES, which runs the SMP suite only."""
    where = build / (f"bench-{label}" if label else "bench")
    cmdline = f"mode={protocol.MODE_BENCH} syspte=262144 clock=0 pagefile=1"
    if label:
        cmdline += f" bench={SMP_SUITE} {kargs}".rstrip()
    boot = qemu.prepare_boot_dir(where, esp, cmdline)
    log = where / "bench.log"
    accel = "" if kvm else "-icount shift=0"
    # The one-CPU machine has a disk of its own for the vblk_io cases (direct against
    # buffered I/O, tests/bench/bench_vblk.c): a fresh sparse image each run, written by the
    # benchmark and by nothing else.  The SMP machines have none.
    disk = [] if label else bench_disk(where)
    argv = qemu.build_command(boot.esp, boot.vars_fd, kvm=kvm, serial=qemu.serial_to_file(log), smp=smp,
                              extra=f"{accel} {extra}", disk=disk)
    start = time.monotonic()
    what = f"the {label} machine ({smp} vCPUs{', ' + kargs if kargs else ''}: the SMP suite)" if label else \
        "the benchmarks (a few minutes under -icount)"
    print(f"bench: booting {what}", flush=True)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    seen = 0
    try:
        while True:
            try:
                returncode = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                returncode = None
            if log.exists():
                text = log.read_text(errors="replace").replace("\r", "")
                lines = text.split("\n")[:-1] if returncode is None else text.split("\n")
                for m in RUNNING.finditer("\n".join(lines[seen:])):
                    print(f"bench: {time.monotonic() - start:5.0f} s  running {m.group(1)}", flush=True)
                seen = max(seen, len(lines))
            if returncode is not None:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                proc.wait()
                raise SystemExit(f"bench: timed out after {timeout} s; log: {log}")
    except KeyboardInterrupt:
        proc.kill()
        raise
    text = log.read_text(errors="replace").replace("\r", "")
    if returncode != qemu.EXIT_DONE or protocol.BENCH_DONE not in text:
        sys.stdout.write(text[-3000:])
        raise SystemExit(f"bench: the benchmark run did not finish ({qemu.describe_exit(returncode)}); "
                         f"log: {log}")
    print(f"bench: done in {time.monotonic() - start:.0f} s", flush=True)
    return text


def provenance() -> dict:
    """What a figure was measured on: the commit (with -dirty for uncommitted changes) and
    the QEMU that ran it."""
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        except (OSError, subprocess.TimeoutExpired):
            return ""
    repo = str(Path(__file__).resolve().parent.parent)
    commit = first_line(["git", "-C", repo, "rev-parse", "HEAD"]) or "unknown"
    if commit != "unknown" and first_line(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"]):
        commit += "-dirty"
    return {"commit": commit, "qemu": first_line(qemu.qemu_command_prefix() + ["--version"]) or "unknown"}


def parse(text: str, label: str = ONE_CPU_LABEL) -> list[dict]:
    """The result lines; the SMP suite's cases get the machine's label (smp_map_unmap_cpu4)."""
    rows = []
    for m in LINE.finditer(text):
        case, size, ops, pages, ticks, note = m.groups()
        if case.startswith(SMP_SUITE + "_"):
            case = f"{case}_{label}"
        rows.append({"case": case, "size": int(size), "ops": int(ops), "pages": int(pages),
                     "per_op": int(ticks), "note": note or ""})  # the kernel's ticks=: see "unit"
    return rows


def find(rows: list[dict], case: str, size: int) -> dict | None:
    return next((r for r in rows if r["case"] == case and r["size"] == size), None)


def marginal(rows: list[dict], case: str, lo: int, hi: int) -> float | None:
    a, b = find(rows, case, lo), find(rows, case, hi)
    if not a or not b:
        return None
    return (b["per_op"] - a["per_op"]) / (hi - lo)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--esp", default="build/esp.img")
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--kvm", type=int, default=0)
    ap.add_argument("--qemu-extra", default="")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--baseline", default="tests/bench/baseline.json",
                    help="the committed figures each run is checked against")
    ap.add_argument("--update-baseline", action="store_true",
                    help="write this run's figures to --baseline instead of checking them")
    ap.add_argument("--only-smp", action="store_true",
                    help="boot only the SMP_MACHINES (the SMP suite), print their figures, check nothing")
    args = ap.parse_args(argv)
    build = Path(args.build_dir)
    unit, measured = ("cycles", "TSC under KVM") if args.kvm else ("instructions", "-icount shift=0")
    ap_only = args.only_smp
    rows = [] if ap_only else parse(run(Path(args.esp), build, bool(args.kvm), args.qemu_extra, args.timeout))
    # --only-smp boots a one-CPU machine for the SMP suite too, for the 4-vs-1 ratios.
    for label, smp, kargs in ([(ONE_CPU_LABEL, 1, "")] if ap_only else []) + SMP_MACHINES:
        rows += parse(run(Path(args.esp), build, bool(args.kvm), args.qemu_extra, args.timeout, smp, kargs, label),
                      label)

    # Each figure per page, and its ratio to the baseline's per-page cost at the same size.
    for r in rows:
        r["per_page"] = r["per_op"] / r["pages"] if r["pages"] else None
        base = find(rows, BASELINE, r["size"])
        r["ratio_to_baseline"] = (r["per_op"] / base["per_op"]
                                  if base and base["per_op"] and r["pages"] and r["case"] != "tlb_flushes_per_unmap"
                                  else None)

    print(f"mdlab benchmark, unit: {unit} ({measured})")
    print(f"{'case':34} {'size':>7} {'per op':>10} {'per page':>10} {'x baseline':>11}  note")
    for r in rows:
        per_page = f"{r['per_page']:.1f}" if r["per_page"] is not None else "-"
        ratio = f"{r['ratio_to_baseline']:.2f}" if r["ratio_to_baseline"] is not None else "-"
        print(f"{r['case']:34} {r['size']:>7} {r['per_op']:>10} {per_page:>10} {ratio:>11}  {r['note']}")

    # The performance targets (README "Performance").
    targets = []
    m_map, m_base = marginal(rows, "map_unmap", 1, 512), marginal(rows, BASELINE, 1, 512)
    if m_map is not None and m_base:
        targets.append(("per-page marginal cost of map+unmap at 512 pages vs baseline", m_map / m_base, "<= 1.5",
                        m_map / m_base <= 1.5))
    one = find(rows, "map_unmap", 1)
    if one:
        targets.append(("fixed cost of map+unmap of a 1-page MDL", one["per_op"], "< 400",
                        one["per_op"] < 400))
    g = find(rows, "get_system_address_mapped", 1)
    if g:
        targets.append(("MmGetSystemAddressForMdlSafe on a mapped MDL", g["per_op"], "< 20",
                        g["per_op"] < 20))
    for n in (1, 8):
        lo, hi = find(rows, f"syspte_reserve_release_{n}", 10), find(rows, f"syspte_reserve_release_{n}", 100000)
        if lo and hi and lo["per_op"]:
            q = hi["per_op"] / lo["per_op"]
            targets.append((f"syspte reserve+release of {n} at 100000 vs 10 free runs", q, "<= 3", q <= 3))
    t = find(rows, "tlb_flushes_per_unmap", 1)
    if t:
        kv = dict(item.split("=") for item in t["note"].split(","))
        per32 = int(kv["full"]) * 32 / int(kv["unmaps"])
        targets.append(("full TLB flushes per 32 one-page unmaps", per32, "< 1", per32 < 1))
    # The SMP targets: per page at 512 on 4 CPUs against the baseline (issue 14), and the
    # 4-CPU kernel map+unmap against the 1-CPU one at each size (issue 18).
    m4 = marginal(rows, "smp_map_unmap_cpu4", 1, 512)
    if m4 is not None and m_base:
        targets.append(("per-page marginal cost of map+unmap at 512 pages on 4 CPUs vs baseline", m4 / m_base,
                        "<= 1.5", m4 / m_base <= 1.5))
    for n in (1, 8, 64, 512):
        a, b = find(rows, "smp_map_unmap_cpu1", n), find(rows, "smp_map_unmap_cpu4", n)
        if a and b and a["per_op"]:
            q = b["per_op"] / a["per_op"]
            targets.append((f"map+unmap of {n} pages, 4 CPUs vs 1 (strict)", q, "<= 1.5", q <= 1.5))
    # The lazy policy beside it: issue 18's target is for strict, so these are shown, not judged.
    lazy = []
    for n in (1, 8, 64, 512):
        a, b = find(rows, "smp_map_unmap_cpu1", n), find(rows, "smp_map_unmap_cpu4_lazy", n)
        if a and b and a["per_op"]:
            lazy.append(f"{n}: {b['per_op'] / a['per_op']:.2f}")
    print("\nperformance targets:")
    for name, value, want, ok in targets:
        v = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"  {'met ' if ok else 'MISS'}  {name}: {v} (target {want})")
    if lazy:
        print(f"  (lazy) map+unmap, 4 CPUs vs 1, at {', '.join(lazy)} pages (shown, not a target)")

    # Zeroing on its own line: the zeroed allocation less the one without zeroing.
    zeroing = []
    for n in (1, 8, 64, 512):
        z, nz = find(rows, "allocate_free_pages_for_mdl", n), find(rows, "allocate_free_pages_for_mdl_nozero", n)
        if z and nz:
            zeroing.append(f"{n}: {(z['per_op'] - nz['per_op']) / n:.0f}")
    if zeroing:
        print(f"\nzeroing (MmAllocatePagesForMdlEx without MM_DONT_ZERO_ALLOCATION, less with it), per page "
              f"at {', '.join(zeroing)} pages: rep stosb (ERMS; under -icount one count per byte)")

    # Direct against buffered I/O through the device (tests/bench/bench_vblk.c, vblk_io).
    io_lines = []
    for op in ("read", "write"):
        for n in (1, 8, 64):
            d, b = find(rows, f"vblk_{op}_direct", n), find(rows, f"vblk_{op}_buffered", n)
            if d and b and d["per_op"]:
                io_lines.append(f"  {op:5} {n:>3} pages: direct {d['per_op']:>7} per request, {d['per_op'] / n:>8.1f} "
                                f"per page; buffered {b['per_op']:>7}, {b['per_op'] / n:>8.1f}; buffered/direct "
                                f"{b['per_op'] / d['per_op']:.2f}; copies avoided {n * 4096} bytes")
    if io_lines:
        print("\ndirect vs buffered I/O (instructions of submit + completion, the device's time not counted):")
        print("\n".join(io_lines))

    if ap_only:
        return 0
    out = build / "bench.json"
    previous = read_previous(out)
    out.write_text(json.dumps({"unit": unit, "measured": measured, **provenance(), "results": rows,
                               "targets": [{"name": n, "value": v, "target": w, "met": ok}
                                           for n, v, w, ok in targets]}, indent=2))
    print(f"\nwritten: {out}")
    compare_previous(previous, rows, unit)
    if args.kvm:
        print("baseline: not checked (the committed figures are instructions under -icount)")
        return 0
    baseline = Path(args.baseline)
    if args.update_baseline:
        write_baseline(baseline, rows)
        print(f"baseline: written {baseline} ({len(rows)} figures)")
        return 0
    return check_baseline(baseline, rows)


# A figure more than this much above the committed one is a regression.
REGRESSION = 0.05


def figure_key(r: dict) -> str:
    return f"{r['case']}@{r['size']}"


def write_baseline(path: Path, rows: list[dict]) -> None:
    """The committed figures: instructions per operation, by case@size."""
    figures = {figure_key(r): r["per_op"] for r in rows}
    path.write_text(json.dumps({"unit": "instructions per operation (-icount shift=0)",
                                "regression_limit": REGRESSION, "figures": figures},
                               indent=2, sort_keys=True) + "\n")


def read_previous(path: Path) -> dict | None:
    """The previous run's build/bench.json, before this run replaces it (None if there is none
    or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def compare_previous(previous: dict | None, rows: list[dict], unit: str) -> list[str]:
    """Print every case more than 5 % above the previous run's figure (only reported: the
    committed baseline decides whether the run fails).  Returns those lines."""
    if not previous or previous.get("unit") != unit:
        print("previous run: none to compare with" if not previous else
              f"previous run: in {previous.get('unit')!r}, not compared")
        return []
    # A run written before the field was named per_op calls it ticks_per_op.
    before = {figure_key(r): r.get("per_op", r.get("ticks_per_op")) for r in previous.get("results", [])}
    worse = []
    for r in rows:
        old = before.get(figure_key(r))
        if old and r["per_op"] > old * (1 + REGRESSION):
            worse.append(f"{figure_key(r)}: {r['per_op']} against {old} in the previous run "
                         f"(+{(r['per_op'] - old) / old:.1%})")
    print(f"previous run: {len(before)} figures, {len(worse)} regressions over {REGRESSION:.0%}")
    for line in worse:
        print(f"  REGRESSION since the previous run {line}")
    return worse


def check_baseline(path: Path, rows: list[dict]) -> int:
    """Compare every figure with the committed baseline: a figure over it by more than 5 %,
    or a committed case that no longer runs, fails (exit 1); better figures and new cases
    are only reported.  A change that is slower on purpose updates the baseline
    (make bench-baseline) and says why in its commit."""
    if not path.exists():
        print(f"baseline: {path} does not exist (make bench-baseline writes it)")
        return 1
    committed = json.loads(path.read_text())["figures"]
    now = {figure_key(r): r["per_op"] for r in rows}
    worse, better = [], []
    for key, old in sorted(committed.items()):
        new = now.get(key)
        if new is None:
            worse.append(f"{key}: committed {old}, no longer measured")
        elif new > old * (1 + REGRESSION):
            worse.append(f"{key}: {new} against the committed {old} (+{(new - old) / old:.1%})")
        elif new < old * (1 - REGRESSION):
            better.append(f"{key}: {new} against the committed {old} ({(new - old) / old:.1%})")
    fresh = sorted(set(now) - set(committed))
    print(f"\nbaseline ({path}): {len(committed)} figures compared, {len(worse)} regressions "
          f"over {REGRESSION:.0%}, {len(better)} better by more than {REGRESSION:.0%}, "
          f"{len(fresh)} not in the baseline")
    for line in worse:
        print(f"  REGRESSION {line}")
    for line in better:
        print(f"  better     {line}")
    for key in fresh:
        print(f"  new        {key}: {now[key]}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
