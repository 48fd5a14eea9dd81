"""Node policies through the API: timeouts and retries as a client sees them.

A flow saved with `with timeout = ...` or `set timeout = ...` fails a hung tool's run with
the error `timeout`; `retries` call a failing tool again, with the same idempotency key,
and the recorded step and the WebSocket stream say how many attempts it took; a bad
policy is refused by `POST /graph/create` with its diagnostic.  On both databases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest

from flowc.runtime import REGISTRY, current_step
from tests.server.conftest import WAIT, LiveApp, create_graph, events_of

pytestmark = pytest.mark.asyncio

#: How long the hanging tool would otherwise wait: far beyond any bound in these tests.
HANG_SECONDS = 3600.0
#: A generous bound on a run whose only attempts time out after 0.2 seconds each.
TIMED_OUT_WITHIN = 10.0
#: How each kind of tool is registered: (name, blocking).
FLAKY = {"sync": "flaky_sync", "async": "flaky_async", "blocking": "flaky_blocking"}


class Call(NamedTuple):
    """What a tool saw of its step: the node, the step number, the attempt and the key."""

    node: str
    seq: int
    attempt: int
    idempotency_key: str
    run_id: str


class Tools:
    """`note`, `sleepy` and the `flaky_*` tools, and what each call of them saw."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        #: Attempts of `sleepy` that were cancelled at their timeout.
        self.cancelled = 0

    def seen(self) -> int:
        """Record the calling step; its attempt number."""
        step = current_step()
        call = Call(step.node, step.seq, step.attempt, step.idempotency_key, step.run_id)
        self.calls.append(call)
        return step.attempt

    def note(self, state: dict[str, Any]) -> dict[str, Any]:
        """Write `noted: true` at once."""
        self.seen()
        return {"noted": True}

    async def sleepy(self, state: dict[str, Any]) -> dict[str, Any]:
        """Sleep an hour unless cancelled (at a timeout), which it records."""
        self.seen()
        try:
            await asyncio.sleep(HANG_SECONDS)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {"woke": True}

    def flaky(self, state: dict[str, Any], *, fails: int) -> dict[str, Any]:
        """Fail the first `fails` attempts of the step with `ConnectionError`, then succeed."""
        attempt = self.seen()
        if attempt <= fails:
            raise ConnectionError(f"attempt {attempt} failed")
        return {"attempt": attempt}

    async def flaky_async(self, state: dict[str, Any], *, fails: int) -> dict[str, Any]:
        """`flaky`, awaited on the event loop."""
        return self.flaky(state, fails=fails)

    def of(self, node: str) -> list[Call]:
        """The calls a node made, in order."""
        return [call for call in self.calls if call.node == node]


@pytest.fixture
def tools() -> Iterator[Tools]:
    """The tools in the application's registry, removed afterwards."""
    held = Tools()
    REGISTRY.add(held.note, "note")
    REGISTRY.add(held.sleepy, "sleepy")
    REGISTRY.add(held.flaky, FLAKY["sync"])
    REGISTRY.add(held.flaky_async, FLAKY["async"])
    REGISTRY.add(held.flaky, FLAKY["blocking"], blocking=True)
    yield held
    for name in ("note", "sleepy", *FLAKY.values()):
        REGISTRY.remove(name)


def retrying(tool: str, fails: int, retries: int = 2) -> str:
    """A step of `note`, then `fetch`: `tool(fails = ...)` with `retries` and no backoff."""
    return (
        f"node first = note\nnode fetch = {tool}(fails = {fails}) "
        f"with retries = {retries}, backoff = 0\nfirst -> fetch -> end\n"
    )


def step_log(steps: list[dict[str, Any]]) -> list[tuple[int, str, dict[str, Any], int]]:
    """Each step's seq, node, delta and attempts."""
    return [(s["seq"], s["node"], s["delta"], s["attempts"]) for s in steps]


