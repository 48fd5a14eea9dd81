"""API tokens: every route but `/healthz` needs one, the WebSocket too; rates and run limits.

The route test walks `app.routes` (the docs, their assets and the WebSocket included), so a
route added later is checked without anyone remembering to.  Rates are timed by a clock
the test moves: nothing here waits for real time to pass.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from flowc.server.app import create_app
from flowc.server.auth import (
    SEND_TOKEN,
    Authentication,
    RequestRate,
    Token,
    TokenFileError,
    Tokens,
    accepted_subprotocol,
    load_tokens,
    token_digest,
    token_line,
)
from tests.server.conftest import BASE_URL, ONE_LINER, Gates, create_graph, make_settings

TOKEN_A = "alpha-0123456789abcdef"
TOKEN_B = "beta-0123456789abcdef"
AUTH_A = {"authorization": f"Bearer {TOKEN_A}"}
AUTH_B = {"authorization": f"Bearer {TOKEN_B}"}
HELD = 'node h = hold(gate = "g")\nh -> end\n'
RUN_ID = "3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11"
CHALLENGE = 'Bearer realm="flowc"'
INVALID_CHALLENGE = 'Bearer realm="flowc", error="invalid_token"'
INVALID = "the API token is not valid"
NOT_BEARER = "the Authorization header must be `Bearer <token>`"


class Clock:
    """A clock that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"


