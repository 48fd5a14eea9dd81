"""Run requests -> runs started, waited for, and read back from the store."""

from __future__ import annotations

import uuid
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from flowc.server import store
from flowc.server.deps import DatabaseDep, RunsDep, SessionDep, SettingsDep
from flowc.server.errors import (
    BAD_BODY,
    INVALID_BODY,
    INVALID_PARAMETER,
    Responses,
    StrictJSONRoute,
    not_found,
    not_found_response,
)
from flowc.server.runs import Durability
from flowc.server.schemas import RunAccepted, RunOut, RunRequest, RunState, RunSteps, StepOut

router = APIRouter(prefix="/graph", tags=["runs"], route_class=StrictJSONRoute)

#: What a client can do next with a run it started (OpenAPI links, for clients and tools).
RUN_LINKS: dict[str, Any] = {
    "state": {
        "operationId": "run_state",
        "parameters": {"run_id": "$response.body#/run_id"},
        "description": "where the run is",
    },
    "steps": {
        "operationId": "run_steps",
        "parameters": {"run_id": "$response.body#/run_id"},
        "description": "the run's recorded steps",
    },
}
STARTED: Responses = {
    200: {"links": RUN_LINKS},
    202: {
        "model": RunAccepted,
        "description": "`wait: false`: the run goes on in the background",
        "links": RUN_LINKS,
    },
}
#: What reading a run answers besides 200.
READ_RUN: Responses = {**not_found_response("run"), **INVALID_PARAMETER}


@router.post(
    "/run",
    response_model=RunOut,
    responses={**STARTED, **BAD_BODY, **not_found_response("graph"), **INVALID_BODY},
)
async def run_graph(
    body: RunRequest, db: DatabaseDep, runs: RunsDep, settings: SettingsDep
) -> RunOut | JSONResponse:
    """Run a saved graph on an input: to its end (`wait`, the default), or in the background."""
    # A session of its own, closed before the run: a waiting request holds no connection.
    async with db.session() as session:
        definition = await store.get_definition(session, definition_id=body.graph_id)
    if definition is None:
        raise not_found("graph", body.graph_id)
    durability = body.durability or cast(Durability, settings.default_durability)
    run_id = await runs.start(definition=definition, input=body.input, durability=durability)
    if not body.wait:
        async with db.session() as session:
            run = await store.get_run(session, run_id=run_id)
        accepted = RunAccepted(run_id=run_id, status=run.status if run else "queued")
        return JSONResponse(status_code=202, content=accepted.model_dump(mode="json"))
    result = await runs.result(run_id)
    return RunOut.model_validate({**result.to_json(), "run_id": run_id})


@router.get("/state/{run_id}", responses=READ_RUN)
async def run_state(run_id: uuid.UUID, session: SessionDep) -> RunState:
    """A run as recorded: status, current node, step, state, error and timestamps."""
    run = await store.get_run(session, run_id=run_id)
    if run is None:
        raise not_found("run", run_id)
    return RunState.model_validate(run)


@router.get("/state/{run_id}/steps", responses=READ_RUN)
async def run_steps(run_id: uuid.UUID, session: SessionDep) -> RunSteps:
    """A run's recorded steps, in order: node, state delta and timing of each."""
    run = await store.get_run(session, run_id=run_id)
    if run is None:
        raise not_found("run", run_id)
    steps = await store.list_steps(session, run_id=run_id)
    return RunSteps(run_id=run_id, steps=[StepOut.model_validate(step) for step in steps])
