"""Maps: `node fixes = for issue in issues: fix` calls `fix` per item, collected in order.

Concurrency and completion order are shown by tools that wait for each other (a run that
called its items one after the other would never end: each test bounds its run), never by
timings.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flowc.runtime import Event, Registry, Resume, RunResult, Step, WorkflowEngine, current_step
from flowc.runtime.state import Limits
from tests.runtime.policy_support import FOREVER, collector, flow, kinds, node, registry

State = dict[str, Any]
#: Seconds a run may take before the test fails: a bound for a hang, not a measurement.
BOUND = 10.0

#: A map over `issues` and nothing else.
MAPPED = "node fixes = for issue in issues: fix\nfixes -> end"


def execute(
    source: Any, tools: Registry, *, threads: int = 4, limits: Limits | None = None, **kwargs: Any
) -> tuple[RunResult, list[Event]]:
    """Run `source` to its end within `BOUND` seconds; the result and every event."""
    events: list[Event] = []

    async def go() -> RunResult:
        engine = WorkflowEngine(source, tools, max_threads_per_run=threads, limits=limits)
        return await asyncio.wait_for(engine.run(listener=collector(events), **kwargs), BOUND)

    return asyncio.run(go()), events


def log(result: RunResult) -> list[tuple[int, str, str | None]]:
    """Each step's number, node and branch."""
    return [(s.seq, s.node, s.branch) for s in result.steps]


def put(state: State, *, key: str, value: Any) -> State:
    """Write `value` to `key`."""
    return {key: value}


def fallback(state: State) -> State:
    """An error route's target: says which node failed."""
    return {"fell_back": state["error"]["node"]}


class Calls:
    """A sync tool, `fix`, that notes each item it is called for and returns its double."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def fix(self, state: State) -> State:
        """`{"double": issue * 2}`."""
        self.items.append(state["issue"])
        return {"double": state["issue"] * 2}


# -------------------------------------------------------------------------- the results


def test_each_item_gets_a_call_and_the_results_are_collected_in_order() -> None:
    seen: list[tuple[Any, list[str], int]] = []

    def fix(state: State, *, limit: int) -> State:
        seen.append((dict(state["issue"]), sorted(state), limit))
        state["issue"]["touched"] = True  # its own copy: nothing it does is kept
        state["x"] = 99
        return {"id": state["issue"]["id"], "limit": limit}

    source = (
        'node a = put(key = "x", value = 1)\nnode fixes = for issue in issues: fix(limit = 3)\n'
        'a -> fixes -> b\nnode b = put(key = "b", value = 2)\nb -> end'
    )
    issues = [{"id": 1}, {"id": 2}, {"id": 3}]
    result, events = execute(source, registry(put, fix), initial_state={"issues": issues})
    assert result.status == "succeeded", result.error
    assert result.state == {
        "issues": [{"id": 1}, {"id": 2}, {"id": 3}],
        "x": 1,
        "fixes": [{"id": 1, "limit": 3}, {"id": 2, "limit": 3}, {"id": 3, "limit": 3}],
        "b": 2,
    }
    assert seen == [({"id": i}, ["issue", "issues", "x"], 3) for i in (1, 2, 3)]
    assert log(result) == [
        (1, "a", None), (2, "fixes", "0"), (3, "fixes", "1"), (4, "fixes", "2"),
        (5, "fixes", None), (6, "b", None),
    ]  # fmt: skip
    assert [s.delta for s in result.steps[1:5]] == [
        {"id": 1, "limit": 3},
        {"id": 2, "limit": 3},
        {"id": 3, "limit": 3},
        {"fixes": [{"id": 1, "limit": 3}, {"id": 2, "limit": 3}, {"id": 3, "limit": 3}]},
    ]
    started = [(e.step, e.node, e.branch) for e in events if e.type == "node_started"]
    assert started == [(1, "a", None), (2, "fixes", "0"), (3, "fixes", "1"),
                       (4, "fixes", "2"), (6, "b", None)]  # fmt: skip
    finished = [e for e in events if e.type == "node_finished"]
    assert [(e.step, e.node, e.branch) for e in finished] == log(result)
    assert finished[1].to_json()["branch"] == "0"
    assert "branch" not in finished[4].to_json()
    assert result.steps[1].to_json()["branch"] == "0"


class Reverse:
    """An async `fix` whose call for each item returns only after the next item's has."""

    def __init__(self, count: int) -> None:
        self.returned = [asyncio.Event() for _ in range(count)]

    async def fix(self, state: State) -> State:
        """`{"n": issue}`, once the call for item `issue + 1` (if any) has returned."""
        index: int = state["issue"]
        if index + 1 < len(self.returned):
            await self.returned[index + 1].wait()
        self.returned[index].set()
        return {"n": index}


