"""Benchmark: handing runs to worker processes, our own claim on `workflow_run` vs procrastinate.

Option 1, "own claim": the `workflow_run` row is the job, as in `server/runlog.py`.  A worker
claims queued runs (and runs whose lease ran out) with one
`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING id, attempt`, which
adds one to `attempt` (the fencing epoch); `pg_notify('flowc_queued', id)` at insert wakes
idle workers; a heartbeat pushes the leases of the runs a worker holds forward and tells it
which ones it lost; every step write is fenced by (id, attempt).
Option 2, procrastinate 3.10 (its own schema, psycopg 3, asyncio workers, LISTEN/NOTIFY,
worker heartbeats): run only when `import procrastinate` works, else skipped with a hint.

Workers are separate processes (spawn); "3 procs x 1" is three processes with one worker
loop each, "1 proc x 3" one process with three loops (procrastinate: concurrency=3).
For each worker shape:
  latency     enqueue (before the INSERT / defer) -> the job's code starting, on idle
              workers, LATENCY_JOBS jobs one at a time: p50 and p99;
  throughput  THROUGHPUT_JOBS trivial jobs enqueued in one statement: jobs claimed and
              completed per second, from before the enqueue to the last one marked done.
Then, option 1 alone: the cost of a fenced step insert against a plain one, in us per step
on one held connection (one transaction each, synchronous_commit on and off), and three
fence checks that race a stale writer against a bump of its run's attempt.  `--crash` adds,
for both options, a worker SIGKILLed mid-job (when does another worker run it again?) and a
worker SIGSTOPped past its heartbeat then resumed (does it go on writing step rows?): about
two minutes more.

The database is made for the run and dropped after it: the admin URL comes from
FLOWC_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import threading
import time
import uuid
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN = os.environ.get("FLOWC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHANNEL = "flowc_queued"
LEASE_S = 15.0  # a claim's lease; the heartbeat renews it every HEARTBEAT_S
HEARTBEAT_S = 5.0
POLL_S = 5.0  # an idle worker's longest sleep without a NOTIFY (procrastinate's default too)
QUEUE = "flowc_bench"
LATENCY_JOBS = 200
THROUGHPUT_JOBS = 2_000
SHAPES = "1x1,3x1,1x3"

# (kind, key, pid, time.time(), attempt): what workers tell the parent.  time.time() is
# one clock for every process on the machine.
Report = tuple[str, str, int, float, int]

SCHEMA = """
CREATE TABLE workflow_run (
    id uuid PRIMARY KEY,
    status text NOT NULL DEFAULT 'queued',
    owner text,
    attempt int NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    state jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_workflow_run_claimable ON workflow_run (created_at)
    WHERE status IN ('queued', 'running');
CREATE TABLE run_step (
    run_id uuid NOT NULL,
    seq int NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    delta jsonb NOT NULL DEFAULT '{}',
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, attempt, seq)
);
CREATE TABLE pq_step (
    job_id bigint NOT NULL,
    pid int NOT NULL,
    seq int NOT NULL,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (job_id, pid, seq)
);
"""
ENQUEUE = """
    WITH made AS (
        INSERT INTO workflow_run (id, state)
        SELECT u, $2::jsonb FROM unnest($1::uuid[]) AS u
        RETURNING id
    )
    SELECT count(pg_notify('flowc_queued', id::text)) FROM made
"""
CLAIM = """
    UPDATE workflow_run
       SET status = 'running', owner = $1, attempt = attempt + 1,
           lease_expires_at = now() + make_interval(secs => $3)
     WHERE id IN (SELECT id FROM workflow_run
                   WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < now())
                   ORDER BY created_at
                   LIMIT $2
                     FOR UPDATE SKIP LOCKED)
 RETURNING id, attempt, state
"""
# How long an idle worker may sleep before a lease it could take over runs out.
NEXT_EXPIRY = """
    SELECT extract(epoch FROM min(lease_expires_at) - now())::float8
      FROM workflow_run WHERE status = 'running'
"""
HEARTBEAT = """
    UPDATE workflow_run r
       SET lease_expires_at = now() + make_interval(secs => $3)
      FROM unnest($1::uuid[], $2::int[]) AS o(id, attempt)
     WHERE r.id = o.id AND r.attempt = o.attempt AND r.status = 'running'
 RETURNING r.id
