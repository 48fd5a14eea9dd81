"""The run log: group commit keeps every run's steps in order and gapless; fences hold.

Many runs write at once through a few connections; each run's steps reach the table
exactly once, in order, with no gap at any moment.  A write by a process whose claim was
taken over (another `attempt`) changes nothing and fails with `LeaseLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowc.runtime import REGISTRY, Registry
from flowc.runtime.events import WaitFor
from flowc.server.pgfence import writer_name
from flowc.server.pglog import PostgresRunLog
from flowc.server.runlog import (
    NOTIFY_EVERY,
    Claimed,
    Ending,
    FenceOutFailed,
    Item,
    LeaseLost,
    RunLog,
    StepRow,
    fold,
    run_log_for,
)
from flowc.server.runs import Durability, RunService
from tests.server.conftest import WAIT, create_graph, define, read_run, replay, service_on, until
from tests.server.databases import database_url, postgres_url

__all__ = ["database_url", "postgres_url"]

pytestmark = pytest.mark.asyncio

#: Steps of each long run below.
STEPS = 130
EXPECTED_STEPS = [(k, "tick", {"n": k}) for k in range(1, STEPS + 1)]


def ticks(tool: str) -> str:
    """A flow that runs `tool` until `n` reaches `STEPS`."""
    return f"set max_steps = 200\nnode tick = {tool}\ntick ? n < {STEPS} -> tick : end\n"


@pytest.mark.parametrize("durability", ["sync", "async"])
async def test_concurrent_runs_share_commits_and_keep_their_order(
    database_url: str, durability: Durability, loop_errors: list[dict[str, Any]]
) -> None:
    registry = Registry()
    gaps: list[tuple[uuid.UUID, list[int]]] = []
    runs: list[uuid.UUID] = []

    async def tick(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # as a tool doing I/O would: writes land meanwhile
        n: int = state.get("n", 0)
        if n % 25 == 0 and runs:  # look at the table now and then: never a gap
            for run_id in list(runs):
                seqs = [row.seq for row in await service.log.steps_after(run_id, 0)]
                if seqs != list(range(1, len(seqs) + 1)):
                    gaps.append((run_id, seqs))
        return {"n": n + 1}

    registry.add(tick)
    async with service_on(database_url, registry, snapshot_steps=40) as service:
        definition = await define(service.db, ticks("tick"), registry)
        for _ in range(12):
            created = await service.start(definition=definition, input={}, durability=durability)
            runs.append(created.run_id)
        results = await asyncio.wait_for(
            asyncio.gather(*(service.result(run_id) for run_id in runs)), WAIT
        )
        recorded = [await read_run(service.db, run_id) for run_id in runs]

    assert {r.status for r in results} == {"succeeded"}
    assert gaps == []
    for run, steps in recorded:
        assert [(s.seq, s.node, s.delta) for s in steps] == EXPECTED_STEPS
        assert (run.status, run.step, run.current_node, run.state) == (
            "succeeded",
            STEPS,
            "tick",
            {"n": STEPS},
        )
        assert (run.owner, run.lease_expires_at, run.attempt) == (None, None, 1)
    assert loop_errors == []


async def test_the_exact_state_is_the_snapshot_and_the_steps_after_it(database_url: str) -> None:
    registry = Registry()
    gate = asyncio.Event()

    async def tick(state: dict[str, Any]) -> dict[str, Any]:
        n: int = state.get("n", 0)
        if n == 57:
            gate.set()
            await asyncio.sleep(3600)  # held here until the service closes
        return {"n": n + 1, f"k{n % 3}": n}

    registry.add(tick)
    async with service_on(database_url, registry, snapshot_steps=20) as service:
        service.shutdown_grace = 0
        definition = await define(service.db, ticks("tick"), registry)
        created = await service.start(definition=definition, input={"x": 1}, durability="sync")
        await asyncio.wait_for(gate.wait(), WAIT)
        row, steps = await read_run(service.db, created.run_id)
        exact = await service.state(created.run_id)
    assert exact is not None
    # The row holds the snapshot after step 40; the steps after it make the state.
    assert row.step == 40
    assert exact["state"] == fold(row.state, [s.delta for s in steps if s.seq > 40])
    assert exact["state"] == replay({"x": 1}, [{"delta": s.delta} for s in steps])
    assert (exact["step"], exact["current_node"], exact["state"]["n"]) == (57, "tick", 57)
    assert exact["owner"] and exact["attempt"] == 1


@asynccontextmanager
async def claimed_by_first(
    database_url: str, runs: int
) -> AsyncIterator[tuple[RunService, list[Claimed], RunLog, RunLog]]:
    """`runs` queued runs of `one -> end`, claimed by a first owner whose 0.3 s lease then
    runs out; the service, the first owner's claims, and a second owner that may claim them."""
    registry = Registry()

    def one(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": 1}

    registry.add(one)
    async with service_on(database_url, registry, worker=False) as service:
        definition = await define(service.db, "one -> end\n", registry)
        for _ in range(runs):
            created = await service.start(definition=definition, input={}, durability="sync")
            assert created.status == "queued"
        first = run_log_for(service.db, owner="first:1", lease_seconds=0.3)
        second = run_log_for(service.db, owner="second:2", lease_seconds=30)
        await first.open()
        await second.open()
        try:
            mine = await first.claim(runs)
            assert len(mine) == runs
            yield service, mine, first, second
        finally:
            await first.close()
            await second.close()


@asynccontextmanager
async def two_owners(
    database_url: str,
) -> AsyncIterator[tuple[RunService, Claimed, RunLog, RunLog]]:
    """`claimed_by_first` with one run: the service, its claim, and the two owners."""
    async with claimed_by_first(database_url, 1) as (service, (mine,), first, second):
        yield service, mine, first, second


async def test_a_write_under_a_lost_claim_changes_nothing(database_url: str) -> None:
    async with two_owners(database_url) as (service, mine, first, second):
        at = datetime.now(timezone.utc)
        await first.append(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        await asyncio.sleep(0.5)  # the lease runs out: the first owner went silent
        (taken,) = await second.claim(1)
        assert (taken.run_id, taken.attempt) == (mine.run_id, mine.attempt + 1)
        # The first owner wakes up and writes: nothing changes, and it is told why.
        with pytest.raises(LeaseLost):
            await first.append(mine.run_id, mine.attempt, StepRow(2, "one", {}, at, at))
        with pytest.raises(LeaseLost):
            await first.end(mine.run_id, mine.attempt, Ending("failed", {}, 1, "one", None))
        assert await first.heartbeat({mine.run_id: mine.attempt}) == {}
        assert await second.heartbeat({taken.run_id: taken.attempt}) == {taken.run_id: False}
        ending = Ending("succeeded", {"n": 1}, 1, "one", None)
        await second.end(taken.run_id, taken.attempt, ending)
        run, steps = await read_run(service.db, mine.run_id)
    assert (run.status, run.attempt, run.owner) == ("succeeded", 2, None)
    assert [(s.seq, s.node) for s in steps] == [(1, "one")]


async def test_a_step_its_owner_writes_again_is_taken_once(database_url: str) -> None:
    # A commit whose answer was lost is written again: the row is there already, and the
    # owner still holds the run, so the write is taken and changes nothing.  The same row
    # under a lost claim is refused: "already there" must not pass for "still yours".
    async with two_owners(database_url) as (service, mine, first, second):
        at = datetime.now(timezone.utc)
        row = StepRow(1, "one", {"n": 1}, at, at)
        await first.record(mine.run_id, mine.attempt, row)
        await first.record(mine.run_id, mine.attempt, row._replace(delta={"n": 2}))
        await asyncio.sleep(0.5)
        (taken,) = await second.claim(1)
        with pytest.raises(LeaseLost):
            await first.record(mine.run_id, mine.attempt, row)
        with pytest.raises(LeaseLost):
            await first.append(mine.run_id, mine.attempt, row)
        await second.end(taken.run_id, taken.attempt, Ending("succeeded", {}, 1, "one", None))
        _, steps = await read_run(service.db, mine.run_id)
    assert [(s.seq, s.node, s.delta) for s in steps] == [(1, "one", {"n": 1})]


async def test_a_step_with_the_runs_snapshot_is_written_once_and_fenced(
    database_url: str,
) -> None:
    # Every `snapshot_steps`-th step carries the run's state, written with it (on
    # PostgreSQL, in its statement): taken once when written again, and under a lost claim
    # neither the step nor the snapshot changes anything.
    async with two_owners(database_url) as (service, mine, first, second):
        at = datetime.now(timezone.utc)
        row = StepRow(1, "one", {"n": 1}, at, at)
        await first.record(mine.run_id, mine.attempt, row, {"n": 1, "k": "v"})
        await first.record(mine.run_id, mine.attempt, row, {"n": 1, "k": "v"})  # again
        run, steps = await read_run(service.db, mine.run_id)
        assert (run.state, run.step, run.current_node) == ({"n": 1, "k": "v"}, 1, "one")
        await asyncio.sleep(0.5)
        (taken,) = await second.claim(1)
        late = StepRow(2, "two", {"n": 2}, at, at)
        with pytest.raises(LeaseLost):
            await first.record(mine.run_id, mine.attempt, late, {"n": 2, "k": "v"})
        with pytest.raises(LeaseLost):
            await first.append(mine.run_id, mine.attempt, late, {"n": 2, "k": "v"})
        run, steps = await read_run(service.db, mine.run_id)
        assert (run.state, run.step, run.current_node) == ({"n": 1, "k": "v"}, 1, "one")
        await second.end(taken.run_id, taken.attempt, Ending("succeeded", {}, 1, "one", None))
    assert [(s.seq, s.node, s.delta) for s in steps] == [(1, "one", {"n": 1})]


async def test_snapshots_carried_by_a_batchs_steps_follow_them(database_url: str) -> None:
    # Many runs' steps in one statement, some carrying their run's snapshot: each run's row
    # gets the state after its own step, and the runs' ends still come after.
    async with claimed_by_first(database_url, 3) as (service, mine, first, _):
        at = datetime.now(timezone.utc)
        writes = []
        for index, claim in enumerate(mine):
            for seq in (1, 2):
                snapshot = {"n": seq, "run": index} if seq == 1 or index == 0 else None
                row = StepRow(seq, "one", {"n": seq}, at, at)
                writes.append(first.append(claim.run_id, claim.attempt, row, snapshot))
        await asyncio.wait_for(asyncio.gather(*writes), WAIT)
        rows = [await read_run(service.db, c.run_id) for c in mine]
    assert [(run.state, run.step) for run, _ in rows] == [
        ({"n": 2, "run": 0}, 2),
        ({"n": 1, "run": 1}, 1),
        ({"n": 1, "run": 2}, 1),
    ]
    assert [[s.seq for s in steps] for _, steps in rows] == [[1, 2]] * 3


async def writers_of(url: str, owner: str) -> int:
    """How many connections named as `owner`'s writers the database has now."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            writer_name(owner),
        )
        return count
    finally:
        await connection.close()


async def test_a_takeover_ends_the_silent_owners_writer_connections(postgres_url: str) -> None:
    # After its first (fenced) step, a claim's steps are plain inserts on the connection
    # that wrote it; the takeover ends that connection before it commits, so the old owner
    # can write nothing more, and the run's steps are the new owner's to write.
    async with two_owners(postgres_url) as (service, mine, first, second):
        at = datetime.now(timezone.utc)
        await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        await first.record(mine.run_id, mine.attempt, StepRow(2, "one", {"n": 2}, at, at))
        assert await writers_of(postgres_url, "first:1") >= 1
        await asyncio.sleep(0.5)  # the first owner went silent
        (taken,) = await second.claim(1)
        assert taken.attempt == mine.attempt + 1
        assert await writers_of(postgres_url, "first:1") == 0
        assert await writers_of(postgres_url, "second:2") == 0  # none opened yet
        with pytest.raises(LeaseLost):
            await first.record(mine.run_id, mine.attempt, StepRow(3, "one", {"old": 1}, at, at))
        await second.record(taken.run_id, taken.attempt, StepRow(3, "one", {"n": 3}, at, at))
        await second.end(taken.run_id, taken.attempt, Ending("succeeded", {}, 3, "one", None))
        _, steps = await read_run(service.db, mine.run_id)
    assert [(s.seq, s.delta) for s in steps] == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]


async def batch(log: RunLog, claims: list[Claimed], seq: int) -> None:
    """Step `seq` of each claimed run, queued at once: one batch, one statement."""
    at = datetime.now(timezone.utc)
    await asyncio.gather(
        *(log.append(c.run_id, c.attempt, StepRow(seq, "one", {"n": seq}, at, at)) for c in claims)
    )


async def test_a_takeover_ends_the_connection_of_held_batches_too(postgres_url: str) -> None:
    async with claimed_by_first(postgres_url, 3) as (service, mine, first, second):
        await batch(first, mine, 1)  # fenced by the statement: the claims are held after
        await batch(first, mine, 2)  # fenced by the connection
        await asyncio.sleep(0.5)  # the first owner went silent
        taken = await second.claim(3)
        assert {c.run_id for c in taken} == {c.run_id for c in mine}
        at = datetime.now(timezone.utc)
        late = [first.append(c.run_id, c.attempt, StepRow(3, "one", {}, at, at)) for c in mine]
        for write in late:
            with pytest.raises(LeaseLost):
                await asyncio.wait_for(write, WAIT)
        logs = [await read_run(service.db, c.run_id) for c in mine]
    assert [[s.seq for s in steps] for _, steps in logs] == [[1, 2]] * 3


async def test_later_batches_of_held_claims_are_fenced_by_the_connection(
    postgres_url: str,
) -> None:
    # As for a lone step: once each run of a batch is held on the connection, the batch is
    # not checked against the runs' rows.  (A takeover never leaves such a connection
    # alive: the test above.)
    import asyncpg

    async with claimed_by_first(postgres_url, 3) as (service, mine, first, _):
        await batch(first, mine, 1)
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("UPDATE workflow_run SET attempt = attempt + 1")
        finally:
            await admin.close()
        await batch(first, mine, 2)
        logs = [await read_run(service.db, c.run_id) for c in mine]
    assert [[s.seq for s in steps] for _, steps in logs] == [[1, 2]] * 3


async def test_writer_connections_are_named_for_their_owner_whatever_the_url_says(
    postgres_url: str,
) -> None:
    # An operator's `application_name` in DATABASE_URL must not hide the writers from a
    # takeover: the pool's connections may carry it, the writers' never do.
    log = PostgresRunLog(
        postgres_url + "?application_name=ops-dashboard", owner="named:7", lease_seconds=30
    )
    await log.open()
    try:
        connection = await log._connect_writer()
        try:
            assert await connection.fetchval("SHOW application_name") == "flowc writer named:7"
        finally:
            await connection.close()
    finally:
        await log.close()


async def test_later_steps_of_a_claim_on_a_connection_are_fenced_by_the_connection(
    postgres_url: str,
) -> None:
    # What the speed of a lone run rests on, seen from inside: once a claim's step was
    # written fenced on a connection, its later steps there are not checked against the
    # run's row.  (A takeover never leaves such a connection alive: the test above.)
    import asyncpg

    async with two_owners(postgres_url) as (service, mine, first, _):
        at = datetime.now(timezone.utc)
        await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {}, at, at))
        admin = await asyncpg.connect(postgres_url)
        try:
            # The epoch moves on behind the log's back, with no takeover to end connections.
            await admin.execute(
                "UPDATE workflow_run SET attempt = attempt + 1 WHERE id = $1", mine.run_id
            )
        finally:
            await admin.close()
        await first.record(mine.run_id, mine.attempt, StepRow(2, "one", {}, at, at))
        _, steps = await read_run(service.db, mine.run_id)
    assert [s.seq for s in steps] == [1, 2]


async def test_a_takeover_that_cannot_end_the_old_connections_changes_nothing(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A role that may not end the old owner's connections (a superuser's, here: the tests'
    # role is one) must not take its runs, nor cancel them, and says why; the other runs
    # it may claim are not held up by them.
    import asyncpg

    role, password = f"flowc_weak_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        async with two_owners(postgres_url) as (_service, mine, first, _):
            await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
            at = datetime.now(timezone.utc)
            await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {}, at, at))
            await asyncio.sleep(0.5)
            scheme, rest = postgres_url.split("://", 1)
            weak_url = f"{scheme}://{role}:{password}@{rest.split('@', 1)[1]}"
            weak = PostgresRunLog(weak_url, owner="weak:3", lease_seconds=30)
            await weak.open()
            try:
                assert await weak.claim(5) == []
                with pytest.raises(FenceOutFailed, match="same role"):
                    await weak.cancel(mine.run_id)
                # A run queued after it (so behind it in the claim's order) is taken.
                queued = uuid.uuid4()
                await admin.execute(
                    "INSERT INTO workflow_run (id, definition_id, status, durability, input, "
                    "state, step, created_at, updated_at, attempt, cancel_requested) "
                    "SELECT $1, definition_id, 'queued', 'sync', '{}', '{}', 0, now(), now(), "
                    "0, false FROM workflow_run WHERE id = $2",
                    queued,
                    mine.run_id,
                )
                assert [c.run_id for c in await weak.claim(5)] == [queued]
            finally:
                await weak.close()
            row = await admin.fetchrow(
                "SELECT owner, attempt FROM workflow_run WHERE id = $1", mine.run_id
            )
            assert (row["owner"], row["attempt"]) == ("first:1", mine.attempt)
            await first.record(mine.run_id, mine.attempt, StepRow(2, "one", {}, at, at))
    finally:
        with contextlib.suppress(asyncpg.UndefinedObjectError):
            await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
    # Said once (not at every claim): who, why, and what to do.
    warned = [r.getMessage() for r in caplog.records if "cannot take runs over" in r.getMessage()]
    assert len(warned) == 1, warned
    assert warned[0].startswith("cannot take runs over from first:1: PostgreSQL refused")
    assert warned[0].endswith(
        "every flowc process must connect as the same role, or as one granted "
        "pg_signal_backend; left where they are, tried again later"
    )


def woken(log: RunLog) -> list[uuid.UUID]:
    """The run ids the log's hub wakes followers for, one entry per wake-up, from now on."""
    ids: list[uuid.UUID] = []
    changed = log.hub.changed

    def counted(run_ids: Iterable[uuid.UUID]) -> None:
        run_ids = list(run_ids)
        ids.extend(run_ids)
        changed(run_ids)

    log.hub.changed = counted  # type: ignore[method-assign]
    return ids


async def test_a_commit_wakes_followers_here_at_once_and_elsewhere_by_notify(
    postgres_url: str,
) -> None:
    # `first` and `second` stand for two processes: each LISTENs on a connection of its own.
    async with two_owners(postgres_url) as (_, mine, first, second):
        assert isinstance(first, PostgresRunLog)
        here, there = woken(first), woken(second)
        made: list[Any] = []
        connect = first._connect

        async def kept() -> Any:
            made.append(await connect())
            return made[-1]

        first._connect = kept  # type: ignore[method-assign]
        at = datetime.now(timezone.utc)
        await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        assert here == [mine.run_id]  # at the commit, before any NOTIFY
        await until(lambda: mine.run_id in there, "the other process hears of the step")
        await asyncio.sleep(10 * NOTIFY_EVERY)
        assert here == [mine.run_id]  # its own NOTIFY, come back, wakes no one twice
        # They go out on a connection of their own that does not wait for disk flushes.
        (sending,) = [c for c in made if c.get_server_pid() == first._notifier]
        assert await sending.fetchval("SHOW synchronous_commit") == "off"


async def test_changes_are_told_again_after_the_sending_connection_was_lost(
    postgres_url: str,
) -> None:
    async with two_owners(postgres_url) as (_, mine, first, second):
        assert isinstance(first, PostgresRunLog) and isinstance(second, PostgresRunLog)
        there = woken(second)
        at = datetime.now(timezone.utc)
        await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        await until(lambda: first._notifier is not None, "a NOTIFY sent")
        sending = first._notifier
        async with second.pool.acquire() as connection:
            await connection.execute("SELECT pg_terminate_backend($1)", sending)
        there.clear()
        await first.record(mine.run_id, mine.attempt, StepRow(2, "one", {"n": 2}, at, at))
        await until(lambda: mine.run_id in there, "the other process hears of it in the end")
        assert first._notifier not in (None, sending)


async def test_a_lost_sending_connection_is_forgotten_at_once(
    postgres_url: str, loop_errors: list[dict[str, Any]]
) -> None:
    # Its pid may go to another process's next connection: that one's NOTIFYs must not be
    # taken for this process's own and dropped, even while this process sends none.
    async with two_owners(postgres_url) as (_, mine, first, second):
        assert isinstance(first, PostgresRunLog) and isinstance(second, PostgresRunLog)
        at = datetime.now(timezone.utc)
        await first.record(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        await until(lambda: first._notifier is not None, "a NOTIFY sent")
        async with second.pool.acquire() as connection:
            await connection.execute("SELECT pg_terminate_backend($1)", first._notifier)
        await until(lambda: first._notifier is None, "the lost connection forgotten")
        # The next sending connection is remembered, and forgotten in turn when it closes.
        await first.record(mine.run_id, mine.attempt, StepRow(2, "one", {"n": 2}, at, at))
        await until(lambda: first._notifier is not None, "a NOTIFY sent again")
    await until(lambda: first._notifier is None, "the closed connection forgotten")
    assert loop_errors == []


def answer_lost_once(log: RunLog) -> list[dict[uuid.UUID, BaseException | None]]:
    """Make the log's next batch commit and then lose its answer (the connection drops):
    its writer tries the same batch again.  The list gets what the lost answer said."""
    queue = log.queue
    write = queue._write
    lost: list[dict[uuid.UUID, BaseException | None]] = []

    async def committed_then_dropped(
        connection: Any, batch: dict[uuid.UUID, list[Item]]
    ) -> dict[uuid.UUID, BaseException | None]:
        outcome = await write(connection, batch)
        if not lost:
            lost.append(outcome)
            raise ConnectionResetError("the commit's answer was lost")
        return outcome

    queue._write = committed_then_dropped
    return lost


@pytest.mark.parametrize(
    "steps", [0, 1, 3], ids=["the end alone", "one step", "steps in one statement"]
)
@pytest.mark.parametrize("stop", ["end", "wait"])
async def test_a_last_step_and_end_whose_answer_was_lost_are_taken_when_written_again(
    postgres_url: str, stop: str, steps: int
) -> None:
    # The steps and the end (or wait) commit in one transaction; the retry finds the run
    # no longer `running`, because of this very write: taken, not a lost lease.  (One
    # step is a statement of its own; several go in the statement for many rows; an end
    # with no step before it in its batch is one statement, with no transaction.)
    async with two_owners(postgres_url) as (service, mine, first, _):
        lost = answer_lost_once(first)
        at = datetime.now(timezone.utc)
        ending = Ending("succeeded", {"n": steps}, steps, "one", None)
        written = [
            first.append(mine.run_id, mine.attempt, StepRow(k, "one", {"n": k}, at, at))
            for k in range(1, steps + 1)
        ]
        if stop == "end":
            stopped = first.end(mine.run_id, mine.attempt, ending)
        else:
            stopped = first.wait(mine.run_id, mine.attempt, ending, WaitFor("one", "go"))
        await asyncio.wait_for(asyncio.gather(*written, stopped), WAIT)
        run, recorded = await read_run(service.db, mine.run_id)
    assert lost == [{}]
    assert [(s.seq, s.delta) for s in recorded] == [(k, {"n": k}) for k in range(1, steps + 1)]
    assert (run.status, run.step, run.owner) == (
        "succeeded" if stop == "end" else "waiting",
        steps,
        None,
    )


async def test_an_end_the_owner_did_not_write_is_not_taken_for_its_own(postgres_url: str) -> None:
    # The owner went silent; its run was cancelled meanwhile (same epoch: nobody claimed
    # it).  Its step and end come late: the run is closed as it wants it, but not by it,
    # and the step is not in the log, so the write is refused.
    async with two_owners(postgres_url) as (service, mine, first, second):
        await asyncio.sleep(0.5)  # the first owner's 0.3 s lease runs out
        assert await second.cancel(mine.run_id) == "cancelled"
        at = datetime.now(timezone.utc)
        error = {"code": "cancelled", "message": "cancelled"}
        step = first.append(mine.run_id, mine.attempt, StepRow(1, "one", {"n": 1}, at, at))
        end = first.end(mine.run_id, mine.attempt, Ending("cancelled", {"n": 1}, 1, "one", error))
        for write in (step, end):
            with pytest.raises(LeaseLost):
                await asyncio.wait_for(write, WAIT)
        run, steps = await read_run(service.db, mine.run_id)
    assert (run.status, run.step, steps) == ("cancelled", 0, [])


@pytest.fixture
def yielding_tick() -> Iterator[str]:
    """`tick_for_tests` in the application's registry: adds 1 to `n`, yielding to the loop."""

    async def tick_for_tests(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"n": state.get("n", 0) + 1}

    REGISTRY.add(tick_for_tests)
    yield "tick_for_tests"
    REGISTRY.remove("tick_for_tests")


@pytest.mark.parametrize("durability", ["async", "exit"])
async def test_a_long_run_through_the_api_records_every_step_once(
    app: FastAPI, client: httpx.AsyncClient, yielding_tick: str, durability: str
) -> None:
    graph_id = await create_graph(client, ticks(yielding_tick))
    body = {"graph_id": graph_id, "input": {}, "durability": durability}
    response = await client.post("/graph/run", json=body)
    run = response.json()
    assert (response.status_code, run["status"], run["state"]) == (200, "succeeded", {"n": 130})
    assert [(s["seq"], s["node"], s["delta"]) for s in run["steps"]] == EXPECTED_STEPS
    recorded = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()["steps"]
    assert [(s["seq"], s["node"], s["delta"]) for s in recorded] == EXPECTED_STEPS
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["step"], state["current_node"]) == ("succeeded", 130, "tick")
    assert state["state"] == replay({}, recorded) == {"n": 130}
