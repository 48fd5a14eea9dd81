"""Benchmark: the interpreter's cost per step against a bare Python loop.

The code-review loop shape (analyze -> style -> score -> refine -> analyze ...) with
trivial tools, LOOPS times round.  The bare loop makes the same calls, the same dict
merges and the same branch decision.  Prints microseconds per step for both and their
ratio (target: <= 20x with no listener), then the same with a `stream()` consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from flowc.runtime import Registry, WorkflowEngine

State = dict[str, Any]
LOOPS = 2_000
FLOW = f"""
set max_steps = {LOOPS * 4 + 10}
node analyze = analyze_syntax
node style = check_style
node score = score_code
node refine = refine_code(max_fixes = 10)
analyze -> style -> score
score ? score < 80 and attempts < {LOOPS} -> refine : end
refine -> analyze
"""


def analyze_syntax(state: State) -> State:
    """Trivial stand-in: records that the code parsed."""
    return {"syntax_ok": True}


def check_style(state: State) -> State:
    """Trivial stand-in: no issues."""
    return {"issues": 0}


def score_code(state: State) -> State:
    """Trivial stand-in: a constant low score, so the loop goes round."""
    return {"score": 50}


def refine_code(state: State, max_fixes: int = 10) -> State:
    """Trivial stand-in: counts attempts."""
    return {"attempts": state["attempts"] + 1}


def bare_loop() -> int:
    """The same calls, merges and branch, in plain Python; returns the steps taken."""
    state: State = {"code": "x = 1\n", "attempts": 0}
    steps = 0
    while True:
        state = {**state, **analyze_syntax(state)}
        state = {**state, **check_style(state)}
        state = {**state, **score_code(state)}
        steps += 3
        if not (state["score"] < 80 and state["attempts"] < LOOPS):
            return steps
        state = {**state, **refine_code(state, max_fixes=10)}
        steps += 1


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The fastest of `repeats` timed calls, the garbage collector paused."""
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        gc.enable()
    return min(times)


def main() -> None:
    """Time the bare loop, the engine, and the engine with a stream consumer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    registry = Registry()
    for tool in (analyze_syntax, check_style, score_code, refine_code):
        registry.add(tool)
    engine = WorkflowEngine(FLOW, registry)
    initial = {"code": "x = 1\n", "attempts": 0}

    async def run() -> int:
        result = await engine.run(initial_state=initial)
        assert result.status == "succeeded", result.error
        return len(result.steps)

    async def stream() -> int:
        count = 0
        async for event in engine.stream(initial_state=initial):
            count += event.type == "node_finished"
        return count

    steps = bare_loop()
    assert asyncio.run(run()) == steps == asyncio.run(stream())
    # The bare loop is fast: time it 20 times over per sample, so the clock is not the limit.
    bare = best_of(args.repeats, lambda: [bare_loop() for _ in range(20)]) / (20 * steps) * 1e6
    quiet = best_of(args.repeats, lambda: asyncio.run(run())) / steps * 1e6
    streamed = best_of(args.repeats, lambda: asyncio.run(stream())) / steps * 1e6
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{LOOPS:,} loops, {steps:,} steps per run, best of {args.repeats}")
    print(f"bare Python loop:           {bare:8.2f} us/step")
    print(f"engine, no listener:        {quiet:8.2f} us/step  ({quiet / bare:5.1f}x bare)")
    print(f"engine, stream() consumer:  {streamed:8.2f} us/step  ({streamed / bare:5.1f}x bare)")


if __name__ == "__main__":
    main()
