"""IR + registered tools -> a run: walk the graph in a `while` loop, emitting events.

Each step is a tool call, a dict merge, a routing decision and (when someone listens) two
events.  A node with a policy (a timeout, retries, an error route) takes the slower road
through `_attempts`: each attempt timed, each failed one an event, retries after a jittered
backoff.  A failure ends the run as `failed` with a structured `RunError` and the last good
state, unless it is a step's own failure and its node has an error route (`on_error`): then
the step is recorded as failed, with the error as `error` in the state, and the run goes on
at the route's target.  Nothing escapes as a stack trace.  Cancelling the task that runs a
run is not a failure: `CancelledError` goes through, and the caller reports the run
`cancelled`.  What a run may hold is bounded by its `Limits` (checked on each delta as it
is copied), and it gives the event loop back every `slice_steps` steps or `slice_ms`
milliseconds.  After a node whose route is parallel branches, `runtime.parallel` runs
them and joins them; a map node's calls and their collection are `runtime.maps`', and a
sub-flow node's child run is `runtime.subflows`' (the hot path only meets a fork, a map or a
sub-flow when it finds no plan by the name).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flowc.compiler import compile_source
from flowc.compiler.inputs import Inputs
from flowc.compiler.ir import Branch, Flow, Node, Parallel, Span
from flowc.compiler.operators import Budget
from flowc.compiler.program import DEFAULT_MAX_PARALLEL, END, WAIT
from flowc.compiler.types import FlowType
from flowc.runtime.calls import CallFailed, RunThreads, call_async
from flowc.runtime.conditions import Condition, ConditionError, compile_condition
from flowc.runtime.context import STEP, StepContext, StepCursor
from flowc.runtime.events import JOIN, Event, RunError, RunEvent, RunFailed, RunResult, Step
from flowc.runtime.maps import Map, MapPlan
from flowc.runtime.parallel import Fork, ForkPlan, Gates, InBranch
from flowc.runtime.policies import (
    PLAIN,
    RETRIED,
    NodePolicy,
    node_policy,
    retry_delay,
    subflow_policy,
)
from flowc.runtime.processes import call_in_process
from flowc.runtime.registry import REGISTRY, Registry, Tool
from flowc.runtime.state import (
    LimitError,
    Limits,
    ReturnError,
    ReturnLimitError,
    StateError,
    StateMeter,
    copy_json,
    updates,
)
from flowc.runtime.subflows import LOCAL, Subflow, SubflowHost, SubflowPlan
from flowc.runtime.subflows import in_branch as subflow_in_branch
from flowc.runtime.waits import RunWaiting, in_branch, waits_of

State = dict[str, Any]
#: Called with each event (a sub-flow's, wrapped: `ChildEvent`); the engine awaits what it
#: returns, if anything.  An awaitable that answers True says it waited for I/O (a durable
#: write, say): the event loop had its turn meanwhile, so the run's time slice starts again
#: instead of yielding once more.
Listener = Callable[[RunEvent], Awaitable[bool | None] | None]

#: How many of the last nodes a `max_steps` error names.
TRAIL = 8
#: Characters of a failed tool's exception a run error keeps: the rest is cut, its length
#: said (an exception's text is the tool's to choose, and may be any size).
MAX_ERROR_DETAIL = 2_000

#: How many of an input's problems a `bad_input` error names.
SHOWN_PROBLEMS = 10

#: How many tool threads a run may have alive at once (abandoned ones included).
DEFAULT_THREADS_PER_RUN = 4


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a run goes on: `initial_state` is the state after step `seq`, which ran `after`.

    Step `seq` is the last of the main line or a join (never a parallel branch's step: the
    state is the main line's).  `failed`: that step failed and took its node's error route,
    so the run goes on at the route's target rather than along the node's own route.
    `joined`: it is the step that joined the branches after node `after`, so the run goes on
    at their join.  `branches`: the steps of the branches that `after`'s step started,
    recorded after it, in order; the run runs what they left of their branches (each on
    `initial_state` and its own steps' deltas), then joins them.  Or the calls of the map
    node the run goes on at (`runtime.maps`), which calls only the items they did not do.
    `after` None (and `seq` 0): no main-line step was recorded, and the run goes on at the
    flow's start, a map with some of its calls recorded (`branches`).
    """

    after: str | None
    seq: int
    failed: bool = False
    joined: bool = False
    branches: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        if self.after is None and self.seq != 0:
            raise ValueError(f"Resume.seq is 0 when `after` is None, not {self.seq!r}")
        least = 0 if self.after is None else 1
        if type(self.seq) is not int or self.seq < least:
            raise ValueError(f"Resume.seq is a step number, 1 or more, not {self.seq!r}")
        if self.failed and self.joined:
            raise ValueError("a Resume is after a failed step or a join, not both")
        if self.after is None and (self.failed or self.joined):
            raise ValueError("Resume.failed and Resume.joined are about the step `after` ran")
        seq = self.seq
        for step in self.branches:
            if step.branch is None or step.branch == JOIN or step.seq <= seq:
                raise ValueError(
                    "Resume.branches are steps of parallel branches after `seq`, in order, "
                    f"not {step!r}"
                )
            seq = step.seq

    @property
    def last(self) -> int:
        """The number of the last step recorded: the run numbers its new steps after it."""
        return self.branches[-1].seq if self.branches else self.seq


