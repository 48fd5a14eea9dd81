"""`WS /ws/graph/{run_id}`: live events, late replay, close codes; long replays in pages.

Over a real socket (uvicorn in this process), then the run service's side of it: a long
run replayed from the database a page at a time, going on live without gaps or doubles,
and a follower of a live run that falls behind.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from flowc.runtime import REGISTRY
from flowc.server.runlog import READ_PAGE, Ending, StepRow
from flowc.server.runs import RunService
from tests.server.conftest import (
    CODE_REVIEW,
    PRINTS,
    WAIT,
    Gates,
    collect,
    create_graph,
    define,
    service_on,
)
from tests.server.long_runs import FINISHED, STARTED, Reads, write_run

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


# -- replays of long runs, read a page at a time -----------------------------------------

#: A replay's length: several pages and a part of one.
REPLAYED = 4 * READ_PAGE + 345


async def collect_after(service: RunService, run_id: uuid.UUID, after: int) -> list[dict[str, Any]]:
    """Every event message of a run after step `after`, to its final one."""
    return [message async for message in service.events(run_id, after=after)]


def finished_steps(events: list[dict[str, Any]]) -> list[int]:
    """The steps of the `node_finished` events, in the order they came."""
    return [e["step"] for e in events if e["type"] == "node_finished"]


async def test_a_long_replay_is_read_a_page_at_a_time(db_url: str) -> None:
    async with service_on(db_url, REGISTRY, worker=False) as service:
        run_id = await write_run(db_url, REPLAYED)
        reads = Reads(service.log)
        events = await asyncio.wait_for(collect(service, run_id), WAIT)
        after = await asyncio.wait_for(collect_after(service, run_id, REPLAYED - 3), WAIT)
    assert events[0] == {
        "type": "run_started", "run_id": str(run_id), "step": 0, "node": "tick", "delta": None,
        "at": STARTED.isoformat(),
    }  # fmt: skip
    assert finished_steps(events) == list(range(1, REPLAYED + 1))
    assert events[1] == {
        "type": "node_finished", "run_id": str(run_id), "step": 1, "node": "tick",
        "delta": {"n": 1}, "at": FINISHED.isoformat(), "duration_ms": 1.0, "attempts": 1,
    }  # fmt: skip
    assert (len(events), events[-1]["type"], events[-1]["state"]) == (
        REPLAYED + 2, "run_finished", {"n": REPLAYED},
    )  # fmt: skip
    # One step for `run_started`'s node, then the log a page at a time by its key.
    pages = [(0, 1, 1)] + [(k * READ_PAGE, READ_PAGE, READ_PAGE) for k in range(4)]
    pages += [(4 * READ_PAGE, READ_PAGE, 345)]
    # `after` skips the pages before it: they are not read.
    pages += [(REPLAYED - 3, READ_PAGE, 3)]
    assert reads.calls == pages
    assert [(e["type"], e["step"]) for e in after] == [
        ("node_finished", REPLAYED - 2), ("node_finished", REPLAYED - 1),
        ("node_finished", REPLAYED), ("run_finished", REPLAYED),
    ]  # fmt: skip


async def test_a_replay_goes_on_live_without_gaps_or_doubles(db_url: str) -> None:
    # A run another process executes: 1,200 steps recorded, more to come.
    async with service_on(db_url, REGISTRY, worker=False) as service:
        run_id = await write_run(db_url, 1200, status="running", snapshot=1100)
        follower = service.events(run_id)
        seen = [await asyncio.wait_for(anext(follower), WAIT) for _ in range(701)]
        # Its owner records more while the follower is in the middle of the replay.
        for seq in range(1201, 1301):
            await service.log.record(run_id, 1, StepRow(seq, "tick", {"n": seq}, STARTED, FINISHED))
        while not seen or seen[-1]["step"] < 1300:
            seen.append(await asyncio.wait_for(anext(follower), WAIT))
        ending = Ending("succeeded", {"n": 1300}, 1300, "tick", None)
        await service.log.end(run_id, 1, ending)
        seen += [message async for message in follower]
    assert seen[0]["type"] == "run_started"
    assert finished_steps(seen) == list(range(1, 1301))
    assert (len(seen), seen[-1]["type"], seen[-1]["state"]) == (1302, "run_finished", {"n": 1300})


@pytest.fixture
def counter() -> Iterator[None]:
    """A tool `count` that adds one to `n`."""

    def count(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    REGISTRY.add(count)
    yield
    REGISTRY.remove("count")


#: A run that waits at a gate after its long history: followed from memory.
LOOPED = (
    'set max_steps = 5000\nnode last = hold(gate = "one")\n'
    "count ? n < 2000 -> count : last\nlast -> end\n"
)
COUNTED = 'node first = hold(gate = "one")\nfirst -> count\ncount ? n < 30 -> count : end\n'


@pytest.mark.usefixtures("counter")
async def test_a_follower_that_falls_behind_is_caught_up_from_the_database(
    db_url: str, gates: Gates
) -> None:
    async with service_on(db_url, REGISTRY, ws_queue_events=3) as service:
        definition = await define(service.db, COUNTED, REGISTRY)
        run_id = (await service.start(definition=definition, input={})).run_id
        await gates.wait_until_reached("one")
        follower = service.events(run_id)
        seen = [await asyncio.wait_for(anext(follower), WAIT) for _ in range(2)]
        live = service._live[run_id]
        assert len(live.subscribers) == 1
        # The run goes on to its end while the follower takes nothing: 60 events for it.
        gates.open("one")
        result = await asyncio.wait_for(service.result(run_id), WAIT)
        assert not live.subscribers  # let go once three events waited
        seen += [message async for message in follower]
    assert (result.status, result.state) == ("succeeded", {"one": True, "n": 30})
    assert [(e["type"], e["node"]) for e in seen[:2]] == [
        ("run_started", "first"), ("node_started", "first"),
    ]  # fmt: skip
    assert finished_steps(seen) == list(range(1, 32))
    # What waited in its queue came from memory; the rest from the database, which has
    # no `node_started`.
    started = [e["step"] for e in seen if e["type"] == "node_started"]
    assert started == [1, 2]
    assert (seen[-1]["type"], seen[-1]["state"]) == ("run_finished", result.state)


class ResettingClient:
    """An ASGI WebSocket client that resets its connection after `keep` messages.

    As an asyncio transport tells it: the write that meets the reset fails silently and
    the loss is reported on the loop's next turn; writes until then vanish (asyncio logs
    a warning for each); sends once it is known raise, as uvicorn's do.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.got: list[dict[str, Any]] = []
        self.lost_writes = 0
        self.lost = False
        self._gone = asyncio.Event()
        self._connected = False

    async def receive(self) -> MutableMapping[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self._gone.wait()
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.lost:
            raise ConnectionResetError("the client reset the connection")
        if message["type"] != "websocket.send":
            return
        if len(self.got) < self.keep:
            self.got.append(json.loads(message["text"]))
            return
        if not self.lost_writes:
            asyncio.get_running_loop().call_soon(self._lose)
        self.lost_writes += 1

    def _lose(self) -> None:
        self.lost = True
        self._gone.set()


@pytest.mark.usefixtures("counter")
@pytest.mark.parametrize("source", ["database", "memory"])
async def test_a_client_that_resets_is_sent_nothing_more(
    app: FastAPI, db_url: str, gates: Gates, source: str
) -> None:
    if source == "database":
        run_id = await write_run(db_url, REPLAYED)
    else:  # a run of this process, followed from its history in memory
        runs = app.state.runs
        definition = await define(runs.db, LOOPED, REGISTRY)
        run_id = (await runs.start(definition=definition, input={})).run_id
        await gates.wait_until_reached("one")
    client = ResettingClient(keep=10)
    scope = {
        "type": "websocket", "path": f"/ws/graph/{run_id}", "raw_path": b"", "root_path": "",
        "query_string": b"", "headers": [], "subprotocols": [], "scheme": "ws",
        "server": ("flowc.test", 80), "client": ("127.0.0.1", 50000), "asgi": {"version": "3.0"},
    }  # fmt: skip
    await asyncio.wait_for(app(scope, client.receive, client.send), WAIT)
    assert len(client.got) == 10
    assert client.lost_writes == 1  # the write that met the reset, and no other
