"""API fixtures: the application on each database, started, and clients that talk to it.

`db_url` runs a test on SQLite (a fresh file) and on PostgreSQL (one database for the
session, made by `tests/server/databases.py` and dropped after).  Runs and graphs get new
ids, so tests sharing the PostgreSQL database do not see each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from flowc.server.app import create_app
from flowc.server.settings import Settings
from tests.server.databases import BACKENDS, postgres_database

ROOT = Path(__file__).parents[2]
ONE_LINER = "analyze -> style -> score; score ? score<80 -> refine : end"
CODE_REVIEW = (ROOT / "examples" / "code_review.flow").read_text(encoding="utf-8")
PRINTS = (ROOT / "examples" / "samples" / "prints.py").read_text(encoding="utf-8")
BASE_URL = "http://flowc.test"


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[str]:
    """One fresh PostgreSQL database for the session's API tests (skip or fail if none)."""
    yield from postgres_database()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: an empty SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"
    url: str = request.getfixturevalue("shared_postgres")
    return url


def make_settings(url: str, **overrides: Any) -> Settings:
    """Settings for a test application on `url`."""
    return Settings.model_validate({"DATABASE_URL": url, **overrides})


@pytest_asyncio.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    """The application on `db_url`, its lifespan entered (httpx does not run lifespans)."""
    application = create_app(make_settings(db_url))
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An async client that calls the application in-process; app errors are raised."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


@pytest_asyncio.fixture
async def live_server(db_url: str) -> AsyncIterator[str]:
    """The application served by uvicorn on a free local port, in this process; its URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(make_settings(db_url)), port=0, log_level="warning")
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():  # it failed to start: show why
            await task
            pytest.fail("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def create_graph(client: httpx.AsyncClient, source: str) -> str:
    """Save flow text through the API; the graph id."""
    response = await client.post("/graph/create", json={"source": source})
    assert response.status_code == 201, response.text
    graph_id: str = response.json()["graph_id"]
    return graph_id


def replay(initial: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The state after `steps`, merged delta by delta onto `initial`."""
    state = dict(initial)
    for step in steps:
        state.update(step["delta"])
    return state
