"""`GET /graph/state/{run_id}/steps?after=&limit=`: pages of a long run, read by its key.

A run of a million steps on SQLite (sixty thousand on PostgreSQL) is written straight into
the tables; its pages must hold exactly the steps asked for, say where the next one
starts, stay small whatever the run's length, and cost the same wherever they start.
`GET /graph/state/{run_id}` of such a run stays small too.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import event

from flowc.server.app import create_app
from flowc.server.db import Database
from flowc.server.runlog import READ_PAGE
from flowc.server.schema import prepare
from tests.server.conftest import BASE_URL, make_settings
from tests.server.databases import BACKENDS
from tests.server.long_runs import Reads, write_run

pytestmark = pytest.mark.asyncio

#: Steps of the long run, by backend (PostgreSQL's are written by `generate_series`, but
#: each test's database is shared with the session: kept smaller).
LENGTH = {"sqlite": 1_000_000, "postgresql": 60_000}
DEFAULT_PAGE, MAX_PAGE = 1000, 1000
#: Bytes a step of the long run takes in a page, at most (`{"seq": 1000000, ...}`).
STEP_BYTES = 200
#: Bytes of Python memory a request for a page may allocate, at most (it takes about 3 MB);
#: the whole million steps as objects would take gigabytes.
PAGE_MEMORY = 8 * 1024 * 1024


class LongRun(NamedTuple):
    """The application on a database that holds a long run: a client, the run, its length."""

    client: httpx.AsyncClient
    url: str
    run_id: uuid.UUID
    steps: int
    app: Any


@pytest.fixture(scope="module")
def long_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, uuid.UUID]]:
    """A SQLite file with a finished run of a million steps (written once for the module)."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('long') / 'flowc.db'}"
    asyncio.run(prepare(url, migrate=False))
    yield url, asyncio.run(write_run(url, LENGTH["sqlite"]))


@pytest.fixture(scope="module")
def long_postgresql(shared_postgres: str) -> tuple[str, uuid.UUID]:
    """The session's PostgreSQL database, with a finished run of sixty thousand steps."""

    async def write() -> uuid.UUID:
        db = Database(shared_postgres)
        await db.create_tables()
        await db.dispose()
        return await write_run(shared_postgres, LENGTH["postgresql"])

    return shared_postgres, asyncio.run(write())


@pytest.fixture(params=BACKENDS)
def long_database(request: pytest.FixtureRequest) -> tuple[str, uuid.UUID, int]:
    """A database holding a long run: its URL, the run, the run's length."""
    url, run_id = request.getfixturevalue(f"long_{request.param}")
    return url, run_id, LENGTH[request.param]


@pytest_asyncio.fixture
async def long_run(long_database: tuple[str, uuid.UUID, int]) -> AsyncIterator[LongRun]:
    """The application on a database holding a long run, and a client for it."""
    url, run_id, steps = long_database
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield LongRun(client, url, run_id, steps, app)


async def page(run: LongRun, **query: int) -> tuple[list[int], int | None, int]:
    """A page of the run: its steps' `seq`s, its `next`, and its size in bytes."""
    response = await run.client.get(f"/graph/state/{run.run_id}/steps", params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == str(run.run_id)
    for step in body["steps"]:  # what was written, read back whole
        assert (step["node"], step["delta"], step["attempts"]) == ("tick", {"n": step["seq"]}, 1)
        assert step["duration_ms"] == 1.0
    return [step["seq"] for step in body["steps"]], body["next"], len(response.content)


async def test_pages_hold_exactly_the_steps_asked_for(long_run: LongRun) -> None:
    steps, middle = long_run.steps, long_run.steps // 2
    first, cursor, size = await page(long_run)
    assert (first, cursor) == (list(range(1, DEFAULT_PAGE + 1)), DEFAULT_PAGE)
    assert size < DEFAULT_PAGE * STEP_BYTES
    following, cursor, _ = await page(long_run, after=DEFAULT_PAGE, limit=3)
    assert (following, cursor) == ([1001, 1002, 1003], 1003)
    largest, cursor, size = await page(long_run, after=middle, limit=MAX_PAGE)
    assert (largest, cursor) == (list(range(middle + 1, middle + MAX_PAGE + 1)), middle + MAX_PAGE)
    assert size < MAX_PAGE * STEP_BYTES
    # The last page, exactly full: nothing follows it, so `next` is null.
    last, cursor, _ = await page(long_run, after=steps - MAX_PAGE, limit=MAX_PAGE)
    assert (last[0], last[-1], len(last), cursor) == (steps - MAX_PAGE + 1, steps, MAX_PAGE, None)
    short, cursor, _ = await page(long_run, after=steps - 2, limit=5)
    assert (short, cursor) == ([steps - 1, steps], None)
    assert (await page(long_run, after=steps))[:2] == ([], None)
    assert (await page(long_run, after=2**31 - 1))[:2] == ([], None)


async def test_following_next_walks_every_step_once(long_run: LongRun) -> None:
    start = long_run.steps - 5 * MAX_PAGE - 123  # five full pages and a short one
    seen: list[int] = []
    cursor: int | None = start
    pages = 0
    while cursor is not None:
        seqs, cursor, _ = await page(long_run, after=cursor, limit=MAX_PAGE)
        seen += seqs
        pages += 1
    assert seen == list(range(start + 1, long_run.steps + 1))
    assert pages == 6


async def test_a_page_costs_the_same_memory_wherever_it_starts(long_run: LongRun) -> None:
    url = f"/graph/state/{long_run.run_id}/steps"
    await long_run.client.get(url, params={"limit": 1})  # connections and caches warmed
    peaks = []
    for after in (0, long_run.steps - MAX_PAGE):
        tracemalloc.start()
        try:
            response = await long_run.client.get(url, params={"after": after, "limit": MAX_PAGE})
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(response.json()["steps"]) == MAX_PAGE
    assert max(peaks) < PAGE_MEMORY, peaks


async def test_a_page_is_read_by_the_run_steps_key(long_run: LongRun) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM run_step" in statement:
            statements.append((statement, parameters))

    engine = long_run.app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await page(long_run, after=long_run.steps // 2, limit=10)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    ((statement, parameters),) = statements
    async with long_run.app.state.db.engine.connect() as connection:
        if long_run.url.startswith("sqlite"):
            plan = (
                await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ).all()
            assert [row[-1] for row in plan] == [
                "SEARCH run_step USING INDEX sqlite_autoindex_run_step_1 (run_id=? AND seq>?)"
            ]
        else:
            plan = (await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)).all()
            assert "Index Scan using run_step_pkey on run_step" in "\n".join(row[0] for row in plan)


NOT_AN_INTEGER = "Input should be a valid integer, unable to parse string as an integer"
AT_LEAST = "Input should be greater than or equal to {}"
AT_MOST = "Input should be less than or equal to {}"
SETTING = " (the server's FLOWC_STEPS_PAGE_MAX)"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"after": "-1"}, ("after", AT_LEAST.format(0), "greater_than_equal")),
        ({"after": "x"}, ("after", NOT_AN_INTEGER, "int_parsing")),
        ({"after": "1.5"}, ("after", NOT_AN_INTEGER, "int_parsing")),
        ({"after": str(2**31)}, ("after", AT_MOST.format(2**31 - 1), "less_than_equal")),
        ({"limit": "0"}, ("limit", AT_LEAST.format(1), "greater_than_equal")),
        ({"limit": "ten"}, ("limit", NOT_AN_INTEGER, "int_parsing")),
        (
            {"limit": str(MAX_PAGE + 1)},
            ("limit", AT_MOST.format(MAX_PAGE) + SETTING, "less_than_equal"),
        ),
    ],
)
async def test_a_bad_after_or_limit_is_a_422_naming_it(
    client: httpx.AsyncClient, query: dict[str, str], problem: tuple[str, str, str]
) -> None:
    response = await client.get(f"/graph/state/{uuid.uuid4()}/steps", params=query)
    name, msg, kind = problem
    assert (response.status_code, response.json()) == (
        422,
        {"detail": [{"loc": ["query", name], "msg": msg, "type": kind}]},
    )


