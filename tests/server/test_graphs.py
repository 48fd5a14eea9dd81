"""`/graph/create`, `/graph/check`, `/graph/{id}` and its diagram, on both databases."""

from __future__ import annotations

import uuid

import httpx
import pytest

from flowc.compiler import check_ir, check_source, compile_source
from flowc.compiler.diagram import to_dot, to_mermaid
from flowc.compiler.render import diagnostic_json
from flowc.runtime import REGISTRY
from tests.server.conftest import CODE_REVIEW, ONE_LINER

pytestmark = pytest.mark.asyncio

ONE_LINER_WARNING = {
    "file": "<source>",
    "line": 1,
    "column": 48,
    "end_line": 1,
    "end_column": 54,
    "severity": "warning",
    "code": "W502",
    "message": "node `refine` has no outgoing edge, so the run ends there",
    "help": "write `refine -> end` to say so",
}

BAD_FLOW = "node a = analyse_syntax\na -> b\n"
BAD_FLOW_DIAGNOSTICS = [
    {
        "file": "<source>",
        "line": 1,
        "column": 10,
        "end_line": 1,
        "end_column": 24,
        "severity": "error",
        "code": "E201",
        "message": "unknown tool `analyse_syntax`",
        "help": "did you mean `analyze_syntax`?",
    },
    {
        "file": "<source>",
        "line": 2,
        "column": 6,
        "end_line": 2,
        "end_column": 7,
        "severity": "error",
        "code": "E201",
        "message": "unknown tool `b` "
        "(a node without a `node` declaration runs the tool of its name)",
        "help": "declare it: `node b = TOOL`",
    },
    {
        "file": "<source>",
        "line": 2,
        "column": 6,
        "end_line": 2,
        "end_column": 7,
        "severity": "warning",
        "code": "W502",
        "message": "node `b` has no outgoing edge, so the run ends there",
        "help": "write `b -> end` to say so",
    },
]


async def test_create_the_request_one_liner(client: httpx.AsyncClient) -> None:
    response = await client.post("/graph/create", json={"source": ONE_LINER})
    assert response.status_code == 201
    body = response.json()
    expected_ir = compile_source(ONE_LINER, tools=REGISTRY.specs()).ir.model_dump(mode="json")
    assert body == {
        "graph_id": body["graph_id"],
        "name": None,
        "warnings": [ONE_LINER_WARNING],
        "ir": expected_ir,
    }
    stored = (await client.get(f"/graph/{body['graph_id']}")).json()
    assert stored == {
        "graph_id": body["graph_id"],
        "name": None,
        "source": ONE_LINER,
        "ir": expected_ir,
        "source_hash": expected_ir["source_hash"],
        "created_at": stored["created_at"],
    }
    assert stored["created_at"].endswith("Z")


async def test_create_from_text_takes_the_name_from_the_query_or_the_header(
    client: httpx.AsyncClient,
) -> None:
    text = {"content-type": "text/plain; charset=utf-8"}
    named = await client.post("/graph/create?name=review", content=ONE_LINER, headers=text)
    assert (named.status_code, named.json()["name"]) == (201, "review")
    example = await client.post("/graph/create", content=CODE_REVIEW.encode(), headers=text)
    assert (example.status_code, example.json()["name"], example.json()["warnings"]) == (
        201,
        "code_review",
        [],
    )
    stored = (await client.get(f"/graph/{example.json()['graph_id']}")).json()
    assert stored["source"] == CODE_REVIEW


async def test_create_from_ir_checks_it_and_keeps_it(client: httpx.AsyncClient) -> None:
    first = (await client.post("/graph/create", json={"source": CODE_REVIEW})).json()
    again = await client.post("/graph/create", json={"name": "copy", "ir": first["ir"]})
    assert again.status_code == 201
    assert (again.json()["name"], again.json()["ir"]) == ("copy", first["ir"])
    assert again.json()["graph_id"] != first["graph_id"]
    stored = (await client.get(f"/graph/{again.json()['graph_id']}")).json()
    assert (stored["source"], stored["ir"]) == (None, first["ir"])


async def test_a_flow_with_errors_is_a_422_with_every_diagnostic(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/graph/create", json={"source": BAD_FLOW})
    assert response.status_code == 422
    assert response.json() == {
        "detail": {
            "message": "the flow has 2 errors; the first: line 1, column 10: "
            "unknown tool `analyse_syntax`",
            "diagnostics": BAD_FLOW_DIAGNOSTICS,
        }
    }


async def test_check_reports_errors_and_warnings_without_an_http_error(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.post("/graph/check", json={"source": BAD_FLOW})
    assert (bad.status_code, bad.json()) == (
        200,
        {"ok": False, "diagnostics": BAD_FLOW_DIAGNOSTICS},
    )
    text = {"content-type": "text/plain"}
    good = await client.post("/graph/check", content=ONE_LINER, headers=text)
    assert (good.status_code, good.json()) == (
        200,
        {"ok": True, "diagnostics": [ONE_LINER_WARNING]},
    )


async def test_check_an_ir_document(client: httpx.AsyncClient) -> None:
    ir = compile_source(CODE_REVIEW, tools=REGISTRY.specs()).ir.model_dump(mode="json")
    good = await client.post("/graph/check", json={"ir": ir})
    assert good.json() == {"ok": True, "diagnostics": []}
    broken = {**ir, "start": "nowhere"}
    bad = await client.post("/graph/check", json={"ir": broken})
    expected = check_ir(broken, tools=REGISTRY.specs()).diagnostics
    assert bad.json() == {
        "ok": False,
        "diagnostics": [diagnostic_json(d, "<ir>") for d in expected],
    }
    assert bad.json()["diagnostics"][0]["message"] == "the start node `nowhere` is not a node"


async def test_diagrams_in_both_formats(client: httpx.AsyncClient) -> None:
    created = (await client.post("/graph/create", json={"source": CODE_REVIEW})).json()
    program = check_source(CODE_REVIEW).program  # what `flowc graph` draws
    assert program is not None
    path = f"/graph/{created['graph_id']}/diagram"
    mermaid = (await client.get(path)).json()
    assert mermaid == {"format": "mermaid", "diagram": to_mermaid(program)}
    assert mermaid["diagram"].startswith("---\ntitle: code_review\n---\nflowchart TD\n")
    dot = (await client.get(path, params={"format": "dot"})).json()
    assert dot == {"format": "dot", "diagram": to_dot(program)}
    assert dot["diagram"].startswith('digraph "code_review" {')


async def test_the_diagram_of_an_ir_document_has_the_same_nodes_and_edges(
    client: httpx.AsyncClient,
) -> None:
    ir = compile_source(CODE_REVIEW, tools=REGISTRY.specs()).ir.model_dump(mode="json")
    created = (await client.post("/graph/create", json={"ir": ir})).json()
    drawn = (await client.get(f"/graph/{created['graph_id']}/diagram")).json()["diagram"]
    program = check_source(CODE_REVIEW).program
    assert program is not None
    # The same lines; their order may differ, as routes read back from JSONB are sorted.
    assert sorted(drawn.splitlines()) == sorted(to_mermaid(program).splitlines())


async def test_unknown_graphs_are_404(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    for path in (f"/graph/{missing}", f"/graph/{missing}/diagram"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"graph {missing} not found"},
        )
