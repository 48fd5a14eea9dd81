"""The write queue (`server/runlog.py`) without a database: a step alone is written at once.

A `sync` run's step with nothing else waiting is written by its own task through the log's
step writer, not through the queue.  Whatever does not go as usual (no connection yet, the
database away, a refusal, a cancellation) becomes an item of the queue at the head of its
run's, and the queue's own road writes it: the same outcomes as before, no step lost.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from flowc.server.runlog import (
    Ending,
    Item,
    LeaseLost,
    StepRow,
    StorageFailed,
    WriteQueue,
)

pytestmark = pytest.mark.asyncio

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def step(run_id: uuid.UUID, seq: int) -> Item:
    """Step `seq` of `run_id`, as a run's task hands it to `commit`."""
    return Item("step", run_id, 1, step=StepRow(seq, "tick", {"n": seq}, AT, AT))


class Database:
    """What the queue wrote, and how: alone (`write_step`) or in batches (`write`)."""

    def __init__(self) -> None:
        self.alone: list[tuple[uuid.UUID, int]] = []
        self.batches: list[list[tuple[uuid.UUID, str]]] = []
        self.closed: list[int] = []
        self.refuse: set[uuid.UUID] = set()
        self.signalled: list[uuid.UUID] = []
        self._connections = itertools.count(1)

    async def connect(self) -> int:
        return next(self._connections)

    async def close(self, connection: int) -> None:
        self.closed.append(connection)

    async def write(
        self, _connection: int, batch: dict[uuid.UUID, list[Item]]
    ) -> dict[uuid.UUID, BaseException | None]:
        await asyncio.sleep(0)
        if self.refuse & set(batch):
            raise ValueError("refused")
        self.batches.append(
            [(item.run_id, item.kind) for items in batch.values() for item in items]
        )
        return {}

    async def write_step(self, _connection: int, item: Item) -> bool:
        await asyncio.sleep(0)
        assert item.step is not None
        self.alone.append((item.run_id, item.step.seq))
        return True

    def step_written(self, run_id: uuid.UUID) -> None:
        self.signalled.append(run_id)

    def queue(self) -> WriteQueue:
        return WriteQueue(
            self.write,
            self.connect,
            self.close,
            writers=2,
            transient=lambda exc: isinstance(exc, ConnectionError),
            write_step=self.write_step,
            step_written=self.step_written,
        )


async def warmed(db: Database, run_id: uuid.UUID) -> WriteQueue:
    """A queue whose connections are open: its first write made them, in a batch."""
    queue = db.queue()
    await asyncio.gather(queue.commit(step(run_id, 1)), queue.commit(step(uuid.uuid4(), 1)))
    db.batches.clear()
    return queue


async def test_a_step_with_nothing_else_waiting_is_written_alone() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)
    for seq in (2, 3, 4):
        await queue.commit(step(run, seq))
    assert db.alone == [(run, 2), (run, 3), (run, 4)]
    assert db.signalled == [run, run, run]  # each step's followers woken once
    assert db.batches == []
    assert queue.pending(run) == []
    await queue.close()


async def test_the_first_step_opens_a_connection_through_the_queue() -> None:
    db, run = Database(), uuid.uuid4()
    queue = db.queue()
    await queue.commit(step(run, 1))
    assert (db.alone, db.batches) == ([], [[(run, "step")]])
    await queue.close()


async def test_commits_made_before_they_are_awaited_decide_their_road_when_awaited() -> None:
    db = Database()
    queue = await warmed(db, uuid.uuid4())
    runs = [uuid.uuid4() for _ in range(5)]  # more than the queue's 2 connections
    made = [queue.commit(step(run, 1)) for run in runs]
    await asyncio.gather(*made)
    written = db.alone + [(run, 1) for batch in db.batches for run, _ in batch]
    assert sorted(written) == sorted((run, 1) for run in runs)  # each once, none lost
    assert db.alone  # the first awaited found a connection idle
    await queue.close()


