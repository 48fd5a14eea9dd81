"""Sub-flow nodes in memory: the child's input and the node's delta, failures, error routes,
cancel, nesting, the events in order, and the structural refusals of an IR that slipped
through the compiler's checks (written as IR here: the tests need no resolver).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowc.compiler.ir import Flow
from flowc.compiler.program import MAX_FLOW_DEPTH
from flowc.runtime import ChildEvent, Event, Registry, Resume, RunEvent, WorkflowEngine
from flowc.runtime.subflows import CHILD_RUNS, child_run_id

State = dict[str, Any]
#: Seconds a test waits for something it caused (a bound for a hang, not a measurement).
BOUND = 30.0


def tools() -> Registry:
    """`inc` adds 1 to `n`; `seen` writes the keys it was given; `boom` fails; `mark` writes
    `marked`; `tmp` writes `scratch`."""
    made = Registry()

    def inc(state: State) -> State:
        return {"n": state.get("n", 0) + 1}

    def seen(state: State) -> State:
        return {"seen": sorted(state)}

    def boom(state: State) -> State:
        raise ValueError("no good")

    def mark(state: State) -> State:
        return {"marked": True}

    def tmp(state: State) -> State:
        return {"scratch": "child only", "n": state.get("n", 0) + 10}

    for tool in (inc, seen, boom, mark, tmp):
        made.add(tool)
    return made


def chain(*tools: str, state: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """The IR of a flow that runs `tools` one after the other (nodes named after them)."""
    nodes = [{"name": f"{tool}{i}", "tool": tool} for i, tool in enumerate(tools)]
    routes = {
        nodes[i]["name"]: {"kind": "goto", "target": nodes[i + 1]["name"]}
        for i in range(len(nodes) - 1)
    }
    document: dict[str, Any] = {"start": nodes[0]["name"], "nodes": nodes, "routes": routes}
    if state:
        document["state"] = state
    return {**document, **extra}


def sub(name: str, child: dict[str, Any], **node: Any) -> dict[str, Any]:
    """A sub-flow node `name` running `child` (as the flow `child`)."""
    return {"name": name, "tool": "flow", "flow": {"name": "child", "ir": child}, **node}


def parent(*nodes: dict[str, Any], state: list[dict[str, Any]] | None = None, **extra: Any) -> Flow:
    """A version 2 flow of `nodes` in a chain."""
    routes = {
        nodes[i]["name"]: {"kind": "goto", "target": nodes[i + 1]["name"]}
        for i in range(len(nodes) - 1)
    }
    document: dict[str, Any] = {
        "ir_version": 2, "start": nodes[0]["name"], "nodes": list(nodes), "routes": routes,
    }  # fmt: skip
    if state:
        document["state"] = state
    return Flow.model_validate({**document, **extra})


def key(name: str, kind: str, default: Any = None, *, required: bool = False) -> dict[str, Any]:
    """A state declaration."""
    return {"name": name, "type": kind, "default": default, "required": required}


def run(flow: Flow, registry: Registry | None = None, **kwargs: Any) -> Any:
    """Run `flow` within `BOUND` seconds; the result and every event."""
    events: list[RunEvent] = []

    async def go() -> Any:
        engine = WorkflowEngine(flow, registry or tools())
        return await asyncio.wait_for(engine.run(listener=events.append, **kwargs), BOUND)

    return asyncio.run(go()), events


def log(result: Any) -> list[tuple[int, str, State]]:
    """Each step's number, node and delta."""
    return [(step.seq, step.node, step.delta) for step in result.steps]


# -- input and output ---------------------------------------------------------------------


def test_an_untyped_child_gets_the_whole_state_and_gives_back_what_it_changed() -> None:
    flow = parent(
        {"name": "first", "tool": "inc"}, sub("review", chain("inc", "seen")),
        {"name": "last", "tool": "inc"},
    )  # fmt: skip
    result, _ = run(flow, initial_state={"x": 1}, run_id="p")
    assert (result.status, result.error) == ("succeeded", None)
    assert log(result) == [
        (1, "first", {"n": 1}),
        (2, "review", {"n": 2, "seen": ["n", "x"]}),  # it saw the parent's `x` and `n`
        (3, "last", {"n": 3}),
    ]
    assert result.state == {"x": 1, "n": 3, "seen": ["n", "x"]}


