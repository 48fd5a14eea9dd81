"""The benchmark's tool module, for `flowc serve --tools bench/tools.py`: `tick` counts."""

from __future__ import annotations

from typing import Any

from flowc.runtime import register_tool


@register_tool
def tick(state: dict[str, Any]) -> dict[str, Any]:
    """One step: `n` plus one.  Only `n` changes, so a step's delta is `{"n": ...}`."""
    return {"n": state.get("n", 0) + 1}
