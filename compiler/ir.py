"""Program <-> IR: the versioned, serialisable form of a checked flow (frozen pydantic).

The IR is what is stored (JSONB), sent over the API and executed.  Conditions are
expression trees, never source strings.  `ir_version` leaves room for v2.  A document
nested deeper than the DSL allows is refused before pydantic descends into it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, Self, TypedDict

from flowc.compiler import program as p
from flowc.compiler.types import TypeSyntaxError, parse_type
from flowc.dsl import ast
from flowc.dsl.builder import ATOM, COMPARISON, LEVELS, nesting_problem, value_depth_exceeds
from flowc.dsl.diagnostics import WHOLE_TEXT
from flowc.dsl.diagnostics import Span as DslSpan
from flowc.dsl.limits import MAX_NESTING

#: The IR version this compiler writes when a flow uses what version 2 added (error
#: routes); a flow that does not is written as version 1, byte for byte as before.  Both
#: are read.
IR_VERSION = 2


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Spans and condition trees are typed dicts, validated by pydantic-core without a Python
# object per node: a 10,000-node flow holds some 60,000 of them, and as models they made
# compiling 1.5x slower than parsing (see the note in bench/compile.py).


class Span(TypedDict):
    """Where in the source text: 1-based lines and columns, the end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


class LiteralExpr(TypedDict):
    """A literal: number, string, bool or null."""

    type: Literal["literal"]
    value: StrictBool | StrictInt | StrictFloat | StrictStr | None
    span: NotRequired[Span]


class ListExpr(TypedDict):
    """A list of expressions."""

    type: Literal["list"]
    items: list[Expr]
    span: NotRequired[Span]


class PathExpr(TypedDict):
    """A path into the state: keys and list indexes, the first a key."""

    type: Literal["path"]
    path: Annotated[list[StrictStr | StrictInt], Field(min_length=1)]
    span: NotRequired[Span]


class UnaryExpr(TypedDict):
    """`not x` or `-x`."""

    type: Literal["unary"]
    op: Literal["not", "-"]
    operand: Expr
    span: NotRequired[Span]


BinaryOp = Literal[
    "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"
]


class BinaryExpr(TypedDict):
    """`left op right`."""

    type: Literal["binary"]
    op: BinaryOp
    left: Expr
    right: Expr
    span: NotRequired[Span]


class CallExpr(TypedDict):
    """A call of one of the condition functions."""

    type: Literal["call"]
    function: str
    args: list[Expr]
    span: NotRequired[Span]


Expr = Annotated[
    LiteralExpr | ListExpr | PathExpr | UnaryExpr | BinaryExpr | CallExpr,
    Field(discriminator="type"),
]

# ---------------------------------------------------------------- the graph


def _absent(value: object) -> bool:
    return value is None


# Policies and their settings are left out of the JSON while they are not given, so a flow
# without them has the IR it had before they existed.
Seconds = Annotated[float, Field(gt=0, le=p.MAX_TIMEOUT, strict=True)]
Retries = Annotated[int, Field(ge=0, le=p.MAX_RETRIES, strict=True)]
Backoff = Annotated[float, Field(ge=0, le=p.MAX_BACKOFF, strict=True)]


class Policy(_Frozen):
    """A node's own policies (`with ...`); one left out takes the flow's setting."""

    timeout: Seconds | None = Field(default=None, exclude_if=_absent)
    retries: Retries | None = Field(default=None, exclude_if=_absent)
    backoff: Backoff | None = Field(default=None, exclude_if=_absent)
    #: ir_version 2: the node (or `end`) a failed step goes to, with `error` in the state.
    on_error: str | None = Field(default=None, exclude_if=_absent)


class MapOver(_Frozen):
    """ir_version 2: the node runs its tool once per item of the list `over`, as `item`."""

    item: str
    over: str


class Wait(_Frozen):
    """ir_version 2: the node runs no tool; the run waits for input named `name`."""

    name: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0, le=p.MAX_WAIT, exclude_if=_absent)


