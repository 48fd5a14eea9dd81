"""Runs: started, claimed, executed, recorded, followed, cancelled and handed over.

`RunService` is both sides of a run.  The API side creates runs (claimed by this process
when it has a worker and room, else queued for any worker), waits for their results,
follows their events and cancels them, wherever they run.  The worker side claims runs,
keeps their leases alive, and executes each in a task of its own (`server/execution.py`:
its steps written as its durability says, its outcome recorded).  A run claimed again
after its owner went silent resumes from its last recorded step (`docs/durability.md`).
The runs of its sub-flows execute in its task, each a run of its own
(`server/children.py`).

Followers of a run this process executes get its events from memory (`node_started`
included); others read the database when the run log signals a change (NOTIFY on
PostgreSQL), sub-flows' runs included (`server/follow.py`): there is no polling loop.

Shutting down (`drain`) stops claiming, lets each run finish the step it is in (up to
`shutdown_grace` seconds), and releases the runs: another worker, or this server when it
starts again, resumes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from flowc.compiler.inputs import InputProblem, Inputs
from flowc.compiler.ir import Flow
from flowc.runtime import REGISTRY, Registry
from flowc.runtime.calls import RunThreads
from flowc.runtime.events import RunError, RunResult, RunStatus
from flowc.runtime.interpreter import WorkflowEngine
from flowc.runtime.state import LimitError
from flowc.server import store
from flowc.server.children import Children
from flowc.server.db import Database
from flowc.server.execution import as_step, execute
from flowc.server.follow import Follower, Forwarded, patiently, subflow_nodes
from flowc.server.follow import UnknownRun as UnknownRun  # raised by the service too
from flowc.server.live import Live, Moved, as_json
from flowc.server.models import WorkflowDefinition
from flowc.server.runlog import (
    ENDED,
    Claimed,
    Created,
    RunLog,
    on_main_line,
    owner_name,
    run_log_for,
)
from flowc.server.settings import Settings, get_settings
from flowc.server.waits import Waits, shown

Durability = Literal["sync", "async", "exit"]
DURABILITIES: tuple[Durability, ...] = ("sync", "async", "exit")

#: Seconds a finished run stays in memory, for clients that connect just after the end.
KEEP_FINISHED = 60.0
#: Seconds a closing service waits for the database to take its last writes.
CLOSE_WRITES = 5.0
#: Compiled engines kept, by definition.
ENGINE_CACHE = 128
#: Seconds before a heartbeat that failed is tried again.
HEARTBEAT_RETRY = 0.5
#: Seconds between claims when nothing wakes the claim loop, at most (a third of the lease
#: when that is shorter): how late a run whose lease expired is found.
CLAIM_POLL_MAX = 1.0

logger = logging.getLogger("flowc.server")


@dataclass(frozen=True)
class Refusal:
    """Why a run is not started: the value's place in the request (`loc`), or None."""

    loc: list[str | int] | None
    message: str
    too_large: bool = False


class Draining(RuntimeError):
    """The server is shutting down: the run goes on elsewhere (or when it is back)."""


class SubflowRun(Exception):
    """The run is a sub-flow's: its parent decides what happens to it (it cannot be cancelled)."""

    def __init__(self, run_id: uuid.UUID, parent_run_id: uuid.UUID, node: str | None) -> None:
        super().__init__(str(run_id))
        self.run_id = run_id
        self.parent_run_id = parent_run_id
        self.node = node


