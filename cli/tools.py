"""`flowc tools` -> the registered tools: parameters, reads, writes, summaries (`--json` too)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flowc.cli.errors import EXIT_OK
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler.tools import KeyContract, ToolParam, ToolSpec


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
    """A tool as text: name and summary, where it is defined, reads, writes, parameters.

    Reads and writes are shown when annotated, `name?` for a key that may be missing.
    """
    head = f"{spec.name}: {spec.summary}" if spec.summary else spec.name
    lines = [head]
    if spec.origin:
        where = f" ({_relative(spec.location)})" if spec.location else ""
        lines.append(f"    from {spec.origin}{where}")
    if spec.reads is not None:
        lines.append(f"    reads: {_describe_keys(spec.reads)}")
    if spec.writes is not None:
        lines.append(f"    writes: {_describe_keys(spec.writes)}")
    return "\n".join([*lines, *(f"    {_describe_param(p)}" for p in spec.params)])


def _relative(location: str) -> str:
    """`file:line` with the file relative to the current directory when it is inside it."""
    path, _, line = location.rpartition(":")
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return location
    return location if shown.startswith(os.pardir) else f"{shown}:{line}"


def _describe_keys(keys: tuple[KeyContract, ...]) -> str:
    """`code: str, attempts?: int`; `nothing` for a tool that writes no key."""
    if not keys:
        return "nothing"
    return ", ".join(f"{k.name}{'' if k.required else '?'}: {k.type}" for k in keys)


def _describe_param(param: ToolParam) -> str:
    name = f"**{param.name}" if param.kind == "var_keyword" else param.name
    shown = str(param.type) if param.type is not None and not param.type.is_any else None
    shown = shown or param.annotation
    typed = f"{name}: {shown}" if shown else name
    if param.required:
        return f"{typed} ({param.kind}, required)"
    if param.default is not None:
        return f"{typed} ({param.kind}, default {param.default})"
    return f"{typed} ({param.kind})"


def spec_json(spec: ToolSpec) -> dict[str, Any]:
    """A tool as a JSON object: name, summary, parameters, reads and writes, how it runs.

    A type is the DSL's text (`list[dict]?`); `type`, `reads` and `writes` are null when
    the tool's annotations do not say.
    """
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
                "type": None if p.type is None else str(p.type),
            }
            for p in spec.params
        ],
        "reads": keys_json(spec.reads),
        "writes": keys_json(spec.writes),
        "is_async": spec.is_async,
        "blocking": spec.blocking,
        "origin": spec.origin,
        "location": spec.location,
    }


def keys_json(keys: tuple[KeyContract, ...] | None) -> list[dict[str, Any]] | None:
    """Keys read or written as `[{name, type, required}]`; None when not annotated."""
    if keys is None:
        return None
    return [{"name": k.name, "type": str(k.type), "required": k.required} for k in keys]
