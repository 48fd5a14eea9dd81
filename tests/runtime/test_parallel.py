"""Parallel branches: `a -> [b -> b2, c] -> d` run at once, merged in order, joined once.

Concurrency is shown by tools that wait for each other (a run that ran its branches one
after the other would never end: each test bounds its run), never by timings.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from flowc.runtime import Event, Registry, Resume, RunResult, Step, WorkflowEngine, current_step
from flowc.runtime.events import JOIN
from tests.runtime.policy_support import FOREVER, collector, held_threads, kinds, registry

State = dict[str, Any]
#: Seconds a run may take before the test fails: a bound for a hang, not a measurement.
BOUND = 10.0


def put(state: State, *, key: str, value: Any) -> State:
    """Write `value` to `key`."""
    return {key: value}


def boom(state: State) -> State:
    """Always fails."""
    raise RuntimeError("no")


def fix(state: State) -> State:
    """An error route's target: says which node failed."""
    return {"fixed": state["error"]["node"]}


def execute(source: str, tools: Registry, **kwargs: Any) -> tuple[RunResult, list[Event]]:
    """Run `source` to its end within `BOUND` seconds; the result and every event."""
    events: list[Event] = []

    async def go() -> RunResult:
        engine = WorkflowEngine(source, tools)
        return await asyncio.wait_for(engine.run(listener=collector(events), **kwargs), BOUND)

    return asyncio.run(go()), events


def log(result: RunResult) -> list[tuple[int, str, str | None]]:
    """Each step's number, node and branch."""
    return [(s.seq, s.node, s.branch) for s in result.steps]


class Meeting:
    """Tools `left` and `right` that each wait until the other has started."""

    def __init__(self) -> None:
        self.arrived: dict[str, asyncio.Event] = {}

    def _event(self, name: str) -> asyncio.Event:
        return self.arrived.setdefault(name, asyncio.Event())

    async def left(self, state: State) -> State:
        """Wait for `right`, then write `left`."""
        self._event("left").set()
        await self._event("right").wait()
        return {"left": True}

    async def right(self, state: State) -> State:
        """Wait for `left`, then write `right`."""
        self._event("right").set()
        await self._event("left").wait()
        return {"right": True}

    def tools(self, *more: Any) -> Registry:
        return registry(self.left, self.right, put, *more)


# ----------------------------------------------------------------------- running at once


def test_the_branches_run_at_once_and_join_once() -> None:
    source = (
        'node a = put(key = "x", value = 1)\na -> [left, right] -> d\n'
        'node d = put(key = "d", value = 2)\nd -> end'
    )
    result, events = execute(source, Meeting().tools())
    assert result.status == "succeeded", result.error
    assert result.state == {"x": 1, "left": True, "right": True, "d": 2}
    assert [(s.node, s.branch) for s in result.steps[1:3]] in (
        [("left", "0"), ("right", "1")],
        [("right", "1"), ("left", "0")],
    )
    assert [s.seq for s in result.steps] == [1, 2, 3, 4, 5]
    join = result.steps[3]
    assert (join.node, join.branch, join.delta) == ("a", JOIN, {"left": True, "right": True})
    assert log(result)[4] == (5, "d", None)
    started = [e for e in events if e.type == "node_started"]
    assert [(e.node, e.branch) for e in started] == [
        ("a", None), ("left", "0"), ("right", "1"), ("d", None),
    ]  # fmt: skip
    finished = [e for e in events if e.type == "node_finished"]
    assert [(e.step, e.node, e.branch) for e in finished] == log(result)
    assert finished[3].to_json()["branch"] == "join"
    assert "branch" not in finished[0].to_json()
    assert result.steps[3].to_json()["branch"] == "join"
    assert "branch" not in result.steps[0].to_json()