"""
COMPLETE = """
    UPDATE workflow_run SET status = 'done', lease_expires_at = NULL
     WHERE id = $1 AND attempt = $2 AND status = 'running'
"""
STEP_PLAIN = """
    INSERT INTO run_step (run_id, seq, attempt, pid, delta) VALUES ($1, $3, $2, $4, $5::jsonb)
"""
STEP_FENCED = """
    INSERT INTO run_step (run_id, seq, attempt, pid, delta)
    SELECT id, $3, attempt, $4, $5::jsonb FROM workflow_run
     WHERE id = $1 AND attempt = $2 AND status = 'running'
       FOR KEY SHARE
"""
STEP_FENCED_SHARE = STEP_FENCED.replace("FOR KEY SHARE", "FOR SHARE")
PQ_STEP = "INSERT INTO pq_step (job_id, pid, seq) VALUES (%(job_id)s, %(pid)s, %(seq)s)"


def database_url(admin: str, name: str) -> str:
    """The admin URL with its database swapped for `name`."""
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path=f"/{name}"))


def load_procrastinate() -> Any | None:
    """The procrastinate module, or None when it isn't installed."""
    try:
        return importlib.import_module("procrastinate")
    except ImportError:
        return None


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of `values`, interpolated."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- option 1: the worker process ------------------------------------------------------------


class OwnWorker:
    """One worker process of option 1: `loops` claim loops, a heartbeat and a listener."""

    def __init__(self, dsn: str, owner: str, loops: int, batch: int, reports: Queue[Report]):
        self.dsn = dsn
        self.owner = owner
        self.loops = loops
        self.batch = batch
        self.reports = reports
        self.pid = os.getpid()
        self.held: dict[uuid.UUID, int] = {}  # run id -> attempt, for the heartbeat
        self.lost: set[tuple[uuid.UUID, int]] = set()
        self.wakes: list[asyncio.Event] = []

    def _notified(self, *_: object) -> None:
        for wake in self.wakes:
            wake.set()

    async def run(self) -> None:
        """Claim and run jobs until SIGTERM."""
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        listener = await asyncpg.connect(self.dsn)
        await listener.add_listener(CHANNEL, self._notified)
        beat = await asyncpg.connect(self.dsn)
        conns = [await asyncpg.connect(self.dsn) for _ in range(self.loops)]
        self.wakes = [asyncio.Event() for _ in conns]
        tasks = [asyncio.create_task(self._heartbeat(beat))]
        tasks += [
            asyncio.create_task(self._loop(c, w)) for c, w in zip(conns, self.wakes, strict=True)
        ]
        self.reports.put(("ready", self.owner, self.pid, time.time(), 0))
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in [listener, beat, *conns]:
            await conn.close()

    async def _loop(self, conn: Any, wake: asyncio.Event) -> None:
        while True:
            wake.clear()  # a NOTIFY during the claim below sets it again: no wake-up is lost
            rows = await conn.fetch(CLAIM, self.owner, self.batch, LEASE_S)
            if not rows:
                expiry: float | None = await conn.fetchval(NEXT_EXPIRY)
                timeout = POLL_S if expiry is None else min(POLL_S, max(expiry, 0.0) + 0.05)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                continue
            for row in rows:
                self.held[row["id"]] = row["attempt"]
            for row in rows:
                await self._execute(conn, row["id"], row["attempt"], json.loads(row["state"]))

    async def _execute(self, conn: Any, run_id: uuid.UUID, attempt: int, spec: Any) -> None:
        key = str(run_id)
        self.reports.put(("start", key, self.pid, time.time(), attempt))
        outcome = "done"
        for seq in range(int(spec.get("steps", 0))):
            if (run_id, attempt) in self.lost:
                outcome = "lost"  # the heartbeat found the run claimed by someone else
                break
            status: str = await conn.execute(STEP_FENCED, run_id, attempt, seq, self.pid, "{}")
            if status != "INSERT 0 1":
                outcome = "fenced"  # the write found a newer attempt: stop here
                break
            await asyncio.sleep(float(spec.get("step_ms", 0)) / 1000)
        if outcome == "done":
            status = await conn.execute(COMPLETE, run_id, attempt)
            if status != "UPDATE 1":
                outcome = "fenced"
        if self.held.get(run_id) == attempt:
            del self.held[run_id]
        self.reports.put((outcome, key, self.pid, time.time(), attempt))

    async def _heartbeat(self, conn: Any) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            held = dict(self.held)
            if not held:
                continue
            rows = await conn.fetch(HEARTBEAT, list(held), list(held.values()), LEASE_S)
            kept = {row["id"] for row in rows}
            self.lost.update((i, a) for i, a in held.items() if i not in kept)


