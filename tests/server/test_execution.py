"""A claimed run's execution: how often its row gets a snapshot of its state.

A snapshot rewrites the whole state; a step writes only its delta.  A small state gets a
snapshot every `FLOWC_SNAPSHOT_STEPS` steps, a big one less often, in proportion to its
size up to a cap, and the exact state is the snapshot with the steps after it either way.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from flowc.runtime import Registry
from flowc.server.execution import SNAPSHOT_PART, SNAPSHOT_STRETCH_MAX, due, snapshot_spacing
from flowc.server.runlog import fold
from tests.server.conftest import WAIT, define, read_run, service_on
from tests.server.databases import database_url, postgres_url

__all__ = ["database_url", "postgres_url"]


def state_of(size: int) -> dict[str, Any]:
    """A state whose JSON is exactly `size` characters."""
    state = {"s": ""}
    state["s"] = "x" * (size - len(json.dumps(state, separators=(",", ":"))))
    assert len(json.dumps(state, separators=(",", ":"))) == size
    return state


@pytest.mark.parametrize(
    ("size", "spacing"),
    [
        (2, 100),  # {}
        (SNAPSHOT_PART, 100),
        (SNAPSHOT_PART + 1, 200),
        (3 * SNAPSHOT_PART, 300),
        (3 * SNAPSHOT_PART + 1, 400),
        (SNAPSHOT_STRETCH_MAX * SNAPSHOT_PART, 100 * SNAPSHOT_STRETCH_MAX),
        (1_000_000, 100 * SNAPSHOT_STRETCH_MAX),
    ],
)
def test_a_bigger_state_is_snapshotted_less_often_up_to_a_cap(size: int, spacing: int) -> None:
    state = {} if size == 2 else state_of(size)
    assert snapshot_spacing(state, 100) == spacing


@pytest.mark.parametrize(
    ("step", "spacing", "next_one"),
    [(0, 100, 100), (99, 100, 100), (100, 100, 200), (603, 100, 700), (100, 500, 500), (0, 1, 1)],
)
def test_the_next_snapshot_is_at_the_next_multiple_of_the_spacing(
    step: int, spacing: int, next_one: int
) -> None:
    assert due(step, spacing) == next_one


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("grows_at", "snapshots"),
    [
        (None, 50),  # a small state all along: every 10 steps
        (0, 30),  # 3 parts from the start: every 30 steps
        (15, 30),  # small at step 10's snapshot, big at step 20's: then due at 30
    ],
)
async def test_a_runs_row_gets_its_snapshots_spaced_by_the_states_size(
    database_url: str, grows_at: int | None, snapshots: int
) -> None:
    registry = Registry()
    gate = asyncio.Event()
    big = "x" * (2 * SNAPSHOT_PART + 100)  # the state: 3 parts begun

    async def tick(state: dict[str, Any]) -> dict[str, Any]:
        n: int = state.get("n", 0)
        if n == 57:
            gate.set()
            await asyncio.sleep(3600)  # held here until the service closes
        return {"n": n + 1, "big": big} if n == grows_at else {"n": n + 1}

    registry.add(tick)
    flow = "set max_steps = 200\ntick ? n < 100 -> tick : end\n"
    initial = {"big": big} if grows_at == 0 else {}
    async with service_on(database_url, registry, snapshot_steps=10) as service:
        service.shutdown_grace = 0
        definition = await define(service.db, flow, registry)
        created = await service.start(definition=definition, input=initial, durability="sync")
        await asyncio.wait_for(gate.wait(), WAIT)
        row, steps = await read_run(service.db, created.run_id)
        exact = await service.state(created.run_id)
    assert row.step == snapshots
    assert row.state["n"] == snapshots
    assert exact is not None
    assert exact["state"] == fold(row.state, [s.delta for s in steps if s.seq > row.step])
    assert (exact["step"], exact["state"]["n"], len(exact["state"].get("big", ""))) == (
        57,
        57,
        0 if grows_at is None else len(big),
    )
