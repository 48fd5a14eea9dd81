"""Helpers for the policy tests: tools that hold their thread until released, and runs.

Also flows written as IR (version 2) without the compiler, for error routes (`node`, `flow`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flowc.compiler.ir import Flow
from flowc.runtime import Event, Registry, RunEvent, RunResult, WorkflowEngine, tool_threads

State = dict[str, Any]

#: Long enough that a test which waited for it would time out first: a tool that sleeps
#: this long only finishes in a test by being cut short (or released).
FOREVER = 10.0


def registry(*tools: Callable[..., Any], blocking: tuple[Callable[..., Any], ...] = ()) -> Registry:
    """A registry of `tools`, and of `blocking` ones registered with `blocking=True`."""
    made = Registry()
    for tool in tools:
        made.add(tool)
    for tool in blocking:
        made.add(tool, blocking=True)
    return made


def run(
    source: str | Flow, tools: Registry, *, threads: int = 4, **kwargs: Any
) -> tuple[RunResult, list[Event]]:
    """Run `source` (flow text, or IR) to its end; the result and every event."""
    events: list[Event] = []
    engine = WorkflowEngine(source, tools, max_threads_per_run=threads)
    result = asyncio.run(engine.run(listener=collector(events), **kwargs))
    return result, events


def wait_until(condition: Callable[[], bool], what: str, deadline: float = FOREVER) -> None:
    """Poll `condition` until it holds; fail the test after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.005)


@contextmanager
def held_threads() -> Iterator[threading.Event]:
    """A gate that tools wait on; opened on exit, which then waits for their threads to end.

    The process-wide counts are back where they were when the block ends, so the next test
    starts with no tool thread of this one alive.
    """
    before = tool_threads()
    gate = threading.Event()
    try:
        yield gate
    finally:
        gate.set()
        wait_until(lambda: tool_threads() == before, "the tool threads to return")


def collector(events: list[Event]) -> Callable[[RunEvent], None]:
    """A listener that keeps a run's events in `events` (a flow without sub-flows)."""

    def keep(event: RunEvent) -> None:
        assert isinstance(event, Event), f"a sub-flow's event where no node runs one: {event}"
        events.append(event)

    return keep


def kinds(events: list[Event]) -> list[str]:
    """The types of `events`, in order."""
    return [event.type for event in events]


def node(
    name: str, tool: str | None = None, *, args: dict[str, Any] | None = None, **policy: Any
) -> dict[str, Any]:
    """An IR node running `tool` (by default the one named as the node), `args`, `policy`.

    `policy` holds the node's policies (`on_error = ...`, `retries = ...`), when given.
    """
    made: dict[str, Any] = {"name": name, "tool": tool or name, "args": args or {}}
    if policy:
        made["policy"] = policy
    return made


def flow(
    nodes: list[dict[str, Any]],
    routes: dict[str, str | dict[str, Any]],
    *,
    start: str | None = None,
    **more: Any,
) -> Flow:
    """An IR version 2 flow: `nodes` (see `node`) and their `routes`.

    A route is a target (a plain edge; `end` ends the run) or an IR route.  `start` is the
    first node unless given; `more` adds top-level fields (`settings`, `state`).
    """
    edges = {
        source: {"kind": "goto", "target": route} if isinstance(route, str) else route
        for source, route in routes.items()
    }
    return Flow.model_validate(
        {"ir_version": 2, "start": start or nodes[0]["name"], "nodes": nodes, "routes": edges,
         **more}
    )  # fmt: skip
