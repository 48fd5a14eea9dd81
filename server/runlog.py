"""Runs on disk: claims, leases, the fenced step log with group commit, and change signals.

A `RunLog` is a process's door to the runs in the database.  It creates runs (claimed at
once by this process, or queued for any worker), claims queued runs and runs whose owner
went silent, keeps its leases alive, and writes what its runs do.  Every write an owner
makes names the run's `attempt` (the fencing epoch that each claim increments): a write
whose run has since been claimed again, or ended by someone else, changes nothing and
fails the owner's run with `LeaseLost`.

Writes go through one queue.  Writer tasks, each on a connection of its own that it
keeps, take everything waiting (group commit: one statement for the steps of every run
that has some) while each run's writes stay in order, one batch at a time.  A write the
database did not take because it went away is tried again until it is taken: the step log
has no gaps.  After each commit the log signals the runs it changed (`Hub`): PostgreSQL
sends their ids with NOTIFY, so followers in every process hear of it; SQLite, one
process, signals directly.

`PostgresRunLog` (`server/pglog.py`) speaks asyncpg on connections it holds;
`SqliteRunLog` (`server/sqlitelog.py`) goes through SQLAlchemy on the server's engine.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from pydantic_core import to_json

from flowc.runtime.events import JOIN, WaitFor
from flowc.server.db import Database, database_away
from flowc.server.outage import Outage
from flowc.server.settings import asyncpg_dsn

logger = logging.getLogger("flowc.server")

#: Channels: run ids whose log changed, runs waiting for a worker, runs asked to stop.
CHANGED, QUEUED, CANCEL = "flowc_changed", "flowc_queued", "flowc_cancel"
#: Runs a batch holds at most (a NOTIFY payload is at most 8000 bytes: 37 per id).
MAX_BATCH_RUNS = 200
#: Writes a batch holds at most: building and sending a batch holds the event loop, so an
#: `exit` run's 10,000 steps go in several batches, with other work between them.
MAX_BATCH_ITEMS = 500
#: Seconds between NOTIFYs of changed runs (followers in other processes lag by this much).
NOTIFY_EVERY = 0.02
#: Seconds between tries of a write while the database is away (doubling up to the max).
RETRY_FIRST, RETRY_MAX = 0.05, 2.0
ENDED = ("succeeded", "failed", "cancelled")
#: Steps read from the database at a time by whoever goes through a run's log (a replay,
#: the current state): memory stays bounded however long the run.
READ_PAGE = 500
#: The largest step number `run_step.seq` holds (a 32-bit integer); reads clamp to it.
MAX_SEQ = 2**31 - 1


def owner_name() -> str:
    """`host:pid`: who owns a run, as `GET /graph/state` shows it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """The run is no longer this process's: another claimed it, or it was ended."""


class FenceOutFailed(Exception):
    """A silent owner's writer connections could not be ended: its runs are not taken."""

    def __init__(self, message: str, owners: Iterable[str] = ()) -> None:
        super().__init__(message)
        #: The owners whose runs were to be taken (any of them may be the one refused).
        self.owners = frozenset(owners)


class DatabaseAway(ConnectionError):
    """The database cannot be reached right now (the API answers 503)."""


@contextlib.asynccontextmanager
async def reaching(transient: Callable[[BaseException], bool]) -> AsyncIterator[None]:
    """Turn the driver's "the database went away" into `DatabaseAway`."""
    try:
        yield
    except DatabaseAway:
        raise
    except Exception as exc:
        if transient(exc):
            raise DatabaseAway(cause(exc)) from exc
        raise


class StorageFailed(Exception):
    """The database refused a write for a reason that trying again will not fix."""


class StepRow(NamedTuple):
    """A step as it is written: the `run_step` columns.

    A named tuple, like `Step`: one is made per step, on the hot path (a frozen
    dataclass costs 2-3 times as much to build).  `failed`: the step failed and took its
    node's error route.  `branch`: the parallel branch it ran in (`"0"`, `"1"`, ...), `JOIN`
    for the step that merged them, None on the main line.
    """

    seq: int
    node: str
    delta: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    attempts: int = 1
    failed: bool = False
    branch: str | None = None


