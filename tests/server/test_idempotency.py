"""`POST /graph/run` with an `Idempotency-Key`: one key, one run, however often it is sent.

Concurrent requests with the same key and body share one run (one row in `workflow_run`),
and those that wait get the same result; the same key with another body is a 409 naming
the key and the first run; a key the server cannot keep is refused.  On both databases.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from flowc.runtime import REGISTRY, RunResult, current_step
from flowc.server.models import WorkflowRun
from tests.server.conftest import WAIT, create_graph, until

pytestmark = pytest.mark.asyncio

#: Requests sent at once with one key.
CONCURRENT = 20
#: The longest key the server keeps (the column's width).
MAX_KEY = 300
#: A flow of one step, `tally`, which waits until the test lets it go.
TALLY = "tally -> end\n"


class Tally:
    """A tool, `tally`, that records each call's run and waits until the test lets it go."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.go = asyncio.Event()

    async def tally(self, state: dict[str, Any]) -> dict[str, Any]:
        """Record the call, wait for `go`, then write how many calls there were so far."""
        self.calls.append(current_step().run_id)
        await self.go.wait()
        return {"calls": len(self.calls)}


@pytest.fixture
def tally() -> Iterator[Tally]:
    """`tally` in the application's registry, removed afterwards (let go)."""
    counter = Tally()
    REGISTRY.add(counter.tally, "tally")
    yield counter
    counter.go.set()
    REGISTRY.remove("tally")


def new_key() -> str:
    """A key no other test uses (the PostgreSQL database is shared by the session)."""
    return f"test-{uuid.uuid4()}"


async def run(client: httpx.AsyncClient, body: dict[str, Any], key: str | None) -> httpx.Response:
    """`POST /graph/run` with `body`, and the key when there is one."""
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post("/graph/run", json=body, headers=headers)


async def rows_with(app: FastAPI, key: str) -> list[WorkflowRun]:
    """The `workflow_run` rows that have this idempotency key."""
    async with app.state.db.session() as session:
        found = await session.exec(select(WorkflowRun).where(WorkflowRun.idempotency_key == key))
        return list(found.all())


async def result_of(app: FastAPI, run_id: str) -> RunResult:
    """Wait for the run to end; its result."""
    result: RunResult = await asyncio.wait_for(app.state.runs.result(uuid.UUID(run_id)), WAIT)
    return result


async def test_concurrent_starts_with_one_key_make_one_run(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally
) -> None:
    graph_id = await create_graph(client, TALLY)
    body = {"graph_id": graph_id, "input": {"n": 1}, "wait": False}
    key = new_key()

    responses = await asyncio.gather(*(run(client, body, key) for _ in range(CONCURRENT)))
    tally.go.set()

    assert {response.status_code for response in responses} == {202}
    run_ids = {response.json()["run_id"] for response in responses}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    assert [str(row.id) for row in await rows_with(app, key)] == [run_id]
    result = await result_of(app, run_id)
    assert (result.status, result.state) == ("succeeded", {"n": 1, "calls": 1})
    assert tally.calls == [run_id]


