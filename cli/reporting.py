"""Diagnostics of one or more sources -> the text, JSON, GitHub or SARIF a command prints."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from flowc.cli.sources import Source
from flowc.compiler.render import render_github, render_json, render_sarif, render_text_all
from flowc.dsl.diagnostics import Diagnostic

#: One source with what was found in it.
Finding = tuple[Source, Sequence[Diagnostic]]


def render(findings: Sequence[Finding], format: str) -> str:
    """Every finding in one `--format` (`text`, `json`, `github` or `sarif`); may be empty."""
    pairs = [(source.name, d) for source, diagnostics in findings for d in diagnostics]
    if format == "json":
        return render_json(pairs)
    if format == "sarif":
        from flowc.cli.main import version

        return render_sarif(pairs, tool_version=version())
    if format == "github":
        return "\n".join(render_github(d, name) for name, d in pairs)
    blocks = [render_text_all(d, s.text, s.name) for s, d in findings if d]
    return "\n\n".join(blocks)


def print_text(
    source: Source, diagnostics: Sequence[Diagnostic], file: TextIO | None = None
) -> None:
    """A source's diagnostics as text on `file` (standard error by default), if there are any."""
    if diagnostics:
        print(render_text_all(diagnostics, source.text, source.name), file=file or sys.stderr)
