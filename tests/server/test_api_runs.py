"""`/graph/run` and `/graph/state/...`: runs through the API, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowc.runtime import REGISTRY
from tests.server.conftest import CODE_REVIEW, ONE_LINER, PRINTS, ROOT, create_graph, replay

pytestmark = pytest.mark.asyncio

SAMPLES = sorted((ROOT / "examples" / "samples").glob("*.py"))


def step_log(steps: list[dict[str, Any]]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(step["seq"], step["node"], step["delta"]) for step in steps]


async def check_recorded(client: httpx.AsyncClient, graph_id: str, run: dict[str, Any]) -> None:
    """What the state and steps endpoints say matches what the run returned."""
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    last = run["steps"][-1]["node"] if run["steps"] else None
    assert state == {
        **state,
        "run_id": run["run_id"],
        "graph_id": graph_id,
        "status": run["status"],
        "current_node": last,
        "step": len(run["steps"]),
        "state": run["state"],
        "error": run["error"],
    }
    # Every durability records when the run started and ended, in order.
    moments = [state[key] for key in ("created_at", "started_at", "finished_at")]
    times = [datetime.fromisoformat(moment) for moment in moments]
    assert times == sorted(times)
    steps = (await client.get(f"/graph/state/{run['run_id']}/steps")).json()
    assert steps["run_id"] == run["run_id"]
    assert step_log(steps["steps"]) == step_log(run["steps"])


async def test_review_the_sample_with_prints(client: httpx.AsyncClient) -> None:
    await create_graph(client, ONE_LINER)
    graph_id = await create_graph(client, CODE_REVIEW)
    response = await client.post(
        "/graph/run", json={"graph_id": graph_id, "input": {"code": PRINTS}, "wait": True}
    )
    assert response.status_code == 200
    run = response.json()
    assert (run["status"], run["error"]) == ("succeeded", None)
    assert run["state"]["score"] >= 80
    assert run["state"]["attempts"] == 1
    assert "print(" not in run["state"]["code"].replace('print("bye", end="")', "")
    nodes = [step["node"] for step in run["steps"]]
    assert nodes == ["analyze", "style", "score", "refine", "analyze", "style", "score"]
    assert [step["seq"] for step in run["steps"]] == list(range(1, 8))
    assert replay({"code": PRINTS}, run["steps"]) == run["state"]
    await check_recorded(client, graph_id, run)


async def test_the_request_one_liner_ends_after_refine(client: httpx.AsyncClient) -> None:
    graph_id = await create_graph(client, ONE_LINER)
    response = await client.post(
        "/graph/run", json={"graph_id": graph_id, "input": {"code": PRINTS}}
    )
    run = response.json()
    assert (response.status_code, run["status"]) == (200, "succeeded")
    assert [step["node"] for step in run["steps"]] == ["analyze", "style", "score", "refine"]
    assert (run["state"]["score"], run["state"]["attempts"]) == (30, 1)
    await check_recorded(client, graph_id, run)


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_every_durability_records_the_same_run(
    client: httpx.AsyncClient, durability: str
) -> None:
    graph_id = await create_graph(client, CODE_REVIEW)
    body = {"graph_id": graph_id, "input": {"code": PRINTS}, "durability": durability}
    run = (await client.post("/graph/run", json=body)).json()
    assert (run["status"], run["state"]["score"]) == ("succeeded", 90)
    state = (await client.get(f"/graph/state/{run['run_id']}")).json()
    assert state["durability"] == durability
    await check_recorded(client, graph_id, run)


async def test_without_waiting_the_answer_is_202_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph_id = await create_graph(client, CODE_REVIEW)
    body = {"graph_id": graph_id, "input": {"code": PRINTS}, "wait": False}
    response = await client.post("/graph/run", json=body)
    assert response.status_code == 202
    accepted = response.json()
    assert set(accepted) == {"run_id", "status"}
    assert accepted["status"] in ("queued", "running", "succeeded")
    result = await app.state.runs.result(uuid.UUID(accepted["run_id"]))
    state = (await client.get(f"/graph/state/{accepted['run_id']}")).json()
    assert (state["status"], state["state"]) == ("succeeded", result.state)


async def test_a_failed_condition_is_a_failed_run_not_an_http_error(
    client: httpx.AsyncClient,
) -> None:
    graph_id = await create_graph(client, "analyze -> score; score ? nope > 1 -> refine : end")
    response = await client.post("/graph/run", json={"graph_id": graph_id, "input": {"code": ""}})
    run = response.json()
    assert (response.status_code, run["status"]) == (200, "failed")
    assert (run["error"]["node"], run["error"]["message"]) == (
        "score",
        "the condition on line 1: no key `nope` in the state; keys present: "
        "`code`, `score`, `score_reason`, `syntax_error`, `syntax_ok`",
    )
    assert [step["node"] for step in run["steps"]] == ["analyze", "score"]
    await check_recorded(client, graph_id, run)


@pytest.fixture
def exploding_tool() -> Iterator[None]:
    """A registered tool that raises, removed afterwards."""

    def explode(state: dict[str, Any]) -> None:
        raise RuntimeError("the tool broke")

    REGISTRY.add(explode, "explode_for_tests")
    yield
    REGISTRY.remove("explode_for_tests")


@pytest.mark.usefixtures("exploding_tool")
async def test_a_tool_failure_fails_the_run_and_the_server_goes_on(
    client: httpx.AsyncClient,
) -> None:
    graph_id = await create_graph(client, "analyze -> explode_for_tests -> end")
    response = await client.post("/graph/run", json={"graph_id": graph_id, "input": {"code": ""}})
    run = response.json()
    assert (response.status_code, run["status"]) == (200, "failed")
    assert run["error"] == {
        "code": "tool_error",
        "message": "tool `explode_for_tests` failed: RuntimeError: the tool broke",
        "node": "explode_for_tests",
        "span": {"line": 1, "column": 12, "end_line": 1, "end_column": 29},
    }
    await check_recorded(client, graph_id, run)
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok"}


async def test_thirty_concurrent_runs_each_keep_their_own_history(
    client: httpx.AsyncClient,
) -> None:
    graph_id = await create_graph(client, CODE_REVIEW)
    inputs = [
        {"code": SAMPLES[i % len(SAMPLES)].read_text(encoding="utf-8") + f"\n# run {i}\n", "i": i}
        for i in range(30)
    ]
    responses = await asyncio.gather(
        *(client.post("/graph/run", json={"graph_id": graph_id, "input": data}) for data in inputs)
    )
    runs = [response.json() for response in responses]
    assert [response.status_code for response in responses] == [200] * 30
    assert [run["status"] for run in runs] == ["succeeded"] * 30
    assert len({run["run_id"] for run in runs}) == 30
    for data, run in zip(inputs, runs, strict=True):
        assert [step["seq"] for step in run["steps"]] == list(range(1, len(run["steps"]) + 1))
        assert replay(data, run["steps"]) == run["state"]
        assert run["state"]["i"] == data["i"]
        assert run["state"]["code"].endswith(f"\n# run {data['i']}\n")
    await asyncio.gather(*(check_recorded(client, graph_id, run) for run in runs))
