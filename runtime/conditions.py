"""IR condition trees -> Python closures over the allow-list operator tables.

Each condition is compiled once per flow; a run then calls plain closures, with no tree
walk per step, no `eval` and no attribute access on user data (paths index dicts and
lists only).  A failure raises `ConditionError` naming the condition's line, the path,
the value found and its type; nothing else escapes.

Costs are bounded: the steps of an evaluation by the condition's size, checked once here
(`MAX_CONDITION_SIZE`); the values it builds and the work it does on them by the operator
tables, against a `Budget` that the caller may share between the arms of a branch.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

from flowc.compiler.ir import Expr, Span
from flowc.compiler.operators import (
    BINARY,
    FLIPPED,
    FUNCTIONS,
    NUMBER_ORDER,
    Budget,
    LimitError,
    OperatorError,
    article,
    negate,
    not_a_bool,
    type_name,
)
from flowc.dsl.limits import CHARACTERS_PER_UNIT, MAX_CONDITION_SIZE

State = dict[str, Any]
#: An IR expression (a validated `compiler.ir.Expr`), read as a plain mapping.
Node = Mapping[str, Any]
Evaluator = Callable[[State, Budget], Any]
Path = Sequence[str | int]

#: A message shows a value in at most this many characters, `...` included.
SHOWN_CHARACTERS = 60
#: A missing-key message lists at most this many of the keys present.
SHOWN_KEYS = 12

_MISSING = object()
#: Messages show values and keys as JSON, with their own characters rather than escapes.
_JSON = json.JSONEncoder(ensure_ascii=False)


class ConditionError(Exception):
    """A condition could not be evaluated.

    `code` is `missing_key`, `condition_error`, or `condition_limit` when evaluating it
    would go over a limit (a value too large, too much work).
    """

    def __init__(self, code: str, message: str, span: Span | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.span = span


def show(value: Any) -> str:
    """A value as a message shows it: JSON (else Python's repr), cut short when long."""
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError):
        text = _unencodable(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return text[: SHOWN_CHARACTERS - 3] + "..."


def _unencodable(value: Any) -> str:
    """Python's repr of a value JSON cannot encode, or what it is when that fails too."""
    try:
        return repr(value)
    except (ValueError, RecursionError):  # an int of over 4,300 digits; a value too deep
        if isinstance(value, int):
            return f"<an integer of {value.bit_length():,} bits>"
        kind = type_name(value)
        return f"<{article(kind)} {kind} too deep to show>"


def path_text(parts: Path) -> str:
    """`review.score`, `issues[0].line`, `labels["needs review"]`: a path as the DSL writes it."""
    out = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.isascii():
            out += f".{part}"
        else:
            out += f"[{_JSON.encode(part)}]"
    return out


def _keys(container: dict[str, Any]) -> str:
    if not container:
        return "none"
    names = sorted(container)
    shown = ", ".join(f"`{name}`" for name in names[:SHOWN_KEYS])
    hidden = len(names) - SHOWN_KEYS
    return shown + (f" and {hidden} more" if hidden > 0 else "")


def _step(value: Any, part: str | int) -> Any:
    """A dict's key or a list's index (negative from the end); `_MISSING` when not there."""
    if isinstance(value, dict) and isinstance(part, str):
        return value.get(part, _MISSING)
    if isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
        return value[part]
    return _MISSING  # also for any step after a missing one: `_MISSING` is neither


def _resolve(state: State, parts: Path) -> Any:
    """The value at `parts` in `state`, or `_MISSING` when some step is not there."""
    value: Any = state
    for part in parts:
        value = _step(value, part)
    return value


def _not_found(state: State, parts: Path, span: Span | None, source: str) -> ConditionError:
    """Why `parts` does not resolve in `state`: the first step that fails, as an error."""
    value: Any = state
    index = 0
    while (found := _step(value, parts[index])) is not _MISSING:
        value, index = found, index + 1
    part = parts[index]
    where = "the state" if index == 0 else f"`{path_text(parts[:index])}`"
    if isinstance(value, dict) and isinstance(part, str):
        problem = f"no key `{part}` in {where}; keys present: {_keys(value)}"
        return ConditionError("missing_key", f"{source}: {problem}", span)
    if isinstance(value, list) and isinstance(part, int):
        problem = f"index {part} is out of range for {where}, a list of {len(value)}"
        return ConditionError("missing_key", f"{source}: {problem}", span)
    step = f"[{part}]" if isinstance(part, int) else f"`{part}`"
    problem = f"cannot look up {step} in {where}: it is {_described(value)}"
    return ConditionError("condition_error", f"{source}: {problem}", span)


def _described(value: Any) -> str:
    """`3, an int`: a value and its type, as messages show them."""
    kind = type_name(value)
    return f"{show(value)}, {article(kind)} {kind}"


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

    def fail(
        self,
        problem: str | OperatorError,
        span: Span | None,
        operands: Sequence[Node],
        values: Sequence[Any],
    ) -> NoReturn:
        """Raise a `condition_error`, with the value of each operand that reads a path.

        A `LimitError` is a `condition_limit` instead.
        """
        found = [
            f"`{path}` is {_described(value)}"
            for index, value in enumerate(values)
            if (path := _read_from(operands[index])) is not None
        ]
        detail = f" ({'; '.join(found)})" if found else ""
        code = "condition_limit" if isinstance(problem, LimitError) else "condition_error"
        raise ConditionError(code, f"{self.source}: {problem}{detail}", span)

    def compile(self, expr: Node) -> Evaluator:
        """The closure that evaluates `expr` against a state."""
        kind = expr["type"]
        span = expr.get("span")
        if kind == "literal":
            value = expr["value"]
            return lambda state, budget: value
        if kind == "list":
            items = [self.compile(item) for item in expr["items"]]
            return lambda state, budget: [item(state, budget) for item in items]
        if kind == "path":
            return self._path(expr, span)
        if kind == "unary":
            return self._unary(expr, span)
        if kind == "binary":
            return self._binary(expr, span)
        return self._call(expr, span)

    def _path(self, expr: Node, span: Span | None) -> Evaluator:
        parts = list(expr["path"])
        source = self.source
        if len(parts) == 1:  # the common case, on the hot path: one dict lookup
            key = parts[0]

            def lookup(state: State, budget: Budget) -> Any:
                value = state.get(key, _MISSING)
                if value is _MISSING:
                    raise _not_found(state, parts, span, source)
                return value

            return lookup

        def resolve(state: State, budget: Budget) -> Any:
            value = _resolve(state, parts)
            if value is _MISSING:
                raise _not_found(state, parts, span, source)
            return value

        return resolve

    def _unary(self, expr: Node, span: Span | None) -> Evaluator:
        operand_expr = expr["operand"]
        operand = self.compile(operand_expr)
        if expr["op"] == "not":

            def negation(state: State, budget: Budget) -> bool:
                value = operand(state, budget)
                if value is True or value is False:
                    return not value
                self.fail(not_a_bool(value, "`not`"), span, [operand_expr], [value])

            return negation

        def minus(state: State, budget: Budget) -> Any:
            value = operand(state, budget)
            try:
                return negate(value)
            except OperatorError as problem:
                self.fail(problem, span, [operand_expr], [value])

        return minus

    def _binary(self, expr: Node, span: Span | None) -> Evaluator:
        op = expr["op"]
        left_expr, right_expr = expr["left"], expr["right"]
        left, right = self.compile(left_expr), self.compile(right_expr)
        if op in ("and", "or"):
            stop = op == "or"  # `or` stops at the first true, `and` at the first false

            def logical(state: State, budget: Budget) -> bool:
                for side, side_expr in ((left, left_expr), (right, right_expr)):
                    value = side(state, budget)
                    if value is not True and value is not False:
                        self.fail(not_a_bool(value, f"`{op}`"), span, [side_expr], [value])
                    if value is stop:
                        return stop
                return not stop

            return logical
        apply = BINARY[op]
        compare = NUMBER_ORDER.get(op)
        if compare is not None:

            def ordered(state: State, budget: Budget) -> Any:
                a, b = left(state, budget), right(state, budget)
                # Two numbers, a routing decision's common case, inline: no work to count.
                kind_a, kind_b = type(a), type(b)
                if (kind_a is int or kind_a is float) and (kind_b is int or kind_b is float):
                    return compare(a, b)
                try:
                    return apply(a, b, budget)
                except OperatorError as problem:
                    self.fail(problem, span, [left_expr, right_expr], [a, b])

            return ordered

        def binary(state: State, budget: Budget) -> Any:
            a, b = left(state, budget), right(state, budget)
            try:
                return apply(a, b, budget)
            except OperatorError as problem:
                self.fail(problem, span, [left_expr, right_expr], [a, b])

        return binary

    def _call(self, expr: Node, span: Span | None) -> Evaluator:
        name = expr["function"]
        arg_exprs: list[Node] = expr["args"]
        if name in ("exists", "default"):
            parts = list(arg_exprs[0]["path"])
            if name == "exists":
                return lambda state, budget: _resolve(state, parts) is not _MISSING
            fallback = self.compile(arg_exprs[1])

            def default(state: State, budget: Budget) -> Any:
                value = _resolve(state, parts)
                return fallback(state, budget) if value is _MISSING or value is None else value

            return default
        function = FUNCTIONS[name]
        args = [self.compile(a) for a in arg_exprs]

        def call(state: State, budget: Budget) -> Any:
            values = [arg(state, budget) for arg in args]
            try:
                return function(values, budget)
            except OperatorError as problem:
                self.fail(problem, span, arg_exprs, values)

        return call


class Condition(Protocol):
    """A compiled condition: true or false for a state, or a `ConditionError`.

    `budget` is the work it may do on values; arms of one branch share one.  Without it,
    the condition gets a fresh budget of `MAX_CONDITION_WORK`.
    """

    def __call__(self, state: State, budget: Budget | None = None) -> bool:
        """True or false for `state`; a `ConditionError` when it cannot say."""
        ...


def compile_condition(expr: Expr | Node, source: str = "the condition") -> Condition:
    """A closure that evaluates `expr` against a state and insists on a bool result."""
    span = expr.get("span")
    size = _size(expr)
    if size > MAX_CONDITION_SIZE:
        return _refused(
            f"{source}: the condition has more than {MAX_CONDITION_SIZE:,} operators, calls, "
            "lists, paths and literals",
            span,
        )
    try:
        evaluate = _Compiler(source).compile(expr)
    except RecursionError:  # an IR that skipped the checks' nesting limits
        return _refused(f"{source}: the condition is too deeply nested to evaluate", span)

    def condition(state: State, budget: Budget | None = None) -> bool:
        try:
            value = evaluate(state, Budget() if budget is None else budget)
        except ConditionError:
            raise
        except (RecursionError, MemoryError):
            raise ConditionError(
                "condition_limit", f"{source}: the condition is too large to evaluate", span
            ) from None
        except Exception as exc:  # a bug or a value no run should hold: still no escape
            raise ConditionError(
                "condition_error", f"{source}: could not be evaluated: {type(exc).__name__}", span
            ) from None
        if value is True or value is False:
            return value
        raise ConditionError(
            "condition_error",
            f"{source}: a condition must be true or false, but it gave {_described(value)}",
            span,
        )

    return _quick(expr, condition) or condition


#: `==` and `!=`, as `_quick` inlines them: on two values of one type among these.
_EQUALITY: dict[str, Callable[[Any, Any], bool]] = {"==": operator.eq, "!=": operator.ne}
_QUICK_EQUAL = (int, float, bool, type(None), str)


def _quick(expr: Node, condition: Condition) -> Condition | None:
    """`condition` with its common case inline, for `KEY OP LITERAL` (or `LITERAL OP KEY`).

    A routing decision is most often one key compared with a constant: `n < 1000`,
    `status == "done"`.  Read straight from the state, a number ordered against a number,
    or a value equal to one of its own type (a string shorter than a unit of work), needs
    no evaluator, budget or check: the result is a bool.  Anything else (a missing key,
    another type, a long string) goes to `condition`, which says what is wrong or does the
    work the rules count.  None when `expr` has another shape.
    """
    if expr["type"] != "binary":
        return None
    op, left, right = expr["op"], expr["left"], expr["right"]
    if left["type"] != "path" and op in FLIPPED:
        left, right, op = right, left, FLIPPED[op]
    if left["type"] != "path" or len(left["path"]) != 1:
        return None
    key, constant = left["path"][0], _constant(right)
    if constant is _MISSING:
        return None
    kind = type(constant)
    order = NUMBER_ORDER.get(op)
    if order is not None and kind in (int, float):

        def ordered(state: State, budget: Budget | None = None) -> bool:
            try:
                value = state.get(key)
            except Exception:  # not a state any run holds: `condition` says what it is
                return condition(state, budget)
            kind_value = type(value)
            if kind_value is int or kind_value is float:
                return order(value, constant)
            return condition(state, budget)

        return ordered
    equal = _EQUALITY.get(op)
    if equal is not None and kind in _QUICK_EQUAL:

        def equality(state: State, budget: Budget | None = None) -> bool:
            try:
                value = state.get(key, _MISSING)
            except Exception:
                return condition(state, budget)
            if type(value) is kind and (kind is not str or len(value) < CHARACTERS_PER_UNIT):
                return equal(value, constant)
            return condition(state, budget)

        return equality
    return None


def _constant(expr: Node) -> Any:
    """The value of a literal, or of `-NUMBER` (`n > -1`); `_MISSING` for anything else."""
    if expr["type"] == "literal":
        return expr["value"]
    if expr["type"] == "unary" and expr["op"] == "-" and expr["operand"]["type"] == "literal":
        value = expr["operand"]["value"]
        if type(value) in (int, float):
            return -value
    return _MISSING


def _size(expr: Node) -> int:
    """The nodes of an IR condition, counted up to `MAX_CONDITION_SIZE + 1` without recursion."""
    count = 0
    pending = [expr]
    while pending and count <= MAX_CONDITION_SIZE:
        item = pending.pop()
        count += 1
        kind = item["type"]
        if kind == "binary":
            pending += (item["left"], item["right"])
        elif kind == "unary":
            pending.append(item["operand"])
        elif kind == "list":
            pending += item["items"]
        elif kind == "call":
            pending += item["args"]
    return count


def _refused(message: str, span: Span | None) -> Condition:
    """A condition that fails with `condition_limit` whenever it is evaluated."""

    def refused(state: State, budget: Budget | None = None) -> bool:
        raise ConditionError("condition_limit", message, span)

    return refused
