"""Run requests -> runs started, waited for, and read back from the store."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import to_json

from flowc.compiler.inputs import InputProblem
from flowc.runtime.waits import resume_problems
from flowc.server import store
from flowc.server.deps import CountedRunsDep, RunsDep, SessionDep, SettingsDep
from flowc.server.errors import (
    BAD_BODY,
    INVALID_BODY,
    INVALID_PARAMETER,
    RETRY_AFTER,
    Responses,
    StrictJSONRoute,
    not_found,
    not_found_response,
)
from flowc.server.models import WorkflowDefinition
from flowc.server.runlog import MAX_SEQ, FenceOutFailed
from flowc.server.runs import Draining, Durability, RunService, SubflowRun
from flowc.server.schemas import (
    InvalidRequest,
    Problem,
    ResumeRequest,
    RunAccepted,
    RunCancelling,
    RunOut,
    RunRequest,
    RunState,
    RunSteps,
    StepOut,
    WaitingOut,
    text_problem,
)

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


#: The longest `Idempotency-Key` accepted (the column's width).
MAX_KEY_LENGTH = 300
SHUTTING_DOWN: Responses = {
    503: {
        "model": Problem,
        "description": "the server is stopping (the run goes on elsewhere, `wait: true`), or "
        "the database is not available; `Retry-After` says when to try again",
    }
}

#: What `POST /graph/run` answers when the run would go past the server's limits.
OVER_LIMITS: Responses = {
    413: {
        "model": Problem,
        "description": "the body is larger than `FLOWC_MAX_BODY_BYTES`, or the input larger "
        "than `FLOWC_MAX_INPUT_BYTES` (as JSON)",
    },
    422: {
        "model": InvalidRequest | Problem,
        "description": "a field is not valid (one entry per problem: an input value past "
        "`FLOWC_MAX_STRING_LENGTH` or outside signed 64-bit integers is `type: limit`; a "
        "required state key the input leaves out is `type: missing`, a value that does not "
        "fit its key's declared type `type: wrong_type`, `loc` naming the key and the place "
        "in its value), the JSON is nested too deep, or the graph's `max_steps` is over "
        "`FLOWC_MAX_STEPS_LIMIT` (a string)",
    },
}


@router.post(
    "/run",
    response_model=RunOut,
    responses={
        **STARTED,
        **BAD_BODY,
        **not_found_response("graph"),
        409: {
            "model": Problem,
            "description": "the `Idempotency-Key` was used with another body",
        },
        **INVALID_BODY,
        **SHUTTING_DOWN,
        **OVER_LIMITS,
    },
)
async def run_graph(
    body: RunRequest,
    runs: CountedRunsDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=MAX_KEY_LENGTH,
            description="the same key and body give the same run, however often they are "
            "sent; the same key with another body is a 409",
        ),
    ] = None,
) -> RunOut | JSONResponse:
    """Run a saved graph on an input: to its end (`wait`, the default), or in the background.

    With `wait`, a run that reaches a wait node is answered then, with `status: waiting`.
    """
    # Read without holding a connection while the run goes on (and kept: it never changes).
    definition = await runs.definition(body.graph_id)
    if definition is None:
        raise not_found("graph", body.graph_id)
    refuse(runs.runs, definition, body.input)
    problems = runs.runs.input_problems(definition, body.input)
    if problems:  # before the run is recorded: nothing is created
        raise RequestValidationError([input_problem(problem) for problem in problems])
    durability = body.durability or cast(Durability, settings.default_durability)
    digest = request_hash(body, durability) if idempotency_key is not None else None
    if idempotency_key is not None:
        problem = text_problem(idempotency_key)
        if problem is None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in idempotency_key):
            problem = "holds a control character, which a header value may not"
        if problem or not idempotency_key.strip():
            raise HTTPException(400, f"the Idempotency-Key {problem or 'is empty'}")
    created = await runs.start(
        definition=definition,
        input=body.input,
        durability=durability,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    if not created.created and created.request_hash != digest:
        raise HTTPException(
            409,
            f"the Idempotency-Key {idempotency_key!r} was first sent with another body "
            f"(run {created.run_id}); use a new key for a new run",
        )
    run_id = created.run_id
    if not body.wait:
        accepted = RunAccepted(run_id=run_id, status=created.status)
        return JSONResponse(status_code=202, content=accepted.model_dump(mode="json"))
    try:
        result = await runs.result(run_id)
    except Draining:
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "5"},
            content={
                "detail": f"the server is shutting down; run {run_id} goes on in another "
                f"worker (or when this one is back): GET /graph/state/{run_id}"
            },
        )
    # Built as it is documented (`RunOut`), without validating what the engine made.
    content = {**result.to_json(), "run_id": str(run_id)}
    if result.waiting is not None:  # with since and deadline, as recorded
        recorded = await runs.runs.state(run_id)
        if recorded is not None and recorded["waiting"] is not None:
            waiting = WaitingOut.model_validate(recorded["waiting"])
            content["waiting"] = waiting.model_dump(mode="json")
    return RunJSON(content=content)


class RunJSON(JSONResponse):
    """A run's result, serialized by pydantic's serializer (Rust).

    A long run's steps and a large state take a fraction of `json`'s time; the engine's
    state is storable JSON already (checked as it entered the state).
    """

    def render(self, content: Any) -> bytes:
        """The body: compact JSON, UTF-8."""
        return to_json(content)


def refuse(runs: RunService, definition: WorkflowDefinition, input: dict[str, Any]) -> None:
    """Raise the 413 or 422 for an input past the server's limits (see `Refusal`)."""
    refusal = runs.refusal(definition, input)
    if refusal is not None:
        if refusal.loc is not None:
            invalid = {"loc": refusal.loc, "msg": refusal.message, "type": "limit"}
            raise RequestValidationError([invalid])
        raise HTTPException(413 if refusal.too_large else 422, refusal.message)


