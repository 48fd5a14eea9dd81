"""Wait nodes: the run stops there `waiting`, and goes on from the wait's recorded step.

Nothing is recorded for the wait node when the run stops: whoever holds the run records
its step (the input, or a timeout's failed step) and resumes after it, the usual way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowc.compiler.inputs import Inputs
from flowc.compiler.ir import StateKey, Wait
from flowc.runtime import Event, Registry, Resume, RunResult, Step, WorkflowEngine
from flowc.runtime.events import RunError, WaitFor
from flowc.runtime.waits import input_step, resume_problems, timed_out, waits_of
from tests.runtime.policy_support import collector

State = dict[str, Any]


def prepare(state: State) -> State:
    """Count the runs of this tool."""
    return {"n": state.get("n", 0) + 1}


def remind(state: State) -> State:
    """The error route's target: says what failed."""
    return {"reminded": state["error"]["code"]}


def tools() -> Registry:
    made = Registry()
    made.add(prepare)
    made.add(remind)
    return made


APPROVAL = """\
state approved: bool? = null
state n: int = 0
node approval = wait("approval", timeout = 60) with on_error = nudge
node nudge = remind
node again = prepare
start -> prepare -> approval
approval ? approved -> again : end
nudge -> end
"""
#: The same without a timeout, and without an error route.
PLAIN = """\
state approved: bool? = null
node approval = wait("approval")
start -> prepare -> approval -> end
"""
WAIT = WaitFor("approval", "approval", 60.0)


def run(engine: WorkflowEngine, **kwargs: Any) -> tuple[RunResult, list[Event]]:
    """Run to the end or a wait: the result and every event."""
    events: list[Event] = []
    result = asyncio.run(engine.run(listener=collector(events), **kwargs))
    return result, events


def test_the_run_stops_waiting_at_the_wait_node_with_nothing_recorded_for_it() -> None:
    engine = WorkflowEngine(APPROVAL, tools())
    result, events = run(engine, run_id="r")
    assert (result.status, result.error, result.waiting) == ("waiting", None, WAIT)
    assert result.state == {"approved": None, "n": 1}
    assert [(s.seq, s.node) for s in result.steps] == [(1, "prepare")]
    assert [(e.type, e.step, e.node) for e in events] == [
        ("run_started", 0, "prepare"),
        ("node_started", 1, "prepare"),
        ("node_finished", 1, "prepare"),
        ("run_waiting", 1, "approval"),
    ]
    last = events[-1]
    assert last.is_final
    message = last.to_json()
    assert (message["status"], message["state"], message["waiting"]) == (
        "waiting",
        {"approved": None, "n": 1},
        {"node": "approval", "name": "approval", "timeout": 60.0},
    )
    assert result.to_json()["waiting"] == message["waiting"]
    finished, _ = run(WorkflowEngine("prepare -> end", tools()))
    assert "waiting" not in finished.to_json()


def test_the_run_goes_on_along_the_wait_nodes_route_after_its_step() -> None:
    engine = WorkflowEngine(APPROVAL, tools())
    waiting, _ = run(engine)
    step = input_step(WAIT, 2, {"approved": True}, 10.0, 12.5)
    assert step == Step(2, "approval", {"approved": True}, 10.0, 12.5)
    state = {**waiting.state, **step.delta}
    result, events = run(engine, initial_state=state, resume=Resume(after="approval", seq=2))
    assert (result.status, result.state) == ("succeeded", {"approved": True, "n": 2})
    assert [(s.seq, s.node) for s in result.steps] == [(3, "again")]
    assert (events[0].type, events[0].step, events[0].node) == ("run_started", 2, "again")

    declined = {**waiting.state, "approved": False}
    result, _ = run(engine, initial_state=declined, resume=Resume(after="approval", seq=2))
    assert (result.status, result.steps) == ("succeeded", [])


def test_a_wait_reached_again_stops_the_run_again() -> None:
    loop = APPROVAL.replace("approval ? approved -> again : end", "approval -> again")
    engine = WorkflowEngine(loop.replace("node again = prepare", "node again = prepare\n"
                                         "again -> approval"), tools())  # fmt: skip
    first, _ = run(engine)
    state = {**first.state, "approved": True}
    second, events = run(engine, initial_state=state, resume=Resume(after="approval", seq=2))
    assert (second.status, second.waiting, second.state["n"]) == ("waiting", WAIT, 2)
    assert (events[-1].type, events[-1].step) == ("run_waiting", 3)


