"""The migrations: they build the models' schema, and bring a database from before them up.

`V1` is the schema as `create_all` made it before alembic (the models of then, copied as
plain tables): revision 0001 must make exactly that, and a database holding it, with a
run in it, must reach the head with its rows.  Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    inspect,
    pool,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from flowc.server import schema
from flowc.server.db import Database
from flowc.server.settings import async_url
from tests.server.conftest import read_run
from tests.server.databases import database_url, postgres_url

__all__ = ["database_url", "postgres_url"]

pytestmark = pytest.mark.asyncio

OLDER = (
    "the database schema is at revision 0001, this flowc needs 0006: "
    "run `flowc db upgrade` (or start with `--migrate`)"
)
NEWER = (
    "the database schema is at revision 9999, which this flowc does not know (its newest "
    "is 0006): this flowc is older than the database, so upgrade flowc"
)

_JSON = JSON().with_variant(JSONB(), "postgresql")
_MOMENT = DateTime(timezone=True)
V1 = MetaData()
V1_DEFINITION = Table(
    "workflow_definition",
    V1,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200)),
    Column("source", Text),
    Column("ir", _JSON, nullable=False),
    Column("source_hash", String(80)),
    Column("created_at", _MOMENT, nullable=False),
)
V1_RUN = Table(
    "workflow_run",
    V1,
    Column("id", Uuid, primary_key=True),
    Column("definition_id", Uuid, ForeignKey("workflow_definition.id"), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("durability", String(10), nullable=False),
    Column("input", _JSON, nullable=False),
    Column("state", _JSON, nullable=False),
    Column("current_node", Text),
    Column("step", Integer, nullable=False),
    Column("error", _JSON),
    Column("created_at", _MOMENT, nullable=False),
    Column("started_at", _MOMENT),
    Column("finished_at", _MOMENT),
    Column("updated_at", _MOMENT, nullable=False),
)
V1_STEP = Table(
    "run_step",
    V1,
    Column("id", Integer, primary_key=True),
    Column("run_id", Uuid, ForeignKey("workflow_run.id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("node", Text, nullable=False),
    Column("delta", _JSON, nullable=False),
    Column("started_at", _MOMENT, nullable=False),
    Column("finished_at", _MOMENT, nullable=False),
    UniqueConstraint("run_id", "seq"),
)

MOMENT = datetime(2025, 11, 30, 12, 0, tzinfo=timezone.utc)
DEFINITION_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")
NODES = ["analyze", "style", "score"]


def engine_on(url: str) -> AsyncEngine:
    return create_async_engine(async_url(url), poolclass=pool.NullPool)


async def on_connection(url: str, work: Callable[[Connection], Any]) -> Any:
    """`work(connection)` in one committed transaction on `url`."""
    engine = engine_on(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


async def alembic(url: str, action: Callable[[Config, str], None], revision: str) -> None:
    """An alembic command (`command.upgrade`, `command.downgrade`) to `revision` on `url`."""

    def run(connection: Connection) -> None:
        config = schema.alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    await on_connection(url, run)


async def make_v1(url: str) -> None:
    """The tables of before alembic, as `create_all` made them, with a run of three steps."""

    def fill(connection: Connection) -> None:
        V1.create_all(connection)
        connection.execute(
            V1_DEFINITION.insert().values(
                id=DEFINITION_ID, name="review", ir={"start": "analyze"}, created_at=MOMENT
            )
        )
        connection.execute(
            V1_RUN.insert().values(
                id=RUN_ID,
                definition_id=DEFINITION_ID,
                status="succeeded",
                durability="sync",
                input={"code": "x = 1"},
                state={"score": 90},
                current_node="score",
                step=3,
                created_at=MOMENT,
                updated_at=MOMENT,
            )
        )
        for seq, node in enumerate(NODES, start=1):
            connection.execute(
                V1_STEP.insert().values(
                    run_id=RUN_ID,
                    seq=seq,
                    node=node,
                    delta={node: seq},
                    started_at=MOMENT,
                    finished_at=MOMENT,
                )
            )

    await on_connection(url, fill)


def shape(connection: Connection) -> dict[str, Any]:
    """Every table's columns, keys, constraints and indexes (with their names, and a partial
    index's condition), as reflected."""
    inspector = inspect(connection)
    tables = sorted(set(inspector.get_table_names()) - {"alembic_version"})
    found: dict[str, Any] = {}
    for table in tables:
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table),
            "foreign keys": sorted(
                (fk["name"] or "", fk["constrained_columns"], fk["referred_table"])
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"] or "", u["column_names"])
                for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"] or "", i["column_names"], i["unique"], where(i))
                for i in inspector.get_indexes(table)
            ),
        }
    return found


