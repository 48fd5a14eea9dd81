"""Diagnostics -> text for people (source line and caret), JSON, GitHub annotations, SARIF."""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS, MAX_SHOWN_LINE


class SourceLines:
    r"""A source text indexed once by line, so any line is found without splitting it again.

    Lines are the parser's: split on `\n` only (not every Unicode break), after a BOM.
    """

    def __init__(self, source: str) -> None:
        self.text = source[1:] if source.startswith("\ufeff") else source
        lengths = (len(line) + 1 for line in self.text.split("\n"))
        #: Where each line starts; the last entry is one past the end of the text.
        self.starts = array("q", accumulate(lengths, initial=0))

    def line(self, number: int) -> str | None:
        """Line `number` (1-based) without its line end; `""` just after the last one."""
        count = len(self.starts) - 1
        if self.starts[-1] - self.starts[-2] == 1:
            count -= 1  # nothing after the last line end (or no text at all): no line there
        if not 1 <= number <= count:
            return "" if number == count + 1 else None
        start, end = self.starts[number - 1], self.starts[number] - 1
        return self.text[start:end].rstrip("\r")


def render_text(diagnostic: Diagnostic, source: str | SourceLines | None, filename: str) -> str:
    """One diagnostic as a compiler would print it, with the line and a caret under the span.

    examples/bad.flow:3:11: error[E201]: unknown tool `analyse_syntax`
      3 | node a = analyse_syntax
        |          ^^^^^^^^^^^^^^
      help: did you mean `analyze_syntax`?

    A line longer than `MAX_SHOWN_LINE` is cut around the span, `…` marking each cut.
    `source` is the text, or its `SourceLines` when many diagnostics are rendered.
    """
    span = diagnostic.span
    head = (
        f"{filename}:{span.line}:{span.column}: "
        f"{diagnostic.severity}[{diagnostic.code}]: {diagnostic.message}"
    )
    lines = [head]
    if isinstance(source, str):
        source = SourceLines(source)
    line_text = source.line(span.line) if source is not None and span is not WHOLE_TEXT else None
    if line_text is not None:
        gutter = " " * len(str(span.line))
        end = span.end_column if span.end_line == span.line else len(line_text) + 1
        shown, caret, width = clip_line(line_text, span.column - 1, end - 1)
        # Keep tabs under tabs, so the caret lines up however tabs are shown.
        pad = "".join(c if c == "\t" else " " for c in shown[:caret])
        lines.append(f"  {span.line} | {shown}".rstrip())
        lines.append(f"  {gutter} | {pad}{'^' * width}")
    lines += [f"  note: {note}" for note in diagnostic.notes]
    if diagnostic.help:
        lines.append(f"  help: {diagnostic.help}")
    return "\n".join(lines)


#: Characters of a long line shown before the span, for context.
_CONTEXT = MAX_SHOWN_LINE // 4


def clip_line(line: str, start: int, end: int) -> tuple[str, int, int]:
    """The part of `line` shown for the span `start:end`, the caret's place in it, its width.

    Positions are 0-based; the width is at least 1.  A line of at most `MAX_SHOWN_LINE`
    characters is shown whole; a longer one is cut to that many around the span's start,
    with `…` for what is cut on either side.
    """
    if len(line) <= MAX_SHOWN_LINE:
        return line, start, max(1, end - start)
    left = max(0, min(start - _CONTEXT, len(line) + 1 - MAX_SHOWN_LINE))
    right = left + MAX_SHOWN_LINE
    shown = ("…" if left else "") + line[left:right] + ("…" if right < len(line) else "")
    caret = start - left + (1 if left else 0)
    return shown, caret, max(1, min(end, right) - start)


