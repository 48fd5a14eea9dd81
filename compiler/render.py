"""Diagnostics -> text for people (source line and caret), JSON, GitHub annotations, SARIF."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic


def render_text(diagnostic: Diagnostic, source: str | None, filename: str) -> str:
    """One diagnostic as a compiler would print it, with the line and a caret under the span.

    examples/bad.flow:3:11: error[E201]: unknown tool `analyse_syntax`
      3 | node a = analyse_syntax
        |          ^^^^^^^^^^^^^^
      help: did you mean `analyze_syntax`?
    """
    span = diagnostic.span
    head = (
        f"{filename}:{span.line}:{span.column}: "
        f"{diagnostic.severity}[{diagnostic.code}]: {diagnostic.message}"
    )
    lines = [head]
    line_text = _source_line(source, span.line) if span is not WHOLE_TEXT else None
    if line_text is not None:
        gutter = " " * len(str(span.line))
        end = span.end_column if span.end_line == span.line else len(line_text) + 1
        width = max(1, end - span.column)
        # Keep tabs under tabs, so the caret lines up however tabs are shown.
        pad = "".join(c if c == "\t" else " " for c in line_text[: span.column - 1])
        lines.append(f"  {span.line} | {line_text}".rstrip())
        lines.append(f"  {gutter} | {pad}{'^' * width}")
    lines += [f"  note: {note}" for note in diagnostic.notes]
    if diagnostic.help:
        lines.append(f"  help: {diagnostic.help}")
    return "\n".join(lines)


def _source_line(source: str | None, line: int) -> str | None:
    if source is None:
        return None
    if source.startswith("\ufeff"):
        source = source[1:]
    lines = source.split("\n")  # the parser's lines: `\n` only, not every Unicode break
    if lines and lines[-1] == "":
        lines.pop()
    if not 1 <= line <= len(lines):
        return "" if line == len(lines) + 1 else None
    return lines[line - 1].rstrip("\r")


def render_text_all(diagnostics: Sequence[Diagnostic], source: str | None, filename: str) -> str:
    """Every diagnostic as text, a blank line between them, and a closing count."""
    blocks = [render_text(d, source, filename) for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if blocks:
        blocks.append(f"{filename}: {_count(errors, 'error')}, {_count(warnings, 'warning')}")
    return "\n\n".join(blocks)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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