def comparable(found: dict[str, Any], url: str, *, any_order: bool = False) -> dict[str, Any]:
    """`found` without what may differ: on SQLite, the names batch mode gives constraints
    `create_all` leaves unnamed; with `any_order`, the columns' order (a column added back
    comes last on PostgreSQL)."""
    seen = {}
    for table, parts in found.items():
        parts = dict(parts)
        if url.startswith("sqlite"):
            parts["primary key"] = parts["primary key"]["constrained_columns"]
            parts["foreign keys"] = [fk[1:] for fk in parts["foreign keys"]]
            parts["unique"] = [unique[1:] for unique in parts["unique"]]
        if any_order:
            parts["columns"] = sorted(parts["columns"], key=str)
        seen[table] = parts
    return seen


def where(index: Any) -> list[tuple[str, str]]:
    """A reflected index's dialect options (a partial index's condition), as text."""
    return sorted((key, str(value)) for key, value in index.get("dialect_options", {}).items())


async def shape_of(url: str) -> dict[str, Any]:
    shown: dict[str, Any] = await on_connection(url, shape)
    return shown


async def version_table(url: str) -> list[str]:
    def read(connection: Connection) -> list[str]:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())

    found: list[str] = await on_connection(url, read)
    return found


async def test_an_empty_database_upgrades_to_the_models_schema(database_url: str) -> None:
    assert schema.revisions() == ["0001", "0002", "0003", "0004", "0005", "0006"]  # one line
    assert schema.revisions()[-1] == schema.HEAD
    assert await schema.schema_revision(database_url) is None
    assert await schema.upgrade(database_url) == (None, schema.HEAD)
    assert await schema.schema_revision(database_url) == schema.HEAD
    assert await version_table(database_url) == [schema.HEAD]
    assert await schema.differences(database_url) == []


async def test_the_models_schema_has_what_create_all_gives_them(database_url: str) -> None:
    # Tests make their tables with `create_all`: what they run on is what users get.
    await on_connection(database_url, SQLModel.metadata.create_all)
    made = await shape_of(database_url)
    await on_connection(database_url, SQLModel.metadata.drop_all)
    await schema.upgrade(database_url)
    migrated = await shape_of(database_url)
    assert comparable(migrated, database_url) == comparable(made, database_url)


async def test_the_initial_revision_is_the_tables_create_all_made(database_url: str) -> None:
    await on_connection(database_url, V1.create_all)
    made = await shape_of(database_url)
    await on_connection(database_url, V1.drop_all)
    await alembic(database_url, command.upgrade, "0001")
    assert await shape_of(database_url) == made  # the same names too


async def test_a_database_from_before_alembic_reaches_the_head_with_its_rows(
    database_url: str,
) -> None:
    await make_v1(database_url)
    assert await schema.schema_revision(database_url) == "0001"
    assert await schema.upgrade(database_url) == ("0001", schema.HEAD)
    assert await version_table(database_url) == [schema.HEAD]
    assert await schema.differences(database_url) == []
    db = Database(database_url)
    try:
        run, steps = await read_run(db, RUN_ID)
    finally:
        await db.dispose()
    assert (run.status, run.state, run.step, run.definition_id) == (
        "succeeded",
        {"score": 90},
        3,
        DEFINITION_ID,
    )
    assert (run.owner, run.attempt, run.lease_expires_at, run.cancel_requested) == (
        None,
        0,
        None,
        False,
    )
    assert (run.idempotency_key, run.request_hash) == (None, None)
    assert [(s.seq, s.node, s.delta, s.attempts, s.failed) for s in steps] == [
        (1, "analyze", {"analyze": 1}, 1, False),
        (2, "style", {"style": 2}, 1, False),
        (3, "score", {"score": 3}, 1, False),
    ]


async def test_tables_create_all_made_from_the_models_are_the_head(database_url: str) -> None:
    await on_connection(database_url, SQLModel.metadata.create_all)
    assert await schema.schema_revision(database_url) == schema.HEAD
    assert await schema.upgrade(database_url) == (schema.HEAD, schema.HEAD)
    assert await version_table(database_url) == [schema.HEAD]  # stamped


async def test_a_failed_upgrade_leaves_the_database_as_it_was(database_url: str) -> None:
    await alembic(database_url, command.upgrade, "0001")
    # The name of the index 0002 creates last, taken: it fails after changing run_step.
    taken = "CREATE INDEX ix_workflow_run_claimable ON workflow_definition (created_at)"
    await on_connection(database_url, lambda connection: connection.execute(text(taken)))
    before = await shape_of(database_url)
    with pytest.raises(Exception, match="ix_workflow_run_claimable"):
        await schema.upgrade(database_url)
    assert await shape_of(database_url) == before  # no half-copied table either
    assert await schema.schema_revision(database_url) == "0001"