@dataclass(frozen=True, slots=True)
class _Plan:
    """What running one node needs, worked out once per engine."""

    name: str
    tool: str
    args: dict[str, Any]
    copy_args: bool
    span: Span | None
    goto: str | None  # the next node for a plain edge, END when the run ends here
    arms: tuple[tuple[Condition, str], ...]
    otherwise: str | None
    policy: NodePolicy | None  # None: no timeout and no retries, the fast road


class WorkflowEngine:
    """Runs a compiled flow with the tools of a registry (the default one by default).

    `max_threads_per_run` bounds the threads of one run's blocking tools (and of its sync
    tools with a timeout) alive at once, abandoned ones included.  `limits` bound what a
    run may hold and do (`Limits()`, the runtime's defaults, unless given).  `host` runs
    the child runs of its sub-flow nodes (`runtime.subflows`; in memory unless given), and
    the engines of its sub-flows share it.
    """

    def __init__(
        self,
        flow: Flow | str,
        registry: Registry | None = None,
        *,
        max_threads_per_run: int = DEFAULT_THREADS_PER_RUN,
        limits: Limits | None = None,
        host: SubflowHost | None = None,
    ) -> None:
        if type(max_threads_per_run) is not int or max_threads_per_run < 1:
            raise ValueError(f"max_threads_per_run must be 1 or more, not {max_threads_per_run!r}")
        self.registry = registry if registry is not None else REGISTRY
        if isinstance(flow, str):
            flow = compile_source(flow, tools=self.registry.specs()).ir
        self.flow = flow
        #: The flow's declared state keys: what a new run's input must hold, and defaults.
        self.inputs = Inputs.of(flow)
        #: The declared keys' types, which every value a tool gives them must fit; None
        #: for a flow without declarations (nothing to check on the hot path).
        self.declared = {k: f.type for k, f in self.inputs.fields.items()} or None
        self.max_threads_per_run = max_threads_per_run
        self.limits = limits if limits is not None else Limits()
        self.host: SubflowHost = host if host is not None else LOCAL
        #: 1 for a flow run on its own; its sub-flows' engines count on from it.
        self.depth = 1
        #: How many branch steps of a run execute at once.
        self.max_parallel = flow.settings.max_parallel or DEFAULT_MAX_PARALLEL
        #: The declared keys' reducers, and the types a branch's writes must fit.
        self.reducers = {key.name: key.reducer for key in flow.state if key.reducer is not None}
        self.branch_declared = self.declared
        if self.declared is not None:
            self.branch_declared = {
                key: declared.items if self.reducers.get(key) == "append" else declared
                for key, declared in self.declared.items()
            }
        #: The wait nodes: the run stops at one of them (`runtime.waits`).
        self.waits = waits_of(flow)
        self._plans = {node.name: self._plan(node) for node in flow.nodes}
        self._forks = {
            fork.key: fork
            for fork in (
                ForkPlan(name, route.branches, route.join, route.span)
                for name, route in flow.routes.items()
                if isinstance(route, Parallel)
            )
        }
        self._maps = {
            node.name: MapPlan.of(self._plans[node.name], node.map, self.declared)
            for node in flow.nodes
            if node.map is not None and node.flow is None
        }
        #: The sub-flow nodes: each runs its flow as a run of its own (`runtime.subflows`).
        self._subflows = {
            node.name: SubflowPlan(self._plans[node.name], node, self)
            for node in flow.nodes
            if node.flow is not None
        }
        #: The names of the sub-flow nodes.
        self.subflows = tuple(self._subflows)
        #: The plans of the nodes the hot path runs itself: every node's but a map's or a
        #: sub-flow's.
        self._plain = {
            name: plan
            for name, plan in self._plans.items()
            if name not in self._maps and name not in self._subflows
        }

    def _plan(self, node: Node) -> _Plan:
        name = node.name
        route = self.flow.routes.get(name)
        arms: tuple[tuple[Condition, str], ...] = ()
        goto: str | None = END
        otherwise = None
        if isinstance(route, Branch):
            goto = None
            otherwise = route.otherwise
            arms = tuple(
                (
                    compile_condition(
                        arm.condition, f"the condition on line {_line(arm.condition)}"
                    ),
                    arm.target,
                )
                for arm in route.arms
            )
        elif isinstance(route, Parallel):
            goto = ForkPlan(name, route.branches, route.join, route.span).key
        elif route is not None:
            goto = route.target
        copy_args = any(isinstance(v, (dict, list)) for v in node.args.values())
        policy = (
            node_policy(self.flow.settings, node.policy)
            if node.flow is None
            else subflow_policy(node.policy)
        )
        return _Plan(
            name, node.tool, dict(node.args), copy_args, node.span, goto, arms, otherwise, policy
        )

    async def run(
        self,
        start_node: str | None = None,
        initial_state: State | None = None,
        *,
        run_id: str | None = None,
        listener: Listener | None = None,
        resume: Resume | None = None,
        threads: RunThreads | None = None,
    ) -> RunResult:
        """Run from `start_node` (default: the flow's start) until `end`, or until it fails.

        With `resume`, go on from a run's step `resume.seq` instead: `initial_state` is the
        state after it, the next node is where `resume.after`'s route leads, new steps are
        numbered from `seq + 1` and the old ones count against `max_steps`; the result holds
        the new steps only.  If the task awaiting this is cancelled, `CancelledError` goes
        through (no final event is emitted: the caller reports the run `cancelled`).
        `threads`: the bound of tool threads to count against, when the run shares one (a
        sub-flow's run, its parent's); by default the run has its own.
        """
        if resume is not None and start_node is not None:
            raise ValueError("give `start_node` or `resume`, not both")
        return await _Run(self, run_id or uuid.uuid4().hex, listener, threads).execute(
            start_node or self.flow.start, initial_state, resume
        )

    async def stream(
        self,
        start_node: str | None = None,
        initial_state: State | None = None,
        *,
        run_id: str | None = None,
        resume: Resume | None = None,
    ) -> AsyncIterator[RunEvent]:
        """The events of one run, in order, as they happen; the last is final.

        Its sub-flows' events come wrapped (`ChildEvent`), where their nodes run.

        A run that raises instead of ending (its task cancelled, a bad argument) raises here.
        """
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.run(
                start_node, initial_state, run_id=run_id, listener=queue.put_nowait, resume=resume
            )
        )

        def wake(done: asyncio.Future[RunResult]) -> None:
            if done.cancelled() or done.exception() is not None:
                queue.put_nowait(None)  # a run that raised emits no final event: raise it here

        task.add_done_callback(wake)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
                if event.is_final:
                    break
            await task
        finally:
            if not task.done():
                task.cancel()


