"""Process tools for the tests: defined at the top of a module, so a worker can import them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flowc.runtime import Registry, current_step

State = dict[str, Any]


def where(state: State) -> State:
    """Which process ran the step, and the step as the tool saw it."""
    return {"pid": os.getpid(), "key": current_step().idempotency_key}


def fail(state: State) -> State:
    """Raise."""
    raise ValueError("no good")


def die(state: State) -> State:
    """End the worker process in the middle of the call."""
    os._exit(3)


def hang(state: State, *, marker: str) -> State:
    """Write the worker's pid to `marker`, then never return."""
    Path(marker).write_text(str(os.getpid()), encoding="utf-8")
    while True:
        time.sleep(60)


def spin(state: State, *, flag: str) -> State:
    """Say it started (the file `flag.started`), then keep a CPU busy until `flag` exists."""
    Path(f"{flag}.started").write_text("", encoding="utf-8")
    turns = 0
    while not os.path.exists(flag):
        turns += 1
    return {"spun": True}


def unsendable(state: State) -> State:
    """A result that cannot be pickled back."""
    return {"f": lambda: 1}


def process_registry() -> Registry:
    """Every tool above, as a process tool."""
    registry = Registry()
    for tool in (where, fail, die, hang, spin, unsendable):
        registry.add(tool, process=True)
    return registry
