"""A new run's input against the flow's `state` declarations: refused when it does not fit,
defaults filled in (fresh copies) when it leaves keys out, and never again on resume."""

from __future__ import annotations

import asyncio
from typing import Any

from flowc.runtime import Registry, Resume, RunResult, WorkflowEngine
from flowc.runtime.state import Limits

State = dict[str, Any]

TYPED = """\
state code: str
state attempts: int = 0
state issues: list[dict] = []
node grow = grow
grow -> end
"""


def grow(state: State) -> State:
    """Appends to `issues` in place (on its own copy) and counts `attempts`."""
    state["issues"].append({"n": len(state["issues"])})
    return {"issues": state["issues"], "attempts": state["attempts"] + 1}


def engine(source: str = TYPED, **kwargs: Any) -> WorkflowEngine:
    registry = Registry()
    registry.add(grow)
    return WorkflowEngine(source, registry, **kwargs)


def run(flow: WorkflowEngine, **kwargs: Any) -> RunResult:
    return asyncio.run(flow.run(**kwargs))


def test_defaults_fill_what_the_input_leaves_out() -> None:
    result = run(engine(), initial_state={"code": "x"})
    assert result.status == "succeeded", result.error
    assert result.state == {"code": "x", "attempts": 1, "issues": [{"n": 0}]}


def test_each_run_gets_its_own_copy_of_a_default() -> None:
    flow = engine()
    first = run(flow, initial_state={"code": "x"})
    second = run(flow, initial_state={"code": "y"})
    assert first.state["issues"] == second.state["issues"] == [{"n": 0}]
    assert flow.flow.state[2].default == []


def test_the_input_wins_over_a_default() -> None:
    result = run(engine(), initial_state={"code": "x", "attempts": 5, "issues": [{}]})
    assert result.state == {"code": "x", "attempts": 6, "issues": [{}, {"n": 1}]}


def test_an_input_that_does_not_fit_fails_the_run_before_any_step() -> None:
    result = run(engine(), initial_state={"attempts": "1", "issues": [1]})
    assert result.status == "failed"
    assert result.steps == []
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "bad_input",
        "the input does not fit the flow's state declarations: `code`: a required input "
        "(`code: str`) is missing; `attempts`: expected int, got a string; `issues[0]`: "
        "expected dict, got an integer",
    )


def test_a_resumed_run_keeps_its_state_as_it_is() -> None:
    # The state after step 1 already holds what the defaults gave and what steps wrote:
    # nothing is checked or filled in again.
    state = {"code": "x", "attempts": 3, "issues": [{"n": 0}]}
    result = run(engine("state code: str\nstate attempts: int = 0\nstate issues: list[dict] = []"
                        "\nnode a = grow\nnode b = grow\na -> b -> end"),
                 initial_state=state, resume=Resume("a", 1))  # fmt: skip
    assert result.state == {"code": "x", "attempts": 4, "issues": [{"n": 0}, {"n": 1}]}


def test_defaults_count_against_the_state_limit() -> None:
    flow = engine(
        'state code: str\nstate big: str = "' + "x" * 200 + '"\nnode grow = grow\ngrow -> end',
        limits=Limits(max_state_bytes=150),
    )
    result = run(flow, initial_state={"code": "x"})
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "limit"
    assert "the defaults would make the state about" in result.error.message


def test_a_flow_without_declarations_takes_any_input() -> None:
    registry = Registry()

    def note(state: State) -> State:
        return {"seen": sorted(state)}

    registry.add(note)
    result = asyncio.run(WorkflowEngine("note -> end", registry).run(initial_state={"z": 1}))
    assert result.state == {"z": 1, "seen": ["z"]}


def test_a_tool_that_gives_a_declared_key_another_type_fails_the_run() -> None:
    def spoil(state: State) -> State:
        """No contract of its own: only the flow's declaration says what `issues` holds."""
        return {"attempts": 1, "issues": [{"n": 0}, "two"]}

    registry = Registry()
    registry.add(spoil)
    flow = WorkflowEngine("state issues: list[dict] = []\nnode s = spoil\ns -> end\n", registry)
    result = run(flow)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node) == ("bad_return", "s")
    assert result.error.message == (
        "tool `spoil` returned a `issues` that does not fit the flow's declaration "
        "`state issues: list[dict]` (at `issues/1`): expected dict, got a string"
    )
    # An undeclared key (`attempts`) is anything, as before.
    assert run(WorkflowEngine("node s = spoil\ns -> end\n", registry)).status == "succeeded"


def test_a_whole_float_given_for_an_int_is_that_int() -> None:
    """JSON Schema's `integer` takes 3.0, and the input schema says `integer`: so does flowc."""
    result = run(engine(), initial_state={"code": "x", "attempts": 3.0})
    assert result.status == "succeeded", result.error
    assert result.state["attempts"] == 4 and type(result.state["attempts"]) is int
    refused = run(engine(), initial_state={"code": "x", "attempts": 3.5})
    assert refused.error is not None and refused.error.code == "bad_input"
