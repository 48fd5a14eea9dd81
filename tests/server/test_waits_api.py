"""Waits through the API: a run that reaches a wait node waits, holding nothing, until
`POST /graph/resume/{run_id}` (or its timeout) makes it go on, in any worker.

On SQLite and PostgreSQL: the waiting status and what it waits for, the resume and its
answers (202, 404, 409 for a run that does not wait and for the loser of two resumes, 422
for an input that does not fit), timeouts with and without an error route, cancelling a
waiting run, a restart while a run waits, and WebSocket followers through the wait.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from flowc.runtime import REGISTRY, Registry
from flowc.server.app import create_app
from tests.server.conftest import (
    BASE_URL,
    WAIT,
    Gates,
    LiveApp,
    create_graph,
    define,
    make_settings,
    read_run,
    service_on,
)
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio


def w_prepare(state: dict[str, Any]) -> dict[str, Any]:
    """Count the runs of this tool."""
    return {"n": state.get("n", 0) + 1}


def w_remind(state: dict[str, Any]) -> dict[str, Any]:
    """The error route's target: says what failed."""
    return {"reminded": state["error"]["code"]}


TOOLS = (w_prepare, w_remind)


def approval(timeout: float = 3600, on_error: bool = True) -> str:
    """`w_prepare`, then a wait; approved: `w_prepare` again (`again`)."""
    policy = " with on_error = nudge" if on_error else ""
    return f"""\
state approved: bool? = null
state n: int = 0
node approval = wait("approval", timeout = {timeout}){policy}
node nudge = w_remind
node again = w_prepare
start -> w_prepare -> approval
approval ? approved -> again : end
nudge -> end
"""


@pytest.fixture(autouse=True)
def tools() -> Iterator[None]:
    """The flows' tools in the application's registry, removed afterwards."""
    for tool in TOOLS:
        REGISTRY.add(tool)
    yield
    for tool in TOOLS:
        REGISTRY.remove(tool.__name__)


