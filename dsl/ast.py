"""What was written: the Flow AST, small frozen dataclasses that each carry a `Span`.

Spans are excluded from equality, so two ASTs that say the same thing compare equal
wherever they were written (the formatter's round-trip law relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as TypingLiteral
from typing import TypeAlias

from flowc.dsl.comments import Comment
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, Span

#: A static value: the JSON data model, as `json.loads` gives it (objects keep key order).
Value: TypeAlias = bool | int | float | str | list["Value"] | dict[str, "Value"] | None

LiteralKind = TypingLiteral["int", "float", "string", "bool", "null"]
BinaryOp = TypingLiteral[
    "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"
]
UnaryOp = TypingLiteral["not", "-"]

#: The policies a node declaration can give after `with`, in the order the formatter
#: writes them; each but `on_error` (a node's own error route) has a flow-wide default,
#: `set NAME = VALUE`.
POLICY_NAMES = ("timeout", "retries", "backoff", "on_error")


# ------------------------------------------------------------------ static values


@dataclass(frozen=True, slots=True)
class JsonValue:
    """A static JSON literal (a setting's value or a tool's keyword argument)."""

    value: Value
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


# -------------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class Literal:
    """`3`, `2.5`, `"text"`, `true`, `null`; `kind` keeps `true` apart from `1`."""

    kind: LiteralKind
    value: bool | int | float | str | None
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListExpr:
    """`[a, 1, "x"]`."""

    items: tuple[Expr, ...]
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PathExpr:
    """A path into the state: `score`, `review.score`, `issues[0].line`."""

    parts: tuple[str | int, ...]
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unary:
    """`not x` or `-x`."""

    op: UnaryOp
    operand: Expr
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Binary:
    """`left op right` for every binary operator, `and`/`or` included."""

    op: BinaryOp
    left: Expr
    right: Expr
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """`len(x)`, `default(path, 0)`: a call of one of the condition functions."""

    function: str
    args: tuple[Expr, ...]
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)
    name_span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


Expr: TypeAlias = Literal | ListExpr | PathExpr | Unary | Binary | Call


# -------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier as written, with its place."""

    text: str
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Header:
    """`flow NAME`."""

    name: Name
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Setting:
    """`set NAME = VALUE`."""

    name: Name
    value: JsonValue
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A type as written: `str`, `list[dict]`, `int?`; `item` is the `[T]` part."""

    name: Name
    item: TypeRef | None = None
    nullable: bool = False
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)
    #: How many types deep it is (`list[int]`: 2); not part of what it says.
    depth: int = field(default=1, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StateDecl:
    """`state NAME: TYPE (= VALUE)? (by REDUCER)?`; without a default it is an input."""

    name: Name
    type: TypeRef
    default: JsonValue | None = None
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)
    #: `by NAME`: how the writes of parallel branches to the key are merged.
    reducer: Name | None = None


@dataclass(frozen=True, slots=True)
class Argument:
    """`NAME = VALUE` inside a node declaration's parentheses."""

    name: Name
    value: JsonValue
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Policy:
    """`NAME = VALUE` after `with` in a node declaration: `timeout = 5`, `on_error = fix`.

    The value is a node's name (`Name`) where one is written, else a static value.
    """

    name: Name
    value: JsonValue | Name
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MapOver:
    """`for ITEM in KEY:` before a node's tool: it runs once per item of the list `KEY`."""

    item: Name
    source: Name
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NodeDecl:
    """`node NAME = TOOL`, `node NAME = TOOL(arg = value, ...)`, then `with policy, ...`.

    `args` is None when there are no parentheses, so `tool` and `tool()` both round-trip.
    `policies` are in the order written (empty without `with`).  `positional` are the
    values given without a name (`wait("approval")`), `over` the `for ITEM in KEY:` of a map.
    `subflow`: `flow NAME`, the node runs the flow `NAME` (then `tool` is that name).
    """

    name: Name
    tool: Name
    args: tuple[Argument, ...] | None
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)
    policies: tuple[Policy, ...] = ()
    positional: tuple[JsonValue, ...] = ()
    over: MapOver | None = None
    subflow: bool = False


@dataclass(frozen=True, slots=True)
class Arm:
    """`CONDITION -> target` inside a branch."""

    condition: Expr
    target: Name
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Branch:
    """`? arm : arm : ... : otherwise` on the last node of a route."""

    arms: tuple[Arm, ...]
    otherwise: Name
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Parallel:
    """`[b -> b2, c]` in a chain: branches, each a chain of nodes, that run at once."""

    branches: tuple[tuple[Name, ...], ...]
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Route:
    """A chain `a -> b -> c`, optionally ending in a branch on its last node.

    A step of the chain may be `Parallel` branches (`a -> [b, c] -> d`).
    """

    nodes: tuple[Name | Parallel, ...]
    branch: Branch | None
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)


Statement: TypeAlias = Header | Setting | StateDecl | NodeDecl | Route


@dataclass(frozen=True, slots=True)
class Flow:
    """A whole `.flow` text: its statements in source order."""

    statements: tuple[Statement, ...]
    span: Span = field(default=WHOLE_TEXT, compare=False, repr=False)
    #: The text's comments, for the formatter; like spans, not part of what a flow says.
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False)
    #: Warnings about the text found while parsing it (W017), for the compiler to report.
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False, repr=False)
    #: The text's lines, kept when it has comments: a statement with a comment inside a
    #: condition or a value is written back as it was (see `dsl.formatter.format`).
    lines: tuple[str, ...] = field(default=(), compare=False, repr=False)
