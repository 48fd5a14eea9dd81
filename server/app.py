"""Settings -> the FastAPI application: routers, error handlers, body limit, lifespan.

The lifespan opens the database (creating missing tables), loads the built-in tools and
starts the run service.  Nothing connects at import: `app` is cheap to build.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from flowc.runtime import REGISTRY
from flowc.runtime.tools.loading import load_tool_modules, tool_entries
from flowc.server.db import Database
from flowc.server.errors import BodySizeLimit, install_error_handlers
from flowc.server.routes import api_router
from flowc.server.runs import DURABILITIES, RunService
from flowc.server.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database (creating missing tables) and the run service; close both after."""
    settings: Settings = app.state.settings
    db = Database(settings.database_url)
    try:
        await db.create_tables()
        load_tool_modules(tool_entries((), os.environ))  # built-in packs, then FLOWC_TOOLS
        runs = RunService(db, registry=REGISTRY, settings=settings)
        app.state.db, app.state.runs, app.state.registry = db, runs, REGISTRY
        try:
            yield
        finally:
            await runs.close()
    finally:
        await db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The flowc API for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    if settings.default_durability not in DURABILITIES:
        raise ValueError(
            f"FLOWC_DEFAULT_DURABILITY must be one of {', '.join(DURABILITIES)}, "
            f"not {settings.default_durability!r}"
        )
    app = FastAPI(
        title="flowc",
        summary="Workflow graphs written in a small, checked text language, run and recorded.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(api_router)
    return app


app = create_app()
