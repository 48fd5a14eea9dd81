"""A run id -> its events over a WebSocket: what was missed first, then live, then close.

Close codes: 1000 after the run's final event; 4400 for an id that is not a UUID or an
`after` that is not a step number; 4404 for a run that does not exist; 1008 for a client
that leaves a message untaken for `ws_send_timeout` seconds; 1011 when the server fails
while streaming; 1012 when it restarts.  `PROTOCOL` describes all of it for the OpenAPI
document.

Each connection has a sender, which sends the run's events and gives the event loop a turn
after each one, and a watcher, which notices the client leave (a close, a reset) or a
message wait too long; whichever ends first stops the other at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from flowc.server.auth import accepted_subprotocol
from flowc.server.deps import RunsDep, SettingsDep
from flowc.server.runs import Draining, UnknownRun

router = APIRouter(tags=["runs"])
logger = logging.getLogger("flowc.server")

#: Close codes of our own (4000-4999 is the range for applications).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_RUN = 4404
#: The server is stopping (1012, "service restart"): the run goes on; reconnect.
CLOSE_RESTARTING = 1012
#: The client took too long to take a message (1008, "policy violation"): dropped.
CLOSE_TOO_SLOW = 1008
#: Seconds a close may wait for room in the client's buffer; then the connection just ends.
CLOSE_WAIT = 10.0
#: Longest close reason the protocol allows, in UTF-8 bytes.
MAX_REASON_BYTES = 123
#: Most digits an `after` may have (a step number fits a 64-bit integer).
MAX_AFTER_DIGITS = 18

PROTOCOL = """\
### Following a run: `WS /ws/graph/{run_id}?after=SEQ`

OpenAPI has no WebSocket operations, so the protocol is described here.  Connect with the
`run_id` that `POST /graph/run` answered.  The server sends one JSON text message per event
of the run, in order: first the events the run emitted before you connected (from memory,
or from the database for a run that ended a while ago or runs in another process), then
live events as they happen, wherever the run executes (also through a crash of its worker
and its resumption by another).  After the run's final event it closes the socket with 1000.
The client sends nothing.

Every message has `type`, `run_id`, `step`, `node`, `delta` (null unless said) and `at`
(ISO 8601, UTC).  By `type`:

- `run_started`: `step` 0, `node` the start node.
- `node_started`: `step` the step's number (from 1), `node` the node about to run.
- `node_attempt_failed` (nodes with `retries` or `timeout`): `step` and `node` as above;
  `attempt` (from 1), `error`, `duration_ms`, `retry_in` (seconds; null when no retry
  follows).
