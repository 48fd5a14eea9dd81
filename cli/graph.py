"""`flowc graph FILE --format mermaid|dot` -> the flow's diagram source on stdout."""

from __future__ import annotations

import argparse
import os

from flowc.cli.check import check
from flowc.cli.errors import EXIT_ERRORS, EXIT_OK
from flowc.cli.reporting import print_text
from flowc.cli.sources import read_source
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler.diagram import to_dot, to_mermaid


def run(args: argparse.Namespace) -> int:
    """Draw one flow; a flow with errors prints its diagnostics on stderr instead."""
    tools = load_tools(tool_entries(args.tools, os.environ))
    source = read_source(args.file)
    checked = check(source, tools, args.flows)
    print_text(source, checked.diagnostics)
    if checked.errors or checked.program is None:
        return EXIT_ERRORS
    render = to_dot if args.format == "dot" else to_mermaid
    print(render(checked.program), end="")
    return EXIT_OK
