"""The tables: `WorkflowDefinition`, `WorkflowRun` and `RunStep`, one SQLModel each.

JSON columns are JSONB on PostgreSQL and JSON on SQLite: one definition, a dialect variant.
Timestamps are stored with their time zone (UTC); SQLite hands them back naive, so
`utc()` puts the zone back on read.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Text, UniqueConstraint, false, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

#: JSON everywhere, JSONB on PostgreSQL.
JSONColumn = JSON().with_variant(JSONB(), "postgresql")


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)


def utc(moment: datetime | None) -> datetime | None:
    """`moment` with UTC as its zone when the database returned it naive."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


class WorkflowDefinition(SQLModel, table=True):
    """A saved graph: its source text (when it came as text), its IR, and the IR's hash."""

    __tablename__ = "workflow_definition"
    __table_args__ = (
        # What a sub-flow's name finds: the latest definition saved under it.
        Index("ix_workflow_definition_name", "name", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, sa_type=Text)
    ir: dict[str, Any] = Field(sa_type=JSONColumn)
    source_hash: str | None = Field(default=None, max_length=80)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class WorkflowRun(SQLModel, table=True):
    """One execution of a definition: who runs it, how far it got, how it ended.

    `state`, `step` and `current_node` are a snapshot (the state after step `step`); the
    steps after it are in `run_step`, so the current state is the snapshot with their
    deltas merged.  A run is `queued` until a worker claims it: the claim sets `owner`
    (`host:pid`), adds one to `attempt` (the fencing epoch: every write the owner makes
    names it) and sets `lease_expires_at`, which the owner keeps pushing forward.  A run
    that reached a wait node is `waiting`, without owner or lease, until it is resumed (it
    is `queued` again) or its `wait_deadline` passes.

    The run of a sub-flow has the run whose node runs it (`parent_run_id`, `parent_node`)
    and the run at the top of its tree (`root_run_id`).  It is never claimed on its own:
    its parent's owner runs it, under its parent's epoch (`attempt`).
    """

    __tablename__ = "workflow_run"
    __table_args__ = (
        # What claiming looks for: runs waiting for a worker, or whose owner went silent.
        Index(
            "ix_workflow_run_claimable",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        UniqueConstraint("idempotency_key", name="uq_workflow_run_idempotency_key"),
        # What the timeout sweep looks for: waiting runs whose deadline passed.
        Index(
            "ix_workflow_run_wait_deadline",
            "wait_deadline",
            postgresql_where=text("status = 'waiting'"),
            sqlite_where=text("status = 'waiting'"),
        ),
        # A run's sub-flow runs, and every run in a tree (a claim takes them over): only
        # the runs of sub-flows are in these indexes.
        Index(
            "ix_workflow_run_parent_run_id",
            "parent_run_id",
            postgresql_where=text("parent_run_id IS NOT NULL"),
            sqlite_where=text("parent_run_id IS NOT NULL"),
        ),
        Index(
            "ix_workflow_run_root_run_id",
            "root_run_id",
            postgresql_where=text("root_run_id IS NOT NULL"),
            sqlite_where=text("root_run_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    definition_id: uuid.UUID = Field(foreign_key="workflow_definition.id", index=True)
    status: str = Field(default="queued", max_length=20)
    durability: str = Field(default="sync", max_length=10)
    input: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    current_node: str | None = Field(default=None, sa_type=Text)
    step: int = 0
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    owner: str | None = Field(default=None, max_length=300)
    attempt: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    lease_expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    cancel_requested: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    idempotency_key: str | None = Field(default=None, max_length=300)
    request_hash: str | None = Field(default=None, max_length=80)
    #: A `waiting` run: what it waits for (`{"node", "name", "timeout"}`), since when, and
    #: until when (null: no timeout).  It has no owner and no lease meanwhile.
    waiting: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    waiting_since: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    wait_deadline: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    #: The run of a sub-flow: the run whose node runs it, that node, and the top of its tree.
    #: Null for a run started on its own.
    parent_run_id: uuid.UUID | None = Field(default=None)
    parent_node: str | None = Field(default=None, sa_type=Text)
    root_run_id: uuid.UUID | None = Field(default=None)


class RunStep(SQLModel, table=True):
    """One node's execution in a run: the execution log, append-only, keyed by its place.

    No foreign key and no other index: a step is written on the run's hot path, and its
    run's row is checked (and locked against a new claim) by the write itself.
    """

    __tablename__ = "run_step"

    run_id: uuid.UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    node: str = Field(sa_type=Text)
    delta: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime = Field(sa_type=DateTime(timezone=True))
    attempts: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    #: A step that failed and took its node's error route (`on_error`): its delta is `error`.
    failed: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: The parallel branch the step ran in (`"0"`, `"1"`, ...), `"join"` for the step that
    #: merged them; null on the main line.  Only main-line and join steps change the state.
    branch: str | None = Field(default=None, sa_type=Text)
