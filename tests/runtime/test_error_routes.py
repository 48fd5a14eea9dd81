"""Error routes (`with on_error = NODE`): a failed step recorded, the run gone on elsewhere.

A step that fails after its retries, at a node with an error route, is recorded as failed
with `error` in the state, and the run goes on at the route's target.  The flows are IR
documents (version 2) written here: the DSL's `on_error` is the compiler's to parse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowc.compiler.ir import Policy, Settings
from flowc.compiler.program import DEFAULT_BACKOFF
from flowc.runtime import Resume, WorkflowEngine, current_step
from flowc.runtime.policies import NodePolicy, node_policy
from flowc.runtime.state import Limits
from tests.runtime.policy_support import FOREVER, State, flow, kinds, node, registry, run
from tests.runtime.process_support import process_registry


def boom(state: State) -> State:
    """Always fails."""
    raise RuntimeError("no")


def fix(state: State) -> State:
    """The fallback: says which failure it saw."""
    return {"fixed": state["error"]["code"]}


def after(state: State) -> State:
    """The failing node's own route: never reached when its step fails."""
    return {"after": True}


def tools(*more: Any) -> Any:
    return registry(boom, fix, after, *more)


#: `a` fails into `fallback`; its own route leads to `b`.
ROUTED = flow(
    [node("a", "boom", on_error="fallback"), node("b", "after"), node("fallback", "fix")],
    {"a": "b", "fallback": "end"},
)


def test_a_failed_step_goes_to_the_error_route_with_the_error_in_the_state() -> None:
    result, events = run(ROUTED, tools(), run_id="r", initial_state={"kept": 1})
    assert result.status == "succeeded"
    assert result.error is None
    error = {"code": "tool_error", "message": "tool `boom` failed: RuntimeError: no",
             "node": "a", "attempts": 1}  # fmt: skip
    assert result.state == {"kept": 1, "error": error, "fixed": "tool_error"}
    assert [(s.seq, s.node, s.delta, s.attempts, s.failed) for s in result.steps] == [
        (1, "a", {"error": error}, 1, True),
        (2, "fallback", {"fixed": "tool_error"}, 1, False),
    ]
    assert kinds(events) == ["run_started", "node_started", "node_attempt_failed",
                             "node_finished", "node_started", "node_finished",
                             "run_finished"]  # fmt: skip
    failed, fell_back = events[3], events[5]
    assert (failed.step, failed.node, failed.delta, failed.attempts, failed.failed) == (
        1, "a", {"error": error}, 1, True,
    )  # fmt: skip
    assert failed.to_json()["failed"] is True
    assert (fell_back.node, fell_back.failed) == ("fallback", None)
    assert "failed" not in fell_back.to_json()
    assert result.steps[0].to_json()["failed"] is True
    assert "failed" not in result.steps[1].to_json()
    assert result.to_json()["steps"][0]["delta"] == {"error": error}


def test_the_failed_attempts_are_events_as_without_a_route() -> None:
    _, events = run(ROUTED, tools())
    attempt = next(e for e in events if e.type == "node_attempt_failed")
    assert (attempt.step, attempt.node, attempt.attempt, attempt.retry_in) == (1, "a", 1, None)
    assert attempt.error is not None and attempt.error.code == "tool_error"


def test_a_timeout_after_retries_routes_with_every_attempt_counted() -> None:
    async def hangs(state: State) -> State:
        await asyncio.sleep(FOREVER)
        return {}

    source = flow(
        [node("h", "hangs", timeout=0.05, retries=2, backoff=0.0, on_error="fix"), node("fix")],
        {"h": "end"},
    )
    result, events = run(source, registry(hangs, fix))
    assert result.status == "succeeded", result.error
    error = result.state["error"]
    assert (error["code"], error["node"], error["attempts"]) == ("timeout", "h", 3)
    assert error["message"].endswith("(after 3 attempts)")
    assert result.state["fixed"] == "timeout"
    assert [(s.node, s.attempts, s.failed) for s in result.steps] == [
        ("h", 3, True),
        ("fix", 1, False),
    ]
    attempts = [e for e in events if e.type == "node_attempt_failed"]
    assert [(e.attempt, e.retry_in) for e in attempts] == [(1, 0.0), (2, 0.0), (3, None)]


def test_a_retry_that_succeeds_takes_the_nodes_own_route() -> None:
    def flaky(state: State) -> State:
        if current_step().attempt == 1:
            raise RuntimeError("first")
        return {"done": True}

    source = flow(
        [node("f", "flaky", retries=1, backoff=0.0, on_error="fallback"), node("b", "after"),
         node("fallback", "fix")],
        {"f": "b"},
    )  # fmt: skip
    result, _ = run(source, tools(flaky))
    assert result.state == {"done": True, "after": True}
    assert [(s.node, s.attempts, s.failed) for s in result.steps] == [
        ("f", 2, False),
        ("b", 1, False),
    ]


