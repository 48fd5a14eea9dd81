"""Waiting runs on disk: the wait's step recorded and the run queued again, or ended.

A run that reached a wait node is `waiting`: its row holds the state there (a snapshot),
what it waits for (`waiting`), since when and until when (`wait_deadline`), and no owner.
Its owner wrote that through the run log (`RunLog.wait`, fenced like every owner write).
What follows is one transaction here, taken only while the run still waits: of two
concurrent attempts (two resumes, a resume and the timeout sweep, two workers' sweeps)
exactly one changes the row, and the others find it no longer waiting.

- `resume`: the wait's step (`seq` = the snapshot's step + 1, its node the wait node) is
  inserted, and the run is `queued` again with a signal (NOTIFY on PostgreSQL), so any
  worker claims it and goes on after that step.
- `fail`: a timed-out wait without an error route ends the run `failed`, with the state
  it waited with.
- `expired`: the waiting runs whose deadline passed, by the database's clock.
"""

from __future__ import annotations

import abc
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text

from flowc.server.pglog import PostgresRunLog, transient_asyncpg
from flowc.server.runlog import (
    RunLog,
    dumps,
    reaching,
)
from flowc.server.sqlitelog import SqliteRunLog, parse_time, sqlite_id, sqlite_time

#: Expired waits a sweep takes at a time.
SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class Expired:
    """A waiting run past its deadline: what deciding its outcome needs."""

    run_id: uuid.UUID
    definition_id: uuid.UUID
    step: int
    waiting: dict[str, Any]
    since: datetime


@dataclass(frozen=True, slots=True)
class Answer:
    """What a resume or a timeout did: `done`, or not (the run's `status` says why not)."""

    done: bool
    status: str


class WaitLog(abc.ABC):
    """The transitions of waiting runs; `PostgresWaitLog` and `SqliteWaitLog` fill it in."""

    @abc.abstractmethod
    async def resume(
        self,
        run_id: uuid.UUID,
        delta: dict[str, Any],
        *,
        failed: bool = False,
        at_step: int | None = None,
    ) -> Answer | None:
        """Record the wait's step (`delta`; `failed`: a timeout's) and queue the run again.

        Only while it waits (at step `at_step`, when given: that same wait, past its
        deadline).  None for an unknown run.
        """

    @abc.abstractmethod
    async def fail(self, run_id: uuid.UUID, at_step: int, error: dict[str, Any]) -> bool:
        """End a run whose wait at step `at_step` passed its deadline `failed`; if it did."""

    @abc.abstractmethod
    async def expired(self, limit: int = SWEEP_BATCH) -> list[Expired]:
        """Waiting runs whose deadline passed, the earliest first."""


class PostgresWaitLog(WaitLog):
    """asyncpg on the run log's pool; the signals are NOTIFYs sent with the commit."""

    _LOCK = """
        SELECT status, step, waiting, waiting_since,
               coalesce(wait_deadline < now(), false) AS expired
          FROM workflow_run WHERE id = $1 FOR UPDATE
    """
    _STEP = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts,
                              failed)
        VALUES ($1, $2, $3, $4::jsonb, $5, now(), 1, $6)
    """
    _QUEUE = """
        UPDATE workflow_run
           SET status = 'queued', waiting = NULL, waiting_since = NULL, wait_deadline = NULL,
               updated_at = now()
         WHERE id = $1
     RETURNING pg_notify('flowc_queued', id::text), pg_notify('flowc_changed', id::text)
    """
    _FAIL = """
        UPDATE workflow_run
           SET status = 'failed', error = $2::jsonb, finished_at = now(), updated_at = now(),
               waiting = NULL, waiting_since = NULL, wait_deadline = NULL
         WHERE id = $1
     RETURNING pg_notify('flowc_changed', id::text)
    """
    _EXPIRED = """
        SELECT id, definition_id, step, waiting, waiting_since FROM workflow_run
         WHERE status = 'waiting' AND wait_deadline < now()
         ORDER BY wait_deadline LIMIT $1
    """

    def __init__(self, log: PostgresRunLog) -> None:
        self.log = log

    async def resume(
        self,
        run_id: uuid.UUID,
        delta: dict[str, Any],
        *,
        failed: bool = False,
        at_step: int | None = None,
    ) -> Answer | None:
        """Record the wait's step and queue the run again, in one transaction."""
        async with (
            reaching(transient_asyncpg),
            self.log.pool.acquire() as connection,
            connection.transaction(),
        ):
            run = await connection.fetchrow(self._LOCK, run_id)
            if run is None:
                return None
            if not _same_wait(run["status"], run["step"], run["expired"], at_step):
                return Answer(False, run["status"])
            node = json.loads(run["waiting"])["node"]
            await connection.execute(
                self._STEP, run_id, run["step"] + 1, node, dumps(delta), run["waiting_since"],
                failed,
            )  # fmt: skip
            await connection.execute(self._QUEUE, run_id)
        return Answer(True, "queued")

    async def fail(self, run_id: uuid.UUID, at_step: int, error: dict[str, Any]) -> bool:
        """End the timed-out run `failed`, in one transaction."""
        async with (
            reaching(transient_asyncpg),
            self.log.pool.acquire() as connection,
            connection.transaction(),
        ):
            run = await connection.fetchrow(self._LOCK, run_id)
            if run is None or not _same_wait(run["status"], run["step"], run["expired"], at_step):
                return False
            await connection.execute(self._FAIL, run_id, dumps(error))
        return True

    async def expired(self, limit: int = SWEEP_BATCH) -> list[Expired]:
        """Waiting runs past their deadline, by the database's clock."""
        async with reaching(transient_asyncpg), self.log.pool.acquire() as connection:
            records = await connection.fetch(self._EXPIRED, limit)
        return [
            Expired(r["id"], r["definition_id"], r["step"], json.loads(r["waiting"]),
                    r["waiting_since"])
            for r in records
        ]  # fmt: skip


