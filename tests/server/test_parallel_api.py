"""Parallel branches through the API: the `branch` of steps, the state during a fork, resume.

A branch's step row is written with its `branch` (in each durability's write path) and shown
by `POST /graph/run`, `GET /graph/state/{id}/steps` and the WebSocket, live and replayed; the
run's state is the fork's until the branches join (`GET /graph/state/{id}`, snapshots); a run
released in the middle of a fork resumes only the branches that had not finished.  On SQLite
and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowc.runtime import REGISTRY, Registry
from flowc.server.runs import Durability
from tests.server.conftest import (
    WAIT,
    Gates,
    LiveApp,
    collect,
    create_graph,
    define,
    events_of,
    read_run,
    service_on,
    until,
)
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

DURABILITIES: list[Durability] = ["sync", "async", "exit"]

#: `a`, then `b -> b2` and `c` at once, merged into `d`.
FORKED = """
state found: list[str] = [] by extend
node a = mark(name = "a")
node b = mark(name = "b")
node b2 = mark(name = "b2")
node c = mark(name = "c")
node d = mark(name = "d")
a -> [b -> b2, c] -> d
d -> end
"""
#: The merged state, whoever finished first.
MERGED = {"found": ["b", "b2", "c"], "a": True, "b": True, "b2": True, "c": True, "d": True}


class Marks:
    """A tool, `mark`, that writes `name: true` and adds it to `found` (a contribution)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def mark(self, state: dict[str, Any], *, name: str) -> dict[str, Any]:
        """Write `name: true`; in a branch, `found` gets `[name]` (merged `by extend`)."""
        self.calls.append(name)
        if name in ("a", "d"):
            return {name: True}
        return {name: True, "found": [*state["found"], name]}


@pytest.fixture
def marks() -> Iterator[Marks]:
    """`mark` in the application's registry, removed afterwards."""
    held = Marks()
    REGISTRY.add(held.mark, "mark")
    yield held
    REGISTRY.remove("mark")


def branches(steps: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Each step's node and `branch` (None when left out), in order."""
    return [(s["node"], s.get("branch")) for s in steps]


def check_log(steps: list[dict[str, Any]]) -> None:
    """Steps `1..n` in order: `a`, the branches' three in some order, the join, then `d`."""
    assert [s["seq"] for s in steps] == [1, 2, 3, 4, 5, 6]
    assert branches(steps[:1]) == [("a", None)]
    assert sorted(branches(steps[1:4]), key=str) == [("b", "0"), ("b2", "0"), ("c", "1")]
    assert [n for n, _ in branches(steps[1:4]) if n != "c"] == ["b", "b2"]
    assert branches(steps[4:]) == [("a", "join"), ("d", None)]
    assert steps[4]["delta"] == {"found": ["b", "b2", "c"], "b": True, "b2": True, "c": True}


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_branch_steps_are_recorded_with_their_branch_and_shown_so(
    app: FastAPI, client: httpx.AsyncClient, marks: Marks, durability: Durability
) -> None:
    graph_id = await create_graph(client, FORKED)
    body = {"graph_id": graph_id, "input": {}, "durability": durability}
    response = await client.post("/graph/run", json=body)

    run = response.json()
    assert (response.status_code, run["status"], run["error"]) == (200, "succeeded", None)
    assert run["state"] == MERGED
    check_log(run["steps"])
    assert "branch" not in run["steps"][0] and "branch" not in run["steps"][5]
    page = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()
    assert branches(page["steps"]) == branches(run["steps"])
    check_log(page["steps"])
    assert "branch" not in page["steps"][0]
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["step"], state["current_node"], state["state"]) == (
        "succeeded",
        6,
        "d",
        MERGED,
    )
    _, rows = await read_run(app.state.db, uuid.UUID(run["run_id"]))
    assert [row.branch for row in rows].count(None) == 2
    assert rows[4].branch == "join"
    assert sorted(marks.calls) == ["a", "b", "b2", "c", "d"]