def test_a_bad_return_routes_without_a_retry() -> None:
    calls = []

    def bad(state: State) -> Any:
        calls.append(current_step().attempt)
        return [1]

    source = flow(
        [node("x", "bad", retries=3, backoff=0.0, on_error="fallback"), node("fallback", "fix")],
        {},
    )
    result, _ = run(source, tools(bad))
    assert calls == [1]
    assert result.state["error"] == {
        "code": "bad_return",
        "message": "tool `bad` returned a list; a tool returns a dict of updates, the whole "
        "state, or None",
        "node": "x",
        "attempts": 1,
    }
    assert result.state["fixed"] == "bad_return"


def test_a_return_past_a_limit_routes_as_limit() -> None:
    def big(state: State) -> State:
        return {"text": "x" * 2000}

    source = flow([node("x", "big", on_error="fallback"), node("fallback", "fix")], {})
    engine = WorkflowEngine(source, tools(big), limits=Limits(max_string_length=1000))
    result = asyncio.run(engine.run())
    assert result.status == "succeeded", result.error
    assert result.state["error"]["code"] == "limit"
    assert "text" not in result.state


def test_a_process_tool_whose_worker_dies_routes_as_a_tool_error() -> None:
    tools_ = process_registry()
    tools_.add(fix)
    source = flow([node("d", "die", on_error="fix"), node("fix")], {})
    result = asyncio.run(WorkflowEngine(source, tools_).run())
    assert result.status == "succeeded", result.error
    assert result.state["error"]["code"] == "tool_error"
    assert "ProcessDied" in result.state["error"]["message"]


def test_end_as_the_target_ends_the_run_succeeded() -> None:
    source = flow([node("a", "boom", on_error="end"), node("b", "after")], {"a": "b"})
    result, events = run(source, tools())
    assert result.status == "succeeded"
    assert result.state["error"]["code"] == "tool_error"
    assert [(s.node, s.failed) for s in result.steps] == [("a", True)]
    assert (events[-1].type, events[-1].step, events[-1].node) == ("run_finished", 1, "a")


def test_a_fallback_that_fails_without_a_route_fails_the_run() -> None:
    def worse(state: State) -> State:
        raise ValueError("worse")

    source = flow([node("a", "boom", on_error="fallback"), node("fallback", "worse")], {})
    result, events = run(source, tools(worse))
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "tool_error",
        "fallback",
        "tool `worse` failed: ValueError: worse",
    )
    assert result.state["error"]["node"] == "a"  # the last good state: after the failed step
    assert [(s.node, s.failed) for s in result.steps] == [("a", True)]
    assert kinds(events)[-1] == "run_failed"


def test_a_step_that_fails_again_writes_its_error_again() -> None:
    # The same error twice is still each failed step's delta (not left out as unchanged);
    # a loop of failures ends at `max_steps`, which no error route catches.
    source = flow([node("a", "boom", on_error="a")], {}, settings={"max_steps": 3})
    result, _ = run(source, tools())
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "max_steps"
    assert [(s.seq, s.failed, list(s.delta)) for s in result.steps] == [
        (1, True, ["error"]),
        (2, True, ["error"]),
        (3, True, ["error"]),
    ]


def test_a_tool_cannot_change_a_recorded_error() -> None:
    def mutates(state: State) -> State:
        state["error"]["code"] = "changed"
        return {}

    source = flow([node("a", "boom", on_error="m"), node("m", "mutates")], {})
    result, _ = run(source, tools(mutates))
    assert result.steps[0].delta["error"]["code"] == "tool_error"
    assert result.state["error"]["code"] == "tool_error"


# ------------------------------------------------------- what does not take the route


def test_a_condition_error_while_routing_is_not_the_steps_failure() -> None:
    def note(state: State) -> State:
        return {"note": "text"}

    condition = {"type": "binary", "op": ">", "left": {"type": "path", "path": ["note"]},
                 "right": {"type": "literal", "value": 1}}  # fmt: skip
    branch = {"kind": "branch", "arms": [{"condition": condition, "target": "end"}],
              "otherwise": "end"}  # fmt: skip
    source = flow([node("n", "note", on_error="fallback"), node("fallback", "fix")], {"n": branch})
    result, _ = run(source, tools(note))
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "condition_error"
    assert "fixed" not in result.state and "error" not in result.state


def test_an_unregistered_tool_is_not_the_steps_failure() -> None:
    source = flow([node("a", "missing", on_error="fallback"), node("fallback", "fix")], {})
    result, _ = run(source, tools())
    assert result.error is not None and result.error.code == "unknown_tool"
    assert result.steps == []


