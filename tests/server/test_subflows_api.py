"""Sub-flows on the server: each child a run of its own (row, step log, state), run by its
parent's owner, on SQLite and PostgreSQL.

Through the API: the parent's and the child's states and steps, a failing child (with and
without an error route), cancel (a child's is a 409 naming its parent; the parent's
cancels the child), the WebSocket of the parent forwarding the child's events and the
child's own.  In process: a parent released in the middle of its child and resumed by the
next service (the child's recorded steps do not run again), an owner that lost the parent
writing nothing to the child, and a cancel of a parent whose owner is gone ending the child.
The graphs are saved as IR straight into the database (the child first, so that the
parent's sub-flow names its `graph_id`), and one pair through `POST /graph/create`, whose
`flow NAME` the server resolves to the stored graph of that name.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect

from flowc.compiler import compile_source
from flowc.compiler.ir import Flow
from flowc.runtime import REGISTRY, Registry
from flowc.runtime.subflows import child_run_id
from flowc.server import store
from flowc.server.childlog import ChildSpec
from flowc.server.db import Database
from flowc.server.live import Moved
from flowc.server.models import WorkflowDefinition, WorkflowRun
from flowc.server.runlog import StepRow, run_log_for
from flowc.server.runs import Draining
from tests.server.conftest import WAIT, Gates, LiveApp, create_graph, read_run, service_on
from tests.server.databases import database_url, postgres_url

__all__ = ["database_url", "postgres_url"]

pytestmark = pytest.mark.asyncio

#: The child: two counts, then a mark.
CHILD = "node a = sf_count\nnode b = sf_count\nnode c = sf_mark\na -> b -> c -> end\n"
#: A child that counts, then fails.
FAILING = "node a = sf_count\nnode b = sf_boom\na -> b -> end\n"
#: A child that counts, then holds at gate `one`, then counts again.
HOLDING = 'node a = sf_count\nnode h = hold(gate = "one")\nnode b = sf_count\na -> h -> b -> end\n'
CANCELLED = {"code": "cancelled", "message": "the run was cancelled on request", "node": None,
             "span": None}  # fmt: skip


def sf_count(state: dict[str, Any]) -> dict[str, Any]:
    """Add 1 to `n`."""
    return {"n": state.get("n", 0) + 1}


def sf_mark(state: dict[str, Any]) -> dict[str, Any]:
    """Write `marked`."""
    return {"marked": True}


def sf_boom(state: dict[str, Any]) -> dict[str, Any]:
    """Fail."""
    raise ValueError("no good")


TOOLS = (sf_count, sf_mark, sf_boom)


@pytest.fixture(autouse=True)
def tools() -> Iterator[None]:
    """The flows' tools in the application's registry, removed afterwards."""
    for tool in TOOLS:
        REGISTRY.add(tool)
    yield
    for tool in TOOLS:
        REGISTRY.remove(tool.__name__)


def registry_with(gates: Gates) -> Registry:
    """A registry of the flows' tools and `hold`, for a service of the test's own."""
    made = Registry()
    for tool in TOOLS:
        made.add(tool)
    made.add(gates.hold, "hold")
    return made


async def save(db: Database, ir: Flow, name: str) -> WorkflowDefinition:
    """Save an IR as a graph, as it is."""
    async with db.session() as session:
        return await store.create_definition(session, name=name, source=None, ir=ir)


async def graphs(
    db: Database, child: str, registry: Registry, on_error: bool = False, held: bool = False
) -> tuple[WorkflowDefinition, WorkflowDefinition]:
    """The child (flow text) and its parent saved: `first` counts (or, `held`, holds at gate
    `zero`), `review` runs the child (to `fallback`, a mark, on error), `last` counts."""
    saved = await save(db, compile_source(child, tools=registry.specs()).ir, "child")
    review: dict[str, Any] = {
        "name": "review",
        "tool": "flow",
        "flow": {"name": "child", "graph_id": str(saved.id), "ir": saved.ir},
    }
    if on_error:
        review["policy"] = {"on_error": "fallback"}
    parent = Flow.model_validate(
        {
            "ir_version": 2,
            "name": "parent",
            "start": "first",
            "nodes": [
                {"name": "first", "tool": "hold", "args": {"gate": "zero"}}
                if held
                else {"name": "first", "tool": "sf_count"},
                review,
                {"name": "last", "tool": "sf_count"},
                {"name": "fallback", "tool": "sf_mark"},
            ],
            "routes": {
                "first": {"kind": "goto", "target": "review"},
                "review": {"kind": "goto", "target": "last"},
            },
        }
    )
    return saved, await save(db, parent, "parent")


async def get(client: httpx.AsyncClient, path: str) -> Any:
    """A 200's body."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def steps(page: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """A page of steps as `(seq, node, delta)`."""
    return [(s["seq"], s["node"], s["delta"]) for s in page["steps"]]


