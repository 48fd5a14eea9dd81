"""Source text -> its `#` comments, with their places: what the formatter puts back.

Comments are not part of the grammar's tree (they ride in line breaks), so they are read
from the text by the scanner of strings and comments (`dsl/scan.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from flowc.dsl.scan import comments


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment: its 1-based line and column, and its text from `#` on.

    `trailing` is true when code precedes it on its line.
    """

    line: int
    column: int
    text: str
    trailing: bool


def find_comments(text: str) -> tuple[Comment, ...]:
    """Every comment in `text`, in order; a `#` inside a string is not one."""
    text = text.lstrip("\ufeff")
    found: list[Comment] = []
    line, line_start = 1, 0
    for start, end in comments(text):
        newlines = text.count("\n", line_start, start)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", 0, start) + 1
        trailing = bool(text[line_start:start].strip())
        found.append(Comment(line, start - line_start + 1, text[start:end].rstrip(), trailing))
    return tuple(found)
