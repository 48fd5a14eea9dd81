"""Limits through the API: inputs past them are refused, runs past them fail `limit`, cleanly.

Each run that goes past a limit ends `failed` with the error `limit` (never `storage_error`,
never a 500), its row records the outcome (nothing is left `running`), and its state is the
last good one.  Both databases, every durability.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flowc.runtime import REGISTRY, Registry
from flowc.runtime.state import MAX_INT
from flowc.server.app import create_app
from flowc.server.settings import SERVER_MAX_STEPS, Settings
from tests.server.conftest import BASE_URL, define, make_settings, read_run, service_on

ROOT = Path(__file__).parents[2]
#: The settings of the test application: small enough to reach with small values.
LIMITS = {
    "max_input_bytes": 1_000,
    "max_state_bytes": 2_000,
    "max_string_length": 700,
    "max_steps_limit": 1_000,
}
INT_RANGE = "(-9,223,372,036,854,775,808 to 9,223,372,036,854,775,807)"


def note(state: dict[str, Any]) -> dict[str, Any]:
    """A first step that succeeds."""
    return {"noted": True}


def bump(state: dict[str, Any]) -> dict[str, Any]:
    """Add 1 to `n`."""
    return {"n": state["n"] + 1}


def huge(state: dict[str, Any]) -> dict[str, Any]:
    """An integer of 4,301 digits: past what Python writes as JSON by default."""
    return {"n": 10**4300}


def put(state: dict[str, Any], *, key: str, size: int) -> dict[str, Any]:
    """`size` x's under `key`."""
    return {key: "x" * size}


def nest(state: dict[str, Any], *, size: int) -> dict[str, Any]:
    """A long string deep in a list of objects."""
    return {"items": [{"name": "ok"}, {"name": "x" * size}]}


TOOLS = (note, bump, huge, put, nest)


@pytest.fixture
def tools() -> Iterator[None]:
    """The tools above in the application's registry, removed afterwards."""
    for tool in TOOLS:
        REGISTRY.add(tool, replace=True)
    yield
    for tool in TOOLS:
        REGISTRY.remove(tool.__name__)


