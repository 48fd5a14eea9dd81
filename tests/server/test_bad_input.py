"""Every kind of bad input is a 4xx with a message a person can act on, never a 500.

The client raises any exception the application lets escape, and the catch-all handler's
log is watched: a bad input that reached either fails the walk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI

from tests.server.conftest import BASE_URL, ONE_LINER, create_graph

pytestmark = pytest.mark.asyncio

MISSING = str(uuid.uuid4())
JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
LIMIT = 2 * 1024 * 1024  # the default `max_body_bytes`
TOO_LARGE = f"the request body is larger than {LIMIT:,} bytes (the limit is FLOWC_MAX_BODY_BYTES)"
NUL = "holds `\\u0000`, which PostgreSQL cannot store"
OVERSIZED = json.dumps({"source": "a" * LIMIT}).encode()
SMALL = json.dumps({"source": ONE_LINER}).encode()
DEEP = 5000


class Case(NamedTuple):
    """One bad request: `{graph}` in the path or body becomes a saved graph's id."""

    name: str
    method: str
    path: str
    request: dict[str, Any]
    status: int
    detail: Any


def field(loc: list[str], msg: str, kind: str) -> list[dict[str, Any]]:
    return [{"loc": loc, "msg": msg, "type": kind}]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


CASES = [
    # Malformed bodies: 400, naming where the JSON broke.
    Case("json syntax", "post", "/graph/run", {"content": '{"graph_id": }', "headers": JSON},
         400, "invalid JSON at line 1, column 14: Expecting value"),
    Case("json syntax on line 3", "post", "/graph/create",
         {"content": '{\n  "source": "a -> b"\n  "name": "x"\n}', "headers": JSON},
         400, "invalid JSON at line 3, column 3: Expecting ',' delimiter"),
    Case("empty json body to check", "post", "/graph/check", {"content": "", "headers": JSON},
         400, "invalid JSON at line 1, column 1: Expecting value"),
    Case("json not utf-8", "post", "/graph/run",
         {"content": b'{"input": {"s": "\xff"}}', "headers": JSON},
         400, "the body is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 17: "
         "invalid start byte"),
    Case("number too long", "post", "/graph/run",
         {"content": '{"input": {"n": 1' + "0" * 5000 + "}}", "headers": JSON},
         400, "invalid JSON: a number has more than 4300 digits"),
    Case("text not utf-8", "post", "/graph/create", {"content": b"a -> b\xff", "headers": TEXT},
         400, "the flow text is not UTF-8: byte 0xff at offset 6"),
    # Wrong types, missing and unknown fields: 422 naming the field.
    Case("input not an object", "post", "/graph/run",
         {"json": {"graph_id": "{graph}", "input": [1, 2]}},
         422, field(["body", "input"], "Input should be a valid dictionary", "dict_type")),
    Case("wait not a bool", "post", "/graph/run", {"json": {"graph_id": "{graph}", "wait": "yes"}},
         422, field(["body", "wait"], "Input should be a valid boolean", "bool_type")),
    Case("unknown durability", "post", "/graph/run",
         {"json": {"graph_id": "{graph}", "durability": "fast"}},
         422, field(["body", "durability"], "Input should be 'sync', 'async' or 'exit'",
                    "literal_error")),
    Case("source not a string", "post", "/graph/create", {"json": {"source": 42}},
         422, field(["body", "source"], "Input should be a valid string", "string_type")),
    Case("ir not an object", "post", "/graph/create", {"json": {"ir": "a -> b"}},
         422, field(["body", "ir"], "Input should be a valid dictionary", "dict_type")),
    Case("run body a list", "post", "/graph/run", {"json": [1]},
         422, field(["body"], "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type")),
    Case("graph body a list", "post", "/graph/create", {"json": [1]},
         422, field(["body"], "Input should be a valid dictionary or instance of GraphInput",
                    "model_type")),
    Case("empty run body", "post", "/graph/run", {"content": "", "headers": JSON},
         422, field(["body"], "Field required", "missing")),
    Case("no graph id", "post", "/graph/run", {"json": {"input": {}}},
         422, field(["body", "graph_id"], "Field required", "missing")),
    Case("misspelt field", "post", "/graph/run", {"json": {"graph_id": "{graph}", "inputs": {}}},
         422, field(["body", "inputs"], "Extra inputs are not permitted", "extra_forbidden")),
    Case("neither source nor ir", "post", "/graph/create", {"json": {"name": "x"}},
         422, field(["body"], "send exactly one of `source` (flow text) and `ir` (an IR document)",
                    "one_form")),
    Case("both source and ir", "post", "/graph/check", {"json": {"source": "a", "ir": {}}},
         422, field(["body"], "send exactly one of `source` (flow text) and `ir` (an IR document)",
                    "one_form")),
    Case("name too long", "post", "/graph/create", {"json": {"name": "x" * 201, "source": "a"}},
         422, field(["body", "name"], "String should have at most 200 characters",
                    "string_too_long")),
    Case("unknown diagram format", "get", "/graph/{graph}/diagram?format=png", {},
         422, field(["query", "format"], "Input should be 'mermaid' or 'dot'", "literal_error")),
    # Unknown ids: 404.
    Case("unknown graph", "get", f"/graph/{MISSING}", {}, 404, f"graph {MISSING} not found"),
    Case("unknown graph diagram", "get", f"/graph/{MISSING}/diagram", {},
         404, f"graph {MISSING} not found"),
    Case("run an unknown graph", "post", "/graph/run", {"json": {"graph_id": MISSING}},
         404, f"graph {MISSING} not found"),
    Case("unknown run", "get", f"/graph/state/{MISSING}", {}, 404, f"run {MISSING} not found"),
    Case("unknown run steps", "get", f"/graph/state/{MISSING}/steps", {},
         404, f"run {MISSING} not found"),
    Case("unknown path", "get", "/graphs", {}, 404, "Not Found"),
    Case("wrong method", "delete", "/graph/create", {}, 405, "Method Not Allowed"),
    Case("get a path that takes post", "get", "/graph/create", {}, 405, "Method Not Allowed"),
    Case("get the run path", "get", "/graph/run", {}, 405, "Method Not Allowed"),
    Case("delete a graph", "delete", "/graph/{graph}", {}, 405, "Method Not Allowed"),
    # Ids that are not UUIDs: 422.
    Case("graph id not a uuid", "get", "/graph/not-a-uuid", {},
         422, field(["path", "graph_id"],
                    "Input should be a valid UUID, invalid character: found `n` at 0",
                    "uuid_parsing")),
    Case("run id not a uuid", "get", "/graph/state/12345", {},
         422, field(["path", "run_id"], "Input should be a valid UUID, invalid length: found 5",
                    "uuid_parsing")),
    Case("steps id not a uuid", "get", "/graph/state/12345/steps", {},
         422, field(["path", "run_id"], "Input should be a valid UUID, invalid length: found 5",
                    "uuid_parsing")),
    Case("graph_id not a uuid", "post", "/graph/run", {"json": {"graph_id": "x"}},
         422, field(["body", "graph_id"],
                    "Input should be a valid UUID, invalid character: found `x` at 0",
                    "uuid_parsing")),
    # Oversized bodies: 413, however they arrive.
    Case("too large", "post", "/graph/create", {"content": OVERSIZED, "headers": JSON},
         413, TOO_LARGE),
    Case("too large, chunked", "post", "/graph/create",
         {"content": "chunked", "headers": JSON}, 413, TOO_LARGE),
    Case("too large, content-length lies", "post", "/graph/create",
         {"content": OVERSIZED, "headers": {**JSON, "content-length": "10"}}, 413, TOO_LARGE),
    Case("content-length of thirty digits", "post", "/graph/create",
         {"content": SMALL, "headers": {**JSON, "content-length": "9" * 30}}, 413, TOO_LARGE),
    # A Content-Length that is not a number (uvicorn refuses it first; other servers may not).
    Case("content-length not a number", "post", "/graph/create",
         {"content": SMALL, "headers": {**JSON, "content-length": "abc"}},
         400, "the Content-Length header is not a number of bytes: 'abc'"),
    Case("negative content-length", "post", "/graph/run",
         {"content": SMALL, "headers": {**JSON, "content-length": "-5"}},
         400, "the Content-Length header is not a number of bytes: '-5'"),
    # What PostgreSQL cannot store, and what JSON does not have: 422 with the path.
    Case("nul in source", "post", "/graph/create", {"json": {"source": "a -> b\u0000"}},
         422, field(["body", "source"], f"`source` {NUL}", "unstorable")),
    Case("nul in flow text", "post", "/graph/check",
         {"content": "a -> b # \u0000", "headers": TEXT},
         422, field(["body", "source"], f"`source` {NUL}", "unstorable")),
    Case("nul in name", "post", "/graph/create", {"json": {"name": "x\u0000", "source": "a"}},
         422, field(["body", "name"], f"`name` {NUL}", "unstorable")),
    Case("nul in input", "post", "/graph/run",
         {"json": {"graph_id": "{graph}", "input": {"code": "print(1)\u0000"}}},
         422, field(["body", "input"], f"the string at `input.code` {NUL}", "unstorable")),
    Case("nul in an input key", "post", "/graph/run",
         {"json": {"graph_id": "{graph}", "input": {"a": {"b\u0000": 1}}}},
         422, field(["body", "input"], f"the key 'b\\x00' in `input.a` {NUL}", "unstorable")),
    Case("nul in ir", "post", "/graph/create",
         {"json": {"ir": {"start": "a", "nodes": [{"name": "a\u0000", "tool": "analyze"}]}}},
         422, field(["body", "ir"], f"the string at `ir.nodes[0].name` {NUL}", "unstorable")),
    Case("lone surrogate", "post", "/graph/run",
         {"content": '{"graph_id": "{graph}", "input": {"s": ["\\ud800"]}}', "headers": JSON},
         422, field(["body", "input"],
                    "the string at `input.s[0]` holds a lone surrogate `'\\ud800'`, "
                    "which is not Unicode", "unstorable")),
    Case("nan", "post", "/graph/run",
         {"content": '{"graph_id": "{graph}", "input": {"x": NaN}}', "headers": JSON},
         422, field(["body", "input"], "`input.x` is NaN; JSON numbers are finite", "unstorable")),
    Case("infinity", "post", "/graph/run",
         {"content": '{"graph_id": "{graph}", "input": {"x": [-Infinity]}}', "headers": JSON},
         422, field(["body", "input"], "`input.x[0]` is -Infinity; JSON numbers are finite",
                    "unstorable")),
    Case("number too large for a float", "post", "/graph/run",
         {"content": '{"graph_id": "{graph}", "input": {"x": 1e400}}', "headers": JSON},
         422, field(["body", "input"], "`input.x` is Infinity; JSON numbers are finite",
                    "unstorable")),
    Case("nan in ir", "post", "/graph/check",
         {"content": '{"ir": {"settings": {"max_steps": NaN}}}', "headers": JSON},
         422, field(["body", "ir"], "`ir.settings.max_steps` is NaN; JSON numbers are finite",
                    "unstorable")),
    Case("nested too deep", "post", "/graph/run",
         {"content": f'{{"graph_id": "{{graph}}", "input": {{"a": {nested(300)}}}}}',
          "headers": JSON},
         422, field(["body", "input"], "`input` is nested more than 220 levels deep",
                    "unstorable")),
    Case("nested too deep to parse", "post", "/graph/run",
         {"content": f'{{"input": {{"a": {nested(DEEP)}}}}}', "headers": JSON},
         422, "the JSON is nested more than 220 levels deep"),
    # Bodies of another type: 415.
    Case("text to run", "post", "/graph/run", {"content": "{}", "headers": TEXT},
         415, "send a JSON object with `Content-Type: application/json`"),
    Case("no content type", "post", "/graph/run", {"content": "{}"},
         415, "send a JSON object with `Content-Type: application/json`"),
    Case("form to create", "post", "/graph/create",
         {"content": "source=a", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         415, "send JSON (`Content-Type: application/json`) "
         "or the flow text (`Content-Type: text/plain`)"),
    Case("text in latin-1", "post", "/graph/create",
         {"content": "a -> b", "headers": {"content-type": "text/plain; charset=latin-1"}},
         415, "send the flow text as UTF-8"),
    # Flows and IR documents with errors: 422 with positioned diagnostics.
    Case("dsl syntax error", "post", "/graph/create", {"content": "a -> -> b", "headers": TEXT},
         422, {"message": "the flow has 1 error; the first: line 1, column 6: "
               "expected a node name after `->`, found `->`",
               "diagnostics": [{"file": "<source>", "line": 1, "column": 6, "end_line": 1,
                                "end_column": 8, "severity": "error", "code": "E010",
                                "message": "expected a node name after `->`, found `->`",
                                "help": "one `->` goes from a node to the next: remove this one"}],
               "more": 0}),
    Case("ir with errors", "post", "/graph/create",
         {"json": {"ir": {"start": "a", "nodes": []}}},
         422, {"message": "the IR document has 1 error; the first: invalid IR at `nodes`: "
               "Tuple should have at least 1 item after validation, not 0",
               "diagnostics": [{"file": "<ir>", "line": 1, "column": 1, "end_line": 1,
                                "end_column": 1, "severity": "error", "code": "E020",
                                "message": "invalid IR at `nodes`: Tuple should have at least "
                                "1 item after validation, not 0", "help": None}], "more": 0}),
]  # fmt: skip


def _request(case: Case, graph_id: str) -> dict[str, Any]:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{graph}", graph_id)
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    request = {key: fill(value) for key, value in case.request.items()}
    if request.get("content") == "chunked":  # no Content-Length: sent as chunks
        request["content"] = chunks(OVERSIZED)
    return request


async def test_every_bad_input_is_a_4xx_with_a_message(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    graph_id = await create_graph(client, ONE_LINER)
    wrong = []
    with caplog.at_level(logging.ERROR, logger="flowc.server"):
        for case in CASES:
            path = case.path.replace("{graph}", graph_id)
            response = await client.request(case.method, path, **_request(case, graph_id))
            answer = (response.status_code, response.json().get("detail"))
            if answer != (case.status, case.detail):
                wrong.append((case.name, answer))
    assert wrong == []
    assert caplog.records == []


async def test_an_unexpected_error_is_a_logged_500_without_details(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/broken", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with caplog.at_level(logging.ERROR, logger="flowc.server"):
            response = await client.get("/broken")
    assert (response.status_code, response.json()) == (
        500,
        {"detail": "internal server error; the server's log has the details"},
    )
    assert [r.getMessage() for r in caplog.records if r.name == "flowc.server"] == [
        "unexpected error answering GET /broken"
    ]


#: Seconds a raw-socket test waits for the server to close: a hang fails, it is not a pause.
SOCKET_TIMEOUT = 30


async def exchange(server: str, request: bytes, *, hang_up: bool = True) -> bytes:
    """Send raw bytes to `server` (then end our side if `hang_up`); read until it closes."""
    host, port = server.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        if hang_up:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), SOCKET_TIMEOUT)
    finally:
        writer.close()


def statuses(answer: bytes) -> list[int]:
    """The status of each answer in what the server sent back."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def post(length: str, body: bytes) -> bytes:
    head = (
        "POST /graph/create HTTP/1.1\r\nHost: flowc.test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


async def test_a_content_length_that_is_not_a_number_is_a_400_over_a_socket(
    live_server: str,
) -> None:
    assert statuses(await exchange(live_server, post("abc", SMALL))) == [400]


async def test_a_body_shorter_than_its_content_length_is_dropped_over_a_socket(
    live_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The client ends its side mid-body: nothing to answer, and nothing fails.
    with caplog.at_level(logging.ERROR):
        answer = await exchange(live_server, post(str(len(SMALL) + 100), SMALL))
    assert (answer, caplog.records) == (b"", [])


async def test_bytes_past_the_content_length_are_the_next_request_over_a_socket(
    live_server: str,
) -> None:
    # The declared length is the body; what follows is read as the next request, refused.
    # uvicorn's C parser (httptools, what `flowc serve` uses) reads the whole packet at
    # once and refuses the connection; its pure-Python one (h11) answers the request first.
    request = post(str(len(SMALL)), SMALL + b"garbage\r\n\r\n")
    answer = await exchange(live_server, request, hang_up=False)
    assert statuses(answer) in ([400], [201, 400])
    assert b"Invalid HTTP request" in answer
