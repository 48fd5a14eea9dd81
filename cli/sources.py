"""Command-line file arguments -> `Source`: the decoded text and the name to show for it.

Bytes that are not UTF-8 become an `E002` diagnostic at the first bad byte, never a
traceback; a missing or unreadable file becomes a `CommandError` (exit 2).  `-` is
standard input, shown as `<stdin>`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from flowc.cli.errors import CommandError
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, Span, error
from flowc.dsl.limits import MAX_SOURCE_BYTES

#: The argument that means standard input, and the name shown for it.
STDIN_ARGUMENT = "-"
STDIN_NAME = "<stdin>"

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Source:
    """A flow's text as read, and the problem that keeps it from being parsed, if any."""

    name: str
    text: str
    #: Set when the bytes cannot be a flow (not UTF-8, too large); `text` is then for display.
    problem: Diagnostic | None = None
    #: False when the text came from standard input rather than a file.
    from_file: bool = True


def read_source(argument: str) -> Source:
    """Read a file argument (or `-` for standard input); raise `CommandError` when unreadable."""
    if argument == STDIN_ARGUMENT:
        return _read_stdin()
    try:
        with open(argument, "rb") as file:
            # One byte past the limit is enough to know the file is too large.
            data = file.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read `{argument}`: {exc.strerror or exc}") from None
    return decode(data, argument)


def _read_stdin() -> Source:
    buffer = getattr(sys.stdin, "buffer", None)
    try:
        if buffer is None:  # a text stream, as tests and some embedders provide
            text = sys.stdin.read(MAX_SOURCE_BYTES + 1)
            size = len(text.encode("utf-8", "replace"))
            return Source(STDIN_NAME, text, _size_problem(size), from_file=False)
        return decode(buffer.read(MAX_SOURCE_BYTES + 1), STDIN_NAME, from_file=False)
    except OSError as exc:
        raise CommandError(f"cannot read standard input: {exc.strerror or exc}") from None


def decode(data: bytes, name: str, *, from_file: bool = True) -> Source:
    """UTF-8 bytes (an optional BOM) -> `Source`; an `E002` at the first byte that is not UTF-8."""
    if len(data) > MAX_SOURCE_BYTES:
        return Source(name, "", _size_problem(len(data)), from_file)
    try:
        return Source(name, data.decode("utf-8"), None, from_file)
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", "replace")
        return Source(name, text, _not_utf8(data, exc), from_file)


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> Diagnostic:
    # The parser drops a BOM before counting columns; count the same way.
    start = len(_BOM) if data.startswith(_BOM) else 0
    before = data[start : exc.start].decode("utf-8")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    bad = data[exc.start]
    return error(
        "E002",
        f"the text is not valid UTF-8: byte 0x{bad:02x} ({exc.reason})",
        Span(line, column, line, column + 1),
        help="save the file as UTF-8",
    )


def _size_problem(size: int) -> Diagnostic | None:
    if size <= MAX_SOURCE_BYTES:
        return None
    return error(
        "E001",
        f"the text is more than {MAX_SOURCE_BYTES:,} bytes, the limit",
        WHOLE_TEXT,
        help="split the flow into smaller files",
    )
