"""map.py — `make map`: a picture of mdlab's address spaces with live MDL mappings in them.

Boots the kernel to its monitor and runs `mapdump` (kernel/lab/mapdump.c), which maps MDLs into the
kernel and into an agent process and prints both address spaces as range lines read from
the page tables; keeps that serial log in BUILD/map.log; and draws BUILD/map.svg:

  - two columns, the kernel half and the process's user half, highest address at the top;
  - each mapped range (leaves merged by rights, memory type and region) is a block whose
    height grows with log2 of its size (4 KiB to 512 GiB all stay readable), filled by its
    memory type, with a stripe on its left for its rights (RW, R, RX);
  - unmapped space between ranges is a grey band, also log-scaled, labelled with its size;
  - brackets name the regions (direct map, system PTEs, pool, stacks, image sections; the
    process's image, stack, parameter page, MDL mappings);
  - every MDL of the scene is named where it is mapped, a line joins its kernel and user
    mappings, and direct-map ranges that hold its frames' aliases are marked (so is the
    read-only alias of the kernel image).

Then BUILD/map.png, with rsvg-convert (Debian's librsvg2-bin) or ImageMagick's convert when
one of them works here; otherwise it says so and keeps the SVG (any web browser opens it).

    python3 scripts/map.py --esp build/esp.img [--kvm 0|1] [--qemu-extra ...] [--out build/map.svg]
    python3 scripts/map.py --from-log build/map.log     # draw again without booting
"""

from __future__ import annotations

import argparse
import html
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cheader  # noqa: E402
import protocol  # noqa: E402

TAG = "map:"
LAYOUT = cheader.read_repo_header("mm/layout.h")
PAGE = LAYOUT["PAGE_SIZE"]
USER_TOP = LAYOUT["USER_VA_END"]              # one past the user half
KERNEL_BASE = LAYOUT["KVA_DIRECT_MAP_BASE"]   # the kernel half starts here (the direct map's base)
DUMP_PREFIX = protocol.MAPDUMP + " "
SPACE_END = 1 << 64

TYPE_COLOURS = {"WB": "#3b6ea5", "WT": "#3d8b3d", "UC-": "#d9822b", "UC": "#c0392b",
                "WC": "#8e44ad", "WP": "#16a085"}
TYPE_MEANING = {"WB": "write-back", "WT": "write-through", "UC-": "uncached, WC-overridable",
                "UC": "uncached", "WC": "write-combining", "WP": "write-protected"}
RIGHTS_STYLE = {"RW": ("#f4d03f", "#000"), "R": ("#d5d8dc", "#000"), "RX": ("#1c1c1c", "#fff"),
                "RWX": ("#ff00ff", "#000")}
GAP_FILL = "#eeeeee"
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"

# Geometry (pixels).
MARGIN_TOP = 96
COL_W = 520
KCOL_X = 170                       # kernel column; its region brackets to the left
MID_W = 380                        # annotations and MDL connectors between the columns
UCOL_X = KCOL_X + COL_W + MID_W    # user column; its region brackets to the right
WIDTH = UCOL_X + COL_W + 170
STRIPE_W = 30
FONT_PX = 11


def block_height(size: int) -> float:
    """A mapped range: 20 px for 4 KiB, 4 px more per doubling."""
    return 20 + 4 * math.log2(max(size, PAGE) / PAGE)


def gap_height(size: int) -> float:
    """Unmapped space: 4 px for 4 KiB, 1.6 px more per doubling (128 TiB: 60 px)."""
    return 4 + 1.6 * math.log2(max(size, PAGE) / PAGE)


