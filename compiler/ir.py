"""Program <-> IR: the versioned, serialisable form of a checked flow (frozen pydantic).

The IR is what is stored (JSONB), sent over the API and executed.  Conditions are
expression trees, never source strings.  `ir_version` leaves room for v2.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from compiler import program as p
from dsl import ast
from dsl.diagnostics import WHOLE_TEXT
from dsl.diagnostics import Span as DslSpan

IR_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Span(_Frozen):
    """Where in the source text: 1-based lines and columns, the end exclusive."""

    line: int = Field(ge=1)
    column: int = Field(ge=1)
    end_line: int = Field(ge=1)
    end_column: int = Field(ge=1)


# ------------------------------------------------------------------ conditions


class LiteralExpr(_Frozen):
    """A literal: number, string, bool or null."""

    type: Literal["literal"] = "literal"
    value: StrictBool | StrictInt | StrictFloat | StrictStr | None
    span: Span | None = None


class ListExpr(_Frozen):
    """A list of expressions."""

    type: Literal["list"] = "list"
    items: tuple[Expr, ...] = ()
    span: Span | None = None


class PathExpr(_Frozen):
    """A path into the state: keys and list indexes, the first a key."""

    type: Literal["path"] = "path"
    path: tuple[StrictStr | StrictInt, ...] = Field(min_length=1)
    span: Span | None = None


class UnaryExpr(_Frozen):
    """`not x` or `-x`."""

    type: Literal["unary"] = "unary"
    op: Literal["not", "-"]
    operand: Expr
    span: Span | None = None


class BinaryExpr(_Frozen):
    """`left op right`."""

    type: Literal["binary"] = "binary"
    op: Literal[
        "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"
    ]
    left: Expr
    right: Expr
    span: Span | None = None


class CallExpr(_Frozen):
    """A call of one of the condition functions."""

    type: Literal["call"] = "call"
    function: str
    args: tuple[Expr, ...] = ()
    span: Span | None = None


Expr = Annotated[
    LiteralExpr | ListExpr | PathExpr | UnaryExpr | BinaryExpr | CallExpr,
    Field(discriminator="type"),
]
for _model in (ListExpr, UnaryExpr, BinaryExpr, CallExpr):
    _model.model_rebuild()

# ---------------------------------------------------------------- the graph


class Node(_Frozen):
    """A node: its name, the tool it runs and the static keyword arguments."""

    name: str
    tool: str
    args: dict[str, JsonValue] = Field(default_factory=dict)
    span: Span | None = None


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


class Branch(_Frozen):
    """Arms tried in order; `otherwise` when none holds."""

    kind: Literal["branch"] = "branch"
    arms: tuple[Arm, ...] = Field(min_length=1)
    otherwise: str
    span: Span | None = None


Route = Annotated[Goto | Branch, Field(discriminator="kind")]


class Settings(_Frozen):
    """`set` values, defaults filled in."""

    max_steps: int = Field(default=p.DEFAULT_MAX_STEPS, ge=1, le=p.MAX_MAX_STEPS)


class Flow(_Frozen):
    """A whole flow, ready to run: `ir_version` 1."""

    ir_version: Literal[1] = 1
    name: str | None = None
    start: str
    settings: Settings = Settings()
    nodes: tuple[Node, ...] = Field(min_length=1)
    routes: dict[str, Route] = Field(default_factory=dict)
    source_hash: str | None = None

    def to_json(self) -> str:
        """Canonical JSON: the same flow always gives the same bytes."""
        return self.model_dump_json(indent=2)


def json_schema() -> dict[str, Any]:
    """The IR's JSON schema (`flowc schema`)."""
    return Flow.model_json_schema()


# ------------------------------------------------------------ Program -> IR


def _span(span: DslSpan) -> Span | None:
    if span is WHOLE_TEXT:
        return None
    return Span(
        line=span.line, column=span.column, end_line=span.end_line, end_column=span.end_column
    )


