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

`PostgresRunLog` speaks asyncpg on connections it holds; `SqliteRunLog` goes through
SQLAlchemy on the server's engine.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple

from sqlalchemy import text

from flowc.runtime.events import JOIN, WaitFor
from flowc.server.db import Database

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


class DatabaseAway(ConnectionError):
    """The database cannot be reached right now (the API answers 503)."""


@contextlib.asynccontextmanager
async def _reaching(transient: Callable[[BaseException], bool]) -> AsyncIterator[None]:
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


#: Made once: `json.dumps` with options builds a new encoder on every call (every step).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """JSON as the database stores it."""
    return _ENCODER.encode(value)


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
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


BatchWriter = Callable[
    [Any, dict[uuid.UUID, list[Item]]], Awaitable[dict[uuid.UUID, BaseException | None]]
]


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
    ) -> None:
        self._write = write
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

    async def commit(self, item: Item) -> None:
        """Queue a write and return once it is committed; raise why not.

        When a connection is idle the caller writes at once, itself, everything waiting
        (its own write and any other run's): no hand-over to a writer task on the way.
        """
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
                logger.warning("the database did not take a write (%s); trying again", cause(exc))
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await self._close(connection)
                connection = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
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

    def __init__(self, *, owner: str, lease_seconds: float, writers: int) -> None:
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.writers = writers
        self.hub = Hub()
        #: Called with run ids whose cancellation was asked for (set by the worker).
        self.on_cancel: Callable[[uuid.UUID], None] | None = None
        #: Called when runs may be waiting for a worker (set by the worker).
        self.on_queued: Callable[[], None] | None = None
        self._queue: WriteQueue | None = None

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

    def append(self, run_id: uuid.UUID, attempt: int, row: StepRow) -> asyncio.Future[None]:
        """Queue a step; the future is done when it is committed."""
        return self.queue.put(Item("step", run_id, attempt, step=row))

    def record(self, run_id: uuid.UUID, attempt: int, row: StepRow) -> Awaitable[None]:
        """Write a step; awaited, returns once it is committed (`LeaseLost`, `StorageFailed`).

        Not a coroutine of its own: every resumption of a `sync` run's task goes through
        each frame it awaits in, once per step.
        """
        return self.queue.commit(Item("step", run_id, attempt, step=row))

    def snapshot(self, run_id: uuid.UUID, attempt: int, ending: Ending) -> asyncio.Future[None]:
        """Queue a snapshot: the run's row gets the state after step `ending.step`."""
        return self.queue.put(Item("snapshot", run_id, attempt, ending=ending))

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


def _transient_asyncpg(exc: BaseException) -> bool:
    """Failures that mean the database went away (trying again later may work)."""
    import asyncpg

    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True  # the connection's protocol state broke with it: a new one is needed
    if isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.TooManyConnectionsError,
        ),
    ):
        return True
    sqlstate = getattr(exc, "sqlstate", "") or ""
    # 08 connection, 57P shutdown, 53 resources, 40 deadlock or serialization: try again.
    return sqlstate.startswith(("08", "57P", "53", "40"))


# -- PostgreSQL -----------------------------------------------------------------------------