def test_the_results_keep_the_lists_order_whatever_order_the_calls_finish_in() -> None:
    result, events = execute(MAPPED, registry(Reverse(4).fix),
                             initial_state={"issues": [0, 1, 2, 3]})  # fmt: skip
    assert result.status == "succeeded", result.error
    assert result.state["fixes"] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    # Numbered as they finished: the last item first.
    assert log(result) == [
        (1, "fixes", "3"), (2, "fixes", "2"), (3, "fixes", "1"), (4, "fixes", "0"),
        (5, "fixes", None),
    ]  # fmt: skip
    assert [s.delta for s in result.steps[:4]] == [{"n": 3}, {"n": 2}, {"n": 1}, {"n": 0}]
    assert [e.branch for e in events if e.type == "node_started"] == ["0", "1", "2", "3"]
    finished = [(e.step, e.branch) for e in events if e.type == "node_finished"]
    assert finished == [(1, "3"), (2, "2"), (3, "1"), (4, "0"), (5, None)]


def test_an_empty_list_gives_an_empty_list_and_calls_nothing() -> None:
    calls = Calls()
    result, events = execute(MAPPED, registry(calls.fix), initial_state={"issues": []})
    assert result.status == "succeeded", result.error
    assert result.state == {"issues": [], "fixes": []}
    assert calls.items == []
    assert log(result) == [(1, "fixes", None)]
    assert result.steps[0].delta == {"fixes": []}
    assert kinds(events) == ["run_started", "node_finished", "run_finished"]


def test_a_call_that_returns_none_gives_an_empty_result() -> None:
    def nothing(state: State) -> None:
        return None

    source = "node fixes = for issue in issues: nothing\nfixes -> end"
    result, _ = execute(source, registry(nothing), initial_state={"issues": [1, 2]})
    assert result.status == "succeeded", result.error
    assert result.state["fixes"] == [{}, {}]


def test_the_collection_replaces_what_the_state_held_under_the_nodes_name() -> None:
    calls = Calls()
    result, _ = execute(MAPPED, registry(calls.fix),
                        initial_state={"issues": [1, 2], "fixes": ["old"]})  # fmt: skip
    assert result.state["fixes"] == [{"double": 2}, {"double": 4}]


def test_a_map_then_a_branch_on_its_results() -> None:
    calls = Calls()
    source = (
        "node fixes = for issue in issues: fix\nfixes ? len(fixes) > 1 -> many : end\n"
        'node many = put(key = "many", value = true)\nmany -> end'
    )
    result, _ = execute(source, registry(calls.fix, put), initial_state={"issues": [1, 2]})
    assert result.state["many"] is True
    result, _ = execute(source, registry(calls.fix, put), initial_state={"issues": [1]})
    assert "many" not in result.state