class RunService:
    """Starts runs, executes those this process owns, follows and cancels any of them."""

    def __init__(
        self,
        db: Database,
        *,
        registry: Registry | None = None,
        settings: Settings | None = None,
        worker: bool | None = None,
    ) -> None:
        self.db = db
        self.registry = registry if registry is not None else REGISTRY
        self.settings = settings or get_settings()
        #: Whether this process executes runs (else it only starts, reads and follows them).
        self.worker = self.settings.worker if worker is None else worker
        self.log: RunLog = run_log_for(
            db,
            owner=owner_name(),
            lease_seconds=self.settings.lease_seconds,
            writers=self.settings.writers,
        )
        #: Seconds `drain()` lets runs finish their step before it stops them.
        self.shutdown_grace = self.settings.shutdown_grace
        #: What one run may hold and do (`FLOWC_MAX_*`, `FLOWC_SLICE_*`).
        self.limits = self.settings.limits()
        self._live: dict[uuid.UUID, Live] = {}
        #: The runs this process executes now (`_live` also keeps ended ones a while).
        self._active: dict[uuid.UUID, Live] = {}
        self._engines: OrderedDict[uuid.UUID, WorkflowEngine] = OrderedDict()
        self._definitions: OrderedDict[uuid.UUID, WorkflowDefinition] = OrderedDict()
        self._wake = asyncio.Event()
        #: Whether runs may wait for a worker past what the last claim took: it took all the
        #: room there was (or failed), or a run was queued since.  Only then does a run that
        #: ends here wake the claim loop; otherwise NOTIFY and the poll do.
        self._backlog = True
        self._draining = False
        self._drained = asyncio.Event()  # set when draining begins: waiters stop waiting
        self._loops: list[asyncio.Task[None]] = []
        self._opened = False
        #: The runs that wait at a wait node: resumed, timed out.
        self.waits = Waits(self)
        #: Runs the child runs of the engines' sub-flow nodes, durably.
        self.children = Children(self)

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect the run log; with a worker, resume what was left and start claiming."""
        await self.log.open()
        self._opened = True
        self.log.on_cancel = self._cancel_local
        self.log.on_queued = self._queued
        if not self.worker:
            return
        if not self.log.shared:  # one process owns the file: what is unfinished was ours
            for claimed in await self.log.claim(self.settings.worker_concurrency, everything=True):
                await self._begin(claimed)
        self._loops = [
            asyncio.ensure_future(self._claim_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
        ]

    def _queued(self) -> None:
        """A run was queued (NOTIFY, or this process): the claim loop looks at once."""
        self._backlog = True
        self._wake.set()

    @property
    def draining(self) -> bool:
        """True once `drain()` began."""
        return self._draining

    async def drain(self) -> None:
        """Stop claiming; let runs finish their step (up to the grace), then release them."""
        if self._draining:
            return
        self._draining = True
        self._drained.set()
        for loop in self._loops:
            loop.cancel()
        tasks = [live.task for live in self._live.values() if live.task and not live.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
            for live in list(self._live.values()):
                if live.task in pending:
                    live.halt("release")
            # Releasing writes to the database; one that is away must not hold the exit.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WRITES)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def close(self) -> None:
        """Drain, write what is queued (for `CLOSE_WRITES` seconds at most), disconnect.

        Writes the database did not take by then are given up: their runs keep a gapless
        log and are resumed from its last step when their lease runs out.
        """
        await self.drain()
        if self._opened:
            await self.log.close(timeout=CLOSE_WRITES)

    # -- starting runs ----------------------------------------------------------------------

    def _engine(self, definition: WorkflowDefinition) -> WorkflowEngine:
        engine = self._engines.get(definition.id)
        if engine is None:
            engine = WorkflowEngine(
                Flow.model_validate(definition.ir),
                self.registry,
                limits=self.limits,
                host=self.children,
            )
            self._engines[definition.id] = engine
            if len(self._engines) > ENGINE_CACHE:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(definition.id)
        return engine

    def engine(self, definition: WorkflowDefinition) -> WorkflowEngine:
        """A saved graph's compiled engine (kept, by definition)."""
        return self._engine(definition)

    def refusal(self, definition: WorkflowDefinition, input: dict[str, Any]) -> Refusal | None:
        """Why a run of `definition` on `input` would go past the limits; None if it would not.

        The engine checks the same again when the run starts (a worker's limits may differ).
        """
        limits = self.limits
        max_steps = self._engine(definition).flow.settings.max_steps
        if max_steps > limits.max_steps_limit:
            return Refusal(
                None,
                f"graph {definition.id} sets max_steps = {max_steps:,}, more than this server "
                f"allows ({limits.named('max_steps_limit')}): lower `set max_steps` in the "
                "flow, or raise the setting",
            )
        problem = limits.input_problem(input)
        if problem is None:
            return None
        if isinstance(problem, LimitError) and problem.whole:  # the input is too large
            return Refusal(None, problem.problem, too_large=True)
        return Refusal(["body", "input", *reversed(problem.parts)], problem.problem)

    def inputs(self, definition: WorkflowDefinition) -> Inputs:
        """A saved graph's state declarations (kept with its compiled engine)."""
        return self._engine(definition).inputs

    def input_problems(
        self, definition: WorkflowDefinition, input: dict[str, Any]
    ) -> list[InputProblem]:
        """Where `input` does not fit the graph's state declarations; empty when it fits."""
        return self.inputs(definition).problems(input)

    async def start(
        self,
        *,
        definition: WorkflowDefinition,
        input: dict[str, Any],
        durability: Durability = "sync",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Created:
        """Record a new run and start it here (or queue it for a worker); at once.

        With an `idempotency_key` that a run already has, that run is answered instead.
        The run's initial state, recorded with it, is the input with the defaults of the
        declared keys it leaves out: a run resumed later finds them in its state.
        """
        state = self.inputs(definition).with_defaults(input)
        claim = (
            self.worker
            and not self._draining
            and len(self._active) < self.settings.worker_concurrency
        )
        created = await self.log.create_run(
            definition_id=definition.id,
            input=input,
            durability=durability,
            claim=claim,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            state=state,
        )
        if created.created and claim:
            claimed = Claimed(
                created.run_id, created.attempt, definition.id, durability, input, state, 0, None
            )
            self._launch(claimed, self._engine(definition), fresh=True)
        return created

    async def definition(self, definition_id: uuid.UUID) -> WorkflowDefinition | None:
        """A saved graph, from memory when it was read before (definitions never change)."""
        definition = self._definitions.get(definition_id)
        if definition is None:
            async with self.db.session() as session:
                definition = await store.get_definition(session, definition_id=definition_id)
            if definition is not None:
                self._definitions[definition_id] = definition
                if len(self._definitions) > ENGINE_CACHE:
                    self._definitions.popitem(last=False)
        else:
            self._definitions.move_to_end(definition_id)
        return definition

    async def _begin(self, claimed: Claimed) -> None:
        """Execute a run this process just claimed."""
        definition = await self.definition(claimed.definition_id)
        if definition is None:  # cannot happen through the API: definitions are never deleted
            logger.error("run %s: its definition %s is gone", claimed.run_id, claimed.definition_id)
            return
        # Fresh: its first claim, with nothing recorded (a run claimed again, one resumed
        # after a wait, may have steps after its snapshot at step 0).
        fresh = claimed.attempt == 1 and claimed.step == 0
        self._launch(claimed, self._engine(definition), fresh=fresh)

    def _launch(self, claimed: Claimed, engine: WorkflowEngine, *, fresh: bool) -> None:
        live = Live(
            claimed.run_id, claimed.attempt, has_history=fresh,
            definition_id=claimed.definition_id, durability=claimed.durability,
        )  # fmt: skip
        self._live[claimed.run_id] = live
        self._active[claimed.run_id] = live
        live.task = asyncio.ensure_future(execute(self, claimed, engine, live))
        live.task.add_done_callback(partial(_ended, live))

    # -- executing runs ---------------------------------------------------------------------

    def live_run(self, run_id: uuid.UUID) -> Live | None:
        """The run as this process executes it (its events, followers, stop), if it does."""
        return self._live.get(run_id)

    async def execute_here(
        self,
        claimed: Claimed,
        engine: WorkflowEngine,
        live: Live,
        threads: RunThreads | None = None,
    ) -> RunResult:
        """Execute a run held without a claim of its own; its result.

        A sub-flow's run, in its parent's task (`server/children.py`), counting its tool
        threads against its parent's `threads`.
        """
        self._live[claimed.run_id] = live
        return await execute(self, claimed, engine, live, threads)

    def forget(self, live: Live) -> None:
        """Drop the run from the claimed set; keep its events a while for late followers."""
        if self._active.get(live.run_id) is live:
            del self._active[live.run_id]
        loop = asyncio.get_running_loop()
        loop.call_later(KEEP_FINISHED, self._drop, live)
        if self._backlog:
            self._wake.set()  # room for another claim, and runs may be waiting

    def _drop(self, live: Live) -> None:
        if self._live.get(live.run_id) is live:
            del self._live[live.run_id]

    def _running(self) -> dict[uuid.UUID, Live]:
        return {
            run_id: live
            for run_id, live in self._active.items()
            if live.task is not None and not live.task.done()
        }

    async def _claim_loop(self) -> None:
        """Claim runs while there is room: woken by NOTIFY, or every poll interval."""
        interval = min(CLAIM_POLL_MAX, self.settings.lease_seconds / 3)
        while not self._draining:
            self._wake.clear()
            room = self.settings.worker_concurrency - len(self._running())
            try:
                await self.waits.sweep()  # waits past their deadline go on (or fail)
            except Exception as exc:
                self.log.trouble("timing out waits", exc)
            self._backlog = False  # a run queued from now on sets it again
            try:
                taken = await self.log.claim(room)
                if room > 0:  # it asked the database (with no room, it asks nothing)
                    self.log.outage.back()
                if len(taken) >= room:
                    self._backlog = True
                for claimed in taken:
                    await self._begin(claimed)
            except Exception as exc:
                self._backlog = True
                self.log.trouble("claiming runs", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _heartbeat_loop(self) -> None:
        """Keep the leases of our runs; stop the ones we lost or that were cancelled."""
        interval = self.settings.lease_seconds / 3
        wait = interval
        while True:
            await asyncio.sleep(wait)
            running = self._running()
            try:
                kept = await self.log.heartbeat({r: live.attempt for r, live in running.items()})
            except Exception as exc:
                # A deadlock with a step batch that holds the rows, or a lost connection:
                # try again soon rather than a third of the lease later.
                self.log.trouble("renewing leases", exc)
                wait = min(interval, HEARTBEAT_RETRY)
                continue
            if running:  # it asked the database (for no runs, it asks nothing)
                self.log.outage.back()
            wait = interval
            for run_id, live in running.items():
                if run_id not in kept:
                    live.halt("lost")
                elif kept[run_id]:
                    live.halt("cancel")

    def _cancel_local(self, run_id: uuid.UUID) -> None:
        live = self._live.get(run_id)
        if live is not None:
            live.halt("cancel")

    # -- the API side -----------------------------------------------------------------------

    async def cancel(self, run_id: uuid.UUID) -> str | None:
        """Ask a run to stop wherever it runs; see `RunLog.cancel` for the answers.

        `SubflowRun` for the unfinished run of a sub-flow: its parent is the one to cancel.
        """
        async with self.db.session() as session:
            run = await store.get_run(session, run_id=run_id)
        if run is not None and run.parent_run_id is not None and run.status not in ENDED:
            raise SubflowRun(run_id, run.parent_run_id, run.parent_node)
        answer = await self.log.cancel(run_id)
        if answer == "cancelling":
            self._cancel_local(run_id)
        return answer

    async def result(self, run_id: uuid.UUID) -> RunResult:
        """Wait until the run ends, wherever it runs; its result."""
        live = self._live.get(run_id)
        if live is not None and live.task is not None:
            try:
                return await asyncio.shield(live.task)
            except Moved:
                if self._draining:
                    raise Draining(str(run_id)) from None
        with self.log.hub.watch(run_id) as changed:
            while True:
                changed.clear()
                if self._draining:
                    raise Draining(str(run_id))
                async with self.db.session() as session:
                    run = await store.get_run(session, run_id=run_id)
                if run is None:
                    raise UnknownRun(str(run_id))
                if run.status in ENDED:
                    steps = await self.log.steps_after(run_id, 0)
                    error = RunError(**run.error) if run.error else None
                    status: RunStatus = run.status  # type: ignore[assignment]
                    return RunResult(str(run_id), status, run.state, [as_step(s) for s in steps],
                                     error)  # fmt: skip
                live = self._live.get(run_id)
                if live is not None and live.task is not None and not live.task.done():
                    return await self.result(run_id)  # claimed here meanwhile
                waiter = asyncio.ensure_future(changed.wait())
                draining = asyncio.ensure_future(self._drained.wait())
                try:
                    await asyncio.wait({waiter, draining}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    draining.cancel()

    async def events(
        self, run_id: uuid.UUID, *, after: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of the run as JSON: the ones emitted so far, then live, final last.

        `after`: only the events whose step is above it, the final one, and `run_waiting`.
        A run this process executes from its start is followed from memory; any other, and
        a follower that falls `ws_queue_events` behind, from the database, a page at a time;
        a run that waits at a wait node, from the database once it waits.  Followed from
        memory, a run's stream has the events of its sub-flows' runs too, where their nodes
        run (named by `parent_run_id`), each after an `after` as its node's step is.
        """
        own = str(run_id)
        last = 0  # the run's last step that finished, as far as the follower got
        sent = 0 if after is None else after
        announced = after is not None  # `run_started` (step 0) is skipped by any `after`
        waited: int | None = None  # the step of the `run_waiting` sent last
        forwarded = Forwarded()  # what was sent of its sub-flows' runs, from memory
        live = self._live.get(run_id)
        if live is not None and live.has_history:
            # The last place is kept for the signal to go on from the database.
            queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
                maxsize=self.settings.ws_queue_events + 1
            )
            # The history up to the subscription, read in place (it only grows): nothing
            # missed or doubled, and nothing copied however long the run.
            count = len(live.events)
            live.subscribers.add(queue)
            try:
                # A sub-flow's run has no task of its own (it runs in its parent's).
                moved = live.stop is not None and (live.task is None or live.task.done())
                for index in range(count):
                    message = as_json(live.event(index))
                    if message["run_id"] != own:  # a sub-flow's, relayed
                        if after is None or last >= after:
                            forwarded.note(message)
                            yield message
                        continue
                    if _wanted(message, after):
                        yield message
                    if _is_final(message):
                        return
                    if message["type"] == "run_waiting":  # its last: it goes on elsewhere
                        waited = message["step"]
                        break
                    sent, last = _progress(sent, message), _progress(last, message)
                while not moved and waited is None:
                    item = await queue.get()
                    if item is None:
                        break
                    if item["run_id"] != own:  # a sub-flow's, relayed
                        if after is None or last >= after:
                            forwarded.note(item)
                            yield item
                        continue
                    if _wanted(item, after):
                        yield item
                    if _is_final(item):
                        return
                    if item["type"] == "run_waiting":
                        waited = item["step"]
                        break
                    sent, last = _progress(sent, item), _progress(last, item)
            finally:
                live.subscribers.discard(queue)
            if self._draining:
                raise Draining(str(run_id))
            announced = True
        flow = await patiently(lambda: self._flow_of(run_id), self.log.hub, run_id, self.log.outage)
        follower = Follower(self.db, self.log, flow, forwarded)
        async for message in follower.follow(run_id, sent, announced=announced, waited=waited):
            yield message

    async def _flow_of(self, run_id: uuid.UUID) -> Mapping[str, Any] | None:
        """The IR of the run's flow (None: an unknown run).

        A sub-flow's run takes it from its parent's node, which holds the child it ran.
        """
        async with self.db.session() as session:
            run = await store.get_run(session, run_id=run_id)
        if run is None:
            return None
        if run.parent_run_id is not None and run.parent_node is not None:
            parent = await self._flow_of(run.parent_run_id)
            return subflow_nodes(parent or {}).get(run.parent_node)
        definition = await self.definition(run.definition_id)
        return None if definition is None else definition.ir

    async def state(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        """A run as recorded, with its exact current state (snapshot + later steps).

        The steps after the snapshot are folded in a page at a time: a run whose
        snapshot lags far behind costs time, not memory.
        """
        async with self.db.session() as session:
            run = await store.get_run(session, run_id=run_id)
            if run is None:
                return None
            children = await store.list_children(session, run_id=run_id)
        data = run.model_dump()
        data["children"] = [
            {"run_id": child.id, "node": child.parent_node, "status": child.status}
            for child in children
        ]
        if run.status not in ENDED:
            state, last = dict(run.state), None
            async with contextlib.aclosing(self.log.read_steps(run_id, run.step)) as steps:
                async for step in steps:
                    if on_main_line(step.branch):  # a fork's state until its branches join
                        state.update(step.delta)
                    last = step
            if last is not None:
                data["state"] = state
                data["step"], data["current_node"] = last.seq, last.node
        data["waiting"] = shown(run)
        return data


def _ended(live: Live, task: asyncio.Task[RunResult]) -> None:
    """A run's task is done: let its result go, and log an error no one may be waiting for.

    The result holds every step, as objects the collector tracks; kept for the minute a
    finished run stays here, they made each full collection walk the last minute's steps.
    Whoever waits on the task has it; a later `result()` reads the database.  `Moved` (the
    run stopped here and goes on elsewhere) is expected; anything else is a fault, logged
    here rather than as "Task exception was never retrieved" when the task is collected.
    """
    if live.task is task:
        live.task = None
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, Moved):
        logger.error("run %s: its task failed", live.run_id, exc_info=error)


def _is_final(message: dict[str, Any]) -> bool:
    return message.get("type") in ("run_finished", "run_failed")


def _wanted(message: dict[str, Any], after: int | None) -> bool:
    """Whether a follower that has seen the steps up to `after` gets this event.

    The final event and `run_waiting` always come: they say how the run stands.
    """
    return (
        after is None
        or message["step"] > after
        or _is_final(message)
        or message["type"] == "run_waiting"
    )


def _progress(sent: int, message: dict[str, Any]) -> int:
    """The last step a follower has, once it got `message`."""
    return max(sent, message["step"]) if message["type"] == "node_finished" else sent
