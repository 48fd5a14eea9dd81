"""Following a run from the database: where a follower from memory left its sub-flows.

The rest of `server/follow.py` (replays with children and grandchildren, a parent followed
from another process while its child runs) is tested with the sub-flows, in
`test_subflows_api.py`.
"""

from __future__ import annotations

import pytest

import tests.server.test_subflows_api as subflows
from flowc.runtime.subflows import child_run_id
from flowc.server.follow import Follower, Forwarded, subflow_nodes
from tests.server.conftest import Gates, service_on
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
