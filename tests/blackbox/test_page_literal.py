#!/usr/bin/env python3
"""page.h lets only string literals be written unescaped: a page that
passes a variable to page_markup(), or as an attribute's name, does not
compile, while the same call with a literal does."""
import os
import subprocess
import tempfile

from tap import Tap

TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
CC = os.environ.get("CC", "cc")

CASES = [
    ("markup from a literal compiles", True,
     'page_markup(p, "<p>");'),
    ("markup from a variable does not", False,
     'page_markup(p, data);'),
    ("an attribute's value may be data", True,
     'page_attr(p, "title", data);'),
    ("an attribute's name may not", False,
     'page_attr(p, data, "x");'),
    ("a link's path may not be data", False,
     'page_href(p, "href", data, "k", "v", (char *)0);'),
    ("a hidden field's name may not be data", False,
     'page_hidden(p, data, "v");'),
]


def compiles(stmt, tmp):
    src = os.path.join(tmp, "t.c")
    with open(src, "w") as f:
        f.write('#include "page.h"\n'
                'void t(struct page *p, const char *data);\n'
                'void t(struct page *p, const char *data)\n'
                '{ (void)data; %s }\n' % stmt)
    p = subprocess.run([CC, "-std=gnu11", "-fsyntax-only", "-Werror",
                        "-I" + os.path.join(TOP, "include"), src],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors="replace")


def main():
    t = Tap()
    with tempfile.TemporaryDirectory() as tmp:
        for desc, want, stmt in CASES:
            got, out = compiles(stmt, tmp)
            t.ok(got == want, desc, out)
    t.done()


main()
