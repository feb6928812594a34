#!/usr/bin/env python3
"""bench_linux.py — `make bench-linux`: the peer benchmark.  Builds tests/bench/linux/ (the
module mdlab_peer.ko against Debian's linux-headers-amd64, the static helper, a busybox
initramfs), boots Debian's linux-image-amd64 directly in the QEMU and machine of `make bench`
(-machine q35 -cpu max -m 512M -smp 1 -icount shift=0), collects the helper's
`# linux-bench:` lines, prints them beside mdlab's figures of build/bench.json with the ratio
Linux / mdlab, and writes build/bench-linux.json.  README "make bench-linux".
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import qemu  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "tests" / "bench" / "linux"
MARK = "# linux-bench:"
LINE = re.compile(re.escape(MARK) + r" case=(\S+) size=(\d+) per_op=(\d+) reps=(\d+) rounds=(\d+) "
                  r"overhead=(\d+) ticks=(-?\d+)")
# nokaslr: the kernel at the same addresses every boot; norandmaps: the helper's too (with a
# randomised mmap base the 1-page user map moved by thousands of instructions from boot to
# boot: where a mapping lands decides which page-table pages it allocates); no5lvl: 4-level paging, as mdlab (-cpu max has LA57);
# init_on_alloc=0: Debian turns zeroing on allocation on by default, which would zero the pages
# of the "without __GFP_ZERO" row too; panic=1 with -no-reboot: a panic ends QEMU.
CMDLINE = "console=ttyS0 nokaslr norandmaps no5lvl quiet init_on_alloc=0 panic=1"

# Each row: the Linux case, what it is, the mdlab case of build/bench.json it is set against.
ROWS = [
    ("vmap_vunmap", "vmap+vunmap", "map_unmap"),
    ("vm_map_ram_unmap", "vm_map_ram+vm_unmap_ram", "map_unmap"),
    ("pin_unpin_user", "pin_user_pages_fast+unpin_user_pages", "probe_lock_unlock_user"),
    ("alloc_free_pages", "alloc_page x n + __free_page x n", "allocate_free_pages_for_mdl_nozero"),
    ("alloc_free_pages_zero", "the same with __GFP_ZERO", "allocate_free_pages_for_mdl"),
    ("user_map_unmap", "vm_mmap (mmap: vm_insert_pages)+vm_munmap", "user_map_unmap"),
]
SIZES = (1, 8, 64, 512)


def kernel_release(image_depends: str, headers_depends: str) -> str:
    """The kernel release both metapackages name (their Depends fields, as dpkg-query prints
    them: `linux-image-6.1.0-57-amd64 (= 6.1.192-3)`), e.g. 6.1.0-57-amd64.  Raises
    SystemExit when they name different releases or versions (the module would not load)."""
    def release(depends: str, prefix: str) -> tuple[str, str]:
        m = re.search(re.escape(prefix) + r"(\S+?)(?:-unsigned)?\s*\(=\s*([^)]+)\)", depends)
        if not m:
            raise SystemExit(f"bench-linux: cannot read a kernel release from {depends!r}")
        return m.group(1), m.group(2).strip()
    image, headers = release(image_depends, "linux-image-"), release(headers_depends, "linux-headers-")
    if image != headers:
        raise SystemExit(f"bench-linux: linux-image-amd64 names {image[0]} {image[1]} but "
                         f"linux-headers-amd64 names {headers[0]} {headers[1]}: install matching versions")
    return image[0]


def installed_release() -> tuple[str, Path, Path]:
    """The release, its vmlinuz and its headers directory, of the installed metapackages."""
    def depends(pkg: str) -> str:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", pkg], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"bench-linux: {pkg} is not installed (make bench-linux installs it)")
        return out.stdout
    rel = kernel_release(depends("linux-image-amd64"), depends("linux-headers-amd64"))
    vmlinuz, headers = Path(f"/boot/vmlinuz-{rel}"), Path(f"/usr/src/linux-headers-{rel}")
    for p in (vmlinuz, headers / "Makefile"):
        if not p.exists():
            raise SystemExit(f"bench-linux: {p} is missing (reinstall linux-image-amd64 linux-headers-amd64)")
    return rel, vmlinuz, headers


def run_step(argv: list[str], what: str, **kwargs) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if out.returncode:
        sys.stdout.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"bench-linux: {what} failed: {' '.join(argv)}")


def build(work: Path, headers: Path) -> Path:
    """The module, the helper and the initramfs, in `work`; returns the initramfs."""
    module = work / "module"
    module.mkdir(parents=True, exist_ok=True)
    for name in ("Kbuild", "mdlab_peer.c", "mdlab_peer.h"):
        shutil.copy2(SOURCE / name, module / name)
    print(f"bench-linux: building mdlab_peer.ko against {headers}", flush=True)
    run_step(["make", "-C", str(headers), f"M={module.resolve()}", "modules"], "the module build")
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    run_step(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{SOURCE}", "-o", str(root / "peer"),
              str(SOURCE / "peer.c")], "the helper build")
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    shutil.copy2(SOURCE / "init", root / "init")
    shutil.copy2(module / "mdlab_peer.ko", root / "mdlab_peer.ko")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                             input=("\n".join(names) + "\n").encode(), capture_output=True)
    if archive.returncode:
        raise SystemExit(f"bench-linux: cpio failed: {archive.stderr.decode(errors='replace')}")
    initrd = work / "initramfs.cpio.gz"
    initrd.write_bytes(gzip.compress(archive.stdout, mtime=0))  # no timestamp in the gzip header
    return initrd


def machine_options() -> list[str]:
    """make bench's machine (-machine, -cpu, -m), taken from qemu.build_command so the two
    cannot drift apart; -smp 1 and -icount shift=0 as scripts/bench.py adds them."""
    argv = qemu.build_command("unused.img", "unused.fd", kvm=False, serial=[], smp=1)
    opts = []
    for flag in ("-machine", "-cpu", "-m", "-smp"):
        opts += [flag, argv[argv.index(flag) + 1]]
    return opts + ["-icount", "shift=0"]


def boot(work: Path, vmlinuz: Path, initrd: Path, extra: str, timeout: int) -> str:
    log = work / "serial.log"
    argv = qemu.qemu_command_prefix() + machine_options() + [
        "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", CMDLINE,
        "-no-reboot", "-display", "none", "-nic", "none", "-monitor", "none",
        *qemu.serial_to_file(log)] + shlex.split(extra)
    print(f"bench-linux: booting {vmlinuz.name} (about a minute under -icount)", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemExit(f"bench-linux: timed out after {timeout} s; log: {log}")
    text = log.read_text(errors="replace").replace("\r", "") if log.exists() else ""
    if proc.returncode != 0 or f"{MARK} done" not in text:
        sys.stdout.write(text[-3000:])
        raise SystemExit(f"bench-linux: the Linux run did not finish (QEMU exit {proc.returncode}); log: {log}")
    print(f"bench-linux: done in {time.monotonic() - start:.0f} s", flush=True)
    return text


def parse(text: str) -> tuple[list[dict], list[str], str]:
    """The results, the error lines, and the kernel release of a serial log."""
    rows = [{"case": c, "size": int(s), "per_op": int(p), "reps": int(r), "rounds": int(n),
             "overhead": int(o), "timer_interrupts": int(t)}
            for c, s, p, r, n, o, t in LINE.findall(text)]
    errors = re.findall(re.escape(MARK) + r" error=(.*)", text)
    m = re.search(re.escape(MARK) + r" kernel=(\S+)", text)
    return rows, errors, m.group(1) if m else "unknown"


def compare(linux: list[dict], mdlab: list[dict]) -> list[dict]:
    """One entry per row and size: both figures and Linux / mdlab (None where one is missing),
    then the zeroing per page on each side (zeroed allocation less the one without)."""
    out = []
    for case, what, mdlab_case in ROWS + [("zeroing", "zeroing per page (zeroed less not zeroed)", "zeroing")]:
        for n in SIZES:
            if case == "zeroing":
                lz, ln = bench.find(linux, "alloc_free_pages_zero", n), bench.find(linux, "alloc_free_pages", n)
                mz = bench.find(mdlab, "allocate_free_pages_for_mdl", n)
                mn = bench.find(mdlab, "allocate_free_pages_for_mdl_nozero", n)
                lv = round((lz["per_op"] - ln["per_op"]) / n) if lz and ln else None
                mv = round((mz["per_op"] - mn["per_op"]) / n) if mz and mn else None
            else:
                lr, mr = bench.find(linux, case, n), bench.find(mdlab, mdlab_case, n)
                lv, mv = (lr["per_op"] if lr else None), (mr["per_op"] if mr else None)
            if lv is None and mv is None:
                continue
            out.append({"linux_case": case, "linux": what, "mdlab_case": mdlab_case, "size": n,
                        "linux_per_op": lv, "mdlab_per_op": mv,
                        "ratio": round(lv / mv, 2) if lv is not None and mv else None})
    return out


def table(rows: list[dict]) -> list[str]:
    lines = [f"{'Linux':42} {'mdlab case':36} {'n':>4} {'mdlab':>9} {'Linux':>9} {'Linux/mdlab':>12}"]
    last = None
    for r in rows:
        label, last = ("" if r["linux"] == last else r["linux"]), r["linux"]
        m = "-" if r["mdlab_per_op"] is None else str(r["mdlab_per_op"])
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"{label:42} {r['mdlab_case'] if label else '':36} {r['size']:>4} {m:>9} {r['linux_per_op']:>9} "
                     f"{ratio:>12}")
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--qemu-extra", default="")
    ap.add_argument("--timeout", type=int, default=900)
    args = ap.parse_args(argv)
    build_dir = Path(args.build_dir)
    work = build_dir / "bench-linux"
    rel, vmlinuz, headers = installed_release()
    text = boot(work, vmlinuz, build(work, headers), args.qemu_extra, args.timeout)
    linux, errors, running = parse(text)
    for e in errors:
        print(f"bench-linux: ERROR {e}")

    mdlab_json = bench.read_previous(build_dir / "bench.json")
    mdlab, source = [], "none"
    if not mdlab_json:
        print(f"bench-linux: no {build_dir / 'bench.json'}: run `make bench` for mdlab's column")
    elif mdlab_json.get("unit") != "instructions":
        print(f"bench-linux: {build_dir / 'bench.json'} is in {mdlab_json.get('unit')}, not instructions "
              "(make bench KVM=1?): run `make bench` for mdlab's column")
    else:
        mdlab, source = mdlab_json["results"], mdlab_json.get("commit", "unknown")
    rows = compare(linux, mdlab)
    print(f"\nLinux {running} against mdlab {source}: instructions per operation (-icount shift=0), "
          f"best of {linux[0]['rounds'] if linux else '?'} rounds of {linux[0]['reps'] if linux else '?'}")
    print("\n".join(table(rows)))
    ticks = sum(r["timer_interrupts"] for r in linux if r["timer_interrupts"] > 0)
    print(f"timer interrupts during the Linux measurements: {ticks} (counted in the figures they land in)")

    out = build_dir / "bench-linux.json"
    out.write_text(json.dumps({
        "unit": "instructions", "measured": "-icount shift=0", "kernel": running, "release": rel,
        "cmdline": CMDLINE, "qemu": bench.provenance()["qemu"], "mdlab_commit": source,
        "statistic": "best of ROUNDS rounds of REPS operations, less an empty measurement, / REPS",
        "results": linux, "comparison": rows, "errors": errors}, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return 1 if errors or not linux else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