def test_a_typed_child_gets_the_keys_it_declares_and_its_defaults_fill_the_rest() -> None:
    child = chain(
        "seen", "inc", state=[key("n", "int", required=True), key("label", "str", "plain")]
    )
    flow = parent(sub("review", child))
    result, events = run(flow, initial_state={"n": 5, "other": "parent only"}, run_id="p")
    assert result.status == "succeeded"
    # `other` stayed with the parent; `label` took its default, unchanged: not in the delta.
    assert log(result) == [(1, "review", {"seen": ["label", "n"], "n": 6})]
    assert result.state == {"n": 6, "other": "parent only", "seen": ["label", "n"]}
    started = next(e for e in events if isinstance(e, ChildEvent))
    assert started.event.type == "run_started"


def test_a_typed_parent_keeps_only_the_keys_it_declares() -> None:
    flow = parent(sub("review", chain("tmp", "mark")), state=[key("n", "int", 0)])
    result, _ = run(flow, run_id="p")
    assert result.status == "succeeded"
    # `scratch` and `marked` are the child's own: the parent does not declare them.
    assert log(result) == [(1, "review", {"n": 10})]
    assert result.state == {"n": 10}


def test_a_typed_parent_and_a_typed_child() -> None:
    child = chain("inc", "mark", state=[key("n", "int", required=True), key("marked", "bool?")])
    flow = parent(
        sub("review", child),
        state=[key("n", "int", 1), key("marked", "bool", False), key("unrelated", "str", "u")],
    )
    result, _ = run(flow, run_id="p")
    assert result.status == "succeeded"
    assert log(result) == [(1, "review", {"n": 2, "marked": True})]
    assert result.state == {"n": 2, "marked": True, "unrelated": "u"}


def test_what_the_child_gives_back_must_fit_the_parents_declarations() -> None:
    def word(state: State) -> State:
        return {"n": "not a number"}

    registry = tools()
    registry.add(word)
    flow = parent(sub("review", chain("word")), state=[key("n", "int", 0)])
    result, _ = run(flow, registry, run_id="p")
    assert (result.status, result.state) == ("failed", {"n": 0})
    assert (result.error.code, result.error.node) == ("bad_return", "review")
    assert result.error.message == (
        "sub-flow `review` returned a `n` that does not fit the flow's declaration "
        "`state n: int`: expected int, got a string"
    )


def test_a_child_that_changes_nothing_gives_an_empty_delta() -> None:
    flow = parent(sub("review", chain("seen")), {"name": "last", "tool": "inc"})
    result, _ = run(flow, initial_state={"seen": ["seen"]}, run_id="p")
    assert log(result) == [(1, "review", {}), (2, "last", {"n": 1})]


def test_a_child_of_a_child_runs_and_its_changes_come_up_both_levels() -> None:
    grandchild = chain("inc", "mark")
    child = {
        "ir_version": 2,
        "start": "before",
        "nodes": [{"name": "before", "tool": "inc"}, sub("inner", grandchild)],
        "routes": {"before": {"kind": "goto", "target": "inner"}},
    }
    flow = parent(sub("outer", child), {"name": "last", "tool": "inc"})
    result, events = run(flow, run_id="p")
    assert result.status == "succeeded"
    assert log(result) == [(1, "outer", {"n": 2, "marked": True}), (2, "last", {"n": 3})]
    child_id = child_run_id("p", 1)
    grandchild_id = child_run_id(child_id, 2)
    forwarded = [
        (e.parent_run_id, e.parent_node, e.event.run_id, e.event.type, e.event.step)
        for e in events
        if isinstance(e, ChildEvent)
    ]
    assert forwarded == [
        ("p", "outer", child_id, "run_started", 0),
        ("p", "outer", child_id, "node_started", 1),
        ("p", "outer", child_id, "node_finished", 1),
        ("p", "outer", child_id, "node_started", 2),
        (child_id, "inner", grandchild_id, "run_started", 0),
        (child_id, "inner", grandchild_id, "node_started", 1),
        (child_id, "inner", grandchild_id, "node_finished", 1),
        (child_id, "inner", grandchild_id, "node_started", 2),
        (child_id, "inner", grandchild_id, "node_finished", 2),
        (child_id, "inner", grandchild_id, "run_finished", 2),
        ("p", "outer", child_id, "node_finished", 2),
        ("p", "outer", child_id, "run_finished", 2),
    ]


