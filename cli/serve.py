"""`flowc serve` -> the HTTP API under uvicorn, on the database `DATABASE_URL` names.

FastAPI, uvicorn and the database drivers are imported here, when this command runs, and
never by the commands editors call (`flowc check`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from typing import Any

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

    if args.no_worker:  # read by the settings, here and in `--reload`'s child process
        os.environ[WORKER_VARIABLE] = "false"
    settings = load_settings()
    try:
        from flowc.server.app import create_app  # builds `server.app.app` from the settings

        app = create_app(settings)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CommandError(f"invalid settings in the environment: {exc}") from None
    open_database(settings.database_url, migrate=args.migrate)
    entries = tool_entries(args.tools, os.environ)
    load_tools(entries)  # a broken tool module: one line and exit 2, before serving
    # The application loads `FLOWC_TOOLS` when it starts (also in `--reload`'s child process).
    os.environ[TOOLS_VARIABLE] = os.pathsep.join(entries)
    where = f"http://{args.host}:{args.port}"
    print(f"flowc: serving on {where} (API docs at {where}/docs)", file=sys.stderr)
    worker = "" if settings.worker else " (no worker: runs wait for `flowc worker`)"
    print(f"flowc: database {redact(settings.database_url)}{worker}", file=sys.stderr, flush=True)
    if args.reload:  # the reloader imports the application itself, in a child process
        uvicorn.run(
            "flowc.server.app:create_app", factory=True, host=args.host, port=args.port, reload=True
        )
        return EXIT_OK
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        # Requests still open after the runs were released are answered, then cut.
        timeout_graceful_shutdown=settings.shutdown_grace + 5,
    )
    _DrainingServer(config, app).run()
    return EXIT_OK


#: `flowc serve --no-worker` sets it for the application (and `--reload`'s child).
WORKER_VARIABLE = "FLOWC_WORKER"


def load_settings() -> Any:
    """The settings from the environment; invalid ones are a `CommandError`."""
    from flowc.server.settings import get_settings

    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError is one
        raise CommandError(f"invalid settings in the environment: {exc}") from None


class _DrainingServer:
    """uvicorn's server, but a stop signal first releases the runs, then waits for requests.

    Clients waiting on `wait: true` are then answered (503: the run goes on elsewhere)
    instead of holding the shutdown open.
    """

    def __init__(self, config: Any, app: Any) -> None:
        import uvicorn

        draining: list[asyncio.Future[None]] = []

        def drain() -> None:
            runs = getattr(app.state, "runs", None)
            if runs is not None:
                draining.append(asyncio.ensure_future(runs.drain()))

        class Server(uvicorn.Server):
            loop: asyncio.AbstractEventLoop | None = None

            async def startup(self, sockets: Any = None) -> None:
                self.loop = asyncio.get_running_loop()  # the signal handler's way in
                await super().startup(sockets)

            def handle_exit(self, sig: int, frame: Any) -> None:
                if not self.should_exit and self.loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop is closed already
                        self.loop.call_soon_threadsafe(drain)
                super().handle_exit(sig, frame)

        self.server = Server(config)

    def run(self) -> None:
        """Serve until a signal stops it."""
        self.server.run()


def open_database(url: str, *, migrate: bool) -> None:
    """Check the schema once (creating it in an empty database); a failure is one line.

    An old schema is refused with what to run, unless `migrate` upgrades it.
    """
    from flowc.server.schema import SchemaError, prepare

    try:
        asyncio.run(prepare(url, migrate=migrate))
    except SchemaError as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # whatever the cause, the server cannot start on it
        raise CommandError(
            f"cannot open the database {redact(url)}: {type(exc).__name__}: {exc}"
        ) from None