class PostgresRunLog(RunLog):
    """asyncpg on connections this process holds: writers, a listener, and a small pool."""

    shared = True

    _STEPS = """
        WITH v AS (
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[],
                                 $5::timestamptz[], $6::timestamptz[], $7::int[], $10::bool[],
                                 $11::text[])
                   AS v(run_id, seq, node, delta, started_at, finished_at, attempts, failed,
                        branch)
        ), fence AS (
            SELECT r.id FROM workflow_run r
              JOIN unnest($8::uuid[], $9::int[]) AS o(id, attempt)
                ON r.id = o.id AND r.attempt = o.attempt
             WHERE r.status = 'running'
               FOR SHARE OF r
        ), written AS (
            INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                                  failed, branch)
            SELECT v.run_id, v.seq, v.node, v.delta::jsonb, v.started_at, v.finished_at,
                   v.attempts, v.failed, v.branch
              FROM v JOIN fence ON fence.id = v.run_id
                ON CONFLICT (run_id, seq) DO NOTHING
        )
        SELECT array_agg(id) AS owned FROM fence
    """
    #: One step of one run (the common case: `sync` runs that do not wait for each other),
    #: kept to one plain statement whose answer is its tag: `INSERT 0 1` is written.  No
    #: row comes back and there is no CTE: 5-8 µs less a step than a CTE that returned the
    #: fence's row, measured on one held connection.  `INSERT 0 0` is a lost lease or the
    #: same row written before (its commit's answer was lost): `_FENCE` tells which.
    _STEP = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed, branch)
        SELECT $1, $2, $3, $4::jsonb, $5, $6, $7, $9, $10 FROM workflow_run
         WHERE id = $1 AND attempt = $8 AND status = 'running'
           FOR SHARE
            ON CONFLICT (run_id, seq) DO NOTHING
    """
    #: Whether the owner still holds the run (an epoch, once lost, is never held again).
    _FENCE = "SELECT 1 FROM workflow_run WHERE id = $1 AND attempt = $2 AND status = 'running'"
    _SNAPSHOT = """
        UPDATE workflow_run
           SET state = $3::jsonb, step = $4, current_node = $5, updated_at = now()
         WHERE id = $1 AND attempt = $2 AND status = 'running'
     RETURNING id
    """
    _END = """
        UPDATE workflow_run
           SET status = $3, state = $4::jsonb, step = $5, current_node = $6, error = $7::jsonb,
               finished_at = now(), updated_at = now(), owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND attempt = $2
           -- the same end written again (its first commit's answer was lost): taken
           AND (status = 'running' OR (status = $3 AND owner IS NULL AND finished_at IS NOT NULL))
     RETURNING id
    """
    _RELEASE = """
        UPDATE workflow_run
           SET owner = NULL, lease_expires_at = now() - interval '1 second', updated_at = now()
         WHERE id = $1 AND attempt = $2 AND status = 'running'
     RETURNING id, pg_notify('flowc_queued', id::text)
    """
    #: A cancellation asked for keeps a run from waiting: its owner records it cancelled.
    _WAIT = """
        UPDATE workflow_run
           SET status = 'waiting', state = $3::jsonb, step = $4, current_node = $5,
               waiting = $6::jsonb, owner = NULL, lease_expires_at = NULL, updated_at = now(),
               waiting_since = CASE WHEN status = 'waiting' THEN waiting_since ELSE now() END,
               wait_deadline = CASE WHEN status = 'waiting' THEN wait_deadline
                                    ELSE now() + make_interval(secs => $7::float8) END
         WHERE id = $1 AND attempt = $2 AND NOT cancel_requested
           -- the same wait written again (its first commit's answer was lost): taken
           AND (status = 'running' OR (status = 'waiting' AND step = $4))
     RETURNING id
    """
    #: A sub-flow's run is never claimed on its own; the claim of the run at the top of its
    #: tree gives it the new owner and epoch (`server/childlog.py`).
    _CLAIM = """
        WITH claimed AS (
            UPDATE workflow_run r
               SET status = 'running', owner = $1, attempt = r.attempt + 1,
                   lease_expires_at = now() + make_interval(secs => $2),
                   started_at = coalesce(r.started_at, now()), updated_at = now()
             WHERE r.id IN (
                    SELECT id FROM workflow_run
                     WHERE (status = 'queued'
                            OR (status = 'running' AND (lease_expires_at IS NULL
                                                        OR lease_expires_at < now())))
                       AND parent_run_id IS NULL
                     ORDER BY created_at
                     LIMIT $3
                       FOR UPDATE SKIP LOCKED)
         RETURNING r.id, r.attempt, r.definition_id, r.durability, r.input, r.state, r.step,
                   r.current_node, r.cancel_requested
        ), tree AS (
            UPDATE workflow_run c SET owner = $1, attempt = claimed.attempt, updated_at = now()
              FROM claimed
             WHERE c.root_run_id = claimed.id AND c.status = 'running'
        )
        SELECT * FROM claimed
    """
    _HEARTBEAT = """
        UPDATE workflow_run r
           SET lease_expires_at = now() + make_interval(secs => $3)
          FROM unnest($1::uuid[], $2::int[]) AS o(id, attempt)
         WHERE r.id = o.id AND r.attempt = o.attempt AND r.status = 'running'
     RETURNING r.id, r.cancel_requested
    """
    _CREATE = """
        WITH made AS (
            INSERT INTO workflow_run (id, definition_id, status, durability, input, state,
                                      step, created_at, updated_at, started_at, owner,
                                      attempt, lease_expires_at, cancel_requested,
                                      idempotency_key, request_hash)
            VALUES ($1, $2, $3, $4, $5::jsonb, $11::jsonb, 0, now(), now(),
                    CASE WHEN $6 THEN now() END, CASE WHEN $6 THEN $7 END,
                    CASE WHEN $6 THEN 1 ELSE 0 END,
                    CASE WHEN $6 THEN now() + make_interval(secs => $8) END, false, $9, $10)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, status, attempt
        )
        SELECT id, status, attempt,
               CASE WHEN status = 'queued' THEN pg_notify('flowc_queued', id::text) END AS _
          FROM made
    """

    def __init__(self, dsn: str, *, owner: str, lease_seconds: float, writers: int = 2) -> None:
        super().__init__(owner=owner, lease_seconds=lease_seconds, writers=writers)
        self.dsn = dsn
        self._pool: Any = None
        self._listening: asyncio.Task[None] | None = None
        #: Runs whose log changed since the last NOTIFY (sent by `_notify`, coalesced).
        self._changed: set[uuid.UUID] = set()
        self._changes = asyncio.Event()
        self._notifying: asyncio.Task[None] | None = None

    @property
    def pool(self) -> Any:
        """The connections for reads and short transactions (`open()` made them)."""
        assert self._pool is not None, "RunLog.open() first"
        return self._pool

    def _signal(self, run_ids: Iterable[uuid.UUID]) -> None:
        """After a commit: wake this process's followers now, the others' soon (NOTIFY)."""
        ids = list(run_ids)
        if ids:
            self.hub.changed(ids)
            self._changed.update(ids)
            self._changes.set()

    async def _notify(self) -> None:
        """NOTIFY the ids of changed runs, at most every `NOTIFY_EVERY` seconds.

        One NOTIFY for many steps keeps it off each step's commit; followers elsewhere
        hear of a step within that delay.  While the database is away nothing is sent:
        the listeners read everything again when they reconnect.
        """
        while True:
            await self._changes.wait()
            await asyncio.sleep(NOTIFY_EVERY)
            self._changes.clear()
            ids, self._changed = list(self._changed), set()
            try:
                async with self._pool.acquire() as connection:
                    for start in range(0, len(ids), MAX_BATCH_RUNS):
                        payload = ",".join(str(i) for i in ids[start : start + MAX_BATCH_RUNS])
                        await connection.execute("SELECT pg_notify($1, $2)", CHANGED, payload)
            except Exception as exc:
                logger.warning("telling other processes of run changes failed: %s", cause(exc))

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn)

    @staticmethod
    async def _close_connection(connection: Any) -> None:
        await connection.close(timeout=2)

    async def open(self) -> None:
        """Open the pool, start the writers and the listener."""
        import asyncpg

        # No floor of open connections: asyncpg would keep reopening it while the database
        # is away, with a traceback each time.
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=4, reset=_keep_session
        )
        self._queue = WriteQueue(
            self._write,
            self._connect,
            self._close_connection,
            writers=self.writers,
            transient=_transient_asyncpg,
        )
        ready = asyncio.get_running_loop().create_future()
        self._listening = asyncio.ensure_future(self._listen(ready))
        await ready
        self._notifying = asyncio.ensure_future(self._notify())

    async def close(self, timeout: float | None = None) -> None:
        """Write what is queued, stop listening, close connections."""
        await super().close(timeout)
        for task in (self._notifying, self._listening):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except asyncio.TimeoutError:  # the database is away: drop the connections
                self._pool.terminate()
            self._pool = None

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """One connection LISTENing; on loss, reconnect and wake everyone to read again."""
        delay = RETRY_FIRST
        while True:
            connection: Any = None
            try:
                connection = await self._connect()
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                connection.add_termination_listener(_settle_on_loss(lost))
                await connection.add_listener(CHANGED, self._on_changed)
                await connection.add_listener(QUEUED, self._on_queued)
                await connection.add_listener(CANCEL, self._on_cancel)
                delay = RETRY_FIRST
                if not ready.done():
                    ready.set_result(None)
                else:
                    self.hub.everything_changed()  # what was said while we were away
                    if self.on_queued:
                        self.on_queued()
                await lost
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                logger.warning("listening for run changes failed (%s); again soon", cause(exc))
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _on_changed(self, _c: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload:
            self.hub.changed(uuid.UUID(part) for part in payload.split(","))

    def _on_queued(self, _c: Any, _pid: int, _channel: str, _payload: str) -> None:
        if self.on_queued:
            self.on_queued()

    def _on_cancel(self, _c: Any, _pid: int, _channel: str, payload: str) -> None:
        if self.on_cancel:
            self.on_cancel(uuid.UUID(payload))

    async def _write(
        self, connection: Any, batch: dict[uuid.UUID, list[Item]]
    ) -> dict[uuid.UUID, BaseException | None]:
        """One batch: every run's steps in one statement; snapshots and ends after them."""
        if len(batch) == 1:
            (items,) = batch.values()
            if len(items) == 1 and items[0].kind == "step":
                return await self._write_step(connection, items[0])
        rows = [(item.run_id, row) for item, row in _steps(batch)]
        others = [item for items in batch.values() for item in items if item.kind != "step"]
        outcome: dict[uuid.UUID, BaseException | None] = {}
        changed: list[uuid.UUID] = []
        # A run's snapshots go in statements of their own after its steps' one, each
        # committed alone: each is idempotent (tried again, it changes nothing more), and a
        # snapshot is never ahead of the log, so a transaction would only add two round trips
        # (BEGIN, COMMIT) to every `snapshot_steps`-th step of a lone `sync` run.  An end or
        # a release is written in one with the steps before it.
        atomic = any(item.kind != "snapshot" for item in others)
        transaction = connection.transaction() if atomic else contextlib.nullcontext()
        async with transaction:
            if len(rows) == 1:
                ((item, row),) = _steps(batch)
                tag = await connection.execute(
                    self._STEP, item.run_id, row.seq, row.node, dumps(row.delta),
                    row.started_at, row.finished_at, row.attempts, item.attempt, row.failed,
                    row.branch,
                )  # fmt: skip
                if tag != "INSERT 0 1" and not await self._holds(connection, item):
                    outcome[item.run_id] = LeaseLost(str(item.run_id))
                else:
                    changed.append(item.run_id)
            elif rows:
                runs = {item.run_id: item.attempt for item, _ in _steps(batch)}
                record = await connection.fetchrow(
                    self._STEPS,
                    [run_id for run_id, _ in rows],
                    [row.seq for _, row in rows],
                    [row.node for _, row in rows],
                    [dumps(row.delta) for _, row in rows],
                    [row.started_at for _, row in rows],
                    [row.finished_at for _, row in rows],
                    [row.attempts for _, row in rows],
                    list(runs),
                    list(runs.values()),
                    [row.failed for _, row in rows],
                    [row.branch for _, row in rows],
                )
                owned = set(record["owned"] or ())
                changed.extend(owned)
                for run_id in runs:
                    if run_id not in owned:
                        outcome[run_id] = LeaseLost(str(run_id))
            for item in others:
                if outcome.get(item.run_id) is not None:
                    continue
                found = await self._other(connection, item)
                if not found:
                    outcome[item.run_id] = LeaseLost(str(item.run_id))
                else:
                    changed.append(item.run_id)
        self._signal(changed)
        return outcome

    async def _write_step(
        self, connection: Any, item: Item
    ) -> dict[uuid.UUID, BaseException | None]:
        """A batch of one step alone: a lone `sync` run's every step, kept short."""
        row = item.step
        assert row is not None
        tag = await connection.execute(
            self._STEP, item.run_id, row.seq, row.node, dumps(row.delta),
            row.started_at, row.finished_at, row.attempts, item.attempt, row.failed,
            row.branch,
        )  # fmt: skip
        if tag != "INSERT 0 1" and not await self._holds(connection, item):
            return {item.run_id: LeaseLost(str(item.run_id))}
        self._signal((item.run_id,))
        return {}

    async def _holds(self, connection: Any, item: Item) -> bool:
        """Whether the owner still holds the run whose step was not inserted.

        Not inserted while held: the row was there already, from this owner's own earlier
        commit of it (no one else could write it while the lease was held).
        """
        return await connection.fetchval(self._FENCE, item.run_id, item.attempt) is not None

    async def _other(self, connection: Any, item: Item) -> bool:
        if item.kind == "release":
            return await connection.fetchrow(self._RELEASE, item.run_id, item.attempt) is not None
        ending = item.ending
        assert ending is not None
        if item.kind == "wait":
            assert item.wait is not None
            found = await connection.fetchrow(
                self._WAIT, item.run_id, item.attempt, dumps(ending.state), ending.step,
                ending.node, dumps(item.wait.to_json()), item.wait.timeout,
            )  # fmt: skip
            return found is not None
        if item.kind == "snapshot":
            found = await connection.fetchrow(
                self._SNAPSHOT, item.run_id, item.attempt, dumps(ending.state), ending.step,
                ending.node,
            )  # fmt: skip
            return found is not None
        found = await connection.fetchrow(
            self._END, item.run_id, item.attempt, ending.status, dumps(ending.state),
            ending.step, ending.node, None if ending.error is None else dumps(ending.error),
        )  # fmt: skip
        return found is not None

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
        """Insert the run (claimed by this process, or queued with a NOTIFY); keyed: once."""
        run_id = uuid.uuid4()
        async with _reaching(_transient_asyncpg), self._pool.acquire() as connection:
            made = await connection.fetchrow(
                self._CREATE, run_id, definition_id, "running" if claim else "queued",
                durability, dumps(input), claim, self.owner, self.lease_seconds,
                idempotency_key, request_hash, dumps(input if state is None else state),
            )  # fmt: skip
            if made is not None:
                return Created(made["id"], True, made["status"], request_hash, made["attempt"])
            found = await connection.fetchrow(
                "SELECT id, status, request_hash, attempt FROM workflow_run "
                "WHERE idempotency_key = $1",
                idempotency_key,
            )
        assert found is not None
        return Created(found["id"], False, found["status"], found["request_hash"], found["attempt"])

    async def claim(self, limit: int, *, everything: bool = False) -> list[Claimed]:
        """Claim runs that are queued or whose owner went silent, oldest first."""
        if limit <= 0:
            return []
        async with self._pool.acquire() as connection:
            records = await connection.fetch(self._CLAIM, self.owner, self.lease_seconds, limit)
        return [
            Claimed(
                r["id"],
                r["attempt"],
                r["definition_id"],
                r["durability"],
                json.loads(r["input"]),
                json.loads(r["state"]),
                r["step"],
                r["current_node"],
                r["cancel_requested"],
            )
            for r in records
        ]

    async def heartbeat(self, owned: dict[uuid.UUID, int]) -> dict[uuid.UUID, bool]:
        """Extend the leases of the runs still ours; which of them were asked to stop."""
        if not owned:
            return {}
        async with self._pool.acquire() as connection:
            records = await connection.fetch(
                self._HEARTBEAT, list(owned), list(owned.values()), self.lease_seconds
            )
        return {r["id"]: r["cancel_requested"] for r in records}

    async def cancel(self, run_id: uuid.UUID) -> str | None:
        """End a run nobody runs; ask its owner to stop one that runs (NOTIFY)."""
        async with (
            _reaching(_transient_asyncpg),
            self._pool.acquire() as connection,
            connection.transaction(),
        ):
            run = await connection.fetchrow(
                "SELECT status, state, step, current_node, owner, "
                "       (lease_expires_at IS NULL OR lease_expires_at < now()) AS silent "
                "  FROM workflow_run WHERE id = $1 FOR UPDATE",
                run_id,
            )
            if run is None:
                return None
            if run["status"] in ENDED:
                return f"ended:{run['status']}"
            if run["status"] == "running" and not run["silent"]:
                await connection.execute(
                    "UPDATE workflow_run SET cancel_requested = true WHERE id = $1", run_id
                )
                await connection.execute("SELECT pg_notify('flowc_cancel', $1::text)", str(run_id))
                return "cancelling"
            # Imported here: the child log builds on this module.
            from flowc.server.childlog import PostgresChildLog

            await PostgresChildLog.close_in(connection, run_id, "cancelled", cancelled_error())
            steps = await connection.fetch(
                "SELECT seq, node, delta, branch FROM run_step WHERE run_id = $1 AND seq > $2 "
                "ORDER BY seq",
                run_id,
                run["step"],
            )
            state = fold(
                json.loads(run["state"]),
                (json.loads(s["delta"]) for s in steps if on_main_line(s["branch"])),
            )
            last = steps[-1] if steps else None
            await connection.execute(
                "UPDATE workflow_run SET status = 'cancelled', cancel_requested = true, "
                "  state = $2::jsonb, step = $3, current_node = $4, error = $5::jsonb, "
                "  owner = NULL, lease_expires_at = NULL, finished_at = now(), "
                "  updated_at = now(), waiting = NULL, waiting_since = NULL, "
                "  wait_deadline = NULL "
                "WHERE id = $1",
                run_id,
                dumps(state),
                last["seq"] if last else run["step"],
                last["node"] if last else run["current_node"],
                dumps(cancelled_error()),
            )
            await connection.execute("SELECT pg_notify('flowc_changed', $1::text)", str(run_id))
        return "cancelled"

    async def steps_after(
        self, run_id: uuid.UUID, seq: int, *, limit: int | None = None
    ) -> list[StepRow]:
        """The run's steps after `seq`, in order (`limit` None: all of them)."""
        async with _reaching(_transient_asyncpg), self._pool.acquire() as connection:
            records = await connection.fetch(
                "SELECT seq, node, delta, started_at, finished_at, attempts, failed, branch "
                "FROM run_step WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                run_id,
                min(seq, MAX_SEQ),
                limit,  # NULL: no limit
            )
        return [
            StepRow(
                r["seq"],
                r["node"],
                json.loads(r["delta"]),
                r["started_at"],
                r["finished_at"],
                r["attempts"],
                r["failed"],
                r["branch"],
            )
            for r in records
        ]


async def _keep_session(_connection: Any) -> None:
    """A pool connection given back is used as it is: no reset query.

    The log's pool connections change no session state (no `SET`, `LISTEN`, cursor or
    advisory lock; asyncpg still rolls back a transaction left open), and asyncpg's reset
    query would be a second round trip on every use: each run's creation, each claim,
    heartbeat, read and NOTIFY.
    """


def _steps(batch: dict[uuid.UUID, list[Item]]) -> list[tuple[Item, StepRow]]:
    return [(item, item.step) for items in batch.values() for item in items if item.step]


def _settle_on_loss(lost: asyncio.Future[None]) -> Callable[[Any], None]:
    def settle(_connection: Any) -> None:
        if not lost.done():
            lost.set_result(None)

    return settle


def cancelled_error() -> dict[str, Any]:
    """The error a run cancelled on request ends with."""
    return {"code": "cancelled", "message": "the run was cancelled on request", "node": None,
            "span": None}  # fmt: skip


# -- SQLite -------------------------------------------------------------------------------


def _transient_sql(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, (OSError, ConnectionError)) or (
        isinstance(exc, OperationalError) and "locked" in str(exc)
    )


class SqliteRunLog(RunLog):
    """SQLAlchemy on the server's engine: one process owns the file, signals stay inside."""

    def __init__(self, db: Database, *, owner: str, lease_seconds: float) -> None:
        super().__init__(owner=owner, lease_seconds=lease_seconds, writers=1)
        self.db = db

    async def open(self) -> None:
        """Start the writer."""

        async def connect() -> Any:
            return self.db.engine

        async def close(_engine: Any) -> None:
            return None

        self._queue = WriteQueue(self._write, connect, close, writers=1, transient=_transient_sql)

    def _now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def _write(
        self, engine: Any, batch: dict[uuid.UUID, list[Item]]
    ) -> dict[uuid.UUID, BaseException | None]:
        outcome: dict[uuid.UUID, BaseException | None] = {}
        changed: list[uuid.UUID] = []
        queued = False
        async with engine.begin() as connection:
            for run_id, items in batch.items():
                owns = await connection.execute(
                    text(
                        "SELECT 1 FROM workflow_run WHERE id = :id AND attempt = :attempt "
                        "AND status = 'running'"
                    ),
                    {"id": _sqlite_id(run_id), "attempt": items[0].attempt},
                )
                if owns.first() is None:
                    outcome[run_id] = LeaseLost(str(run_id))
                    continue
                steps = [item.step for item in items if item.step is not None]
                if steps:
                    await connection.execute(
                        text(
                            "INSERT OR IGNORE INTO run_step (run_id, seq, node, delta, "
                            "started_at, finished_at, attempts, failed, branch) VALUES (:run_id, "
                            ":seq, :node, :delta, :started_at, :finished_at, :attempts, :failed, "
                            ":branch)"
                        ),
                        [
                            {
                                "run_id": _sqlite_id(run_id),
                                "seq": s.seq,
                                "node": s.node,
                                "delta": dumps(s.delta),
                                "started_at": _sqlite_time(s.started_at),
                                "finished_at": _sqlite_time(s.finished_at),
                                "attempts": s.attempts,
                                "failed": s.failed,
                                "branch": s.branch,
                            }
                            for s in steps
                        ],
                    )
                for item in items:
                    if item.kind == "step":
                        continue
                    if not await self._other(connection, item):
                        outcome[run_id] = LeaseLost(str(run_id))
                        break
                    queued = queued or item.kind == "release"
                changed.append(run_id)
        self.hub.changed(changed)
        if queued and self.on_queued:
            self.on_queued()
        return outcome

    async def _other(self, connection: Any, item: Item) -> bool:
        """Write a run's snapshot, end, release or wait; False when it was not taken."""
        now = _sqlite_time(self._now())
        if item.kind == "release":
            expired = _sqlite_time(self._now() - timedelta(seconds=1))
            await connection.execute(
                text(
                    "UPDATE workflow_run SET owner = NULL, lease_expires_at = :expired, "
                    "updated_at = :now WHERE id = :id"
                ),
                {"id": _sqlite_id(item.run_id), "expired": expired, "now": now},
            )
            return True
        ending = item.ending
        assert ending is not None
        if item.kind == "wait":
            return await self._wait(connection, item.run_id, ending, item.wait)
        values = {
            "id": _sqlite_id(item.run_id),
            "state": dumps(ending.state),
            "step": ending.step,
            "node": ending.node,
            "now": now,
        }
        if item.kind == "snapshot":
            await connection.execute(
                text(
                    "UPDATE workflow_run SET state = :state, step = :step, current_node = :node, "
                    "updated_at = :now WHERE id = :id"
                ),
                values,
            )
            return True
        await connection.execute(
            text(
                "UPDATE workflow_run SET status = :status, state = :state, step = :step, "
                "current_node = :node, error = :error, finished_at = :now, updated_at = :now, "
                "owner = NULL, lease_expires_at = NULL WHERE id = :id"
            ),
            {
                **values,
                "status": ending.status,
                "error": None if ending.error is None else dumps(ending.error),
            },
        )
        return True

    async def _wait(
        self, connection: Any, run_id: uuid.UUID, ending: Ending, wait: WaitFor | None
    ) -> bool:
        """The run stops at a wait node, unless its cancellation was asked for."""
        assert wait is not None
        now = self._now()
        deadline = None if wait.timeout is None else now + timedelta(seconds=wait.timeout)
        written = await connection.execute(
            text(
                "UPDATE workflow_run SET status = 'waiting', state = :state, step = :step, "
                "current_node = :node, waiting = :waiting, waiting_since = :now, "
                "wait_deadline = :deadline, owner = NULL, lease_expires_at = NULL, "
                "updated_at = :now WHERE id = :id AND NOT cancel_requested"
            ),
            {
                "id": _sqlite_id(run_id),
                "state": dumps(ending.state),
                "step": ending.step,
                "node": ending.node,
                "waiting": dumps(wait.to_json()),
                "now": _sqlite_time(now),
                "deadline": None if deadline is None else _sqlite_time(deadline),
            },
        )
        return bool(written.rowcount)

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
        """Insert the run (claimed by this process, or queued); keyed: at most once."""
        run_id = uuid.uuid4()
        now = self._now()
        status = "running" if claim else "queued"
        attempt = 1 if claim else 0
        async with self.db.engine.begin() as connection:
            made = await connection.execute(
                text(
                    "INSERT INTO workflow_run (id, definition_id, status, durability, input, "
                    "state, step, created_at, updated_at, started_at, owner, attempt, "
                    "lease_expires_at, cancel_requested, idempotency_key, request_hash) "
                    "VALUES (:id, :definition_id, :status, :durability, :input, :state, 0, "
                    ":now, :now, :started, :owner, :attempt, :lease, 0, :key, :hash) "
                    "ON CONFLICT (idempotency_key) DO NOTHING"
                ),
                {
                    "id": _sqlite_id(run_id),
                    "definition_id": _sqlite_id(definition_id),
                    "status": status,
                    "durability": durability,
                    "input": dumps(input),
                    "state": dumps(input if state is None else state),
                    "now": _sqlite_time(now),
                    "started": _sqlite_time(now) if claim else None,
                    "owner": self.owner if claim else None,
                    "attempt": attempt,
                    "lease": _sqlite_time(now + timedelta(seconds=self.lease_seconds))
                    if claim
                    else None,
                    "key": idempotency_key,
                    "hash": request_hash,
                },
            )
            if made.rowcount == 1:
                created = Created(run_id, True, status, request_hash, attempt)
            else:
                found = (
                    await connection.execute(
                        text(
                            "SELECT id, status, request_hash, attempt FROM workflow_run "
                            "WHERE idempotency_key = :key"
                        ),
                        {"key": idempotency_key},
                    )
                ).one()
                created = Created(
                    uuid.UUID(found.id), False, found.status, found.request_hash, found.attempt
                )
        if created.created and not claim and self.on_queued:
            self.on_queued()
        return created

    async def claim(self, limit: int, *, everything: bool = False) -> list[Claimed]:
        """Claim unfinished runs (all of them at start-up: one process owns the file)."""
        if limit <= 0:
            return []
        now = self._now()
        lease = _sqlite_time(now + timedelta(seconds=self.lease_seconds))
        condition = (
            "status IN ('queued', 'running')"
            if everything
            else "(status = 'queued' OR (status = 'running' AND (lease_expires_at IS NULL "
            "OR lease_expires_at < :now)))"
        )
        # A sub-flow's run is never claimed on its own (`server/childlog.py`).
        condition += " AND parent_run_id IS NULL"
        async with self.db.engine.begin() as connection:
            rows = (
                await connection.execute(
                    text(
                        f"SELECT id FROM workflow_run WHERE {condition} "
                        "ORDER BY created_at LIMIT :limit"
                    ),
                    {"now": _sqlite_time(now), "limit": limit},
                )
            ).all()
            claimed: list[Claimed] = []
            for row in rows:
                await connection.execute(
                    text(
                        "UPDATE workflow_run SET status = 'running', owner = :owner, "
                        "attempt = attempt + 1, lease_expires_at = :lease, "
                        "started_at = coalesce(started_at, :now), updated_at = :now "
                        "WHERE id = :id"
                    ),
                    {"owner": self.owner, "lease": lease, "now": _sqlite_time(now), "id": row.id},
                )
                r = (
                    await connection.execute(
                        text(
                            "SELECT id, attempt, definition_id, durability, input, state, step, "
                            "current_node, cancel_requested FROM workflow_run WHERE id = :id"
                        ),
                        {"id": row.id},
                    )
                ).one()
                # The unfinished runs of its sub-flows: this owner's, under the new epoch.
                await connection.execute(
                    text(
                        "UPDATE workflow_run SET owner = :owner, attempt = :attempt, "
                        "updated_at = :now WHERE root_run_id = :id AND status = 'running'"
                    ),
                    {"owner": self.owner, "attempt": r.attempt, "now": _sqlite_time(now),
                     "id": row.id},
                )  # fmt: skip
                claimed.append(
                    Claimed(
                        uuid.UUID(r.id),
                        r.attempt,
                        uuid.UUID(r.definition_id),
                        r.durability,
                        json.loads(r.input),
                        json.loads(r.state),
                        r.step,
                        r.current_node,
                        bool(r.cancel_requested),
                    )
                )
        return claimed

    async def heartbeat(self, owned: dict[uuid.UUID, int]) -> dict[uuid.UUID, bool]:
        """Extend the leases (one process: the runs stay ours)."""
        if not owned:
            return {}
        now = self._now()
        lease = _sqlite_time(now + timedelta(seconds=self.lease_seconds))
        result: dict[uuid.UUID, bool] = {}
        async with self.db.engine.begin() as connection:
            for run_id, attempt in owned.items():
                row = (
                    await connection.execute(
                        text(
                            "UPDATE workflow_run SET lease_expires_at = :lease WHERE id = :id "
                            "AND attempt = :attempt AND status = 'running' "
                            "RETURNING cancel_requested"
                        ),
                        {"lease": lease, "id": _sqlite_id(run_id), "attempt": attempt},
                    )
                ).first()
                if row is not None:
                    result[run_id] = bool(row.cancel_requested)
        return result

    async def cancel(self, run_id: uuid.UUID) -> str | None:
        """End a run nobody here runs; ask the worker to stop one it runs."""
        async with self.db.engine.begin() as connection:
            run = (
                await connection.execute(
                    text(
                        "SELECT status, state, step, current_node, owner FROM workflow_run "
                        "WHERE id = :id"
                    ),
                    {"id": _sqlite_id(run_id)},
                )
            ).first()
            if run is None:
                return None
            if run.status in ENDED:
                return f"ended:{run.status}"
            closed: list[uuid.UUID] = []
            if run.status == "running" and run.owner == self.owner:
                await connection.execute(
                    text("UPDATE workflow_run SET cancel_requested = 1 WHERE id = :id"),
                    {"id": _sqlite_id(run_id)},
                )
                answer = "cancelling"
            else:
                # Imported here: the child log builds on this module.
                from flowc.server.childlog import SqliteChildLog

                closed = await SqliteChildLog.close_in(
                    connection, run_id, "cancelled", cancelled_error()
                )
                steps = (
                    await connection.execute(
                        text(
                            "SELECT seq, node, delta, branch FROM run_step WHERE run_id = :id "
                            "AND seq > :step ORDER BY seq"
                        ),
                        {"id": _sqlite_id(run_id), "step": run.step},
                    )
                ).all()
                state = fold(
                    json.loads(run.state),
                    (json.loads(s.delta) for s in steps if on_main_line(s.branch)),
                )
                now = _sqlite_time(self._now())
                await connection.execute(
                    text(
                        "UPDATE workflow_run SET status = 'cancelled', cancel_requested = 1, "
                        "state = :state, step = :step, current_node = :node, error = :error, "
                        "owner = NULL, lease_expires_at = NULL, finished_at = :now, "
                        "updated_at = :now, waiting = NULL, waiting_since = NULL, "
                        "wait_deadline = NULL WHERE id = :id"
                    ),
                    {
                        "id": _sqlite_id(run_id),
                        "state": dumps(state),
                        "step": steps[-1].seq if steps else run.step,
                        "node": steps[-1].node if steps else run.current_node,
                        "error": dumps(cancelled_error()),
                        "now": now,
                    },
                )
                answer = "cancelled"
        if answer == "cancelling" and self.on_cancel:
            self.on_cancel(run_id)
        self.hub.changed([run_id, *closed])
        return answer

    async def steps_after(
        self, run_id: uuid.UUID, seq: int, *, limit: int | None = None
    ) -> list[StepRow]:
        """The run's steps after `seq`, in order (`limit` None: all of them)."""
        async with self.db.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT seq, node, delta, started_at, finished_at, attempts, failed, "
                        "branch FROM run_step WHERE run_id = :id AND seq > :seq ORDER BY seq "
                        "LIMIT :limit"
                    ),
                    {
                        "id": _sqlite_id(run_id),
                        "seq": min(seq, MAX_SEQ),
                        "limit": -1 if limit is None else limit,  # -1: no limit in SQLite
                    },
                )
            ).all()
        return [
            StepRow(
                r.seq,
                r.node,
                json.loads(r.delta),
                _parse_time(r.started_at),
                _parse_time(r.finished_at),
                r.attempts,
                bool(r.failed),
                r.branch,
            )
            for r in rows
        ]


def _sqlite_id(run_id: uuid.UUID) -> str:
    """A UUID as SQLAlchemy stores it in SQLite (32 hex digits)."""
    return run_id.hex


def _sqlite_time(at: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite."""
    return at.astimezone(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_time(value: Any) -> datetime:
    moment_ = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment_ if moment_.tzinfo else moment_.replace(tzinfo=timezone.utc)


def run_log_for(db: Database, *, owner: str, lease_seconds: float, writers: int = 2) -> RunLog:
    """The run log for the server's database."""
    if db.url.startswith("postgresql+asyncpg://"):
        return PostgresRunLog(
            "postgresql://" + db.url.removeprefix("postgresql+asyncpg://"),
            owner=owner,
            lease_seconds=lease_seconds,
            writers=writers,
        )
    return SqliteRunLog(db, owner=owner, lease_seconds=lease_seconds)
