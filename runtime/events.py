"""Run results and events: what a run reports, typed, and as the JSON the API sends.

As JSON an event is `{"type", "run_id", "step", "node", "delta", "at", ...}`.  Events and
steps are made on the hot path, so they are named tuples and `at` is a float until rendered.
An event of a sub-flow's run reaches its parent's listener wrapped (`ChildEvent`), so that
no plain step pays for the fields that name the parent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, NamedTuple

from flowc.compiler.ir import Span

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
EventType = Literal[
    "run_started",
    "node_started",
    "node_attempt_failed",
    "node_finished",
    "run_finished",
    "run_failed",
    "run_waiting",
]

#: The `branch` of the step that merges parallel branches where they join.
JOIN = "join"


#: The last whole second `iso` wrote, and its text up to the seconds: a run's steps fall in
#: few seconds, and the date and time of day cost most of `datetime`'s work.
_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso(at: float) -> str:
    """A POSIX timestamp as ISO 8601 in UTC, to the microsecond, as `datetime` writes it.

    `datetime.fromtimestamp(at, timezone.utc).isoformat()`, with the microseconds rounded
    the same way (half to even) and the date and time of the second kept from the call
    before: a long run's result writes two of these a step.
    """
    global _last_second
    # `micros`' rounding, inline and split (a call and a `divmod` more cost it 17%).
    fraction, whole = math.modf(at)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    cached, text = _last_second
    if second != cached:
        text = datetime.fromtimestamp(second, timezone.utc).isoformat()[:-6]
        _last_second = (second, text)
    return f"{text}.{micro:06d}+00:00" if micro else f"{text}+00:00"


def micros(at: float) -> int:
    """A POSIX timestamp in whole microseconds: what `iso` writes and the database holds.

    The fraction is rounded as `datetime` rounds it (half to even).
    """
    fraction, whole = math.modf(at)
    return int(whole) * 1_000_000 + round(fraction * 1e6)


def span_ms(started: float, finished: float) -> float:
    """Milliseconds from `started` to `finished` (POSIX timestamps) as they are written.

    Each is taken to the microsecond (`micros`), so a step reads the same live and from its
    row in the database, which holds those microseconds.
    """
    return (micros(finished) - micros(started)) / 1000


@dataclass(frozen=True, slots=True)
class RunError:
    """Why a run failed: a stable code, a message, the node, and the span in the source."""

    code: str
    message: str
    node: str | None = None
    span: Span | None = None

    def to_json(self) -> dict[str, Any]:
        """The error as JSON."""
        return {"code": self.code, "message": self.message, "node": self.node, "span": self.span}


@dataclass(frozen=True, slots=True)
class WaitFor:
    """What a run stopped at a wait node waits for: the node, the wait's name, its timeout.

    `timeout`: seconds after which the wait fails with `wait_timeout`; None: no limit.
    """

    node: str
    name: str
    timeout: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The wait as JSON."""
        return {"node": self.node, "name": self.name, "timeout": self.timeout}


class RunFailed(Exception):
    """Ends a run as `failed`: carries the error to report (the interpreter's, not the API's)."""

    def __init__(self, error: RunError) -> None:
        super().__init__(error.message)
        self.error = error


class Step(NamedTuple):
    """One node's execution: its place in the run, the state delta, its timing and attempts.

    A named tuple: one is made per step, on the hot path.  A step that was retried started
    with its first attempt and finished with its last.  A `failed` step is one whose last
    attempt failed and whose node has an error route (`on_error`): its delta is the
    `error` it wrote, and the run went on at the route's target.  `branch`: the index of
    the parallel branch the step ran in (`"0"`, `"1"`, ... in the order written), `JOIN` for
    the step that merged them, None on the main line.
    """

    seq: int
    node: str
    delta: dict[str, Any]
    started_at: float
    finished_at: float
    attempts: int = 1
    failed: bool = False
    branch: str | None = None

    @property
    def duration_ms(self) -> float:
        """Wall time of the step (every attempt, and the waits between), in milliseconds."""
        return (self.finished_at - self.started_at) * 1000

    def to_json(self) -> dict[str, Any]:
        """The step as JSON (`"failed": true` only for a failed step, `branch` only if set)."""
        data = {
            "seq": self.seq,
            "node": self.node,
            "delta": self.delta,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": span_ms(self.started_at, self.finished_at),
            "attempts": self.attempts,
        }
        if self.failed:
            data["failed"] = True
        if self.branch is not None:
            data["branch"] = self.branch
        return data


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: status, final (or last good) state, its steps, and any error.

    A run stopped at a wait node has the status `waiting` and says what for (`waiting`).
    """

    run_id: str
    status: RunStatus
    state: dict[str, Any]
    steps: list[Step]
    error: RunError | None = None
    waiting: WaitFor | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as JSON (`waiting` only for a run that waits)."""
        data = {
            "run_id": self.run_id,
            "status": self.status,
            "state": self.state,
            "steps": [step.to_json() for step in self.steps],
            "error": self.error.to_json() if self.error else None,
        }
        if self.waiting is not None:
            data["waiting"] = self.waiting.to_json()
        return data


