"""Error routes through the API: a step that failed and took its node's `on_error` route.

Its step row is written with `failed` (in each durability's write path), and shown as
`"failed": true` by `POST /graph/run`, `GET /graph/state/{id}/steps` and the WebSocket, live
and replayed from the database; a run released right after such a step resumes at the
route's target without running the failed step again.  On SQLite and PostgreSQL.  The
flows are IR documents saved as they are: the DSL's `on_error` is the compiler's to parse.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowc.compiler.ir import Flow
from flowc.runtime import REGISTRY, Registry
from flowc.server import store
from flowc.server.db import Database
from flowc.server.runs import Durability
from tests.runtime.policy_support import flow, node
from tests.server.conftest import (
    WAIT,
    Gates,
    LiveApp,
    collect,
    events_of,
    read_run,
    service_on,
)
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

DURABILITIES: list[Durability] = ["sync", "async", "exit"]
#: The `error` the failed step writes: `fails` failed on both attempts of step 2.
ERROR = {
    "code": "tool_error",
    "message": "tool `fails` failed: ConnectionError: down (after 2 attempts)",
    "node": "fetch",
    "attempts": 2,
}
#: What the steps of `ROUTED` are: seq, node, delta, attempts, and `failed` where given.
EXPECTED = [
    (1, "first", {"noted": True}, 1, None),
    (2, "fetch", {"error": ERROR}, 2, True),
    (3, "fallback", {"fixed": "tool_error"}, 1, None),
]


class Tools:
    """The tools of these flows, and how often each was called."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def notes(self, state: dict[str, Any]) -> dict[str, Any]:
        """Write `noted: true`."""
        self._called("notes")
        return {"noted": True}

    async def fails(self, state: dict[str, Any]) -> dict[str, Any]:
        """Always fail."""
        self._called("fails")
        raise ConnectionError("down")

    def falls_back(self, state: dict[str, Any]) -> dict[str, Any]:
        """The error route's target: say which failure it saw."""
        self._called("falls_back")
        return {"fixed": state["error"]["code"]}

    def continues(self, state: dict[str, Any]) -> dict[str, Any]:
        """The failing node's own route: must never run."""
        self._called("continues")
        return {"continued": True}

    def register(self, registry: Registry) -> None:
        """Add every tool to `registry`."""
        for tool in (self.notes, self.fails, self.falls_back, self.continues):
            registry.add(tool, tool.__name__)


NAMES = ("notes", "fails", "falls_back", "continues")

#: `first`, then `fetch`, which fails twice and goes to `fallback`, not `after`.
ROUTED = flow(
    [
        node("first", "notes"),
        node("fetch", "fails", retries=1, backoff=0.0, on_error="fallback"),
        node("after", "continues"),
        node("fallback", "falls_back"),
    ],
    {"first": "fetch", "fetch": "after"},
)


@pytest.fixture
def tools() -> Iterator[Tools]:
    """The tools in the application's registry, removed afterwards."""
    held = Tools()
    held.register(REGISTRY)
    yield held
    for name in NAMES:
        REGISTRY.remove(name)


async def save(db: Database, ir: Flow) -> str:
    """Save an IR document as a graph, as it is; its id."""
    async with db.session() as session:
        definition = await store.create_definition(session, name="routed", source=None, ir=ir)
    return str(definition.id)


