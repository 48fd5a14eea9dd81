"""`flowc serve` -> the HTTP API under uvicorn, on the database `DATABASE_URL` names.

FastAPI, uvicorn and the database drivers are imported here, when this command runs, and
never by the commands editors call (`flowc check`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys

from flowc.cli.errors import EXIT_OK, CommandError
from flowc.cli.tool_loading import TOOLS_VARIABLE, load_tools, tool_entries

#: `scheme://user:password@host` -> `scheme://user:***@host`.
_PASSWORD = re.compile(r"(://[^/:@]*):[^/@]*@")


def redact(url: str) -> str:
    """A database URL with its password, if any, replaced by `***`."""
    return _PASSWORD.sub(r"\1:***@", url)


def run(args: argparse.Namespace) -> int:
    """Serve the API until interrupted; print where, and on which database."""
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be from 0 to 65535, not {args.port}")
    import uvicorn

    from flowc.server.settings import get_settings

    try:
        settings = get_settings()
        from flowc.server.app import create_app  # builds `server.app.app` from the same settings

        app = create_app(settings)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CommandError(f"invalid settings in the environment: {exc}") from None
    _open_database(settings.database_url)
    entries = tool_entries(args.tools, os.environ)
    load_tools(entries)  # a broken tool module: one line and exit 2, before serving
    # The application loads `FLOWC_TOOLS` when it starts (also in `--reload`'s child process).
    os.environ[TOOLS_VARIABLE] = os.pathsep.join(entries)
    where = f"http://{args.host}:{args.port}"
    print(f"flowc: serving on {where} (API docs at {where}/docs)", file=sys.stderr)
    print(f"flowc: database {redact(settings.database_url)}", file=sys.stderr, flush=True)
    if args.reload:  # the reloader imports the application itself, in a child process
        uvicorn.run(
            "flowc.server.app:create_app", factory=True, host=args.host, port=args.port, reload=True
        )
    else:
        uvicorn.run(app, host=args.host, port=args.port)
    return EXIT_OK


def _open_database(url: str) -> None:
    """Connect once and create any missing tables; a failure is a `CommandError`.

    A database that is not there is then one line on standard error, not a traceback
    from the server's start-up.
    """
    from flowc.server.db import Database

    async def probe() -> None:
        db = Database(url)
        try:
            await db.create_tables()
        finally:
            await db.dispose()

    try:
        asyncio.run(probe())
    except Exception as exc:  # whatever the cause, the server cannot start on it
        raise CommandError(
            f"cannot open the database {redact(url)}: {type(exc).__name__}: {exc}"
        ) from None
