"""A step may have failed and taken its node's error route: `run_step.failed`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-09

`run_step` gains `failed`, false for every step already recorded (a server default: on
PostgreSQL a constant default adds the column without rewriting the table; on SQLite it is
an `ALTER TABLE ... ADD COLUMN`, no copy).  A resumed run reads it from its last step: after
a failed one it goes on at that node's error route.  Downgrading drops the column (SQLite
copies the table to do it); a run resumed by an older flowc after a failed step would then
take the node's own route, so drain the workers before downgrading.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `run_step.failed`, false for the steps already there."""
    # `never`: batch mode would copy the table on SQLite, as it does for any default it
    # takes for an expression; `false()` is the constant 0 there, which ADD COLUMN takes.
    with op.batch_alter_table("run_step", recreate="never") as run_step:
        run_step.add_column(
            sa.Column("failed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Back to 0002: `run_step.failed` is dropped."""
    with op.batch_alter_table("run_step") as run_step:
        run_step.drop_column("failed")
