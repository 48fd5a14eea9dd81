"""Run progress -> rows: the step writers behind every durability mode.

`append` writes steps and moves the run's row forward in one transaction; `finish` writes
what is left and the outcome.  PostgreSQL gets its own asyncpg pool and one statement per
step (a CTE: the `RunStep` insert and the `WorkflowRun` update, the state merged in the
database with `||`, the engine's own shallow merge), because a durable step's cost is
mostly round trips.  SQLite goes through SQLAlchemy Core.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import func, insert, update

from flowc.server.db import Database
from flowc.server.models import RunStep, WorkflowRun


@dataclass(frozen=True, slots=True)
class StepRow:
    """A step as it is written: the `RunStep` columns."""

    seq: int
    node: str
    delta: dict[str, Any]
    started_at: datetime
    finished_at: datetime


def moment(at: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(at, timezone.utc)


class StepWriter(Protocol):
    """Writes one run's progress; every call is one transaction."""

    async def begin(self, run_id: uuid.UUID, at: datetime) -> None:
        """Mark the run `running`."""

    async def append(
        self, run_id: uuid.UUID, rows: list[StepRow], delta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """Write `rows` and move the run to the last of them (`delta` merges them all)."""

    async def finish(
        self,
        run_id: uuid.UUID,
        rows: list[StepRow],
        *,
        status: str,
        state: dict[str, Any],
        error: dict[str, Any] | None,
        at: datetime,
        started: datetime | None = None,
    ) -> None:
        """Write the remaining `rows` and the run's outcome."""

    async def close(self) -> None:
        """Release connections."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class PostgresWriter:
    """asyncpg, a pool of its own, one round trip per durable step."""

    _STEP = """
        WITH step AS (
            INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6)
        )
        UPDATE workflow_run
           SET state = state || $4::jsonb, current_node = $3, step = $2, updated_at = $6
         WHERE id = $1
    """
    _INSERT = """
        INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6)
    """
    _ADVANCE = """
        UPDATE workflow_run
           SET state = state || $2::jsonb, current_node = $3, step = $4, updated_at = $5
         WHERE id = $1
    """
    _FINISH = """
        UPDATE workflow_run
           SET status = $2, state = $3::jsonb, error = $4::jsonb,
               current_node = coalesce($5, current_node), step = coalesce($6, step),
               started_at = coalesce(started_at, $8), finished_at = $7, updated_at = $7
         WHERE id = $1
    """

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _acquire(self) -> Any:
        if self._pool is None:
            async with self._opening:  # the first steps of concurrent runs all get here
                if self._pool is None:
                    import asyncpg

                    self._pool = await asyncpg.create_pool(
                        self.dsn, min_size=1, max_size=self.pool_size
                    )
        return self._pool.acquire()

    async def begin(self, run_id: uuid.UUID, at: datetime) -> None:
        """Mark the run `running`."""
        async with await self._acquire() as connection:
            await connection.execute(
                "UPDATE workflow_run SET status = 'running', started_at = $2, updated_at = $2 "
                "WHERE id = $1",
                run_id,
                at,
            )

    async def append(
        self, run_id: uuid.UUID, rows: list[StepRow], delta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """One step: one statement, committed on its own; several: one transaction."""
        if not rows:
            return
        async with await self._acquire() as connection:
            if len(rows) == 1:
                row = rows[0]
                await connection.execute(
                    self._STEP,
                    run_id,
                    row.seq,
                    row.node,
                    _dumps(row.delta),
                    row.started_at,
                    row.finished_at,
                )
                return
            async with connection.transaction():
                await self._insert(connection, run_id, rows)
                last = rows[-1]
                await connection.execute(
                    self._ADVANCE, run_id, _dumps(delta), last.node, last.seq, last.finished_at
                )

    async def _insert(self, connection: Any, run_id: uuid.UUID, rows: list[StepRow]) -> None:
        await connection.executemany(
            self._INSERT,
            [(run_id, r.seq, r.node, _dumps(r.delta), r.started_at, r.finished_at) for r in rows],
        )

    async def finish(
        self,
        run_id: uuid.UUID,
        rows: list[StepRow],
        *,
        status: str,
        state: dict[str, Any],
        error: dict[str, Any] | None,
        at: datetime,
        started: datetime | None = None,
    ) -> None:
        """The remaining steps and the outcome, in one transaction."""
        async with await self._acquire() as connection, connection.transaction():
            if rows:
                await self._insert(connection, run_id, rows)
            node = rows[-1].node if rows else None
            await connection.execute(
                self._FINISH,
                run_id,
                status,
                _dumps(state),
                None if error is None else _dumps(error),
                node,
                rows[-1].seq if rows else None,
                at,
                started or at,
            )

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class SqlWriter:
    """SQLAlchemy Core on the server's engine (SQLite, or any other database)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, run_id: uuid.UUID, at: datetime) -> None:
        """Mark the run `running`."""
        async with self.db.engine.begin() as connection:
            await connection.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id == run_id)  # type: ignore[arg-type]
                .values(status="running", started_at=at, updated_at=at)
            )

    async def append(
        self, run_id: uuid.UUID, rows: list[StepRow], delta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """Insert the steps, write the state they lead to."""
        if not rows:
            return
        last = rows[-1]
        async with self.db.engine.begin() as connection:
            await connection.execute(insert(RunStep), [_values(run_id, r) for r in rows])
            await connection.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id == run_id)  # type: ignore[arg-type]
                .values(
                    state=state, current_node=last.node, step=last.seq, updated_at=last.finished_at
                )
            )

    async def finish(
        self,
        run_id: uuid.UUID,
        rows: list[StepRow],
        *,
        status: str,
        state: dict[str, Any],
        error: dict[str, Any] | None,
        at: datetime,
        started: datetime | None = None,
    ) -> None:
        """The remaining steps and the outcome, in one transaction."""
        values: dict[str, Any] = {
            "status": status,
            "state": state,
            "error": error,
            "finished_at": at,
            "updated_at": at,
            "started_at": func.coalesce(WorkflowRun.started_at, started or at),
        }
        if rows:
            values.update(current_node=rows[-1].node, step=rows[-1].seq)
        async with self.db.engine.begin() as connection:
            if rows:
                await connection.execute(insert(RunStep), [_values(run_id, r) for r in rows])
            await connection.execute(
                update(WorkflowRun).where(WorkflowRun.id == run_id).values(**values)  # type: ignore[arg-type]
            )

    async def close(self) -> None:
        """Nothing to release: the engine belongs to the server."""


def _values(run_id: uuid.UUID, row: StepRow) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": row.seq,
        "node": row.node,
        "delta": row.delta,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def writer_for(db: Database, *, pool_size: int = 10) -> StepWriter:
    """The fastest writer for the server's database."""
    if db.url.startswith("postgresql+asyncpg://"):
        return PostgresWriter(
            "postgresql://" + db.url.removeprefix("postgresql+asyncpg://"), pool_size=pool_size
        )
    return SqlWriter(db)