def test_a_branch_starts_on_the_forks_state_and_sees_only_its_own_writes() -> None:
    seen: dict[str, list[str]] = {}

    def look(state: State, *, name: str) -> State:
        seen[name] = sorted(state)
        return {name: True}

    source = (
        'node a = put(key = "x", value = 1)\nnode b = look(name = "b")\n'
        'node b2 = look(name = "b2")\nnode c = look(name = "c")\na -> [b -> b2, c] -> end'
    )
    result, _ = execute(source, registry(put, look))
    assert result.status == "succeeded", result.error
    assert seen == {"b": ["x"], "b2": ["b", "x"], "c": ["x"]}
    assert result.state == {"x": 1, "b": True, "b2": True, "c": True}
    assert [(s.node, s.branch) for s in result.steps if s.node == "b2"] == [("b2", "0")]
    assert [s.node for s in result.steps].index("b") < [s.node for s in result.steps].index("b2")


def test_steps_are_numbered_in_the_order_they_finish() -> None:
    later = asyncio.Event()

    async def slow(state: State) -> State:
        await later.wait()
        return {"slow": True}

    def fast(state: State) -> State:
        later.set()
        return {"fast": True}

    source = 'node first = put(key = "x", value = 1)\nfirst -> [slow, fast] -> end'
    result, events = execute(source, registry(put, slow, fast))
    assert result.status == "succeeded", result.error
    assert log(result) == [
        (1, "first", None),
        (2, "fast", "1"),
        (3, "slow", "0"),
        (4, "first", JOIN),
    ]
    assert [e.step for e in events if e.type == "node_finished"] == [1, 2, 3, 4]


def test_the_merge_takes_the_branches_in_the_order_written_whatever_finished_first() -> None:
    later = asyncio.Event()

    async def slow(state: State) -> State:
        await later.wait()
        return {"items": [1], "last": "slow"}

    def fast(state: State) -> State:
        later.set()
        return {"items": [2], "last": "fast"}

    source = (
        'state items: list[int] = [0] by extend\nstate last: str = "" by replace\n'
        'node a = put(key = "x", value = 0)\na -> [slow, fast] -> end'
    )
    result, _ = execute(source, registry(put, slow, fast))
    assert result.status == "succeeded", result.error
    assert [s.node for s in result.steps[1:3]] == ["fast", "slow"]  # fast finished first
    assert result.state["items"] == [0, 1, 2]
    assert result.state["last"] == "fast"  # the last branch written, not the last to finish


@pytest.mark.parametrize(
    ("declaration", "fork", "left", "right", "merged"),
    [
        ("list[int] = [] by append", [0], 1, 2, [0, 1, 2]),
        ("list[int] = [] by extend", [0], [1], [2, 3], [0, 1, 2, 3]),
        ("dict[int] = {} by merge", {"a": 0, "b": 0}, {"b": 1}, {"c": 2}, {"a": 0, "b": 1, "c": 2}),
        ("int = 0 by sum", 4, 4, 1, 9),  # 4 written where 4 was: a contribution all the same
        ("int = 0 by min", 5, 7, 3, 3),
        ("int = 0 by max", 5, 7, 3, 7),
        ('str = "" by max', "m", "a", "z", "z"),
        ("int = 0 by replace", 5, 7, 3, 3),
    ],
)
def test_each_reducer_folds_the_branches_values_into_the_forks(
    declaration: str, fork: Any, left: Any, right: Any, merged: Any
) -> None:
    source = (
        f'state v: {declaration}\nnode a = put(key = "v", value = {json.dumps(fork)})\n'
        f'node l = put(key = "v", value = {json.dumps(left)})\n'
        f'node r = put(key = "v", value = {json.dumps(right)})\na -> [l, r] -> end'
    )
    result, _ = execute(source, registry(put))
    assert result.status == "succeeded", result.error
    assert result.state["v"] == merged
    assert result.steps[-1].branch == JOIN
    assert result.steps[-1].delta == ({"v": merged} if merged != fork else {})


