"""A database that refuses a step in the middle of a run: the run fails, the service goes on.

The database itself refuses: a trigger on `run_step` raises for one step number, as a full
disk or a broken constraint would.  Each test asserts what the client is told, what the
database holds afterwards, that nothing escapes to the event loop, and that a later run works.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from flowc.runtime import Registry
from flowc.runtime.events import RunResult
from flowc.server.db import Database
from flowc.server.models import RunStep, WorkflowRun
from flowc.server.runs import Durability, RunService
from tests.server.conftest import (
    ONE_LINER,
    WAIT,
    collect,
    create_graph,
    define,
    read_run,
    replay,
    service_on,
)
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

COUNT_TO_TEN = "set max_steps = 100\ncount ? n < 10 -> count : end\n"
#: Long enough for batches to be written while the run goes on.
COUNT_TO_FORTY = "set max_steps = 100\ncount ? n < 40 -> count : end\n"


async def refuse_step(db: Database, seq: int) -> None:
    """Make the database refuse to insert step `seq` of any run: "the disk is full"."""
    async with db.engine.begin() as connection:
        if db.is_sqlite:
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_step BEFORE INSERT ON run_step "
                    f"WHEN NEW.seq = {seq} BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
                )
            )
            return
        await connection.execute(
            text(
                "CREATE FUNCTION refuse_step() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_step BEFORE INSERT ON run_step FOR EACH ROW "
                f"WHEN (NEW.seq = {seq}) EXECUTE FUNCTION refuse_step()"
            )
        )


async def accept_steps(db: Database) -> None:
    """Undo `refuse_step`."""
    async with db.engine.begin() as connection:
        if db.is_sqlite:
            await connection.execute(text("DROP TRIGGER IF EXISTS refuse_step"))
        else:
            await connection.execute(text("DROP TRIGGER IF EXISTS refuse_step ON run_step"))
            await connection.execute(text("DROP FUNCTION IF EXISTS refuse_step()"))


def refusal(url: str) -> str:
    """The driver's exception for the refused step, and its words (no SQL)."""
    driver = "IntegrityError" if url.startswith("sqlite") else "RaiseError"
    return f"{driver}: the disk is full"


def storage_error(url: str) -> dict[str, Any]:
    """The run error for the refused step."""
    return {
        "code": "storage_error",
        "message": f"the database failed while recording the run: {refusal(url)}",
        "node": None,
        "span": None,
    }


def counter(*, yielding: bool) -> Registry:
    """A registry with `count`, which adds 1 to `n` (and lets the loop run first, if asked)."""
    registry = Registry()

    async def count(state: dict[str, Any]) -> dict[str, Any]:
        if yielding:
            await asyncio.sleep(0)  # as a tool doing I/O would: background writes run meanwhile
        return {"n": state.get("n", 0) + 1}

    registry.add(count)
    return registry


async def a_later_run_succeeds(service: RunService, source: str, registry: Registry) -> None:
    """Once the database accepts steps again, a new run is recorded in full."""
    await accept_steps(service.db)
    definition = await define(service.db, source, registry)
    run_id = (await service.start(definition=definition, input={}, durability="sync")).run_id
    result = await asyncio.wait_for(service.result(run_id), WAIT)
    run, steps = await read_run(service.db, run_id)
    assert (result.status, run.status, run.state, len(steps)) == (
        "succeeded",
        "succeeded",
        {"n": 10},
        10,
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server logged at WARNING and above."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_refused_step_fails_a_sync_run_where_it_stopped(
    database_url: str, loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    registry = counter(yielding=False)
    async with service_on(database_url, registry) as service:
        await refuse_step(service.db, 4)
        definition = await define(service.db, COUNT_TO_TEN, registry)
        run_id = (await service.start(definition=definition, input={}, durability="sync")).run_id
        follower = asyncio.ensure_future(collect(service, run_id))
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        events = await asyncio.wait_for(follower, WAIT)
        run, steps = await read_run(service.db, run_id)
        await a_later_run_succeeds(service, COUNT_TO_TEN, registry)
    gc.collect()  # a task whose exception nobody read would be reported now

    error = storage_error(database_url)
    # The client: failed at step 4, with the state and steps of the three the database took.
    assert result.status == "failed"
    assert result.error is not None and result.error.to_json() == error
    assert result.state == {"n": 3}
    assert [(s.seq, s.node, s.delta) for s in result.steps] == [
        (1, "count", {"n": 1}),
        (2, "count", {"n": 2}),
        (3, "count", {"n": 3}),
    ]
    assert [(e["type"], e["step"]) for e in events if e["type"] != "node_started"] == [
        ("run_started", 0),
        ("node_finished", 1),
        ("node_finished", 2),
        ("node_finished", 3),
        ("run_failed", 3),
    ]
    assert events[-1] == {
        **events[-1],
        "node": None,
        "status": "failed",
        "state": {"n": 3},
        "error": error,
    }
    # The database: the same story, and the outcome recorded.
    assert (run.status, run.error, run.state, run.step, run.current_node) == (
        "failed",
        error,
        {"n": 3},
        3,
        "count",
    )
    assert run.finished_at is not None
    assert [(s.seq, s.delta) for s in steps] == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]
    assert loop_errors == []
    assert warnings_of(caplog) == []


