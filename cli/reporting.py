"""Diagnostics of one or more sources -> the text, JSON, GitHub or SARIF a command prints.

Each source shows at most `MAX_SHOWN_DIAGNOSTICS`: the text says how many more there are,
and for the machine formats `omissions` gives the lines that say it on standard error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from flowc.cli.sources import Source
from flowc.compiler.render import (
    count_more,
    render_github,
    render_json,
    render_sarif,
    render_text_all,
)
from flowc.dsl.diagnostics import Diagnostic
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS

#: One source with what was found in it.
Finding = tuple[Source, Sequence[Diagnostic]]


def render(findings: Sequence[Finding], format: str) -> str:
    """Every finding in one `--format` (`text`, `json`, `github` or `sarif`); may be empty."""
    if format == "text":
        blocks = [render_text_all(d, s.text, s.name) for s, d in findings if d]
        return "\n\n".join(blocks)
    pairs = [
        (source.name, d)
        for source, diagnostics in findings
        for d in diagnostics[:MAX_SHOWN_DIAGNOSTICS]
    ]
    if format == "json":
        return render_json(pairs)
    if format == "sarif":
        from flowc.cli.main import version

        return render_sarif(pairs, tool_version=version())
    return "\n".join(render_github(d, name) for name, d in pairs)


def omissions(findings: Sequence[Finding]) -> list[str]:
    """A line for each source with more diagnostics than a machine format shows."""
    return [
        f"{source.name}: … and {count_more(diagnostics[MAX_SHOWN_DIAGNOSTICS:])} not shown "
        f"(the first {MAX_SHOWN_DIAGNOSTICS} are)"
        for source, diagnostics in findings
        if len(diagnostics) > MAX_SHOWN_DIAGNOSTICS
    ]


def print_text(
    source: Source, diagnostics: Sequence[Diagnostic], file: TextIO | None = None
) -> None:
    """A source's diagnostics as text on `file` (standard error by default), if there are any."""
    if diagnostics:
        print(render_text_all(diagnostics, source.text, source.name), file=file or sys.stderr)
