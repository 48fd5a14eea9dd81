"""Sub-flow runs on disk: a child's row made (or taken over) by its parent's owner, and ended.

The run of a sub-flow is a row of its own in `workflow_run` (`parent_run_id`,
`parent_node`, `root_run_id`: the top of its tree) with a step log of its own.  It is never
claimed on its own: its parent's owner `adopt`s it when the parent reaches the node, in
one transaction fenced by the parent's row (`FOR SHARE`, matched on its `attempt` and
`status = 'running'`), which makes the row the first time and takes it over later (owner
and `attempt`: the parent's epoch).  From there its writes are fenced on its own row, like
any run's, by that epoch.  A claim of the top run gives every unfinished run of its tree
the new epoch (`RunLog.claim`), so that an owner that lost the parent cannot write to its
children either.

`close_tree` ends the unfinished runs of a tree whose top run ends without having run them
to their end (cancelled before it went on with them, say), each with the state its own
steps lead to: no run of a sub-flow stays `running` without a parent that runs it.
"""

from __future__ import annotations

import abc
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text

from flowc.server.pglog import PostgresRunLog, transient_asyncpg
from flowc.server.runlog import (
    LeaseLost,
    RunLog,
    dumps,
    fold,
    on_main_line,
    reaching,
)
from flowc.server.sqlitelog import SqliteRunLog, sqlite_id, sqlite_time


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """A child run as its parent's owner makes it: where it is in its tree, what it runs."""

    run_id: uuid.UUID
    parent_run_id: uuid.UUID
    root_run_id: uuid.UUID
    node: str
    definition_id: uuid.UUID
    durability: str
    input: dict[str, Any]
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Adopted:
    """A child's row once its parent's owner holds it: made now, or how it stands.

    `state`, `step` and `current_node` are its snapshot; `error` its error, if it ended.
    """

    created: bool
    status: str
    state: dict[str, Any]
    step: int
    current_node: str | None
    error: dict[str, Any] | None


class ChildLog(abc.ABC):
    """The rows of sub-flow runs; `PostgresChildLog` and `SqliteChildLog` fill it in."""

    @abc.abstractmethod
    async def adopt(self, child: ChildSpec, *, attempt: int, owner: str) -> Adopted:
        """Make the child's row, or take it over, for the owner of its parent's `attempt`.

        `LeaseLost` when the parent is not that owner's any more.
        """

    @abc.abstractmethod
    async def close_tree(
        self, root: uuid.UUID, attempt: int, status: str, error: dict[str, Any]
    ) -> list[uuid.UUID]:
        """End the unfinished runs of the tree under `root` (while `attempt` holds it).

        Each ends `status` with `error` and the state its steps lead to; which ones.
        """


def _ending(
    state: str, step: int, node: str | None, steps: Sequence[Sequence[Any]]
) -> tuple[dict[str, Any], int, str | None]:
    """A run's state, step and node after its snapshot (`state` as JSON) and later steps.

    `steps` are rows of `(seq, node, delta as JSON, branch)`, in order.
    """
    folded = fold(
        json.loads(state),
        (json.loads(delta) for _, _, delta, branch in steps if on_main_line(branch)),
    )
    if not steps:
        return folded, step, node
    seq, last, _, _ = steps[-1]
    return folded, seq, last


