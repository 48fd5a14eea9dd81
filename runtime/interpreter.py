"""IR + registered tools -> a run: walk the graph in a `while` loop, emitting events.

Each step is a tool call, a dict merge, a routing decision and (when someone listens) two
events.  Every failure ends the run as `failed` with a structured `RunError` and the last
good state; nothing escapes as a stack trace.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowc.compiler import compile_source
from flowc.compiler.ir import Branch, Flow, Span
from flowc.compiler.operators import strict_equal
from flowc.compiler.program import END
from flowc.runtime.conditions import ConditionError, compile_condition
from flowc.runtime.events import Event, RunError, RunResult, Step
from flowc.runtime.registry import REGISTRY, Registry, Tool
from flowc.runtime.state import StateError, copy_json

State = dict[str, Any]
Listener = Callable[[Event], Awaitable[None] | None]

#: How many of the last nodes a `max_steps` error names.
TRAIL = 8


@dataclass(frozen=True, slots=True)
class _Plan:
    """What running one node needs, worked out once per engine."""

    name: str
    tool: str
    args: dict[str, Any]
    copy_args: bool
    span: Span | None
    goto: str | None  # the next node for a plain edge, END when the run ends here
    arms: tuple[tuple[Callable[[State], bool], str], ...]
    otherwise: str | None


class _Failed(Exception):
    """Ends a run: carries the error to report."""

    def __init__(self, error: RunError) -> None:
        super().__init__(error.message)
        self.error = error


class WorkflowEngine:
    """Runs a compiled flow with the tools of a registry (the default one by default)."""

    def __init__(self, flow: Flow | str, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        if isinstance(flow, str):
            flow = compile_source(flow, tools=self.registry.specs()).ir
        self.flow = flow
        self._plans = {node.name: self._plan(node.name) for node in flow.nodes}

    def _plan(self, name: str) -> _Plan:
        node = next(n for n in self.flow.nodes if n.name == name)
        route = self.flow.routes.get(name)
        arms: tuple[tuple[Callable[[State], bool], str], ...] = ()
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
        elif route is not None:
            goto = route.target
        copy_args = any(isinstance(v, (dict, list)) for v in node.args.values())
        return _Plan(name, node.tool, dict(node.args), copy_args, node.span, goto, arms, otherwise)

    async def run(
        self,
        start_node: str | None = None,
        initial_state: State | None = None,
        *,
        run_id: str | None = None,
        listener: Listener | None = None,
    ) -> RunResult:
        """Run from `start_node` (default: the flow's start) until `end`, or until it fails."""
        return await _Run(self, run_id or uuid.uuid4().hex, listener).execute(
            start_node or self.flow.start, initial_state
        )

    async def stream(
        self,
        start_node: str | None = None,
        initial_state: State | None = None,
        *,
        run_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """The events of one run, in order, as they happen; the last is final."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.run(start_node, initial_state, run_id=run_id, listener=queue.put_nowait)
        )
        try:
            while True:
                event = await queue.get()
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

    def __init__(self, engine: WorkflowEngine, run_id: str, listener: Listener | None) -> None:
        self.engine = engine
        self.run_id = run_id
        self.listener = listener
        self.state: State = {}
        self.steps: list[Step] = []

    async def emit(self, event: Event) -> None:
        if self.listener is not None:
            pending = self.listener(event)
            if pending is not None:
                await pending

    async def execute(self, start: str, initial_state: State | None) -> RunResult:
        try:
            try:
                self.state = copy_json(initial_state or {})
            except StateError as problem:
                raise _Failed(
                    RunError(
                        "bad_input",
                        f"the initial state is not JSON: {problem.where}: {problem.problem}",
                    )
                ) from None
            if not isinstance(self.state, dict):
                raise _Failed(RunError("bad_input", "the initial state must be a JSON object"))
            await self.emit(Event("run_started", self.run_id, 0, start, time.time()))
            tools = {tool.spec.name: tool for tool in self.engine.registry}
            await self._walk(start, tools)
        except _Failed as failure:
            error = failure.error
            at = time.time()
            await self.emit(
                Event("run_failed", self.run_id, len(self.steps), error.node, at,
                      status="failed", state=self.state, error=error)
            )  # fmt: skip
            return RunResult(self.run_id, "failed", self.state, self.steps, error)
        last = self.steps[-1].node if self.steps else None
        await self.emit(
            Event("run_finished", self.run_id, len(self.steps), last, time.time(),
                  status="succeeded", state=self.state)
        )  # fmt: skip
        return RunResult(self.run_id, "succeeded", self.state, self.steps)

    async def _walk(self, node: str, tools: dict[str, Tool]) -> None:
        # The hot path: keep per-step work to a call, a merge, a route and the events.
        plans = self.engine._plans
        max_steps = self.engine.flow.settings.max_steps
        listening = self.listener is not None
        steps = self.steps
        state = self.state
        containers = {key for key, value in state.items() if type(value) in (dict, list)}
        while node != END:
            plan = plans.get(node)
            if plan is None:
                raise _Failed(RunError("unknown_node", f"there is no node `{node}`", node))
            if len(steps) >= max_steps:
                raise _Failed(_too_many_steps(max_steps, steps, plan))
            tool = tools.get(plan.tool)
            if tool is None:
                raise _Failed(
                    RunError(
                        "unknown_tool",
                        f"node `{node}` runs tool `{plan.tool}`, which is not registered",
                        node,
                        plan.span,
                    )
                )
            seq = len(steps) + 1
            if listening:
                await self.emit(Event("node_started", self.run_id, seq, node, time.time()))
            # The tool gets its own copy: only container values need copying.
            given = dict(state)
            for key in containers:
                given[key] = copy_json(given[key])
            args = copy_json(plan.args) if plan.copy_args else plan.args
            started = time.time()
            try:
                if tool.mode == "sync":
                    result = tool.function(given, **args)
                elif tool.mode == "async":
                    result = await tool.function(given, **args)
                else:
                    result = await asyncio.to_thread(tool.function, given, **args)
            except Exception as exc:  # a tool's failure is the run's failure
                raise _Failed(_tool_failed(exc, plan)) from None
            finished = time.time()
            delta = _delta(result, state, plan) if result is not None else {}
            if delta:
                state = {**state, **delta}
                self.state = state
                for key, value in delta.items():
                    if type(value) in (dict, list):
                        containers.add(key)
                    else:
                        containers.discard(key)
            steps.append(Step(seq, node, delta, started, finished))
            if listening:
                await self.emit(
                    Event("node_finished", self.run_id, seq, node, finished, delta=delta,
                          duration_ms=(finished - started) * 1000)
                )  # fmt: skip
            node = plan.goto if plan.goto is not None else self._branch(plan)

    def _branch(self, plan: _Plan) -> str:
        try:
            for condition, target in plan.arms:
                if condition(self.state):
                    return target
        except ConditionError as problem:
            raise _Failed(
                RunError(problem.code, problem.message, plan.name, problem.span)
            ) from None
        assert plan.otherwise is not None
        return plan.otherwise


def _tool_failed(exc: Exception, plan: _Plan) -> RunError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return RunError("tool_error", f"tool `{plan.tool}` failed: {detail}", plan.name, plan.span)


_SCALARS = (str, int, bool, float, type(None))


def _delta(result: Any, state: State, plan: _Plan) -> State:
    """The updates a tool's return value makes: a dict of updates or the whole state.

    Values are copied (so the tool keeps no handle on history) and checked to be JSON;
    keys whose value did not change are left out, which is what a whole-state return needs.
    """
    if type(result) is not dict:
        if not isinstance(result, dict):
            raise _Failed(
                _bad_return(
                    plan,
                    f"returned a {type(result).__name__}; a tool returns a dict of updates, "
                    "the whole state, or None",
                )
            )
        result = dict(result)
    delta: State = {}
    for key, value in result.items():
        if type(key) is not str:
            raise _Failed(_bad_return(plan, f"returned a key that is not a string: {key!r}"))
        kind = type(value)
        if kind not in _SCALARS or (kind is float and value - value != 0.0):  # NaN, infinity
            try:
                value = copy_json(value)
            except StateError as problem:
                problem.parts.append(key)
                raise _Failed(
                    _bad_return(
                        plan,
                        f"returned a value that is not JSON at `{problem.where}`: "
                        f"{problem.problem}",
                    )
                ) from None
        if key in state and _unchanged(state[key], value):
            continue
        delta[key] = value
    return delta


def _unchanged(old: Any, new: Any) -> bool:
    if old is new:
        return True
    kind = type(old)
    if kind is type(new) and kind in _SCALARS:
        return bool(old == new)
    return kind in (list, dict) and strict_equal(old, new)


def _bad_return(plan: _Plan, problem: str) -> RunError:
    return RunError("bad_return", f"tool `{plan.tool}` {problem}", plan.name, plan.span)


def _too_many_steps(max_steps: int, steps: list[Step], plan: _Plan) -> RunError:
    loop = " -> ".join([*(step.node for step in steps[-TRAIL:]), plan.name])
    return RunError(
        "max_steps",
        f"the run took more than {max_steps} steps (max_steps = {max_steps}) and was stopped; "
        f"the last nodes were {loop}",
        plan.name,
        plan.span,
    )
