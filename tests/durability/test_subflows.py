"""A sub-flow's run survives its processes: kill -9 in the middle of a child, with real
`flowc serve` and `flowc worker` processes, on PostgreSQL (another worker takes the parent
over after its lease) and on SQLite (the next `flowc serve` resumes it).

The parent counts once, runs a child that counts slowly five times, then counts again.
Whoever ran which part, the parent ends `succeeded` with the state an uninterrupted run
has, its log holds its three steps, the child's log holds steps `1..5` once each, and the
child's steps recorded before the kill were not run again (at most the one in flight was).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from flowc.compiler import compile_source
from flowc.compiler.ir import Flow
from flowc.runtime.subflows import child_run_id
from flowc.server import store
from flowc.server.db import Database
from tests.durability.conftest import Process, Processes
from tests.durability.test_workers import (
    TOOLS,
    WAIT,
    Api,
    api_server,
    calls,
    calls_file,
    environment,
    kill_the_owner,
    pid_of,
    workers,
)

__all__ = ["calls_file"]

#: The child's steps, each `step` with a pause long enough for a kill to land among them.
CHILD_STEPS = 5
CHILD = f"""\
set max_steps = 20
node c = step(pause = 0.3)
c ? n < {CHILD_STEPS + 1} -> c : end
"""
#: The parent's final state: `n` counted by the parent, the child (5), the parent again.
FINAL = {"n": CHILD_STEPS + 2, "total": sum(range(1, CHILD_STEPS + 3))}


def save_graphs(url: str) -> str:
    """Save the child, then the parent that runs it (as IR, straight into the database)."""

    async def insert() -> str:
        db = Database(url)
        try:
            async with db.session() as session:
                child = await store.create_definition(
                    session, name="slow_count", source=CHILD, ir=compile_source(CHILD).ir
                )
                parent = Flow.model_validate(
                    {
                        "ir_version": 2,
                        "name": "parent",
                        "start": "s",
                        "nodes": [
                            {"name": "s", "tool": "step", "args": {"pause": 0.02}},
                            {"name": "review", "tool": "flow", "flow": {
                                "name": "slow_count", "graph_id": str(child.id),
                                "ir": child.ir}},
                            {"name": "t", "tool": "step", "args": {"pause": 0.02}},
                        ],
                        "routes": {
                            "s": {"kind": "goto", "target": "review"},
                            "review": {"kind": "goto", "target": "t"},
                        },
                    }
                )  # fmt: skip
                saved = await store.create_definition(
                    session, name="parent", source=None, ir=parent
                )
            return str(saved.id)
        finally:
            await db.dispose()

    return asyncio.run(insert())


def child_state(api: Api, child_id: str) -> dict[str, Any] | None:
    """The child's state, None before its parent made its row."""
    response = api.http.get(f"/graph/state/{child_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def until_child_step(api: Api, child_id: str, step: int) -> dict[str, Any]:
    """Wait until the child recorded `step` steps; its state then."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = child_state(api, child_id)
        if found is not None and found["step"] >= step:
            return found
        time.sleep(0.05)
    pytest.fail(f"child {child_id} did not record step {step} in {WAIT} s")


def assert_complete(api: Api, run_id: str, child_id: str) -> None:
    """Both runs succeeded with the uninterrupted outcome; each step in each log once."""
    parent = api.finished(run_id)
    assert (parent["status"], parent["error"], parent["state"]) == ("succeeded", None, FINAL)
    assert parent["children"] == [{"run_id": child_id, "node": "review", "status": "succeeded"}]
    assert [(s["seq"], s["node"], s["delta"]["n"]) for s in api.steps(run_id)] == [
        (1, "s", 1), (2, "review", CHILD_STEPS + 1), (3, "t", CHILD_STEPS + 2),
    ]  # fmt: skip
    child = api.state(child_id)
    assert (child["status"], child["parent_run_id"], child["worker"]) == (
        "succeeded", run_id, None,
    )  # fmt: skip
    assert child["state"] == {"n": CHILD_STEPS + 1, "total": sum(range(1, CHILD_STEPS + 2))}
    recorded = api.steps(child_id)
    assert [s["seq"] for s in recorded] == list(range(1, CHILD_STEPS + 1))
    assert [s["delta"]["n"] for s in recorded] == list(range(2, CHILD_STEPS + 2))


def assert_child_went_on(
    calls_file: Path, child_id: str, victim: Process, survivor: Process, recorded: int
) -> None:
    """The survivor ran the child from where the victim stopped: the `recorded` steps (at
    least) were not run again; the parent's steps ran once each, before and after."""
    noted = calls(calls_file)
    child = [c for c in noted if c["run"] == child_id]
    by_victim = [c["seq"] for c in child if c["pid"] == victim.pid]
    by_survivor = [c["seq"] for c in child if c["pid"] == survivor.pid]
    assert by_victim == list(range(1, len(by_victim) + 1))
    assert len(by_victim) >= recorded
    assert by_survivor == list(range(by_survivor[0], CHILD_STEPS + 1))
    assert by_survivor[0] in (len(by_victim), len(by_victim) + 1)
    assert by_survivor[0] > recorded  # what was recorded at the kill did not run again
    parents = [(c["pid"], c["seq"]) for c in noted if c["run"] != child_id]
    assert parents == [(victim.pid, 1), (survivor.pid, 3)]


def test_kill_9_in_the_middle_of_a_child_another_worker_finishes_both(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    run_id = api.start(save_graphs(cluster_database))
    child_id = child_run_id(run_id, 2)
    running = until_child_step(api, child_id, 2)
    assert (running["status"], running["parent_run_id"], running["parent_node"]) == (
        "running", run_id, "review",
    )  # fmt: skip
    assert pid_of(running) == pid_of(api.state(run_id))  # the child is its parent's owner's
    victim, survivor = kill_the_owner(running, [first, second])
    recorded = len(api.steps(child_id))

    api.until(run_id, lambda s: s["attempt"] == 2, "a second claim of the parent")
    assert_complete(api, run_id, child_id)
    assert api.state(child_id)["attempt"] == 2  # the parent's epoch
    assert_child_went_on(calls_file, child_id, victim, survivor, recorded)
    assert survivor.returncode is None
    api.close()


def test_kill_9_of_sqlite_serve_in_the_middle_of_a_child_the_next_serve_finishes_both(
    tmp_path: Path, processes: Processes, calls_file: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flowc.db'}"
    env = environment(url, calls_file)
    server = processes.serve(url, "--tools", TOOLS, env=env)
    api = Api(server)
    run_id = api.start(save_graphs(url))
    child_id = child_run_id(run_id, 2)
    until_child_step(api, child_id, 2)
    server.kill(signal.SIGKILL)
    server.wait()
    api.close()

    again = Api(processes.serve(url, "--tools", TOOLS, env=env))
    recorded = len(again.steps(child_id))
    assert recorded >= 2
    assert_complete(again, run_id, child_id)
    assert again.state(run_id)["attempt"] == 2
    assert_child_went_on(calls_file, child_id, server, again.server, recorded)
    again.close()
