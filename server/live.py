"""Runs this process executes -> their events in memory, their followers, how they stop.

A `Live` keeps what a run executing here published (for followers that connect late), the
queues of its followers, its task and why it was stopped.  The run of a sub-flow executes
in its parent's task: its `Live` relays each event to its parent's, named by the parent
(`forwarded`), and a stop of the parent is the child's stop too.  `Buffer` keeps an `exit`
run's steps until it ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from flowc.runtime.events import Event, RunResult
from flowc.server.runlog import StepRow


class Release(Exception):
    """Stops a run between steps: this process gives it up."""


class Moved(Exception):
    """The run goes on, but not in this process (released, or claimed by another)."""


#: What stops a local run, as told to its task.
Stop = Literal["cancel", "release", "lost"]


#: Where an `Event`'s delta is among its fields.
_DELTA = Event._fields.index("delta")


class Buffer:
    """An `exit` run's steps, kept until it ends, in columns the collector does not walk.

    Each row's fields but its delta are an exact tuple, the deltas a list of their own:
    Python's collector stops tracking a tuple of plain values (not a dataclass, nor a tuple
    that holds a dict).  A long run keeps millions of rows, and full collections that walked
    them held the event loop for most of a second.  The few failed steps are kept by number,
    and so are the branches of the steps of parallel branches and joins.
    """

    def __init__(self) -> None:
        self.fields: list[tuple[int, str, datetime, datetime, int]] = []
        self.deltas: list[dict[str, Any]] = []
        self.failed: set[int] = set()
        self.branches: dict[int, str] = {}

    def append(self, row: StepRow) -> None:
        """Keep a row."""
        self.fields.append((row.seq, row.node, row.started_at, row.finished_at, row.attempts))
        self.deltas.append(row.delta)
        if row.failed:
            self.failed.add(row.seq)
        if row.branch is not None:
            self.branches[row.seq] = row.branch

    def rows(self) -> Iterator[StepRow]:
        """The rows kept, in order."""
        failed, branches = self.failed, self.branches
        for (seq, node, started, finished, attempts), delta in zip(
            self.fields, self.deltas, strict=True
        ):
            yield StepRow(
                seq, node, delta, started, finished, attempts, seq in failed, branches.get(seq)
            )


@dataclass
class Live:
    """A run this process executes: its events so far, who listens, how it was stopped.

    A sub-flow's run has its `parent`'s, and the top of its tree, `root`; a run that runs
    one now has it as `child`.  `relay` passes each event on (a child's, to its parent).
    """

    run_id: uuid.UUID
    attempt: int
    #: False for a resumed run: its history is in the database, not here.
    has_history: bool = True
    #: The run's graph and durability, for the runs of its sub-flows.
    definition_id: uuid.UUID | None = None
    durability: str = "sync"
    parent: Live | None = None
    root: uuid.UUID | None = None
    child: Live | None = None
    relay: Callable[[Event | dict[str, Any]], None] | None = None
    #: Kept as exact tuples (an `Event`'s fields, its delta in `deltas`) or dicts: Python's
    #: collector stops tracking a tuple of plain values (never a named tuple, nor a tuple
    #: that holds a dict), and a long run keeps millions of events.
    events: list[tuple[Any, ...] | dict[str, Any]] = field(default_factory=list)
    deltas: list[dict[str, Any] | None] = field(default_factory=list)
    subscribers: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    task: asyncio.Task[RunResult] | None = None
    stop: Stop | None = None
    #: The first write that failed behind an `async` run.
    failure: BaseException | None = None

    def event(self, index: int) -> Event | dict[str, Any]:
        """The event published `index`-th, as it was published."""
        kept = self.events[index]
        if isinstance(kept, dict):
            return kept
        return Event._make((*kept[:_DELTA], self.deltas[index], *kept[_DELTA + 1 :]))

    def publish(self, event: Event | dict[str, Any]) -> None:
        """Keep the event, give it to each follower (and to the relay, if there is one)."""
        if isinstance(event, dict):
            self.events.append(event)
            self.deltas.append(None)
        elif event.delta is None:  # `node_started`, most often: an exact tuple of it
            self.events.append(tuple(event))
            self.deltas.append(None)
        else:
            # Slices of a named tuple are plain tuples: no copy of the whole event first.
            self.events.append((*event[:_DELTA], None, *event[_DELTA + 1 :]))
            self.deltas.append(event.delta)
        if self.subscribers:
            message = as_json(event)
            # A follower whose queue is full (but for its last place) is too far behind:
            # it is told to go on from the database, and its queue grows no more.
            behind = [q for q in self.subscribers if 0 < q.maxsize - 1 <= q.qsize()]
            for queue in behind:
                self.subscribers.discard(queue)
                queue.put_nowait(None)
            for queue in self.subscribers:
                queue.put_nowait(message)
        if self.relay is not None:
            self.relay(event)

    def moved(self) -> None:
        """Tell followers to go on from the database."""
        for queue in self.subscribers:
            queue.put_nowait(None)

    def halt(self, stop: Stop) -> None:
        """Stop the run's task, once: a second cancel would cut short its recording.

        The sub-flow runs it is in the middle of (in its task) stop the same way.
        """
        if self.task is None or self.task.done() or self.stop is not None:
            return
        self.stop = stop
        child = self.child
        while child is not None:
            child.stop = child.stop or stop
            child = child.child
        self.task.cancel()


def as_json(event: Event | dict[str, Any]) -> dict[str, Any]:
    """An event as the JSON message followers get."""
    return event if isinstance(event, dict) else event.to_json()


def forwarded(event: Event | dict[str, Any], parent: uuid.UUID, node: str) -> dict[str, Any]:
    """A child's event as its parent's followers get it: named by its parent and node.

    A grandchild's event, named by its own parent already, is passed on as it is.
    """
    message = as_json(event)
    if "parent_run_id" in message:
        return message
    return {**message, "parent_run_id": str(parent), "parent_node": node}
