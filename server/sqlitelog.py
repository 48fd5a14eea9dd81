"""Runs on SQLite -> the same run log in one process, through SQLAlchemy.

`SqliteRunLog` writes on the server's engine, one process at a time; its signals go
straight to the process's followers.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text

from flowc.runtime.events import WaitFor
from flowc.server.db import Database
from flowc.server.runlog import (
    ENDED,
    MAX_SEQ,
    Claimed,
    Created,
    Ending,
    Item,
    LeaseLost,
    RunLog,
    StepRow,
    WriteQueue,
    cancelled_error,
    dumps,
    fold,
    on_main_line,
    snapshot_of,
)

# -- SQLite -------------------------------------------------------------------------------


def _transient_sql(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, (OSError, ConnectionError)) or (
        isinstance(exc, OperationalError) and "locked" in str(exc)
    )


class SqliteRunLog(RunLog):
    """SQLAlchemy on the server's engine: one process owns the file, signals stay inside."""

    def __init__(self, db: Database, *, owner: str, lease_seconds: float) -> None:
        super().__init__(owner=owner, lease_seconds=lease_seconds, writers=1, outage=db.outage)
        self.db = db

    async def open(self) -> None:
        """Start the writer."""

        async def connect() -> Any:
            return self.db.engine

        async def close(_engine: Any) -> None:
            return None

        self._queue = WriteQueue(
            self._write, connect, close, writers=1, transient=_transient_sql, outage=self.outage
        )

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
                    {"id": sqlite_id(run_id), "attempt": items[0].attempt},
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
                                "run_id": sqlite_id(run_id),
                                "seq": s.seq,
                                "node": s.node,
                                "delta": dumps(s.delta),
                                "started_at": sqlite_time(s.started_at),
                                "finished_at": sqlite_time(s.finished_at),
                                "attempts": s.attempts,
                                "failed": s.failed,
                                "branch": s.branch,
                            }
                            for s in steps
                        ],
                    )
                for item in items:
                    if item.kind == "step":
                        if item.snapshot is None:
                            continue
                        item = snapshot_of(item)  # after the steps: one transaction
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
        now = sqlite_time(self._now())
        if item.kind == "release":
            expired = sqlite_time(self._now() - timedelta(seconds=1))
            await connection.execute(
                text(
                    "UPDATE workflow_run SET owner = NULL, lease_expires_at = :expired, "
                    "updated_at = :now WHERE id = :id"
                ),
                {"id": sqlite_id(item.run_id), "expired": expired, "now": now},
            )
            return True
        ending = item.ending
        assert ending is not None
        if item.kind == "wait":
            return await self._wait(connection, item.run_id, ending, item.wait)
        values = {
            "id": sqlite_id(item.run_id),
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
                "id": sqlite_id(run_id),
                "state": dumps(ending.state),
                "step": ending.step,
                "node": ending.node,
                "waiting": dumps(wait.to_json()),
                "now": sqlite_time(now),
                "deadline": None if deadline is None else sqlite_time(deadline),
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
                    "id": sqlite_id(run_id),
                    "definition_id": sqlite_id(definition_id),
                    "status": status,
                    "durability": durability,
                    "input": dumps(input),
                    "state": dumps(input if state is None else state),
                    "now": sqlite_time(now),
                    "started": sqlite_time(now) if claim else None,
                    "owner": self.owner if claim else None,
                    "attempt": attempt,
                    "lease": sqlite_time(now + timedelta(seconds=self.lease_seconds))
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
        lease = sqlite_time(now + timedelta(seconds=self.lease_seconds))
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
                    {"now": sqlite_time(now), "limit": limit},
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
                    {"owner": self.owner, "lease": lease, "now": sqlite_time(now), "id": row.id},
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
                    {"owner": self.owner, "attempt": r.attempt, "now": sqlite_time(now),
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
        lease = sqlite_time(now + timedelta(seconds=self.lease_seconds))
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
                        {"lease": lease, "id": sqlite_id(run_id), "attempt": attempt},
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
                    {"id": sqlite_id(run_id)},
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
                    {"id": sqlite_id(run_id)},
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
                        {"id": sqlite_id(run_id), "step": run.step},
                    )
                ).all()
                state = fold(
                    json.loads(run.state),
                    (json.loads(s.delta) for s in steps if on_main_line(s.branch)),
                )
                now = sqlite_time(self._now())
                await connection.execute(
                    text(
                        "UPDATE workflow_run SET status = 'cancelled', cancel_requested = 1, "
                        "state = :state, step = :step, current_node = :node, error = :error, "
                        "owner = NULL, lease_expires_at = NULL, finished_at = :now, "
                        "updated_at = :now, waiting = NULL, waiting_since = NULL, "
                        "wait_deadline = NULL WHERE id = :id"
                    ),
                    {
                        "id": sqlite_id(run_id),
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
                        "id": sqlite_id(run_id),
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
                parse_time(r.started_at),
                parse_time(r.finished_at),
                r.attempts,
                bool(r.failed),
                r.branch,
            )
            for r in rows
        ]


def sqlite_id(run_id: uuid.UUID) -> str:
    """A UUID as SQLAlchemy stores it in SQLite (32 hex digits)."""
    return run_id.hex


def sqlite_time(at: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite."""
    return at.astimezone(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_time(value: Any) -> datetime:
    """A time as SQLite gives it back (text, or a naive datetime in UTC), made aware."""
    moment_ = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment_ if moment_.tzinfo else moment_.replace(tzinfo=timezone.utc)
