"""Lark parse callbacks -> AST: one method per grammar rule, each returning an AST node.

Used as Lark's inline transformer, so no parse tree is built.  Problems that the grammar
cannot express (reserved words used as names, bad escapes) are collected in `problems`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lark import Token, Transformer

from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, Span, error
from flowc.dsl.literals import LiteralProblem, decode_float, decode_int, decode_string

RESERVED = frozenset(
    ["flow", "set", "node", "start", "end", "and", "or", "not", "in", "true", "false", "null"]
)

_PUNCTUATION = frozenset(
    ["ARROW", "QMARK", "COLON", "SEMICOLON", "EQUALS", "COMMA", "LPAR", "RPAR", "LSQB",
     "RSQB", "LBRACE", "RBRACE", "DOT", "FLOW", "SET", "NODE", "WITH"]
)  # fmt: skip

Children = list[Any]


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

    # ------------------------------------------------------------------ helpers

    def _name(self, tok: Token, what: str) -> ast.Name:
        span = token_span(tok)
        if tok.type != "NAME" or tok.value in RESERVED:
            self.problems.append(
                error(
                    "E014",
                    f"`{tok.value}` is a reserved word and cannot be used as {what}",
                    span,
                    help=f"rename it, for example `{tok.value}_`",
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

    @staticmethod
    def _as_value(item: Any) -> ast.JsonValue:
        if isinstance(item, ast.Literal):
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
        return ast.Setting(name, self._as_value(children[3]), _outer(children))

    def node_decl(self, children: Children) -> ast.NodeDecl:
        """`node NAME = TOOL(args)? (with policies)?`."""
        name = self._name(children[1], "a node name")
        tool = self._name(children[3], "a tool name")
        args: tuple[ast.Argument, ...] | None = None
        policies: tuple[ast.Policy, ...] = ()
        end = _span_of(children[3])
        for part, span in children[4:]:
            if part and isinstance(part[0], ast.Policy):
                policies = part
            else:
                args = part
            end = span
        return ast.NodeDecl(name, tool, args, _span_of(children[0]).to(end), policies)

    def call_args(self, children: Children) -> tuple[tuple[ast.Argument, ...], Span]:
        """`( argument, ... )`."""
        return tuple(_strip(children)), _outer(children)

    def policies(self, children: Children) -> tuple[tuple[ast.Policy, ...], Span]:
        """`with policy, ...`."""
        return tuple(_strip(children)), _outer(children)

    def policy(self, children: Children) -> ast.Policy:
        """`NAME = VALUE` after `with`."""
        name = self._name(children[0], "a policy name")
        return ast.Policy(name, self._as_value(children[2]), _outer(children))

    def argument(self, children: Children) -> ast.Argument:
        """`NAME = VALUE`."""
        name = self._name(children[0], "a parameter name")
        return ast.Argument(name, self._as_value(children[2]), _outer(children))

    def route(self, children: Children) -> ast.Route:
        """`a -> b -> c` with an optional branch on `c`."""
        parts = _strip(children)
        branch = parts.pop() if isinstance(parts[-1], ast.Branch) else None
        return ast.Route(tuple(parts), branch, _outer(children))

    def branch(self, children: Children) -> ast.Branch:
        """`? arm : arm : otherwise`."""
        parts = _strip(children)
        return ast.Branch(tuple(parts[:-1]), parts[-1], _outer(children))

    def arm(self, children: Children) -> ast.Arm:
        """`CONDITION -> target`."""
        return ast.Arm(children[0], children[2], _outer(children))

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
        return ast.Literal(kind, value, token_span(tok))

    def binary(self, children: Children) -> ast.Binary:
        """`left OP right`; `not in` arrives as two tokens."""
        op = "not in" if len(children) == 4 else str(children[1].value)
        return ast.Binary(op, children[0], children[-1], _outer(children))  # type: ignore[arg-type]

    def unary(self, children: Children) -> ast.Unary:
        """`not x`, `-x`."""
        return ast.Unary(str(children[0].value), children[1], _outer(children))  # type: ignore[arg-type]

    def group(self, children: Children) -> ast.Expr:
        """`( condition )`: parentheses only group, they leave no node but widen its span."""
        return replace(children[1], span=_outer(children))  # type: ignore[no-any-return]

    def list_expr(self, children: Children) -> ast.ListExpr:
        """`[a, b]` in a condition."""
        return ast.ListExpr(tuple(_strip(children)), _outer(children))

    def call(self, children: Children) -> ast.Call:
        """`name(args)`."""
        name = self._name(children[0], "a function name")
        return ast.Call(name.text, tuple(_strip(children[1:])), _outer(children), name.span)

    def path_expr(self, children: Children) -> ast.PathExpr:
        """`a.b[0]["k"][-1]`; after a `.`, any name is a key, reserved words too."""
        parts: list[str | int] = [self._name(children[0], "a path").text]
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
        return ast.PathExpr(tuple(parts), _outer(children))
