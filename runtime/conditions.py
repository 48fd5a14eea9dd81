"""IR condition trees -> Python closures over the allow-list operator tables.

Each condition is compiled once per flow; a run then calls plain closures, with no tree
walk per step, no `eval` and no attribute access on user data (paths index dicts and
lists only).  A failure raises `ConditionError` naming the condition's line, the path,
the value found and its type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from flowc.compiler.ir import Expr, Span
from flowc.compiler.operators import BINARY, FUNCTIONS, OperatorError, type_name

State = dict[str, Any]
#: An IR expression (a validated `compiler.ir.Expr`), read as a plain mapping.
Node = Mapping[str, Any]
Evaluator = Callable[[State], Any]

_MISSING = object()


class ConditionError(Exception):
    """A condition could not be evaluated; `code` is `missing_key` or `condition_error`."""

    def __init__(self, code: str, message: str, span: Span | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.span = span


def show(value: Any) -> str:
    """A value as a message shows it: JSON, cut short when long."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def path_text(parts: list[str | int]) -> str:
    """`review.score`, `issues[0].line`: a path as the DSL writes it."""
    out = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _keys(container: dict[str, Any]) -> str:
    if not container:
        return "none"
    names = sorted(container)
    shown = ", ".join(f"`{name}`" for name in names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _resolve(
    state: State, parts: list[str | int], span: Span | None, *, strict: bool, source: str = ""
) -> Any:
    """Follow `parts` through dicts and lists; missing -> `_MISSING`, or an error if strict."""
    value: Any = state
    for index, part in enumerate(parts):
        where = "the state" if index == 0 else f"`{path_text(parts[:index])}`"
        if isinstance(value, dict) and isinstance(part, str):
            found = value.get(part, _MISSING)
            if found is _MISSING:
                if not strict:
                    return _MISSING
                raise ConditionError(
                    "missing_key",
                    f"{source}no key `{part}` in {where}; keys present: {_keys(value)}",
                    span,
                )
            value = found
        elif isinstance(value, list) and isinstance(part, int):
            if not -len(value) <= part < len(value):
                if not strict:
                    return _MISSING
                raise ConditionError(
                    "missing_key",
                    f"{source}index {part} is out of range for {where}, a list of {len(value)}",
                    span,
                )
            value = value[part]
        else:
            if not strict:
                return _MISSING
            step = f"[{part}]" if isinstance(part, int) else f"`{part}`"
            raise ConditionError(
                "condition_error",
                f"{source}cannot look up {step} in {where}: "
                f"it is {show(value)}, a {type_name(value)}",
                span,
            )
    return value


def _read_from(expr: Node) -> str | None:
    """The path an operand reads, if it reads one directly: `x` or `default(x, 0)`."""
    if expr["type"] == "path":
        return path_text(expr["path"])
    if expr["type"] == "call" and expr["function"] == "default":
        return path_text(expr["args"][0]["path"])
    return None


class _Compiler:
    """One condition's closures; `source` names it in messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, problem: str, span: Span | None, operands: list[tuple[Node, Any]]) -> NoReturn:
        found = [
            f"`{_read_from(e)}` is {show(v)}, a {type_name(v)}"
            for e, v in operands
            if _read_from(e) is not None
        ]
        detail = f" ({'; '.join(found)})" if found else ""
        raise ConditionError("condition_error", f"{self.source}: {problem}{detail}", span)

    def compile(self, expr: Node) -> Evaluator:
        kind = expr["type"]
        span = expr.get("span")
        if kind == "literal":
            value = expr["value"]
            return lambda state: value
        if kind == "list":
            items = [self.compile(item) for item in expr["items"]]
            return lambda state: [item(state) for item in items]
        if kind == "path":
            parts = list(expr["path"])
            prefix = f"{self.source}: "
            if len(parts) == 1:
                key = parts[0]

                def lookup(state: State) -> Any:
                    value = state.get(key, _MISSING)
                    if value is _MISSING:
                        return _resolve(state, parts, span, strict=True, source=prefix)
                    return value

                return lookup
            return lambda state: _resolve(state, parts, span, strict=True, source=prefix)
        if kind == "unary":
            return self._unary(expr, span)
        if kind == "binary":
            return self._binary(expr, span)
        return self._call(expr, span)

    def _unary(self, expr: Node, span: Span | None) -> Evaluator:
        operand_expr = expr["operand"]
        operand = self.compile(operand_expr)
        if expr["op"] == "not":

            def negation(state: State) -> bool:
                value = operand(state)
                if value is True or value is False:
                    return not value
                self.fail("`not` needs a bool", span, [(operand_expr, value)])

            return negation

        def minus(state: State) -> Any:
            value = operand(state)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
            self.fail("unary `-` needs a number", span, [(operand_expr, value)])

        return minus

    def _binary(self, expr: Node, span: Span | None) -> Evaluator:
        op = expr["op"]
        left_expr, right_expr = expr["left"], expr["right"]
        left, right = self.compile(left_expr), self.compile(right_expr)
        if op in ("and", "or"):
            stop = op == "or"  # `or` stops at the first true, `and` at the first false

            def logical(state: State) -> bool:
                for side, side_expr in ((left, left_expr), (right, right_expr)):
                    value = side(state)
                    if value is not True and value is not False:
                        self.fail(f"`{op}` needs bools", span, [(side_expr, value)])
                    if value is stop:
                        return stop
                return not stop

            return logical
        apply = BINARY[op]

        def binary(state: State) -> Any:
            a, b = left(state), right(state)
            try:
                return apply(a, b)
            except OperatorError as problem:
                self.fail(str(problem), span, [(left_expr, a), (right_expr, b)])

        return binary

    def _call(self, expr: Node, span: Span | None) -> Evaluator:
        name = expr["function"]
        arg_exprs: list[Node] = expr["args"]
        if name in ("exists", "default"):
            parts = list(arg_exprs[0]["path"])
            if name == "exists":
                return lambda state: _resolve(state, parts, span, strict=False) is not _MISSING
            fallback = self.compile(arg_exprs[1])

            def default(state: State) -> Any:
                value = _resolve(state, parts, span, strict=False)
                return fallback(state) if value is _MISSING or value is None else value

            return default
        function = FUNCTIONS[name]
        args = [self.compile(a) for a in arg_exprs]

        def call(state: State) -> Any:
            values = [arg(state) for arg in args]
            try:
                return function(*values)
            except OperatorError as problem:
                self.fail(str(problem), span, list(zip(arg_exprs, values, strict=True)))

        return call


def compile_condition(expr: Expr | Node, source: str = "the condition") -> Callable[[State], bool]:
    """A closure that evaluates `expr` against a state and insists on a bool result."""
    evaluate = _Compiler(source).compile(expr)
    span = expr.get("span")

    def condition(state: State) -> bool:
        value = evaluate(state)
        if value is True or value is False:
            return value
        raise ConditionError(
            "condition_error",
            f"{source}: a condition must be true or false, but it gave {show(value)}, "
            f"a {type_name(value)}",
            span,
        )

    return condition
