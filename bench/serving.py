"""A `flowc serve` subprocess for the benches that measure through HTTP.

`served` starts it with bench/tools.py's tools on a database URL, waits until `/healthz`
answers, yields its base URL and process, and stops it (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).parents[1]
TOOLS = ROOT / "bench" / "tools.py"
FLOWC = Path(sys.executable).with_name("flowc")
#: Seconds a server has to answer `/healthz` after it starts.
START_TIMEOUT = 60.0


#: The PostgreSQL server the benches make their scratch databases on (asyncpg takes the
#: plain `postgresql://` form).
ADMIN_URL = os.environ.get(
    "FLOWC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
).replace("postgresql+asyncpg://", "postgresql://")


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def healthy(server: subprocess.Popen[bytes], base: str) -> bool:
    """Poll `/healthz` until it answers 200 (True), the server exits or time is up (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    return False


@asynccontextmanager
async def served(
    database_url: str, log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """`flowc serve --tools bench/tools.py` on `database_url` with `env` added, healthy; its
    base URL and process.  Its output goes to `log`; the last of it is printed if the body
    fails."""
    port = free_port()
    command = [str(FLOWC)] if FLOWC.exists() else [sys.executable, "-m", "flowc.cli.main"]
    command += ["serve", "--port", str(port), "--tools", str(TOOLS)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        if not await healthy(server, base):
            sys.exit(f"flowc serve did not start:\n{log.read_text(errors='replace')}")
        try:
            yield base, server
        except Exception:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print("flowc serve's last words:", *tail, sep="\n", file=sys.stderr)
            raise
    finally:
        server.terminate()
        try:
            await asyncio.to_thread(server.wait, 30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@asynccontextmanager
async def scratch_database(admin: Any, prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database on the server of `admin` (connected to `ADMIN_URL`), named
    `prefix` and a random suffix: its URL, and it is dropped (and `admin` closed) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