def own_worker_process(dsn: str, loops: int, batch: int, reports: Queue[Report]) -> None:
    """Entry point of one option-1 worker process."""
    owner = f"{platform.node()}:{os.getpid()}"
    asyncio.run(OwnWorker(dsn, owner, loops, batch, reports).run())


# -- option 2: the procrastinate worker process ----------------------------------------------


def procrastinate_app(dsn: str, reports: Queue[Report] | None, retry_stalled: bool) -> Any:
    """A procrastinate App on `dsn` with the bench's tasks, named so any process finds them.

    With `retry_stalled`, the periodic task of procrastinate's "Retry stalled jobs" how-to,
    every second instead of every ten minutes.
    """
    procrastinate = importlib.import_module("procrastinate")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    pid = os.getpid()

    def report(kind: str, key: str, attempt: int) -> None:
        if reports is not None:
            reports.put((kind, key, pid, time.time(), attempt))

    async def trivial(key: str) -> None:
        report("start", key, 0)

    async def slow(context: Any, key: str, steps: int, step_ms: int) -> None:
        job = context.job
        report("start", key, job.attempts)
        for seq in range(steps):
            await app.connector.execute_query_async(PQ_STEP, job_id=job.id, pid=pid, seq=seq)
            await asyncio.sleep(step_ms / 1000)
        report("done", key, job.attempts)

    async def retry_stalled_jobs(context: Any, timestamp: int) -> None:
        for job in await app.job_manager.get_stalled_jobs():
            await app.job_manager.retry_job(job)
            report("retried", str(job.id), job.attempts)

    app.task(name="bench_trivial", queue=QUEUE)(trivial)
    app.task(name="bench_slow", queue=QUEUE, pass_context=True)(slow)
    if retry_stalled:
        task = app.task(
            name="bench_retry_stalled",
            queue=QUEUE,
            queueing_lock="retry_stalled_jobs",
            pass_context=True,
        )(retry_stalled_jobs)
        app.periodic(cron="* * * * * */1", periodic_id="retry")(task)
    return app


async def _procrastinate_worker(
    dsn: str, concurrency: int, reports: Queue[Report], retry_stalled: bool
) -> None:
    app = procrastinate_app(dsn, reports, retry_stalled)
    async with app.open_async():
        await app.run_worker_async(queues=[QUEUE], concurrency=concurrency)


def procrastinate_worker_process(
    dsn: str, concurrency: int, reports: Queue[Report], retry_stalled: bool
) -> None:
    """Entry point of one procrastinate worker process (defaults: 10 s heartbeat, 5 s poll)."""
    asyncio.run(_procrastinate_worker(dsn, concurrency, reports, retry_stalled))


# -- the parent --------------------------------------------------------------------------------


