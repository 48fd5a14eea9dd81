"""Benchmark: a sub-flow of 50 trivial steps against the same 50 steps inline.

What running a flow as one node costs, in memory (no database, no listener): a parent whose
one node runs a child of 50 sequential steps, against a flow of the same 50 steps.  The
baseline is the engine's fastest road, the chain of 50 plain nodes.  Also timed: a child of
one step against that step inline, whose difference is the fixed cost of a child run (its
input, its run, its delta), printed in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from typing import Any

from engine import best_of

from flowc.compiler import compile_source
from flowc.compiler.ir import Flow
from flowc.compiler.subflows import FoundFlow, StoredFlows
from flowc.runtime import Registry, WorkflowEngine

State = dict[str, Any]
STEPS = 50


def step(state: State) -> State:
    """Trivial stand-in: counts."""
    return {"count": state.get("count", 0) + 1}


def chain(count: int) -> str:
    """`count` nodes running `step`, one after another."""
    return (
        "".join(f"node n{i} = step\n" for i in range(count))
        + " -> ".join(f"n{i}" for i in range(count))
        + " -> end\n"
    )


def parent_of(child: Flow, registry: Registry) -> Flow:
    """A flow whose one node runs `child`."""
    flows = StoredFlows({"child": FoundFlow(child, None, "bench")})
    text = "node run_child = flow child\nrun_child -> end\n"
    return compile_source(text, tools=registry.specs(), flows=flows).ir


def main() -> None:
    """Time the inline chains and their sub-flows; print the costs and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200, help="runs per timed sample")
    args = parser.parse_args()
    registry = Registry()
    registry.add(step)
    long_child = compile_source(chain(STEPS), tools=registry.specs()).ir
    short_child = compile_source(chain(1), tools=registry.specs()).ir
    engines = {
        "inline 50": WorkflowEngine(long_child, registry),
        "sub-flow 50": WorkflowEngine(parent_of(long_child, registry), registry),
        "inline 1": WorkflowEngine(short_child, registry),
        "sub-flow 1": WorkflowEngine(parent_of(short_child, registry), registry),
    }

    async def runs(engine: WorkflowEngine, count: int) -> None:
        for _ in range(count):
            result = await engine.run(initial_state={})
            assert result.status == "succeeded", result.error

    for name, engine in engines.items():
        result = asyncio.run(engine.run(initial_state={}))
        assert result.status == "succeeded", (name, result.error)
        assert result.state["count"] == (STEPS if "50" in name else 1), (name, result.state)
    per_run = 1e6 / args.runs
    timed: dict[str, float] = {}
    for name, engine in engines.items():

        def sample(engine: WorkflowEngine = engine) -> None:
            asyncio.run(runs(engine, args.runs))

        timed[name] = best_of(args.repeats, sample) * per_run
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{args.runs} runs per sample, best of {args.repeats}")
    for name, us in timed.items():
        print(f"{name:>12}: {us:9.2f} us/run")
    fixed = timed["sub-flow 1"] - timed["inline 1"]
    ratio = timed["sub-flow 50"] / timed["inline 50"]
    print(f"a child run costs {fixed:.2f} us more than its step inline")
    print(f"a sub-flow of {STEPS} steps: {ratio:4.2f}x the same steps inline (baseline)")


if __name__ == "__main__":
    main()