@pytest.mark.parametrize(
    ("state", "held"),
    [
        ({"issues": {"a": 1}}, "holds an object"),
        ({"issues": None}, "holds null"),
        ({"issues": "abc"}, "holds a string"),
        ({"issues": True}, "holds a boolean (true)"),
        ({}, "is not in the state"),
    ],
)
def test_a_map_over_what_is_not_a_list_fails_the_run_with_bad_input(
    state: State, held: str
) -> None:
    calls = Calls()
    source = 'node a = put(key = "x", value = 1)\na -> fixes\n' + MAPPED
    result, events = execute(source, registry(put, calls.fix), initial_state=state)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "bad_input",
        "fixes",
        f"node `fixes` maps over `issues`, which {held}, not a list",
    )
    assert result.error.span is not None and result.error.span["line"] == 3
    assert calls.items == []
    assert log(result) == [(1, "a", None)]
    assert kinds(events)[-1] == "run_failed"


# ---------------------------------------------------------------------------- the steps


def test_a_map_of_n_items_takes_n_plus_1_steps_against_max_steps() -> None:
    calls = Calls()
    source = 'set max_steps = 5\nnode a = put(key = "x", value = 1)\na -> fixes\n' + MAPPED
    result, _ = execute(source, registry(put, calls.fix), initial_state={"issues": [1, 2, 3]})
    assert result.status == "succeeded", result.error
    assert len(result.steps) == 5
    calls.items.clear()
    result, _ = execute(source, registry(put, calls.fix), initial_state={"issues": [1, 2, 3, 4]})
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "max_steps",
        "fixes",
        "the map `fixes` needs 5 steps (4 items of `issues`, then their collection) and the "
        "run has room for 4 (max_steps = 5); it was stopped before calling its tool",
    )
    assert calls.items == []
    assert log(result) == [(1, "a", None)]


@pytest.mark.parametrize("mode", ["inline", "awaited"])
def test_each_calls_idempotency_key_names_the_map_step_and_the_item(mode: str) -> None:
    keys: list[tuple[str, str | None, int | None]] = []

    def key(state: State) -> State:
        step = current_step()
        keys.append((step.idempotency_key, step.branch, step.fork))
        return {}

    async def awaited(state: State) -> State:
        return key(state)

    tool = key if mode == "inline" else awaited
    source = (
        'node a = put(key = "x", value = 1)\na -> fixes\n'
        f"node fixes = for issue in issues: {tool.__name__}\nfixes -> end"
    )
    result, _ = execute(source, registry(put, tool), initial_state={"issues": [7, 8]}, run_id="r")
    assert result.status == "succeeded", result.error
    assert keys == [("r:1:fixes:0", "0", 1), ("r:1:fixes:1", "1", 1)]


def test_inline_calls_give_the_event_loop_back_every_slice_steps_calls() -> None:
    calls = Calls()
    source = "set max_steps = 200\n" + MAPPED

    async def main(limits: Limits) -> tuple[RunResult, int]:
        engine = WorkflowEngine(source, registry(calls.fix), limits=limits)
        task = asyncio.ensure_future(engine.run(initial_state={"issues": list(range(100))}))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0)
            ticks += 1
        return task.result(), ticks

    result, ticks = asyncio.run(main(Limits(slice_steps=10, slice_ms=1e9)))
    assert (result.status, len(result.steps)) == ("succeeded", 101)
    assert ticks == 100 // 10 + 1 + 1  # and once after the collection
    result, ticks = asyncio.run(main(Limits(slice_steps=10**6, slice_ms=1e9)))
    assert (result.status, ticks) == ("succeeded", 2)


# ------------------------------------------------------------------------- max_parallel


