"""`/graph/create`, `/graph/check`, `/graph/{id}` and its diagram, on both databases."""

from __future__ import annotations

import uuid

import httpx
import pytest

from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS
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


def _span(line: int, column: int, end_line: int, end_column: int) -> dict[str, int]:
    return {"line": line, "column": column, "end_line": end_line, "end_column": end_column}


# The one-liner's IR, written from the language reference: a node per name in order of
# first use, running the tool of its name; a `goto` per plain edge; the branch as one arm
# and an `otherwise`; the condition as a tree; spans 1-based with the end exclusive
# (`analyze` is columns 1-8, `score<80` 36-44); the hash is `sha256sum` of the text.
ONE_LINER_IR = {
    "ir_version": 1,
    "name": None,
    "start": "analyze",
    "settings": {"max_steps": 1000},
    "nodes": [
        {"name": "analyze", "tool": "analyze", "args": {}, "span": _span(1, 1, 1, 8)},
        {"name": "style", "tool": "style", "args": {}, "span": _span(1, 12, 1, 17)},
        {"name": "score", "tool": "score", "args": {}, "span": _span(1, 21, 1, 26)},
        {"name": "refine", "tool": "refine", "args": {}, "span": _span(1, 48, 1, 54)},
    ],
    "routes": {
        "analyze": {"kind": "goto", "target": "style", "span": _span(1, 1, 1, 17)},
        "style": {"kind": "goto", "target": "score", "span": _span(1, 12, 1, 26)},
        "score": {
            "kind": "branch",
            "arms": [
                {
                    "condition": {
                        "type": "binary",
                        "op": "<",
                        "left": {"type": "path", "path": ["score"], "span": _span(1, 36, 1, 41)},
                        "right": {"type": "literal", "value": 80, "span": _span(1, 42, 1, 44)},
                        "span": _span(1, 36, 1, 44),
                    },
                    "target": "refine",
                    "span": _span(1, 36, 1, 54),
                }
            ],
            "otherwise": "end",
            "span": _span(1, 34, 1, 60),
        },
    },
    "source_hash": "sha256:70504376c98a6447d447ef0345c4c2d191932f07d74d9cd0959c65743e346e95",
}

# `examples/code_review.flow` drawn: start and end as circles, a node's label its name and
# tool, an arm labelled with its condition as written (`<` as Mermaid's `#lt;`), the
# otherwise arm `else`.
CODE_REVIEW_MERMAID = """\
---
title: code_review
---
flowchart TD
    flow_start(("start"))
    node_analyze["analyze (analyze_syntax)"]
    node_style["style (check_style)"]
    node_score["score (score_code)"]
    node_refine["refine (refine_code)"]
    flow_end((("end")))
    flow_start --> node_analyze
    node_analyze --> node_style
    node_style --> node_score
    node_score -->|"score #lt; 80 and default(attempts, 0) #lt; 3"| node_refine
    node_score -->|"else"| flow_end
    node_refine --> node_analyze
"""

CODE_REVIEW_DOT = """\
digraph "code_review" {
    node [shape=box, style=rounded];
    "start" [shape=circle];
    "analyze" [label="analyze (analyze_syntax)"];
    "style" [label="style (check_style)"];
    "score" [label="score (score_code)"];
    "refine" [label="refine (refine_code)"];
    "end" [shape=doublecircle];
    "start" -> "analyze";
    "analyze" -> "style";
    "style" -> "score";
    "score" -> "refine" [label="score < 80 and default(attempts, 0) < 3"];
    "score" -> "end" [label="else"];
    "refine" -> "analyze";
}
"""

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
    assert body == {
        "graph_id": body["graph_id"],
        "name": None,
        "warnings": [ONE_LINER_WARNING],
        "more": 0,
        "ir": ONE_LINER_IR,
    }
    assert list(body["ir"]["routes"]) == ["analyze", "style", "score"]  # the order written
    stored = (await client.get(f"/graph/{body['graph_id']}")).json()
    assert stored == {
        "graph_id": body["graph_id"],
        "name": None,
        "source": ONE_LINER,
        "ir": ONE_LINER_IR,
        "source_hash": ONE_LINER_IR["source_hash"],
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
            "more": 0,
        }
    }