def step_log(steps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each step's seq, node, delta, attempts and `failed` (None when left out)."""
    return [(s["seq"], s["node"], s["delta"], s["attempts"], s.get("failed")) for s in steps]


def node_finished(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each `node_finished` event's step, node, delta, attempts and `failed` (or None)."""
    return [(e["step"], e["node"], e["delta"], e["attempts"], e.get("failed")) for e in events]


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_a_failed_step_is_recorded_failed_and_shown_so(
    app: FastAPI, client: httpx.AsyncClient, tools: Tools, durability: Durability
) -> None:
    graph_id = await save(app.state.db, ROUTED)
    body = {"graph_id": graph_id, "input": {}, "durability": durability}
    response = await client.post("/graph/run", json=body)

    run = response.json()
    assert (response.status_code, run["status"], run["error"]) == (200, "succeeded", None)
    assert run["state"] == {"noted": True, "error": ERROR, "fixed": "tool_error"}
    assert step_log(run["steps"]) == EXPECTED
    assert run["steps"][1]["failed"] is True
    assert "failed" not in run["steps"][0] and "failed" not in run["steps"][2]
    page = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()
    assert step_log(page["steps"]) == EXPECTED
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["step"], state["current_node"], state["state"]) == (
        "succeeded",
        3,
        "fallback",
        run["state"],
    )
    _, rows = await read_run(app.state.db, uuid.UUID(run["run_id"]))
    assert [(row.seq, row.failed) for row in rows] == [(1, False), (2, True), (3, False)]
    assert tools.calls == {"notes": 1, "fails": 2, "falls_back": 1}


async def test_the_stream_marks_the_failed_step_live_and_replayed(
    live_app: LiveApp, db_url: str, tools: Tools
) -> None:
    graph_id = await save(live_app.app.state.db, ROUTED)
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        body = {"graph_id": graph_id, "input": {}, "wait": False}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
    events, code = await asyncio.wait_for(
        events_of(f"ws://{live_app.address}/ws/graph/{run_id}"), WAIT
    )
    assert code == 1000
    finished = [e for e in events if e["type"] == "node_finished"]
    assert node_finished(finished) == EXPECTED
    assert "failed" not in finished[0] and "failed" not in finished[2]
    attempts = [e for e in events if e["type"] == "node_attempt_failed"]
    assert [(e["step"], e["attempt"], e["retry_in"]) for e in attempts] == [(2, 1, 0), (2, 2, None)]
    assert events[-1]["type"] == "run_finished"

    # Another process's follower reads the run from the database: the same steps.
    async with service_on(db_url, REGISTRY, worker=False) as reader:
        replayed = await asyncio.wait_for(collect(reader, uuid.UUID(run_id)), WAIT)
    again = [e for e in replayed if e["type"] == "node_finished"]
    assert node_finished(again) == EXPECTED
    assert "failed" not in again[0] and "failed" not in again[2]


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_a_run_released_after_a_failed_step_resumes_at_the_error_route(
    database_url: str, durability: Durability
) -> None:
    registry, gates, tools = Registry(), Gates(), Tools()
    tools.register(registry)
    registry.add(gates.hold, "hold")
    held = flow(
        [
            node("fetch", "fails", on_error="fallback"),
            node("after", "continues"),
            node("fallback", "hold", args={"gate": "one"}),
        ],
        {"fetch": "after"},
    )
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0  # the fallback would wait for ever: release it at once
        graph_id = uuid.UUID(await save(service.db, held))
        definition = await service.definition(graph_id)
        assert definition is not None
        created = await service.start(definition=definition, input={}, durability=durability)
        await gates.wait_until_reached("one")
        await asyncio.wait_for(service.close(), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    error = {"code": "tool_error", "message": "tool `fails` failed: ConnectionError: down",
             "node": "fetch", "attempts": 1}  # fmt: skip
    assert (run.status, run.owner) == ("running", None)
    assert [(r.seq, r.node, r.delta, r.failed) for r in rows] == [
        (1, "fetch", {"error": error}, True)
    ]

    gates.open("one")
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    assert (result.status, result.state) == ("succeeded", {"error": error, "one": True})
    assert [(s.seq, s.node, s.failed) for s in result.steps] == [
        (1, "fetch", True),
        (2, "fallback", False),
    ]
    assert [(r.seq, r.node, r.failed) for r in rows] == [(1, "fetch", True), (2, "fallback", False)]
    assert (run.status, run.attempt, run.step) == ("succeeded", 2, 2)
    assert tools.calls == {"fails": 1}  # not run again; and `after` never ran
