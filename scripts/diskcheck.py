"""The `# disk-check: SECTOR COUNT SEED` directive: what a test wrote to the disk through the
virtio-blk device, compared from outside with the image file after the main machine exits.

The pattern is tests/lib/pattern.h's: a 32-bit xorshift (Marsaglia, "Xorshift RNGs", 2003:
x ^= x << 13; x ^= x >> 17; x ^= x << 5) started at SEED (not 0), one step per 32-bit
little-endian word, the first word the first step's value, COUNT 512-byte sectors from SECTOR.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

SECTOR = 512
DIRECTIVE = re.compile(r"#\s*disk-check:\s*(\d+)\s+(\d+)\s+(0x[0-9a-fA-F]+|\d+)\s*$")


def pattern(seed: int, nbytes: int) -> bytes:
    """nbytes (a multiple of 4) of the xorshift32 pattern from seed."""
    x = seed & 0xFFFFFFFF
    words = []
    for _ in range(nbytes // 4):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        words.append(x)
    return struct.pack(f"<{len(words)}I", *words)


def directives(text: str) -> list[tuple[int, int, int]]:
    """(sector, count, seed) of every directive line in a serial log."""
    out = []
    for line in text.splitlines():
        m = DIRECTIVE.search(line.strip("\r"))
        if m:
            out.append((int(m.group(1)), int(m.group(2)), int(m.group(3), 0)))
    return out


def check(image: Path, sector: int, count: int, seed: int) -> str | None:
    """None when the image holds the pattern there; otherwise why not."""
    try:
        with open(image, "rb") as f:
            f.seek(sector * SECTOR)
            got = f.read(count * SECTOR)
    except OSError as e:
        return f"cannot read {image}: {e}"
    want = pattern(seed, count * SECTOR)
    if got == want:
        return None
    if len(got) < len(want):
        return f"{image} ends {len(want) - len(got)} bytes short of sector {sector + count}"
    first = next(i for i in range(len(want)) if got[i] != want[i])
    return (f"sector {sector + first // SECTOR} byte {first % SECTOR}: image has "
            f"0x{got[first]:02x}, the pattern 0x{want[first]:02x}")
