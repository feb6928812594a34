#!/usr/bin/env python3
"""Driver source as MSVC compiles it, for GCC: the SEH rewriter.

    python3 scripts/seh_rewrite.py IN.c OUT.c

GCC C has no structured exception handling.  The Makefile passes driver sources (the
*_driver.c files and EXTRA_TESTS) through this script, which turns every

    __try { B } __except (F) { H }        (also try / except)
    __try { B } __finally { H }           (also try / finally)

into plain C over kernel/seh.h's runtime, with MSVC's semantics (README, "Structured
exception handling"):

  - the __try block runs in a do-nothing scope that every way out passes through: its end,
    __leave, and break, continue, return and goto that leave it.  Each of those sets a state
    variable and jumps to the block's end, where the frame is unregistered (and, for
    __finally, the finally block runs); then the state variable re-executes the jump in the
    enclosing scope, so break and continue reach the enclosing loop or switch;
  - __except and __finally blocks are plain blocks after the __try, so a break, continue,
    return or goto in them acts on the enclosing statement directly;
  - the filter is evaluated when seh_setjmp returns SEH_RESUME_FILTER (phase 1, the stack of
    the fault kept), the handler when it returns SEH_RESUME_HANDLER, a __finally on the way
    of an unwind when it returns SEH_RESUME_FINALLY;
  - a local assigned inside a __try block, and declared before it, is declared volatile, so
    that its value survives the longjmp to the handler (setjmp's rule);
  - GetExceptionCode(), GetExceptionInformation(), AbnormalTermination() and their aliases
    name the frame of their own construct.

What it cannot support fails here, with FILE:LINE: and the reason: a __try without a block,
without __except or __finally, __leave outside a __try, a stray __except or __finally, the
keywords inside a preprocessor directive, a for-loop declaration it would have to split.
Line numbers are kept: generated code goes on the lines of the tokens it replaces.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cheader  # noqa: E402

# The runtime's numbers, from the header the kernel is built with (the expansion is compiled
# after preprocessing, so it cannot name the macros).
SEH = cheader.read_defines(os.path.join(cheader.ROOT, "kernel", "seh.h"))


class RewriteError(Exception):
    pass


@dataclass
class Tok:
    text: str
    kind: str   # id, num, str, punct, pp
    line: int
    pre: str = " "
    file: str | None = None   # from the last line marker; None: the file being rewritten


_PUNCT = sorted("""
... <<= >>= -> ++ -- << >> <= >= == != && || += -= *= /= %= &= ^= |= ##
{ } [ ] ( ) ; : , . ? ~ ! + - * / % & | ^ < > = #
""".split(), key=len, reverse=True)

TRY_WORDS = {"__try", "try"}
EXCEPT_WORDS = {"__except", "except"}
FINALLY_WORDS = {"__finally", "finally"}
SEH_WORDS = TRY_WORDS | EXCEPT_WORDS | FINALLY_WORDS | {"__leave"}
ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="}
NOT_TYPE_WORDS = {"return", "goto", "case", "sizeof", "else", "do", "typeof", "__typeof__",
                  "_Alignof", "break", "continue", "if", "while", "for", "switch"}
DROP_FROM_RETURN_TYPE = {"static", "inline", "__inline", "__inline__", "extern", "_Noreturn",
                         "__forceinline"}

EXCEPTION_CODE = {"GetExceptionCode", "exception_code", "_exception_code"}
EXCEPTION_INFO = {"GetExceptionInformation", "exception_info", "_exception_info"}
ABNORMAL = {"AbnormalTermination", "abnormal_termination", "_abnormal_termination"}


_LINE_MARKER = re.compile(r'#\s*(?:line\s+)?(\d+)\s+"((?:[^"\\]|\\.)*)"')


def tokenize(src: str, line: int = 1) -> list[Tok]:
    """Tokens with their line (and file) in the source the preprocessor read."""
    toks: list[Tok] = []
    i, n, pre = 0, len(src), ""
    at_line_start = True
    cur_file = None
    _append = toks.append

    def add(t: Tok):
        t.file = cur_file
        _append(t)
    while i < n:
        c = src[i]
        if c == "\n":
            pre += c
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r\f\v":
            pre += c
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            pre += src[i:j]
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise RewriteError(f"{line}: unterminated comment")
            pre += src[i:j + 2]
            line += src.count("\n", i, j + 2)
            i = j + 2
            continue
        if c == "#" and at_line_start:
            j = i
            while True:
                k = src.find("\n", j)
                k = n if k < 0 else k
                if k > 0 and src[k - 1] == "\\" and k < n:
                    j = k + 1
                    continue
                break
            text = src[i:k]
            add(Tok(text, "pp", line, pre))
            line += text.count("\n")
            m = _LINE_MARKER.match(text)
            if m:
                # the next line is line m.group(1) of that file
                line, cur_file = int(m.group(1)) - 1, m.group(2)
            pre, i = "", k
            continue
        at_line_start = False
        m = re.match(r"[A-Za-z_]\w*", src[i:i + 256])
        if m:
            add(Tok(m.group(0), "id", line, pre))
            pre, i = "", i + len(m.group(0))
            continue
        m = re.match(r"\.?\d(?:[eEpP][+-]|[\w.])*", src[i:i + 256])
        if m:
            add(Tok(m.group(0), "num", line, pre))
            pre, i = "", i + len(m.group(0))
            continue
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                if j < n and src[j] == "\n":
                    raise RewriteError(f"{line}: unterminated literal")
                j += 1
            add(Tok(src[i:j + 1], "str", line, pre))
            pre, i = "", j + 1
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                add(Tok(p, "punct", line, pre))
                pre, i = "", i + len(p)
                break
        else:
            raise RewriteError(f"{line}: unexpected character {c!r}")
    add(Tok("", "eof", line, pre))
    return toks


def render(toks: list[Tok]) -> str:
    return "".join(t.pre + t.text for t in toks)


def match(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opener, closer, depth = toks[i].text, pairs[toks[i].text], 0
    for j in range(i, len(toks)):
        if toks[j].text == opener and toks[j].kind == "punct":
            depth += 1
        elif toks[j].text == closer and toks[j].kind == "punct":
            depth -= 1
            if depth == 0:
                return j
    raise RewriteError(f"{toks[i].line}: unbalanced {opener!r}")


def is_call(toks: list[Tok], i: int, names: set[str]) -> bool:
    return (toks[i].kind == "id" and toks[i].text in names and toks[i + 1].text == "("
            and toks[i + 2].text == ")")


class Rewriter:
    def __init__(self, path: str):
        self.path = path
        self.counter = 0

    def fail(self, tok: Tok, msg: str):
        """FILE:LINE of the source the token came from (the preprocessor's line markers)."""
        raise RewriteError(f"{tok.file or self.path}:{tok.line}: seh_rewrite: {msg}")

    # ------------------------------------------------------------------ generation helpers
    def gen(self, text: str, line: int, pre: str = " ") -> list[Tok]:
        ts = tokenize(text, line)[:-1]
        for t in ts:
            t.pre, t.line = " ", line
        if ts:
            ts[0].pre = pre
        return ts

    @staticmethod
    def carry(*dropped: Tok) -> str:
        """The line breaks of dropped tokens' whitespace, so the lines stay where they were."""
        nl = sum(t.pre.count("\n") for t in dropped)
        return "\n" * nl + " " if nl else " "

    # ------------------------------------------------------------------ the whole file
    def rewrite(self, src: str) -> str:
        toks = tokenize(src)
        for t in toks:
            if t.kind == "pp" and re.search(r"\b(__try|__except|__finally|__leave)\b", t.text):
                self.fail(t, "SEH keywords inside a preprocessor directive are not supported")
        toks = self.mark_volatile(toks)
        out: list[Tok] = []
        i = 0
        for fn in self.functions(toks):
            open_, close, rtype = fn
            self.check_no_jump_into_try(toks, open_, close)
            out += toks[i:open_ + 1]
            body = self.rewrite_range(toks[open_ + 1:close], rtype)
            for j, t in enumerate(body):
                if t.kind == "id" and t.text == "__leave":
                    self.fail(t, "__leave outside a __try block")
            out += body
            i = close
        out += toks[i:]
        for t in out:
            if t.kind == "id" and t.text in SEH_WORDS - {"try", "except", "finally"}:
                self.fail(t, f"{t.text} outside a function or without its __try")
        text = render(out)
        # Preprocessed input carries its own line markers.
        return text if toks and toks[0].kind == "pp" else f'#line 1 "{self.path}"\n' + text

    def check_no_jump_into_try(self, toks, open_, close):
        """A goto from outside a __try block to a label inside it is refused (MSVC refuses it
        too: the frame would never be registered)."""
        for b0, b1, _, _ in self.try_bodies(toks, open_ + 1, close):
            inside = {toks[k].text for k in range(b0, b1)
                      if toks[k].kind == "id" and toks[k + 1].text == ":" and toks[k].text != "default"
                      and toks[k - 1].text in (";", "{", "}")}
            for k in range(open_ + 1, close):
                if b0 <= k < b1:
                    continue
                if toks[k].text == "goto" and toks[k + 1].text in inside:
                    self.fail(toks[k], f"goto {toks[k + 1].text}: a jump into a __try block is not allowed")

    def functions(self, toks: list[Tok]):
        """(index of '{', index of '}', return-type text) of each function definition."""
        depth, i, stmt_start = 0, 0, 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "pp":
                stmt_start = i + 1
            elif t.text in ";" and t.kind == "punct":
                stmt_start = i + 1
            elif t.text == "{" and t.kind == "punct":
                j = match(toks, i)
                if toks[i - 1].text == ")":
                    # find the '(' of the parameter list and the name before it
                    depth_p, k = 0, i - 1
                    while k >= 0:
                        if toks[k].text == ")":
                            depth_p += 1
                        elif toks[k].text == "(":
                            depth_p -= 1
                            if depth_p == 0:
                                break
                        k -= 1
                    name = k - 1
                    rt = []
                    m = stmt_start
                    while m < name:
                        w = toks[m]
                        if w.text == "__attribute__" and toks[m + 1].text == "(":
                            m = match(toks, m + 1) + 1
                            continue
                        if w.text not in DROP_FROM_RETURN_TYPE:
                            rt.append(w.text)
                        m += 1
                    rtype = " ".join(rt)
                    if rtype in ("void", ""):
                        rtype = None
                    yield i, j, rtype
                i = j + 1
                stmt_start = i
                continue
            i += 1

    # ------------------------------------------------------------------ volatile locals
    def mark_volatile(self, toks: list[Tok]) -> list[Tok]:
        inserts: dict[int, list[Tok]] = {}
        replaces: dict[int, list[Tok]] = {}
        for open_, close, _ in list(self.functions(toks)):
            fn_start = open_
            while fn_start > 0 and toks[fn_start].text != "(":
                fn_start -= 1
            # parameter list start: the '(' matching the ')' before '{'
            depth, k = 0, open_ - 1
            while k >= 0:
                if toks[k].text == ")":
                    depth += 1
                elif toks[k].text == "(":
                    depth -= 1
                    if depth == 0:
                        break
                k -= 1
            fn_start = k
            addressed = {toks[m + 1].text for m in range(fn_start, close)
                         if toks[m].text == "&" and toks[m + 1].kind == "id"
                         and toks[m - 1].kind not in ("id", "num", "str")
                         and toks[m - 1].text not in (")", "]")}
            done: set[int] = set()
            for b0, b1, f0, f1 in self.try_bodies(toks, open_ + 1, close):
                direct, parts = self.assigned(toks, b0, b1)
                d2, p2 = self.assigned(toks, f0, f1)
                direct, parts = direct | d2, parts | p2
                for name in sorted(direct | parts):
                    d = self.find_decl(toks, fn_start, b0 - 2, name)
                    if d is None:
                        # declared inside the block: nothing to keep; else a global or a
                        # declaration not recognised: keep it in memory all the same
                        if self.find_decl(toks, b0, b1, name) is None:
                            inserts.setdefault(b0, []).extend(self.gen(
                                f'__asm__ volatile("" : : "r"(&{name}) : "memory");', toks[b0].line))
                        continue
                    if d in done:
                        continue
                    done.add(d)
                    if name in addressed or name in parts:
                        # its address is taken (volatile would change the pointer's type), or
                        # a member or element is assigned: keep the object in memory, its
                        # address escaped at the __try, so no copy of it lives in a register
                        inserts.setdefault(b0, []).extend(
                            self.gen(f'__asm__ volatile("" : : "r"(&{name}) : "memory");', toks[b0].line))
                        continue
                    self.volatile_edit(toks, d, fn_start, open_, inserts, replaces)
        out: list[Tok] = []
        for i, t in enumerate(toks):
            if i in inserts:
                out += inserts[i]
            if i in replaces:
                out += replaces[i]
            else:
                out.append(t)
        return out

    def try_bodies(self, toks, start, end):
        """Token ranges (first, last+1) of every __try block in [start, end), and of its
        filter (empty for __finally): what runs between the setjmp and a longjmp back."""
        for i in range(start, end):
            if toks[i].kind == "id" and toks[i].text in TRY_WORDS and toks[i + 1].text == "{":
                j = match(toks, i + 1)
                if toks[j + 1].text in EXCEPT_WORDS and toks[j + 2].text == "(":
                    yield i + 2, j, j + 3, match(toks, j + 2)
                else:
                    yield i + 2, j, j, j

    @staticmethod
    def assigned(toks, b0, b1) -> tuple[set[str], set[str]]:
        """Names assigned in [b0, b1): as a whole (x = , x++), and by a member or element
        (x.f = , x[i] = )."""
        direct, parts = set(), set()
        for k in range(b0, b1):
            t = toks[k]
            if t.kind != "id" or toks[k - 1].text in (".", "->"):
                continue
            nxt = k + 1
            while toks[nxt].text in (".", "["):
                if toks[nxt].text == ".":
                    nxt += 2
                else:
                    nxt = match(toks, nxt) + 1
            whole = nxt == k + 1
            if toks[nxt].text in ASSIGN_OPS or toks[nxt].text in ("++", "--") or (
                    whole and toks[k - 1].text in ("++", "--") and toks[k - 2].kind != "id"
                    and toks[k - 2].text not in (")", "]")):
                (direct if whole else parts).add(t.text)
        return direct, parts - direct

    @staticmethod
    def find_decl(toks, fn_start, limit, name):
        """Index of the last declarator `name` of the function before `limit`."""
        found = None
        for k in range(fn_start, limit):
            t = toks[k]
            if t.kind != "id" or t.text != name:
                continue
            if toks[k + 1].text not in ("=", ",", ";", "[", ")"):
                continue
            p = k - 1
            while toks[p].text in ("*", "const", "volatile", "restrict", "__restrict"):
                p -= 1
            prev = toks[p]
            if prev.kind == "id" and prev.text not in NOT_TYPE_WORDS:
                found = k
            elif prev.text == "}" and Rewriter.ends_tag_body(toks, p):
                found = k   # struct { ... } name
            elif prev.text == "," and p < k - 1:
                found = k   # int a, *b
            elif prev.text == "," and Rewriter.comma_in_declaration(toks, p):
                found = k   # int a, b
        return found

    @staticmethod
    def ends_tag_body(toks, close):
        """Whether the '}' at `close` ends the body of a struct, union or enum specifier."""
        depth = 0
        for q in range(close, 0, -1):
            if toks[q].text == "}":
                depth += 1
            elif toks[q].text == "{":
                depth -= 1
                if depth == 0:
                    before = toks[q - 1] if toks[q - 1].kind == "id" and toks[q - 2].text in (
                        "struct", "union", "enum") else None
                    return toks[q - 1].text in ("struct", "union", "enum") or before is not None
        return False

    @staticmethod
    def stmt_start(toks, p):
        depth = 0
        while p > 0:
            t = toks[p - 1]
            if t.text in (")", "]", "}") and t.kind == "punct":
                if t.text == "}" and depth == 0:
                    return p
                depth += 1
            elif t.text in ("(", "[", "{") and t.kind == "punct":
                if depth == 0:
                    return p
                depth -= 1
            elif t.text == ";" and depth == 0:
                return p
            elif t.kind == "pp":
                return p
            p -= 1
        return p

    @staticmethod
    def comma_in_declaration(toks, comma):
        s = Rewriter.stmt_start(toks, comma)
        first = toks[s]
        return first.kind == "id" and first.text not in NOT_TYPE_WORDS and (
            toks[s + 1].kind == "id" or toks[s + 1].text == "*")

    def volatile_edit(self, toks, k, fn_start, fn_open, inserts, replaces):
        p = k - 1
        stars = False
        while toks[p].text in ("*", "const", "volatile", "restrict", "__restrict"):
            if toks[p].text == "*":
                stars = True
            p -= 1
        if toks[k - 1].text == "volatile":
            return
        s = self.stmt_start(toks, k)
        if not stars and any(toks[m].text == "volatile" for m in range(s, k)) and toks[p].text != ",":
            return
        vol = Tok("volatile", "id", toks[k].line, toks[k].pre or " ")
        toks[k].pre = " "
        if stars or toks[p].text != "," or fn_start < k < fn_open:
            # `int volatile x`, `char *volatile p`, a parameter
            inserts.setdefault(k, []).append(vol)
            return
        # a later declarator of `T a, b`: split into `T a; T volatile b`
        if toks[s - 1].text == "(" and toks[s - 2].text == "for":
            self.fail(toks[k], f"'{toks[k].text}' is assigned inside __try and must be volatile; "
                      "it is declared with others in a for statement: declare it on its own")
        first = s
        while not (toks[first].kind == "id" and toks[first + 1].text in ("=", ",", ";", "[")):
            first += 1
        while toks[first - 1].text in ("*", "const", "volatile", "restrict", "__restrict"):
            first -= 1
        base = [Tok(t.text, t.kind, toks[k].line, " ") for t in toks[s:first]]
        replaces[p] = [Tok(";", "punct", toks[p].line, toks[p].pre)] + base
        inserts.setdefault(k, []).append(vol)

    # ------------------------------------------------------------------ the constructs
    def rewrite_range(self, toks: list[Tok], rtype) -> list[Tok]:
        last = toks[-1] if toks else Tok("", "eof", 0)
        n_real = len(toks)
        # two end markers: a construct looks two tokens past a block's closing brace
        toks = toks + [Tok("", "eof", last.line, "", last.file) for _ in range(2)]
        out: list[Tok] = []
        i = 0
        while i < n_real:
            t = toks[i]
            if t.kind == "id" and t.text in TRY_WORDS and toks[i + 1].text == "{":
                n, expansion = self.construct(toks, i, rtype)
                out += expansion
                i = n
                continue
            if t.kind == "id" and t.text in ("__try",):
                self.fail(t, "__try must be followed by a block in braces")
            if t.kind == "id" and t.text in ("__except", "__finally"):
                self.fail(t, f"{t.text} without a __try block before it")
            out.append(t)
            i += 1
        return out

    def construct(self, toks, i, rtype):
        self.counter += 1
        N = f"__seh{self.counter}"
        line = toks[i].line
        b_open = i + 1
        b_close = match(toks, b_open)
        kw = toks[b_close + 1]
        if kw.kind == "id" and kw.text in EXCEPT_WORDS and toks[b_close + 2].text == "(":
            kind = "except"
            f_open = b_close + 2
            f_close = match(toks, f_open)
            h_open = f_close + 1
            if toks[h_open].text != "{":
                self.fail(toks[h_open], "__except (filter) must be followed by a block in braces")
            filt = toks[f_open + 1:f_close]
        elif kw.kind == "id" and kw.text in FINALLY_WORDS and toks[b_close + 2].text == "{":
            kind = "finally"
            f_open = f_close = None
            h_open = b_close + 2
            filt = None
        else:
            self.fail(toks[i], "a __try block must be followed by __except (filter) { } or __finally { }")
        h_close = match(toks, h_open)

        body = self.rewrite_range(toks[b_open + 1:b_close], rtype)
        handler = self.rewrite_range(toks[h_open + 1:h_close], rtype)
        body, exits = self.translate_exits(body, N, rtype)

        if kind == "except":
            filt = self.name_frame(filt, N, EXCEPTION_CODE | EXCEPTION_INFO)
            handler = self.name_frame(handler, N, EXCEPTION_CODE | EXCEPTION_INFO)
        else:
            handler = self.name_frame(handler, N, ABNORMAL)

        hl = toks[h_open].line
        out = self.gen(f"{{ struct seh_frame {N}; volatile int {N}_go __attribute__((unused)) = 0;"
                       + (f" {rtype} {N}_rv = {{ 0 }};" if rtype and "return" in exits else "")
                       + f" int {N}_how = seh_setjmp(&{N}.jb);"
                       + f" if ({N}_how == 0) {{ seh_enter(&{N}, {SEH['SEH_EXCEPT'] if kind == 'except' else SEH['SEH_FINALLY']});"
                       + " {", line, toks[i].pre)
        out += body
        end_label = f" {N}_end:" if exits else ""
        leave = (f" seh_leave(&{N}); }}" if kind == "except" else f" seh_leave_finally(&{N}, {N}_go); }}")
        out += self.gen("}" + end_label + leave, toks[b_close].line, toks[b_close].pre)
        if kind == "except":
            out += self.gen(f"else if ({N}_how == {SEH['SEH_RESUME_FILTER']}) seh_filter_done(&{N}, (", kw.line,
                            self.carry(kw, toks[b_close + 2]))
            out += filt
            out += self.gen(")); else {", hl, self.carry(toks[f_close], toks[h_open]))
            out += handler
            out += self.gen("}", toks[h_close].line, toks[h_close].pre)
        else:
            out += self.gen("{", hl, self.carry(kw, toks[h_open]))
            out += handler
            out += self.gen(f"}} if ({N}_how != 0) seh_unwind_resume(&{N});", toks[h_close].line, toks[h_close].pre)
        disp = ""
        for what, code in exits.items():
            if what == "break":
                disp += f" if ({N}_go == {code}) break;"
            elif what == "continue":
                disp += f" if ({N}_go == {code}) continue;"
            elif what == "return":
                disp += f" if ({N}_go == {code}) return{' ' + N + '_rv' if rtype else ''};"
            elif what.startswith("goto "):
                disp += f" if ({N}_go == {code}) {what};"
        out += self.gen(disp + " }", toks[h_close].line)
        return h_close + 1, out

    def name_frame(self, toks, N, names):
        out = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "id" and i + 2 < len(toks) and is_call(toks, i, names):
                if t.text in EXCEPTION_CODE:
                    rep = f"((NTSTATUS){N}.record.ExceptionCode)"
                elif t.text in EXCEPTION_INFO:
                    rep = f"((PEXCEPTION_POINTERS)&{N}.pointers)"
                else:
                    rep = f"({N}.abnormal)"
                out += self.gen(rep, t.line, t.pre)
                i += 3
                continue
            if t.kind == "id" and i + 2 < len(toks) and is_call(toks, i, {"GetExceptionRecord", "GetExceptionTrapFrame"}) \
                    and EXCEPTION_CODE <= names:
                rep = (f"((const EXCEPTION_RECORD *)&{N}.record)" if t.text == "GetExceptionRecord"
                       else f"({N}.from_cpu ? (const struct trap_frame *)&{N}.trap : (const struct trap_frame *)0)")
                out += self.gen(rep, t.line, t.pre)
                i += 3
                continue
            out.append(t)
            i += 1
        return out

    # ------------------------------------------------------------------ ways out of a __try
    def translate_exits(self, body: list[Tok], N: str, rtype):
        """Rewrite break/continue/return/goto/__leave that leave the block into
        `N_go = code; goto N_end;`.  Returns the body and {what: code}."""
        sites: list[tuple[int, int, str, list[Tok]]] = []   # (start, end, what, expr)
        labels: set[str] = set()
        toks = body + [Tok("", "eof", body[-1].line if body else 0)]

        def simple(i, brk, cont, sw):
            """An expression or declaration statement; a statement expression's block inside
            it is walked like any block (a break in it is a way out too)."""
            depth = 0
            while toks[i].kind != "eof":
                x = toks[i].text
                if toks[i].kind == "punct":
                    if x == "{" and toks[i - 1].text == "(":
                        i = stmt(i, brk, cont, sw)
                        continue
                    if x in "([{":
                        depth += 1
                    elif x in ")]}":
                        depth -= 1
                    elif x == ";" and depth == 0:
                        return i + 1
                i += 1
            return i

        def stmt(i, brk, cont, sw):
            """One statement from toks[i]; brk/cont: a loop or switch inside the block
            encloses it; sw: a switch inside the block does."""
            t = toks[i]
            x = t.text
            if t.kind == "eof":
                return i
            if x == "{" and t.kind == "punct":
                j = match(toks, i)
                k = i + 1
                while k < j:
                    k = stmt(k, brk, cont, sw)
                return j + 1
            if t.kind == "id":
                if x == "if":
                    j = match(toks, i + 1)
                    k = stmt(j + 1, brk, cont, sw)
                    if toks[k].text == "else":
                        k = stmt(k + 1, brk, cont, sw)
                    return k
                if x in ("for", "while"):
                    j = match(toks, i + 1)
                    return stmt(j + 1, True, True, sw)
                if x == "do":
                    k = stmt(i + 1, True, True, sw)
                    if toks[k].text != "while":
                        self.fail(toks[k], "do without while")
                    j = match(toks, k + 1)
                    return j + 2
                if x == "switch":
                    j = match(toks, i + 1)
                    return stmt(j + 1, True, cont, True)
                if x in ("case", "default"):
                    if not sw:
                        self.fail(t, f"'{x}' label inside __try of a switch outside it: "
                                  "a jump into a __try block is not allowed")
                    k = i + 1
                    depth = 0
                    while not (toks[k].text == ":" and depth == 0):
                        if toks[k].text == "?":
                            depth += 1
                        elif toks[k].text == ":":
                            depth -= 1
                        k += 1
                    return stmt(k + 1, brk, cont, sw)
                if toks[i + 1].text == ":" and x not in ("else",):
                    labels.add(x)
                    return stmt(i + 2, brk, cont, sw)
                if x == "break" and toks[i + 1].text == ";":
                    if not brk:
                        sites.append((i, i + 2, "break", []))
                    return i + 2
                if x == "continue" and toks[i + 1].text == ";":
                    if not cont:
                        sites.append((i, i + 2, "continue", []))
                    return i + 2
                if x == "__leave" and toks[i + 1].text == ";":
                    sites.append((i, i + 2, "leave", []))
                    return i + 2
                if x == "return":
                    j = simple(i, brk, cont, sw)
                    sites.append((i, j, "return", toks[i + 1:j - 1]))
                    return j
                if x == "goto" and toks[i + 2].text == ";":
                    sites.append((i, i + 3, "goto " + toks[i + 1].text, []))
                    return i + 3
                if x in ("break", "continue", "goto", "__leave"):
                    self.fail(t, f"'{x}' in a form the rewriter does not know")
            return simple(i, brk, cont, sw) if x != ";" else i + 1

        i = 0
        while toks[i].kind != "eof":
            i = stmt(i, False, False, False)
        sites.sort(key=lambda site: site[0])

        exits: dict[str, int] = {}
        out: list[Tok] = []
        pos = 0
        for start, end, what, expr in sites:
            if what.startswith("goto ") and what[5:] in labels:
                continue
            out += toks[pos:start]
            t = toks[start]
            if what == "leave":
                out += self.gen(f"goto {N}_end;", t.line, t.pre)
                exits.setdefault("leave", 0)
            else:
                code = exits.setdefault(what, len([w for w in exits if w != "leave"]) + 1)
                if what == "return" and expr:
                    if not rtype:
                        self.fail(t, "return with a value inside __try of a function returning void")
                    out += self.gen(f"{{ {N}_rv = (", t.line, t.pre)
                    out += expr
                    out += self.gen(f"); {N}_go = {code}; goto {N}_end; }}", t.line)
                else:
                    if what == "return" and rtype:
                        self.fail(t, "return without a value inside __try of a function returning a value")
                    out += self.gen(f"{{ {N}_go = {code}; goto {N}_end; }}", t.line, t.pre)
            pos = end
        out += toks[pos:-1]
        return out, exits


def main(argv):
    if len(argv) != 3:
        print("usage: seh_rewrite.py IN.c OUT.c", file=sys.stderr)
        return 2
    src_path, out_path = argv[1], argv[2]
    with open(src_path) as f:
        src = f.read()
    try:
        text = Rewriter(src_path).rewrite(src)
    except RewriteError as e:
        msg = str(e)
        if re.match(r"\d+:", msg):   # the tokenizer's: a line of the file itself
            msg = f"{src_path}:{msg}"
        print(msg, file=sys.stderr)
        return 1
    with open(out_path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