def format_size(n: int) -> str:
    """As the kernel's ptdump prints sizes: exact when whole (124K), else one decimal."""
    for shift, unit in ((60, "E"), (50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift:
            whole, rest = divmod(n, 1 << shift)
            return f"{whole}{unit}" if not rest else f"{whole}.{rest * 10 >> shift}{unit}"
    return f"{n}B"


# ------------------------------------------------------------------------------ the dump

@dataclass
class Range:
    space: str
    start: int
    last: int
    leaves: str
    us: str
    rw: str
    x: str
    g: str
    type: str
    region: str

    @property
    def size(self) -> int:
        return self.last - self.start + 1

    @property
    def rights(self) -> str:
        return self.rw + ("X" if self.x == "X" else "")


@dataclass
class Mdl:
    name: str
    address: int
    pages: int
    type: str
    kernel: int
    user: int
    rights_kernel: str
    rights_user: str
    pfns: list[int]


@dataclass
class Dump:
    spaces: dict[str, dict[str, str]] = field(default_factory=dict)
    ranges: list[Range] = field(default_factory=list)
    mdls: list[Mdl] = field(default_factory=list)
    agent: dict[str, str] = field(default_factory=dict)


class DumpError(Exception):
    """The log holds no complete mapdump: the message says what is missing."""


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse_dump(text: str) -> Dump:
    """The `mapdump:` lines of a serial log (CRs and terminal escapes are ignored)."""
    dump = Dump()
    begun = ended = False
    for raw in text.splitlines():
        line = ANSI.sub("", raw).replace("\r", "").strip()
        if not line.startswith(DUMP_PREFIX):
            continue
        words = shlex.split(line[len(DUMP_PREFIX):])
        kind, fields = words[0], dict(w.split("=", 1) for w in words[1:] if "=" in w)
        if kind == "begin":
            if fields.get("version") != str(protocol.MAPDUMP_VERSION):
                raise DumpError(f"mapdump version {fields.get('version')!r}, "
                                f"this script reads {protocol.MAPDUMP_VERSION}")
            begun = True
        elif kind == "end":
            ended = True
        elif kind == "space":
            dump.spaces[fields["name"]] = fields
        elif kind == "range":
            dump.ranges.append(Range(fields["space"], int(fields["start"], 16), int(fields["last"], 16),
                                     fields["leaves"], fields["us"], fields["rw"], fields["x"],
                                     fields["g"], fields["type"], fields["region"]))
        elif kind == "mdl":
            dump.mdls.append(Mdl(fields["name"], int(fields["mdl"], 16), int(fields["pages"]),
                                 fields["type"], int(fields["kernel"], 16), int(fields["user"], 16),
                                 fields["rights_kernel"], fields["rights_user"],
                                 [int(p, 16) for p in fields["pfns"].split(",") if p]))
        elif kind == "agent":
            dump.agent = fields
    if not begun or not ended:
        raise DumpError(f"no complete mapdump in the log (`{DUMP_PREFIX}begin` ... `{DUMP_PREFIX}end`)")
    for name in ("kernel", "user"):
        if name not in dump.spaces or not any(r.space == name for r in dump.ranges):
            raise DumpError(f"the dump has no {name} address space")
    return dump


# ------------------------------------------------------------------------------ layout

@dataclass
class Placed:
    """A block (a Range) or a gap band, at y .. y + h."""
    y: float
    h: float
    start: int
    end: int                        # exclusive
    range: Range | None = None      # None: unmapped


def place_column(ranges: list[Range], lo: int, hi: int, top: float) -> list[Placed]:
    """Stack a space's ranges from `hi` (exclusive, at the top) down to `lo`, with a gap
    band wherever addresses are skipped."""
    out: list[Placed] = []
    y = top
    cursor = hi
    for r in sorted(ranges, key=lambda r: r.start, reverse=True):
        end = r.last + 1
        if end < cursor:
            h = gap_height(cursor - end)
            out.append(Placed(y, h, end, cursor))
            y += h
        h = block_height(r.size)
        out.append(Placed(y, h, r.start, end, r))
        y += h + 1
        cursor = r.start
    if cursor > lo:
        h = gap_height(cursor - lo)
        out.append(Placed(y, h, lo, cursor))
    return out


def column_bottom(placed: list[Placed]) -> float:
    return max(p.y + p.h for p in placed)


# ------------------------------------------------------------------------------ drawing

class Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def rect(self, x, y, w, h, fill, stroke="none", extra="") -> None:
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
                 f'stroke="{stroke}" {extra}/>')

    def text(self, x, y, s, size=FONT_PX, fill="#000", anchor="start", weight="normal") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-family="{FONT}" font-size="{size}" '
                 f'fill="{fill}" text-anchor="{anchor}" font-weight="{weight}" xml:space="preserve">'
                 f'{html.escape(s)}</text>')

    def line(self, x1, y1, x2, y2, stroke="#000", width=1.0, extra="") -> None:
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                 f'stroke-width="{width}" {extra}/>')


