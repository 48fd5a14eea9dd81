"""Databases for server tests: a SQLite file, or a fresh PostgreSQL database dropped after.

PostgreSQL at `FLOWC_TEST_DATABASE_URL` (default: the local server, database `postgres`).
When it cannot be reached the test is skipped, unless `FLOWC_REQUIRE_POSTGRES=1` (CI), when
it fails: nothing passes in CI by skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_POSTGRES

ADMIN_URL = os.environ.get(
    "FLOWC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_database() -> Iterator[str]:
    """Create `flowc_test_<random>`, yield its URL, drop it (and its connections) after."""
    name = f"flowc_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, ConnectionError) as exc:
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own (skip or fail if there is none)."""
    yield from postgres_database()
