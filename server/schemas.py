"""HTTP bodies -> validated requests, and results -> the JSON the API answers with.

Request values must be storable as they are: PostgreSQL's JSONB cannot hold NUL (U+0000)
nor lone surrogates, and JSON has no NaN or Infinity, so those are refused here, with
the path to the value, rather than failing later inside the database.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    computed_field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS
from flowc.server.models import utc
from flowc.server.runs import Durability

#: Deepest nesting accepted in a request's JSON values.  The IR of the most deeply nested
#: flow the language accepts is about 210 levels; responses serialize up to about 250.
MAX_JSON_DEPTH = 220

#: Longest graph name (the column's width).
MAX_NAME_LENGTH = 200


def unstorable(value: Any, where: str = "the value") -> str | None:
    """Why a JSON value cannot be stored, naming the path to the problem; None if it can."""
    pending: list[tuple[Any, str, int]] = [(value, where, 0)]
    while pending:
        item, path, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return f"`{where}` is nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"the string at `{path}` {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            number = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
            return f"`{path}` is {number}; JSON numbers are finite"
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key)
                if problem:
                    return f"the key {key!r} in `{path}` {problem}"
                pending.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored (`holds ...`: a NUL character, a lone surrogate), or None."""
    if "\x00" in text:
        return "holds `\\u0000`, which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate `{text[exc.start]!r}`, which is not Unicode"
    return None


def _storable_json(value: Any, info: ValidationInfo) -> Any:
    problem = unstorable(value, info.field_name or "the value")
    if problem:
        raise PydanticCustomError("unstorable", problem)
    return value


def _storable_text(value: str, info: ValidationInfo) -> str:
    problem = text_problem(value)
    if problem:
        raise PydanticCustomError("unstorable", f"`{info.field_name}` {problem}")
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
Text = Annotated[str, AfterValidator(_storable_text)]
#: SQLite hands timestamps back without their zone: they are UTC.
UTCDateTime = Annotated[datetime, AfterValidator(lambda moment: utc(moment) or moment)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH), AfterValidator(_storable_text)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphInput(_Request):
    """A graph to check or save: flow text (`source`) or an IR document (`ir`), not both."""

    # `_one_form` as JSON Schema, so that the published schema accepts what the model does.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["source"],
                    "properties": {"source": {"type": "string"}, "ir": {"type": "null"}},
                },
                {
                    "required": ["ir"],
                    "properties": {"ir": {"type": "object"}, "source": {"type": "null"}},
                },
            ]
        }
    )

    name: Name | None = None
    source: Text | None = None
    ir: JSONObject | None = None

    @model_validator(mode="after")
    def _one_form(self) -> GraphInput:
        if (self.source is None) == (self.ir is None):
            raise PydanticCustomError(
                "one_form", "send exactly one of `source` (flow text) and `ir` (an IR document)"
            )
        return self


class RunRequest(_Request):
    """Run a saved graph on an input; `wait: false` answers at once (202)."""

    graph_id: uuid.UUID
    input: JSONObject = Field(default_factory=dict)
    wait: StrictBool = True
    durability: Durability | None = Field(
        default=None, description="how steps reach the database; the server's default if unset"
    )


class ResumeRequest(_Request):
    """Resume a run that waits at a wait node: `input` is the wait's step (its delta)."""

    input: JSONObject = Field(
        default_factory=dict,
        description="the keys to write into the run's state; each declared key given must "
        "hold a value of its declared type (none is required)",
    )


class DiagnosticOut(BaseModel):
    """One problem in a flow, with its position (1-based, end exclusive)."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Literal["error", "warning"]
    code: str
    message: str
    help: str | None = None


#: What `more` says in each response that lists diagnostics.
MORE = (
    f"how many diagnostics were left out of the list: it holds the first "
    f"{MAX_SHOWN_DIAGNOSTICS}, in order of position"
)


class GraphCreated(BaseModel):
    """A saved graph: its id, name, warnings (at most `MAX_SHOWN_DIAGNOSTICS`) and IR."""

    graph_id: uuid.UUID
    name: str | None
    warnings: list[DiagnosticOut]
    more: int = Field(default=0, ge=0, description=MORE.replace("diagnostics", "warnings", 1))
    ir: dict[str, Any]


class CheckReport(BaseModel):
    """What checking a graph found (the first `MAX_SHOWN_DIAGNOSTICS`); `ok` when no errors."""

    ok: bool
    diagnostics: list[DiagnosticOut]
    more: int = Field(default=0, ge=0, description=MORE)


class _Row(BaseModel):
    """A response read from a row's (or any object's) attributes."""

    model_config = ConfigDict(from_attributes=True)


class GraphOut(_Row):
    """A saved graph as stored."""

    graph_id: uuid.UUID = Field(validation_alias="id")
    name: str | None
    source: str | None
    ir: dict[str, Any]
    source_hash: str | None
    created_at: UTCDateTime


class DiagramOut(BaseModel):
    """A graph's diagram source."""

    format: Literal["mermaid", "dot"]
    diagram: str


class RunErrorOut(BaseModel):
    """Why a run failed: a stable code, a message, the node, and the span in the source."""

    code: str
    message: str
    node: str | None = None
    span: dict[str, int] | None = None


def _not_failed(failed: bool) -> bool:
    return not failed


def _no_branch(branch: str | None) -> bool:
    return branch is None