async def test_downgrading_to_the_initial_revision_gives_back_its_tables_and_rows(
    database_url: str,
) -> None:
    await on_connection(database_url, V1.create_all)
    v1 = await shape_of(database_url)
    await on_connection(database_url, V1.drop_all)
    await make_v1(database_url)
    await schema.upgrade(database_url)
    await alembic(database_url, command.downgrade, "0001")
    downgraded = await shape_of(database_url)
    assert comparable(downgraded, database_url, any_order=True) == comparable(
        v1, database_url, any_order=True
    )

    def steps(connection: Connection) -> list[tuple[Any, ...]]:
        query = V1_STEP.select().with_only_columns(V1_STEP.c.seq, V1_STEP.c.node)
        return [tuple(row) for row in connection.execute(query.order_by(V1_STEP.c.seq))]

    assert await on_connection(database_url, steps) == list(enumerate(NODES, start=1))
    assert await schema.upgrade(database_url) == ("0001", schema.HEAD)


async def test_the_failed_flag_of_steps_downgrades_and_upgrades_again(database_url: str) -> None:
    await make_v1(database_url)
    await alembic(database_url, command.stamp, "0001")
    await alembic(database_url, command.upgrade, "0002")
    at_0002 = await shape_of(database_url)
    await alembic(database_url, command.upgrade, "0003")
    missing = await schema.differences(database_url)  # what 0004 to 0006 add, nothing else
    assert sorted(added(d) for d in missing) == sorted(
        [("add_column", "run_step", "branch"), *ADDED_BY_0005, *ADDED_BY_0006]
    )

    def fail_the_last(connection: Connection) -> None:
        connection.execute(text("UPDATE run_step SET failed = true WHERE seq = 3"))

    await on_connection(database_url, fail_the_last)
    await alembic(database_url, command.downgrade, "0002")
    assert comparable(await shape_of(database_url), database_url) == comparable(
        at_0002, database_url
    )

    def steps(connection: Connection) -> list[tuple[Any, ...]]:
        query = "SELECT seq, node, attempts FROM run_step ORDER BY seq"
        return [tuple(row) for row in connection.execute(text(query))]

    assert await on_connection(database_url, steps) == [
        (seq, node, 1) for seq, node in enumerate(NODES, start=1)
    ]
    assert await schema.upgrade(database_url) == ("0002", schema.HEAD)
    db = Database(database_url)
    try:
        _, rows = await read_run(db, RUN_ID)
    finally:
        await db.dispose()
    assert [(s.seq, s.failed) for s in rows] == [(1, False), (2, False), (3, False)]


async def test_the_branch_of_steps_downgrades_and_upgrades_again(database_url: str) -> None:
    await make_v1(database_url)
    await alembic(database_url, command.stamp, "0001")
    await alembic(database_url, command.upgrade, "0003")
    at_0003 = await shape_of(database_url)
    await alembic(database_url, command.upgrade, "0004")
    added_since = sorted(added(d) for d in await schema.differences(database_url))
    assert added_since == sorted([*ADDED_BY_0005, *ADDED_BY_0006])

    def branch_the_middle(connection: Connection) -> None:
        connection.execute(text("UPDATE run_step SET branch = '0' WHERE seq = 2"))

    await on_connection(database_url, branch_the_middle)

    def branches(connection: Connection) -> list[tuple[Any, ...]]:
        query = "SELECT seq, branch FROM run_step ORDER BY seq"  # the models are past 0004
        return [tuple(row) for row in connection.execute(text(query))]

    assert await on_connection(database_url, branches) == [(1, None), (2, "0"), (3, None)]
    await alembic(database_url, command.downgrade, "0003")
    assert comparable(await shape_of(database_url), database_url) == comparable(
        at_0003, database_url
    )

    def steps(connection: Connection) -> list[tuple[Any, ...]]:
        query = "SELECT seq, node, failed FROM run_step ORDER BY seq"
        return [tuple(row) for row in connection.execute(text(query))]

    assert await on_connection(database_url, steps) == [
        (seq, node, False) for seq, node in enumerate(NODES, start=1)
    ]
    assert await schema.upgrade(database_url) == ("0003", schema.HEAD)
    db = Database(database_url)
    try:
        _, rows = await read_run(db, RUN_ID)
    finally:
        await db.dispose()
    assert [(s.seq, s.branch) for s in rows] == [(1, None), (2, None), (3, None)]


