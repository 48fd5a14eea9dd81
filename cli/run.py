"""`flowc run FILE` -> the flow run in-process: a trace line per node, then the final state.

No database.  The trace goes to standard error as nodes finish; the final state goes to
standard output (`--json`: the whole result as JSON).  Exit 0 when the run succeeded, 1
when it failed (the error shown at its source line), 2 for usage or compile errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from flowc.cli.compile import compile_file
from flowc.cli.errors import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, CommandError
from flowc.cli.sources import Source, read_source
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler.program import MAX_MAX_STEPS
from flowc.compiler.render import render_text
from flowc.dsl.diagnostics import WHOLE_TEXT, Span, error

#: Values longer than this are cut short in the human-readable final state.
SHOWN_VALUE = 300


def run(args: argparse.Namespace) -> int:
    """Compile the file, build the initial state, run it, report."""
    tools = load_tools(tool_entries(args.tools, os.environ))
    initial = initial_state(args)
    outcome = compile_file(args.file, tools)
    if outcome is None:
        return EXIT_USAGE  # for `run`, a flow that does not compile is a usage error
    source, compiled = outcome
    flow = compiled.ir
    if args.max_steps is not None:
        settings = flow.settings.model_copy(update={"max_steps": args.max_steps})
        flow = flow.model_copy(update={"settings": settings})

    from flowc.runtime import Event, WorkflowEngine

    def trace(event: Event) -> None:
        if event.type == "node_finished":
            keys = ", ".join(sorted(event.delta or {})) or "-"
            print(
                f"{event.step:>5}  {event.node:<16} {event.duration_ms or 0:9.2f} ms  {keys}",
                file=sys.stderr,
                flush=True,
            )

    result = asyncio.run(WorkflowEngine(flow).run(initial_state=initial, listener=trace))
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print_state(result.state)
    if result.error is not None:
        span = result.error.span
        where = (
            Span(span["line"], span["column"], span["end_line"], span["end_column"])
            if span
            else WHOLE_TEXT
        )
        message = f"run failed at node `{result.error.node}`: {result.error.message}"
        print(render_text(error(result.error.code, message, where), source.text, source.name),
              file=sys.stderr)  # fmt: skip
        return EXIT_ERRORS
    print(f"run succeeded in {len(result.steps)} steps", file=sys.stderr)
    return EXIT_OK


def initial_state(args: argparse.Namespace) -> dict[str, Any]:
    """`--input-file`, then `--input`, then `--code-file` (as `code`), merged in that order."""
    state: dict[str, Any] = {}
    if args.input_file is not None:
        state.update(_json_object(_read_text(args.input_file), f"`{args.input_file}`"))
    if args.input is not None:
        state.update(_json_object(args.input, "--input"))
    if args.code_file is not None:
        state["code"] = _read_text(args.code_file)
    if args.max_steps is not None and not 1 <= args.max_steps <= MAX_MAX_STEPS:
        raise CommandError(f"--max-steps must be from 1 to {MAX_MAX_STEPS:,}")
    return state


def _read_text(path: str) -> str:
    source: Source = read_source(path)
    if source.problem is not None:
        raise CommandError(f"cannot read `{path}`: {source.problem.message}")
    return source.text


def _json_object(text: str, where: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise CommandError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CommandError(f"{where} is nested too deeply") from None
    if not isinstance(value, dict):
        raise CommandError(f'{where} must be a JSON object, like {{"code": "..."}}')
    return value


def print_state(state: dict[str, Any]) -> None:
    """The final state, one key per line, long values cut short."""
    for key in sorted(state):
        text = json.dumps(state[key], ensure_ascii=False)
        if len(text) > SHOWN_VALUE:
            text = f"{text[: SHOWN_VALUE - 1]}… ({len(text):,} characters)"
        print(f"{key}: {text}")