def expr_to_ir(
    expr: ast.Expr,
) -> LiteralExpr | ListExpr | PathExpr | UnaryExpr | BinaryExpr | CallExpr:
    """One AST condition as an IR expression tree."""
    span = _span(expr.span)
    if isinstance(expr, ast.Literal):
        return LiteralExpr(value=expr.value, span=span)
    if isinstance(expr, ast.ListExpr):
        return ListExpr(items=tuple(expr_to_ir(i) for i in expr.items), span=span)
    if isinstance(expr, ast.PathExpr):
        return PathExpr(path=expr.parts, span=span)
    if isinstance(expr, ast.Unary):
        return UnaryExpr(op=expr.op, operand=expr_to_ir(expr.operand), span=span)
    if isinstance(expr, ast.Binary):
        return BinaryExpr(
            op=expr.op, left=expr_to_ir(expr.left), right=expr_to_ir(expr.right), span=span
        )
    return CallExpr(function=expr.function, args=tuple(expr_to_ir(a) for a in expr.args), span=span)


def _route_to_ir(route: p.Route) -> Goto | Branch:
    if isinstance(route, p.Goto):
        return Goto(target=route.target, span=_span(route.span))
    arms = tuple(
        Arm(condition=expr_to_ir(a.condition), target=a.target, span=_span(a.span))
        for a in route.arms
    )
    return Branch(arms=arms, otherwise=route.otherwise, span=_span(route.span))


def to_ir(program: p.Program) -> Flow:
    """The IR of a checked program."""
    nodes = tuple(
        Node(name=n.name, tool=n.tool, args=n.args, span=_span(n.span))
        for n in program.nodes.values()
    )
    return Flow(
        name=program.name,
        start=program.start,
        settings=Settings(max_steps=program.max_steps),
        nodes=nodes,
        routes={name: _route_to_ir(route) for name, route in program.routes.items()},
        source_hash=program.source_hash,
    )


# ------------------------------------------------------------ IR -> Program


def _dsl_span(span: Span | None) -> DslSpan:
    if span is None:
        return WHOLE_TEXT
    return DslSpan(span.line, span.column, span.end_line, span.end_column)


def expr_from_ir(
    expr: LiteralExpr | ListExpr | PathExpr | UnaryExpr | BinaryExpr | CallExpr,
) -> ast.Expr:
    """One IR expression as the AST condition the checks read."""
    span = _dsl_span(expr.span)
    if isinstance(expr, LiteralExpr):
        value = expr.value
        kind: ast.LiteralKind = (
            "null" if value is None else "bool" if isinstance(value, bool)
            else "int" if isinstance(value, int) else "float" if isinstance(value, float)
            else "string"
        )  # fmt: skip
        return ast.Literal(kind, value, span)
    if isinstance(expr, ListExpr):
        return ast.ListExpr(tuple(expr_from_ir(i) for i in expr.items), span)
    if isinstance(expr, PathExpr):
        return ast.PathExpr(tuple(expr.path), span)
    if isinstance(expr, UnaryExpr):
        return ast.Unary(expr.op, expr_from_ir(expr.operand), span)
    if isinstance(expr, BinaryExpr):
        return ast.Binary(expr.op, expr_from_ir(expr.left), expr_from_ir(expr.right), span)
    return ast.Call(expr.function, tuple(expr_from_ir(a) for a in expr.args), span, span)


def _route_from_ir(route: Goto | Branch) -> p.Route:
    span = _dsl_span(route.span)
    if isinstance(route, Goto):
        return p.Goto(route.target, span, span)
    arms = tuple(
        p.Arm(expr_from_ir(a.condition), a.target, _dsl_span(a.span), _dsl_span(a.span))
        for a in route.arms
    )
    return p.Branch(arms, route.otherwise, span, span)


def program_from_ir(flow: Flow) -> p.Program:
    """The Program the checks read, from an IR document (duplicates are left to the checks)."""
    nodes: dict[str, p.Node] = {}
    for node in flow.nodes:
        span = _dsl_span(node.span)
        arg_spans = dict.fromkeys(node.args, span)
        nodes.setdefault(
            node.name, p.Node(node.name, node.tool, dict(node.args), span, span, arg_spans, True)
        )
    routes = {name: _route_from_ir(route) for name, route in flow.routes.items()}
    mentioned = {t for r in routes.values() for t in _targets(r)} | set(routes)
    return p.Program(
        name=flow.name,
        start=flow.start,
        nodes=nodes,
        routes=routes,
        max_steps=flow.settings.max_steps,
        source_hash=flow.source_hash,
        mentioned=frozenset(mentioned | {flow.start}),
    )


def _targets(route: p.Route) -> tuple[str, ...]:
    return (route.target,) if isinstance(route, p.Goto) else route.targets
