"""Conditions -> diagnostics: functions and arity, types visible without running, constants.

Static types are checked by running the runtime's own operator tables on a sample value
of each known type, so a compile-time type error says exactly what the run would say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowc.compiler.operators import (
    BINARY,
    FUNCTIONS,
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


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []

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
        return self.apply(expr, BINARY[expr.op], left, right)

    def apply(self, expr: ast.Expr, function: Any, *types: str) -> str:
        if ANY in types:
            return ANY
        try:
            result = function(*(_SAMPLES[t] for t in types))
        except OperatorError as problem:
            self.problems.append(error("E303", str(problem), expr.span))
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
        kind = self.apply(call, FUNCTIONS[name], *types)
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
    value = _fold(expr, checker.problems)
    return checker.problems, value


def _fold(expr: ast.Expr, problems: list[Diagnostic]) -> Any:
    """The value of `expr` when it reads no state, else `_NOT_CONSTANT`.

    An operator that fails on constant operands adds an E303 to `problems`.
    """
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.PathExpr):
        return _NOT_CONSTANT
    if isinstance(expr, ast.ListExpr):
        items = [_fold(item, problems) for item in expr.items]
        return _NOT_CONSTANT if any(item is _NOT_CONSTANT for item in items) else items
    if isinstance(expr, ast.Call):
        args = [_fold(arg, problems) for arg in expr.args]
        if expr.function not in FUNCTIONS:  # `exists` and `default` read the state
            return _NOT_CONSTANT
        return _apply_constants(expr, FUNCTIONS[expr.function], args, problems)
    if isinstance(expr, ast.Unary):
        operand = _fold(expr.operand, problems)
        if expr.op == "not":
            return _apply_constants(
                expr, lambda v: not require_bool(v, "`not`"), [operand], problems
            )
        return _apply_constants(expr, negate, [operand], problems)
    left, right = _fold(expr.left, problems), _fold(expr.right, problems)
    if expr.op in ("and", "or"):
        # The type check has made sure that constant sides are bools.
        if left is _NOT_CONSTANT or left is (expr.op == "or"):
            return left  # unknown, or decided: `or` stops at true, `and` at false
        return right
    return _apply_constants(expr, BINARY[expr.op], [left, right], problems)


def _apply_constants(
    expr: ast.Expr, function: Callable[..., Any], values: list[Any], problems: list[Diagnostic]
) -> Any:
    if any(value is _NOT_CONSTANT for value in values):
        return _NOT_CONSTANT
    try:
        return function(*values)
    except OperatorError as problem:
        problems.append(error("E303", str(problem), expr.span))
        return _NOT_CONSTANT


def check_branch(branch: Branch) -> list[Diagnostic]:
    """Every condition of a branch, then arms that are constant or can never be taken."""
    problems: list[Diagnostic] = []
    seen: list[ast.Expr] = []
    always_true_at: int | None = None
    for arm in branch.arms:
        condition = arm.condition
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
        seen.append(condition)
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