class Event(NamedTuple):
    """Something that happened in a run; `type` says what, the other fields fill in.

    A named tuple, like `Step`: when someone listens, two are made per step.
    `node_attempt_failed` has `attempt` (from 1), `error`, `duration_ms` (of the attempt)
    and `retry_in` (seconds until the next attempt, None when none follows);
    `node_finished` has `attempts`, how many the step took, and `failed` True for a step
    that failed and took its node's error route (None otherwise).  `node_started`,
    `node_attempt_failed` and `node_finished` have `branch` as their step has it (`Step`).
    `run_waiting`, the last event of a run that stopped at a wait node, has `waiting`.
    """

    type: EventType
    run_id: str
    step: int
    node: str | None
    at: float
    delta: dict[str, Any] | None = None
    duration_ms: float | None = None
    status: RunStatus | None = None
    state: dict[str, Any] | None = None
    error: RunError | None = None
    attempt: int | None = None
    retry_in: float | None = None
    attempts: int | None = None
    failed: bool | None = None
    branch: str | None = None
    waiting: WaitFor | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON message the WebSocket sends."""
        data: dict[str, Any] = {
            "type": self.type,
            "run_id": self.run_id,
            "step": self.step,
            "node": self.node,
            "delta": self.delta,
            "at": iso(self.at),
        }
        if self.duration_ms is not None:  # its start as the step's row has it (`at` less this)
            data["duration_ms"] = span_ms(self.at - self.duration_ms / 1000, self.at)
        if self.status is not None:
            data["status"] = self.status
        if self.state is not None:
            data["state"] = self.state
        if self.error is not None:
            data["error"] = self.error.to_json()
        if self.attempt is not None:
            data["attempt"] = self.attempt
            data["retry_in"] = None if self.retry_in is None else round(self.retry_in, 3)
        if self.attempts is not None:
            data["attempts"] = self.attempts
        if self.failed:
            data["failed"] = True
        if self.branch is not None:
            data["branch"] = self.branch
        if self.waiting is not None:
            data["waiting"] = self.waiting.to_json()
        return data

    @property
    def is_final(self) -> bool:
        """True for the last event of a run's execution (`run_waiting`: final for now)."""
        return self.type in ("run_finished", "run_failed", "run_waiting")


@dataclass(frozen=True, slots=True)
class ChildEvent:
    """An event of a sub-flow's run, as the listener of the run it is part of gets it.

    `event` is the child's own (its `run_id` the child's); `parent_run_id` is the run whose
    node ran the sub-flow, `parent_node` that node.  `type` is always `"child"`: a listener
    that dispatches on `type` never takes a child's `node_finished` for a step of its own.
    A grandchild's event reaches the top as it is, named by its own parent.  Never final:
    the parent goes on after its child ends.
    """

    event: Event
    parent_run_id: str
    parent_node: str
    type: ClassVar[Literal["child"]] = "child"

    @property
    def is_final(self) -> bool:
        """False: the child's last event is not its parent's."""
        return False

    def to_json(self) -> dict[str, Any]:
        """The child's event as JSON, with `parent_run_id` and `parent_node` added."""
        data = self.event.to_json()
        data["parent_run_id"] = self.parent_run_id
        data["parent_node"] = self.parent_node
        return data


#: What a run's listener gets: its own events, and those of its sub-flows' runs.
RunEvent = Event | ChildEvent