async def test_the_page_sizes_are_settings(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"
    app = create_app(make_settings(url, steps_page_default=2, steps_page_max=3))
    async with app.router.lifespan_context(app):
        run_id = await write_run(url, 7)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            steps = f"/graph/state/{run_id}/steps"
            first = (await client.get(steps)).json()
            third = (await client.get(steps, params={"after": 4, "limit": 3})).json()
            too_many = await client.get(steps, params={"limit": 4})
    assert ([s["seq"] for s in first["steps"]], first["next"]) == ([1, 2], 2)
    assert ([s["seq"] for s in third["steps"]], third["next"]) == ([5, 6, 7], None)
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["msg"] == (
        "Input should be less than or equal to 3 (the server's FLOWC_STEPS_PAGE_MAX)"
    )


async def test_an_unknown_run_is_a_404_whatever_the_page(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    response = await client.get(f"/graph/state/{missing}/steps", params={"after": 5, "limit": 2})
    assert (response.status_code, response.json()) == (404, {"detail": f"run {missing} not found"})


async def test_the_state_of_a_long_run_is_small(long_run: LongRun) -> None:
    ended = await long_run.client.get(f"/graph/state/{long_run.run_id}")
    body = ended.json()
    assert (body["status"], body["step"], body["state"]) == (
        "succeeded",
        long_run.steps,
        {"n": long_run.steps},
    )
    assert len(ended.content) < 1024
    # A running run: the snapshot, then the few steps after it (one page, one read).
    steps = long_run.steps
    running = await write_run(long_run.url, steps, status="running", snapshot=steps - 50)
    reads = Reads(long_run.app.state.runs.log)
    state = (await long_run.client.get(f"/graph/state/{running}")).json()
    assert (state["status"], state["step"], state["state"]) == ("running", steps, {"n": steps})
    assert reads.calls == [(steps - 50, READ_PAGE, 50)]
    await stop(long_run, running)


async def test_a_lagging_snapshot_is_folded_a_page_at_a_time(long_run: LongRun) -> None:
    steps = 20 * READ_PAGE + 7
    running = await write_run(long_run.url, steps, status="running", snapshot=0)
    reads = Reads(long_run.app.state.runs.log)
    tracemalloc.start()
    try:
        state = (await long_run.client.get(f"/graph/state/{running}")).json()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (state["step"], state["state"], state["current_node"]) == (steps, {"n": steps}, "tick")
    assert [(after, limit) for after, limit, _ in reads.calls] == [
        (k * READ_PAGE, READ_PAGE) for k in range(21)
    ]
    assert [rows for _, _, rows in reads.calls] == [READ_PAGE] * 20 + [7]
    assert peak < PAGE_MEMORY, peak
    await stop(long_run, running)


async def stop(long_run: LongRun, run_id: uuid.UUID) -> None:
    """End a run written as running, which the next server on the SQLite file would resume."""
    assert await long_run.app.state.runs.cancel(run_id) in ("cancelled", "cancelling")
