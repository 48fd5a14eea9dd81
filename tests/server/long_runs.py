"""Long runs written straight into the tables, and a count of the step reads made of them.

A long run is a definition, a run's row and N step rows.
Running a million steps through the engine would take minutes; the reads under test see
the same rows either way.  Step `k` is node `tick` with delta `{"n": k}`.  The tables must
exist (the application's start, or `prepare`, makes them).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone

from flowc.compiler import compile_source
from flowc.server.runlog import RunLog, StepRow

#: When every written step started and finished (a millisecond each).
STARTED = datetime(2026, 1, 1, tzinfo=timezone.utc)
FINISHED = datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc)
#: A lease nobody's claim loop takes over while a test runs.
FAR_LEASE = datetime(2100, 1, 1, tzinfo=timezone.utc)
#: The flow a written run belongs to.
TICK = "tick ? n < 1000000000 -> tick : end\n"


def _row(status: str, steps: int, snapshot: int) -> dict[str, object]:
    """The run's columns: ended after `steps`, or running with its snapshot at `snapshot`."""
    ended = status in ("succeeded", "failed", "cancelled")
    step = steps if ended else snapshot
    return {
        "status": status,
        "state": json.dumps({"n": step} if step else {}),
        "step": step,
        "current_node": "tick" if step else None,
        "finished_at": STARTED if ended else None,
        "owner": None if ended else "elsewhere:1",
        "lease_expires_at": None if ended else FAR_LEASE,
    }


def _sqlite_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def write_sqlite_run(
    path: str, steps: int, *, status: str = "succeeded", snapshot: int = 0
) -> uuid.UUID:
    """Write a run of `steps` steps into the SQLite file at `path`; its id."""
    run_id, graph_id = uuid.uuid4(), uuid.uuid4()
    ir = compile_source(TICK).ir.model_dump_json()
    row = _row(status, steps, snapshot)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO workflow_definition (id, name, source, ir, source_hash, created_at) "
            "VALUES (?, 'long', ?, ?, NULL, ?)",
            (graph_id.hex, TICK, ir, _sqlite_time(STARTED)),
        )
        db.execute(
            "INSERT INTO workflow_run (id, definition_id, status, durability, input, state, "
            "current_node, step, error, created_at, started_at, finished_at, updated_at, owner, "
            "attempt, lease_expires_at, cancel_requested) "
            "VALUES (?, ?, ?, 'sync', '{}', ?, ?, ?, NULL, ?, ?, ?, ?, ?, 1, ?, 0)",
            (
                run_id.hex, graph_id.hex, row["status"], row["state"], row["current_node"],
                row["step"], _sqlite_time(STARTED), _sqlite_time(STARTED),
                _sqlite_time(row["finished_at"]), _sqlite_time(STARTED),  # type: ignore[arg-type]
                row["owner"], _sqlite_time(row["lease_expires_at"]),  # type: ignore[arg-type]
            ),
        )  # fmt: skip
        # Generated inside SQLite: a million rows without a million Python objects.
        db.execute(
            "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ?) "
            "INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, attempts) "
            "SELECT ?, n, 'tick', json_object('n', n), ?, ?, 1 FROM k",
            (steps, run_id.hex, _sqlite_time(STARTED), _sqlite_time(FINISHED)),
        )
    return run_id


async def write_postgres_run(
    url: str, steps: int, *, status: str = "succeeded", snapshot: int = 0
) -> uuid.UUID:
    """Write a run of `steps` steps into the PostgreSQL database at `url`; its id."""
    import asyncpg

    run_id, graph_id = uuid.uuid4(), uuid.uuid4()
    ir = compile_source(TICK).ir.model_dump_json()
    row = _row(status, steps, snapshot)
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO workflow_definition (id, name, source, ir, created_at) "
                "VALUES ($1, 'long', $2, $3::jsonb, $4)",
                graph_id, TICK, ir, STARTED,
            )  # fmt: skip
            await connection.execute(
                "INSERT INTO workflow_run (id, definition_id, status, durability, input, state, "
                "current_node, step, created_at, started_at, finished_at, updated_at, owner, "
                "attempt, lease_expires_at, cancel_requested) "
                "VALUES ($1, $2, $3, 'sync', '{}', $4::jsonb, $5, $6, $7, $7, $8, $7, $9, 1, "
                "$10, false)",
                run_id, graph_id, row["status"], row["state"], row["current_node"], row["step"],
                STARTED, row["finished_at"], row["owner"], row["lease_expires_at"],
            )  # fmt: skip
            await connection.execute(
                "INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at, "
                "attempts) SELECT $1, n, 'tick', jsonb_build_object('n', n), $3, $4, 1 "
                "FROM generate_series(1, $2::int) AS n",
                run_id, steps, STARTED, FINISHED,
            )  # fmt: skip
    finally:
        await connection.close()
    return run_id


async def write_run(
    url: str, steps: int, *, status: str = "succeeded", snapshot: int = 0
) -> uuid.UUID:
    """Write a run of `steps` steps into the database at `url` (SQLite or PostgreSQL)."""
    if url.startswith("sqlite"):
        return write_sqlite_run(url.split(":///", 1)[1], steps, status=status, snapshot=snapshot)
    return await write_postgres_run(url, steps, status=status, snapshot=snapshot)


class Reads:
    """The step reads a run log makes: (after, limit, rows) for each."""

    def __init__(self, log: RunLog) -> None:
        self.calls: list[tuple[int, int | None, int]] = []
        self._read = log.steps_after

        async def steps_after(
            run_id: uuid.UUID, seq: int, *, limit: int | None = None
        ) -> list[StepRow]:
            rows = await self._read(run_id, seq, limit=limit)
            self.calls.append((seq, limit, len(rows)))
            return rows

        log.steps_after = steps_after  # type: ignore[method-assign]
