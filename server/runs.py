"""Definitions + input -> running runs: started in the background, recorded, fanned out.

Durability, as LangGraph names it: `sync` commits each step before the next node starts;
`async` writes steps behind the run in batches and flushes at the end; `exit` writes only
when the run ends.  Subscribers get a run's events in order: what they missed first, then
live ones; a run that ended (or runs elsewhere) is replayed from the database.

A database failure under a run ends it `failed` with the error code `storage_error`; the
state it reports is the one after the last step it handed to the database.  `close()`
cancels the runs still going after a grace period: each ends `cancelled`, and whoever waits
on `result()` gets that outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError

from flowc.compiler.ir import Flow
from flowc.runtime import REGISTRY, Registry
from flowc.runtime.events import Event, RunError, RunResult, RunStatus, Step, iso
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
#: Seconds `close()` lets running runs go on before it cancels them.
SHUTDOWN_GRACE = 5.0

logger = logging.getLogger("flowc.server")


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
    #: The outcome of a run that was cancelled, for those who wait on it.
    cancelled: RunResult | None = None

    def publish(self, event: Event | dict[str, Any]) -> None:
        self.events.append(event)
        if self.subscribers:
            message = _json(event)
            for queue in self.subscribers:
                queue.put_nowait(message)

    def steps(self) -> list[Step]:
        """The steps published so far: each recorded, or pending in its batch."""
        return [
            Step(e.step, e.node or "", e.delta or {}, e.at - (e.duration_ms or 0.0) / 1000, e.at)
            for e in self.events
            if isinstance(e, Event) and e.type == "node_finished"
        ]


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
        flushing = self.flushing
        if flushing is not None and flushing.done():
            self.flushing = None
            flushing.result()  # a batch that failed fails the run, before this step counts
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
        except BaseException:
            # Back in front of the later steps: the run's last write tries them again.
            self.pending[:0] = rows
            self.pending_delta = {**delta, **self.pending_delta}
            raise

    async def _settle(self) -> None:
        """Wait for the batch being written; its failure is raised here."""
        flushing, self.flushing = self.flushing, None
        if flushing is not None:
            await flushing

    async def finish(self, result: RunResult) -> None:
        """Write the steps not written yet and the outcome; any failure is raised."""
        await self._settle()
        await self._write_outcome(result)

    async def abandon(self, result: RunResult) -> None:
        """Write what can be written of a run that failed or was cancelled."""
        with contextlib.suppress(Exception):
            await self._settle()  # a failed batch's steps are pending again: written below
        await self._write_outcome(result)

    async def _write_outcome(self, result: RunResult) -> None:
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
        #: Seconds `close()` waits for running runs before it cancels them.
        self.shutdown_grace = SHUTDOWN_GRACE
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
            if event.is_final:
                final.append(event)  # published once the outcome is committed
                return
            if event.delta:
                after = {**state, **event.delta}
                await recorder.record(event, after)  # committed before anyone hears of it
                state = after  # a step the database refused is not part of the state
            else:
                await recorder.record(event, state)
            live.publish(event)

        try:
            result = await engine.run(initial_state=input, run_id=str(run_id), listener=listen)
            await recorder.finish(result)
            for event in final:
                live.publish(event)
        except asyncio.CancelledError:
            error = RunError("cancelled", "the server stopped before the run ended")
            live.cancelled = _ended(run_id, "cancelled", state, live, error)
            await _abandon(recorder, live.cancelled, shielded=True)
            live.publish(_final(str(run_id), live.cancelled))
            raise
        except Exception as exc:  # the database failed under the run: record what we can
            failed = _ended(run_id, "failed", state, live, _storage_error(exc))
            await _abandon(recorder, failed)
            live.publish(_final(str(run_id), failed))
            return failed
        finally:
            asyncio.get_running_loop().call_later(KEEP_FINISHED, self._live.pop, run_id, None)
        return result

    async def result(self, run_id: uuid.UUID) -> RunResult:
        """Wait until a run this service started ends; its result (`cancelled` included)."""
        live = self._live.get(run_id)
        if live is None or live.task is None:
            raise UnknownRun(str(run_id))
        try:
            return await asyncio.shield(live.task)
        except asyncio.CancelledError:
            if live.task.cancelled() and live.cancelled is not None:
                return live.cancelled  # the run was stopped, not the one waiting for it
            raise

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
                succeeded = run.status == "succeeded"
                yield {
                    "type": "run_finished" if succeeded else "run_failed",
                    "run_id": str(run_id),
                    "step": run.step,
                    # As when it was live: the last node, or the one that failed (if any).
                    "node": run.current_node if succeeded else (run.error or {}).get("node"),
                    "delta": None,
                    "at": (utc(run.finished_at) or now()).isoformat(),
                    "status": run.status,
                    "state": run.state,
                    "error": run.error,
                }
                return
            await asyncio.sleep(POLL_INTERVAL)

    async def close(self) -> None:
        """Give running runs `shutdown_grace` seconds to end, cancel the rest, disconnect."""
        tasks = [live.task for live in self._live.values() if live.task and not live.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.writer.close()


def _ended(
    run_id: uuid.UUID, status: RunStatus, state: dict[str, Any], live: _Live, error: RunError
) -> RunResult:
    """The result of a run that the service, not the engine, ended."""
    return RunResult(str(run_id), status, state, live.steps(), error)


def _storage_error(exc: Exception) -> RunError:
    """A database failure under a run as the run's error."""
    return RunError("storage_error", f"the database failed while recording the run: {_cause(exc)}")


def _cause(exc: Exception) -> str:
    """`Type: message` of a failure: the driver's words, without the SQL SQLAlchemy adds."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}"


async def _abandon(recorder: _Recorder, result: RunResult, *, shielded: bool = False) -> None:
    """Record a run's abnormal end if the database lets us; log one line if it does not."""
    try:
        ending = recorder.abandon(result)
        await (asyncio.shield(ending) if shielded else ending)
    except Exception as exc:
        logger.warning(
            "run %s ended %s; the database did not take it: %s",
            result.run_id,
            result.status,
            _cause(exc),
        )


def _is_final(message: dict[str, Any]) -> bool:
    return message.get("type") in ("run_finished", "run_failed")


def _final(run_id: str, result: RunResult) -> dict[str, Any]:
    """The final event of a run the service ended: the node is the one that failed, if any."""
    return {
        "type": "run_failed",
        "run_id": run_id,
        "step": len(result.steps),
        "node": result.error.node if result.error else None,
        "delta": None,
        "at": iso(now().timestamp()),
        "status": result.status,
        "state": result.state,
        "error": result.error.to_json() if result.error else None,
    }
