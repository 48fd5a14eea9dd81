"""Maps through the API: a row per call with its item's `branch`, the collection, resume.

Each call of a map is a step row whose `branch` is its item's index (in each durability's
write path), shown by `POST /graph/run` and `GET /graph/state/{id}/steps`; the collection
is a main-line row; the run's state has the results only from the collection on (`GET
/graph/state/{id}`); a run released in the middle of a map calls only the items not done
when it resumes, also when the map starts the flow.  On SQLite and PostgreSQL.
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
from tests.server.conftest import WAIT, create_graph, define, read_run, service_on, until
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

DURABILITIES: list[Durability] = ["sync", "async", "exit"]

#: `a`, the map over `issues`, then `d`.
MAPPED = """
state issues: list[int] = []
state fixes: list[dict] = []
node a = fix_setup
node fixes = for issue in issues: double
node d = fix_done
a -> fixes -> d
d -> end
"""
ISSUES = [3, 1, 2]
FINAL = {"issues": ISSUES, "fixes": [{"double": 6}, {"double": 2}, {"double": 4}], "a": True,
         "d": True}  # fmt: skip


class Fixes:
    """Tools `fix_setup`, `fix_done` and `double` (a map's, which may hold an item back)."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.held: int | None = None  # the item whose call waits until `release`
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    def fix_setup(self, state: dict[str, Any]) -> dict[str, Any]:
        """Write `a: true`."""
        self.calls.append("a")
        return {"a": True}

    def fix_done(self, state: dict[str, Any]) -> dict[str, Any]:
        """Write `d: true`."""
        self.calls.append("d")
        return {"d": True}

    async def double(self, state: dict[str, Any]) -> dict[str, Any]:
        """The item's double, once released if it is the item held back."""
        item: int = state["issue"]
        if item == self.held:
            self.reached.set()
            await self.released.wait()
        self.calls.append(item)
        return {"double": item * 2}

    def registry(self) -> Registry:
        made = Registry()
        for tool in (self.fix_setup, self.fix_done, self.double):
            made.add(tool)
        return made


@pytest.fixture
def fixes() -> Iterator[Fixes]:
    """The tools in the application's registry, removed afterwards."""
    held = Fixes()
    for tool in (held.fix_setup, held.fix_done, held.double):
        REGISTRY.add(tool)
    yield held
    for name in ("fix_setup", "fix_done", "double"):
        REGISTRY.remove(name)


def logged(steps: list[Any]) -> list[tuple[int, str, str | None]]:
    """Each step's number, node and branch (as rows, `Step`s or JSON)."""
    if steps and isinstance(steps[0], dict):
        return [(s["seq"], s["node"], s.get("branch")) for s in steps]
    return [(s.seq, s.node, s.branch) for s in steps]


@pytest.mark.parametrize("durability", DURABILITIES)
async def test_each_call_is_a_row_with_its_items_branch_then_the_collection(
    app: FastAPI, client: httpx.AsyncClient, fixes: Fixes, durability: Durability
) -> None:
    graph_id = await create_graph(client, MAPPED)
    body = {"graph_id": graph_id, "input": {"issues": ISSUES}, "durability": durability}
    response = await client.post("/graph/run", json=body)

    run = response.json()
    assert (response.status_code, run["status"], run["error"]) == (200, "succeeded", None)
    assert run["state"] == FINAL
    expected = [(1, "a", None), (2, "fixes", "0"), (3, "fixes", "1"), (4, "fixes", "2"),
                (5, "fixes", None), (6, "d", None)]  # fmt: skip
    assert logged(run["steps"]) == expected
    assert [s["delta"] for s in run["steps"][1:5]] == [
        {"double": 6}, {"double": 2}, {"double": 4}, {"fixes": FINAL["fixes"]},
    ]  # fmt: skip
    page = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()
    assert logged(page["steps"]) == expected
    assert [s["delta"] for s in page["steps"]] == [s["delta"] for s in run["steps"]]
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["step"], state["current_node"], state["state"]) == (
        "succeeded", 6, "d", FINAL,
    )  # fmt: skip
    _, rows = await read_run(app.state.db, uuid.UUID(run["run_id"]))
    assert logged(rows) == expected
    assert fixes.calls == ["a", 3, 1, 2, "d"]


