"""A database outage in the log: one line at its start, reminders while it lasts, one at its end.

Every part of a process that reaches the database tells the same `Outage`; the log gets
what an operator needs (when, why, how long), not a line for each try of each part.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowc.runtime import Registry
from flowc.server.db import Database
from flowc.server.outage import QUIET_AFTER, REMIND_EVERY, Outage
from flowc.server.runlog import DatabaseAway, run_log_for
from tests.server.conftest import service_on, until


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The clock of the test's `outage`."""
    return Clock()


@pytest.fixture
def outage(clock: Clock, caplog: pytest.LogCaptureFixture) -> Outage:
    """An outage record on `clock`, its every line captured (DEBUG too)."""
    caplog.set_level(logging.DEBUG, logger="flowc")
    return Outage(clock)


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """What was logged at INFO and above, as (level, message); then forgets it."""
    lines = [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.levelno >= logging.INFO
    ]
    caplog.clear()
    return lines


def test_an_outage_is_said_once_reminded_now_and_then_and_its_end_is_said(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    assert not outage.away_now
    outage.away("claiming runs", "ConnectionRefusedError: [Errno 111] Connection refused")
    assert said(caplog) == [
        (
            "WARNING",
            "the database is unreachable (ConnectionRefusedError: [Errno 111] Connection "
            "refused): claiming runs failed; runs pause and go on once it is back, and the "
            "API answers 503 meanwhile",
        )
    ]
    for _ in range(50):  # every part, again and again, within a minute: nothing more
        clock.now += 1
        outage.away("writing steps", "ConnectionRefusedError: refused")
    assert said(caplog) == []
    clock.now += REMIND_EVERY - 50
    outage.away("renewing leases", "CannotConnectNowError: starting up")
    assert said(caplog) == [
        (
            "WARNING",
            "the database is still unreachable after 60 s (CannotConnectNowError: starting "
            "up); 52 tries failed so far",
        )
    ]
    assert outage.away_now
    clock.now += 2.5
    outage.back()
    outage.back()  # said once
    assert said(caplog) == [
        ("INFO", "the database is back after 62.5 s (52 tries failed meanwhile)")
    ]
    assert not outage.away_now


def test_a_success_with_no_outage_says_nothing(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    outage.back()
    assert said(caplog) == []


def test_failures_far_apart_are_outages_of_their_own_where_nothing_says_it_is_back(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # An API-only process hears of the database only through requests: a failure long
    # after the last one starts a new outage, said again.
    outage.away("answering GET /graph/state/x", "OSError: down")
    clock.now += QUIET_AFTER / 2
    outage.away("answering GET /graph/state/x", "OSError: down")
    clock.now += QUIET_AFTER + 1
    outage.away("answering POST /graph/run", "OSError: down again")
    assert [message.split(":")[0] for _, message in said(caplog)] == [
        "the database is unreachable (OSError",
        "the database is unreachable (OSError",
    ]


def test_the_run_log_adds_unreachable_databases_to_the_outage_and_says_other_failures(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="flowc")
    db = Database(f"sqlite:///{tmp_path}/outage.db")
    log = run_log_for(db, owner="here:1", lease_seconds=15)
    assert log.outage is db.outage  # one story per database, whoever tells it
    for _ in range(3):
        log.trouble("claiming runs", DatabaseAway("OSError: refused"))
        log.trouble("renewing leases", ConnectionResetError("reset"))
    for _ in range(2):
        log.trouble("renewing leases", ValueError("not the database's absence"))
    assert said(caplog) == [
        (
            "WARNING",
            "the database is unreachable (OSError: refused): claiming runs failed; runs "
            "pause and go on once it is back, and the API answers 503 meanwhile",
        ),
        (
            "WARNING",
            "renewing leases failed (ValueError: not the database's absence); trying again",
        ),
        (
            "WARNING",
            "renewing leases failed (ValueError: not the database's absence); trying again",
        ),
    ]


@pytest.mark.asyncio
async def test_an_idle_worker_says_an_outage_once_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no runs, the heartbeat asks the database nothing: its "success" must not end
    # the outage (it did, and an idle server said "unreachable" and "back" every second).
    caplog.set_level(logging.INFO, logger="flowc")
    async with service_on(f"sqlite:///{tmp_path}/idle.db", Registry(), lease_seconds=0.3) as runs:
        down, beats = [True], [0]
        claim, sweep, heartbeat = runs.log.claim, runs.waits.sweep, runs.log.heartbeat

        async def claim_unless_down(limit: int, **options: Any) -> Any:
            if down[0]:
                raise ConnectionRefusedError("[Errno 111] Connection refused")
            return await claim(limit, **options)

        async def sweep_unless_down() -> Any:
            if down[0]:
                raise ConnectionRefusedError("[Errno 111] Connection refused")
            return await sweep()

        async def counted_heartbeat(owned: dict[Any, int]) -> Any:
            beats[0] += 1
            return await heartbeat(owned)

        monkeypatch.setattr(runs.log, "claim", claim_unless_down)
        monkeypatch.setattr(runs.waits, "sweep", sweep_unless_down)
        monkeypatch.setattr(runs.log, "heartbeat", counted_heartbeat)
        caplog.clear()
        await until(lambda: beats[0] >= 5, "five heartbeats while the database is away")
        during = said(caplog)
        down[0] = False
        await until(lambda: any("is back" in r.getMessage() for r in caplog.records), "its end")
    assert [level for level, _ in during] == ["WARNING"]
    assert during[0][1].startswith("the database is unreachable (ConnectionRefusedError")
    after = [message for _, message in said(caplog) if "database" in message]
    assert after and after[0].startswith("the database is back after")