def test_a_key_without_a_reducer_keeps_its_one_writers_value() -> None:
    source = (
        'node a = put(key = "k", value = 0)\nnode b = put(key = "b", value = 1)\n'
        'node c = put(key = "k", value = 0)\na -> [b, c] -> end'
    )
    result, _ = execute(source, registry(put))
    assert result.status == "succeeded", result.error
    # `c` wrote what the fork had: no write, no conflict with anyone, nothing in the join.
    assert result.state == {"k": 0, "b": 1}
    assert result.steps[-1].delta == {"b": 1}


def test_two_branches_writing_an_undeclared_key_is_a_merge_conflict() -> None:
    source = (
        'node a = put(key = "x", value = 0)\nnode b = put(key = "k", value = 1)\n'
        'node b2 = put(key = "y", value = 1)\nnode c = put(key = "k", value = 2)\n'
        "a -> [b -> b2, c] -> end"
    )
    result, events = execute(source, registry(put))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "merge_conflict",
        "a",
        "`k` is written by parallel branches after `a` (by `b` and `c`), and nothing says how "
        "to merge them: declare it with a reducer: `state k: TYPE by REDUCER`",
    )
    assert result.error.span is not None and result.error.span["line"] == 5
    assert result.state == {"x": 0}  # the fork's: nothing of the branches was merged
    assert [s.branch for s in result.steps] == [None, "0", "1", "0"]
    assert kinds(events)[-1] == "run_failed"


def test_a_declared_key_without_a_reducer_is_told_which_to_give() -> None:
    source = (
        'state k: list[int] = []\nnode a = put(key = "x", value = 0)\n'
        'node b = put(key = "k", value = [1])\nnode c = put(key = "k", value = [2])\n'
        "a -> [b, c] -> end"
    )
    result, _ = execute(source, registry(put))
    assert result.error is not None and result.error.code == "merge_conflict"
    assert result.error.message.endswith("give its declaration a reducer: `by extend`")


def test_a_value_a_reducer_cannot_fold_is_a_merge_conflict() -> None:
    source = (
        'state n: int? = null by sum\nnode a = put(key = "x", value = 0)\n'
        'node b = put(key = "n", value = 1)\nnode c = put(key = "x", value = 1)\n'
        "a -> [b, c] -> end"
    )
    result, _ = execute(source, registry(put))
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "merge_conflict",
        "the branches after `a` cannot merge `n` (`by sum`): `sum` adds two numbers, not null "
        "and an integer",
    )


def test_an_append_branch_writes_one_item_of_the_lists_type() -> None:
    source = (
        'state items: list[int] = [] by append\nnode a = put(key = "x", value = 0)\n'
        'node b = put(key = "items", value = "no")\nnode c = put(key = "items", value = 1)\n'
        "a -> [b, c] -> end"
    )
    result, _ = execute(source, registry(put))
    assert result.error is not None
    assert (result.error.code, result.error.node) == ("bad_return", "b")
    assert "`state items: int`" in result.error.message


def test_the_join_may_be_the_end() -> None:
    result, events = execute("a -> [left, right] -> end\nnode a = put(key = \"x\", value = 1)",
                             Meeting().tools())  # fmt: skip
    assert result.status == "succeeded", result.error
    assert result.state == {"x": 1, "left": True, "right": True}
    assert log(result)[-1] == (4, "a", JOIN)
    assert (events[-1].type, events[-1].step, events[-1].node) == ("run_finished", 4, "a")


def test_a_join_that_leads_on_to_another_fork() -> None:
    source = (
        'node a = put(key = "a", value = 1)\nnode b = put(key = "b", value = 1)\n'
        'node c = put(key = "c", value = 1)\nnode d = put(key = "d", value = 1)\n'
        'node e = put(key = "e", value = 1)\nnode f = put(key = "f", value = 1)\n'
        "a -> [b, c] -> d\nd -> [e, f] -> end"
    )
    result, _ = execute(source, registry(put))
    assert result.status == "succeeded", result.error
    assert result.state == dict.fromkeys("abcdef", 1)
    assert [(s.node, s.branch) for s in result.steps] == [
        ("a", None), ("b", "0"), ("c", "1"), ("a", JOIN), ("d", None), ("e", "0"), ("f", "1"),
        ("d", JOIN),
    ]  # fmt: skip


