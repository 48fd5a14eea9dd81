"""Benchmark: what a durable step costs in instructions, flowc's run service against the floor.

Wall-clock rounds on a shared machine move by 10-30% from one to the next (bench/api.py
prints them): a change worth 1-2% of case (a) cannot be seen that way.  valgrind's
callgrind counts the instructions a process executes, whatever else the machine does:
between two runs here, flowc's count a step moved by 0.3% and the floor's by 0.01%, so
two builds can be told apart by a difference of about a thousand instructions a step.
It measures CPU work only: not the waits for the database, and not what a microsecond of
work costs in wall time here (README, "Where (a)'s excess goes").

In process, on a fresh database dropped afterwards: the run service (`RunService.start` +
`result`: claim, interpreter, fenced writes, outcome) running case (a)'s 1,000-step `sync`
run, against bench/api.py's floor (one INSERT committed per step on a held connection).  Each
side runs in its own process under callgrind, with `--runs` counted runs and with none
(after one warm run each time): the difference, over the steps, is the cost of a step with
start-up taken out.  Each process takes `flowc serve`'s collector setting.  Its timers
(NOTIFYs every 20 ms, the claim poll every second, the lease's heartbeat) fire once an
hour instead: under valgrind a run lasts about 50 times as long, so a timer would fire 50
times as often per step, and as often as the machine's load of the moment makes it.
About 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time

import asyncpg
from api import FLOOR_TABLE, LONG_RUN_STEPS, floor_run, loop
from serving import ADMIN_URL, scratch_database
from tools import tick

#: Seconds between the measured process's timed work: NOTIFYs, claim polls, heartbeats.
QUIET = 3600.0


async def child(side: str, runs: int, url: str) -> None:
    """One measured process: a warm run, then `runs` more, of `side`."""
    from flowc.cli.serve import settle_process
    from flowc.compiler import compile_source
    from flowc.runtime import Registry
    from flowc.server import pglog, store
    from flowc.server import runs as service
    from flowc.server.db import Database
    from flowc.server.runs import RunService
    from flowc.server.settings import Settings

    settle_process()
    # The timers, quiet (the docstring says why).
    pglog.NOTIFY_EVERY = QUIET  # type: ignore[attr-defined]
    service.CLAIM_POLL_MAX = QUIET
    if side == "floor":
        connection = await asyncpg.connect(url)
        try:
            for _ in range(1 + runs):
                await floor_run(connection, LONG_RUN_STEPS)
        finally:
            await connection.close()
        return
    db = Database(url)
    registry = Registry()
    registry.add(tick)
    runner = RunService(
        db,
        registry=registry,
        settings=Settings.model_validate({"DATABASE_URL": url, "lease_seconds": QUIET}),
    )
    await db.create_tables()
    await runner.open()
    try:
        source = loop(LONG_RUN_STEPS)
        ir = compile_source(source, tools=registry.specs()).ir
        async with db.session() as session:
            definition = await store.create_definition(session, name=None, source=source, ir=ir)
        for _ in range(1 + runs):
            created = await runner.start(definition=definition, input={}, durability="sync")
            result = await runner.result(created.run_id)
            if result.status != "succeeded":
                raise RuntimeError(f"the run did not succeed: {result.error}")
    finally:
        await runner.close()
        await db.dispose()


def counted(side: str, runs: int, url: str) -> int:
    """Instructions of one child process under callgrind."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", side, str(runs), url,
    ]  # fmt: skip
    # One hash seed for every process: the layout of sets and dicts moves the count too.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"bench/instructions.py: the {side} process failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


async def main(runs: int) -> None:
    """Measure both sides on a scratch database and print instructions a step."""
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py: valgrind is not installed (apt-get install valgrind)")
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    async with scratch_database(admin, "flowc_bench_instructions") as url:
        floor_table = await asyncpg.connect(url)
        try:
            await floor_table.execute(FLOOR_TABLE)
        finally:
            await floor_table.close()
        start = time.perf_counter()
        per_step = {}
        for side in ("flowc", "floor"):  # one process at a time: nothing else to wait for
            without, with_runs = counted(side, 0, url), counted(side, runs, url)
            per_step[side] = (with_runs - without) / (runs * LONG_RUN_STEPS)
        elapsed = time.perf_counter() - start
    flowc, floor = per_step["flowc"], per_step["floor"]
    print(f"instructions a step, {runs} runs of {LONG_RUN_STEPS:,} steps each, {elapsed:.0f} s:")
    print(f"  flowc (run service, in process)  {flowc:>10,.0f}")
    print(f"  the floor (INSERT + commit)      {floor:>10,.0f}")
    print(f"  flowc / floor                    {flowc / floor:>10.2f}x")
    print(f"  flowc's excess                   {flowc - floor:>10,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs counted on top of the warm one")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "RUNS", "URL"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        side, count, database = arguments.child
        try:
            import uvloop

            uvloop.run(child(side, int(count), database))
        except ImportError:
            asyncio.run(child(side, int(count), database))
    else:
        asyncio.run(main(arguments.runs))