@pytest.mark.parametrize("snapshot_steps", [1, 100])
async def test_the_state_has_the_results_only_once_they_are_collected(
    database_url: str, snapshot_steps: int
) -> None:
    tools = Fixes()
    tools.held = 1
    registry = tools.registry()
    async with service_on(database_url, registry, snapshot_steps=snapshot_steps) as service:
        definition = await define(service.db, MAPPED, registry)
        created = await service.start(definition=definition, input={"issues": ISSUES})
        run_id = created.run_id
        await asyncio.wait_for(tools.reached.wait(), WAIT)

        async def recorded() -> None:
            while True:  # `a`, and the calls for items 0 and 2
                _, rows = await read_run(service.db, run_id)
                if len(rows) == 3:
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(recorded(), WAIT)
        during = await service.state(run_id)
        assert during is not None
        assert (during["status"], during["step"], during["current_node"]) == (
            "running", 3, "fixes",
        )  # fmt: skip
        assert during["state"] == {"issues": ISSUES, "fixes": [], "a": True}
        tools.released.set()
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        after = await service.state(run_id)
    assert (result.status, result.state) == ("succeeded", FINAL)
    assert after is not None and after["state"] == FINAL
    assert logged(result.steps) == [
        (1, "a", None), (2, "fixes", "0"), (3, "fixes", "2"), (4, "fixes", "1"),
        (5, "fixes", None), (6, "d", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("durability", "first"),
    [*((durability, False) for durability in DURABILITIES), ("sync", True), ("async", True)],
)
async def test_a_run_released_in_the_middle_of_a_map_calls_only_the_items_not_done(
    database_url: str, durability: Durability, first: bool
) -> None:
    # `first`: the map starts the flow, so no main-line step precedes its calls.
    source = MAPPED.replace("a -> fixes -> d", "fixes -> d") if first else MAPPED
    tools = Fixes()
    tools.held = 1
    registry = tools.registry()
    async with service_on(database_url, registry) as service:
        service.shutdown_grace = 0  # item 1's call would wait for ever: release the run
        definition = await define(service.db, source, registry)
        created = await service.start(
            definition=definition, input={"issues": ISSUES}, durability=durability
        )
        await asyncio.wait_for(tools.reached.wait(), WAIT)
        await until(lambda: 2 in tools.calls, "the call for item 2")
        await asyncio.wait_for(service.close(), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    before = [] if first else [(1, "a", None)]
    done = len(before)
    assert (run.status, run.owner) == ("running", None)
    assert logged(rows) == [*before, (done + 1, "fixes", "0"), (done + 2, "fixes", "2")]

    tools.held = None  # the next process's call returns at once
    async with service_on(database_url, registry) as service:
        result = await asyncio.wait_for(service.result(created.run_id), WAIT)
        run, rows = await read_run(service.db, created.run_id)
    final = {key: value for key, value in FINAL.items() if key != "a" or not first}
    assert (result.status, result.error, result.state) == ("succeeded", None, final)
    assert logged(result.steps) == [
        *before, (done + 1, "fixes", "0"), (done + 2, "fixes", "2"), (done + 3, "fixes", "1"),
        (done + 4, "fixes", None), (done + 5, "d", None),
    ]  # fmt: skip
    assert logged(rows) == logged(result.steps)
    assert (run.status, run.attempt, run.step, run.state) == ("succeeded", 2, done + 5, final)
    # Items 0 and 2 were called once, before the release; item 1 once, after it.
    assert [call for call in tools.calls if call != "a"] == [3, 2, 1, "d"]
