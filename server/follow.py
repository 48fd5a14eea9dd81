"""A run followed from the database -> its events, its sub-flows' runs' among them.

A follower of a run that this process does not execute (another worker runs it, the
server runs with `--no-worker`, the run ended, or the follower fell behind) reads the run's
steps from the database whenever the run log signals a change (NOTIFY on PostgreSQL): there
is no polling loop.  Where a step ran a sub-flow, the child run's events come first, in
their place, named by `parent_run_id` and `parent_node` as a local follower gets them: a
step of the parent is only written once its child ended, so the child's rows are all there
by then.  While the parent waits for a child that is still running, the follower also
watches the child's id (known in advance: `child_run_id` of the parent's next step), so it
hears of each of the child's steps as it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from flowc.runtime.subflows import child_run_id
from flowc.server import store
from flowc.server.db import Database, database_away
from flowc.server.models import WorkflowRun, now, utc
from flowc.server.outage import Outage
from flowc.server.runlog import ENDED, RETRY_FIRST, RETRY_MAX, Hub, RunLog, StepRow, cause

T = TypeVar("T")


class UnknownRun(LookupError):
    """No run has this id."""


#: A flow's sub-flow nodes: each one's name -> its child's IR (a JSON document).
SubflowNodes = Mapping[str, Mapping[str, Any]]


def subflow_nodes(ir: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The sub-flow nodes of a flow's IR, with the IR of each one's child."""
    return {
        node["name"]: node["flow"]["ir"]
        for node in ir.get("nodes", ())
        if isinstance(node.get("flow"), dict)
    }


class Forwarded:
    """What a follower already has of a sub-flow's run (from memory, before the database)."""

    def __init__(self) -> None:
        #: The child's last step sent, by child run id; a child in it had its start sent.
        self.steps: dict[str, int] = {}
        #: Children whose end was sent.
        self.ended: set[str] = set()

    def note(self, message: Mapping[str, Any]) -> None:
        """Remember a child's event as sent."""
        run_id, kind = message["run_id"], message["type"]
        if kind == "run_started":
            self.steps.setdefault(run_id, 0)
        elif kind == "node_finished":
            self.steps[run_id] = max(self.steps.get(run_id, 0), message["step"])
        elif kind in ("run_finished", "run_failed"):
            self.ended.add(run_id)


class _Child:
    """A sub-flow's run as far as the follower has read it (with its own children's)."""

    def __init__(self, run_id: str, parent: str, node: str, ir: Mapping[str, Any]) -> None:
        self.run_id, self.parent, self.node = run_id, parent, node
        self.nodes, self.start = subflow_nodes(ir), ir.get("start")
        self.sent: int | None = None  # None: its start not sent yet
        self.ended = False

    def tag(self, message: dict[str, Any]) -> dict[str, Any]:
        """The child's event as its parent's followers get it."""
        return {**message, "parent_run_id": self.parent, "parent_node": self.node}


