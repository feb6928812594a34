"""cheader.py — constants the host scripts share with the kernel, read from its C headers.

The scripts never spell a kernel constant themselves: they read it from the header the kernel
is built with (include/mdlab/protocol.h for the serial protocol, mm/layout.h for the address
layout), so the two sides cannot drift apart.

read_defines(path) returns {name: value} for each object-like #define whose value is

  - one integer literal (decimal, hex, octal; U and L suffixes ignored): an int;
  - string literals and names of string macros defined above it, joined as C joins adjacent
    literals (escapes \\n \\t \\\\ \\" understood): a str.

A /* ... */ or // comment may follow.  Anything else (function-like macros, expressions,
continued lines) is left out; the headers keep what the scripts need in these forms.
"""

from __future__ import annotations

import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

_DEFINE_RE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)\s+(.*?)\s*$")
_INT_RE = re.compile(r"^(0[xX][0-9A-Fa-f]+|0[0-7]*|[1-9]\d*)[uUlL]*$")
_TOKEN_RE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*))')
_COMMENT_RE = re.compile(r"\s*(?:/\*.*?\*/|//.*)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def _unescape(body: str) -> str | None:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                return None
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _string_value(text: str, known: dict[str, int | str]) -> str | None:
    """`text` as a sequence of string literals and string macro names, joined; None when it
    is anything else."""
    parts, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            rest = text[pos:]
            return "".join(parts) if parts and _COMMENT_RE.fullmatch(rest) else None
        literal, name = m.groups()
        if literal is not None:
            value = _unescape(literal)
        else:
            value = known.get(name)
            if not isinstance(value, str):
                return None
        if value is None:
            return None
        parts.append(value)
        pos = m.end()
    return "".join(parts) if parts else None


def parse_defines(text: str) -> dict[str, int | str]:
    """The integer and string #defines of the C source `text` (see the module's docstring)."""
    values: dict[str, int | str] = {}
    for line in text.splitlines():
        m = _DEFINE_RE.match(line)
        if not m or line.rstrip().endswith("\\"):
            continue
        name, body = m.groups()
        number = _INT_RE.match(_COMMENT_RE.sub("", body))
        if number:
            literal = number.group(1)
            values[name] = int(literal, 8 if literal.startswith("0") and len(literal) > 1
                               and literal[1] not in "xX" else 0)
            continue
        string = _string_value(body, values)
        if string is not None:
            values[name] = string
    return values


def read_defines(path: str) -> dict[str, int | str]:
    """The integer and string #defines of the header at `path`."""
    with open(path, encoding="utf-8") as f:
        return parse_defines(f.read())


def read_repo_header(relative: str) -> dict[str, int | str]:
    """read_defines of a header named relative to the repository root ("mm/layout.h")."""
    return read_defines(os.path.join(ROOT, relative))
