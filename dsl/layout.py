"""A statement's pieces and the comments inside it -> its lines, each comment kept in place.

The formatter cuts a route into its node names, conditions and targets, and a node
declaration into its head, arguments and tail, each with the token written after it.  A new
line can only follow such a token (`->`, `?`, `:`, `(`, `,`), so a comment inside a
statement follows one: the statement breaks there again, the comment at the end of that
line, or on lines of its own as it was written.  A branch with such a comment is written one
arm per line, a declaration one argument per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowc.dsl.comments import Comment
from flowc.dsl.diagnostics import Span

#: A branch longer than this is written one arm per line.
LINE_WIDTH = 88

#: The widest padding the formatter adds to line things up (the `=` of declarations, the
#: arms of a branch): a longer name or chain is not lined up with, so no line grows by more,
#: and a 1 MiB text cannot become gigabytes of spaces.
MAX_ALIGNMENT = LINE_WIDTH // 2

#: How far continuation lines are indented: the arms of a branch when its chain is too long
#: to line them up, a broken chain, a declaration's arguments.
ARM_INDENT = 4

#: Where a piece stands: in a route's chain, a branch's condition, target or last target;
#: a declaration's head (up to its `(`), one of its arguments, or its tail (from `)` on).
Kind = Literal["chain", "arm", "target", "otherwise", "head", "item", "tail"]


@dataclass(slots=True)
class Line:
    """One output line: its code, and a comment (trailing, or alone when there is no code).

    A node declaration keeps its name and what follows its `=` apart, to align the `=`.
    """

    code: str = ""
    comment: str = ""
    declares: tuple[str, str] | None = None
    comment_column: int = 0  # where a trailing comment starts, 0-based


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of a statement as written, where it was, and the token written after it."""

    text: str
    span: Span
    then: str  # `->`, `?`, `:`, `(`, `,`, or "" after the last piece
    kind: Kind


def lay_out(pieces: list[Piece], comments: tuple[Comment, ...]) -> tuple[list[Line], list[Comment]]:
    """A statement's lines, each comment after the piece it follows; and the leftovers.

    The comments left over are those no line can hold (a second one after the last piece):
    the formatter writes them above the statement.  A comment inside a piece (a condition
    over lines) goes after that piece.
    """
    after = _after_each_piece(pieces, comments)
    breaks = {i for i, found in enumerate(after[:-1]) if found}
    if any(pieces[i].kind in ("head", "item") for i in breaks):
        breaks |= {i for i, piece in enumerate(pieces) if piece.kind in ("head", "item")}
    in_branch = any(pieces[i].kind in ("arm", "target") or pieces[i].then == "?" for i in breaks)
    if in_branch or _too_long_for_one_line(pieces):
        breaks |= {i for i, piece in enumerate(pieces) if piece.then == ":"}
    lines = [Line()]
    arm_indent = ARM_INDENT
    fresh = False  # whether the piece starts a continuation line
    for i, piece in enumerate(pieces):
        line = lines[-1]
        if fresh:
            line.code = _indent(piece, arm_indent)
        elif i > 0:
            if piece.kind == "arm":  # the first arm, on the line of the `?`
                column = len(line.code) + 1  # under it, when that stays readable
                arm_indent = column if column <= MAX_ALIGNMENT else ARM_INDENT
            line.code += "" if piece.kind == "tail" or pieces[i - 1].then == "(" else " "
        fresh = i in breaks
        then = piece.then
        if piece.kind == "item" and pieces[i + 1].kind == "tail" and not fresh:
            then = ""  # a trailing comma only when the arguments stand one per line
        line.code += piece.text + (_spaced(then) if then else "")
        found = after[i]
        if fresh or i == len(pieces) - 1:
            if found and found[0].trailing:
                line.comment, found = found[0].text, found[1:]
            if not fresh:
                return lines, found
            indent = _indent(pieces[i + 1], arm_indent)
            lines += [Line(comment=indent + comment.text) for comment in found]
            lines.append(Line())
    raise AssertionError("a statement has at least one piece")


def _after_each_piece(pieces: list[Piece], comments: tuple[Comment, ...]) -> list[list[Comment]]:
    """The comments after each piece: those before the next piece starts."""
    after: list[list[Comment]] = [[] for _ in pieces]
    index = 0
    for comment in comments:
        while index < len(pieces) and _before(pieces[index].span, comment):
            index += 1
        after[max(index - 1, 0)].append(comment)
    return after


def _spaced(then: str) -> str:
    return then if then in "(," else f" {then}"


def _before(span: Span, comment: Comment) -> bool:
    """Whether `span` starts before `comment`."""
    return (span.line, span.column) < (comment.line, comment.column)


def _indent(piece: Piece, arm_indent: int) -> str:
    """The indentation of a continuation line that starts with `piece`."""
    if piece.kind in ("chain", "item"):
        return " " * ARM_INDENT
    if piece.kind == "tail":
        return ""
    return " " * (arm_indent + (ARM_INDENT if piece.kind == "target" else 0))


def _too_long_for_one_line(pieces: list[Piece]) -> bool:
    """A branch with more than one condition that is longer than `LINE_WIDTH` on one line."""
    if sum(piece.kind == "arm" for piece in pieces) < 2:
        return False
    width = sum(len(p.text) + (len(p.then) + 1 if p.then else 0) for p in pieces)
    return width + len(pieces) - 1 > LINE_WIDTH  # and the spaces between them