- `node_finished`: `step` and `node` as above; `delta` the keys the node changed;
  `duration_ms`; `attempts`; `failed: true` for a step that failed and took its node's
  error route (`on_error`: its `delta` is the `error` it wrote, and the run goes on at the
  route's target), left out otherwise.
- In a parallel branch, `node_started`, `node_attempt_failed` and `node_finished` have
  `branch`, the branch's index (`"0"`, `"1"`, ... in the order written).  Branch steps are
  numbered in the order they finish: a `node_started`'s `step` is the number the step
  gets if no other finishes first.  Where the branches join, a `node_finished` with
  `branch: "join"` and the fork's `node` has the merge's `delta`.  Main-line messages have
  no `branch`.
- `run_finished`: `step` the number of steps, `node` the last node; `status: "succeeded"`,
  `state` the final state.
- `run_failed`: `step` the number of steps, `node` the node that failed (or null);
  `status` `failed` or `cancelled`, `state` the last good state, `error`
  `{code, message, node, span}`.
- `run_waiting`: the run stopped at a wait node: `step` the number of steps, `node` the
  wait node; `status: "waiting"`, `state`, `waiting` `{node, name, timeout}`.  The socket
  stays open: when the run is resumed (`POST /graph/resume/{run_id}`) or its wait times
  out, the wait's step and the rest of the run follow.

The last message is always `run_finished` or `run_failed`.  A run replayed from the
database has no `node_started` or `node_attempt_failed` messages: steps are recorded
when they finish (a step's `attempts` says how many attempts it took).

Sub-flows: followed from the process that runs it, a run's stream also has the events of
its sub-flows' runs, live, between its sub-flow node's `node_started` and `node_finished`:
each with the child's `run_id` and step numbers, and `parent_run_id` and `parent_node`
(the run and node that run it).  They never end the stream.  A replay from the database
has the run's own events only: follow a child with its own `run_id` (the parent's
`children` in `GET /graph/state/{run_id}`), as any run.

`after=SEQ` (optional, an integer >= 0) skips every event whose `step` is at most `SEQ`,
except the final one and `run_waiting`: a client that reconnects passes the `step` of the
last `node_finished` it got and receives only what came after.  It counts the run's own
steps: a sub-flow's events come when their node's step is above `SEQ`.

A replay from the database is read a page at a time, however long the run.  A client
that falls more than `FLOWC_WS_QUEUE_EVENTS` (1000) events behind a live run is caught up
from the database: it gets every `node_finished`, but no `node_started` for the steps it
fell behind on.

Close codes: **1000** after the final event; **4400** the run id is not a UUID, or `after`
is not an integer >= 0 (the reason says which); **4404** no run has this id; **1008** the
client left a message untaken for `FLOWC_WS_SEND_TIMEOUT` seconds (10): it is dropped, and
may reconnect with the `after` the reason names; **1012** the server is restarting (the
run goes on: reconnect, to it or another replica, with `after`); **1011** the server
failed while streaming (its log has the details).  A client that goes away (a close, or a
connection reset) is let go at once: nothing more is sent, and the run goes on.
"""


def _reason(text: str) -> str:
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def _after(value: str | None) -> int | None:
    """The `after` query parameter as a step number; ValueError when it is not one."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_AFTER_DIGITS):
        raise ValueError(value)
    return int(value)


@dataclass
class _Progress:
    """Where a sender is: since when its current message waits (loop time), its last step."""

    sending_since: float | None = None
    step: int | None = None


async def _send_all(
    websocket: WebSocket, events: AsyncIterator[dict[str, Any]], progress: _Progress
) -> None:
    """Send each event as one JSON message, in order."""
    loop = asyncio.get_running_loop()
    async for event in events:
        progress.sending_since = loop.time()
        await websocket.send_json(event)
        progress.sending_since = None
        if event["type"] == "node_finished":
            progress.step = event["step"]
        # A turn of the event loop per message: a connection the client reset is seen at
        # once (the next send raises instead of writing into a dead socket), and a long
        # replay does not hold the loop.
        await asyncio.sleep(0)


async def _client_leaves(websocket: WebSocket) -> None:
    """Return when the client closes or its connection ends (what it sends is ignored)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _watch(websocket: WebSocket, progress: _Progress, timeout: float) -> str:
    """`left` when the client goes away; `stalled` when a message waits `timeout` seconds."""
    loop = asyncio.get_running_loop()
    leaving = asyncio.ensure_future(_client_leaves(websocket))
    try:
        while True:
            since = progress.sending_since
            wait = timeout if since is None else since + timeout - loop.time()
            if wait <= 0:
                return "stalled"
            done, _ = await asyncio.wait({leaving}, timeout=wait)
            if done:
                return "left"
    finally:
        leaving.cancel()
        if leaving.done() and not leaving.cancelled():
            leaving.exception()  # retrieved: a receive that failed means the client is gone


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close with `code`; a client that left meanwhile, or takes nothing, is let go."""
    with contextlib.suppress(WebSocketDisconnect, asyncio.TimeoutError):
        await asyncio.wait_for(websocket.close(code=code, reason=_reason(reason)), CLOSE_WAIT)


@router.websocket("/ws/graph/{run_id}")
async def follow_run(
    websocket: WebSocket, run_id: str, runs: RunsDep, settings: SettingsDep
) -> None:
    """Send each event of the run as one JSON message, in order; close after the last."""
    # Accept first: a close before accepting is a bare HTTP 403, without our code.  (The
    # token was checked before: `Authentication`.)  `flowc.v1` is answered when offered,
    # never `bearer.<token>`: a browser fails a socket whose offer gets no answer.
    offered = websocket.scope.get("subprotocols", ())
    await websocket.accept(subprotocol=accepted_subprotocol(offered))
    try:
        run = uuid.UUID(run_id)
    except ValueError:
        await _close(websocket, CLOSE_BAD_REQUEST, f"not a run id (a UUID): {run_id}")
        return
    try:
        after = _after(websocket.query_params.get("after"))
    except ValueError as exc:
        reason = f"`after` must be a step number (an integer >= 0), not {exc.args[0]!r}"
        await _close(websocket, CLOSE_BAD_REQUEST, reason)
        return
    progress = _Progress()
    events = runs.events(run, after=after)
    timeout = settings.ws_send_timeout
    sending = asyncio.ensure_future(_send_all(websocket, events, progress))
    watching = asyncio.ensure_future(_watch(websocket, progress, timeout))
    try:
        await asyncio.wait({sending, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, watching):
            task.cancel()
        await asyncio.gather(sending, watching, return_exceptions=True)
        if isinstance(events, AsyncGenerator):  # stop following at once, not at collection
            await events.aclose()
    if not sending.cancelled():
        await _finish(websocket, run, sending.exception())
    elif watching.result() == "stalled":
        logger.warning(
            "run %s: dropped a WebSocket client that left a message untaken for %g s "
            "(FLOWC_WS_SEND_TIMEOUT)",
            run,
            timeout,
        )
        again = "" if progress.step is None else f" with ?after={progress.step}"
        reason = f"too slow: a message waited {timeout:g} s; reconnect{again}"
        await _close(websocket, CLOSE_TOO_SLOW, reason)
    # else the client left: the run goes on, nothing to say


async def _finish(websocket: WebSocket, run: uuid.UUID, failure: BaseException | None) -> None:
    """Close as the end of the events says: the run's end, or why they stopped."""
    if failure is None:
        await _close(websocket, status.WS_1000_NORMAL_CLOSURE)
    elif isinstance(failure, UnknownRun):
        await _close(websocket, CLOSE_UNKNOWN_RUN, f"unknown run {run}")
    elif isinstance(failure, Draining):
        reason = "the server is restarting; reconnect with ?after= the last step you got"
        await _close(websocket, CLOSE_RESTARTING, reason)
    elif not isinstance(failure, WebSocketDisconnect):  # else the client left
        logger.error("streaming run %s failed", run, exc_info=failure)
        await _close(websocket, status.WS_1011_INTERNAL_ERROR, "internal error")