def block_label(r: Range) -> str:
    return (f"0x{r.start:016x}-0x{r.last:016x} {format_size(r.size):>6}  "
            f"{r.us} {r.rw:<2} {'X' if r.x == 'X' else 'NX':<2} {r.g} {r.type:<3} {r.leaves}")


def draw_column(svg: Svg, placed: list[Placed], x: float) -> None:
    for p in placed:
        if p.range is None:
            svg.rect(x + STRIPE_W, p.y, COL_W - STRIPE_W, p.h, GAP_FILL, extra='fill-opacity="0.9"')
            if p.h >= 12:
                svg.text(x + COL_W / 2 + STRIPE_W / 2, p.y + p.h / 2 + 4,
                         f"unmapped {format_size(p.end - p.start)}", size=10, fill="#666", anchor="middle")
            continue
        r = p.range
        fill, ink = RIGHTS_STYLE.get(r.rights, ("#ffffff", "#000"))
        svg.rect(x, p.y, STRIPE_W, p.h, fill, stroke="#555", extra='stroke-width="0.5"')
        svg.text(x + STRIPE_W / 2, p.y + p.h / 2 + 4, r.rights, size=10, fill=ink, anchor="middle",
                 weight="bold")
        svg.rect(x + STRIPE_W, p.y, COL_W - STRIPE_W, p.h, TYPE_COLOURS.get(r.type, "#999"),
                 stroke="#222", extra='stroke-width="0.5"')
        svg.text(x + STRIPE_W + 6, p.y + p.h / 2 + 4, block_label(r), size=10.5, fill="#fff")


def draw_brackets(svg: Svg, placed: list[Placed], x: float, left: bool) -> None:
    """A bracket and a name for each run of consecutive blocks in the same region."""
    runs: list[tuple[str, float, float]] = []
    for p in placed:
        if p.range is None:
            continue
        name = p.range.region
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], p.y + p.h)
        else:
            runs.append((name, p.y, p.y + p.h))
    for name, y0, y1 in runs:
        bx = x - 8 if left else x + COL_W + 8
        tick = 5 if left else -5
        svg.line(bx, y0 + 1, bx, y1 - 1, stroke="#333")
        svg.line(bx, y0 + 1, bx + tick, y0 + 1, stroke="#333")
        svg.line(bx, y1 - 1, bx + tick, y1 - 1, stroke="#333")
        tx = bx - 6 if left else bx + 6
        svg.text(tx, (y0 + y1) / 2 + 4, name, size=11.5, anchor="end" if left else "start", weight="bold")


def blocks_overlapping(placed: list[Placed], start: int, end: int) -> list[Placed]:
    return [p for p in placed if p.range and p.start < end and start < p.end]


def text_width(s: str, size: float) -> float:
    """The width of `s` in the monospace font (DejaVu Sans Mono: 0.602 em a character)."""
    return len(s) * size * 0.602


def draw_mdls(svg: Svg, dump: Dump, kplaced: list[Placed], uplaced: list[Placed]) -> None:
    """Tag each MDL at its kernel mapping; run a line from the tag to its user mapping (down a
    lane of its own beside the user column); tag the direct-map ranges holding its frames'
    aliases.  Blocks are at least 18 px apart, so one-line tags at block centres never meet."""
    tag_x = KCOL_X + COL_W + 6
    lanes = 0
    for m in dump.mdls:
        colour = TYPE_COLOURS.get(m.type, "#333")
        size = m.pages * PAGE
        kblocks = blocks_overlapping(kplaced, m.kernel, m.kernel + size) if m.kernel else []
        ublocks = blocks_overlapping(uplaced, m.user, m.user + size) if m.user else []
        if kblocks:
            ky = kblocks[0].y + kblocks[0].h / 2
            tag = (f"\u25c0 MDL {m.name}: {m.pages} pages {m.type}, kernel {m.rights_kernel}"
                   + (f", user {m.rights_user}" if ublocks else ", no user mapping"))
            svg.text(tag_x, ky + 4, tag, size=10.5, fill=colour, weight="bold")
            if ublocks:
                uy = ublocks[0].y + ublocks[0].h / 2
                lane = UCOL_X - 16 - 14 * lanes
                lanes += 1
                x0 = tag_x + text_width(tag, 10.5) + 6
                svg.add(f'<polyline points="{x0:.1f},{ky:.1f} {lane:.1f},{ky:.1f} {lane:.1f},{uy:.1f} '
                        f'{UCOL_X:.1f},{uy:.1f}" fill="none" stroke="{colour}" stroke-width="2.5" '
                        f'stroke-linejoin="round"/>')
                svg.add(f'<circle cx="{UCOL_X:.1f}" cy="{uy:.1f}" r="4" fill="{colour}"/>')
        aliases = {KERNEL_BASE + pfn * PAGE for pfn in m.pfns}
        for p in kplaced:
            if not (p.range and p.range.region == "direct map" and any(p.start <= a < p.end for a in aliases)):
                continue
            if p.range.type == m.type and m.type != "WB":
                tag = f"\u25c0 direct-map aliases of MDL {m.name}'s frames, now {m.type}"
            else:
                tag = f"\u25c0 MDL {m.name}'s frames are in here ({p.range.type})"
            svg.text(tag_x, p.y + p.h / 2 + 4, tag, size=10.5, fill=colour, weight="bold")