# -- through the API ------------------------------------------------------------------------


async def test_a_sub_flow_runs_as_a_run_of_its_own_named_by_its_parent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    child, parent = await graphs(app.state.runs.db, CHILD, REGISTRY)
    response = await client.post("/graph/run", json={"graph_id": str(parent.id), "input": {}})
    assert response.status_code == 200, response.text
    run = response.json()
    run_id = run["run_id"]
    assert (run["status"], run["error"], run["state"]) == (
        "succeeded", None, {"n": 4, "marked": True},
    )  # fmt: skip
    assert [(s["seq"], s["node"], s["delta"]) for s in run["steps"]] == [
        (1, "first", {"n": 1}),
        (2, "review", {"n": 3, "marked": True}),
        (3, "last", {"n": 4}),
    ]
    child_id = child_run_id(run_id, 2)
    found = await get(client, f"/graph/state/{run_id}")
    assert (found["parent_run_id"], found["parent_node"]) == (None, None)
    assert found["children"] == [{"run_id": child_id, "node": "review", "status": "succeeded"}]
    mine = await get(client, f"/graph/state/{child_id}")
    assert (mine["parent_run_id"], mine["parent_node"], mine["graph_id"]) == (
        run_id, "review", str(child.id),
    )  # fmt: skip
    assert (mine["status"], mine["state"], mine["step"], mine["worker"], mine["children"]) == (
        "succeeded", {"n": 3, "marked": True}, 3, None, [],
    )  # fmt: skip
    assert steps(await get(client, f"/graph/state/{child_id}/steps")) == [
        (1, "a", {"n": 2}),
        (2, "b", {"n": 3}),
        (3, "c", {"marked": True}),
    ]


async def test_a_failing_child_fails_its_node_and_is_recorded_failed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _, parent = await graphs(app.state.runs.db, FAILING, REGISTRY)
    run = (await client.post("/graph/run", json={"graph_id": str(parent.id)})).json()
    child_id = child_run_id(run["run_id"], 2)
    assert (run["status"], run["state"]) == ("failed", {"n": 1})
    assert run["error"] == {
        "code": "subflow_failed",
        "message": f"sub-flow `review` (run {child_id}) failed: tool_error: tool `sf_boom` "
        "failed: ValueError: no good",
        "node": "review",
        "span": None,
    }
    mine = await get(client, f"/graph/state/{child_id}")
    assert (mine["status"], mine["state"], mine["error"]["code"]) == (
        "failed", {"n": 2}, "tool_error",
    )  # fmt: skip


