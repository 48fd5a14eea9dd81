"""A sub-flow node and its parent's state -> the child flow run as a run of its own, its delta.

A node `review = flow code_review` runs another flow (its IR held whole in the node's) as
one step of its parent.  The child is a run of its own, whose id is derived from its
parent's and from the number of the node's step (`child_run_id`): a parent resumed after a
crash finds the same child.  Its input is the parent's values for the keys it declares
(its own defaults fill the rest), or a copy of the whole state when it declares none.
When it succeeds, the node's delta is what the child changed (the keys whose final value
is new or differs from its initial state; of those, only the keys the parent declares when
the parent declares any), checked and measured like a tool's updates.  A child that fails
fails the node with `subflow_failed`; like any failure of the node's step, that takes the
node's error route (`on_error`), if it has one.  Only `on_error` applies to a sub-flow
node: timeouts and retries (the node's or the flow's) do not.

Who runs the child is the engine's `SubflowHost`: `LocalSubflows` (the default) runs it in
memory, in the parent's task; the server's makes it durable.  The child's events reach the
parent's listener as `ChildEvent`s, between the node's `node_started` and `node_finished`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flowc.compiler.inputs import Inputs
from flowc.compiler.ir import Node, Span, SubFlow
from flowc.compiler.program import MAX_FLOW_DEPTH
from flowc.runtime.calls import RunThreads
from flowc.runtime.events import (
    JOIN,
    ChildEvent,
    Event,
    RunError,
    RunEvent,
    RunFailed,
    RunResult,
)
from flowc.runtime.state import ReturnError, ReturnLimitError, unchanged, updates
from flowc.runtime.waits import waits_of

if TYPE_CHECKING:
    from flowc.runtime.interpreter import Listener, WorkflowEngine, _Plan, _Run

State = dict[str, Any]

#: The namespace of child run ids: uuid5 over `PARENT_RUN_ID:SEQ`.
CHILD_RUNS = uuid.UUID("6f1c0b52-3c5e-5d8e-9a57-0d5f1c0a7e11")

#: The node's step failed because its child run did not succeed.
SUBFLOW_FAILED = "subflow_failed"
#: The child would nest deeper than `MAX_FLOW_DEPTH` flows.
SUBFLOW_DEPTH = "subflow_depth"
#: The child has a wait node, which a sub-flow cannot have.
SUBFLOW_WAITS = "subflow_waits"
#: A parallel branch reached a sub-flow node.
SUBFLOW_IN_BRANCH = "subflow_in_branch"


def child_run_id(parent_run_id: str, seq: int) -> str:
    """The id of the child run that step `seq` of run `parent_run_id` starts.

    The same for every execution of that step, formatted like the parent's (hyphens, or
    32 hex digits).
    """
    child = uuid.uuid5(CHILD_RUNS, f"{parent_run_id}:{seq}")
    return str(child) if "-" in parent_run_id else child.hex


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One run of a sub-flow, as its host gets it.

    `seq` is the number of the step the sub-flow node gets in its parent; `input` the
    child's input (before its defaults); `engine` the child's, whose own host is its
    parent's; `listener` passes the child's events on to the parent's listener (None when
    nobody listens); `threads` the parent's bound of tool threads, which the child counts
    against too (a run and its sub-flows hold at most `max_threads_per_run` threads).
    """

    parent_run_id: str
    seq: int
    node: str
    flow: SubFlow
    run_id: str
    engine: WorkflowEngine
    input: State
    listener: Listener | None
    threads: RunThreads | None = None


class SubflowHost(Protocol):
    """Runs the child runs of an engine's sub-flow nodes (`LocalSubflows`, or a durable one)."""

    async def run_child(self, child: ChildRun) -> RunResult:
        """Run the child (or go on with it, or read how it ended); how it ended.

        Cancelled, it stops the child (which ends `cancelled`) and lets `CancelledError`
        through.
        """
        ...


class LocalSubflows:
    """The default host: the child runs in memory, in its parent's task, from its start."""

    async def run_child(self, child: ChildRun) -> RunResult:
        """Run the child to its end; cancelled, tell the listener it ended `cancelled`."""
        trail = None if child.listener is None else _Trail(child.listener, initial_state(child))
        try:
            return await child.engine.run(
                initial_state=child.input, run_id=child.run_id, listener=trail,
                threads=child.threads,
            )  # fmt: skip
        except asyncio.CancelledError:
            if trail is not None:
                await trail.cancelled(child.run_id)
            raise


