"""A fork's parallel branches -> their steps, run as tasks, then one merged step (the join).

After a fork node's step, each branch (a chain of nodes) runs as a task on its own copy of
the state as the fork left it; the run's semaphore bounds how many branch steps execute at
once (`max_parallel`).  A branch step is a normal step (policies, retries, timeouts, checks,
limits), numbered when it finishes, so the step log never has a gap; its events carry the
branch's index.  When every branch is done, their writes are merged (`merge`) into one step
of the fork's node, `branch = "join"`, and the run goes on at the join.  A branch step that
fails ends the run, and the other branches are cancelled; at a node with an error route,
the failed step is recorded on the main line instead, and the run goes on at the route's
target with the fork's state and `error` (what the branches wrote is dropped).  A run
resumed in the middle of a fork (`Resume.branches`) runs only what its branches had left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from flowc.compiler.ir import Span
from flowc.compiler.reducers import REDUCERS, ReducerError
from flowc.compiler.types import FlowType
from flowc.compiler.types import problems_with as type_problems
from flowc.runtime.events import JOIN, Event, RunError, RunFailed, Step
from flowc.runtime.policies import PLAIN
from flowc.runtime.state import StateError, unchanged

if TYPE_CHECKING:
    from flowc.runtime.interpreter import _Plan, _Run
    from flowc.runtime.registry import Tool

State = dict[str, Any]

#: What a fork node's `goto` starts with: the run goes on at its branches.
FORK = "\x00fork:"

#: The reducer a `merge_conflict` suggests for a declared key of each kind (as E135 does).
SUGGESTED_REDUCER = {"list": "extend", "dict": "merge", "int": "sum", "float": "sum"}


@dataclass(frozen=True, slots=True)
class ForkPlan:
    """A node whose route is parallel branches: its chains of nodes, and where they join."""

    node: str
    branches: tuple[tuple[str, ...], ...]
    join: str
    span: Span | None

    @property
    def key(self) -> str:
        """The fork node's `goto`: where the run goes after the node's step."""
        return FORK + self.node


class InBranch(NamedTuple):
    """How a branch step differs from a main-line one: the names of its place, and checks.

    `compare` is the branch's state less the keys with a reducer, which a step writes even
    when it returns their value unchanged (its contribution is counted); `declared` the
    types its writes must fit (an `append` key's item type: a branch adds one item).  A
    map's call (`runtime.maps`) has `item`, its item's index, and `take`, which makes the
    tool's return value the call's result (instead of updates to the state).
    """

    branch: str
    fork: int
    compare: State
    declared: Mapping[str, FlowType] | None
    item: int | None = None
    take: Callable[[Any], State] | None = None


class Gates:
    """How many of a run's branch steps may execute at once, and call a tool in a thread.

    `max_parallel` steps; of those, `max_threads_per_run` in threads: a thread past the
    run's limit would fail its step with `thread_limit`, so a branch step waits for a
    sibling's thread instead (an abandoned thread still counts until it returns).
    """

    def __init__(self, steps: int, threads: int) -> None:
        self.steps = asyncio.Semaphore(steps)
        self.threads = asyncio.Semaphore(threads)


class Routed(Exception):
    """A branch step (or a map's call) that failed at a node with an error route."""

    def __init__(self, plan: _Plan, started: float, delta: State, attempts: int) -> None:
        super().__init__(plan.name)
        self.plan = plan
        self.started = started
        self.delta = delta
        self.attempts = attempts


class Fork:
    """One fork's branches in flight: each one's state, its writes, and how far it got."""

    def __init__(self, run: _Run, plan: ForkPlan, state: State, seq: int) -> None:
        self.owner = run
        self.plan = plan
        self.state = state  # as the fork's node left it: the main line's, until the join
        self.seq = seq  # the fork node's step, which branch steps' idempotency keys name
        count = len(plan.branches)
        self.states = [state] * count
        #: What each branch wrote: each key's last value, and the node that wrote it.
        self.writes: list[dict[str, tuple[str, Any]]] = [{} for _ in range(count)]
        self.done = [0] * count  # the nodes of each chain that have a recorded step
        self.running = 0  # branch steps started and not finished
        if run.gates is None:
            run.gates = Gates(run.engine.max_parallel, run.engine.max_threads_per_run)
        self.gates = run.gates

    def replay(self, steps: Sequence[Step]) -> None:
        """Take in the branch steps a run recorded before it was resumed, in order."""
        for step in steps:
            index = _index(step.branch, len(self.plan.branches))
            chain = self.plan.branches[index] if index is not None else ()
            done = self.done[index] if index is not None else 0
            if index is None or done >= len(chain) or chain[done] != step.node:
                raise RunFailed(
                    RunError(
                        "unknown_node",
                        f"step {step.seq} ran `{step.node}` in branch {step.branch!r} after "
                        f"`{self.plan.node}`, where its flow has no such step to resume",
                        step.node,
                    )
                )
            self._took(index, step.node, step.delta)

    @property
    def next_node(self) -> str:
        """The next node of the first branch that is not done; the join when all are."""
        for chain, done in zip(self.plan.branches, self.done, strict=True):
            if done < len(chain):
                return chain[done]
        return self.plan.join

    async def run(self, tools: dict[str, Tool]) -> tuple[State, str]:
        """Run what the branches have left, then join them: the state, and where to go next.

        The state's measured sizes are the fork's again afterwards, plus what it then takes.
        """
        meter = self.owner.meter
        sizes = dict(meter.keys), meter.total
        tasks = [
            asyncio.ensure_future(self._branch(index, tools))
            for index, chain in enumerate(self.plan.branches)
            if self.done[index] < len(chain)
        ]
        try:
            await every(tasks)
        except Routed as routed:
            meter.keys, meter.total = sizes
            return await route(self.owner, routed, self.state)
        meter.keys, meter.total = sizes
        return await self._join()

    def _took(self, index: int, node: str, delta: State) -> None:
        if delta:
            self.states[index] = {**self.states[index], **delta}
            written = self.writes[index]
            for key, value in delta.items():
                written[key] = (node, value)
        self.done[index] += 1

    async def _branch(self, index: int, tools: dict[str, Tool]) -> None:
        chain = self.plan.branches[index]
        while self.done[index] < len(chain):
            await self._step(index, chain[self.done[index]], tools)

    async def _step(self, index: int, name: str, tools: dict[str, Tool]) -> None:
        """One step of a branch: run under the gate, numbered and recorded when it finishes."""
        run, engine = self.owner, self.owner.engine
        plan, tool = run._resolve(name, tools)
        if name in engine._maps:
            raise RunFailed(
                RunError(
                    "unsupported",
                    f"node `{name}` is a map, which this engine does not run in a parallel "
                    "branch yet",
                    name,
                    plan.span,
                )
            )
        branch = str(index)
        threaded = tool.mode == "thread" or (
            tool.mode == "sync" and (plan.policy or PLAIN).timeout is not None
        )
        async with self.gates.steps:
            run._room(plan, self.running)
            self.running += 1
            try:
                async with self.gates.threads if threaded else contextlib.nullcontext():
                    seq = run.base + len(run.steps) + self.running  # if none finishes first
                    if run.listener is not None:
                        at = time.time()
                        await run.emit(
                            Event("node_started", run.run_id, seq, name, at, branch=branch)
                        )
                    state = self.states[index]
                    compare = state
                    if engine.reducers:
                        compare = {k: v for k, v in state.items() if k not in engine.reducers}
                    within = InBranch(branch, self.seq, compare, engine.branch_declared)
                    containers = {k for k, value in state.items() if type(value) in (dict, list)}
                    started, delta, attempts, failed = await run._attempts(
                        plan, tool, state, containers, seq, within
                    )
            finally:
                self.running -= 1
            if failed:
                raise Routed(plan, started, delta, attempts)
            self._took(index, name, delta)
            pending = finish(run, name, started, attempts, delta, branch)
            waited = pending is not None and await recorded(pending)
        if not waited:
            await asyncio.sleep(0)  # the other branches' turn, and the event loop's

    async def _join(self) -> tuple[State, str]:
        """Merge the branches into one step of the fork's node; the state, and the join."""
        run, plan = self.owner, self.plan
        run._room(run.engine._plans[plan.node], 0)
        started = time.time()
        delta = merge(plan, self.state, self.writes, run.engine.reducers, run.engine.declared)
        sizes: dict[str, int] = {}
        try:
            for key, value in delta.items():
                delta[key], sizes[key] = run.meter.measure(key, value)
            run.meter.admit(sizes, "the merged values")
        except StateError as problem:
            at = f" at `{problem.where}`" if problem.parts else ""
            raise RunFailed(
                RunError(
                    "limit",
                    f"merging the branches after `{plan.node}` goes past a limit{at}: "
                    f"{problem.problem}",
                    plan.node,
                    plan.span,
                )
            ) from None
        state = {**self.state, **delta}
        run.state = state
        finished = time.time()
        seq = run.base + len(run.steps) + 1
        run.steps.append((seq, plan.node, started, finished, 1))
        run.deltas.append(delta)
        run.branches[seq] = JOIN
        waited = False
        if run.listener is not None:
            pending = run.listener(
                Event("node_finished", run.run_id, seq, plan.node, finished, delta=delta,
                      duration_ms=(finished - started) * 1000, attempts=1, branch=JOIN)
            )  # fmt: skip
            if pending is not None:
                waited = await pending is True
        if not waited:
            await asyncio.sleep(0)
        return state, plan.join


async def route(run: _Run, routed: Routed, state: State) -> tuple[State, str]:
    """Record a step that failed into its error route; the state, and the route's target.

    It is a main-line step, on `state` (the fork's, or the map's): what the branches (or
    the map's calls) wrote is dropped.
    """
    error = routed.delta["error"]
    try:
        _, size = run.meter.measure("error", error)
        run.meter.admit({"error": size}, "the error")
    except StateError:
        plan = routed.plan
        raise RunFailed(RunError(error["code"], error["message"], plan.name, plan.span)) from None
    seq = run.base + len(run.steps) + 1
    return await run._failed_step(
        routed.plan, seq, routed.started, routed.delta, routed.attempts, state
    )


def merge(
    plan: ForkPlan,
    state: State,
    writes: Sequence[Mapping[str, tuple[str, Any]]],
    reducers: Mapping[str, str],
    declared: Mapping[str, FlowType] | None,
) -> State:
    """The join's delta: the fork's `state`, then each branch's `writes` in the order written.

    `writes[i]` maps each key branch `i` wrote to the node that last wrote it and that
    value.  A key with a reducer folds each writing branch's value into its value so far,
    from the fork's; one without takes the value of its one writer.  `RunFailed` with
    `merge_conflict` when two branches wrote a key without a reducer, a reducer cannot fold
    a value, or a merged value does not fit the key's declared type.  Keys whose merged
    value is the fork's are left out.
    """
    merged: State = {}
    writer: dict[str, str] = {}  # the node whose value a key without a reducer took
    for written in writes:
        for key, (node, value) in written.items():
            reducer = reducers.get(key)
            if reducer is not None:
                current = merged[key] if key in merged else state.get(key)
                try:
                    merged[key] = REDUCERS[reducer].fold(current, value)
                except ReducerError as problem:
                    raise _conflict(
                        plan,
                        f"the branches after `{plan.node}` cannot merge `{key}` "
                        f"(`by {reducer}`): {problem}",
                    ) from None
            elif key in writer:
                raise _conflict(plan, _two_writers(plan, key, writer[key], node, declared))
            else:
                merged[key] = value
                writer[key] = node
    delta: State = {}
    for key, value in merged.items():
        if declared and key in declared:
            found = type_problems(declared[key], value, limit=1)
            if found:
                path, message = found[0]
                at = f" (at `{key}{path}`)" if path else ""
                raise _conflict(
                    plan, f"merging the branches after `{plan.node}` gives `{key}` a value "
                    f"that does not fit its declaration `state {key}: {declared[key]}`{at}: "
                    f"{message}"
                )  # fmt: skip
        if key not in state or not unchanged(state[key], value):
            delta[key] = value
    return delta


def _two_writers(
    plan: ForkPlan, key: str, first: str, second: str, declared: Mapping[str, FlowType] | None
) -> str:
    """`merge_conflict`'s message for a key two branches wrote, with the fix E135 gives."""
    kind = declared.get(key) if declared else None
    if kind is None:
        fix = f"declare it with a reducer: `state {key}: TYPE by REDUCER`"
    else:
        fix = f"give its declaration a reducer: `by {SUGGESTED_REDUCER.get(kind.kind, 'replace')}`"
    return (
        f"`{key}` is written by parallel branches after `{plan.node}` (by `{first}` and "
        f"`{second}`), and nothing says how to merge them: {fix}"
    )


def _index(branch: str | None, count: int) -> int | None:
    """The index a recorded step's `branch` names, if the fork has such a branch."""
    if branch is None or not (branch.isascii() and branch.isdigit()):
        return None
    index = int(branch)
    return index if index < count else None


def _conflict(plan: ForkPlan, message: str) -> RunFailed:
    return RunFailed(RunError("merge_conflict", message, plan.node, plan.span))


async def every(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Wait for every branch; at the first that fails, cancel the others and raise it.

    Cancelled itself, it cancels them all; a branch whose tool raised `CancelledError` is
    the run's cancel, as on the main line.  Either way it returns once they all stopped (a
    step's recording that one is in the middle of ends first).
    """
    if not tasks:
        return
    stopped: list[asyncio.Future[None]] = []
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.cancelled() or task.exception() is not None for task in done):
                break
    finally:
        stopped = [task for task in tasks if not task.done()]
        for task in stopped:
            task.cancel()
        if stopped:
            await asyncio.wait(stopped)
    # Every failure is read (none is reported as never retrieved); the first branch's raised.
    failures = [None if task.cancelled() else task.exception() for task in tasks]
    for task, failure in zip(tasks, failures, strict=True):
        if failure is not None:
            raise failure
        if task.cancelled() and task not in stopped:
            raise asyncio.CancelledError


def finish(
    run: _Run, name: str, started: float, attempts: int, delta: State, branch: str
) -> Awaitable[bool | None] | None:
    """Record a branch's step (or a map's call) that finished, and announce it.

    Numbered when it finishes, and appended and announced with no `await` between, so the
    steps' numbers have no gap and their events come in order.  The listener's awaitable,
    if it gave one, for `recorded`.
    """
    finished = time.time()
    seq = run.base + len(run.steps) + 1
    run.steps.append((seq, name, started, finished, attempts))
    run.deltas.append(delta)
    run.branches[seq] = branch
    if run.listener is None:
        return None
    return run.listener(
        Event("node_finished", run.run_id, seq, name, finished, delta=delta,
              duration_ms=(finished - started) * 1000, attempts=attempts, branch=branch)
    )  # fmt: skip


async def recorded(pending: Awaitable[bool | None]) -> bool:
    """Await a branch step's recording to its end, even if the branch is cancelled meanwhile.

    Cut short, a durable write could leave a step out of the log while a later one gets in.
    True when the listener says it waited for I/O.
    """
    inner = asyncio.ensure_future(pending)
    try:
        return await asyncio.shield(inner) is True
    except asyncio.CancelledError:
        await asyncio.wait({inner})
        if not inner.cancelled():
            inner.exception()  # read: the branch is stopping, its cancel is what matters
        raise