def input_problem(problem: InputProblem) -> dict[str, Any]:
    """An input that does not fit the graph's state declarations, as a 422 entry.

    `loc` is `body`, `input`, the key, then the keys and indexes to the bad value; `type`
    is `missing` (a required key) or `wrong_type`.
    """
    return {"loc": ["body", "input", *problem.parts], "msg": problem.message, "type": problem.kind}


def request_hash(body: RunRequest, durability: str) -> str:
    """What an idempotent start compares: the graph, the input and the durability."""
    canonical = json.dumps(
        {"graph_id": str(body.graph_id), "input": body.input, "durability": durability},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@router.post(
    "/cancel/{run_id}",
    status_code=202,
    responses={
        **not_found_response("run"),
        409: {
            "model": Problem,
            "description": "the run has already ended, or it is the run of a sub-flow (the "
            "sentence names its parent: cancel that one)",
        },
        503: {
            "model": Problem,
            "description": "the run's owner went silent and its connections to the database "
            "could not be ended (the sentence says why), or the database is not available; "
            "`Retry-After` says when to try again",
        },
        **INVALID_PARAMETER,
    },
)
async def cancel_run(run_id: uuid.UUID, runs: RunsDep) -> RunCancelling:
    """Stop a run wherever it runs: it ends `cancelled`.

    An async tool in flight is cancelled; a blocking tool's result is discarded when it
    returns.  The runs of its sub-flows that have not ended are cancelled with it.
    """
    try:
        answer = await runs.cancel(run_id)
    except SubflowRun as child:
        raise HTTPException(
            409,
            f"run {run_id} is the run of a sub-flow, for node `{child.node}` of run "
            f"{child.parent_run_id}: cancel run {child.parent_run_id} instead (its sub-flow "
            "runs are cancelled with it)",
        ) from None
    except FenceOutFailed as exc:  # its silent owner's connections are still there
        raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER)}) from None
    if answer is None:
        raise not_found("run", run_id)
    if answer.startswith("ended:"):
        raise HTTPException(409, f"run {run_id} has already ended: {answer.partition(':')[2]}")
    return RunCancelling(run_id=run_id, status=cast(Any, answer))


