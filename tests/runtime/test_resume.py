"""Resuming a run after its last recorded step: `run(..., resume=Resume(after, seq))`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from flowc.runtime import Event, Resume, WorkflowEngine
from tests.runtime.policy_support import State, kinds, registry, run

Tool = Callable[[State], State]


def counting() -> tuple[list[str], Tool, Tool, Tool]:
    """Tools `a`, `b` and `c` that record their calls and count in `n`."""
    calls: list[str] = []

    def a(state: State) -> State:
        calls.append("a")
        return {"n": state.get("n", 0) + 1}

    def b(state: State) -> State:
        calls.append("b")
        return {"n": state["n"] + 10}

    def c(state: State) -> State:
        calls.append("c")
        return {"n": state["n"] + 100}

    return calls, a, b, c


def steps(events: list[Event]) -> list[tuple[str, int, str | None]]:
    return [(e.type, e.step, e.node) for e in events]


def test_resume_in_the_middle_runs_the_rest_and_numbers_it_on() -> None:
    calls, a, b, c = counting()
    result, events = run(
        "a -> b -> c -> end", registry(a, b, c), initial_state={"n": 1}, resume=Resume("a", 1)
    )
    assert result.status == "succeeded"
    assert calls == ["b", "c"]
    assert result.state == {"n": 111}
    assert [(s.seq, s.node) for s in result.steps] == [(2, "b"), (3, "c")]  # the new ones only
    assert steps(events) == [
        ("run_started", 1, "b"),
        ("node_started", 2, "b"),
        ("node_finished", 2, "b"),
        ("node_started", 3, "c"),
        ("node_finished", 3, "c"),
        ("run_finished", 3, "c"),
    ]


def test_resume_takes_the_branch_of_the_last_node_on_the_state_given() -> None:
    calls, a, b, c = counting()
    tools = registry(a, b, c)
    source = "a ? n > 5 -> c : b\nb -> end\nc -> end"
    for n, taken in [(9, "c"), (1, "b")]:
        result, _ = run(source, tools, initial_state={"n": n}, resume=Resume("a", 3))
        assert [(s.seq, s.node) for s in result.steps] == [(4, taken)]
    assert calls == ["c", "b"]


def test_resume_after_the_last_node_finishes_at_once() -> None:
    calls, a, b, c = counting()
    tools = registry(a, b, c)
    for source in ("a -> b -> c -> end", "a -> b -> c"):  # to `end`, or a node without a route
        result, events = run(source, tools, initial_state={"n": 111}, resume=Resume("c", 3))
        assert (result.status, result.state, result.steps) == ("succeeded", {"n": 111}, [])
        assert steps(events) == [("run_started", 3, "end"), ("run_finished", 3, "c")]
    assert calls == []


def test_the_steps_before_count_against_max_steps() -> None:
    _, a, b, c = counting()
    tools = registry(a, b, c)
    source = "set max_steps = 4\na -> b ? n < 999 -> a : end"
    result, _ = run(source, tools, initial_state={"n": 0}, resume=Resume("b", 2))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "max_steps"
    assert result.error.message == (
        "the run took more than 4 steps (max_steps = 4) and was stopped; "
        "the last nodes were a -> b -> a"
    )
    assert [(s.seq, s.node) for s in result.steps] == [(3, "a"), (4, "b")]
    at_the_limit, events = run(source, tools, initial_state={"n": 0}, resume=Resume("b", 4))
    assert at_the_limit.error is not None and at_the_limit.error.code == "max_steps"
    assert at_the_limit.steps == []
    assert steps(events) == [("run_started", 4, "a"), ("run_failed", 4, "a")]


def test_an_unknown_node_to_resume_after_fails_the_run() -> None:
    calls, a, b, c = counting()
    result, events = run("a -> end", registry(a, b, c), resume=Resume("nope", 7))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.node) == (
        "unknown_node",
        "there is no node `nope` to resume after",
        "nope",
    )
    assert kinds(events) == ["run_failed"]
    assert events[0].step == 7
    assert calls == []


def test_a_condition_that_fails_on_the_resumed_state_fails_the_run() -> None:
    _, a, b, c = counting()
    result, _ = run("a ? n > 1 -> b : end", registry(a, b, c), resume=Resume("a", 1))
    assert result.error is not None
    assert (result.error.code, result.error.node) == ("missing_key", "a")


def test_resume_is_a_step_number_and_takes_no_start_node() -> None:
    with pytest.raises(ValueError, match=r"Resume\.seq is a step number, 1 or more, not 0"):
        Resume("a", 0)
    _, a, b, c = counting()
    engine = WorkflowEngine("a -> end", registry(a, b, c))
    with pytest.raises(ValueError, match="give `start_node` or `resume`, not both"):
        asyncio.run(engine.run("a", resume=Resume("a", 1)))


def test_a_resumed_run_streams_its_events() -> None:
    _, a, b, c = counting()
    engine = WorkflowEngine("a -> b -> end", registry(a, b, c))

    async def collect() -> list[Event]:
        resume = Resume("a", 1)
        stream = engine.stream(initial_state={"n": 1}, resume=resume)
        return [e async for e in stream if isinstance(e, Event)]

    assert steps(asyncio.run(collect())) == [
        ("run_started", 1, "b"),
        ("node_started", 2, "b"),
        ("node_finished", 2, "b"),
        ("run_finished", 2, "b"),
    ]
