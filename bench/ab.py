"""Benchmark, side by side: this checkout's flowc against another revision's, and the floor.

`bench/api.py` times flowc against the floor in turns; on a shared machine one run of it
moves by 0.1x and more, so comparing two builds from two runs of it says little.  This
serves both builds at once (this checkout, and `--against REV` unpacked with `git archive`
into a temporary folder that goes first on `PYTHONPATH`), each on a fresh PostgreSQL
database, and times case (a) of `bench/api.py` (one 1,000-step `sync` run through
`flowc serve` over HTTP), or with `--concurrent` case (b) (50 concurrent 43-step runs,
the floor's over a pool of 10), for each, and the floor, in turns: every round runs all
three, in an order that changes from round to round.  It prints each build's median ratio
of time to the floor's and the median of the rounds' ratios of the two builds (below 1:
this checkout is faster; for (b), a runs/s ratio is its inverse).

    .venv/bin/python bench/ab.py --against HEAD~1 --repeats 15 [--big] [--concurrent]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from api import (
    BIG_STRING_BYTES,
    CONCURRENT_RUNS,
    FLOOR_POOL_SIZE,
    FLOOR_TABLE,
    LONG_RUN_STEPS,
    REQUEST_TIMEOUT,
    SHORT_RUN_STEPS,
    Api,
    LeanClient,
    floor_concurrent,
    floor_run,
    loop,
    machine,
    quietly,
)
from serving import ADMIN_URL, ROOT, scratch_database, served


def unpack(revision: str, folder: Path) -> None:
    """`git archive` of `revision` into `folder` (its `flowc/` links to its own layers)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)


def api_for(base: str, client: httpx.AsyncClient) -> Api:
    """An `Api` on the server at `base` (`client` is made for that base URL)."""
    host, port = base.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return Api(client, LeanClient(host, int(port)))


async def main(args: argparse.Namespace) -> int:
    """Serve both builds, time them and the floor in turns, print the ratios."""
    state = {"code": "x" * BIG_STRING_BYTES} if args.big else {}
    with tempfile.TemporaryDirectory(prefix="flowc-ab-") as folder:
        other = Path(folder) / "other"
        other.mkdir()
        unpack(args.against, other)
        async with AsyncExitStack() as stack:
            urls = []
            for name in ("this", "other"):
                admin = await asyncpg.connect(ADMIN_URL, timeout=10)
                if name == "this":
                    print(await machine(admin), flush=True)
                urls.append(
                    await stack.enter_async_context(scratch_database(admin, f"flowc_ab_{name}"))
                )
            this_base, _ = await stack.enter_async_context(
                served(urls[0], Path(folder) / "this.log")
            )
            other_base, _ = await stack.enter_async_context(
                served(urls[1], Path(folder) / "other.log", {"PYTHONPATH": str(other)})
            )
            apis = []
            for base in (this_base, other_base):
                client = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT)
                )
                apis.append(api_for(base, client))
                stack.push_async_callback(apis[-1].lean.close)
            steps = SHORT_RUN_STEPS if args.concurrent else LONG_RUN_STEPS
            flows = [await api.create(loop(steps)) for api in apis]
            held = await asyncpg.connect(urls[0])
            stack.push_async_callback(held.close)
            await held.execute(FLOOR_TABLE)
            pool = await asyncpg.create_pool(
                urls[0], min_size=FLOOR_POOL_SIZE, max_size=FLOOR_POOL_SIZE
            )
            stack.push_async_callback(pool.close)

            def flowc(which: int) -> Callable[[], Awaitable[float]]:
                if args.concurrent:
                    return lambda: apis[which].concurrent(
                        flows[which], state, CONCURRENT_RUNS, steps
                    )
                return lambda: apis[which].run(flows[which], state, steps)

            timed: dict[str, Callable[[], Awaitable[float]]] = {
                "floor": (
                    (lambda: floor_concurrent(pool, CONCURRENT_RUNS, steps))
                    if args.concurrent
                    else (lambda: floor_run(held, steps))
                ),
                "this": flowc(0),
                args.against: flowc(1),
            }
            for warm in timed.values():
                await warm()
            times: dict[str, list[float]] = {name: [] for name in timed}
            names = list(timed)
            for index in range(args.repeats):
                order = names[index % 3 :] + names[: index % 3]
                for name in reversed(order) if index % 2 else order:
                    times[name].append(await quietly(timed[name]))
            report(times, args.against)
    return 0


def report(times: dict[str, list[float]], against: str) -> None:
    """Each build's median ratio to the floor, and the two builds' median ratio."""
    floor = times["floor"]

    def ratios(name: str, base: list[float]) -> list[float]:
        return [ours / theirs for ours, theirs in zip(times[name], base, strict=True)]

    print(f"floor: {statistics.median(floor) * 1000:.0f} ms a round (median)")
    for name in ("this", against):
        per_round = ratios(name, floor)
        shown = " ".join(f"{r:.2f}" for r in per_round)
        print(f"{name}: {statistics.median(per_round):.3f}x the floor (rounds: {shown})")
    print(f"this / {against}: {statistics.median(ratios('this', times[against])):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=15, help="rounds (median)")
    parser.add_argument("--big", action="store_true", help="a 20 KB string in the state")
    parser.add_argument("--concurrent", action="store_true", help="case (b), not (a)")
    arguments = parser.parse_args()
    runner: Any
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    sys.exit(runner(main(arguments)))
