"""`flowc fmt FILE...` -> each file rewritten in the canonical layout (`--check`: listed only).

The canonical text is `dsl.format(dsl.parse(text))`: LF line ends, no BOM.  A file is
written only when that changes it; comments are kept.  A file with syntax errors is left
alone, and so is one whose canonical text would be over the size `flowc check` accepts
(exit 2).  A file is replaced whole (a temporary file beside it, then a rename), never left
half written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import tempfile

from flowc.cli.errors import EXIT_ERRORS, EXIT_OK, CommandError, report
from flowc.cli.reporting import print_text
from flowc.cli.sources import Source, read_source
from flowc.dsl import FlowError, format, parse
from flowc.dsl.comments import find_comments
from flowc.dsl.gcpause import collector_paused
from flowc.dsl.limits import MAX_SOURCE_BYTES


def run(args: argparse.Namespace) -> int:
    """Format every file; with `--check`, print the files that would change instead."""
    status = EXIT_OK
    for argument in args.files:
        try:
            source = read_source(argument)
            status = max(status, _format_source(argument, source, check_only=args.check))
        except CommandError as exc:
            status = max(status, report(exc))
    return status


def _format_source(argument: str, source: Source, *, check_only: bool) -> int:
    formatted = canonical_text(source)
    if formatted is None:
        return EXIT_ERRORS
    changed = formatted != source.text
    if check_only:
        if changed:
            print(source.name)
        return EXIT_ERRORS if changed else EXIT_OK
    if not source.from_file:
        sys.stdout.write(formatted)
    elif changed:
        _write(argument, formatted)
    return EXIT_OK


def canonical_text(source: Source) -> str | None:
    """The formatted text, or None after printing why the source cannot be formatted.

    Raises `CommandError` when the formatted text would be too large to check.
    """
    if source.problem is not None:
        print_text(source, [source.problem])
        return None
    try:
        with collector_paused():  # the AST is many small objects, none in a cycle
            formatted = format(parse(source.text, source.name))
    except FlowError as exc:
        print_text(source, exc.diagnostics)
        return None
    size = len(formatted.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise CommandError(
            f"{source.name}: not formatted: the formatted text would be {size:,} bytes; "
            f"the limit is {MAX_SOURCE_BYTES:,} bytes"
        )
    # A safety net: the formatter keeps comments, and a file is never written without them.
    comments = find_comments(source.text)
    if len(find_comments(formatted)) < len(comments):
        first = comments[0]
        print(
            f"{source.name}:{first.line}:{first.column}: not formatted: "
            "the formatter would drop a comment",
            file=sys.stderr,
        )
        return None
    return formatted


def _write(path: str, text: str) -> None:
    """Replace the file at `path` by `text` whole, keeping its permissions.

    The text goes to a temporary file in the same directory, flushed to disk, which then
    takes the file's place in one rename: a failure at any point leaves the file as it was.
    A symbolic link is followed, so the link stays and the file it names is rewritten.
    """
    target = os.path.realpath(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
        handle, temporary = tempfile.mkstemp(
            prefix=".flowc-fmt-", suffix=".tmp", dir=os.path.dirname(target)
        )
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(text.encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise CommandError(f"cannot write `{path}`: {exc.strerror or exc}") from None
