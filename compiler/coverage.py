"""Two conditions -> whether the first implies the second: an arm that an earlier one covers.

Sound, not complete: `p` implies `q` when they say the same thing, or by the rules of `and`,
`or` and `not`, or when both compare the same path with constants and every value that
makes `p` true makes `q` true (`score < 50` implies `score < 80`; `x == 3` implies
`x in [1, 2, 3]`).  A value for which `q` would fail with a type error does not count as
making `q` true, so `x == "a"` does not imply `x < 80`.  The work on one branch is bounded.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from flowc.compiler.operators import BINARY, FLIPPED, Budget, OperatorError, strict_equal
from flowc.compiler.program import Arm
from flowc.dsl import ast

#: The steps `implies` may take for one branch before it answers no.
COVERAGE_BUDGET = 100_000

_ORDERS = ("<", "<=", ">", ">=")
_COMPARISONS = frozenset(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])


class _Unset:
    """Stands for an expression that is not a constant."""


_UNSET = _Unset()


def constant(expr: ast.Expr) -> Any:
    """The value of a literal, a negated number or a list of them; `_UNSET` otherwise."""
    if isinstance(expr, ast.Literal):
        return expr.value
    if (
        isinstance(expr, ast.Unary)
        and expr.op == "-"
        and isinstance(expr.operand, ast.Literal)
        and expr.operand.kind in ("int", "float")
    ):
        return -expr.operand.value  # type: ignore[operator]
    if isinstance(expr, ast.ListExpr):
        items = [constant(item) for item in expr.items]
        return _UNSET if any(item is _UNSET for item in items) else items
    return _UNSET


def _atom(expr: ast.Expr) -> tuple[ast.PathExpr, str, Any] | None:
    """`path OP constant` (either way round), or None."""
    if not isinstance(expr, ast.Binary) or expr.op not in _COMPARISONS:
        return None
    if isinstance(expr.left, ast.PathExpr):
        value = constant(expr.right)
        return None if value is _UNSET else (expr.left, expr.op, value)
    if isinstance(expr.right, ast.PathExpr) and expr.op in FLIPPED:
        value = constant(expr.left)
        return None if value is _UNSET else (expr.right, FLIPPED[expr.op], value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _holds(op: str, value: Any, bound: Any) -> bool:
    """Whether `value OP bound` is true (a type error is not true)."""
    try:
        return BINARY[op](value, bound, Budget()) is True
    except OperatorError:
        return False


def _range_implies(op: str, bound: Any, other_op: str, other: Any) -> bool:
    """Whether every number `x` with `x OP bound` has `x OTHER_OP other`."""
    if not (_is_number(bound) and _is_number(other)):
        return False
    below = op in ("<", "<=")  # the values of `x OP bound` go down without end
    if other_op == "!=":  # the value `other` must lie outside
        if op in ("<", ">"):
            return bool(other >= bound if below else other <= bound)
        return bool(other > bound if below else other < bound)
    if other_op not in _ORDERS or below != (other_op in ("<", "<=")):
        return False
    if op == other_op or (op in ("<", ">") and other_op in ("<=", ">=")):
        return bool(other >= bound if below else other <= bound)
    # `x <= b` implies `x < o` only when b < o (and `x >= b`, `x > o` when b > o).
    return bool(other > bound if below else other < bound)


def _equality_key(expr: ast.Expr) -> tuple[Any, ...] | None:
    """`(path parts, kind, value)` for `path == scalar`, which equal values share (1, 1.0)."""
    atom = _atom(expr)
    if atom is None or atom[1] != "==":
        return None
    path, _, value = atom
    if isinstance(value, bool):
        return (path.parts, "bool", value)
    if _is_number(value):
        return (path.parts, "number", value)
    if isinstance(value, str) or value is None:
        return (path.parts, "scalar", value)
    return None


def same_test(p: ast.Expr, q: ast.Expr) -> bool:
    """True when `p` and `q` are one test written twice (`x == 1`, `(x) == 1.0`)."""
    if p == q:
        return True
    key = _equality_key(p)
    return key is not None and key == _equality_key(q)


class Coverage:
    """The earlier arms of one branch, and which of them covers a later condition.

    Equality tests (`x == 3`), the common case of long branches, are found by hashing;
    other conditions are compared pair by pair, within one budget of work for the branch.
    """

    def __init__(self, budget: int = COVERAGE_BUDGET) -> None:
        self.left = budget
        self.seen: dict[ast.Expr, Arm] = {}  # AST nodes hash by what they say, not where
        self.equalities: dict[tuple[Any, ...], Arm] = {}
        self.others: list[Arm] = []

    def add(self, arm: Arm) -> None:
        """Remember an arm that later ones may be covered by."""
        self.seen.setdefault(arm.condition, arm)
        key = _equality_key(arm.condition)
        if key is not None:
            self.equalities.setdefault(key, arm)
        else:
            self.others.append(arm)

    def covering(self, condition: ast.Expr) -> Arm | None:
        """An earlier arm whose condition is true whenever `condition` is, or None."""
        found = self.seen.get(condition)
        if found is not None:
            return found
        key = _equality_key(condition)
        if key is not None:
            found = self.equalities.get(key)
            if found is not None:
                return found
        if self.left <= 0:
            return None
        others = self.others
        candidates = others if key is not None else chain(self.equalities.values(), others)
        for arm in candidates:
            if self.left <= 0:
                return None
            if self.implies(condition, arm.condition):
                return arm
        return None

    def implies(self, p: ast.Expr, q: ast.Expr) -> bool:
        """True when `q` is true whenever `p` is (when unsure, or out of budget, False)."""
        self.left -= 1
        if self.left < 0:
            return False
        if p == q:
            return True
        if (
            isinstance(q, ast.Binary)
            and q.op == "or"
            and (self.implies(p, q.left) or self.implies(p, q.right))
        ):
            return True
        if (
            isinstance(p, ast.Binary)
            and p.op == "and"
            and (self.implies(p.left, q) or self.implies(p.right, q))
        ):
            return True
        if isinstance(p, ast.Binary) and p.op == "or":
            return self.implies(p.left, q) and self.implies(p.right, q)
        if isinstance(q, ast.Binary) and q.op == "and":
            return self.implies(p, q.left) and self.implies(p, q.right)
        if isinstance(p, ast.Unary) and isinstance(q, ast.Unary) and p.op == q.op == "not":
            return self.implies(q.operand, p.operand)
        return _atoms_imply(p, q)


def _atoms_imply(p: ast.Expr, q: ast.Expr) -> bool:
    first, second = _atom(p), _atom(q)
    if first is None or second is None or first[0] != second[0]:
        return False
    _, op, bound = first
    _, other_op, other = second
    if op == "==":
        return _holds(other_op, bound, other)
    if op == "in" and isinstance(bound, list) and bound:
        return all(_holds(other_op, item, other) for item in bound)
    if op == "!=" and other_op == "!=":
        return strict_equal(bound, other)
    if op in _ORDERS:
        return _range_implies(op, bound, other_op, other)
    return False