def draw_notes(svg: Svg, kplaced: list[Placed]) -> None:
    """Tag what the reader would otherwise have to know: read-only direct-map ranges are the
    kernel image's own frames (text and rodata are read-only through every alias)."""
    for p in kplaced:
        if p.range and p.range.region == "direct map" and p.range.rw == "R":
            svg.text(KCOL_X + COL_W + 6, p.y + p.h / 2 + 4,
                     "\u25c0 kernel text+rodata frames: read-only here too",
                     size=10.5, fill="#333", weight="bold")


def draw_legend(svg: Svg, x: float, y: float) -> float:
    svg.text(x, y, "memory type (fill)", size=12, weight="bold")
    y += 8
    for i, (t, colour) in enumerate(TYPE_COLOURS.items()):
        yy = y + i * 18
        svg.rect(x, yy, 26, 14, colour)
        svg.text(x + 34, yy + 11, f"{t:<3} {TYPE_MEANING[t]}", size=11)
    y += len(TYPE_COLOURS) * 18 + 16
    svg.text(x, y, "rights (left stripe), effective across levels", size=12, weight="bold")
    y += 8
    for i, (rights, meaning) in enumerate((("RW", "read/write, no execute"), ("R", "read-only, no execute"),
                                           ("RX", "read and execute (code)"), ("RWX", "writable and executable: must never appear"))):
        fill, ink = RIGHTS_STYLE[rights]
        yy = y + i * 18
        svg.rect(x, yy, 26, 14, fill, stroke="#555", extra='stroke-width="0.5"')
        svg.text(x + 13, yy + 11, rights, size=9, fill=ink, anchor="middle", weight="bold")
        svg.text(x + 34, yy + 11, meaning, size=11)
    y += 4 * 18 + 16
    svg.text(x, y, "size (log scale): block height grows 4 px per doubling", size=12, weight="bold")
    y += 10
    bx = x
    for size in (PAGE, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30):
        h = block_height(size)
        svg.rect(bx, y, 40, h, "#888")
        svg.text(bx + 20, y + h + 13, format_size(size), size=10, anchor="middle")
        bx += 62
    y += block_height(1 << 30) + 30
    svg.rect(x, y - 11, 40, 14, GAP_FILL, stroke="#999", extra='stroke-width="0.5"')
    svg.text(x + 48, y, "unmapped: grey band, 1.6 px per doubling, size written", size=11)
    svg.text(x, y + 18, "block text: start-last  size  U/S RW X/NX G type  leaf sizes", size=11)
    return y + 30


