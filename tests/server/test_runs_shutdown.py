"""Runs in flight when the server shuts down: released, answered, and resumed later.

`RunService.close()` (the application's lifespan exit) stops claiming, lets each run
finish the step it is in (for `shutdown_grace` seconds), then releases it: its steps so
far are written, its row has no owner, and the next service on the database resumes it
from its last step.  Whoever waits for it is told the server is going (`Draining`, a 503
over HTTP), not a made-up outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from flowc.runtime import Registry
from flowc.server.app import create_app
from flowc.server.runs import Draining, Durability
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
async def test_close_releases_a_run_in_flight_and_the_next_service_resumes_it(
    database_url: str, durability: Durability, loop_errors: list[dict[str, Any]]
) -> None:
    registry, gates = counter_and_gates()
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0  # the run would wait for ever: no need to give it time
        definition = await define(service.db, COUNT_TWICE_THEN_HOLD, registry)
        created = await service.start(definition=definition, input={}, durability=durability)
        run_id = created.run_id
        waiting = asyncio.ensure_future(service.result(run_id))
        following = asyncio.ensure_future(collect(service, run_id))
        await gates.wait_until_reached("one")
        await asyncio.wait_for(service.close(), WAIT)
        with pytest.raises(Draining):
            await asyncio.wait_for(waiting, WAIT)
        with pytest.raises(Draining):
            await asyncio.wait_for(following, WAIT)
        assert other_tasks() == []
        run, steps = await read_run(service.db, run_id)

    # Released: still running, nobody's, claimable at once; the steps before the hold kept.
    assert (run.status, run.owner, run.attempt, run.error) == ("running", None, 1, None)
    assert [(s.seq, s.node, s.delta) for s in steps] == [(1, "c1", {"n": 1}), (2, "c2", {"n": 2})]

    # The next service resumes it: the held step runs again, the two before it do not.
    gates.open("one")
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        run, steps = await read_run(service.db, run_id)
    assert (result.status, result.state) == ("succeeded", {"n": 2, "one": True})
    assert [(s.seq, s.node) for s in result.steps] == [(1, "c1"), (2, "c2"), (3, "wait")]
    assert (run.status, run.attempt, run.state, run.step) == (
        "succeeded",
        2,
        {"n": 2, "one": True},
        3,
    )
    assert [(s.seq, s.node, s.delta) for s in steps] == [
        (1, "c1", {"n": 1}),
        (2, "c2", {"n": 2}),
        (3, "wait", {"one": True}),
    ]
    assert loop_errors == []


async def test_a_step_that_ends_within_the_grace_is_kept(database_url: str) -> None:
    registry, gates = counter_and_gates()
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = WAIT  # as long as the test is willing to wait
        definition = await define(service.db, COUNT_TWICE_THEN_HOLD, registry)
        created = await service.start(definition=definition, input={}, durability="sync")
        await gates.wait_until_reached("one")
        closing = asyncio.ensure_future(service.close())
        gates.open("one")
        await asyncio.wait_for(closing, WAIT)
        run, steps = await read_run(service.db, created.run_id)
    # The step in flight finished and was recorded; the run was then given up, at its end:
    # the next service only has to record the outcome.
    assert (run.status, len(steps)) == ("running", 3)
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, steps = await read_run(service.db, created.run_id)
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
    # The lifespan has ended: the runs were released, the database disposed of.
    response = await asyncio.wait_for(request, WAIT)
    assert other_tasks() == []
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    detail = response.json()["detail"]
    assert detail.startswith("the server is shutting down; run ")
    run_id = detail.split("GET /graph/state/")[1]

    # The next server on the same database resumes the run and finishes it.
    gates.open("one")
    restarted = create_app(make_settings(db_url))
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            events = await asyncio.wait_for(collect(restarted.state.runs, uuid.UUID(run_id)), WAIT)
            state = (await client.get(f"/graph/state/{run_id}")).json()
            steps = (await client.get(f"/graph/state/{run_id}/steps")).json()
    assert events[-1]["type"] == "run_finished"
    assert (state["status"], state["error"], state["state"], state["step"]) == (
        "succeeded",
        None,
        {"asked": True, "one": True},
        1,
    )
    assert (state["attempt"], state["worker"]) == (2, None)
    assert [(s["seq"], s["node"]) for s in steps["steps"]] == [(1, "wait")]
    assert loop_errors == []