#: A stored graph's id as the IR writes it: a UUID, lowercase, with its hyphens.
GRAPH_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class SubFlow(_Frozen):
    """ir_version 2: the node runs the flow `ir` as a run of its own (`flow NAME`).

    `name` is the name the flow was referred to by; `graph_id` the stored definition it was
    resolved to (the server's; None for a file).  The child's IR is held whole, so a run
    runs the definition that was checked, whatever is stored or written later.
    """

    name: str = Field(min_length=1)
    graph_id: str | None = Field(default=None, pattern=GRAPH_ID, exclude_if=_absent)
    ir: Flow


class Node(_Frozen):
    """A node: its name, the tool it runs, the static keyword arguments, its policies.

    ir_version 2: `map` makes it run its tool per item of a list; `wait` makes it wait;
    `flow` makes it run another flow (its tool is then `flow`).
    """

    name: str
    tool: str
    # JSON values; checked by the compiler (pydantic's JsonValue tripled compile time).
    args: dict[str, Any] = Field(default_factory=dict)
    span: Span | None = None
    policy: Policy | None = Field(default=None, exclude_if=_absent)
    map: MapOver | None = Field(default=None, exclude_if=_absent)
    wait: Wait | None = Field(default=None, exclude_if=_absent)
    flow: SubFlow | None = Field(default=None, exclude_if=_absent)

    @model_validator(mode="before")
    @classmethod
    def _args_not_too_deep(cls, data: Any) -> Any:
        """Static arguments nest lists and objects at most `MAX_NESTING` deep, as in the DSL."""
        args = data.get("args") if isinstance(data, dict) else None
        if isinstance(args, dict):
            for name, value in args.items():
                if value_depth_exceeds(value, MAX_NESTING):
                    raise PydanticCustomError(
                        "too_deep",
                        "the argument `{name}` is nested more than {limit} levels deep",
                        {"name": str(name), "limit": MAX_NESTING},
                    )
        return data


class Goto(_Frozen):
    """A plain edge."""

    kind: Literal["goto"] = "goto"
    target: str
    span: Span | None = None


class Arm(_Frozen):
    """`condition -> target`."""

    condition: Expr
    target: str
    span: Span | None = None

    @model_validator(mode="before")
    @classmethod
    def _condition_not_too_deep(cls, data: Any) -> Any:
        """The condition is within the DSL's nesting limits (E003), measured without recursion."""
        if isinstance(data, dict):
            problem = _nesting_problem(data.get("condition"))
            if problem is not None:
                raise PydanticCustomError(
                    "too_deep", "the condition is {problem}", {"problem": problem}
                )
        return data


class Branch(_Frozen):
    """Arms tried in order; `otherwise` when none holds."""

    kind: Literal["branch"] = "branch"
    arms: tuple[Arm, ...] = Field(min_length=1)
    otherwise: str
    span: Span | None = None


class Parallel(_Frozen):
    """ir_version 2: after the node, its branches (chains of nodes) run at once, then `join`."""

    kind: Literal["parallel"] = "parallel"
    branches: tuple[tuple[str, ...], ...] = Field(min_length=2)
    join: str
    span: Span | None = None

    @field_validator("branches")
    @classmethod
    def _branches_have_nodes(cls, branches: tuple[tuple[str, ...], ...]) -> Any:
        """Each branch is a chain of one node or more."""
        if any(not branch for branch in branches):
            raise PydanticCustomError("empty_branch", "a parallel branch has no nodes")
        return branches


Route = Annotated[Goto | Branch | Parallel, Field(discriminator="kind")]


class Settings(_Frozen):
    """`set` values, defaults filled in; a policy's is its default for every node."""

    max_steps: int = Field(default=p.DEFAULT_MAX_STEPS, ge=1, le=p.MAX_MAX_STEPS)
    timeout: Seconds | None = Field(default=None, exclude_if=_absent)
    retries: Retries = Field(
        default=p.DEFAULT_RETRIES, exclude_if=lambda value: value == p.DEFAULT_RETRIES
    )
    backoff: Backoff = Field(
        default=p.DEFAULT_BACKOFF, exclude_if=lambda value: value == p.DEFAULT_BACKOFF
    )
    #: ir_version 2: how many parallel branches of a run run at once (None: the default).
    max_parallel: int | None = Field(default=None, ge=1, le=p.MAX_MAX_PARALLEL, exclude_if=_absent)


