"""``ast.parse`` for the tests that read the repository's source (architecture contracts, header
names, the aiokafka pin).

CPython 3.11 keeps the AST constructor's recursion depth in state shared by every thread (gh-106905,
fixed in 3.12): a parse while another thread compiles something (a lazy import in a thread an
earlier test left behind) can fail with ``SystemError: AST constructor recursion depth mismatch``,
as a CI run showed. The source is fine, so it is parsed again.
"""

from __future__ import annotations

import ast

ATTEMPTS = 3


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    for attempt in range(ATTEMPTS):
        try:
            return ast.parse(source, filename)
        except SystemError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
