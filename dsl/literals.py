"""Literal text -> Python values: string escapes and numbers, with the problem named."""

from __future__ import annotations

import re

_SIMPLE_ESCAPES = {
    '"': '"',
    "'": "'",
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


class LiteralProblem(ValueError):
    """A literal that cannot be decoded; `offset` is where in the literal's text."""

    def __init__(self, message: str, offset: int, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.length = length


def decode_string(text: str) -> str:
    r"""Decode a quoted string literal (either quote) with JSON's escapes plus `\'`."""
    body = text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]  # the grammar never ends a string on a lone backslash
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        if esc != "u":
            raise LiteralProblem(f"invalid escape `\\{esc}` in a string", i + 1, 2)
        code = _hex4(body, i)
        i += 6
        if 0xD800 <= code <= 0xDBFF and body.startswith("\\u", i):
            low = _hex4(body, i)
            if 0xDC00 <= low <= 0xDFFF:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        if 0xD800 <= code <= 0xDFFF:
            raise LiteralProblem("a `\\u` escape names a lone surrogate", i - 5, 6)
        out.append(chr(code))
    return "".join(out)


def _hex4(body: str, i: int) -> int:
    digits = body[i + 2 : i + 6]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise LiteralProblem("a `\\u` escape needs four hexadecimal digits", i + 1, 2)
    return int(digits, 16)


def decode_int(text: str) -> int:
    """Decode an integer literal; Python refuses more than 4,300 digits."""
    try:
        return int(text)
    except ValueError:
        raise LiteralProblem(
            f"integer literal too long ({len(text)} digits)", 0, len(text)
        ) from None


def decode_float(text: str) -> float:
    """Decode a float literal; infinities are refused (JSON has none)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise LiteralProblem("number out of range", 0, len(text))
    return value


#: A run of text that starts like a number, with everything stuck to it.
_NUMBER_LIKE = re.compile(r"\.?[0-9][A-Za-z0-9_.]*(?:(?<=[eE])[+-][A-Za-z0-9_.]*)?")
_NUMBER_PARTS = re.compile(
    r"(?P<whole>[0-9]*)(?P<dot>\.?)(?P<fraction>[0-9]*)(?P<exponent>(?:[eE][+-]?[0-9]+)?)"
    r"(?P<rest>.*)"
)


def number_problem(text: str, start: int) -> tuple[LiteralProblem, str] | None:
    """What is wrong with the number that starts at `start`, if one does, and the fix.

    The grammar's numbers are JSON's; these are the forms people write that it refuses:
    `.5`, `5.`, `007`, and a number stuck to a name (`1andy`).
    """
    run = _NUMBER_LIKE.match(text, start)
    if run is None:
        return None
    written = run.group()
    parts = _NUMBER_PARTS.fullmatch(written)
    assert parts is not None  # every group may be empty
    whole, dot, fraction, exponent, rest = parts.group(
        "whole", "dot", "fraction", "exponent", "rest"
    )
    number = written[: len(written) - len(rest)]
    fixed = (whole.lstrip("0") or "0") + (f".{fraction or '0'}" if dot else "") + exponent
    if not whole:
        reason = "it needs a digit before the `.`"
    elif dot and not fraction:
        reason = "it needs a digit after the `.`"
    elif len(whole) > 1 and whole.startswith("0"):
        reason = "only 0 itself starts with `0`"
    elif rest.startswith("."):
        return LiteralProblem(
            f"`{written}` is not a number: it has a second `.`", 0, len(written)
        ), f"write `{number}`"
    elif rest:
        problem = LiteralProblem(
            f"`{written}` is not a number: it runs into a name", 0, len(written)
        )
        return problem, f"put a space after `{number}`"
    else:
        return None
    fix = f"write `{fixed}`" + (f" and a space before `{rest}`" if rest else "")
    return LiteralProblem(f"`{written}` is not a number: {reason}", 0, len(written)), fix
