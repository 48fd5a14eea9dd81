"""API fixtures: the application on each database, started, and clients that talk to it.

`db_url` runs a test on SQLite (a fresh file) and on PostgreSQL (one database for the
session, made by `tests/server/databases.py` and dropped after).  Runs and graphs get new
ids, so tests sharing the PostgreSQL database do not see each other.  Also: a run service
of its own on a database, a tool that waits for the test (`gates`), and the loop's
unhandled errors (`loop_errors`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect

from flowc.compiler import compile_source
from flowc.runtime import REGISTRY, Registry
from flowc.server import store
from flowc.server.app import create_app
from flowc.server.db import Database
from flowc.server.models import RunStep, WorkflowDefinition, WorkflowRun
from flowc.server.runs import RunService
from flowc.server.settings import Settings
from tests.server.databases import BACKENDS, postgres_database

ROOT = Path(__file__).parents[2]
ONE_LINER = "analyze -> style -> score; score ? score<80 -> refine : end"
CODE_REVIEW = (ROOT / "examples" / "code_review.flow").read_text(encoding="utf-8")
PRINTS = (ROOT / "examples" / "samples" / "prints.py").read_text(encoding="utf-8")
BASE_URL = "http://flowc.test"
#: Seconds a test waits for something it caused before it fails (a bound, not a pause).
WAIT = 30.0


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


class LiveApp(NamedTuple):
    """The application under uvicorn in this process: its address, the app and the server."""

    address: str
    app: FastAPI
    server: uvicorn.Server


@pytest_asyncio.fixture
async def live_app(db_url: str) -> AsyncIterator[LiveApp]:
    """The application served by uvicorn on a free local port, in this process."""
    application = create_app(make_settings(db_url))
    # No logging configuration of uvicorn's own: its records reach pytest (and `caplog`).
    config = uvicorn.Config(application, port=0, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():  # it failed to start: show why
            await task
            pytest.fail("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveApp(f"127.0.0.1:{port}", application, server)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def live_server(live_app: LiveApp) -> str:
    """The address (`host:port`) of the application served by uvicorn."""
    return live_app.address


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


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds, for what nothing signals; fail after `WAIT` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except asyncio.TimeoutError:
        pytest.fail(f"waited {WAIT} seconds for {what}")


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop reports as unhandled ("Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


class Gates:
    """A tool, `hold(gate = "...")`, that waits in the run until the test opens its gate."""

    def __init__(self) -> None:
        self.reached: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.opened: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def hold(self, state: dict[str, Any], *, gate: str) -> dict[str, Any]:
        """Say the run got here, wait for the gate, then write `{gate: true}`."""
        self.reached[gate].set()
        await self.opened[gate].wait()
        return {gate: True}

    async def wait_until_reached(self, gate: str) -> None:
        """Return once a run waits at `gate`; fail after `WAIT` seconds."""
        try:
            await asyncio.wait_for(self.reached[gate].wait(), WAIT)
        except asyncio.TimeoutError:
            pytest.fail(f"no run reached the gate {gate!r} within {WAIT} seconds")

    def open(self, gate: str) -> None:
        """Let runs waiting at `gate` (and those that come later) through."""
        self.opened[gate].set()


@pytest.fixture
def gates() -> Iterator[Gates]:
    """`hold` in the application's registry, removed afterwards (every gate opened)."""
    held = Gates()
    REGISTRY.add(held.hold, "hold")
    yield held
    for gate in list(held.opened):
        held.open(gate)
    REGISTRY.remove("hold")


@asynccontextmanager
async def service_on(url: str, registry: Registry, **settings: Any) -> AsyncIterator[RunService]:
    """A run service of its own on `url` (tables created), closed with its database after."""
    db = Database(url)
    await db.create_tables()
    service = RunService(db, registry=registry, settings=make_settings(url, **settings))
    await service.open()
    try:
        yield service
    finally:
        await service.close()
        await db.dispose()


async def define(db: Database, source: str, registry: Registry) -> WorkflowDefinition:
    """Compile `source` against `registry` and save it (the test's input, not its answer)."""
    ir = compile_source(source, tools=registry.specs()).ir
    async with db.session() as session:
        return await store.create_definition(session, name="test", source=source, ir=ir)


async def read_run(db: Database, run_id: uuid.UUID) -> tuple[WorkflowRun, list[RunStep]]:
    """A run's row and its step rows, as the database has them now."""
    async with db.session() as session:
        run = await store.get_run(session, run_id=run_id)
        steps = await store.list_steps(session, run_id=run_id)
    assert run is not None, f"no row for run {run_id}"
    return run, steps


async def collect(service: RunService, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every event message of a run, to its final one."""
    return [message async for message in service.events(run_id)]


async def events_of(url: str) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of a run's WebSocket stream, and the close code."""
    async with connect(url) as ws:
        events = [json.loads(message) async for message in ws]
        return events, ws.close_code
