"""`flowc check FILE...` -> diagnostics for every file; exit 0 clean, 1 errors, 2 unreadable."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from flowc.cli.errors import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, CommandError, report
from flowc.cli.reporting import Finding, omissions, render
from flowc.cli.sources import Source, read_source
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler import Checked, ToolSpec, check_source
from flowc.compiler.subflows import DirectoryFlows


def run(args: argparse.Namespace) -> int:
    """Check each file against the loaded tools and print what was found in `--format`."""
    tools = load_tools(tool_entries(args.tools, os.environ))
    findings: list[Finding] = []
    unreadable = False
    for argument in args.files:
        try:
            source = read_source(argument)
        except CommandError as exc:
            report(exc)
            unreadable = True
            continue
        findings.append((source, check(source, tools, args.flows).diagnostics))
    output = render(findings, args.format)
    if output:
        print(output)
    if args.format != "text":
        for line in omissions(findings):
            print(line, file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    has_errors = any(d.is_error for _, diagnostics in findings for d in diagnostics)
    return EXIT_ERRORS if has_errors else EXIT_OK


def check(
    source: Source, tools: Mapping[str, ToolSpec] | None, flow_dirs: Sequence[str] = ()
) -> Checked:
    """Parse and check a source; a source that could not be decoded reports only that.

    Its sub-flows are found beside it, then in `flow_dirs` (`flows_for`).
    """
    if source.problem is not None:
        return Checked(None, (source.problem,))
    return check_source(
        source.text, tools=tools, filename=source.name, flows=flows_for(source, tools, flow_dirs)
    )


def flows_for(
    source: Source, tools: Mapping[str, ToolSpec] | None, flow_dirs: Sequence[str]
) -> DirectoryFlows:
    """Where a source's sub-flows are found: its folder, then `flow_dirs`.

    The working folder stands for standard input's.
    """
    return DirectoryFlows.beside(source.name if source.from_file else None, flow_dirs, tools)
