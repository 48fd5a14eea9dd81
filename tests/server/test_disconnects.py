"""Clients that leave in the middle: the run goes on, the others still get everything.

Over real sockets (uvicorn in this process): a WebSocket client that goes away while a run
streams, and an HTTP client that hangs up while it waits on `POST /graph/run`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.server.conftest import WAIT, Gates, LiveApp, create_graph, until

pytestmark = pytest.mark.asyncio

TWO_GATES = (
    'node first = hold(gate = "one")\nnode second = hold(gate = "two")\nfirst -> second -> end\n'
)
#: Every event of a `TWO_GATES` run, as (type, step, node).
TWO_GATES_EVENTS = [
    ("run_started", 0, "first"),
    ("node_started", 1, "first"),
    ("node_finished", 1, "first"),
    ("node_started", 2, "second"),
    ("node_finished", 2, "second"),
    ("run_finished", 2, "second"),
]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """Each event's type, step and node."""
    return [(e["type"], e["step"], e["node"]) for e in events]


async def receive(socket: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` messages; fail after `WAIT` seconds."""
    return [json.loads(await asyncio.wait_for(socket.recv(), WAIT)) for _ in range(count)]


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the server (flowc and uvicorn) logged at WARNING and above."""
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("leaving", ["close", "drop"])
async def test_a_websocket_client_that_leaves_mid_stream(
    live_app: LiveApp, gates: Gates, leaving: str, caplog: pytest.LogCaptureFixture
) -> None:
    address, runs = live_app.address, live_app.app.state.runs
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        graph_id = await create_graph(client, TWO_GATES)
        body = {"graph_id": graph_id, "input": {}, "wait": False}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
        await gates.wait_until_reached("one")
        live = runs._live[uuid.UUID(run_id)]
        stream = f"ws://{address}/ws/graph/{run_id}"
        async with connect(stream) as staying, connect(stream) as leaving_socket:
            # Both follow the run, which waits at the first gate.
            assert summary(await receive(leaving_socket, 2)) == TWO_GATES_EVENTS[:2]
            assert summary(await receive(staying, 2)) == TWO_GATES_EVENTS[:2]
            assert len(live.subscribers) == 2
            if leaving == "close":  # with the closing handshake
                await leaving_socket.close()
            else:  # without: the connection just ends
                leaving_socket.transport.abort()
            gates.open("one")
            # The server notices when it next sends to it, and stops following for it
            # while the run still waits at the second gate.
            await until(lambda: len(live.subscribers) == 1, "the server to let the client go")
            await gates.wait_until_reached("two")
            assert not runs._live[uuid.UUID(run_id)].task.done()
            gates.open("two")
            rest = [json.loads(message) async for message in staying]
            assert staying.close_code == 1000
        state = (await client.get(f"/graph/state/{run_id}")).json()
    assert summary(rest) == TWO_GATES_EVENTS[2:]
    assert (state["status"], state["state"]) == ("succeeded", {"one": True, "two": True})
    assert rest[-1]["state"] == state["state"]
    logged = problems(caplog)  # at most one line for the client that left, no traceback
    assert len(logged) <= 1 and not any(record.exc_info for record in logged), logged


async def test_an_http_client_that_hangs_up_while_waiting_on_its_run(
    live_app: LiveApp, gates: Gates, caplog: pytest.LogCaptureFixture
) -> None:
    address, app, server = live_app
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        graph_id = await create_graph(client, 'node wait = hold(gate = "one")\nwait -> end')
    # A client of its own, on a socket the test closes while the request waits.
    host, port = address.split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({"graph_id": graph_id, "input": {"left": True}, "wait": True}).encode()
    writer.write(
        b"POST /graph/run HTTP/1.1\r\nHost: flowc.test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await gates.wait_until_reached("one")
    writer.close()
    await writer.wait_closed()
    await until(lambda: not server.server_state.connections, "uvicorn to see the client go")
    (run_id,) = app.state.runs._live  # the only run of this application

    gates.open("one")
    result = await asyncio.wait_for(app.state.runs.result(run_id), WAIT)
    await until(lambda: not server.server_state.tasks, "the request's handler to end")

    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        state = (await client.get(f"/graph/state/{run_id}")).json()
        steps = (await client.get(f"/graph/state/{run_id}/steps")).json()["steps"]
    assert (result.status, state["status"]) == ("succeeded", "succeeded")
    assert state["state"] == {"left": True, "one": True}
    assert [(s["seq"], s["node"], s["delta"]) for s in steps] == [(1, "wait", {"one": True})]
    assert problems(caplog) == []
