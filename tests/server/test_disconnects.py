"""Clients that leave in the middle: the run goes on, the others still get everything.

Over real sockets (uvicorn in this process): a WebSocket client that goes away while a run
streams, and an HTTP client that hangs up while it waits on `POST /graph/run`.  Then
against `flowc serve` in its own process, replaying a run of a million steps: a client
that resets its connection mid-replay, and one that stops reading; each is let go with at
most a line in the server's log, and the server goes idle (its CPU time is measured).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from flowc.server.schema import prepare
from tests.server.conftest import ROOT, WAIT, Gates, LiveApp, create_graph, until
from tests.server.long_runs import write_sqlite_run

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


@pytest.mark.asyncio
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


@pytest.mark.asyncio
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


# -- against `flowc serve`, replaying a run of a million steps --------------------------

FLOWC = Path(sys.executable).with_name("flowc")
#: Steps of the replayed run: minutes of sending, were a client not let go.
REPLAYED = 1_000_000
#: Seconds a message may wait for the slow client (the server's FLOWC_WS_SEND_TIMEOUT).
SEND_TIMEOUT = 0.5
#: CPU seconds the server may use in the second after a client went, at most: an idle
#: server (a claim query a second) uses a few milliseconds; one still sending, all of it.
IDLE_CPU = 0.25


class Served(NamedTuple):
    """`flowc serve` on a database holding a long run: where, the run, its log, its pid."""

    address: str
    run_id: uuid.UUID
    log: Path
    pid: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`flowc serve` (a short send timeout) on a SQLite file with a finished long run."""
    folder = tmp_path_factory.mktemp("served")
    url = f"sqlite+aiosqlite:///{folder / 'flowc.db'}"
    asyncio.run(prepare(url, migrate=False))
    run_id = write_sqlite_run(str(folder / "flowc.db"), REPLAYED)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = folder / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(FLOWC), "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "FLOWC_WS_SEND_TIMEOUT": str(SEND_TIMEOUT)},
            stdout=log,
            stderr=log,
        )
    try:
        address = f"127.0.0.1:{port}"
        _wait_until_healthy(server, address, log_path)
        yield Served(address, run_id, log_path, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=WAIT)


def _wait_until_healthy(server: subprocess.Popen[bytes], address: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://{address}") as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"flowc serve exited with {server.returncode}:\n{log.read_text()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail("flowc serve did not answer within 60 seconds")


class RawClient:
    """A WebSocket client on a plain socket: the test sets its buffer and how it ends."""

    def __init__(self, address: str, path: str, *, receive_buffer: int | None = None) -> None:
        host, port = address.split(":")
        self.socket = socket.socket()
        if receive_buffer is not None:  # before connecting: it sets the window offered
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(WAIT)
        self.socket.connect((host, int(port)))
        self.protocol = ClientProtocol(parse_uri(f"ws://{address}{path}"))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.messages: list[dict[str, Any]] = []
        while self.protocol.state is State.CONNECTING:
            assert self._read(), "the server closed the connection during the handshake"
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.socket.sendall(data)

    def _read(self) -> bool:
        """Take what arrived; False at the end of the connection."""
        data = self.socket.recv(1 << 16)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.messages.append(json.loads(bytes(event.data)))
        try:
            self._flush()  # a pong, or the reply to a close
        except OSError:
            return False
        return True

    def read_until(self, count: int) -> None:
        """Read until `count` messages came."""
        while len(self.messages) < count:
            assert self._read(), "the server ended the connection"

    def read_to_end(self) -> None:
        """Read until the server ends the connection."""
        while self._read():
            pass
        self.socket.close()

    def reset(self) -> None:
        """End the connection with a reset (RST), not a close: SO_LINGER 0."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.socket.close()


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: the 14th and 15th fields
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_over_a_second(served: Served) -> float:
    """CPU seconds the server uses in the next second, once it answers a request."""
    assert httpx.get(f"http://{served.address}/healthz", timeout=WAIT).status_code == 200
    before = cpu_seconds(served.pid)
    time.sleep(1.0)
    return cpu_seconds(served.pid) - before


def log_lines(served: Served, offset: int) -> list[str]:
    """What the server logged since `offset`, but its access lines for `/healthz`."""
    written = served.log.read_text()[offset:]
    return [line for line in written.splitlines() if "/healthz" not in line]


linux_only = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc"
)


@linux_only
def test_a_client_that_resets_mid_replay_stops_the_sender(served: Served) -> None:
    offset = len(served.log.read_text())
    client = RawClient(served.address, f"/ws/graph/{served.run_id}")
    client.read_until(200)  # the replay is under way, far from its end
    assert [m["step"] for m in client.messages[1:200]] == list(range(1, 200))
    client.reset()
    assert cpu_over_a_second(served) < IDLE_CPU
    logged = log_lines(served, offset)
    assert len(logged) <= 3, logged  # uvicorn's lines for the connection, nothing more
    assert not any("socket.send" in line or "Traceback" in line for line in logged), logged


@linux_only
def test_a_client_that_stops_reading_is_dropped_with_1008(served: Served) -> None:
    offset = len(served.log.read_text())
    client = RawClient(served.address, f"/ws/graph/{served.run_id}", receive_buffer=4096)
    # It reads nothing: the server's buffers fill, a message waits, and it is dropped.
    dropped = f"run {served.run_id}: dropped a WebSocket client that left a message untaken"

    deadline = time.monotonic() + WAIT
    while dropped not in served.log.read_text()[offset:]:
        assert time.monotonic() < deadline, f"not dropped: {log_lines(served, offset)}"
        time.sleep(0.05)
    client.read_to_end()  # what was sent before, then the close
    last = max(m["step"] for m in client.messages if m["type"] == "node_finished")
    assert [m["step"] for m in client.messages[1:]] == list(range(1, last + 1))
    assert last < REPLAYED
    close = client.protocol.close_rcvd
    assert close is not None
    assert (close.code, close.reason) == (
        1008,
        f"too slow: a message waited {SEND_TIMEOUT:g} s; reconnect with ?after={last}",
    )
    assert cpu_over_a_second(served) < IDLE_CPU
    logged = [line for line in log_lines(served, offset) if "dropped" in line]
    # One line, with its time and level (`flowc serve` logs flowc's lines that way).
    line = f"{dropped} for {SEND_TIMEOUT:g} s (FLOWC_WS_SEND_TIMEOUT)"
    assert len(logged) == 1, logged
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} WARNING flowc\.server: {re.escape(line)}",
        logged[0],
    ), logged
