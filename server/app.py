"""Settings -> the FastAPI application: routers, error handlers, body limit, auth, docs, lifespan.

The lifespan opens the database (creating missing tables), loads the built-in tools and
starts the run service.  Nothing connects at import: `app` is cheap to build.  `/docs` and
`/redoc` load their scripts from the installed `fastapi-offline` package, not from a CDN.
With API tokens, `Authentication` wraps everything (outside the body limit: a request
without a token is refused before its body is read) and the document shows the scheme.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Security
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from flowc.runtime import REGISTRY
from flowc.runtime.tools.loading import load_tool_modules, tool_entries
from flowc.server.auth import (
    BEARER,
    Authentication,
    Clock,
    RequestRate,
    RunLedger,
    load_tokens,
)
from flowc.server.db import Database
from flowc.server.errors import (
    AUTHENTICATION,
    UNEXPECTED,
    BodySizeLimit,
    answer_wrong_methods,
    install_error_handlers,
)
from flowc.server.routes import api_router, health_router
from flowc.server.routes.stream import PROTOCOL
from flowc.server.runs import DURABILITIES, RunService
from flowc.server.settings import Settings, get_settings

#: Where `/docs` and `/redoc` find their scripts, styles and icon.
DOCS_ASSETS = "/docs-assets"

DESCRIPTION = f"""\
Workflow graphs written in the Flow language: checked, saved, run and recorded.  Save a
graph with `POST /graph/create` (flow text, or an IR document), run it with
`POST /graph/run`, read a run with `GET /graph/state/{{run_id}}`, follow it live over the
WebSocket below.  The built-in tools are `analyze_syntax`, `check_style`, `score_code` and
`refine_code` (also `analyze`, `style`, `score`, `refine`); `GET /tools` lists them all.

### Errors

Every error is a JSON object with a `detail`: a sentence, except for most 422s, where it
is a list of `{{loc, msg, type}}` (one per invalid field) or, when a graph has errors,
`{{message, diagnostics}}` with each problem's position.  Whatever the route: a body over
`FLOWC_MAX_BODY_BYTES` is a 413, a `Content-Length` that is not a number a 400, an unknown
path a 404, a method the path does not take a 405 (with `Allow`), and a failure on the
server's side a 500 whose details go to the server's log.

### Authentication

A server started with API tokens (`FLOWC_API_TOKENS`, `FLOWC_API_TOKENS_FILE`) answers
every request but `GET /healthz` (these pages and the WebSocket included) only with
`Authorization: Bearer <token>`: 401 and `WWW-Authenticate: Bearer` without a valid one.
A browser's WebSocket, which cannot set headers, offers the subprotocols `flowc.v1` and
`bearer.<token>` instead (the server answers `flowc.v1`); a refused WebSocket gets the same
401 at its handshake.  Each token has a request rate (`FLOWC_TOKEN_RATE` a second,
`FLOWC_TOKEN_BURST` at once) and a number of runs it may have queued or running
(`FLOWC_TOKEN_MAX_RUNS`): past either, a 429 with `Retry-After`.

{PROTOCOL}"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database (creating missing tables) and the run service; close both after."""
    settings: Settings = app.state.settings
    db = Database(settings.database_url)
    try:
        await db.create_tables()
        load_tool_modules(tool_entries((), os.environ))  # built-in packs, then FLOWC_TOOLS
        runs = RunService(db, registry=REGISTRY, settings=settings)
        await runs.open()
        app.state.db, app.state.runs, app.state.registry = db, runs, REGISTRY
        try:
            yield
        finally:
            await runs.close()
    finally:
        await db.dispose()


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI `operationId`: its function's name (`run_graph`, `get_graph`)."""
    return route.name


def create_app(settings: Settings | None = None, *, clock: Clock = time.monotonic) -> FastAPI:
    """The flowc API for `settings` (default: from the environment).

    `clock` times the tokens' request rates.  Bad tokens or a bad token file are a
    `TokenFileError` (a `ValueError`), as other bad settings are.
    """
    settings = settings or get_settings()
    if settings.default_durability not in DURABILITIES:
        raise ValueError(
            f"FLOWC_DEFAULT_DURABILITY must be one of {', '.join(DURABILITIES)}, "
            f"not {settings.default_durability!r}"
        )
    app = FastAPIOffline(
        title="flowc",
        summary="Workflow graphs written in a small, checked text language, run and recorded.",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=UNEXPECTED,
        generate_unique_id_function=operation_id,
        static_url=DOCS_ASSETS,
        # Swagger UI would otherwise send the document to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    tokens = load_tokens(settings)
    app.state.settings, app.state.tokens = settings, tokens
    app.state.run_ledger = RunLedger(settings.token_max_runs)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if tokens:
        rate = RequestRate(settings.token_rate, settings.token_burst, clock)
        app.add_middleware(Authentication, tokens=tokens, rate=rate)  # added last: outermost
        app.include_router(api_router, dependencies=[Security(BEARER)], responses=AUTHENTICATION)
    else:
        app.include_router(api_router)
    app.include_router(health_router)
    answer_wrong_methods(app.router)
    return app


app = create_app()