@asynccontextmanager
async def serving(
    url: str, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The application with tokens A and B (unless overridden), started, and a client."""
    settings = make_settings(url, **{"api_tokens": f"{TOKEN_A},{TOKEN_B}", **overrides})
    app = create_app(settings, clock=clock or Clock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield app, client


# -- every route ----------------------------------------------------------------------------


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", RUN_ID, path)


def _requests(route: BaseRoute, path: str) -> Iterator[tuple[str, str]]:
    """(method, path) for each way into an HTTP route; the method is `WS` for a WebSocket."""
    if isinstance(route, Mount):
        assert isinstance(route.app, StaticFiles) and route.app.directory is not None
        for asset in sorted(p.name for p in Path(route.app.directory).iterdir()):
            yield "GET", f"{path}/{asset}"
    elif isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
        yield "WS", _concrete(path)
    else:
        assert isinstance(route, Route) or hasattr(route, "methods"), route
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, _concrete(path)


@pytest.mark.asyncio
async def test_every_route_but_healthz_needs_a_token(live: Live) -> None:
    seen: set[str] = set()
    async with httpx.AsyncClient(base_url=f"http://{live.address}") as client:
        for context in iter_route_contexts(live.app.routes):
            assert context.path is not None
            seen.add(context.path)
            for method, path in _requests(context.route, context.path):
                if method == "WS":
                    await _check_websocket(f"ws://{live.address}{path}")
                    continue
                bare = await client.request(method, path)
                allowed = await client.request(method, path, headers=AUTH_A)
                if path == "/healthz":  # 200, or 405 for HEAD: never a 401
                    assert 401 not in (bare.status_code, allowed.status_code)
                    continue
                assert bare.status_code == 401, (method, path)
                assert bare.headers["www-authenticate"] == CHALLENGE
                if method != "HEAD":
                    assert bare.json() == {"detail": SEND_TOKEN}
                assert allowed.status_code not in (401, 403), (method, path, allowed.text)
    # The walk reached the routes outside the API's routers, and the WebSocket.
    assert {
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/docs-assets",
        "/ws/graph/{run_id}",
        "/tools",
        "/graph/run",
        "/healthz",
    } <= seen


@pytest.mark.asyncio
async def test_a_bad_token_is_told_what_is_wrong(tmp_path: Path) -> None:
    async with serving(sqlite(tmp_path)) as (_, client):
        cases = {
            "Bearer nope": (INVALID, INVALID_CHALLENGE),
            f"Basic {TOKEN_A}": (NOT_BEARER, CHALLENGE),
            "Bearer ": (NOT_BEARER, CHALLENGE),
            TOKEN_A: (NOT_BEARER, CHALLENGE),
        }
        for header, (detail, challenge) in cases.items():
            response = await client.get("/tools", headers={"authorization": header})
            assert response.status_code == 401, header
            assert response.json() == {"detail": detail}
            assert response.headers["www-authenticate"] == challenge
        assert (
            await client.get("/tools", headers={"authorization": f"bearer {TOKEN_B}"})
        ).is_success


@pytest.mark.asyncio
async def test_a_request_without_a_token_is_refused_before_its_body_is_read(
    tmp_path: Path,
) -> None:
    async with serving(sqlite(tmp_path), max_body_bytes=1000) as (_, client):
        big = await client.post("/graph/create", content=b"x" * 5000)
        unknown = await client.get("/no/such/path")
        allowed = await client.post("/graph/create", content=b"x" * 5000, headers=AUTH_A)
    assert (big.status_code, unknown.status_code, allowed.status_code) == (401, 401, 413)


@pytest.mark.asyncio
async def test_without_tokens_the_api_is_open_and_unlimited(tmp_path: Path) -> None:
    clock = Clock()
    async with serving(sqlite(tmp_path), clock, api_tokens="", token_rate=1, token_burst=1) as (
        app,
        client,
    ):
        answers = [(await client.get("/tools")).status_code for _ in range(5)]
        assert answers == [200] * 5
        assert "securitySchemes" not in app.openapi().get("components", {})


async def _check_websocket(url: str) -> None:
    """Refused at the handshake without a token; accepted with one (then 4404: no such run)."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pytest.fail(f"{url} was accepted without a token")
    assert refused.value.response.status_code == 401
    async with connect(url, additional_headers=AUTH_A) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4404


# -- the WebSocket ---------------------------------------------------------------------------


class Live(NamedTuple):
    """The application with tokens A and B under uvicorn: its address, and the app."""

    address: str
    app: FastAPI


@pytest_asyncio.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    """The application with tokens A and B (no rate limit) under uvicorn on a free port."""
    settings = make_settings(sqlite(tmp_path), api_tokens=f"{TOKEN_A},{TOKEN_B}", token_rate=0)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning", log_config=None))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            await task
            pytest.fail("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield Live(f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", app)
    finally:
        server.should_exit = True
        await task


async def _finished_run(address: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{address}", headers=AUTH_A) as client:
        graph_id = await create_graph(client, ONE_LINER)
        run = await client.post("/graph/run", json={"graph_id": graph_id, "input": {"code": "1"}})
        assert run.status_code == 200, run.text
        run_id: str = run.json()["run_id"]
        return run_id


async def _stream(url: str, **options: Any) -> tuple[list[str], int | None, str | None]:
    async with connect(url, **options) as ws:
        kinds = [json.loads(message)["type"] async for message in ws]
        return kinds, ws.close_code, ws.subprotocol


@pytest.mark.asyncio
async def test_the_websocket_takes_the_token_in_a_header_or_a_subprotocol(live: Live) -> None:
    url = f"ws://{live.address}/ws/graph/{await _finished_run(live.address)}"
    by_header = await _stream(url, additional_headers=AUTH_A)
    offered = [Subprotocol("flowc.v1"), Subprotocol(f"bearer.{TOKEN_B}")]
    by_subprotocol = await _stream(url, subprotocols=offered)
    assert by_header[1:] == (1000, None)
    assert by_subprotocol[1:] == (1000, "flowc.v1")  # never the token's protocol
    assert by_header[0] == by_subprotocol[0]
    assert by_header[0][0] == "run_started"
    assert by_header[0][-1] in ("run_finished", "run_failed")  # the whole stream, to its end


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "detail", "challenge"),
    [
        ({}, SEND_TOKEN, 'Bearer realm="flowc"'),
        (
            {"subprotocols": [Subprotocol("flowc.v1"), Subprotocol("bearer.wrong")]},
            "the API token is not valid",
            'Bearer realm="flowc", error="invalid_token"',
        ),
        (
            {"additional_headers": {"authorization": "Bearer wrong"}},
            "the API token is not valid",
            'Bearer realm="flowc", error="invalid_token"',
        ),
    ],
)
async def test_a_websocket_without_a_valid_token_is_refused_at_its_handshake(
    live: Live, options: dict[str, Any], detail: str, challenge: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{live.address}/ws/graph/{RUN_ID}", **options):
            pytest.fail("the socket was accepted")
    response = refused.value.response
    assert (response.status_code, response.headers["www-authenticate"]) == (401, challenge)
    assert response.body == f'{{"detail":"{detail}"}}'.encode()


@pytest.mark.asyncio
async def test_a_server_without_denial_responses_closes_a_refused_websocket_with_1008() -> None:
    async def never(scope: Any, receive: Any, send: Any) -> None:
        pytest.fail("the application was reached without a token")

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    guard = Authentication(never, Tokens([Token("a", token_digest(TOKEN_A))]), unlimited())
    scope = {"type": "websocket", "path": f"/ws/graph/{RUN_ID}", "headers": [], "extensions": {}}
    await guard(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": SEND_TOKEN[:123]}]


def unlimited() -> RequestRate:
    """No limit on requests."""
    return RequestRate(0, 1, Clock())


def test_the_subprotocol_answered_is_flowc_v1_or_none() -> None:
    assert accepted_subprotocol(["bearer.x", "flowc.v1"]) == "flowc.v1"
    assert accepted_subprotocol(["bearer.x"]) is None
    assert accepted_subprotocol([]) is None


# -- hashed tokens ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_file_of_hashed_tokens_is_read_with_the_plain_ones(tmp_path: Path) -> None:
    ci, anonymous, unknown = "ci-token-0123456789", "anon-token-0123456789", "nope-0123456789"
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"# flowc tokens\n\n{token_line(ci, 'ci runner')}\n  {token_line(anonymous)}  \n",
        encoding="utf-8",
    )
    clock = Clock()
    async with serving(
        sqlite(tmp_path), clock, api_tokens_file=str(tokens), token_rate=1, token_burst=1
    ) as (app, client):
        assert [t.name for t in app.state.tokens.tokens] == [
            "FLOWC_API_TOKENS[1]",
            "FLOWC_API_TOKENS[2]",
            "ci runner",
            "tokens:4",
        ]
        for token in (ci, anonymous, TOKEN_A, TOKEN_B):
            answer = await client.get("/tools", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200, token
        refused = await client.get("/tools", headers={"authorization": f"Bearer {unknown}"})
        assert refused.status_code == 401
        limited = await client.get("/tools", headers={"authorization": f"Bearer {ci}"})
    assert limited.status_code == 429
    assert limited.json()["detail"].startswith("token `ci runner` is over its rate")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "sha256:abc\n",
            "{path}:1: expected `sha256:<64 lower-case hex digits>` and an optional name "
            "(a plain token? store its line: `flowc token hash`)",
        ),
        (
            f"# a comment\n{TOKEN_A}\n",
            "{path}:2: expected `sha256:<64 lower-case hex digits>` and an optional name "
            "(a plain token? store its line: `flowc token hash`)",
        ),
        (
            f"{token_line(TOKEN_A)} {'n' * 101}\n",
            "{path}:1: the token's name is longer than 100 characters",
        ),
        ("# only a comment\n\n", "FLOWC_API_TOKENS_FILE: {path} holds no token"),
        (None, "FLOWC_API_TOKENS_FILE: cannot read {path}: No such file or directory"),
        (b"\xff\xfe", "FLOWC_API_TOKENS_FILE: cannot read {path}: it is not UTF-8 text"),
    ],
)
def test_a_token_file_that_cannot_be_read_says_where(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "tokens"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    settings = make_settings(sqlite(tmp_path), api_tokens_file=str(path))
    with pytest.raises(TokenFileError) as problem:
        load_tokens(settings)
    assert str(problem.value) == message.format(path=path)
    if content is not None and TOKEN_A in str(content):
        assert TOKEN_A not in str(problem.value)  # a secret is never repeated


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (" , ,", "FLOWC_API_TOKENS is set but holds no token"),
        (
            f"{TOKEN_A}, two words",
            "FLOWC_API_TOKENS: token 2 holds a character other than letters, digits and "
            "`-._~+/` (`=` at the end)",
        ),
    ],
)
def test_bad_plain_tokens_are_refused(tmp_path: Path, tokens: str, message: str) -> None:
    with pytest.raises(TokenFileError) as problem:
        load_tokens(make_settings(sqlite(tmp_path), api_tokens=tokens))
    assert str(problem.value) == message


