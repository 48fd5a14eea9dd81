"""Conditions -> diagnostics: functions and arity, types visible without running, constants.

Static types are checked by running the runtime's own operator tables on a sample value
of each known type, so a compile-time type error says exactly what the run would say.
A path's type comes from the data-flow analysis when it knows it; an operand of unknown
type is tried with a sample of every kind, so `x in 5` is an error whatever `x` is.
Constants are folded with the same tables and the same limits as a run: an overflow, a
division by zero or a value over a limit is a diagnostic where it is written.  A branch's
arms that are constant (E308, E309, W504) or covered by an earlier arm (W505) are found
here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import product
from typing import Any

from flowc.compiler.coverage import Coverage, same_test
from flowc.compiler.operators import (
    BINARY,
    FUNCTIONS,
    Budget,
    LimitError,
    OperatorError,
    article,
    negate,
    require_bool,
    type_name,
)
from flowc.compiler.program import Arm, Branch
from flowc.compiler.suggestions import did_you_mean
from flowc.compiler.types import FlowType
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, Span, error, warning
from flowc.dsl.formatter import format_expr
from flowc.dsl.limits import MAX_CONDITION_SIZE

#: Each function's argument count: (fewest, most or None for any number).
SIGNATURES: dict[str, tuple[int, int | None]] = {
    "len": (1, 1),
    "abs": (1, 1),
    "min": (1, None),
    "max": (1, None),
    "exists": (1, 1),
    "default": (2, 2),
}
#: Functions whose first argument is a path, not a value.
PATH_FUNCTIONS = frozenset(["exists", "default"])
#: A call of each function as the help of a wrong call shows it.
_EXAMPLES = {
    "len": "len(issues)", "abs": "abs(delta)", "min": "min(score, 100)",
    "max": "max(attempts, 1)", "exists": "exists(review.score)", "default": "default(attempts, 0)",
}  # fmt: skip
#: Other languages' names for the functions: `length(x)` means `len(x)`.
_ALIASES = {
    "length": "len", "lenght": "len", "size": "len", "count": "len", "count_of": "len",
    "minimum": "min", "maximum": "max", "absolute": "abs", "fabs": "abs", "has": "exists",
    "defined": "exists", "isset": "exists", "get": "default", "coalesce": "default",
}  # fmt: skip

ANY = "any"
_SAMPLES: dict[str, Any] = {
    "int": 1, "float": 1.5, "number": 1, "string": "s", "bool": True, "null": None, "list": [],
    "object": {},
}  # fmt: skip
#: What an operand of unknown type may be: an operation that fails on every one of these
#: fails whatever the run gives it (`x in 5`, `x + true`).
_ANY_SAMPLES: tuple[Any, ...] = (1, 1.5, "s", True, None, [], {})
#: Operands of unknown type tried together at most (7 ** 2 sample runs).
_MAX_UNKNOWN_OPERANDS = 2
#: The kind a value of each declared type is checked as.
_KINDS: dict[str, str] = {
    "str": "string", "int": "int", "float": "float", "bool": "bool", "list": "list",
    "dict": "object", "null": "null",
}  # fmt: skip

#: The type of a path into the state, where the checks know it (`any` elsewhere).
PathTypes = Callable[[ast.PathExpr], FlowType]


class _Unknown:
    """Stands for an operand of unknown type in a message: shown as `any`."""


_Unknown.__name__ = "any"
_UNKNOWN = _Unknown()


_COMPARISONS = frozenset(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
#: What `_outcome` found for an operator or function and its operand kinds.
_UNKNOWN_OUTCOMES: dict[tuple[str, tuple[str, ...]], tuple[str, OperatorError | None]] = {}


def _outcome(
    function: Any, types: tuple[str, ...], unknown: list[int]
) -> tuple[str, OperatorError | None]:
    """The result's kind (or `any`), or the error when no value of the unknown operands works."""
    kinds: set[str] = set()
    for choice in product(_ANY_SAMPLES, repeat=len(unknown)):
        values = [_SAMPLES.get(t) for t in types]
        for index, value in zip(unknown, choice, strict=True):
            values[index] = value
        try:
            kinds.add(type_name(function(*values)))
        except OperatorError:
            continue
    if kinds:
        return (kinds.pop() if len(kinds) == 1 else ANY), None
    try:
        function(*(_UNKNOWN if t == ANY else _SAMPLES[t] for t in types))
    except OperatorError as problem:
        return ANY, problem
    return ANY, None


def _kind(flow_type: FlowType) -> str:
    """The sample kind a value of `flow_type` is checked as (`any` when it is unknown).

    A nullable type is checked as its non-null kind: every operation that fails on a value
    of that kind fails on null too, except `==`, `!=` and `in` a list, which take both.
    """
    return _KINDS.get(flow_type.kind, ANY)


