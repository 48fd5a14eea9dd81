"""`flowc compile FILE` -> the flow's IR JSON on stdout; `flowc schema` -> a JSON Schema.

`flowc schema FILE` prints the schema of the flow's input (its `state` declarations),
`flowc schema` alone the IR's.  Diagnostics go to standard error as text: warnings beside
the output, errors instead of it (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from flowc.cli.check import flows_for
from flowc.cli.errors import EXIT_ERRORS, EXIT_OK
from flowc.cli.reporting import print_text
from flowc.cli.sources import Source, read_source
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler import Compiled, ToolSpec, compile_source
from flowc.dsl.diagnostics import FlowError


def run(args: argparse.Namespace) -> int:
    """Compile one file; the same text always prints the same bytes."""
    tools = load_tools(tool_entries(args.tools, os.environ))
    outcome = compile_file(args.file, tools, args.flows)
    if outcome is None:
        return EXIT_ERRORS
    sys.stdout.write(outcome[1].ir.to_json() + "\n")
    return EXIT_OK


def compile_file(
    path: str, tools: dict[str, ToolSpec], flow_dirs: Sequence[str] = ()
) -> tuple[Source, Compiled] | None:
    """Read and compile a flow file, its diagnostics on stderr; None when it has errors.

    Its sub-flows are found beside it, then in `flow_dirs`.
    """
    source = read_source(path)
    if source.problem is not None:
        print_text(source, [source.problem])
        return None
    try:
        compiled = compile_source(
            source.text,
            tools=tools,
            filename=source.name,
            flows=flows_for(source, tools, flow_dirs),
        )
    except FlowError as exc:
        print_text(source, exc.diagnostics)
        return None
    print_text(source, compiled.warnings)
    return source, compiled


def schema(args: argparse.Namespace) -> int:
    """Print the input schema of the flow in FILE, or without FILE the IR's; indented."""
    if args.file is None:
        from flowc.compiler.ir import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return EXIT_OK
    from flowc.compiler.inputs import input_schema

    outcome = compile_file(args.file, load_tools(tool_entries(args.tools, os.environ)), args.flows)
    if outcome is None:
        return EXIT_ERRORS
    print(json.dumps(input_schema(outcome[1].ir), indent=2, ensure_ascii=False))
    return EXIT_OK
