"""Condition operators and functions: allow-list tables of strictly typed Python callables.

The single definition of what each operator means.  The compiler folds constant
conditions with it; the runtime compiles conditions to closures over the same tables.
Typing is strict: `"3" < 4` raises `OperatorError`, `true == 1` is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class OperatorError(Exception):
    """An operator or function applied to values of the wrong type (or dividing by zero)."""


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


def strict_equal(left: Any, right: Any) -> bool:
    """Equality that keeps types apart: `true != 1`, `"1" != 1`, but `1 == 1.0`."""
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type_name(left) != type_name(right):
        return False
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(map(strict_equal, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(strict_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _order(symbol: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def ordered(left: Any, right: Any) -> bool:
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return compare(left, right)
        raise OperatorError(
            f"cannot compare {type_name(left)} with {type_name(right)} using `{symbol}`"
        )

    return ordered


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise OperatorError(f"`in` a string needs a string on the left, not {type_name(item)}")
        return item in container
    if isinstance(container, (list, tuple)):
        return any(strict_equal(item, element) for element in container)
    if isinstance(container, dict):
        if not isinstance(item, str):
            raise OperatorError(f"`in` an object needs a string key, not {type_name(item)}")
        return item in container
    raise OperatorError(
        f"`in` needs a list, a string or an object on the right, not {type_name(container)}"
    )


def _add(left: Any, right: Any) -> Any:
    if _is_number(left) and _is_number(right):
        return _finite("+", lambda a, b: a + b, left, right)
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    raise OperatorError(f"cannot add {type_name(left)} and {type_name(right)}")


def _arithmetic(symbol: str, apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def arithmetic(left: Any, right: Any) -> Any:
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
    (`10**400 / 3`, `10**400 + 1.0`); a float result may also come out infinite.
    """
    try:
        result = apply(left, right)
    except OverflowError:
        raise OperatorError(f"`{symbol}` overflowed") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise OperatorError(f"`{symbol}` overflowed")
    return result


def _multiply(left: Any, right: Any) -> Any:
    return left * right


#: Binary operators other than `and`/`or` (those short-circuit, so evaluators own them).
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": strict_equal,
    "!=": lambda left, right: not strict_equal(left, right),
    "<": _order("<", lambda a, b: a < b),
    "<=": _order("<=", lambda a, b: a <= b),
    ">": _order(">", lambda a, b: a > b),
    ">=": _order(">=", lambda a, b: a >= b),
    "in": _contains,
    "not in": lambda item, container: not _contains(item, container),
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
    """Unary minus, numbers only."""
    if _is_number(value):
        return -value
    raise OperatorError(f"unary `-` needs a number, not {type_name(value)}")


def _length(value: Any) -> int:
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise OperatorError(f"len() needs a string, a list or an object, not {type_name(value)}")


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def extreme(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        if not values:
            raise OperatorError(f"{name}() of an empty list")
        if not all(_is_number(v) for v in values) and not all(isinstance(v, str) for v in values):
            kinds = sorted({type_name(v) for v in values})
            raise OperatorError(f"{name}() needs numbers or strings, not {', '.join(kinds)}")
        return pick(values)

    return extreme


def _absolute(value: Any) -> Any:
    if _is_number(value):
        return abs(value)
    raise OperatorError(f"abs() needs a number, not {type_name(value)}")


#: Functions on plain values.  `exists` and `default` take a path, so evaluators own them.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _length,
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "abs": _absolute,
}