def _line(expr: Any) -> int | str:
    span = expr.get("span")
    return span["line"] if span else "?"


class _Run:
    """One run's mutable state: kept out of the engine so an engine can run many at once."""

    def __init__(
        self,
        engine: WorkflowEngine,
        run_id: str,
        listener: Listener | None,
        threads: RunThreads | None = None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.listener = listener
        self.state: State = {}
        #: The steps so far, in two columns: each `Step`'s fields but its delta, as an exact
        #: tuple, and the deltas.  Python's collector stops tracking a tuple of plain values
        #: (never a named tuple, nor one that holds a dict), so a long run's full
        #: collections do not walk millions of objects; a delta of plain values is not
        #: tracked either.
        self.steps: list[tuple[int, str, float, float, int]] = []
        self.deltas: list[dict[str, Any]] = []
        #: The numbers of the steps that failed and took their node's error route.
        self.failed: list[int] = []
        #: The `branch` of each step of a parallel branch, or of a join, by number.
        self.branches: dict[int, str] = {}
        #: How many branch steps may execute (and hold threads) at once: at the first fork.
        self.gates: Gates | None = None
        self.base = 0  # the steps run before this run resumed: `Resume.last`
        self.cursor = StepCursor(run_id, self.steps)
        self.threads = threads
        self.meter = StateMeter(engine.limits)

    async def emit(self, event: RunEvent) -> None:
        if self.listener is not None:
            pending = self.listener(event)
            if pending is not None:
                await pending

    async def execute(
        self, start: str, initial_state: State | None, resume: Resume | None
    ) -> RunResult:
        token = STEP.set(self.cursor)
        try:
            return await self._execute(start, initial_state, resume)
        finally:
            STEP.reset(token)

    async def _execute(
        self, start: str, initial_state: State | None, resume: Resume | None
    ) -> RunResult:
        try:
            self._check_max_steps()
            self.state = self._load(initial_state or {}, resume is None)
            fork: Fork | Map | None = None  # what a resumed run was in the middle of
            if resume is not None:
                self.base = self.cursor.base = resume.last
                start = self._after(resume)
                if resume.branches:
                    fork = self._resumed_fork(start, resume)
            shown = fork.next_node if fork is not None else self._shown(start)
            await self.emit(Event("run_started", self.run_id, self.base, shown, time.time()))
            # `wait` is built in: no registered tool of that name runs for a wait node.
            tools = {tool.spec.name: tool for tool in self.engine.registry}
            tools.pop(WAIT, None)
            if fork is not None:
                self.state, start = await fork.run(tools)
            await self._walk(start, tools)
        except RunWaiting as stop:  # nothing is recorded for the wait node until it goes on
            wait = stop.wait
            await self.emit(
                Event("run_waiting", self.run_id, self.base + len(self.steps), wait.node,
                      time.time(), status="waiting", state=self.state, waiting=wait)
            )  # fmt: skip
            return RunResult(self.run_id, "waiting", self.state, self._steps(), waiting=wait)
        except RunFailed as failure:
            error = failure.error
            at = time.time()
            await self.emit(
                Event("run_failed", self.run_id, self.base + len(self.steps), error.node, at,
                      status="failed", state=self.state, error=error)
            )  # fmt: skip
            return RunResult(self.run_id, "failed", self.state, self._steps(), error)
        last = self.steps[-1][1] if self.steps else resume.after if resume else None
        await self.emit(
            Event("run_finished", self.run_id, self.base + len(self.steps), last, time.time(),
                  status="succeeded", state=self.state)
        )  # fmt: skip
        return RunResult(self.run_id, "succeeded", self.state, self._steps())

    def _steps(self) -> list[Step]:
        """The steps, as the result holds them."""
        # Made by `tuple.__new__` with every field: half the cost of `Step(...)`, whose
        # `__new__` is a Python function, a thousand times for a 1,000-step run.
        new = tuple.__new__
        steps: list[Step] = [
            new(Step, (seq, node, delta, started, finished, attempts, False, None))
            for (seq, node, started, finished, attempts), delta in zip(
                self.steps, self.deltas, strict=True
            )
        ]
        for seq in self.failed:
            index = seq - self.base - 1
            steps[index] = steps[index]._replace(failed=True)
        for seq, branch in self.branches.items():
            index = seq - self.base - 1
            steps[index] = steps[index]._replace(branch=branch)
        return steps

    def _check_max_steps(self) -> None:
        limits = self.engine.limits
        max_steps = self.engine.flow.settings.max_steps
        if max_steps > limits.max_steps_limit:
            raise RunFailed(
                RunError(
                    "limit",
                    f"the flow sets max_steps = {max_steps:,}, more than "
                    f"{limits.named('max_steps_limit')} allows; lower `set max_steps`",
                )
            )

    def _load(self, initial_state: State, fresh: bool) -> State:
        """The initial state, copied, checked and measured (a fresh run's as its input).

        A fresh run's input must fit the flow's state declarations; the declared keys it
        leaves out take their defaults.  A resumed run's state already holds them.
        """
        if not isinstance(initial_state, dict):
            raise RunFailed(RunError("bad_input", "the initial state must be a JSON object"))
        try:
            if not fresh:
                return self.meter.load(initial_state, "the state")
            state = self.meter.load(initial_state, "the input", "max_input_bytes")
            return self._defaults(state)
        except LimitError as problem:
            message = problem.problem
            if problem.parts:
                message = f"the initial state at `{problem.where}`: {message}"
            raise RunFailed(RunError("limit", message)) from None
        except StateError as problem:
            raise RunFailed(
                RunError(
                    "bad_input",
                    f"the initial state is not JSON: {problem.where}: {problem.problem}",
                )
            ) from None

    def _defaults(self, state: State) -> State:
        """A fresh run's loaded input, checked against the declarations, defaults added."""
        inputs = self.engine.inputs
        if not inputs.fields:
            return state
        state = inputs.normalize(state)  # `3.0` for an `int` is 3, as the input schema says
        problems = inputs.problems(state)
        if problems:
            shown = "; ".join(problem.describe() for problem in problems[:SHOWN_PROBLEMS])
            more = len(problems) - SHOWN_PROBLEMS
            rest = f"; and {more} more" if more > 0 else ""
            raise RunFailed(
                RunError(
                    "bad_input",
                    f"the input does not fit the flow's state declarations: {shown}{rest}",
                )
            )
        sizes: dict[str, int] = {}
        for key, declared in inputs.fields.items():
            if key not in state and not declared.required:
                # `measure` copies the default: no run shares it with another.
                state[key], sizes[key] = self.meter.measure(key, declared.default)
        if sizes:
            self.meter.admit(sizes, "the defaults")
        return state

    def _after(self, resume: Resume) -> str:
        """Where a run resumed after `resume.after` goes next: its route, taken on the state.

        After a `failed` step, its node's error route; after a join, the branches' join;
        after no step (`after` None), the flow's start.
        """
        node = resume.after
        if node is None:
            return self.engine.flow.start
        plan = self.engine._plans.get(node)
        if plan is None:
            raise RunFailed(
                RunError("unknown_node", f"there is no node `{node}` to resume after", node)
            )
        if resume.joined:
            fork = self.engine._forks.get(plan.goto or "")
            if fork is None:
                raise RunFailed(
                    RunError(
                        "unknown_node",
                        f"node `{node}` starts no parallel branches to join",
                        node,
                        plan.span,
                    )
                )
            return fork.join
        if resume.failed:
            if plan.policy is None or plan.policy.on_error is None:
                raise RunFailed(
                    RunError(
                        "unknown_node",
                        f"node `{node}` has no error route (`on_error`) to resume on",
                        node,
                        plan.span,
                    )
                )
            return plan.policy.on_error
        return plan.goto if plan.goto is not None else self._branch(plan)

    def _resumed_fork(self, start: str, resume: Resume) -> Fork | Map:
        """The fork (or map) a run resumed in the middle of, its recorded steps taken in."""
        mapped = self.engine._maps.get(start)
        if mapped is not None:
            resumed = Map(self, mapped, self.state, resume.seq)
            resumed.replay(resume.branches)
            return resumed
        plan = self.engine._forks.get(start)
        if plan is None:
            message = f"node `{resume.after}` starts no parallel branches to resume"
            if resume.after is None or resume.failed or resume.joined:  # it could be a map
                message = f"the run goes on at `{start}`, which is not a map: no calls to resume"
            raise RunFailed(RunError("unknown_node", message, resume.after or start))
        fork = Fork(self, plan, self.state, resume.seq)
        fork.replay(resume.branches)
        return fork

    def _shown(self, start: str) -> str:
        """The node `run_started` names: `start`, or the first of a fork's branches."""
        fork = self.engine._forks.get(start)
        return fork.branches[0][0] if fork is not None else start

    def _resolve(self, name: str, tools: dict[str, Tool]) -> tuple[_Plan, Tool]:
        """A node's plan and tool, for a step off the hot path (a branch's)."""
        plan = self.engine._plans.get(name)
        if plan is None:
            raise RunFailed(RunError("unknown_node", f"there is no node `{name}`", name))
        tool = tools.get(plan.tool)
        if tool is None:
            if name in self.engine.waits:
                raise RunFailed(in_branch(name, plan.span))
            if name in self.engine._subflows:
                raise RunFailed(subflow_in_branch(name, plan.span))
            raise RunFailed(_unregistered(plan))
        return plan, tool

    async def _detour(
        self, node: str, state: State, seq: int, tools: dict[str, Tool]
    ) -> tuple[State, str]:
        """Run a fork, a map or a sub-flow after step `seq`: the state, and where next.

        The hot path comes here when it finds no plan of its own by the name `node`.
        """
        fork = self.engine._forks.get(node)
        if fork is not None:
            return await Fork(self, fork, state, seq).run(tools)
        mapped = self.engine._maps.get(node)
        if mapped is not None:
            return await Map(self, mapped, state, seq).run(tools)
        sub = self.engine._subflows.get(node)
        if sub is not None:
            return await Subflow(self, sub, state, seq).run()
        raise RunFailed(RunError("unknown_node", f"there is no node `{node}`", node))

    def _room(self, plan: _Plan, running: int) -> None:
        """Fail the run if one more step, after `running` unfinished ones, is past max_steps."""
        max_steps = self.engine.flow.settings.max_steps
        if self.base + len(self.steps) + running >= max_steps:
            raise RunFailed(_too_many_steps(max_steps, self.steps, plan))

    async def _walk(self, node: str, tools: dict[str, Tool]) -> None:
        # The hot path: keep per-step work to a call, a merge, a route and the events.
        plans = self.engine._plain
        max_steps = self.engine.flow.settings.max_steps
        # The listener is called here, not through `emit`: a frame less to make, and to go
        # through each time the run's task resumes from a step's awaited write.
        listener = self.listener
        steps, deltas = self.steps, self.deltas
        base = self.base
        state = self.state
        cursor = self.cursor
        meter = self.meter
        containers = {key for key, value in state.items() if type(value) in (dict, list)}
        new = tuple.__new__
        # The loop is given back every `slice_steps` steps or `slice_ms` milliseconds, so
        # that a run of quick sync tools does not hold up every other request.
        slice_steps = self.engine.limits.slice_steps
        slice_seconds = self.engine.limits.slice_ms / 1000
        left = slice_steps
        slice_ends = time.time() + slice_seconds
        while node != END:
            plan = plans.get(node)
            if plan is None:
                state, node = await self._detour(node, state, base + len(steps), tools)
                containers = {k for k, value in state.items() if type(value) in (dict, list)}
                left = slice_steps
                slice_ends = time.time() + slice_seconds
                continue
            seq = base + len(steps)
            if seq >= max_steps:
                raise RunFailed(_too_many_steps(max_steps, steps, plan))
            tool = tools.get(plan.tool)
            if tool is None:
                if node in self.engine.waits:  # a wait runs no tool: the run stops here
                    raise RunWaiting(self.engine.waits[node])
                raise RunFailed(_unregistered(plan))
            seq += 1
            if listener is not None:
                # Events made by `tuple.__new__` with every field (`Event`'s order), as
                # `_steps` makes steps: half the cost of the class's own constructor.
                pending = listener(
                    new(Event, ("node_started", self.run_id, seq, node, time.time(), None, None,
                                None, None, None, None, None, None, None, None, None))
                )  # fmt: skip
                if pending is not None:
                    await pending
            if plan.policy is None:
                # The tool gets its own copy: only container values need copying.
                given = dict(state)
                for key in containers:
                    given[key] = copy_json(given[key])
                args = copy_json(plan.args) if plan.copy_args else plan.args
                started = time.time()
                try:
                    if tool.mode == "sync":
                        cursor.node = node
                        try:
                            result = tool.function(given, **args)
                        finally:
                            cursor.node = None
                    else:
                        step = StepContext(self.run_id, seq, node, 1)
                        result = await self._call(tool, given, args, step, None)
                except CallFailed as failure:
                    raise RunFailed(_call_failed(failure, plan)) from None
                except Exception as exc:  # a tool's failure is the run's failure
                    raise RunFailed(_tool_failed(exc, plan)) from None
                try:
                    delta = (
                        updates(result, state, meter, tool.spec.writes, self.engine.declared)
                        if result is not None
                        else {}
                    )
                except ReturnLimitError as problem:
                    raise RunFailed(_past_limit(problem, plan)) from None
                except ReturnError as problem:
                    raise RunFailed(_bad_return(problem, plan)) from None
                attempts = 1
            else:
                started, delta, attempts, failed = await self._attempts(
                    plan, tool, state, containers, seq
                )
                if failed:
                    # Its own road, so that no other step pays for it: recorded and
                    # announced as failed, then on to the error route's target.
                    state, node = await self._failed_step(
                        plan, seq, started, delta, attempts, state
                    )
                    containers.add("error")
                    left = slice_steps
                    slice_ends = time.time() + slice_seconds
                    continue
            finished = time.time()
            if delta:
                state = {**state, **delta}
                self.state = state
                for key, value in delta.items():
                    if type(value) in (dict, list):
                        containers.add(key)
                    else:
                        containers.discard(key)
            steps.append((seq, node, started, finished, attempts))
            deltas.append(delta)
            waited = False
            if listener is not None:
                pending = listener(
                    new(Event, ("node_finished", self.run_id, seq, node, finished, delta,
                                (finished - started) * 1000, None, None, None, None, None,
                                attempts, None, None, None))
                )  # fmt: skip
                if pending is not None:
                    waited = await pending is True
            left -= 1
            if waited:  # the listener waited for I/O: the loop had its turn, a new slice
                left = slice_steps
                slice_ends = time.time() + slice_seconds
            elif not left or finished >= slice_ends:
                await asyncio.sleep(0)
                left = slice_steps
                slice_ends = time.time() + slice_seconds
            node = plan.goto if plan.goto is not None else self._branch(plan)

    async def _call(
        self,
        tool: Tool,
        given: State,
        args: dict[str, Any],
        step: StepContext,
        timeout: float | None,
    ) -> Any:
        """One call of a tool, as its mode says; a sync tool with a timeout gets a thread.

        A process tool runs in a worker process (`runtime.processes`).
        """
        if tool.mode == "async":
            return await call_async(tool.function, given, args, step, timeout)
        if tool.mode == "sync" and timeout is None:
            token = STEP.set(step)
            try:
                return tool.function(given, **args)
            finally:
                STEP.reset(token)
        if tool.mode == "process":
            return await call_in_process(tool.function, given, args, step, timeout)
        if self.threads is None:
            self.threads = RunThreads(self.engine.max_threads_per_run)
        return await self.threads.call(tool.function, given, args, step, timeout)

    async def _attempts(
        self,
        plan: _Plan,
        tool: Tool,
        state: State,
        containers: set[str],
        seq: int,
        within: InBranch | None = None,
    ) -> tuple[float, State, int, bool]:
        """Run a node that has a policy: its start, delta, attempts, and whether it failed.

        A step whose last attempt failed, at a node with an error route, has failed: its
        delta is the `error` it writes.  Without a route, or when the state cannot take that
        `error` (a declaration it does not fit, a limit), the run fails.  A parallel
        branch's steps come this way too, with or without a policy (`within`), and so do a
        map's calls, whose delta is their result (`within.take`).
        """
        policy = plan.policy or PLAIN
        declared: Mapping[str, FlowType] | None = self.engine.declared
        compare, branch, fork, item, take = state, None, None, None, None
        if within is not None:
            branch, fork, compare, declared, item, take = within
        started = time.time()
        attempt = 1
        while True:
            given = dict(state)
            for key in containers:
                given[key] = copy_json(given[key])
            args = copy_json(plan.args) if plan.copy_args else plan.args
            began = time.time()
            try:
                step = StepContext(self.run_id, seq, plan.name, attempt, branch, fork, item)
                result = await self._call(tool, given, args, step, policy.timeout)
                if take is not None:
                    delta = take(result)
                elif result is not None:
                    delta = updates(result, compare, self.meter, tool.spec.writes, declared)
                else:
                    delta = {}
                return started, delta, attempt, False
            except Exception as exc:
                error = self._failure(exc, plan)
            retry = error.code in RETRIED and attempt <= policy.retries
            delay = retry_delay(policy.backoff, attempt) if retry else None
            if self.listener is not None and plan.policy is not None:
                at = time.time()
                await self.emit(
                    Event("node_attempt_failed", self.run_id, seq, plan.name, at,
                          duration_ms=(at - began) * 1000, error=error, attempt=attempt,
                          retry_in=delay, branch=branch)
                )  # fmt: skip
            if delay is None:
                if attempt > 1:
                    error = replace(error, message=f"{error.message} (after {attempt} attempts)")
                if policy.on_error is not None:
                    written = self._error_delta(plan, error, attempt, state)
                    if written is not None:
                        return started, written, attempt, True
                raise RunFailed(error)
            await asyncio.sleep(delay)
            attempt += 1

    @staticmethod
    def _failure(problem: Exception, plan: _Plan) -> RunError:
        """The run error of a call of `plan`'s tool that raised `problem` (or was refused)."""
        if isinstance(problem, ReturnLimitError):
            return _past_limit(problem, plan)
        if isinstance(problem, ReturnError):
            return _bad_return(problem, plan)
        if isinstance(problem, CallFailed):
            return _call_failed(problem, plan)
        return _tool_failed(problem, plan)

    def _error_delta(
        self, plan: _Plan, error: RunError, attempts: int, state: State
    ) -> State | None:
        """The delta of a failed step: `error`, checked and measured like a tool's update.

        None when the state cannot take it (the flow declares `error` as a type a dict
        does not fit, or it is past a limit).
        """
        written = {"code": error.code, "message": error.message, "node": plan.name,
                   "attempts": attempts}  # fmt: skip
        try:
            updates({"error": written}, state, self.meter, None, self.engine.declared)
        except ReturnError:
            return None
        # Written even when the state holds the same error already (left out of `updates`'
        # delta, as unchanged): a failed step's delta is always its error.
        return {"error": written}

    async def _failed_step(
        self, plan: _Plan, seq: int, started: float, delta: State, attempts: int, state: State
    ) -> tuple[State, str]:
        """Record a failed step, emit its `node_finished`; the state, and where the route goes."""
        assert plan.policy is not None and plan.policy.on_error is not None
        self.failed.append(seq)
        state = await self._record(plan, seq, started, delta, state, attempts, failed=True)
        return state, plan.policy.on_error

    async def finished_step(
        self, plan: _Plan, seq: int, started: float, delta: State, state: State
    ) -> tuple[State, str]:
        """Record a main-line step a detour ran, emit its `node_finished`; state and next node.

        One attempt: a map's collection, a sub-flow's child.
        """
        state = await self._record(plan, seq, started, delta, state, 1)
        return state, plan.goto if plan.goto is not None else self._branch(plan)

    async def _record(
        self,
        plan: _Plan,
        seq: int,
        started: float,
        delta: State,
        state: State,
        attempts: int,
        *,
        failed: bool = False,
    ) -> State:
        """Keep step `seq` and its delta, emit its `node_finished`; the state after it.

        It gives the event loop a turn unless the listener waited for I/O: the run's time
        slice starts again after it.
        """
        finished = time.time()
        state = {**state, **delta} if delta else state
        self.state = state
        self.steps.append((seq, plan.name, started, finished, attempts))
        self.deltas.append(delta)
        waited = False
        if self.listener is not None:
            pending = self.listener(
                Event("node_finished", self.run_id, seq, plan.name, finished, delta=delta,
                      duration_ms=(finished - started) * 1000, attempts=attempts,
                      failed=failed)
            )  # fmt: skip
            if pending is not None:
                waited = await pending is True
        if not waited:
            await asyncio.sleep(0)
        return state

    def _branch(self, plan: _Plan) -> str:
        arms = plan.arms
        try:
            if len(arms) == 1:  # one condition: its own budget, made only if it needs one
                condition, target = arms[0]
                if condition(self.state):
                    return target
            else:
                budget = Budget()  # one routing decision's work on values, shared by its arms
                for condition, target in arms:
                    if condition(self.state, budget):
                        return target
        except ConditionError as problem:
            raise RunFailed(
                RunError(problem.code, problem.message, plan.name, problem.span)
            ) from None
        assert plan.otherwise is not None
        return plan.otherwise


def _unregistered(plan: _Plan) -> RunError:
    return RunError(
        "unknown_tool",
        f"node `{plan.name}` runs tool `{plan.tool}`, which is not registered",
        plan.name,
        plan.span,
    )


def _call_failed(failure: CallFailed, plan: _Plan) -> RunError:
    message = failure.describe(plan.name, plan.tool)
    return RunError(failure.code, message, plan.name, plan.span)


def _tool_failed(exc: Exception, plan: _Plan) -> RunError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if len(detail) > MAX_ERROR_DETAIL:  # it is stored, sent and maybe put in the state
        detail = f"{detail[:MAX_ERROR_DETAIL]}… ({len(detail):,} characters)"
    return RunError("tool_error", f"tool `{plan.tool}` failed: {detail}", plan.name, plan.span)


def _bad_return(problem: ReturnError, plan: _Plan) -> RunError:
    return RunError("bad_return", f"tool `{plan.tool}` {problem}", plan.name, plan.span)


def _past_limit(problem: ReturnLimitError, plan: _Plan) -> RunError:
    return RunError("limit", f"tool `{plan.tool}` {problem}", plan.name, plan.span)


def _too_many_steps(
    max_steps: int, steps: list[tuple[int, str, float, float, int]], plan: _Plan
) -> RunError:
    loop = " -> ".join([*(step[1] for step in steps[-TRAIL:]), plan.name])
    return RunError(
        "max_steps",
        f"the run took more than {max_steps} steps (max_steps = {max_steps}) and was stopped; "
        f"the last nodes were {loop}",
        plan.name,
        plan.span,
    )
