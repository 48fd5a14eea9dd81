"""Connections that a cancel does not cut in the middle of their start."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

import asyncpg
import pytest

from flowc.server import pgconnect
from flowc.server.pgconnect import connect
from tests.server.databases import postgres_url

__all__ = ["postgres_url"]


async def backends_named(url: str, name: str) -> int:
    """How many connections to the server carry `name` as their `application_name`."""
    admin = await asyncpg.connect(url)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        )
        return count
    finally:
        await admin.close()


def test_connects_cancelled_at_any_moment_leave_nothing_behind(postgres_url: str) -> None:
    # Cancelled from before the socket opens to after the connection is made: no error is
    # left for asyncio to log, and no connection stays open.  (`asyncpg.connect` itself
    # left "Future exception was never retrieved" in about one in four.)
    name = f"flowc test {uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[dict[str, Any]], int, int]:
        seen: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: seen.append(c))
        made = 0
        for tenth_ms in range(120):
            attempt = asyncio.ensure_future(
                connect(postgres_url, server_settings={"application_name": name})
            )
            await asyncio.sleep(tenth_ms / 30_000)
            attempt.cancel()
            try:
                connection = await attempt
            except asyncio.CancelledError:
                continue
            made += 1  # it was made before the cancel came: the caller has it
            await connection.close()
        gc.collect()
        await asyncio.sleep(0.05)
        return seen, made, await backends_named(postgres_url, name)

    seen, made, left_open = asyncio.run(scenario())
    assert [c.get("message") for c in seen] == []
    assert left_open == 0
    assert made < 120  # most were cancelled on the way, as meant


def test_a_connect_that_is_not_cancelled_is_asyncpgs(postgres_url: str) -> None:
    async def scenario() -> tuple[int, type[BaseException]]:
        connection = await connect(postgres_url)
        try:
            answer: int = await connection.fetchval("SELECT 41 + 1")
        finally:
            await connection.close()
        try:
            await connect(postgres_url.rsplit("/", 1)[0] + "/no_such_database_here")
        except Exception as exc:  # the attempt's own error, as asyncpg raises it
            return answer, type(exc)
        raise AssertionError("connected to a database that does not exist")

    assert asyncio.run(scenario()) == (42, asyncpg.InvalidCatalogNameError)


def test_a_connect_that_does_not_end_is_cut_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that never answers: the cancel waits CONNECT_GRACE, then cuts the attempt.
    ended: list[str] = []

    async def never(*_args: Any, **_options: Any) -> Any:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("cut")

    monkeypatch.setattr(asyncpg, "connect", never)
    monkeypatch.setattr(pgconnect, "CONNECT_GRACE", 0.2)

    async def scenario() -> float:
        attempt = asyncio.ensure_future(connect("postgresql://nowhere/x"))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        elapsed = time.monotonic() - start
        await asyncio.sleep(0)  # the cut attempt's own end
        return elapsed

    elapsed = asyncio.run(scenario())
    assert ended == ["cut"]
    assert 0.2 <= elapsed < 5