# ------------------------------------------------------------------------- max_parallel


class Counter:
    """A tool, `busy`, that notes how many of its calls run at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def busy(self, state: State, *, name: str) -> State:
        """Stay a few turns of the loop; write `name`."""
        self.now += 1
        self.most = max(self.most, self.now)
        for _ in range(5):
            await asyncio.sleep(0)
        self.now -= 1
        return {name: True}


def fan(setting: str) -> str:
    branches = ", ".join(f"b{i} -> c{i}" for i in range(4))
    nodes = "\n".join(f'node {p}{i} = busy(name = "{p}{i}")' for i in range(4) for p in "bc")
    return f'{setting}node a = busy(name = "a")\n{nodes}\na -> [{branches}] -> end'


def test_max_parallel_1_runs_one_branch_step_at_a_time() -> None:
    counter = Counter()
    result, _ = execute(fan("set max_parallel = 1\n"), registry(counter.busy))
    assert result.status == "succeeded", result.error
    assert counter.most == 1
    assert len(result.steps) == 10


def test_max_parallel_bounds_the_branch_steps_at_once() -> None:
    for setting, most in (("set max_parallel = 2\n", 2), ("", 4)):  # 8 by default
        counter = Counter()
        result, _ = execute(fan(setting), registry(counter.busy))
        assert result.status == "succeeded", result.error
        assert counter.most == most


def test_branch_steps_count_against_max_steps() -> None:
    source = 'set max_steps = 4\nnode a = put(key = "x", value = 1)\na -> [left, right] -> end'
    result, _ = execute(source, Meeting().tools())
    assert result.status == "succeeded", result.error  # a, left, right, the join: 4
    source = source.replace("max_steps = 4", "max_steps = 3")
    result, _ = execute(source, Meeting().tools())
    assert result.error is not None
    assert (result.error.code, result.error.node) == ("max_steps", "a")
    assert [s.node for s in result.steps] in (["a", "left", "right"], ["a", "right", "left"])


# ------------------------------------------------------------------------------ failures


def test_a_failing_branch_step_fails_the_run_and_cancels_the_others() -> None:
    cancelled = []

    async def waits(state: State) -> State:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(current_step().node)
            raise
        return {}

    source = 'node a = put(key = "x", value = 1)\nnode b = boom\na -> [w, b] -> end\nnode w = waits'
    result, events = execute(source, registry(put, boom, waits))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "tool_error",
        "b",
        "tool `boom` failed: RuntimeError: no",
    )
    assert cancelled == ["w"]
    assert result.state == {"x": 1}
    assert log(result) == [(1, "a", None)]
    assert kinds(events) == [
        "run_started", "node_started", "node_finished", "node_started", "node_started",
        "run_failed",
    ]  # fmt: skip


def test_a_blocking_siblings_result_is_discarded_when_it_returns() -> None:
    with held_threads() as gate:

        def blocks(state: State) -> State:
            gate.wait(FOREVER)
            return {"late": True}

        tools = registry(put, boom, blocking=(blocks,))
        source = (
            'node a = put(key = "x", value = 1)\nnode b = boom\na -> [w, b] -> end\nnode w = blocks'
        )
        result, events = execute(source, tools)
    assert result.error is not None and result.error.node == "b"
    assert "late" not in result.state
    assert [e.node for e in events if e.type == "node_finished"] == ["a"]


def test_a_failing_branch_step_with_an_error_route_goes_there_on_the_forks_state() -> None:
    later = asyncio.Event()

    async def first(state: State) -> State:
        later.set()
        return {"first": True}

    async def second(state: State) -> State:
        await later.wait()
        raise RuntimeError("no")

    async def waits(state: State) -> State:
        await asyncio.sleep(FOREVER)
        return {}

    source = (
        'node a = put(key = "x", value = 1)\nnode s = second with on_error = fix\n'
        'node w = waits\na -> [first -> w, s] -> d\nnode d = put(key = "d", value = 1)\n'
        "fix -> end"
    )
    result, events = execute(source, registry(put, first, second, waits, fix))
    assert result.status == "succeeded", result.error
    error = {"code": "tool_error", "message": "tool `second` failed: RuntimeError: no",
             "node": "s", "attempts": 1}  # fmt: skip
    # `first`'s write is dropped with its branch; `d`, the join, never ran.
    assert result.state == {"x": 1, "error": error, "fixed": "s"}
    assert [(s.seq, s.node, s.branch, s.failed) for s in result.steps] == [
        (1, "a", None, False),
        (2, "first", "0", False),
        (3, "s", None, True),
        (4, "fix", None, False),
    ]
    failed = next(e for e in events if e.type == "node_finished" and e.node == "s")
    assert (failed.failed, failed.branch, failed.delta) == (True, None, {"error": error})


def test_a_branch_steps_retries_and_timeout_apply() -> None:
    calls: list[int] = []

    async def flaky(state: State) -> State:
        calls.append(current_step().attempt)
        if len(calls) == 1:
            await asyncio.sleep(FOREVER)  # timed out
        return {"flaky": True}

    source = (
        'node a = put(key = "x", value = 1)\nnode f = flaky with timeout = 0.05, retries = 1, '
        'backoff = 0\nnode c = put(key = "c", value = 1)\na -> [f, c] -> end'
    )
    result, events = execute(source, registry(put, flaky))
    assert result.status == "succeeded", result.error
    assert calls == [1, 2]
    assert [(s.node, s.attempts) for s in result.steps if s.node == "f"] == [("f", 2)]
    attempt = next(e for e in events if e.type == "node_attempt_failed")
    assert (attempt.node, attempt.branch, attempt.error and attempt.error.code) == (
        "f", "0", "timeout",
    )  # fmt: skip


def test_cancelling_the_run_cancels_every_branch() -> None:
    cancelled: list[str] = []
    started = 0

    async def waits(state: State, *, name: str) -> State:
        nonlocal started
        started += 1
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return {}

    source = (
        'node a = put(key = "x", value = 1)\nnode b = waits(name = "b")\n'
        'node c = waits(name = "c")\na -> [b, c] -> end'
    )
    engine = WorkflowEngine(source, registry(put, waits))

    async def cancel_it() -> None:
        task = asyncio.ensure_future(engine.run())
        while started < 2:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancel_it(), BOUND))
    assert sorted(cancelled) == ["b", "c"]


def test_a_branch_tool_that_raises_cancelled_error_cancels_the_run_as_on_the_main_line() -> None:
    async def gives_up(state: State) -> State:
        raise asyncio.CancelledError

    async def waits(state: State) -> State:
        await asyncio.sleep(FOREVER)
        return {}

    source = (
        'node a = put(key = "x", value = 1)\nnode w = waits\nnode g = gives_up\na -> [w, g] -> end'
    )
    engine = WorkflowEngine(source, registry(put, gives_up, waits))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(asyncio.wait_for(engine.run(), BOUND))


def test_a_branch_steps_idempotency_key_names_the_fork_and_the_node() -> None:
    keys: dict[str, str] = {}

    def key(state: State, *, name: str) -> State:
        step = current_step()
        keys[name] = step.idempotency_key
        assert (step.branch, step.fork) == ({"a": None, "b": "0", "c": "1"}[name],
                                            None if name == "a" else 1)  # fmt: skip
        return {name: True}

    source = (
        'node a = key(name = "a")\nnode b = key(name = "b")\nnode c = key(name = "c")\n'
        "a -> [b, c] -> end"
    )
    result, _ = execute(source, registry(key), run_id="r")
    assert result.status == "succeeded", result.error
    assert keys == {"a": "r:1", "b": "r:1:b", "c": "r:1:c"}


# -------------------------------------------------------------------------------- resume

#: Two branches of two nodes each, then `d`.
FORKED = (
    'node a = count(name = "a")\nnode b = count(name = "b")\nnode b2 = count(name = "b2")\n'
    'node c = count(name = "c")\nnode c2 = count(name = "c2")\nnode d = count(name = "d")\n'
    "a -> [b -> b2, c -> c2] -> d\nd -> end"
)


class Calls:
    """A tool, `count`, that notes the nodes it ran for and what each saw."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.saw: dict[str, list[str]] = {}

    def count(self, state: State, *, name: str) -> State:
        """Write `name: true`."""
        self.ran.append(name)
        self.saw[name] = sorted(state)
        return {name: True}