async def test_a_step_behind_another_write_goes_in_its_batch() -> None:
    db, run, other = Database(), uuid.uuid4(), uuid.uuid4()
    queue = await warmed(db, run)
    queue.put(Item("end", other, 1, ending=Ending("succeeded", {}, 1, "tick", None)), wake=False)
    await queue.commit(step(run, 2))
    assert db.alone == []
    assert sorted(db.batches[0]) == sorted([(run, "step"), (other, "end")])
    await queue.close()


async def test_a_lost_lease_is_raised_to_the_run() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)

    async def fenced(_connection: int, item: Item) -> bool:
        return False

    queue._write_step = fenced
    with pytest.raises(LeaseLost):
        await queue.commit(step(run, 2))
    await queue.close()


async def test_a_step_whose_connection_dropped_is_written_by_the_queue_on_a_new_one() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)
    write_step = db.write_step

    async def dropped(connection: int, item: Item) -> bool:
        queue._write_step = write_step  # once
        raise ConnectionResetError("the server closed the connection")

    queue._write_step = dropped
    await queue.commit(step(run, 2))
    assert db.batches == [[(run, "step")]]  # written once, by the queue
    assert len(db.closed) == 1  # the connection it dropped on, and only that one
    await queue.commit(step(run, 3))
    assert db.alone == [(run, 3)]
    await queue.close()


async def test_a_refused_step_fails_its_run_and_refuses_its_later_steps() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)

    async def refused(_connection: int, item: Item) -> bool:
        raise ValueError("invalid input syntax for type json")

    queue._write_step = refused
    db.refuse.add(run)
    with pytest.raises(StorageFailed):
        await queue.commit(step(run, 2))
    assert db.closed == []  # a refusal leaves the connection as it was
    with pytest.raises(StorageFailed):  # no gap: nothing after it is written
        await queue.commit(step(run, 3))
    db.refuse.clear()
    await queue.put(Item("end", run, 1, ending=Ending("failed", {}, 1, "tick", None)))
    assert db.batches == [[(run, "end")]]
    assert db.alone == []
    await queue.close()


async def test_a_step_cancelled_in_the_middle_of_its_write_is_still_written() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)
    sent = asyncio.Event()

    async def hangs(_connection: int, _item: Item) -> bool:
        sent.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    queue._write_step = hangs
    task = asyncio.ensure_future(queue.commit(step(run, 2)))
    await sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The run's stop waits for what is pending: the step is there, at the head of its run's.
    (pending,) = queue.pending(run)
    assert pending.step is not None and pending.step.seq == 2
    await pending.done
    assert db.batches == [[(run, "step")]]
    assert len(db.closed) == 1  # its state unknown: not used again
    await queue.close()


async def test_a_later_write_of_the_run_waits_for_the_step_being_written() -> None:
    db, run = Database(), uuid.uuid4()
    queue = await warmed(db, run)
    release = asyncio.Event()
    order: list[str] = []
    write, write_step = db.write, db.write_step

    async def slow(connection: int, item: Item) -> bool:
        await release.wait()
        order.append("step")
        return await write_step(connection, item)

    async def batch(
        connection: int, items: dict[uuid.UUID, list[Item]]
    ) -> dict[uuid.UUID, BaseException | None]:
        order.extend(item.kind for queued in items.values() for item in queued)
        return await write(connection, items)

    queue._write_step, queue._write = slow, batch
    writing = asyncio.ensure_future(queue.commit(step(run, 2)))
    await asyncio.sleep(0.01)
    # Another task queues the run's release meanwhile: a writer is idle, but must not
    # write it before the step it follows.
    released = queue.put(Item("release", run, 1))
    await asyncio.sleep(0.01)
    assert order == []
    release.set()
    await asyncio.gather(writing, released)
    assert order == ["step", "release"]
    await queue.close()


async def test_an_item_shows_without_its_future() -> None:
    # Made outside a loop, and never queued: it has no future, and still shows.
    item = step(uuid.UUID(int=1), 1)
    assert "kind='step'" in repr(item) and "done" not in repr(item)
    assert item == step(uuid.UUID(int=1), 1)


async def test_a_queued_item_gets_its_future_when_queued() -> None:
    db, run = Database(), uuid.uuid4()
    queue = db.queue()
    item = Item("release", run, 1)
    done: Any = queue.put(item)
    assert done is item.done
    await done
    await queue.close()
