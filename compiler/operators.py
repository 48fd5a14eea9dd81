"""Condition operators and functions: allow-list tables of strictly typed Python callables.

The single definition of what each operator means.  The compiler folds constant
conditions with it; the runtime compiles conditions to closures over the same tables.
Typing is strict: `"3" < 4` raises `OperatorError`, `true == 1` is false.  Costs are
bounded (`dsl.limits`): an operation that would build a value over a limit, or go over
the work `Budget` of an evaluation, raises `LimitError` before it does the work.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import Any

from flowc.dsl.limits import (
    CHARACTERS_PER_UNIT,
    CONTAINER_UNITS,
    ITEMS_PER_UNIT,
    MAX_CONDITION_INT,
    MAX_CONDITION_LIST,
    MAX_CONDITION_STRING,
    MAX_CONDITION_WORK,
    MIN_CONDITION_INT,
)


class OperatorError(Exception):
    """An operator or function applied to values of the wrong type (or dividing by zero)."""


class LimitError(OperatorError):
    """An operation that would go over a limit of conditions: a value's size, or the work."""


class Budget:
    """The work an evaluation may still do on values, in units (see `MAX_CONDITION_WORK`).

    One budget serves one routing decision: every arm of a branch spends from it.
    """

    __slots__ = ("left",)

    def __init__(self, units: int = MAX_CONDITION_WORK) -> None:
        self.left = units

    def spend(self, units: int) -> None:
        """Take `units`; a `LimitError` when that is more than is left (nothing is done then)."""
        self.left -= units
        if self.left < 0:
            raise LimitError(
                f"the work limit is reached: the conditions of one routing decision may "
                f"compare, search and build at most {MAX_CONDITION_WORK:,} units of values"
            )


