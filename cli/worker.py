"""`flowc worker` -> a process that executes runs from PostgreSQL, without HTTP.

Any number of workers and `flowc serve` processes share one database: each claims queued
runs and runs whose owner went silent, and SIGTERM (or Ctrl-C) releases its runs after
their current step so that another worker resumes them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from flowc.cli.errors import EXIT_OK, CommandError
from flowc.cli.serve import (
    configure_logging,
    load_settings,
    open_database,
    redact,
    settle_process,
)
from flowc.cli.tool_loading import load_tools, tool_entries


def run(args: argparse.Namespace) -> int:
    """Execute runs until SIGTERM or Ctrl-C; then release them and exit 0."""
    settings = load_settings()
    if not settings.database_url.startswith(("postgresql", "postgres://")):
        raise CommandError(
            "flowc worker needs PostgreSQL (DATABASE_URL=postgresql://...): a SQLite file "
            "belongs to one process, and `flowc serve` runs its runs itself"
        )
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise CommandError(f"--concurrency must be at least 1, not {args.concurrency}")
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    open_database(settings.database_url, migrate=args.migrate)
    load_tools(tool_entries(args.tools, os.environ))
    print(
        f"flowc: worker {os.getpid()} on {redact(settings.database_url)} "
        f"(up to {settings.worker_concurrency} runs at once)",
        file=sys.stderr,
        flush=True,
    )
    configure_logging()
    settle_process()
    asyncio.run(_work(settings))
    return EXIT_OK


async def _work(settings: object) -> None:
    from flowc.runtime import REGISTRY
    from flowc.server.db import Database
    from flowc.server.runs import RunService
    from flowc.server.settings import Settings

    assert isinstance(settings, Settings)
    db = Database(settings.database_url)
    runs = RunService(db, registry=REGISTRY, settings=settings, worker=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runs.open()
        await stop.wait()
        print("flowc: worker stopping: releasing its runs", file=sys.stderr, flush=True)
    finally:
        await runs.close()
        await db.dispose()
