"""The OpenAPI document tells the truth: every answer documented, every example working.

Schemathesis (in-process, over ASGI, a fixed seed and a bounded number of examples) calls
every operation with valid and invalid requests, and chains them along the document's
links; any server error, undocumented status, wrong content type or response that breaks
its schema fails the test.  The WebSocket, which OpenAPI cannot describe, is checked
against the document's description.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.python.asgi import shutdown_lifespans
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from flowc.server.app import create_app
from tests.server.conftest import PRINTS, create_graph, events_of, make_settings
from tests.server.databases import BACKENDS

#: Seed, examples per operation and steps per call sequence: enough to reach every
#: documented status, small enough for a test suite.
SEED = 20261201
MAX_EXAMPLES = 25
SEQUENCES = 20
STEPS_PER_SEQUENCE = 6

CONFIG = {
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        "mode": "all",  # valid requests and invalid ones
    },
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},
        "missing_required_header": {"enabled": True},
        "unsupported_method": {"enabled": True},
        "allow_header_conformance": {"enabled": True},
        "use_after_free": {"enabled": True},
        "ensure_resource_availability": {"enabled": True},
        # Not `positive_data_acceptance`: JSON Schema cannot say "a flow without errors"
        # or "no NUL in any string of `input`", so a schema-valid body may rightly be a 422.
    },
}

#: The document as `/openapi.json` serves it; building the app connects to nothing.
DOCUMENT = create_app(make_settings("sqlite://")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastAPI]:
    """The application on each database; schemathesis runs its lifespan on first use."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('openapi') / 'flowc.db'}"
    else:
        url = request.getfixturevalue("shared_postgres")
    app = create_app(make_settings(url))
    yield app
    shutdown_lifespans()


@schema.parametrize()
def test_every_operation_answers_as_documented(
    case: schemathesis.Case[Any], served: FastAPI
) -> None:
    case.call_and_validate(app=served)


def test_sequences_of_calls_answer_as_documented(served: FastAPI) -> None:
    class Calls(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"app": served}

    Calls.run(
        settings=hypothesis.settings(
            max_examples=SEQUENCES,
            stateful_step_count=STEPS_PER_SEQUENCE,
            derandomize=True,
            database=None,
            deadline=None,
        )
    )


#: What each operation answers, as the issue lists it: a problem body for 400/404/413/415,
#: the diagnostics for a graph's 422, a 500 anywhere.
#: Every route may also answer 500 (the server failed) and 503 (the database is away).
ANY = {"500", "503"}
DOCUMENTED = {
    ("post", "/graph/create"): {"201", "400", "413", "415", "422", *ANY},
    ("post", "/graph/check"): {"200", "400", "413", "415", "422", *ANY},
    ("post", "/graph/run"): {"200", "202", "400", "404", "409", "413", "415", "422", *ANY},
    ("post", "/graph/cancel/{run_id}"): {"202", "404", "409", "422", *ANY},
    ("post", "/graph/resume/{run_id}"): {"202", "400", "404", "409", "413", "415", "422", *ANY},
    ("get", "/graph/state/{run_id}"): {"200", "404", "422", *ANY},
    ("get", "/graph/state/{run_id}/steps"): {"200", "404", "422", *ANY},
    ("get", "/graph/{graph_id}"): {"200", "404", "422", *ANY},
    ("get", "/graph/{graph_id}/diagram"): {"200", "404", "422", *ANY},
    ("get", "/graph/{graph_id}/schema"): {"200", "404", "422", *ANY},
    ("get", "/tools"): {"200", *ANY},
    ("get", "/healthz"): {"200", *ANY},
}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
INVALID_REQUEST = {"$ref": "#/components/schemas/InvalidRequest"}
INVALID_FLOW = {"$ref": "#/components/schemas/InvalidFlow"}