class Inbox:
    """The workers' reports, moved from a multiprocessing queue onto the event loop."""

    def __init__(self, reports: Queue[Report]) -> None:
        self.reports = reports
        self.loop = asyncio.get_running_loop()
        self.items: asyncio.Queue[Report] = asyncio.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                item = self.reports.get()
            except (EOFError, OSError):
                return
            if item[0] == "quit":
                return
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)

    def drain(self) -> None:
        """Forget what came so far."""
        while not self.items.empty():
            self.items.get_nowait()

    async def next(self, kinds: set[str], timeout: float, key: str | None = None) -> Report:
        """The next report of one of `kinds` (and of `key`, when given)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {sorted(kinds)} report in {timeout:.0f} s")
            item = await asyncio.wait_for(self.items.get(), left)
            if item[0] in kinds and (key is None or item[1] == key):
                return item

    def close(self) -> None:
        """Stop the pump thread."""
        self.reports.put(("quit", "", 0, 0.0, 0))
        self.thread.join(5)


class Option:
    """What the two options share: workers, enqueueing, and telling when all is done."""

    name = ""

    def __init__(self, dsn: str, reports: Queue[Report], inbox: Inbox) -> None:
        self.dsn = dsn
        self.reports = reports
        self.inbox = inbox
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess] = []

    async def start(self, procs: int, loops: int, batch: int = 1, crash: bool = False) -> None:
        """Start `procs` worker processes of `loops` loops each and wait until they listen."""
        raise NotImplementedError

    async def enqueue(self, keys: list[str], spec: dict[str, int] | None = None) -> None:
        """Enqueue one job per key, in one statement."""
        raise NotImplementedError

    async def pending(self) -> int:
        """How many jobs are not finished yet."""
        raise NotImplementedError

    async def reset(self) -> None:
        """Empty the job tables."""
        raise NotImplementedError

    def keys(self, n: int) -> list[str]:
        """Fresh job keys."""
        return [str(uuid.uuid4()) for _ in range(n)]

    def stop(self) -> None:
        """Stop the workers (resuming any that are paused), killing the ones that linger."""
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs = []


class OwnClaim(Option):
    """Option 1 from the parent's side."""

    name = "own claim"

    def __init__(self, dsn: str, reports: Queue[Report], inbox: Inbox, conn: Any) -> None:
        super().__init__(dsn, reports, inbox)
        self.conn = conn

    async def start(self, procs: int, loops: int, batch: int = 1, crash: bool = False) -> None:
        """Start the worker processes; each reports `ready` once it LISTENs."""
        self.inbox.drain()
        for _ in range(procs):
            proc = self.ctx.Process(
                target=own_worker_process, args=(self.dsn, loops, batch, self.reports)
            )
            proc.start()
            self.procs.append(proc)
        for _ in range(procs):
            await self.inbox.next({"ready"}, 60)
        await asyncio.sleep(0.3)  # their first claim (empty) is over

    async def enqueue(self, keys: list[str], spec: dict[str, int] | None = None) -> None:
        """One INSERT, with one NOTIFY per run."""
        ids = [uuid.UUID(k) for k in keys]
        await self.conn.fetchval(ENQUEUE, ids, json.dumps(spec or {}))

    async def pending(self) -> int:
        """Runs not `done`."""
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM workflow_run WHERE status <> 'done'"
        )
        return count

    async def reset(self) -> None:
        """Empty workflow_run and run_step."""
        await self.conn.execute("TRUNCATE workflow_run, run_step")


class Procrastinate(Option):
    """Option 2 from the parent's side: defers through procrastinate's own App."""

    name = "procrastinate"

    def __init__(self, dsn: str, reports: Queue[Report], inbox: Inbox, conn: Any) -> None:
        super().__init__(dsn, reports, inbox)
        self.conn = conn
        self.app: Any = None
        self.count = 0

    async def open(self) -> None:
        """Open the producer's App and apply procrastinate's schema."""
        self.app = procrastinate_app(self.dsn, None, retry_stalled=False)
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        """Close the producer's App."""
        if self.app is not None:
            await self.app.close_async()

    async def start(self, procs: int, loops: int, batch: int = 1, crash: bool = False) -> None:
        """Start the workers; wait until each LISTENs and has done its first fetch."""
        self.inbox.drain()
        for _ in range(procs):
            proc = self.ctx.Process(
                target=procrastinate_worker_process, args=(self.dsn, loops, self.reports, crash)
            )
            proc.start()
            self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listening = await self.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            )
            workers = await self.conn.fetchval("SELECT count(*) FROM procrastinate_workers")
            if listening >= procs and workers >= procs:
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("procrastinate workers did not start")
        await asyncio.sleep(0.5)

    def keys(self, n: int) -> list[str]:
        """Keys `p1`, `p2`...: procrastinate gives the job id only once deferred."""
        self.count += n
        return [f"p{i}" for i in range(self.count - n, self.count)]

    async def enqueue(self, keys: list[str], spec: dict[str, int] | None = None) -> None:
        """`defer_async` for one job, `batch_defer_async` for more."""
        name = "bench_slow" if spec else "bench_trivial"
        deferrer = self.app.configure_task(name, queue=QUEUE)
        if len(keys) == 1:
            await deferrer.defer_async(key=keys[0], **(spec or {}))
        else:
            await deferrer.batch_defer_async(*({"key": k, **(spec or {})} for k in keys))

    async def pending(self) -> int:
        """Jobs in `todo` or `doing`."""
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
        return count

    async def reset(self) -> None:
        """Empty procrastinate's job tables and pq_step."""
        await self.conn.execute(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, "
            "pq_step"
        )