def test_a_token_is_compared_with_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    known = Tokens(Token(str(n), token_digest(f"token-{n}")) for n in range(5))
    compared = 0
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        nonlocal compared
        compared += 1
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, expected in [("token-0", "0"), ("token-4", "4"), ("other", None)]:
        compared = 0
        found = known.find(presented)
        assert (found.name if found else None, compared) == (expected, 5)


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_token_has_its_own_request_rate(tmp_path: Path) -> None:
    clock = Clock()
    async with serving(sqlite(tmp_path), clock, token_rate=0.25, token_burst=2) as (_, client):
        first = [(await client.get("/tools", headers=AUTH_A)).status_code for _ in range(2)]
        limited = await client.get("/tools", headers=AUTH_A)
        other = await client.get("/tools", headers=AUTH_B)
        health = [(await client.get("/healthz")).status_code for _ in range(3)]
        clock.now += 3.9  # not yet a whole request's worth
        still = await client.get("/tools", headers=AUTH_A)
        clock.now += 0.1
        again = await client.get("/tools", headers=AUTH_A)
    assert first == [200, 200]
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "4")
    assert limited.json() == {
        "detail": "token `FLOWC_API_TOKENS[1]` is over its rate of 0.25 requests a second, "
        "2 at once (FLOWC_TOKEN_RATE, FLOWC_TOKEN_BURST): try again in 4 s"
    }
    assert (other.status_code, health) == (200, [200, 200, 200])
    assert (still.status_code, still.headers["retry-after"]) == (429, "1")
    assert again.status_code == 200


