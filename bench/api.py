"""Benchmark: durable runs on PostgreSQL against raw asyncpg, and the HTTP API under load.

All from one run, on a fresh database that is dropped afterwards:
  (a) a 1,000-step `sync`-durability run against raw asyncpg doing one INSERT committed
      per step (autocommit: one round trip each)             target: <= 1.3x the time;
  (b) 50 concurrent 43-step runs against raw asyncpg doing the same inserts over a pool
      of 10                                                   target: >= 0.7x the runs/s;
  (c) `POST /graph/run` (wait) on the code-review flow at concurrency 1, 8 and 32:
      throughput and p50/p99 latency (the API in-process, over ASGI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg

from flowc.compiler import compile_source
from flowc.runtime import Registry
from flowc.server import store
from flowc.server.db import Database
from flowc.server.models import WorkflowDefinition
from flowc.server.runs import RunService

ADMIN = os.environ.get("FLOWC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).parents[1]
INSERT = (
    "INSERT INTO run_step (run_id, seq, node, delta, started_at, finished_at) "
    "VALUES ($1, $2, $3, $4::jsonb, $5, $6)"
)


def tick(state: dict[str, Any]) -> dict[str, Any]:
    """One step: count."""
    return {"n": state.get("n", 0) + 1}


def loop(steps: int) -> str:
    """A flow that runs `tick` exactly `steps` times."""
    return f"set max_steps = {steps}\ntick ? n < {steps} -> tick : end\n"


async def define(db: Database, source: str, registry: Registry) -> WorkflowDefinition:
    """Save a definition."""
    ir = compile_source(source, tools=registry.specs()).ir
    async with db.session() as session:
        return await store.create_definition(session, name=None, source=source, ir=ir)


async def raw_run(pool: Any, run_id: uuid.UUID, steps: int) -> None:
    """What a durable run must write at least: one row per step, each committed."""
    for seq in range(1, steps + 1):
        at = datetime.now(timezone.utc)
        async with pool.acquire() as connection:
            await connection.execute(INSERT, run_id, seq, "tick", json.dumps({"n": seq}), at, at)


async def raw_runs(pool: Any, definition: WorkflowDefinition, db: Database, count: int,
                   steps: int) -> float:  # fmt: skip
    """`count` raw runs at once; seconds taken."""
    ids = []
    async with db.session() as session:
        for _ in range(count):
            ids.append((await store.create_run(session, definition_id=definition.id, input={},
                                               durability="sync")).id)  # fmt: skip
    start = time.perf_counter()
    await asyncio.gather(*(raw_run(pool, run_id, steps) for run_id in ids))
    return time.perf_counter() - start


async def engine_runs(service: RunService, definition: WorkflowDefinition, count: int) -> float:
    """`count` durable runs at once through the run service; seconds taken."""
    start = time.perf_counter()
    ids = [await service.start(definition=definition, input={}) for _ in range(count)]
    results = await asyncio.gather(*(service.result(run_id) for run_id in ids))
    assert all(r.status == "succeeded" for r in results), results[0].error
    return time.perf_counter() - start


async def api_load(url: str, concurrency: int, total: int) -> tuple[float, float, float]:
    """Runs per second, p50 and p99 latency (ms) of `POST /graph/run` at `concurrency`."""
    import httpx

    from flowc.server.app import create_app
    from flowc.server.settings import Settings

    app = create_app(Settings(DATABASE_URL=url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            source = (ROOT / "examples/code_review.flow").read_text()
            code = (ROOT / "examples/samples/prints.py").read_text()
            created = await client.post("/graph/create", json={"source": source})
            graph_id = created.json()["graph_id"]
            latencies: list[float] = []
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(total):
                queue.put_nowait(index)

            async def worker() -> None:
                while not queue.empty():
                    queue.get_nowait()
                    start = time.perf_counter()
                    response = await client.post(
                        "/graph/run", json={"graph_id": graph_id, "input": {"code": code}}
                    )
                    assert response.status_code == 200 and response.json()["status"] == "succeeded"
                    latencies.append((time.perf_counter() - start) * 1000)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return total / elapsed, statistics.median(latencies), p99


async def main(args: argparse.Namespace) -> None:
    """Create a database, measure, drop it."""
    name = f"flowc_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        await measure(url, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure(url: str, args: argparse.Namespace) -> None:
    """The three measurements, printed as they finish."""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    db = Database(url)
    await db.create_tables()
    registry = Registry()
    registry.add(tick)
    service = RunService(db, registry=registry)
    pool = await asyncpg.create_pool(url, min_size=10, max_size=10)
    try:
        long_flow = await define(db, loop(1000), registry)
        short_flow = await define(db, loop(43), registry)
        await engine_runs(service, short_flow, 2)  # warm up both sides
        await raw_runs(pool, short_flow, db, 2, 5)

        ours = min([await engine_runs(service, long_flow, 1) for _ in range(args.repeats)])
        raw = min([await raw_runs(pool, long_flow, db, 1, 1000) for _ in range(args.repeats)])
        print("\n(a) one 1,000-step run, sync durability")
        print(f"raw asyncpg INSERT+commit per step: {raw * 1000:8.1f} ms ({raw:.3f} ms/step)")
        print(f"flowc durable run:                  {ours * 1000:8.1f} ms ({ours:.3f} ms/step)")
        print(f"ratio: {ours / raw:.2f}x (target <= 1.3x)")

        ours = min([await engine_runs(service, short_flow, 50) for _ in range(args.repeats)])
        raw = min([await raw_runs(pool, short_flow, db, 50, 43) for _ in range(args.repeats)])
        print("\n(b) 50 concurrent 43-step runs, sync durability, pool of 10")
        print(f"raw asyncpg: {50 / raw:8.1f} runs/s")
        print(f"flowc:       {50 / ours:8.1f} runs/s")
        print(f"ratio: {raw / ours:.2f}x the raw runs/s (target >= 0.7x)")
    finally:
        await pool.close()
        await service.close()
        await db.dispose()
    if args.skip_api:
        return
    print("\n(c) POST /graph/run (wait), code-review flow on examples/samples/prints.py")
    print(f"{'concurrency':>11} {'runs/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency in (1, 8, 32):
        rate, p50, p99 = await api_load(url, concurrency, max(64, concurrency * 8))
        print(f"{concurrency:>11} {rate:>8.1f} {p50:>8.1f} {p99:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-api", action="store_true", help="only (a) and (b)")
    asyncio.run(main(parser.parse_args()))