def _schema(operation: dict[str, Any], status: str) -> Any:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_every_status_is_documented_with_its_body() -> None:
    operations = {
        (method, path): operation
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
    }
    assert {key: set(op["responses"]) for key, op in operations.items()} == DOCUMENTED
    for (method, path), operation in operations.items():
        for status in ("400", "404", "413", "415", "500", "503"):
            if status in operation["responses"]:
                assert _schema(operation, status) == PROBLEM, (method, path, status)
    create = _schema(operations["post", "/graph/create"], "422")["anyOf"]
    assert create == [INVALID_FLOW, INVALID_REQUEST, PROBLEM]
    for key in [
        ("post", "/graph/check"),
        ("post", "/graph/run"),
        ("post", "/graph/resume/{run_id}"),
    ]:
        assert _schema(operations[key], "422")["anyOf"] == [INVALID_REQUEST, PROBLEM]
    assert _schema(operations["get", "/graph/{graph_id}"], "422") == INVALID_REQUEST
    components = DOCUMENT["components"]["schemas"]
    assert components["Problem"]["required"] == ["detail"]
    assert components["FieldProblem"]["required"] == ["loc", "msg", "type"]
    assert components["FlowProblems"]["required"] == ["message", "diagnostics"]


#: The document of a server with API tokens (`/openapi.json` itself needs one there).
WITH_TOKENS = create_app(make_settings("sqlite://", api_tokens="a-token-0123456789")).openapi()
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "an API token (FLOWC_API_TOKENS, or `flowc token new`)",
    "description": "`Authorization: Bearer <token>`; every route but `/healthz` needs it",
}


def test_with_tokens_every_operation_but_healthz_shows_the_lock() -> None:
    assert WITH_TOKENS["components"]["securitySchemes"] == {"bearer": BEARER_SCHEME}
    assert "securitySchemes" not in DOCUMENT["components"]  # no tokens: no lock, no 401
    for path, methods in WITH_TOKENS["paths"].items():
        for method, operation in methods.items():
            key = (method, path)
            if path == "/healthz":
                assert ("security" not in operation, set(operation["responses"])) == (
                    True,
                    DOCUMENTED[key],
                )
                continue
            assert operation["security"] == [{"bearer": []}], key
            assert set(operation["responses"]) == DOCUMENTED[key] | {"401", "429"}, key
            assert _schema(operation, "401") == _schema(operation, "429") == PROBLEM
            headers = {
                status: {name: header["required"] for name, header in answer["headers"].items()}
                for status, answer in operation["responses"].items()
                if status in ("401", "429")
            }
            assert headers == {"401": {"WWW-Authenticate": True}, "429": {"Retry-After": True}}
    assert DOCUMENT["paths"].keys() == WITH_TOKENS["paths"].keys()


def test_the_description_documents_authentication() -> None:
    description = DOCUMENT["info"]["description"]
    for phrase in [
        "### Authentication",
        "`Authorization: Bearer <token>`",
        "`WWW-Authenticate: Bearer`",
        "`flowc.v1` and\n`bearer.<token>`",
        "`FLOWC_TOKEN_RATE`",
        "`FLOWC_TOKEN_BURST`",
        "`FLOWC_TOKEN_MAX_RUNS`",
        "429 with `Retry-After`",
    ]:
        assert phrase in description, phrase