def recorded(seq: int, node: str, branch: str) -> Step:
    return Step(seq, node, {node: True}, 0.0, 0.0, 1, False, branch)


def test_resume_in_the_middle_of_a_fork_runs_only_what_is_left() -> None:
    calls = Calls()
    # `a` was step 1; then `c` (branch 1), `b` (branch 0) and `c2` (branch 1): branch 1 is
    # done, and `b2` was in flight when the run stopped.
    done = (recorded(2, "c", "1"), recorded(3, "b", "0"), recorded(4, "c2", "1"))
    result, events = execute(FORKED, registry(calls.count), initial_state={"a": True},
                             resume=Resume("a", 1, branches=done))  # fmt: skip
    assert result.status == "succeeded", result.error
    assert calls.ran == ["b2", "d"]
    assert calls.saw["b2"] == ["a", "b"]  # its branch's state: the fork's and `b`'s delta
    assert result.state == dict.fromkeys(["a", "b", "b2", "c", "c2", "d"], True)
    assert log(result) == [(5, "b2", "0"), (6, "a", JOIN), (7, "d", None)]
    join = result.steps[1]
    assert join.delta == dict.fromkeys(["b", "b2", "c", "c2"], True)
    assert (events[0].type, events[0].step, events[0].node) == ("run_started", 4, "b2")


