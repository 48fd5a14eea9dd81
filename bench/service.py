"""Benchmark: the durable write path alone, in process, against raw asyncpg.

`bench/api.py` measures through a real `flowc serve` over HTTP, which on a small machine
is bounded by the HTTP round trip (it prints that ceiling).  This script runs the same
two cases on the run service itself (`RunService.start` + `result`: claim, interpreter,
fenced group-commit writes, outcome), in one process with the floor, on a fresh database
that is dropped afterwards:

  (a) one 1,000-step `sync` run    vs one held connection, INSERT + commit per step;
  (b) 50 concurrent 43-step runs   vs 50 raw runs over a pool of 10, a connection per run.

Rounds alternate which goes first; the ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import asyncpg

from flowc.compiler import compile_source
from flowc.runtime import Registry
from flowc.server import store
from flowc.server.db import Database
from flowc.server.models import WorkflowDefinition
from flowc.server.runs import RunService
from flowc.server.settings import Settings

ADMIN = os.environ.get("FLOWC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FLOOR_TABLE = (
    "CREATE TABLE IF NOT EXISTS floor_step (run_id uuid, seq int, node text, delta jsonb, "
    "started_at timestamptz, finished_at timestamptz, PRIMARY KEY (run_id, seq))"
)
INSERT = "INSERT INTO floor_step VALUES ($1, $2, $3, $4::jsonb, $5, $6)"


def tick(state: dict[str, Any]) -> dict[str, Any]:
    """One step: count."""
    return {"n": state.get("n", 0) + 1}


async def floor_run(connection: Any, steps: int) -> None:
    """One row per step, each committed, on a held connection."""
    run_id = uuid.uuid4()
    for seq in range(1, steps + 1):
        at = datetime.now(timezone.utc)
        await connection.execute(INSERT, run_id, seq, "tick", json.dumps({"n": seq}), at, at)


async def define(db: Database, steps: int, registry: Registry) -> WorkflowDefinition:
    """A flow that runs `tick` `steps` times, saved."""
    source = f"set max_steps = {steps}\ntick ? n < {steps} -> tick : end\n"
    ir = compile_source(source, tools=registry.specs()).ir
    async with db.session() as session:
        return await store.create_definition(session, name=None, source=source, ir=ir)


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    """Seconds `work` took."""
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def measure(url: str, repeats: int) -> None:
    """Print both cases' ratios."""
    db = Database(url)
    await db.create_tables()
    registry = Registry()
    registry.add(tick)
    service = RunService(
        db, registry=registry, settings=Settings.model_validate({"DATABASE_URL": url})
    )
    await service.open()
    held = await asyncpg.connect(url)
    pool = await asyncpg.create_pool(url, min_size=10, max_size=10)
    try:
        await held.execute(FLOOR_TABLE)
        long, short = await define(db, 1000, registry), await define(db, 43, registry)

        async def ours(definition: WorkflowDefinition) -> None:
            created = await service.start(definition=definition, input={}, durability="sync")
            result = await service.result(created.run_id)
            assert result.status == "succeeded", result.error

        async def floor_concurrent() -> None:
            async def one() -> None:
                async with pool.acquire() as connection:
                    await floor_run(connection, 43)

            await asyncio.gather(*(one() for _ in range(50)))

        Work = Callable[[], Awaitable[Any]]
        cases: dict[str, tuple[Work, Work, bool]] = {
            "(a) one 1,000-step `sync` run (time)": (
                lambda: ours(long),
                lambda: floor_run(held, 1000),
                False,
            ),
            "(b) 50 concurrent 43-step runs (runs/s)": (
                lambda: asyncio.gather(*(ours(short) for _ in range(50))),
                floor_concurrent,
                True,
            ),
        }
        for label, (flowc, floor, inverse) in cases.items():
            await flowc()  # warm: connections, engines, statements
            await floor()
            ratios = []
            for round_ in range(repeats):
                if round_ % 2:
                    ours_s, floor_s = await timed(flowc), await timed(floor)
                else:
                    floor_s, ours_s = await timed(floor), await timed(flowc)
                ratios.append(floor_s / ours_s if inverse else ours_s / floor_s)
            rounds = " ".join(f"{r:.2f}" for r in ratios)
            print(f"{label}: {statistics.median(ratios):.2f}x of the floor (rounds: {rounds})")
    finally:
        await pool.close()
        await held.close()
        await service.close()
        await db.dispose()


async def main(repeats: int) -> None:
    """A fresh database for the run; dropped afterwards."""
    name = f"flowc_bench_service_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = ADMIN.rsplit("/", 1)[0]
        await measure(f"{base}/{name}", repeats)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds per case")
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments.repeats))
    except ImportError:
        asyncio.run(main(arguments.repeats))