async def test_the_stream_shows_the_branch_live_and_replayed(
    live_app: LiveApp, db_url: str, marks: Marks
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        graph_id = await create_graph(client, FORKED)
        body = {"graph_id": graph_id, "input": {}, "wait": False}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
    events, code = await asyncio.wait_for(
        events_of(f"ws://{live_app.address}/ws/graph/{run_id}"), WAIT
    )
    assert code == 1000
    finished = [e for e in events if e["type"] == "node_finished"]
    check_log([{**e, "seq": e["step"]} for e in finished])
    started = [e for e in events if e["type"] == "node_started"]
    assert sorted(branches(started), key=str) == [
        ("a", None), ("b", "0"), ("b2", "0"), ("c", "1"), ("d", None),
    ]  # fmt: skip
    assert (events[-1]["type"], events[-1]["state"]) == ("run_finished", MERGED)

    async with service_on(db_url, REGISTRY, worker=False) as reader:
        replayed = await asyncio.wait_for(collect(reader, uuid.UUID(run_id)), WAIT)
    again = [e for e in replayed if e["type"] == "node_finished"]
    assert [(e["step"], e["node"], e.get("branch")) for e in again] == [
        (e["step"], e["node"], e.get("branch")) for e in finished
    ]


#: `a`, then `b` (done at once) and `g` (held at a gate) at once, then `d`.
HELD = """
state found: list[str] = [] by extend
node a = mark(name = "a")
node b = mark(name = "b")
node g = hold(gate = "one")
node d = mark(name = "d")
a -> [b, g] -> d
d -> end
"""


@pytest.mark.parametrize("snapshot_steps", [1, 100])
async def test_the_state_during_a_fork_is_the_forks_until_the_join(
    database_url: str, snapshot_steps: int
) -> None:
    registry, gates, marks = Registry(), Gates(), Marks()
    registry.add(marks.mark, "mark")
    registry.add(gates.hold, "hold")
    async with service_on(database_url, registry, snapshot_steps=snapshot_steps) as service:
        definition = await define(service.db, HELD, registry)
        created = await service.start(definition=definition, input={})
        await gates.wait_until_reached("one")
        run_id = created.run_id

        async def recorded() -> None:
            # `b`'s step; with a snapshot at every step, the one taken at `b`'s too.
            while True:
                run, rows = await read_run(service.db, run_id)
                if len(rows) == 2 and (snapshot_steps > 2 or run.step == 2):
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(recorded(), WAIT)
        during = await service.state(run_id)
        assert during is not None
        # `b` is recorded (step 2, branch 0), but the state is the fork's: `a`'s.
        assert (during["step"], during["current_node"]) == (2, "b")
        assert during["state"] == {"found": [], "a": True}
        run, _ = await read_run(service.db, run_id)
        if snapshot_steps == 1:  # the snapshot taken at the branch's step: the fork's state
            assert (run.step, run.state) == (2, {"found": [], "a": True})
        gates.open("one")
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        after = await service.state(run_id)
    final = {"found": ["b"], "a": True, "b": True, "one": True, "d": True}
    assert (result.status, result.state) == ("succeeded", final)
    assert after is not None and after["state"] == final
    assert [(s.node, s.branch) for s in result.steps] == [
        ("a", None), ("b", "0"), ("g", "1"), ("a", "join"), ("d", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("durability", "snapshot_steps"),
    [*((durability, 100) for durability in DURABILITIES), ("sync", 1), ("async", 1)],
)
async def test_a_run_released_in_the_middle_of_a_fork_resumes_only_the_unfinished_branch(
    database_url: str, durability: Durability, snapshot_steps: int
) -> None:
    # With a snapshot at every step, the run is claimed again from the one at `b`'s step.
    registry, gates, marks = Registry(), Gates(), Marks()
    registry.add(marks.mark, "mark")
    registry.add(gates.hold, "hold")
    async with service_on(database_url, registry, snapshot_steps=snapshot_steps) as service:
        service.shutdown_grace = 0  # `g` would wait for ever: release the run at once
        definition = await define(service.db, HELD, registry)
        created = await service.start(definition=definition, input={}, durability=durability)
        await gates.wait_until_reached("one")
        await until(lambda: "b" in marks.calls, "the other branch's step")
        await asyncio.wait_for(service.close(), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    assert (run.status, run.owner) == ("running", None)
    assert [(r.seq, r.node, r.branch) for r in rows] == [(1, "a", None), (2, "b", "0")]
    if snapshot_steps == 1:
        assert (run.step, run.state) == (2, {"found": [], "a": True})

    gates.open("one")
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    final = {"found": ["b"], "a": True, "b": True, "one": True, "d": True}
    assert (result.status, result.state) == ("succeeded", final)
    assert [(s.seq, s.node, s.branch) for s in result.steps] == [
        (1, "a", None), (2, "b", "0"), (3, "g", "1"), (4, "a", "join"), (5, "d", None),
    ]  # fmt: skip
    assert [(r.seq, r.node, r.branch) for r in rows] == [
        (s.seq, s.node, s.branch) for s in result.steps
    ]
    assert (run.status, run.attempt, run.step, run.state) == ("succeeded", 2, 5, final)
    assert marks.calls == ["a", "b", "d"]  # `b` ran once, before the release


async def test_cancelling_a_released_run_in_the_middle_of_a_fork_keeps_the_forks_state(
    database_url: str,
) -> None:
    registry, gates, marks = Registry(), Gates(), Marks()
    registry.add(marks.mark, "mark")
    registry.add(gates.hold, "hold")
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0
        definition = await define(service.db, HELD, registry)
        created = await service.start(definition=definition, input={})
        await gates.wait_until_reached("one")
        await until(lambda: "b" in marks.calls, "the other branch's step")
        await asyncio.wait_for(service.close(), WAIT)
    # Nobody runs it now: the cancel ends it from the database, on the main line's state.
    async with service_on(database_url, registry, worker=False) as service:
        assert await service.cancel(created.run_id) == "cancelled"
        run, rows = await read_run(service.db, created.run_id)
    assert (run.status, run.step, run.current_node) == ("cancelled", 2, "b")
    assert run.state == {"found": [], "a": True}
    assert [(r.seq, r.node, r.branch) for r in rows] == [(1, "a", None), (2, "b", "0")]