#: The host of engines that are not given one.
LOCAL = LocalSubflows()


class _Trail:
    """A child's listener that passes its events on and keeps its steps and state.

    So that a child cut short by its parent's cancel can end with a final event, as a run
    that ended does.
    """

    __slots__ = ("listener", "state", "steps")

    def __init__(self, listener: Listener, state: State) -> None:
        self.listener = listener
        self.state = state
        self.steps = 0

    def __call__(self, event: RunEvent) -> Awaitable[bool | None] | None:
        if event.type == "node_finished":
            self.steps = max(self.steps, event.step)
            if event.delta and event.branch in (None, JOIN):
                self.state = {**self.state, **event.delta}
        return self.listener(event)

    async def cancelled(self, run_id: str) -> None:
        error = RunError("cancelled", "the run was cancelled with its parent run")
        pending = self.listener(
            Event("run_failed", run_id, self.steps, None, time.time(), status="cancelled",
                  state=self.state, error=error)
        )  # fmt: skip
        if pending is not None:
            await pending


def initial_state(child: ChildRun) -> State:
    """The child's state when it starts: its input, with the defaults it declares."""
    inputs = child.engine.inputs
    return inputs.with_defaults(child.input) if inputs.fields else dict(child.input)


def forwarder(listener: Listener, parent_run_id: str, node: str) -> Listener:
    """A listener for a child run that passes its events to `listener`, wrapped."""

    def forward(event: RunEvent) -> Awaitable[bool | None] | None:
        if event.type == "child":  # a grandchild's: named by its own parent already
            return listener(event)
        return listener(ChildEvent(event, parent_run_id, node))

    return forward


class SubflowPlan:
    """A sub-flow node of an engine: its plan, its child flow, and the child's engine."""

    def __init__(self, plan: _Plan, node: Node, parent: WorkflowEngine) -> None:
        assert node.flow is not None
        self.plan = plan
        self.flow = node.flow
        self.parent = parent
        self.inputs = Inputs.of(node.flow.ir)
        self.mapped = node.map is not None
        self.waits = waits_of(node.flow.ir)
        self._engine: WorkflowEngine | None = None

    def problem(self) -> RunError | None:
        """Why the child cannot run from here: too deep, it waits, the node maps it."""
        plan, name = self.plan, self.flow.name
        if self.mapped:
            return RunError(
                "unsupported",
                f"node `{plan.name}` maps the sub-flow `{name}`, which this engine does not run",
                plan.name,
                plan.span,
            )
        if self.parent.depth >= MAX_FLOW_DEPTH:
            return RunError(
                SUBFLOW_DEPTH,
                f"the sub-flow `{name}` would be flow number {self.parent.depth + 1} in a chain "
                f"of sub-flows, more than {MAX_FLOW_DEPTH} allowed",
                plan.name,
                plan.span,
            )
        if self.waits:
            wait = next(iter(self.waits))
            return RunError(
                SUBFLOW_WAITS,
                f"the sub-flow `{name}` has the wait node `{wait}`, and a sub-flow cannot wait "
                "for input: wait in the flow that runs it",
                plan.name,
                plan.span,
            )
        return None

    def engine(self) -> WorkflowEngine:
        """The child's engine, made on first use: the parent's registry, limits and host."""
        if self._engine is None:
            from flowc.runtime.interpreter import WorkflowEngine

            parent = self.parent
            # A child's input is (some of) its parent's state, which fits the state limit
            # already: the bound of a run's input, given by a client, is not its bound.
            limits = parent.limits
            limits = dataclasses.replace(limits, max_input_bytes=limits.max_state_bytes)
            self._engine = WorkflowEngine(
                self.flow.ir,
                parent.registry,
                max_threads_per_run=parent.max_threads_per_run,
                limits=limits,
                host=parent.host,
            )
            self._engine.depth = parent.depth + 1
        return self._engine

    def input_of(self, state: State) -> State:
        """The child's input: the parent's values of the keys it declares, or all of them."""
        fields = self.inputs.fields
        if not fields:
            return dict(state)
        return {key: state[key] for key in fields if key in state}


