"""State values: copied, checked storable and within the limits, measured delta by delta."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.runtime import state as state_module
from flowc.runtime.state import (
    MAX_DEPTH,
    MAX_INT,
    MIN_INT,
    LimitError,
    Limits,
    ReturnError,
    ReturnLimitError,
    StateError,
    StateMeter,
    updates,
)

INT_RANGE = "(-9,223,372,036,854,775,808 to 9,223,372,036,854,775,807)"


def meter(**limits: Any) -> StateMeter:
    return StateMeter(Limits(**limits))


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        (MAX_INT + 1, "n", f"an integer of 64 bits is outside the signed 64-bit range {INT_RANGE}"),
        (
            {"a": [1, MIN_INT - 1]},
            "n.a[1]",
            f"an integer of 64 bits is outside the signed 64-bit range {INT_RANGE}",
        ),
        (
            [10**4300],
            "n[0]",
            f"an integer of 14,285 bits is outside the signed 64-bit range {INT_RANGE}",
        ),
        ("x" * 11, "n", "a string of 11 characters is longer than max_string_length = 10"),
        ({"k" * 11: 1}, "n", "a key of 11 characters is longer than max_string_length = 10"),
    ],
)
def test_a_value_past_a_limit_is_named_with_its_path(value: Any, where: str, problem: str) -> None:
    # A key past the limit is named by the object that holds it.
    with pytest.raises(LimitError) as error:
        meter(max_string_length=10).measure("n", value)
    assert error.value.where == where
    assert error.value.problem.startswith(problem)


def test_the_int_range_is_what_the_store_keeps_exactly() -> None:
    assert meter().measure("n", MAX_INT)[0] == MAX_INT
    assert meter().measure("n", [MIN_INT])[0] == [MIN_INT]
    assert (MIN_INT, MAX_INT) == (-(2**63), 2**63 - 1)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\x00b", "a string holds `\\u0000`, which PostgreSQL cannot store"),
        ("é\x00", "a string holds `\\u0000`, which PostgreSQL cannot store"),
        ("\ud800", "a string holds a lone surrogate '\\ud800', which is not Unicode"),
        (float("nan"), "nan is not a JSON number"),
        ({1: "x"}, "a key is an int, not a string: 1"),
        (object(), "an object is not JSON"),
    ],
)
def test_a_value_the_store_cannot_keep_is_a_state_error(value: Any, problem: str) -> None:
    with pytest.raises(StateError) as error:
        meter().measure("n", [value])
    assert not isinstance(error.value, LimitError)
    assert (error.value.where, error.value.problem) == ("n[0]", problem)


def test_nesting_past_the_limit_is_refused() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert meter().measure("n", deep)[0] == deep
    with pytest.raises(LimitError) as error:
        meter().measure("n", [deep])
    assert error.value.problem == f"lists and objects are nested more than {MAX_DEPTH} deep"


def test_tuples_and_subclasses_become_plain_json() -> None:
    class Text(str):
        pass

    class Table(dict[str, Any]):
        pass

    copied, _ = meter().measure("n", Table(a=(1, Text("x"))))
    assert copied == {"a": [1, "x"]}
    assert type(copied) is dict and type(copied["a"]) is list and type(copied["a"][1]) is str


def test_sizes_are_the_json_text_for_strings_and_estimated_for_scalars() -> None:
    value = {"name": "héllo", "tags": ["a", "b"], "deep": {"x": "y"}, "none": [], "no": {}}
    assert meter().measure("k", value)[1] == json_size({"k": value}) - 2
    assert meter().measure("k", 12)[1] == len('"k":') + state_module.SCALAR_SIZE


def test_updates_refuse_a_state_past_its_size_and_keep_the_total() -> None:
    gauge = meter(max_state_bytes=100)
    state = gauge.load({"a": "x" * 40}, "the state")
    assert gauge.total == json_size(state)
    assert updates({"b": "y" * 40}, state, gauge) == {"b": "y" * 40}
    assert gauge.total == json_size({**state, "b": "y" * 40}) == 95
    with pytest.raises(ReturnLimitError) as error:
        updates({"c": "z" * 10}, {**state, "b": "y" * 40}, gauge)
    assert str(error.value) == (
        "returned updates past a limit: they would make the state about 112 bytes as JSON, "
        "more than max_state_bytes = 100; `c` is about 16 of them"
    )
    assert gauge.total == 95  # a refused delta changes nothing
    assert updates({"a": ""}, state, gauge) == {"a": ""}  # smaller again
    assert gauge.total == 55


def test_updates_say_which_value_is_past_a_limit_or_not_json() -> None:
    with pytest.raises(ReturnLimitError) as limit:
        updates({"n": [2**64]}, {}, meter())
    assert str(limit.value) == (
        "returned a value past a limit at `n[0]`: an integer of 65 bits is outside the signed "
        f"64-bit range {INT_RANGE} that the store keeps exactly"
    )
    with pytest.raises(ReturnError) as bad:
        updates({"s": {"t": "\x00"}}, {}, meter())
    assert not isinstance(bad.value, ReturnLimitError)
    assert str(bad.value) == (
        "returned a value that is not JSON at `s.t`: a string holds `\\u0000`, which "
        "PostgreSQL cannot store"
    )


def test_an_input_past_its_own_limit_is_named() -> None:
    limits = Limits(max_input_bytes=20, prefix="FLOWC_")
    problem = limits.input_problem({"code": "x" * 20})
    assert problem is not None and not problem.parts
    assert problem.problem == (
        "the input is about 31 bytes as JSON, more than FLOWC_MAX_INPUT_BYTES = 20; "
        "`code` is about 29 of them"
    )
    assert limits.input_problem({"code": "x" * 8}) is None


def test_limits_refuse_nonsense() -> None:
    for bad in ({"max_state_bytes": 0}, {"slice_steps": 1.5}, {"slice_ms": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_a_delta_costs_its_own_size_not_the_states(monkeypatch: pytest.MonkeyPatch) -> None:
    copied: list[Any] = []
    original = state_module._Copier.copy

    def counting(self: Any, value: Any, depth: int) -> Any:
        copied.append(value)
        return original(self, value, depth)

    monkeypatch.setattr(state_module._Copier, "copy", counting)
    gauge = meter()
    big = {"rows": [{"i": i} for i in range(10_000)]}
    state = gauge.load(big, "the state")
    loaded = len(copied)
    assert loaded == 1 + 10_000 * 2
    assert updates({"n": 1, "s": "text"}, state, gauge) == {"n": 1, "s": "text"}
    assert len(copied) == loaded  # scalars are checked without a walk
    assert updates({"pair": [1, [2]]}, state, gauge) == {"pair": [1, [2]]}
    assert len(copied) == loaded + 4  # the list, 1, [2] and 2: the delta, not the state


TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.text(TEXT, max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(TEXT, max_size=3), inner),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.sampled_from("abcd"), JSON, max_size=3), max_size=6))
def test_the_running_total_is_the_size_of_the_state_measured_afresh(
    deltas: list[dict[str, Any]],
) -> None:
    gauge = meter()
    state: dict[str, Any] = gauge.load({}, "the state")
    for delta in deltas:
        state = {**state, **updates(delta, state, gauge)}
        fresh = meter()
        fresh.load(state, "the state")
        assert gauge.total == fresh.total
