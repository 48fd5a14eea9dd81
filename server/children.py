"""A parent's sub-flow node on the server -> its child run, durable, run by the parent's owner.

`Children` is the run service's `SubflowHost` (`runtime.subflows`).  When a run reaches a
sub-flow node, its owner adopts the child's row (`server/childlog.py`: made the first time,
taken over under the parent's epoch after a crash or a release), then:

- a child that already ended gives its outcome: nothing of it runs again;
- any other executes in the parent's task as any run does (`RunService.execute_here`): from its
  start, or resumed from its own step log, its steps written as its durability (the
  parent's) says, followed like any run, and each of its events relayed to the parent's
  followers.

A stop of the parent stops the child the same way: cancelled (the child is recorded
`cancelled` first), released (the child is released too, to be taken over with the
parent), or lost (nothing more is written).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flowc.runtime.events import Event, RunError, RunResult, RunStatus
from flowc.runtime.subflows import ChildRun, initial_state
from flowc.server.childlog import ChildLog, ChildSpec, child_log_for
from flowc.server.live import Live, Moved, Release, forwarded
from flowc.server.runlog import (
    ENDED,
    RETRY_FIRST,
    RETRY_MAX,
    Claimed,
    DatabaseAway,
    LeaseLost,
    cause,
)

if TYPE_CHECKING:
    from flowc.server.childlog import Adopted
    from flowc.server.runs import RunService


class Children:
    """The run service's sub-flow host: each child a run row and a step log of its own."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self._log: ChildLog | None = None

    @property
    def log(self) -> ChildLog:
        """The child log (made on first use: the run log's connections open with it)."""
        if self._log is None:
            self._log = child_log_for(self.runs.log)
        return self._log

    async def run_child(self, child: ChildRun) -> RunResult:
        """Adopt the child's row, then take its outcome, or execute it to its end here."""
        runs = self.runs
        parent_id = uuid.UUID(child.parent_run_id)
        parent = runs.live_run(parent_id)
        if parent is None or parent.definition_id is None:
            raise RuntimeError(
                f"run {parent_id} is not executed by this process: the sub-flow of its node "
                f"`{child.node}` cannot run here"
            )
        # The server's resolver gives every stored graph's sub-flows the `graph_id` of a
        # stored definition; an IR saved without it (or with an id that is not one) has its
        # children recorded under the parent's graph instead.
        spec = ChildSpec(
            uuid.UUID(child.run_id), parent_id, parent.root or parent_id, child.node,
            _graph(child.flow.graph_id) or parent.definition_id, parent.durability,
            child.input, initial_state(child),
        )  # fmt: skip
        adopted = await self._adopt(spec, parent.attempt)
        if adopted.status in ENDED:  # ended before: its outcome, and nothing runs again
            found = adopted.error
            error = None
            if found is not None:
                error = RunError(found["code"], found["message"], found.get("node"),
                                 found.get("span"))  # fmt: skip
            status = cast(RunStatus, adopted.status)
            return RunResult(child.run_id, status, adopted.state, [], error)
        live = Live(
            spec.run_id, parent.attempt, has_history=adopted.created,
            definition_id=spec.definition_id, durability=spec.durability, parent=parent,
            root=spec.root_run_id, relay=_relay(parent, child.node),
        )  # fmt: skip
        claimed = Claimed(
            spec.run_id, parent.attempt, spec.definition_id, spec.durability, spec.input,
            adopted.state, adopted.step, adopted.current_node,
        )  # fmt: skip
        parent.child = live
        try:
            result = await runs.execute_here(claimed, child.engine, live, child.threads)
        except Moved:  # stopped on the parent's account: the parent stops the same way
            if live.stop == "lost":
                raise LeaseLost(str(spec.run_id)) from None
            if live.stop == "cancel":
                raise asyncio.CancelledError from None
            raise Release from None
        finally:
            parent.child = None
        if live.stop == "cancel":  # recorded `cancelled`: now the parent
            raise asyncio.CancelledError
        return result

    async def _adopt(self, spec: ChildSpec, attempt: int) -> Adopted:
        """Adopt the child's row; while the database is away, try again until it is back."""
        delay = RETRY_FIRST
        while True:
            try:
                adopted = await self.log.adopt(spec, attempt=attempt, owner=self.runs.log.owner)
            except DatabaseAway as exc:
                self.runs.log.outage.away(
                    f"run {spec.parent_run_id}: writing its sub-flow run {spec.run_id}", cause(exc)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if delay != RETRY_FIRST:
                self.runs.log.outage.back()
            return adopted


def _graph(graph_id: str | None) -> uuid.UUID | None:
    """The stored definition a sub-flow was resolved to, when it names one."""
    if graph_id is None:
        return None
    try:
        return uuid.UUID(graph_id)
    except ValueError:
        return None


def _relay(parent: Live, node: str) -> Callable[[Event | dict[str, Any]], None]:
    """What a child's `Live` does with each event: publish it to its parent's followers."""

    def relay(event: Event | dict[str, Any]) -> None:
        parent.publish(forwarded(event, parent.run_id, node))

    return relay