class StateKey(_Frozen):
    """A declared state key: its type as the DSL writes it (`list[dict]?`) and its default.

    A `required` key has no default (`default` is then null): every run's input gives it.
    """

    name: str
    type: str
    default: Any = None
    required: bool = True
    span: Span | None = None
    #: ir_version 2: how parallel branches' writes are merged (`compiler.reducers`).
    reducer: Literal["append", "extend", "merge", "sum", "min", "max", "replace"] | None = Field(
        default=None, exclude_if=_absent
    )

    @field_validator("type")
    @classmethod
    def _type_is_a_type(cls, text: str) -> str:
        """The type text reads as a type (`parse_type`), so that a Flow's types always do."""
        try:
            parse_type(text)
        except TypeSyntaxError as problem:
            raise PydanticCustomError("bad_type", "{problem}", {"problem": str(problem)}) from None
        return text

    @model_validator(mode="before")
    @classmethod
    def _default_not_too_deep(cls, data: Any) -> Any:
        """A default nests lists and objects at most `MAX_NESTING` deep, as in the DSL."""
        default = data.get("default") if isinstance(data, dict) else None
        if default is not None and value_depth_exceeds(default, MAX_NESTING):
            raise PydanticCustomError(
                "too_deep", "the default is nested more than {limit} levels deep",
                {"limit": MAX_NESTING},
            )  # fmt: skip
        return data

    @model_validator(mode="after")
    def _required_has_no_default(self) -> Self:
        """A key with a default is not required: the default is its value when not given."""
        if self.required and self.default is not None:
            raise PydanticCustomError(
                "required_default", "a required key has no default (set `required` to false)"
            )
        return self


def _no_state(keys: tuple[StateKey, ...]) -> bool:
    return not keys


class Flow(_Frozen):
    """A whole flow, ready to run: `ir_version` 1, or 2 when it uses what version 2 added."""

    ir_version: Literal[1, 2] = 1
    name: str | None = None
    start: str
    settings: Settings = Settings()
    # Left out while empty, so a flow without declarations has the IR it had before them.
    state: tuple[StateKey, ...] = Field(default=(), exclude_if=_no_state)
    nodes: tuple[Node, ...] = Field(min_length=1)
    routes: dict[str, Route] = Field(default_factory=dict)
    source_hash: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _routes_in_node_order(cls, data: Any) -> Any:
        """Keep `routes` in node order, whatever order a document (or JSONB) gave them in."""
        if isinstance(data, dict) and isinstance(data.get("routes"), dict):
            nodes = data.get("nodes")
            names = (
                [n.get("name") for n in nodes if isinstance(n, dict)]
                if isinstance(nodes, (list, tuple))
                else []
            )
            routes = data["routes"]
            rank = {name: index for index, name in enumerate(names)}
            ordered = sorted(routes, key=lambda name: rank.get(name, len(rank)))
            data = {**data, "routes": {name: routes[name] for name in ordered}}
        return data

    @model_validator(mode="after")
    def _version_holds_what_is_used(self) -> Self:
        """A version 1 document uses nothing version 2 added."""
        if self.ir_version == 1:
            used = _v2_constructs(self)
            if used:
                raise PydanticCustomError(
                    "ir_version", "{used} needs ir_version 2", {"used": used[0]}
                )
        return self

    @property
    def v2(self) -> bool:
        """True when the flow uses what ir_version 2 added."""
        return bool(_v2_constructs(self))

    def to_json(self) -> str:
        """Canonical JSON: the same flow always gives the same bytes."""
        return self.model_dump_json(indent=2)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """Validate a JSON document; one nested deeper than pydantic-core reads, too.

        pydantic-core's parser stops at 200 levels of nesting, below what a condition the
        DSL accepts may reach in the IR (`MAX_TREE_DEPTH` plus the document around it).
        Such a document is read with the standard library's parser instead, and validated
        as data; any other (and one that parser cannot read either) keeps pydantic's answer.
        """
        try:
            return super().model_validate_json(json_data, **options)
        except ValidationError as problem:
            document = _deep_document(problem, json_data)
            if document is None:
                raise
        return cls.model_validate(document, **options)