async def test_a_failing_child_takes_its_nodes_error_route(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _, parent = await graphs(app.state.runs.db, FAILING, REGISTRY, on_error=True)
    run = (await client.post("/graph/run", json={"graph_id": str(parent.id)})).json()
    child_id = child_run_id(run["run_id"], 2)
    assert (run["status"], run["error"]) == ("succeeded", None)
    assert [(s["seq"], s["node"], s.get("failed")) for s in run["steps"]] == [
        (1, "first", None), (2, "review", True), (3, "fallback", None),
    ]  # fmt: skip
    assert run["steps"][1]["delta"]["error"]["code"] == "subflow_failed"
    assert (await get(client, f"/graph/state/{child_id}"))["status"] == "failed"


async def test_a_childs_cancel_is_refused_and_the_parents_cancels_both(
    app: FastAPI, client: httpx.AsyncClient, gates: Gates
) -> None:
    _, parent = await graphs(app.state.runs.db, HOLDING, REGISTRY)
    body = {"graph_id": str(parent.id), "wait": False}
    run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
    await gates.wait_until_reached("one")
    child_id = child_run_id(run_id, 2)
    response = await client.post(f"/graph/cancel/{child_id}")
    assert (response.status_code, response.json()["detail"]) == (
        409,
        f"run {child_id} is the run of a sub-flow, for node `review` of run {run_id}: cancel "
        f"run {run_id} instead (its sub-flow runs are cancelled with it)",
    )
    response = await client.post(f"/graph/cancel/{run_id}")
    assert response.status_code == 202, response.text

    async def ended(run: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def poll() -> None:
            nonlocal found
            while (found := await get(client, f"/graph/state/{run}"))["status"] == "running":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), WAIT)
        return found

    mine, theirs = await ended(child_id), await ended(run_id)
    assert (mine["status"], mine["error"], mine["state"], mine["worker"]) == (
        "cancelled", CANCELLED, {"n": 2}, None,
    )  # fmt: skip
    assert (theirs["status"], theirs["error"], theirs["state"]) == ("cancelled", CANCELLED,
                                                                     {"n": 1})  # fmt: skip
    assert theirs["children"] == [{"run_id": child_id, "node": "review", "status": "cancelled"}]
    assert steps(await get(client, f"/graph/state/{child_id}/steps")) == [(1, "a", {"n": 2})]
    response = await client.post(f"/graph/cancel/{child_id}")
    assert (response.status_code, response.json()["detail"]) == (
        409, f"run {child_id} has already ended: cancelled",
    )  # fmt: skip


async def test_the_parents_websocket_forwards_the_childs_events_and_the_childs_its_own(
    live_app: LiveApp, gates: Gates
) -> None:
    _, parent = await graphs(live_app.app.state.runs.db, HOLDING, REGISTRY)
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        body = {"graph_id": str(parent.id), "wait": False}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
        child_id = child_run_id(run_id, 2)
        await gates.wait_until_reached("one")
        address = f"ws://{live_app.address}/ws/graph"
        async with (
            connect(f"{address}/{run_id}") as parents,
            connect(f"{address}/{child_id}") as childs,
            connect(f"{address}/{run_id}?after=1") as later,
        ):
            # Everything so far is sent first: wait for it, then let the child go on.
            seen = await asyncio.wait_for(until_event(parents, child_id, "h"), WAIT)
            own = await asyncio.wait_for(until_event(childs, child_id, "h"), WAIT)
            after = await asyncio.wait_for(until_event(later, child_id, "h"), WAIT)
            gates.open("one")
            seen += [json.loads(m) async for m in parents]
            own += [json.loads(m) async for m in childs]
            after += [json.loads(m) async for m in later]
    shown = [(e["run_id"], e["type"], e["step"], e["node"]) for e in seen]
    assert shown == [
        (run_id, "run_started", 0, "first"),
        (run_id, "node_started", 1, "first"),
        (run_id, "node_finished", 1, "first"),
        (run_id, "node_started", 2, "review"),
        (child_id, "run_started", 0, "a"),
        (child_id, "node_started", 1, "a"),
        (child_id, "node_finished", 1, "a"),
        (child_id, "node_started", 2, "h"),
        (child_id, "node_finished", 2, "h"),
        (child_id, "node_started", 3, "b"),
        (child_id, "node_finished", 3, "b"),
        (child_id, "run_finished", 3, "b"),
        (run_id, "node_finished", 2, "review"),
        (run_id, "node_started", 3, "last"),
        (run_id, "node_finished", 3, "last"),
        (run_id, "run_finished", 3, "last"),
    ]
    for event in seen:
        named = (event.get("parent_run_id"), event.get("parent_node"))
        assert named == ((run_id, "review") if event["run_id"] == child_id else (None, None))
    # The child's own stream is a run's like any other, without its parent's events.
    assert [(e["run_id"], e["type"], e["step"]) for e in own] == [
        (child_id, t, s) for _, t, s, _ in shown[4:12]
    ]
    assert "parent_run_id" not in own[0]
    # `after` counts the parent's steps: the child's events come in their node's step.
    assert [(e["run_id"], e["type"], e["step"]) for e in after] == [
        (r, t, s) for r, t, s, _ in shown[3:]
    ]


