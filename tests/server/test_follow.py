"""Following a run from the database: where a follower from memory left its sub-flows, and
through the database's absence.

The rest of `server/follow.py` (replays with children and grandchildren, a parent followed
from another process while its child runs) is tested with the sub-flows, in
`test_subflows_api.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tests.server.test_subflows_api as subflows
from flowc.runtime import Registry
from flowc.runtime.subflows import child_run_id
from flowc.server.follow import Follower, Forwarded, patiently, subflow_nodes
from flowc.server.outage import Outage
from flowc.server.runlog import Hub, StepRow
from tests.server.conftest import Gates, define, service_on
from tests.server.databases import database_url

__all__ = ["database_url"]


@pytest.mark.asyncio
async def test_a_follower_from_the_database_goes_on_where_memory_left_a_child(
    database_url: str,
) -> None:
    registry = subflows.registry_with(Gates())
    async with service_on(database_url, registry) as runner:
        _, parent = await subflows.graphs(runner.db, subflows.CHILD, registry)
        created = await runner.start(definition=parent, input={}, durability="sync")
        assert (await runner.result(created.run_id)).status == "succeeded"
        run_id = str(created.run_id)
        child_id = child_run_id(run_id, 2)
        # Memory sent the parent's first step, the child's start and its first two steps.
        forwarded = Forwarded()
        for kind, step in (("run_started", 0), ("node_finished", 1), ("node_finished", 2)):
            forwarded.note({"run_id": child_id, "type": kind, "step": step})
        follower = Follower(runner.db, runner.log, parent.ir, forwarded)
        rest = [m async for m in follower.follow(created.run_id, 1, announced=True)]
    assert subflows.shown_events(rest) == [
        (child_id, "node_finished", 3, "c"),
        (child_id, "run_finished", 3, "c"),
        (run_id, "node_finished", 2, "review"),
        (run_id, "node_finished", 3, "last"),
        (run_id, "run_finished", 3, "last"),
    ]


def test_the_sub_flow_nodes_of_a_flow_are_the_nodes_that_hold_a_child() -> None:
    child = {"start": "a", "nodes": [{"name": "a", "tool": "t"}]}
    ir = {
        "start": "x",
        "nodes": [
            {"name": "x", "tool": "t"},
            {"name": "y", "tool": "flow", "flow": {"name": "c", "ir": child}},
        ],
    }
    assert subflow_nodes(ir) == {"y": child}
    assert subflow_nodes({}) == {}


def counting_registry() -> Registry:
    """`tick`: `n` plus one."""
    registry = Registry()

    def tick(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    registry.add(tick)
    return registry


@pytest.mark.asyncio
async def test_a_follower_waits_out_the_database_and_goes_on_without_a_gap(
    database_url: str,
) -> None:
    registry = counting_registry()
    async with service_on(database_url, registry) as runner:
        flow = await define(runner.db, "tick ? n < 6 -> tick : end\n", registry)
        created = await runner.start(definition=flow, input={}, durability="sync")
        assert (await runner.result(created.run_id)).status == "succeeded"
        read_steps, failures = runner.log.read_steps, [0]

        async def away_after_two(run_id: uuid.UUID, after: int) -> AsyncIterator[StepRow]:
            # The first pass gets two steps, then the database goes away; then once more
            # before any step; then it is back.
            async for row in read_steps(run_id, after):
                if failures[0] < 2 and (failures[0] == 1 or row.seq > 2):
                    failures[0] += 1
                    raise ConnectionRefusedError("the database is restarting")
                yield row

        runner.log.read_steps = away_after_two  # type: ignore[method-assign, assignment]
        follower = Follower(runner.db, runner.log, flow.ir)
        events = [m async for m in follower.follow(created.run_id, 0, announced=False)]
    assert failures == [2]
    assert [(e["type"], e["step"]) for e in events] == [
        ("run_started", 0),
        *[("node_finished", step) for step in range(1, 7)],
        ("run_finished", 6),
    ]


@pytest.mark.asyncio
async def test_a_read_for_a_follower_is_tried_again_only_while_the_database_is_away() -> None:
    hub, run_id, tries = Hub(), uuid.uuid4(), [0]

    async def back_at_the_third() -> int:
        tries[0] += 1
        if tries[0] < 3:
            raise ConnectionRefusedError("the database is restarting")
        return 42

    assert await patiently(back_at_the_third, hub, run_id, Outage()) == 42
    assert tries == [3]

    async def broken() -> int:
        tries[0] += 1
        raise ValueError("not the database's absence")

    with pytest.raises(ValueError):
        await patiently(broken, hub, run_id, Outage())
    assert tries == [4]  # not tried again
