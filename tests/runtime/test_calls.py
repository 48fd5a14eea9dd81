"""Tool calls: blocking tools in threads of their own, bounded per run; cancelled runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flowc.runtime import Event, Resume, RunEvent, WorkflowEngine, tool_threads
from flowc.runtime.calls import RunThreads, ThreadLimitError
from tests.runtime.policy_support import (
    FOREVER,
    State,
    collector,
    held_threads,
    kinds,
    registry,
    run,
    wait_until,
)

# ----------------------------------------------------------------- the thread bound


def test_a_run_that_reaches_its_thread_limit_fails_the_attempt() -> None:
    source = "node h = hold with timeout = 0.05, retries = 5, backoff = 0\nh -> end"
    with held_threads() as gate:

        def hold(state: State) -> State:
            gate.wait(FOREVER)
            return {}

        result, events = run(source, registry(blocking=(hold,)), threads=2)
        assert result.error is not None
        assert (result.error.code, result.error.message) == (
            "thread_limit",
            "node `h` could not call tool `hold`: the run already has 2 tool threads alive "
            "(max_threads_per_run = 2); 2 of them timed out or were cancelled and have not "
            "returned (after 3 attempts)",
        )
        failed = [e for e in events if e.type == "node_attempt_failed"]
        assert [(e.error.code if e.error else None, e.retry_in) for e in failed] == [
            ("timeout", 0.0),
            ("timeout", 0.0),
            ("thread_limit", None),  # not retried
        ]


def test_the_limit_counts_a_runs_threads_not_the_processs() -> None:
    with held_threads() as gate:

        def hold(state: State) -> State:
            gate.wait(FOREVER)
            return {}

        def quick(state: State) -> State:
            return {"quick": True}

        tools = registry(blocking=(hold, quick))
        source = "node h = hold with timeout = 0.05\nh -> end"
        for _ in range(3):  # three abandoned threads, one per run
            assert run(source, tools, threads=1)[0].error is not None
        assert run("quick -> end", tools, threads=1)[0].state == {"quick": True}


def test_a_node_without_a_policy_fails_at_the_limit_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a run without policies no thread is ever abandoned, so the limit is reached only
    # through a run's earlier policies: stand in for them.
    async def full(*args: Any) -> Any:
        raise ThreadLimitError("the run already has 4 tool threads alive")

    monkeypatch.setattr(RunThreads, "call", full)

    def quick(state: State) -> State:
        return {}

    result, events = run("quick -> end", registry(blocking=(quick,)))
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.node) == (
        "thread_limit",
        "node `quick` could not call tool `quick`: the run already has 4 tool threads alive",
        "quick",
    )
    assert kinds(events) == ["run_started", "node_started", "run_failed"]


def test_the_thread_limit_is_four_by_default_and_at_least_one() -> None:
    def quick(state: State) -> State:
        return {}

    assert WorkflowEngine("quick -> end", registry(quick)).max_threads_per_run == 4
    with pytest.raises(ValueError, match="max_threads_per_run must be 1 or more, not 0"):
        WorkflowEngine("quick -> end", registry(quick), max_threads_per_run=0)


def test_blocking_tools_of_many_runs_do_not_starve_each_other() -> None:
    # More calls at once than the event loop's default executor has threads (6 here):
    # each waits for all the others, so a shared pool of fewer threads would deadlock.
    runs = 12
    barrier = threading.Barrier(runs, timeout=FOREVER)

    def meet(state: State) -> State:
        barrier.wait()
        return {"met": True}

    engine = WorkflowEngine("meet -> end", registry(blocking=(meet,)))

    async def all_runs() -> list[Any]:
        return await asyncio.gather(*(engine.run() for _ in range(runs)))

    results = asyncio.run(all_runs())
    assert [r.state for r in results] == [{"met": True}] * runs
    wait_until(lambda: tool_threads()["running"] == 0, "the threads to end")


def test_tool_threads_counts_running_and_abandoned_threads() -> None:
    before = tool_threads()
    assert set(before) == {"running", "abandoned"}
    with held_threads() as gate:
        entered = threading.Event()

        def hold(state: State) -> State:
            entered.set()
            gate.wait(FOREVER)
            return {}

        engine = WorkflowEngine(
            "node h = hold with timeout = 1\nh -> end", registry(blocking=(hold,))
        )

        async def watch() -> dict[str, int]:
            task = asyncio.ensure_future(engine.run())
            while not entered.is_set():
                await asyncio.sleep(0.001)
            during = tool_threads()
            await task
            return during

        during = asyncio.run(watch())
        assert during == {"running": before["running"] + 1, "abandoned": before["abandoned"]}
        assert tool_threads() == {
            "running": before["running"],
            "abandoned": before["abandoned"] + 1,
        }
    assert tool_threads() == before


# --------------------------------------------------------------------- cancellation


async def _cancel_when(started: asyncio.Event | threading.Event, run: Any) -> None:
    task = asyncio.ensure_future(run)
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    await task


def test_cancelling_a_run_cancels_its_async_tool_and_emits_no_final_event() -> None:
    cancelled = []
    started = asyncio.Event()

    async def slow(state: State) -> State:
        started.set()
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {}

    events: list[Event] = []
    engine = WorkflowEngine("slow -> end", registry(slow))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_cancel_when(started, engine.run(listener=collector(events))))
    assert cancelled == [True]
    assert kinds(events) == ["run_started", "node_started"]


def test_cancelling_a_run_with_a_timeout_on_its_async_tool() -> None:
    cancelled = []
    started = asyncio.Event()

    async def slow(state: State) -> State:
        started.set()
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {}

    engine = WorkflowEngine("node s = slow with timeout = 5, retries = 2\ns -> end", registry(slow))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_cancel_when(started, engine.run()))
    assert cancelled == [True]


def test_cancelling_a_run_abandons_its_blocking_tool() -> None:
    before = tool_threads()
    returned = threading.Event()
    with held_threads() as gate:
        started = threading.Event()

        def hold(state: State) -> State:
            started.set()
            gate.wait(FOREVER)
            returned.set()
            return {"late": True}

        events: list[Event] = []
        engine = WorkflowEngine("hold -> end", registry(blocking=(hold,)))
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(_cancel_when(started, engine.run(listener=collector(events))))
        assert kinds(events) == ["run_started", "node_started"]
        assert tool_threads() == {
            "running": before["running"],
            "abandoned": before["abandoned"] + 1,
        }
    assert returned.is_set()  # it ran to its end, and its result went nowhere
    assert tool_threads() == before


def test_cancelling_a_run_between_attempts() -> None:
    def boom(state: State) -> State:
        raise RuntimeError("no")

    events: list[Event] = []
    failed = asyncio.Event()

    def listen(event: RunEvent) -> None:
        assert isinstance(event, Event)
        events.append(event)
        if event.type == "node_attempt_failed":
            failed.set()

    engine = WorkflowEngine(
        "node b = boom with retries = 3, backoff = 60\nb -> end", registry(boom)
    )
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_cancel_when(failed, engine.run(listener=listen)))
    assert kinds(events) == ["run_started", "node_started", "node_attempt_failed"]
    assert events[-1].retry_in is not None and events[-1].retry_in >= 30


def test_a_stream_whose_run_raises_raises_too() -> None:
    def quick(state: State) -> State:
        return {}

    engine = WorkflowEngine("quick -> end", registry(quick))

    async def read() -> list[Event]:
        resume = Resume("quick", 1)
        stream = engine.stream(start_node="quick", resume=resume)
        return [event async for event in stream if isinstance(event, Event)]

    with pytest.raises(ValueError, match="give `start_node` or `resume`, not both"):
        asyncio.run(read())