class PostgresChildLog(ChildLog):
    """asyncpg on the run log's pool."""

    _FENCE = """
        SELECT 1 FROM workflow_run WHERE id = $1 AND attempt = $2 AND status = 'running'
           FOR SHARE
    """
    _MAKE = """
        INSERT INTO workflow_run (id, definition_id, status, durability, input, state, step,
                                  created_at, updated_at, started_at, owner, attempt,
                                  cancel_requested, parent_run_id, parent_node, root_run_id)
        VALUES ($1, $2, 'running', $3, $4::jsonb, $5::jsonb, 0, now(), now(), now(), $6, $7,
                false, $8, $9, $10)
        ON CONFLICT (id) DO NOTHING
     RETURNING id
    """
    _TAKE = """
        UPDATE workflow_run SET owner = $2, attempt = $3, updated_at = now()
         WHERE id = $1 AND status = 'running'
    """
    _READ = """
        SELECT status, state, step, current_node, error FROM workflow_run WHERE id = $1
    """
    _UNFINISHED = """
        SELECT id, state, step, current_node FROM workflow_run
         WHERE root_run_id = $1 AND status IN ('queued', 'running')
         ORDER BY created_at
           FOR UPDATE
    """
    _END = """
        UPDATE workflow_run
           SET status = $2, state = $3::jsonb, step = $4, current_node = $5, error = $6::jsonb,
               cancel_requested = cancel_requested OR $7, owner = NULL,
               lease_expires_at = NULL, finished_at = now(), updated_at = now()
         WHERE id = $1
     RETURNING pg_notify('flowc_changed', id::text)
    """

    def __init__(self, log: PostgresRunLog) -> None:
        self.log = log

    async def adopt(self, child: ChildSpec, *, attempt: int, owner: str) -> Adopted:
        """Make or take over the child's row in one transaction, fenced by its parent's."""
        async with (
            reaching(transient_asyncpg),
            self.log.pool.acquire() as connection,
            connection.transaction(),
        ):
            if await connection.fetchrow(self._FENCE, child.parent_run_id, attempt) is None:
                raise LeaseLost(str(child.parent_run_id))
            made = await connection.fetchrow(
                self._MAKE, child.run_id, child.definition_id, child.durability,
                dumps(child.input), dumps(child.state), owner, attempt, child.parent_run_id,
                child.node, child.root_run_id,
            )  # fmt: skip
            if made is None:
                await connection.execute(self._TAKE, child.run_id, owner, attempt)
            row = await connection.fetchrow(self._READ, child.run_id)
        return Adopted(
            made is not None, row["status"], json.loads(row["state"]), row["step"],
            row["current_node"], None if row["error"] is None else json.loads(row["error"]),
        )  # fmt: skip

    async def close_tree(
        self, root: uuid.UUID, attempt: int, status: str, error: dict[str, Any]
    ) -> list[uuid.UUID]:
        """End the tree's unfinished runs, fenced by the root's row."""
        async with (
            reaching(transient_asyncpg),
            self.log.pool.acquire() as connection,
            connection.transaction(),
        ):
            if await connection.fetchrow(self._FENCE, root, attempt) is None:
                return []
            return await self.close_in(connection, root, status, error)

    @classmethod
    async def close_in(
        cls, connection: Any, root: uuid.UUID, status: str, error: dict[str, Any]
    ) -> list[uuid.UUID]:
        """`close_tree`'s work in a transaction of the caller's (which holds the root)."""
        runs = await connection.fetch(cls._UNFINISHED, root)
        for run in runs:
            steps = await connection.fetch(
                "SELECT seq, node, delta, branch FROM run_step WHERE run_id = $1 AND seq > $2 "
                "ORDER BY seq",
                run["id"],
                run["step"],
            )
            state, step, node = _ending(run["state"], run["step"], run["current_node"], steps)
            await connection.execute(
                cls._END, run["id"], status, dumps(state), step, node, dumps(error),
                status == "cancelled",
            )  # fmt: skip
        return [run["id"] for run in runs]


