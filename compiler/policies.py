"""Policy and setting values -> what is wrong with them: one rule per name, in a table.

The same rules check a node's `with timeout = 5` and the flow-wide `set timeout = 30`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowc.compiler.program import (
    MAX_BACKOFF,
    MAX_MAX_PARALLEL,
    MAX_MAX_STEPS,
    MAX_RETRIES,
    MAX_TIMEOUT,
)
from flowc.dsl import ast


@dataclass(frozen=True, slots=True)
class Rule:
    """A number from `low` to `high`; whole only, or above `low` only, when said so."""

    low: float
    high: float
    message: str
    whole: bool = False
    above_low: bool = False

    def accepts(self, value: ast.Value) -> bool:
        """True when `value` is a number the rule allows (a bool is not a number).

        A whole number may be written as a float that is whole: `1e3` is 1000, `1.5e0` is
        not whole.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.whole and isinstance(value, float) and not value.is_integer():
            return False
        return (self.low < value if self.above_low else self.low <= value) and value <= self.high

    def normal(self, value: ast.Value) -> ast.Value:
        """An accepted value as the IR holds it: a whole number as an `int`."""
        return int(value) if self.whole and isinstance(value, float) else value


#: Each policy's rule; a node's `with` and the flow's `set` of the same name share it.
POLICY_RULES: dict[str, Rule] = {
    "timeout": Rule(
        0,
        MAX_TIMEOUT,
        f"`timeout` must be a number of seconds greater than 0 and at most {MAX_TIMEOUT:,}",
        above_low=True,
    ),
    "retries": Rule(
        0, MAX_RETRIES, f"`retries` must be a whole number from 0 to {MAX_RETRIES}", whole=True
    ),
    "backoff": Rule(
        0, MAX_BACKOFF, f"`backoff` must be a number of seconds from 0 to {MAX_BACKOFF:,}"
    ),
}

#: The rules of the settings: `max_steps`, and a flow-wide default for each policy.
SETTING_RULES: dict[str, Rule] = {
    "max_steps": Rule(
        1,
        MAX_MAX_STEPS,
        f"`max_steps` must be a whole number from 1 to {MAX_MAX_STEPS:,}",
        whole=True,
    ),
    "max_parallel": Rule(
        1,
        MAX_MAX_PARALLEL,
        f"`max_parallel` must be a whole number from 1 to {MAX_MAX_PARALLEL:,}",
        whole=True,
    ),
    **POLICY_RULES,
}
