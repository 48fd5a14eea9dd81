"""The engine's PostgreSQL connections: opened as the run log's are, from the same URL."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import asyncpg
from sqlalchemy import text

from flowc.server.db import Database
from flowc.server.schema import HEAD, prepare, schema_revision
from flowc.server.settings import async_url, asyncpg_dsn
from tests.server.databases import postgres_url

__all__ = ["postgres_url"]


async def backends_of(url: str) -> int:
    """How many other connections to `url`'s database are open."""
    admin = await asyncpg.connect(url)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await admin.close()


def test_asyncpg_dsn_undoes_async_url() -> None:
    url = "postgresql://flowc:secret@db.example:5433/flowc?sslmode=require"
    assert asyncpg_dsn(async_url(url)) == url
    assert asyncpg_dsn(async_url("postgres://h/d")) == "postgresql://h/d"


def test_the_engine_reads_the_url_as_asyncpg_does(postgres_url: str) -> None:
    # A query parameter asyncpg takes as a server setting: SQLAlchemy's own reading of the
    # URL passed it to `asyncpg.connect` as a keyword it does not know (TypeError).
    async def scenario() -> str:
        db = Database(postgres_url + "?application_name=flowc-engine-test")
        try:
            async with db.engine.connect() as connection:
                result = await connection.execute(
                    text("SELECT current_setting('application_name')")
                )
                name: str = result.scalar_one()
                return name
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == "flowc-engine-test"


def test_the_schema_is_prepared_on_the_url_read_the_same_way(postgres_url: str) -> None:
    # `flowc serve` prepares the schema on its own engine before it serves: that engine
    # reads the URL as the others do, so a URL the server runs on is one it can start on.
    url = postgres_url + "?application_name=flowc-schema-test"

    async def scenario() -> str | None:
        await prepare(url, migrate=False)
        return await schema_revision(url)

    assert asyncio.run(scenario()) == HEAD


def test_engine_connects_cancelled_at_any_moment_leave_nothing_behind(postgres_url: str) -> None:
    # A request's connection, on asyncio's own loop (the one `asyncio.run` makes), as on
    # platforms without uvloop: with SQLAlchemy opening connections itself, 62 of 200 such
    # cancels left "Future exception was never retrieved" for asyncio to log (asyncpg's
    # SSL negotiation, as in `test_pgconnect.py`).
    async def scenario() -> tuple[list[dict[str, Any]], int]:
        seen: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: seen.append(c))
        db = Database(postgres_url)

        async def query() -> None:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        try:
            for tenth_ms in range(120):
                attempt = asyncio.ensure_future(query())
                await asyncio.sleep(tenth_ms / 30_000)
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await attempt
                await db.engine.dispose()  # the next query connects again
        finally:
            await db.dispose()
        gc.collect()
        await asyncio.sleep(0.05)
        return seen, await backends_of(postgres_url)

    seen, left_open = asyncio.run(scenario())
    assert [c.get("message") for c in seen] == []
    assert left_open == 0