class SqliteChildLog(ChildLog):
    """SQLAlchemy on the server's engine: one process, so no other owner can interleave."""

    def __init__(self, log: SqliteRunLog) -> None:
        self.log = log

    async def adopt(self, child: ChildSpec, *, attempt: int, owner: str) -> Adopted:
        """Make or take over the child's row in one transaction, fenced by its parent's."""
        now = sqlite_time(datetime.now(timezone.utc))
        async with self.log.db.engine.begin() as connection:
            fence = await connection.execute(
                text(
                    "UPDATE workflow_run SET updated_at = updated_at WHERE id = :id "
                    "AND attempt = :attempt AND status = 'running'"
                ),
                {"id": sqlite_id(child.parent_run_id), "attempt": attempt},
            )
            if not fence.rowcount:
                raise LeaseLost(str(child.parent_run_id))
            made = await connection.execute(
                text(
                    "INSERT INTO workflow_run (id, definition_id, status, durability, input, "
                    "state, step, created_at, updated_at, started_at, owner, attempt, "
                    "cancel_requested, parent_run_id, parent_node, root_run_id) VALUES (:id, "
                    ":definition, 'running', :durability, :input, :state, 0, :now, :now, :now, "
                    ":owner, :attempt, 0, :parent, :node, :root) ON CONFLICT (id) DO NOTHING"
                ),
                {"id": sqlite_id(child.run_id), "definition": sqlite_id(child.definition_id),
                 "durability": child.durability, "input": dumps(child.input),
                 "state": dumps(child.state), "now": now, "owner": owner, "attempt": attempt,
                 "parent": sqlite_id(child.parent_run_id), "node": child.node,
                 "root": sqlite_id(child.root_run_id)},
            )  # fmt: skip
            created = bool(made.rowcount)
            if not created:
                await connection.execute(
                    text(
                        "UPDATE workflow_run SET owner = :owner, attempt = :attempt, "
                        "updated_at = :now WHERE id = :id AND status = 'running'"
                    ),
                    {"id": sqlite_id(child.run_id), "owner": owner, "attempt": attempt,
                     "now": now},
                )  # fmt: skip
            row = (
                await connection.execute(
                    text(
                        "SELECT status, state, step, current_node, error FROM workflow_run "
                        "WHERE id = :id"
                    ),
                    {"id": sqlite_id(child.run_id)},
                )
            ).one()
        return Adopted(
            created, row.status, json.loads(row.state), row.step, row.current_node,
            None if row.error is None else json.loads(row.error),
        )  # fmt: skip

    async def close_tree(
        self, root: uuid.UUID, attempt: int, status: str, error: dict[str, Any]
    ) -> list[uuid.UUID]:
        """End the tree's unfinished runs while the root is still ours."""
        async with self.log.db.engine.begin() as connection:
            owns = await connection.execute(
                text(
                    "UPDATE workflow_run SET updated_at = updated_at WHERE id = :id "
                    "AND attempt = :attempt AND status = 'running'"
                ),
                {"id": sqlite_id(root), "attempt": attempt},
            )
            if not owns.rowcount:
                return []
            closed = await self.close_in(connection, root, status, error)
        self.log.hub.changed(closed)
        return closed

    @staticmethod
    async def close_in(
        connection: Any, root: uuid.UUID, status: str, error: dict[str, Any]
    ) -> list[uuid.UUID]:
        """`close_tree`'s work in a transaction of the caller's (who signals the runs)."""
        now = sqlite_time(datetime.now(timezone.utc))
        runs = (
            await connection.execute(
                text(
                    "SELECT id, state, step, current_node FROM workflow_run WHERE "
                    "root_run_id = :root AND status IN ('queued', 'running') ORDER BY created_at"
                ),
                {"root": sqlite_id(root)},
            )
        ).all()
        for run in runs:
            steps = (
                await connection.execute(
                    text(
                        "SELECT seq, node, delta, branch FROM run_step WHERE run_id = :id AND "
                        "seq > :step ORDER BY seq"
                    ),
                    {"id": run.id, "step": run.step},
                )
            ).all()
            state, step, node = _ending(run.state, run.step, run.current_node, steps)
            await connection.execute(
                text(
                    "UPDATE workflow_run SET status = :status, state = :state, step = :step, "
                    "current_node = :node, error = :error, owner = NULL, "
                    "lease_expires_at = NULL, finished_at = :now, updated_at = :now, "
                    "cancel_requested = cancel_requested OR :cancelled WHERE id = :id"
                ),
                {"id": run.id, "status": status, "state": dumps(state), "step": step,
                 "node": node, "error": dumps(error), "now": now,
                 "cancelled": status == "cancelled"},
            )  # fmt: skip
        return [uuid.UUID(run.id) for run in runs]


def child_log_for(log: RunLog) -> ChildLog:
    """The child log on the run log's database."""
    if isinstance(log, PostgresRunLog):
        return PostgresChildLog(log)
    assert isinstance(log, SqliteRunLog)
    return SqliteChildLog(log)
