"""`WS /ws/graph/{run_id}` over a real socket: live events, late replay, close codes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from flowc.runtime import REGISTRY
from tests.server.conftest import CODE_REVIEW, PRINTS, create_graph

pytestmark = pytest.mark.asyncio

#: Seconds a gated tool waits for the test before it gives up (a failure, not a pause).
GATE_TIMEOUT = 30


async def receive_all(socket: ClientConnection) -> list[dict[str, Any]]:
    """Every message until the server closes the socket."""
    return [json.loads(message) async for message in socket]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A tool `gated` that blocks (in a worker thread) until the test opens the gate."""
    opened = threading.Event()

    def gated(state: dict[str, Any]) -> dict[str, Any]:
        if not opened.wait(GATE_TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        return {"passed": True}

    REGISTRY.add(gated, blocking=True)
    yield opened
    opened.set()
    REGISTRY.remove("gated")


async def test_a_client_follows_a_run_live(live_server: str, gate: threading.Event) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_server}") as client:
        graph_id = await create_graph(client, "analyze -> gated -> end")
        body = {"graph_id": graph_id, "input": {"code": "x = 1"}, "wait": False}
        accepted = await client.post("/graph/run", json=body)
        assert accepted.status_code == 202
        run_id = accepted.json()["run_id"]
        async with connect(f"ws://{live_server}/ws/graph/{run_id}") as socket:
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["type"] != "node_started" or seen[-1]["node"] != "gated":
                seen.append(json.loads(await socket.recv()))
            # The run is waiting in `gated`: what comes next can only be live.
            gate.set()
            seen += await receive_all(socket)
            assert socket.close_code == 1000
        state = (await client.get(f"/graph/state/{run_id}")).json()
    assert [(e["type"], e["node"]) for e in seen] == [
        ("run_started", "analyze"),
        ("node_started", "analyze"),
        ("node_finished", "analyze"),
        ("node_started", "gated"),
        ("node_finished", "gated"),
        ("run_finished", "gated"),
    ]
    assert {e["run_id"] for e in seen} == {run_id}
    assert [e["step"] for e in seen] == [0, 1, 1, 2, 2, 2]
    assert seen[4]["delta"] == {"passed": True}
    assert (seen[-1]["status"], seen[-1]["state"]) == ("succeeded", state["state"])


async def test_a_late_client_gets_the_whole_history_then_the_close(live_server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_server}") as client:
        graph_id = await create_graph(client, CODE_REVIEW)
        run = (
            await client.post("/graph/run", json={"graph_id": graph_id, "input": {"code": PRINTS}})
        ).json()
        async with connect(f"ws://{live_server}/ws/graph/{run['run_id']}") as socket:
            events = await receive_all(socket)
            assert socket.close_code == 1000
    finished = [e for e in events if e["type"] == "node_finished"]
    assert [(e["step"], e["node"], e["delta"]) for e in finished] == [
        (s["seq"], s["node"], s["delta"]) for s in run["steps"]
    ]
    assert events[0]["type"] == "run_started"
    assert (events[-1]["type"], events[-1]["state"]) == ("run_finished", run["state"])


async def test_unknown_and_malformed_run_ids_close_with_a_code(live_server: str) -> None:
    missing = uuid.uuid4()
    for path, code, reason in [
        (str(missing), 4404, f"unknown run {missing}"),
        ("not-a-run", 4400, "not a run id (a UUID): not-a-run"),
    ]:
        async with connect(f"ws://{live_server}/ws/graph/{path}") as socket:
            with pytest.raises(ConnectionClosedError) as closed:
                await socket.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)