class Counter:
    """An async `fix` that notes how many of its calls run at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def fix(self, state: State) -> State:
        """Stay a few turns of the loop; return the item."""
        self.now += 1
        self.most = max(self.most, self.now)
        for _ in range(5):
            await asyncio.sleep(0)
        self.now -= 1
        return {"item": state["issue"]}


@pytest.mark.parametrize(("setting", "most"), [("set max_parallel = 1\n", 1),
                                               ("set max_parallel = 3\n", 3), ("", 8)])  # fmt: skip
def test_max_parallel_bounds_the_calls_at_once(setting: str, most: int) -> None:
    counter = Counter()
    items = list(range(20))
    result, _ = execute(setting + MAPPED, registry(counter.fix), initial_state={"issues": items})
    assert result.status == "succeeded", result.error
    assert counter.most == most
    assert result.state["fixes"] == [{"item": item} for item in items]
    assert len(result.steps) == 21


def test_blocking_calls_wait_for_a_tool_thread_rather_than_go_past_the_runs_limit() -> None:
    lock, release = threading.Lock(), threading.Event()
    now = most = 0

    def blocks(state: State) -> State:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
        release.wait(BOUND)
        with lock:
            now -= 1
        return {"item": state["issue"], "thread": threading.current_thread().name}

    source = "node fixes = for issue in issues: blocks\nfixes -> end"
    engine = WorkflowEngine(source, registry(blocking=(blocks,)), max_threads_per_run=2)

    async def go() -> RunResult:
        task = asyncio.ensure_future(engine.run(initial_state={"issues": [0, 1, 2, 3]}))
        while now < 2:
            await asyncio.sleep(0.001)
        for _ in range(20):  # the other calls' turns, while both threads are held
            await asyncio.sleep(0)
        release.set()
        return await asyncio.wait_for(task, BOUND)

    result = asyncio.run(go())
    assert result.status == "succeeded", result.error
    assert most == 2
    assert [r["item"] for r in result.state["fixes"]] == [0, 1, 2, 3]
    assert {r["thread"] for r in result.state["fixes"]} == {"flowc-tool-fixes"}


# ----------------------------------------------------------------------------- policies


def test_the_nodes_timeout_and_retries_apply_to_each_call() -> None:
    attempts: dict[int, list[int]] = {}

    async def flaky(state: State) -> State:
        item: int = state["issue"]
        attempts.setdefault(item, []).append(current_step().attempt)
        if len(attempts[item]) == 1:
            await asyncio.sleep(FOREVER)  # timed out
        return {"item": item}

    source = (
        "node fixes = for issue in issues: flaky with timeout = 0.05, retries = 1, backoff = 0\n"
        "fixes -> end"
    )
    result, events = execute(source, registry(flaky), initial_state={"issues": [0, 1]})
    assert result.status == "succeeded", result.error
    assert attempts == {0: [1, 2], 1: [1, 2]}
    assert result.state["fixes"] == [{"item": 0}, {"item": 1}]
    assert [(s.branch, s.attempts) for s in result.steps] in (
        [("0", 2), ("1", 2), (None, 1)],
        [("1", 2), ("0", 2), (None, 1)],
    )
    failed = [e for e in events if e.type == "node_attempt_failed"]
    assert sorted((e.node, e.branch, e.error and e.error.code) for e in failed) == [
        ("fixes", "0", "timeout"), ("fixes", "1", "timeout"),
    ]  # fmt: skip


def test_a_call_that_fails_after_its_retries_fails_the_run_naming_the_item() -> None:
    tries: list[int] = []

    def fix(state: State) -> State:
        if state["issue"] == "bad":
            tries.append(current_step().attempt)
            raise RuntimeError("no")
        return {"ok": state["issue"]}

    source = "node fixes = for issue in issues: fix with retries = 2, backoff = 0\nfixes -> end"
    result, _ = execute(source, registry(fix), initial_state={"issues": ["a", "bad", "c"]})
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "tool_error",
        "fixes",
        "item 1 of `issues`: tool `fix` failed: RuntimeError: no (after 3 attempts)",
    )
    assert tries == [1, 2, 3]
    assert "fixes" not in result.state


def test_a_failing_call_cancels_the_others() -> None:
    cancelled: list[Any] = []
    started = 0
    everyone = asyncio.Event()

    async def fix(state: State) -> State:
        nonlocal started
        started += 1
        if started == 3:
            everyone.set()
        if state["issue"] == "bad":
            await everyone.wait()
            raise RuntimeError("no")
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(state["issue"])
            raise
        return {}

    result, events = execute(MAPPED, registry(fix), initial_state={"issues": ["a", "bad", "c"]})
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "tool_error",
        "fixes",
        "item 1 of `issues`: tool `fix` failed: RuntimeError: no",
    )
    assert sorted(cancelled) == ["a", "c"]
    assert result.steps == []
    assert kinds(events) == ["run_started", *["node_started"] * 3, "run_failed"]


def test_cancelling_the_run_cancels_every_call() -> None:
    cancelled: list[int] = []
    started = 0

    async def waits(state: State) -> State:
        nonlocal started
        started += 1
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(state["issue"])
            raise
        return {}

    engine = WorkflowEngine("node fixes = for issue in issues: waits\nfixes -> end",
                            registry(waits))  # fmt: skip

    async def cancel_it() -> None:
        task = asyncio.ensure_future(engine.run(initial_state={"issues": [0, 1, 2]}))
        while started < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancel_it(), BOUND))
    assert sorted(cancelled) == [0, 1, 2]


def test_a_return_that_is_not_a_dict_is_bad_return() -> None:
    def fix(state: State) -> Any:
        return [state["issue"]]

    result, _ = execute(MAPPED, registry(fix), initial_state={"issues": [1]})
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "bad_return",
        "item 0 of `issues`: tool `fix` returned a list; a map's tool returns a dict (the "
        "result for its item) or None",
    )


def test_a_result_that_is_not_json_is_bad_return() -> None:
    def fix(state: State) -> State:
        return {"at": {"when": object()}}

    result, _ = execute(MAPPED, registry(fix), initial_state={"issues": [1]})
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "bad_return",
        "item 0 of `issues`: tool `fix` returned a value that is not JSON at `at.when`: an "
        "object is not JSON",
    )


def test_results_past_the_state_limit_fail_at_the_call_that_goes_past() -> None:
    def fix(state: State) -> State:
        return {"text": "x" * 400}

    result, _ = execute(MAPPED, registry(fix), initial_state={"issues": list(range(5))},
                        limits=Limits(max_state_bytes=1_500))  # fmt: skip
    assert result.error is not None
    assert result.error.code == "limit"
    assert result.error.message.startswith(
        "item 3 of `issues`: tool `fix` returned a result that would make the state about "
    )
    assert result.error.message.endswith(
        " bytes as JSON with the results before it, more than max_state_bytes = 1,500"
    )
    assert [s.branch for s in result.steps] == ["0", "1", "2"]


def test_a_failing_call_takes_the_error_route_on_the_state_before_the_map() -> None:
    def fix(state: State) -> State:
        if state["issue"] == "bad":
            raise RuntimeError("no")
        return {"ok": state["issue"]}

    source = (
        'node a = put(key = "x", value = 1)\na -> fixes\n'
        "node fixes = for issue in issues: fix with on_error = fallback\nfixes -> end\n"
        "fallback -> end"
    )
    result, events = execute(source, registry(put, fix, fallback),
                             initial_state={"issues": ["a", "bad"]})  # fmt: skip
    assert result.status == "succeeded", result.error
    error = {"code": "tool_error", "message": "item 1 of `issues`: tool `fix` failed: "
             "RuntimeError: no", "node": "fixes", "attempts": 1}  # fmt: skip
    assert result.state == {"issues": ["a", "bad"], "x": 1, "error": error, "fell_back": "fixes"}
    assert [(s.seq, s.node, s.branch, s.failed) for s in result.steps] == [
        (1, "a", None, False),
        (2, "fixes", "0", False),  # recorded; its result is dropped with the map
        (3, "fixes", None, True),
        (4, "fallback", None, False),
    ]
    assert result.steps[2].delta == {"error": error}
    failed = next(e for e in events if e.type == "node_finished" and e.failed)
    assert (failed.step, failed.node, failed.branch) == (3, "fixes", None)


# --------------------------------------------------------------------------- typed flows

TYPED = """state issues: list[dict] = []
state fixes: list[dict[int]] = []
node fixes = for issue in issues: fix
fixes -> end
"""


def test_in_a_typed_flow_the_results_go_under_the_declared_key() -> None:
    def fix(state: State) -> State:
        return {"line": state["issue"]["line"]}

    issues = [{"line": 3}, {"line": 5}]
    result, _ = execute(TYPED, registry(fix), initial_state={"issues": issues})
    assert result.status == "succeeded", result.error
    assert result.state == {"issues": issues, "fixes": [{"line": 3}, {"line": 5}]}


def test_a_result_that_does_not_fit_the_declared_item_type_is_bad_return() -> None:
    def fix(state: State) -> State:
        return {"line": str(state["issue"]["line"])}

    result, _ = execute(TYPED, registry(fix), initial_state={"issues": [{"line": 3}]})
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "bad_return",
        "fixes",
        "item 0 of `issues`: tool `fix` returned a result that does not fit the flow's "
        "declaration `state fixes: list[dict[int]]` (at `fixes/0/line`): expected int, got "
        "a string",
    )


# -------------------------------------------------------------------------------- resume

#: `a`, then the map, then `b`.
RESUMED = (
    'node a = put(key = "x", value = 1)\nnode b = put(key = "b", value = 2)\n'
    "node fixes = for issue in issues: fix\na -> fixes -> b\nb -> end"
)


def done(seq: int, item: int, node: str = "fixes") -> Step:
    """A recorded call of the map `node` for `item` (of `[0, 1, 2, 3]`): `Calls.fix`'s."""
    return Step(seq, node, {"double": item * 2}, 0.0, 0.0, 1, False, str(item))


