"""The durability harness itself: a private PostgreSQL stopped, crashed and restarted keeps
what it committed; background commands are signalled, paused, stopped and cleaned up."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.durability import cluster as cluster_module
from tests.durability import conftest as durability_conftest
from tests.durability.cluster import Cluster
from tests.durability.conftest import Process, Processes, new_cluster

#: Prints `ready` once its SIGTERM handling is set up, then sleeps until it is ended.
SLEEPER = """
import signal, sys, time
if sys.argv[1:] == ["ignore-sigterm"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""
#: Seconds a test waits for something it caused: a bound, not a pause.
WAIT = 30.0


def sleeper(processes: Processes, *args: str) -> Process:
    """Start `SLEEPER` and wait until it says it is ready."""
    process = processes.start([sys.executable, "-c", SLEEPER, *args], name="sleeper")
    eventually(lambda: process.stdout() == "ready\n", f"{process!r} ready")
    return process


def state_of(pid: int) -> str:
    """The process's scheduler state from /proc (`S` sleeping, `T` stopped, `Z` zombie...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat.rpartition(")")[2].split()[0]


def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll `check()` until it is true; fail the test after `WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not after {WAIT} s: {what}")
        time.sleep(0.01)


async def rows(url: str) -> list[str]:
    """The `note` table's texts, in order."""
    connection = await asyncpg.connect(url)
    try:
        return [row["text"] for row in await connection.fetch("SELECT text FROM note ORDER BY id")]
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_the_cluster_takes_connections_with_its_settings(
    cluster: Cluster, cluster_database: str
) -> None:
    connection = await asyncpg.connect(cluster_database)
    try:
        settings = {
            name: await connection.fetchval(f"SHOW {name}")
            for name in ("port", "listen_addresses", "fsync", "synchronous_commit")
        }
        user = await connection.fetchval("SELECT current_user")
    finally:
        await connection.close()
    assert settings == {
        "port": str(cluster.port),
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "on",
    }
    assert user == "postgres"
    assert cluster_database.startswith(f"postgresql://postgres@127.0.0.1:{cluster.port}/flowc_")


@pytest.mark.asyncio
async def test_a_restart_keeps_committed_rows_on_the_same_url(
    cluster: Cluster, cluster_database: str
) -> None:
    connection = await asyncpg.connect(cluster_database)
    await connection.execute("CREATE TABLE note (id serial PRIMARY KEY, text text)")
    await connection.execute("INSERT INTO note (text) VALUES ('one'), ('two')")
    await connection.close()
    port = cluster.port

    cluster.restart()

    assert (cluster.port, cluster.running) == (port, True)
    assert await rows(cluster_database) == ["one", "two"]


@pytest.mark.asyncio
async def test_an_immediate_stop_recovers_what_was_committed_and_only_that(
    cluster: Cluster, cluster_database: str
) -> None:
    connection = await asyncpg.connect(cluster_database)
    await connection.execute("CREATE TABLE note (id serial PRIMARY KEY, text text)")
    await connection.execute("INSERT INTO note (text) VALUES ('committed')")
    open_transaction = connection.transaction()
    await open_transaction.start()
    await connection.execute("INSERT INTO note (text) VALUES ('in flight')")
    logged = len(cluster.log())

    cluster.stop("immediate")
    connection.terminate()
    assert not cluster.running
    cluster.start()

    assert "automatic recovery in progress" in cluster.log()[logged:]
    assert await rows(cluster_database) == ["committed"]


@pytest.mark.asyncio
async def test_a_stopped_cluster_refuses_connections_until_started(
    cluster: Cluster, cluster_database: str
) -> None:
    cluster.stop()
    cluster.stop()  # already down: nothing to do

    assert not cluster.running
    with pytest.raises(OSError):
        await asyncpg.connect(cluster_database, timeout=5)
    cluster.start()
    cluster.start()  # already up: nothing to do
    connection = await asyncpg.connect(cluster_database)
    assert await connection.fetchval("SELECT 1") == 1
    await connection.close()


@pytest.mark.parametrize(
    ("required", "outcome"), [(False, pytest.skip.Exception), (True, pytest.fail.Exception)]
)
def test_missing_programs_skip_the_test_unless_postgresql_is_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: bool, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(cluster_module, "PROGRAM_FOLDERS", ("/nowhere/*/bin",))
    monkeypatch.setattr(durability_conftest, "REQUIRE_POSTGRES", required)

    with pytest.raises(outcome) as raised:
        new_cluster()

    assert str(raised.value) == (
        "PostgreSQL's server programs (initdb, pg_ctl, postgres) are neither on PATH nor in "
        "/nowhere/*/bin: install PostgreSQL's server package"
    )


def test_database_names_that_would_need_quoting_are_refused(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match=r"database names here are \[a-z_\]\[a-z0-9_\]\*"):
        cluster.create_database('x"; DROP DATABASE postgres; --')


@pytest.mark.asyncio
async def test_destroy_stops_the_server_and_removes_its_folder() -> None:
    other = new_cluster()
    pid = int((other.data / "postmaster.pid").read_text().split()[0])
    folder, url = other.directory, other.url

    other.destroy()
    other.destroy()  # again: nothing to do

    assert not folder.exists()
    assert state_of(pid) in ("gone", "Z")  # a zombie until whoever adopted it reaps it
    assert not other.running
    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=5)


