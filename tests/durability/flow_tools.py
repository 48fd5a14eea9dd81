"""Tools for the worker processes of the durability tests (loaded with `--tools PATH`).

`step` counts in `n` after a short pause, so that a kill lands in the middle of a run, and
notes every call (process, run, step, attempt, node, branch) in `FLOWC_TEST_CALLS` when it
is set: the tests read it to see who ran what.  `hang` never returns; `fail` always raises
(a step for an error route); `gate` waits until a file exists; `mark` writes its name (and
adds it to `found`, for parallel branches to merge); `square`, a map's tool, gives its item's
square, after a file exists for the items from `held` on.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from flowc.runtime import current_step, register_tool


def _note(kind: str) -> None:
    path = os.environ.get("FLOWC_TEST_CALLS")
    if not path:
        return
    step = current_step()
    line = json.dumps(
        {
            "pid": os.getpid(),
            "run": step.run_id,
            "seq": step.seq,
            "attempt": step.attempt,
            "tool": kind,
            "node": step.node,
            "branch": step.branch,
        }
    )
    with open(path, "a", encoding="utf-8") as calls:
        calls.write(line + "\n")


@register_tool
async def step(state: dict[str, Any], *, pause: float = 0.02) -> dict[str, Any]:
    """Add 1 to `n` (and `n` to `total`) after `pause` seconds."""
    _note("step")
    await asyncio.sleep(pause)
    n: int = state.get("n", 0) + 1
    return {"n": n, "total": state.get("total", 0) + n}


@register_tool
async def hang(state: dict[str, Any]) -> dict[str, Any]:
    """Wait for ever."""
    _note("hang")
    await asyncio.sleep(10**6)
    return {}


@register_tool
async def fail(state: dict[str, Any]) -> dict[str, Any]:
    """Fail, every time."""
    _note("fail")
    raise ConnectionError("down")


@register_tool
async def gate(state: dict[str, Any], *, flag: str) -> dict[str, Any]:
    """Wait until the file `flag` exists, then write `gated: true`."""
    _note("gate")
    while not os.path.exists(flag):
        await asyncio.sleep(0.02)
    return {"gated": True}


@register_tool
async def mark(state: dict[str, Any], *, name: str, found: bool = False) -> dict[str, Any]:
    """Write `name: true`; with `found`, also `found` with `name` added to it."""
    _note("mark")
    if not found:
        return {name: True}
    return {name: True, "found": [*state.get("found", []), name]}


@register_tool
async def square(state: dict[str, Any], *, flag: str, held: int) -> dict[str, Any]:
    """`{"item": issue, "square": issue ** 2}`; from item `held` on, once the file `flag` exists."""
    _note("square")
    item: int = state["issue"]
    while item >= held and not os.path.exists(flag):
        await asyncio.sleep(0.02)
    return {"item": item, "square": item * item}