# A sub-flow holds a whole flow: the models refer to each other.
SubFlow.model_rebuild()
Node.model_rebuild()
Flow.model_rebuild()


def _v2_constructs(flow: Flow) -> list[str]:
    """What a flow uses that ir_version 2 added, each said in words."""
    used = [
        f"node `{node.name}`'s error route (`on_error`)"
        for node in flow.nodes
        if node.policy is not None and node.policy.on_error is not None
    ]
    used += [f"the parallel branches after `{name}`" for name, route in flow.routes.items()
             if isinstance(route, Parallel)]  # fmt: skip
    if flow.settings.max_parallel is not None:
        used.append("`max_parallel`")
    used += [f"the reducer of `{key.name}`" for key in flow.state if key.reducer is not None]
    used += [f"the map `{node.name}`" for node in flow.nodes if node.map is not None]
    used += [f"the wait `{node.name}`" for node in flow.nodes if node.wait is not None]
    used += [f"the sub-flow `{node.name}`" for node in flow.nodes if node.flow is not None]
    return used


def _deep_document(problem: ValidationError, json_data: str | bytes | bytearray) -> Any:
    """The document pydantic-core found too deep to read, read by `json`; else None."""
    (found, *_) = problem.errors()
    if found["type"] != "json_invalid" or "recursion limit" not in found["msg"]:
        return None
    try:
        text = json_data if isinstance(json_data, str) else bytes(json_data).decode("utf-8")
        document = json.loads(text)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    except (ValueError, RecursionError):
        return None
    return document


def _level(expr: Any) -> int:
    """The precedence of an IR expression's top, as the formatter writes it."""
    kind = expr.get("type") if isinstance(expr, dict) else None
    if kind == "binary":
        return LEVELS.get(str(expr.get("op")), ATOM)
    if kind == "unary":
        return LEVELS["not" if expr.get("op") == "not" else "neg"]
    return ATOM


def _nesting_problem(condition: Any) -> str | None:
    """What is too deep about an IR condition (raw data), as the DSL would say of its text.

    Nesting is counted as in the text the condition formats to: a pair of parentheses
    wherever the formatter needs one, a level per operator except along a flat chain.
    Walked top-down with a stack; stops at the first node past a limit.
    """
    pending: list[tuple[Any, int, int]] = [(condition, 1, 0)]
    while pending:
        expr, nesting, above = pending.pop()
        if not isinstance(expr, dict):
            continue  # not an expression: pydantic reports it
        kind = expr.get("type")
        depth = above + (2 if kind in ("path", "list", "call") else 1)
        problem = nesting_problem(nesting, depth)
        if problem is not None:
            return problem
        children: list[tuple[Any, int]] = []
        if kind == "unary":
            operand = expr.get("operand")
            parenthesised = _level(operand) < _level(expr)
            children = [(operand, nesting + 1 + parenthesised)]
        elif kind == "binary":
            left, right, level = expr.get("left"), expr.get("right"), _level(expr)
            left_level = _level(left)
            # As `builder.binary_nesting` counts: a chain goes on at this node's nesting.
            chained = left_level == level != COMPARISON
            left_parens = left_level < level or left_level == level == COMPARISON
            children = [
                (left, nesting if chained else nesting + 1 + left_parens),
                (right, nesting + 1 + (_level(right) <= level)),
            ]
        elif kind in ("call", "list"):
            items = expr.get("args" if kind == "call" else "items")
            if isinstance(items, list):
                children = [(item, nesting + 1) for item in items]
        pending += [(child, child_nesting, depth) for child, child_nesting in children]
    return None


def json_schema() -> dict[str, Any]:
    """The IR's JSON schema (`flowc schema`).

    A sub-flow holds a flow, so pydantic puts `Flow` among the definitions and refers to
    it; the document is that definition, with the definitions beside it.
    """
    schema = Flow.model_json_schema()
    definitions = schema.get("$defs", {})
    root = definitions.get("Flow")
    if root is None or "$ref" not in schema:
        return schema
    return {"$defs": definitions, **root}


# ------------------------------------------------------------ Program -> IR


