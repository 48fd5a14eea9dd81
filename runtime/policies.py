"""A node's policies -> how its step runs: timeout, retries, waits, where a failure goes.

A node's policy is what its declaration gives after `with`, over the flow's settings of
the same names, over their defaults.  It is worked out once per engine; a node that ends
up with neither a timeout, nor retries, nor an error route has none, and its steps take
the interpreter's fast road.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowc.compiler.ir import Policy, Settings

#: The longest wait between two attempts of a step, jitter included, in seconds.
MAX_RETRY_DELAY = 3600.0

#: The failures a retry may cure; any other fails the step at once.
RETRIED = frozenset(["tool_error", "timeout"])

#: The jitter's random source (tests put a fixed one in its place).
_random = random.Random()


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """What a node's steps do: time out after `timeout` seconds, retry, wait `backoff`.

    `on_error`: the node (or `end`) the run goes to when the step fails after its retries,
    with the failure as `error` in the state; None: the failure fails the run.
    """

    timeout: float | None
    retries: int
    backoff: float
    on_error: str | None = None


#: What a node without a policy does, where a step takes the policy road all the same (a
#: parallel branch's steps): one attempt, no timeout, and a failure fails the run.
PLAIN = NodePolicy(None, 0, 0.0)


def node_policy(settings: Settings, own: Policy | None) -> NodePolicy | None:
    """The node's own policy over the flow's settings; None when there is nothing to do."""
    timeout, retries, backoff = settings.timeout, settings.retries, settings.backoff
    on_error = None
    if own is not None:
        timeout = own.timeout if own.timeout is not None else timeout
        retries = own.retries if own.retries is not None else retries
        backoff = own.backoff if own.backoff is not None else backoff
        on_error = own.on_error
    if timeout is None and not retries and on_error is None:
        return None
    return NodePolicy(timeout, retries, backoff, on_error)


def retry_delay(backoff: float, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1) before the next.

    `backoff * 2 ** (attempt - 1)` times a random factor in [0.5, 1.5): the delay doubles
    from one attempt to the next, spread by up to 50 % either way so that runs that failed
    together do not all retry together.  Never more than `MAX_RETRY_DELAY`.
    """
    nominal = backoff * 2.0 ** min(attempt - 1, 64)
    return min(MAX_RETRY_DELAY, nominal * _random.uniform(0.5, 1.5))


def subflow_policy(own: Policy | None) -> NodePolicy | None:
    """A sub-flow node's policy: its error route only (no timeout nor retries apply to it)."""
    if own is None or own.on_error is None:
        return None
    return NodePolicy(None, 0, 0.0, own.on_error)