def test_an_error_route_to_no_node_fails_the_run_after_the_failed_step() -> None:
    # The compiler refuses such a flow; an IR document written by hand still runs safely.
    source = flow([node("a", "boom", on_error="nowhere")], {})
    result, _ = run(source, tools())
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "unknown_node",
        "there is no node `nowhere`",
    )
    assert [(s.node, s.failed) for s in result.steps] == [("a", True)]


def test_a_cancelled_step_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def waits(state: State) -> State:
        started.set()
        await asyncio.sleep(FOREVER)
        return {}

    source = flow([node("w", "waits", on_error="fallback"), node("fallback", "fix")], {})
    engine = WorkflowEngine(source, tools(waits))

    async def cancel_it() -> None:
        task = asyncio.ensure_future(engine.run())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())


def test_an_error_the_state_cannot_hold_fails_the_run_with_the_original_error() -> None:
    declared = [{"name": "error", "type": "str?", "default": None, "required": False}]
    source = flow([node("a", "boom", on_error="fallback"), node("fallback", "fix")], {},
                  state=declared)  # fmt: skip
    result, events = run(source, tools())
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "tool_error",
        "tool `boom` failed: RuntimeError: no",
    )
    assert result.steps == []
    assert result.state == {"error": None}
    assert kinds(events) == ["run_started", "node_started", "node_attempt_failed", "run_failed"]


def test_an_error_that_fits_its_declaration_is_written() -> None:
    declared = [{"name": "error", "type": "dict?", "default": None, "required": False}]
    source = flow([node("a", "boom", on_error="fallback"), node("fallback", "fix")], {},
                  state=declared)  # fmt: skip
    result, _ = run(source, tools())
    assert result.status == "succeeded", result.error
    assert result.state["fixed"] == "tool_error"


def test_an_error_past_a_limit_fails_the_run_with_the_original_error() -> None:
    def loud(state: State) -> State:
        raise RuntimeError("x" * 100)

    source = flow([node("a", "loud", on_error="fallback"), node("fallback", "fix")], {})
    engine = WorkflowEngine(source, tools(loud), limits=Limits(max_string_length=60))
    result = asyncio.run(engine.run())
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "tool_error"
    assert result.error.message == f"tool `loud` failed: RuntimeError: {'x' * 100}"
    assert result.steps == []


# ----------------------------------------------------------------- the fast road


def test_only_a_node_with_a_policy_leaves_the_fast_road() -> None:
    assert node_policy(Settings(), None) is None
    assert node_policy(Settings(), Policy()) is None
    assert node_policy(Settings(), Policy(on_error="x")) == NodePolicy(
        None, 0, DEFAULT_BACKOFF, "x"
    )
    engine = WorkflowEngine(ROUTED, tools())
    assert engine._plans["b"].policy is None
    assert engine._plans["fallback"].policy is None
    assert engine._plans["a"].policy is not None


def test_a_node_without_a_route_still_fails_the_run() -> None:
    source = flow([node("a", "boom"), node("fallback", "fix")], {"a": "fallback"})
    result, events = run(source, tools())
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "tool_error"
    assert kinds(events) == ["run_started", "node_started", "run_failed"]


# -------------------------------------------------------------------------- resume


def test_resume_after_a_failed_step_goes_to_the_error_route() -> None:
    error = {"code": "tool_error", "message": "m", "node": "a", "attempts": 1}
    result, events = run(ROUTED, tools(), initial_state={"error": error},
                         resume=Resume("a", 1, failed=True))  # fmt: skip
    assert result.status == "succeeded"
    assert [(s.seq, s.node) for s in result.steps] == [(2, "fallback")]
    assert events[0].node == "fallback"  # run_started names where it goes on


def test_resume_after_a_step_that_did_not_fail_takes_the_nodes_route() -> None:
    result, _ = run(ROUTED, tools(), resume=Resume("a", 1))
    assert [(s.seq, s.node) for s in result.steps] == [(2, "b")]


def test_resume_after_a_failed_step_of_a_node_without_a_route_fails_the_run() -> None:
    result, _ = run(ROUTED, tools(), resume=Resume("b", 2, failed=True))
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "unknown_node",
        "node `b` has no error route (`on_error`) to resume on",
    )


def test_a_resumed_run_numbers_its_failed_steps_on() -> None:
    source = flow(
        [node("start", "after"), node("a", "boom", on_error="fallback"), node("fallback", "fix")],
        {"start": "a", "a": "fallback"},
    )
    result, _ = run(source, tools(), resume=Resume("start", 4))
    assert [(s.seq, s.node, s.failed) for s in result.steps] == [
        (5, "a", True),
        (6, "fallback", False),
    ]