# -- events ---------------------------------------------------------------------------------


def test_the_childs_events_come_between_the_nodes_started_and_finished() -> None:
    flow = parent({"name": "first", "tool": "inc"}, sub("review", chain("inc", "mark")))
    result, events = run(flow, run_id="p")
    assert result.status == "succeeded"
    child_id = child_run_id("p", 2)
    shown = [
        (e.to_json()["run_id"], e.to_json()["type"], e.to_json()["step"], e.to_json()["node"])
        for e in events
    ]
    assert shown == [
        ("p", "run_started", 0, "first"),
        ("p", "node_started", 1, "first"),
        ("p", "node_finished", 1, "first"),
        ("p", "node_started", 2, "review"),
        (child_id, "run_started", 0, "inc0"),
        (child_id, "node_started", 1, "inc0"),
        (child_id, "node_finished", 1, "inc0"),
        (child_id, "node_started", 2, "mark1"),
        (child_id, "node_finished", 2, "mark1"),
        (child_id, "run_finished", 2, "mark1"),
        ("p", "node_finished", 2, "review"),
        ("p", "run_finished", 2, "review"),
    ]
    for event in events:
        message = event.to_json()
        if message["run_id"] == child_id:
            assert (message["parent_run_id"], message["parent_node"]) == ("p", "review")
            assert isinstance(event, ChildEvent) and not event.is_final
        else:
            assert "parent_run_id" not in message and isinstance(event, Event)
    assert events[-3].to_json()["state"] == {"n": 2, "marked": True}


def test_a_stream_goes_on_past_the_childs_final_event() -> None:
    flow = parent(sub("review", chain("inc")), {"name": "last", "tool": "inc"})

    async def read() -> list[RunEvent]:
        engine = WorkflowEngine(flow, tools())
        return [event async for event in engine.stream(run_id="p")]

    events = asyncio.run(read())
    assert events[-1].type == "run_finished" and events[-1].to_json()["state"] == {"n": 2}


def test_child_run_ids_are_derived_from_the_parents_and_the_step() -> None:
    hyphens = "3f0e9a52-5d5b-4b44-8d32-6a64f2a7a0d1"
    assert child_run_id(hyphens, 7) == str(uuid.uuid5(CHILD_RUNS, f"{hyphens}:7"))
    assert child_run_id("abc", 7) == uuid.uuid5(CHILD_RUNS, "abc:7").hex
    assert child_run_id("abc", 7) == child_run_id("abc", 7) != child_run_id("abc", 8)


def test_a_childs_tools_run_in_the_childs_steps() -> None:
    from flowc.runtime import current_step

    seen: list[tuple[str, int, str]] = []

    def where(state: State) -> State:
        step = current_step()
        seen.append((step.run_id, step.seq, step.node))
        return {}

    registry = tools()
    registry.add(where)
    flow = parent({"name": "first", "tool": "where"}, sub("review", chain("inc", "where")))
    result, _ = run(flow, registry, run_id="p")
    assert result.status == "succeeded"
    assert seen == [("p", 1, "first"), (child_run_id("p", 2), 2, "where1")]


def test_without_a_listener_nothing_is_forwarded_and_the_run_is_the_same() -> None:
    flow = parent(sub("review", chain("inc", "mark")), {"name": "last", "tool": "inc"})
    engine = WorkflowEngine(flow, tools())
    result = asyncio.run(engine.run(run_id="p"))
    assert log(result) == [(1, "review", {"n": 1, "marked": True}), (2, "last", {"n": 2})]