@pytest_asyncio.fixture
async def client(db_url: str, tools: None) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an application with small limits; app errors (a 500) raise."""
    application = create_app(make_settings(db_url, **LIMITS))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


async def graph(client: httpx.AsyncClient, source: str) -> str:
    response = await client.post("/graph/create", json={"source": source})
    assert response.status_code == 201, response.text
    graph_id: str = response.json()["graph_id"]
    return graph_id


async def run(
    client: httpx.AsyncClient, source: str, data: dict[str, Any], durability: str = "sync"
) -> httpx.Response:
    body = {"graph_id": await graph(client, source), "input": data, "durability": durability}
    return await client.post("/graph/run", json=body)


async def failed_with(
    client: httpx.AsyncClient, response: httpx.Response, message: str, node: str
) -> dict[str, Any]:
    """The run failed with `limit` and `message` at `node`, as answered and as recorded."""
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "failed"
    error = result["error"]
    assert (error["code"], error["message"], error["node"]) == ("limit", message, node)
    recorded = (await client.get(f"/graph/state/{result['run_id']}")).json()
    assert (recorded["status"], recorded["error"], recorded["state"]) == (
        "failed",
        error,
        result["state"],
    )
    assert recorded["finished_at"] is not None
    return result


@pytest.mark.asyncio
@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_an_integer_past_64_bits_fails_the_run_with_limit(
    client: httpx.AsyncClient, durability: str
) -> None:
    response = await run(client, "note -> bump", {"n": MAX_INT}, durability)
    result = await failed_with(
        client,
        response,
        "tool `bump` returned a value past a limit at `n`: an integer of 64 bits is outside "
        f"the signed 64-bit range {INT_RANGE} that the store keeps exactly",
        "bump",
    )
    assert result["state"] == {"n": MAX_INT, "noted": True}
    assert [step["node"] for step in result["steps"]] == ["note"]


@pytest.mark.asyncio
@pytest.mark.parametrize("durability", ["sync", "exit"])
async def test_a_4301_digit_integer_fails_the_run_with_limit(
    client: httpx.AsyncClient, durability: str
) -> None:
    response = await run(client, "note -> huge", {}, durability)
    result = await failed_with(
        client,
        response,
        "tool `huge` returned a value past a limit at `n`: an integer of 14,285 bits is "
        f"outside the signed 64-bit range {INT_RANGE} that the store keeps exactly",
        "huge",
    )
    assert result["state"] == {"noted": True}


@pytest.mark.asyncio
async def test_a_string_past_the_limit_fails_the_run_naming_its_path(
    client: httpx.AsyncClient,
) -> None:
    response = await run(client, "node n = nest(size = 701)\nnote -> n", {})
    await failed_with(
        client,
        response,
        "tool `nest` returned a value past a limit at `items[1].name`: a string of 701 "
        "characters is longer than FLOWC_MAX_STRING_LENGTH = 700",
        "n",
    )


@pytest.mark.asyncio
async def test_a_state_past_the_limit_fails_the_run_with_the_last_good_state(
    client: httpx.AsyncClient,
) -> None:
    source = 'node a = put(key = "a", size = 700)\nnode b = put(key = "b", size = 700)\n'
    source += 'node c = put(key = "c", size = 700)\na -> b -> c'
    response = await run(client, source, {})
    result = await failed_with(
        client,
        response,
        "tool `put` returned updates past a limit: they would make the state about 2,122 "
        "bytes as JSON, more than FLOWC_MAX_STATE_BYTES = 2,000; `c` is about 706 of them",
        "c",
    )
    assert sorted(result["state"]) == ["a", "b"]


@pytest.mark.asyncio
async def test_an_input_past_the_size_limit_is_a_413(client: httpx.AsyncClient) -> None:
    response = await run(client, "note -> end", {"code": "x" * 600, "more": "y" * 600})
    assert response.status_code == 413
    assert response.json() == {
        "detail": "the input is about 1,221 bytes as JSON, more than "
        "FLOWC_MAX_INPUT_BYTES = 1,000; `code` is about 609 of them"
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        (
            {"n": MAX_INT + 1},
            ["body", "input", "n"],
            f"an integer of 64 bits is outside the signed 64-bit range {INT_RANGE} that the "
            "store keeps exactly",
        ),
        (
            {"deep": {"list": [-(2**70)]}},
            ["body", "input", "deep", "list", 0],
            f"an integer of 71 bits is outside the signed 64-bit range {INT_RANGE} that the "
            "store keeps exactly",
        ),
        (
            {"text": "x" * 701},
            ["body", "input", "text"],
            "a string of 701 characters is longer than FLOWC_MAX_STRING_LENGTH = 700",
        ),
        (
            {"k" * 701: 1},
            ["body", "input"],
            "a key of 701 characters is longer than FLOWC_MAX_STRING_LENGTH = 700",
        ),
        (
            {"k": {"x" * 701: 1}},
            ["body", "input", "k"],
            "a key of 701 characters is longer than FLOWC_MAX_STRING_LENGTH = 700",
        ),
    ],
)
async def test_an_input_value_past_a_limit_is_a_422_naming_it(
    client: httpx.AsyncClient, data: dict[str, Any], loc: list[Any], message: str
) -> None:
    response = await run(client, "note -> end", data)
    assert response.status_code == 422
    assert response.json() == {"detail": [{"loc": loc, "msg": message, "type": "limit"}]}


@pytest.mark.asyncio
async def test_a_flow_asking_more_steps_than_the_server_allows_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    graph_id = await graph(client, "set max_steps = 1001\nnote -> end")
    response = await client.post("/graph/run", json={"graph_id": graph_id, "input": {}})
    assert response.status_code == 422
    assert response.json() == {
        "detail": f"graph {graph_id} sets max_steps = 1,001, more than this server allows "
        "(FLOWC_MAX_STEPS_LIMIT = 1,000): lower `set max_steps` in the flow, or raise the "
        "setting"
    }
    at_the_limit = await graph(client, "note -> end")  # the default: 1,000
    response = await client.post("/graph/run", json={"graph_id": at_the_limit, "input": {}})
    assert (response.status_code, response.json()["status"]) == (200, "succeeded")


@pytest.mark.asyncio
async def test_a_worker_with_a_lower_ceiling_fails_the_run_it_claims(db_url: str) -> None:
    registry = Registry()
    registry.add(note)
    async with service_on(db_url, registry, max_steps_limit=10) as service:
        definition = await define(service.db, "set max_steps = 11\nnote -> end", registry)
        created = await service.start(definition=definition, input={}, durability="sync")
        result = await service.result(created.run_id)
        row, steps = await read_run(service.db, created.run_id)
    message = (
        "the flow sets max_steps = 11, more than FLOWC_MAX_STEPS_LIMIT = 10 allows; "
        "lower `set max_steps`"
    )
    assert result.error is not None
    assert (result.status, result.error.code, result.error.message) == ("failed", "limit", message)
    assert (row.status, row.error, steps) == (
        "failed",
        {"code": "limit", "message": message, "node": None, "span": None},
        [],
    )


def test_the_limits_are_read_from_flowc_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWC_MAX_STEPS_LIMIT", "5000")
    monkeypatch.setenv("FLOWC_MAX_STATE_BYTES", "123456")
    monkeypatch.setenv("FLOWC_SLICE_STEPS", "7")
    limits = Settings().limits()
    assert (limits.max_steps_limit, limits.max_state_bytes, limits.slice_steps) == (
        5000,
        123456,
        7,
    )
    assert limits.named("max_steps_limit") == "FLOWC_MAX_STEPS_LIMIT = 5,000"
    assert Settings.model_fields["max_steps_limit"].default == SERVER_MAX_STEPS == 10_000


#: A long `exit` run in a process of its own, whose memory the kernel caps: every step is
#: held until the end, so the `max_steps` ceiling is what keeps it bounded.
LONG_EXIT_RUN = textwrap.dedent(
    """
    import asyncio, resource, sys

    from flowc.runtime import Registry
    from tests.server.conftest import define, service_on

    url, steps, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    def tick(state):
        return {"n": state.get("n", 0) + 1}

    async def main():
        registry = Registry()
        registry.add(tick)
        async with service_on(url, registry) as service:
            for asked in (10 * steps, steps):
                source = f"set max_steps = {asked}\\ntick ? n < {asked} -> tick : end"
                definition = await define(service.db, source, registry)
                created = await service.start(definition=definition, input={}, durability="exit")
                result = await service.result(created.run_id)
                code = result.error.code if result.error else None
                print(asked, result.status, code, len(result.steps), result.state)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_long_exit_run_at_the_ceiling_fits_in_a_memory_cap(db_url: str) -> None:
    steps = SERVER_MAX_STEPS
    cap = 200 * 1024 * 1024  # it needs about 125 MB; 100 MB is too little
    env = {**os.environ, "FLOWC_MAX_STEPS_LIMIT": str(steps)}
    done = subprocess.run(
        [sys.executable, "-c", LONG_EXIT_RUN, db_url, str(steps), str(cap)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=300,
    )
    assert (done.returncode, done.stderr) == (0, "")
    # Ten times the ceiling is refused before a step; the ceiling itself runs to its end.
    assert done.stdout.splitlines() == [
        f"{10 * steps} failed limit 0 {{}}",
        f"{steps} succeeded None {steps} {{'n': {steps}}}",
    ]