def render(dump: Dump) -> str:
    kranges = [r for r in dump.ranges if r.space == "kernel"]
    uranges = [r for r in dump.ranges if r.space == "user"]
    kplaced = place_column(kranges, KERNEL_BASE, SPACE_END, MARGIN_TOP)
    uplaced = place_column(uranges, 0, USER_TOP, MARGIN_TOP)
    svg = Svg()
    draw_column(svg, kplaced, KCOL_X)
    draw_column(svg, uplaced, UCOL_X)
    draw_brackets(svg, kplaced, KCOL_X, left=True)
    draw_brackets(svg, uplaced, UCOL_X, left=False)
    draw_mdls(svg, dump, kplaced, uplaced)
    draw_notes(svg, kplaced)
    legend_bottom = draw_legend(svg, UCOL_X, column_bottom(uplaced) + 50)
    height = max(column_bottom(kplaced), legend_bottom) + 40

    ks, us = dump.spaces["kernel"], dump.spaces["user"]
    head = Svg()
    head.text(20, 30, "mdlab address spaces, read from the page tables (monitor command mapdump)",
              size=18, weight="bold")
    agent = dump.agent
    proof = ""
    if agent.get("read"):
        same = agent.get("read") == agent.get("wrote")
        proof = (f"; the agent read {agent['read']} through its MDL wc mapping, "
                 f"{'what' if same else 'NOT what'} the kernel wrote through its own")
    head.text(20, 52, f"kernel half (CR3 0x{int(ks['cr3'], 16):x}, shared by every process) and the user half "
              f"of process {us.get('process', '?')} pid {us.get('pid', '?')} (CR3 0x{int(us['cr3'], 16):x})"
              + proof, size=12)
    head.text(KCOL_X, MARGIN_TOP - 12, "kernel half: 0xffff800000000000 - 0xffffffffffffffff, top down",
              size=12, weight="bold")
    head.text(UCOL_X, MARGIN_TOP - 12, "user half: 0x0000000000000000 - 0x00007fffffffffff, top down",
              size=12, weight="bold")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>',
        *head.parts, *svg.parts, "</svg>", ""])


# ------------------------------------------------------------------------------ running

def boot_and_dump(args: argparse.Namespace, log: Path) -> str:
    """Boot to the monitor, run mapdump, keep the serial log; its text."""
    scripts = Path(__file__).resolve().parent
    cmd = [sys.executable, str(scripts / "run.py"), "--esp", args.esp, "--kvm", args.kvm,
           "--qemu-extra", args.qemu_extra, "--cmd", "mapdump", "--timeout", str(args.timeout),
           "--build-dir", str(log.parent / "map-boot")]
    print(f"{TAG} booting the kernel and running mapdump (serial log: {log})", file=sys.stderr)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    text = proc.stdout.decode("utf-8", "replace")
    log.write_text(text)
    if proc.returncode != 0:
        raise DumpError(f"the boot failed (run.py exit {proc.returncode}): "
                        f"{proc.stderr.decode('utf-8', 'replace').strip() or 'see ' + str(log)}")
    return text


def to_png(svg: Path, png: Path) -> str | None:
    """Convert with the first converter that works; its name, or None."""
    candidates = []
    if shutil.which("rsvg-convert"):
        candidates.append(("rsvg-convert", ["rsvg-convert", "-b", "white", "-o", str(png), str(svg)]))
    if shutil.which("convert"):
        candidates.append(("ImageMagick convert", ["convert", "-background", "white", str(svg), str(png)]))
    for name, cmd in candidates:
        png.unlink(missing_ok=True)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode == 0 and png.is_file() and png.stat().st_size > 0:
            return name
    png.unlink(missing_ok=True)
    return None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="map.py", description="Draw mdlab's address spaces.")
    ap.add_argument("--esp", help="the ESP image to boot (build/esp.img)")
    ap.add_argument("--kvm", choices=["0", "1"], default="0")
    ap.add_argument("--qemu-extra", default="")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default="build/map.svg", help="the SVG to write (the PNG goes beside it)")
    ap.add_argument("--from-log", help="draw from this serial log instead of booting")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.from_log:
            text = Path(args.from_log).read_text(errors="replace")
        elif args.esp:
            text = boot_and_dump(args, out.with_suffix(".log"))
        else:
            ap.error("give --esp to boot, or --from-log")
        dump = parse_dump(text)
    except (DumpError, OSError) as e:
        print(f"{TAG} {e}", file=sys.stderr)
        return 1
    out.write_text(render(dump))
    print(f"{TAG} wrote {out} ({len(dump.ranges)} ranges, {len(dump.mdls)} MDLs): open it in a web browser")
    png = out.with_suffix(".png")
    converter = to_png(out, png)
    if converter:
        print(f"{TAG} wrote {png} with {converter}")
    else:
        print(f"{TAG} no PNG: neither rsvg-convert (Debian: librsvg2-bin) nor ImageMagick's convert "
              f"could convert the SVG here")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
