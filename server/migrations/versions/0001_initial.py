"""The tables as `SQLModel.metadata.create_all` made them before alembic.

Revision ID: 0001
Revises:
Create Date: 2025-12-01

Constraints keep the names the database gave them then (none given here), so a database
made that way is this revision as it stands: `flowc.server.schema` stamps it and goes on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: JSON everywhere, JSONB on PostgreSQL (as the models declare it).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: A timestamp with its time zone.
MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create `workflow_definition`, `workflow_run` and `run_step`."""
    op.create_table(
        "workflow_definition",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("ir", JSON, nullable=False),
        sa.Column("source_hash", sa.String(length=80), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "workflow_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("definition_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("durability", sa.String(length=10), nullable=False),
        sa.Column("input", JSON, nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("current_node", sa.Text(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("started_at", MOMENT, nullable=True),
        sa.Column("finished_at", MOMENT, nullable=True),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.ForeignKeyConstraint(["definition_id"], ["workflow_definition.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workflow_run_definition_id", "workflow_run", ["definition_id"])
    op.create_table(
        "run_step",
        sa.Column("id", sa.Integer(), nullable=False),  # SERIAL on PostgreSQL
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("delta", JSON, nullable=False),
        sa.Column("started_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seq"),
    )
    op.create_index("ix_run_step_run_id", "run_step", ["run_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index("ix_run_step_run_id", table_name="run_step")
    op.drop_table("run_step")
    op.drop_index("ix_workflow_run_definition_id", table_name="workflow_run")
    op.drop_table("workflow_run")
    op.drop_table("workflow_definition")
