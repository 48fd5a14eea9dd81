"""Source text -> its `#` comments, with their places: what the formatter puts back.

Comments are not part of the grammar's tree (they ride in line breaks), so they are read
from the text: a `#` outside a string starts one, to the end of its line.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    comments: list[Comment] = []
    for number, line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        if "#" not in line:
            continue
        quote = ""
        escaped = False
        for index, char in enumerate(line):
            if quote:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "#":
                body = line[index:].rstrip("\r").rstrip()
                comments.append(Comment(number, index + 1, body, bool(line[:index].strip())))
                break
    return tuple(comments)
