"""`async` durability: a long run's steps reach the database in batches, each exactly once."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowc.runtime import REGISTRY, Registry
from flowc.server.recording import StepRow, StepWriter
from flowc.server.runs import RunService
from tests.server.conftest import WAIT, create_graph, define, read_run, replay, service_on
from tests.server.databases import database_url

__all__ = ["database_url"]

pytestmark = pytest.mark.asyncio

#: Steps of the long runs below: more than two batches of the default size (50).
STEPS = 130
#: The small batch size of one test: 130 steps are 18 batches of 7 and 4 steps at the end.
SMALL_BATCH = 7


def ticks(tool: str) -> str:
    """A flow that runs `tool` until `n` reaches `STEPS`."""
    return f"set max_steps = 200\nnode tick = {tool}\ntick ? n < {STEPS} -> tick : end\n"


#: What every test below expects on record: step k ran `tick` and set `n` to k.
EXPECTED_STEPS = [(k, "tick", {"n": k}) for k in range(1, STEPS + 1)]


class WriteLog:
    """The service's own writer, noting which steps each call wrote and how far it got."""

    def __init__(self, inner: StepWriter) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[int]]] = []
        self.written = 0
        self.progress = asyncio.Condition()

    async def begin(self, run_id: uuid.UUID, at: datetime) -> None:
        await self.inner.begin(run_id, at)

    async def append(
        self, run_id: uuid.UUID, rows: list[StepRow], delta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        self.calls.append(("append", [row.seq for row in rows]))
        await self.inner.append(run_id, rows, delta, state)
        await self._wrote(rows)

    async def finish(
        self,
        run_id: uuid.UUID,
        rows: list[StepRow],
        *,
        status: str,
        state: dict[str, Any],
        error: dict[str, Any] | None,
        at: datetime,
        started: datetime | None = None,
    ) -> None:
        self.calls.append(("finish", [row.seq for row in rows]))
        await self.inner.finish(
            run_id, rows, status=status, state=state, error=error, at=at, started=started
        )
        await self._wrote(rows)

    async def close(self) -> None:
        await self.inner.close()

    async def _wrote(self, rows: list[StepRow]) -> None:
        if rows:
            async with self.progress:
                self.written = rows[-1].seq
                self.progress.notify_all()

    async def wait_written(self, seq: int) -> None:
        """Return once step `seq` is committed."""
        async with self.progress:
            await asyncio.wait_for(self.progress.wait_for(lambda: self.written >= seq), WAIT)


def spy_on(service: RunService) -> WriteLog:
    """Put a `WriteLog` around the service's writer; the log."""
    log = WriteLog(service.writer)
    service.writer = log
    return log


async def test_small_batches_reach_the_database_one_after_another(
    database_url: str, loop_errors: list[dict[str, Any]]
) -> None:
    registry = Registry()
    run_ids: list[uuid.UUID] = []
    rows_seen: list[tuple[int, str, int, dict[str, Any]]] = []

    async def tick(state: dict[str, Any]) -> dict[str, Any]:
        n: int = state.get("n", 0)
        if n and n % SMALL_BATCH == 0:  # a batch was handed over after step n: let it land
            await log.wait_written(n)
            run, _ = await read_run(service.db, run_ids[0])
            rows_seen.append((n, run.status, run.step, run.state))
        return {"n": n + 1}

    registry.add(tick)
    async with service_on(database_url, registry, async_batch_steps=SMALL_BATCH) as service:
        assert service.settings.async_batch_steps == SMALL_BATCH
        log = spy_on(service)
        definition = await define(service.db, ticks("tick"), registry)
        run_ids.append(await service.start(definition=definition, input={}, durability="async"))
        result = await asyncio.wait_for(service.result(run_ids[0]), WAIT)
        run, steps = await read_run(service.db, run_ids[0])
    gc.collect()

    assert result.status == "succeeded"
    # 18 batches of 7 while the run goes on, then the last 4 steps with the outcome.
    assert log.calls == [
        *(("append", list(range(first, first + 7))) for first in range(1, 127, 7)),
        ("finish", [127, 128, 129, 130]),
    ]
    # Between batches the row says how far the run is, as far as the database knows.
    assert rows_seen == [(n, "running", n, {"n": n}) for n in range(7, 127, 7)]
    assert [(s.seq, s.node, s.delta) for s in steps] == EXPECTED_STEPS
    assert (run.status, run.step, run.current_node, run.error) == ("succeeded", 130, "tick", None)
    assert run.state == replay({}, [{"delta": s.delta} for s in steps]) == {"n": 130}
    assert loop_errors == []


@pytest.fixture
def yielding_tick() -> Iterator[str]:
    """`tick_for_tests` in the application's registry: adds 1 to `n`, yielding to the loop."""

    async def tick_for_tests(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # as a tool doing I/O would: background writes run meanwhile
        return {"n": state.get("n", 0) + 1}

    REGISTRY.add(tick_for_tests)
    yield "tick_for_tests"
    REGISTRY.remove("tick_for_tests")


async def test_a_long_async_run_through_the_api_records_every_step_once(
    app: FastAPI, client: httpx.AsyncClient, yielding_tick: str
) -> None:
    assert app.state.settings.async_batch_steps == 50  # the default
    log = spy_on(app.state.runs)
    graph_id = await create_graph(client, ticks(yielding_tick))
    body = {"graph_id": graph_id, "input": {}, "durability": "async"}
    response = await client.post("/graph/run", json=body)
    run = response.json()
    assert (response.status_code, run["status"], run["state"]) == (200, "succeeded", {"n": 130})
    assert [(s["seq"], s["node"], s["delta"]) for s in run["steps"]] == EXPECTED_STEPS

    # However the writes interleave with the run: the first batch is steps 1-50, each batch
    # written behind the run holds at least 50 steps, one batch is written at a time, in
    # order, and the outcome's write holds the rest.
    kinds = [kind for kind, _ in log.calls]
    assert kinds[0] == "append" and kinds[-1] == "finish"
    assert set(kinds[:-1]) == {"append"}
    assert log.calls[0] == ("append", list(range(1, 51)))
    assert all(len(seqs) >= 50 for _, seqs in log.calls[:-1])
    assert [seq for _, seqs in log.calls for seq in seqs] == list(range(1, STEPS + 1))

    recorded = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()["steps"]
    assert [(s["seq"], s["node"], s["delta"]) for s in recorded] == EXPECTED_STEPS
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["step"], state["current_node"]) == ("succeeded", 130, "tick")
    assert state["state"] == replay({}, recorded) == {"n": 130}