async def start(client: httpx.AsyncClient, source: str, **body: Any) -> dict[str, Any]:
    """Save `source` and run it with `wait: true` (it answers at the wait); the answer."""
    graph_id = await create_graph(client, source)
    response = await client.post("/graph/run", json={"graph_id": graph_id, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def state_of(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/graph/state/{run_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def until_status(client: httpx.AsyncClient, run_id: str, *statuses: str) -> dict[str, Any]:
    """Poll the run's state until its status is one of `statuses`; fail after `WAIT` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        found = await state_of(client, run_id)
        if found["status"] in statuses:
            return found
        await asyncio.sleep(0.05)
    pytest.fail(f"run {run_id} is still {found['status']}, not {statuses}, after {WAIT} s")


async def steps_of(client: httpx.AsyncClient, run_id: str) -> list[tuple[Any, ...]]:
    """Each recorded step's seq, node, delta and `failed`."""
    page = (await client.get(f"/graph/state/{run_id}/steps")).json()
    return [(s["seq"], s["node"], s["delta"], s.get("failed", False)) for s in page["steps"]]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_run_waits_then_a_resume_makes_it_go_on_to_its_end(
    client: httpx.AsyncClient,
) -> None:
    run = await start(client, approval())
    run_id = run["run_id"]
    assert (run["status"], run["error"], run["state"]) == (
        "waiting",
        None,
        {"approved": None, "n": 1},
    )
    assert [s["node"] for s in run["steps"]] == ["w_prepare"]
    waiting = run["waiting"]
    assert (waiting["node"], waiting["name"], waiting["timeout"]) == ("approval", "approval", 3600)
    since, deadline = moment(waiting["since"]), moment(waiting["deadline"])
    assert deadline - since == timedelta(seconds=3600)

    found = await state_of(client, run_id)
    assert (found["status"], found["worker"], found["step"], found["state"]) == (
        "waiting",
        None,
        1,
        {"approved": None, "n": 1},
    )
    assert found["waiting"] == waiting

    response = await client.post(f"/graph/resume/{run_id}", json={"input": {"approved": True}})
    assert (response.status_code, response.json()) == (202, {"run_id": run_id, "status": "queued"})
    ended = await until_status(client, run_id, "succeeded", "failed")
    assert (ended["status"], ended["state"], ended["waiting"]) == (
        "succeeded",
        {"approved": True, "n": 2},
        None,
    )
    assert await steps_of(client, run_id) == [
        (1, "w_prepare", {"n": 1}, False),
        (2, "approval", {"approved": True}, False),
        (3, "again", {"n": 2}, False),
    ]
    assert ended["attempt"] == 2  # claimed again after the wait

    again = await client.post(f"/graph/resume/{run_id}", json={"input": {}})
    assert (again.status_code, again.json()) == (
        409,
        {"detail": f"run {run_id} does not wait for input: it is succeeded"},
    )


async def test_a_resume_of_an_unknown_run_is_a_404_and_a_bad_id_a_422(
    client: httpx.AsyncClient,
) -> None:
    unknown = uuid.uuid4()
    response = await client.post(f"/graph/resume/{unknown}", json={"input": {}})
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"run {unknown} not found"},
    )
    response = await client.post("/graph/resume/nope", json={"input": {}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "run_id"]


async def test_an_input_that_does_not_fit_the_declarations_is_a_422_naming_the_key(
    client: httpx.AsyncClient,
) -> None:
    run = await start(client, "state code: str\n" + approval(), input={"code": "x"})
    run_id = run["run_id"]
    response = await client.post(
        f"/graph/resume/{run_id}", json={"input": {"approved": "yes", "n": [1]}}
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"loc": ["body", "input", "approved"], "msg": "expected bool?, got a string",
             "type": "wrong_type"},
            {"loc": ["body", "input", "n"], "msg": "expected int, got a list",
             "type": "wrong_type"},
        ]
    }  # fmt: skip
    response = await client.post(f"/graph/resume/{run_id}", json={"input": [1]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "input"]
    response = await client.post(f"/graph/resume/{run_id}", json={"input": {}, "extra": 1})
    assert response.status_code == 422
    response = await client.post(
        f"/graph/resume/{run_id}",
        content=b'{"input": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert (await state_of(client, run_id))["status"] == "waiting"  # none of them counted

    # `code` is required by the flow, not by a resume: the state has it already.
    response = await client.post(f"/graph/resume/{run_id}", json={"input": {"n": 5.0}})
    assert response.status_code == 202
    ended = await until_status(client, run_id, "succeeded", "failed")
    assert ended["state"] == {"code": "x", "approved": None, "n": 5}


async def test_of_two_concurrent_resumes_exactly_one_wins(client: httpx.AsyncClient) -> None:
    run_id = (await start(client, approval()))["run_id"]
    answers = await asyncio.gather(
        *(
            client.post(f"/graph/resume/{run_id}", json={"input": {"approved": flag}})
            for flag in (True, False)
        )
    )
    assert sorted(a.status_code for a in answers) == [202, 409]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["detail"].startswith(f"run {run_id} does not wait for input: it is ")
    await until_status(client, run_id, "succeeded")
    steps = await steps_of(client, run_id)
    assert [s[:2] for s in steps][:2] == [(1, "w_prepare"), (2, "approval")]


async def test_a_wait_past_its_timeout_takes_its_error_route(client: httpx.AsyncClient) -> None:
    run_id = (await start(client, approval(timeout=0.2)))["run_id"]
    ended = await until_status(client, run_id, "succeeded", "failed", "cancelled")
    error = {
        "code": "wait_timeout",
        "message": "the wait for `approval` was not resumed within its timeout of 0.2 s",
        "node": "approval",
        "attempts": 1,
    }
    assert (ended["status"], ended["error"], ended["state"]) == (
        "succeeded",
        None,
        {"approved": None, "n": 1, "error": error, "reminded": "wait_timeout"},
    )
    assert await steps_of(client, run_id) == [
        (1, "w_prepare", {"n": 1}, False),
        (2, "approval", {"error": error}, True),
        (3, "nudge", {"reminded": "wait_timeout"}, False),
    ]
    late = await client.post(f"/graph/resume/{run_id}", json={"input": {"approved": True}})
    assert late.status_code == 409


async def test_a_wait_past_its_timeout_without_an_error_route_fails_the_run(
    client: httpx.AsyncClient,
) -> None:
    run_id = (await start(client, approval(timeout=0.2, on_error=False)))["run_id"]
    ended = await until_status(client, run_id, "succeeded", "failed", "cancelled")
    assert (ended["status"], ended["state"], ended["waiting"]) == (
        "failed",
        {"approved": None, "n": 1},
        None,
    )
    assert ended["error"] == {
        "code": "wait_timeout",
        "message": "the wait for `approval` was not resumed within its timeout of 0.2 s",
        "node": "approval",
        "span": {"line": 3, "column": 1, "end_line": 3, "end_column": 48},
    }
    assert await steps_of(client, run_id) == [(1, "w_prepare", {"n": 1}, False)]


async def test_cancelling_a_waiting_run_ends_it_at_once(client: httpx.AsyncClient) -> None:
    run_id = (await start(client, approval()))["run_id"]
    response = await client.post(f"/graph/cancel/{run_id}")
    assert (response.status_code, response.json()) == (
        202,
        {"run_id": run_id, "status": "cancelled"},
    )
    found = await state_of(client, run_id)
    assert (found["status"], found["error"]["code"], found["state"], found["waiting"]) == (
        "cancelled",
        "cancelled",
        {"approved": None, "n": 1},
        None,
    )
    response = await client.post(f"/graph/resume/{run_id}", json={"input": {"approved": True}})
    assert (response.status_code, response.json()["detail"]) == (
        409,
        f"run {run_id} does not wait for input: it is cancelled",
    )


async def test_a_waiting_run_survives_a_restart_and_is_resumed_by_the_next_server(
    database_url: str,
) -> None:
    first = create_app(make_settings(database_url))
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            run_id = (await start(client, approval()))["run_id"]
    second = create_app(make_settings(database_url))
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            found = await state_of(client, run_id)
            assert (found["status"], found["waiting"]["node"]) == ("waiting", "approval")
            response = await client.post(
                f"/graph/resume/{run_id}", json={"input": {"approved": True}}
            )
            assert response.status_code == 202
            ended = await until_status(client, run_id, "succeeded", "failed")
            assert (ended["status"], ended["state"]) == ("succeeded", {"approved": True, "n": 2})


async def test_a_follower_sees_the_wait_stays_connected_and_sees_the_run_go_on(
    live_app: LiveApp,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        graph_id = await create_graph(client, approval())
        body = {"graph_id": graph_id, "wait": False}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
        url = f"ws://{live_app.address}/ws/graph/{run_id}"
        async with connect(url) as ws:
            seen = await asyncio.wait_for(until_type(ws, "run_waiting"), WAIT)
            assert [(e["type"], e["step"]) for e in seen][-2:] == [
                ("node_finished", 1),
                ("run_waiting", 1),
            ]
            waiting = seen[-1]
            assert (waiting["node"], waiting["status"], waiting["state"]) == (
                "approval",
                "waiting",
                {"approved": None, "n": 1},
            )
            assert waiting["waiting"] == {"node": "approval", "name": "approval", "timeout": 3600}
            # A follower that comes back with `after` while the run waits is told so.
            async with connect(f"{url}?after=1") as again:
                message = json.loads(await asyncio.wait_for(again.recv(), WAIT))
                assert (message["type"], message["step"]) == ("run_waiting", 1)

            response = await client.post(
                f"/graph/resume/{run_id}", json={"input": {"approved": True}}
            )
            assert response.status_code == 202
            rest = await asyncio.wait_for(until_type(ws, "run_finished"), WAIT)
            finished = [
                (e["step"], e["node"], e["delta"]) for e in rest if e["type"] == "node_finished"
            ]
            assert finished == [(2, "approval", {"approved": True}), (3, "again", {"n": 2})]
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 1000


async def until_type(ws: Any, kind: str) -> list[dict[str, Any]]:
    """The messages of a WebSocket up to the first of type `kind`."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != kind:
        seen.append(json.loads(await ws.recv()))
    return seen


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_every_durability_records_the_wait_and_goes_on_after_it(
    client: httpx.AsyncClient, durability: str
) -> None:
    run = await start(client, approval(), durability=durability)
    assert (run["status"], [s["seq"] for s in run["steps"]]) == ("waiting", [1])
    assert await steps_of(client, run["run_id"]) == [(1, "w_prepare", {"n": 1}, False)]
    response = await client.post(
        f"/graph/resume/{run['run_id']}", json={"input": {"approved": True}}
    )
    assert response.status_code == 202
    ended = await until_status(client, run["run_id"], "succeeded", "failed")
    assert (ended["status"], ended["durability"]) == ("succeeded", durability)
    assert [s[:2] for s in await steps_of(client, run["run_id"])] == [
        (1, "w_prepare"),
        (2, "approval"),
        (3, "again"),
    ]


async def test_a_cancel_asked_for_on_the_way_to_a_wait_is_not_lost(database_url: str) -> None:
    registry, gates = Registry(), Gates()
    registry.add(gates.hold, "hold")
    source = 'node h = hold(gate = "one")\nnode approval = wait("approval")\nh -> approval -> end\n'
    async with service_on(database_url, registry) as service:
        definition = await define(service.db, source, registry)
        created = await service.start(definition=definition, input={})
        await gates.wait_until_reached("one")
        # The cancel is asked for while the tool runs, but the owner does not hear of it
        # (a NOTIFY missed, a heartbeat not yet due): it goes on to the wait.
        service.log.on_cancel = None
        assert await service.log.cancel(created.run_id) == "cancelling"
        gates.open("one")
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    assert (result.status, run.status, run.waiting, run.owner) == (
        "cancelled",
        "cancelled",
        None,
        None,
    )
    assert [(r.seq, r.node) for r in rows] == [(1, "h")]
