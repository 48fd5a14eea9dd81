"""`flowc db upgrade|current` -> the schema of the database `DATABASE_URL` names, upgraded or shown.

The server, alembic and the database drivers are imported when one of these runs, as for
`flowc serve`; a database that cannot be reached or upgraded is one line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flowc.cli.errors import EXIT_OK, CommandError
from flowc.cli.serve import redact

_T = TypeVar("_T")


def run(args: argparse.Namespace) -> int:
    """Run the `db` action the arguments name."""
    actions: dict[str, Callable[[str], int]] = {"upgrade": upgrade, "current": current}
    return actions[args.action](_database_url())


def upgrade(url: str) -> int:
    """Upgrade the database at `url` to this flowc's schema; say from which revision."""
    from flowc.server import schema

    before, after = _on_database(url, "upgrade", schema.upgrade(url))
    shown = redact(url)
    if before == after:
        print(f"flowc: database {shown} already at {after}", file=sys.stderr)
    elif before is None:
        print(f"flowc: database {shown} created at {after}", file=sys.stderr)
    else:
        print(f"flowc: database {shown} upgraded from {before} to {after}", file=sys.stderr)
    return EXIT_OK


def current(url: str) -> int:
    """Print the revision of the database at `url` (`empty` when it has no flowc tables)."""
    from flowc.server import schema

    revision = _on_database(url, "read", schema.schema_revision(url))
    print(revision or "empty")
    return EXIT_OK


def _database_url() -> str:
    from flowc.server.settings import get_settings

    try:
        return get_settings().database_url
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CommandError(f"invalid settings in the environment: {exc}") from None


def _on_database(url: str, verb: str, work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work`; whatever stops it is a `CommandError` of one line naming the database."""
    from flowc.server.schema import SchemaError

    try:
        return asyncio.run(work)
    except SchemaError as exc:
        raise CommandError(f"cannot {verb} the database {redact(url)}: {exc}") from None
    except Exception as exc:  # a bad URL, a database that is not there: it cannot go on
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CommandError(
            f"cannot {verb} the database {redact(url)}: {type(exc).__name__}: {first_line}"
        ) from None