async def measure_latency(option: Option, jobs: int) -> list[float]:
    """Enqueue -> start, in ms, one job at a time on idle workers."""
    samples: list[float] = []
    for _ in range(jobs):
        (key,) = option.keys(1)
        sent = time.time()
        await option.enqueue([key])
        started = await option.inbox.next({"start"}, 30, key)
        samples.append((started[3] - sent) * 1000)
        await asyncio.sleep(0.02)  # the job ends and the worker goes back to waiting
    return samples


async def measure_throughput(option: Option, jobs: int) -> float:
    """Trivial jobs claimed and completed per second, all enqueued in one statement."""
    keys = option.keys(jobs)
    waiting = set(keys)
    sent = time.time()
    await option.enqueue(keys)
    while waiting:
        waiting.discard((await option.inbox.next({"start"}, 120))[1])
    while await option.pending():
        await asyncio.sleep(0.002)
    return jobs / (time.time() - sent)


async def speed(
    option: Option, shapes: list[tuple[int, int]], batches: list[int], latency_jobs: int, jobs: int
) -> list[list[str]]:
    """Latency and throughput rows for each worker shape."""
    rows: list[list[str]] = []
    for procs, loops in shapes:
        for batch in batches if isinstance(option, OwnClaim) else [1]:
            await option.reset()
            await option.start(procs, loops, batch)
            try:
                lat = "", ""
                if batch == 1:
                    samples = await measure_latency(option, latency_jobs)
                    lat = f"{percentile(samples, 50):.2f}", f"{percentile(samples, 99):.2f}"
                rate = await measure_throughput(option, jobs)
            finally:
                option.stop()
            name = option.name + (f" (batch {batch})" if isinstance(option, OwnClaim) else "")
            rows.append([name, f"{procs} proc{'s' if procs > 1 else ''} x {loops}", *lat])
            rows[-1].append(f"{rate:,.0f}")
            print(f"  ... {' | '.join(rows[-1])}", file=sys.stderr, flush=True)
    return rows


async def fencing_cost(conn: Any, steps: int) -> list[list[str]]:
    """Per-step cost of plain and fenced inserts on one held connection, in us.

    Each insert is its own transaction (autocommit), once with synchronous_commit on (a
    WAL flush per step, as a `sync` run pays) and once off (the round trip and the work
    alone).  The variants take turns insert by insert, so the machine's noise falls on all
    of them alike; the table gives each one's median.
    """
    run_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO workflow_run (id, status, owner, attempt, lease_expires_at) "
        "VALUES ($1, 'running', 'bench', 1, now() + interval '1 hour')",
        run_id,
    )
    variants = {
        "plain INSERT ... VALUES": STEP_PLAIN,
        "fenced INSERT ... SELECT ... FOR KEY SHARE": STEP_FENCED,
        "fenced INSERT ... SELECT ... FOR SHARE": STEP_FENCED_SHARE,
    }
    names = list(variants)
    seq = 0
    medians: dict[tuple[str, str], float] = {}
    for commit in ("on", "off"):
        await conn.execute(f"SET synchronous_commit = {commit}")
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(steps + 20):  # the first 20 warm up
            for name in names[i % 3 :] + names[: i % 3]:
                started = time.perf_counter()
                await conn.execute(variants[name], run_id, 1, seq, 0, "{}")
                if i >= 20:
                    samples[name].append((time.perf_counter() - started) * 1e6)
                seq += 1
        for name in names:
            medians[name, commit] = statistics.median(samples[name])
    await conn.execute("RESET synchronous_commit")
    rows = []
    for name in names:
        row = [name]
        for commit in ("on", "off"):
            us, plain = medians[name, commit], medians[names[0], commit]
            row.append(f"{us:.0f}" if name == names[0] else f"{us:.0f} ({us - plain:+.0f})")
        rows.append(row)
    return rows


