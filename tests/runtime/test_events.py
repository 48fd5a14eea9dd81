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
from flowc.runtime.events import RunResult, Step, iso


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
