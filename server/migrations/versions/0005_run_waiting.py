"""A run may wait at a wait node: `workflow_run.waiting`, `waiting_since`, `wait_deadline`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-05-23

`workflow_run` gains what a run with the status `waiting` waits for (`waiting`: its node,
name and timeout), since when, and until when (`wait_deadline`, null without a timeout),
all null for every run already there: nullable columns without a default, which PostgreSQL
adds without rewriting the table and SQLite with `ALTER TABLE ... ADD COLUMN`, no copy.
A partial index on `wait_deadline` over waiting runs is what the timeout sweep reads.
Downgrading drops them (SQLite copies the table to do it) and is refused while a run
waits: an older flowc would never resume it.  Resume or cancel those runs first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The runs whose deadline the timeout sweep compares with the clock.
WAITING = sa.text("status = 'waiting'")
COLUMNS = ("waiting", "waiting_since", "wait_deadline")


def upgrade() -> None:
    """Add the waiting columns, null for the runs already there, and their index."""
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    # `never`: batch mode would copy the table on SQLite; nullable columns need no copy.
    with op.batch_alter_table("workflow_run", recreate="never") as workflow_run:
        workflow_run.add_column(sa.Column("waiting", json, nullable=True))
        workflow_run.add_column(
            sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True)
        )
        workflow_run.add_column(
            sa.Column("wait_deadline", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_workflow_run_wait_deadline",
        "workflow_run",
        ["wait_deadline"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )


def downgrade() -> None:
    """Back to 0004: the waiting columns are dropped; refused while a run waits."""
    waiting = op.get_bind().execute(
        sa.text("SELECT count(*) FROM workflow_run WHERE status = 'waiting'")
    )
    count = waiting.scalar_one()
    if count:
        raise RuntimeError(
            f"{count} {'run waits' if count == 1 else 'runs wait'} at a wait node, which "
            "revision 0004 cannot resume: resume or cancel them (POST /graph/resume or "
            "/graph/cancel), then downgrade"
        )
    op.drop_index("ix_workflow_run_wait_deadline", table_name="workflow_run")
    with op.batch_alter_table("workflow_run") as workflow_run:
        for column in reversed(COLUMNS):
            workflow_run.drop_column(column)