def test_resume_with_every_branch_done_only_joins() -> None:
    calls = Calls()
    done = (recorded(2, "b", "0"), recorded(3, "c", "1"), recorded(4, "b2", "0"),
            recorded(5, "c2", "1"))  # fmt: skip
    result, events = execute(FORKED, registry(calls.count), initial_state={"a": True},
                             resume=Resume("a", 1, branches=done))  # fmt: skip
    assert calls.ran == ["d"]
    assert log(result) == [(6, "a", JOIN), (7, "d", None)]
    assert events[0].node == "d"


def test_resume_after_the_forks_step_runs_every_branch() -> None:
    calls = Calls()
    result, _ = execute(FORKED, registry(calls.count), initial_state={"a": True},
                        resume=Resume("a", 1))  # fmt: skip
    assert sorted(calls.ran) == ["b", "b2", "c", "c2", "d"]
    assert [s.seq for s in result.steps] == [2, 3, 4, 5, 6, 7]


def test_resume_after_a_join_goes_on_at_the_join() -> None:
    calls = Calls()
    merged = dict.fromkeys(["a", "b", "b2", "c", "c2"], True)
    result, events = execute(FORKED, registry(calls.count), initial_state=merged,
                             resume=Resume("a", 6, joined=True))  # fmt: skip
    assert calls.ran == ["d"]
    assert log(result) == [(7, "d", None)]
    assert events[0].node == "d"


def test_resume_numbers_a_branch_steps_from_the_last_recorded_one() -> None:
    calls = Calls()
    result, _ = execute(FORKED, registry(calls.count), initial_state={"a": True},
                        resume=Resume("a", 1, branches=(recorded(2, "c", "1"),)))  # fmt: skip
    assert sorted(calls.ran) == ["b", "b2", "c2", "d"]
    assert [s.seq for s in result.steps] == [3, 4, 5, 6, 7]
    assert result.state == dict.fromkeys(["a", "b", "b2", "c", "c2", "d"], True)


