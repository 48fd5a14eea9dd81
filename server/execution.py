"""A claimed run, executed by this process: steps written, outcome recorded, early stops.

The interpreter's steps are written as the run's durability says: `sync` commits each
step before the next node starts, `async` writes steps behind the run (in order, never
skipped) and waits for them at the end, `exit` writes everything when the run ends.  A
run claimed again after its owner went silent is rebuilt from its recorded steps and goes
on after the last (`docs/durability.md`).  A run stopped before its end is recorded
`cancelled`, released for another worker, or left alone (its lease was lost); a write the
database refused ends it `failed` with `storage_error`.  `RunService` (`server/runs.py`)
claims the runs and calls `execute`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flowc.runtime import Resume
from flowc.runtime.calls import RunThreads
from flowc.runtime.events import (
    JOIN,
    Event,
    RunError,
    RunEvent,
    RunResult,
    Step,
    iso,
)
from flowc.runtime.interpreter import WorkflowEngine
from flowc.server.live import Buffer, Live, Moved, Release
from flowc.server.models import now, utc
from flowc.server.runlog import (
    Claimed,
    Ending,
    LeaseLost,
    StepRow,
    cancelled_error,
    cause,
    dumps,
    fold,
    on_main_line,
)

if TYPE_CHECKING:
    from flowc.server.runs import RunService

#: An `exit` run's buffered rows queued between two turns of the event loop.
YIELD_EVERY = 1000
#: A run's state up to this many characters of JSON gets a snapshot every
#: `FLOWC_SNAPSHOT_STEPS` steps; a bigger one, that many steps more for each such part
#: begun (`snapshot_spacing`).
SNAPSHOT_PART = 4096
#: ... but never more than this many times `FLOWC_SNAPSHOT_STEPS` steps apart.
SNAPSHOT_STRETCH_MAX = 10

logger = logging.getLogger("flowc.server")


async def execute(
    service: RunService,
    claimed: Claimed,
    engine: WorkflowEngine,
    live: Live,
    threads: RunThreads | None = None,
) -> RunResult:
    """Run a claimed run to its end (or its stop) with `engine`; its result.

    Its steps go to the run log as its durability says, each published to its followers
    once recorded; the outcome is written before the final event is.  `threads`: the
    tool threads it counts against (a sub-flow's, its parent's).
    """
    run_id, attempt, log = claimed.run_id, claimed.attempt, service.log
    durability = claimed.durability
    state = dict(claimed.state)
    history: list[Step] = []
    resume: Resume | None = None
    try:
        if not live.has_history:  # a run picked up again: rebuild it
            rows = await log.steps_after(run_id, 0)
            state = _fold(claimed, rows)
            history = [as_step(r) for r in rows]
            resume = _resume(rows)
        if claimed.cancel_requested:
            raise asyncio.CancelledError
    except asyncio.CancelledError:
        live.stop = live.stop or "cancel"
        return await stopped(service, live, claimed, Buffer())
    except Exception as exc:
        return await storage_failed(service, live, claimed, exc)

    buffered = Buffer()  # `exit`: written at the end
    new, stamp, utc = tuple.__new__, datetime.fromtimestamp, timezone.utc
    snapshot_steps = service.settings.snapshot_steps
    #: The step whose write carries the next snapshot (`due`).
    snapshot_at = due(claimed.step, snapshot_spacing(state, snapshot_steps))

    def settle(future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None and live.failure is None:
            live.failure = future.exception()

    def snapshot(row: StepRow) -> dict[str, Any] | None:
        """The state after the step when a snapshot is due (`snapshot_at`): written with it."""
        nonlocal snapshot_at
        if row.seq < snapshot_at:
            return None
        # A copy: `state` goes on changing in place while the write waits its turn.
        copied = dict(state)
        snapshot_at = due(row.seq, snapshot_spacing(copied, snapshot_steps))
        return copied

    def finished(event: Event) -> None:
        """The step is recorded (as the durability says): followers hear of it."""
        live.publish(event)
        if service.draining:
            raise Release

    async def recorded(event: Event, row: StepRow) -> bool:
        # Committed before anyone hears; a step at `snapshot_at` or after carries a copy
        # of the state (`snapshot`, its test inline: one call less on every step).
        copied = snapshot(row) if row.seq >= snapshot_at else None
        await log.record(run_id, attempt, row, copied)
        finished(event)
        # A committed write always waited for the database: the loop had its turn (the
        # interpreter need not yield again for the run's time slice).
        return True

    # A plain function, not a coroutine: the interpreter awaits what it returns, and
    # only a `sync` step's write needs awaiting (one coroutine per step, not two).
    def listen(event: RunEvent) -> Awaitable[bool] | None:
        if event.type == "node_finished":
            delta = event.delta or {}
            started = event.at - (event.duration_ms or 0.0) / 1000
            # By `tuple.__new__` with every field: half the cost of `StepRow(...)`; its
            # times as `moment` makes them, without a call of its own.
            row = new(StepRow, (
                event.step, event.node or "", delta, stamp(started, utc), stamp(event.at, utc),
                event.attempts or 1, event.failed is True, event.branch,
            ))  # fmt: skip
            if event.branch is None or event.branch == JOIN:
                state.update(delta)  # the state after the step, for snapshots
            if durability == "sync":
                return recorded(event, row)
            if durability == "exit":
                buffered.append(row)
            else:
                if live.failure is not None:
                    raise live.failure
                log.append(run_id, attempt, row, snapshot(row)).add_done_callback(settle)
            finished(event)
        elif event.type == "node_started":
            live.publish(event)
        elif event.type == "run_started":
            if live.has_history:
                live.publish(event)
        elif event.type == "child":
            # Not sent here: the host (`Children`) runs each child with a listener of
            # its own, whose `Live` relays its events to this run's followers.
            return None
        elif not event.is_final:  # the final one is published once the outcome is committed
            live.publish(event)
        return None

    try:
        result = await engine.run(
            initial_state=state, run_id=str(run_id), listener=listen, resume=resume,
            threads=threads,
        )  # fmt: skip
    except asyncio.CancelledError:
        if live.stop is None:  # this task itself was cancelled from outside
            live.stop = "release"
        return await stopped(service, live, claimed, buffered)
    except Release:
        live.stop = "release"
        return await stopped(service, live, claimed, buffered)
    except LeaseLost:
        live.stop = "lost"
        return await stopped(service, live, claimed, buffered)
    except Exception as exc:  # the database refused a step
        return await storage_failed(service, live, claimed, exc)
    result = RunResult(result.run_id, result.status, result.state, history + result.steps,
                       result.error, result.waiting)  # fmt: skip
    error = result.error.to_json() if result.error else None
    node = result.steps[-1].node if result.steps else claimed.current_node
    ending = Ending(result.status, result.state, len(result.steps), node, error)
    try:
        if engine.subflows:  # a child left behind (a replay that took another road)
            await close_tree(service, live, "cancelled", abandoned_error(run_id))
        for index, row in enumerate(buffered.rows(), 1):
            log.append(run_id, attempt, row).add_done_callback(settle)
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long `exit` run's rows: let other work in
        if result.waiting is not None:  # it holds nothing while it waits
            await log.wait(run_id, attempt, ending, result.waiting)
        else:
            await log.end(run_id, attempt, ending)
    except LeaseLost:
        # A run that would wait may have been asked to stop: recorded cancelled (a
        # write that changes nothing when it is another worker's now).
        live.stop = "cancel" if result.waiting is not None else "lost"
        return await stopped(service, live, claimed, Buffer())
    except Exception as exc:
        return await storage_failed(service, live, claimed, exc)
    finally:
        service.forget(live)
    if result.waiting is not None:
        live.publish(
            Event("run_waiting", str(run_id), len(result.steps), result.waiting.node,
                  time_now(), status="waiting", state=result.state, waiting=result.waiting)
        )  # fmt: skip
        return result
    live.publish(
        Event("run_finished" if result.status == "succeeded" else "run_failed", str(run_id),
              len(result.steps), node if result.status == "succeeded" else
              (result.error.node if result.error else None), time_now(),
              status=result.status, state=result.state, error=result.error)
    )  # fmt: skip
    return result


async def stopped(service: RunService, live: Live, claimed: Claimed, buffered: Buffer) -> RunResult:
    """A run stopped before its end: cancelled (recorded), released, or lost."""
    run_id, attempt = live.run_id, live.attempt
    try:
        if live.stop == "cancel":
            for row in buffered.rows():
                service.log.append(run_id, attempt, row)
            # What the database holds decides the outcome's state: a step may have been
            # in the middle of its write when the cancel came.
            pending = [item.done for item in service.log.queue.pending(run_id)]
            await asyncio.gather(*pending, return_exceptions=True)
            rows = await service.log.steps_after(run_id, 0)
            state = _fold(claimed, rows)
            steps = [as_step(r) for r in rows]
            node = rows[-1].node if rows else claimed.current_node
            error = cancelled_error()
            ending = Ending("cancelled", state, len(steps), node, error)
            await close_tree(service, live, "cancelled", error)
            with contextlib.suppress(LeaseLost):
                await asyncio.shield(service.log.end(run_id, attempt, ending))
                result = RunResult(str(run_id), "cancelled", state, steps,
                                   RunError("cancelled", error["message"]))  # fmt: skip
                live.publish(_final(str(run_id), result))
                return result
        elif live.stop == "lost":
            logger.warning(
                "run %s was claimed by another worker (or ended elsewhere): stopped here, "
                "nothing more written",
                run_id,
            )
        elif live.stop == "release":
            for row in buffered.rows():  # `exit`: this process exits; what it did is kept
                service.log.append(run_id, attempt, row)
            with contextlib.suppress(LeaseLost):
                await asyncio.shield(service.log.release(run_id, attempt))
    except Exception as exc:
        logger.warning("run %s: the database did not take its %s: %s", run_id, live.stop, exc)
    finally:
        service.forget(live)
    live.moved()
    raise Moved(str(run_id))


async def storage_failed(
    service: RunService, live: Live, claimed: Claimed, exc: BaseException
) -> RunResult:
    """The database refused a write: the run ends `failed` with `storage_error`.

    Its outcome is what the database holds: the steps it took, and the state they lead
    to (an `async` run may have gone further in memory than on disk).
    """
    error = RunError("storage_error", f"the database failed while recording the run: {cause(exc)}")
    try:
        rows = await service.log.steps_after(live.run_id, 0)
        state = _fold(claimed, rows)
        steps = [as_step(r) for r in rows]
        node = rows[-1].node if rows else claimed.current_node
        await close_tree(service, live, "failed", error.to_json())
        await service.log.end(
            live.run_id,
            live.attempt,
            Ending("failed", state, len(steps), node, error.to_json()),
        )
    except Exception as failure:
        logger.warning(
            "run %s failed (%s); the database did not take it: %s",
            live.run_id,
            cause(exc),
            cause(failure),
        )
        steps = _published_steps(live)
        state = fold(
            claimed.state,
            (s.delta for s in steps if s.seq > claimed.step and on_main_line(s.branch)),
        )
    finally:
        service.forget(live)
    result = RunResult(str(live.run_id), "failed", state, steps, error)
    live.publish(_final(str(live.run_id), result))
    return result


async def close_tree(service: RunService, live: Live, status: str, error: dict[str, Any]) -> None:
    """Before a run of its own ends early, end the runs of its sub-flows left unfinished.

    Its children end before it: were this process to die in between, the run would be
    claimed again and end them then.  A sub-flow's run stopped early stops its own
    children in its task (`server/children.py`).
    """
    if live.parent is None:
        closed = await service.children.log.close_tree(live.run_id, live.attempt, status, error)
        if closed:
            logger.info("run %s ended %s, and %d runs of its sub-flows with it",
                        live.run_id, status, len(closed))  # fmt: skip


def abandoned_error(root: uuid.UUID) -> dict[str, Any]:
    """The error of a sub-flow's run that its tree's top run ended without."""
    return {"code": "subflow_abandoned", "message": f"run {root} ended without this sub-flow "
            "run: it went on without it (its node ran at another step)", "node": None,
            "span": None}  # fmt: skip


def time_now() -> float:
    """The current POSIX time."""
    return now().timestamp()


def snapshot_spacing(state: dict[str, Any], steps: int) -> int:
    """Steps from one snapshot of `state` to the next: `steps`, more for a big state.

    A snapshot rewrites the whole state in the run's row, a step only adds its delta: so
    a state of `SNAPSHOT_PART` characters of JSON or less gets one every `steps` steps,
    and a bigger one `steps` steps more for each further part begun, at most
    `SNAPSHOT_STRETCH_MAX` times `steps` apart.  What a snapshot writes a step then
    stays about the same whatever the state's size, and a read of the current state
    (`GET /graph/state`) never folds more than that many steps' deltas.
    """
    parts = -(-len(dumps(state)) // SNAPSHOT_PART)  # rounded up
    return steps * min(max(parts, 1), SNAPSHOT_STRETCH_MAX)


def due(step: int, spacing: int) -> int:
    """The step, after `step`, that carries the next snapshot: the next multiple of `spacing`."""
    return (step // spacing + 1) * spacing


def as_step(row: StepRow) -> Step:
    """A recorded step as the interpreter reports one."""
    return Step(
        row.seq, row.node, row.delta, _ts(row.started_at), _ts(row.finished_at), row.attempts,
        row.failed, row.branch,
    )  # fmt: skip


def _fold(claimed: Claimed, rows: list[StepRow]) -> dict[str, Any]:
    """The run's state after its recorded steps: the snapshot, then the main line's deltas.

    A parallel branch's steps are left out: their writes are in their join's delta.
    """
    return fold(
        claimed.state, (r.delta for r in rows if r.seq > claimed.step and on_main_line(r.branch))
    )


def _resume(rows: list[StepRow]) -> Resume | None:
    """Where a run goes on after its recorded steps; None when it has none.

    After the last main-line step (or join), unless steps of parallel branches (or of a
    map's calls) follow it: then the fork they belong to (or the map) is in flight, and the
    run finishes what they left of it.  A map that starts the flow has calls recorded
    before any main-line step: the run goes on at the start, after none.
    """
    index = len(rows) - 1
    while index >= 0 and not on_main_line(rows[index].branch):
        index -= 1
    if index < 0:
        return Resume(None, 0, branches=tuple(as_step(r) for r in rows)) if rows else None
    last = rows[index]
    return Resume(
        after=last.node,
        seq=last.seq,
        failed=last.failed,
        joined=last.branch == JOIN,
        branches=tuple(as_step(r) for r in rows[index + 1 :]),
    )


def _ts(at: datetime) -> float:
    return (utc(at) or at).timestamp()


def _published_steps(live: Live) -> list[Step]:
    events = (live.event(i) for i in range(len(live.events)))
    return [
        Step(e.step, e.node or "", e.delta or {}, e.at - (e.duration_ms or 0.0) / 1000, e.at,
             e.attempts or 1, e.failed is True, e.branch)
        for e in events
        if isinstance(e, Event) and e.type == "node_finished"
    ]  # fmt: skip


def _final(run_id: str, result: RunResult) -> dict[str, Any]:
    """The final event of a run the service ended: the node is the one that failed, if any."""
    return {
        "type": "run_failed",
        "run_id": run_id,
        "step": len(result.steps),
        "node": result.error.node if result.error else None,
        "delta": None,
        "at": iso(time_now()),
        "status": result.status,
        "state": result.state,
        "error": result.error.to_json() if result.error else None,
    }