def type_name(value: Any) -> str:
    """The Flow name of a value's type, as messages show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def article(kind: str) -> str:
    """`an` before a type name that starts with a vowel (`an int`), else `a` (`a string`)."""
    return "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _characters(size: int) -> int:
    """The units of work of comparing, searching or building `size` characters."""
    return size // CHARACTERS_PER_UNIT


def _items(size: int) -> int:
    """The units of work of searching or copying `size` list items at C speed."""
    return size // ITEMS_PER_UNIT


_SEQUENCES = (list, tuple)
_CONTAINERS = (list, tuple, dict)
#: Types whose values are strictly equal exactly when Python says they are equal.
_PLAIN = frozenset([int, float, bool, type(None), str])


def strict_equal(left: Any, right: Any, budget: Budget | None = None) -> bool:
    """Equality that keeps types apart: `true != 1`, `"1" != 1`, but `1 == 1.0`.

    Containers are compared without recursion; each item or member compared is a unit of
    `budget`, each list or object `CONTAINER_UNITS` more (no limit without a budget).
    """
    if isinstance(left, _CONTAINERS) and isinstance(right, _CONTAINERS):
        return _containers_equal(left, right, budget)
    return _scalars_equal(left, right, budget)


def _scalars_equal(left: Any, right: Any, budget: Budget | None) -> bool:
    kind = type(left)
    if kind is type(right) and kind in _PLAIN:
        if kind is str and budget is not None and len(left) >= CHARACTERS_PER_UNIT:
            budget.spend(_characters(len(left)))
        return bool(left == right)
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type_name(left) != type_name(right):
        return False
    if budget is not None and isinstance(left, str):
        budget.spend(_characters(len(left)))
    return bool(left == right)


def _containers_equal(left: Any, right: Any, budget: Budget | None) -> bool:
    pending: list[Iterator[tuple[Any, Any]]] = [iter(((left, right),))]
    while pending:
        for a, b in pending[-1]:
            kind = type(a)
            if kind is type(b) and kind in _PLAIN:  # the common case, without a call
                if a != b:
                    return False
                if kind is str and budget is not None and len(a) >= CHARACTERS_PER_UNIT:
                    budget.spend(_characters(len(a)))
                continue
            if isinstance(a, _SEQUENCES):
                if not isinstance(b, _SEQUENCES) or len(a) != len(b):
                    return False
                if budget is not None:
                    budget.spend(CONTAINER_UNITS + len(a))
                pending.append(zip(a, b, strict=True))
                break
            if isinstance(a, dict):
                if not isinstance(b, dict) or a.keys() != b.keys():
                    return False
                if budget is not None:
                    budget.spend(CONTAINER_UNITS + len(a))
                pending.append(zip(a.values(), map(b.__getitem__, a), strict=True))
                break
            if not _scalars_equal(a, b, budget):
                return False
        else:
            pending.pop()
    return True


def _order(symbol: str, compare: Callable[[Any, Any], bool]) -> Operator:
    def ordered(left: Any, right: Any, budget: Budget) -> bool:
        if _is_number(left) and _is_number(right):
            return compare(left, right)
        if isinstance(left, str) and isinstance(right, str):
            budget.spend(_characters(min(len(left), len(right))))
            return compare(left, right)
        raise OperatorError(
            f"cannot compare {type_name(left)} with {type_name(right)} using `{symbol}`"
        )

    return ordered


def _contains(item: Any, container: Any, budget: Budget) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise OperatorError(f"`in` a string needs a string on the left, not {type_name(item)}")
        budget.spend(_characters(len(container) + len(item)))
        return item in container
    if isinstance(container, _SEQUENCES):
        if isinstance(item, _CONTAINERS):
            budget.spend(len(container))
            return any(strict_equal(item, element, budget) for element in container)
        budget.spend(_items(len(container)))
        return _holds_scalar(container, item)
    if isinstance(container, dict):
        if not isinstance(item, str):
            raise OperatorError(f"`in` an object needs a string key, not {type_name(item)}")
        return item in container
    raise OperatorError(
        f"`in` needs a list, a string or an object on the right, not {type_name(container)}"
    )


def _holds_scalar(container: Sequence[Any], item: Any) -> bool:
    """Whether `container` holds a value strictly equal to `item`, a scalar: at C speed."""
    if item is None or isinstance(item, bool):  # singletons: equal only to themselves
        return any(map(operator.is_, container, repeat(item)))
    if isinstance(item, str):  # a string equals only a string, strictly or not
        return item in container
    if item != item or item not in container:  # NaN equals nothing
        return False
    if item != 0 and item != 1:
        return True  # Python's search agrees: no bool equals it
    # Python also takes `true` for 1 and `false` for 0: count the numbers without them.
    loose = container.count(item)
    return loose > sum(map(operator.is_, container, repeat(item == 1)))


def _add(left: Any, right: Any, budget: Budget) -> Any:
    if _is_number(left) and _is_number(right):
        return _finite("+", lambda a, b: a + b, left, right)
    if isinstance(left, str) and isinstance(right, str):
        size = len(left) + len(right)
        if size > MAX_CONDITION_STRING:
            raise LimitError(
                f"`+` would build a string of {size:,} characters; "
                f"the limit is {MAX_CONDITION_STRING:,}"
            )
        budget.spend(_characters(size))
        return left + right
    if isinstance(left, list) and isinstance(right, list):
        size = len(left) + len(right)
        if size > MAX_CONDITION_LIST:
            raise LimitError(
                f"`+` would build a list of {size:,} items; the limit is {MAX_CONDITION_LIST:,}"
            )
        budget.spend(_items(size))
        return left + right
    raise OperatorError(f"cannot add {type_name(left)} and {type_name(right)}")


def _arithmetic(symbol: str, apply: Callable[[Any, Any], Any]) -> Operator:
    def arithmetic(left: Any, right: Any, budget: Budget) -> Any:
        if not (_is_number(left) and _is_number(right)):
            raise OperatorError(
                f"`{symbol}` needs numbers, not {type_name(left)} and {type_name(right)}"
            )
        if symbol in "/%" and right == 0:
            raise OperatorError("division by zero")
        return _finite(symbol, apply, left, right)

    return arithmetic


def _finite(symbol: str, apply: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """`apply(left, right)`, or an `OperatorError` when the result is no finite number.

    Python raises `OverflowError` where an integer too big for a float meets a float
    (`10**400 / 3`, `10**400 + 1.0`); a float result may also come out infinite.  An
    integer result must fit in 64 bits (`LimitError`).
    """
    try:
        result = apply(left, right)
    except OverflowError:
        raise OperatorError(f"`{symbol}` overflowed") from None
    if isinstance(result, float):
        if not math.isfinite(result):
            raise OperatorError(f"`{symbol}` overflowed")
        return result
    return _in_range(symbol, result)


def _in_range(symbol: str, result: int) -> int:
    if MIN_CONDITION_INT <= result <= MAX_CONDITION_INT:
        return result
    raise LimitError(
        f"`{symbol}` gives an integer outside the signed 64-bit range that conditions compute in"
    )


#: A product of integers with more bits than this in all is out of range for sure (its
#: size is at least 2 ** (bits - 2)): refused before Python multiplies them.
_PRODUCT_BITS = 66


def _multiply(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > _PRODUCT_BITS
    ):
        raise LimitError(
            "`*` gives an integer outside the signed 64-bit range that conditions compute in"
        )
    return left * right


#: A binary operator: the two operands and the evaluation's budget of work.
Operator = Callable[[Any, Any, Budget], Any]


def _not_equal(left: Any, right: Any, budget: Budget) -> bool:
    return not strict_equal(left, right, budget)


def _not_in(item: Any, container: Any, budget: Budget) -> bool:
    return not _contains(item, container, budget)


#: A comparison with its sides swapped: `3 < x` is `x > 3`.
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
#: The ordering operators, on two numbers (`int` or `float`, not `bool`): all they do then.
NUMBER_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip

#: Binary operators other than `and`/`or` (those short-circuit, so evaluators own them).
BINARY: dict[str, Operator] = {
    "==": strict_equal,
    "!=": _not_equal,
    "<": _order("<", operator.lt),
    "<=": _order("<=", operator.le),
    ">": _order(">", operator.gt),
    ">=": _order(">=", operator.ge),
    "in": _contains,
    "not in": _not_in,
    "+": _add,
    "-": _arithmetic("-", lambda a, b: a - b),
    "*": _arithmetic("*", _multiply),
    "/": _arithmetic("/", lambda a, b: a / b),
    "%": _arithmetic("%", lambda a, b: a % b),
}


def not_a_bool(value: Any, where: str) -> str:
    """The problem with `value`, not a bool, where `where` (`not`, `and`, `or`) needs one."""
    return f"{where} needs a bool, not {type_name(value)}"


def require_bool(value: Any, where: str) -> bool:
    """`value` if it is a bool, else an `OperatorError` naming `where` it was needed."""
    if isinstance(value, bool):
        return value
    raise OperatorError(not_a_bool(value, where))


def negate(value: Any) -> Any:
    """Unary minus, numbers only; an integer result must fit in 64 bits."""
    if isinstance(value, float):
        return -value
    if _is_number(value):
        return _in_range("-", -value)
    raise OperatorError(f"unary `-` needs a number, not {type_name(value)}")


def _length(args: Sequence[Any], budget: Budget) -> int:
    (value,) = args
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise OperatorError(f"len() needs a string, a list or an object, not {type_name(value)}")


def _extreme(name: str, pick: Callable[[Sequence[Any]], Any]) -> Function:
    def extreme(args: Sequence[Any], budget: Budget) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], _SEQUENCES) else args
        budget.spend(len(values))
        if not values:
            raise OperatorError(f"{name}() of an empty list")
        if not all(_is_number(v) for v in values) and not all(isinstance(v, str) for v in values):
            kinds = sorted({type_name(v) for v in values})
            raise OperatorError(f"{name}() needs numbers or strings, not {', '.join(kinds)}")
        return pick(values)

    return extreme


def _absolute(args: Sequence[Any], budget: Budget) -> Any:
    (value,) = args
    if isinstance(value, float):
        return abs(value)
    if _is_number(value):
        return _in_range("abs()", abs(value))
    raise OperatorError(f"abs() needs a number, not {type_name(value)}")


#: A function: its argument values and the evaluation's budget of work.
Function = Callable[[Sequence[Any], Budget], Any]

#: Functions on plain values.  `exists` and `default` take a path, so evaluators own them.
FUNCTIONS: dict[str, Function] = {
    "len": _length,
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "abs": _absolute,
}