async def test_concurrent_waiting_starts_with_one_key_get_the_same_result(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = app.state.runs
    result = runs.result
    # The requests (one task each) in `result`; it may call itself again, so count tasks.
    waiting: set[asyncio.Task[Any] | None] = set()

    async def counted(run_id: uuid.UUID) -> RunResult:
        """The service's `result`, noting which request waits."""
        waiting.add(asyncio.current_task())
        answer: RunResult = await result(run_id)
        return answer

    monkeypatch.setattr(runs, "result", counted)
    graph_id = await create_graph(client, TALLY)
    body = {"graph_id": graph_id, "input": {"n": 1}}
    key = new_key()

    requests = [asyncio.ensure_future(run(client, body, key)) for _ in range(CONCURRENT)]
    await until(
        lambda: len(waiting) == CONCURRENT or any(request.done() for request in requests),
        f"{CONCURRENT} requests to wait on the run",
    )
    early = [request for request in requests if request.done()]
    assert not early, f"a request ended before the run did: {early[0]!r}"
    tally.go.set()  # every request waits on the run while it runs
    responses = await asyncio.wait_for(asyncio.gather(*requests), WAIT)

    assert {response.status_code for response in responses} == {200}
    first = responses[0].json()
    assert all(response.json() == first for response in responses)
    assert (first["status"], first["state"], first["error"]) == (
        "succeeded",
        {"n": 1, "calls": 1},
        None,
    )
    assert [(s["seq"], s["node"], s["delta"]) for s in first["steps"]] == [
        (1, "tally", {"calls": 1})
    ]
    assert [str(row.id) for row in await rows_with(app, key)] == [first["run_id"]]
    assert tally.calls == [first["run_id"]]


async def test_the_same_key_after_the_run_ended_answers_that_run(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally
) -> None:
    tally.go.set()
    graph_id = await create_graph(client, TALLY)
    body = {"graph_id": graph_id, "input": {"n": 1}}
    key = new_key()

    first = await run(client, body, key)
    again = await run(client, body, key)
    without_waiting = await run(client, {**body, "wait": False}, key)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    run_id = first.json()["run_id"]
    # `wait` is how to answer, not what to run: the same run, as it stands.
    assert (without_waiting.status_code, without_waiting.json()) == (
        202,
        {"run_id": run_id, "status": "succeeded"},
    )
    assert len(await rows_with(app, key)) == 1
    assert tally.calls == [run_id]


@pytest.mark.parametrize("change", ["input", "graph", "durability"])
async def test_the_same_key_with_another_body_is_409_naming_the_key_and_the_run(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally, change: str
) -> None:
    tally.go.set()
    graph_id = await create_graph(client, TALLY)
    body = {"graph_id": graph_id, "input": {"n": 1}, "durability": "sync"}
    key = new_key()
    first = (await run(client, body, key)).json()
    other = {
        "input": {**body, "input": {"n": 2}},
        "graph": {**body, "graph_id": await create_graph(client, TALLY)},
        "durability": {**body, "durability": "async"},
    }[change]

    response = await run(client, other, key)

    assert (response.status_code, response.json()) == (
        409,
        {
            "detail": f"the Idempotency-Key {key!r} was first sent with another body "
            f"(run {first['run_id']}); use a new key for a new run"
        },
    )
    assert [str(row.id) for row in await rows_with(app, key)] == [first["run_id"]]
    assert tally.calls == [first["run_id"]]


async def test_another_key_or_no_key_is_another_run(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally
) -> None:
    tally.go.set()
    graph_id = await create_graph(client, TALLY)
    body = {"graph_id": graph_id, "input": {"n": 1}}
    one, other = new_key(), new_key()

    keyed = [(await run(client, body, key)).json() for key in (one, other)]
    unkeyed = [(await run(client, body, None)).json() for _ in range(2)]

    run_ids = [answer["run_id"] for answer in keyed + unkeyed]
    assert len(set(run_ids)) == 4
    assert [answer["status"] for answer in keyed + unkeyed] == ["succeeded"] * 4
    assert [str(row.id) for row in await rows_with(app, one)] == [run_ids[0]]
    assert [str(row.id) for row in await rows_with(app, other)] == [run_ids[1]]
    assert sorted(tally.calls) == sorted(run_ids)


@pytest.mark.parametrize(
    ("key", "status", "detail"),
    [
        ("", 400, "the Idempotency-Key is empty"),
        ("   ", 400, "the Idempotency-Key is empty"),
        ("a\x00b", 400, "the Idempotency-Key holds `\\u0000`, which PostgreSQL cannot store"),
        (
            "x" * (MAX_KEY + 1),
            422,
            [
                {
                    "loc": ["header", "idempotency-key"],
                    "msg": f"String should have at most {MAX_KEY} characters",
                    "type": "string_too_long",
                }
            ],
        ),
    ],
    ids=["empty", "blank", "nul", "too-long"],
)
async def test_a_key_the_server_cannot_keep_is_refused(
    client: httpx.AsyncClient, tally: Tally, key: str, status: int, detail: Any
) -> None:
    graph_id = await create_graph(client, TALLY)
    response = await run(client, {"graph_id": graph_id, "input": {}}, key)
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert tally.calls == []


@pytest.mark.parametrize("control", ["\x01", "\x1f", "\x7f"], ids=["soh", "us", "del"])
async def test_a_key_with_a_control_character_is_refused(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally, control: str
) -> None:
    tally.go.set()
    graph_id = await create_graph(client, TALLY)
    key = f"key{control}{uuid.uuid4()}"
    response = await run(client, {"graph_id": graph_id, "input": {}}, key)
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "the Idempotency-Key holds a control character, which a header value may not"},
    )
    assert await rows_with(app, key) == []
    assert tally.calls == []


async def test_the_longest_key_is_kept(
    app: FastAPI, client: httpx.AsyncClient, tally: Tally
) -> None:
    tally.go.set()
    graph_id = await create_graph(client, TALLY)
    key = new_key().ljust(MAX_KEY, "k")
    body = {"graph_id": graph_id, "input": {}}
    first, again = [(await run(client, body, key)).json() for _ in range(2)]
    assert (first["status"], again) == ("succeeded", first)
    assert [str(row.id) for row in await rows_with(app, key)] == [first["run_id"]]