# -- failures -------------------------------------------------------------------------------


def test_a_child_that_fails_fails_the_node_with_subflow_failed() -> None:
    flow = parent({"name": "first", "tool": "inc"}, sub("review", chain("mark", "boom")))
    result, events = run(flow, run_id="p")
    child_id = child_run_id("p", 2)
    assert (result.status, result.state, log(result)) == (
        "failed",
        {"n": 1},
        [(1, "first", {"n": 1})],
    )
    assert (result.error.code, result.error.node) == ("subflow_failed", "review")
    assert result.error.message == (
        f"sub-flow `review` (run {child_id}) failed: tool_error: tool `boom` failed: "
        "ValueError: no good"
    )
    child_end = [e for e in events if isinstance(e, ChildEvent)][-1].to_json()
    assert (child_end["type"], child_end["run_id"]) == ("run_failed", child_id)
    assert child_end["error"]["code"] == "tool_error"
    assert child_end["state"] == {"n": 1, "marked": True}  # the child's last good state
    assert events[-1].to_json()["error"]["code"] == "subflow_failed"


def test_a_failed_child_takes_the_nodes_error_route() -> None:
    flow = parent(
        sub("review", chain("mark", "boom"), policy={"on_error": "fallback"}),
        {"name": "after", "tool": "inc"},
        {"name": "fallback", "tool": "seen"},
    )
    result, events = run(flow, run_id="p")
    child_id = child_run_id("p", 1)
    error = {
        "code": "subflow_failed",
        "message": f"sub-flow `review` (run {child_id}) failed: tool_error: tool `boom` "
        "failed: ValueError: no good",
        "node": "review",
        "attempts": 1,
    }
    assert (result.status, result.error) == ("succeeded", None)
    assert log(result) == [(1, "review", {"error": error}), (2, "fallback", {"seen": ["error"]})]
    assert [step.failed for step in result.steps] == [True, False]
    finished = [e for e in events if e.type == "node_finished"]
    assert (finished[0].node, finished[0].failed) == ("review", True)


def test_a_typed_child_missing_a_required_input_fails_the_node() -> None:
    child = chain("inc", state=[key("code", "str", required=True)])
    result, _ = run(parent(sub("review", child)), run_id="p")
    assert result.error.code == "subflow_failed"
    assert result.error.message == (
        f"sub-flow `review` (run {child_run_id('p', 1)}) failed: bad_input: the input does "
        "not fit the flow's state declarations: `code`: a required input (`code: str`) is "
        "missing"
    )


def test_flow_wide_timeouts_and_retries_do_not_apply_to_a_sub_flow_node() -> None:
    calls: list[int] = []

    async def slow(state: State) -> State:
        calls.append(1)
        await asyncio.sleep(0.2)  # past the parent's `set timeout`
        return {"slow": True}

    registry = tools()
    registry.add(slow)
    flow = parent(sub("review", chain("slow")), settings={"timeout": 0.05, "retries": 2})
    result, _ = run(flow, registry, run_id="p")
    assert (result.status, log(result), calls) == (
        "succeeded",
        [(1, "review", {"slow": True})],
        [1],
    )


def test_the_childs_own_max_steps_counts_its_steps_and_the_node_counts_one() -> None:
    looping = {
        "start": "inc0",
        "settings": {"max_steps": 3},
        "nodes": [{"name": "inc0", "tool": "inc"}],
        "routes": {"inc0": {"kind": "goto", "target": "inc0"}},
    }
    result, _ = run(parent(sub("review", looping), settings={"max_steps": 2}), run_id="p")
    assert result.error.code == "subflow_failed"
    assert "failed: max_steps: the run took more than 3 steps" in result.error.message
    fine = parent(sub("review", chain("inc", "inc", "inc")), {"name": "x", "tool": "mark"},
                  settings={"max_steps": 2})  # fmt: skip
    result, _ = run(fine, run_id="p")
    assert (result.status, len(result.steps)) == ("succeeded", 2)