def _examples(node: Any, where: str = "") -> Iterator[str]:
    """Where `example` or `examples` occurs anywhere in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("example", "examples"):
                yield f"{where}/{key}"
            yield from _examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _examples(value, f"{where}/{index}")


def _request_examples() -> list[tuple[str, str, str, Any]]:
    """Every request-body example: (method, path, media type, value)."""
    found = []
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                if "example" in body:
                    found.append((method, path, media_type, body["example"]))
                for example in body.get("examples", {}).values():
                    found.append((method, path, media_type, example["value"]))
    return found


@pytest.mark.asyncio
async def test_every_example_in_the_document_succeeds(client: httpx.AsyncClient) -> None:
    body = "/requestBody/content"
    assert sorted(_examples(DOCUMENT)) == [
        f"/paths//graph/check/post{body}/application/json/examples",
        f"/paths//graph/check/post{body}/text/plain/example",
        f"/paths//graph/create/post{body}/application/json/examples",
        f"/paths//graph/create/post{body}/text/plain/example",
    ]
    examples = _request_examples()
    assert [(method, path, kind) for method, path, kind, _ in examples] == [
        ("post", "/graph/create", "application/json"),
        ("post", "/graph/create", "application/json"),
        ("post", "/graph/create", "text/plain"),
        ("post", "/graph/check", "application/json"),
        ("post", "/graph/check", "application/json"),
        ("post", "/graph/check", "text/plain"),
    ]
    for method, path, kind, value in examples:
        sent = {"json": value} if kind == "application/json" else {"content": value}
        response = await client.request(method, path, headers={"content-type": kind}, **sent)
        answer = response.json()
        if path == "/graph/check":
            assert (response.status_code, answer["ok"]) == (200, True), answer
            continue
        assert response.status_code == 201, answer
        run = await client.post(
            "/graph/run", json={"graph_id": answer["graph_id"], "input": {"code": PRINTS}}
        )
        assert (run.status_code, run.json()["status"]) == (200, "succeeded"), run.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/graph/create", "POST"),
        ("GET", "/graph/run", "POST"),
        ("GET", "/graph/check", "POST"),
        ("PUT", "/graph/create", "POST"),
        ("DELETE", "/graph/3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11", "GET"),
        ("POST", "/graph/3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11/diagram", "GET"),
        ("DELETE", "/graph/state/3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11", "GET"),
        ("POST", "/tools", "GET"),
        ("HEAD", "/healthz", "GET"),
    ],
)
async def test_a_wrong_method_is_a_405_naming_the_right_one(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert (response.status_code, response.headers["allow"]) == (405, allow)
    if method != "HEAD":
        assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.asyncio
async def test_reading_a_graph_still_takes_get(client: httpx.AsyncClient) -> None:
    graph_id = await create_graph(client, "analyze -> end")
    assert (await client.get(f"/graph/{graph_id}")).status_code == 200
    missing = (await client.get("/graph/3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11")).status_code
    assert missing == 404


def test_the_description_documents_the_websocket() -> None:
    description = DOCUMENT["info"]["description"]
    for phrase in [
        "`WS /ws/graph/{run_id}?after=SEQ`",
        "`run_started`",
        "`node_started`",
        "`node_finished`",
        "`run_finished`",
        "`run_failed`",
        "`run_waiting`",
        "**1000**",
        "**4400**",
        "**4404**",
        "**1011**",
    ]:
        assert phrase in description, phrase


@pytest.mark.asyncio
async def test_after_skips_the_steps_a_client_has_seen(live_server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{live_server}") as client:
        graph_id = await create_graph(client, "analyze -> style -> score -> end")
        body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}}
        run_id = (await client.post("/graph/run", json=body)).json()["run_id"]
    url = f"ws://{live_server}/ws/graph/{run_id}"
    every, closed = await events_of(url)
    assert closed == 1000
    assert [(m["type"], m["step"]) for m in every] == [
        ("run_started", 0),
        ("node_started", 1),
        ("node_finished", 1),
        ("node_started", 2),
        ("node_finished", 2),
        ("node_started", 3),
        ("node_finished", 3),
        ("run_finished", 3),
    ]
    after_one, closed = await events_of(f"{url}?after=1")
    assert (after_one, closed) == (every[3:], 1000)
    after_zero, _ = await events_of(f"{url}?after=0")
    assert after_zero == every[1:]
    # The final event comes whatever `after` says: it is how a client knows the run ended.
    after_all, closed = await events_of(f"{url}?after=3")
    assert (after_all, closed) == (every[-1:], 1000)


@pytest.mark.asyncio
@pytest.mark.parametrize("after", ["-1", "x", "1.5", "99999999999999999999"])
async def test_an_after_that_is_not_a_step_number_closes_with_4400(
    live_server: str, after: str
) -> None:
    url = f"ws://{live_server}/ws/graph/{uuid.uuid4()}?after={after}"
    async with connect(url) as socket:
        with pytest.raises(ConnectionClosedError) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4400,
        f"`after` must be a step number (an integer >= 0), not '{after}'",
    )
