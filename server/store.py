"""Store functions: keyword-only, given a session, knowing nothing of HTTP.

Definitions and runs in and out of the tables.  Writing a run's steps as it goes is the
run log's job (`server/runlog.py`), which uses the same tables.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from flowc.compiler.ir import Flow
from flowc.server.models import RunStep, WorkflowDefinition, WorkflowRun
from flowc.server.runlog import MAX_SEQ


async def create_definition(
    session: AsyncSession, *, name: str | None, source: str | None, ir: Flow
) -> WorkflowDefinition:
    """Save a compiled graph and return it."""
    definition = WorkflowDefinition(
        name=name or ir.name,
        source=source,
        ir=ir.model_dump(mode="json"),
        source_hash=ir.source_hash,
    )
    session.add(definition)
    await session.commit()
    return definition


async def get_definition(
    session: AsyncSession, *, definition_id: uuid.UUID
) -> WorkflowDefinition | None:
    """The definition with this id, or None."""
    return await session.get(WorkflowDefinition, definition_id)


async def create_run(
    session: AsyncSession,
    *,
    definition_id: uuid.UUID,
    input: dict[str, Any],
    durability: str,
    run_id: uuid.UUID | None = None,
) -> WorkflowRun:
    """Record a new, queued run of a definition."""
    run = WorkflowRun(
        id=run_id or uuid.uuid4(),
        definition_id=definition_id,
        durability=durability,
        input=input,
        state=input,
    )
    session.add(run)
    await session.commit()
    return run


async def get_run(session: AsyncSession, *, run_id: uuid.UUID) -> WorkflowRun | None:
    """The run with this id, or None."""
    return await session.get(WorkflowRun, run_id, populate_existing=True)


async def list_steps(
    session: AsyncSession, *, run_id: uuid.UUID, after: int = 0, limit: int | None = None
) -> list[RunStep]:
    """A run's steps after step `after`, in order: the first `limit` of them (None: all).

    Read by the table's key, `(run_id, seq)`: a page costs the same wherever it starts.
    """
    query = (
        select(RunStep)
        .where(RunStep.run_id == run_id, col(RunStep.seq) > min(after, MAX_SEQ))
        .order_by(col(RunStep.seq))
        .limit(limit)
    )
    result = await session.exec(query)
    return list(result.all())


async def latest_definition(session: AsyncSession, *, name: str) -> WorkflowDefinition | None:
    """The latest definition saved under `name`, or None."""
    found = await session.exec(
        select(WorkflowDefinition)
        .where(WorkflowDefinition.name == name)
        .order_by(col(WorkflowDefinition.created_at).desc())
        .limit(1)
    )
    latest: WorkflowDefinition | None = found.first()
    return latest


async def definition_names(session: AsyncSession, *, limit: int = 1000) -> list[str]:
    """The names definitions are saved under (at most `limit`, in order)."""
    found = await session.exec(
        select(WorkflowDefinition.name)
        .where(col(WorkflowDefinition.name).is_not(None))
        .distinct()
        .order_by(col(WorkflowDefinition.name))
        .limit(limit)
    )
    return [name for name in found.all() if name is not None]


async def list_children(session: AsyncSession, *, run_id: uuid.UUID) -> list[WorkflowRun]:
    """The runs of a run's sub-flows, the first started first (read by their parent's index)."""
    query = (
        select(WorkflowRun)
        .where(WorkflowRun.parent_run_id == run_id)
        .order_by(col(WorkflowRun.created_at))
    )
    result = await session.exec(query)
    return list(result.all())