async def until_event(ws: Any, run_id: str, node: str) -> list[dict[str, Any]]:
    """The messages of a WebSocket up to `node_started` of `node` in run `run_id`."""
    seen: list[dict[str, Any]] = []
    while not seen or (seen[-1]["type"], seen[-1]["run_id"], seen[-1]["node"]) != (
        "node_started", run_id, node,
    ):  # fmt: skip
        seen.append(json.loads(await ws.recv()))
    return seen


# -- in process: release, takeover, fencing --------------------------------------------------


async def test_a_parent_released_mid_child_is_resumed_and_the_child_goes_on_from_its_log(
    database_url: str,
) -> None:
    gates = Gates()
    registry = registry_with(gates)
    calls: list[str] = []

    def sf_count(state: dict[str, Any]) -> dict[str, Any]:
        calls.append("count")
        return {"n": state.get("n", 0) + 1}

    registry.add(sf_count, "sf_count", replace=True)
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0
        _, parent = await graphs(service.db, HOLDING, registry)
        created = await service.start(definition=parent, input={})
        run_id = created.run_id
        child_id = uuid.UUID(child_run_id(str(run_id), 2))
        waiting = asyncio.ensure_future(service.result(run_id))
        await gates.wait_until_reached("one")
        await asyncio.wait_for(service.close(), WAIT)
        with pytest.raises(Draining):
            await asyncio.wait_for(waiting, WAIT)
        run, parent_steps = await read_run(service.db, run_id)
        child, child_steps = await read_run(service.db, child_id)
    # Both released: running, nobody's; the parent is claimable, the child is not.
    assert (run.status, run.owner, run.attempt) == ("running", None, 1)
    assert (child.status, child.owner, child.attempt) == ("running", None, 1)
    assert (child.parent_run_id, child.root_run_id, child.parent_node) == (run_id, run_id,
                                                                           "review")  # fmt: skip
    assert [(s.seq, s.node) for s in parent_steps] == [(1, "first")]
    assert [(s.seq, s.node) for s in child_steps] == [(1, "a")]
    assert calls == ["count", "count"]

    gates.open("one")
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        run, parent_steps = await read_run(service.db, run_id)
        child, child_steps = await read_run(service.db, child_id)
    assert (result.status, result.state) == ("succeeded", {"n": 4, "one": True})
    assert [(s.seq, s.node, s.delta) for s in parent_steps] == [
        (1, "first", {"n": 1}),
        (2, "review", {"n": 3, "one": True}),
        (3, "last", {"n": 4}),
    ]
    # The child went on from its own log: `a` did not run again, each step is there once.
    assert [(s.seq, s.node, s.delta) for s in child_steps] == [
        (1, "a", {"n": 2}),
        (2, "h", {"one": True}),
        (3, "b", {"n": 3}),
    ]
    assert (child.status, child.attempt, child.owner, child.state) == (
        "succeeded", 2, None, {"n": 3, "one": True},
    )  # fmt: skip
    assert calls == ["count", "count", "count", "count"]  # `first`, `a`; then `b`, `last`


async def lease_ran_out(db: Database, run_id: uuid.UUID) -> None:
    """Make the run's lease expire now, as a silent owner's would."""
    async with db.session() as session:
        run = await session.get(WorkflowRun, run_id)
        assert run is not None
        run.lease_expires_at = datetime(2000, 1, 1, tzinfo=timezone.utc)
        session.add(run)
        await session.commit()


