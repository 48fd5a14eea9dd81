"""Runs in flight when the server shuts down: cancelled, answered, and recorded as such.

`RunService.close()` (the application's lifespan exit) gives running runs
`shutdown_grace` seconds, then cancels them: each ends `cancelled` with the error code
`cancelled`, whoever waits for it gets that outcome, and its row and steps agree.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from flowc.runtime import Registry
from flowc.server.app import create_app
from flowc.server.runs import Durability
from tests.server.conftest import (
    BASE_URL,
    WAIT,
    Gates,
    collect,
    create_graph,
    define,
    make_settings,
    read_run,
    service_on,
)
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

#: Two counting steps, then a wait at gate `one` that only the test can end.
COUNT_TWICE_THEN_HOLD = (
    'node c1 = count\nnode c2 = count\nnode wait = hold(gate = "one")\nc1 -> c2 -> wait -> end\n'
)
CANCELLED = {
    "code": "cancelled",
    "message": "the server stopped before the run ended",
    "node": None,
    "span": None,
}


def counter_and_gates() -> tuple[Registry, Gates]:
    """A registry with `count` (adds 1 to `n`) and `hold`, and the gates `hold` waits at."""
    registry, gates = Registry(), Gates()

    def count(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    registry.add(count)
    registry.add(gates.hold, "hold")
    return registry, gates


def other_tasks() -> list[asyncio.Task[Any]]:
    """The event loop's tasks apart from the test's own."""
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_close_cancels_a_run_in_flight(
    database_url: str, durability: Durability, loop_errors: list[dict[str, Any]]
) -> None:
    registry, gates = counter_and_gates()
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0  # the run would wait for ever: no need to give it time
        definition = await define(service.db, COUNT_TWICE_THEN_HOLD, registry)
        run_id = await service.start(definition=definition, input={}, durability=durability)
        waiting = asyncio.ensure_future(service.result(run_id))
        following = asyncio.ensure_future(collect(service, run_id))
        await gates.wait_until_reached("one")
        await asyncio.wait_for(service.close(), WAIT)
        result = await asyncio.wait_for(waiting, WAIT)
        events = await asyncio.wait_for(following, WAIT)
        assert other_tasks() == []
        run, steps = await read_run(service.db, run_id)

    # The one waiting gets the outcome, not an exception.
    assert (result.status, result.state) == ("cancelled", {"n": 2})
    assert result.error is not None and result.error.to_json() == CANCELLED
    assert [(s.seq, s.node, s.delta) for s in result.steps] == [
        (1, "c1", {"n": 1}),
        (2, "c2", {"n": 2}),
    ]
    # A follower's stream ends with it.
    assert events[-1] == {
        **events[-1],
        "type": "run_failed",
        "step": 2,
        "node": None,
        "status": "cancelled",
        "state": {"n": 2},
        "error": CANCELLED,
    }
    # The database says the same: whatever the durability, the steps before the cancel.
    assert (run.status, run.error, run.state, run.step, run.current_node) == (
        "cancelled",
        CANCELLED,
        {"n": 2},
        2,
        "c2",
    )
    assert run.finished_at is not None
    assert [(s.seq, s.node, s.delta) for s in steps] == [(1, "c1", {"n": 1}), (2, "c2", {"n": 2})]
    assert loop_errors == []


async def test_a_run_that_ends_within_the_grace_is_not_cancelled(database_url: str) -> None:
    registry, gates = counter_and_gates()
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = WAIT  # as long as the test is willing to wait
        definition = await define(service.db, COUNT_TWICE_THEN_HOLD, registry)
        run_id = await service.start(definition=definition, input={}, durability="sync")
        await gates.wait_until_reached("one")
        closing = asyncio.ensure_future(service.close())
        gates.open("one")
        await asyncio.wait_for(closing, WAIT)
        result = await service.result(run_id)
        run, steps = await read_run(service.db, run_id)
    assert (result.status, result.error, run.status) == ("succeeded", None, "succeeded")
    assert (run.state, len(steps)) == ({"n": 2, "one": True}, 3)


async def test_a_waiting_request_is_answered_when_the_application_stops(
    db_url: str, gates: Gates, loop_errors: list[dict[str, Any]]
) -> None:
    application = create_app(make_settings(db_url))
    async with application.router.lifespan_context(application):
        application.state.runs.shutdown_grace = 0
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            graph_id = await create_graph(client, 'node wait = hold(gate = "one")\nwait -> end')
            body = {"graph_id": graph_id, "input": {"asked": True}}
            request = asyncio.ensure_future(client.post("/graph/run", json=body))
            await gates.wait_until_reached("one")
    # The lifespan has ended: the run service closed, the database disposed of.
    response = await asyncio.wait_for(request, WAIT)
    assert other_tasks() == []
    answer = response.json()
    assert response.status_code == 200
    assert answer == {
        "run_id": answer["run_id"],
        "status": "cancelled",
        "state": {"asked": True},
        "steps": [],
        "error": CANCELLED,
    }

    # The next server on the same database reports the run as it ended.
    restarted = create_app(make_settings(db_url))
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            state = (await client.get(f"/graph/state/{answer['run_id']}")).json()
            steps = (await client.get(f"/graph/state/{answer['run_id']}/steps")).json()
    assert (state["status"], state["error"], state["state"], state["step"]) == (
        "cancelled",
        CANCELLED,
        {"asked": True},
        0,
    )
    assert state["finished_at"] is not None
    assert steps["steps"] == []
    assert loop_errors == []
