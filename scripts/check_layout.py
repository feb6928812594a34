"""check_layout.py — the layout rules that `make test` keeps true.

    python3 scripts/check_layout.py [--repo DIR]

Five checks, each printed as `layout: ok NAME` or `layout: not ok NAME` with its findings:

  machine-includes-no-lab   The machine (kernel/ outside kernel/lab/, mm/, include/, boot/)
                            never includes a lab header (kernel/lab/) or a test header
                            (tests/).
  lab-through-public-headers
                            The lab (kernel/lab/) reaches the rest only through headers:
                            include/, the machine's kernel/ and mm/ headers, its own. Never a
                            .c file, never a test header.
  readme-lists-every-file   The README's Layout section names every tracked file and folder
                            exactly once, and nothing that is not there.
  no-outside-references     No file points at material outside the repository (a clone
                            does not have the project's shared folder).
  smap-sites-only           The kernel's C and NASM sources (kernel/, mm/, include/,
                            drivers/, tests/) write STAC and CLAC only through the macros of
                            kernel/smap_sites.h and .inc, so the table the boot patches on a
                            CPU without SMAP holds every one (a raw one would be #UD there).

Exit status 0 when every check passes, 1 otherwise.  harness.py imports run_checks() and
counts each check in make test's closing line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MACHINE_DIRS = ("kernel/", "mm/", "include/", "boot/")
LAB_DIR = "kernel/lab/"
TEST_DIR = "tests/"
# What the lab may include: headers of these folders (a .h, never a .c).
LAB_MAY_INCLUDE = ("include/", "kernel/", "mm/")

INCLUDE_RE = re.compile(r'^\s*(?:#\s*include|%include)\s+"([^"]+)"', re.M)
# Spelled in two pieces so that this file does not match itself.
OUTSIDE_PATTERNS = ("shared" + "/", ".." + "/shared", "nt-" + "mdl.md")
SOURCE_SUFFIXES = (".c", ".h", ".asm", ".py", ".md", ".sh", ".ld", ".txt")


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def tracked_files(repo: Path) -> list[str]:
    """The files git tracks under repo (every file below it, outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files"], check=True,
                             capture_output=True, text=True).stdout
        files = [l for l in out.splitlines() if l]
        if files:
            return sorted(set(files))
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".git", "build"}
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*")
                  if p.is_file() and not skip & set(p.relative_to(repo).parts))


def includes(repo: Path, path: str) -> list[tuple[int, str]]:
    """(line number, included path) for each quoted include of a C, header or asm file."""
    if not path.endswith((".c", ".h", ".asm")):
        return []
    text = (repo / path).read_text(errors="replace")
    found = []
    for m in INCLUDE_RE.finditer(text):
        found.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


def is_machine(path: str) -> bool:
    return path.startswith(MACHINE_DIRS) and not path.startswith(LAB_DIR)


def check_machine(repo: Path, files: list[str]) -> Check:
    c = Check("machine-includes-no-lab")
    for f in files:
        if not is_machine(f):
            continue
        for line, inc in includes(repo, f):
            if inc.startswith((LAB_DIR, TEST_DIR)):
                c.problems.append(f'{f}:{line}: #include "{inc}" (the machine never includes '
                                  f'the lab or the tests)')
    return c


def check_lab(repo: Path, files: list[str]) -> Check:
    c = Check("lab-through-public-headers")
    for f in files:
        if not f.startswith(LAB_DIR):
            continue
        for line, inc in includes(repo, f):
            if not inc.endswith(".h"):
                c.problems.append(f'{f}:{line}: #include "{inc}" (not a header)')
            elif inc.startswith(TEST_DIR) or not inc.startswith(LAB_MAY_INCLUDE):
                c.problems.append(f'{f}:{line}: #include "{inc}" (the lab reaches the machine '
                                  f'through include/, kernel/ and mm/ headers only)')
    return c


def layout_section(readme: str) -> list[str] | None:
    """The lines of the first code block under '## Layout', or None."""
    m = re.search(r"^## Layout\s*$", readme, re.M)
    if not m:
        return None
    block = re.search(r"^```[^\n]*\n(.*?)^```", readme[m.end():], re.M | re.S)
    return block.group(1).splitlines() if block else None


