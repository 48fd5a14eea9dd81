"""The cost of conditions is bounded: values they build, work they do, their size.

Going over a limit ends the run with `condition_limit` naming the condition's line, before
the work is done: no test here measures time, they bound memory (tracemalloc) and count.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from flowc.compiler import compile_source
from flowc.compiler.ir import Arm, Branch
from flowc.compiler.operators import Budget
from flowc.dsl.limits import MAX_CONDITION_SIZE
from flowc.runtime import Registry, RunResult, WorkflowEngine
from flowc.runtime.conditions import ConditionError, compile_condition
from tests.runtime.test_conditions import condition

State = dict[str, Any]
MIB = 1024 * 1024


def balanced(op: str, leaf: str, levels: int) -> str:
    """`((x op x) op (x op x)) ...`: a tree of `2 ** levels` leaves, each level doubling."""
    text = leaf
    for _ in range(levels):
        text = f"({text} {op} {text})"
    return text


def registry() -> Registry:
    tools = Registry()

    def begin(state: State) -> None:
        return None

    tools.add(begin)
    return tools


def run(source: str, state: State) -> RunResult:
    engine = WorkflowEngine(source, registry())
    return asyncio.run(engine.run(initial_state=state))


def peak_bytes(action: Callable[[], object]) -> int:
    """The most memory `action` held at once, as tracemalloc counts it."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


OUT_OF_RANGE = "`*` gives an integer outside the signed 64-bit range that conditions compute in"


def test_a_balanced_product_tree_ends_as_condition_limit_before_it_grows() -> None:
    tree = balanced("*", "x", 11)  # 2,048 leaves, 8 KB of text: x ** 2048 if it ran
    assert len(tree) > 8_000
    source = f"begin ? {tree} > 0 -> end : end\n"
    result: list[RunResult] = []
    peak = peak_bytes(lambda: result.append(run(source, {"x": 3})))
    (ended,) = result
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.code == "condition_limit"
    assert ended.error.message == f"the condition on line 1: {OUT_OF_RANGE}"
    assert ended.error.span is not None and ended.error.span["line"] == 1
    assert peak < 8 * MIB  # the compiled flow itself, not the numbers


def test_a_product_of_huge_integers_is_refused_before_it_is_computed() -> None:
    # No run's state holds such an integer (the state keeps 64 bits), but a caller of
    # `compile_condition` may pass one: still refused from the sizes alone.
    check = condition(f"{balanced('*', 'x', 11)} > 0")
    caught: list[ConditionError] = []

    def evaluate() -> None:
        with pytest.raises(ConditionError) as raised:
            check({"x": int("9" * 4_300)})
        caught.append(raised.value)

    assert peak_bytes(evaluate) < MIB
    shown = "9" * 57 + "..."
    assert (caught[0].code, caught[0].message) == (
        "condition_limit",
        f"the condition on line 1: {OUT_OF_RANGE} (`x` is {shown}, an int; `x` is {shown}, an int)",
    )


@pytest.mark.parametrize(
    ("length", "built"),
    [(MIB, "2,097,152"), (2_000, "2,048,000")],  # at once, or after doubling nine times
)
def test_a_balanced_string_tree_ends_as_condition_limit_in_bounded_memory(
    length: int, built: str
) -> None:
    tree = balanced("+", "s", 10)  # 4 KB of text: 1,024 copies of `s` if it ran
    source = f"begin ? len({tree}) > 0 -> end : end\n"
    result: list[RunResult] = []
    peak = peak_bytes(lambda: result.append(run(source, {"s": "x" * length})))
    (ended,) = result
    assert ended.error is not None
    assert ended.error.code == "condition_limit"
    assert ended.error.message.startswith(
        f"the condition on line 1: `+` would build a string of {built} characters; "
        "the limit is 1,048,576"
    )
    assert peak < 12 * MIB  # the state and its copies, and one string at the limit