def test_resume_in_the_middle_of_a_map_calls_only_the_items_not_done() -> None:
    calls = Calls()
    state = {"issues": [0, 1, 2, 3], "x": 1}
    result, events = execute(RESUMED, registry(calls.fix, put), initial_state=state,
                             resume=Resume("a", 1, branches=(done(2, 2), done(3, 0))))  # fmt: skip
    assert result.status == "succeeded", result.error
    assert calls.items == [1, 3]
    assert result.state["fixes"] == [{"double": 0}, {"double": 2}, {"double": 4}, {"double": 6}]
    assert log(result) == [(4, "fixes", "1"), (5, "fixes", "3"), (6, "fixes", None),
                           (7, "b", None)]  # fmt: skip
    assert (events[0].type, events[0].step, events[0].node) == ("run_started", 3, "fixes")


def test_resume_with_every_item_done_only_collects() -> None:
    calls = Calls()
    steps = tuple(done(seq, item) for seq, item in zip(range(2, 6), (3, 1, 0, 2), strict=True))
    result, _ = execute(RESUMED, registry(calls.fix, put), initial_state={"issues": [0, 1, 2, 3]},
                        resume=Resume("a", 1, branches=steps))  # fmt: skip
    assert calls.items == []
    assert log(result) == [(6, "fixes", None), (7, "b", None)]
    assert result.steps[0].delta == {"fixes": [{"double": i * 2} for i in range(4)]}


