"""Rendering diagnostics as text: lines found once, long lines cut, long lists counted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.compiler import render
from flowc.compiler.render import SourceLines, clip_line, count_more, render_text_all
from flowc.dsl.diagnostics import Diagnostic, Span, error, warning
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS, MAX_SHOWN_LINE


def split_line(source: str, line: int) -> str | None:
    """A line as rendering found it before `SourceLines`: by splitting the whole text."""
    if source.startswith("\ufeff"):
        source = source[1:]
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not 1 <= line <= len(lines):
        return "" if line == len(lines) + 1 else None
    return lines[line - 1].rstrip("\r")


@given(st.text(alphabet="ab\n\r\ufeff\u2028 ", max_size=30), st.integers(-1, 12))
def test_indexed_lines_are_the_lines_of_the_split_text(source: str, line: int) -> None:
    assert SourceLines(source).line(line) == split_line(source, line)


@pytest.mark.parametrize(
    ("line", "start", "end", "shown"),
    [
        # short lines are shown whole
        ("a -> b", 5, 6, ("a -> b", 5, 1)),
        ("a -> b", 6, 6, ("a -> b", 6, 1)),  # at the end of the line: a caret still
        # a long line: 30 characters before the span, 120 in all, `…` where cut
        (
            "x" * 100 + "SPAN" + "y" * 100,
            100,
            104,
            ("…" + "x" * 30 + "SPAN" + "y" * 86 + "…", 31, 4),
        ),
        ("SPAN" + "y" * 200, 0, 4, ("SPAN" + "y" * 116 + "…", 0, 4)),
        ("x" * 200 + "SPAN", 200, 204, ("…" + "x" * 115 + "SPAN", 116, 4)),
        ("x" * 200, 200, 201, ("…" + "x" * 119, 120, 1)),  # just after the end
        # a span wider than the window is underlined to its edge
        ("x" * 10 + "y" * 300, 10, 310, ("x" * 10 + "y" * 110 + "…", 10, 110)),
    ],
)
def test_clip_line(line: str, start: int, end: int, shown: tuple[str, int, int]) -> None:
    assert clip_line(line, start, end) == shown
    assert len(shown[0].strip("…")) <= MAX_SHOWN_LINE


def test_tabs_before_the_span_stay_tabs_under_a_cut_line() -> None:
    line = "\t" * 50 + "x" * 100 + "bad" + "x" * 100
    diagnostic = error("E201", "unknown tool `bad`", Span(1, 151, 1, 154))
    shown = render.render_text(diagnostic, line, "f.flow").splitlines()
    assert shown[1] == "  1 | …" + "x" * 30 + "bad" + "x" * 87 + "…"
    assert shown[2] == "    |  " + " " * 30 + "^^^"


def diagnostics(errors: int, warnings: int) -> list[Diagnostic]:
    """`errors` errors, then `warnings` warnings, one a line."""
    spans = [Span(line, 1, line, 3) for line in range(1, errors + warnings + 1)]
    found = [error("E201", f"unknown tool `t{i}`", spans[i]) for i in range(errors)]
    found += [warning("W503", "declared but never used", span) for span in spans[errors:]]
    return found


def test_a_hundred_diagnostics_are_shown_and_the_rest_counted() -> None:
    source = "".join(f"t{i}\n" for i in range(2_500))
    text = render_text_all(diagnostics(1_234, 1_266), source, "big.flow")
    blocks = text.split("\n\n")
    assert len(blocks) == MAX_SHOWN_DIAGNOSTICS + 2
    assert blocks[-2:] == [
        "… and 1,134 more errors and 1,266 more warnings not shown",
        "big.flow: 1,234 errors, 1,266 warnings",
    ]


@pytest.mark.parametrize(
    ("errors", "warnings", "said"),
    [
        (1, 0, "1 more error"),
        (0, 1, "1 more warning"),
        (2, 0, "2 more errors"),
        (1, 2, "1 more error and 2 more warnings"),
    ],
)
def test_count_more(errors: int, warnings: int, said: str) -> None:
    assert count_more(diagnostics(errors, warnings)) == said


def test_the_source_is_indexed_once_for_all_its_diagnostics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = 0

    class Counted(SourceLines):
        def __init__(self, source: str) -> None:
            nonlocal built
            built += 1
            super().__init__(source)

    monkeypatch.setattr(render, "SourceLines", Counted)
    source = " -> ".join(f"n{i}" for i in range(100_000))  # 1 MB on one line
    found = [error("E201", "unknown", Span(1, c, 1, c + 2)) for c in range(1, 600_000, 6)]
    text = render_text_all(found, source, "one.flow")
    assert built == 1
    # A hundred blocks of a head, a cut line, a caret line: no line of the megabyte whole.
    assert len(text) < MAX_SHOWN_DIAGNOSTICS * (3 * MAX_SHOWN_LINE)
