"""IR + registered tools -> a run: walk the graph in a `while` loop, emitting events.

Each step is a tool call, a dict merge, a routing decision and (when someone listens) two
events.  Every failure ends the run as `failed` with a structured `RunError` and the last
good state; nothing escapes as a stack trace.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from compiler import compile_source
from compiler.ir import Branch, Flow, Span
from compiler.operators import strict_equal
from compiler.program import END
from runtime.conditions import ConditionError, compile_condition
from runtime.events import Event, RunError, RunResult, Step
from runtime.registry import REGISTRY, Registry, Tool
from runtime.state import StateError, copy_json

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
        plans = self.engine._plans
        max_steps = self.engine.flow.settings.max_steps
        trail: deque[str] = deque(maxlen=TRAIL)
        listening = self.listener is not None
        while node != END:
            plan = plans.get(node)
            if plan is None:
                raise _Failed(RunError("unknown_node", f"there is no node `{node}`", node))
            if len(self.steps) >= max_steps:
                raise _Failed(_too_many_steps(max_steps, trail, plan))
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
            seq = len(self.steps) + 1
            if listening:
                await self.emit(Event("node_started", self.run_id, seq, node, time.time()))
            started = time.time()
            result = await self._call(tool, plan)
            finished = time.time()
            delta = self._delta(result, plan)
            if delta:
                self.state = {**self.state, **delta}
            self.steps.append(Step(seq, node, delta, started, finished))
            trail.append(node)
            if listening:
                await self.emit(
                    Event("node_finished", self.run_id, seq, node, finished, delta=delta,
                          duration_ms=(finished - started) * 1000)
                )  # fmt: skip
            node = plan.goto if plan.goto is not None else self._branch(plan)

    async def _call(self, tool: Tool, plan: _Plan) -> Any:
        given = copy_json(self.state)
        args = copy_json(plan.args) if plan.copy_args else plan.args
        function = tool.function
        try:
            if tool.spec.is_async:
                return await function(given, **args)
            if tool.spec.blocking:
                return await asyncio.to_thread(function, given, **args)
            result = function(given, **args)
            if inspect.isawaitable(result):
                return await result
            return result
        except Exception as exc:  # a tool's failure is the run's failure, never the caller's
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _Failed(
                RunError("tool_error", f"tool `{plan.tool}` failed: {detail}", plan.name, plan.span)
            ) from None

    def _delta(self, result: Any, plan: _Plan) -> State:
        """The updates a tool's return value makes: a dict of updates, the whole state, None."""
        if result is None:
            return {}
        if not isinstance(result, dict):
            raise _Failed(
                RunError(
                    "bad_return",
                    f"tool `{plan.tool}` returned a {type(result).__name__}; a tool returns a "
                    "dict of updates, the whole state, or None",
                    plan.name,
                    plan.span,
                )
            )
        try:
            updates = copy_json(result)
        except StateError as problem:
            raise _Failed(
                RunError(
                    "bad_return",
                    f"tool `{plan.tool}` returned a value that is not JSON at "
                    f"`{problem.where}`: {problem.problem}",
                    plan.name,
                    plan.span,
                )
            ) from None
        state = self.state
        # Keys whose value did not change are not part of the delta (a whole-state return).
        return {k: v for k, v in updates.items() if k not in state or not strict_equal(state[k], v)}

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


def _too_many_steps(max_steps: int, trail: deque[str], plan: _Plan) -> RunError:
    loop = " -> ".join([*trail, plan.name])
    return RunError(
        "max_steps",
        f"the run took more than {max_steps} steps (max_steps = {max_steps}) and was stopped; "
        f"the last nodes were {loop}",
        plan.name,
        plan.span,
    )