async def run_and_follow(
    client: httpx.AsyncClient, address: str, graph_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    """Start a run, follow it over the WebSocket to its end; its state and the events."""
    body = {"graph_id": graph_id, "input": {}, "wait": False}
    run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
    events, code = await asyncio.wait_for(events_of(f"ws://{address}/ws/graph/{run_id}"), WAIT)
    state = (await client.get(f"/graph/state/{run_id}")).json()
    return state, events, code


def check_attempt_failed(event: dict[str, Any], attempt: int, message: str) -> None:
    """A `node_attempt_failed` event of `fetch`, step 2, as docs/runtime.md describes it."""
    assert set(event) == {
        "type",
        "run_id",
        "step",
        "node",
        "delta",
        "at",
        "attempt",
        "error",
        "duration_ms",
        "retry_in",
    }
    assert (event["type"], event["step"], event["node"], event["delta"]) == (
        "node_attempt_failed",
        2,
        "fetch",
        None,
    )
    assert event["attempt"] == attempt
    assert (event["error"]["code"], event["error"]["message"], event["error"]["node"]) == (
        "tool_error",
        message,
        "fetch",
    )
    assert event["error"]["span"]["line"] == 2
    assert event["duration_ms"] >= 0


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("node wait = sleepy with timeout = 0.2\nwait -> end\n", 1),
        ("set timeout = 0.2\nnode wait = sleepy\nwait -> end\n", 2),
    ],
    ids=["node", "flow"],
)
async def test_a_hung_tool_times_out_and_fails_the_run_naming_the_node(
    client: httpx.AsyncClient, tools: Tools, source: str, line: int
) -> None:
    graph_id = await create_graph(client, source)
    started = time.monotonic()
    response = await client.post("/graph/run", json={"graph_id": graph_id, "input": {"x": 1}})
    elapsed = time.monotonic() - started

    run = response.json()
    assert (response.status_code, run["status"], run["state"], run["steps"]) == (
        200,
        "failed",
        {"x": 1},
        [],
    )
    assert {key: run["error"][key] for key in ("code", "message", "node")} == {
        "code": "timeout",
        "message": "node `wait` timed out: tool `sleepy` took longer than 0.2 seconds",
        "node": "wait",
    }
    assert run["error"]["span"]["line"] == line  # the node's declaration
    assert elapsed < TIMED_OUT_WITHIN
    assert tools.cancelled == 1  # the tool's task was cancelled at the timeout
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["error"], state["worker"]) == ("failed", run["error"], None)


async def test_every_attempt_that_times_out_is_retried_then_the_run_fails(
    client: httpx.AsyncClient, tools: Tools
) -> None:
    source = "node wait = sleepy with timeout = 0.2, retries = 1, backoff = 0\nwait -> end\n"
    graph_id = await create_graph(client, source)
    run = (await client.post("/graph/run", json={"graph_id": graph_id, "input": {}})).json()
    assert (run["status"], run["error"]["code"], run["error"]["message"]) == (
        "failed",
        "timeout",
        "node `wait` timed out: tool `sleepy` took longer than 0.2 seconds (after 2 attempts)",
    )
    assert [call.attempt for call in tools.of("wait")] == [1, 2]
    assert tools.cancelled == 2


@pytest.mark.parametrize("mode", list(FLAKY))
async def test_a_tool_that_fails_twice_succeeds_on_its_third_attempt(
    client: httpx.AsyncClient, tools: Tools, mode: str
) -> None:
    graph_id = await create_graph(client, retrying(FLAKY[mode], fails=2))
    response = await client.post("/graph/run", json={"graph_id": graph_id, "input": {}})

    run = response.json()
    run_id = run["run_id"]
    assert (response.status_code, run["status"], run["error"]) == (200, "succeeded", None)
    assert run["state"] == {"noted": True, "attempt": 3}
    expected = [(1, "first", {"noted": True}, 1), (2, "fetch", {"attempt": 3}, 3)]
    assert step_log(run["steps"]) == expected
    recorded = (await client.get(f"/graph/state/{run_id}/steps")).json()["steps"]
    assert step_log(recorded) == expected
    # Every attempt of a step has the step's key: `run_id:seq`; another step has another.
    assert tools.of("fetch") == [
        Call("fetch", 2, attempt, f"{run_id}:2", run_id) for attempt in (1, 2, 3)
    ]
    assert tools.of("first") == [Call("first", 1, 1, f"{run_id}:1", run_id)]


async def test_retries_run_out_and_the_run_fails_with_the_last_error(
    client: httpx.AsyncClient, tools: Tools
) -> None:
    graph_id = await create_graph(client, retrying(FLAKY["async"], fails=5))
    run = (await client.post("/graph/run", json={"graph_id": graph_id, "input": {}})).json()

    assert (run["status"], run["state"]) == ("failed", {"noted": True})
    assert {key: run["error"][key] for key in ("code", "message", "node")} == {
        "code": "tool_error",
        "message": "tool `flaky_async` failed: ConnectionError: attempt 3 failed "
        "(after 3 attempts)",
        "node": "fetch",
    }
    assert step_log(run["steps"]) == [(1, "first", {"noted": True}, 1)]
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert (state["status"], state["error"], state["step"]) == ("failed", run["error"], 1)
    keys = {call.idempotency_key for call in tools.of("fetch")}
    assert ([c.attempt for c in tools.of("fetch")], keys) == ([1, 2, 3], {f"{run['run_id']}:2"})