@router.post(
    "/resume/{run_id}",
    status_code=202,
    responses={
        202: {"description": "the run is queued again, to go on in any worker",
              "links": RUN_LINKS},
        **BAD_BODY,
        **not_found_response("run"),
        409: {"model": Problem, "description": "the run does not wait (the sentence says how "
              "it stands), or another resume of the same wait came first"},
        **OVER_LIMITS,
    },
)  # fmt: skip
async def resume_run(run_id: uuid.UUID, body: ResumeRequest, runs: RunsDep) -> RunAccepted:
    """Resume a run that waits at a wait node, with `input` as the wait's step.

    The run is queued again and goes on along the wait node's route, in any worker.
    Each declared state key given must hold a value of its type; none is required.
    """
    async with runs.db.session() as session:
        run = await store.get_run(session, run_id=run_id)
    if run is None:
        raise not_found("run", run_id)
    if run.status != "waiting":
        raise HTTPException(409, not_waiting(run_id, run.status))
    definition = await runs.definition(run.definition_id)
    if definition is None:  # cannot happen through the API: definitions are never deleted
        raise not_found("graph", run.definition_id)
    refuse(runs, definition, body.input)
    inputs = runs.inputs(definition)
    problems = resume_problems(inputs, body.input)
    if problems:
        raise RequestValidationError([input_problem(problem) for problem in problems])
    answer = await runs.waits.resume(run_id, inputs.normalize(body.input))
    if answer is None:
        raise not_found("run", run_id)
    if not answer.done:  # another resume (or the timeout) came first
        raise HTTPException(409, not_waiting(run_id, answer.status))
    return RunAccepted(run_id=run_id, status=answer.status)


def not_waiting(run_id: uuid.UUID, status: str) -> str:
    """The 409 of a resume for a run that does not wait."""
    return f"run {run_id} does not wait for input: it is {status}"


@router.get("/state/{run_id}", responses=READ_RUN)
async def run_state(run_id: uuid.UUID, runs: RunsDep) -> RunState:
    """A run as recorded: status, current node, step, exact state, error, owner, attempt."""
    run = await runs.state(run_id)
    if run is None:
        raise not_found("run", run_id)
    return RunState.model_validate(run)


@router.get("/state/{run_id}/steps", responses=READ_RUN)
async def run_steps(
    run_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_SEQ, description="the steps after this `seq`: the previous `next`"),
    ] = 0,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="steps in the page: at most `FLOWC_STEPS_PAGE_MAX` (1000 unless set); "
            "`FLOWC_STEPS_PAGE_DEFAULT` (1000 unless set) when not given",
        ),
    ] = None,
) -> RunSteps:
    """A page of a run's recorded steps, in order: node, state delta and timing of each.

    `next` is the `after` of the following page, null after the last step recorded.
    """
    size = page_size(limit, settings.steps_page_default, settings.steps_page_max)
    run = await store.get_run(session, run_id=run_id)
    if run is None:
        raise not_found("run", run_id)
    # One row more than the page says whether another page follows.
    steps = await store.list_steps(session, run_id=run_id, after=after, limit=size + 1)
    page = steps[:size]
    return RunSteps(
        run_id=run_id,
        steps=[StepOut.model_validate(step) for step in page],
        next=page[-1].seq if len(steps) > size else None,
    )


def page_size(limit: int | None, default: int, maximum: int) -> int:
    """The steps a page holds: `limit`, or the default; a 422 above the maximum."""
    if limit is None:
        return min(default, maximum)
    if limit > maximum:
        problem = {
            "loc": ("query", "limit"),
            "msg": f"Input should be less than or equal to {maximum} "
            "(the server's FLOWC_STEPS_PAGE_MAX)",
            "type": "less_than_equal",
        }
        raise RequestValidationError([problem])
    return limit