class StepOut(_Row):
    """One node's execution in a run (`attempts`: how many times its tool was called)."""

    seq: int
    node: str
    delta: dict[str, Any]
    started_at: UTCDateTime
    finished_at: UTCDateTime
    attempts: int = 1
    # Left out unless true, as in `POST /graph/run`'s steps and the WebSocket's events.
    failed: bool = Field(
        default=False,
        exclude_if=_not_failed,
        description="true for a step that failed and took its node's error route "
        "(`on_error`): its delta is the `error` it wrote; left out otherwise",
    )
    branch: str | None = Field(
        default=None,
        exclude_if=_no_branch,
        description='the parallel branch the step ran in (`"0"`, `"1"`, ... in the order '
        'written), or `"join"` for the step that merged the branches (its node is the '
        "fork's, its delta what the merge changed); left out for a step of the main line",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_ms(self) -> float:
        """Wall time of the node, in milliseconds."""
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)


class WaitingOut(BaseModel):
    """What a run that waits at a wait node waits for, since when, and until when."""

    node: str = Field(description="the wait node")
    name: str = Field(description='the wait\'s name, as in `wait("approval")`')
    timeout: float | None = Field(description="seconds it waits at most; null: no limit")
    since: UTCDateTime | None = None
    deadline: UTCDateTime | None = Field(
        default=None,
        description="when it times out (`wait_timeout`); null without a timeout",
    )


def _not_waiting(waiting: WaitingOut | None) -> bool:
    return waiting is None


class RunOut(BaseModel):
    """A run that ended, or waits at a wait node: its status, state, steps and error."""

    run_id: uuid.UUID
    status: str
    state: dict[str, Any]
    steps: list[StepOut]
    error: RunErrorOut | None
    waiting: WaitingOut | None = Field(
        default=None,
        exclude_if=_not_waiting,
        description="`status: waiting`: what it waits for; left out otherwise",
    )


class RunAccepted(BaseModel):
    """A run that was started and goes on in the background."""

    run_id: uuid.UUID
    status: str


class RunCancelling(BaseModel):
    """A run asked to stop: `cancelled` already, or `cancelling` while its owner stops it."""

    run_id: uuid.UUID
    status: Literal["cancelling", "cancelled"]


class ChildOut(BaseModel):
    """The run of one of a run's sub-flows."""

    run_id: uuid.UUID
    node: str | None = Field(description="the sub-flow node of the parent that runs it")
    status: str


class RunState(_Row):
    """Where a run is, as recorded."""

    run_id: uuid.UUID = Field(validation_alias="id")
    graph_id: uuid.UUID = Field(validation_alias="definition_id")
    status: str
    current_node: str | None
    step: int
    state: dict[str, Any]
    error: RunErrorOut | None
    durability: str
    worker: str | None = Field(
        validation_alias="owner", description="`host:pid` of the process running it, if any"
    )
    attempt: int = Field(description="how many times a worker claimed the run")
    waiting: WaitingOut | None = Field(
        default=None, description="`status: waiting`: what it waits for; null otherwise"
    )
    parent_run_id: uuid.UUID | None = Field(
        default=None,
        description="the run of a sub-flow: the run whose node runs it; null for a run "
        "started on its own",
    )
    parent_node: str | None = Field(
        default=None, description="the run of a sub-flow: the node of its parent that runs it"
    )
    children: list[ChildOut] = Field(
        default_factory=list,
        description="the runs of its sub-flows, the first started first (each followed like "
        "any run: `GET /graph/state/{run_id}`, `WS /ws/graph/{run_id}`)",
    )
    created_at: UTCDateTime
    started_at: UTCDateTime | None
    finished_at: UTCDateTime | None
    updated_at: UTCDateTime


class RunSteps(BaseModel):
    """A page of a run's recorded steps, in order, and where the next page starts."""

    run_id: uuid.UUID
    steps: list[StepOut]
    next: int | None = Field(
        description="the `after` of the next page: the last `seq` of this one; null when no "
        "step after this page is recorded (yet: a run that goes on may record more)"
    )


#: A type as the DSL writes it (`list[dict]?`), read from a `FlowType`.
TypeText = Annotated[str, BeforeValidator(str)]


class ToolParamOut(_Row):
    """A tool's static parameter (`default` is its Python repr, `type` null when unannotated)."""

    name: str
    kind: str
    required: bool
    default: str | None
    annotation: str | None
    type: TypeText | None


class KeyContractOut(_Row):
    """A state key a tool reads or writes; `required`: always read or written."""

    name: str
    type: TypeText
    required: bool


class ToolOut(_Row):
    """A registered tool: its name, documentation, parameters, and how it runs."""

    name: str
    summary: str
    doc: str
    params: list[ToolParamOut]
    is_async: bool
    blocking: bool
    reads: list[KeyContractOut] | None = Field(
        description="the keys its state parameter's `TypedDict` declares; null when unannotated"
    )
    writes: list[KeyContractOut] | None = Field(
        description="the keys its return `TypedDict` declares; null when unannotated"
    )


class Problem(BaseModel):
    """An error answer of any status but 422: what went wrong, in a sentence for a person."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid part of a request: where it is (`loc`), what is wrong, and a stable `type`."""

    loc: list[str | int] = Field(
        description="`body`, `path` or `query`, then the field names and list indexes"
    )
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """422: the request's parameters or fields are not valid; one entry per problem."""

    detail: list[FieldProblem]


class FlowProblems(BaseModel):
    """Why a graph was refused: a one-line summary, then the first diagnostics, positioned."""

    message: str = Field(description="how many errors, and the first one with its position")
    diagnostics: list[DiagnosticOut]
    more: int = Field(default=0, ge=0, description=MORE)


class InvalidFlow(BaseModel):
    """422: the flow text or IR document has errors (the same diagnostics as `flowc check`)."""

    detail: FlowProblems


class Health(BaseModel):
    """The server and its database answer."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
