"""A run may be a sub-flow's: `workflow_run.parent_run_id`, `parent_node`, `root_run_id`.

Also an index on `workflow_definition (name, created_at)`: a sub-flow `flow NAME` is the
latest definition saved under `NAME`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

`workflow_run` gains, for the run of a sub-flow (`node review = flow code_review`), the run
whose node runs it (`parent_run_id`), that node (`parent_node`), and the run at the top of
its tree (`root_run_id`), all null for every run already there: nullable columns without a
default, which PostgreSQL adds without rewriting the table and SQLite with `ALTER TABLE
... ADD COLUMN`, no copy.  Partial indexes on `parent_run_id` and `root_run_id` hold only
the runs of sub-flows: a run's children, and every run of a tree (a claim takes them
over), are read by them.  Downgrading drops them (SQLite copies the table to do it) and is
refused while a sub-flow's run is unfinished: an older flowc would claim it as a run of its
own.  Let those runs end (or cancel their parents) first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("parent_run_id", "parent_node", "root_run_id")
#: The partial indexes, by the column each is on.
INDEXES = {
    "parent_run_id": "ix_workflow_run_parent_run_id",
    "root_run_id": "ix_workflow_run_root_run_id",
}
#: The index a sub-flow's name is looked up by.
DEFINITION_NAME = "ix_workflow_definition_name"


def upgrade() -> None:
    """Add the sub-flow columns, null for the runs already there, and their indexes."""
    # `never`: batch mode would copy the table on SQLite; nullable columns need no copy.
    with op.batch_alter_table("workflow_run", recreate="never") as workflow_run:
        workflow_run.add_column(sa.Column("parent_run_id", sa.Uuid(), nullable=True))
        workflow_run.add_column(sa.Column("parent_node", sa.Text(), nullable=True))
        workflow_run.add_column(sa.Column("root_run_id", sa.Uuid(), nullable=True))
    for column, index in INDEXES.items():
        only = sa.text(f"{column} IS NOT NULL")
        op.create_index(index, "workflow_run", [column], postgresql_where=only, sqlite_where=only)
    op.create_index(DEFINITION_NAME, "workflow_definition", ["name", "created_at"])


def downgrade() -> None:
    """Back to 0005: the sub-flow columns are dropped; refused while a sub-flow's run runs."""
    unfinished = op.get_bind().execute(
        sa.text(
            "SELECT count(*) FROM workflow_run WHERE parent_run_id IS NOT NULL "
            "AND status NOT IN ('succeeded', 'failed', 'cancelled')"
        )
    )
    count = unfinished.scalar_one()
    if count:
        raise RuntimeError(
            f"{count} {'run of a sub-flow is' if count == 1 else 'runs of sub-flows are'} "
            "unfinished, which revision 0005 would claim as runs of their own: let them end "
            "(or cancel their parents with POST /graph/cancel), then downgrade"
        )
    op.drop_index(DEFINITION_NAME, table_name="workflow_definition")
    for index in reversed(INDEXES.values()):
        op.drop_index(index, table_name="workflow_run")
    with op.batch_alter_table("workflow_run") as workflow_run:
        for column in reversed(COLUMNS):
            workflow_run.drop_column(column)
