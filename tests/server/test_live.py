"""A local run's history (`server/live.py`): kept compactly, given back as it was published."""

from __future__ import annotations

import gc
import uuid

from flowc.runtime.events import Event, RunError
from flowc.server.live import Live


def published() -> list[Event | dict[str, object]]:
    """One of each shape a run publishes: with and without a delta, a state, an error."""
    return [
        Event("run_started", "r", 0, "a", 1.0),
        Event("node_started", "r", 1, "a", 1.5),
        Event("node_finished", "r", 1, "a", 2.0, delta={"n": [1]}, duration_ms=0.5, attempts=2),
        Event("node_started", "r", 2, "b", 2.5, branch="0"),
        Event("node_finished", "r", 2, "b", 3.0, delta={}, duration_ms=0.5, attempts=1,
              failed=True, branch="0"),
        {"type": "child", "run_id": "c", "step": 0},
        Event("run_failed", "r", 2, "b", 3.5, status="failed", state={"n": [1]},
              error=RunError("tool_error", "boom", "b")),
    ]  # fmt: skip


def test_each_event_is_given_back_as_it_was_published() -> None:
    live = Live(uuid.uuid4(), 1)
    events = published()
    for event in events:
        live.publish(event)
    back = [live.event(index) for index in range(len(live.events))]
    assert back == events
    assert [type(event) for event in back] == [type(event) for event in events]


def test_a_step_s_events_are_kept_as_tuples_the_collector_can_stop_tracking() -> None:
    live = Live(uuid.uuid4(), 1)
    for event in published()[1:3]:
        live.publish(event)
    assert [type(kept) for kept in live.events] == [tuple, tuple]  # not named tuples
    assert all(len(kept) == len(Event._fields) for kept in live.events)  # delta None
    gc.collect()
    assert not any(gc.is_tracked(kept) for kept in live.events)
