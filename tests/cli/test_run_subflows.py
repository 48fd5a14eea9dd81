"""`flowc run`'s trace of sub-flows: each child step on a line of its own, named by the nodes
that run it (`Progress.SEPARATOR` between them), before the line of the node's own step.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from flowc.cli.run import Progress
from flowc.compiler.ir import Flow
from flowc.runtime import Registry, WorkflowEngine

State = dict[str, Any]
#: Between the names of a sub-flow's step in the trace.
SEP = Progress.SEPARATOR


def tools() -> Registry:
    """`begin` writes `begun`, `lint` writes `issues`, `score` a score, `boom` fails."""
    made = Registry()

    def begin(state: State) -> State:
        return {"begun": True}

    def lint(state: State) -> State:
        return {"issues": 2}

    def score(state: State) -> State:
        return {"score": 80}

    def boom(state: State) -> State:
        raise ValueError("no")

    for tool in (begin, lint, score, boom):
        made.add(tool)
    return made


def flow(grandchild_tool: str = "score") -> Flow:
    """`first`, then `review` (a sub-flow: `lint`, then `deep`, a sub-flow of its own)."""
    inner = {"start": "score", "nodes": [{"name": "score", "tool": grandchild_tool}]}
    child = {
        "ir_version": 2,
        "start": "lint",
        "nodes": [
            {"name": "lint", "tool": "lint"},
            {"name": "deep", "tool": "flow", "flow": {"name": "scoring", "ir": inner}},
        ],
        "routes": {"lint": {"kind": "goto", "target": "deep"}},
    }
    return Flow.model_validate(
        {
            "ir_version": 2,
            "start": "first",
            "nodes": [
                {"name": "first", "tool": "begin"},
                {"name": "review", "tool": "flow", "flow": {"name": "review", "ir": child}},
            ],
            "routes": {"first": {"kind": "goto", "target": "review"}},
        }
    )


def traced(capsys: pytest.CaptureFixture[str], source: Flow) -> tuple[Progress, list[str]]:
    """Run `source` with `flowc run`'s trace: the progress, and each trace line (times out)."""
    progress = Progress("p", {})
    asyncio.run(WorkflowEngine(source, tools()).run(run_id="p", listener=progress.trace))
    lines = capsys.readouterr().err.splitlines()
    return progress, [re.sub(r"\s+[\d.]+ ms", " ms", line).rstrip() for line in lines]


def test_child_steps_are_traced_under_the_node_that_runs_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress, lines = traced(capsys, flow())
    # A child's steps are numbered after the step that runs it: 2.1 is its step 1.
    assert lines == [
        "    1  first ms  begun",
        f"  2.1  review{SEP}lint ms  issues",
        f"2.2.1  review{SEP}deep{SEP}score ms  score",
        f"  2.2  review{SEP}deep ms  score",
        "    2  review ms  issues, score",
    ]
    # Only the run's own steps are its steps, and only they change its state.
    assert [(step.seq, step.node) for step in progress.steps] == [(1, "first"), (2, "review")]
    assert progress.state == {"begun": True, "issues": 2, "score": 80}


def test_a_failing_childs_steps_are_traced_up_to_the_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress, lines = traced(capsys, flow("boom"))
    assert lines == ["    1  first ms  begun", f"  2.1  review{SEP}lint ms  issues"]
    assert [step.node for step in progress.steps] == ["first"]
