"""A claim's writer connections -> the fence of its later steps, and the takeover that ends them.

Reading and share-locking the run's row with each step costs 10-15% of a lone `sync`
step, so only the first step of a claim on a writer connection is fenced by its
statement; the later ones on that connection are plain inserts (`HeldClaims`).  That holds
because writer connections carry their owner in `application_name` (`writer_name`) and
whoever takes runs from a silent owner ends that owner's writer connections before its
claim commits (`fence_out`).  docs/durability.md has the argument.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

from flowc.server.runlog import FenceOutFailed, logger

#: Milliseconds a takeover waits for each of the silent owner's writer connections to end.
FENCE_OUT_MS = 5_000
#: The claims a writer connection remembers as held: past that, the oldest is fenced again.
HELD_PER_CONNECTION = 10_000
#: Seconds between two warnings that the runs of one silent owner cannot be taken.
REFUSED_WARNING_EVERY = 60.0
#: Ends the writer connections named (`writer_name`) in this database, waiting for each.
FENCE_OUT = """
    SELECT pid, pg_terminate_backend(pid, $2) AS ended
      FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = ANY($1::text[])
       AND pid <> pg_backend_pid()
"""

Claim = tuple[uuid.UUID, int]


def writer_name(owner: str) -> str:
    """The `application_name` of an owner's writer connections: how a takeover finds them.

    `flowc writer host:pid` when PostgreSQL keeps it as it is (printable ASCII, at most 63
    bytes); a digest of the owner otherwise.  Two owners with one name only cost each other
    reconnections, never a fence.
    """
    name = f"flowc writer {owner}"
    if len(name) <= 63 and all(" " <= c <= "~" for c in name):
        return name
    return f"flowc writer #{hashlib.sha256(owner.encode()).hexdigest()[:24]}"


class HeldClaims:
    """Per writer connection, the claims `(run_id, attempt)` it wrote a fenced step of.

    A connection replaced (lost, broken, closed) takes its claims with it: they go when
    it is collected, and a new connection starts with none.  Kept by the connection's
    `id`, which no other object can have while it lives: a lookup on every step is then
    a plain dict's, with no weak reference made for it.
    """

    def __init__(self) -> None:
        self._held: dict[int, dict[Claim, None]] = {}

    def holds(self, connection: Any, claim: Claim) -> bool:
        """Whether a step of `claim` on `connection` may be a plain insert."""
        held = self._held.get(id(connection))
        return held is not None and claim in held

    def hold(self, connection: Any, claim: Claim) -> None:
        """Remember that `connection` wrote a fenced step of `claim`."""
        key = id(connection)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
            weakref.finalize(connection, self._held.pop, key, None)
        elif len(held) >= HELD_PER_CONNECTION:
            del held[next(iter(held))]
        held[claim] = None


async def fence_out(connection: Any, owners: Iterable[str]) -> None:
    """End the writer connections of silent `owners` and wait for each; raise if not.

    Called in the transaction that takes their runs, before it commits: a step an old
    connection committed is in the log the new owner reads, and a connection that owner
    opens after this one is fenced by the statement (its first write waits for this
    transaction's row locks, then sees the new epoch).  Every flowc process must connect
    as one role (or one allowed `pg_signal_backend`): PostgreSQL refuses otherwise.
    """
    import asyncpg

    owners = set(owners)
    names = sorted({writer_name(owner) for owner in owners})
    try:
        ended = await connection.fetch(FENCE_OUT, names, FENCE_OUT_MS)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise FenceOutFailed(
            f"cannot take runs over from {', '.join(sorted(owners))}: PostgreSQL refused to "
            f"end their writer connections ({exc}); every flowc process must connect as the "
            "same role, or as one granted pg_signal_backend",
            owners,
        ) from None
    left = [record["pid"] for record in ended if not record["ended"]]
    if left:
        # `false` also means the backend had ended already: look again, afresh.
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        alive = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])", left
        )
        if alive:
            raise FenceOutFailed(
                f"cannot take runs over from {', '.join(sorted(owners))}: their writer "
                f"connections (server pids {', '.join(str(r['pid']) for r in alive)}) did "
                f"not end within {FENCE_OUT_MS} ms",
                owners,
            )


class RefusedOwners:
    """Silent owners whose runs could not be taken: warned of at most once a minute each."""

    def __init__(self) -> None:
        self._warned: dict[str, float] = {}

    def warn(self, exc: FenceOutFailed) -> None:
        """Log `exc` unless each of its owners was warned of in the last minute."""
        now = time.monotonic()
        last = self._warned
        if any(now - last.get(owner, -math.inf) >= REFUSED_WARNING_EVERY for owner in exc.owners):
            logger.warning("%s; left where they are, tried again later", exc)
            last.update(dict.fromkeys(exc.owners, now))
