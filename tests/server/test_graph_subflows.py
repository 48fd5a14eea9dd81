"""`/graph/create` and `/graph/check` find a graph's sub-flows among the saved graphs."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

pytestmark = pytest.mark.asyncio

CHILD = """\
flow review
state code: str
analyze_syntax -> score_code -> end
"""


async def created(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/graph/create", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def refused(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/graph/create", json=body)
    assert response.status_code == 422, response.text
    diagnostics: list[dict[str, Any]] = response.json()["detail"]["diagnostics"]
    return diagnostics


async def test_a_sub_flow_is_the_latest_graph_saved_under_its_name(
    client: httpx.AsyncClient,
) -> None:
    await created(client, {"source": CHILD.replace("score_code -> ", "")})
    latest = await created(client, {"source": CHILD})
    parent = await created(
        client, {"source": "flow gate\nstate code: str\nnode check = flow review\ncheck -> end\n"}
    )
    (node,) = parent["ir"]["nodes"]
    assert parent["ir"]["ir_version"] == 2
    assert node["tool"] == "flow"
    assert node["flow"]["name"] == "review"
    assert node["flow"]["graph_id"] == latest["graph_id"]
    assert node["flow"]["ir"] == latest["ir"]
    # What is saved later under the name does not change the saved parent.
    await created(client, {"source": CHILD.replace("analyze_syntax -> ", "")})
    again = (await client.get(f"/graph/{parent['graph_id']}")).json()
    assert again["ir"]["nodes"][0]["flow"]["graph_id"] == latest["graph_id"]


async def test_a_pinned_graph_id_picks_that_graph(client: httpx.AsyncClient) -> None:
    first = await created(client, {"source": CHILD})
    await created(client, {"source": CHILD.replace("score_code -> ", "")})
    pin = first["graph_id"]
    parent = await created(
        client,
        {"source": f'state code: str\nnode check = flow review(graph_id = "{pin}")\ncheck -> end'},
    )
    assert parent["ir"]["nodes"][0]["flow"]["graph_id"] == pin
    assert parent["ir"]["nodes"][0]["flow"]["ir"] == first["ir"]
    missing = str(uuid.uuid4())
    (problem,) = await refused(
        client, {"source": f'node check = flow review(graph_id = "{missing}")\ncheck -> end'}
    )
    assert problem["code"] == "E150"
    assert missing in problem["message"]
    assert problem["help"] == "pin the id of a saved graph, or leave it out for the latest `review`"
    (nothing,) = await refused(client, {"source": "node check = flow unheard_of\ncheck -> end"})
    assert nothing["help"] == "save the flow `unheard_of` first (`POST /graph/create`)"


async def test_an_unknown_name_is_e150_with_the_nearest_saved_name(
    client: httpx.AsyncClient,
) -> None:
    await created(client, {"source": CHILD})
    (problem,) = await refused(client, {"source": "node check = flow reveiw\ncheck -> end"})
    assert problem["code"] == "E150"
    assert problem["message"] == (
        "sub-flow `reveiw` cannot be found: no stored graph is named `reveiw`"
    )
    assert problem["help"] == "did you mean `review`?"
    assert (problem["line"], problem["column"]) == (1, 19)


async def test_a_cycle_through_saved_graphs_is_e151(client: httpx.AsyncClient) -> None:
    await created(client, {"source": "flow a\nanalyze_syntax -> end\n"})
    await created(client, {"source": "flow b\nnode x = flow a\nx -> end\n"})
    (problem,) = await refused(client, {"source": "flow a\nnode y = flow b\ny -> end\n"})
    assert problem["code"] == "E151"
    assert "`a` -> `b` -> `a`" in problem["message"]
    # The request's `name` is the flow's name, when it gives one.
    (named,) = await refused(client, {"name": "b", "source": "node z = flow b\nz -> end\n"})
    assert named["code"] == "E151"


async def test_check_reports_the_same_without_saving(client: httpx.AsyncClient) -> None:
    await created(client, {"source": CHILD})
    good = await client.post(
        "/graph/check", json={"source": "state code: str\nnode c = flow review\nc -> end\n"}
    )
    assert good.status_code == 200
    assert good.json()["ok"] is True
    bad = await client.post(
        "/graph/check", json={"source": "state code: int\nnode c = flow review\nc -> end\n"}
    )
    assert bad.json()["ok"] is False
    assert [d["code"] for d in bad.json()["diagnostics"]] == ["E156"]


async def test_an_ir_document_s_sub_flows_are_looked_up_again(client: httpx.AsyncClient) -> None:
    saved = await created(client, {"source": CHILD})
    stale = {"ir_version": 1, "start": "x", "nodes": [{"name": "x", "tool": "check_style"}]}
    document = {
        "ir_version": 2,
        "start": "c",
        "state": [{"name": "code", "type": "str"}],
        "nodes": [{"name": "c", "tool": "flow", "flow": {"name": "review", "ir": stale}}],
    }
    parent = await created(client, {"ir": document})
    flow = parent["ir"]["nodes"][0]["flow"]
    assert flow["graph_id"] == saved["graph_id"]
    assert flow["ir"] == saved["ir"]


async def test_past_the_lookup_limit_a_sub_flow_says_so(client: httpx.AsyncClient) -> None:
    from flowc.server.flows import MAX_LOOKUPS

    await created(client, {"source": CHILD})
    count = MAX_LOOKUPS + 1
    nodes = "".join(f"node r{i} = flow flow{i}\n" for i in range(count - 1))
    chain = " -> ".join(f"r{i}" for i in range(count))
    source = f"state code: str\n{nodes}node r{count - 1} = flow review\n{chain} -> end\n"
    response = await client.post("/graph/create", json={"source": source})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["message"] == (
        f"the flow has {count} errors; the first: line 2, column 16: sub-flow `flow0` cannot "
        "be found: no stored graph is named `flow0`"
    )
    # The 101st is past the diagnostics shown: the check endpoint's count says it is there.
    assert detail["more"] == 1


async def test_a_saved_graph_this_flowc_cannot_read_is_named_as_such(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # A graph saved by a newer flowc (an IR version this one does not know), by name and
    # pinned: not "not found", but why it cannot be used.
    from flowc.server.models import WorkflowDefinition

    future = WorkflowDefinition(
        name="future", source=None, ir={"ir_version": 99, "start": "x", "nodes": []}
    )
    async with app.state.runs.db.session() as session:
        session.add(future)
        await session.commit()
        graph_id = str(future.id)
    for call in ("flow future", f'flow future(graph_id = "{graph_id}")'):
        (problem,) = await refused(client, {"source": f"node check = {call}\ncheck -> end\n"})
        assert problem["code"] == "E150"
        assert problem["message"] == (
            f"sub-flow `future` cannot be found: the stored graph {graph_id} cannot be read "
            "by this flowc (ir_version: Input should be 1 or 2); it may have been saved by a "
            "newer version"
        )