#: What revision 0005 adds, as `added` names it: where a run waits, and the sweep's index.
ADDED_BY_0005 = [
    ("add_column", "workflow_run", "waiting"),
    ("add_column", "workflow_run", "waiting_since"),
    ("add_column", "workflow_run", "wait_deadline"),
    ("add_index", "workflow_run", "ix_workflow_run_wait_deadline"),
]


#: What revision 0006 adds: the parent, node and root of a sub-flow's run, their two
#: indexes, and the one a sub-flow's name is looked up by.
ADDED_BY_0006 = [
    ("add_column", "workflow_run", "parent_run_id"),
    ("add_column", "workflow_run", "parent_node"),
    ("add_column", "workflow_run", "root_run_id"),
    ("add_index", "workflow_run", "ix_workflow_run_parent_run_id"),
    ("add_index", "workflow_run", "ix_workflow_run_root_run_id"),
    ("add_index", "workflow_definition", "ix_workflow_definition_name"),
]


def added(difference: Any) -> tuple[str, str, str]:
    """An `add_column` or `add_index` difference: its kind, its table, and what it adds."""
    if difference[0] == "add_index":
        index = difference[1]
        return ("add_index", index.table.name, index.name)
    return (difference[0], difference[2], difference[3].name)


async def test_the_waiting_columns_downgrade_and_upgrade_again_but_not_while_a_run_waits(
    database_url: str,
) -> None:
    await make_v1(database_url)
    await alembic(database_url, command.stamp, "0001")
    await alembic(database_url, command.upgrade, "0004")
    at_0004 = await shape_of(database_url)
    await alembic(database_url, command.upgrade, "0005")
    found = [added(d) for d in await schema.differences(database_url)]
    assert sorted(found) == sorted(ADDED_BY_0006)

    def wait(connection: Connection) -> None:
        connection.execute(
            text(
                "UPDATE workflow_run SET status = 'waiting', "
                'waiting = \'{"node": "approval", "name": "ok", "timeout": null}\''
            )
        )

    await on_connection(database_url, wait)
    with pytest.raises(RuntimeError) as refused:
        await alembic(database_url, command.downgrade, "0004")
    assert str(refused.value) == (
        "1 run waits at a wait node, which revision 0004 cannot resume: resume or cancel them "
        "(POST /graph/resume or /graph/cancel), then downgrade"
    )
    assert await version_table(database_url) == ["0005"]

    def cancel(connection: Connection) -> None:
        connection.execute(text("UPDATE workflow_run SET status = 'cancelled', waiting = NULL"))

    await on_connection(database_url, cancel)
    await alembic(database_url, command.downgrade, "0004")
    assert comparable(await shape_of(database_url), database_url) == comparable(
        at_0004, database_url
    )
    assert await schema.upgrade(database_url) == ("0004", schema.HEAD)
    db = Database(database_url)
    try:
        run, rows = await read_run(db, RUN_ID)
    finally:
        await db.dispose()
    assert (run.status, run.waiting, run.waiting_since, run.wait_deadline) == (
        "cancelled",
        None,
        None,
        None,
    )
    assert [s.seq for s in rows] == [1, 2, 3]


async def test_the_sub_flow_columns_downgrade_and_upgrade_again_but_not_while_a_child_runs(
    database_url: str,
) -> None:
    await make_v1(database_url)
    await alembic(database_url, command.stamp, "0001")
    await alembic(database_url, command.upgrade, "0005")
    at_0005 = await shape_of(database_url)
    await alembic(database_url, command.upgrade, "0006")
    assert await schema.differences(database_url) == []
    child = uuid.UUID("00000000-0000-4000-8000-000000000003")

    def add_a_running_child(connection: Connection) -> None:
        connection.execute(
            V1_RUN.insert().values(
                id=child, definition_id=DEFINITION_ID, status="running", durability="sync",
                input={}, state={}, step=0, created_at=MOMENT, updated_at=MOMENT,
            )
        )  # fmt: skip
        connection.execute(
            text("UPDATE workflow_run SET parent_run_id = :parent, root_run_id = :parent, "
                 "parent_node = 'review' WHERE id = :child"),
            {"parent": RUN_ID.hex if "sqlite" in database_url else RUN_ID,
             "child": child.hex if "sqlite" in database_url else child},
        )  # fmt: skip

    await on_connection(database_url, add_a_running_child)
    with pytest.raises(RuntimeError) as refused:
        await alembic(database_url, command.downgrade, "0005")
    assert str(refused.value) == (
        "1 run of a sub-flow is unfinished, which revision 0005 would claim as runs of their "
        "own: let them end (or cancel their parents with POST /graph/cancel), then downgrade"
    )
    assert await version_table(database_url) == ["0006"]

    def end(connection: Connection) -> None:
        connection.execute(text("UPDATE workflow_run SET status = 'succeeded'"))

    await on_connection(database_url, end)
    await alembic(database_url, command.downgrade, "0005")
    assert comparable(await shape_of(database_url), database_url) == comparable(
        at_0005, database_url
    )
    assert await schema.upgrade(database_url) == ("0005", schema.HEAD)
    db = Database(database_url)
    try:
        run, _ = await read_run(db, child)
    finally:
        await db.dispose()
    assert (run.status, run.parent_run_id, run.parent_node, run.root_run_id) == (
        "succeeded", None, None, None,
    )  # fmt: skip