def test_a_resumed_call_gets_the_idempotency_key_it_had() -> None:
    keys: list[str] = []

    def fix(state: State) -> State:
        keys.append(current_step().idempotency_key)
        return {"double": state["issue"] * 2}

    execute(RESUMED, registry(fix, put), initial_state={"issues": [0, 1]}, run_id="r",
            resume=Resume("a", 1, branches=(done(2, 1),)))  # fmt: skip
    assert keys == ["r:1:fixes:0"]


def test_resume_of_a_map_that_starts_the_flow_after_no_step() -> None:
    calls = Calls()
    result, events = execute(MAPPED, registry(calls.fix), initial_state={"issues": [0, 1, 2]},
                             resume=Resume(None, 0, branches=(done(1, 1),)))  # fmt: skip
    assert result.status == "succeeded", result.error
    assert calls.items == [0, 2]
    assert log(result) == [(2, "fixes", "0"), (3, "fixes", "2"), (4, "fixes", None)]
    assert result.state["fixes"] == [{"double": 0}, {"double": 2}, {"double": 4}]
    assert (events[0].step, events[0].node) == (1, "fixes")


def test_resume_of_a_map_that_an_error_route_or_a_join_leads_to() -> None:
    calls = Calls()
    source = (
        "node a = boom with on_error = fixes\nnode fixes = for issue in issues: fix\n"
        "a -> end\nfixes -> end"
    )

    def boom(state: State) -> State:
        raise RuntimeError("no")

    result, _ = execute(source, registry(calls.fix, boom), initial_state={"issues": [0, 1]},
                        resume=Resume("a", 1, failed=True, branches=(done(2, 0),)))  # fmt: skip
    assert calls.items == [1]
    assert log(result) == [(3, "fixes", "1"), (4, "fixes", None)]
    calls.items.clear()
    source = (
        'node a = put(key = "x", value = 1)\nnode b = put(key = "b", value = 1)\n'
        'node c = put(key = "c", value = 1)\na -> [b, c] -> fixes\n' + MAPPED
    )
    result, _ = execute(source, registry(calls.fix, put), initial_state={"issues": [0, 1]},
                        resume=Resume("a", 4, joined=True, branches=(done(5, 1),)))  # fmt: skip
    assert calls.items == [0]
    assert log(result) == [(6, "fixes", "0"), (7, "fixes", None)]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((done(2, 0, "b"),), "step 2 ran `b` in branch '0' before the map `fixes` collected"),
        ((done(2, 0), done(3, 0)), "step 3 ran `fixes` in branch '0' before the map"),
        ((done(2, 0)._replace(branch="x"),), "step 2 ran `fixes` in branch 'x' before"),
        ((done(2, 4),), "the map `fixes` has a step for item 4 of `issues`, which holds 4"),
    ],
)
def test_calls_that_do_not_fit_the_map_fail_the_resumed_run(
    steps: tuple[Step, ...], message: str
) -> None:
    calls = Calls()
    result, _ = execute(RESUMED, registry(calls.fix, put), initial_state={"issues": [0, 1, 2, 3]},
                        resume=Resume("a", 1, branches=steps))  # fmt: skip
    assert result.error is not None and result.error.code == "unknown_node"
    assert result.error.message.startswith(message)
    assert calls.items == []


