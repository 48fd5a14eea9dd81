"""The interpreter: routing, loops, limits, every failure, tools of every kind, events."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest

from flowc.runtime import Event, Registry, Resume, RunEvent, RunResult, Step, WorkflowEngine
from flowc.runtime.interpreter import MAX_ERROR_DETAIL
from flowc.runtime.state import MAX_INT, Limits

State = dict[str, Any]


def make_registry() -> Registry:
    registry = Registry()

    def count(state: State) -> State:
        return {"n": state.get("n", 0) + 1}

    def score(state: State) -> State:
        return {"score": state.get("n", 0) * 30}

    def note(state: State, *, text: str = "hi", tags: list[str] | None = None) -> State:
        return {"note": text, "tags": tags or []}

    def nothing(state: State) -> None:
        return None

    for function in (count, score, note, nothing):
        registry.add(function)
    return registry


def run(source: str, registry: Registry | None = None, **kwargs: Any) -> RunResult:
    engine = WorkflowEngine(source, registry or make_registry())
    return asyncio.run(engine.run(**kwargs))


def nodes(result: RunResult) -> list[str]:
    return [step.node for step in result.steps]


def test_chain_runs_in_order_and_merges() -> None:
    result = run("count -> score -> note -> end", initial_state={"code": "x"})
    assert result.status == "succeeded"
    assert nodes(result) == ["count", "score", "note"]
    assert result.state == {"code": "x", "n": 1, "score": 30, "note": "hi", "tags": []}
    assert [step.delta for step in result.steps] == [
        {"n": 1},
        {"score": 30},
        {"note": "hi", "tags": []},
    ]
    assert result.error is None


def test_the_result_s_steps_are_whole_steps() -> None:
    # Made with `tuple.__new__` on the hot path: each has every field `Step` declares, and
    # equals the `Step` made the usual way.
    result = run("count -> score -> end")
    assert [len(step) for step in result.steps] == [len(Step._fields)] * 2
    first = result.steps[0]
    assert first == Step(1, "count", {"n": 1}, first.started_at, first.finished_at)
    assert (first.attempts, first.failed, first.branch) == (1, False, None)
    assert type(first) is Step


def test_a_node_without_a_route_ends_the_run() -> None:
    result = run("count -> score")
    assert result.status == "succeeded"
    assert nodes(result) == ["count", "score"]


def test_branch_first_true_arm_wins_else_last() -> None:
    source = "count ? n > 5 -> score : n == 1 -> note : nothing\nscore -> end\nnote -> end\n"
    assert nodes(run(source)) == ["count", "note"]
    assert nodes(run(source, initial_state={"n": 7})) == ["count", "score"]
    assert nodes(run(source, initial_state={"n": 2})) == ["count", "nothing"]


def test_chain_ending_in_a_branch() -> None:
    result = run("count -> score ? score >= 30 -> note : end")
    assert nodes(result) == ["count", "score", "note"]


def test_loop_until_condition() -> None:
    result = run("count -> score; score ? score < 80 -> count : end")
    assert nodes(result) == ["count", "score"] * 3
    assert result.state["score"] == 90


def test_explicit_start_and_start_node_argument() -> None:
    assert nodes(run("start -> score\ncount -> score\nscore -> end")) == ["score"]
    result = run("count -> score -> end", start_node="score")
    assert nodes(result) == ["score"]


def test_unknown_start_node() -> None:
    result = run("count -> end", start_node="nope")
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("unknown_node", "there is no node `nope`")


def test_max_steps_names_the_loop() -> None:
    result = run("set max_steps = 5\ncount -> score; score ? score < 999 -> count : end")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "max_steps"
    assert result.error.message == (
        "the run took more than 5 steps (max_steps = 5) and was stopped; "
        "the last nodes were count -> score -> count -> score -> count -> score"
    )
    assert result.error.node == "score"
    assert len(result.steps) == 5
    assert result.state["n"] == 3  # the last good state is kept


def test_tool_exception_fails_the_run_and_keeps_the_last_good_state() -> None:
    registry = make_registry()

    def explode(state: State) -> State:
        raise RuntimeError("disk on fire")

    registry.add(explode)
    result = run("count -> explode -> score", registry)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "tool_error"
    assert result.error.message == "tool `explode` failed: RuntimeError: disk on fire"
    assert result.error.node == "explode"
    assert result.error.span == {"line": 1, "column": 10, "end_line": 1, "end_column": 17}
    assert result.state == {"n": 1}
    assert nodes(result) == ["count"]


def test_a_huge_exception_text_is_cut_in_the_run_error_with_its_length() -> None:
    registry = make_registry()

    def flood(state: State) -> State:
        raise ValueError("x" * 3_000_000)

    registry.add(flood)
    result = run("flood -> end", registry)
    assert result.error is not None
    detail = "ValueError: " + "x" * (MAX_ERROR_DETAIL - len("ValueError: "))
    assert result.error.message == (f"tool `flood` failed: {detail}… (3,000,012 characters)")


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([1, 2], "tool `bad` returned a list; a tool returns a dict of updates, the whole state, "
                 "or None"),
        ("text", "tool `bad` returned a str; a tool returns a dict of updates, the whole state, "
                 "or None"),
        ({"x": {1, 2}}, "tool `bad` returned a value that is not JSON at `x`: a set is not JSON"),
        ({"x": [1, float("nan")]}, "tool `bad` returned a value that is not JSON at `x[1]`: "
                                   "nan is not a JSON number"),
        ({1: "a"}, "tool `bad` returned a key that is not a string: 1"),
        ({"x": {2: "a"}}, "tool `bad` returned a value that is not JSON at `x`: "
                          "a key is an int, not a string: 2"),
        ({"x": object()}, "tool `bad` returned a value that is not JSON at `x`: "
                          "an object is not JSON"),
    ],
)  # fmt: skip
def test_bad_return_values(returned: Any, message: str) -> None:
    registry = make_registry()

    def bad(state: State) -> Any:
        return returned

    registry.add(bad)
    result = run("count -> bad -> score", registry)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("bad_return", message)
    assert result.state == {"n": 1}


def test_tool_missing_at_run_time() -> None:
    registry = make_registry()
    engine = WorkflowEngine("count -> score -> end", registry)
    registry.remove("score")
    result = asyncio.run(engine.run())
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "unknown_tool"
    assert result.error.message == "node `score` runs tool `score`, which is not registered"
    assert nodes(result) == ["count"]


def test_condition_type_error_names_line_path_value_and_type() -> None:
    result = run("note ? note < 3 -> count : end", initial_state={})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "condition_error"
    assert result.error.message == (
        'the condition on line 1: cannot compare string with int using `<` (`note` is "hi", '
        "a string)"
    )
    assert result.error.span == {"line": 1, "column": 8, "end_line": 1, "end_column": 16}


def test_condition_must_be_a_bool_at_run_time() -> None:
    result = run("note ? note -> count : end")
    assert result.error is not None
    assert result.error.message == (
        'the condition on line 1: a condition must be true or false, but it gave "hi", a string'
    )


def test_missing_key_names_the_key_and_the_keys_present() -> None:
    result = run("count ? review.score > 1 -> score : end", initial_state={"review": {"text": 1}})
    assert result.error is not None
    assert result.error.code == "missing_key"
    assert result.error.message == (
        "the condition on line 1: no key `score` in `review`; keys present: `text`"
    )
    guarded = run("count ? default(review.score, 0) > 1 -> score : end")
    assert guarded.status == "succeeded"


def test_async_and_blocking_tools() -> None:
    registry = make_registry()
    threads: dict[str, int] = {}

    async def waits(state: State) -> State:
        await asyncio.sleep(0)
        threads["async"] = threading.get_ident()
        return {"waited": True}

    def blocks(state: State) -> State:
        threads["blocking"] = threading.get_ident()
        return {"blocked": True}

    registry.add(waits)
    registry.add(blocks, blocking=True)
    result = run("waits -> blocks -> end", registry)
    assert result.status == "succeeded"
    assert result.state == {"waited": True, "blocked": True}
    assert threads["async"] == threading.get_ident()
    assert threads["blocking"] != threading.get_ident()


def test_static_arguments_are_passed_and_cannot_leak_between_calls() -> None:
    registry = make_registry()
    given: list[list[int]] = []

    def collect(state: State, *, into: list[int]) -> State:
        given.append(list(into))
        into.append(len(into))
        return {"seen": into}

    registry.add(collect)
    source = (
        'set max_steps = 20\nnode c = collect(into = [])\nnode n = note(text = "x")\n'
        "c -> n -> count ? n < 3 -> c : end\n"
    )
    result = run(source, registry)
    assert result.status == "succeeded"
    assert result.state["note"] == "x"
    # Every call got the declared `[]`, never the list an earlier call appended to.
    assert given == [[], [], []]


def test_a_tool_that_mutates_its_state_cannot_change_history() -> None:
    registry = make_registry()
    seen: list[State] = []

    def mutate(state: State) -> State:
        state.setdefault("items", []).append("sneaky")
        state["n"] = 100
        return {"other": 1}

    def look(state: State) -> None:
        seen.append({key: value for key, value in state.items()})
        state["items"] = "changed after"

    def whole(state: State) -> State:
        state["n"] = state["n"] + 1
        return state

    for function in (mutate, look, whole):
        registry.add(function)
    result = run("mutate -> look -> whole -> end", registry, initial_state={"items": [], "n": 1})
    assert result.status == "succeeded"
    assert [step.delta for step in result.steps] == [{"other": 1}, {}, {"n": 2}]
    assert seen == [{"items": [], "n": 1, "other": 1}]
    assert result.state == {"items": [], "n": 2, "other": 1}


def test_initial_state_must_be_json() -> None:
    result = run("count -> end", initial_state={"when": object()})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "bad_input"
    assert result.error.message == "the initial state is not JSON: when: an object is not JSON"


def test_events_in_order_with_deltas() -> None:
    engine = WorkflowEngine("count -> score; score ? score < 60 -> count : end", make_registry())

    async def collect() -> list[Event]:
        stream = engine.stream(initial_state={}, run_id="r1")
        return [event async for event in stream if isinstance(event, Event)]

    events = asyncio.run(collect())
    assert [(e.type, e.step, e.node) for e in events] == [
        ("run_started", 0, "count"),
        ("node_started", 1, "count"),
        ("node_finished", 1, "count"),
        ("node_started", 2, "score"),
        ("node_finished", 2, "score"),
        ("node_started", 3, "count"),
        ("node_finished", 3, "count"),
        ("node_started", 4, "score"),
        ("node_finished", 4, "score"),
        ("run_finished", 4, "score"),
    ]
    assert [e.delta for e in events if e.type == "node_finished"] == [
        {"n": 1},
        {"score": 30},
        {"n": 2},
        {"score": 60},
    ]
    assert all(e.run_id == "r1" for e in events)
    final = events[-1].to_json()
    assert final["status"] == "succeeded"
    assert final["state"] == {"n": 2, "score": 60}
    assert set(events[2].to_json()) == {"type", "run_id", "step", "node", "delta", "at",
                                        "duration_ms", "attempts"}  # fmt: skip
    assert events[2].to_json()["attempts"] == 1


def test_a_step_s_events_are_whole_events() -> None:
    # Made with `tuple.__new__` on the hot path: every field `Event` declares, in its order.
    engine = WorkflowEngine("count -> end", make_registry())

    async def collect() -> list[Event]:
        return [event async for event in engine.stream(run_id="r") if isinstance(event, Event)]

    _, started, finished, _ = asyncio.run(collect())
    for event in (started, finished):
        assert type(event) is Event and len(event) == len(Event._fields)
    assert started == Event("node_started", "r", 1, "count", started.at)
    assert finished == Event(
        "node_finished", "r", 1, "count", finished.at, delta={"n": 1},
        duration_ms=finished.duration_ms, attempts=1,
    )  # fmt: skip


def test_a_failed_run_streams_run_failed_last() -> None:
    engine = WorkflowEngine("count ? nope -> score : end", make_registry())

    async def collect() -> list[Event]:
        return [event async for event in engine.stream() if isinstance(event, Event)]

    events = asyncio.run(collect())
    assert [e.type for e in events] == ["run_started", "node_started", "node_finished",
                                        "run_failed"]  # fmt: skip
    assert events[-1].error is not None and events[-1].error.code == "missing_key"
    assert events[-1].to_json()["error"]["node"] == "count"


def test_history_replays_to_the_state_each_node_saw() -> None:
    registry = make_registry()
    given: list[State] = []

    def record(state: State) -> State:
        given.append(dict(state))
        return {"k": len(given)}

    registry.add(record)
    result = run("set max_steps = 8\nrecord -> count ? n < 3 -> record : end", registry)
    replay: State = {}
    for index, step in enumerate(result.steps):
        if step.node == "record":
            assert given.pop(0) == replay
        replay = {**replay, **step.delta}
        assert step.seq == index + 1
    assert replay == result.state


def test_a_step_made_without_attempts_took_one() -> None:
    step = Step(3, "a", {"x": 1}, 0.0, 0.5)
    assert step.attempts == 1
    assert step.to_json()["attempts"] == 1
    assert step.to_json()["duration_ms"] == 500.0


def test_events_are_named_tuples_that_still_read_by_name() -> None:
    event = Event("run_finished", "r", 2, "a", 0.0, status="succeeded", state={})
    assert (event.type, event.step, event.status, event.attempts) == ("run_finished", 2,
                                                                     "succeeded", None)  # fmt: skip
    assert event.is_final
    assert "attempts" not in event.to_json()


# -- limits and the event loop ------------------------------------------------------------

LOOP = "set max_steps = 1000\ncount ? n < 1000 -> count : end"


def ticked(limits: Limits, source: str = LOOP) -> tuple[RunResult, int]:
    """Run `source` beside a task that counts how often the event loop lets it run.

    The count is the run's yields plus one: the run starts on the first tick.
    """

    async def main() -> tuple[RunResult, int]:
        engine = WorkflowEngine(source, make_registry(), limits=limits)
        task = asyncio.ensure_future(engine.run())
        ticks = 0
        while not task.done():
            await asyncio.sleep(0)
            ticks += 1
        return task.result(), ticks

    return asyncio.run(main())


def test_a_run_of_quick_sync_tools_yields_every_slice_steps_steps() -> None:
    result, ticks = ticked(Limits(slice_steps=10, slice_ms=1e9))
    assert (result.status, len(result.steps)) == ("succeeded", 1000)
    assert ticks == 1000 // 10 + 1
    result, ticks = ticked(Limits(slice_steps=10**6, slice_ms=1e9))
    assert (result.status, ticks) == ("succeeded", 1)  # without slices, the loop is held


def test_a_run_yields_once_its_slice_of_time_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(10**6))  # each reading one second later than the last
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))
    result, ticks = ticked(Limits(slice_steps=10**6, slice_ms=1500), "count -> score -> note")
    assert (result.status, ticks) == ("succeeded", 3 + 1)  # a step is 2 readings, 2 seconds


def registry_with(**tools: Any) -> Registry:
    registry = make_registry()
    for name, tool in tools.items():
        registry.add(tool, name)
    return registry


def test_a_value_past_a_limit_fails_the_run_with_limit_and_the_last_good_state() -> None:
    def bump(state: State) -> State:
        return {"n": state["n"] + 1}

    source = "node b = bump with retries = 2\ncount -> b -> end"
    result = run(source, registry_with(bump=bump), initial_state={"n": MAX_INT - 1})
    assert result.error is not None
    assert (result.status, result.error.code, result.error.node) == ("failed", "limit", "b")
    assert result.error.message == (
        "tool `bump` returned a value past a limit at `n`: an integer of 64 bits is outside "
        "the signed 64-bit range (-9,223,372,036,854,775,808 to 9,223,372,036,854,775,807) "
        "that the store keeps exactly"
    )
    assert result.state == {"n": MAX_INT} and len(result.steps) == 1  # and no retry


def test_a_state_past_its_limit_fails_the_run_naming_the_setting() -> None:
    def grow(state: State) -> State:
        return {"log": state.get("log", "") + "x" * 40}

    engine = WorkflowEngine(
        "set max_steps = 10\ngrow ? len(log) < 400 -> grow : end",
        registry_with(grow=grow),
        limits=Limits(max_state_bytes=100, prefix="FLOWC_"),
    )
    result = asyncio.run(engine.run())
    assert result.error is not None
    assert (result.error.code, result.error.message, len(result.steps)) == (
        "limit",
        "tool `grow` returned updates past a limit: they would make the state about 130 bytes "
        "as JSON, more than FLOWC_MAX_STATE_BYTES = 100; `log` is about 128 of them",
        2,
    )
    assert result.state == {"log": "x" * 80}


def test_a_flow_asking_more_steps_than_the_ceiling_fails_before_a_step() -> None:
    engine = WorkflowEngine(
        "set max_steps = 50\ncount -> end", make_registry(), limits=Limits(max_steps_limit=49)
    )
    result = asyncio.run(engine.run())
    assert result.error is not None
    assert (result.error.code, result.error.message, result.steps) == (
        "limit",
        "the flow sets max_steps = 50, more than max_steps_limit = 49 allows; "
        "lower `set max_steps`",
        [],
    )


def test_an_input_or_a_resumed_state_past_its_limit_fails_the_run() -> None:
    limits = Limits(max_input_bytes=20, max_state_bytes=40, max_string_length=30)
    engine = WorkflowEngine("count -> end", make_registry(), limits=limits)
    big = asyncio.run(engine.run(initial_state={"code": "x" * 20}))
    resumed = asyncio.run(
        engine.run(initial_state={"code": "x" * 30, "z": "y" * 10}, resume=Resume("count", 1))
    )
    long = asyncio.run(engine.run(initial_state={"deep": ["x" * 31]}))
    assert [(r.error.code, r.error.message) for r in (big, resumed, long) if r.error] == [
        (
            "limit",
            "the input is about 31 bytes as JSON, more than max_input_bytes = 20; "
            "`code` is about 29 of them",
        ),
        (
            "limit",
            "the state is about 58 bytes as JSON, more than max_state_bytes = 40; "
            "`code` is about 39 of them",
        ),
        (
            "limit",
            "the initial state at `deep[0]`: a string of 31 characters is longer than "
            "max_string_length = 30",
        ),
    ]


def test_a_long_runs_history_is_not_walked_by_the_garbage_collector() -> None:
    # A full collection walks every tracked object: a run that kept a named tuple per step
    # paused the event loop for most of a second once it had a million.  The run keeps
    # exact tuples of plain values, which the collector stops tracking.
    tracked: dict[int, int] = {}

    async def listen(event: RunEvent) -> None:
        if event.type == "node_finished" and event.step in (2_000, 12_000):
            gc.collect()
            tracked[event.step] = len(gc.get_objects())

    engine = WorkflowEngine(
        "set max_steps = 20000\ncount ? n < 15000 -> count : end", make_registry()
    )
    result = asyncio.run(engine.run(listener=listen))
    assert result.status == "succeeded"
    assert tracked[12_000] - tracked[2_000] < 1_000  # 10,000 steps later
    assert isinstance(result.steps[-1], Step)
    assert result.steps[-1].seq == 15_000
