"""Runs on PostgreSQL -> claims, fenced group-commit writes and NOTIFY, over asyncpg.

`PostgresRunLog` holds its connections: writer connections for the write queue, one that
LISTENs for changed, queued and cancelled runs, and a small pool for reads and short
transactions.  The statements are the fences of `docs/durability.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flowc.server.outage import Outage
from flowc.server.pgconnect import connect
from flowc.server.pgfence import HeldClaims, RefusedOwners, fence_out, writer_name
from flowc.server.runlog import (
    CANCEL,
    CHANGED,
    ENDED,
    MAX_BATCH_RUNS,
    MAX_SEQ,
    NOTIFY_EVERY,
    QUEUED,
    RETRY_FIRST,
    RETRY_MAX,
    Claimed,
    Created,
    FenceOutFailed,
    Item,
    LeaseLost,
    RunLog,
    StepRow,
    WriteQueue,
    cancelled_error,
    dumps,
    fold,
    on_main_line,
    reaching,
    snapshot_of,
)


def _unique_violation(exc: BaseException) -> bool:
    """Whether asyncpg raised it for a duplicate key (asyncpg imported only when it did)."""
    import asyncpg

    return isinstance(exc, asyncpg.UniqueViolationError)


def transient_asyncpg(exc: BaseException) -> bool:
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
    #: One step of one run, fenced: the first write of a run's claim on a writer connection.
    #: One plain statement whose answer is its tag: `INSERT 0 1` is written.  No row comes
    #: back and there is no CTE: 5-8 µs less a step than a CTE that returned the fence's
    #: row, measured on one held connection.  `INSERT 0 0` is a lost lease or the same row
    #: written before (its commit's answer was lost): `_FENCE` tells which.
    _STEP = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed, branch)
        SELECT $1, $2, $3, $4::jsonb, $5, $6, $7, $9, $10 FROM workflow_run
         WHERE id = $1 AND attempt = $8 AND status = 'running'
           FOR SHARE
            ON CONFLICT (run_id, seq) DO NOTHING
    """
    #: A step that carries the run's snapshot (every `snapshot_steps`-th), fenced by the
    #: snapshot's own update of the run's row: one statement, one commit, where a snapshot
    #: of its own would be a round trip more on the run's way.  The tags say as `_STEP`'s.
    _STEP_SNAPSHOT = """
        WITH run AS (
            UPDATE workflow_run
               SET state = $11::jsonb, step = $2, current_node = $3, updated_at = now()
             WHERE id = $1 AND attempt = $8 AND status = 'running'
         RETURNING id
        )
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed, branch)
        SELECT $1, $2, $3, $4::jsonb, $5, $6, $7, $9, $10 FROM run
            ON CONFLICT (run_id, seq) DO NOTHING
    """
    #: Each later step of that claim on the same connection, while the connection lives: a
    #: plain insert, as the floor's.  A takeover ends the silent owner's writer connections
    #: before it commits (`server/pgfence.py`): a connection fenced once stays fenced.
    #: Reading and share-locking the run's row cost 10-15% of a lone `sync` step (bench/api.py).
    _STEP_HELD = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed, branch)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)
    """
    #: Many runs' steps when each run's claim is held on the connection: `_STEPS` without its
    #: fence.  Its tag counts the rows written; fewer than given sends the batch through
    #: `_STEPS` (`ON CONFLICT` makes that harmless).
    _STEPS_HELD = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed, branch)
        SELECT v.run_id, v.seq, v.node, v.delta::jsonb, v.started_at, v.finished_at,
               v.attempts, v.failed, v.branch
          FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::timestamptz[],
                      $6::timestamptz[], $7::int[], $8::bool[], $9::text[])
               AS v(run_id, seq, node, delta, started_at, finished_at, attempts, failed,
                    branch)
            ON CONFLICT (run_id, seq) DO NOTHING
    """
    #: Whether the owner still holds the run (an epoch, once lost, is never held again).
    _FENCE = "SELECT 1 FROM workflow_run WHERE id = $1 AND attempt = $2 AND status = 'running'"
    _HAS_STEP = "SELECT true FROM run_step WHERE run_id = $1 AND seq = $2"
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
    #: `silent`: the owner the run is taken from (it went silent), whose writer connections
    #: are ended before the claim commits (`fence_out`).  The runs of the owners in $4 are
    #: left alone (their connections could not be ended just now).
    _CLAIM = """
        WITH claimed AS (
            UPDATE workflow_run r
               SET status = 'running', owner = $1, attempt = r.attempt + 1,
                   lease_expires_at = now() + make_interval(secs => $2),
                   started_at = coalesce(r.started_at, now()), updated_at = now()
              FROM (SELECT id, CASE WHEN status = 'running' THEN owner END AS silent
                      FROM workflow_run
                     WHERE (status = 'queued'
                            OR (status = 'running' AND (lease_expires_at IS NULL
                                                        OR lease_expires_at < now())
                                AND (owner IS NULL OR NOT owner = ANY($4::text[]))))
                       AND parent_run_id IS NULL
                     ORDER BY created_at
                     LIMIT $3
                       FOR UPDATE SKIP LOCKED) AS old
             WHERE r.id = old.id
         RETURNING r.id, r.attempt, r.definition_id, r.durability, r.input, r.state, r.step,
                   r.current_node, r.cancel_requested, old.silent
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

    def __init__(
        self,
        dsn: str,
        *,
        owner: str,
        lease_seconds: float,
        writers: int = 2,
        outage: Outage | None = None,
    ) -> None:
        super().__init__(owner=owner, lease_seconds=lease_seconds, writers=writers, outage=outage)
        self.dsn = dsn
        self._pool: Any = None
        self._listening: asyncio.Task[None] | None = None
        #: Runs whose log changed since the last NOTIFY (sent by `_notify`, coalesced).
        self._changed: set[uuid.UUID] = set()
        self._changes = asyncio.Event()
        self._notifying: asyncio.Task[None] | None = None
        #: The server process id of the connection that sends this process's NOTIFYs.
        self._notifier: int | None = None
        #: Silent owners whose runs could not be taken (`claim`).
        self._refused = RefusedOwners()
        #: Per writer connection, the claims whose later steps there are plain inserts.
        self._held = HeldClaims()

    @property
    def pool(self) -> Any:
        """The connections for reads and short transactions (`open()` made them)."""
        assert self._pool is not None, "RunLog.open() first"
        return self._pool

    def _step_signal(self, run_id: uuid.UUID) -> None:
        """`_signal` for one run's step written alone (every step of a lone `sync` run)."""
        self.hub.changed((run_id,))
        self._changed.add(run_id)
        self._changes.set()

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
        hear of a step within that delay.  It goes out on a connection of its own, held (no
        pool connection taken and given back each time), whose session commits without
        waiting for the WAL's flush: a NOTIFY needs a transaction id, so a synchronous
        commit of it would be one more disk flush beside the steps' own, and a notification
        does not outlive a database crash anyway.  Not on the LISTENing connection: that
        one stays idle, so its loss is always noticed.  While the database is away the ids
        wait, tried again with backoff: the other processes may be listening all along.
        """
        connection: Any = None
        delay = RETRY_FIRST
        try:
            while True:
                await self._changes.wait()
                await asyncio.sleep(NOTIFY_EVERY)
                self._changes.clear()
                ids, self._changed = list(self._changed), set()
                try:
                    if connection is None:
                        connection = await self._connect()
                        await connection.execute("SET synchronous_commit TO off")
                        self._notifier = connection.get_server_pid()
                        lost = functools.partial(self._notifier_lost, self._notifier)
                        connection.add_termination_listener(lost)
                    for start in range(0, len(ids), MAX_BATCH_RUNS):
                        payload = ",".join(str(i) for i in ids[start : start + MAX_BATCH_RUNS])
                        await connection.execute("SELECT pg_notify($1, $2)", CHANGED, payload)
                    if delay != RETRY_FIRST:
                        self.outage.back()
                    delay = RETRY_FIRST
                except Exception as exc:
                    self.trouble("telling other processes of run changes", exc)
                    self._changed.update(ids)
                    self._changes.set()
                    if connection is not None:
                        connection.terminate()
                    connection, self._notifier = None, None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
        finally:
            if connection is not None:
                connection.terminate()

    def _notifier_lost(self, pid: int, _connection: Any) -> None:
        """The connection that sends this process's NOTIFYs ended: forget its `pid` at once.

        PostgreSQL may give that pid to another process's next connection, whose NOTIFYs
        would then be taken for this process's own and dropped (`_on_changed`) for as long
        as this process sends none of its own, which may be for ever.  (The pid is taken
        when the connection is made: an ended connection no longer says it.)
        """
        if self._notifier == pid:
            self._notifier = None

    async def _connect(self) -> Any:
        return await connect(self.dsn)

    async def _connect_writer(self) -> Any:
        """A writer connection, named for this owner: a takeover from it ends it."""
        return await connect(
            self.dsn, server_settings={"application_name": writer_name(self.owner)}
        )

    @staticmethod
    async def _close_connection(connection: Any) -> None:
        await connection.close(timeout=2)

    async def open(self) -> None:
        """Open the pool, start the writers and the listener."""
        import asyncpg

        # No floor of open connections: asyncpg would keep reopening it while the database
        # is away, with a traceback each time.
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=4, reset=_keep_session, connect=connect
        )
        self._queue = WriteQueue(
            self._write,
            self._connect_writer,
            self._close_connection,
            writers=self.writers,
            transient=transient_asyncpg,
            write_step=self._insert_step,
            step_written=self._step_signal,
            outage=self.outage,
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
                    self.outage.back()
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
                self.trouble("listening for run changes", exc)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _on_changed(self, _c: Any, pid: int, _channel: str, payload: str) -> None:
        # This process's own NOTIFY comes back: its followers heard of it at the commit.
        if payload and pid != self._notifier:
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
        steps = _steps(batch)
        rows = [(item.run_id, row) for item, row in steps]
        others = [item for items in batch.values() for item in items if item.kind != "step"]
        outcome: dict[uuid.UUID, BaseException | None] = {}
        changed: list[uuid.UUID] = []
        # A run's snapshots go in statements of their own after its steps' one, each
        # committed alone: each is idempotent (tried again, it changes nothing more), and a
        # snapshot is never ahead of the log, so a transaction would only add two round trips
        # (BEGIN, COMMIT) to every `snapshot_steps`-th step of a lone `sync` run.  An end or
        # a release is written in one with the steps before it; alone, one statement is
        # atomic as it is (a run's end after its steps' commits: two round trips less).
        atomic = any(item.kind != "snapshot" for item in others) and (bool(rows) or len(others) > 1)
        transaction = connection.transaction() if atomic else contextlib.nullcontext()
        async with transaction:
            if len(rows) == 1:
                ((item, _),) = steps
                if await self._insert_step(connection, item):  # its snapshot with it
                    changed.append(item.run_id)
                else:
                    outcome[item.run_id] = LeaseLost(str(item.run_id))
            elif rows:
                runs = {item.run_id: item.attempt for item, _ in steps}
                owned = await self._insert_steps(connection, rows, runs)
                changed.extend(owned)
                for run_id in runs:
                    if run_id not in owned:
                        outcome[run_id] = LeaseLost(str(run_id))
                # The snapshots the steps carry: after the steps' statement, before any end.
                carried = [snapshot_of(item) for item, _ in steps if item.snapshot is not None]
                others = [item for item in carried if item.run_id in owned] + others
            for item in others:
                if outcome.get(item.run_id) is not None:
                    if item.kind in ("end", "wait") and await self._written(
                        connection, item, batch[item.run_id]
                    ):
                        del outcome[item.run_id]
                        changed.append(item.run_id)
                    continue
                found = await self._other(connection, item)
                if not found:
                    outcome[item.run_id] = LeaseLost(str(item.run_id))
                else:
                    changed.append(item.run_id)
        self._signal(changed)
        return outcome

    async def _insert_steps(
        self, connection: Any, rows: list[tuple[uuid.UUID, StepRow]], runs: dict[uuid.UUID, int]
    ) -> set[uuid.UUID]:
        """Write many runs' steps in one statement; the runs whose owner still holds them.

        Fenced by the statement unless every run's claim is held on the connection; the runs
        found held are held from then on.
        """
        columns = (
            [run_id for run_id, _ in rows],
            [row.seq for _, row in rows],
            [row.node for _, row in rows],
            [dumps(row.delta) for _, row in rows],
            [row.started_at for _, row in rows],
            [row.finished_at for _, row in rows],
            [row.attempts for _, row in rows],
        )
        failed, branches = [row.failed for _, row in rows], [row.branch for _, row in rows]
        if all(self._held.holds(connection, claim) for claim in runs.items()):
            tag = await connection.execute(self._STEPS_HELD, *columns, failed, branches)
            if tag == f"INSERT 0 {len(rows)}":
                return set(runs)
        record = await connection.fetchrow(
            self._STEPS, *columns, list(runs), list(runs.values()), failed, branches
        )
        owned = set(record["owned"] or ())
        for run_id in owned:
            self._held.hold(connection, (run_id, runs[run_id]))
        return owned

    async def _insert_step(self, connection: Any, item: Item) -> bool:
        """Write one step, fenced; whether the owner still holds the run.

        The first step of a claim on a connection is fenced by the statement; the later
        ones, outside a transaction, by the connection (`_STEP_HELD`).  A step that carries
        the run's snapshot goes with it, fenced by the snapshot's update (`_STEP_SNAPSHOT`).
        Not inserted while held (`INSERT 0 0`, or a unique violation, then `_FENCE`): the
        row was there already, from this owner's own earlier commit of it (no one else
        could write it while the lease was held).
        """
        row = item.step
        assert row is not None
        claim = (item.run_id, item.attempt)
        if item.snapshot is not None:
            tag = await connection.execute(
                self._STEP_SNAPSHOT, item.run_id, row.seq, row.node, dumps(row.delta),
                row.started_at, row.finished_at, row.attempts, item.attempt, row.failed,
                row.branch, dumps(item.snapshot),
            )  # fmt: skip
            if tag == "INSERT 0 1":
                self._held.hold(connection, claim)
                return True
        # In a transaction, a unique violation would end it: the fenced statement, then.
        elif self._held.holds(connection, claim) and not connection.is_in_transaction():
            try:
                await connection.execute(
                    self._STEP_HELD, item.run_id, row.seq, row.node, dumps(row.delta),
                    row.started_at, row.finished_at, row.attempts, row.failed, row.branch,
                )  # fmt: skip
                return True
            except Exception as exc:
                if not _unique_violation(exc):
                    raise
        else:
            tag = await connection.execute(
                self._STEP, item.run_id, row.seq, row.node, dumps(row.delta),
                row.started_at, row.finished_at, row.attempts, item.attempt, row.failed,
                row.branch,
            )  # fmt: skip
            if tag == "INSERT 0 1":
                self._held.hold(connection, claim)
                return True
        return await connection.fetchval(self._FENCE, item.run_id, item.attempt) is not None

    async def _written(self, connection: Any, ending: Item, items: list[Item]) -> bool:
        """Whether a batch refused for a run no longer `running` was committed before.

        Its end or wait and its steps went in one transaction whose answer was lost, so
        the retry finds the run ended by this very write.  The end's statement takes its
        own outcome again only under the same epoch; the batch's last step being there
        too tells it from a run another process closed under that epoch (a cancellation
        of a run whose owner went silent), which wrote none of these steps.
        """
        seqs = [item.step.seq for item in items if item.step is not None]
        if seqs and not await connection.fetchval(self._HAS_STEP, ending.run_id, max(seqs)):
            return False
        return await self._other(connection, ending)

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
        async with reaching(transient_asyncpg), self._pool.acquire() as connection:
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
        """Claim runs that are queued or whose owner went silent, oldest first.

        The runs of a silent owner whose writer connections cannot be ended stay where
        they are (a warning says why, once a minute), and do not hold up the others.
        """
        if limit <= 0:
            return []
        refused: set[str] = set()
        while True:
            try:
                async with self._pool.acquire() as connection, connection.transaction():
                    records = await connection.fetch(
                        self._CLAIM, self.owner, self.lease_seconds, limit, sorted(refused)
                    )
                    silent = {r["silent"] for r in records if r["silent"] is not None}
                    if silent:
                        await fence_out(connection, silent)
                break
            except FenceOutFailed as exc:
                if not exc.owners - refused:  # pragma: no cover (the query excludes them)
                    raise
                refused |= exc.owners
                self._refused.warn(exc)
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
            reaching(transient_asyncpg),
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
            if run["status"] == "running" and run["owner"] is not None:
                await fence_out(connection, [run["owner"]])
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
        async with reaching(transient_asyncpg), self._pool.acquire() as connection:
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