def _operator_problem(problem: OperatorError, expr: ast.Expr) -> Diagnostic:
    """E306 for a value over a limit of conditions, else E303: what the run would say."""
    if isinstance(problem, LimitError):
        return error("E306", str(problem), expr.span)
    return error("E303", str(problem), expr.span, help=_operator_help(str(problem), expr))


def _operator_help(message: str, expr: ast.Expr) -> str | None:
    """What to write instead of an operation that always fails."""
    if message == "division by zero":
        return "the divisor is always 0 here: divide by something else"
    if isinstance(expr, ast.Call):
        if message.endswith("of an empty list"):
            return f"give `{expr.function}()` at least one value: `{_EXAMPLES[expr.function]}`"
        return f"for example `{_EXAMPLES.get(expr.function, expr.function + '(x)')}`"
    if isinstance(expr, ast.Unary):
        if expr.op == "not":
            return "`not` takes true or false: compare first, as in `not (x > 0)`"
        return "unary `-` takes a number"
    if not isinstance(expr, ast.Binary):
        return None
    op = expr.op
    bools = "bool" in message
    for side in (expr.left, expr.right):
        if isinstance(side, ast.Literal) and isinstance(side.value, str) and op != "==":
            number = side.value.strip()
            if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", number):
                return f"`{format_expr(side)}` is a string: write the number `{number}`"
    if op in ("<", "<=", ">", ">="):
        if bools:
            return "true and false are not ordered: test a bool alone (`ok`, `not ok`) or with `==`"
        return f"`{op}` orders two numbers or two strings: compare other values with `==` or `!=`"
    if op in ("in", "not in"):
        return (
            f"`{op}` looks for an item in a list, a string or an object: "
            "compare single values with `==`"
        )
    if op == "+":
        return "`+` adds two numbers, or joins two strings or two lists" + (
            "; true and false are not numbers" if bools else ""
        )
    if op in ("-", "*", "/", "%"):
        return f"`{op}` takes two numbers" + ("; true and false are not numbers" if bools else "")
    if op in ("and", "or"):
        return f"`{op}` joins two conditions: compare first, as in `x > 0 {op} y > 0`"
    return None


class _Checker:
    def __init__(self, path_types: PathTypes | None = None) -> None:
        self.problems: list[Diagnostic] = []
        self.budget = Budget()
        self.path_types = path_types

    def infer(self, expr: ast.Expr) -> str:
        """The static type of `expr`, or "any" when only the run can tell."""
        if isinstance(expr, ast.Literal):
            return expr.kind
        if isinstance(expr, ast.PathExpr):
            return ANY if self.path_types is None else _kind(self.path_types(expr))
        if isinstance(expr, ast.ListExpr):
            for item in expr.items:
                self.infer(item)
            return "list"
        if isinstance(expr, ast.Call):
            return self.call(expr)
        if isinstance(expr, ast.Unary):
            operand = self.infer(expr.operand)
            if expr.op == "not":
                return self.apply(expr, lambda v: require_bool(v, "`not`"), operand)
            return self.apply(expr, negate, operand)
        left, right = self.infer(expr.left), self.infer(expr.right)
        if expr.op in ("and", "or"):
            where = f"`{expr.op}`"
            self.apply(expr.left, lambda v: require_bool(v, where), left)
            self.apply(expr.right, lambda v: require_bool(v, where), right)
            return "bool"
        operator = BINARY[expr.op]
        return self.apply(expr, lambda a, b: operator(a, b, self.budget), left, right)

    def apply(self, expr: ast.Expr, function: Any, *types: str) -> str:
        if ANY in types:
            return self.apply_unknown(expr, function, types)
        try:
            result = function(*(_SAMPLES[t] for t in types))
        except OperatorError as problem:
            self.problems.append(_operator_problem(problem, expr))
            return ANY
        kind = type_name(result)
        return "number" if "number" in types and kind in ("int", "float") else kind

    def apply_unknown(self, expr: ast.Expr, function: Any, types: tuple[str, ...]) -> str:
        """Check the operands whose types are known against every value the others may be.

        An error when no value of the unknown operands would do (`x in 5`); otherwise the
        result's kind when every value that works gives the same kind, else `any`.
        """
        unknown = [i for i, t in enumerate(types) if t == ANY]
        if len(unknown) == len(types) or len(unknown) > _MAX_UNKNOWN_OPERANDS:
            # Every operator takes some values; a comparison always gives a bool.
            if isinstance(expr, ast.Binary) and expr.op in _COMPARISONS:
                return "bool"
            return "bool" if isinstance(expr, ast.Unary) and expr.op == "not" else ANY
        name: str = expr.function if isinstance(expr, ast.Call) else ""
        if isinstance(expr, (ast.Binary, ast.Unary)):
            name = expr.op
        key = (name, types)
        known = _UNKNOWN_OUTCOMES.get(key)
        if known is None:
            known = _UNKNOWN_OUTCOMES[key] = _outcome(function, types, unknown)
        kind, problem = known
        if problem is not None:
            self.problems.append(_operator_problem(problem, expr))
        return kind

    def call(self, call: ast.Call) -> str:
        name = call.function
        if name not in SIGNATURES:
            self.problems.append(
                error(
                    "E301",
                    f"unknown function `{name}`",
                    call.name_span,
                    help=did_you_mean(name, SIGNATURES)
                    or (f"did you mean `{_ALIASES[name]}`?" if name in _ALIASES else None)
                    or f"the functions are {', '.join(sorted(SIGNATURES))}",
                )
            )
            for arg in call.args:
                self.infer(arg)
            return ANY
        fewest, most = SIGNATURES[name]
        count = len(call.args)
        if count < fewest or (most is not None and count > most):
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            plural = "" if (most == 1) else "s"
            self.problems.append(
                error(
                    "E302",
                    f"`{name}()` takes {wanted} argument{plural}, {count} given",
                    call.span,
                    help=f"for example `{_EXAMPLES[name]}`",
                )
            )
            return ANY
        if name in PATH_FUNCTIONS:
            if not isinstance(call.args[0], ast.PathExpr):
                self.problems.append(
                    error(
                        "E304",
                        f"the first argument of `{name}()` must be a path into the state",
                        call.args[0].span,
                        help=f"for example `{name}(attempts{', 0' if name == 'default' else ''})`",
                    )
                )
            for arg in call.args[1:]:
                self.infer(arg)
            return "bool" if name == "exists" else ANY
        types = [self.infer(arg) for arg in call.args]
        if name in ("min", "max") and len(types) == 1 and types[0] == "list":
            return ANY  # the list's elements are not typed
        function = FUNCTIONS[name]
        kind = self.apply(call, lambda *values: function(values, self.budget), *types)
        return "int" if name == "len" else kind