def test_resume_with_calls_where_the_run_goes_on_at_no_map_fails_the_run() -> None:
    result, _ = execute("node b = put(key = \"b\", value = 2)\nb -> end", registry(put),
                        resume=Resume(None, 0, branches=(done(1, 0),)))  # fmt: skip
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "unknown_node",
        "the run goes on at `b`, which is not a map: no calls to resume",
    )


# ---------------------------------------------------------------------------- elsewhere


def test_a_map_in_a_parallel_branch_fails_the_run_as_unsupported() -> None:
    # The compiler refuses it (E136); an IR document saved as it is reaches the engine.
    calls = Calls()
    mapped = node("fixes", "fix")
    mapped["map"] = {"item": "issue", "over": "issues"}
    document = flow(
        [
            node("a", "put", args={"key": "x", "value": 1}),
            mapped,
            node("c", "put", args={"key": "c", "value": 1}),
        ],
        {"a": {"kind": "parallel", "branches": [["fixes"], ["c"]], "join": "end"}},
    )
    result, _ = execute(document, registry(calls.fix, put), initial_state={"issues": [1]})
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "unsupported",
        "fixes",
        "node `fixes` is a map, which this engine does not run in a parallel branch yet",
    )
    assert calls.items == []


def test_a_map_written_as_ir_runs_the_same() -> None:
    calls = Calls()
    mapped = node("fixes", "fix")
    mapped["map"] = {"item": "issue", "over": "issues"}
    result, _ = execute(flow([mapped], {"fixes": "end"}), registry(calls.fix),
                        initial_state={"issues": [1, 2]})  # fmt: skip
    assert result.state["fixes"] == [{"double": 2}, {"double": 4}]