def render_text_all(diagnostics: Sequence[Diagnostic], source: str | None, filename: str) -> str:
    """The diagnostics as text, a blank line between them, and a closing count.

    Only the first `MAX_SHOWN_DIAGNOSTICS` are shown; a line counts the rest.
    """
    lines = SourceLines(source) if source is not None and diagnostics else None
    blocks = [render_text(d, lines, filename) for d in diagnostics[:MAX_SHOWN_DIAGNOSTICS]]
    rest = diagnostics[MAX_SHOWN_DIAGNOSTICS:]
    if rest:
        blocks.append(f"… and {count_more(rest)} not shown")
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if blocks:
        blocks.append(f"{filename}: {_count(errors, 'error')}, {_count(warnings, 'warning')}")
    return "\n\n".join(blocks)


def count_more(rest: Sequence[Diagnostic]) -> str:
    """What the diagnostics left out count: `7,980 more errors and 20 more warnings`."""
    errors = sum(d.is_error for d in rest)
    counts = [(errors, "error"), (len(rest) - errors, "warning")]
    return " and ".join(f"{n:,} more {noun}{'' if n == 1 else 's'}" for n, noun in counts if n)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def diagnostic_json(diagnostic: Diagnostic, filename: str) -> dict[str, Any]:
    """One diagnostic as the JSON object used by `--format json` and the API's 422 body."""
    span = diagnostic.span
    return {
        "file": filename,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
        "severity": diagnostic.severity,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "help": diagnostic.help,
    }


def render_json(diagnostics: Sequence[tuple[str, Diagnostic]]) -> str:
    """(filename, diagnostic) pairs as one JSON list."""
    return json.dumps([diagnostic_json(d, f) for f, d in diagnostics], indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostic: Diagnostic, filename: str) -> str:
    """One diagnostic as a GitHub Actions workflow command (an annotation on the line)."""
    span = diagnostic.span
    command = "error" if diagnostic.is_error else "warning"
    properties = (
        f"file={_escape_property(filename)},line={span.line},col={span.column},"
        f"endLine={span.end_line},endColumn={span.end_column},"
        f"title={_escape_property(diagnostic.code)}"
    )
    message = diagnostic.message + (f"\n{diagnostic.help}" if diagnostic.help else "")
    return f"::{command} {properties}::{_escape_data(message)}"


#: Where SARIF 2.1.0 is specified; readers use it to recognise the format.
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
_SARIF_LEVELS = {"error": "error", "warning": "warning"}


def render_sarif(diagnostics: Sequence[tuple[str, Diagnostic]], *, tool_version: str) -> str:
    """(filename, diagnostic) pairs as one SARIF 2.1.0 log, for code-scanning services.

    Columns count Unicode code points, as the diagnostics do (`columnKind`); a diagnostic's
    notes and help follow its message, one line each.
    """
    codes = sorted({d.code for _, d in diagnostics})
    rule_index = {code: i for i, code in enumerate(codes)}
    results = [_sarif_result(d, f, rule_index[d.code]) for f, d in diagnostics]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "flowc",
                        "version": tool_version,
                        "rules": [{"id": code} for code in codes],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)


def _sarif_result(diagnostic: Diagnostic, filename: str, rule_index: int) -> dict[str, Any]:
    span = diagnostic.span
    lines = [diagnostic.message, *(f"note: {note}" for note in diagnostic.notes)]
    if diagnostic.help:
        lines.append(f"help: {diagnostic.help}")
    return {
        "ruleId": diagnostic.code,
        "ruleIndex": rule_index,
        "level": _SARIF_LEVELS[diagnostic.severity],
        "message": {"text": "\n".join(lines)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _sarif_uri(filename)},
                    "region": {
                        "startLine": span.line,
                        "startColumn": span.column,
                        "endLine": span.end_line,
                        "endColumn": span.end_column,
                    },
                }
            }
        ],
    }


def _sarif_uri(filename: str) -> str:
    """A file name as a URI: `file:` for an absolute path, else a relative `/`-separated one."""
    from pathlib import Path
    from urllib.parse import quote

    if os.path.isabs(filename):
        return Path(filename).as_uri()
    return quote(filename.replace(os.sep, "/"), safe="/")
