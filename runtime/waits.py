"""Wait nodes -> where a run stops for input, and the steps that go on from there.

A node `wait("approval", timeout = 86400)` runs no tool: the interpreter stops the run
there (`RunWaiting`), with the status `waiting` and what it waits for (`WaitFor`); nothing
is recorded for the wait node yet.  Whoever holds the run (the server, `flowc run`) goes on
later the way any recorded run goes on: it records the wait's step, then resumes after it
(`Resume(after=node, seq=step)`).  Given input, the step's delta is the input and the run
takes the node's route (`input_step`).  Past the timeout, the step fails with
`wait_timeout` and the run takes the node's error route (`timed_out` gives the step, with
`Resume.failed`); a wait without one fails the run with that error instead.  A wait cannot
be part of a parallel branch: a run that reaches one there fails with `wait_in_branch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowc.compiler.inputs import InputProblem, Inputs
from flowc.compiler.ir import Flow, Span
from flowc.compiler.types import problems_with
from flowc.runtime.events import RunError, Step, WaitFor

if TYPE_CHECKING:
    from flowc.runtime.interpreter import WorkflowEngine

#: The error of a wait that nobody resumed within its timeout.
WAIT_TIMEOUT = "wait_timeout"
#: The error of a run that reaches a wait inside a parallel branch.
WAIT_IN_BRANCH = "wait_in_branch"


class RunWaiting(Exception):
    """Stops a run at a wait node: it ends `waiting` (the interpreter's, not the API's)."""

    def __init__(self, wait: WaitFor) -> None:
        super().__init__(wait.node)
        self.wait = wait


def waits_of(flow: Flow) -> dict[str, WaitFor]:
    """The flow's wait nodes, by name."""
    return {
        node.name: WaitFor(node.name, node.wait.name, node.wait.timeout)
        for node in flow.nodes
        if node.wait is not None
    }


def in_branch(node: str, span: Span | None) -> RunError:
    """The error of a run that reached wait node `node` in a parallel branch."""
    return RunError(
        WAIT_IN_BRANCH,
        f"node `{node}` waits for input, which a parallel branch cannot do: wait before "
        "the branches start or after they join",
        node,
        span,
    )


def resume_problems(inputs: Inputs, given: Mapping[str, Any]) -> list[InputProblem]:
    """Where the input that resumes a wait does not fit the flow's state declarations.

    Each key given must hold a value of its declared type; no key is required (the run's
    state has them all already).
    """
    optional = {
        name: dataclasses.replace(declared, required=False)
        for name, declared in inputs.fields.items()
    }
    return Inputs(optional, inputs.title).problems(given)


def input_step(wait: WaitFor, seq: int, given: dict[str, Any], since: float, at: float) -> Step:
    """The wait's step, resumed with input `given` at `at` (it waited from `since`)."""
    return Step(seq, wait.node, given, since, at)


def timeout_message(wait: WaitFor) -> str:
    """What a wait that timed out says."""
    seconds = f"{wait.timeout:,g}" if wait.timeout is not None else "?"
    return f"the wait for `{wait.name}` was not resumed within its timeout of {seconds} s"


def timed_out(
    engine: WorkflowEngine, wait: WaitFor, seq: int, since: float, at: float
) -> Step | RunError:
    """What a wait past its timeout becomes: a failed step, or the run's error.

    The step (`failed`: resume with `Resume.failed`) when the node has an error route and
    the state can take its `error`; the error (`wait_timeout`) otherwise.
    """
    node = next(n for n in engine.flow.nodes if n.name == wait.node)
    error = RunError(WAIT_TIMEOUT, timeout_message(wait), wait.node, node.span)
    if node.policy is None or node.policy.on_error is None:
        return error
    written = {"code": error.code, "message": error.message, "node": wait.node, "attempts": 1}
    declared = (engine.declared or {}).get("error")
    if declared is not None and problems_with(declared, written, limit=1):
        return error
    return Step(seq, wait.node, {"error": written}, since, at, failed=True)
