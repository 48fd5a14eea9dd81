r"""Source text and AST positions -> byte-exact text edits, and edits -> rewritten source.

CPython gives node positions as a 1-based line and a 0-based UTF-8 *byte* offset in that
line, with lines ended by `\r\n`, `\r` or `\n` (never by the other characters that
`str.splitlines` knows).  `SourceText` maps those positions onto the encoded text, so a
rewrite touches exactly the bytes it means to and leaves every other byte where it was.
Every edit builder checks that the text at the position is what the rewrite expects and
returns None otherwise: a fix that cannot be placed exactly is not made.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NEWLINE = re.compile(rb"\r\n|\r|\n")
#: What may stand between a call's callee and its `(`: blanks, line ends (in brackets) and
#: line continuations, but no comment.
_BEFORE_PAREN = re.compile(rb"(?:[ \t\x0c\r\n]|\\(?:\r\n|\r|\n))*\(")
#: What may follow a statement on its line for a new line to be inserted after it.
_LINE_TAIL = re.compile(rb"[ \t\x0c]*(?:#[^\r\n]*)?(?:\r\n|\r|\n|$)")
#: What may surround a comparison operator between its operands, besides the operator.
_AROUND_OPERATOR = frozenset(b" \t\x0c\r\n\\()")


@dataclass(frozen=True, slots=True, order=True)
class Edit:
    """Replace the bytes `start:end` of the encoded source with `text`."""

    start: int
    end: int
    text: bytes


class SourceText:
    """Source code with its UTF-8 bytes and line starts, to turn AST positions into offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        # A source that parsed encodes cleanly; surrogatepass keeps any other text usable.
        self.data = text.encode("utf-8", "surrogatepass")
        self.line_starts = [0, *(match.end() for match in _NEWLINE.finditer(self.data))]

    def offset(self, line: int | None, col: int | None) -> int | None:
        """The byte offset of a (1-based line, byte column) position, or None if off the text."""
        if line is None or col is None or not 0 < line <= len(self.line_starts):
            return None
        offset = self.line_starts[line - 1] + col
        return offset if offset <= len(self.data) else None

    def column(self, line: int, col: int) -> int:
        """The 1-based character column of a (line, byte column) position."""
        start = self.line_starts[line - 1] if 0 < line <= len(self.line_starts) else 0
        return len(self.data[start : start + col].decode("utf-8", "replace")) + 1

    def span(self, node: ast.AST) -> tuple[int, int] | None:
        """The byte offsets where `node` starts and ends, or None if it has no position."""
        start = self.offset(getattr(node, "lineno", None), getattr(node, "col_offset", None))
        end = self.offset(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))
        return None if start is None or end is None or end < start else (start, end)

    def newline(self) -> bytes:
        """The line ending the text uses first (a line feed when it has none)."""
        match = _NEWLINE.search(self.data)
        return match.group() if match else b"\n"


def replace_node(source: SourceText, node: ast.AST, expected: bytes, text: bytes) -> Edit | None:
    """Replace `node`'s text, which must read `expected`, with `text`."""
    span = source.span(node)
    if span is None or source.data[span[0] : span[1]] != expected:
        return None
    return Edit(span[0], span[1], text)


def replace_keyword(source: SourceText, node: ast.AST, keyword: bytes, text: bytes) -> Edit | None:
    """Replace the keyword that `node` starts with (`except` of a handler) with `text`."""
    start = source.offset(getattr(node, "lineno", None), getattr(node, "col_offset", None))
    if start is None or source.data[start : start + len(keyword) + 1].rstrip(b" \t:") != keyword:
        return None
    return Edit(start, start + len(keyword), text)


def insert_after_paren(source: SourceText, callee: ast.AST, text: bytes) -> Edit | None:
    """Insert `text` right after the `(` that opens the call of `callee`."""
    span = source.span(callee)
    if span is None:
        return None
    match = _BEFORE_PAREN.match(source.data, span[1])
    return None if match is None else Edit(match.end(), match.end(), text)


def replace_operator(
    source: SourceText, left: ast.AST, right: ast.AST, operator: re.Pattern[bytes], text: bytes
) -> Edit | None:
    """Replace the comparison operator between `left` and `right` with `text`.

    Between two operands there may only be blanks, parentheses, line continuations and the
    operator; a comment (which could mention an operator) makes the fix decline, and so does
    an `is not` split over two lines (rewriting it would join them).
    """
    left_span, right_span = source.span(left), source.span(right)
    if left_span is None or right_span is None or left_span[1] > right_span[0]:
        return None
    gap = source.data[left_span[1] : right_span[0]]
    matches = list(operator.finditer(gap))
    if len(matches) != 1:
        return None
    found = matches[0]
    if b"\n" in found.group() or b"\r" in found.group():
        return None
    if not set(gap[: found.start()] + gap[found.end() :]) <= _AROUND_OPERATOR:
        return None
    before = b"" if gap[: found.start()][-1:].isspace() else b" "
    after = b"" if gap[found.end() :][:1].isspace() else b" "
    start = left_span[1] + found.start()
    return Edit(start, left_span[1] + found.end(), before + text + after)


def import_line(tree: ast.Module, source: SourceText, statement: bytes) -> Edit | None:
    """Insert `statement` on a line of its own at the top of the module.

    It goes after the module docstring and `from __future__` imports, or else before the
    first statement (so after a shebang, an encoding line and leading comments).  None when
    the statement that should precede it shares its line with more code.
    """
    body = tree.body
    if not body:
        return None
    leading = 1 if _is_docstring(body[0]) else 0
    while (
        leading < len(body)
        and isinstance(body[leading], ast.ImportFrom)
        and getattr(body[leading], "module", None) == "__future__"
    ):
        leading += 1
    newline = source.newline()
    if leading == 0:
        start = _first_code_line(source)
        return Edit(start, start, statement + newline)
    last = body[leading - 1]
    end = source.offset(last.end_lineno, last.end_col_offset)
    tail = None if end is None else _LINE_TAIL.match(source.data, end)
    if tail is None:
        return None
    if tail.end() == len(source.data) and not tail.group().endswith((b"\n", b"\r")):
        return Edit(tail.end(), tail.end(), newline + statement)
    return Edit(tail.end(), tail.end(), statement + newline)


def _is_docstring(statement: ast.stmt) -> bool:
    """Whether `statement` is a string on its own: the module's docstring if it is first."""
    value = statement.value if isinstance(statement, ast.Expr) else None
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


def _first_code_line(source: SourceText) -> int:
    """The offset of the first line that is not blank or a comment."""
    starts = source.line_starts
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(source.data)
        line = source.data[start:end].strip()
        if line and not line.startswith(b"#"):
            return start
    return len(source.data)


def apply_edits(source: SourceText, edits: Iterable[Edit]) -> str | None:
    """The source with `edits` made (duplicates made once), or None if two of them overlap."""
    pieces: list[bytes] = []
    position = 0
    for edit in sorted(set(edits)):
        if edit.start < position:
            return None
        pieces += [source.data[position : edit.start], edit.text]
        position = edit.end
    pieces.append(source.data[position:])
    return b"".join(pieces).decode("utf-8", "surrogatepass")
