"""The step a tool runs in -> `current_step()`: its run, step number, node and attempt.

The interpreter keeps a context variable up to date, and a tool reads it through
`current_step()`, in sync, async and blocking (threaded) tools alike.  The idempotency key,
`run_id:seq`, names the step rather than the attempt: every attempt of a step gets the same
key, and so does the step when a resumed run runs it again.  A parallel branch's step is
numbered when it finishes, so its key is `run_id:FORK:node` instead (FORK the number of
the step its branches started after), which a resumed run gives it again too; a map's call
for item `i` is `run_id:FORK:node:i` (FORK the step its calls started after).
"""

from __future__ import annotations

from collections.abc import Sized
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepContext:
    """Where a tool call stands: the run, the step (`seq`, from 1), its node and attempt.

    In a parallel branch, `branch` is its index (`"0"`, `"1"`, ...) and `fork` the number
    of the step the branches started after; `seq` is then the number the step gets if it is
    the next to finish (a sibling that finishes first takes it, and this one a later one).
    A map's call has `item`, the index of its item in the list (and `branch` the same, as
    text), and `fork` the number of the step its map's calls started after.
    """

    run_id: str
    seq: int
    node: str
    attempt: int
    branch: str | None = None
    fork: int | None = None
    item: int | None = None

    @property
    def idempotency_key(self) -> str:
        """The step's key: the same for every attempt, and after a resume.

        `run_id:seq`; `run_id:fork:node` in a parallel branch, `run_id:fork:node:item` for
        a map's call.
        """
        if self.item is not None:
            return f"{self.run_id}:{self.fork}:{self.node}:{self.item}"
        if self.fork is not None:
            return f"{self.run_id}:{self.fork}:{self.node}"
        return f"{self.run_id}:{self.seq}"


class NoStepError(LookupError):
    """`current_step()` was called outside a tool that a run is calling."""


class StepCursor:
    """Where a run's inline (sync) tool call stands, kept without allocating anything.

    A sync tool without a timeout runs on the event loop and nothing else runs meanwhile,
    so the run sets `node` before the call and `None` after it; the step's number is the
    count of steps so far plus one.  `current_step()` builds a `StepContext` only when a
    tool asks for one.  A map's inline call sets `item` and `fork` too (`StepContext`).
    """

    __slots__ = ("base", "fork", "item", "node", "run_id", "steps")

    def __init__(self, run_id: str, steps: Sized, base: int = 0) -> None:
        self.run_id = run_id
        self.steps = steps  # the run's steps so far (a resumed run's new ones only)
        self.base = base  # the steps before the run resumed
        self.node: str | None = None  # None: no inline call is going on
        self.item: int | None = None  # None: the inline call is not a map's
        self.fork: int | None = None

    def current(self) -> StepContext | None:
        """The inline call's step, or None when there is none."""
        if self.node is None:
            return None
        seq = self.base + len(self.steps) + 1
        if self.item is None:
            return StepContext(self.run_id, seq, self.node, 1)
        return StepContext(self.run_id, seq, self.node, 1, str(self.item), self.fork, self.item)


#: The current step: a `StepContext`, or a run's `StepCursor` (for its inline calls).
STEP: ContextVar[StepContext | StepCursor | None] = ContextVar("flowc_step", default=None)


def current_step() -> StepContext:
    """The step the calling tool runs in; `NoStepError` (a `LookupError`) outside a tool."""
    step = STEP.get()
    if isinstance(step, StepCursor):
        step = step.current()
    if step is not None:
        return step
    raise NoStepError(
        "current_step() is only available inside a tool, while a flowc run is calling it"
    )
