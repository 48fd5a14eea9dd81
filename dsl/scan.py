"""Source text -> where its strings and comments are, for code that does not lex it.

The grammar's STRING and COMMENT terminals define both, and the lexer matches them.  The
code that steps over strings and comments without lexing (finding the comments for the
formatter, finding where a broken statement ends, finding what breaks a string) uses this
one scanner, which tests/dsl/test_lexer.py checks against the grammar's terminals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

QUOTES = "\"'"
COMMENT_START = "#"

_STRING_OR_COMMENT = re.compile(r"[\"'#]")


@dataclass(frozen=True, slots=True)
class StringScan:
    """How far the string opened by a quote goes.

    `end` is just after its closing quote (`closed`), or where its line or the text ends.
    `control` is the first control character inside it, if any (the grammar refuses them
    all but tab, even after a backslash).  The grammar's STRING matches exactly the strings
    that are `closed` and hold no `control` character.
    """

    end: int
    closed: bool
    control: int | None


def is_control(char: str) -> bool:
    """Whether the grammar refuses `char` in strings and comments: a control but tab."""
    return char != "\t" and (char < " " or char == "\x7f")


def scan_string(text: str, quote: int) -> StringScan:
    """Scan the string that the quote at `text[quote]` opens, to its end or its line's."""
    close = text[quote]
    control: int | None = None
    i, size = quote + 1, len(text)
    while i < size:
        char = text[i]
        if char == close:
            return StringScan(i + 1, True, control)
        if char == "\n" or text.startswith("\r\n", i):
            break
        if char == "\\" and i + 1 < size and not is_control(text[i + 1]):
            i += 2  # an escape: the next character cannot close the string
            continue
        if control is None and is_control(char):
            control = i
        i += 1
    return StringScan(i, False, control)


def comment_end(text: str, start: int) -> int:
    """Where the comment that starts at `start` ends: at its line's end, before a CR LF's CR."""
    newline = text.find("\n", start)
    end = len(text) if newline < 0 else newline
    return end - 1 if end > start and text[end - 1] == "\r" else end


def comments(text: str) -> Iterator[tuple[int, int]]:
    """The `(start, end)` of every comment in `text`: each `#` outside a string."""
    position = 0
    while True:
        found = _STRING_OR_COMMENT.search(text, position)
        if found is None:
            return
        start = found.start()
        if text[start] == COMMENT_START:
            position = comment_end(text, start)
            yield start, position
        else:
            position = scan_string(text, start).end
