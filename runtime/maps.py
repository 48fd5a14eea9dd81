"""A map node and the list it reads -> one call of its tool per item, then one collecting step.

A map node (`node fixes = for issue in issues: fix_issue`) calls its tool once per item of
the list under `over`, each call on its own copy of the state with a copy of the item
under `item`, at most `max_parallel` calls at once (the run's `Gates`, which parallel
branches share).  The node's policies apply to each call.  What a call returns is its
item's result, checked and measured like a tool's updates but not merged into the state;
each call is recorded when it finishes as a step of the map node whose `branch` is the
item's index and whose delta is the result, so steps are numbered in the order calls
finish.  When every call is done, one more step of the map node, on the main line, writes
the results in the list's order under the node's name, and the run goes on along its
route.  A call that fails after its retries cancels the others and fails the run, or takes
the node's error route.  A sync tool without a policy is called inline, item after item (it
holds the event loop while it runs anyway), without a task per call.  A run resumed in the
middle of a map (`Resume.branches`) calls only the items whose call was not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flowc.compiler.ir import MapOver
from flowc.compiler.tools import KeyContract
from flowc.compiler.types import FlowType, describe
from flowc.compiler.types import problems_with as type_problems
from flowc.runtime.contracts import broken_write
from flowc.runtime.events import Event, RunError, RunFailed, Step
from flowc.runtime.parallel import Gates, InBranch, Routed, every, finish, recorded, route
from flowc.runtime.policies import PLAIN
from flowc.runtime.state import (
    LimitError,
    ReturnError,
    ReturnLimitError,
    StateMeter,
    copy_json,
    returned_entry,
)

if TYPE_CHECKING:
    from flowc.runtime.interpreter import _Plan, _Run
    from flowc.runtime.registry import Tool

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MapPlan:
    """A map node: its plan, the names of its item and of its list, and what results fit.

    `declared` is the type the flow declares under the node's name, if any; `fits` the type
    each result must fit (its items' type, when that is a list's and not `any`).
    """

    plan: _Plan
    item: str
    over: str
    declared: FlowType | None = None
    fits: FlowType | None = None

    @classmethod
    def of(cls, plan: _Plan, mapped: MapOver, declared: Mapping[str, FlowType] | None) -> MapPlan:
        """The map node `plan` runs, over `mapped.over`, in a flow that `declared` these keys."""
        kind = declared.get(plan.name) if declared else None
        if kind is None or kind.is_any:
            return cls(plan, mapped.item, mapped.over)
        fits = kind.items if kind.kind == "list" else None
        return cls(
            plan, mapped.item, mapped.over, kind, None if fits is None or fits.is_any else fits
        )


class Map:
    """One map node's calls in flight: the results so far, by the index of their item."""

    def __init__(self, run: _Run, plan: MapPlan, state: State, seq: int) -> None:
        self.owner = run
        self.plan = plan
        self.state = state  # as the run reached the map: each call's, and the collection's
        self.seq = seq  # the step the calls started after, which their idempotency keys name
        self.results: dict[int, State] = {}
        self.size = 0  # the results' sizes as JSON, added up
        _, self.empty = run.meter.measure(plan.plan.name, [])  # `"NAME":[]`'s size
        #: What the tool declares it returns (its `writes`), once the run looked it up.
        self.writes: tuple[KeyContract, ...] | None = None
        self.running = 0  # calls started and not finished
        #: The state's keys that hold containers: each call gets its own copy of them.
        self.containers = {
            key for key, value in state.items() if type(value) in (dict, list) and key != plan.item
        }

    @property
    def next_node(self) -> str:
        """The map node: a resumed run goes on there."""
        return self.plan.plan.name

    def replay(self, steps: Sequence[Step]) -> None:
        """Take in the calls a run recorded before it was resumed: their items are done."""
        name = self.plan.plan.name
        for step in steps:
            index = _index(step.branch)
            if step.node != name or step.failed or index is None or index in self.results:
                raise RunFailed(
                    RunError(
                        "unknown_node",
                        f"step {step.seq} ran `{step.node}` in branch {step.branch!r} before "
                        f"the map `{name}` collected its results, where its flow has no such "
                        "step to resume",
                        step.node,
                    )
                )
            try:
                self.results[index] = self._take(index, step.delta)
            except ReturnError as problem:
                code = "limit" if isinstance(problem, ReturnLimitError) else "bad_return"
                raise RunFailed(
                    RunError(code, f"step {step.seq} of the map `{name}` {problem}", name)
                ) from None

    async def run(self, tools: dict[str, Tool]) -> tuple[State, str]:
        """Call the tool for each item not done, then collect: the state, and the next node.

        The state's measured sizes are the map's again afterwards, plus the collection's.
        """
        run, plan, over = self.owner, self.plan.plan, self.plan.over
        items = self.state.get(over)
        if type(items) is not list:
            held = f"holds {describe(items)}" if over in self.state else "is not in the state"
            raise RunFailed(
                RunError(
                    "bad_input",
                    f"node `{plan.name}` maps over `{over}`, which {held}, not a list",
                    plan.name,
                    plan.span,
                )
            )
        if self.results and max(self.results) >= len(items):
            index = max(self.results)
            raise RunFailed(
                RunError(
                    "unknown_node",
                    f"the map `{plan.name}` has a step for item {index} of `{over}`, which "
                    f"holds {len(items)} items: its flow has no such step to resume",
                    plan.name,
                    plan.span,
                )
            )
        todo = [index for index in range(len(items)) if index not in self.results]
        self._room(len(todo))
        _, tool = run._resolve(plan.name, tools)
        self.writes = tool.spec.writes
        meter = run.meter
        sizes = dict(meter.keys), meter.total
        started = time.time()
        try:
            if todo and tool.mode == "sync" and plan.policy is None:
                await self._inline(tool, items, todo)
            elif todo:
                await self._pooled(tool, items, todo)
        except Routed as routed:
            meter.keys, meter.total = sizes
            return await route(run, routed, self.state)
        meter.keys, meter.total = sizes
        return await self._collect(len(items), started)

    def _room(self, calls: int) -> None:
        """Fail the run before any call if the calls and the collection pass `max_steps`."""
        run, plan = self.owner, self.plan.plan
        max_steps = run.engine.flow.settings.max_steps
        taken = run.base + len(run.steps)
        if taken + calls + 1 > max_steps:
            raise RunFailed(
                RunError(
                    "max_steps",
                    f"the map `{plan.name}` needs {calls + 1} step{'s' if calls else ''} "
                    f"({calls} items of `{self.plan.over}`, then their collection) and the "
                    f"run has room for {max_steps - taken} (max_steps = {max_steps}); it was "
                    "stopped before calling its tool",
                    plan.name,
                    plan.span,
                )
            )

    def _take(self, index: int, result: Any) -> State:
        """A call's return value as its item's result: copied, checked and measured.

        `ReturnError` when it is not a result (or not one the declarations allow),
        `ReturnLimitError` when the results so far would not fit in the state.
        """
        run, name = self.owner, self.plan.plan.name
        taken, size = result_of(result, run.meter, self.writes)
        if self.plan.fits is not None:
            found = type_problems(self.plan.fits, taken, limit=1)
            if found:
                path, message = found[0]
                raise ReturnError(
                    "returned a result that does not fit the flow's "
                    f"declaration `state {name}: {self.plan.declared}` (at `{name}/{index}"
                    f"{path}`): {message}"
                )
        meter = run.meter
        # The state with the list as it would be now: its old value out, the list and its
        # commas in (one more entry, and one between each two results).
        whole = meter.total - meter.keys.get(name, 0) + 1 + self.empty + self.size + size
        whole += len(self.results)
        if whole > meter.limits.max_state_bytes:
            raise ReturnLimitError(
                "returned a result that would make the state about "
                f"{whole:,} bytes as JSON with the results before it, more than "
                f"{meter.limits.named('max_state_bytes')}"
            )
        self.size += size
        return taken

    def _on_item(self, error: RunError, index: int) -> RunError:
        """`error`, its message saying which item's call it comes from."""
        return replace(error, message=f"item {index} of `{self.plan.over}`: {error.message}")

    async def _inline(self, tool: Tool, items: list[Any], todo: list[int]) -> None:
        """Call a sync tool without a policy for each item, one after the other."""
        run, plan, item = self.owner, self.plan.plan, self.plan.item
        name, function, state = plan.name, tool.function, self.state
        steps, deltas, branches, cursor = run.steps, run.deltas, run.branches, run.cursor
        listener, containers = run.listener, self.containers
        slice_steps = run.engine.limits.slice_steps
        slice_seconds = run.engine.limits.slice_ms / 1000
        left, slice_ends = slice_steps, time.time() + slice_seconds
        cursor.fork = self.seq
        for index in todo:
            seq = run.base + len(steps) + 1
            branch = str(index)
            if listener is not None:
                pending = listener(
                    Event("node_started", run.run_id, seq, name, time.time(), branch=branch)
                )
                if pending is not None:
                    await pending
            given = dict(state)
            for key in containers:
                given[key] = copy_json(given[key])
            given[item] = copy_json(items[index])
            args = copy_json(plan.args) if plan.copy_args else plan.args
            started = time.time()
            cursor.node, cursor.item = name, index
            try:
                result = function(given, **args)
                delta = self._take(index, result)
            except Exception as exc:  # the call's failure is the run's: no policy, no route
                raise RunFailed(self._on_item(run._failure(exc, plan), index)) from None
            finally:
                cursor.node = cursor.item = None
            self.results[index] = delta
            finished = time.time()
            steps.append((seq, name, started, finished, 1))
            deltas.append(delta)
            branches[seq] = branch
            waited = False
            if listener is not None:
                pending = listener(
                    Event("node_finished", run.run_id, seq, name, finished, delta=delta,
                          duration_ms=(finished - started) * 1000, attempts=1, branch=branch)
                )  # fmt: skip
                if pending is not None:
                    waited = await pending is True
            left -= 1
            if waited:  # the listener waited for I/O: the loop had its turn, a new slice
                left, slice_ends = slice_steps, time.time() + slice_seconds
            elif not left or finished >= slice_ends:
                await asyncio.sleep(0)
                left, slice_ends = slice_steps, time.time() + slice_seconds

    async def _pooled(self, tool: Tool, items: list[Any], todo: list[int]) -> None:
        """Call the tool for each item as tasks, at most `max_parallel` at once."""
        run = self.owner
        if run.gates is None:
            run.gates = Gates(run.engine.max_parallel, run.engine.max_threads_per_run)
        queue = iter(todo)  # each task takes the next item when it is free
        count = min(run.engine.max_parallel, len(todo))
        await every([asyncio.ensure_future(self._calls(queue, tool, items)) for _ in range(count)])

    async def _calls(self, queue: Iterator[int], tool: Tool, items: list[Any]) -> None:
        for index in queue:
            await self._call(index, tool, items)

    async def _call(self, index: int, tool: Tool, items: list[Any]) -> None:
        """One item's call: run under the gates, numbered and recorded when it finishes."""
        run, plan, gates = self.owner, self.plan.plan, self.owner.gates
        assert gates is not None
        branch = str(index)
        threaded = tool.mode == "thread" or (
            tool.mode == "sync" and (plan.policy or PLAIN).timeout is not None
        )
        async with gates.steps:
            self.running += 1
            try:
                async with gates.threads if threaded else contextlib.nullcontext():
                    seq = run.base + len(run.steps) + self.running  # if none finishes first
                    if run.listener is not None:
                        at = time.time()
                        await run.emit(
                            Event("node_started", run.run_id, seq, plan.name, at, branch=branch)
                        )
                    state = {**self.state, self.plan.item: items[index]}
                    containers = self.containers
                    if type(items[index]) in (dict, list):
                        containers = containers | {self.plan.item}
                    take = functools.partial(self._take, index)
                    within = InBranch(branch, self.seq, state, None, index, take)
                    try:
                        started, delta, attempts, failed = await run._attempts(
                            plan, tool, state, containers, seq, within
                        )
                    except RunFailed as failure:
                        raise RunFailed(self._on_item(failure.error, index)) from None
            finally:
                self.running -= 1
            if failed:
                error = delta["error"]
                error = {**error, "message": f"item {index} of `{self.plan.over}`: "
                                             f"{error['message']}"}  # fmt: skip
                raise Routed(plan, started, {"error": error}, attempts)
            self.results[index] = delta
            pending = finish(run, plan.name, started, attempts, delta, branch)
            waited = pending is not None and await recorded(pending)
        if not waited:
            await asyncio.sleep(0)  # the other calls' turn, and the event loop's

    async def _collect(self, count: int, started: float) -> tuple[State, str]:
        """Write the results, in the list's order, under the node's name: one main-line step."""
        run, plan = self.owner, self.plan.plan
        name = plan.name
        results = [self.results[index] for index in range(count)]
        declared = self.plan.declared
        if declared is not None and self.plan.fits is None:
            found = type_problems(declared, results, limit=1)
            if found:
                path, message = found[0]
                at = f" (at `{name}{path}`)" if path else ""
                raise RunFailed(
                    RunError(
                        "bad_return",
                        f"the results of the map `{name}` do not fit the flow's declaration "
                        f"`state {name}: {declared}`{at}: {message}",
                        name,
                        plan.span,
                    )
                )
        meter = run.meter
        size = self.empty + (self.size + count - 1 if count else 0)
        try:
            meter.admit({name: size}, f"the results of the map `{name}`")
        except LimitError as problem:
            raise RunFailed(RunError("limit", problem.problem, name, plan.span)) from None
        seq = run.base + len(run.steps) + 1
        return await run.finished_step(plan, seq, started, {name: results}, self.state)


def result_of(
    result: Any, meter: StateMeter, writes: tuple[KeyContract, ...] | None = None
) -> tuple[State, int]:
    """A map call's return value as its result, copied and checked, and its size as JSON.

    None is `{}`.  `ReturnError` for anything but a dict of storable JSON, or for a dict
    that breaks the tool's declared `writes`; `ReturnLimitError` for a value past a limit.
    """
    if result is None:
        return {}, 2
    if type(result) is not dict:
        if not isinstance(result, dict):
            raise ReturnError(
                f"returned a {type(result).__name__}; a map's tool returns a dict (the result "
                "for its item) or None"
            )
        result = dict(result)
    taken: State = {}
    size = 1  # `{}`, less the comma the first entry does not have
    for key, value in result.items():
        taken[key], entry = returned_entry(meter, key, value)
        size += entry + 1
    if writes is not None:
        broken = broken_write(writes, result, taken, {})
        if broken is not None:
            raise ReturnError(broken)
    return taken, size if taken else 2


def _index(branch: str | None) -> int | None:
    """The item index a recorded call's `branch` names, if it names one."""
    if branch is None or not (branch.isascii() and branch.isdigit()):
        return None
    return int(branch)