def _span(span: DslSpan) -> Span | None:
    if span is WHOLE_TEXT:
        return None
    return {
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def expr_to_ir(expr: ast.Expr) -> dict[str, Any]:
    """One AST condition as an IR expression tree (plain data, validated with the flow)."""
    if isinstance(expr, ast.Literal):
        data: dict[str, Any] = {"type": "literal", "value": expr.value}
    elif isinstance(expr, ast.PathExpr):
        data = {"type": "path", "path": list(expr.parts)}
    elif isinstance(expr, ast.ListExpr):
        data = {"type": "list", "items": [expr_to_ir(i) for i in expr.items]}
    elif isinstance(expr, ast.Unary):
        data = {"type": "unary", "op": expr.op, "operand": expr_to_ir(expr.operand)}
    elif isinstance(expr, ast.Binary):
        data = {
            "type": "binary",
            "op": expr.op,
            "left": expr_to_ir(expr.left),
            "right": expr_to_ir(expr.right),
        }
    else:
        data = {
            "type": "call",
            "function": expr.function,
            "args": [expr_to_ir(a) for a in expr.args],
        }
    span = _span(expr.span)
    if span is not None:
        data["span"] = span
    return data


def _route_to_ir(route: p.Route) -> dict[str, Any]:
    if isinstance(route, p.Goto):
        return {"kind": "goto", "target": route.target, "span": _span(route.span)}
    if isinstance(route, p.Parallel):
        return {
            "kind": "parallel",
            "branches": route.branches,
            "join": route.join,
            "span": _span(route.span),
        }
    arms = [
        {"condition": expr_to_ir(a.condition), "target": a.target, "span": _span(a.span)}
        for a in route.arms
    ]
    return {"kind": "branch", "arms": arms, "otherwise": route.otherwise, "span": _span(route.span)}


def _node_to_ir(node: p.Node) -> dict[str, Any]:
    data = {"name": node.name, "tool": node.tool, "args": node.args, "span": _span(node.span)}
    if node.policy is not None:
        policy = node.policy
        data["policy"] = {
            "timeout": policy.timeout,
            "retries": policy.retries,
            "backoff": policy.backoff,
            "on_error": policy.on_error,
        }
    if node.map is not None:
        data["map"] = {"item": node.map.item, "over": node.map.over}
    if node.wait is not None:
        data["wait"] = {"name": node.wait.name, "timeout": node.wait.timeout}
    if node.flow is not None:
        child = node.flow.child
        data["flow"] = {"name": node.flow.name, "graph_id": node.flow.graph_id, "ir": child}
    return data


def _state_to_ir(key: p.StateField) -> dict[str, Any]:
    return {
        "name": key.name,
        "type": str(key.type),
        "default": key.default,
        "required": key.required,
        "span": _span(key.span),
        "reducer": key.reducer,
    }


def to_ir(program: p.Program) -> Flow:
    """The IR of a checked program: built as plain data, validated once by pydantic-core."""
    nodes = [_node_to_ir(n) for n in program.nodes.values()]
    v2 = (
        any(n.policy is not None and n.policy.on_error is not None for n in program.nodes.values())
        or any(isinstance(route, p.Parallel) for route in program.routes.values())
        or program.max_parallel is not None
        or any(key.reducer is not None for key in program.state.values())
        or any(
            n.map is not None or n.wait is not None or n.flow is not None
            for n in program.nodes.values()
        )
    )
    return Flow.model_validate(
        {
            "ir_version": IR_VERSION if v2 else 1,
            "name": program.name,
            "start": program.start,
            "settings": {
                "max_steps": program.max_steps,
                "timeout": program.timeout,
                "retries": program.retries,
                "backoff": program.backoff,
                "max_parallel": program.max_parallel,
            },
            "state": [_state_to_ir(key) for key in program.state.values()],
            "nodes": nodes,
            "routes": {name: _route_to_ir(route) for name, route in program.routes.items()},
            "source_hash": program.source_hash,
        }
    )


# ------------------------------------------------------------ IR -> Program


def _dsl_span(span: Span | None) -> DslSpan:
    if span is None:
        return WHOLE_TEXT
    return DslSpan(span["line"], span["column"], span["end_line"], span["end_column"])


_KINDS: dict[type, ast.LiteralKind] = {
    type(None): "null", bool: "bool", int: "int", float: "float", str: "string"
}  # fmt: skip


def expr_from_ir(expr: Expr) -> ast.Expr:
    """One IR expression as the AST condition the checks read."""
    span = _dsl_span(expr.get("span"))
    if expr["type"] == "literal":
        return ast.Literal(_KINDS[type(expr["value"])], expr["value"], span)
    if expr["type"] == "list":
        return ast.ListExpr(tuple(expr_from_ir(i) for i in expr["items"]), span)
    if expr["type"] == "path":
        return ast.PathExpr(tuple(expr["path"]), span)
    if expr["type"] == "unary":
        return ast.Unary(expr["op"], expr_from_ir(expr["operand"]), span)
    if expr["type"] == "binary":
        return ast.Binary(expr["op"], expr_from_ir(expr["left"]), expr_from_ir(expr["right"]), span)
    return ast.Call(expr["function"], tuple(expr_from_ir(a) for a in expr["args"]), span, span)


def _route_from_ir(route: Goto | Branch | Parallel) -> p.Route:
    span = _dsl_span(route.span)
    if isinstance(route, Goto):
        return p.Goto(route.target, span, span)
    if isinstance(route, Parallel):
        return p.Parallel(route.branches, route.join, span, span)
    arms = tuple(
        p.Arm(expr_from_ir(a.condition), a.target, _dsl_span(a.span), _dsl_span(a.span))
        for a in route.arms
    )
    return p.Branch(arms, route.otherwise, span, span)


def program_from_ir(flow: Flow) -> p.Program:
    """The Program the checks read, from an IR document (duplicates are left to the checks).

    A state key declared twice keeps its first declaration, as a node defined twice does.
    """
    nodes: dict[str, p.Node] = {}
    for node in flow.nodes:
        span = _dsl_span(node.span)
        arg_spans = dict.fromkeys(node.args, span)
        given = node.policy
        policy = (
            None
            if given is None
            else p.Policy(given.timeout, given.retries, given.backoff, given.on_error, span)
        )
        mapped = None if node.map is None else p.MapSpec(node.map.item, node.map.over, span, span)
        wait = None if node.wait is None else p.WaitSpec(node.wait.name, node.wait.timeout)
        sub = (
            None
            if node.flow is None
            else p.FlowSpec(node.flow.name, node.flow.graph_id, span, node.flow.ir)
        )
        nodes.setdefault(
            node.name,
            p.Node(
                node.name,
                node.tool,
                dict(node.args),
                span,
                span,
                arg_spans,
                True,
                policy,
                mapped,
                wait,
                sub,
            ),
        )
    routes = {name: _route_from_ir(route) for name, route in flow.routes.items()}
    branch_of: dict[str, p.BranchPlace] = {}
    for name, route in routes.items():
        if isinstance(route, p.Parallel):
            for index, branch in enumerate(route.branches):
                for position, member in enumerate(branch):
                    last = position == len(branch) - 1
                    following = route.join if last else branch[position + 1]
                    # A node in two branches keeps its first place (the checks say so).
                    branch_of.setdefault(member, p.BranchPlace(name, index, following, last))
    mentioned = {t for r in routes.values() for t in _targets(r)} | set(routes) | set(branch_of)
    mentioned |= {n.policy.on_error for n in nodes.values() if n.policy and n.policy.on_error}
    state: dict[str, p.StateField] = {}
    for key in flow.state:
        span = _dsl_span(key.span)
        state.setdefault(
            key.name,
            p.StateField(
                key.name, parse_type(key.type), key.default, key.required, span, span, key.reducer
            ),
        )
    return p.Program(
        name=flow.name,
        start=flow.start,
        nodes=nodes,
        routes=routes,
        max_steps=flow.settings.max_steps,
        timeout=flow.settings.timeout,
        retries=flow.settings.retries,
        backoff=flow.settings.backoff,
        source_hash=flow.source_hash,
        mentioned=frozenset(mentioned | {flow.start}),
        state=state,
        branch_of=branch_of,
        max_parallel=flow.settings.max_parallel,
    )


def _targets(route: p.Route) -> tuple[str, ...]:
    if isinstance(route, p.Parallel):
        return (*route.targets, route.join)
    return (route.target,) if isinstance(route, p.Goto) else route.targets