async def test_the_stream_tells_each_failed_attempt_then_the_step(
    live_app: LiveApp, tools: Tools
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        graph_id = await create_graph(client, retrying(FLAKY["async"], fails=2))
        state, events, code = await run_and_follow(client, live_app.address, graph_id)

    assert (state["status"], code) == ("succeeded", 1000)
    assert [(e["type"], e["step"], e["node"]) for e in events] == [
        ("run_started", 0, "first"),
        ("node_started", 1, "first"),
        ("node_finished", 1, "first"),
        ("node_started", 2, "fetch"),
        ("node_attempt_failed", 2, "fetch"),
        ("node_attempt_failed", 2, "fetch"),
        ("node_finished", 2, "fetch"),
        ("run_finished", 2, "fetch"),
    ]
    failed = events[4:6]
    for attempt, event in enumerate(failed, start=1):
        message = f"tool `flaky_async` failed: ConnectionError: attempt {attempt} failed"
        check_attempt_failed(event, attempt, message)
        assert event["retry_in"] == 0  # backoff = 0: the next attempt follows at once
    finished = events[6]
    assert (finished["attempts"], finished["delta"]) == (3, {"attempt": 3})
    assert events[2]["attempts"] == 1


async def test_the_stream_of_a_run_whose_retries_ran_out(live_app: LiveApp, tools: Tools) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_app.address}") as client:
        graph_id = await create_graph(client, retrying(FLAKY["async"], fails=5))
        state, events, code = await run_and_follow(client, live_app.address, graph_id)

    assert (state["status"], code) == ("failed", 1000)
    types = [e["type"] for e in events]
    assert types[3:] == ["node_started"] + ["node_attempt_failed"] * 3 + ["run_failed"]
    failed = events[4:7]
    for attempt, event in enumerate(failed, start=1):
        message = f"tool `flaky_async` failed: ConnectionError: attempt {attempt} failed"
        check_attempt_failed(event, attempt, message)
    # A delay until the next attempt, except after the last: none follows.
    assert [event["retry_in"] for event in failed] == [0, 0, None]
    final = events[-1]
    assert (final["status"], final["node"], final["error"]) == ("failed", "fetch", state["error"])
    assert final["error"]["message"].endswith("(after 3 attempts)")


DIAGNOSTICS = [
    (
        "node fetch = note with timeot = 5\nfetch -> end\n",
        [("E113", 1, 24, "unknown policy `timeot`", "did you mean `timeout`?")],
    ),
    (
        "node fetch = note with timeout = 0, retries = 1.5\nfetch -> end\n",
        [
            (
                "E115",
                1,
                34,
                "`timeout` must be a number of seconds greater than 0 and at most 604,800",
                None,
            ),
            ("E115", 1, 47, "`retries` must be a whole number from 0 to 100", None),
        ],
    ),
    (
        "node fetch = note with backoff = 3601\nfetch -> end\n",
        [("E115", 1, 34, "`backoff` must be a number of seconds from 0 to 3,600", None)],
    ),
    (
        "node fetch = note with retries = 3, retries = 4\nfetch -> end\n",
        [("E114", 1, 37, "policy `retries` is given twice", "keep one `retries = ...`")],
    ),
    (
        "set retries = 101\nnote -> end\n",
        [("E107", 1, 15, "`retries` must be a whole number from 0 to 100", None)],
    ),
]


@pytest.mark.parametrize(
    ("source", "expected"), DIAGNOSTICS, ids=["E113", "E115", "E115-backoff", "E114", "E107"]
)
async def test_a_bad_policy_is_a_422_with_its_diagnostic(
    client: httpx.AsyncClient,
    tools: Tools,
    source: str,
    expected: list[tuple[str, int, int, str, str | None]],
) -> None:
    response = await client.post("/graph/create", json={"source": source})
    assert response.status_code == 422
    detail = response.json()["detail"]
    found = [
        (d["code"], d["line"], d["column"], d["message"], d["help"]) for d in detail["diagnostics"]
    ]
    assert found == expected
    errors = "1 error" if len(expected) == 1 else f"{len(expected)} errors"
    _, line, column, message, _ = expected[0]
    assert detail["message"] == (
        f"the flow has {errors}; the first: line {line}, column {column}: {message}"
    )
    checked = (await client.post("/graph/check", json={"source": source})).json()
    assert checked["ok"] is False
    assert [d["code"] for d in checked["diagnostics"]] == [e[0] for e in expected]