def test_a_process_is_paused_resumed_and_ended_by_signals(processes: Processes) -> None:
    process = sleeper(processes)

    process.pause()
    eventually(lambda: state_of(process.pid) == "T", f"{process!r} stopped")
    process.resume()
    eventually(lambda: state_of(process.pid) in ("S", "R"), f"{process!r} running again")
    process.kill(signal.SIGTERM)

    assert process.wait() == -signal.SIGTERM


def test_a_process_gets_its_environment_and_its_streams_are_kept(processes: Processes) -> None:
    os.environ["FLOWC_PROBE_REMOVED"] = "here"
    try:
        process = processes.start(
            [
                sys.executable,
                "-c",
                "import os, sys; print(os.environ.get('FLOWC_PROBE'), "
                "os.environ.get('FLOWC_PROBE_REMOVED')); print('oops', file=sys.stderr); "
                "sys.exit(3)",
            ],
            env={"FLOWC_PROBE": "set", "FLOWC_PROBE_REMOVED": None},
        )
    finally:
        del os.environ["FLOWC_PROBE_REMOVED"]

    assert process.wait() == 3
    assert (process.stdout(), process.stderr()) == ("set None\n", "oops\n")
    assert process.stdout_path.parent == processes.logs


def test_stop_kills_a_process_that_ignores_sigterm(processes: Processes) -> None:
    process = sleeper(processes, "ignore-sigterm")

    process.stop(timeout=0.5)

    assert process.returncode == -signal.SIGKILL


def test_stop_ends_a_paused_process_with_sigterm(processes: Processes) -> None:
    process = sleeper(processes)
    process.pause()
    eventually(lambda: state_of(process.pid) == "T", f"{process!r} stopped")

    process.stop()

    assert process.returncode == -signal.SIGTERM


def test_close_kills_every_process_still_running(tmp_path: Path) -> None:
    group = Processes(tmp_path)
    running, paused = sleeper(group), sleeper(group)
    paused.pause()
    finished = group.start([sys.executable, "-c", "pass"])
    finished.wait()

    group.close()

    assert [p.returncode for p in (running, paused, finished)] == [-9, -9, 0]
    assert [p.name for p in group.started] == ["01-sleeper", "02-sleeper", "03-python"]


def test_flowc_arguments_are_passed_through(processes: Processes) -> None:
    process = processes.flowc("check", "examples/one_liner.flow")

    assert process.wait() == 0, process.output()
    assert process.name == "01-flowc-check"


def test_flowc_serve_runs_a_flow_on_a_cluster_database(
    processes: Processes, cluster_database: str
) -> None:
    server = processes.serve(cluster_database)

    result = server.create_and_run("analyze -> style -> score", {"code": "x = 1\n"})
    health = httpx.get(f"{server.url}/healthz", timeout=10)
    server.stop()

    assert result["status"] == "succeeded", result
    assert health.status_code == 200
    # Ended by SIGTERM, not by `stop`'s SIGKILL: uvicorn shuts down, then re-raises the signal.
    assert server.returncode in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete." in server.stderr()
    assert f"flowc: serving on {server.url}" in server.stderr()
