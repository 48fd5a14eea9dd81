"""Shared checks for the code-review tool tests: findings by rule, and line-exact diffs."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from flowc.runtime.tools.code_review import check_style, refine_code

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "samples"

#: Python's own line ends: `\r\n`, `\r` or `\n` (not the others that `splitlines` knows).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def sample(name: str) -> str:
    """The text of `examples/samples/<name>`."""
    return (SAMPLES / name).read_text(encoding="utf-8")


def found(code: str) -> list[tuple[str, int]]:
    """(rule, line) of every issue `check_style` reports for `code`."""
    return [(issue["rule"], issue["line"]) for issue in check_style({"code": code})["issues"]]


def print_lines(code: str) -> list[int]:
    """The lines where `check_style` finds a print call (FLW001)."""
    return [line for rule, line in found(code) if rule == "FLW001"]


def source_lines(text: str) -> list[str]:
    """`text` split into lines the way Python numbers them, line ends kept."""
    return _LINE.findall(text)


def refined(code: str, **static: Any) -> str:
    """The code after one `refine_code` pass (unchanged when refine changes nothing)."""
    result: str = refine_code({"code": code}, **static).get("code", code)
    return result


def assert_only_fixed_lines_changed(before: str, after: str, fixed: set[int]) -> None:
    """Every line of `before` not in `fixed` is byte-identical in `after`.

    `after` may hold one extra line, `import logging`, anywhere; it is set aside first.
    """
    old, new = source_lines(before), source_lines(after)
    assert len(new) - len(old) in (0, 1)
    if len(new) == len(old) + 1:
        index = next(
            i
            for i, line in enumerate(new)
            if line.rstrip("\r\n") == "import logging" and (i >= len(old) or old[i] != line)
        )
        assert new.pop(index).rstrip("\r\n") == "import logging"
    for number, (old_line, new_line) in enumerate(zip(old, new, strict=True), start=1):
        if number not in fixed:
            assert old_line == new_line, f"line {number} changed: {old_line!r} -> {new_line!r}"


def assert_parses(code: str) -> None:
    """`code` is valid Python."""
    ast.parse(code)
