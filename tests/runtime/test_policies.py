"""Node policies at run time: timeouts of every kind of tool, retries and their events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import flowc.runtime.policies as policies
from flowc.runtime import current_step, tool_threads
from flowc.runtime.policies import MAX_RETRY_DELAY, retry_delay
from tests.runtime.policy_support import FOREVER, State, held_threads, kinds, registry, run


class _Factor:
    """Stands in for the jitter's random source: always the same factor."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def uniform(self, low: float, high: float) -> float:
        assert (low, high) == (0.5, 1.5)
        return self.factor


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every delay is its nominal value, so the events can be checked exactly."""
    monkeypatch.setattr(policies, "_random", _Factor(1.0))


# ------------------------------------------------------------------------ timeouts


def test_an_async_tool_is_cancelled_at_its_timeout() -> None:
    cancelled = []

    async def slow(state: State) -> State:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {"late": True}

    started = time.monotonic()
    result, _ = run("node s = slow with timeout = 0.05\ns -> end", registry(slow))
    assert time.monotonic() - started < FOREVER / 2
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.node) == (
        "timeout",
        "node `s` timed out: tool `slow` took longer than 0.05 seconds",
        "s",
    )
    assert result.error.span == {"line": 1, "column": 1, "end_line": 1, "end_column": 34}
    assert cancelled == [True]
    assert result.state == {}


def test_a_timeout_error_the_tool_raises_itself_is_a_tool_error() -> None:
    async def raises(state: State) -> State:
        raise TimeoutError("the server did not answer")

    result, _ = run("node r = raises with timeout = 5\nr -> end", registry(raises))
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "tool_error",
        "tool `raises` failed: TimeoutError: the server did not answer",
    )


def test_a_blocking_tool_times_out_and_its_late_result_is_discarded() -> None:
    returned = threading.Event()
    before = tool_threads()
    with held_threads() as gate:

        def hold(state: State) -> State:
            gate.wait(FOREVER)
            returned.set()
            return {"late": True}

        result, _ = run("node h = hold with timeout = 0.05\nh -> end", registry(blocking=(hold,)))
        assert result.error is not None
        assert (result.error.code, result.error.message) == (
            "timeout",
            "node `h` timed out: tool `hold` took longer than 0.05 seconds",
        )
        # The thread runs on, abandoned: Python cannot stop it.
        assert tool_threads() == {
            "running": before["running"],
            "abandoned": before["abandoned"] + 1,
        }
    assert returned.is_set()
    assert result.state == {}
    assert tool_threads() == before


def test_a_sync_tool_with_a_timeout_runs_in_a_thread_so_the_timeout_can_fire() -> None:
    threads: list[int] = []
    with held_threads() as gate:

        def stuck(state: State) -> State:
            threads.append(threading.get_ident())
            gate.wait(FOREVER)
            return {}

        def quick(state: State) -> State:
            threads.append(threading.get_ident())
            return {"quick": True}

        tools = registry(stuck, quick)
        done, _ = run("node q = quick with timeout = 5\nq -> end", tools)
        assert (done.status, done.state) == ("succeeded", {"quick": True})
        result, _ = run("node s = stuck with timeout = 0.05\ns -> end", tools)
        assert result.error is not None and result.error.code == "timeout"
    assert len(threads) == 2
    assert threading.get_ident() not in threads


def test_a_sync_tool_without_a_timeout_stays_on_the_event_loop() -> None:
    threads: list[int] = []

    def here(state: State) -> State:
        threads.append(threading.get_ident())
        return {}

    result, _ = run("node h = here with retries = 2\nh -> end", registry(here))
    assert result.status == "succeeded"
    assert threads == [threading.get_ident()]


def test_the_flow_timeout_applies_to_every_node_unless_a_node_says_otherwise() -> None:
    async def nap(state: State, *, seconds: float) -> State:
        await asyncio.sleep(seconds)
        return {"napped": seconds}

    tools = registry(nap)
    longer = "set timeout = 0.05\nnode n = nap(seconds = 0.2) with timeout = 5\nn -> end"
    assert run(longer, tools)[0].state == {"napped": 0.2}
    default = "set timeout = 0.05\nnode n = nap(seconds = 5)\nn -> end"
    failed = run(default, tools)[0]
    assert failed.error is not None and failed.error.code == "timeout"


# ------------------------------------------------------------------------- retries


def flaky_tool(failures: int) -> Any:
    """A tool that fails its first `failures` attempts of a step, then returns."""

    def flaky(state: State) -> State:
        if current_step().attempt <= failures:
            raise RuntimeError(f"attempt {current_step().attempt} failed")
        return {"done": current_step().attempt}

    return flaky


def test_retries_until_an_attempt_succeeds() -> None:
    source = "node f = flaky with retries = 3, backoff = 0.01\nf -> end"
    result, events = run(source, registry(flaky_tool(2)), run_id="r")
    assert result.status == "succeeded"
    assert result.state == {"done": 3}
    assert [(s.seq, s.node, s.attempts) for s in result.steps] == [(1, "f", 3)]
    assert kinds(events) == ["run_started", "node_started", "node_attempt_failed",
                             "node_attempt_failed", "node_finished", "run_finished"]  # fmt: skip
    failed = [e for e in events if e.type == "node_attempt_failed"]
    assert [(e.step, e.node, e.attempt, e.retry_in) for e in failed] == [
        (1, "f", 1, 0.01),
        (1, "f", 2, 0.02),
    ]
    assert failed[0].error is not None
    assert failed[0].error.to_json() == {
        "code": "tool_error",
        "message": "tool `flaky` failed: RuntimeError: attempt 1 failed",
        "node": "f",
        "span": {"line": 1, "column": 1, "end_line": 1, "end_column": 48},
    }
    finished = events[-2]
    assert finished.attempts == 3
    assert finished.to_json()["attempts"] == 3
    assert result.steps[0].to_json()["attempts"] == 3


def test_retries_exhausted_fail_with_the_last_error_and_the_count() -> None:
    source = "node f = flaky with retries = 2, backoff = 0\nf -> end"
    result, events = run(source, registry(flaky_tool(99)), initial_state={"kept": 1})
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "tool_error",
        "tool `flaky` failed: RuntimeError: attempt 3 failed (after 3 attempts)",
    )
    assert result.state == {"kept": 1}
    assert result.steps == []
    failed = [e for e in events if e.type == "node_attempt_failed"]
    assert [(e.attempt, e.retry_in) for e in failed] == [(1, 0.0), (2, 0.0), (3, None)]
    assert kinds(events)[-1] == "run_failed"


def test_a_timeout_is_retried_like_a_tool_error() -> None:
    async def first_hangs(state: State) -> State:
        if current_step().attempt == 1:
            await asyncio.sleep(FOREVER)
        return {"attempt": current_step().attempt}

    source = "node h = first_hangs with timeout = 0.05, retries = 1, backoff = 0\nh -> end"
    result, events = run(source, registry(first_hangs))
    assert result.state == {"attempt": 2}
    failed = [e for e in events if e.type == "node_attempt_failed"]
    assert [(e.error.code if e.error else None, e.attempt) for e in failed] == [("timeout", 1)]


def test_the_flow_retries_apply_unless_a_node_says_otherwise() -> None:
    tools = registry(flaky_tool(1))
    assert run("set retries = 1\nset backoff = 0\nflaky -> end", tools)[0].status == "succeeded"
    overridden = run("set retries = 1\nnode f = flaky with retries = 0\nf -> end", tools)[0]
    assert overridden.error is not None
    assert overridden.error.message == "tool `flaky` failed: RuntimeError: attempt 1 failed"


def test_a_bad_return_value_is_not_retried() -> None:
    calls = []

    def bad(state: State) -> Any:
        calls.append(current_step().attempt)
        return [1]

    result, events = run("node b = bad with retries = 5, backoff = 0\nb -> end", registry(bad))
    assert calls == [1]
    assert result.error is not None
    assert result.error.code == "bad_return"
    assert "(after" not in result.error.message
    failed = [e for e in events if e.type == "node_attempt_failed"]
    assert [(e.attempt, e.retry_in) for e in failed] == [(1, None)]


def test_a_bad_return_after_a_retry_says_how_many_attempts() -> None:
    def then_bad(state: State) -> Any:
        if current_step().attempt == 1:
            raise ValueError("first")
        return "text"

    result, _ = run("node b = then_bad with retries = 5, backoff = 0\nb -> end", registry(then_bad))
    assert result.error is not None
    assert result.error.message == (
        "tool `then_bad` returned a str; a tool returns a dict of updates, the whole state, "
        "or None (after 2 attempts)"
    )


def test_a_condition_error_is_not_retried() -> None:
    calls = []

    def note(state: State) -> State:
        calls.append(1)
        return {"note": "text"}

    source = "node n = note with retries = 3, backoff = 0\nn ? note > 1 -> end : end"
    result, _ = run(source, registry(note))
    assert result.error is not None and result.error.code == "condition_error"
    assert calls == [1]


def test_each_attempt_gets_a_fresh_copy_of_the_state() -> None:
    seen = []

    def mutates(state: State, *, x: list[int]) -> State:
        seen.append((list(state["items"]), list(x)))
        state["items"].append("changed")
        x.append(2)
        if current_step().attempt == 1:
            raise RuntimeError("again")
        return {}

    source = "node m = mutates(x = [1]) with retries = 1, backoff = 0\nm -> end"
    result, _ = run(source, registry(mutates), initial_state={"items": ["a"]})
    assert result.status == "succeeded"
    assert seen == [(["a"], [1]), (["a"], [1])]


def test_a_node_without_a_policy_emits_no_attempt_events() -> None:
    def boom(state: State) -> State:
        raise RuntimeError("no")

    result, events = run("boom -> end", registry(boom))
    assert (
        result.error is not None and result.error.message == "tool `boom` failed: RuntimeError: no"
    )
    assert kinds(events) == ["run_started", "node_started", "run_failed"]


def test_an_attempt_event_as_json() -> None:
    source = "node f = flaky with retries = 1, backoff = 0.5\nf -> end"
    _, events = run(source, registry(flaky_tool(1)), run_id="r1")
    failed = next(e for e in events if e.type == "node_attempt_failed").to_json()
    assert set(failed) == {"type", "run_id", "step", "node", "delta", "at", "duration_ms",
                           "error", "attempt", "retry_in"}  # fmt: skip
    assert (failed["run_id"], failed["step"], failed["attempt"], failed["retry_in"]) == (
        "r1",
        1,
        1,
        0.5,
    )
    assert failed["error"]["code"] == "tool_error"


# --------------------------------------------------------------------------- delays


def test_the_delay_doubles_from_one_attempt_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [retry_delay(0.5, attempt) for attempt in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    monkeypatch.setattr(policies, "_random", _Factor(0.5))
    assert retry_delay(2.0, 3) == 4.0
    monkeypatch.setattr(policies, "_random", _Factor(1.4999))
    assert retry_delay(1.0, 1) == 1.4999
    assert retry_delay(0, 7) == 0.0


def test_the_delay_has_a_ceiling() -> None:
    assert retry_delay(3600, 100) == MAX_RETRY_DELAY
    assert retry_delay(1.0, 10_000) == MAX_RETRY_DELAY


def test_the_jitter_spreads_the_delay_by_half_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real random source
    delays = [retry_delay(1.0, 2) for _ in range(2000)]
    assert all(1.0 <= delay < 3.0 for delay in delays)
    assert min(delays) < 1.1 and max(delays) > 2.9  # the whole range is used
