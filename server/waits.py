"""Waiting runs -> resumed with input through the API, or timed out by the workers' sweep.

A run that reached a wait node holds nothing while it waits: no owner, lease, connection
or task, only its row (`waiting`, its deadline) in the database.  `POST /graph/resume`
records the input as the wait's step and queues the run (`Waits.resume`); any worker then
claims it and goes on after that step, along the node's route.  Every worker sweeps the
waiting runs whose deadline passed, about once a second (`Waits.sweep`): a wait with an
error route gets a failed step (`wait_timeout`) and is queued to go on at the route's
target; one without ends `failed` with that error.  Each of these is one transaction taken
only while the run still waits, so each wait goes on exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from flowc.runtime.events import RunError, WaitFor
from flowc.runtime.waits import timed_out
from flowc.server.models import WorkflowRun, utc
from flowc.server.runlog import cause
from flowc.server.waitlog import Answer, Expired, WaitLog, wait_log_for

if TYPE_CHECKING:
    from flowc.server.runs import RunService

logger = logging.getLogger("flowc.server")

#: Seconds between two sweeps of a worker for waits past their deadline.
SWEEP_EVERY = 1.0


class Waits:
    """The waiting runs of a run service's database: resumed, timed out."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self._log: WaitLog | None = None
        self._next_sweep = 0.0

    @property
    def log(self) -> WaitLog:
        """The wait log (made on first use: the run log's connections open with it)."""
        if self._log is None:
            self._log = wait_log_for(self.runs.log)
        return self._log

    async def resume(self, run_id: uuid.UUID, given: dict[str, Any]) -> Answer | None:
        """Record `given` (checked by the caller) as the wait's step; queue the run again.

        None for an unknown run; not `done` when it does not wait (any more).
        """
        return await self.log.resume(run_id, given)

    async def sweep(self) -> int:
        """Go on with the waits past their deadline (at most every `SWEEP_EVERY` seconds).

        How many this worker timed out (another worker's sweep may take some first).
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_sweep:
            return 0
        self._next_sweep = loop.time() + SWEEP_EVERY
        done = 0
        for expired in await self.log.expired():
            try:
                done += await self._time_out(expired)
            except Exception as exc:
                logger.warning("run %s: timing out its wait failed: %s", expired.run_id, cause(exc))
        return done

    async def _time_out(self, expired: Expired) -> bool:
        definition = await self.runs.definition(expired.definition_id)
        if definition is None:  # cannot happen through the API: definitions are never deleted
            logger.error("run %s: its definition %s is gone", expired.run_id,
                         expired.definition_id)  # fmt: skip
            return False
        wait = WaitFor(**expired.waiting)
        since = (utc(expired.since) or expired.since).timestamp()
        outcome = timed_out(self.runs.engine(definition), wait, expired.step + 1, since, since)
        if isinstance(outcome, RunError):
            return await self.log.fail(expired.run_id, expired.step, outcome.to_json())
        answer = await self.log.resume(
            expired.run_id, outcome.delta, failed=True, at_step=expired.step
        )
        return answer is not None and answer.done


def shown(run: WorkflowRun) -> dict[str, Any] | None:
    """What a waiting run waits for, as `GET /graph/state` shows it; None for another run."""
    if run.status != "waiting" or run.waiting is None:
        return None
    return {**run.waiting, "since": utc(run.waiting_since), "deadline": utc(run.wait_deadline)}
