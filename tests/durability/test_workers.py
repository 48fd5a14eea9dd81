"""Runs survive their processes: real `flowc serve` and `flowc worker` processes, killed,
paused, stopped and restarted, on a PostgreSQL cluster of the module's own (and on SQLite).

Each test checks the promise from outside, as an operator would: every run ends
`succeeded` with the state an uninterrupted run has, and its step log holds steps `1..N`,
each exactly once.  `FLOWC_TEST_CALLS` makes the tools note each call, so a test can also
see which process ran what.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from flowc.compiler.ir import Flow
from flowc.server import store
from flowc.server.db import Database
from tests.durability.cluster import Cluster
from tests.durability.conftest import FlowcServer, Process, Processes

TOOLS = "tests/durability/flow_tools.py"
#: A short lease, so that a silent owner is replaced within seconds.
LEASE = "2"
#: Seconds a test waits for something before it fails (a bound, not a measurement).
WAIT = 60.0
ENDED = ("succeeded", "failed", "cancelled")


def counting(steps: int, pause: float = 0.02) -> str:
    """A flow that counts to `steps`, one `step` per node run."""
    return (
        f"set max_steps = {steps + 10}\nnode s = step(pause = {pause})\n"
        f"s ? n < {steps} -> s : end\n"
    )


def expected(steps: int) -> dict[str, int]:
    """The final state of `counting(steps)`, whoever ran it."""
    return {"n": steps, "total": steps * (steps + 1) // 2}


class Api:
    """A `flowc serve` process, spoken to over HTTP."""

    def __init__(self, server: FlowcServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def create(self, flow: str) -> str:
        response = self.http.post(
            "/graph/create", content=flow, headers={"content-type": "text/plain"}
        )
        assert response.status_code == 201, response.text
        graph_id: str = response.json()["graph_id"]
        return graph_id

    def start(self, graph_id: str, durability: str = "sync", **body: Any) -> str:
        response = self.http.post(
            "/graph/run",
            json={"graph_id": graph_id, "input": {}, "durability": durability, "wait": False,
                  **body},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        run_id: str = response.json()["run_id"]
        return run_id

    def state(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/graph/state/{run_id}")
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/graph/state/{run_id}/steps")
        assert response.status_code == 200, response.text
        steps: list[dict[str, Any]] = response.json()["steps"]
        return steps

    def until(self, run_id: str, condition: Callable[[dict[str, Any]], bool], what: str) -> Any:
        """Poll the run's state until `condition` holds; fail after `WAIT` seconds."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            state = self.state(run_id)
            if condition(state):
                return state
            time.sleep(0.05)
        pytest.fail(f"run {run_id}: {what} did not happen in {WAIT} s: {self.state(run_id)}")

    def finished(self, run_id: str) -> dict[str, Any]:
        state: dict[str, Any] = self.until(run_id, lambda s: s["status"] in ENDED, "the end")
        return state

    def close(self) -> None:
        self.http.close()


def assert_complete(api: Api, run_id: str, steps: int) -> dict[str, Any]:
    """The run succeeded with the uninterrupted state and steps `1..steps`, each once."""
    state = api.finished(run_id)
    assert (state["status"], state["error"], state["state"]) == ("succeeded", None, expected(steps))
    assert (state["step"], state["worker"]) == (steps, None)
    recorded = api.steps(run_id)
    assert [s["seq"] for s in recorded] == list(range(1, steps + 1))
    assert [s["delta"]["n"] for s in recorded] == list(range(1, steps + 1))
    return state


def calls(path: Path) -> list[dict[str, Any]]:
    """The tool calls the processes noted."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pid_of(state: dict[str, Any]) -> int:
    """The process id in a run's `worker` (`host:pid`)."""
    return int(str(state["worker"]).rsplit(":", 1)[1])


