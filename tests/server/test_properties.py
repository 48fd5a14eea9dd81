"""Whatever a client sends, the API answers below 500 (a law, checked with Hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import CODE_REVIEW, create_graph

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["graph_id", "input", "wait", "durability", "name", "source", "ir"]
objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), values, max_size=5)
CONTENT_TYPES = ["application/json", "text/plain", "text/plain; charset=latin-1", None]
paths = st.sampled_from(["/graph/create", "/graph/check", "/graph/run"])


def encode(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity included, and lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


@pytest.mark.asyncio
@PROPERTY
@given(
    path=paths,
    body=st.one_of(st.binary(max_size=200), objects.map(encode), values.map(encode)),
    content_type=st.sampled_from(CONTENT_TYPES),
)
async def test_no_request_body_is_a_server_error(
    client: httpx.AsyncClient, path: str, body: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert "detail" in response.json() or response.status_code in (200, 201)


@pytest.mark.asyncio
@PROPERTY
@given(data=st.data())
async def test_no_run_input_is_a_server_error(
    client: httpx.AsyncClient, data: st.DataObject
) -> None:
    graph_id = await create_graph(client, CODE_REVIEW)
    state = data.draw(st.dictionaries(st.text(), values, max_size=4), label="input")
    body = {"graph_id": graph_id, "input": state}
    response = await client.post(
        "/graph/run", content=encode(body), headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["status"] in ("succeeded", "failed")