async def refused_batch(
    url: str, durability: Durability, refused: int
) -> tuple[RunResult, WorkflowRun, list[RunStep], uuid.UUID]:
    """An `async` or `exit` run whose step `refused` the database refuses."""
    registry = counter(yielding=True)
    async with service_on(url, registry) as service:
        await refuse_step(service.db, refused)
        definition = await define(service.db, COUNT_TO_FORTY, registry)
        created = await service.start(definition=definition, input={}, durability=durability)
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, steps = await read_run(service.db, created.run_id)
        await a_later_run_succeeds(service, COUNT_TO_TEN, registry)
    return result, run, steps, created.run_id


@pytest.mark.parametrize(
    ("durability", "refused"),
    [
        ("async", 2),  # written behind the run: refused while the run goes on
        ("async", 30),
        ("exit", 3),  # the one write at the end
    ],
)
async def test_a_refused_batch_fails_the_run_and_leaves_no_gap(
    database_url: str,
    durability: Durability,
    refused: int,
    loop_errors: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    result, run, steps, _ = await refused_batch(database_url, durability, refused)
    gc.collect()

    # The database keeps a gapless prefix of the steps, before the refused one; the outcome
    # is recorded with the state those steps lead to (not what the run had in memory).
    kept = len(steps)
    assert [(s.seq, s.delta) for s in steps] == [(k, {"n": k}) for k in range(1, kept + 1)]
    assert kept < refused
    if durability == "exit":
        assert kept == 0
    error = storage_error(database_url)
    assert (run.status, run.error, run.step) == ("failed", error, kept)
    assert run.state == replay({}, [{"delta": s.delta} for s in steps])
    # The client is told the same story.
    assert result.status == "failed"
    assert result.error is not None and result.error.to_json() == error
    assert [(s.seq, s.delta) for s in result.steps] == [(s.seq, s.delta) for s in steps]
    assert result.state == run.state
    # Nothing escapes, nothing is logged: the refusal is the run's outcome.
    assert loop_errors == []
    assert warnings_of(caplog) == []


async def test_the_client_of_a_refused_run_gets_a_failed_run_not_an_http_error(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    db: Database = app.state.db
    graph_id = await create_graph(client, ONE_LINER)
    await refuse_step(db, 2)  # the database is shared with other tests: undone below
    try:
        body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}}
        response = await client.post("/graph/run", json=body)
    finally:
        await accept_steps(db)
    run = response.json()
    error = storage_error(str(db.url))
    assert (response.status_code, run["status"], run["error"]) == (200, "failed", error)
    assert [s["node"] for s in run["steps"]] == ["analyze"]
    assert run["state"] == replay({"code": "x = 1\n"}, run["steps"])
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["error"], state["step"], state["current_node"]) == (
        "failed",
        error,
        1,
        "analyze",
    )
    assert state["state"] == run["state"]
    recorded = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()["steps"]
    assert [(s["seq"], s["node"], s["delta"]) for s in recorded] == [
        (s["seq"], s["node"], s["delta"]) for s in run["steps"]
    ]
    # The server goes on: the same graph runs to its end once the database takes steps again.
    again = (await client.post("/graph/run", json=body)).json()
    assert (again["status"], [s["node"] for s in again["steps"]]) == (
        "succeeded",
        ["analyze", "style", "score"],
    )
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok"}