def kill_the_owner(running: dict[str, Any], pair: list[Process]) -> tuple[Process, Process]:
    """kill -9 the one of two workers that owns the run `running` shows: (victim, survivor)."""
    owner = pid_of(running)
    first, second = pair
    victim, survivor = (first, second) if first.pid == owner else (second, first)
    assert victim.pid == owner
    victim.kill(signal.SIGKILL)
    return victim, survivor


@pytest.fixture
def calls_file(tmp_path: Path) -> Path:
    """Where the tools note their calls."""
    return tmp_path / "calls.jsonl"


def environment(url: str, calls_file: Path, **extra: str) -> dict[str, str | None]:
    """The environment of the processes of a test."""
    return {
        "DATABASE_URL": url,
        "FLOWC_LEASE_SECONDS": LEASE,
        "FLOWC_TEST_CALLS": str(calls_file),
        "FLOWC_SHUTDOWN_GRACE": "2",
        **extra,
    }


def workers(processes: Processes, env: dict[str, str | None], count: int) -> list[Process]:
    """Start `count` `flowc worker` processes."""
    return [processes.flowc("worker", "--tools", TOOLS, env=env) for _ in range(count)]


def api_server(processes: Processes, url: str, env: dict[str, str | None], *args: str) -> Api:
    """A `flowc serve` that executes nothing itself (`--no-worker`), unless `args` say."""
    return Api(processes.serve(url, "--tools", TOOLS, *(args or ("--no-worker",)), env=env))


