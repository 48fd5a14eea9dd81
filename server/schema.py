"""Database URL -> its schema revision, and the schema brought to this flowc's head.

The revisions are alembic's, in `flowc.server.migrations`, run in this process with a
configuration made here (no alembic.ini).  `prepare` is what a process that works on the
database calls first: an empty database gets the schema, one at the head is used as it
is, an older one is upgraded only when asked (`--migrate`), and anything else is refused
with a `SchemaError` that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from flowc.server import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from flowc.server.db import connecting
from flowc.server.settings import async_url

#: The newest revision, the schema `flowc.server.models` describes.
HEAD = "0006"
#: The first revision: the tables `create_all` made before there were migrations.
INITIAL = "0001"
#: The oldest PostgreSQL flowc runs on: a takeover waits for the old owner's connections to
#: end with `pg_terminate_backend(pid, timeout)` (docs/durability.md).
POSTGRES_MIN = (14, 140000)
#: Where the revisions are (a folder of the installed package).
MIGRATIONS = Path(__file__).with_name("migrations")
#: The `pg_advisory_lock` key every flowc process migrates under ("flowc" in ASCII).
LOCK_KEY = 0x666C6F7763
#: Seconds a connection to SQLite waits for another process's write (an upgrade) to end.
SQLITE_LOCK_WAIT = 60.0
#: flowc's tables: a database holding none of them is empty as far as flowc goes.
TABLES = frozenset(table.name for table in SQLModel.metadata.sorted_tables)


class SchemaError(RuntimeError):
    """The database's schema is not this flowc's, and was not (or cannot be) upgraded."""


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for flowc's revisions, on `url` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:  # the options interpolate `%(name)s`, so a `%` is written twice
        config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def revisions() -> list[str]:
    """Every revision id flowc knows, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


async def check_server(url: str) -> None:
    """Raise `SchemaError` when the PostgreSQL at `url` is older than flowc needs."""
    if not async_url(url).startswith("postgresql"):
        return
    engine = _engine(url)
    try:
        async with engine.connect() as connection:
            await _check_version(connection)
    finally:
        await engine.dispose()


async def _check_version(connection: AsyncConnection) -> None:
    """`server_too_old` for the PostgreSQL `connection` is on."""
    number = int((await connection.execute(text("SHOW server_version_num"))).scalar_one())
    version = (await connection.execute(text("SHOW server_version"))).scalar_one()
    server_too_old(number, version)


def server_too_old(number: int, version: str) -> None:
    """Raise `SchemaError` for a `server_version_num` below `POSTGRES_MIN`."""
    if number < POSTGRES_MIN[1]:
        raise SchemaError(
            f"flowc needs PostgreSQL {POSTGRES_MIN[0]} or newer; this server is {version}"
        )


async def schema_revision(url: str) -> str | None:
    """The revision of the database at `url`; None when none of flowc's tables is there.

    A database whose tables `create_all` made, without alembic, is named by what it
    holds: the head when it matches the models, else `INITIAL` (the tables before
    migrations), which is what `upgrade` stamps it with before upgrading.
    """
    return await _read_revision(url, check_server=False)


async def _read_revision(url: str, *, check_server: bool) -> str | None:
    """`schema_revision`; first `check_server`'s check on the same connection, if asked."""
    engine = _engine(url)
    try:
        async with engine.connect() as connection:
            if check_server and connection.dialect.name == "postgresql":
                await _check_version(connection)
            return await connection.run_sync(_revision)
    finally:
        await engine.dispose()


async def differences(url: str) -> list[Any]:
    """What alembic's autogenerate would change in flowc's tables at `url` to match the models.

    Empty when the schema is the models' (`compare_metadata`'s operations otherwise).
    """
    engine = _engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await engine.dispose()


async def upgrade(url: str) -> tuple[str | None, str]:
    """Upgrade the database at `url` to `HEAD`; the revisions (before, after).

    All in one transaction, under a lock (PostgreSQL's advisory lock, SQLite's write
    lock), and the revision is read once the lock is held: of two processes upgrading at
    once, the second waits, then finds the work done.
    """
    engine = _engine(url, migrating=True)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Released with the transaction: at commit, or at rollback on a failure.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                )
            return await connection.run_sync(_upgrade)
    finally:
        await engine.dispose()


async def prepare(url: str, *, migrate: bool) -> None:
    """Make the database at `url` ready for this flowc, or raise `SchemaError` saying why not.

    Empty: the schema is created (a first start needs no command).  At `HEAD`: nothing to
    do.  Older: upgraded when `migrate`, refused otherwise.  Newer than this flowc: refused.
    """
    found = await _read_revision(url, check_server=True)  # one connection for both
    if found == HEAD:
        return
    if found is not None:
        _check_known(found)
        if not migrate:
            raise SchemaError(
                f"the database schema is at revision {found}, this flowc needs {HEAD}: "
                "run `flowc db upgrade` (or start with `--migrate`)"
            )
    await upgrade(url)


def _engine(url: str, *, migrating: bool = False) -> AsyncEngine:
    # No pool, and none of the server's connection settings: SQLite's enforced foreign
    # keys would get in the way of batch mode copying a table.
    url = async_url(url)
    on_sqlite = url.startswith("sqlite")
    options: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_LOCK_WAIT}} if on_sqlite else connecting(url)
    )
    engine = create_async_engine(url, poolclass=pool.NullPool, **options)
    if migrating and on_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_explicit_transactions)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_explicit_transactions(connection: Any, record: object) -> None:
    # The driver begins a transaction only before INSERT, UPDATE or DELETE: DDL ahead of
    # them would be committed at once, and a failed revision would leave half a copied
    # table behind.  Begun by us (`_sqlite_begin_immediate`), SQLite's DDL is transactional.
    connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    # The write lock from the start: a second process upgrading waits here, then finds
    # the work done (SQLite's counterpart of PostgreSQL's advisory lock).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _revision(connection: Connection) -> str | None:
    stamped = _stamped(connection)
    if stamped is not None:
        return stamped
    if not TABLES & set(inspect(connection).get_table_names()):
        return None
    return HEAD if not _differences(connection) else INITIAL


def _stamped(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def _upgrade(connection: Connection) -> tuple[str | None, str]:
    found = _revision(connection)
    if found is not None:
        _check_known(found)
    config = alembic_config()
    config.attributes["connection"] = connection
    if found is not None and _stamped(connection) is None:  # tables made by `create_all`
        command.stamp(config, found)
    command.upgrade(config, HEAD)
    return found, HEAD


def _check_known(found: str) -> None:
    if found not in revisions():
        raise SchemaError(
            f"the database schema is at revision {found}, which this flowc does not know "
            f"(its newest is {HEAD}): this flowc is older than the database, so upgrade flowc"
        )


def _differences(connection: Connection) -> list[Any]:
    options = {"compare_type": True, "compare_server_default": True, "include_name": _is_flowcs}
    diff: list[Any] = compare_metadata(
        MigrationContext.configure(connection, opts=options), SQLModel.metadata
    )
    return diff


def _is_flowcs(name: str | None, kind: str, parent: object) -> bool:
    # Other tables may share the database: they are not flowc's to compare.
    return kind != "table" or name in TABLES