async def fence_checks(dsn: str) -> list[list[str]]:
    """A stale owner's fenced write racing a new claim (or a plain UPDATE) of its run.

    The bump runs first and holds its transaction open; the stale write then starts, and
    the bump commits 0.3 s later.  A fence holds when the write inserts nothing.
    """
    bump_claim = CLAIM
    bump_plain = "UPDATE workflow_run SET attempt = attempt + 1, owner = $1 WHERE status = $2"
    cases = [
        ("claim query", bump_claim, STEP_FENCED, "FOR KEY SHARE"),
        ("plain UPDATE of attempt", bump_plain, STEP_FENCED, "FOR KEY SHARE"),
        ("plain UPDATE of attempt", bump_plain, STEP_FENCED_SHARE, "FOR SHARE"),
    ]
    rows = []
    a = await asyncpg.connect(dsn)
    b = await asyncpg.connect(dsn)
    try:
        for bump_name, bump, write, lock in cases:
            await a.execute("TRUNCATE workflow_run, run_step")
            run_id = uuid.uuid4()
            await a.execute(
                "INSERT INTO workflow_run (id, status, owner, attempt, lease_expires_at) "
                "VALUES ($1, 'running', 'old', 1, now() - interval '1 second')",
                run_id,
            )
            transaction = a.transaction()
            await transaction.start()
            if bump is CLAIM:
                await a.fetch(bump, "new", 1, LEASE_S)
            else:
                await a.execute(bump, "new", "running")
            stale = asyncio.create_task(b.execute(write, run_id, 1, 0, 0, "{}"))
            await asyncio.sleep(0.3)
            waited = not stale.done()
            await transaction.commit()
            status = await stale
            verdict = "fenced" if status == "INSERT 0 0" else "NOT fenced: the stale row went in"
            waits = "waited for the bump" if waited else "did not wait"
            rows.append([f"{bump_name} vs {lock}", f"{status}, {waits}", verdict])
    finally:
        await a.close()
        await b.close()
    return rows