def check_condition(expr: ast.Expr, path_types: PathTypes | None = None) -> list[Diagnostic]:
    """Errors in one condition: unknown functions, arity, types, a non-boolean result.

    An operator that fails on constant operands (`1 / 0`, `min([])`) is an error too: it
    fails whenever the run evaluates it.  `path_types` gives the types of state paths.
    """
    return _checked(expr, path_types)[0]


_NOT_CONSTANT = object()


def _checked(expr: ast.Expr, path_types: PathTypes | None = None) -> tuple[list[Diagnostic], Any]:
    """The errors in `expr`; without any, also its value if it reads no state."""
    checker = _Checker(path_types)
    kind = checker.infer(expr)
    if kind not in (ANY, "bool"):
        checker.problems.append(
            error(
                "E305",
                f"a condition must be true or false, but this one is {article(kind)} {kind}",
                expr.span,
                help="compare it with something, for example `x > 0`",
            )
        )
    # Fold even when the types are wrong somewhere: `1 / 0` elsewhere fails all the same.
    # The folder meets the checker's type errors again, at the same places: kept once.
    typed = len(checker.problems)
    value = _Folder(checker.problems).fold(expr)
    seen = {(d.span, d.message) for d in checker.problems[:typed]}
    problems = checker.problems[:typed]
    for found in checker.problems[typed:]:
        if (found.span, found.message) not in seen:
            seen.add((found.span, found.message))
            problems.append(found)
    return problems, (_NOT_CONSTANT if problems else value)