@pytest.mark.parametrize(
    "steps",
    [
        (recorded(2, "b2", "0"),),  # not the next node of its branch
        (recorded(2, "b", "1"),),  # not a node of that branch
        (recorded(2, "b", "7"),),  # no such branch
        (recorded(2, "b", "0"), recorded(3, "b2", "0"), recorded(4, "b2", "0")),  # past its end
    ],
)
def test_branch_steps_that_do_not_fit_the_flow_fail_the_resumed_run(
    steps: tuple[Step, ...],
) -> None:
    calls = Calls()
    result, _ = execute(FORKED, registry(calls.count), initial_state={"a": True},
                        resume=Resume("a", 1, branches=steps))  # fmt: skip
    assert result.error is not None and result.error.code == "unknown_node"
    assert "where its flow has no such step to resume" in result.error.message
    assert calls.ran == []


def test_resume_with_branches_after_a_node_that_does_not_fork_fails_the_run() -> None:
    result, _ = execute(FORKED, registry(Calls().count),
                        resume=Resume("d", 1, branches=(recorded(2, "b", "0"),)))  # fmt: skip
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "unknown_node",
        "node `d` starts no parallel branches to resume",
    )
    result, _ = execute(FORKED, registry(Calls().count), resume=Resume("d", 1, joined=True))
    assert result.error is not None
    assert result.error.message == "node `d` starts no parallel branches to join"


def test_a_resume_is_checked_when_it_is_made() -> None:
    step = recorded(2, "b", "0")
    with pytest.raises(ValueError, match="not both"):
        Resume("a", 1, failed=True, joined=True)
    with pytest.raises(ValueError, match="0 when `after` is None"):
        Resume(None, 1, branches=(step,))
    with pytest.raises(ValueError, match="about the step `after` ran"):
        Resume(None, 0, failed=True)
    with pytest.raises(ValueError, match="in order"):
        Resume("a", 2, branches=(step,))
    with pytest.raises(ValueError, match="in order"):
        Resume("a", 1, branches=(step._replace(branch=None),))
    assert Resume("a", 1, branches=(step,)).last == 2
    assert Resume("a", 1).last == 1


def test_a_blocking_tool_in_a_branch_runs_in_its_thread() -> None:
    seen: list[str] = []

    def blocks(state: State) -> State:
        seen.append(threading.current_thread().name)
        return {"blocked": current_step().branch}

    tools = registry(put, blocking=(blocks,))
    source = (
        'node a = put(key = "x", value = 1)\na -> [b, c] -> end\nnode b = blocks\n'
        'node c = put(key = "c", value = 1)'
    )
    result, _ = execute(source, tools)
    assert result.status == "succeeded", result.error
    assert result.state["blocked"] == "0"
    assert seen == ["flowc-tool-b"]


def test_branch_steps_wait_for_a_tool_thread_rather_than_go_past_the_runs_limit() -> None:
    lock, release = threading.Lock(), threading.Event()
    now = most = 0

    def blocks(state: State, *, name: str) -> State:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
        release.wait(BOUND)
        with lock:
            now -= 1
        return {name: True}

    nodes = "\n".join(f'node t{i} = blocks(name = "t{i}")' for i in range(4))
    source = f'node a = put(key = "x", value = 1)\n{nodes}\na -> [t0, t1, t2, t3] -> end'
    engine = WorkflowEngine(source, registry(put, blocking=(blocks,)), max_threads_per_run=2)

    async def go() -> RunResult:
        task = asyncio.ensure_future(engine.run())
        while now < 2:
            await asyncio.sleep(0.001)
        for _ in range(20):  # the other two branches' turns, while both threads are held
            await asyncio.sleep(0)
        release.set()
        return await asyncio.wait_for(task, BOUND)

    result = asyncio.run(go())
    assert result.status == "succeeded", result.error
    assert most == 2
    assert sorted(s.node for s in result.steps[1:5]) == ["t0", "t1", "t2", "t3"]
    assert result.steps[5].branch == JOIN