def test_wide_conditions_stop_at_the_work_budget_in_bounded_memory() -> None:
    # Each `s + s` is within the size limit; all of them together are not.
    items = ", ".join(["s + s"] * 200)
    source = f"begin ? len([{items}]) > 0 -> end : end\n"
    result: list[RunResult] = []
    peak = peak_bytes(lambda: result.append(run(source, {"s": "x" * (MIB // 2)})))
    (ended,) = result
    assert ended.error is not None
    assert ended.error.code == "condition_limit"
    assert "the work limit is reached" in ended.error.message
    assert peak < 40 * MIB  # 31 MiB of strings at most: 500,000 units of 64 characters


def test_the_arms_of_a_branch_share_one_budget() -> None:
    # Each arm searches 20,000 items (5,000 units), one per line: the 101st goes over.
    arms = " :\n".join(f"{-line} in items -> end" for line in range(1, 121))
    state = {"items": list(range(20_000))}
    ended = run(f"begin ? {arms} : end\n", state)
    assert ended.error is not None
    assert ended.error.code == "condition_limit"
    assert ended.error.message.startswith("the condition on line 101: the work limit is reached")
    assert ended.error.span is not None and ended.error.span["line"] == 101
    assert condition("-101 in items")(state) is False  # alone, it has a budget of its own


def test_a_shared_budget_is_spent_across_calls() -> None:
    check = condition("0 in items")
    state = {"items": [1] * 2_400}  # 600 units a search
    budget = Budget(1_000)
    assert check(state, budget) is False
    with pytest.raises(ConditionError) as caught:
        check(state, budget)
    assert caught.value.code == "condition_limit"
    assert check(state) is False  # without one, each call has the whole budget


def test_a_condition_over_the_size_limit_fails_when_evaluated() -> None:
    # The compiler refuses it (E307); an IR that skipped the checks fails at run time.
    items = [{"type": "literal", "value": i} for i in range(MAX_CONDITION_SIZE)]
    big = {"type": "binary", "op": "in", "left": {"type": "path", "path": ["n"]},
           "right": {"type": "list", "items": items}, "span": {
               "line": 4, "column": 1, "end_line": 4, "end_column": 9}}  # fmt: skip
    check = compile_condition(big, "the condition on line 4")
    with pytest.raises(ConditionError) as caught:
        check({"n": 1})
    assert (caught.value.code, caught.value.message) == (
        "condition_limit",
        "the condition on line 4: the condition has more than 10,000 operators, calls, "
        "lists, paths and literals",
    )
    assert caught.value.span is not None and caught.value.span["line"] == 4
    smaller = {**big, "right": {"type": "list", "items": items[:-3]}}  # 10,000 nodes in all
    assert compile_condition(smaller)({"n": 1}) is True


def test_values_too_deep_or_too_large_to_show_are_described() -> None:
    deep: Any = 1
    for _ in range(50_000):  # 450,000 units to compare with itself: within the budget
        deep = [deep]
    with pytest.raises(ConditionError) as caught:
        condition("x")({"x": deep})
    assert caught.value.message == (
        "the condition on line 1: a condition must be true or false, "
        "but it gave <a list too deep to show>, a list"
    )
    with pytest.raises(ConditionError) as caught:
        condition("x")({"x": 10**5000})
    assert caught.value.message == (
        "the condition on line 1: a condition must be true or false, "
        "but it gave <an integer of 16,610 bits>, an int"
    )
    assert condition("x == y")({"x": deep, "y": deep}) is True  # compared without recursion


class Exploding(dict[str, Any]):
    """A state whose lookups fail in a way no JSON state can."""

    def get(self, key: str, default: Any = None) -> Any:
        raise KeyError(key)


def test_nothing_but_a_condition_error_escapes_a_condition() -> None:
    with pytest.raises(ConditionError) as caught:
        condition("x > 1")(Exploding())
    assert (caught.value.code, caught.value.message) == (
        "condition_error",
        "the condition on line 1: could not be evaluated: KeyError",
    )


@pytest.mark.parametrize(
    ("condition_text", "state", "code"),
    [
        ("x * x * x > 0", {"x": 2**30}, "condition_limit"),
        ("x + 1 > 0", {"x": 2**63 - 1}, "condition_limit"),
        ("-x > 0", {"x": -(2**63)}, "condition_limit"),
        ("len(s + s) > 0", {"s": "x" * MIB}, "condition_limit"),
        ("len(l + l) > 0", {"l": [0] * 60_000}, "condition_limit"),
        ("x / 0 > 0", {"x": 1}, "condition_error"),
        ("x * 1e308 > 0", {"x": 1e308}, "condition_error"),
        ("x", {"x": 2**63 - 1}, "condition_error"),
    ],
)
def test_a_run_never_raises_for_a_condition(condition_text: str, state: State, code: str) -> None:
    ended = run(f"begin ? {condition_text} -> end : end\n", state)
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.code == code
    assert ended.error.message.startswith("the condition on line 1: ")
    assert ended.error.node == "begin"


def test_a_run_of_an_unchecked_ir_never_raises_either() -> None:
    # The IR's validation refuses such nesting; a flow built without it still cannot crash.
    deep: dict[str, Any] = {"type": "path", "path": ["x"]}
    for _ in range(5_000):
        deep = {"type": "unary", "op": "-", "operand": deep}
    span = {"line": 1, "column": 9, "end_line": 1, "end_column": 10}
    zero = {"type": "literal", "value": 0}
    check: Any = {"type": "binary", "op": ">", "left": deep, "right": zero, "span": span}
    arm = Arm.model_construct(condition=check, target="end")
    flow = compile_source("begin ? x > 0 -> end : end\n").ir.model_copy(
        update={"routes": {"begin": Branch.model_construct(arms=(arm,), otherwise="end")}}
    )
    ended = asyncio.run(WorkflowEngine(flow, registry()).run(initial_state={"x": 1}))
    assert ended.status == "failed"
    assert ended.error is not None
    assert (ended.error.code, ended.error.message) == (
        "condition_limit",
        "the condition on line 1: the condition is too deeply nested to evaluate",
    )