def layout_entries(lines: list[str]) -> list[str]:
    """The paths the Layout block names: the first word of each line that starts in
    column 0 (continuation lines are indented)."""
    return [l.split()[0] for l in lines if l and not l[0].isspace()]


def check_readme(repo: Path, files: list[str]) -> Check:
    c = Check("readme-lists-every-file")
    readme = repo / "README.md"
    lines = layout_section(readme.read_text()) if readme.exists() else None
    if lines is None:
        c.problems.append("README.md has no '## Layout' section with a code block")
        return c
    named = layout_entries(lines)
    folders = {str(Path(f).parent) + "/" for f in files if "/" in f}
    for f in list(folders):  # every ancestor folder too
        parts = f.rstrip("/").split("/")
        folders |= {"/".join(parts[:i]) + "/" for i in range(1, len(parts))}
    wanted = set(files) | folders
    seen: set[str] = set()
    for n in named:
        if n in seen:
            c.problems.append(f"README Layout names {n} twice")
        seen.add(n)
        if n not in wanted:
            c.problems.append(f"README Layout names {n}, which git does not track")
    for w in sorted(wanted - seen):
        c.problems.append(f"README Layout does not name {w}")
    return c


def file_lines(repo: Path, files: list[str], wanted):
    """Each (file, line number, line) of the files `wanted` accepts that can be read."""
    for f in files:
        if not wanted(f):
            continue
        try:
            text = (repo / f).read_text(errors="replace")
        except OSError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            yield f, i, line


def check_outside(repo: Path, files: list[str]) -> Check:
    c = Check("no-outside-references")
    for f, i, line in file_lines(repo, files, lambda f: f.endswith(SOURCE_SUFFIXES) or "/" not in f
                                 or f.startswith(".ci/")):
        if any(p in line for p in OUTSIDE_PATTERNS):
            c.problems.append(f"{f}:{i}: {line.strip()[:100]}")
    return c


# The kernel's sources, the two files defining the macros, and a raw STAC or CLAC as either
# language writes one: an instruction at the start of an inline-asm string or statement
# (after ", \n, \t or ;), a NASM line whose instruction it is.
KERNEL_SOURCE_DIRS = ("kernel/", "mm/", "include/", "drivers/", "tests/")
SMAP_MACRO_FILES = ("kernel/smap_sites.h", "kernel/smap_sites.inc")
RAW_SMAP_C_RE = re.compile(r'(?:"|\\n|\\t|;)\s*(?:\d+:\s*)?(?:stac|clac|STAC|CLAC)\b')
RAW_SMAP_ASM_RE = re.compile(r'^\s*(?:[\w.@$]+:)?\s*(?:stac|clac)\b', re.I)


def check_smap_sites(repo: Path, files: list[str]) -> Check:
    c = Check("smap-sites-only")

    def raw(f: str, line: str):
        if f.endswith(".asm"):
            return RAW_SMAP_ASM_RE.match(line.split(";", 1)[0])
        return RAW_SMAP_C_RE.search(line)

    for f, i, line in file_lines(repo, files, lambda f: f.startswith(KERNEL_SOURCE_DIRS)
                                 and f not in SMAP_MACRO_FILES and f.endswith((".c", ".h", ".asm"))):
        if raw(f, line):
            c.problems.append(f"{f}:{i}: {line.strip()[:100]} (a raw STAC/CLAC: use "
                              "SMAP_STAC/SMAP_CLAC, kernel/smap_sites.h)")
    return c


def run_checks(repo: Path) -> list[Check]:
    files = tracked_files(repo)
    return [check(repo, files) for check in (check_machine, check_lab, check_readme, check_outside,
                                             check_smap_sites)]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="check_layout.py", description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = ap.parse_args(argv)
    checks = run_checks(Path(args.repo))
    for c in checks:
        print(f"layout: {'ok' if c.ok else 'not ok'} {c.name}")
        for p in c.problems:
            print(f"    {p}")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