def test_kill_9_of_the_owner_mid_run_another_worker_finishes_it(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    run_id = api.start(api.create(counting(150)))
    running = api.until(run_id, lambda s: s["step"] >= 40, "step 40")
    victim, survivor = kill_the_owner(running, [first, second])

    resumed = api.until(run_id, lambda s: s["attempt"] == 2, "a second claim")
    assert resumed["worker"] is None or pid_of(resumed) == survivor.pid
    final = assert_complete(api, run_id, 150)
    assert final["attempt"] == 2
    # The survivor ran every step from where the victim stopped: the steps recorded before
    # the kill were not run again (at most the one in flight was).
    noted = calls(calls_file)
    by_victim = [c["seq"] for c in noted if c["pid"] == victim.pid]
    by_survivor = [c["seq"] for c in noted if c["pid"] == survivor.pid]
    assert by_victim == list(range(1, len(by_victim) + 1))
    assert by_survivor == list(range(by_survivor[0], 151))
    assert by_survivor[0] in (len(by_victim), len(by_victim) + 1)
    assert survivor.returncode is None
    api.close()


def test_a_paused_owner_loses_its_run_and_writes_nothing_after(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    run_id = api.start(api.create(counting(120)))
    running = api.until(run_id, lambda s: s["step"] >= 20, "step 20")
    owner = first if first.pid == pid_of(running) else second
    other = second if owner is first else first
    owner.pause()
    try:
        taken = api.until(run_id, lambda s: s["attempt"] == 2, "a claim by the other worker")
        api.until(run_id, lambda s: s["step"] >= taken["step"] + 10, "progress by the other")
        before = len([c for c in calls(calls_file) if c["pid"] == owner.pid])
    finally:
        owner.resume()
    final = assert_complete(api, run_id, 120)
    assert final["attempt"] == 2
    # Woken up, the old owner called at most the tool it was about to call, wrote nothing
    # (the step log is exactly 1..120, each once) and said it gave the run up.
    after = len([c for c in calls(calls_file) if c["pid"] == owner.pid])
    assert after - before <= 1
    deadline = time.monotonic() + WAIT
    while "claimed by another worker" not in owner.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    # One line, with its time and level: when the owner gave up, for whoever reads the log.
    said = re.compile(
        rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} WARNING flowc\.server: run {run_id} "
        r"was claimed by another worker \(or ended elsewhere\): stopped here, "
        r"nothing more written$",
        re.MULTILINE,
    )
    assert said.search(owner.stderr()), owner.stderr()
    assert owner.returncode is None and other.returncode is None
    api.close()


def test_chaos_100_runs_over_3_workers_one_killed_every_few_seconds(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    # Ten runs at once per worker: 100 runs take several waves, and kills land mid-run.
    env = environment(cluster_database, calls_file, FLOWC_WORKER_CONCURRENCY="10")
    api = api_server(processes, cluster_database, env)
    pool = workers(processes, env, 3)
    graph_id = api.create(counting(30, pause=0.05))
    run_ids = [api.start(graph_id) for _ in range(100)]
    chance = random.Random(20261201)
    kills = 0
    deadline = time.monotonic() + 3 * WAIT
    while time.monotonic() < deadline:
        states = [api.state(run_id)["status"] for run_id in run_ids]
        if all(status in ENDED for status in states):
            break
        if kills < 8:
            victim = pool.pop(chance.randrange(len(pool)))
            victim.kill(signal.SIGKILL)
            kills += 1
            pool.append(processes.flowc("worker", "--tools", TOOLS, env=env))
        time.sleep(1.0)
    assert kills >= 4, "the runs ended before the chaos did: make them longer"
    for run_id in run_ids:
        assert_complete(api, run_id, 30)
    api.close()


def following(api: Api, run_id: str) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """A WebSocket follower of the run on `api`'s server, in a thread; the events it got
    (all of them once the thread ends: the server closed the socket normally)."""

    async def follow() -> list[dict[str, Any]]:
        address = api.server.url.replace("http://", "ws://")
        async with connect(f"{address}/ws/graph/{run_id}") as socket:
            return [json.loads(message) async for message in socket]

    events: list[dict[str, Any]] = []
    follower = threading.Thread(target=lambda: events.extend(asyncio.run(follow())))
    follower.start()
    return follower, events


def test_postgresql_restarted_under_load_every_run_succeeds_and_no_500(
    cluster: Cluster, cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file, FLOWC_LEASE_SECONDS="15")
    api = api_server(processes, cluster_database, env, "--migrate")  # with its own worker
    replica = api_server(processes, cluster_database, env)  # executes nothing: it follows
    graph_id = api.create(counting(80, pause=0.02))
    run_ids = [api.start(graph_id) for _ in range(20)]
    api.until(run_ids[-1], lambda s: s["step"] >= 10, "progress")
    follower, events = following(replica, run_ids[-1])
    answers: list[int] = []
    stop = threading.Event()

    def ask() -> None:  # what clients see while the database is away
        with httpx.Client(base_url=api.server.url, timeout=30) as http:
            while not stop.is_set():
                answers.append(http.get(f"/graph/state/{run_ids[0]}").status_code)
                time.sleep(0.02)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        cluster.restart("fast")
        time.sleep(1)
        cluster.restart("immediate")  # a crash of the database, too
    finally:
        time.sleep(1)
        stop.set()
        asker.join()
    for run_id in run_ids:
        assert_complete(api, run_id, 80)
    assert set(answers) <= {200, 503}, sorted(set(answers))
    assert 200 in answers
    # A follower on another replica, through both restarts: every step once, and the end.
    follower.join(WAIT)
    assert not follower.is_alive()
    assert [e["step"] for e in events if e["type"] == "node_finished"] == list(range(1, 81))
    assert events[-1]["type"] == "run_finished"
    # Each server's log tells of each outage once, and of its end; not of every try of
    # every part (writes, claims, leases, NOTIFY, LISTEN, each 503 answered, each follower).
    for server in (api, replica):
        log = server.server.stderr()
        warnings = [line for line in log.splitlines() if " WARNING " in line]
        unreachable = [line for line in warnings if "the database is unreachable" in line]
        assert 1 <= len(unreachable) <= 4, server.server.output()
        assert len(warnings) <= 2 * len(unreachable), server.server.output()
        assert "the database is back after" in log, server.server.output()
    assert answers.count(503) > len(unreachable)  # many 503s, few lines
    api.close()
    replica.close()


def test_sigterm_releases_the_run_and_another_worker_resumes_it_at_once(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file, FLOWC_LEASE_SECONDS="30")
    api = api_server(processes, cluster_database, env)
    (first,) = workers(processes, env, 1)
    run_id = api.start(api.create(counting(200)))
    api.until(run_id, lambda s: s["step"] >= 20, "step 20")
    (second,) = workers(processes, env, 1)
    first.kill(signal.SIGTERM)
    assert first.wait() == 0
    # Released, not left to expire: the second worker takes it over long before the 30 s
    # lease would have run out, and nothing is run twice.
    started = time.monotonic()
    api.until(run_id, lambda s: s["attempt"] == 2, "a claim by the second worker")
    assert time.monotonic() - started < 15
    assert_complete(api, run_id, 200)
    noted = calls(calls_file)
    assert sorted(c["seq"] for c in noted) == list(range(1, 201))
    assert "releasing its runs" in first.stderr()
    assert second.returncode is None
    api.close()


def test_sigterm_of_a_server_with_a_waiting_client_on_a_hung_run_exits_in_time(
    tmp_path: Path, processes: Processes, calls_file: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flowc.db'}"
    env = environment(url, calls_file, FLOWC_SHUTDOWN_GRACE="1")
    server = processes.serve(url, "--tools", TOOLS, env=env)
    api = Api(server)
    graph_id = api.create("node h = hang\nh -> end\n")
    answer: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: answer.append(
            httpx.post(
                f"{server.url}/graph/run",
                json={"graph_id": graph_id, "input": {}},
                timeout=60,
            )
        )
    )
    client.start()
    deadline = time.monotonic() + WAIT
    while not calls(calls_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(calls_file), "the run never reached its hung tool"
    stopping = time.monotonic()
    server.kill(signal.SIGTERM)
    server.wait(timeout=WAIT)
    took = time.monotonic() - stopping
    client.join(WAIT)
    assert took < 10, f"the server took {took:.1f} s to stop with a 1 s grace"
    (response,) = answer
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "GET /graph/state/" in response.json()["detail"]
    api.close()


def test_sqlite_serve_resumes_its_runs_after_a_kill_9(
    tmp_path: Path, processes: Processes, calls_file: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flowc.db'}"
    env = environment(url, calls_file)
    server = processes.serve(url, "--tools", TOOLS, env=env)
    api = Api(server)
    run_ids = {
        durability: api.start(api.create(counting(100)), durability)
        for durability in ("sync", "async", "exit")
    }
    api.until(run_ids["sync"], lambda s: s["step"] >= 30, "step 30")
    server.kill(signal.SIGKILL)
    server.wait()
    api.close()

    again = Api(processes.serve(url, "--tools", TOOLS, env=env))
    for run_id in run_ids.values():
        state = assert_complete(again, run_id, 100)
        assert state["attempt"] == 2
    again.close()


def test_a_follower_on_another_process_sees_a_resumed_run_to_its_end(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    run_id = api.start(api.create(counting(100)))
    follower, events = following(api, run_id)
    running = api.until(run_id, lambda s: s["step"] >= 30, "step 30")
    (first if first.pid == pid_of(running) else second).kill(signal.SIGKILL)
    follower.join(WAIT)
    assert not follower.is_alive()
    assert_complete(api, run_id, 100)
    finished = [e["step"] for e in events if e["type"] == "node_finished"]
    assert finished == list(range(1, 101))  # live across processes, no gap, no duplicate
    assert events[0]["type"] == "run_started"
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["state"] == expected(100)
    api.close()


def test_cancel_reaches_a_run_on_another_worker_within_2_seconds(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    workers(processes, env, 1)
    run_id = api.start(api.create("node s = step(pause = 0)\nnode h = hang\ns -> h -> end\n"))
    api.until(run_id, lambda s: s["step"] == 1, "the hung step")
    asked = time.monotonic()
    response = api.http.post(f"/graph/cancel/{run_id}")
    assert response.status_code == 202, response.text
    state = api.finished(run_id)
    assert time.monotonic() - asked < 2
    assert (state["status"], state["error"]["code"], state["state"]) == (
        "cancelled",
        "cancelled",
        {"n": 1, "total": 1},
    )
    assert api.http.post(f"/graph/cancel/{run_id}").status_code == 409
    api.close()


def test_sigterm_while_postgresql_is_down_exits_and_the_run_is_finished_later(
    cluster: Cluster, cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file, FLOWC_SHUTDOWN_GRACE="1")
    api = api_server(processes, cluster_database, env)
    (first,) = workers(processes, env, 1)
    run_id = api.start(api.create(counting(150)))
    api.until(run_id, lambda s: s["step"] >= 20, "step 20")
    cluster.stop("immediate")
    try:
        stopping = time.monotonic()
        first.kill(signal.SIGTERM)
        first.wait()  # fails the test if it hangs for WAIT seconds
        took = time.monotonic() - stopping
    finally:
        cluster.start()
    # The grace (1 s) and the last writes (5 s at most) bound the exit, database or not.
    assert took < 15, f"the worker took {took:.1f} s to stop without its database"
    workers(processes, env, 1)
    final = assert_complete(api, run_id, 150)
    assert final["attempt"] == 2
    api.close()


#: Steps of `step` before the failing node in `routed`.
ROUTED_STEPS = 5


def routed(flag: Path) -> Flow:
    """`ROUTED_STEPS` of `step`, then `boom`, which fails into `fallback`, a `gate` on `flag`.

    `boom`'s own route, to `after`, is never taken.  Written as IR: the DSL's `on_error` is
    the compiler's to parse.
    """
    below = {"type": "binary", "op": "<", "left": {"type": "path", "path": ["n"]},
             "right": {"type": "literal", "value": ROUTED_STEPS}}  # fmt: skip
    return Flow.model_validate(
        {
            "ir_version": 2,
            "start": "s",
            "nodes": [
                {"name": "s", "tool": "step", "args": {"pause": 0.02}},
                {"name": "boom", "tool": "fail", "policy": {"on_error": "fallback"}},
                {"name": "after", "tool": "step"},
                {"name": "fallback", "tool": "gate", "args": {"flag": str(flag)}},
            ],
            "routes": {
                "s": {"kind": "branch", "arms": [{"condition": below, "target": "s"}],
                      "otherwise": "boom"},
                "boom": {"kind": "goto", "target": "after"},
            },
        }
    )  # fmt: skip


def save(url: str, flow: Flow) -> str:
    """Save an IR document as a graph, as it is, straight into the database; its id."""

    async def insert() -> str:
        db = Database(url)
        try:
            async with db.session() as session:
                saved = await store.create_definition(session, name="routed", source=None, ir=flow)
            return str(saved.id)
        finally:
            await db.dispose()

    return asyncio.run(insert())


def noted_until(path: Path, condition: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
    """Wait until the noted calls satisfy `condition`; fail after `WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition(calls(path)):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {WAIT} s: {calls(path)}")
        time.sleep(0.02)


def called_on(path: Path, tool: str, process: Process, what: str) -> None:
    """Wait until `process` called `tool` (as noted); fail after `WAIT` seconds."""
    noted_until(
        path, lambda noted: any(c["tool"] == tool and c["pid"] == process.pid for c in noted), what
    )


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_kill_9_after_a_routed_failure_resumes_at_the_error_route(
    cluster_database: str, processes: Processes, calls_file: Path, tmp_path: Path, durability: str
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    flag = tmp_path / "open"
    run_id = api.start(save(cluster_database, routed(flag)), durability)
    failed_at = ROUTED_STEPS + 1
    # The failed step is recorded, and the owner waits in the fallback: kill it there.
    running = api.until(run_id, lambda s: s["step"] == failed_at, "the failed step")
    noted_until(calls_file, lambda noted: any(c["tool"] == "gate" for c in noted), "the gate")
    victim, survivor = kill_the_owner(running, [first, second])

    api.until(run_id, lambda s: s["attempt"] == 2, "a second claim")
    called_on(calls_file, "gate", survivor, "the fallback on the survivor")
    flag.touch()
    state = api.finished(run_id)
    error = {"code": "tool_error", "message": "tool `fail` failed: ConnectionError: down",
             "node": "boom", "attempts": 1}  # fmt: skip
    assert (state["status"], state["error"], state["attempt"]) == ("succeeded", None, 2)
    assert state["state"] == {**expected(ROUTED_STEPS), "error": error, "gated": True}
    recorded = api.steps(run_id)
    # No gap, nothing twice; the failed step is marked, and no other.
    assert [(s["seq"], s["node"], s.get("failed")) for s in recorded] == [
        *((seq, "s", None) for seq in range(1, failed_at)),
        (failed_at, "boom", True),
        (failed_at + 1, "fallback", None),
    ]
    assert recorded[failed_at - 1]["delta"] == {"error": error}
    noted = calls(calls_file)
    # The failed step ran once, on the victim; the survivor went on at the fallback, and
    # ran nothing before it (nor `after`, `boom`'s own route).
    assert [(c["pid"], c["seq"]) for c in noted if c["tool"] == "fail"] == [(victim.pid, failed_at)]
    assert [(c["pid"], c["seq"]) for c in noted if c["pid"] == survivor.pid] == [
        (survivor.pid, failed_at + 1)
    ]
    assert [c["seq"] for c in noted if c["tool"] == "step"] == list(range(1, failed_at))
    api.close()


def forked(flag: Path) -> str:
    """`a`, then `b -> b2` and `g -> c` at once (`g` a `gate` on `flag`), merged into `d`."""
    return (
        "state found: list[str] = [] by extend\n"
        'node a = mark(name = "a")\n'
        'node b = mark(name = "b", found = true)\n'
        'node b2 = mark(name = "b2", found = true)\n'
        f'node g = gate(flag = "{flag}")\n'
        'node c = mark(name = "c", found = true)\n'
        'node d = mark(name = "d")\n'
        "a -> [b -> b2, g -> c] -> d\n"
        "d -> end\n"
    )


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_kill_9_in_the_middle_of_a_fork_resumes_only_the_unfinished_branch(
    cluster_database: str, processes: Processes, calls_file: Path, tmp_path: Path, durability: str
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    flag = tmp_path / "open"
    run_id = api.start(api.create(forked(flag)), durability)
    # `a` and branch 0 (`b`, `b2`) are recorded; branch 1 waits at the gate: kill it there.
    running = api.until(run_id, lambda s: s["step"] == 3, "branch 0's steps")
    noted_until(calls_file, lambda noted: any(c["tool"] == "gate" for c in noted), "the gate")
    assert running["state"] == {"found": [], "a": True}  # the fork's, until the join
    victim, survivor = kill_the_owner(running, [first, second])

    api.until(run_id, lambda s: s["attempt"] == 2, "a second claim")
    called_on(calls_file, "gate", survivor, "the gate on the survivor")
    flag.touch()
    state = api.finished(run_id)
    assert (state["status"], state["error"], state["attempt"]) == ("succeeded", None, 2)
    assert state["state"] == {
        "found": ["b", "b2", "c"],  # branch 0's, then branch 1's: the order written
        "a": True,
        "b": True,
        "b2": True,
        "gated": True,
        "c": True,
        "d": True,
    }
    recorded = api.steps(run_id)
    # No gap, nothing twice: each branch's steps with their branch, then the join.
    assert [(s["seq"], s["node"], s.get("branch")) for s in recorded] == [
        (1, "a", None),
        (2, "b", "0"),
        (3, "b2", "0"),
        (4, "g", "1"),
        (5, "c", "1"),
        (6, "a", "join"),
        (7, "d", None),
    ]
    assert recorded[5]["delta"] == {
        "found": ["b", "b2", "c"], "b": True, "b2": True, "gated": True, "c": True,
    }  # fmt: skip
    noted = calls(calls_file)
    # Branch 0 ran once, on the victim; the survivor ran only the unfinished branch (its
    # step in flight again) and what follows the join.
    on_victim = [c["node"] for c in noted if c["pid"] == victim.pid]
    assert (on_victim[0], sorted(on_victim[1:])) == ("a", ["b", "b2", "g"])
    assert on_victim.index("b") < on_victim.index("b2")
    assert [(c["node"], c["branch"]) for c in noted if c["pid"] == survivor.pid] == [
        ("g", "1"),
        ("c", "1"),
        ("d", None),
    ]
    assert sorted(c["node"] for c in noted if c["tool"] == "mark") == ["a", "b", "b2", "c", "d"]
    api.close()


#: The items of the map in `mapped`, and the first whose call waits at the gate.
MAP_ITEMS = 50
MAP_HELD = 10


def mapped(flag: Path) -> str:
    """`a`, a map of `square` over `issues` (its items from `MAP_HELD` on gated), then `d`."""
    return (
        "set max_steps = 100\n"
        "state issues: list[int] = []\n"
        'node a = mark(name = "a")\n'
        f'node fixes = for issue in issues: square(flag = "{flag}", held = {MAP_HELD})\n'
        'node d = mark(name = "d")\n'
        "a -> fixes -> d\n"
        "d -> end\n"
    )


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_kill_9_in_the_middle_of_a_map_calls_each_item_to_success_once(
    cluster_database: str, processes: Processes, calls_file: Path, tmp_path: Path, durability: str
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    first, second = workers(processes, env, 2)
    flag = tmp_path / "open"
    items = list(range(MAP_ITEMS))
    run_id = api.start(api.create(mapped(flag)), durability, input={"issues": items})
    # `a` and the calls for the items before the gate are recorded, and `max_parallel` (8)
    # calls wait at the gate: kill the owner there.
    running = api.until(run_id, lambda s: s["step"] == 1 + MAP_HELD, "the ungated calls")
    noted_until(
        calls_file,
        lambda noted: sum(c["tool"] == "square" for c in noted) == MAP_HELD + 8,
        "the calls held at the gate",
    )
    assert running["state"] == {"issues": items, "a": True}  # no results before they are all
    victim, survivor = kill_the_owner(running, [first, second])

    api.until(run_id, lambda s: s["attempt"] == 2, "a second claim")
    called_on(calls_file, "square", survivor, "the calls on the survivor")
    flag.touch()
    state = api.finished(run_id)
    results = [{"item": item, "square": item * item} for item in items]
    assert (state["status"], state["error"], state["attempt"]) == ("succeeded", None, 2)
    assert state["state"] == {"issues": items, "a": True, "fixes": results, "d": True}
    recorded = api.steps(run_id)
    # No gap, nothing twice: `a`, one step per item (the ungated ones first), the
    # collection, `d`.
    last = MAP_ITEMS + 3
    assert [s["seq"] for s in recorded] == list(range(1, last + 1))
    assert [(s["node"], s.get("branch")) for s in (recorded[0], *recorded[-2:])] == [
        ("a", None), ("fixes", None), ("d", None),
    ]  # fmt: skip
    per_item = recorded[1 : MAP_ITEMS + 1]
    assert {s["node"] for s in per_item} == {"fixes"}
    assert sorted(int(s["branch"]) for s in per_item) == items  # each item once
    assert sorted(int(s["branch"]) for s in per_item[:MAP_HELD]) == items[:MAP_HELD]
    assert all(s["delta"] == results[int(s["branch"])] for s in per_item)
    assert recorded[-2]["delta"] == {"fixes": results}
    noted = [c for c in calls(calls_file) if c["tool"] == "square"]
    # The victim called the ungated items (once each) and the first gated ones, which never
    # returned there; the survivor called each item the log did not have, once.
    on_victim = sorted(int(c["branch"]) for c in noted if c["pid"] == victim.pid)
    assert on_victim == items[: MAP_HELD + 8]
    on_survivor = sorted(int(c["branch"]) for c in noted if c["pid"] == survivor.pid)
    assert on_survivor == items[MAP_HELD:]
    api.close()


#: Five steps, a wait, then five more: `n` is 10 at the end, whoever ran which part.
WAITING = """\
node s = step(pause = 0.01)
node approval = wait("approval")
node t = step(pause = 0.01)
s ? n < 5 -> s : approval
approval -> t
t ? n < 10 -> t : end
"""


def test_kill_9_of_a_worker_right_after_its_run_began_waiting_loses_nothing(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    (first,) = workers(processes, env, 1)
    run_id = api.start(api.create(WAITING))
    waiting = api.until(run_id, lambda s: s["status"] == "waiting", "the wait")
    first.kill(signal.SIGKILL)
    first.wait()
    # The wait is in the database: the run has no owner, no lease, and its state.
    assert (waiting["worker"], waiting["step"], waiting["state"]) == (
        None,
        5,
        {"n": 5, "total": 15},
    )
    assert waiting["waiting"]["node"] == "approval"
    assert api.state(run_id)["status"] == "waiting"

    (second,) = workers(processes, env, 1)
    response = api.http.post(f"/graph/resume/{run_id}", json={"input": {"approved": True}})
    assert response.status_code == 202, response.text
    state = api.finished(run_id)
    assert (state["status"], state["error"], state["state"]) == (
        "succeeded",
        None,
        {"n": 10, "total": 55, "approved": True},
    )
    assert state["attempt"] == 2
    recorded = api.steps(run_id)
    assert [(s["seq"], s["node"]) for s in recorded] == [
        *((seq, "s") for seq in range(1, 6)),
        (6, "approval"),
        *((seq, "t") for seq in range(7, 12)),
    ]
    assert recorded[5]["delta"] == {"approved": True}
    noted = calls(calls_file)
    assert [c["seq"] for c in noted if c["pid"] == first.pid] == [1, 2, 3, 4, 5]
    assert [c["seq"] for c in noted if c["pid"] == second.pid] == [7, 8, 9, 10, 11]
    api.close()


def test_waits_past_their_timeout_go_on_once_each_with_several_workers_sweeping(
    cluster_database: str, processes: Processes, calls_file: Path
) -> None:
    env = environment(cluster_database, calls_file)
    api = api_server(processes, cluster_database, env)
    pool = workers(processes, env, 3)
    graph_id = api.create(
        'node s = step(pause = 0)\nnode approval = wait("approval", timeout = 0.5) '
        "with on_error = t\nnode t = step(pause = 0)\ns -> approval -> end\nt -> end\n"
    )
    run_ids = [api.start(graph_id) for _ in range(10)]
    for run_id in run_ids:
        state = api.finished(run_id)
        assert (state["status"], state["state"]["n"]) == ("succeeded", 2), state
        assert state["state"]["error"]["code"] == "wait_timeout"
        recorded = api.steps(run_id)
        assert [(s["seq"], s["node"], s.get("failed", False)) for s in recorded] == [
            (1, "s", False),
            (2, "approval", True),
            (3, "t", False),
        ]
    # Each run's wait went on once: its error route's step ran once, in one worker.
    noted = calls(calls_file)
    assert sorted((c["run"], c["seq"]) for c in noted) == sorted(
        (run_id, seq) for run_id in run_ids for seq in (1, 3)
    )
    assert not [w.stderr() for w in pool if "timing out" in w.stderr()]
    api.close()
