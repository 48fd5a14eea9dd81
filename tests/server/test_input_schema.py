"""State declarations over HTTP: `GET /graph/{id}/schema`, 422 for input that does not fit,
and defaults in the run's state, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from flowc.runtime import REGISTRY
from flowc.server.app import create_app
from flowc.server.models import WorkflowRun
from tests.conftest import TYPED_SCHEMA, TYPED_STATE
from tests.server.conftest import BASE_URL, ONE_LINER, create_graph, make_settings, service_on

pytestmark = pytest.mark.asyncio

TYPED = TYPED_STATE + "analyze -> end\n"


async def runs_of(app: FastAPI, graph_id: str) -> int:
    async with app.state.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WorkflowRun)
            .where(WorkflowRun.definition_id == uuid.UUID(graph_id))  # type: ignore[arg-type]
        )
    return int(count or 0)


async def test_the_schema_of_a_saved_graph(client: httpx.AsyncClient) -> None:
    graph_id = await create_graph(client, TYPED)
    response = await client.get(f"/graph/{graph_id}/schema")
    assert response.status_code == 200
    assert response.json() == TYPED_SCHEMA


async def test_a_graph_without_declarations_takes_any_object(client: httpx.AsyncClient) -> None:
    graph_id = await create_graph(client, ONE_LINER)
    response = await client.get(f"/graph/{graph_id}/schema")
    assert response.status_code == 200
    assert response.json() == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": True,
    }


async def test_the_schema_of_an_unknown_graph_is_a_404(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    response = await client.get(f"/graph/{missing}/schema")
    assert response.status_code == 404
    assert response.json() == {"detail": f"graph {missing} not found"}
    response = await client.get("/graph/not-a-uuid/schema")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "graph_id"]


async def test_the_schema_is_worked_out_once_per_graph(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph_id = await create_graph(client, TYPED)
    first = (await client.get(f"/graph/{graph_id}/schema")).json()
    definition = await app.state.runs.definition(uuid.UUID(graph_id))
    inputs = app.state.runs.inputs(definition)
    assert inputs is app.state.runs.inputs(definition)  # kept with the compiled engine
    first["properties"]["code"]["type"] = "changed by a client"
    assert (await client.get(f"/graph/{graph_id}/schema")).json() == TYPED_SCHEMA


async def test_input_that_does_not_fit_is_a_422_per_key_and_no_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph_id = await create_graph(client, TYPED)
    response = await client.post(
        "/graph/run",
        json={
            "graph_id": graph_id,
            "input": {"attempts": "3", "issues": [{"line": 1}, {"line": "two"}], "extra": 1},
        },
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "input", "code"],
                "msg": "a required input (`code: str`) is missing",
                "type": "missing",
            },
            {
                "loc": ["body", "input", "attempts"],
                "msg": "expected int, got a string",
                "type": "wrong_type",
            },
            {
                "loc": ["body", "input", "issues", 1, "line"],
                "msg": "expected int, got a string",
                "type": "wrong_type",
            },
        ]
    }
    assert await runs_of(app, graph_id) == 0


async def test_a_null_for_a_key_that_is_not_nullable_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph_id = await create_graph(client, TYPED)
    body = {"graph_id": graph_id, "input": {"code": None}, "wait": False}
    response = await client.post("/graph/run", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "input", "code"], "msg": "expected str, got null", "type": "wrong_type"}
    ]
    assert await runs_of(app, graph_id) == 0


async def test_defaults_fill_the_keys_the_input_leaves_out(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph_id = await create_graph(client, TYPED)
    body: dict[str, Any] = {"graph_id": graph_id, "input": {"code": "x = 1\n", "attempts": 2}}
    response = await client.post("/graph/run", json=body)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "succeeded"
    state = run["state"]
    assert (state["code"], state["attempts"], state["issues"], state["reviewer"]) == (
        "x = 1\n", 2, [], None,
    )  # fmt: skip
    recorded = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert recorded["state"]["issues"] == [] and recorded["state"]["reviewer"] is None
    async with app.state.db.session() as session:
        row = await session.get(WorkflowRun, uuid.UUID(run["run_id"]))
        assert row is not None
        assert row.input == {"code": "x = 1\n", "attempts": 2}  # what the client sent


async def test_a_whole_float_for_an_int_is_taken_as_the_schema_says(
    client: httpx.AsyncClient,
) -> None:
    graph_id = await create_graph(client, TYPED)
    body: dict[str, Any] = {"graph_id": graph_id, "input": {"code": "x = 1\n", "attempts": 2.0}}
    response = await client.post("/graph/run", json=body)
    assert response.status_code == 200, response.text
    attempts = response.json()["state"]["attempts"]
    assert attempts == 2 and isinstance(attempts, int)
    body["input"]["attempts"] = 2.5
    refused = await client.post("/graph/run", json=body)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "input", "attempts"]


async def test_a_queued_run_records_its_defaults_and_a_worker_runs_on_them(db_url: str) -> None:
    queue_only = create_app(make_settings(db_url, worker=False))
    async with queue_only.router.lifespan_context(queue_only):
        transport = httpx.ASGITransport(app=queue_only)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            graph_id = await create_graph(client, TYPED)
            body = {"graph_id": graph_id, "input": {"code": "y = 2\n"}, "wait": False}
            response = await client.post("/graph/run", json=body)
            assert response.status_code == 202, response.text
            run_id = uuid.UUID(response.json()["run_id"])
            async with queue_only.state.db.session() as session:
                row = await session.get(WorkflowRun, run_id)
                assert row is not None
                assert (row.status, row.input) == ("queued", {"code": "y = 2\n"})
                assert row.state == {
                    "code": "y = 2\n", "attempts": 0, "issues": [], "reviewer": None
                }  # fmt: skip
    async with service_on(db_url, REGISTRY) as worker:
        result = await worker.result(run_id)
    assert result.status == "succeeded", result.error
    assert result.state["attempts"] == 0 and result.state["issues"] == []
