"""A run id -> its events over a WebSocket: what was missed first, then live, then close.

Close codes: 1000 after the run's final event; 4400 for an id that is not a UUID; 4404
for a run that does not exist; 1011 when the server fails while streaming.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from flowc.server.deps import RunsDep
from flowc.server.runs import UnknownRun

router = APIRouter(tags=["runs"])
logger = logging.getLogger("flowc.server")

#: Close codes of our own (4000-4999 is the range for applications).
CLOSE_BAD_ID = 4400
CLOSE_UNKNOWN_RUN = 4404
#: Longest close reason the protocol allows, in UTF-8 bytes.
MAX_REASON_BYTES = 123


def _reason(text: str) -> str:
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")


@router.websocket("/ws/graph/{run_id}")
async def follow_run(websocket: WebSocket, run_id: str, runs: RunsDep) -> None:
    """Send each event of the run as one JSON message, in order; close after the last."""
    # Accept first: a close before accepting is a bare HTTP 403, without our code.
    await websocket.accept()
    try:
        run = uuid.UUID(run_id)
    except ValueError:
        reason = _reason(f"not a run id (a UUID): {run_id}")
        await websocket.close(code=CLOSE_BAD_ID, reason=reason)
        return
    events = runs.events(run)
    try:
        async for event in events:
            await websocket.send_json(event)
    except UnknownRun:
        await websocket.close(code=CLOSE_UNKNOWN_RUN, reason=f"unknown run {run}")
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
