"""Benchmark: a map of 50 trivial calls against 50 sequential steps of the same tool.

Issue 11's target: in memory (no database, no listener), a node that maps a trivial tool
over a list of 50 items costs at most 3x a flow of 50 sequential steps of that tool.  The
baseline is the engine's own fastest road, a chain of 50 plain nodes (no policy), not a
bare loop: the map does more work per item (a copy of the state with the item in it, a
task, the collection in order), and the question is what that costs over a step.  Also
timed, for scale: the same 50 calls in a bare Python loop.  Prints microseconds per call
and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from typing import Any

from engine import best_of

from flowc.runtime import Registry, WorkflowEngine

State = dict[str, Any]
ITEMS = 50
#: The map: one node, 50 calls, their results collected into `fixes`.
MAPPED = "node fixes = for issue in issues: fix_issue\nfixes -> end\n"
#: The baseline: 50 nodes in a chain, each a call of the same tool.
CHAIN = (
    "".join(f"node n{i} = fix_issue\n" for i in range(ITEMS))
    + " -> ".join(f"n{i}" for i in range(ITEMS))
    + " -> end\n"
)


def fix_issue(state: State) -> State:
    """Trivial stand-in: a fix for the item (or for nothing, in the chain)."""
    return {"fixed": state.get("issue", 0)}


def bare_loop(state: State) -> list[State]:
    """The same 50 calls in plain Python, each on a state with its item."""
    return [fix_issue({**state, "issue": item}) for item in state["issues"]]


def main() -> None:
    """Time the chain, the map and the bare loop; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200, help="runs per timed sample")
    args = parser.parse_args()
    registry = Registry()
    registry.add(fix_issue)
    mapped = WorkflowEngine(MAPPED, registry)
    chain = WorkflowEngine(CHAIN, registry)
    initial: State = {"issues": list(range(ITEMS))}

    async def runs(engine: WorkflowEngine, count: int) -> None:
        for _ in range(count):
            result = await engine.run(initial_state=initial)
            assert result.status == "succeeded", result.error

    checked = asyncio.run(mapped.run(initial_state=initial))
    assert checked.status == "succeeded", checked.error
    assert checked.state["fixes"] == [{"fixed": item} for item in range(ITEMS)]
    per_call = 1e6 / (args.runs * ITEMS)
    chain_us = best_of(args.repeats, lambda: asyncio.run(runs(chain, args.runs))) * per_call
    map_us = best_of(args.repeats, lambda: asyncio.run(runs(mapped, args.runs))) * per_call
    bare_us = best_of(args.repeats, lambda: [bare_loop(initial) for _ in range(args.runs)])
    bare_us *= per_call
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{ITEMS} items, {args.runs} runs per sample, best of {args.repeats}")
    print(f"bare Python loop:            {bare_us:8.2f} us/call")
    print(f"chain of {ITEMS} steps (baseline): {chain_us:8.2f} us/call")
    print(
        f"map over {ITEMS} items:          {map_us:8.2f} us/call  "
        f"({map_us / chain_us:4.2f}x the chain; target <= 3x)"
    )


if __name__ == "__main__":
    main()
