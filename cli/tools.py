"""`flowc tools` -> the registered tools, their parameters and summaries (`--json` for machines)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flowc.cli.errors import EXIT_OK
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler.tools import ToolParam, ToolSpec


def run(args: argparse.Namespace) -> int:
    """List every tool after loading the built-in packs and the requested modules."""
    specs = sorted(load_tools(tool_entries(args.tools, os.environ)).values(), key=_name)
    if args.json:
        print(json.dumps([spec_json(spec) for spec in specs], indent=2, ensure_ascii=False))
    elif specs:
        print("\n".join(describe(spec) for spec in specs))
    else:
        print("flowc: no tools are registered", file=sys.stderr)
    return EXIT_OK


def _name(spec: ToolSpec) -> str:
    return spec.name


def describe(spec: ToolSpec) -> str:
    """A tool as text: its name and summary, where it is defined, one line per parameter."""
    head = f"{spec.name}: {spec.summary}" if spec.summary else spec.name
    lines = [head]
    if spec.origin:
        where = f" ({_relative(spec.location)})" if spec.location else ""
        lines.append(f"    from {spec.origin}{where}")
    return "\n".join([*lines, *(f"    {_describe_param(p)}" for p in spec.params)])


def _relative(location: str) -> str:
    """`file:line` with the file relative to the current directory when it is inside it."""
    path, _, line = location.rpartition(":")
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return location
    return location if shown.startswith(os.pardir) else f"{shown}:{line}"


def _describe_param(param: ToolParam) -> str:
    name = f"**{param.name}" if param.kind == "var_keyword" else param.name
    typed = f"{name}: {param.annotation}" if param.annotation else name
    if param.required:
        return f"{typed} ({param.kind}, required)"
    if param.default is not None:
        return f"{typed} ({param.kind}, default {param.default})"
    return f"{typed} ({param.kind})"


def spec_json(spec: ToolSpec) -> dict[str, Any]:
    """A tool as a JSON object: name, summary, parameters, and how it runs."""
    return {
        "name": spec.name,
        "summary": spec.summary,
        "params": [
            {
                "name": p.name,
                "kind": p.kind,
                "required": p.required,
                "default": p.default,
                "annotation": p.annotation,
            }
            for p in spec.params
        ],
        "is_async": spec.is_async,
        "blocking": spec.blocking,
        "origin": spec.origin,
        "location": spec.location,
    }
