"""Lark parse callbacks -> AST: one method per grammar rule, each returning an AST node.

Used as Lark's inline transformer, so no parse tree is built.  Problems that the grammar
cannot express (reserved words used as names, bad escapes, conditions and values nested
too deep) are collected in `problems`, in the order of the text, with one warning: Python's
`True`, `False` or `None` read as a key of the state (W017).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from lark import Token, Transformer

from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, Span, error, warning
from flowc.dsl.hints import PYTHON_CONSTANTS
from flowc.dsl.limits import MAX_NESTING, MAX_TREE_DEPTH, MAX_TYPE_DEPTH
from flowc.dsl.literals import LiteralProblem, decode_float, decode_int, decode_string
from flowc.dsl.syntax import ATOM as ATOM  # re-exported: the IR's checks count levels too
from flowc.dsl.syntax import COMPARISON as COMPARISON
from flowc.dsl.syntax import LEVELS as LEVELS
from flowc.dsl.syntax import RESERVED, TOKENS

#: Tokens that carry nothing but their kind: what `_strip` leaves out of a rule's children.
_PUNCTUATION = frozenset(TOKENS)

Children = list[Any]

#: `(nesting, tree depth, level)` of a condition built so far: its nesting as `MAX_NESTING`
#: counts it, its depth as `MAX_TREE_DEPTH` does, and the precedence level of its top.
Shape = tuple[int, int, int]

#: Any condition node: what `_shaped` takes and gives back.
E = TypeVar("E", ast.Literal, ast.ListExpr, ast.PathExpr, ast.Unary, ast.Binary, ast.Call)

NESTING_HELP = "split the condition, or name intermediate results in the state"


def nesting_problem(nesting: int, tree_depth: int) -> str | None:
    """What is too deep about a condition of this nesting and tree depth, if anything."""
    if nesting > MAX_NESTING:
        return f"nested more than {MAX_NESTING} levels deep"
    if tree_depth > MAX_TREE_DEPTH:
        return (
            f"more than {MAX_TREE_DEPTH} levels deep as a tree: a chain of operators "
            "(`a or b or c`) is one level of nesting, but one level of the tree per operator"
        )
    return None


def binary_nesting(op: str, left: Shape, right: Shape) -> int:
    """The nesting of `left op right`.

    A left operand that continues a flat chain of the same precedence (`a + b` in
    `a + b - c`) adds no level.
    """
    level = LEVELS[op]
    chain = left[2] == level and level != COMPARISON
    return max(left[0] if chain else left[0] + 1, right[0] + 1)


def token_span(tok: Token) -> Span:
    """The span of one token."""
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)  # type: ignore[arg-type]


def _span_of(item: Any) -> Span:
    span: Span = token_span(item) if isinstance(item, Token) else item.span
    return span


def _outer(children: Children) -> Span:
    """From the start of the first child to the end of the last (tokens are `str`s)."""
    first, last = children[0], children[-1]
    start: Any = first if isinstance(first, str) else first.span
    end: Any = last if isinstance(last, str) else last.span
    return Span(start.line, start.column, end.end_line, end.end_column)


def _strip(children: Children) -> Children:
    return [c for c in children if not (isinstance(c, Token) and c.type in _PUNCTUATION)]


class AstBuilder(Transformer[Token, ast.Flow]):
    """Turns each reduced grammar rule into its AST node."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[Diagnostic] = []
        # The shape of each condition under construction, by `id`: an entry is taken out
        # when its node becomes part of a larger one, so only the parser's stack has any.
        self._shapes: dict[int, Shape] = {}

    def reset(self) -> None:
        """Forget the problems and the conditions under construction of an earlier parse."""
        self.problems = []
        self._shapes = {}

    def _shaped(self, node: E, nesting: int, tree_depth: int, level: int) -> E:
        self._shapes[id(node)] = (nesting, tree_depth, level)
        return node

    def _shape(self, node: ast.Expr) -> Shape:
        return self._shapes.pop(id(node), (1, 1, ATOM))

    def _check_value(self, value: ast.JsonValue) -> None:
        if value_depth_exceeds(value.value, MAX_NESTING):
            message = f"nested more than {MAX_NESTING} levels deep"
            self.problems.append(error("E003", message, value.span, help="flatten the value"))

    # ------------------------------------------------------------------ helpers

    def _name(self, tok: Token, what: str, help: str | None = None) -> ast.Name:
        span = token_span(tok)
        if tok.type != "NAME" or tok.value in RESERVED:
            self.problems.append(
                error(
                    "E014",
                    f"`{tok.value}` is a reserved word and cannot be used as {what}",
                    span,
                    help=help or f"rename it, for example `{tok.value}_`",
                )
            )
        return ast.Name(str(tok.value), span)

    def _literal_problem(self, tok: Token, problem: LiteralProblem) -> None:
        line, column = tok.line, tok.column
        assert line is not None and column is not None
        start = column + problem.offset
        self.problems.append(
            error("E013", problem.message, Span(line, start, line, start + problem.length))
        )

    def _decode(self, tok: Token) -> tuple[ast.LiteralKind, Any]:
        kind = tok.type
        try:
            if kind == "INT":
                return "int", decode_int(tok.value)
            if kind == "FLOAT":
                return "float", decode_float(tok.value)
            if kind == "STRING":
                return "string", decode_string(tok.value)
        except LiteralProblem as problem:
            self._literal_problem(tok, problem)
            return ("string", "") if kind == "STRING" else ("int", 0)
        if kind == "TRUE":
            return "bool", True
        if kind == "FALSE":
            return "bool", False
        return "null", None

    def _as_value(self, item: Any) -> ast.JsonValue:
        if isinstance(item, ast.Literal):
            self._shapes.pop(id(item), None)
            return ast.JsonValue(item.value, item.span)
        return item  # type: ignore[no-any-return]

    # --------------------------------------------------------------- statements

    def start(self, children: Children) -> ast.Flow:
        """`start`: every statement in order."""
        statements = tuple(c for c in children if not isinstance(c, Token))
        if statements:
            return ast.Flow(statements, statements[0].span.to(statements[-1].span))
        return ast.Flow(())

    def header(self, children: Children) -> ast.Header:
        """`flow NAME`."""
        return ast.Header(self._name(children[1], "a flow name"), _outer(children))

    def setting(self, children: Children) -> ast.Setting:
        """`set NAME = VALUE`."""
        name = self._name(children[1], "a setting name")
        value = self._as_value(children[3])
        self._check_value(value)
        return ast.Setting(name, value, _outer(children))

    def state_decl(self, children: Children) -> ast.StateDecl:
        """`state NAME: TYPE (= VALUE)? (by REDUCER)?`."""
        name = self._name(children[1], "a state key")
        default: ast.JsonValue | None = None
        reducer: ast.Name | None = None
        rest = children[4:]
        if rest and isinstance(rest[-2], Token) and rest[-2].type == "BY":
            reducer = self._name(rest[-1], "a reducer")
            rest = rest[:-2]
        if rest:
            default = self._as_value(rest[1])
            self._check_value(default)
        return ast.StateDecl(name, children[3], default, _outer(children), reducer)

    def type_ref(self, children: Children) -> ast.TypeRef:
        """`NAME`, `NAME[TYPE]`, either with a trailing `?`."""
        name = ast.Name(str(children[0].value), token_span(children[0]))
        item = next((c for c in children if isinstance(c, ast.TypeRef)), None)
        nullable = isinstance(children[-1], Token) and children[-1].type == "QMARK"
        depth = 1 if item is None else item.depth + 1
        if depth == MAX_TYPE_DEPTH + 1:  # reported once, at the innermost type too deep
            self.problems.append(
                error(
                    "E003",
                    f"a type nested more than {MAX_TYPE_DEPTH} levels deep",
                    _outer(children),
                    help="declare the outer levels as `list` or `dict` (of any values)",
                )
            )
        return ast.TypeRef(name, item, nullable, _outer(children), depth)

    def node_decl(self, children: Children) -> ast.NodeDecl:
        """`node NAME = (for ITEM in KEY: | flow)? TOOL(args)? (with policies)?`."""
        name = self._name(children[1], "a node name")
        rest = children[3:]
        over = rest.pop(0) if isinstance(rest[0], ast.MapOver) else None
        subflow = isinstance(rest[0], Token) and rest[0].type == "FLOW"
        if subflow:
            rest.pop(0)
        tool = self._name(rest[0], "a tool name")
        args: tuple[ast.Argument, ...] | None = None
        positional: tuple[ast.JsonValue, ...] = ()
        policies: tuple[ast.Policy, ...] = ()
        end = _span_of(rest[0])
        for part, span in rest[1:]:
            if part and isinstance(part[0], ast.Policy):
                policies = part
            else:
                args = tuple(a for a in part if isinstance(a, ast.Argument))
                positional = tuple(a for a in part if isinstance(a, ast.JsonValue))
            end = span
        return ast.NodeDecl(
            name, tool, args, _span_of(children[0]).to(end), policies, positional, over, subflow
        )

    def map_over(self, children: Children) -> ast.MapOver:
        """`for ITEM in KEY:`."""
        item = self._name(children[1], "an item's name")
        source = self._name(children[3], "a state key")
        return ast.MapOver(item, source, _outer(children))

    def call_args(
        self, children: Children
    ) -> tuple[tuple[ast.Argument | ast.JsonValue, ...], Span]:
        """`( argument or value, ... )`."""
        parts: list[ast.Argument | ast.JsonValue] = []
        for part in _strip(children):
            if isinstance(part, ast.Argument):
                parts.append(part)
            else:
                value = self._as_value(part)
                self._check_value(value)
                parts.append(value)
        return tuple(parts), _outer(children)

    def policies(self, children: Children) -> tuple[tuple[ast.Policy, ...], Span]:
        """`with policy, ...`."""
        return tuple(_strip(children)), _outer(children)

    def policy(self, children: Children) -> ast.Policy:
        """`NAME = VALUE` after `with`."""
        name = self._name(children[0], "a policy name")
        if isinstance(children[2], ast.Name):  # `on_error = fallback`
            return ast.Policy(name, children[2], _outer(children))
        value = self._as_value(children[2])
        self._check_value(value)
        return ast.Policy(name, value, _outer(children))

    def argument(self, children: Children) -> ast.Argument:
        """`NAME = VALUE`."""
        name = self._name(children[0], "a parameter name")
        value = self._as_value(children[2])
        self._check_value(value)
        return ast.Argument(name, value, _outer(children))

    def route(self, children: Children) -> ast.Route:
        """`a -> b -> c` with an optional branch on `c`."""
        parts = _strip(children)
        branch = parts.pop() if isinstance(parts[-1], ast.Branch) else None
        return ast.Route(tuple(parts), branch, _outer(children))

    def parallel(self, children: Children) -> ast.Parallel:
        """`[chain, chain, ...]`: parallel branches."""
        return ast.Parallel(tuple(_strip(children)), _outer(children))

    def chain(self, children: Children) -> tuple[ast.Name, ...]:
        """`b -> b2`: one parallel branch."""
        return tuple(_strip(children))

    def branch(self, children: Children) -> ast.Branch:
        """`? arm : arm : otherwise`."""
        parts = _strip(children)
        return ast.Branch(tuple(parts[:-1]), parts[-1], _outer(children))

    def arm(self, children: Children) -> ast.Arm:
        """`CONDITION -> target`; a condition nested too deep is an E003."""
        condition = children[0]
        nesting, tree_depth, _ = self._shape(condition)
        problem = nesting_problem(nesting, tree_depth)
        if problem is not None:
            self.problems.append(error("E003", problem, condition.span, help=NESTING_HELP))
        return ast.Arm(condition, children[2], _outer(children))

    def node_ref(self, children: Children) -> ast.Name:
        """A node name, `start` or `end`."""
        tok = children[0]
        if tok.type == "NAME":
            return self._name(tok, "a node name")
        return ast.Name(str(tok.value), token_span(tok))

    # ------------------------------------------------------------- static values

    def negative(self, children: Children) -> ast.JsonValue:
        """`-NUMBER` in a static value."""
        value = self._decode(children[1])[1]
        return ast.JsonValue(-value, _outer(children))

    def list_value(self, children: Children) -> ast.JsonValue:
        """`[value, ...]`."""
        items = [self._as_value(c).value for c in _strip(children)]
        return ast.JsonValue(items, _outer(children))

    def object_value(self, children: Children) -> ast.JsonValue:
        """`{"key": value, ...}`; a repeated key is an error."""
        members: dict[str, ast.Value] = {}
        for key_tok, value in _strip(children):
            key = self._decode(key_tok)[1]
            if key in members:
                self.problems.append(
                    error(
                        "E016", f"duplicate key {key_tok.value} in an object", token_span(key_tok)
                    )
                )
            members[key] = value
        return ast.JsonValue(members, _outer(children))

    def member(self, children: Children) -> tuple[Token, ast.Value]:
        """`"key": value`."""
        return children[0], self._as_value(children[2]).value

    # ---------------------------------------------------------------- conditions

    def literal(self, children: Children) -> ast.Literal:
        """`3`, `2.5`, `"s"`, `true`, `false`, `null`."""
        tok = children[0]
        kind, value = self._decode(tok)
        return self._shaped(ast.Literal(kind, value, token_span(tok)), 1, 1, ATOM)

    def binary(self, children: Children) -> ast.Binary:
        """`left OP right`; `not in` arrives as two tokens."""
        op = "not in" if len(children) == 4 else str(children[1].value)
        left, right = self._shape(children[0]), self._shape(children[-1])
        node = ast.Binary(op, children[0], children[-1], _outer(children))  # type: ignore[arg-type]
        nesting = binary_nesting(op, left, right)
        return self._shaped(node, nesting, 1 + max(left[1], right[1]), LEVELS[op])

    def unary(self, children: Children) -> ast.Unary:
        """`not x`, `-x`."""
        op = str(children[0].value)
        nesting, tree_depth, _ = self._shape(children[1])
        node = ast.Unary(op, children[1], _outer(children))  # type: ignore[arg-type]
        level = LEVELS["not" if op == "not" else "neg"]
        return self._shaped(node, nesting + 1, tree_depth + 1, level)

    def group(self, children: Children) -> ast.Expr:
        """`( condition )`: parentheses leave no node but widen its span, and nest a level."""
        nesting, tree_depth, _ = self._shape(children[1])
        node: ast.Expr = replace(children[1], span=_outer(children))
        self._shapes[id(node)] = (nesting + 1, tree_depth, ATOM)
        return node

    def _container(self, items: tuple[ast.Expr, ...]) -> tuple[int, int]:
        """Nesting and tree depth of a call or a list of `items`.

        In the IR its items sit in a JSON array: the call or list is two levels of the tree.
        """
        shapes = [self._shape(item) for item in items]
        nesting = 1 + max((shape[0] for shape in shapes), default=0)
        return nesting, 2 + max((shape[1] for shape in shapes), default=0)

    def list_expr(self, children: Children) -> ast.ListExpr:
        """`[a, b]` in a condition."""
        node = ast.ListExpr(tuple(_strip(children)), _outer(children))
        return self._shaped(node, *self._container(node.items), ATOM)

    def call(self, children: Children) -> ast.Call:
        """`name(args)`."""
        name = self._name(children[0], "a function name")
        node = ast.Call(name.text, tuple(_strip(children[1:])), _outer(children), name.span)
        return self._shaped(node, *self._container(node.args), ATOM)

    def path_expr(self, children: Children) -> ast.PathExpr:
        """`a.b[0]["k"][-1]`; after a `.`, any name is a key, reserved words too.

        `state.end`, `state["a b"]`: the keys after `state`, for a first key that is reserved
        or no name.
        """
        parts: list[str | int] = []
        if children[0].type != "STATE":
            key = children[0].value
            read = f"to read the state key `{key}`, write `state.{key}`"
            parts.append(self._name(children[0], "a path", read).text)
        if len(children) == 1 and children[0].value in PYTHON_CONSTANTS:  # `ok == True`
            self.problems.append(python_constant(children[0]))
        negate = False
        for tok in children[1:]:
            kind = tok.type
            if kind == "NAME":
                parts.append(str(tok.value))
            elif kind == "MINUS":
                negate = True
            elif kind in ("INT", "STRING"):
                value = self._decode(tok)[1]
                parts.append(-value if negate else value)
                negate = False
        # The path's keys sit in a JSON array in the IR: two levels of the tree.
        return self._shaped(ast.PathExpr(tuple(parts), _outer(children)), 1, 2, ATOM)


def python_constant(tok: Token) -> Diagnostic:
    """W017: Python's `True`, `False` or `None` in a condition, where it reads a state key."""
    meant = PYTHON_CONSTANTS[tok.value]
    return warning(
        "W017",
        f"`{tok.value}` reads the state key `{tok.value}`; it is not the constant `{meant}`",
        token_span(tok),
        help=f"write `{meant}`",
    )


def value_depth_exceeds(root: ast.Value, limit: int) -> bool:
    """Whether a static value nests lists and objects more than `limit` deep (no recursion)."""
    stack: list[tuple[ast.Value, int]] = [(root, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, list):
            stack += [(child, depth + 1) for child in item]
        elif isinstance(item, dict):
            stack += [(child, depth + 1) for child in item.values()]
    return False