async def test_check_reports_errors_and_warnings_without_an_http_error(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.post("/graph/check", json={"source": BAD_FLOW})
    assert (bad.status_code, bad.json()) == (
        200,
        {"ok": False, "diagnostics": BAD_FLOW_DIAGNOSTICS, "more": 0},
    )
    text = {"content-type": "text/plain"}
    good = await client.post("/graph/check", content=ONE_LINER, headers=text)
    assert (good.status_code, good.json()) == (
        200,
        {"ok": True, "diagnostics": [ONE_LINER_WARNING], "more": 0},
    )


async def test_check_an_ir_document(client: httpx.AsyncClient) -> None:
    ir = (await client.post("/graph/create", json={"source": CODE_REVIEW})).json()["ir"]
    good = await client.post("/graph/check", json={"ir": ir})
    assert good.json() == {"ok": True, "diagnostics": [], "more": 0}
    bad = await client.post("/graph/check", json={"ir": {**ir, "start": "nowhere"}})
    assert bad.json() == {
        "ok": False,
        "diagnostics": [
            {
                "file": "<ir>",
                "line": 1,
                "column": 1,
                "end_line": 1,
                "end_column": 1,
                "severity": "error",
                "code": "E111",
                "message": "the start node `nowhere` is not a node",
                "help": None,
            }
        ],
        "more": 0,
    }


async def test_diagrams_in_both_formats(client: httpx.AsyncClient) -> None:
    created = (await client.post("/graph/create", json={"source": CODE_REVIEW})).json()
    path = f"/graph/{created['graph_id']}/diagram"
    mermaid = (await client.get(path)).json()
    assert mermaid == {"format": "mermaid", "diagram": CODE_REVIEW_MERMAID}
    dot = (await client.get(path, params={"format": "dot"})).json()
    assert dot == {"format": "dot", "diagram": CODE_REVIEW_DOT}


async def test_the_diagram_of_an_ir_document_is_the_diagram_of_its_text(
    client: httpx.AsyncClient,
) -> None:
    ir = (await client.post("/graph/create", json={"source": CODE_REVIEW})).json()["ir"]
    created = (await client.post("/graph/create", json={"ir": ir})).json()
    path = f"/graph/{created['graph_id']}/diagram"
    # The stored IR comes back from JSONB with its keys reordered; the drawing does not change.
    assert (await client.get(path)).json()["diagram"] == CODE_REVIEW_MERMAID
    dot = (await client.get(path, params={"format": "dot"})).json()["diagram"]
    assert dot == CODE_REVIEW_DOT


async def test_unknown_graphs_are_404(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    for path in (f"/graph/{missing}", f"/graph/{missing}/diagram"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"graph {missing} not found"},
        )


async def test_at_most_a_hundred_diagnostics_come_back_and_more_counts_the_rest(
    client: httpx.AsyncClient,
) -> None:
    unknown = "".join(f"n{i} ->\n" for i in range(150)) + "end\n"  # 150 unknown tools
    checked = (await client.post("/graph/check", json={"source": unknown})).json()
    assert (len(checked["diagnostics"]), checked["more"]) == (MAX_SHOWN_DIAGNOSTICS, 50)
    assert checked["diagnostics"][-1]["message"].startswith("unknown tool `n99` (")
    refused = await client.post("/graph/create", json={"source": unknown})
    detail = refused.json()["detail"]
    assert (refused.status_code, len(detail["diagnostics"]), detail["more"]) == (422, 100, 50)
    assert detail["message"].startswith("the flow has 150 errors; the first: line 1, column 1:")
    unused = "".join(f"node unused_{i} = analyze\n" for i in range(150)) + "analyze -> end\n"
    created = await client.post("/graph/create", json={"source": unused})
    body = created.json()
    assert (created.status_code, len(body["warnings"]), body["more"]) == (201, 100, 50)