@given(
    rate=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(st.floats(min_value=0, max_value=5), max_size=60),
)
def test_a_bucket_lets_through_no_more_than_its_burst_and_rate(
    rate: float, burst: int, steps: list[float]
) -> None:
    clock = Clock()
    bucket = RequestRate(rate, burst, clock)
    token = Token("t", token_digest("t"))
    allowed: list[float] = []
    for step in steps:
        clock.now += step
        wait = bucket.take(token)
        if wait == 0:
            allowed.append(clock.now)
        else:  # the wait it names is enough, and no more than a request's worth
            assert 0 < wait <= 1 / rate + 1e-9
    for i, start in enumerate(allowed):
        within = [t for t in allowed[i:] if t - start <= 10]
        assert len(within) <= burst + 10 * rate + 1e-6


@pytest.mark.asyncio
async def test_a_token_may_have_so_many_runs_queued_or_running(db_url: str, gates: Gates) -> None:
    async with serving(db_url, token_max_runs=1) as (app, client):
        graph_id = await create_graph_as(client, HELD)
        body = {"graph_id": graph_id, "input": {}, "wait": False}
        missing = {**body, "graph_id": str(uuid.uuid4())}
        assert (await client.post("/graph/run", json=missing, headers=AUTH_A)).status_code == 404
        first = await client.post("/graph/run", json=body, headers=AUTH_A)
        assert first.status_code == 202, first.text  # the 404 took no place
        await gates.wait_until_reached("g")
        refused = await client.post("/graph/run", json=body, headers=AUTH_A)
        other = await client.post("/graph/run", json=body, headers=AUTH_B)
        gates.open("g")
        runs = app.state.runs
        for answer in (first, other):
            result = await runs.result(uuid.UUID(answer.json()["run_id"]))
            assert result.status == "succeeded"
        after = await client.post("/graph/run", json=body, headers=AUTH_A)
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "2")
    assert refused.json() == {
        "detail": "token `FLOWC_API_TOKENS[1]` has 1 runs queued or running, as many as it "
        "may (FLOWC_TOKEN_MAX_RUNS): start more when one ends"
    }
    assert (other.status_code, after.status_code) == (202, 202)


async def create_graph_as(client: httpx.AsyncClient, source: str) -> str:
    """Save flow text with token A; the graph id."""
    response = await client.post("/graph/create", json={"source": source}, headers=AUTH_A)
    assert response.status_code == 201, response.text
    graph_id: str = response.json()["graph_id"]
    return graph_id