# -- cancel ---------------------------------------------------------------------------------


def test_cancelling_the_parent_cancels_the_child() -> None:
    cancelled: list[bool] = []
    reached = asyncio.Event()

    async def hang(state: State) -> State:
        reached.set()
        try:
            await asyncio.sleep(BOUND * 10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {}

    registry = tools()
    registry.add(hang)
    events: list[RunEvent] = []
    flow = parent(sub("review", chain("inc", "hang")), {"name": "last", "tool": "inc"})

    async def go() -> None:
        task = asyncio.ensure_future(
            WorkflowEngine(flow, registry).run(run_id="p", listener=events.append)
        )
        await asyncio.wait_for(reached.wait(), BOUND)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    assert cancelled == [True]
    last = events[-1]
    assert isinstance(last, ChildEvent)
    message = last.to_json()
    assert (message["type"], message["status"], message["run_id"]) == (
        "run_failed", "cancelled", child_run_id("p", 1),
    )  # fmt: skip
    assert (message["step"], message["state"], message["error"]["code"]) == (
        1, {"n": 1}, "cancelled",
    )  # fmt: skip
    assert not any(e.type == "node_finished" and e.node == "review" for e in events)


# -- resume ---------------------------------------------------------------------------------


def test_a_run_resumed_after_the_sub_flow_nodes_step_goes_on_along_its_route() -> None:
    flow = parent(sub("review", chain("boom")), {"name": "last", "tool": "inc"})
    result, _ = run(flow, initial_state={"n": 4}, resume=Resume("review", 1), run_id="p")
    assert (result.status, log(result)) == ("succeeded", [(2, "last", {"n": 5})])


def test_a_run_resumed_after_a_failed_sub_flow_step_goes_on_at_its_error_route() -> None:
    flow = parent(
        sub("review", chain("boom"), policy={"on_error": "fallback"}),
        {"name": "after", "tool": "inc"},
        {"name": "fallback", "tool": "mark"},
    )
    resume = Resume("review", 1, failed=True)
    result, _ = run(flow, initial_state={"error": {}}, resume=resume, run_id="p")
    assert log(result) == [(2, "fallback", {"marked": True})]


# -- what the compiler refuses, if an IR slips through ---------------------------------------


def nested(depth: int) -> dict[str, Any]:
    """A flow whose sub-flows nest `depth` flows deep in all (the innermost runs `inc`)."""
    flow = chain("inc")
    for _ in range(depth - 1):
        flow = {"ir_version": 2, "start": "down", "nodes": [sub("down", flow)]}
    return flow


def test_sub_flows_nest_up_to_the_limit_and_no_deeper() -> None:
    deepest = Flow.model_validate(nested(MAX_FLOW_DEPTH))
    result = asyncio.run(WorkflowEngine(deepest, tools()).run(run_id="p"))
    assert (result.status, result.state) == ("succeeded", {"n": 1})
    too_deep = Flow.model_validate(nested(MAX_FLOW_DEPTH + 1))
    result = asyncio.run(WorkflowEngine(too_deep, tools()).run(run_id="p"))
    assert result.error is not None and result.error.code == "subflow_failed"
    assert result.error.message.endswith(
        f"failed: subflow_depth: the sub-flow `child` would be flow number "
        f"{MAX_FLOW_DEPTH + 1} in a chain of sub-flows, more than {MAX_FLOW_DEPTH} allowed"
    )


def test_a_child_that_would_wait_fails_before_it_starts() -> None:
    child = {
        "ir_version": 2,
        "start": "approval",
        "nodes": [{"name": "approval", "tool": "wait", "wait": {"name": "ok"}}],
    }
    result, events = run(parent(sub("review", child)), run_id="p")
    assert (result.error.code, result.error.node) == ("subflow_waits", "review")
    assert result.error.message == (
        "the sub-flow `child` has the wait node `approval`, and a sub-flow cannot wait for "
        "input: wait in the flow that runs it"
    )
    assert not any(isinstance(e, ChildEvent) for e in events)


def test_a_sub_flow_node_in_a_parallel_branch_fails_the_run() -> None:
    flow = Flow.model_validate(
        {
            "ir_version": 2,
            "start": "a",
            "nodes": [
                {"name": "a", "tool": "inc"},
                sub("b", chain("mark")),
                {"name": "c", "tool": "seen"},
                {"name": "d", "tool": "inc"},
            ],
            "routes": {
                "a": {"kind": "parallel", "branches": [["b"], ["c"]], "join": "d"},
            },
        }
    )
    result, _ = run(flow, run_id="p")
    assert (result.error.code, result.error.node) == ("subflow_in_branch", "b")
    assert result.error.message == (
        "node `b` runs a sub-flow, which a parallel branch cannot do: run it before the "
        "branches start or after they join"
    )


def test_a_flow_compiled_with_its_sub_flow_from_a_folder_runs_it(tmp_path: Path) -> None:
    from flowc.compiler import compile_source
    from flowc.compiler.subflows import DirectoryFlows

    (tmp_path / "scoring.flow").write_text(
        "state n: int = 0\nstate tally: int = 0\nnode a = inc\nnode b = inc\na -> b -> end\n"
    )
    parent_text = (
        "state n: int = 0\nnode first = inc\nnode review = flow scoring\n"
        "node last = mark\nfirst -> review -> last -> end\n"
    )
    registry = tools()
    flows = DirectoryFlows([tmp_path], registry.specs())
    flow = compile_source(parent_text, tools=registry.specs(), flows=flows).ir
    assert flow.ir_version == 2
    result, _ = run(flow, registry, run_id="p")
    assert (result.status, result.state) == ("succeeded", {"n": 3, "marked": True})
    assert log(result) == [
        (1, "first", {"n": 1}),
        (2, "review", {"n": 3}),
        (3, "last", {"marked": True}),
    ]


def test_a_childs_input_is_bounded_by_the_state_limit_not_the_input_limit() -> None:
    from flowc.runtime.state import Limits

    made = tools()

    def grow(state: State) -> State:
        return {"big": "x" * 5_000}

    made.add(grow)
    flow = parent({"name": "grow", "tool": "grow"}, sub("review", chain("inc")))
    limits = Limits(max_input_bytes=1_000, max_state_bytes=100_000)

    async def go() -> Any:
        engine = WorkflowEngine(flow, made, limits=limits)
        return await asyncio.wait_for(engine.run(initial_state={}), BOUND)

    # The parent's state grew past the input limit; its child takes it all as its input.
    result = asyncio.run(go())
    assert (result.status, result.error) == ("succeeded", None)
    assert result.state["n"] == 1
    assert len(result.state["big"]) == 5_000


def test_a_child_counts_its_tool_threads_against_its_parents_bound() -> None:
    # One thread for the whole tree: the parent's first step times out and leaves its
    # thread behind (it sleeps on), so the child's blocking tool finds no room.
    registry = tools()
    gate = threading.Event()  # set at the end: the left-behind thread returns

    def stuck(state: State) -> State:
        gate.wait(BOUND)
        return {}

    def work(state: State) -> State:
        return {"worked": True}

    registry.add(stuck, blocking=True)
    registry.add(work, blocking=True)
    flow = parent(
        {"name": "first", "tool": "stuck", "policy": {"timeout": 0.05, "on_error": "review"}},
        sub("review", chain("work")),
    )

    async def go(threads: int) -> Any:
        engine = WorkflowEngine(flow, registry, max_threads_per_run=threads)
        return await asyncio.wait_for(engine.run(run_id="p"), BOUND)

    try:
        crowded = asyncio.run(go(1))
        roomy = asyncio.run(go(2))
    finally:
        gate.set()
    assert crowded.status == "failed"
    assert crowded.error.code == "subflow_failed"
    assert "max_threads_per_run = 1" in crowded.error.message
    assert (roomy.status, roomy.state.get("worked")) == ("succeeded", True)