async def test_prepare_gives_an_empty_database_the_schema(database_url: str) -> None:
    await schema.prepare(database_url, migrate=False)
    assert await schema.schema_revision(database_url) == schema.HEAD


async def test_prepare_leaves_a_database_at_the_head_alone(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await schema.upgrade(database_url)

    async def no_upgrade(url: str) -> None:
        pytest.fail("prepare upgraded a database at the head")

    monkeypatch.setattr(schema, "upgrade", no_upgrade)
    await schema.prepare(database_url, migrate=True)


async def test_prepare_refuses_an_older_schema_unless_asked_to_migrate(database_url: str) -> None:
    await alembic(database_url, command.upgrade, "0001")
    with pytest.raises(schema.SchemaError) as refused:
        await schema.prepare(database_url, migrate=False)
    assert str(refused.value) == OLDER
    assert await schema.schema_revision(database_url) == "0001"
    await schema.prepare(database_url, migrate=True)
    assert await schema.schema_revision(database_url) == schema.HEAD


async def test_prepare_refuses_a_database_from_before_alembic_unless_asked(
    database_url: str,
) -> None:
    await make_v1(database_url)
    with pytest.raises(schema.SchemaError) as refused:
        await schema.prepare(database_url, migrate=False)
    assert str(refused.value) == OLDER
    await schema.prepare(database_url, migrate=True)
    assert await version_table(database_url) == [schema.HEAD]


async def test_a_schema_newer_than_this_flowc_is_refused_even_with_migrate(
    database_url: str,
) -> None:
    await schema.upgrade(database_url)
    newer = "UPDATE alembic_version SET version_num = '9999'"
    await on_connection(database_url, lambda connection: connection.execute(text(newer)))
    for migrate in (False, True):
        with pytest.raises(schema.SchemaError) as refused:
            await schema.prepare(database_url, migrate=migrate)
        assert str(refused.value) == NEWER
    with pytest.raises(schema.SchemaError) as refused:
        await schema.upgrade(database_url)
    assert str(refused.value) == NEWER


async def test_prepare_ignores_other_tables_in_the_database(database_url: str) -> None:
    unrelated = "CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)"
    await on_connection(database_url, lambda connection: connection.execute(text(unrelated)))
    assert await schema.schema_revision(database_url) is None
    await schema.prepare(database_url, migrate=False)
    assert await schema.differences(database_url) == []


@pytest.mark.parametrize("start", ["empty", "v1"])
async def test_concurrent_upgrades_on_postgresql_migrate_once(
    postgres_url: str, start: str
) -> None:
    if start == "v1":
        await make_v1(postgres_url)
    first = None if start == "empty" else "0001"
    results = await asyncio.gather(*(schema.upgrade(postgres_url) for _ in range(3)))
    assert sorted(results, key=str) == sorted(
        [(first, schema.HEAD), (schema.HEAD, schema.HEAD), (schema.HEAD, schema.HEAD)], key=str
    )
    assert await version_table(postgres_url) == [schema.HEAD]
    assert await schema.differences(postgres_url) == []


async def test_concurrent_prepares_on_an_empty_database_both_start(database_url: str) -> None:
    await asyncio.gather(*(schema.prepare(database_url, migrate=False) for _ in range(2)))
    assert await version_table(database_url) == [schema.HEAD]


async def test_a_postgresql_older_than_14_is_refused_with_its_version() -> None:
    with pytest.raises(schema.SchemaError) as refused:
        schema.server_too_old(130016, "13.16 (Debian 13.16-1)")
    assert str(refused.value) == (
        "flowc needs PostgreSQL 14 or newer; this server is 13.16 (Debian 13.16-1)"
    )
    schema.server_too_old(140000, "14.0")  # the oldest taken


async def test_the_tests_postgresql_is_checked_and_taken(postgres_url: str) -> None:
    await schema.check_server(postgres_url)