class SqliteWaitLog(WaitLog):
    """SQLAlchemy on the server's engine; one process, so the signals stay inside it."""

    def __init__(self, log: SqliteRunLog) -> None:
        self.log = log

    async def resume(
        self,
        run_id: uuid.UUID,
        delta: dict[str, Any],
        *,
        failed: bool = False,
        at_step: int | None = None,
    ) -> Answer | None:
        """Record the wait's step and queue the run again, in one transaction."""
        now = sqlite_time(_now())
        async with self.log.db.engine.begin() as connection:
            run = await self._lock(connection, run_id, now)
            if run is None:
                return None
            if not _same_wait(run.status, run.step, bool(run.expired), at_step):
                return Answer(False, run.status)
            await connection.execute(
                text(
                    "INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, "
                    "attempts, failed) VALUES (:id, :seq, :node, :delta, :since, :now, 1, "
                    ":failed)"
                ),
                {"id": sqlite_id(run_id), "seq": run.step + 1,
                 "node": json.loads(run.waiting)["node"], "delta": dumps(delta),
                 "since": sqlite_time(parse_time(run.waiting_since)), "now": now,
                 "failed": failed},
            )  # fmt: skip
            await connection.execute(
                text(
                    "UPDATE workflow_run SET status = 'queued', waiting = NULL, "
                    "waiting_since = NULL, wait_deadline = NULL, updated_at = :now WHERE id = :id"
                ),
                {"id": sqlite_id(run_id), "now": now},
            )
        self.log.hub.changed([run_id])
        if self.log.on_queued:
            self.log.on_queued()
        return Answer(True, "queued")

    async def fail(self, run_id: uuid.UUID, at_step: int, error: dict[str, Any]) -> bool:
        """End the timed-out run `failed`, in one transaction."""
        now = sqlite_time(_now())
        async with self.log.db.engine.begin() as connection:
            run = await self._lock(connection, run_id, now)
            if run is None or not _same_wait(run.status, run.step, bool(run.expired), at_step):
                return False
            await connection.execute(
                text(
                    "UPDATE workflow_run SET status = 'failed', error = :error, "
                    "finished_at = :now, updated_at = :now, waiting = NULL, "
                    "waiting_since = NULL, wait_deadline = NULL WHERE id = :id"
                ),
                {"id": sqlite_id(run_id), "error": dumps(error), "now": now},
            )
        self.log.hub.changed([run_id])
        return True

    async def expired(self, limit: int = SWEEP_BATCH) -> list[Expired]:
        """Waiting runs past their deadline."""
        async with self.log.db.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT id, definition_id, step, waiting, waiting_since FROM "
                        "workflow_run WHERE status = 'waiting' AND wait_deadline < :now "
                        "ORDER BY wait_deadline LIMIT :limit"
                    ),
                    {"now": sqlite_time(_now()), "limit": limit},
                )
            ).all()
        return [
            Expired(uuid.UUID(r.id), uuid.UUID(r.definition_id), r.step, json.loads(r.waiting),
                    parse_time(r.waiting_since))
            for r in rows
        ]  # fmt: skip

    @staticmethod
    async def _lock(connection: Any, run_id: uuid.UUID, now: str) -> Any:
        # The transaction's first statement writes, so it holds SQLite's write lock from
        # here on: a concurrent resume waits for it, then finds the run no longer waiting.
        await connection.execute(
            text("UPDATE workflow_run SET updated_at = updated_at WHERE id = :id"),
            {"id": sqlite_id(run_id)},
        )
        return (
            await connection.execute(
                text(
                    "SELECT status, step, waiting, waiting_since, "
                    "coalesce(wait_deadline < :now, 0) AS expired FROM workflow_run "
                    "WHERE id = :id"
                ),
                {"id": sqlite_id(run_id), "now": now},
            )
        ).first()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _same_wait(status: str, step: int, expired: bool, at_step: int | None) -> bool:
    """Whether the run still waits: any wait, or (`at_step`) that one, past its deadline."""
    if status != "waiting":
        return False
    return at_step is None or (step == at_step and expired)


def wait_log_for(log: RunLog) -> WaitLog:
    """The wait log on the run log's database."""
    if isinstance(log, PostgresRunLog):
        return PostgresWaitLog(log)
    assert isinstance(log, SqliteRunLog)
    return SqliteWaitLog(log)
