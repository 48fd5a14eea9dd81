"""Alembic's configuration -> the revisions run on one connection to the database.

`flowc.server.schema` hands over its connection in `config.attributes["connection"]`,
already in the transaction (and, on PostgreSQL, under the advisory lock) it commits.
Otherwise (`command.revision(..., autogenerate=True)`) it opens an async engine itself,
on `sqlalchemy.url`, or else the server's `DATABASE_URL`.  Batch mode everywhere: SQLite
alters a table by copying it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from flowc.server import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from flowc.server.db import connecting
from flowc.server.settings import async_url, get_settings


def run_migrations(connection: Connection) -> None:
    """Run the revisions alembic's command asked for on `connection`."""
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Autogenerate writes SQLModel's `AutoString` as the `sa.String` it stands for."""
    if kind == "type" and isinstance(item, AutoString):
        return f"sa.String(length={item.length})" if item.length else "sa.String()"
    return False  # alembic's own rendering


async def run_on_own_engine(url: str) -> None:
    """Open `url` with the async driver, run the revisions on it, and close it."""
    engine = create_async_engine(url, poolclass=pool.NullPool, **connecting(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


_given: Connection | None = context.config.attributes.get("connection")
if _given is not None:
    run_migrations(_given)
else:
    _url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    asyncio.run(run_on_own_engine(async_url(_url)))