class _Folder:
    """Constant folding with the run's operator tables, limits and budget of work."""

    def __init__(self, problems: list[Diagnostic]) -> None:
        self.problems = problems
        self.budget = Budget()

    def fold(self, expr: ast.Expr) -> Any:
        """The value of `expr` when it reads no state, else `_NOT_CONSTANT`.

        An operator that fails on constant operands adds an E303 (E306 for a limit).
        """
        if isinstance(expr, ast.Literal):
            return expr.value
        if isinstance(expr, ast.PathExpr):
            return _NOT_CONSTANT
        if isinstance(expr, ast.ListExpr):
            items = [self.fold(item) for item in expr.items]
            return _NOT_CONSTANT if any(item is _NOT_CONSTANT for item in items) else items
        if isinstance(expr, ast.Call):
            args = [self.fold(arg) for arg in expr.args]
            function = FUNCTIONS.get(expr.function)
            if function is None:  # `exists` and `default` read the state
                return _NOT_CONSTANT
            return self.apply(expr, lambda *values: function(values, self.budget), args)
        if isinstance(expr, ast.Unary):
            operand = self.fold(expr.operand)
            if expr.op == "not":
                return self.apply(expr, lambda v: not require_bool(v, "`not`"), [operand])
            return self.apply(expr, negate, [operand])
        left, right = self.fold(expr.left), self.fold(expr.right)
        if expr.op in ("and", "or"):
            # The type check has made sure that constant sides are bools.
            if left is _NOT_CONSTANT or left is (expr.op == "or"):
                return left  # unknown, or decided: `or` stops at true, `and` at false
            return right
        operator = BINARY[expr.op]
        return self.apply(expr, lambda a, b: operator(a, b, self.budget), [left, right])

    def apply(self, expr: ast.Expr, function: Callable[..., Any], values: list[Any]) -> Any:
        """`function(*values)` when every value is known; a failure is a diagnostic."""
        if any(value is _NOT_CONSTANT for value in values):
            return _NOT_CONSTANT
        try:
            return function(*values)
        except OperatorError as problem:
            self.problems.append(_operator_problem(problem, expr))
            return _NOT_CONSTANT


def condition_size(expr: ast.Expr, limit: int = MAX_CONDITION_SIZE) -> int:
    """How many operators, calls, lists, paths and literals `expr` holds, up to `limit + 1`.

    Counted without recursion, and no further than one past the limit.
    """
    count = 0
    pending: list[ast.Expr] = [expr]
    while pending and count <= limit:
        item = pending.pop()
        count += 1
        if isinstance(item, ast.Binary):
            pending += (item.left, item.right)
        elif isinstance(item, ast.Unary):
            pending.append(item.operand)
        elif isinstance(item, ast.ListExpr):
            pending += item.items
        elif isinstance(item, ast.Call):
            pending += item.args
    return count


def check_branch(branch: Branch, path_types: PathTypes | None = None) -> list[Diagnostic]:
    """Every condition of a branch, then arms that are constant or can never be taken.

    An always-false arm (E308) and an always-true arm with arms after it (E309) are errors:
    a target is unreachable through them.  An always-true last arm is a warning (W504); an
    arm that an earlier arm covers is a warning (W505).
    """
    problems: list[Diagnostic] = []
    coverage = Coverage()
    decided = False
    for index, arm in enumerate(branch.arms):
        condition = arm.condition
        size = condition_size(condition)
        if size > MAX_CONDITION_SIZE:
            problems.append(
                error(
                    "E307",
                    f"the condition has more than {MAX_CONDITION_SIZE:,} operators, calls, "
                    "lists, paths and literals",
                    condition.span,
                    help="split the condition, or name intermediate results in the state",
                )
            )
            continue
        errors, value = _checked(condition, path_types)
        problems += errors
        if errors or decided:
            continue  # after an always-true arm, E309 has said all there is to say
        if value is True:
            problems.append(_always_true(branch, index))
            decided = True
            continue
        if value is False:
            problems.append(
                error(
                    "E308",
                    f"the condition is always false, so this arm never leads to `{arm.target}`",
                    condition.span,
                    help="remove the arm, or test the state (for example `exists(key)`)",
                )
            )
            continue
        cover = coverage.covering(condition)
        if cover is not None:
            problems.append(_covered(condition, cover, arm.span))
            continue
        coverage.add(arm)
    return problems


def _always_true(branch: Branch, index: int) -> Diagnostic:
    arm = branch.arms[index]
    later = [later_arm.target for later_arm in branch.arms[index + 1 :]]
    if not later:
        return warning(
            "W504",
            "the condition does not read the state and is always true",
            arm.condition.span,
            help=f"use a plain edge instead: `-> {arm.target}`",
        )
    shown = ", ".join(f"`{target}`" for target in dict.fromkeys(later))
    plural = "s" if len(later) > 1 else ""
    return error(
        "E309",
        f"the condition is always true, so the arm{plural} after it (to {shown}) "
        "can never be taken",
        arm.condition.span,
        help=f"make it the last arm, or remove the arm{plural} after it",
    )


def _covered(condition: ast.Expr, cover: Arm, span: Span) -> Diagnostic:
    shown = format_expr(cover.condition)
    if same_test(condition, cover.condition):
        message = f"this arm is never taken: an earlier arm tests `{shown}`"
        hint = "remove the arm"
    else:
        message = (
            f"this arm is never taken: whenever `{format_expr(condition)}` is true, "
            f"the earlier arm `{shown}` on line {cover.condition.span.line} is true too"
        )
        hint = f"remove the arm, or move it before the arm `{shown}`"
    return warning("W505", message, span, help=hint)