@dataclass(slots=True)
class Claimed:
    """A run this process now owns, and what resuming it needs."""

    run_id: uuid.UUID
    attempt: int
    definition_id: uuid.UUID
    durability: str
    input: dict[str, Any]
    #: The snapshot: the state after step `step`.
    state: dict[str, Any]
    step: int
    current_node: str | None
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Created:
    """`create_run`'s answer: the run, whether this call made it, and how it stands."""

    run_id: uuid.UUID
    created: bool
    status: str
    request_hash: str | None
    attempt: int


@dataclass(frozen=True, slots=True)
class Ending:
    """A run's outcome as written."""

    status: str
    state: dict[str, Any]
    step: int
    node: str | None
    error: dict[str, Any] | None


def moment(at: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(at, timezone.utc)


def dumps(value: Any) -> str:
    """JSON as the database stores it (compact, UTF-8 as it is).

    pydantic's serializer (Rust): 5-8 times `json`'s C encoder, 1.4 µs a step's delta
    less and 30 µs less for each 20 KB string a run's row holds.  What reaches it was
    checked as storable JSON when it entered the state (`runtime/state.py`: string keys,
    finite numbers, no `\u0000`, no lone surrogate), which `json`'s options rechecked.
    """
    return to_json(value).decode()


# -- change signals ---------------------------------------------------------------------


class Hub:
    """Who waits for which run: woken when its log changes, or when signals may be lost."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def watch(self, run_id: uuid.UUID) -> Any:
        """An `asyncio.Event` set whenever `run_id` changes (clear it before reading)."""
        event = asyncio.Event()
        self.add(run_id, event)
        try:
            yield event
        finally:
            self.discard(run_id, event)

    def add(self, run_id: uuid.UUID, event: asyncio.Event) -> None:
        """Set `event` whenever `run_id` changes too (one event can watch several runs)."""
        self._waiting[run_id].add(event)

    def discard(self, run_id: uuid.UUID, event: asyncio.Event) -> None:
        """Stop setting `event` for `run_id`."""
        waiting = self._waiting.get(run_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._waiting[run_id]

    def changed(self, run_ids: Iterable[uuid.UUID]) -> None:
        """Wake whoever watches these runs."""
        for run_id in run_ids:
            for event in self._waiting.get(run_id, ()):
                event.set()

    def everything_changed(self) -> None:
        """Wake every watcher (signals may have been missed: they read again)."""
        for waiting in self._waiting.values():
            for event in waiting:
                event.set()


# -- the write queue ----------------------------------------------------------------------

Kind = Literal["step", "snapshot", "end", "release", "wait"]


@dataclass(slots=True)
class Item:
    """One write of one run, in the order the run made them."""

    kind: Kind
    run_id: uuid.UUID
    attempt: int
    step: StepRow | None = None
    ending: Ending | None = None
    wait: WaitFor | None = None
    #: A step's, every `snapshot_steps`-th: the run's state after it, written with it (in
    #: the same statement where the log can) as the run's snapshot.
    snapshot: dict[str, Any] | None = None
    #: Done when the item is committed (or failed): made when it is queued (`put`).  A
    #: step written at once by its own run (`WriteQueue.commit`, alone) never needs one.
    done: asyncio.Future[None] = field(init=False, repr=False, compare=False)


def snapshot_of(item: Item) -> Item:
    """The snapshot a step carries, as an item of its own, for a statement after the step's."""
    assert item.step is not None and item.snapshot is not None
    ending = Ending("running", item.snapshot, item.step.seq, item.step.node, None)
    return Item("snapshot", item.run_id, item.attempt, ending=ending)


BatchWriter = Callable[
    [Any, dict[uuid.UUID, list[Item]]], Awaitable[dict[uuid.UUID, BaseException | None]]
]
#: Writes one step alone, on a connection: whether it was taken (False: the run is not the
#: writer's any more); raises as a batch's writer does.
StepWriter = Callable[[Any, Item], Awaitable[bool]]


class WriteQueue:
    """Group commit: writers take every run's waiting items, one batch per run at a time."""

    def __init__(
        self,
        write: BatchWriter,
        connect: Callable[[], Awaitable[Any]],
        close: Callable[[Any], Awaitable[None]],
        *,
        writers: int,
        transient: Callable[[BaseException], bool],
        write_step: StepWriter | None = None,
        step_written: Callable[[uuid.UUID], None] = lambda run_id: None,
        outage: Outage | None = None,
    ) -> None:
        self._write = write
        self._outage = outage or Outage()
        self._write_step = write_step
        self._step_written = step_written
        self._connect = connect
        self._close = close
        self._transient = transient
        self._pending: dict[uuid.UUID, deque[Item]] = {}
        self._busy: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        #: Runs whose write was refused: their later steps are refused too.
        self._refused: dict[uuid.UUID, BaseException] = {}
        #: Connections not writing right now (None: not connected yet).
        self._idle: list[Any] = [None] * writers
        self._writers = writers
        self._tasks = [asyncio.ensure_future(self._writer()) for _ in range(writers)]
        self._closing = False

    def commit(self, item: Item) -> Awaitable[None]:
        """Queue a write; awaited, returns once it is committed; raises why not.

        When a connection is idle the caller writes at once, itself, everything waiting
        (its own write and any other run's): no hand-over to a writer task on the way.
        A step with nothing else waiting (a lone `sync` run's every step) is written
        alone, as it is, without going through the queue at all.  Not a coroutine of its
        own: each resumption of such a step's run goes through one frame less.
        """
        if item.kind == "step" and self._write_step is not None:
            return self._alone(item, self._write_step)
        return self._queued(item)

    async def _queued(self, item: Item) -> None:
        """`commit` through the queue: the caller writes the batch if it leads, else a writer."""
        # Only when nothing else is being written: under load, waiting runs share batches.
        leading = len(self._idle) == self._writers and not self._closing
        done = self.put(item, wake=not leading)
        if leading and not done.done():
            connection = self._idle.pop()
            try:
                batch = self._take()
                if batch:
                    try:
                        connection = await self._commit(connection, batch)
                    finally:
                        self._busy.difference_update(batch)
            except BaseException:
                # Cancelled mid-write: the connection's state is unknown; a new one next time.
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await self._close(connection)
                connection = None
                raise
            finally:
                self._idle.append(connection)
                if self._pending:
                    self._wake.set()  # whatever came meanwhile, for the writer tasks
        elif leading:
            self._wake.set()
        await done

    def put(self, item: Item, *, wake: bool = True) -> asyncio.Future[None]:
        """Queue a write; the future is done when it is committed (or failed).

        After a run's write was refused, its later steps, snapshots and wait fail at once
        (the log must not get a gap); its end or release is still written.
        """
        item.done = asyncio.get_running_loop().create_future()
        refused = self._refused.get(item.run_id)
        if refused is not None:
            if item.kind in ("step", "snapshot", "wait"):
                item.done.set_exception(refused)
                item.done.exception()  # read: whoever cares awaits it
                return item.done
            del self._refused[item.run_id]
        queue = self._pending.get(item.run_id)
        if queue is None:
            queue = self._pending[item.run_id] = deque()
        queue.append(item)
        if wake:
            self._wake.set()
        return item.done

    async def _alone(self, item: Item, write_step: StepWriter) -> None:
        """Write a step on an idle connection if nothing else waits, else queue it; raise why not.

        Whatever does not go as it usually does (no connection yet, a failure, a
        cancellation) makes it an item of the queue like any other, at the head of its
        run's, and the queue's own road writes it: tried again while the database is
        away, refused alone, and written even when its run's task was cancelled meanwhile
        (the run's stop waits for it, `pending`).
        """
        run_id = item.run_id
        # `_queued`'s own road unless it would lead, and nothing else waits.
        if (
            len(self._idle) != self._writers
            or self._closing
            or self._pending
            or run_id in self._refused
        ):
            await self._queued(item)  # decided here, when awaited: not when it was made
            return
        connection = self._idle.pop()
        self._busy.add(run_id)  # a later write of the run waits for this one
        failure: BaseException | None = None
        queued = False
        try:
            if connection is None:
                raise DatabaseAway("not connected yet")
            if await write_step(connection, item):
                self._step_written(run_id)
            else:
                failure = LeaseLost(str(run_id))
        except BaseException as exc:
            # Cancelled mid-write or the database away: the connection's state is unknown
            # (a refusal leaves it as it was).
            self._queue_first(item)
            queued = True
            cancelled = not isinstance(exc, Exception)
            if connection is not None and (cancelled or self._transient(exc)):
                broken, connection = connection, None
                with contextlib.suppress(Exception):
                    await self._close(broken)
            if cancelled:
                raise
        finally:
            self._busy.discard(run_id)
            self._idle.append(connection)
            if self._pending:
                self._wake.set()
        if queued:
            await item.done
        elif failure is not None:
            raise failure

    def _queue_first(self, item: Item) -> None:
        """Queue `item` ahead of its run's later writes (it was made before them)."""
        item.done = asyncio.get_running_loop().create_future()
        queue = self._pending.get(item.run_id)
        if queue is None:
            queue = self._pending[item.run_id] = deque()
        queue.appendleft(item)

    def pending(self, run_id: uuid.UUID) -> list[Item]:
        """The run's writes not yet committed (queued or being written)."""
        return list(self._pending.get(run_id, ()))

    def _take(self) -> dict[uuid.UUID, list[Item]]:
        batch: dict[uuid.UUID, list[Item]] = {}
        room = MAX_BATCH_ITEMS
        for run_id, queue in self._pending.items():
            if run_id in self._busy or not queue:
                continue
            # A run's first items, in order; the rest go in a later batch (`_commit` pops
            # exactly what it wrote).
            batch[run_id] = list(itertools.islice(queue, room))
            room -= len(batch[run_id])
            if len(batch) >= MAX_BATCH_RUNS or room <= 0:
                break
        self._busy.update(batch)
        return batch

    async def _writer(self) -> None:
        while True:
            batch = self._take() if self._idle else {}
            if not batch:
                if self._closing and not self._pending:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            connection = self._idle.pop()
            try:
                connection = await self._commit(connection, batch)
            finally:
                self._busy.difference_update(batch)
                self._idle.append(connection)
                self._wake.set()  # a run's later items may be waiting for this batch

    async def _commit(self, connection: Any, batch: dict[uuid.UUID, list[Item]]) -> Any:
        """Write the batch until the database takes it; settle each item. The connection.

        A failure that means the database went away is tried again on a new connection,
        for as long as it takes; one that the database meant (a refusal) fails the runs
        whose writes it refused.
        """
        delay = RETRY_FIRST
        failed = False
        while True:
            try:
                if connection is None:
                    connection = await self._connect()
                try:
                    outcome = await self._write(connection, batch)
                except Exception as exc:
                    if self._transient(exc):
                        raise
                    outcome = await self._one_by_one(connection, batch, exc)
                break
            except Exception as exc:
                failed = True
                if self._transient(exc):
                    self._outage.away("writing steps", cause(exc))
                else:
                    logger.warning(
                        "the database did not take a write (%s); trying again", cause(exc)
                    )
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await self._close(connection)
                connection = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        if failed:
            self._outage.back()
        for run_id, items in batch.items():
            queue = self._pending[run_id]
            for _ in items:
                queue.popleft()
            if not queue:
                del self._pending[run_id]
            failure = outcome.get(run_id)
            if isinstance(failure, StorageFailed):
                # Whatever the run queued behind the refused write fails with it (no gap,
                # and no outcome that claims more than the log holds); the run's own
                # `end` or `release`, queued after it learns of this, is written.
                self._refused[run_id] = failure
                for later in self._pending.pop(run_id, ()):
                    if not later.done.done():
                        later.done.set_exception(failure)
                        later.done.exception()
            for item in items:
                if item.done.done():
                    continue
                if failure is None:
                    item.done.set_result(None)
                else:
                    item.done.set_exception(failure)
                    item.done.exception()  # those who care await it; no "never retrieved"
        return connection

    async def _one_by_one(
        self, connection: Any, batch: dict[uuid.UUID, list[Item]], first: BaseException
    ) -> dict[uuid.UUID, BaseException | None]:
        """A refused batch of several runs: each alone, so one run's bad write fails only it."""
        logger.info("the database refused a write: %s", cause(first))
        if len(batch) == 1:
            return {run_id: StorageFailed(cause(first)) for run_id in batch}
        outcome: dict[uuid.UUID, BaseException | None] = {}
        for run_id, items in batch.items():
            try:
                outcome.update(await self._write(connection, {run_id: items}))
            except Exception as exc:
                if self._transient(exc):
                    raise  # the database went away meanwhile: the whole batch again
                outcome[run_id] = StorageFailed(cause(exc))
        return outcome

    async def close(self) -> None:
        """Write what is queued, then stop the writers and close their connections."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for connection in self._idle:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await self._close(connection)
        self._idle = []

    def abort(self) -> int:
        """Stop the writers now; how many writes were left unwritten."""
        for task in self._tasks:
            task.cancel()
        left = 0
        for queue in self._pending.values():
            for item in queue:
                left += 1
                if not item.done.done():
                    item.done.set_exception(DatabaseAway("the run log was closed"))
                    item.done.exception()
        self._pending.clear()
        return left


def cause(exc: BaseException) -> str:
    """`Type: message` of a failure: the driver's words, without the SQL SQLAlchemy adds.

    Our own wrappers (`StorageFailed`, `DatabaseAway`) already say it that way.
    """
    if isinstance(exc, (StorageFailed, DatabaseAway)):
        return str(exc)
    origin = getattr(exc, "orig", None) or exc
    return f"{type(origin).__name__}: {origin}"


def fold(state: dict[str, Any], deltas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A snapshot with the deltas after it merged in order: the state they lead to."""
    merged = dict(state)
    for delta in deltas:
        merged.update(delta)
    return merged


def on_main_line(branch: str | None) -> bool:
    """Whether a step of this `branch` changes the run's state: the main line's and joins do.

    A parallel branch's step does not: its writes reach the state through its join's step.
    """
    return branch is None or branch == JOIN


# -- the interface ------------------------------------------------------------------------


class RunLog(abc.ABC):
    """The database side of runs; `PostgresRunLog` and `SqliteRunLog` fill it in."""

    #: True when other processes may run this database's runs (claims matter).
    shared = False

    def __init__(
        self, *, owner: str, lease_seconds: float, writers: int, outage: Outage | None = None
    ) -> None:
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.writers = writers
        self.hub = Hub()
        #: The database's outages, told once each (`server/outage.py`): the `Database`'s.
        self.outage = outage or Outage()
        #: Called with run ids whose cancellation was asked for (set by the worker).
        self.on_cancel: Callable[[uuid.UUID], None] | None = None
        #: Called when runs may be waiting for a worker (set by the worker).
        self.on_queued: Callable[[], None] | None = None
        self._queue: WriteQueue | None = None

    def trouble(self, what: str, exc: BaseException) -> None:
        """`what` failed and will be tried again: an outage's, or said here if it is not one."""
        if database_away(exc):
            self.outage.away(what, cause(exc))
        else:
            logger.warning("%s failed (%s); trying again", what, cause(exc))

    @property
    def queue(self) -> WriteQueue:
        """The write queue (open() made it)."""
        assert self._queue is not None, "RunLog.open() first"
        return self._queue

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, start the writers and listen for signals."""

    async def close(self, timeout: float | None = None) -> None:
        """Write what is queued (for `timeout` seconds at most), stop writing, disconnect."""
        if self._queue is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._queue.close()), timeout)
            except asyncio.TimeoutError:
                left = self._queue.abort()
                logger.warning(
                    "closing with %d writes the database did not take; their runs resume "
                    "from their last recorded step",
                    left,
                )

    def append(
        self,
        run_id: uuid.UUID,
        attempt: int,
        row: StepRow,
        snapshot: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Queue a step; the future is done when it is committed.

        `snapshot`: the run's state after the step, for the run's row (its snapshot).
        """
        return self.queue.put(Item("step", run_id, attempt, step=row, snapshot=snapshot))

    def record(
        self,
        run_id: uuid.UUID,
        attempt: int,
        row: StepRow,
        snapshot: dict[str, Any] | None = None,
    ) -> Awaitable[None]:
        """Write a step; awaited, returns once it is committed (`LeaseLost`, `StorageFailed`).

        `snapshot` as for `append`.  Not a coroutine of its own: every resumption of a
        `sync` run's task goes through each frame it awaits in, once per step.
        """
        # Positional: half the cost of a dataclass's keyword call, on every step.
        queue = self._queue
        assert queue is not None, "RunLog.open() first"
        return queue.commit(Item("step", run_id, attempt, row, None, None, snapshot))

    def end(self, run_id: uuid.UUID, attempt: int, ending: Ending) -> asyncio.Future[None]:
        """Queue the run's outcome (after its steps); fails with `LeaseLost` if not owned."""
        return self.queue.put(Item("end", run_id, attempt, ending=ending))

    def release(self, run_id: uuid.UUID, attempt: int) -> asyncio.Future[None]:
        """Queue giving the run up (after its steps): any worker may claim it at once."""
        return self.queue.put(Item("release", run_id, attempt))

    def wait(
        self, run_id: uuid.UUID, attempt: int, ending: Ending, wait: WaitFor
    ) -> asyncio.Future[None]:
        """Queue the run's stop at a wait node (after its steps): `waiting`, owned by nobody.

        The row gets the state (a snapshot after step `ending.step`), what the run waits
        for, since when and until when.  `LeaseLost` when the run is not ours any more, or
        when its cancellation was asked for (the owner then records it cancelled).
        """
        return self.queue.put(Item("wait", run_id, attempt, ending=ending, wait=wait))

    @abc.abstractmethod
    async def create_run(
        self,
        *,
        definition_id: uuid.UUID,
        input: dict[str, Any],
        durability: str,
        claim: bool,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> Created:
        """A new run, claimed by this process or queued; with a key, the key's run if any.

        `state` is its initial state (the input and the defaults of the keys it left out);
        the input itself by default.
        """

    @abc.abstractmethod
    async def claim(self, limit: int, *, everything: bool = False) -> list[Claimed]:
        """Claim up to `limit` runs that are queued or whose lease expired.

        `everything`: every unfinished run, whoever held it (a single process starting up).
        """

    @abc.abstractmethod
    async def heartbeat(self, owned: dict[uuid.UUID, int]) -> dict[uuid.UUID, bool]:
        """Push the leases of `owned` runs forward; the ones still ours -> cancel asked."""

    @abc.abstractmethod
    async def cancel(self, run_id: uuid.UUID) -> str | None:
        """Ask a run to stop; what happened.

        `cancelled` (ended here: nobody ran it), `cancelling` (its owner will stop it),
        `ended:STATUS` for a run that had already ended, or None for an unknown run.
        """

    @abc.abstractmethod
    async def steps_after(
        self, run_id: uuid.UUID, seq: int, *, limit: int | None = None
    ) -> list[StepRow]:
        """The run's steps after `seq`, in order: the first `limit` of them, or all."""

    async def read_steps(
        self, run_id: uuid.UUID, seq: int, *, page: int = READ_PAGE
    ) -> AsyncGenerator[StepRow, None]:
        """The run's steps after `seq`, in order, read `page` at a time (by its key).

        No connection is held between pages; it ends at the first page that is not full,
        so steps committed while it reads are included.
        """
        while True:
            rows = await self.steps_after(run_id, seq, limit=page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            seq = rows[-1].seq


def cancelled_error() -> dict[str, Any]:
    """The error a run cancelled on request ends with."""
    return {"code": "cancelled", "message": "the run was cancelled on request", "node": None,
            "span": None}  # fmt: skip


def run_log_for(db: Database, *, owner: str, lease_seconds: float, writers: int = 2) -> RunLog:
    """The run log for the server's database."""
    # Imported here: each of them builds on this module.
    from flowc.server.pglog import PostgresRunLog
    from flowc.server.sqlitelog import SqliteRunLog

    if db.url.startswith("postgresql+asyncpg://"):
        return PostgresRunLog(
            asyncpg_dsn(db.url),
            owner=owner,
            lease_seconds=lease_seconds,
            writers=writers,
            outage=db.outage,
        )
    return SqliteRunLog(db, owner=owner, lease_seconds=lease_seconds)
