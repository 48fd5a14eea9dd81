"""Graph requests -> compiled, checked and saved graphs, and their diagrams."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from flowc.compiler import Checked, Compiled, check_ir, check_source, compile_ir, compile_source
from flowc.compiler.diagram import to_dot, to_mermaid
from flowc.compiler.render import diagnostic_json
from flowc.compiler.subflows import StoredFlows
from flowc.compiler.tools import ToolSpec
from flowc.dsl.diagnostics import Diagnostic, FlowError
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS
from flowc.server import store
from flowc.server.deps import GraphInputDep, RegistryDep, RunsDep, SessionDep
from flowc.server.errors import (
    BAD_BODY,
    INVALID_BODY,
    INVALID_GRAPH,
    INVALID_PARAMETER,
    StrictJSONRoute,
    not_found,
    not_found_response,
)
from flowc.server.flows import stored_flows
from flowc.server.schemas import (
    CheckReport,
    DiagnosticOut,
    DiagramOut,
    FlowProblems,
    GraphCreated,
    GraphInput,
    GraphOut,
)

router = APIRouter(prefix="/graph", tags=["graphs"], route_class=StrictJSONRoute)

#: The file name diagnostics carry for each form of graph.
SOURCE_NAME = "<source>"
IR_NAME = "<ir>"

#: The design's one-liner: it runs with the built-in code-review tools, as every example must.
EXAMPLE_FLOW = "analyze -> style -> score; score ? score<80 -> refine : end"
#: The same review as a file would say it: named nodes, a static argument, a bounded loop.
EXAMPLE_FILE = """\
flow code_review
set max_steps = 60
node refine = refine_code(max_fixes = 10)
analyze -> style -> score
score ? score < 80 and default(attempts, 0) < 3 -> refine : end
refine -> analyze
"""

#: The request body of `/graph/create` and `/graph/check`: JSON, or the flow text itself.
GRAPH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": GraphInput.model_json_schema(),
                "examples": {
                    "one-liner": {
                        "summary": "the code-review loop on one line",
                        "value": {"name": "code review", "source": EXAMPLE_FLOW},
                    },
                    "file": {
                        "summary": "the code-review loop as a file would say it",
                        "value": {"source": EXAMPLE_FILE},
                    },
                },
            },
            "text/plain": {"schema": {"type": "string"}, "example": EXAMPLE_FLOW},
        },
    }
}

#: What a client can do next with a graph it saved (OpenAPI links, for clients and tools).
GRAPH_ID = "$response.body#/graph_id"
SAVED_GRAPH_LINKS: dict[str, Any] = {
    "run": {
        "operationId": "run_graph",
        "requestBody": {"graph_id": GRAPH_ID},
        "description": "run the saved graph (`graph_id` in the body)",
    },
    "read": {
        "operationId": "get_graph",
        "parameters": {"graph_id": GRAPH_ID},
        "description": "read the saved graph back",
    },
    "diagram": {
        "operationId": "diagram",
        "parameters": {"graph_id": GRAPH_ID},
        "description": "draw the saved graph",
    },
    "schema": {
        "operationId": "graph_schema",
        "parameters": {"graph_id": GRAPH_ID},
        "description": "the JSON Schema of the saved graph's input",
    },
}

#: What `GET /graph/{graph_id}/schema` answers: a JSON Schema document (draft 2020-12).
INPUT_SCHEMA: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the JSON Schema (draft 2020-12) of the graph's input: a property per "
        "declared state key, `required` the keys without a default, other keys allowed",
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}}
        },
    }
}

DiagramFormat = Literal["mermaid", "dot"]


def _check(graph: GraphInput, tools: dict[str, ToolSpec], flows: StoredFlows) -> Checked:
    if graph.source is not None:
        return check_source(graph.source, tools=tools, flows=flows)
    return check_ir(graph.ir or {}, tools=tools, flows=flows)


def _compile(graph: GraphInput, tools: dict[str, ToolSpec], flows: StoredFlows) -> Compiled:
    if graph.source is not None:
        return compile_source(graph.source, tools=tools, flows=flows)
    return compile_ir(graph.ir or {}, tools=tools, flows=flows)


def _filename(graph: GraphInput) -> str:
    return SOURCE_NAME if graph.source is not None else IR_NAME


def _json(diagnostics: tuple[Diagnostic, ...], filename: str) -> list[DiagnosticOut]:
    shown = diagnostics[:MAX_SHOWN_DIAGNOSTICS]
    return [DiagnosticOut.model_validate(diagnostic_json(d, filename)) for d in shown]


def _more(diagnostics: tuple[Diagnostic, ...]) -> int:
    return max(0, len(diagnostics) - MAX_SHOWN_DIAGNOSTICS)


def flow_errors(problem: FlowError, filename: str) -> HTTPException:
    """The 422 for a graph with errors: a summary and every diagnostic, positioned."""
    what = "IR document" if filename == IR_NAME else "flow"
    errors = problem.errors
    message = f"the {what} is not valid"
    if errors:
        first = errors[0]
        where = (
            "" if filename == IR_NAME else f"line {first.span.line}, column {first.span.column}: "
        )
        count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
        message = f"the {what} has {count}; the first: {where}{first.message}"
    problems = FlowProblems(
        message=message,
        diagnostics=_json(problem.diagnostics, filename),
        more=_more(problem.diagnostics),
    )
    return HTTPException(status_code=422, detail=problems.model_dump())


@router.post(
    "/create",
    status_code=201,
    openapi_extra=GRAPH_BODY,
    responses={201: {"links": SAVED_GRAPH_LINKS}, **BAD_BODY, **INVALID_GRAPH},
)
async def create_graph(
    graph: GraphInputDep, session: SessionDep, registry: RegistryDep
) -> GraphCreated:
    """Compile a graph (flow text or IR) against the registered tools and save it.

    Its sub-flows (`flow NAME`) are the latest graphs saved under those names, or the
    pinned ones (`flow NAME(graph_id = "...")`); their IR is saved inside this one's.
    """
    flows = await stored_flows(session, graph)
    try:
        # Off the event loop: a big flow takes a while to compile.
        compiled = await run_in_threadpool(_compile, graph, registry.specs(), flows)
    except FlowError as problem:
        raise flow_errors(problem, _filename(graph)) from None
    definition = await store.create_definition(
        session, name=graph.name, source=graph.source, ir=compiled.ir
    )
    return GraphCreated(
        graph_id=definition.id,
        name=definition.name,
        warnings=_json(compiled.warnings, _filename(graph)),
        more=_more(compiled.warnings),
        ir=definition.ir,
    )


@router.post("/check", openapi_extra=GRAPH_BODY, responses={**BAD_BODY, **INVALID_BODY})
async def check(graph: GraphInputDep, session: SessionDep, registry: RegistryDep) -> CheckReport:
    """Report every problem in a graph; errors are `ok: false`, not an HTTP error."""
    flows = await stored_flows(session, graph)
    checked = await run_in_threadpool(_check, graph, registry.specs(), flows)
    return CheckReport(
        ok=not checked.errors and checked.program is not None,
        diagnostics=_json(checked.diagnostics, _filename(graph)),
        more=_more(checked.diagnostics),
    )


@router.get("/{graph_id}", responses={**not_found_response("graph"), **INVALID_PARAMETER})
async def get_graph(graph_id: uuid.UUID, session: SessionDep) -> GraphOut:
    """A saved graph: its name, source text (if it came as text), IR and hash."""
    definition = await store.get_definition(session, definition_id=graph_id)
    if definition is None:
        raise not_found("graph", graph_id)
    return GraphOut.model_validate(definition)


@router.get("/{graph_id}/diagram", responses={**not_found_response("graph"), **INVALID_PARAMETER})
async def diagram(
    graph_id: uuid.UUID,
    session: SessionDep,
    diagram_format: Annotated[DiagramFormat, Query(alias="format")] = "mermaid",
) -> DiagramOut:
    """A saved graph's diagram source: Mermaid (default) or Graphviz DOT."""
    definition = await store.get_definition(session, definition_id=graph_id)
    if definition is None:
        raise not_found("graph", graph_id)
    # The stored IR, whatever the database did to its key order: the IR puts routes back
    # in node order when it is read, so edges come out as they were written.
    checked = check_ir(definition.ir)
    if checked.program is None:
        raise RuntimeError(f"graph {graph_id} no longer compiles")
    program = checked.program
    draw = to_mermaid if diagram_format == "mermaid" else to_dot
    return DiagramOut(format=diagram_format, diagram=draw(program))


@router.get(
    "/{graph_id}/schema",
    responses={**INPUT_SCHEMA, **not_found_response("graph"), **INVALID_PARAMETER},
)
async def graph_schema(graph_id: uuid.UUID, runs: RunsDep) -> dict[str, Any]:
    """The JSON Schema of a saved graph's input, from its `state` declarations.

    A graph without declarations takes any JSON object.  `POST /graph/run` refuses an
    input that does not fit (422).
    """
    definition = await runs.definition(graph_id)
    if definition is None:
        raise not_found("graph", graph_id)
    return runs.inputs(definition).schema()
