"""`current_step()`: the step a tool runs in, for sync, async and blocking tools alike."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from flowc.runtime import (
    NoStepError,
    Resume,
    RunEvent,
    StepContext,
    WorkflowEngine,
    current_step,
)
from tests.runtime.policy_support import State, registry, run

NOT_IN_A_TOOL = "current_step() is only available inside a tool, while a flowc run is calling it"


def recorder(seen: list[StepContext]) -> tuple[Callable[..., Any], ...]:
    """A sync, an async and a blocking tool that each record their step."""

    def inline(state: State) -> State:
        seen.append(current_step())
        return {}

    async def awaited(state: State) -> State:
        await asyncio.sleep(0)
        seen.append(current_step())
        return {}

    def threaded(state: State) -> State:
        seen.append(current_step())
        return {}

    return inline, awaited, threaded


def test_every_kind_of_tool_knows_its_step() -> None:
    seen: list[StepContext] = []
    inline, awaited, threaded = recorder(seen)
    tools = registry(inline, awaited, blocking=(threaded,))
    source = (
        "node timed = inline with timeout = 5\nnode retried = inline with retries = 2\n"
        "inline -> awaited -> threaded -> timed -> retried -> end"
    )
    result, _ = run(source, tools, run_id="run-1")
    assert result.status == "succeeded"
    assert seen == [
        StepContext("run-1", 1, "inline", 1),
        StepContext("run-1", 2, "awaited", 1),
        StepContext("run-1", 3, "threaded", 1),
        StepContext("run-1", 4, "timed", 1),  # a sync tool run in a thread for its timeout
        StepContext("run-1", 5, "retried", 1),
    ]
    assert [step.idempotency_key for step in seen] == [f"run-1:{n}" for n in range(1, 6)]


@pytest.mark.parametrize("kind", ["sync_tool", "async_tool", "blocking_tool"])
def test_the_attempt_changes_and_the_idempotency_key_does_not(kind: str) -> None:
    attempts: list[StepContext] = []

    def record_and_fail(step: StepContext) -> None:
        attempts.append(step)
        if step.attempt < 3:
            raise RuntimeError("again")

    def sync_tool(state: State) -> State:
        record_and_fail(current_step())
        return {}

    async def async_tool(state: State) -> State:
        record_and_fail(current_step())
        return {}

    def blocking_tool(state: State) -> State:
        record_and_fail(current_step())
        return {}

    tools = registry(sync_tool, async_tool, blocking=(blocking_tool,))
    result, _ = run(f"node x = {kind} with retries = 2, backoff = 0\nx -> end", tools, run_id="r")
    assert result.status == "succeeded"
    assert [(s.seq, s.attempt, s.idempotency_key) for s in attempts] == [
        (1, 1, "r:1"),
        (1, 2, "r:1"),
        (1, 3, "r:1"),
    ]


def test_outside_a_tool_it_is_a_lookup_error() -> None:
    with pytest.raises(NoStepError) as raised:
        current_step()
    assert isinstance(raised.value, LookupError)
    assert str(raised.value) == NOT_IN_A_TOOL


def test_a_listener_is_not_a_tool() -> None:
    problems: list[str] = []

    def listen(event: RunEvent) -> None:
        try:
            current_step()
        except NoStepError as problem:
            problems.append(str(problem))

    def quick(state: State) -> State:
        return {}

    asyncio.run(WorkflowEngine("quick -> end", registry(quick)).run(listener=listen))
    assert problems == [NOT_IN_A_TOOL] * 4
    with pytest.raises(NoStepError):
        current_step()  # and nothing is left behind once the run is over


def test_runs_at_the_same_time_each_see_their_own() -> None:
    seen: list[tuple[str, str]] = []

    async def pause(state: State) -> State:
        before = current_step()
        await asyncio.sleep(0.01)
        after = current_step()
        seen.append((before.idempotency_key, after.idempotency_key))
        return {}

    engine = WorkflowEngine("pause -> end", registry(pause))

    async def both() -> None:
        await asyncio.gather(engine.run(run_id="a"), engine.run(run_id="b"))

    asyncio.run(both())
    assert sorted(seen) == [("a:1", "a:1"), ("b:1", "b:1")]


def test_a_resumed_run_numbers_its_steps_on() -> None:
    seen: list[StepContext] = []
    inline, awaited, threaded = recorder(seen)
    tools = registry(inline, awaited, blocking=(threaded,))
    result, _ = run(
        "inline -> awaited -> threaded -> end", tools, run_id="r", resume=Resume("inline", 4)
    )
    assert result.status == "succeeded"
    assert [(s.seq, s.node, s.idempotency_key) for s in seen] == [
        (5, "awaited", "r:5"),
        (6, "threaded", "r:6"),
    ]


def test_a_step_context_is_frozen() -> None:
    step = StepContext("r", 1, "a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.seq = 2  # type: ignore[misc]
