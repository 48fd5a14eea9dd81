"""`flowc serve` -> the HTTP API under uvicorn, on the database `DATABASE_URL` names.

FastAPI, uvicorn and the database drivers are imported here, when this command runs, and
never by the commands editors call (`flowc check`).  A server without API tokens listens
on the loopback only, unless `--insecure` says it may be open to the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
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
    tokens = len(app.state.tokens)
    if not tokens:
        refuse_open_network(args.host, insecure=args.insecure)
    open_database(settings.database_url, migrate=args.migrate)
    entries = tool_entries(args.tools, os.environ)
    load_tools(entries)  # a broken tool module: one line and exit 2, before serving
    # The application loads `FLOWC_TOOLS` when it starts (also in `--reload`'s child process).
    os.environ[TOOLS_VARIABLE] = os.pathsep.join(entries)
    where = f"http://{args.host}:{args.port}"
    print(f"flowc: serving on {where} (API docs at {where}/docs)", file=sys.stderr)
    worker = "" if settings.worker else " (no worker: runs wait for `flowc worker`)"
    print(f"flowc: database {redact(settings.database_url)}{worker}", file=sys.stderr)
    if tokens:
        print(f"flowc: {tokens} API token(s): every route but /healthz needs one", file=sys.stderr)
    sys.stderr.flush()
    if args.reload:  # the reloader imports the application itself, in a child process
        uvicorn.run(
            "flowc.cli.serve:reloaded_app",
            factory=True,
            host=args.host,
            port=args.port,
            reload=True,
        )
        return EXIT_OK
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        # Requests still open after the runs were released are answered, then cut.
        timeout_graceful_shutdown=settings.shutdown_grace + 5,
    )
    log_as_serve()
    settle_process()
    _DrainingServer(config, app).run()
    return EXIT_OK


#: What uvicorn's `websockets-sansio` logs, as an error, after every WebSocket refused with
#: a 401 (the denial-response extension): it forgets that the handshake was answered
#: (uvicorn PR #3138).  Our one WebSocket route always accepts, so this is only ever that.
_REFUSAL_LOGGED_AS_ERROR = "ASGI callable returned without completing handshake."


def _refused_websocket_is_no_error(record: logging.LogRecord) -> bool:
    return record.getMessage() != _REFUSAL_LOGGED_AS_ERROR


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (also as `::ffff:127.x.y.z` or `[::1]`)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:  # any other name may resolve to anything
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def refuse_open_network(host: str, *, insecure: bool) -> None:
    """A server without tokens on a host others can reach: refused, unless `insecure`."""
    if is_loopback(host):
        return
    where = host or "every interface"
    if not insecure:
        raise CommandError(
            f"refusing to serve on {where} without API tokens: anyone who can reach it could "
            "run flows and read every run; set FLOWC_API_TOKENS or FLOWC_API_TOKENS_FILE "
            "(`flowc token new` makes a token), or pass --insecure to serve it open"
        )
    print(
        f"flowc: warning: serving on {where} without API tokens (--insecure): anyone who "
        "can reach it can use the API",
        file=sys.stderr,
    )


#: Seconds a thread waiting for the GIL lets the running one go on (Python's default is
#: 0.005).  A run keeps the loop's thread busy between its yields, and SQLite's driver
#: thread needs the GIL several times per query: at 5 ms a wait, `/healthz` on SQLite took
#: 1.5-5 s during a CPU-bound run; at 0.5 ms, 25 ms.
SWITCH_INTERVAL = 0.0005


#: How flowc's own log lines read on standard error: when, how grave, from where, what.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes, not to the one it was made with.

    As Python's own last-resort handler does: a test's captured stream may be gone later.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging() -> None:
    """Log `flowc.*` lines (INFO and up) on standard error, with their time and level.

    Without it Python prints only warnings, bare: no time to tell when a lease was lost,
    and no line at all for what is logged at INFO (a write the database refused, the
    sub-flow runs a cancellation ended).  Once per process.
    """
    logger = logging.getLogger("flowc")
    if any(isinstance(handler, _Stderr) for handler in logger.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def reloaded_app() -> Any:
    """The application in `--reload`'s child process, which logs as `flowc serve` does."""
    from flowc.server.app import create_app

    log_as_serve()
    return create_app()


def log_as_serve() -> None:
    """The log of a serving process: flowc's lines, and no error for a refused WebSocket."""
    logging.getLogger("uvicorn.error").addFilter(_refused_websocket_is_no_error)
    configure_logging()


#: New container objects the garbage collector lets come before it looks at the youngest
#: (Python's default is 700).  What a run holds while the middle generation is collected
#: moves to the oldest, and enough of that brings a full collection of the whole heap
#: (90-130 ms here, for some 150,000 objects, most of them the start-up's).  At 700 a
#: 1,000-step run saw one every 20-30 runs, and 4.2 ms of collecting a run in all; at
#: 10,000, none in 30 runs and 0.5 ms a run.  A cycle of garbage may wait longer to be
#: freed: at most this many objects' worth.
GC_YOUNG = 10_000


def settle_process() -> None:
    """Before serving: quick GIL hand-overs, and fewer collections of the youngest objects.

    (Not `gc.freeze()`: with the start-up heap out of the collector's count, its rule of
    "a full collection when the old generation grew by a quarter" fired every second
    during a long run, and each walked the run's history: p99 of `/healthz` 96-118 ms
    instead of 28 ms.)
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


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
