"""The connection fence's pieces: writer names PostgreSQL keeps as they are, held claims.

What the fence does with real connections (a takeover ends them, a role that may not end
them takes nothing) is in `tests/server/test_runlog.py`.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from flowc.server import pgfence
from flowc.server.pgfence import HeldClaims, RefusedOwners, writer_name
from flowc.server.runlog import FenceOutFailed


@pytest.mark.parametrize(
    ("owner", "kept"),
    [
        ("vm:9318", True),
        ("a" * 42 + ":1234567", True),  # 63 bytes with the prefix: kept
        ("a" * 43 + ":1234567", False),  # 64: PostgreSQL would cut it
        ("hôte:12", False),  # not ASCII: PostgreSQL would write `?`
        ("tab\there:1", False),
    ],
)
def test_a_writer_name_is_one_postgresql_keeps_as_it_is(owner: str, kept: bool) -> None:
    name = writer_name(owner)
    assert len(name.encode()) <= 63 and all(" " <= c <= "~" for c in name)
    assert (name == f"flowc writer {owner}") is kept
    assert writer_name(owner) == name  # the same for every process that computes it
    assert writer_name(owner + "0") != name


class Connection:
    """A connection, as `HeldClaims` sees one: a key that can be weakly referenced."""


def test_claims_are_held_per_connection_and_forgotten_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgfence, "HELD_PER_CONNECTION", 3)
    held, one, other = HeldClaims(), Connection(), Connection()
    claims = [(uuid.uuid4(), 1) for _ in range(4)]
    held.hold(one, claims[0])
    assert held.holds(one, claims[0])
    assert not held.holds(one, (claims[0][0], 2))  # another claim of the run
    assert not held.holds(other, claims[0])  # another connection
    for claim in claims[1:]:
        held.hold(one, claim)
    assert [held.holds(one, claim) for claim in claims] == [False, True, True, True]
    del one  # a connection replaced takes its claims with it
    assert len(held._held) == 0  # `other` holds none yet
    held.hold(other, claims[0])
    assert held.holds(other, claims[0])


def test_a_refused_owner_is_warned_of_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    refused = RefusedOwners()
    for at in (1000.0, 1030.0, 1059.9, 1060.0, 1061.0):
        now[0] = at
        refused.warn(FenceOutFailed("cannot take runs over from w:1: why", ["w:1"]))
    now[0] = 1061.0
    refused.warn(FenceOutFailed("cannot take runs over from w:1, w:2: why", ["w:1", "w:2"]))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        "cannot take runs over from w:1: why; left where they are, tried again later",
        "cannot take runs over from w:1: why; left where they are, tried again later",
        "cannot take runs over from w:1, w:2: why; left where they are, tried again later",
    ]
