"""End to end: `flowc serve` in its own process, spoken to over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from flowc.cli.main import main
from flowc.cli.serve import redact
from tests.server.conftest import CODE_REVIEW, ONE_LINER, PRINTS, ROOT, events_of

FLOWC = Path(sys.executable).with_name("flowc")
#: Seconds the server has to start: a limit for a broken start-up, not a timing assertion.
START_TIMEOUT = 60.0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served(NamedTuple):
    """A running `flowc serve`: where it listens, its database URL, and its output so far."""

    address: str
    database_url: str
    log: Path


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """`flowc serve` on a free port and a fresh SQLite file; stopped (and waited for) after."""
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"
    log_path = tmp_path / "serve.log"
    log = log_path.open("w+")
    server = subprocess.Popen(
        [str(FLOWC), "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        stdout=log,
        stderr=log,
    )
    try:
        await _wait_until_healthy(server, f"http://127.0.0.1:{port}", log)
        yield Served(f"127.0.0.1:{port}", url, log_path)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


async def _wait_until_healthy(server: subprocess.Popen[bytes], url: str, log: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=url) as client:
        while loop.time() < deadline:
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"flowc serve exited with {server.returncode}:\n{log.read()}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"flowc serve did not answer within {START_TIMEOUT} seconds")


@pytest.mark.asyncio
async def test_serve_end_to_end(served: Served) -> None:
    address = served.address
    output = served.log.read_text()
    assert f"flowc: serving on http://{address} (API docs at http://{address}/docs)\n" in output
    assert f"flowc: database {served.database_url}\n" in output
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        one_liner = await client.post("/graph/create", json={"source": ONE_LINER})
        assert one_liner.status_code == 201
        created = await client.post(
            "/graph/create", content=CODE_REVIEW, headers={"content-type": "text/plain"}
        )
        assert (created.status_code, created.json()["name"]) == (201, "code_review")
        body = {"graph_id": created.json()["graph_id"], "input": {"code": PRINTS}, "wait": False}
        accepted = await client.post("/graph/run", json=body)
        assert accepted.status_code == 202
        run_id = accepted.json()["run_id"]
        stream = f"ws://{address}/ws/graph/{run_id}"

        live, live_code = await events_of(stream)  # connected at once: as it happens
        late, late_code = await events_of(stream)  # after the end: the history again
        state = (await client.get(f"/graph/state/{run_id}")).json()
        steps = (await client.get(f"/graph/state/{run_id}/steps")).json()["steps"]

        missing = uuid.uuid4()
        async with connect(f"ws://{address}/ws/graph/{missing}") as ws:
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()

    assert (live_code, late_code) == (1000, 1000)
    assert live == late
    kinds = [event["type"] for event in live]
    assert (kinds[0], kinds[-1]) == ("run_started", "run_finished")
    final = live[-1]
    assert final["status"] == "succeeded"
    assert final["state"]["score"] >= 80
    assert (state["status"], state["state"], state["step"]) == ("succeeded", final["state"], 7)
    finished = [e for e in live if e["type"] == "node_finished"]
    assert [(e["step"], e["node"], e["delta"]) for e in finished] == [
        (s["seq"], s["node"], s["delta"]) for s in steps
    ]
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4404, f"unknown run {missing}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+asyncpg://flowc:flowc@db:5432/flowc",
            "postgresql+asyncpg://flowc:***@db:5432/flowc",
        ),
        ("postgresql://postgres@127.0.0.1:5432/x", "postgresql://postgres@127.0.0.1:5432/x"),
        ("sqlite+aiosqlite:///./flowc.db", "sqlite+aiosqlite:///./flowc.db"),
    ],
)
def test_redact_hides_the_password_only(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_serve_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr() == ("", "flowc: error: --port must be from 0 to 65535, not 70000\n")


def test_serve_on_a_database_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://flowc:s3cret@127.0.0.1:1/flowc"  # nothing listens on port 1
    result = subprocess.run(
        [str(FLOWC), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (2, "", 1)
    assert result.stderr.startswith(  # then the system's words: `[Errno 111] Connect call ...`
        "flowc: error: cannot open the database postgresql+asyncpg://flowc:***@127.0.0.1:1/flowc: "
        "ConnectionRefusedError: "
    )


def test_serve_with_bad_settings_says_which(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(FLOWC), "serve"],
        cwd=tmp_path,
        env={**os.environ, "FLOWC_DEFAULT_DURABILITY": "never"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "flowc: error: invalid settings in the environment: "
        "FLOWC_DEFAULT_DURABILITY must be one of sync, async, exit, not 'never'\n",
    )
