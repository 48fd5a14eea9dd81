"""`flowc fmt FILE...` -> each file rewritten in the canonical layout (`--check`: listed only).

The canonical text is `dsl.format(dsl.parse(text))`: LF line ends, no BOM.  A file is
written only when that changes it; comments are kept.  A file with syntax errors is left
alone.
"""

from __future__ import annotations

import argparse
import sys

from flowc.cli.errors import EXIT_ERRORS, EXIT_OK, CommandError, report
from flowc.cli.reporting import print_text
from flowc.cli.sources import Source, read_source
from flowc.dsl import FlowError, format, parse
from flowc.dsl.comments import find_comments


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
    """The formatted text, or None after printing why the source cannot be formatted."""
    if source.problem is not None:
        print_text(source, [source.problem])
        return None
    try:
        formatted = format(parse(source.text, source.name))
    except FlowError as exc:
        print_text(source, exc.diagnostics)
        return None
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
    try:
        with open(path, "wb") as file:
            file.write(text.encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot write `{path}`: {exc.strerror or exc}") from None
