"""Events and results as JSON: timestamps written as `datetime` writes them, only faster."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.runtime import events
from flowc.runtime.events import Event, RunResult, Step, iso


def by_datetime(at: float) -> str:
    """What `iso` must write: `datetime`'s own text for the timestamp."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


def written(write: Callable[[float], str], at: float) -> str | type[Exception]:
    """What `write` makes of `at`: its text, or the kind of error it raises."""
    try:
        return write(at)
    except (ValueError, OverflowError, OSError) as exc:
        return type(exc)


def same_as_datetime(at: float) -> bool:
    """Whether `iso` writes `at` as `datetime` does, or refuses it the same way."""
    return written(iso, at) == written(by_datetime, at)


#: From year 1 to year 9999, as far as `datetime` goes.
DATETIME_RANGE = st.floats(min_value=-62135596800.0, max_value=253402300799.0)


@given(at=DATETIME_RANGE)
def test_iso_writes_any_timestamp_as_datetime_does(at: float) -> None:
    assert same_as_datetime(at)


@given(second=st.integers(-62135596800, 253402300798), micro=st.integers(0, 2_000_000))
def test_iso_rounds_microseconds_as_datetime_does(second: int, micro: int) -> None:
    # Halves of a microsecond, and fractions that round up into the next second.
    at = second + micro / 2_000_000
    for near in (at, math.nextafter(at, -math.inf), math.nextafter(at, math.inf)):
        assert same_as_datetime(near)


@pytest.mark.parametrize(
    "at",
    [0.0, -0.0, 0.5e-6, 1.5e-6, 2.5e-6, -0.5e-6, -1e-7, -1.5, 1e9 + 0.9999995, 1e9 + 0.9999994,
     1_700_000_000.0000005, 253402300799.9999994],
)  # fmt: skip
def test_iso_edges(at: float) -> None:
    assert same_as_datetime(at)


def test_iso_is_right_in_every_order_it_is_called() -> None:
    # The second before is remembered: going back, forth and across midnight changes nothing.
    moments = [1_700_000_000.25, 1_699_999_999.75, 1_700_000_000.0, 1_700_006_400.0 - 1e-6,
               1_700_006_400.0, 1_700_000_000.25]  # fmt: skip
    assert [iso(at) for at in moments] == [by_datetime(at) for at in moments]


def test_iso_refuses_what_datetime_refuses() -> None:
    for at in (1e20, -1e20, float("nan"), float("inf"), 253402300800.0):
        assert isinstance(written(by_datetime, at), type)
        assert same_as_datetime(at)


def test_a_result_writes_its_steps_times_with_iso() -> None:
    step = Step(1, "tick", {"n": 1}, 1_700_000_000.5, 1_700_000_000.500125)
    data = RunResult("r", "succeeded", {"n": 1}, [step]).to_json()
    assert data["steps"][0]["started_at"] == "2023-11-14T22:13:20.500000+00:00"
    assert data["steps"][0]["finished_at"] == "2023-11-14T22:13:20.500125+00:00"
    assert data["steps"][0]["duration_ms"] == 0.125
    assert events._last_second[0] == 1_700_000_000
    assert sys.float_info.dig >= 15  # the rounding above is the platform's double's


def by_row(started: float, finished: float) -> float:
    """A step's `duration_ms` as read back from its row: the two times as `datetime`s."""
    begun = datetime.fromtimestamp(started, timezone.utc)
    ended = datetime.fromtimestamp(finished, timezone.utc)
    return round((ended - begun).total_seconds() * 1000, 3)


@given(
    started=st.floats(0, 4e9, allow_nan=False),
    took=st.one_of(
        st.floats(0, 1e5, allow_nan=False), st.integers(0, 10**9).map(lambda u: u / 1e6)
    ),
)
def test_a_steps_duration_reads_the_same_live_and_from_its_row(started: float, took: float) -> None:
    finished = started + took
    step = Step(1, "a", {}, started, finished)
    assert step.to_json()["duration_ms"] == by_row(started, finished)
    # The event names the step's end and its duration; its row's start is `at` less that.
    event = Event("node_finished", "r", 1, "a", finished, duration_ms=(finished - started) * 1000)
    written_start = finished - (finished - started) * 1000 / 1000
    assert event.to_json()["duration_ms"] == by_row(written_start, finished)


def test_a_duration_reads_as_its_rows_microseconds() -> None:
    # 42.8 µs by the clock, but the row holds the start as ...001 and the end as ...043:
    # 0.042 ms, where the raw difference would round to 0.043.
    started, finished = 1_000_000.0000006, 1_000_000.0000434
    assert by_row(started, finished) == 0.042
    assert Step(1, "a", {}, started, finished).to_json()["duration_ms"] == 0.042