async def test_an_owner_that_lost_the_parent_writes_nothing_to_its_child(
    database_url: str,
) -> None:
    gates = Gates()
    registry = registry_with(gates)
    async with service_on(database_url, registry, lease_seconds=600) as service:
        _, parent = await graphs(service.db, HOLDING, registry)
        created = await service.start(definition=parent, input={})
        run_id = created.run_id
        child_id = uuid.UUID(child_run_id(str(run_id), 2))
        await gates.wait_until_reached("one")
        await lease_ran_out(service.db, run_id)
        other = run_log_for(service.db, owner="other:2", lease_seconds=600)
        await other.open()
        try:
            claimed = await other.claim(10)
            # The parent only: a sub-flow's run is never claimed on its own, but its
            # parent's claim makes it the new owner's, under the new epoch.
            assert [(c.run_id, c.attempt) for c in claimed] == [(run_id, 2)]
            child, _ = await read_run(service.db, child_id)
            assert (child.owner, child.attempt, child.status) == ("other:2", 2, "running")
            gates.open("one")  # the old owner's child goes on: its next write is refused
            live = service._live[run_id]
            task = live.task
            assert task is not None
            await asyncio.wait_for(asyncio.wait({task}), WAIT)
            assert (live.stop, type(task.exception())) == ("lost", Moved)
            run, parent_steps = await read_run(service.db, run_id)
            child, child_steps = await read_run(service.db, child_id)
        finally:
            await other.close()
    assert (run.status, run.owner, run.attempt) == ("running", "other:2", 2)
    assert (child.status, child.owner, child.attempt) == ("running", "other:2", 2)
    assert [s.node for s in parent_steps] == ["first"]
    assert [s.node for s in child_steps] == ["a"]  # nothing after the takeover


async def test_cancelling_a_parent_whose_owner_is_gone_ends_its_child_too(
    database_url: str,
) -> None:
    gates = Gates()
    registry = registry_with(gates)
    async with service_on(database_url, registry, lease_seconds=600) as service:
        _, parent = await graphs(service.db, HOLDING, registry)
        created = await service.start(definition=parent, input={})
        run_id = created.run_id
        child_id = uuid.UUID(child_run_id(str(run_id), 2))
        await gates.wait_until_reached("one")
        await lease_ran_out(service.db, run_id)
        # Another process (the owner is silent, or not this one): the cancel ends the run
        # and its child at once, each with the state its steps lead to.
        other = run_log_for(service.db, owner="other:2", lease_seconds=600)
        await other.open()
        try:
            assert await other.cancel(run_id) == "cancelled"
        finally:
            await other.close()
        gates.open("one")  # the old owner's child goes on: nothing it writes is taken
        live = service._live[run_id]
        task = live.task
        assert task is not None
        await asyncio.wait_for(asyncio.wait({task}), WAIT)
        assert (live.stop, type(task.exception())) == ("lost", Moved)
        run, parent_steps = await read_run(service.db, run_id)
        child, child_steps = await read_run(service.db, child_id)
    assert (run.status, run.error, run.state, run.owner) == ("cancelled", CANCELLED, {"n": 1},
                                                             None)  # fmt: skip
    assert (child.status, child.error, child.state, child.step, child.owner) == (
        "cancelled", CANCELLED, {"n": 2}, 1, None,
    )  # fmt: skip
    assert [s.node for s in parent_steps] == ["first"]
    assert [s.node for s in child_steps] == ["a"]


async def test_a_parent_found_cancelled_at_its_claim_ends_its_child_first(
    database_url: str,
) -> None:
    gates = Gates()
    registry = registry_with(gates)
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0
        _, parent = await graphs(service.db, HOLDING, registry)
        created = await service.start(definition=parent, input={})
        run_id = created.run_id
        await gates.wait_until_reached("one")
        await asyncio.wait_for(service.close(), WAIT)  # released mid-child
        async with service.db.session() as session:
            row = await session.get(WorkflowRun, run_id)
            assert row is not None
            row.cancel_requested = True  # asked while nobody held it, and not yet ended
            session.add(row)
            await session.commit()
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        run, _ = await read_run(service.db, run_id)
        child, child_steps = await read_run(service.db, uuid.UUID(child_run_id(str(run_id), 2)))
    assert (result.status, run.status) == ("cancelled", "cancelled")
    assert (child.status, child.state, child.owner) == ("cancelled", {"n": 2}, None)
    assert [s.node for s in child_steps] == ["a"]