def test_a_timed_out_wait_fails_into_its_error_route() -> None:
    engine = WorkflowEngine(APPROVAL, tools())
    waiting, _ = run(engine)
    step = timed_out(engine, WAIT, 2, 10.0, 70.0)
    message = "the wait for `approval` was not resumed within its timeout of 60 s"
    error = {"code": "wait_timeout", "message": message, "node": "approval", "attempts": 1}
    assert step == Step(2, "approval", {"error": error}, 10.0, 70.0, failed=True)
    assert isinstance(step, Step)
    state = {**waiting.state, **step.delta}
    result, _ = run(engine, initial_state=state, resume=Resume("approval", 2, failed=True))
    assert (result.status, result.state["reminded"]) == ("succeeded", "wait_timeout")
    assert [(s.seq, s.node) for s in result.steps] == [(3, "nudge")]


def test_a_timed_out_wait_without_an_error_route_fails_the_run() -> None:
    engine = WorkflowEngine(PLAIN.replace('("approval")', '("approval", timeout = 5)'), tools())
    outcome = timed_out(engine, WaitFor("approval", "approval", 5.0), 2, 0.0, 5.0)
    assert isinstance(outcome, RunError)
    assert (outcome.code, outcome.node, outcome.message) == (
        "wait_timeout",
        "approval",
        "the wait for `approval` was not resumed within its timeout of 5 s",
    )
    assert outcome.span is not None and outcome.span["line"] == 2


def test_a_timed_out_wait_whose_state_cannot_take_the_error_fails_the_run() -> None:
    # The compiler refuses this flow (E603); an IR document saved as it is may hold it.
    flow = WorkflowEngine(APPROVAL, tools()).flow
    error = StateKey(name="error", type="str?", default=None, required=False)
    typed = flow.model_copy(update={"state": [*flow.state, error]})
    outcome = timed_out(WorkflowEngine(typed, tools()), WAIT, 2, 0.0, 60.0)
    assert isinstance(outcome, RunError) and outcome.code == "wait_timeout"


def test_a_registered_tool_named_wait_does_not_run_for_a_wait_node() -> None:
    registry = tools()

    def wait(state: State) -> State:
        raise AssertionError("a wait node runs no tool")

    registry.add(wait, "wait", replace=True)
    result, _ = run(WorkflowEngine(PLAIN, registry))
    assert result.status == "waiting"


def test_a_wait_in_a_parallel_branch_fails_the_run_with_a_clear_error() -> None:
    # The compiler refuses this flow (E136); an IR document saved as it is may hold it.
    source = "node approval = prepare\nnode other = prepare\nprepare -> [approval, other] -> end\n"
    flow = WorkflowEngine(source, tools()).flow
    nodes = [
        n.model_copy(update={"tool": "wait", "wait": Wait(name="approval")})
        if n.name == "approval"
        else n
        for n in flow.nodes
    ]
    result, events = run(WorkflowEngine(flow.model_copy(update={"nodes": nodes}), tools()))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node) == ("wait_in_branch", "approval")
    assert result.error.message == (
        "node `approval` waits for input, which a parallel branch cannot do: wait before "
        "the branches start or after they join"
    )
    assert events[-1].type == "run_failed"


def test_waits_of_lists_the_wait_nodes() -> None:
    assert waits_of(WorkflowEngine(APPROVAL, tools()).flow) == {"approval": WAIT}
    assert waits_of(WorkflowEngine("prepare -> end", tools()).flow) == {}


@pytest.mark.parametrize(
    ("given", "problems"),
    [
        ({}, []),  # nothing is required
        ({"approved": True, "other": [1]}, []),  # undeclared keys are taken as they are
        ({"approved": "yes"}, [("approved", "wrong_type")]),
        ({"n": 2.0}, []),  # a whole float is an int, as for a run's input
    ],
)
def test_the_input_of_a_wait_is_checked_against_the_declarations(
    given: State, problems: list[tuple[str, str]]
) -> None:
    inputs = Inputs.of(WorkflowEngine("state code: str\n" + APPROVAL, tools()).flow)
    found = resume_problems(inputs, given)
    assert [(p.key, p.kind) for p in found] == problems
