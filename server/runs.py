"""Definitions + input -> running runs: started in the background, recorded, fanned out.

Durability, as LangGraph names it: `sync` commits each step before the next node starts;
`async` writes steps behind the run in batches and flushes at the end; `exit` writes only
when the run ends.  Subscribers get a run's events in order: what they missed first, then
live ones; a run that ended (or runs elsewhere) is replayed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from flowc.compiler.ir import Flow
from flowc.runtime import REGISTRY, Registry
from flowc.runtime.events import Event, RunError, RunResult, iso
from flowc.runtime.interpreter import WorkflowEngine
from flowc.server import store
from flowc.server.db import Database
from flowc.server.models import WorkflowDefinition, now, utc
from flowc.server.recording import StepRow, StepWriter, moment, writer_for
from flowc.server.settings import Settings, get_settings

Durability = Literal["sync", "async", "exit"]
DURABILITIES: tuple[Durability, ...] = ("sync", "async", "exit")

#: Seconds a finished run stays in memory, for clients that connect just after the end.
KEEP_FINISHED = 60.0
#: Seconds between database polls when following a run that another process runs.
POLL_INTERVAL = 0.5
#: Compiled engines kept, by definition.
ENGINE_CACHE = 128


class UnknownRun(LookupError):
    """No run has this id."""


@dataclass
class _Live:
    """A run in this process: its events so far, who listens, and its outcome.

    Events are kept as they came and turned into JSON only for someone who listens.
    """

    events: list[Event | dict[str, Any]] = field(default_factory=list)
    subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    task: asyncio.Task[RunResult] | None = None

    def publish(self, event: Event | dict[str, Any]) -> None:
        self.events.append(event)
        if self.subscribers:
            message = _json(event)
            for queue in self.subscribers:
                queue.put_nowait(message)


def _json(event: Event | dict[str, Any]) -> dict[str, Any]:
    return event if isinstance(event, dict) else event.to_json()


class _Recorder:
    """An engine listener that writes a run's progress as its durability says."""

    def __init__(
        self, writer: StepWriter, run_id: uuid.UUID, durability: Durability, batch: int
    ) -> None:
        self.writer = writer
        self.run_id = run_id
        self.durability = durability
        self.batch = batch
        self.pending: list[StepRow] = []
        self.pending_delta: dict[str, Any] = {}
        self.flushing: asyncio.Task[None] | None = None
        self.started: datetime | None = None

    async def record(self, event: Event, state: dict[str, Any]) -> None:
        if event.type == "run_started":
            self.started = moment(event.at)
            if self.durability != "exit":
                await self.writer.begin(self.run_id, moment(event.at))
            return
        if event.type != "node_finished":
            return
        delta = event.delta or {}
        started = event.at - (event.duration_ms or 0.0) / 1000
        row = StepRow(event.step, event.node or "", delta, moment(started), moment(event.at))
        if self.durability == "sync":
            await self.writer.append(self.run_id, [row], delta, state)
            return
        self.pending.append(row)
        self.pending_delta.update(delta)
        if self.durability == "async" and len(self.pending) >= self.batch and not self.flushing:
            rows, merged = self.pending, self.pending_delta
            self.pending, self.pending_delta = [], {}
            self.flushing = asyncio.ensure_future(self._flush(rows, merged, dict(state)))

    async def _flush(
        self, rows: list[StepRow], delta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        try:
            await self.writer.append(self.run_id, rows, delta, state)
        finally:
            self.flushing = None

    async def finish(self, result: RunResult) -> None:
        if self.flushing is not None:
            await self.flushing
        error = result.error.to_json() if result.error else None
        await self.writer.finish(
            self.run_id,
            self.pending,
            status=result.status,
            state=result.state,
            error=error,
            at=now(),
            started=self.started,
        )
        self.pending = []


class RunService:
    """Starts runs, records them as they go (per durability), fans their events out."""

    def __init__(
        self, db: Database, *, registry: Registry | None = None, settings: Settings | None = None
    ) -> None:
        self.db = db
        self.registry = registry if registry is not None else REGISTRY
        self.settings = settings or get_settings()
        self.writer = writer_for(db)
        self._live: dict[uuid.UUID, _Live] = {}
        self._engines: OrderedDict[uuid.UUID, WorkflowEngine] = OrderedDict()

    def _engine(self, definition: WorkflowDefinition) -> WorkflowEngine:
        engine = self._engines.get(definition.id)
        if engine is None:
            engine = WorkflowEngine(Flow.model_validate(definition.ir), self.registry)
            self._engines[definition.id] = engine
            if len(self._engines) > ENGINE_CACHE:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(definition.id)
        return engine

    async def start(
        self,
        *,
        definition: WorkflowDefinition,
        input: dict[str, Any],
        durability: Durability = "sync",
    ) -> uuid.UUID:
        """Record a new run and start it in the background; its id, at once."""
        async with self.db.session() as session:
            run = await store.create_run(
                session, definition_id=definition.id, input=input, durability=durability
            )
        live = _Live()
        self._live[run.id] = live
        engine = self._engine(definition)
        live.task = asyncio.ensure_future(self._execute(run.id, engine, input, durability, live))
        return run.id

    async def _execute(
        self,
        run_id: uuid.UUID,
        engine: WorkflowEngine,
        input: dict[str, Any],
        durability: Durability,
        live: _Live,
    ) -> RunResult:
        recorder = _Recorder(self.writer, run_id, durability, self.settings.async_batch_steps)
        state: dict[str, Any] = dict(input)

        final: list[Event] = []

        async def listen(event: Event) -> None:
            nonlocal state
            if event.delta:
                state = {**state, **event.delta}
            if event.is_final:
                final.append(event)  # published once the outcome is committed
                return
            await recorder.record(event, state)  # committed before anyone hears of it
            live.publish(event)

        try:
            result = await engine.run(initial_state=input, run_id=str(run_id), listener=listen)
            await recorder.finish(result)
            for event in final:
                live.publish(event)
        except asyncio.CancelledError:
            cancelled = RunResult(
                str(run_id),
                "cancelled",
                state,
                [],
                RunError("cancelled", "the server stopped before the run ended"),
            )
            with contextlib.suppress(Exception):
                await asyncio.shield(recorder.finish(cancelled))
            live.publish(_final(str(run_id), cancelled))
            raise
        except Exception as exc:  # the database failed under the run: record what we can
            failed = RunResult(
                str(run_id),
                "failed",
                state,
                [],
                RunError("storage_error", f"{type(exc).__name__}: {exc}"),
            )
            with contextlib.suppress(Exception):
                await recorder.finish(failed)
            live.publish(_final(str(run_id), failed))
            return failed
        finally:
            asyncio.get_running_loop().call_later(KEEP_FINISHED, self._live.pop, run_id, None)
        return result

    async def result(self, run_id: uuid.UUID) -> RunResult:
        """Wait until a run this service started ends; its result."""
        live = self._live.get(run_id)
        if live is None or live.task is None:
            raise UnknownRun(str(run_id))
        return await asyncio.shield(live.task)

    async def events(self, run_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
        """Every event of the run as JSON: the ones emitted so far, then live, final last."""
        live = self._live.get(run_id)
        if live is None:
            async for message in self._replay(run_id):
                yield message
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        history = list(live.events)  # taken with the subscription: nothing is missed or doubled
        live.subscribers.add(queue)
        try:
            for past in history:
                message = _json(past)
                yield message
                if _is_final(message):
                    return
            while True:
                message = await queue.get()
                yield message
                if _is_final(message):
                    return
        finally:
            live.subscribers.discard(queue)

    async def _replay(self, run_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
        """A run from the database: its steps, then polls until it has ended."""
        sent = 0
        announced = False
        while True:
            async with self.db.session() as session:
                run = await store.get_run(session, run_id=run_id)
                if run is None:
                    raise UnknownRun(str(run_id))
                steps = await store.list_steps(session, run_id=run_id)
            if not announced:
                yield {
                    "type": "run_started",
                    "run_id": str(run_id),
                    "step": 0,
                    "node": steps[0].node if steps else run.current_node,
                    "delta": None,
                    "at": (utc(run.started_at) or utc(run.created_at) or now()).isoformat(),
                }
                announced = True
            for step in steps[sent:]:
                finished, started = utc(step.finished_at), utc(step.started_at)
                assert finished is not None and started is not None
                yield {
                    "type": "node_finished",
                    "run_id": str(run_id),
                    "step": step.seq,
                    "node": step.node,
                    "delta": step.delta,
                    "at": finished.isoformat(),
                    "duration_ms": round((finished - started).total_seconds() * 1000, 3),
                }
            sent = len(steps)
            if run.status in ("succeeded", "failed", "cancelled"):
                yield {
                    "type": "run_finished" if run.status == "succeeded" else "run_failed",
                    "run_id": str(run_id),
                    "step": run.step,
                    "node": run.current_node,
                    "delta": None,
                    "at": (utc(run.finished_at) or now()).isoformat(),
                    "status": run.status,
                    "state": run.state,
                    "error": run.error,
                }
                return
            await asyncio.sleep(POLL_INTERVAL)

    async def close(self) -> None:
        """Give running runs a moment to end, cancel the rest, release connections."""
        tasks = [live.task for live in self._live.values() if live.task and not live.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.writer.close()


def _is_final(message: dict[str, Any]) -> bool:
    return message.get("type") in ("run_finished", "run_failed")


def _final(run_id: str, result: RunResult) -> dict[str, Any]:
    last = result.steps[-1] if result.steps else None
    return {
        "type": "run_failed",
        "run_id": run_id,
        "step": last.seq if last else 0,
        "node": last.node if last else None,
        "delta": None,
        "at": iso(now().timestamp()),
        "status": result.status,
        "state": result.state,
        "error": result.error.to_json() if result.error else None,
    }