async def test_waiting_for_the_run_of_a_sub_flow_gives_its_outcome(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _, parent = await graphs(app.state.runs.db, CHILD, REGISTRY)
    run = (await client.post("/graph/run", json={"graph_id": str(parent.id)})).json()
    child_id = uuid.UUID(child_run_id(run["run_id"], 2))
    result = await asyncio.wait_for(app.state.runs.result(child_id), WAIT)
    assert (result.status, result.state) == ("succeeded", {"n": 3, "marked": True})


async def test_a_graph_created_from_text_runs_the_stored_flow_it_names(
    client: httpx.AsyncClient,
) -> None:
    child_id = await create_graph(client, CHILD.replace("node a", "flow counting\nnode a", 1))
    source = "node first = sf_count\nnode review = flow counting\nfirst -> review -> end\n"
    parent_id = await create_graph(client, source)
    run = (await client.post("/graph/run", json={"graph_id": parent_id})).json()
    assert (run["status"], run["state"]) == ("succeeded", {"n": 3, "marked": True})
    found = await get(client, f"/graph/state/{run['run_id']}")
    (child,) = found["children"]
    assert (child["node"], child["status"]) == ("review", "succeeded")
    mine = await get(client, f"/graph/state/{child['run_id']}")
    assert (mine["graph_id"], mine["parent_run_id"]) == (child_id, run["run_id"])


async def test_a_child_its_parent_went_on_without_is_ended_with_the_parent(
    database_url: str,
) -> None:
    gates = Gates()
    registry = registry_with(gates)
    async with service_on(database_url, registry) as service:
        _, parent = await graphs(service.db, HOLDING, registry)
        created = await service.start(definition=parent, input={})
        run_id = created.run_id
        await gates.wait_until_reached("one")
        # A child made at another step (by an execution whose unrecorded steps took another
        # road before a crash): nothing will ever run it again.
        stray = uuid.UUID(child_run_id(str(run_id), 7))
        spec = ChildSpec(stray, run_id, run_id, "review", parent.id, "sync", {}, {"n": 5})
        adopted = await service.children.log.adopt(spec, attempt=1, owner=service.log.owner)
        assert (adopted.created, adopted.status) == (True, "running")
        gates.open("one")
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        child, _ = await read_run(service.db, uuid.UUID(child_run_id(str(run_id), 2)))
        left, _ = await read_run(service.db, stray)
    assert (result.status, child.status) == ("succeeded", "succeeded")
    assert (left.status, left.owner, left.state) == ("cancelled", None, {"n": 5})
    assert left.error == {
        "code": "subflow_abandoned",
        "message": f"run {run_id} ended without this sub-flow run: it went on without it (its "
        "node ran at another step)",
        "node": None,
        "span": None,
    }


# -- followed from the database: another process's parent, or a replay -----------------------


def shown_events(messages: list[dict[str, Any]]) -> list[tuple[str, str, int, str | None]]:
    """Events as `(run_id, type, step, node)`."""
    return [(m["run_id"], m["type"], m["step"], m["node"]) for m in messages]


def parent_and_child(run_id: str, child_id: str) -> list[tuple[str, str, int, str | None]]:
    """What a follower from the database gets of `graphs(CHILD)`: no `node_started`."""
    return [
        (run_id, "run_started", 0, "first"),
        (run_id, "node_finished", 1, "first"),
        (child_id, "run_started", 0, "a"),
        (child_id, "node_finished", 1, "a"),
        (child_id, "node_finished", 2, "b"),
        (child_id, "node_finished", 3, "c"),
        (child_id, "run_finished", 3, "c"),
        (run_id, "node_finished", 2, "review"),
        (run_id, "node_finished", 3, "last"),
        (run_id, "run_finished", 3, "last"),
    ]


async def ended_with_a_child(database_url: str, registry: Registry) -> uuid.UUID:
    """A run of `graphs(CHILD)` executed to its end by a service now closed: its id."""
    async with service_on(database_url, registry) as runner:
        _, parent = await graphs(runner.db, CHILD, registry)
        created = await runner.start(definition=parent, input={}, durability="sync")
        assert (await runner.result(created.run_id)).status == "succeeded"
    return created.run_id


async def test_a_replay_from_the_database_has_the_childs_events_in_their_place(
    database_url: str,
) -> None:
    registry = registry_with(Gates())
    created = await ended_with_a_child(database_url, registry)
    run_id = str(created)
    child_id = child_run_id(run_id, 2)
    # A service that did not run it reads it all from the database.
    async with service_on(database_url, registry, worker=False) as other:
        replay = [m async for m in other.events(created)]
        later = [m async for m in other.events(created, after=1)]
        past = [m async for m in other.events(created, after=2)]
    assert shown_events(replay) == parent_and_child(run_id, child_id)
    for message in replay:
        named = (message.get("parent_run_id"), message.get("parent_node"))
        assert named == ((run_id, "review") if message["run_id"] == child_id else (None, None))
    assert shown_events(later) == parent_and_child(run_id, child_id)[2:]
    assert shown_events(past) == parent_and_child(run_id, child_id)[8:]


async def test_a_replayed_child_is_read_once_its_start_named_by_its_first_step(
    database_url: str,
) -> None:
    # A replay of a run with many sub-flow steps reads each child's steps once: the child's
    # `run_started` names the node of the first step read, not of a read of its own.
    registry = registry_with(Gates())
    created = await ended_with_a_child(database_url, registry)
    run_id, child_id = str(created), child_run_id(str(created), 2)
    async with service_on(database_url, registry, worker=False) as other:
        read: list[str] = []
        steps_after = other.log.steps_after

        async def counted(run: uuid.UUID, seq: int, *, limit: int | None = None) -> list[StepRow]:
            read.append(str(run))
            return await steps_after(run, seq, limit=limit)

        setattr(other.log, "steps_after", counted)  # noqa: B010 (mypy: a method replaced)
        replay = [m async for m in other.events(created)]
    assert shown_events(replay) == parent_and_child(run_id, child_id)
    assert read.count(child_id) == 1


async def test_a_follower_in_another_process_gets_the_childs_steps_as_they_are_written(
    postgres_url: str,
) -> None:
    # The parent runs in one service; a service without a worker (another `flowc serve`,
    # as far as the database goes) follows it from its first step, before its child
    # exists, and gets the child's first step while the child holds at a gate.
    gates = Gates()
    registry = registry_with(gates)
    async with (
        service_on(postgres_url, registry) as runner,
        service_on(postgres_url, registry, worker=False) as other,
    ):
        _, parent = await graphs(runner.db, HOLDING, registry, held=True)
        created = await runner.start(definition=parent, input={}, durability="sync")
        run_id, child_id = str(created.run_id), child_run_id(str(created.run_id), 2)
        await gates.wait_until_reached("zero")
        follower = other.events(created.run_id)
        seen = [await asyncio.wait_for(anext(follower), WAIT)]
        gates.open("zero")
        await gates.wait_until_reached("one")
        seen += [await asyncio.wait_for(anext(follower), WAIT) for _ in range(3)]
        assert shown_events(seen) == [
            (run_id, "run_started", 0, "first"),
            (run_id, "node_finished", 1, "first"),
            (child_id, "run_started", 0, "a"),
            (child_id, "node_finished", 1, "a"),
        ]
        gates.open("one")
        seen += [m async for m in follower]
        assert (await runner.result(created.run_id)).status == "succeeded"
    assert shown_events(seen)[4:] == [
        (child_id, "node_finished", 2, "h"),
        (child_id, "node_finished", 3, "b"),
        (child_id, "run_finished", 3, "b"),
        (run_id, "node_finished", 2, "review"),
        (run_id, "node_finished", 3, "last"),
        (run_id, "run_finished", 3, "last"),
    ]
    assert all(m["parent_node"] == "review" for m in seen if m["run_id"] == child_id)


async def test_a_replay_has_a_grandchilds_events_in_its_childs_place(database_url: str) -> None:
    registry = registry_with(Gates())
    async with service_on(database_url, registry) as runner:
        grand = await save(runner.db, compile_source(CHILD, tools=registry.specs()).ir, "grand")
        inner = {"name": "grand", "graph_id": str(grand.id), "ir": grand.ir}
        middle = Flow.model_validate(
            {
                "ir_version": 2,
                "name": "middle",
                "start": "a",
                "nodes": [
                    {"name": "a", "tool": "sf_count"},
                    {"name": "inner", "tool": "flow", "flow": inner},
                ],
                "routes": {"a": {"kind": "goto", "target": "inner"}},
            }
        )
        child = await save(runner.db, middle, "middle")
        review = {"name": "child", "graph_id": str(child.id), "ir": child.ir}
        top = Flow.model_validate(
            {
                "ir_version": 2,
                "name": "top",
                "start": "review",
                "nodes": [{"name": "review", "tool": "flow", "flow": review}],
                "routes": {},
            }
        )
        parent = await save(runner.db, top, "top")
        created = await runner.start(definition=parent, input={}, durability="sync")
        assert (await runner.result(created.run_id)).status == "succeeded"
    run_id = str(created.run_id)
    child_id = child_run_id(run_id, 1)
    grand_id = child_run_id(child_id, 2)
    async with service_on(database_url, registry, worker=False) as other:
        replay = [m async for m in other.events(created.run_id)]
    shown = [(m["run_id"], m["type"], m["step"], m["node"], m.get("parent_run_id")) for m in replay]
    assert shown == [
        (run_id, "run_started", 0, "review", None),
        (child_id, "run_started", 0, "a", run_id),
        (child_id, "node_finished", 1, "a", run_id),
        (grand_id, "run_started", 0, "a", child_id),
        (grand_id, "node_finished", 1, "a", child_id),
        (grand_id, "node_finished", 2, "b", child_id),
        (grand_id, "node_finished", 3, "c", child_id),
        (grand_id, "run_finished", 3, "c", child_id),
        (child_id, "node_finished", 2, "inner", run_id),
        (child_id, "run_finished", 2, "inner", run_id),
        (run_id, "node_finished", 1, "review", None),
        (run_id, "run_finished", 1, "review", None),
    ]


async def test_a_child_on_the_server_counts_its_threads_against_its_parents_bound(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One tool thread for the tree (the server's engines made with a bound of 1): the
    # parent's first step times out and leaves its thread sleeping, so the child's
    # blocking tool finds no room, as in memory (`tests/runtime/test_subflows.py`).
    import functools

    import flowc.server.runs as runs_module
    from flowc.runtime import WorkflowEngine

    monkeypatch.setattr(
        runs_module, "WorkflowEngine", functools.partial(WorkflowEngine, max_threads_per_run=1)
    )
    gate = threading.Event()

    def sf_stuck(state: dict[str, Any]) -> dict[str, Any]:
        gate.wait(WAIT)
        return {}

    def sf_work(state: dict[str, Any]) -> dict[str, Any]:
        return {"worked": True}

    registry = registry_with(Gates())
    registry.add(sf_stuck, blocking=True)
    registry.add(sf_work, blocking=True)
    try:
        async with service_on(database_url, registry) as runner:
            child = await save(
                runner.db, compile_source("sf_work -> end\n", tools=registry.specs()).ir, "w"
            )
            top = Flow.model_validate(
                {
                    "ir_version": 2,
                    "start": "first",
                    "nodes": [
                        {"name": "first", "tool": "sf_stuck",
                         "policy": {"timeout": 0.05, "on_error": "review"}},
                        {"name": "review", "tool": "flow",
                         "flow": {"name": "w", "graph_id": str(child.id), "ir": child.ir}},
                    ],
                    "routes": {},
                }
            )  # fmt: skip
            parent = await save(runner.db, top, "top")
            created = await runner.start(definition=parent, input={}, durability="sync")
            result = await asyncio.wait_for(runner.result(created.run_id), WAIT)
    finally:
        gate.set()
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "subflow_failed"
    assert "max_threads_per_run = 1" in result.error.message
