"""A database outage in the log: one line when it starts, a reminder now and then, one at its end.

While the database is away, every part of a process that talks to it fails and tries
again: the claim loop, the heartbeat, the step writers, NOTIFY and LISTEN, each API
request and each follower.  A line for every try buried the log (five to ten a second,
thousands in an hour) and said the same thing each time.  Each part now tells its
`Outage` instead: the first failure is logged (`WARNING`, with what failed and why),
later ones only at `DEBUG`, with a reminder every `REMIND_EVERY` seconds while it lasts,
and the first success after it says how long it lasted (`INFO`).  Only failures that
mean the database cannot be reached count; any other failure is logged where it happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two reminders that the database is still away.
REMIND_EVERY = 60.0
#: Seconds without a failure after which the next failure starts a new outage, for a
#: process where nothing reports a success (an API-only process between requests).
QUIET_AFTER = 10.0

logger = logging.getLogger("flowc.server")


class Outage:
    """What one process says of its database's outages (see the module's docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: When the outage began; None while the database answers.
        self._since: float | None = None
        self._last_failure = 0.0
        self._reminded = 0.0
        self._failures = 0

    @property
    def away_now(self) -> bool:
        """Whether an outage is going on (a failure, and no success since)."""
        return self._since is not None

    def away(self, what: str, reason: str) -> None:
        """`what` failed because the database cannot be reached (`reason` says how)."""
        now = self._clock()
        if self._since is None or now - self._last_failure > QUIET_AFTER:
            self._since = self._reminded = self._last_failure = now
            self._failures = 1
            logger.warning(
                "the database is unreachable (%s): %s failed; runs pause and go on once it "
                "is back, and the API answers 503 meanwhile",
                reason,
                what,
            )
            return
        self._failures += 1
        self._last_failure = now
        if now - self._reminded >= REMIND_EVERY:
            self._reminded = now
            logger.warning(
                "the database is still unreachable after %.0f s (%s); %d tries failed so far",
                now - self._since,
                reason,
                self._failures,
            )
        else:
            logger.debug("%s failed: the database is unreachable (%s)", what, reason)

    def back(self) -> None:
        """Something reached the database: the outage, if there was one, is over."""
        if self._since is None:
            return
        lasted = self._clock() - self._since
        logger.info(
            "the database is back after %.1f s (%d tries failed meanwhile)", lasted, self._failures
        )
        self._since = None