async def crash(option: Option, conn: Any) -> list[list[str]]:
    """SIGKILL a worker mid-job, then SIGSTOP one past its heartbeat and resume it."""
    rows = []
    # A worker killed mid-job: how long until the other one runs it again?
    await option.reset()
    await option.start(2, 1, crash=True)
    try:
        (key,) = option.keys(1)
        await option.enqueue([key], {"steps": 600, "step_ms": 100})
        first = await option.inbox.next({"start"}, 30, key)
        await asyncio.sleep(1.0)
        killed = time.time()
        os.kill(first[2], signal.SIGKILL)
        again = await option.inbox.next({"start"}, 180, key)
        rows.append(
            [
                option.name,
                "SIGKILL mid-job",
                f"run again by another worker after {again[3] - killed:.1f} s "
                f"(attempt {first[4]} -> {again[4]})",
            ]
        )
    finally:
        option.stop()

    # A worker paused past its heartbeat, then resumed: does it go on writing?
    await option.reset()
    await option.start(2, 1, crash=True)
    try:
        (key,) = option.keys(1)
        await option.enqueue([key], {"steps": 80, "step_ms": 100})
        first = await option.inbox.next({"start"}, 30, key)
        old_pid = first[2]
        await asyncio.sleep(1.0)
        os.kill(old_pid, signal.SIGSTOP)
        paused = time.time()
        again = await option.inbox.next({"start"}, 180, key)
        table = "run_step" if isinstance(option, OwnClaim) else "pq_step"
        count = f"SELECT count(*) FROM {table} WHERE pid = $1"
        before = await conn.fetchval(count, old_pid)
        os.kill(old_pid, signal.SIGCONT)
        ends: list[str] = []  # in the order they came
        with contextlib.suppress(TimeoutError):
            while len(ends) < 2:
                end = await option.inbox.next({"done", "fenced", "lost"}, 20, key)
                ends.append(f"{'old' if end[2] == old_pid else 'new'} worker '{end[0]}'")
        await asyncio.sleep(1.0)
        after = await conn.fetchval(count, old_pid)
        if isinstance(option, OwnClaim):
            final = await conn.fetchval("SELECT status FROM workflow_run")
        else:
            final = await conn.fetchval("SELECT status::text FROM procrastinate_jobs")
        rows.append(
            [
                option.name,
                "SIGSTOP past heartbeat, then SIGCONT",
                f"taken over after {again[3] - paused:.1f} s; once resumed the old worker "
                f"wrote {after - before} more step rows; ends: {', then '.join(ends)}; "
                f"job status: {final}",
            ]
        )
    finally:
        option.stop()
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    """Make the database, run every part, print the tables, drop the database."""
    shapes = [
        (int(p), int(n)) for p, n in (s.split("x") for s in args.shapes.split(",") if s.strip())
    ]
    batches = [int(b) for b in args.batches.split(",")]
    procrastinate = load_procrastinate()
    name = f"flowc_bench_claims_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = database_url(ADMIN, name)
    ctx = multiprocessing.get_context("spawn")
    reports: Queue[Report] = ctx.Queue()
    inbox = Inbox(reports)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        server = await conn.fetchval("SHOW server_version")
        versions = f"Python {platform.python_version()}, PostgreSQL {server}, {os.cpu_count()} CPUs"
        if procrastinate is not None:
            versions += f", procrastinate {importlib.metadata.version('procrastinate')}"
        print(f"# bench/claims.py: {versions}\n")

        own = OwnClaim(dsn, reports, inbox, conn)
        speed_rows = await speed(own, shapes, batches, args.latency_jobs, args.jobs)
        pq: Procrastinate | None = None
        if procrastinate is not None:
            pq = Procrastinate(dsn, reports, inbox, conn)
            await pq.open()
            speed_rows += await speed(pq, shapes, [1], args.latency_jobs, args.jobs)
        print(
            f"Latency: enqueue -> job started on an idle worker, {args.latency_jobs} jobs one "
            f"at a time (ms).  Throughput: {args.jobs:,} trivial jobs enqueued at once, "
            "claimed + completed (jobs/s)."
        )
        print(table(["option", "workers", "p50 ms", "p99 ms", "jobs/s"], speed_rows))
        if procrastinate is None:
            print(
                "\nprocrastinate: skipped (not installed). To compare, in a scratch venv: "
                "pip install procrastinate==3.10.0 asyncpg==0.32.0 'psycopg[binary]', then "
                "run this file with that venv's python."
            )

        await own.reset()
        cost = await fencing_cost(conn, args.steps)
        print(
            f"\nStep write on one held connection, one transaction each, median of "
            f"{args.steps:,} per variant (us/step; in brackets: against plain):"
        )
        print(table(["write", "synchronous_commit on", "off"], cost))
        print("\nFence checks, a stale owner's write racing a bump of its run's attempt:")
        print(table(["race", "stale write", "verdict"], await fence_checks(dsn)))

        if args.crash:
            crash_rows = await crash(own, conn)
            if pq is not None:
                crash_rows += await crash(pq, conn)
            print(
                f"\nCrashes (2 worker processes; own claim: lease {LEASE_S:.0f} s, heartbeat "
                f"{HEARTBEAT_S:.0f} s; procrastinate: defaults, heartbeat 10 s, stalled after "
                "30 s, retry_stalled_jobs every 1 s):"
            )
            print(table(["option", "what", "outcome"], crash_rows))
        if pq is not None:
            await pq.close()
    finally:
        await conn.close()
        inbox.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shapes", default=SHAPES, help="PROCSxLOOPS,... (default %(default)s)")
    parser.add_argument("--batches", default="1,8", help="own claim's LIMIT values to try")
    parser.add_argument("--latency-jobs", type=int, default=LATENCY_JOBS)
    parser.add_argument("--jobs", type=int, default=THROUGHPUT_JOBS)
    parser.add_argument("--steps", type=int, default=1_000, help="inserts per fencing variant")
    parser.add_argument("--crash", action="store_true", help="add the SIGKILL/SIGSTOP runs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
