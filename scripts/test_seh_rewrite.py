#!/usr/bin/env python3
"""Unit tests of scripts/seh_rewrite.py (make test runs them with the harness's own).

Each test rewrites a small driver-style function and checks the C that comes out: the ways out
of a __try turned into the state variable and the jump re-executed after the construct, the
jumps that stay inside left alone, the locals made volatile (or kept in memory), the frame's
names, the lines kept, and the constructs refused at build time with FILE:LINE.  Where GCC is
installed the output is also compiled (-fsyntax-only -Wall -Werror) against kernel/seh.h.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seh_rewrite  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PRELUDE = '#include "kernel/seh.h"\nvoid g(int);\nint h(void);\n'


def rewrite(src: str) -> str:
    return seh_rewrite.Rewriter("t.c").rewrite(src)


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s)


class Exits(unittest.TestCase):
    def test_break_in_try_leaves_the_loop_after_the_construct(self):
        out = squash(rewrite("void f(void) { for (;;) { __try { break; } __except (1) { } } }"))
        self.assertIn("{ __seh1_go = 1 ; goto __seh1_end ; }", out)
        self.assertIn("if ( __seh1_go == 1 ) break ;", out)
        # the handler is a plain block: nothing wraps it in a loop
        self.assertNotIn("do {", out)

    def test_break_of_an_inner_loop_or_switch_stays(self):
        out = squash(rewrite("void f(int x) { __try { while (x) break; switch (x) { case 1: break; } "
                             "for (;;) { continue; } } __finally { } }"))
        self.assertNotIn("__seh1_go = 1", out)
        self.assertIn("while (x) break;", out)

    def test_break_in_a_statement_expression_is_a_way_out(self):
        out = squash(rewrite("void f(void) { for (;;) { __try { g(({ if (h()) break; 1; })); } "
                             "__except (1) { } } }"))
        self.assertIn("{ __seh1_go = 1 ; goto __seh1_end ; }", out)

    def test_continue_inside_a_switch_in_try_reaches_the_loop(self):
        out = squash(rewrite("void f(int x) { for (;;) { __try { switch (x) { case 1: continue; } } "
                             "__except (1) { } } }"))
        self.assertIn("if ( __seh1_go == 1 ) continue ;", out)

    def test_return_value_goes_through_the_frame(self):
        out = squash(rewrite("static int f(int x) { __try { return x + 1; } __finally { g(0); } return 0; }"))
        self.assertIn("int __seh1_rv = { 0 } ;", out)
        self.assertIn("{ __seh1_rv = ( x + 1 ) ; __seh1_go = 1 ; goto __seh1_end ; }", out)
        self.assertIn("if ( __seh1_go == 1 ) return __seh1_rv ;", out)
        self.assertIn("seh_leave_finally ( & __seh1 , __seh1_go )", out)

    def test_goto_out_translated_goto_inside_left(self):
        out = squash(rewrite("void f(void) { __try { goto in; in: goto out; } __except (1) { } out: ; }"))
        self.assertIn("goto in;", out)
        self.assertIn("if ( __seh1_go == 1 ) goto out ;", out)

    def test_leave_is_a_normal_exit(self):
        out = squash(rewrite("void f(void) { __try { for (;;) { __leave; } } __finally { } }"))
        self.assertIn("goto __seh1_end ;", out)
        self.assertNotIn("__seh1_go ==", out)

    def test_nested_tries_compose(self):
        out = squash(rewrite("void f(void) { for (;;) { __try { __try { break; } __finally { } } "
                             "__except (1) { } } }"))
        # the inner dispatch's break is itself a way out of the outer __try
        self.assertIn("if ( __seh2_go == 1 ) { __seh1_go = 1 ; goto __seh1_end ; }", out)
        self.assertIn("if ( __seh1_go == 1 ) break ;", out)

    def test_jump_in_handler_is_a_way_out_of_an_enclosing_try(self):
        out = squash(rewrite("void f(void) { for (;;) { __try { __try { g(1); } __except (1) { break; } } "
                             "__finally { } } }"))
        self.assertIn("else { { __seh1_go = 1 ; goto __seh1_end ; } }", out)

    def test_aliases_and_frame_names(self):
        out = squash(rewrite("int f(void) { int c = 0; try { g(1); } except (GetExceptionCode() == 5) "
                             "{ c = GetExceptionCode(); } try { } finally { c += AbnormalTermination() + "
                             "_abnormal_termination(); } return c; }"))
        self.assertIn("seh_filter_done ( & __seh1 , (( ( NTSTATUS ) __seh1 . record . ExceptionCode ) == 5", out)
        self.assertIn("c = ( ( NTSTATUS ) __seh1 . record . ExceptionCode );", out)
        self.assertIn("( __seh2 . abnormal ) + ( __seh2 . abnormal )", out)
        self.assertIsNone(re.search(r"\b(__)?(try|except|finally)\b", out))

    def test_try_as_an_identifier_is_left_alone(self):
        out = rewrite("int f(int try) { return try + 1; }")
        self.assertIn("return try + 1;", out)

    def test_lines_are_kept(self):
        src = ("int f(int x)\n{\n\tint n = 0;\n\tfor (;;) {\n\t\t__try {\n\t\t\tn++;\n\t\t\tif (x)\n"
               "\t\t\t\tbreak;\n\t\t} __except (EXCEPTION_EXECUTE_HANDLER) {\n\t\t\tn = 0;\n\t\t}\n"
               "\t}\n\treturn n;\n}\n")
        out = rewrite(src)
        body = out.split("\n", 1)[1]       # after the #line directive
        self.assertEqual(body.count("\n"), src.count("\n"))
        lines = body.split("\n")
        self.assertIn("__seh1_go = 1", lines[7])
        self.assertIn("return n;", lines[12])


class Volatile(unittest.TestCase):
    def test_assigned_scalar_becomes_volatile(self):
        out = rewrite("void f(void) { int a = 0, b = 1; char *p = 0; __try { b = 2; p++; } "
                      "__except (1) { g(a + b + !p); } }")
        self.assertIn("int a = 0; int volatile b = 1;", out)
        self.assertIn("char * volatile p = 0;", out)

    def test_assigned_in_filter_becomes_volatile(self):
        out = rewrite("void f(void) { int c = 0; __try { g(1); } __except (c = 1, 1) { g(c); } }")
        self.assertIn("int volatile c = 0;", out)

    def test_parameter_becomes_volatile(self):
        out = rewrite("void f(int n) { __try { n = h(); } __except (1) { g(n); } }")
        self.assertIn("void f(int volatile n)", out)

    def test_address_taken_or_aggregate_kept_in_memory_not_volatile(self):
        out = rewrite("struct s { int x; };\nvoid f(void) { int a = 0; struct s v; int *q = &a; "
                      "__try { a = 1; v.x = 2; } __except (1) { g(a + v.x + *q); } }")
        self.assertIn("int a = 0;", out)
        self.assertIn("struct s v;", out)
        self.assertIn('__asm__ volatile ( "" : : "r" ( & v ) : "memory" ) ;', out)
        self.assertIn('__asm__ volatile ( "" : : "r" ( & a ) : "memory" ) ;', out)

    def test_struct_specifier_declaration_and_globals_kept_in_memory(self):
        out = squash(rewrite("int gl;\nvoid f(void) { struct { int a; } s = { 0 }; __try { s.a = 1; gl = 2; } "
                             "__except (1) { g(s.a + gl); } }"))
        self.assertIn('"r" ( & s )', out)
        self.assertIn('"r" ( & gl )', out)

    def test_a_binary_and_is_not_an_address(self):
        out = rewrite("void f(int m) { int x = 0; g(1 & x); __try { x = h() & m; } __except (1) { g(x); } }")
        self.assertIn("int volatile x = 0;", out)

    def test_declared_inside_the_try_is_left(self):
        out = rewrite("void f(void) { __try { int k = 0; k++; g(k); } __except (1) { } }")
        self.assertNotIn("volatile k", out)
        self.assertNotIn("int volatile", out)

    def test_already_volatile_is_left(self):
        out = rewrite("void f(void) { volatile int a = 0; __try { a = 1; } __except (1) { } }")
        self.assertEqual(out.count("volatile int a"), 1)
        self.assertNotIn("volatile volatile", out)


class Refused(unittest.TestCase):
    def refuse(self, src, what):
        with self.assertRaises(seh_rewrite.RewriteError) as e:
            rewrite(src)
        self.assertRegex(str(e.exception), r"^t\.c:\d+: seh_rewrite: ")
        self.assertIn(what, str(e.exception))

    def test_try_without_handler(self):
        self.refuse("void f(void) {\n __try { }\n g(1); }", "must be followed by __except")

    def test_try_without_block(self):
        self.refuse("void f(void) { __try g(1); }", "block in braces")

    def test_leave_outside_try(self):
        self.refuse("void f(void) { __leave; }", "__leave outside a __try")

    def test_stray_except(self):
        self.refuse("void f(void) { __except (1) { } }", "without a __try")

    def test_keywords_in_a_macro(self):
        self.refuse("#define T __try\nvoid f(void) { }", "preprocessor directive")

    def test_for_declaration_split(self):
        self.refuse("void f(void) { for (int i = 0, j = 0; i < 2; i++) { __try { j = 1; } __except (1) "
                    "{ } } }", "declared with others in a for statement")

    def test_goto_into_a_try(self):
        self.refuse("void f(int x) { if (x) goto in; __try { in: g(1); } __except (1) { } }",
                    "goto in: a jump into a __try block")

    def test_case_label_of_an_outer_switch(self):
        self.refuse("void f(int x) { switch (x) { case 0: __try { case 1: g(1); } __finally { } } }",
                    "a jump into a __try block is not allowed")

    def test_return_value_in_void_function(self):
        self.refuse("void f(void) { __try { return 1; } __finally { } }", "returning void")

    def test_preprocessed_input_reports_the_source_file_and_line(self):
        src = '# 1 "drv.c"\n# 1 "hdr.h" 1\nint x;\n# 7 "drv.c" 2\nvoid f(void)\n{\n  __try { }\n}\n'
        with self.assertRaises(seh_rewrite.RewriteError) as e:
            rewrite(src)
        self.assertTrue(str(e.exception).startswith("drv.c:9: seh_rewrite: "), str(e.exception))

    def test_line_is_reported(self):
        with self.assertRaises(seh_rewrite.RewriteError) as e:
            rewrite("void f(void)\n{\n\n  __try { }\n  g(1);\n}\n")
        self.assertTrue(str(e.exception).startswith("t.c:4:"), str(e.exception))  # the __try


@unittest.skipUnless(shutil.which("gcc"), "no gcc")
class Compiles(unittest.TestCase):
    SRC = PRELUDE + """
static int loops(int n)
{
	int total = 0, seen = 0;
	for (int i = 0; i < n; i++) {
		switch (i) {
		case 1:
			__try { total += h(); if (total) break; if (n) continue; return 5; }
			__except (GetExceptionCode() == 1 ? EXCEPTION_EXECUTE_HANDLER : EXCEPTION_CONTINUE_SEARCH) {
				seen = GetExceptionInformation()->ExceptionRecord->NumberParameters; break;
			}
			break;
		default:
			try { g(i); goto done; } finally { seen += AbnormalTermination(); if (seen > 3) break; }
		}
	}
done:
	return total + seen;
}
int use(void);
int use(void) { return loops(3); }
"""

    def test_output_compiles_with_the_kernel_warnings(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "t.c")
            with open(out, "w") as f:
                f.write(seh_rewrite.Rewriter("t.c").rewrite(self.SRC))
            r = subprocess.run(["gcc", "-std=gnu11", "-O2", "-fsyntax-only", "-ffreestanding", "-Wall",
                                "-Wextra", "-Werror", "-Wshadow", "-Wno-clobbered", "-DMDLAB_SEH_REWRITER",
                                "-I", ROOT, "-I", os.path.join(ROOT, "include"), out],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
