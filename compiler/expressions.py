"""Conditions -> diagnostics: functions and arity, types visible without running, constants.

Static types are checked by running the runtime's own operator tables on a sample value
of each known type, so a compile-time type error says exactly what the run would say.
Constants are folded with the same tables and the same limits as a run: an overflow, a
division by zero or a value over a limit is a diagnostic where it is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from flowc.compiler.program import Branch
from flowc.compiler.suggestions import did_you_mean
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, error, warning
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

ANY = "any"
_SAMPLES: dict[str, Any] = {
    "int": 1, "float": 1.5, "number": 1, "string": "s", "bool": True, "null": None, "list": [],
}  # fmt: skip


def _operator_problem(problem: OperatorError, expr: ast.Expr) -> Diagnostic:
    """E306 for a value over a limit of conditions, else E303: what the run would say."""
    return error("E306" if isinstance(problem, LimitError) else "E303", str(problem), expr.span)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []
        self.budget = Budget()

    def infer(self, expr: ast.Expr) -> str:
        """The static type of `expr`, or "any" when only the run can tell."""
        if isinstance(expr, ast.Literal):
            return expr.kind
        if isinstance(expr, ast.PathExpr):
            return ANY
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
            return ANY
        try:
            result = function(*(_SAMPLES[t] for t in types))
        except OperatorError as problem:
            self.problems.append(_operator_problem(problem, expr))
            return ANY
        kind = type_name(result)
        return "number" if "number" in types and kind in ("int", "float") else kind

    def call(self, call: ast.Call) -> str:
        name = call.function
        if name not in SIGNATURES:
            self.problems.append(
                error(
                    "E301",
                    f"unknown function `{name}`",
                    call.name_span,
                    help=did_you_mean(name, SIGNATURES)
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


def check_condition(expr: ast.Expr) -> list[Diagnostic]:
    """Errors in one condition: unknown functions, arity, types, a non-boolean result.

    When the types are right, an operator that fails on constant operands (`1 / 0`,
    `min([])`) is an error too: it fails whenever the run evaluates it.
    """
    return _checked(expr)[0]


_NOT_CONSTANT = object()


def _checked(expr: ast.Expr) -> tuple[list[Diagnostic], Any]:
    """The errors in `expr`; without any, also its value if it reads no state."""
    checker = _Checker()
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
    if checker.problems:
        return checker.problems, _NOT_CONSTANT
    value = _Folder(checker.problems).fold(expr)
    return checker.problems, value


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


def check_branch(branch: Branch) -> list[Diagnostic]:
    """Every condition of a branch, then arms that are constant or can never be taken."""
    problems: list[Diagnostic] = []
    seen: set[ast.Expr] = set()  # AST nodes compare and hash by what they say, not where
    always_true_at: int | None = None
    for arm in branch.arms:
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
        errors, value = _checked(condition)
        problems += errors
        if errors:
            continue
        if always_true_at is not None:
            problems.append(
                warning(
                    "W505",
                    "this arm is never taken: "
                    f"the condition on line {always_true_at} is always true",
                    arm.span,
                )
            )
            continue
        if condition in seen:
            problems.append(
                warning(
                    "W505",
                    f"this arm is never taken: an earlier arm tests `{format_expr(condition)}`",
                    arm.span,
                )
            )
            continue
        seen.add(condition)
        if value is True:
            always_true_at = condition.span.line
            problems.append(
                warning(
                    "W504",
                    "the condition does not read the state and is always true",
                    condition.span,
                    help="use a plain edge `NODE -> TARGET` instead",
                )
            )
        elif value is False:
            problems.append(
                warning(
                    "W504",
                    "the condition does not read the state and is always false: "
                    "this arm is never taken",
                    condition.span,
                )
            )
    return problems
