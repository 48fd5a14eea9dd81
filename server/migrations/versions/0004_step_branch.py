"""A step may have run in a parallel branch, or joined them: `run_step.branch`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-05-16

`run_step` gains `branch`, null for every step already recorded (the main line): a nullable
column without a default, which PostgreSQL adds without rewriting the table and SQLite with
an `ALTER TABLE ... ADD COLUMN`, no copy.  Only main-line steps and joins (`"join"`) change
a run's state; a run resumed in the middle of a fork reads its branches' steps by it.
Downgrading drops the column (SQLite copies the table to do it); an older flowc does not
run parallel branches, and would take a branch's steps for the main line's when it resumed
a run in the middle of a fork, so drain the workers before downgrading.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `run_step.branch`, null for the steps already there."""
    # `never`: batch mode would copy the table on SQLite; a nullable column needs no copy.
    with op.batch_alter_table("run_step", recreate="never") as run_step:
        run_step.add_column(sa.Column("branch", sa.Text(), nullable=True))


def downgrade() -> None:
    """Back to 0003: `run_step.branch` is dropped."""
    with op.batch_alter_table("run_step") as run_step:
        run_step.drop_column("branch")