class Follower:
    """One follower's reads of a run and of its sub-flows' runs."""

    def __init__(
        self,
        db: Database,
        log: RunLog,
        ir: Mapping[str, Any] | None,
        forwarded: Forwarded | None = None,
    ) -> None:
        """`ir`: the run's flow (its start node, its sub-flow nodes), None if unknown."""
        self.db, self.log = db, log
        self.nodes, self.start = subflow_nodes(ir or {}), (ir or {}).get("start")
        self.forwarded = forwarded or Forwarded()
        self._children: dict[str, _Child] = {}
        #: Child runs not started yet whose first write should wake the follower.
        self.expected: set[str] = set()

    async def follow(
        self, run_id: uuid.UUID, sent: int, *, announced: bool, waited: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The run's events after step `sent`, then each time it changes, the final last.

        The steps are read a page at a time by their key, so a long replay holds one page.
        A run that waits gets its `run_waiting` once per wait (`waited`: the step of the one
        sent already), in its place among the steps.  While the database is away the
        follower waits for it (woken when this process listens again, or with backoff) and
        goes on from the last step it sent.
        """
        hub = self.log.hub
        with hub.watch(run_id) as changed:
            watched: set[str] = set()
            away = RETRY_FIRST  # how long to wait before reading again, the database away
            try:
                while True:
                    changed.clear()
                    self.expected.clear()  # this pass says again which children it expects
                    try:
                        run = await self._row(run_id)
                        if run is None:
                            raise UnknownRun(str(run_id))
                        if not announced:
                            first = await self.log.steps_after(run_id, 0, limit=1)
                            yield started(run, first[0].node if first else self._first(run))
                            announced = True
                        # Read before its steps: those up to the wait were all there.
                        waits = run.status == "waiting" and run.step != waited
                        async with contextlib.aclosing(self.log.read_steps(run_id, sent)) as steps:
                            async for step in steps:
                                if waits and step.seq > run.step:  # resumed since the row was read
                                    yield waiting(run)
                                    waits, waited = False, run.step
                                async for message in self._before(str(run_id), step, self.nodes):
                                    yield message
                                yield finished(run_id, step)
                                sent = step.seq
                        if waits:
                            yield waiting(run)
                            waited = run.step
                        if run.status in ENDED:  # read before its steps: they were all there
                            yield ended(run)
                            return
                        if self.nodes and run.status == "running":
                            async for message in self._running(str(run_id), sent, self.nodes):
                                yield message
                        away = RETRY_FIRST
                    except Exception as exc:
                        if not database_away(exc):
                            raise
                        # The run goes on once the database is back, and so does its
                        # follower: the next pass reads on from the last step it sent.
                        away = await database_back(self.log.outage, run_id, changed, away, exc)
                        continue
                    if self._watch(hub, changed, watched):
                        continue  # a child may have written before it was watched
                    await changed.wait()
            finally:
                for child in watched:
                    hub.discard(uuid.UUID(child), changed)

    def _watch(self, hub: Hub, changed: Any, watched: set[str]) -> bool:
        """Watch the children being read and the ones expected; whether one is new."""
        wanted = self.expected | {c.run_id for c in self._children.values() if not c.ended}
        for child in watched - wanted:
            hub.discard(uuid.UUID(child), changed)
        added = wanted - watched
        for child in added:
            hub.add(uuid.UUID(child), changed)
        watched.clear()
        watched.update(wanted)
        return bool(added)

    def _first(self, run: WorkflowRun) -> str | None:
        """Where a run with no step yet starts: its snapshot's node, else its flow's start."""
        return run.current_node or (self.start if run.step == 0 else None)

    async def _row(self, run_id: uuid.UUID | str) -> WorkflowRun | None:
        async with self.db.session() as session:
            return await store.get_run(session, run_id=uuid.UUID(str(run_id)))

    async def _before(
        self, parent: str, step: StepRow, nodes: SubflowNodes
    ) -> AsyncIterator[dict[str, Any]]:
        """A step that ran a sub-flow: first, what is left of the child's events."""
        if step.node not in nodes or step.branch is not None:
            return
        child = self._child(child_run_id(parent, step.seq), parent, step.node, nodes)
        async for message in self._read(child):
            yield message
        del self._children[child.run_id]  # the parent went past it: never read again

    async def _running(
        self, parent: str, sent: int, nodes: SubflowNodes
    ) -> AsyncIterator[dict[str, Any]]:
        """The child that the parent's next step runs, if it has started: its news."""
        expected = child_run_id(parent, sent + 1)
        row = await self._row(expected)
        node = None if row is None else row.parent_node
        if row is None or node is None or node not in nodes:
            self.expected.add(expected)
            return
        child = self._child(expected, parent, node, nodes)
        async for message in self._read(child, row):
            yield message

    def _child(self, run_id: str, parent: str, node: str, nodes: SubflowNodes) -> _Child:
        child = self._children.get(run_id)
        if child is None:
            child = self._children[run_id] = _Child(run_id, parent, node, nodes[node])
            if run_id in self.forwarded.steps:
                child.sent = self.forwarded.steps[run_id]
            child.ended = run_id in self.forwarded.ended
        return child

    async def _read(
        self, child: _Child, row: WorkflowRun | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The child's events not sent yet (its own children's in their places)."""
        if child.ended:
            return
        run = row or await self._row(child.run_id)
        if run is None:  # not started (a parent resumed past it): nothing to tell
            return
        # Its start names its first step's node: taken from the first page of its steps,
        # not read on its own (a replay of many children reads each one's rows once).
        unannounced = child.sent is None
        async with contextlib.aclosing(self.log.read_steps(run.id, child.sent or 0)) as steps:
            async for step in steps:
                if unannounced:
                    yield child.tag(started(run, step.node))
                    unannounced, child.sent = False, 0
                async for message in self._before(child.run_id, step, child.nodes):
                    yield child.tag(message) if "parent_run_id" not in message else message
                yield child.tag(finished(run.id, step))
                child.sent = step.seq
        if unannounced:  # no step yet: it starts where its flow starts
            yield child.tag(started(run, child.start))
            child.sent = 0
        if run.status in ENDED:  # read before its steps: they were all there
            yield child.tag(ended(run))
            child.ended = True
            self.expected.discard(child.run_id)
        elif child.nodes and run.status == "running":
            async for message in self._running(child.run_id, child.sent or 0, child.nodes):
                yield message


async def patiently(
    read: Callable[[], Awaitable[T]], hub: Hub, run_id: uuid.UUID, outage: Outage
) -> T:
    """`read()` for a follower of `run_id`, tried again for as long as the database is away."""
    away = RETRY_FIRST
    with hub.watch(run_id) as changed:
        while True:
            changed.clear()
            try:
                return await read()
            except Exception as exc:
                if not database_away(exc):
                    raise
                away = await database_back(outage, run_id, changed, away, exc)


async def database_back(
    outage: Outage, run_id: uuid.UUID, changed: asyncio.Event, away: float, exc: BaseException
) -> float:
    """Wait before reading again for a follower whose read found the database away.

    Woken when this process listens again (its listener wakes every follower), else after
    `away` seconds; the next wait, doubled up to `RETRY_MAX`.  Told to `outage`
    (`server/outage.py`): said once per outage, not once per follower.
    """
    outage.away(f"following run {run_id}", cause(exc))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(changed.wait(), away)
    return min(away * 2, RETRY_MAX)


def started(run: WorkflowRun, node: str | None) -> dict[str, Any]:
    """`run_started` of a run read from the database."""
    at = utc(run.started_at) or utc(run.created_at) or now()
    return {"type": "run_started", "run_id": str(run.id), "step": 0, "node": node,
            "delta": None, "at": at.isoformat()}  # fmt: skip


def finished(run_id: uuid.UUID, step: StepRow) -> dict[str, Any]:
    """`node_finished` of a recorded step, as live (`failed` and `branch` only when set)."""
    duration = (step.finished_at - step.started_at).total_seconds() * 1000
    message = {"type": "node_finished", "run_id": str(run_id), "step": step.seq,
               "node": step.node, "delta": step.delta, "at": step.finished_at.isoformat(),
               "duration_ms": round(duration, 3), "attempts": step.attempts}  # fmt: skip
    if step.failed:
        message["failed"] = True
    if step.branch is not None:
        message["branch"] = step.branch
    return message


def waiting(run: WorkflowRun) -> dict[str, Any]:
    """`run_waiting` of a run that waits, as its row has it."""
    shown = run.waiting or {}
    at = utc(run.waiting_since) or now()
    return {"type": "run_waiting", "run_id": str(run.id), "step": run.step,
            "node": shown.get("node"), "delta": None, "at": at.isoformat(),
            "status": "waiting", "state": run.state, "waiting": shown}  # fmt: skip


def ended(run: WorkflowRun) -> dict[str, Any]:
    """The final event of a run that ended, as its row has it."""
    succeeded = run.status == "succeeded"
    return {"type": "run_finished" if succeeded else "run_failed", "run_id": str(run.id),
            "step": run.step,
            "node": run.current_node if succeeded else (run.error or {}).get("node"),
            "delta": None, "at": (utc(run.finished_at) or now()).isoformat(),
            "status": run.status, "state": run.state, "error": run.error}  # fmt: skip
