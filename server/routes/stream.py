"""A run id -> its events over a WebSocket: what was missed first, then live, then close.

Close codes: 1000 after the run's final event; 4400 for an id that is not a UUID or an
`after` that is not a step number; 4404 for a run that does not exist; 1011 when the
server fails while streaming.  `PROTOCOL` describes all of it for the OpenAPI document.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from flowc.server.deps import RunsDep
from flowc.server.runs import Draining, UnknownRun

router = APIRouter(tags=["runs"])
logger = logging.getLogger("flowc.server")

#: Close codes of our own (4000-4999 is the range for applications).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_RUN = 4404
#: The server is stopping (1012, "service restart"): the run goes on; reconnect.
CLOSE_RESTARTING = 1012
#: Longest close reason the protocol allows, in UTF-8 bytes.
MAX_REASON_BYTES = 123
#: Most digits an `after` may have (a step number fits a 64-bit integer).
MAX_AFTER_DIGITS = 18
#: Event types that end a run's stream; they are sent whatever `after` says.
FINAL_EVENTS = ("run_finished", "run_failed")

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
  `duration_ms`; `attempts`.
- `run_finished`: `step` the number of steps, `node` the last node; `status: "succeeded"`,
  `state` the final state.
- `run_failed`: `step` the number of steps, `node` the node that failed (or null);
  `status` `failed` or `cancelled`, `state` the last good state, `error`
  `{code, message, node, span}`.

The last message is always `run_finished` or `run_failed`.  A run replayed from the
database has no `node_started` or `node_attempt_failed` messages: steps are recorded
when they finish (a step's `attempts` says how many attempts it took).

`after=SEQ` (optional, an integer >= 0) skips every event whose `step` is at most `SEQ`,
except the final one: a client that reconnects passes the `step` of the last
`node_finished` it got and receives only what came after.

Close codes: **1000** after the final event; **4400** the run id is not a UUID, or `after`
is not an integer >= 0 (the reason says which); **4404** no run has this id; **1012** the
server is restarting (the run goes on: reconnect, to it or another replica, with `after`);
**1011** the server failed while streaming (its log has the details).
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


def _wanted(event: dict[str, Any], after: int | None) -> bool:
    return after is None or event["step"] > after or event["type"] in FINAL_EVENTS


@router.websocket("/ws/graph/{run_id}")
async def follow_run(websocket: WebSocket, run_id: str, runs: RunsDep) -> None:
    """Send each event of the run as one JSON message, in order; close after the last."""
    # Accept first: a close before accepting is a bare HTTP 403, without our code.
    await websocket.accept()
    try:
        run = uuid.UUID(run_id)
    except ValueError:
        reason = _reason(f"not a run id (a UUID): {run_id}")
        await websocket.close(code=CLOSE_BAD_REQUEST, reason=reason)
        return
    try:
        after = _after(websocket.query_params.get("after"))
    except ValueError as exc:
        reason = _reason(f"`after` must be a step number (an integer >= 0), not {exc.args[0]!r}")
        await websocket.close(code=CLOSE_BAD_REQUEST, reason=reason)
        return
    events = runs.events(run)
    try:
        async for event in events:
            if _wanted(event, after):
                await websocket.send_json(event)
    except UnknownRun:
        await websocket.close(code=CLOSE_UNKNOWN_RUN, reason=f"unknown run {run}")
        return
    except Draining:
        reason = "the server is restarting; reconnect with ?after= the last step you got"
        await websocket.close(code=CLOSE_RESTARTING, reason=reason)
        return
    except WebSocketDisconnect:
        return  # the client left; the run goes on
    except Exception:
        logger.exception("streaming run %s failed", run)
        await websocket.close(code=status.WS_1011_INTERNAL_ERROR, reason="internal error")
        return
    finally:
        if isinstance(events, AsyncGenerator):  # stop following at once, not at collection
            await events.aclose()
    await websocket.close(code=status.WS_1000_NORMAL_CLOSURE)
