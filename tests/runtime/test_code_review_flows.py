"""The code-review flows run end to end on the samples with the built-in tools."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowc.runtime.interpreter import WorkflowEngine
from flowc.runtime.tools import load_builtin_packs
from tests.runtime.code_review_support import sample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_flow(flow: str, code: str) -> tuple[str, dict[str, Any], list[str]]:
    """Run an example flow on `code`: its status, final state and the nodes it ran."""
    load_builtin_packs()
    engine = WorkflowEngine((EXAMPLES / flow).read_text(encoding="utf-8"))
    result = asyncio.run(engine.run(initial_state={"code": code}))
    assert result.error is None
    return result.status, result.state, [step.node for step in result.steps]


CHECK = ["analyze", "style", "score"]
LOOP = ["refine", *CHECK]


@pytest.mark.parametrize(
    ("name", "score", "attempts", "nodes"),
    [
        ("clean.py", 100, None, CHECK),
        ("prints.py", 90, 1, [*CHECK, *LOOP]),
        ("unfixable.py", 40, 3, [*CHECK, *LOOP * 3]),
        ("syntax_error.py", 0, 3, [*CHECK, *LOOP * 3]),
    ],
)
def test_code_review_flow(name: str, score: int, attempts: int | None, nodes: list[str]) -> None:
    status, state, ran = run_flow("code_review.flow", sample(name))
    assert status == "succeeded"
    assert (state["score"], state.get("attempts"), ran) == (score, attempts, nodes)


def test_the_one_liner_refines_once_and_ends() -> None:
    status, state, ran = run_flow("one_liner.flow", sample("prints.py"))
    assert status == "succeeded" and ran == [*CHECK, "refine"]
    assert state["attempts"] == 1 and len(state["fixes"]) == 6
    assert state["code"] != sample("prints.py")


def test_the_guarded_review_runs_like_the_code_review_with_its_policies() -> None:
    # Its timeouts run the sync tools in threads; the outcome is the code review's.
    assert run_flow("guarded_review.flow", sample("prints.py")) == run_flow(
        "code_review.flow", sample("prints.py")
    )
