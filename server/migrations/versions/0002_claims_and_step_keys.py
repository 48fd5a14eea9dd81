"""Runs are claimed by workers under a lease; steps are keyed by their place in the run.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

`run_step` loses its serial `id`, its foreign key and its index: (run_id, seq) is its key,
and a step counts its `attempts`.  `workflow_run` gains the claim (`owner`, `attempt`,
`lease_expires_at`), `cancel_requested`, the idempotency key with its request's hash, and
the partial index claiming reads.  Rows are kept; server defaults fill the new NOT NULL
columns.  On SQLite, batch mode copies each table; `NAMES` gives the constraints SQLite
left unnamed the names PostgreSQL gave them, so one set of operations serves both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: PostgreSQL's own names for unnamed constraints, given to what SQLite reflects unnamed.
NAMES = {
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
}
#: Runs a worker may claim: waiting, or running under an owner that may have gone silent.
CLAIMABLE = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    """Key `run_step` by (run_id, seq) and add the claim and idempotency columns to runs."""
    with op.batch_alter_table("run_step", naming_convention=NAMES) as run_step:
        run_step.drop_index("ix_run_step_run_id")
        run_step.drop_constraint("run_step_run_id_fkey", type_="foreignkey")
        run_step.drop_constraint("run_step_run_id_seq_key", type_="unique")
        run_step.drop_column("id")  # and the primary key on it (and, PostgreSQL, its sequence)
        run_step.create_primary_key("run_step_pkey", ["run_id", "seq"])
        run_step.add_column(sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("workflow_run", naming_convention=NAMES) as workflow_run:
        workflow_run.add_column(sa.Column("owner", sa.String(length=300), nullable=True))
        workflow_run.add_column(
            sa.Column("attempt", sa.Integer(), server_default="0", nullable=False)
        )
        workflow_run.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        workflow_run.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        workflow_run.add_column(sa.Column("idempotency_key", sa.String(length=300), nullable=True))
        workflow_run.add_column(sa.Column("request_hash", sa.String(length=80), nullable=True))
        workflow_run.create_unique_constraint(
            "uq_workflow_run_idempotency_key", ["idempotency_key"]
        )
        workflow_run.create_index(
            "ix_workflow_run_claimable",
            ["created_at"],
            postgresql_where=CLAIMABLE,
            sqlite_where=CLAIMABLE,
        )


def downgrade() -> None:
    """Back to 0001: steps numbered by a serial `id` again; the claim columns are dropped.

    Steps whose run is gone (nothing stopped that since 0002) are deleted: 0001's foreign
    key would refuse them.
    """
    with op.batch_alter_table("workflow_run", naming_convention=NAMES) as workflow_run:
        workflow_run.drop_index("ix_workflow_run_claimable")
        workflow_run.drop_constraint("uq_workflow_run_idempotency_key", type_="unique")
        for column in (
            "request_hash",
            "idempotency_key",
            "cancel_requested",
            "lease_expires_at",
            "attempt",
            "owner",
        ):
            workflow_run.drop_column(column)
    op.execute("DELETE FROM run_step WHERE run_id NOT IN (SELECT id FROM workflow_run)")
    with op.batch_alter_table("run_step", naming_convention=NAMES) as run_step:
        run_step.drop_column("attempts")
        run_step.drop_constraint("run_step_pkey", type_="primary")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE run_step ADD COLUMN id SERIAL PRIMARY KEY")
    else:  # SQLite numbers the rows as it copies them: an INTEGER PRIMARY KEY is the row id
        with op.batch_alter_table("run_step", recreate="always") as run_step:
            id_column = sa.Column("id", sa.Integer(), primary_key=True)
            run_step.add_column(id_column, insert_before="run_id")
    with op.batch_alter_table("run_step", naming_convention=NAMES) as run_step:
        run_step.create_unique_constraint("run_step_run_id_seq_key", ["run_id", "seq"])
        run_step.create_foreign_key("run_step_run_id_fkey", "workflow_run", ["run_id"], ["id"])
        run_step.create_index("ix_run_step_run_id", ["run_id"])