def delta_of(
    initial: Mapping[str, Any], final: Mapping[str, Any], kept: Mapping[str, Any] | None
) -> State:
    """What a child changed: its final state's keys new or changed since `initial`.

    Only the keys in `kept` (the parent's declarations) when it is given.
    """
    return {
        key: value
        for key, value in final.items()
        if (kept is None or key in kept)
        and (key not in initial or not unchanged(initial[key], value))
    }


class Subflow:
    """One sub-flow node's step: its child run, then the step that records what it changed."""

    def __init__(self, run: _Run, plan: SubflowPlan, state: State, seq: int) -> None:
        self.owner = run
        self.plan = plan
        self.state = state
        self.seq = seq + 1  # the node's step

    async def run(self) -> tuple[State, str]:
        """Run the child, record the node's step: the state, and the next node."""
        run, plan = self.owner, self.plan.plan
        run._room(plan, 0)
        if run.listener is not None:
            await run.emit(Event("node_started", run.run_id, self.seq, plan.name, time.time()))
        started = time.time()
        try:
            delta = await self._child()
        except RunFailed as failure:
            return await self._failed(failure.error, started)
        return await run.finished_step(plan, self.seq, started, delta, self.state)

    async def _child(self) -> State:
        """Run the child through the host; the node's delta, or `RunFailed` why there is none."""
        run, sub, plan = self.owner, self.plan, self.plan.plan
        problem = sub.problem()
        if problem is not None:
            raise RunFailed(problem)
        try:
            engine = sub.engine()
        except Exception as exc:  # an IR that validated but cannot be planned
            raise RunFailed(
                RunError(SUBFLOW_FAILED, f"sub-flow `{plan.name}` cannot run: {exc}", plan.name,
                         plan.span)
            ) from None  # fmt: skip
        given = sub.input_of(self.state)
        listener = run.listener
        if run.threads is None:  # made here, so that the child counts against the same
            run.threads = RunThreads(run.engine.max_threads_per_run)
        child = ChildRun(
            run.run_id, self.seq, plan.name, sub.flow, child_run_id(run.run_id, self.seq), engine,
            given, None if listener is None else forwarder(listener, run.run_id, plan.name),
            run.threads,
        )  # fmt: skip
        result = await run.engine.host.run_child(child)
        if result.status != "succeeded":
            raise RunFailed(failed(plan.name, plan.span, child.run_id, result))
        changed = delta_of(initial_state(child), result.state, run.engine.declared)
        try:
            return updates(changed, self.state, run.meter, None, run.engine.declared)
        except ReturnLimitError as problem:
            raise RunFailed(
                RunError("limit", f"sub-flow `{plan.name}` {problem}", plan.name, plan.span)
            ) from None
        except ReturnError as problem:
            raise RunFailed(
                RunError("bad_return", f"sub-flow `{plan.name}` {problem}", plan.name, plan.span)
            ) from None

    async def _failed(self, error: RunError, started: float) -> tuple[State, str]:
        """The node's step failed: recorded into its error route, or the run's failure."""
        run, plan = self.owner, self.plan.plan
        if plan.policy is not None and plan.policy.on_error is not None:
            written = run._error_delta(plan, error, 1, self.state)
            if written is not None:
                return await run._failed_step(plan, self.seq, started, written, 1, self.state)
        raise RunFailed(error)


def failed(node: str, span: Span | None, run_id: str, result: RunResult) -> RunError:
    """The error of a sub-flow node whose child run `run_id` ended without succeeding."""
    error = result.error
    if result.status == "waiting" and result.waiting is not None:
        why = f"{SUBFLOW_WAITS}: it stopped at the wait node `{result.waiting.node}`"
    elif error is not None:
        why = f"{error.code}: {error.message}"
    else:
        why = f"it ended {result.status}"
    return RunError(SUBFLOW_FAILED, f"sub-flow `{node}` (run {run_id}) failed: {why}", node, span)


def in_branch(node: str, span: Span | None) -> RunError:
    """The error of a run that reached sub-flow node `node` in a parallel branch."""
    return RunError(
        SUBFLOW_IN_BRANCH,
        f"node `{node}` runs a sub-flow, which a parallel branch cannot do: run it before "
        "the branches start or after they join",
        node,
        span,
    )
